/* Byte-level BPE vocabularies (tokenizer.ggml.model "gpt2": Llama 3,
 * Qwen2/Qwen3): the pieces from their GGUF spelling to raw bytes, the
 * merges as a table of id pairs, the added tokens matched before the
 * pre-tokenizer, and the pre-tokenizer's regular expression. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engine/vocab.h"
#include "engine/vocab_impl.h"

/* The pre-tokenizers of the families duet reads, as their tokenizer.json
 * files state them (Llama 3 groups digits by three, Qwen2 takes them one by
 * one). */
static const struct {
	const char *name;
	enum duet_bpe_pre pre;
	const char *regex;
} PRES[] = {
	{"llama-bpe", DUET_PRE_LLAMA3,
	 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
	{"qwen2", DUET_PRE_QWEN2,
	 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

int duet_bpe_pre_parse(const char *s, size_t n, enum duet_bpe_pre *out)
{
	for (size_t i = 0; i < sizeof PRES / sizeof PRES[0]; i++)
		if (strlen(PRES[i].name) == n && !memcmp(PRES[i].name, s, n)) {
			*out = PRES[i].pre;
			return 0;
		}
	/* llama.cpp's converter also names Llama 3's "llama3" in some files */
	if (n == 6 && !memcmp(s, "llama3", 6)) {
		*out = DUET_PRE_LLAMA3;
		return 0;
	}
	return -1;
}

const char *duet_bpe_pre_name(enum duet_bpe_pre p)
{
	return PRES[p].name;
}

const char *duet_bpe_pre_regex(enum duet_bpe_pre p)
{
	return PRES[p].regex;
}

/* GPT-2's byte-to-character table: the printable bytes stand for
 * themselves, the other 68 (controls, space, 0x7f-0xa0, 0xad) for U+0100
 * onwards in byte order. */
static int byte_char(int b)
{
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
		return b;
	int k = 0;
	for (int c = 0; c < b; c++)
		if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255)))
			k++;
	return 256 + k;
}

static int byte_of_char[256 + 68];
static pthread_once_t byte_of_char_once = PTHREAD_ONCE_INIT;

static void fill_byte_of_char(void)
{
	for (int i = 0; i < 256 + 68; i++)
		byte_of_char[i] = -1;
	for (int b = 0; b < 256; b++)
		byte_of_char[byte_char(b)] = b;
}

/* The byte a character stands for, or -1. */
static int char_byte(uint32_t cp)
{
	pthread_once(&byte_of_char_once, fill_byte_of_char);
	return cp < 256 + 68 ? byte_of_char[cp] : -1;
}

size_t duet_bytelevel_encode(const char *raw, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int c = byte_char((unsigned char)raw[i]);
		if (c < 0x80) {
			out[o++] = (char)c;
		} else {
			out[o++] = (char)(0xc0 | c >> 6);
			out[o++] = (char)(0x80 | (c & 0x3f));
		}
	}
	return o;
}

int duet_bytelevel_decode(const char *s, size_t n, char *out, size_t *n_out)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		uint32_t cp;
		if (c < 0x80) {
			cp = c;
			i++;
		} else if ((c & 0xe0) == 0xc0 && i + 1 < n && ((unsigned char)s[i + 1] & 0xc0) == 0x80) {
			cp = (uint32_t)(c & 0x1f) << 6 | ((unsigned char)s[i + 1] & 0x3f);
			i += 2;
		} else {
			return -1;
		}
		int b = char_byte(cp);
		if (b < 0)
			return -1;
		out[o++] = (char)b;
	}
	*n_out = o;
	return 0;
}

