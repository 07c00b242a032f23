#include "engine/tokenizer.h"
#include "engine/tokenizer_bpe.h"

#include <stdlib.h>
#include <string.h>

int duet_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	int len;
	unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the 2nd byte */
	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return -1; /* continuation byte or overlong 2-byte lead */
	if (c < 0xe0) {
		len = 2;
	} else if (c < 0xf0) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		else if (c == 0xed)
			hi = 0x9f; /* UTF-16 surrogates */
	} else if (c < 0xf5) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* beyond U+10FFFF */
	} else {
		return -1;
	}
	for (int i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return 0;
		unsigned char b = s[i];
		if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf))
			return -1;
	}
	return len;
}

/* ---- encoding ---- */

struct sym {
	int prev, next;
	size_t start, n;
};

struct bigram {
	float score;
	int left, right;
	size_t n; /* merged length when pushed; a mismatch later means stale */
};

struct heap {
	struct bigram *a;
	size_t n, cap;
};

/* Higher score first; on a tie the leftmost pair, as SentencePiece does. */
static int before(const struct bigram *x, const struct bigram *y)
{
	return x->score > y->score || (x->score == y->score && x->left < y->left);
}

static void heap_push(struct heap *h, struct bigram b)
{
	size_t i = h->n++;
	h->a[i] = b;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!before(&h->a[i], &h->a[p]))
			break;
		struct bigram t = h->a[i];
		h->a[i] = h->a[p];
		h->a[p] = t;
		i = p;
	}
}

static struct bigram heap_pop(struct heap *h)
{
	struct bigram top = h->a[0];
	h->a[0] = h->a[--h->n];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < h->n && before(&h->a[l], &h->a[m]))
			m = l;
		if (r < h->n && before(&h->a[r], &h->a[m]))
			m = r;
		if (m == i)
			break;
		struct bigram t = h->a[i];
		h->a[i] = h->a[m];
		h->a[m] = t;
		i = m;
	}
	return top;
}

static void try_pair(const struct duet_vocab *v, const char *s,
		     const struct sym *sy, int left, int right, struct heap *h)
{
	if (left < 0 || right < 0)
		return;
	size_t n = sy[left].n + sy[right].n;
	int id = duet_vocab_find(v, s + sy[left].start, n);
	if (id < 0)
		return;
	heap_push(h, (struct bigram){v->score[id], left, right, n});
}

int duet_tokenize(const struct duet_vocab *v, const char *text, size_t n,
		  int add_bos, int *out, size_t cap, size_t *n_out,
		  struct duet_err *err)
{
	if (v->bpe)
		return duet_bpe_tokenize(v, text, n, add_bos, out, cap, n_out, err);
	size_t k = 0;
	*n_out = 0;
	if (add_bos && v->add_bos) {
		if (cap < 1)
			return duet_errf(err, "tokenize: output has no room");
		out[k++] = v->bos;
	}
	if (n == 0) {
		*n_out = k;
		return 0;
	}
	/* Normalise: SentencePiece's dummy prefix; spaces are already the
	 * canonical word marker. */
	size_t pre = v->add_space_prefix ? 1 : 0;
	size_t len = n + pre;
	char *s = malloc(len);
	struct sym *sy = malloc(sizeof *sy * len);
	struct heap h = {malloc(sizeof *h.a * (len + 1) * 3), 0, (len + 1) * 3};
	if (!s || !sy || !h.a) {
		free(s);
		free(sy);
		free(h.a);
		return duet_errf(err, "tokenize: out of memory for %zu bytes of text", n);
	}
	if (pre)
		s[0] = ' ';
	memcpy(s + pre, text, n);

	/* One symbol per UTF-8 character; a byte that is not valid UTF-8 is a
	 * symbol of its own and will fall back to its byte token. */
	int ns = 0;
	for (size_t i = 0; i < len;) {
		int cl = duet_utf8_len((const unsigned char *)s + i, len - i);
		size_t c = cl > 0 ? (size_t)cl : 1;
		sy[ns] = (struct sym){ns - 1, ns + 1, i, c};
		ns++;
		i += c;
	}
	sy[ns - 1].next = -1;
	for (int i = 0; i + 1 < ns; i++)
		try_pair(v, s, sy, i, i + 1, &h);
	/* Each merge pushes at most two bigrams and removes a symbol, so the
	 * heap never holds more than 3 * len entries. */
	while (h.n) {
		struct bigram b = heap_pop(&h);
		struct sym *l = &sy[b.left], *r = &sy[b.right];
		if (l->n == 0 || r->n == 0 || l->n + r->n != b.n || l->next != b.right)
			continue;
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			sy[r->next].prev = b.left;
		try_pair(v, s, sy, l->prev, b.left, &h);
		try_pair(v, s, sy, b.left, l->next, &h);
	}
	int rc = 0;
	for (int i = 0; i >= 0 && i < ns; i = sy[i].next) {
		int id = duet_vocab_find(v, s + sy[i].start, sy[i].n);
		if (id >= 0) {
			if (k >= cap) {
				rc = duet_errf(err, "tokenize: more than %zu tokens", cap);
				break;
			}
			out[k++] = id;
			continue;
		}
		for (size_t j = 0; j < sy[i].n; j++) {
			int bid = v->byte_id[(unsigned char)s[sy[i].start + j]];
			if (bid < 0)
				bid = v->unk;
			if (k >= cap) {
				rc = duet_errf(err, "tokenize: more than %zu tokens", cap);
				break;
			}
			out[k++] = bid;
		}
		if (rc)
			break;
	}
	free(s);
	free(sy);
	free(h.a);
	*n_out = k;
	return rc;
}

