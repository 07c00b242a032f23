/* The prefill daemon: queues prompts from the router, batches them up to a
 * token budget, reuses cached prefixes, and streams each finished layer's
 * K and V to the request's decode node while the next layer computes. */
#ifndef DUET_PREFILL_H
#define DUET_PREFILL_H

#include <stdint.h>

#include "base/idmap.h"
#include "engine/sampler.h"
#include "node/node.h"
#include "node/prefix_cache.h"

#define PREFILL_MAX_PEERS 64	   /* decode nodes with an open KV socket */

struct peer {
	char endpoint[DUET_MAX_ENDPOINT + 1];
	char key[DUET_CURVE_Z85 + 1]; /* its CURVE public key; "" = plaintext */
	void *sock;
	long long used_us;
};

/* A KV message held back when streaming is off. */
struct held {
	Duet__KvChunk hdr;
	void *payload;
	size_t plen;
};

struct preq {
	uint64_t id;
	int *tokens, n;
	struct duet_sampling sampling;
	int format;   /* response_format (the wire's) */
	char *schema; /* its JSON schema, or NULL */
	int sample_index;
	int resumed_from; /* tokens from here on were streamed (a resume) */
	char decode_node[DUET_MAX_NAME + 1];
	struct peer *peer;
	struct duet_kv_seq kv;
	int started; /* KV attached/reserved and cached prefix shipped */
	int cached;  /* prompt tokens from the prefix cache */
	int done;    /* prompt tokens whose KV exists */
	int step;    /* tokens in the current batch */
	int failed;  /* sending failed; dropped after the batch */
	long long compute_us;
	float *logits;
	struct held *held;
	int n_held, cap_held;
};

struct prefill_cfg {
	int stream_layers;
	int max_queue;
	int max_batch_seqs;
};

struct prefill {
	struct duet_node node;
	struct prefill_cfg cfg;
	struct preq **q; /* FIFO */
	int n_q;
	struct duet_idmap by_id; /* the same requests by id */
	struct peer peers[PREFILL_MAX_PEERS];
	double rate; /* prompt tokens/s, moving average */
	uint64_t computed_tokens;
	struct duet_fwd_seq *fwd;
	struct preq **batch;
};

/* main.c: the role's fields of a load report. */
void prefill_fill_report(void *ctx, Duet__LoadReport *r);

/* queue.c */
void prefill_handle_work(struct prefill *p, const Duet__PrefillWork *w);
void prefill_handle_cancel(struct prefill *p, const Duet__Cancel *c);
void prefill_drop(struct prefill *p, struct preq *r);
uint64_t prefill_queued_tokens(const struct prefill *p);
/* One forward pass over the head of the queue; 0 if there was nothing to do. */
int prefill_run_batch(struct prefill *p);

/* ship.c */
/* key: the decode node's CURVE public key ("" when it has none). */
int prefill_connect(struct prefill *p, struct preq *r, const char *endpoint, const char *key,
		    struct duet_err *err);
void prefill_close_peers(struct prefill *p);
/* Sends positions [0, n) of every layer from the request's KV blocks. */
int prefill_ship_cached(struct prefill *p, struct preq *r, int n, struct duet_err *err);
/* The engine's layer hook: ships (or holds) the rows just computed. */
int prefill_layer_hook(void *ctx, int layer, const struct duet_fwd_seq *seq, int first_pos,
		       int n, const float *k, const float *v, int kv_dim, struct duet_err *err);
/* Sends what was held back (streaming off), then the first token. */
int prefill_ship_first(struct prefill *p, struct preq *r, int token,
		       const struct duet_logprobs *lp, struct duet_err *err);
void prefill_free_held(struct preq *r);

#endif
