#include "engine/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/threadpool.h"
#include "engine/attention.h"
#include "engine/kern/kernels.h"
#include "engine/matmul.h"
#include "engine/repack.h"

#define DEFAULT_MAX_BATCH 512
/* Rows below which elementwise work stays on the calling thread: waking
 * the pool costs more than it saves. */
#define PARALLEL_ROWS 8

struct duet_engine {
	const struct duet_model *m;
	struct duet_kv_pool *kv;
	const struct duet_kernels *k;
	enum duet_qdot qdot;
	struct duet_threadpool *tp;
	struct duet_matmul mm;
	struct duet_attn attn;
	duet_layer_hook hook;
	void *hook_ctx;
	int max_T;
	/* activations, [max_T, width] each */
	float *x, *xb, *q, *kx, *vx, *att, *hb, *hb2;
	float *rope_cos, *rope_sin; /* [max_T, head_dim/2] */
	int *pos, *row_seq;	     /* per row: position, sequence index */
	/* rows that need logits */
	float *lx;
	float *logits;
	size_t logits_cap;
};

struct duet_kv_geom duet_kv_geom_for(const struct duet_model *m, int block_tokens,
				     enum duet_kv_dtype dtype)
{
	struct duet_kv_geom g = {m->cfg.n_layers, m->cfg.n_kv_heads, m->cfg.head_dim,
				 block_tokens > 0 ? block_tokens : DUET_KV_BLOCK_TOKENS, dtype};
	return g;
}

static float *alloc_f(size_t n)
{
	return aligned_alloc(64, ((sizeof(float) * n + 63) / 64) * 64);
}

void duet_engine_destroy(struct duet_engine *e)
{
	if (!e)
		return;
	duet_attn_free(&e->attn);
	duet_matmul_free(&e->mm);
	duet_threadpool_destroy(e->tp);
	free(e->x);
	free(e->xb);
	free(e->q);
	free(e->kx);
	free(e->vx);
	free(e->att);
	free(e->hb);
	free(e->hb2);
	free(e->rope_cos);
	free(e->rope_sin);
	free(e->pos);
	free(e->row_seq);
	free(e->lx);
	free(e->logits);
	free(e);
}

