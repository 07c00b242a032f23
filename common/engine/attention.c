#include "engine/attention.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int duet_attn_init(struct duet_attn *a, struct duet_threadpool *tp,
		   const struct duet_kernels *k, const struct duet_kv_pool *kv,
		   const struct duet_config *cfg, struct duet_err *err)
{
	memset(a, 0, sizeof *a);
	a->tp = tp;
	a->k = k;
	a->kv = kv;
	a->n_heads = cfg->n_heads;
	a->n_kv_heads = cfg->n_kv_heads;
	a->head_dim = cfg->head_dim;
	a->scale = 1.0f / sqrtf((float)cfg->head_dim);
	int nt = duet_threadpool_threads(tp);
	a->scores = calloc((size_t)nt, sizeof *a->scores);
	a->stage = calloc((size_t)nt, sizeof *a->stage);
	if (!a->scores || !a->stage)
		return duet_errf(err, "attention: out of memory");
	for (int i = 0; i < nt; i++) {
		int rows = DUET_ATTN_UNIT_Q > cfg->n_heads / cfg->n_kv_heads
				   ? DUET_ATTN_UNIT_Q
				   : cfg->n_heads / cfg->n_kv_heads;
		a->stage[i] = malloc(sizeof(float) * 2 * (size_t)rows * (size_t)cfg->head_dim);
		if (!a->stage[i])
			return duet_errf(err, "attention: out of memory");
	}
	return 0;
}

void duet_attn_free(struct duet_attn *a)
{
	for (int i = 0; i < duet_threadpool_threads(a->tp); i++) {
		if (a->scores)
			free(a->scores[i]);
		if (a->stage)
			free(a->stage[i]);
	}
	free(a->scores);
	free(a->stage);
	free(a->part);
	free(a->lse);
	memset(a, 0, sizeof *a);
}

/* Rows of scores (each as long as the positions) a thread holds: a
 * prefill unit's query rows x heads, or at least one KV head's query
 * heads. */
static int score_rows(const struct duet_attn *a)
{
	int hpg = a->n_heads / a->n_kv_heads;
	return DUET_ATTN_UNIT_Q > hpg ? DUET_ATTN_UNIT_Q : hpg;
}

/* Positions per span: DUET_ATTN_SPAN rounded up to whole cache blocks. */
static int span_positions(const struct duet_attn *a)
{
	int bt = a->kv->g.block_tokens;
	return (DUET_ATTN_SPAN + bt - 1) / bt * bt;
}

int duet_attn_reserve(struct duet_attn *a, int positions, struct duet_err *err)
{
	size_t need = (size_t)score_rows(a) * (size_t)positions;
	if (need > a->scores_cap) {
		for (int i = 0; i < duet_threadpool_threads(a->tp); i++) {
			float *p = realloc(a->scores[i], sizeof(float) * need);
			if (!p)
				return duet_errf(err, "attention: out of memory for %d positions", positions);
			a->scores[i] = p;
		}
		a->scores_cap = need;
	}
	int span = span_positions(a);
	size_t spans = (size_t)(positions + span - 1) / (size_t)span;
	if (spans > DUET_ATTN_MAX_SPANS)
		return duet_errf(err, "attention: %d positions is more than %d spans of %d", positions,
				 DUET_ATTN_MAX_SPANS, span);
	if (spans > a->part_spans) {
		size_t qd = (size_t)a->n_heads * (size_t)a->head_dim;
		size_t part_n = DUET_ATTN_TILE * (spans - 1) * qd;
		float *part = realloc(a->part, sizeof(float) * (part_n ? part_n : 1));
		if (part)
			a->part = part;
		float *lse = realloc(a->lse, sizeof(float) * DUET_ATTN_TILE * spans * (size_t)a->n_heads);
		if (lse)
			a->lse = lse;
		if (!part || !lse)
			return duet_errf(err, "attention: out of memory for %zu spans of %d positions", spans,
					 span);
		a->part_spans = spans;
	}
	return 0;
}

