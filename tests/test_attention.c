/* Decode attention (duet_attn_single) against a plain double-precision
 * attention over the rows as the cache stores them, for sequences shorter
 * and longer than a span (DUET_ATTN_SPAN), whose parts' softmaxes are
 * merged, in a call of more sequences than DUET_ATTN_TILE; and one
 * sequence's result the same bits whatever the batch it comes in and the
 * threads that run it. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/kvrow.h"
#include "base/threadpool.h"
#include "engine/attention.h"
#include "engine/kvcache.h"

/* Lengths around the span's edges, in the first six sequences and again
 * in the last six; short ones between, so that one call carries more
 * sequences than DUET_ATTN_TILE (the call runs them in turns). */
#define N_SEQS (DUET_ATTN_TILE + 6)
static const int edges[6] = {1, 17, DUET_ATTN_SPAN, DUET_ATTN_SPAN + 1, 2 * DUET_ATTN_SPAN - 5,
			     3 * DUET_ATTN_SPAN + 40};
#define MAX_LEN (3 * DUET_ATTN_SPAN + 40)
static int lens[N_SEQS];

static void set_lens(void)
{
	for (int i = 0; i < N_SEQS; i++)
		lens[i] = i < 6 ? edges[i] : i >= N_SEQS - 6 ? edges[i - (N_SEQS - 6)] : 1 + i % 40;
}

struct setup {
	struct duet_config cfg;
	struct duet_kv_geom g;
	struct duet_kv_pool *kv;
	struct duet_kv_seq seqs[N_SEQS];
	const struct duet_kv_seq *sp[N_SEQS];
	int pos[N_SEQS], rows[N_SEQS];
	float *q; /* [N_SEQS][q_dim] */
};

/* K and V rows of every sequence from a generator; q scaled so that the
 * scores spread over several units (a flat softmax would hide a wrong
 * merge weight). */
static void setup_open(struct setup *s, enum duet_kv_dtype t)
{
	struct duet_err err;
	set_lens();
	s->cfg = (struct duet_config){.n_heads = 8, .n_kv_heads = 2, .head_dim = 40, .n_layers = 2};
	s->g = (struct duet_kv_geom){s->cfg.n_layers, s->cfg.n_kv_heads, s->cfg.head_dim,
				     DUET_KV_BLOCK_TOKENS, t};
	int blocks = 0;
	for (int i = 0; i < N_SEQS; i++)
		blocks += duet_kv_blocks_for(&s->g, lens[i]);
	if (duet_kv_pool_create(&s->kv, &s->g, blocks, &err))
		fail_msg("%s", err.msg);
	int kvd = duet_kv_dim(&s->g), qd = s->cfg.n_heads * s->cfg.head_dim;
	float *row = malloc(sizeof(float) * kvd);
	s->q = malloc(sizeof(float) * N_SEQS * qd);
	assert_true(row && s->q);
	uint64_t r = 42;
	for (int i = 0; i < N_SEQS; i++) {
		duet_kv_seq_init(&s->seqs[i]);
		if (duet_kv_seq_reserve(s->kv, &s->seqs[i], lens[i], &err))
			fail_msg("%s", err.msg);
		s->seqs[i].n_tokens = lens[i];
		s->sp[i] = &s->seqs[i];
		s->pos[i] = lens[i] - 1;
		s->rows[i] = N_SEQS - 1 - i; /* rows out of sequence order */
		for (int l = 0; l < s->cfg.n_layers; l++)
			for (int p = 0; p < lens[i]; p++)
				for (int w = 0; w < 2; w++) {
					for (int j = 0; j < kvd; j++)
						row[j] = tu_frand(&r);
					duet_kv_row_put(t, s->cfg.n_kv_heads, s->cfg.head_dim, row,
							duet_kv_row(s->kv, l, w, &s->seqs[i], p));
				}
	}
	for (int j = 0; j < N_SEQS * qd; j++)
		s->q[j] = 4 * tu_frand(&r);
	free(row);
}

static void setup_close(struct setup *s)
{
	for (int i = 0; i < N_SEQS; i++)
		duet_kv_seq_release(s->kv, &s->seqs[i]);
	duet_kv_pool_destroy(s->kv);
	free(s->q);
}

/* Attention of sequence i at layer l, every head, in double precision
 * from the rows as stored. */