int duet_engine_create(struct duet_engine **out, const struct duet_model *m,
		       struct duet_kv_pool *kv, const struct duet_engine_opts *o,
		       struct duet_err *err)
{
	*out = NULL;
	const struct duet_config *c = &m->cfg;
	struct duet_kv_geom g = duet_kv_geom_for(m, kv->g.block_tokens, kv->g.dtype);
	if (kv->g.n_layers != g.n_layers || kv->g.n_kv_heads != g.n_kv_heads ||
	    kv->g.head_dim != g.head_dim)
		return duet_errf(err, "engine: KV pool geometry (%d layers x %d heads x %d) does not match the model (%d x %d x %d)",
				 kv->g.n_layers, kv->g.n_kv_heads, kv->g.head_dim, g.n_layers,
				 g.n_kv_heads, g.head_dim);
	struct duet_engine *e = calloc(1, sizeof *e);
	if (!e)
		return duet_errf(err, "engine: out of memory");
	e->m = m;
	e->kv = kv;
	e->k = o && o->kernels ? duet_kernels_named(o->kernels) : duet_kernels();
	if (!e->k) {
		free(e);
		return duet_errf(err, "engine: kernels '%s' are unknown or unsupported by this CPU",
				 o->kernels);
	}
	int threads = o && o->n_threads > 0 ? o->n_threads : duet_cpu_count();
	e->max_T = o && o->max_batch_tokens > 0 ? o->max_batch_tokens : DEFAULT_MAX_BATCH;
	duet_blas_single_thread();
	if (duet_threadpool_create(&e->tp, threads, o ? o->cpus : NULL, o ? o->n_cpus : 0, err))
		goto fail;
	int max_cols = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
	if (duet_q_dim(c) > max_cols)
		max_cols = duet_q_dim(c);
	e->qdot = o ? o->qdot : DUET_QDOT_INT8;
	if (duet_matmul_init(&e->mm, e->tp, e->k, e->qdot, e->max_T, max_cols, err) ||
	    duet_attn_init(&e->attn, e->tp, e->k, kv, c, err))
		goto fail;
	size_t T = (size_t)e->max_T;
	int kvd = duet_kv_dim(&g);
	e->x = alloc_f(T * c->dim);
	e->xb = alloc_f(T * c->dim);
	e->q = alloc_f(T * (size_t)duet_q_dim(c));
	e->kx = alloc_f(T * kvd);
	e->vx = alloc_f(T * kvd);
	e->att = alloc_f(T * (size_t)duet_q_dim(c));
	e->hb = alloc_f(T * c->hidden_dim);
	e->hb2 = alloc_f(T * c->hidden_dim);
	e->rope_cos = alloc_f(T * (c->head_dim / 2));
	e->rope_sin = alloc_f(T * (c->head_dim / 2));
	e->pos = malloc(sizeof(int) * T);
	e->row_seq = malloc(sizeof(int) * T);
	e->lx = alloc_f(T * c->dim);
	if (!e->x || !e->xb || !e->q || !e->kx || !e->vx || !e->att || !e->hb || !e->hb2 ||
	    !e->rope_cos || !e->rope_sin || !e->pos || !e->row_seq || !e->lx) {
		duet_errf(err, "engine: out of memory for a batch of %d tokens", e->max_T);
		goto fail;
	}
	*out = e;
	return 0;
fail:
	duet_engine_destroy(e);
	return -1;
}

void duet_engine_set_hook(struct duet_engine *e, duet_layer_hook hook, void *ctx)
{
	e->hook = hook;
	e->hook_ctx = ctx;
}

int duet_engine_threads(const struct duet_engine *e)
{
	return duet_threadpool_threads(e->tp);
}

int duet_engine_max_batch(const struct duet_engine *e)
{
	return e->max_T;
}

const char *duet_engine_kernels(const struct duet_engine *e)
{
	return e->k->name;
}

enum duet_qdot duet_engine_qdot(const struct duet_engine *e)
{
	return e->qdot;
}

const char *duet_qdot_name(enum duet_qdot q)
{
	return q == DUET_QDOT_EXACT ? "exact" : "int8";
}

int duet_qdot_parse(const char *s, enum duet_qdot *out)
{
	if (!strcmp(s, "int8"))
		*out = DUET_QDOT_INT8;
	else if (!strcmp(s, "exact"))
		*out = DUET_QDOT_EXACT;
	else
		return -1;
	return 0;
}

/* ---- elementwise steps, parallel over rows when there are many ---- */

enum rows_op { OP_EMBED, OP_RMSNORM, OP_ROPE, OP_SILU };

struct rows_args {
	struct duet_engine *e;
	enum rows_op op;
	int T;
	const float *norm_w;
	const float *src;
	float *dst;
	const int *tokens;
	const struct duet_layer *L; /* OP_ROPE: its Q/K/V biases */
};

/* Rotates pair i of each head by angle i: the pairs are adjacent values
 * (2i, 2i + 1) in Llama files (their converter permutes Q and K for it),
 * and values i and i + head_dim / 2 in Qwen's (the NeoX layout). */
static void rope_row(const struct duet_engine *e, float *v, int n_heads, int t)
{
	int hd = e->m->cfg.head_dim, half = hd / 2;
	int neox = e->m->cfg.arch != DUET_ARCH_LLAMA;
	int stride = neox ? 1 : 2, other = neox ? half : 1;
	const float *cs = e->rope_cos + (size_t)t * half, *sn = e->rope_sin + (size_t)t * half;
	for (int h = 0; h < n_heads; h++) {
		float *x = v + (size_t)h * hd;
		for (int i = 0; i < half; i++) {
			float *p = x + stride * i;
			float a = p[0], b = p[other];
			p[0] = a * cs[i] - b * sn[i];
			p[other] = a * sn[i] + b * cs[i];
		}
	}
}

