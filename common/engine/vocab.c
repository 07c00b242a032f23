#include "engine/vocab.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/mapfile.h"
#include "engine/vocab_impl.h"

static const char SPM_SPACE[] = "\xe2\x96\x81"; /* U+2581 */

int duet_vocab_alloc(struct duet_vocab *v, int n, size_t arena_bytes)
{
	memset(v, 0, sizeof *v);
	v->n = n;
	v->arena = malloc(arena_bytes ? arena_bytes : 1);
	v->off = calloc((size_t)n, sizeof *v->off);
	v->len = calloc((size_t)n, sizeof *v->len);
	v->score = calloc((size_t)n, sizeof *v->score);
	v->type = calloc((size_t)n, sizeof *v->type);
	return v->arena && v->off && v->len && v->score && v->type ? 0 : -1;
}

void duet_vocab_free(struct duet_vocab *v)
{
	free(v->arena);
	free(v->off);
	free(v->len);
	free(v->score);
	free(v->type);
	free(v->map);
	duet_vocab_bpe_free(v);
	memset(v, 0, sizeof *v);
}

static int parse_byte_piece(const char *p, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	if (n != 6 || memcmp(p, "<0x", 3) || p[5] != '>')
		return -1;
	const char *h = strchr(hex, p[3]), *l = strchr(hex, p[4]);
	if (!h || !l || !p[3] || !p[4])
		return -1;
	return (int)((h - hex) * 16 + (l - hex));
}

static uint64_t piece_hash(const char *s, size_t n)
{
	return XXH3_64bits(s, n);
}

/* Fills the byte table and the piece map, and checks the special ids. */
int duet_vocab_index(struct duet_vocab *v, const char *path, struct duet_err *err)
{
	for (int b = 0; b < 256; b++)
		v->byte_id[b] = -1;
	uint32_t cap = 1;
	while (cap < (uint32_t)v->n * 2)
		cap <<= 1;
	v->map = malloc(sizeof *v->map * cap);
	if (!v->map)
		return duet_errf(err, "%s: out of memory building the vocabulary", path);
	for (uint32_t i = 0; i < cap; i++)
		v->map[i] = -1;
	v->map_mask = cap - 1;
	for (int i = 0; i < v->n; i++) {
		const char *p = duet_vocab_piece(v, i);
		if ((int)v->len[i] > v->max_piece_len)
			v->max_piece_len = (int)v->len[i];
		if (v->type[i] == DUET_TOK_BYTE) {
			int b = parse_byte_piece(p, v->len[i]);
			if (b < 0)
				return duet_errf(err, "%s: token %d is marked as a byte but its piece is not <0xNN>",
						 path, i);
			if (v->byte_id[b] < 0)
				v->byte_id[b] = i;
			continue;
		}
		if (v->type[i] != DUET_TOK_NORMAL && v->type[i] != DUET_TOK_USER)
			continue;
		uint32_t h = (uint32_t)piece_hash(p, v->len[i]) & v->map_mask;
		while (v->map[h] >= 0) {
			int j = v->map[h];
			/* A repeated piece keeps its first id, as SentencePiece
			 * does; real vocabularies have none. */
			if (v->len[j] == v->len[i] && !memcmp(duet_vocab_piece(v, j), p, v->len[i]))
				break;
			h = (h + 1) & v->map_mask;
		}
		if (v->map[h] < 0)
			v->map[h] = i;
	}
	/* End of generation: EOS, then the end-of-turn control tokens. */
	static const char *const eot_text[] = {"<|eot_id|>", "<|eom_id|>", "<|im_end|>",
					       "<|end|>", "<end_of_turn>", "<|endoftext|>"};
	v->n_eog = 0;
	if (v->eos >= 0 && v->eos < v->n)
		v->eog[v->n_eog++] = v->eos;
	for (size_t k = 0; k < sizeof eot_text / sizeof eot_text[0]; k++) {
		int id = duet_vocab_find_special(v, eot_text[k]);
		if (id >= 0 && id != v->eos && v->type[id] == DUET_TOK_CONTROL &&
		    v->n_eog < DUET_VOCAB_MAX_EOG)
			v->eog[v->n_eog++] = id;
	}
	/* A BPE vocabulary that adds no BOS may have none (Qwen). */
	int bos_ok = v->bos >= 0 ? v->bos < v->n : v->bpe && !v->add_bos;
	if (!bos_ok || v->eos < 0 || v->eos >= v->n)
		return duet_errf(err, "%s: BOS id %d or EOS id %d is outside the vocabulary of %d tokens",
				 path, v->bos, v->eos, v->n);
	if (v->unk >= v->n)
		return duet_errf(err, "%s: unknown-token id %d is outside the vocabulary of %d tokens",
				 path, v->unk, v->n);
	return 0;
}

