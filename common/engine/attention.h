/* Causal grouped-query attention over the paged KV cache. */
#ifndef DUET_ATTENTION_H
#define DUET_ATTENTION_H

#include "base/err.h"
#include "base/threadpool.h"
#include "engine/kern/kernels.h"
#include "engine/kvcache.h"
#include "engine/model.h"

/* Sequences per decode call's tables (longer calls run in turns). */
#define DUET_ATTN_TILE 64
/* Query rows x heads of one KV head per prefill work unit: the unit's
 * scores are DUET_ATTN_UNIT_Q x positions floats, per thread. Each unit
 * reads its KV head's cache blocks once; 32 and 64 ran alike on
 * stories110m and tinyllama shapes (BENCHMARKS.md, 2026-12-08 second). */
#define DUET_ATTN_UNIT_Q 64

/* Positions per partial softmax in decode: a sequence's keys are attended
 * in spans of DUET_ATTN_SPAN (a multiple of the cache block), each span's
 * result merged by its log-sum-exp, so that one long sequence gives every
 * thread whole cache rows to stream (a unit per KV head read 128 bytes of
 * every row and left the hardware prefetchers little to follow:
 * BENCHMARKS.md, 2026-12-06 fourth). Fixed, not a function of the batch
 * or the threads, so a sequence's result does not depend on them. */
#define DUET_ATTN_SPAN 512
/* Spans a sequence may have: DUET_ATTN_MAX_SPANS x DUET_ATTN_SPAN
 * positions (256k) is past every context this engine serves. */
#define DUET_ATTN_MAX_SPANS 512
struct duet_attn {
	struct duet_threadpool *tp;
	const struct duet_kernels *k;
	const struct duet_kv_pool *kv;
	int n_heads, n_kv_heads, head_dim;
	float scale;
	float **scores;	  /* per thread */
	size_t scores_cap; /* floats per thread */
	float **stage;	  /* per thread: DUET_ATTN_UNIT_Q query and output rows */
	/* decode: the results of every span after a sequence's first, [span
	 * slot][q_dim], and every span's log-sum-exp, [span slot][n_heads],
	 * for DUET_ATTN_TILE sequences */
	float *part, *lse;
	size_t part_spans; /* span slots */
};

int duet_attn_init(struct duet_attn *a, struct duet_threadpool *tp,
		   const struct duet_kernels *k, const struct duet_kv_pool *kv,
		   const struct duet_config *cfg, struct duet_err *err);
void duet_attn_free(struct duet_attn *a);

/* Makes room for attention over up to `positions` keys (for decode, for up
 * to DUET_ATTN_TILE sequences at once). Called before a batch so that
 * workers never allocate. */
int duet_attn_reserve(struct duet_attn *a, int positions, struct duet_err *err);

/* n query rows of one sequence at positions p0.., over its KV [0, p0+n)
 * (the new rows already written to the cache, and read from there: the
 * rows as stored are what later steps see, so they are what this one
 * sees too). */
void duet_attn_rows(struct duet_attn *a, int layer, const struct duet_kv_seq *s,
		    int p0, int n, const float *q, float *out);

/* One query row for each of n sequences: row rows[i] of q/out ([*, q_dim])
 * belongs to seqs[i] at position pos[i]. */
void duet_attn_single(struct duet_attn *a, int layer,
		      const struct duet_kv_seq *const *seqs, const int *pos,
		      const int *rows, int n, const float *q, float *out);

#endif
