/* Byte-level BPE encoding (Llama 3, Qwen): added tokens are found first
 * and never split; the text between them is normalized (NFC for Qwen),
 * cut by the family's pre-tokenizer regex, and each piece's bytes are
 * merged pair by pair, lowest merge rank first (leftmost among equals),
 * as Hugging Face tokenizers does. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "engine/tokenizer.h"
#include "engine/tokenizer_bpe.h"

struct out {
	int *ids;
	size_t n, cap;
};

static int emit(struct out *o, int id, struct duet_err *err)
{
	if (o->n >= o->cap)
		return duet_errf(err, "tokenize: more than %zu tokens", o->cap);
	o->ids[o->n++] = id;
	return 0;
}

/* A candidate merge of the symbol at pos with the next one. */
struct cand {
	int rank, pos, l, r;
};

static int cand_less(const struct cand *a, const struct cand *b)
{
	return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(struct cand *h, int *n, struct cand c)
{
	int i = (*n)++;
	while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = c;
}

static struct cand heap_pop(struct cand *h, int *n)
{
	struct cand top = h[0], last = h[--*n];
	int i = 0;
	for (;;) {
		int c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && cand_less(&h[c + 1], &h[c]))
			c++;
		if (!cand_less(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = last;
	return top;
}

struct work {
	int *id, *prev, *next;
	struct cand *heap;
	size_t cap;
};

static int work_reserve(struct work *w, size_t n, struct duet_err *err)
{
	if (n <= w->cap)
		return 0;
	size_t cap = n < 64 ? 64 : n;
	int *id = realloc(w->id, sizeof *id * cap);
	if (id)
		w->id = id;
	int *prev = realloc(w->prev, sizeof *prev * cap);
	if (prev)
		w->prev = prev;
	int *next = realloc(w->next, sizeof *next * cap);
	if (next)
		w->next = next;
	/* every merge adds at most two candidates to the n - 1 at the start */
	struct cand *heap = realloc(w->heap, sizeof *heap * 3 * cap);
	if (heap)
		w->heap = heap;
	if (!id || !prev || !next || !heap)
		return duet_errf(err, "tokenize: out of memory for a piece of %zu bytes", n);
	w->cap = cap;
	return 0;
}

static void try_merge(const struct duet_vocab *v, struct work *w, int *hn, int pos)
{
	if (pos < 0 || w->next[pos] < 0)
		return;
	int nx = w->next[pos];
	int merged, rank = duet_bpe_merge_find(v, w->id[pos], w->id[nx], &merged);
	if (rank >= 0)
		heap_push(w->heap, hn, (struct cand){rank, pos, w->id[pos], w->id[nx]});
}

/* One pre-tokenized piece of raw bytes. */
static int encode_piece(const struct duet_vocab *v, const unsigned char *s, size_t n,
			struct work *w, struct out *o, struct duet_err *err)
{
	if (n == 0)
		return 0;
	/* Llama 3's tokenizer takes a piece that is a token whole, whatever
	 * the merges would make of it (ignore_merges). */
	if (v->pre == DUET_PRE_LLAMA3) {
		int id = duet_vocab_find(v, (const char *)s, n);
		if (id >= 0 && v->type[id] == DUET_TOK_NORMAL)
			return emit(o, id, err);
	}
	if (work_reserve(w, n, err))
		return -1;
	int hn = 0;
	for (size_t i = 0; i < n; i++) {
		w->id[i] = v->byte_id[s[i]];
		w->prev[i] = (int)i - 1;
		w->next[i] = i + 1 < n ? (int)i + 1 : -1;
	}
	for (size_t i = 0; i + 1 < n; i++)
		try_merge(v, w, &hn, (int)i);
	while (hn > 0) {
		struct cand c = heap_pop(w->heap, &hn);
		int nx = w->next[c.pos];
		/* stale: a side was merged away or into something else since */
		if (w->id[c.pos] != c.l || nx < 0 || w->id[nx] != c.r)
			continue;
		int merged;
		duet_bpe_merge_find(v, c.l, c.r, &merged);
		w->id[c.pos] = merged;
		w->id[nx] = -1;
		w->next[c.pos] = w->next[nx];
		if (w->next[nx] >= 0)
			w->prev[w->next[nx]] = c.pos;
		try_merge(v, w, &hn, w->prev[c.pos]);
		try_merge(v, w, &hn, c.pos);
	}
	for (int i = 0; i >= 0; i = w->next[i])
		if (emit(o, w->id[i], err))
			return -1;
	return 0;
}

/* Text between added tokens: normalized, pre-tokenized, merged. */
static int encode_text(const struct duet_vocab *v, const char *text, size_t n,
		       pcre2_match_data *md, struct work *w, struct out *o, struct duet_err *err)
{
	if (n == 0)
		return 0;
	unsigned char *norm = NULL;
	const unsigned char *s = (const unsigned char *)text;
	if (v->pre == DUET_PRE_QWEN2) {
		/* NFC; text that is not UTF-8 is left as it is (its bytes are
		 * tokens all the same). */
		utf8proc_ssize_t r = utf8proc_map(s, (utf8proc_ssize_t)n, &norm,
						  UTF8PROC_STABLE | UTF8PROC_COMPOSE);
		if (r >= 0) {
			s = norm;
			n = (size_t)r;
		} else {
			norm = NULL;
		}
	}
	const pcre2_code *re = v->re;
	size_t at = 0;
	int rc = 0;
	while (at < n && !rc) {
		int m = pcre2_match(re, s, n, at, 0, md, NULL);
		if (m < 0) {
			/* no more matches (or bytes that are not UTF-8, which
			 * never match): the rest is one piece */
			rc = encode_piece(v, s + at, n - at, w, o, err);
			break;
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		if (ov[0] > at)
			rc = encode_piece(v, s + at, ov[0] - at, w, o, err);
		if (!rc)
			rc = encode_piece(v, s + ov[0], ov[1] - ov[0], w, o, err);
		/* An empty match cannot happen with these patterns; step over
		 * one byte if it ever did. */
		at = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
	}
	free(norm);
	return rc;
}

/* The longest added token at text + i, or -1. */
static int special_at(const struct duet_vocab *v, const char *text, size_t n, size_t i)
{
	unsigned char f = (unsigned char)text[i];
	if (!(v->special_first[f / 8] & (1u << (f % 8))))
		return -1;
	for (int k = 0; k < v->n_special; k++) {
		int id = v->special[k];
		size_t l = v->len[id];
		if (l <= n - i && !memcmp(text + i, duet_vocab_piece(v, id), l))
			return id;
	}
	return -1;
}

int duet_bpe_tokenize(const struct duet_vocab *v, const char *text, size_t n, int add_bos,
		      int *ids, size_t cap, size_t *n_out, struct duet_err *err)
{
	struct out o = {ids, 0, cap};
	*n_out = 0;
	if (add_bos && v->add_bos && v->bos >= 0 && emit(&o, v->bos, err))
		return -1;
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	struct work w = {0};
	if (!md)
		return duet_errf(err, "tokenize: out of memory");
	int rc = 0;
	size_t start = 0;
	for (size_t i = 0; i < n && !rc;) {
		int id = special_at(v, text, n, i);
		if (id < 0) {
			i++;
			continue;
		}
		rc = encode_text(v, text + start, i - start, md, &w, &o, err);
		if (!rc)
			rc = emit(&o, id, err);
		i += v->len[id];
		start = i;
	}
	if (!rc)
		rc = encode_text(v, text + start, n - start, md, &w, &o, err);
	pcre2_match_data_free(md);
	free(w.id);
	free(w.prev);
	free(w.next);
	free(w.heap);
	if (!rc)
		*n_out = o.n;
	return rc;
}
