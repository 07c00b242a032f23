/* Loading models: digests, both formats, and at least ten kinds of broken
 * file, each refused with one line naming the file and the problem (and,
 * in the sanitizer build, no memory error on the way). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "engine/model.h"
#include "mkmodel/model_random.h"
#include "mkmodel/model_write.h"

/* Where the fields of a GGUF file sit, found by walking it independently
 * of the library's parser, so corruptions can be aimed at one field. */
#define MAX_KV 64
#define MAX_T 64
struct layout {
	size_t version_off, n_tensors_off, n_kv_off;
	int n_kv, n_t;
	struct {
		char key[96];
		size_t len_off, type_off, val_off;
	} kv[MAX_KV];
	struct {
		char name[96];
		size_t name_off, ndims_off, type_off, offset_off;
	} t[MAX_T];
};

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static size_t skip_value(const uint8_t *b, size_t o, uint32_t type)
{
	static const int size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
	if (type == DUET_GGUF_STRING)
		return o + 8 + rd64(b + o);
	if (type == DUET_GGUF_ARRAY) {
		uint32_t et = rd32(b + o);
		uint64_t n = rd64(b + o + 4);
		o += 12;
		for (uint64_t i = 0; i < n; i++)
			o = skip_value(b, o, et);
		return o;
	}
	return o + (size_t)size[type];
}

static void walk(const uint8_t *b, struct layout *L)
{
	memset(L, 0, sizeof *L);
	L->version_off = 4;
	L->n_tensors_off = 8;
	L->n_kv_off = 16;
	uint64_t nt = rd64(b + 8), nkv = rd64(b + 16);
	assert_true(nt <= MAX_T && nkv <= MAX_KV);
	size_t o = 24;
	for (uint64_t i = 0; i < nkv; i++) {
		uint64_t kl = rd64(b + o);
		L->kv[i].len_off = o;
		memcpy(L->kv[i].key, b + o + 8, kl < 95 ? kl : 95);
		o += 8 + kl;
		L->kv[i].type_off = o;
		uint32_t type = rd32(b + o);
		L->kv[i].val_off = o + 4;
		o = skip_value(b, o + 4, type);
	}
	for (uint64_t i = 0; i < nt; i++) {
		uint64_t nl = rd64(b + o);
		L->t[i].name_off = o;
		memcpy(L->t[i].name, b + o + 8, nl < 95 ? nl : 95);
		o += 8 + nl;
		L->t[i].ndims_off = o;
		uint32_t nd = rd32(b + o);
		o += 4 + 8 * (size_t)nd;
		L->t[i].type_off = o;
		L->t[i].offset_off = o + 4;
		o += 12;
	}
	L->n_kv = (int)nkv;
	L->n_t = (int)nt;
}

static size_t kv_val(const struct layout *L, const char *key)
{
	for (int i = 0; i < L->n_kv; i++)
		if (!strcmp(L->kv[i].key, key))
			return L->kv[i].val_off;
	fail_msg("key %s not in the test model", key);
	return 0;
}

static int tensor(const struct layout *L, const char *name)
{
	for (int i = 0; i < L->n_t; i++)
		if (!strcmp(L->t[i].name, name))
			return i;
	fail_msg("tensor %s not in the test model", name);
	return -1;
}

static void put32(uint8_t *b, size_t o, uint32_t v) { memcpy(b + o, &v, 4); }
static void put64(uint8_t *b, size_t o, uint64_t v) { memcpy(b + o, &v, 8); }

/* Opening path must fail with one line that names the file and contains
 * `want`. */
static void expect_refused(const char *path, const char *want, const char *what)
{
	struct duet_model *m = NULL;
	struct duet_err err;
	int rc = duet_model_open(&m, path, NULL, &err);
	if (rc == 0) {
		duet_model_close(m);
		fail_msg("%s: a broken file was accepted", what);
	}
	assert_null(m);
	if (!strstr(err.msg, path))
		fail_msg("%s: message does not name the file: %s", what, err.msg);
	if (strchr(err.msg, '\n'))
		fail_msg("%s: message is more than one line: %s", what, err.msg);
	if (!strstr(err.msg, want))
		fail_msg("%s: message lacks '%s': %s", what, want, err.msg);
	printf("  refused %-28s %s\n", what, err.msg);
}

