/* What prefill and decode daemons share: the settings every node has, the
 * model and engine set-up, the control channel to the router (hello, its
 * acknowledgement, load reports, re-registration), signals, draining and
 * the systemd notify calls. Each daemon adds its own work on top. */
#ifndef DUET_NODE_H
#define DUET_NODE_H

#include <signal.h>

#include "base/config.h"
#include "engine/forward.h"
#include "engine/guide.h"
#include "engine/kvcache.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "net/transport.h"
#include "net/wire.h"
#include "net/zap.h"
#include "node/prefix_cache.h"

#define DUET_NODE_MAX_CPUS 256
#define DUET_NODE_HELLO_RETRY_US 1000000LL
#define DUET_NODE_COMMON_OPTS (18 + DUET_CURVE_OPTS) /* at most */
/* prefix-cache-mb's default and largest value: as much as the pool holds. */
#define DUET_NODE_CACHE_MB_ALL (1 << 22)
/* Prefix hashes in a load report, most recently used first: as many as
 * the router matches prompts against (32 KB a report). */
#define DUET_NODE_SUMMARY_HASHES 4096
#define DUET_NODE_STATUS_MAX 160

struct duet_node_cfg {
	const char *name;
	const char *router; /* control endpoint */
	const char *model;
	int threads;
	const char *cpus;
	int report_ms;
	int kv_mb;
	int kv_prefault; /* take the pool's memory at start */
	int prefix_cache_mb;
	int block_tokens;
	int max_batch_tokens;
	double drain_timeout_s;
	const char *log_level;
	const char *kernels;
	const char *weights; /* "" = the role's default */
	const char *qdot;
	const char *kv_dtype;
	const char *trace; /* Chrome trace-event file ("" = none) */
	struct duet_curve_cfg curve;
	const char *serve_endpoint; /* decode: the KV endpoint it binds (not a key) */
};

struct duet_node {
	struct duet_node_cfg cfg;
	Duet__Role role;
	struct duet_model *model;
	struct duet_kv_pool *kv;
	/* full blocks of finished prompts, kept in the pool for later ones */
	struct duet_prefix_cache *cache;
	uint64_t hashes[DUET_NODE_SUMMARY_HASHES]; /* the report's summary */
	struct duet_engine *engine;
	struct duet_wire_limits lim;
	int cpus[DUET_NODE_MAX_CPUS], n_cpus;
	void *zctx, *ctl;
	struct duet_curve curve;
	struct duet_zap *zap; /* NULL without CURVE */
	int registered, ready_sent;
	char last_status[DUET_NODE_STATUS_MAX]; /* last STATUS= sent */
	long long hello_us, report_us;
	uint64_t report_seq;
	uint64_t bad_messages;
	uint64_t kv_bytes_in, kv_bytes_out;
	/* every token's bytes, for guided (response_format) requests: made
	 * at the first one */
	struct duet_token_table tokens;
	int stopping;		  /* SIGTERM or SIGINT seen */
	long long stop_deadline_us;
};

/* Defaults, then the options table entries for the common keys (fills at
 * most DUET_NODE_COMMON_OPTS entries of out and returns how many); server:
 * the node accepts connections (decode nodes' KV endpoint). */
void duet_node_defaults(struct duet_node_cfg *c, const char *name);
int duet_node_opts(struct duet_node_cfg *c, int server, struct duet_opt *out);

/* Loads the model, makes the KV pool (kv_mb) and engine, pins this thread,
 * installs signal handlers, opens the control channel and says hello. */
int duet_node_start(struct duet_node *n, Duet__Role role, int extra_batch,
		    struct duet_err *err);
void duet_node_stop(struct duet_node *n);

/* A draft model for speculative decoding (decode nodes): opened with the
 * node's weight placement, its own KV pool of kv_mb and engine with the
 * node's settings. The caller closes all three. */
int duet_node_open_draft(struct duet_node *n, const char *path, int kv_mb,
			 struct duet_model **m, struct duet_kv_pool **kv, struct duet_engine **e,
			 struct duet_err *err);
/* KV blocks a new request can have: the free ones and those only the
 * prefix cache holds. */
int duet_node_kv_room(const struct duet_node *n);
/* Sends hello (again). */
int duet_node_hello(struct duet_node *n, const char *kv_endpoint, struct duet_err *err);
/* Timers: hello retry until acknowledged, the load report (filled by the
 * daemon through fill, which may leave fields at zero) and the watchdog.
 * kv_endpoint is resent with each hello. */
void duet_node_tick(struct duet_node *n, const char *kv_endpoint,
		    void (*fill)(void *ctx, Duet__LoadReport *r), void *ctx);
/* Handles hello_ack and error(unknown node); returns 1 if it did. */
int duet_node_handle_common(struct duet_node *n, const Duet__Msg *m, const char *kv_endpoint);
/* zmq_poll, with the time spent waiting traced as the node's idle time. */
int duet_node_poll(zmq_pollitem_t *items, int n, int timeout_ms);
/* Sends a message to the router. */
int duet_node_send(struct duet_node *n, const Duet__Msg *m, struct duet_err *err);
/* Sends an error about one request to the router (and logs it). */
void duet_node_fail(struct duet_node *n, uint64_t request, Duet__ErrorCode code,
		    const char *msg);
/* Counts and logs a malformed message from peer. */
void duet_node_bad_message(struct duet_node *n, const char *peer, uint64_t request,
			   const char *why);
/* Counts and logs a message of a kind that has no business where it came
 * (e.g. a token event sent to a node). */
void duet_node_unexpected(struct duet_node *n, const char *peer, const Duet__Msg *m,
			  const char *where);
/* A message's sampling parameters (NULL = greedy) in the sampler's form,
 * checked as the sampler needs them. */
int duet_node_sampling(const Duet__Sampling *s, int vocab, struct duet_sampling *out,
		       struct duet_err *err);
/* lp in a wire message that points into it (wl is its storage): what a
 * first token or token event carries when the request asked. */
Duet__Logprobs *duet_node_logprobs(const struct duet_logprobs *lp, Duet__Logprobs *wl);
/* Sets g up for a request whose sampling asks for a JSON response
 * format (format and schema as the wire's Sampling has them), advanced by the n_gen tokens it generated before (the tail of
 * ids), and attaches it to sampler; *guided says whether there was one. */
int duet_node_guide(struct duet_node *n, int format, const char *schema, const int *ids, int n_ids,
		    int n_gen, struct duet_guide *g, struct duet_sampler *sampler, int *guided,
		    struct duet_err *err);
/* 1 once SIGTERM/SIGINT arrived; the first call after it sends STOPPING=1,
 * starts the drain timer and makes the next tick send a load report, so the
 * router stops placing work here within one step. */
int duet_node_stopping(struct duet_node *n);
/* 1 when draining has run past drain_timeout_s. */
int duet_node_drain_expired(const struct duet_node *n);

#endif