/* ---- decoding ---- */

int duet_token_bytes(const struct duet_vocab *v, int id, char *buf)
{
	switch (v->type[id]) {
	case DUET_TOK_CONTROL:
	case DUET_TOK_UNUSED:
		return 0;
	case DUET_TOK_UNKNOWN:
		memcpy(buf, " \xe2\x81\x87 ", 5);
		return 5;
	case DUET_TOK_BYTE:
		for (int b = 0; b < 256; b++)
			if (v->byte_id[b] == id) {
				buf[0] = (char)b;
				return 1;
			}
		return 0;
	default:
		memcpy(buf, duet_vocab_piece(v, id), v->len[id]);
		return (int)v->len[id];
	}
}

void duet_detok_init(struct duet_detok *d, const struct duet_vocab *v, int at_start)
{
	d->v = v;
	d->strip_space = at_start && v->add_space_prefix;
	d->npend = 0;
}

static const char REPLACEMENT[] = "\xef\xbf\xbd";

int duet_detok_push(struct duet_detok *d, int id, char *out, size_t *n,
		    struct duet_err *err)
{
	*n = 0;
	if (id < 0 || id >= d->v->n)
		return duet_errf(err, "detokenize: token id %d outside the vocabulary of %d",
				 id, d->v->n);
	unsigned char buf[4 + DUET_VOCAB_MAX_PIECE + 8];
	memcpy(buf, d->pend, (size_t)d->npend);
	int len = d->npend;
	char piece[DUET_VOCAB_MAX_PIECE + 8];
	int pl = duet_token_bytes(d->v, id, piece);
	const char *p = piece;
	if (d->strip_space && pl > 0) {
		/* Only the first text-bearing token carries the dummy prefix. */
		if (d->v->type[id] == DUET_TOK_NORMAL || d->v->type[id] == DUET_TOK_USER) {
			if (p[0] == ' ') {
				p++;
				pl--;
			}
		}
		d->strip_space = 0;
	}
	memcpy(buf + len, p, (size_t)pl);
	len += pl;
	size_t o = 0;
	int i = 0;
	while (i < len) {
		int cl = duet_utf8_len(buf + i, (size_t)(len - i));
		if (cl > 0) {
			memcpy(out + o, buf + i, (size_t)cl);
			o += (size_t)cl;
			i += cl;
		} else if (cl == 0) {
			break; /* incomplete character: wait for more bytes */
		} else {
			memcpy(out + o, REPLACEMENT, 3);
			o += 3;
			i++;
		}
	}
	d->npend = len - i;
	memcpy(d->pend, buf + i, (size_t)d->npend);
	*n = o;
	return 0;
}

size_t duet_detok_flush(struct duet_detok *d, char *out)
{
	size_t o = 0;
	/* An incomplete prefix is one broken character. */
	if (d->npend) {
		memcpy(out, REPLACEMENT, 3);
		o = 3;
	}
	d->npend = 0;
	return o;
}

int duet_detokenize(const struct duet_vocab *v, const int *ids, size_t n,
		    char *out, size_t cap, size_t *n_out, struct duet_err *err)
{
	struct duet_detok d;
	char tmp[DUET_DETOK_MAX_OUT];
	size_t o = 0, k;
	duet_detok_init(&d, v, 1);
	for (size_t i = 0; i < n; i++) {
		if (duet_detok_push(&d, ids[i], tmp, &k, err))
			return -1;
		if (o + k + 1 > cap)
			return duet_errf(err, "detokenize: output does not fit in %zu bytes", cap);
		memcpy(out + o, tmp, k);
		o += k;
	}
	k = duet_detok_flush(&d, tmp);
	if (o + k + 1 > cap)
		return duet_errf(err, "detokenize: output does not fit in %zu bytes", cap);
	memcpy(out + o, tmp, k);
	o += k;
	out[o] = 0;
	*n_out = o;
	return 0;
}