struct corruption {
	const char *what;
	const char *want;
	void (*apply)(uint8_t *b, size_t *n, const struct layout *L);
};

static void c_magic(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n, (void)L;
	memcpy(b, "GGUX", 4);
}
static void c_version1(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	put32(b, L->version_off, 1);
}
static void c_version9(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	put32(b, L->version_off, 9);
}
static void c_trunc_header(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)b;
	*n = L->kv[L->n_kv / 2].val_off + 2;
}
static void c_trunc_data(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)b, (void)L;
	*n -= 4096;
}
static void c_offset_past_end(uint8_t *b, size_t *n, const struct layout *L)
{
	put64(b, L->t[L->n_t - 1].offset_off, (uint64_t)*n);
}
static void c_offset_misaligned(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	size_t o = L->t[1].offset_off;
	put64(b, o, rd64(b + o) + 4);
}
static void c_offset_overlap(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	put64(b, L->t[2].offset_off, rd64(b + L->t[1].offset_off));
}
static void c_unknown_type(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	put32(b, L->t[tensor(L, "blk.0.attn_q.weight")].type_off, 99);
}
static void c_unsupported_type(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	put32(b, L->t[tensor(L, "blk.1.ffn_up.weight")].type_off, 16); /* IQ2_XXS */
}
static void c_shape_vs_metadata(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	put32(b, kv_val(L, "llama.feed_forward_length"), 200);
}
static void c_missing_key(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	for (int i = 0; i < L->n_kv; i++)
		if (!strcmp(L->kv[i].key, "llama.block_count"))
			b[L->kv[i].len_off + 8 + 6] = 'X'; /* llama.Xlock_count */
}
static void c_wrong_arch(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	memcpy(b + kv_val(L, "general.architecture") + 8, "mamba", 5);
}
static void c_huge_counts(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	put64(b, L->n_tensors_off, 1ull << 40);
}
static void c_huge_string(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	put64(b, L->kv[0].len_off, 1ull << 62);
}
static void c_too_many_dims(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	put32(b, L->t[0].ndims_off, 5);
}
static void c_dup_tensor(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	int q = tensor(L, "blk.0.attn_q.weight"), k = tensor(L, "blk.0.attn_k.weight");
	memcpy(b + L->t[k].name_off + 8, L->t[q].name, strlen(L->t[q].name));
}
static void c_bad_heads(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	put32(b, kv_val(L, "llama.attention.head_count_kv"), 3);
}
static void c_wrong_key_type(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	for (int i = 0; i < L->n_kv; i++)
		if (!strcmp(L->kv[i].key, "llama.embedding_length"))
			put32(b, L->kv[i].type_off, DUET_GGUF_F32);
}
static void c_bad_token_id(uint8_t *b, size_t *n, const struct layout *L)
{
	(void)n;
	put32(b, kv_val(L, "tokenizer.ggml.bos_token_id"), 1u << 30);
}

static const struct corruption corruptions[] = {
	{"wrong magic", "not a GGUF", c_magic},
	{"GGUF version 1", "version", c_version1},
	{"GGUF version 9", "version", c_version9},
	{"truncated metadata", "truncated", c_trunc_header},
	{"truncated tensor data", "tensor", c_trunc_data},
	{"tensor offset past end", "tensor", c_offset_past_end},
	{"misaligned tensor offset", "align", c_offset_misaligned},
	{"overlapping tensors", "overlap", c_offset_overlap},
	{"unknown tensor type", "type", c_unknown_type},
	{"unsupported tensor type", "blk.1.ffn_up.weight' has type iq2_xxs", c_unsupported_type},
	{"shape disagrees with metadata", "shape", c_shape_vs_metadata},
	{"missing metadata key", "llama.block_count", c_missing_key},
	{"wrong architecture", "mamba", c_wrong_arch},
	{"absurd tensor count", "tensor", c_huge_counts},
	{"absurd string length", "past the end", c_huge_string},
	{"too many dimensions", "dimensions", c_too_many_dims},
	{"duplicate tensor name", "blk.0.attn_q.weight", c_dup_tensor},
	{"heads do not divide", "head", c_bad_heads},
	{"key of the wrong type", "llama.embedding_length", c_wrong_key_type},
	{"special token out of range", "BOS id", c_bad_token_id},
};