static void rows_range(struct rows_args *a, long t0, long t1)
{
	struct duet_engine *e = a->e;
	const struct duet_config *c = &e->m->cfg;
	int kvd = c->n_kv_heads * c->head_dim;
	for (long t = t0; t < t1; t++) {
		switch (a->op) {
		case OP_EMBED: {
			const struct duet_tensor *te = &e->m->tok_embd;
			float *dst = e->x + t * c->dim;
			if (!duet_tensor_row_packed(te, a->tokens[t])) {
				duet_kernels_cvt(e->k, te->type, duet_tensor_row(te, a->tokens[t]),
						 dst, c->dim);
				break;
			}
			/* a classifier tied to the embedding is packed with it */
			const int V = duet_r16_values(te->type);
			for (int i = 0; i < c->dim / V; i++) {
				uint8_t blk[DUET_R16_MAX_BLOCK];
				duet_r16_block(te, a->tokens[t], i, blk);
				duet_kernels_cvt(e->k, te->type, blk, dst + i * V, V);
			}
			break;
		}
		case OP_RMSNORM:
			e->k->rmsnorm(a->dst + t * c->dim, a->src + t * c->dim, a->norm_w,
				      c->dim, c->rms_eps);
			break;
		case OP_ROPE: {
			/* Qwen2's biases and Qwen3's per-head norms go on before
			 * the rotation. */
			int qd = duet_q_dim(c), hd = c->head_dim;
			float *q = e->q + t * qd, *k = e->kx + t * kvd;
			if (a->L->bq) {
				e->k->axpy(1.0f, a->L->bq, q, qd);
				e->k->axpy(1.0f, a->L->bk, k, kvd);
				e->k->axpy(1.0f, a->L->bv, e->vx + t * kvd, kvd);
			}
			if (a->L->q_norm) {
				for (int h = 0; h < c->n_heads; h++)
					e->k->rmsnorm(q + h * hd, q + h * hd, a->L->q_norm, hd, c->rms_eps);
				for (int h = 0; h < c->n_kv_heads; h++)
					e->k->rmsnorm(k + h * hd, k + h * hd, a->L->k_norm, hd, c->rms_eps);
			}
			rope_row(e, q, c->n_heads, (int)t);
			rope_row(e, k, c->n_kv_heads, (int)t);
			break;
		}
		case OP_SILU:
			e->k->silu_mul(e->hb + t * c->hidden_dim, e->hb2 + t * c->hidden_dim,
				       c->hidden_dim);
			break;
		}
	}
}

static void rows_worker(void *arg, int ith, int nth)
{
	struct rows_args *a = arg;
	long t0, t1;
	duet_split(a->T, ith, nth, 1, &t0, &t1);
	rows_range(a, t0, t1);
}

static void rows_run(struct duet_engine *e, struct rows_args *a)
{
	a->e = e;
	if (a->T < PARALLEL_ROWS)
		rows_range(a, 0, a->T);
	else
		duet_threadpool_run(e->tp, rows_worker, a);
}

/* cos and sin of every row's rotation angles. Angles are computed in double
 * so that positions far into the context lose no precision. */
static void rope_tables(struct duet_engine *e, int T)
{
	const struct duet_config *c = &e->m->cfg;
	int half = c->head_dim / 2;
	for (int t = 0; t < T; t++) {
		double p = (double)e->pos[t] / (double)c->rope_scale;
		for (int i = 0; i < half; i++) {
			double f = pow((double)c->rope_base, -2.0 * i / (double)c->head_dim);
			if (e->m->rope_freqs)
				f /= (double)e->m->rope_freqs[i];
			e->rope_cos[(size_t)t * half + i] = (float)cos(p * f);
			e->rope_sin[(size_t)t * half + i] = (float)sin(p * f);
		}
	}
}