/* Head g of the rows of one cache block, positions [p, p + n). */
static struct duet_kv_rows block_rows(const struct duet_attn *a, int layer, int which,
				      const struct duet_kv_seq *seq, int p, int g)
{
	const struct duet_kv_pool *kv = a->kv;
	const struct duet_kv_geom *kg = &kv->g;
	const uint8_t *row = duet_kv_row(kv, layer, which, seq, p);
	const uint8_t *head = duet_kv_row_head(kg->dtype, kg->head_dim, row, g);
	/* int8: the head's scale sits after every head's values */
	long scale_off = (long)((size_t)kg->n_kv_heads * kg->head_dim + sizeof(float) * (size_t)g) -
			 (long)(head - row);
	return (struct duet_kv_rows){head, kv->row_bytes, kg->head_dim, kg->dtype, scale_off};
}

/* The cache block `ahead` blocks after the one at position p (of a
 * sequence part that ends at `end`), to prefetch while the block at p is
 * read: its first row (NULL when there is none, or the rows are f32) and
 * its rows (*n). From memory the f16 and int8 passes ran at half the
 * bandwidth or less without the prefetch, a head's rows being 16 short
 * runs a row apart; f32 rows, which the kernels read without converting,
 * ran 16% slower with it (BENCHMARKS.md, 2026-12-06 third). */
static const uint8_t *next_block(const struct duet_attn *a, int layer, int which,
				 const struct duet_kv_seq *seq, int p, int end, int ahead, int *n)
{
	const struct duet_kv_geom *kg = &a->kv->g;
	int next = p + ahead * kg->block_tokens;
	*n = 0;
	if (next >= end || kg->dtype == DUET_KV_F32)
		return NULL;
	*n = end - next < kg->block_tokens ? end - next : kg->block_tokens;
	return duet_kv_row(a->kv, layer, which, seq, next);
}

/* Asks for head g's part of n rows from `first` (next_block's; nothing
 * when NULL) into L1 (locality 3) or L2 (1). Inlined on purpose: GCC takes
 * a function whose only effect is a prefetch for one without effects, and
 * drops its calls. */
static inline __attribute__((always_inline)) void
prefetch_head(const struct duet_attn *a, const uint8_t *first, int n, int g, const int locality)
{
	if (!first)
		return;
	const struct duet_kv_geom *kg = &a->kv->g;
	const uint8_t *lo = duet_kv_row_head(kg->dtype, kg->head_dim, first, g);
	const uint8_t *hi = duet_kv_row_head(kg->dtype, kg->head_dim, first, g + 1);
	/* Into L2 one line of each 128 bytes: the L2's pair prefetcher brings
	 * the other (tinyllama heads, batch 8: 21.7-22.5 -> 23.7-23.8 GB/s);
	 * into L1 every line (one of two: half the speed). */
	const size_t step = locality == 3 ? 64 : 128;
	for (int i = 0; i < n; i++)
		for (const uint8_t *l = lo; l < hi; l += step)
			if (locality == 3)
				__builtin_prefetch(l + (size_t)i * a->kv->row_bytes, 0, 3);
			else
				__builtin_prefetch(l + (size_t)i * a->kv->row_bytes, 0, 1);
}

/* Prefetches head g of the blocks after the one at p: the next into L1,
 * and for grouped heads the one after into L2 (batches of 8
 * tinyllama-shaped sequences at 2048 positions: 20.5-20.9 -> 22.5-22.7
 * GB/s). A head read by one query head does too little work per block to
 * pay for the second set of prefetches (stories110m, one sequence at 1024
 * positions: 61-63 -> 53-55 GB/s with them; BENCHMARKS.md, 2026-12-06
 * fourth). */
struct ahead {
	const uint8_t *next, *far;
	int n_next, n_far;
};

static struct ahead look_ahead(const struct duet_attn *a, int layer, int which,
			       const struct duet_kv_seq *seq, int p, int end)
{
	struct ahead h;
	h.next = next_block(a, layer, which, seq, p, end, 1, &h.n_next);
	h.far = NULL;
	h.n_far = 0;
	if (a->n_heads > a->n_kv_heads)
		h.far = next_block(a, layer, which, seq, p, end, 2, &h.n_far);
	return h;
}

static inline __attribute__((always_inline)) void
prefetch_ahead(const struct duet_attn *a, const struct ahead *h, int g)
{
	prefetch_head(a, h->next, h->n_next, g, 3);
	prefetch_head(a, h->far, h->n_far, g, 1);
}

/* ---- many rows of one sequence (a prefill chunk) ---- */

