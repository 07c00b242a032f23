/* Byte-level BPE (Llama 3, Qwen3) against the reference implementation of
 * Hugging Face tokenizers: tests/vectors/bpe.json holds the ids
 * tokenizers.js gives for a few hundred strings (every script, emoji,
 * whitespace runs, digits, code, special tokens inside text), made by
 * tests/vectors/gen_bpe_vectors.mjs (its header says how to run it again).
 * The vocabularies are read from the real tokenizer.json files, and again
 * from a GGUF that duet mkmodel wrote from them. */
#include "testutil.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "engine/tokenizer.h"
#include "mkmodel/model_random.h"
#include "mkmodel/vocab_hf.h"

#define MAX_IDS 4096

static json_t *vectors(void)
{
	json_error_t je;
	json_t *j = json_load_file("tests/vectors/bpe.json", JSON_ALLOW_NUL, &je);
	if (!j)
		fail_msg("tests/vectors/bpe.json:%d: %s", je.line, je.text);
	return j;
}

static void load_hf(struct duet_vocab *v, const char *name)
{
	char path[PATH_MAX + 64], file[64];
	snprintf(file, sizeof file, "%s-tokenizer.json", name);
	tu_shared_path(file, path, sizeof path);
	char *tmpl;
	struct duet_err err;
	if (duet_vocab_from_hf(v, path, &tmpl, &err))
		fail_msg("%s", err.msg);
	assert_non_null(tmpl); /* both configs carry a chat template */
	free(tmpl);
}

/* Every vector's ids (no BOS), and for text the tokenizer keeps as it is
 * (all of it for Llama 3; for Qwen, text already in NFC) the ids decode
 * back to the text. */
static void check_all(const struct duet_vocab *v, const char *name)
{
	json_t *all = vectors();
	size_t i;
	json_t *row;
	static int ids[MAX_IDS];
	static char back[MAX_IDS * 8];
	int checked = 0;
	json_array_foreach(all, i, row) {
		const char *text = json_string_value(json_object_get(row, "text"));
		size_t tn = json_string_length(json_object_get(row, "text"));
		json_t *want = json_object_get(row, name);
		size_t n;
		struct duet_err err;
		if (duet_tokenize(v, text, tn, 0, ids, MAX_IDS, &n, &err))
			fail_msg("%s: %s", name, err.msg);
		int same = n == json_array_size(want);
		for (size_t k = 0; same && k < n; k++)
			same = ids[k] == json_integer_value(json_array_get(want, k));
		if (!same) {
			fprintf(stderr, "%s: text %zu \"%s\": got", name, i, text);
			for (size_t k = 0; k < n; k++)
				fprintf(stderr, " %d", ids[k]);
			fprintf(stderr, "\n  want");
			for (size_t k = 0; k < json_array_size(want); k++)
				fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(want, k)));
			fail_msg("%s: text %zu tokenized differently from tokenizers.js", name, i);
		}
		checked++;
		utf8proc_uint8_t *nfc = utf8proc_NFC((const utf8proc_uint8_t *)text);
		int kept = v->pre != DUET_PRE_QWEN2 || (nfc && !strcmp((char *)nfc, text));
		free(nfc);
		size_t bn;
		if (duet_detokenize(v, ids, n, back, sizeof back, &bn, &err))
			fail_msg("%s: %s", name, err.msg);
		/* Added tokens that are control tokens decode to nothing. */
		int has_control = 0;
		for (size_t k = 0; k < n; k++)
			has_control |= v->type[ids[k]] == DUET_TOK_CONTROL;
		if (kept && !has_control && (bn != tn || memcmp(back, text, tn)))
			fail_msg("%s: text %zu \"%s\" decodes to \"%.*s\"", name, i, text, (int)bn, back);
	}
	assert_true(checked > 300);
	json_decref(all);
}