int duet_vocab_find_special(const struct duet_vocab *v, const char *s)
{
	size_t n = strlen(s);
	for (int i = 0; i < v->n; i++)
		if ((v->type[i] == DUET_TOK_CONTROL || v->type[i] == DUET_TOK_USER) && v->len[i] == n &&
		    !memcmp(duet_vocab_piece(v, i), s, n))
			return i;
	return -1;
}

int duet_vocab_is_eog(const struct duet_vocab *v, int id)
{
	for (int i = 0; i < v->n_eog; i++)
		if (v->eog[i] == id)
			return 1;
	return 0;
}

int duet_vocab_find(const struct duet_vocab *v, const char *s, size_t n)
{
	uint32_t h = (uint32_t)piece_hash(s, n) & v->map_mask;
	while (v->map[h] >= 0) {
		int j = v->map[h];
		if (v->len[j] == n && !memcmp(duet_vocab_piece(v, j), s, n))
			return j;
		h = (h + 1) & v->map_mask;
	}
	return -1;
}

/* Copies src into dst replacing U+2581 with a space; returns bytes written. */
static size_t spm_to_canonical(char *dst, const char *src, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		if (i + 3 <= n && !memcmp(src + i, SPM_SPACE, 3)) {
			dst[o++] = ' ';
			i += 3;
		} else {
			dst[o++] = src[i++];
		}
	}
	return o;
}

int duet_vocab_gguf_piece(const struct duet_vocab *v, int id, char *buf, size_t cap)
{
	const char *p = duet_vocab_piece(v, id);
	if (v->bpe) {
		if (v->type[id] != DUET_TOK_NORMAL) {
			if (v->len[id] > cap)
				return -1;
			memcpy(buf, p, v->len[id]);
			return (int)v->len[id];
		}
		if (2 * (size_t)v->len[id] > cap)
			return -1;
		return (int)duet_bytelevel_encode(p, v->len[id], buf);
	}
	size_t o = 0;
	for (uint32_t i = 0; i < v->len[id]; i++) {
		if (p[i] == ' ') {
			if (o + 3 > cap)
				return -1;
			memcpy(buf + o, SPM_SPACE, 3);
			o += 3;
		} else {
			if (o + 1 > cap)
				return -1;
			buf[o++] = p[i];
		}
	}
	return (int)o;
}

/* Types for a source without them: Llama's SentencePiece layout has the
 * unknown, BOS and EOS tokens as given and byte pieces spelled <0xNN>. */
static void infer_types(struct duet_vocab *v)
{
	for (int i = 0; i < v->n; i++) {
		if (i == v->unk)
			v->type[i] = DUET_TOK_UNKNOWN;
		else if (i == v->bos || i == v->eos)
			v->type[i] = DUET_TOK_CONTROL;
		else if (parse_byte_piece(duet_vocab_piece(v, i), v->len[i]) >= 0)
			v->type[i] = DUET_TOK_BYTE;
		else
			v->type[i] = DUET_TOK_NORMAL;
	}
}