struct rows_args {
	struct duet_attn *a;
	int layer;
	const struct duet_kv_seq *s;
	int p0, n;
	const float *q;
	float *out;
	int unit_rows, groups; /* query rows per unit, units per KV head */
	atomic_int next;
};

/* The first of a unit's rows (from chunk row r0) whose keys reach
 * position p: row i sees positions up to p0 + i. */
static int first_row(const struct rows_args *r, int r0, int p)
{
	int i = p - r->p0 - r0;
	return i > 0 ? i : 0;
}

/* Query rows [r0, r1) of the chunk with every head of KV head g, read in
 * place from the cache blocks, once for all of them: the kernels convert
 * a block's rows once and run the unit's query rows in register tiles.
 * Copying the whole context to f32 for sgemm instead cost a pass over it
 * per chunk and layer, and left the products at 70-250 GFLOP/s of two
 * cores (BENCHMARKS.md, 2026-12-08 second). */
static void rows_unit(struct rows_args *r, int unit, float *sc, float *stage)
{
	const struct duet_attn *a = r->a;
	int hd = a->head_dim, qd = a->n_heads * hd, bt = a->kv->g.block_tokens;
	int hpg = a->n_heads / a->n_kv_heads;
	/* a KV head's units one after another, so that its blocks stay in
	 * the caches; the last rows first, as they see the most keys */
	int g = unit / r->groups, r0 = (r->groups - 1 - unit % r->groups) * r->unit_rows;
	int r1 = r0 + r->unit_rows < r->n ? r0 + r->unit_rows : r->n;
	int nq = (r1 - r0) * hpg, S = r->p0 + r1;
	float *qs = stage, *os = stage + (size_t)nq * hd;
	for (int i = r0; i < r1; i++)
		memcpy(qs + (size_t)(i - r0) * hpg * hd, r->q + (size_t)i * qd + (size_t)g * hpg * hd,
		       sizeof(float) * (size_t)(hpg * hd));
	/* Causal: the block at p is seen only by the rows from first_row(p)
	 * on (the rows before end at or before it); their scores there are
	 * zeroed below and their products skipped. */
	for (int p = 0; p < S; p += bt) {
		struct ahead ah = look_ahead(a, r->layer, 0, r->s, p, S);
		prefetch_ahead(a, &ah, g);
		struct duet_kv_rows k = block_rows(a, r->layer, 0, r->s, p, g);
		int j0 = first_row(r, r0, p) * hpg;
		a->k->attn_qk(qs + (size_t)j0 * hd, nq - j0, &k, S - p < bt ? S - p : bt, a->scale,
			      sc + (size_t)j0 * S + p, (size_t)S);
	}
	for (int j = 0; j < nq; j++) {
		int vis = r->p0 + r0 + j / hpg + 1; /* causal */
		float *row = sc + (size_t)j * S;
		a->k->softmax(row, vis);
		memset(row + vis, 0, sizeof(float) * (size_t)(S - vis));
	}
	memset(os, 0, sizeof(float) * (size_t)nq * hd);
	for (int p = 0; p < S; p += bt) {
		struct ahead ah = look_ahead(a, r->layer, 1, r->s, p, S);
		prefetch_ahead(a, &ah, g);
		struct duet_kv_rows v = block_rows(a, r->layer, 1, r->s, p, g);
		int j0 = first_row(r, r0, p) * hpg;
		a->k->attn_av(sc + (size_t)j0 * S + p, (size_t)S, nq - j0, &v,
			      S - p < bt ? S - p : bt, os + (size_t)j0 * hd);
	}
	for (int i = r0; i < r1; i++)
		memcpy(r->out + (size_t)i * qd + (size_t)g * hpg * hd, os + (size_t)(i - r0) * hpg * hd,
		       sizeof(float) * (size_t)(hpg * hd));
}

static void rows_worker(void *arg, int ith, int nth)
{
	(void)nth;
	struct rows_args *r = arg;
	for (;;) {
		int u = atomic_fetch_add(&r->next, 1);
		if (u >= r->groups * r->a->n_kv_heads)
			break;
		rows_unit(r, u, r->a->scores[ith], r->a->stage[ith]);
	}
}