static int check_batch(struct duet_engine *e, struct duet_fwd_seq *seqs, int n_seqs,
		       int *T_out, struct duet_err *err)
{
	const struct duet_config *c = &e->m->cfg;
	long T = 0;
	if (n_seqs < 1)
		return duet_errf(err, "forward: empty batch");
	for (int s = 0; s < n_seqs; s++) {
		const struct duet_fwd_seq *q = &seqs[s];
		if (q->n_tokens < 1)
			return duet_errf(err, "forward: sequence %d has %d new tokens", s, q->n_tokens);
		if ((long)q->kv->n_tokens + q->n_tokens > c->ctx_len)
			return duet_errf(err, "forward: sequence %d would reach %ld positions, past the context of %d",
					 s, (long)q->kv->n_tokens + q->n_tokens, c->ctx_len);
		if (q->logits_mode != DUET_LOGITS_NONE && !q->logits)
			return duet_errf(err, "forward: sequence %d wants logits but has no buffer", s);
		for (int i = 0; i < q->n_tokens; i++)
			if (q->tokens[i] < 0 || q->tokens[i] >= c->vocab_size)
				return duet_errf(err, "forward: sequence %d token %d is %d, outside the vocabulary of %d",
						 s, i, q->tokens[i], c->vocab_size);
		for (int o = 0; o < s; o++)
			if (seqs[o].kv == q->kv)
				return duet_errf(err, "forward: sequences %d and %d share one KV cache", o, s);
		T += q->n_tokens;
	}
	if (T > e->max_T)
		return duet_errf(err, "forward: batch of %ld tokens exceeds the engine's %d", T, e->max_T);
	*T_out = (int)T;
	return 0;
}

/* All-or-nothing block reservation, so a short pool fails the batch before
 * any state changes. */
static int reserve_blocks(struct duet_engine *e, struct duet_fwd_seq *seqs, int n_seqs,
			  struct duet_err *err)
{
	long need = 0;
	for (int s = 0; s < n_seqs; s++) {
		int want = duet_kv_blocks_for(&e->kv->g, (long)seqs[s].kv->n_tokens + seqs[s].n_tokens);
		if (want > seqs[s].kv->n_blocks)
			need += want - seqs[s].kv->n_blocks;
	}
	if (need > e->kv->n_free)
		return duet_errf(err, "KV pool exhausted: the batch needs %ld more blocks, %d free of %d",
				 need, e->kv->n_free, e->kv->n_blocks);
	for (int s = 0; s < n_seqs; s++)
		if (duet_kv_seq_reserve(e->kv, seqs[s].kv, seqs[s].kv->n_tokens + seqs[s].n_tokens, err))
			return -1;
	return 0;
}

/* The new positions' K and V into the cache, in its row type. */
static void write_kv(struct duet_engine *e, int layer, struct duet_fwd_seq *seqs,
		     int n_seqs)
{
	const struct duet_kv_geom *g = &e->kv->g;
	int kvd = duet_kv_dim(g), row = 0;
	for (int s = 0; s < n_seqs; s++) {
		const struct duet_fwd_seq *q = &seqs[s];
		int p0 = q->kv->n_tokens;
		for (int i = 0; i < q->n_tokens; i++) {
			size_t off = (size_t)(row + i) * kvd;
			duet_kv_row_put(g->dtype, g->n_kv_heads, g->head_dim, e->kx + off,
					duet_kv_row(e->kv, layer, 0, q->kv, p0 + i));
			duet_kv_row_put(g->dtype, g->n_kv_heads, g->head_dim, e->vx + off,
					duet_kv_row(e->kv, layer, 1, q->kv, p0 + i));
		}
		row += q->n_tokens;
	}
}