static void reference(const struct setup *s, int l, int i, double *out)
{
	int hd = s->cfg.head_dim, nh = s->cfg.n_heads, hpg = nh / s->cfg.n_kv_heads;
	int kvd = duet_kv_dim(&s->g), n = lens[i];
	float *k = malloc(sizeof(float) * (size_t)n * kvd), *v = malloc(sizeof(float) * (size_t)n * kvd);
	double *sc = malloc(sizeof(double) * n);
	assert_true(k && v && sc);
	for (int p = 0; p < n; p++) {
		duet_kv_row_get(s->g.dtype, s->cfg.n_kv_heads, hd, duet_kv_row(s->kv, l, 0, &s->seqs[i], p),
				k + (size_t)p * kvd);
		duet_kv_row_get(s->g.dtype, s->cfg.n_kv_heads, hd, duet_kv_row(s->kv, l, 1, &s->seqs[i], p),
				v + (size_t)p * kvd);
	}
	const float *q = s->q + (size_t)s->rows[i] * nh * hd;
	for (int h = 0; h < nh; h++) {
		int g = h / hpg;
		double mx = -INFINITY, sum = 0;
		for (int p = 0; p < n; p++) {
			double d = 0;
			for (int j = 0; j < hd; j++)
				d += (double)q[h * hd + j] * k[(size_t)p * kvd + g * hd + j];
			sc[p] = d / sqrt((double)hd);
			mx = sc[p] > mx ? sc[p] : mx;
		}
		for (int p = 0; p < n; p++)
			sum += sc[p] = exp(sc[p] - mx);
		for (int j = 0; j < hd; j++) {
			double o = 0;
			for (int p = 0; p < n; p++)
				o += sc[p] / sum * v[(size_t)p * kvd + g * hd + j];
			out[h * hd + j] = o;
		}
	}
	free(k), free(v), free(sc);
}

/* Every sequence's output at layer l, run as one batch (all) or one at a
 * time, with the given kernels and threads. */
static void run(const struct setup *s, const struct duet_kernels *k, int threads, int l, int all,
		float *out)
{
	struct duet_err err;
	struct duet_threadpool *tp;
	struct duet_attn a;
	if (duet_threadpool_create(&tp, threads, NULL, 0, &err) ||
	    duet_attn_init(&a, tp, k, s->kv, &s->cfg, &err) ||
	    duet_attn_reserve(&a, MAX_LEN, &err))
		fail_msg("%s", err.msg);
	if (all)
		duet_attn_single(&a, l, s->sp, s->pos, s->rows, N_SEQS, s->q, out);
	else
		for (int i = 0; i < N_SEQS; i++)
			duet_attn_single(&a, l, &s->sp[i], &s->pos[i], &s->rows[i], 1, s->q, out);
	duet_attn_free(&a);
	duet_threadpool_destroy(tp);
}

static void test_decode_attention(void **st)
{
	(void)st;
	static const char *isas[] = {"scalar", "avx2", "avx512"};
	static const enum duet_kv_dtype types[] = {DUET_KV_F32, DUET_KV_F16, DUET_KV_INT8};
	for (int ti = 0; ti < 3; ti++) {
		struct setup s;
		setup_open(&s, types[ti]);
		int qd = s.cfg.n_heads * s.cfg.head_dim;
		float *batch = malloc(sizeof(float) * N_SEQS * qd), *alone = malloc(sizeof(float) * N_SEQS * qd);
		float *one = malloc(sizeof(float) * N_SEQS * qd);
		double *ref = malloc(sizeof(double) * qd);
		assert_true(batch && alone && one && ref);
		for (int ii = 0; ii < 3; ii++) {
			const struct duet_kernels *k = duet_kernels_named(isas[ii]);
			if (!k)
				continue;
			for (int l = 0; l < s.cfg.n_layers; l++) {
				run(&s, k, 2, l, 1, batch);
				run(&s, k, 2, l, 0, alone);
				run(&s, k, 1, l, 1, one);
				for (int i = 0; i < N_SEQS; i++) {
					char what[128];
					snprintf(what, sizeof what, "%s kv %s layer %d, %d positions", isas[ii],
						 duet_kv_dtype_name(types[ti]), l, lens[i]);
					const float *got = batch + (size_t)s.rows[i] * qd;
					reference(&s, l, i, ref);
					for (int j = 0; j < qd; j++)
						if (!(fabs(got[j] - ref[j]) <= 1e-5 * (1 + fabs(ref[j]))))
							fail_msg("%s: value %d is %g, expected %g", what, j,
								 (double)got[j], ref[j]);
					if (memcmp(got, alone + (size_t)s.rows[i] * qd, sizeof(float) * qd))
						fail_msg("%s: alone, not the bits of the batch", what);
					if (memcmp(got, one + (size_t)s.rows[i] * qd, sizeof(float) * qd))
						fail_msg("%s: one thread, not the bits of two", what);
				}
			}
		}
		free(batch), free(alone), free(one), free(ref);
		setup_close(&s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_attention),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