static uint64_t pair_key(int l, int r)
{
	return (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
}

int duet_bpe_merge_find(const struct duet_vocab *v, int l, int r, int *merged)
{
	uint64_t k = pair_key(l, r);
	uint32_t h = (uint32_t)XXH3_64bits(&k, sizeof k) & v->merge_mask;
	while (v->merge_rank[h] >= 0) {
		if (v->merge_key[h] == k) {
			*merged = v->merges[3 * v->merge_rank[h] + 2];
			return v->merge_rank[h];
		}
		h = (h + 1) & v->merge_mask;
	}
	return -1;
}

/* The id of a piece given in its GGUF (byte-level) spelling, or -1. */
static int find_spelled(const struct duet_vocab *v, const char *s, size_t n)
{
	char raw[DUET_VOCAB_MAX_PIECE];
	size_t rn;
	if (n > DUET_VOCAB_MAX_PIECE * 2 || duet_bytelevel_decode(s, n, raw, &rn))
		return duet_vocab_find(v, s, n);
	return duet_vocab_find(v, raw, rn);
}

int duet_vocab_bpe_merges(struct duet_vocab *v, int n_merges, const char *const *merges,
			  const uint32_t *lens, const char *path, struct duet_err *err)
{
	uint32_t cap = 1;
	while (cap < (uint32_t)n_merges * 2)
		cap <<= 1;
	v->merges = malloc(sizeof *v->merges * 3 * (size_t)(n_merges ? n_merges : 1));
	v->merge_key = malloc(sizeof *v->merge_key * cap);
	v->merge_rank = malloc(sizeof *v->merge_rank * cap);
	if (!v->merges || !v->merge_key || !v->merge_rank)
		return duet_errf(err, "%s: out of memory for %d merges", path, n_merges);
	for (uint32_t i = 0; i < cap; i++)
		v->merge_rank[i] = -1;
	v->merge_mask = cap - 1;
	v->n_merges = n_merges;
	for (int i = 0; i < n_merges; i++) {
		const char *m = merges[i];
		const char *sp = memchr(m, ' ', lens[i]);
		if (!sp || sp == m || sp == m + lens[i] - 1 || memchr(sp + 1, ' ', lens[i] - (size_t)(sp + 1 - m)))
			return duet_errf(err, "%s: merge %d '%.*s' is not two pieces separated by one space",
					 path, i, (int)(lens[i] > 80 ? 80 : lens[i]), m);
		size_t ln = (size_t)(sp - m), rn = lens[i] - ln - 1;
		int l = find_spelled(v, m, ln), r = find_spelled(v, sp + 1, rn);
		if (l < 0 || r < 0)
			return duet_errf(err, "%s: merge %d '%.*s' names '%.*s', which is not in the vocabulary",
					 path, i, (int)(lens[i] > 80 ? 80 : lens[i]), m,
					 (int)(l < 0 ? ln : rn), l < 0 ? m : sp + 1);
		char joined[2 * DUET_VOCAB_MAX_PIECE];
		if (v->len[l] + v->len[r] > sizeof joined)
			return duet_errf(err, "%s: merge %d makes a piece longer than %d bytes", path, i,
					 DUET_VOCAB_MAX_PIECE);
		memcpy(joined, duet_vocab_piece(v, l), v->len[l]);
		memcpy(joined + v->len[l], duet_vocab_piece(v, r), v->len[r]);
		int o = duet_vocab_find(v, joined, v->len[l] + v->len[r]);
		if (o < 0)
			return duet_errf(err, "%s: merge %d '%.*s' makes a piece that is not in the vocabulary",
					 path, i, (int)(lens[i] > 80 ? 80 : lens[i]), m);
		v->merges[3 * i] = l;
		v->merges[3 * i + 1] = r;
		v->merges[3 * i + 2] = o;
		uint64_t k = pair_key(l, r);
		uint32_t h = (uint32_t)XXH3_64bits(&k, sizeof k) & v->merge_mask;
		while (v->merge_rank[h] >= 0 && v->merge_key[h] != k)
			h = (h + 1) & v->merge_mask;
		if (v->merge_rank[h] < 0) { /* a repeated merge keeps its first rank */
			v->merge_key[h] = k;
			v->merge_rank[h] = i;
		}
	}
	return 0;
}

static int by_length_desc(const void *a, const void *b, void *vv)
{
	const struct duet_vocab *v = vv;
	int x = *(const int32_t *)a, y = *(const int32_t *)b;
	return v->len[x] != v->len[y] ? (v->len[x] > v->len[y] ? -1 : 1) : (x > y) - (x < y);
}

int duet_vocab_bpe_finish(struct duet_vocab *v, enum duet_bpe_pre pre, const char *path,
			  struct duet_err *err)
{
	v->bpe = 1;
	v->pre = pre;
	v->add_space_prefix = 0;
	/* Every byte is a token of its own in a byte-level vocabulary. */
	for (int b = 0; b < 256; b++) {
		char c = (char)b;
		v->byte_id[b] = duet_vocab_find(v, &c, 1);
		if (v->byte_id[b] < 0)
			return duet_errf(err, "%s: byte 0x%02x has no token; not a byte-level BPE vocabulary",
					 path, b);
	}
	/* Added tokens, longest first, so that a match is the longest one. */
	v->special = malloc(sizeof *v->special * (size_t)v->n);
	if (!v->special)
		return duet_errf(err, "%s: out of memory", path);
	v->n_special = 0;
	memset(v->special_first, 0, sizeof v->special_first);
	for (int i = 0; i < v->n; i++)
		if ((v->type[i] == DUET_TOK_CONTROL || v->type[i] == DUET_TOK_USER) && v->len[i] > 0) {
			v->special[v->n_special++] = i;
			unsigned char f = (unsigned char)duet_vocab_piece(v, i)[0];
			v->special_first[f / 8] |= (uint8_t)(1u << (f % 8));
		}
	qsort_r(v->special, (size_t)v->n_special, sizeof *v->special, by_length_desc, v);
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)PRES[pre].regex, PCRE2_ZERO_TERMINATED,
				       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo,
				       NULL);
	if (!re)
		return duet_errf(err, "%s: the %s pre-tokenizer does not compile (PCRE2 error %d)",
				 path, PRES[pre].name, ec);
	/* JIT where the platform has it; the interpreter otherwise. */
	(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	v->re = re;
	return 0;
}

void duet_vocab_bpe_free(struct duet_vocab *v)
{
	free(v->merges);
	free(v->merge_key);
	free(v->merge_rank);
	free(v->special);
	if (v->re)
		pcre2_code_free(v->re);
}

size_t duet_vocab_bpe_canonical(const char *s, size_t n, int type, char *out)
{
	size_t o;
	if (type == DUET_TOK_NORMAL && !duet_bytelevel_decode(s, n, out, &o))
		return o;
	/* Added tokens are stored as their text; a normal piece outside the
	 * byte table (none in real vocabularies) too. */
	memcpy(out, s, n);
	return n;
}