void duet_attn_rows(struct duet_attn *a, int layer, const struct duet_kv_seq *s,
		    int p0, int n, const float *q, float *out)
{
	int hpg = a->n_heads / a->n_kv_heads;
	int rows = DUET_ATTN_UNIT_Q > hpg ? DUET_ATTN_UNIT_Q / hpg : 1;
	struct rows_args r = {.a = a, .layer = layer, .s = s, .p0 = p0, .n = n, .q = q,
			      .out = out, .unit_rows = rows, .groups = (n + rows - 1) / rows};
	atomic_init(&r.next, 0);
	duet_threadpool_run(a->tp, rows_worker, &r);
}

/* ---- one row each of many sequences (decode) ---- */

struct single_args {
	struct duet_attn *a;
	int layer;
	const struct duet_kv_seq *const *seqs;
	const int *pos, *rows;
	int n;
	const float *q;
	float *out;
	int span;		       /* positions per span */
	int unit_heads, seq_units;     /* KV heads per unit, head groups */
	int first[DUET_ATTN_TILE + 1]; /* sequence i's units: [first[i], first[i + 1]) */
	atomic_int next;
};

static int spans_of(const struct single_args *s, int i)
{
	return (s->pos[i] + 1 + s->span - 1) / s->span;
}

/* Where span c of sequence i leaves its result: the output row for the
 * first span, a slot of a->part for the others. */
static float *span_out(const struct single_args *s, int i, int c)
{
	const struct duet_attn *a = s->a;
	size_t qd = (size_t)a->n_heads * a->head_dim;
	if (c == 0)
		return s->out + (size_t)s->rows[i] * qd;
	return a->part + ((size_t)i * (a->part_spans - 1) + (size_t)(c - 1)) * qd;
}

/* KV heads [g0, g1) of one sequence over one span of its positions, a
 * cache block at a time: the heads' values lie side by side in each row,
 * so a unit of several heads reads each block's rows as one run where a
 * unit per head read a few lines out of every row (stories110m, f16, 1k
 * positions: 7.5 GB/s of KV from memory; BENCHMARKS.md, 2026-12-05
 * ninth). Each K and V row of a head is read (and converted) once for all
 * the query heads that share it. */
static void single_unit(struct single_args *s, int unit, float *sc)
{
	const struct duet_attn *a = s->a;
	int hd = a->head_dim, hpg = a->n_heads / a->n_kv_heads, bt = a->kv->g.block_tokens;
	int i = 0;
	while (unit >= s->first[i + 1])
		i++;
	int r = unit - s->first[i], c = r / s->seq_units, g0 = r % s->seq_units * s->unit_heads;
	int g1 = g0 + s->unit_heads < a->n_kv_heads ? g0 + s->unit_heads : a->n_kv_heads;
	const struct duet_kv_seq *seq = s->seqs[i];
	int npos = s->pos[i] + 1, p0 = c * s->span;
	int p1 = p0 + s->span < npos ? p0 + s->span : npos, len = p1 - p0;
	const float *q = s->q + (size_t)s->rows[i] * a->n_heads * hd;
	float *out = span_out(s, i, c);
	/* scores of head (g, h): sc[((g - g0) * hpg + h) * len ..] */
	for (int p = p0; p < p1; p += bt) {
		int n = p1 - p < bt ? p1 - p : bt;
		struct ahead ah = look_ahead(a, s->layer, 0, seq, p, p1);
		for (int g = g0; g < g1; g++) {
			prefetch_ahead(a, &ah, g);
			struct duet_kv_rows k = block_rows(a, s->layer, 0, seq, p, g);
			a->k->attn_qk(q + (size_t)g * hpg * hd, hpg, &k, n, a->scale,
				      sc + (size_t)(g - g0) * hpg * len + (p - p0), (size_t)len);
		}
	}
	float *lse = a->lse + ((size_t)i * a->part_spans + (size_t)c) * a->n_heads;
	for (int h = 0; h < (g1 - g0) * hpg; h++)
		lse[g0 * hpg + h] = a->k->softmax(sc + (size_t)h * len, len);
	memset(out + (size_t)g0 * hpg * hd, 0, sizeof(float) * (size_t)(g1 - g0) * hpg * hd);
	for (int p = p0; p < p1; p += bt) {
		int n = p1 - p < bt ? p1 - p : bt;
		struct ahead ah = look_ahead(a, s->layer, 1, seq, p, p1);
		for (int g = g0; g < g1; g++) {
			prefetch_ahead(a, &ah, g);
			struct duet_kv_rows v = block_rows(a, s->layer, 1, seq, p, g);
			a->k->attn_av(sc + (size_t)(g - g0) * hpg * len + (p - p0), (size_t)len, hpg, &v,
				      n, out + (size_t)g * hpg * hd);
		}
	}
}