static void test_corrupt_gguf(void **st)
{
	(void)st;
	char good[4096], bad[4096];
	tu_make_model(good, "tiny", DUET_F32, "gguf", -1, 11);
	size_t n0;
	uint8_t *orig = tu_read_file(good, &n0);
	struct layout L;
	walk(orig, &L);
	tu_path(bad, "corrupt.gguf");
	for (size_t i = 0; i < sizeof corruptions / sizeof corruptions[0]; i++) {
		uint8_t *b = malloc(n0);
		memcpy(b, orig, n0);
		size_t n = n0;
		corruptions[i].apply(b, &n, &L);
		tu_write_file(bad, b, n);
		expect_refused(bad, corruptions[i].want, corruptions[i].what);
		free(b);
	}
	/* Empty and missing files. */
	tu_write_file(bad, "", 0);
	expect_refused(bad, "empty", "empty file");
	unlink(bad);
	expect_refused(bad, "cannot open", "missing file");
	free(orig);
}

static void test_corrupt_llama2c(void **st)
{
	(void)st;
	char good[4096], bad[4200], dir[4096];
	tu_make_model(good, "tiny-mha", DUET_F32, "llama2c", -1, 11);
	size_t n0;
	uint8_t *orig = tu_read_file(good, &n0);
	/* A directory of its own so the tokenizer.bin beside it can be broken. */
	tu_path(dir, "l2c-bad");
	mkdir(dir, 0755);
	snprintf(bad, sizeof bad, "%s/model.bin", dir);
	char tok[4300];
	snprintf(tok, sizeof tok, "%s/tokenizer.bin", dir);
	size_t tn;
	uint8_t *tokdata = tu_read_file(tu_tokenizer_bin(), &tn);

	tu_write_file(bad, orig, n0 - 100);
	tu_write_file(tok, tokdata, tn);
	expect_refused(bad, "implies", "llama2.c truncated");

	uint8_t *b = malloc(n0);
	memcpy(b, orig, n0);
	put32(b, 0, (uint32_t)-5); /* dim */
	tu_write_file(bad, b, n0);
	expect_refused(bad, "dim", "llama2.c negative dim");

	memcpy(b, orig, n0);
	put32(b, 16, 4); /* n_kv_heads 4 of 3 heads */
	tu_write_file(bad, b, n0);
	expect_refused(bad, "head", "llama2.c kv heads > heads");

	tu_write_file(bad, orig, n0);
	tu_write_file(tok, tokdata, tn / 2);
	expect_refused(bad, "tokenizer", "tokenizer.bin truncated");
	unlink(tok);
	expect_refused(bad, "tokenizer.bin", "tokenizer.bin missing");
	free(b), free(orig), free(tokdata);
}

/* The other architectures' own parts, broken one at a time in a copy of a
 * good file by renaming a tensor in the header: each refused naming it. */