static void test_llama3(void **st)
{
	(void)st;
	struct duet_vocab v;
	load_hf(&v, "llama3");
	assert_int_equal(v.n, 128256);
	assert_int_equal(v.n_merges, 280147);
	assert_int_equal(v.bos, 128000);
	assert_true(v.add_bos);
	/* generation ends at <|end_of_text|> and at the end of a turn */
	assert_true(duet_vocab_is_eog(&v, 128001));
	assert_true(duet_vocab_is_eog(&v, 128009)); /* <|eot_id|> */
	assert_false(duet_vocab_is_eog(&v, 128000));
	check_all(&v, "llama3");
	/* BOS first when asked for */
	int ids[8];
	size_t n;
	struct duet_err err;
	assert_int_equal(duet_tokenize(&v, "Hi", 2, 1, ids, 8, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 128000);
	duet_vocab_free(&v);
}

static void test_qwen3(void **st)
{
	(void)st;
	struct duet_vocab v;
	load_hf(&v, "qwen3");
	assert_int_equal(v.bos, -1);
	assert_false(v.add_bos);
	assert_int_equal(v.pre, DUET_PRE_QWEN2);
	assert_true(duet_vocab_is_eog(&v, 151645)); /* <|im_end|>, its EOS */
	assert_true(duet_vocab_is_eog(&v, 151643)); /* <|endoftext|> */
	assert_false(duet_vocab_is_eog(&v, 151644)); /* <|im_start|> */
	check_all(&v, "qwen3");
	duet_vocab_free(&v);
}

/* mkmodel writes the vocabulary into a GGUF (tokens in GPT-2's byte
 * spelling, types, merges, pre, BOS/EOS); read back, it tokenizes every
 * vector the same. */
static void test_gguf_round_trip(void **st)
{
	(void)st;
	static const char *names[] = {"llama3", "qwen3"};
	for (int k = 0; k < 2; k++) {
		struct duet_vocab hf, g;
		load_hf(&hf, names[k]);
		struct duet_random_gen gen;
		struct duet_model_spec spec;
		char name[128], path[4096];
		duet_random_spec(&spec, &gen, duet_shape_find("tiny"), DUET_Q8_0, -1, 0, 3, &hf, name);
		snprintf(path, sizeof path, "%s/bpe-%s.gguf", tu_tmpdir(), names[k]);
		struct duet_err err;
		if (duet_write_gguf(path, &spec, &err))
			fail_msg("%s", err.msg);
		if (duet_vocab_load_file(&g, path, &err))
			fail_msg("%s", err.msg);
		assert_int_equal(g.n, hf.n);
		assert_int_equal(g.n_merges, hf.n_merges);
		assert_int_equal(g.bos, hf.bos);
		assert_int_equal(g.eos, hf.eos);
		assert_int_equal(g.add_bos, hf.add_bos);
		assert_int_equal(g.pre, hf.pre);
		for (int i = 0; i < hf.n; i++) {
			assert_int_equal(g.len[i], hf.len[i]);
			assert_memory_equal(duet_vocab_piece(&g, i), duet_vocab_piece(&hf, i), hf.len[i]);
			assert_int_equal(g.type[i], hf.type[i]);
		}
		check_all(&g, names[k]);
		duet_vocab_free(&g);
		duet_vocab_free(&hf);
	}
}

/* A tokenizer.json that is wrong in one place is refused with one line
 * that names it. */
static void test_bad_files(void **st)
{
	(void)st;
	char src[PATH_MAX + 64], cfg[PATH_MAX + 64];
	tu_shared_path("qwen3-tokenizer.json", src, sizeof src);
	tu_shared_path("qwen3-tokenizer_config.json", cfg, sizeof cfg);
	json_error_t je;
	json_t *cj = json_load_file(cfg, JSON_DECODE_INT_AS_REAL, &je);
	assert_non_null(cj);
	static const struct {
		const char *what, *want;
	} cases[] = {
		{"merge", "not in the vocabulary"},
		{"regex", "pre_tokenizer regex"},
		{"model", "model.type"},
	};
	for (int c = 0; c < 3; c++) {
		json_t *j = json_load_file(src, JSON_DECODE_INT_AS_REAL, &je);
		assert_non_null(j);
		json_t *model = json_object_get(j, "model");
		if (c == 0)
			json_array_append_new(json_object_get(model, "merges"),
					      json_pack("[ss]", "Ġzzqx", "Ġqqzx"));
		else if (c == 1)
			json_object_set_new(json_array_get(json_object_get(json_object_get(j, "pre_tokenizer"), "pretokenizers"), 0),
					    "pattern", json_pack("{ss}", "Regex", "\\s+"));
		else
			json_object_set_new(model, "type", json_string("WordPiece"));
		char dir[4096], p[4200], pc[4200];
		snprintf(dir, sizeof dir, "%s/bad-%d-", tu_tmpdir(), c);
		snprintf(p, sizeof p, "%stokenizer.json", dir);
		snprintf(pc, sizeof pc, "%stokenizer_config.json", dir);
		assert_int_equal(json_dump_file(j, p, 0), 0);
		assert_int_equal(json_dump_file(cj, pc, 0), 0);
		struct duet_vocab v;
		char *tmpl;
		struct duet_err err;
		assert_int_equal(duet_vocab_from_hf(&v, p, &tmpl, &err), -1);
		if (!strstr(err.msg, cases[c].want) || strchr(err.msg, '\n'))
			fail_msg("%s: '%s' lacks '%s'", cases[c].what, err.msg, cases[c].want);
		json_decref(j);
	}
	json_decref(cj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_llama3),
		cmocka_unit_test(test_qwen3),
		cmocka_unit_test(test_gguf_round_trip),
		cmocka_unit_test(test_bad_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