static void single_worker(void *arg, int ith, int nth)
{
	(void)nth;
	struct single_args *s = arg;
	for (;;) {
		int u = atomic_fetch_add(&s->next, 1);
		if (u >= s->first[s->n])
			break;
		single_unit(s, u, s->a->scores[ith]);
	}
}

/* Head groups: enough units (spans x groups) that every thread has two to
 * take (one short sequence still uses every core), no more (each split
 * makes the rows' runs shorter); as many heads per unit as a thread's
 * scores hold. */
static void single_split(const struct duet_attn *a, struct single_args *s)
{
	int hpg = a->n_heads / a->n_kv_heads, spans = 0, len = 1;
	for (int i = 0; i < s->n; i++) {
		spans += spans_of(s, i);
		if (s->pos[i] + 1 > len)
			len = s->pos[i] + 1;
	}
	len = len < s->span ? len : s->span;
	int want = (2 * duet_threadpool_threads(a->tp) + spans - 1) / spans;
	want = want < a->n_kv_heads ? want : a->n_kv_heads;
	int heads = (a->n_kv_heads + want - 1) / want;
	int fit = (int)(a->scores_cap / ((size_t)hpg * (size_t)len));
	s->unit_heads = heads < fit ? heads : fit;
	s->seq_units = (a->n_kv_heads + s->unit_heads - 1) / s->unit_heads;
	s->first[0] = 0;
	for (int i = 0; i < s->n; i++)
		s->first[i + 1] = s->first[i] + spans_of(s, i) * s->seq_units;
}

/* Sequence i's spans into its output row: each span's softmax was over its
 * own positions, so span c's result counts exp(lse_c) / sum of exp(lse). */
static void merge_spans(const struct single_args *s, int i)
{
	const struct duet_attn *a = s->a;
	int spans = spans_of(s, i), hd = a->head_dim;
	const float *lse = a->lse + (size_t)i * a->part_spans * a->n_heads;
	float *out = span_out(s, i, 0);
	for (int h = 0; h < a->n_heads; h++) {
		float mx = lse[h];
		for (int c = 1; c < spans; c++)
			mx = lse[(size_t)c * a->n_heads + h] > mx ? lse[(size_t)c * a->n_heads + h] : mx;
		float w[DUET_ATTN_MAX_SPANS], sum = 0;
		for (int c = 0; c < spans; c++)
			sum += w[c] = expf(lse[(size_t)c * a->n_heads + h] - mx);
		float *o = out + (size_t)h * hd;
		for (int j = 0; j < hd; j++)
			o[j] *= w[0] / sum;
		for (int c = 1; c < spans; c++)
			a->k->axpy(w[c] / sum, span_out(s, i, c) + (size_t)h * hd, o, hd);
	}
}

void duet_attn_single(struct duet_attn *a, int layer,
		      const struct duet_kv_seq *const *seqs, const int *pos,
		      const int *rows, int n, const float *q, float *out)
{
	/* the span slots (duet_attn_reserve) and the units' table hold
	 * DUET_ATTN_TILE sequences */
	for (; n > DUET_ATTN_TILE; n -= DUET_ATTN_TILE) {
		duet_attn_single(a, layer, seqs, pos, rows, DUET_ATTN_TILE, q, out);
		seqs += DUET_ATTN_TILE, pos += DUET_ATTN_TILE, rows += DUET_ATTN_TILE;
	}
	struct single_args s = {.a = a, .layer = layer, .seqs = seqs, .pos = pos,
				.rows = rows, .n = n, .q = q, .out = out,
				.span = span_positions(a)};
	single_split(a, &s);
	atomic_init(&s.next, 0);
	duet_threadpool_run(a->tp, single_worker, &s);
	for (int i = 0; i < n; i++)
		if (spans_of(&s, i) > 1)
			merge_spans(&s, i);
}