static void attention(struct duet_engine *e, int layer, struct duet_fwd_seq *seqs,
		      int n_seqs)
{
	const struct duet_config *c = &e->m->cfg;
	const struct duet_kv_seq *single_seq[DUET_ATTN_TILE];
	int single_pos[DUET_ATTN_TILE], single_row[DUET_ATTN_TILE];
	int ns = 0, row = 0;
	for (int s = 0; s < n_seqs; s++) {
		struct duet_fwd_seq *q = &seqs[s];
		int p0 = q->kv->n_tokens;
		if (q->n_tokens == 1 || q->decode_rows) {
			/* (the rows' K and V are all in the cache: each row
			 * attends up to its own position) */
			for (int i = 0; i < q->n_tokens; i++) {
				single_seq[ns] = q->kv;
				single_pos[ns] = p0 + i;
				single_row[ns] = row + i;
				if (++ns == DUET_ATTN_TILE) {
					duet_attn_single(&e->attn, layer, single_seq, single_pos,
							 single_row, ns, e->q, e->att);
					ns = 0;
				}
			}
		} else {
			duet_attn_rows(&e->attn, layer, q->kv, p0, q->n_tokens,
				       e->q + (size_t)row * duet_q_dim(c), e->att + (size_t)row * duet_q_dim(c));
		}
		row += q->n_tokens;
	}
	if (ns)
		duet_attn_single(&e->attn, layer, single_seq, single_pos, single_row, ns, e->q,
				 e->att);
}

static int call_hooks(struct duet_engine *e, int layer, struct duet_fwd_seq *seqs,
		      int n_seqs, struct duet_err *err)
{
	int kvd = duet_kv_dim(&e->kv->g), row = 0;
	for (int s = 0; s < n_seqs; s++) {
		const struct duet_fwd_seq *q = &seqs[s];
		if (e->hook(e->hook_ctx, layer, q, q->kv->n_tokens, q->n_tokens,
			    e->kx + (size_t)row * kvd, e->vx + (size_t)row * kvd, kvd, err))
			return -1;
		row += q->n_tokens;
	}
	return 0;
}

static int compute_logits(struct duet_engine *e, struct duet_fwd_seq *seqs, int n_seqs,
			  struct duet_err *err)
{
	const struct duet_config *c = &e->m->cfg;
	int n = 0, row = 0;
	for (int s = 0; s < n_seqs; s++) {
		const struct duet_fwd_seq *q = &seqs[s];
		int first = q->logits_mode == DUET_LOGITS_ALL ? 0 : q->n_tokens - 1;
		if (q->logits_mode != DUET_LOGITS_NONE)
			for (int i = first; i < q->n_tokens; i++)
				memcpy(e->lx + (size_t)n++ * c->dim, e->x + (size_t)(row + i) * c->dim,
				       sizeof(float) * (size_t)c->dim);
		row += q->n_tokens;
	}
	if (!n)
		return 0;
	size_t need = (size_t)n * (size_t)c->vocab_size;
	if (need > e->logits_cap) {
		free(e->logits);
		e->logits = alloc_f(need);
		if (!e->logits) {
			e->logits_cap = 0;
			return duet_errf(err, "forward: out of memory for %d rows of logits", n);
		}
		e->logits_cap = need;
	}
	struct rows_args norm = {.op = OP_RMSNORM, .T = n, .norm_w = e->m->out_norm,
				 .src = e->lx, .dst = e->lx};
	rows_run(e, &norm);
	struct duet_matmul_job j = {&e->m->output, e->lx, n, e->logits, 0};
	duet_matmul_run(&e->mm, &j, 1);
	n = 0;
	for (int s = 0; s < n_seqs; s++) {
		const struct duet_fwd_seq *q = &seqs[s];
		int cnt = q->logits_mode == DUET_LOGITS_ALL ? q->n_tokens
			  : q->logits_mode == DUET_LOGITS_LAST ? 1
							       : 0;
		memcpy(q->logits, e->logits + (size_t)n * c->vocab_size,
		       sizeof(float) * (size_t)cnt * (size_t)c->vocab_size);
		n += cnt;
	}
	return 0;
}

