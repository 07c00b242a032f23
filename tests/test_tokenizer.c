/* SentencePiece BPE against known Llama-2 encodings, round trips of mixed
 * text, the two vocabulary formats giving the same ids, byte fallback and
 * incremental detokenization. Uses the real Llama-2 vocabulary. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"
#include "engine/vocab.h"
#include "mkmodel/model_write.h"

static struct duet_vocab gguf_v, bin_v;

static int setup(void **st)
{
	(void)st;
	struct duet_err err;
	if (duet_vocab_load_file(&gguf_v, tu_vocab_gguf(), &err) ||
	    duet_vocab_load_file(&bin_v, tu_tokenizer_bin(), &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	duet_vocab_free(&gguf_v);
	duet_vocab_free(&bin_v);
	return 0;
}

static size_t encode(const struct duet_vocab *v, const char *s, size_t n, int bos, int *ids)
{
	size_t k;
	struct duet_err err;
	if (duet_tokenize(v, s, n, bos, ids, duet_tokenize_max(n), &k, &err))
		fail_msg("%s", err.msg);
	return k;
}

struct known {
	const char *text;
	int ids[16];
	int n;
};

/* Encodings as the Llama-2 SentencePiece model gives them (BOS = 1). */
static const struct known known[] = {
	{"Hello, world!", {1, 15043, 29892, 3186, 29991}, 5},
	{"Hello world", {1, 15043, 3186}, 3},
	{"The quick brown fox", {1, 450, 4996, 17354, 1701, 29916}, 6},
	{" leading", {1, 29871, 8236}, 3},
	{"tab\there", {1, 4434, 12, 4150}, 4},
	{"\n\n", {1, 29871, 13, 13}, 4},
	{"", {1}, 1},
};

static void test_known_encodings(void **st)
{
	(void)st;
	int ids[64];
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
		const struct known *k = &known[i];
		size_t n = encode(&gguf_v, k->text, strlen(k->text), 1, ids);
		if ((int)n != k->n || memcmp(ids, k->ids, sizeof(int) * n))
			fail_msg("'%s': got %zu tokens starting %d %d", k->text, n, ids[0],
				 n > 1 ? ids[1] : -1);
	}
	/* Special ids. */
	assert_int_equal(gguf_v.bos, 1);
	assert_int_equal(gguf_v.eos, 2);
	assert_int_equal(gguf_v.unk, 0);
	assert_int_equal(gguf_v.n, 32000);
}

static const char *mixed[] = {
	"Once upon a time, there was a little girl named Lily.",
	"Café crème brûlée à la française — naïve façade",
	"日本語のテキストと中文文本，还有한국어",
	"emoji: 🦙🚀👩‍👩‍👧 and flags 🇫🇷",
	"   leading spaces, trailing   ",
	"tabs\tand\nnewlines\r\n\n  mixed\t \t",
	"code: for (int i = 0; i < n; i++) { x[i] += 1; }",
	"numbers 3.14159 1,000,000 0x7fff -42",
	"\x01\x02 control \x7f bytes",
};

/* Text -> ids -> text is the identity, and both vocabulary files give
 * the same ids. */
static void test_round_trip_and_formats_agree(void **st)
{
	(void)st;
	int a[512], b[512];
	char out[2048];
	for (size_t i = 0; i < sizeof mixed / sizeof mixed[0]; i++) {
		const char *s = mixed[i];
		size_t n = strlen(s);
		size_t na = encode(&gguf_v, s, n, 1, a);
		size_t nb = encode(&bin_v, s, n, 1, b);
		assert_int_equal(na, nb);
		assert_memory_equal(a, b, sizeof(int) * na);
		size_t len;
		struct duet_err err;
		if (duet_detokenize(&gguf_v, a + 1, na - 1, out, sizeof out, &len, &err))
			fail_msg("%s", err.msg);
		assert_int_equal(len, n);
		assert_string_equal(out, s);
	}
}

/* Characters outside the vocabulary become their UTF-8 bytes as <0xNN>. */
static void test_byte_fallback(void **st)
{
	(void)st;
	int ids[32];
	/* U+1F999 (llama): F0 9F A6 99, not a piece of the vocabulary. */
	size_t n = encode(&gguf_v, "\xf0\x9f\xa6\x99", 4, 0, ids);
	assert_int_equal(n, 5);
	assert_int_equal(ids[0], 29871); /* the dummy-prefix space alone */
	static const int bytes[] = {0xF0, 0x9F, 0xA6, 0x99};
	for (int i = 0; i < 4; i++) {
		assert_int_equal(ids[1 + i], gguf_v.byte_id[bytes[i]]);
		assert_int_equal(ids[1 + i], 3 + bytes[i]); /* <0x00> is id 3 */
	}
	/* Invalid UTF-8 is kept byte for byte and decodes to U+FFFD. */
	n = encode(&gguf_v, "a\xff" "b", 3, 0, ids);
	int found = 0;
	for (size_t i = 0; i < n; i++)
		found |= ids[i] == 3 + 0xff;
	assert_true(found);
	char out[64];
	size_t len;
	struct duet_err err;
	assert_int_equal(duet_detokenize(&gguf_v, ids, n, out, sizeof out, &len, &err), 0);
	assert_string_equal(out, "a\xef\xbf\xbd" "b");
}