static void test_corrupt_architectures(void **st)
{
	(void)st;
	static const struct {
		const char *shape, *name, *renamed, *want;
	} cases[] = {
		{"tiny-qwen2", "blk.1.attn_k.bias", "blk.1.attn_k.biax", "blk.1.attn_k.bias' is missing"},
		{"tiny-qwen3", "blk.0.attn_q_norm", "blk.0.attn_q_form", "blk.0.attn_q_norm.weight' is missing"},
		{"tiny-llama3", "rope_freqs.weight", "rope_freqz.weight", "rope_freqz.weight' is not part of the llama"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char good[4096], bad[4200];
		tu_make_model(good, cases[i].shape, DUET_F32, "gguf", -1, 3);
		size_t n;
		uint8_t *b = tu_read_file(good, &n);
		assert_non_null(b);
		uint8_t *at = memmem(b, n, cases[i].name, strlen(cases[i].name));
		assert_non_null(at);
		memcpy(at, cases[i].renamed, strlen(cases[i].renamed));
		snprintf(bad, sizeof bad, "%s.bad", good);
		tu_write_file(bad, b, n);
		free(b);
		expect_refused(bad, cases[i].want, cases[i].name);
	}
}

/* The digest: stable across writes and formats, and changed by anything
 * that changes the function the model computes. */
static void test_digest(void **st)
{
	(void)st;
	char a[4096], b[4096], c[4096], d[4096], e[4096];
	tu_make_model(a, "tiny-mha", DUET_F32, "gguf", -1, 5);
	tu_make_model(b, "tiny-mha", DUET_F32, "llama2c", -1, 5);
	tu_make_model(c, "tiny-mha", DUET_F32, "gguf", -1, 6);
	tu_make_model(d, "tiny-mha", DUET_F16, "gguf", -1, 5);
	tu_make_model(e, "tiny-mha", DUET_F32, "gguf", 1, 5);
	struct duet_model *ma = tu_open(a), *mb = tu_open(b), *mc = tu_open(c);
	struct duet_model *md = tu_open(d), *me = tu_open(e);
	assert_int_equal(strlen(ma->digest), 32);
	assert_string_equal(ma->digest, mb->digest);
	assert_string_not_equal(ma->digest, mc->digest);
	assert_string_not_equal(ma->digest, md->digest);
	assert_string_not_equal(ma->digest, me->digest);
	/* Written again: the same bytes, the same digest. */
	char again[4096];
	struct duet_err err;
	struct duet_random_gen g;
	struct duet_model_spec spec;
	char name[128];
	duet_random_spec(&spec, &g, duet_shape_find("tiny-mha"), DUET_F32, -1, 0, 5,
			 &ma->vocab, name);
	assert_int_equal(duet_write_gguf(tu_path(again, "again.gguf"), &spec, &err), 0);
	struct duet_model *m2 = tu_open(again);
	assert_string_equal(m2->digest, ma->digest);
	/* Geometry and counts as written. */
	assert_int_equal(m2->cfg.dim, 96);
	assert_int_equal(m2->cfg.n_layers, 3);
	assert_int_equal(m2->cfg.vocab_size, 32000);
	assert_int_equal(m2->tied_output, 0);
	assert_int_equal(m2->n_params, (uint64_t)3 * (4 * 96 * 96 + 3 * 96 * 256 + 2 * 96) +
					       2ull * 32000 * 96 + 96);
	duet_model_close(m2);
	duet_model_close(ma), duet_model_close(mb), duet_model_close(mc);
	duet_model_close(md), duet_model_close(me);
}

/* Tensor data must be aligned as the file says, as other readers need. */
static void test_gguf_layout(void **st)
{
	(void)st;
	char p[4096];
	tu_make_model(p, "tiny", DUET_Q8_0, "gguf", -1, 5);
	size_t n;
	uint8_t *b = tu_read_file(p, &n);
	assert_memory_equal(b, "GGUF", 4);
	assert_int_equal(rd32(b + 4), 3);
	struct layout L;
	walk(b, &L);
	for (int i = 0; i < L.n_t; i++)
		assert_int_equal(rd64(b + L.t[i].offset_off) % 32, 0);
	assert_int_equal(rd32(b + L.t[tensor(&L, "blk.0.ffn_down.weight")].type_off), 8);
	assert_int_equal(rd32(b + L.t[tensor(&L, "blk.0.attn_norm.weight")].type_off), 0);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corrupt_gguf),
		cmocka_unit_test(test_corrupt_llama2c),
		cmocka_unit_test(test_corrupt_architectures),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_gguf_layout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
