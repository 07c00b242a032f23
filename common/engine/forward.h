/* The Llama forward pass over a batch of sequences.
 *
 * Each sequence brings n new tokens that continue its KV cache at position
 * kv->n_tokens: a prompt (n large), a decode step (n = 1) or a chunk of a
 * prompt (chunked prefill) can share one batch. Every projection runs once
 * over all the batch's rows (the native-type kernels, whose rows do not
 * depend on the batch; sgemm for many rows of the types without a kernel
 * at that width here); attention runs per sequence over its paged KV
 * blocks. */
#ifndef DUET_FORWARD_H
#define DUET_FORWARD_H

#include "base/err.h"
#include "engine/kern/kernels.h"
#include "engine/kvcache.h"
#include "engine/model.h"

enum duet_logits_mode {
	DUET_LOGITS_NONE, /* e.g. all but the last chunk of a prompt */
	DUET_LOGITS_LAST, /* logits of the last new token: [vocab] */
	DUET_LOGITS_ALL,  /* logits of every new token: [n, vocab] */
};

struct duet_fwd_seq {
	struct duet_kv_seq *kv;
	const int *tokens;
	int n_tokens;
	enum duet_logits_mode logits_mode;
	float *logits; /* caller-owned output */
	void *user;    /* handed to the layer hook */
	/* Attend each new row as a decode step of it would (one query row
	 * over its positions, as n_tokens 1 does) instead of as a prompt
	 * chunk: a failover's resumed tokens, whose K and V must be those the
	 * lost decode node computed for them, bit for bit. */
	int decode_rows;
};

/* Called for each layer and sequence as soon as the layer's K and V of the
 * new positions are in the cache (before attention), so a sender can ship
 * layer l while layer l+1 computes. k and v are [n, kv_dim], K after RoPE.
 * A non-zero return aborts the forward pass with err filled. */
typedef int (*duet_layer_hook)(void *ctx, int layer, const struct duet_fwd_seq *seq,
			       int first_pos, int n, const float *k, const float *v,
			       int kv_dim, struct duet_err *err);

struct duet_engine_opts {
	int n_threads;	      /* threads including the caller; 0 = all CPUs */
	const int *cpus;      /* optional CPU list for the worker threads */
	int n_cpus;
	int max_batch_tokens; /* rows per forward call; 0 = 512 */
	const char *kernels;  /* NULL = best for this CPU */
	enum duet_qdot qdot;  /* quantized weights: int8 (0, the default) or exact */
};

struct duet_engine;

int duet_engine_create(struct duet_engine **out, const struct duet_model *m,
		       struct duet_kv_pool *kv, const struct duet_engine_opts *o,
		       struct duet_err *err);
void duet_engine_destroy(struct duet_engine *e);
void duet_engine_set_hook(struct duet_engine *e, duet_layer_hook hook, void *ctx);
int duet_engine_threads(const struct duet_engine *e);
int duet_engine_max_batch(const struct duet_engine *e);
const char *duet_engine_kernels(const struct duet_engine *e);
enum duet_qdot duet_engine_qdot(const struct duet_engine *e);
/* "int8", "exact"; parse returns -1 on anything else. */
const char *duet_qdot_name(enum duet_qdot q);
int duet_qdot_parse(const char *s, enum duet_qdot *out);

/* Runs the batch; on success every sequence's kv->n_tokens has advanced by
 * its n_tokens. Blocks for the new positions are reserved as needed (fails
 * cleanly, with nothing advanced, if the pool is short). */
int duet_forward(struct duet_engine *e, struct duet_fwd_seq *seqs, int n_seqs,
		 struct duet_err *err);

/* KV geometry for a model: block_tokens 0 is the default block size. f16
 * is the default row type (DUET_KV_DEFAULT): half the memory of f32 per
 * position, so twice the sequences per node. */
#define DUET_KV_DEFAULT DUET_KV_F16
struct duet_kv_geom duet_kv_geom_for(const struct duet_model *m, int block_tokens,
				     enum duet_kv_dtype dtype);

#endif
