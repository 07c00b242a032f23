/* The decode daemon: receives KV from prefill nodes (or prefills locally,
 * in chunks), and decodes every running sequence one token per step in one
 * batch that sequences join and leave at every step. */
#ifndef DUET_DECODE_H
#define DUET_DECODE_H

#include <stdint.h>

#include "engine/sampler.h"
#include "engine/speculate.h"
#include "base/idmap.h"
#include "base/linfit.h"
#include "base/kvrow.h"
#include "node/node.h"

#define DECODE_RECENT_FAILED 64 /* failed ids remembered to quiet their stragglers */

enum dreq_state {
	DREQ_WAIT_KV,  /* reservation held, layers arriving */
	DREQ_LOCAL,    /* prefilling here, a chunk per step */
	DREQ_RUNNING,  /* in the decode batch */
};

struct dreq {
	uint64_t id;
	enum dreq_state st;
	struct duet_kv_seq kv;
	struct duet_sampler sampler;
	struct duet_guide guide; /* response_format */
	int guided;
	/* speculation by prompt lookup (NULL = none), and this step's
	 * proposal: the pending token, then spec_nd proposed ones */
	struct duet_spec *spec;
	int spec_nd;
	int spec_d[DUET_SPEC_MAX_K + 1];
	int n_prompt;
	int max_tokens, ignore_eos;
	int n_generated; /* tokens of the request sampled so far, anywhere */
	int next_token;	 /* sampled, not yet in the KV */
	float *logits;	 /* [vocab] */
	/* DREQ_WAIT_KV: its KV arrives through the ingest thread by then */
	long long deadline_us;
	/* DREQ_LOCAL */
	int *prompt; /* local work, and reservations that name their tokens */
	int prefilled;
	int resumed_from; /* prompt tokens from here on were streamed (a resume) */
	int cached; /* prompt tokens shared from the prefix cache */
	int step_tokens; /* rows in the current step */
	int tbt_ms;	 /* its TBT objective (0: none): decode_chunk_budget */
};

struct decode_cfg {
	const char *kv_endpoint;
	/* What prefill nodes are told to connect to: kv_endpoint unless the
	 * socket binds a wildcard or sits behind NAT or a relay. */
	const char *kv_advertise;
	int max_requests; /* reservations, local prefills and running, together */
	double kv_timeout_s;
	/* speculative decoding by prompt lookup: n-grams of up to spec_ngram
	 * tokens (0 = off), at most spec_k proposed per sequence and step,
	 * while at most spec_max_batch sequences run */
	int spec_ngram, spec_k, spec_max_batch;
	/* or with a draft model (its own KV pool of draft_kv_mb); "" = none;
	 * it drafts one sequence at a time, so it proposes only while at most
	 * spec_draft_max_batch sequences run */
	const char *draft;
	int draft_kv_mb, spec_draft_max_batch;
	int calibrate; /* time a chunk and a step at start (calibrate.c) */
};

struct decode {
	struct duet_node node;
	struct decode_cfg cfg;
	struct kv_ingest *ingest;
	struct dreq **reqs; /* in arrival order */
	int n_reqs;
	struct duet_idmap by_id; /* the same requests by id */
	uint64_t recent_failed[DECODE_RECENT_FAILED];
	int recent_pos;
	double step_ms; /* moving average */
	/* speculation: sequence-steps that verified proposals, tokens
	 * proposed and accepted */
	uint64_t spec_verified, spec_proposed, spec_accepted;
	/* the load report's lists of streams and local prefills, built
	 * where it is sent */
	uint32_t report_left[DUET_REPORT_MAX_STREAMS];
	uint32_t report_local_prompt[DUET_REPORT_MAX_STREAMS];
	uint32_t report_local_left[DUET_REPORT_MAX_STREAMS];
	struct duet_model *draft_model; /* NULL: speculation, if any, by lookup */
	struct duet_kv_pool *draft_kv;
	struct duet_engine *draft_engine;
	/* step time against its features (step_model.c says which), for the
	 * router's predictions */
	struct duet_linfit step_model;
	unsigned steps_fitted;
	/* per-step scratch */
	struct duet_fwd_seq *fwd;
	struct dreq **batch;
};

/* requests.c */
struct dreq *decode_find(struct decode *d, uint64_t id);
/* A new request holding KV room for its prompt and answer. With prompt
 * (n_prompt tokens), the full blocks the prefix cache holds of it are
 * shared into its KV first (a local prefill then starts at r->cached). */
struct dreq *decode_new_req(struct decode *d, uint64_t id, int n_prompt, const int *prompt,
			    int max_tokens, const Duet__Sampling *s, int ignore_eos,
			    int n_sampled, struct duet_err *err);