int duet_forward(struct duet_engine *e, struct duet_fwd_seq *seqs, int n_seqs,
		 struct duet_err *err)
{
	const struct duet_model *m = e->m;
	const struct duet_config *c = &m->cfg;
	int T = 0;
	if (check_batch(e, seqs, n_seqs, &T, err))
		return -1;
	int max_pos = 0;
	for (int s = 0, t = 0; s < n_seqs; s++) {
		for (int i = 0; i < seqs[s].n_tokens; i++, t++) {
			e->pos[t] = seqs[s].kv->n_tokens + i;
			e->row_seq[t] = s;
		}
		if (seqs[s].kv->n_tokens + seqs[s].n_tokens > max_pos)
			max_pos = seqs[s].kv->n_tokens + seqs[s].n_tokens;
	}
	if (duet_attn_reserve(&e->attn, max_pos, err) || reserve_blocks(e, seqs, n_seqs, err))
		return -1;
	rope_tables(e, T);

	/* Token rows, concatenated in batch order. */
	int *tokens = malloc(sizeof(int) * (size_t)T);
	if (!tokens)
		return duet_errf(err, "forward: out of memory");
	for (int s = 0, t = 0; s < n_seqs; s++)
		for (int i = 0; i < seqs[s].n_tokens; i++)
			tokens[t++] = seqs[s].tokens[i];
	struct rows_args embed = {.op = OP_EMBED, .T = T, .tokens = tokens};
	rows_run(e, &embed);
	free(tokens);

	int rc = 0;
	for (int l = 0; l < c->n_layers && !rc; l++) {
		const struct duet_layer *L = &m->layers[l];
		struct rows_args norm = {.op = OP_RMSNORM, .T = T, .norm_w = L->attn_norm,
					 .src = e->x, .dst = e->xb};
		rows_run(e, &norm);
		struct duet_matmul_job qkv[3] = {
			{&L->wq, e->xb, T, e->q, 0},
			{&L->wk, e->xb, T, e->kx, 0},
			{&L->wv, e->xb, T, e->vx, 0},
		};
		duet_matmul_run(&e->mm, qkv, 3);
		struct rows_args rope = {.op = OP_ROPE, .T = T, .L = L};
		rows_run(e, &rope);
		write_kv(e, l, seqs, n_seqs);
		if (e->hook && (rc = call_hooks(e, l, seqs, n_seqs, err)))
			break;
		attention(e, l, seqs, n_seqs);
		struct duet_matmul_job wo = {&L->wo, e->att, T, e->x, 1};
		duet_matmul_run(&e->mm, &wo, 1);

		struct rows_args norm2 = {.op = OP_RMSNORM, .T = T, .norm_w = L->ffn_norm,
					  .src = e->x, .dst = e->xb};
		rows_run(e, &norm2);
		struct duet_matmul_job ffn[2] = {
			{&L->w_gate, e->xb, T, e->hb, 0},
			{&L->w_up, e->xb, T, e->hb2, 0},
		};
		duet_matmul_run(&e->mm, ffn, 2);
		struct rows_args silu = {.op = OP_SILU, .T = T};
		rows_run(e, &silu);
		struct duet_matmul_job down = {&L->w_down, e->hb, T, e->x, 1};
		duet_matmul_run(&e->mm, &down, 1);
	}
	if (!rc)
		rc = compute_logits(e, seqs, n_seqs, err);
	if (rc)
		return -1; /* KV positions are not advanced: the call had no effect */
	for (int s = 0; s < n_seqs; s++)
		seqs[s].kv->n_tokens += seqs[s].n_tokens;
	return 0;
}