static int valid_utf8(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		int l = duet_utf8_len((const unsigned char *)s + i, n - i);
		if (l <= 0)
			return 0;
		i += (size_t)l;
	}
	return 1;
}

/* Pushed one token at a time, every chunk is whole characters, and the
 * chunks add up to the text. */
static void test_incremental_detok(void **st)
{
	(void)st;
	int ids[512];
	for (size_t i = 0; i < sizeof mixed / sizeof mixed[0]; i++) {
		const char *s = mixed[i];
		size_t n = encode(&gguf_v, s, strlen(s), 1, ids);
		struct duet_detok d;
		duet_detok_init(&d, &gguf_v, 1);
		char all[2048], chunk[DUET_DETOK_MAX_OUT];
		size_t total = 0;
		struct duet_err err;
		for (size_t j = 1; j < n; j++) {
			size_t cn;
			assert_int_equal(duet_detok_push(&d, ids[j], chunk, &cn, &err), 0);
			if (!valid_utf8(chunk, cn))
				fail_msg("'%s': token %zu gave a partial character", s, j);
			memcpy(all + total, chunk, cn);
			total += cn;
		}
		total += duet_detok_flush(&d, all + total);
		all[total] = 0;
		assert_string_equal(all, s);
	}
	/* A character cut short by the end becomes U+FFFD. */
	struct duet_detok d;
	duet_detok_init(&d, &gguf_v, 0);
	char out[DUET_DETOK_MAX_OUT];
	size_t cn;
	struct duet_err err;
	assert_int_equal(duet_detok_push(&d, 3 + 0xF0, out, &cn, &err), 0);
	assert_int_equal(cn, 0);
	assert_int_equal(duet_detok_push(&d, 3 + 0x9F, out, &cn, &err), 0);
	assert_int_equal(cn, 0);
	cn = duet_detok_flush(&d, out);
	assert_int_equal(cn, 3);
	assert_memory_equal(out, "\xef\xbf\xbd", 3);
	/* Bad ids are errors, not crashes. */
	assert_int_not_equal(duet_detok_push(&d, -5, out, &cn, &err), 0);
	assert_int_not_equal(duet_detok_push(&d, 32000, out, &cn, &err), 0);
}

/* The encoder takes any bytes, including NULs and long runs. */
static void test_hostile_text(void **st)
{
	(void)st;
	size_t n = 5000;
	char *s = malloc(n);
	int *ids = malloc(sizeof(int) * duet_tokenize_max(n));
	assert_true(s && ids);
	uint32_t x = 12345;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		s[i] = (char)(x >> 23);
	}
	size_t k = encode(&gguf_v, s, n, 1, ids);
	assert_true(k >= 2 && k <= duet_tokenize_max(n));
	for (size_t i = 0; i < k; i++)
		assert_true(ids[i] >= 0 && ids[i] < gguf_v.n);
	memset(s, ' ', n);
	k = encode(&gguf_v, s, n, 0, ids);
	assert_true(k >= 1);
	/* Too small an output buffer is an error. */
	size_t got;
	struct duet_err err;
	assert_int_not_equal(duet_tokenize(&gguf_v, "hello world", 11, 1, ids, 2, &got, &err), 0);
	free(s), free(ids);
}

/* tokenizer.bin written by duet reads back as the same vocabulary. */
static void test_tokenizer_bin_write(void **st)
{
	(void)st;
	char p[4096];
	struct duet_err err;
	assert_int_equal(duet_write_llama2c_tokenizer(tu_path(p, "tok.bin"), &gguf_v, &err), 0);
	struct duet_vocab v;
	assert_int_equal(duet_vocab_load_file(&v, p, &err), 0);
	assert_int_equal(v.n, gguf_v.n);
	for (int i = 0; i < v.n; i++) {
		assert_int_equal(v.len[i], gguf_v.len[i]);
		assert_memory_equal(duet_vocab_piece(&v, i), duet_vocab_piece(&gguf_v, i), v.len[i]);
		assert_true(v.score[i] == gguf_v.score[i]);
		assert_int_equal(v.type[i], gguf_v.type[i]);
	}
	duet_vocab_free(&v);
	/* The shared tokenizer.bin and the GGUF agree entry by entry too. */
	for (int i = 0; i < bin_v.n; i++)
		assert_int_equal(bin_v.type[i], gguf_v.type[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_encodings),
		cmocka_unit_test(test_round_trip_and_formats_agree),
		cmocka_unit_test(test_byte_fallback),
		cmocka_unit_test(test_incremental_detok),
		cmocka_unit_test(test_hostile_text),
		cmocka_unit_test(test_tokenizer_bin_write),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