/* Offers the request's prompt blocks, now computed, to the prefix cache. */
void decode_cache_prompt(struct decode *d, struct dreq *r);
/* Frees the request and its KV blocks. */
void decode_drop(struct decode *d, struct dreq *r);
/* Drops the request and tells the router why. */
void decode_fail(struct decode *d, struct dreq *r, Duet__ErrorCode code, const char *why);
int decode_recently_failed(const struct decode *d, uint64_t id);
void decode_handle_reserve(struct decode *d, const Duet__KvReserve *m);
void decode_handle_local(struct decode *d, const Duet__LocalWork *m);
void decode_handle_cancel(struct decode *d, const Duet__Cancel *m);
void decode_expire(struct decode *d, long long now_us);
/* Emits a token the request just sampled; finishes it when it ends.
 * Returns 1 if the request finished (and was dropped). */
int decode_emit(struct decode *d, struct dreq *r, int token, int first,
		const struct duet_logprobs *lp);

/* step.c: speculation for r if the node does it and r's sampling allows
 * (tokens: its prompt and what it generated before; NULL = no text, no
 * speculation); fails only when out of memory. */
int decode_spec_start(struct decode *d, struct dreq *r, const int *tokens, int n,
		      struct duet_err *err);

/* kv_ingest.c: the KV endpoint's own thread. It receives KV chunks,
 * checks them against the model and the reservation, and writes their
 * rows into the request's blocks; the step loop hears only of outcomes. */
struct kv_ingest;
enum kv_event_kind {
	KV_EVENT_READY, /* the prompt's KV is complete: token is the first token */
	KV_EVENT_BAD,	/* a bad message about a waiting request, now no longer expected */
	KV_EVENT_STRAY, /* a bad message naming no waiting request (id 0: none at all) */
};
struct kv_event {
	enum kv_event_kind kind;
	uint64_t id;
	int token;
	uint64_t bytes; /* READY: the prompt's KV payload bytes */
	char why[DUET_ERR_MAX];
};
/* Starts the thread on any of cpus (n_cpus 0: anywhere), which takes sock
 * (the bound KV endpoint) and closes it when it stops; on failure sock
 * stays the caller's. */
int kv_ingest_start(struct kv_ingest **out, void *zctx, void *sock, struct duet_kv_pool *pool,
		    const struct duet_wire_limits *lim, int n_layers, int vocab, const int *cpus,
		    int n_cpus, struct duet_err *err);
/* Stops the thread and frees everything (NULL: nothing). */
void kv_ingest_stop(struct kv_ingest *g);
/* The socket the main thread polls for events, and the next event (1), or
 * none (0). */
void *kv_ingest_events(const struct kv_ingest *g);
int kv_ingest_next(struct kv_ingest *g, struct kv_event *ev);
/* A reservation's KV may come now, into kv's blocks (positions [0,
 * n_prompt) of every layer). */
int kv_ingest_expect(struct kv_ingest *g, uint64_t id, struct duet_kv_seq *kv, int n_prompt,
		     struct duet_err *err);
/* No more rows for id: once this returns, its blocks may be freed. */
void kv_ingest_forget(struct kv_ingest *g, uint64_t id);
/* KV payload bytes written so far. */
uint64_t kv_ingest_bytes(const struct kv_ingest *g);

/* kv_events.c */
/* Handles one event of the ingest thread between steps. */
void decode_kv_event(struct decode *d, const struct kv_event *ev);

/* step_model.c */
/* The step-time model's forgetting factor: about the last 200 steps count. */
#define DECODE_STEP_MODEL_LAMBDA 0.995
#define DECODE_STEP_MODEL_RIDGE 1e-3
#define DECODE_STEP_MODEL_FEATURES 5
/* the feature counting a step's prompt tokens */
#define DECODE_STEP_FEATURE_TOKENS 2
void decode_step_model_init(struct decode *d);
/* A step's features: its sequences, prompt (and verified proposal) rows,
 * the positions its sequences hold after it, and its prompt rows times the
 * positions before them (chunk attention's pairs). */
void decode_step_features(int seqs, int prefill_tokens, long long positions, long long pairs,
			  double *x);
/* Prompt tokens the next step may carry (1 to max-batch-tokens). */
int decode_chunk_budget(const struct decode *d);

/* calibrate.c */
/* Times a prompt chunk and a decode step on a scratch sequence into the
 * step model (before the node takes requests). */
int decode_calibrate(struct decode *d, struct duet_err *err);
int decode_has_work(const struct decode *d);
void decode_step(struct decode *d);

#endif