/* tokenizer.ggml.merges (validated strings) to the merge table. */
static int gguf_merges(struct duet_vocab *v, const struct duet_gguf_kv *merges, const char *path,
		       struct duet_err *err)
{
	int n = (int)merges->arr_n;
	const char **p = malloc(sizeof *p * (size_t)(n ? n : 1));
	uint32_t *len = malloc(sizeof *len * (size_t)(n ? n : 1));
	if (!p || !len) {
		free(p);
		free(len);
		return duet_errf(err, "%s: out of memory for %d merges", path, n);
	}
	const uint8_t *cur = merges->data;
	for (int i = 0; i < n; i++) {
		struct duet_gguf_str s = duet_gguf_next_str(&cur);
		p[i] = s.ptr;
		len[i] = s.len > UINT32_MAX ? UINT32_MAX : (uint32_t)s.len;
	}
	int rc = duet_vocab_bpe_merges(v, n, p, len, path, err);
	free(p);
	free(len);
	return rc;
}

int duet_vocab_from_gguf(struct duet_vocab *v, const struct duet_gguf *g,
			 struct duet_err *err)
{
	const char *path = g->path;
	struct duet_gguf_str model;
	const struct duet_gguf_kv *tokens, *scores = NULL, *types = NULL;
	memset(v, 0, sizeof *v);
	if (duet_gguf_get_str(g, "tokenizer.ggml.model", 1, &model, err))
		return -1;
	int bpe = duet_gguf_str_eq(model, "gpt2");
	if (!bpe && !duet_gguf_str_eq(model, "llama")) {
		char m[64];
		size_t n = model.len < sizeof m - 1 ? (size_t)model.len : sizeof m - 1;
		memcpy(m, model.ptr, n);
		m[n] = 0;
		return duet_errf(err, "%s: tokenizer.ggml.model is '%s'; duet reads SentencePiece ('llama') and byte-level BPE ('gpt2') vocabularies",
				 path, m);
	}
	enum duet_bpe_pre pre = DUET_PRE_LLAMA3;
	const struct duet_gguf_kv *merges = NULL;
	if (bpe) {
		struct duet_gguf_str ps;
		if (duet_gguf_get_str(g, "tokenizer.ggml.pre", 1, &ps, err))
			return -1;
		if (duet_bpe_pre_parse(ps.ptr, ps.len, &pre))
			return duet_errf(err, "%s: tokenizer.ggml.pre is '%.*s'; duet knows 'llama-bpe' (Llama 3) and 'qwen2'",
					 path, (int)(ps.len > 64 ? 64 : ps.len), ps.ptr);
		if (duet_gguf_get_arr(g, "tokenizer.ggml.merges", 1, DUET_GGUF_STRING, &merges, err))
			return -1;
		if (merges->arr_n > DUET_VOCAB_MAX_TOKENS * 4ull)
			return duet_errf(err, "%s: tokenizer.ggml.merges has %llu entries", path,
					 (unsigned long long)merges->arr_n);
	}
	if (duet_gguf_get_arr(g, "tokenizer.ggml.tokens", 1, DUET_GGUF_STRING, &tokens, err))
		return -1;
	if (tokens->arr_n == 0 || tokens->arr_n > DUET_VOCAB_MAX_TOKENS)
		return duet_errf(err, "%s: tokenizer.ggml.tokens has %llu entries (expected 1 to %d)",
				 path, (unsigned long long)tokens->arr_n, DUET_VOCAB_MAX_TOKENS);
	int n = (int)tokens->arr_n;
	if (duet_gguf_get_arr(g, "tokenizer.ggml.scores", 0, DUET_GGUF_F32, &scores, err) < 0 ||
	    duet_gguf_get_arr(g, "tokenizer.ggml.token_type", 0, DUET_GGUF_I32, &types, err) < 0)
		return -1;
	if (scores && scores->arr_n != (uint64_t)n)
		return duet_errf(err, "%s: tokenizer.ggml.scores has %llu entries but there are %d tokens",
				 path, (unsigned long long)scores->arr_n, n);
	if (types && types->arr_n != (uint64_t)n)
		return duet_errf(err, "%s: tokenizer.ggml.token_type has %llu entries but there are %d tokens",
				 path, (unsigned long long)types->arr_n, n);
	/* The string array was validated by the parser; its byte span bounds
	 * the arena (the canonical form is never longer). */
	const uint8_t *cur = tokens->data;
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		struct duet_gguf_str s = duet_gguf_next_str(&cur);
		if (s.len > DUET_VOCAB_MAX_PIECE)
			return duet_errf(err, "%s: token %d is %llu bytes long (limit %d)",
					 path, i, (unsigned long long)s.len, DUET_VOCAB_MAX_PIECE);
		total += s.len + 1;
	}
	if (duet_vocab_alloc(v, n, total)) {
		duet_vocab_free(v);
		return duet_errf(err, "%s: out of memory for %d tokens", path, n);
	}
	if (types) {
		for (int i = 0; i < n; i++) {
			int32_t t;
			memcpy(&t, types->data + 4 * (size_t)i, 4);
			if (t < DUET_TOK_NORMAL || t > DUET_TOK_BYTE) {
				duet_errf(err, "%s: token %d has unknown type %d", path, i, t);
				goto fail;
			}
			v->type[i] = (uint8_t)t;
		}
	} else if (bpe) {
		memset(v->type, DUET_TOK_NORMAL, (size_t)n);
	}
	v->bpe = bpe;
	cur = tokens->data;
	size_t o = 0;
	for (int i = 0; i < n; i++) {
		struct duet_gguf_str s = duet_gguf_next_str(&cur);
		v->off[i] = (uint32_t)o;
		v->len[i] = (uint32_t)(bpe ? duet_vocab_bpe_canonical(s.ptr, s.len, v->type[i], v->arena + o)
				       : spm_to_canonical(v->arena + o, s.ptr, s.len));
		o += v->len[i];
		v->arena[o++] = 0;
		if (scores)
			memcpy(&v->score[i], scores->data + 4 * (size_t)i, 4);
	}
	uint32_t id;
	int r;
	v->bos = 1;
	v->eos = 2;
	v->unk = 0;
	if ((r = duet_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", 0, &id, err)) < 0)
		goto fail;
	if (!r)
		v->bos = id > INT32_MAX ? -1 : (int)id;
	if ((r = duet_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", 0, &id, err)) < 0)
		goto fail;
	if (!r)
		v->eos = id > INT32_MAX ? -1 : (int)id;
	if ((r = duet_gguf_get_u32(g, "tokenizer.ggml.unknown_token_id", 0, &id, err)) < 0)
		goto fail;
	if (!r)
		v->unk = id > INT32_MAX ? -1 : (int)id;
	if (!types && !bpe)
		infer_types(v);
	v->add_bos = 1;
	v->add_space_prefix = !bpe;
	if (bpe) {
		/* Byte-level BPE files name their BOS only when they use one. */
		v->unk = -1;
		if (!duet_gguf_find(g, "tokenizer.ggml.bos_token_id"))
			v->bos = -1;
		v->add_bos = v->bos >= 0;
	}
	const struct duet_gguf_kv *kv;
	if ((kv = duet_gguf_find(g, "tokenizer.ggml.add_bos_token")) && kv->type == DUET_GGUF_BOOL)
		v->add_bos = kv->data[0] != 0;
	if ((kv = duet_gguf_find(g, "tokenizer.ggml.add_space_prefix")) && kv->type == DUET_GGUF_BOOL)
		v->add_space_prefix = kv->data[0] != 0;
	if (duet_vocab_index(v, path, err))
		goto fail;
	if (bpe && gguf_merges(v, merges, path, err))
		goto fail;
	if (bpe && duet_vocab_bpe_finish(v, pre, path, err))
		goto fail;
	return 0;
fail:
	duet_vocab_free(v);
	return -1;
}

int duet_vocab_from_llama2c(struct duet_vocab *v, const void *data, size_t size,
			    int expect_n, const char *path, struct duet_err *err)
{
	const uint8_t *p = data, *end = p + size;
	int32_t max_len;
	memset(v, 0, sizeof *v);
	if (size < 4)
		return duet_errf(err, "%s: tokenizer file is %zu bytes, too short", path, size);
	memcpy(&max_len, p, 4);
	p += 4;
	if (max_len <= 0 || max_len > DUET_VOCAB_MAX_PIECE)
		return duet_errf(err, "%s: tokenizer max_token_length = %d (expected 1 to %d)",
				 path, max_len, DUET_VOCAB_MAX_PIECE);
	/* First pass: count entries and check every length against the file. */
	int n = 0;
	size_t total = 0;
	const uint8_t *q = p;
	while (q < end && (expect_n < 0 || n < expect_n)) {
		int32_t len;
		if (end - q < 8)
			return duet_errf(err, "%s: tokenizer entry %d is truncated at offset %zu",
					 path, n, (size_t)(q - (const uint8_t *)data));
		memcpy(&len, q + 4, 4);
		if (len < 0 || len > max_len)
			return duet_errf(err, "%s: tokenizer entry %d has length %d (max_token_length %d)",
					 path, n, len, max_len);
		if (end - q - 8 < len)
			return duet_errf(err, "%s: tokenizer entry %d is truncated at offset %zu",
					 path, n, (size_t)(q - (const uint8_t *)data));
		q += 8 + len;
		total += (size_t)len + 1;
		if (++n > DUET_VOCAB_MAX_TOKENS)
			return duet_errf(err, "%s: tokenizer has more than %d entries", path,
					 DUET_VOCAB_MAX_TOKENS);
	}
	if (expect_n >= 0 && n < expect_n)
		return duet_errf(err, "%s: tokenizer has %d entries but the model's vocabulary has %d",
				 path, n, expect_n);
	if (q != end)
		return duet_errf(err, "%s: %zu bytes left after %d tokenizer entries (the model's vocabulary has %d tokens)",
				 path, (size_t)(end - q), n, n);
	if (n < 3)
		return duet_errf(err, "%s: tokenizer has %d entries; a Llama vocabulary needs at least <unk>, <s>, </s>",
				 path, n);
	if (duet_vocab_alloc(v, n, total)) {
		duet_vocab_free(v);
		return duet_errf(err, "%s: out of memory for %d tokens", path, n);
	}
	size_t o = 0;
	for (int i = 0; i < n; i++) {
		int32_t len;
		memcpy(&v->score[i], p, 4);
		memcpy(&len, p + 4, 4);
		v->off[i] = (uint32_t)o;
		v->len[i] = (uint32_t)len;
		memcpy(v->arena + o, p + 8, (size_t)len);
		o += (size_t)len;
		v->arena[o++] = 0;
		p += 8 + len;
	}
	/* llama2.c's fixed layout: run.c hard-codes BOS = 1 and EOS = 2. */
	v->unk = 0;
	v->bos = 1;
	v->eos = 2;
	v->add_bos = 1;
	v->add_space_prefix = 1;
	/* llama2.c's exporter spells BOS and EOS "\n<s>\n" and "\n</s>\n"; keep
	 * the canonical "<s>" of every other source. */
	for (int i = 1; i <= 2; i++) {
		char *pc = v->arena + v->off[i];
		uint32_t len = v->len[i];
		if (len > 2 && pc[0] == '\n' && pc[len - 1] == '\n') {
			memmove(pc, pc + 1, len - 2);
			pc[len - 2] = 0;
			v->len[i] = len - 2;
		}
	}
	infer_types(v);
	if (duet_vocab_index(v, path, err)) {
		duet_vocab_free(v);
		return -1;
	}
	return 0;
}

int duet_vocab_load_file(struct duet_vocab *v, const char *path, struct duet_err *err)
{
	void *p;
	size_t size;
	if (duet_map_file(path, &p, &size, err))
		return -1;
	if (size < 4) {
		duet_unmap_file(p, size);
		return duet_errf(err, "%s: not a vocabulary file (too short)", path);
	}
	int rc;
	uint32_t magic;
	memcpy(&magic, p, 4);
	if (magic == DUET_GGUF_MAGIC) {
		struct duet_gguf g;
		rc = duet_gguf_parse(&g, p, size, path, err);
		if (!rc) {
			rc = duet_vocab_from_gguf(v, &g, err);
			duet_gguf_free(&g);
		}
	} else {
		rc = duet_vocab_from_llama2c(v, p, size, -1, path, err);
	}
	duet_unmap_file(p, size);
	return rc;
}
