/* The router: the HTTP front clients talk to (OpenAI-shaped completions),
 * membership of prefill and decode nodes, placement of each request by
 * prompt length and node load, and the token streams back to clients.
 *
 * Threads: libmicrohttpd runs one thread per connection; they parse and
 * tokenize, then hand a request to the core (the main thread, which owns
 * the ZeroMQ control socket and every node table) through a locked queue
 * and an eventfd. Tokens flow back through the request, under its lock. */
#ifndef DUET_ROUTER_H
#define DUET_ROUTER_H

#include <pthread.h>
#include <stdint.h>

#include "base/idmap.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "net/transport.h"
#include "net/zap.h"
#include "text/chat.h"
#include "text/stopper.h"

/* Nodes in one router's table (and in one `duet plan` cluster). */
#define ROUTER_MAX_NODES 1024
#define ROUTER_MAX_STOPS 4
/* Heartbeats the router sends a node within node-timeout-ms. */
#define ROUTER_PINGS_PER_TIMEOUT 4
/* Assumed for a node whose hello does not give its report interval. */
#define ROUTER_DEFAULT_REPORT_MS 250
#define ROUTER_MAX_ATTEMPTS 4 /* placements of one request, failovers included */
/* A node's most recently used cached blocks the router matches prompts
 * against: 64k positions at 16 per block, as much as a default pool holds
 * of a small model. */
#define ROUTER_PREFIX_HASHES 4096
/* A decode node holding part of a prompt in its prefix cache is chosen
 * over the least loaded while it runs at most this many more sequences. */
#define ROUTER_CACHE_LOAD_SLACK 4
/* max-queue and queue-timeout-ms defaults: requests waiting for KV room */
#define ROUTER_DEFAULT_MAX_QUEUE 256
#define ROUTER_DEFAULT_QUEUE_TIMEOUT_MS 30000

#define ROUTER_HIST_BUCKETS 19
#define ROUTER_MAX_KEYS 32
#define ROUTER_MAX_PEM (1 << 20)

/* A Prometheus histogram of seconds. */
struct router_hist {
	uint64_t le[ROUTER_HIST_BUCKETS]; /* cumulative counts come at print time */
	uint64_t count;
	double sum;
};
extern const double ROUTER_HIST_BOUNDS[ROUTER_HIST_BUCKETS];
void router_hist_add(struct router_hist *h, double seconds);

struct router_token_hists {
	struct router_hist ttft, tbt;
	struct router_hist relay; /* decode node's send -> text ready for the client (one host) */
};

enum router_policy {
	ROUTER_POLICY_LENGTH_AWARE,
	ROUTER_POLICY_ROUND_ROBIN,
	ROUTER_POLICY_LEAST_LOADED,
	ROUTER_POLICY_COLOCATED,
};

struct router_node {
	char name[DUET_MAX_NAME + 1];
	Duet__Role role;
	char kv_endpoint[DUET_MAX_ENDPOINT + 1];
	char kv_key[DUET_CURVE_Z85 + 1]; /* its KV endpoint's CURVE key, "" = none */
	char digest[DUET_DIGEST_HEX + 8];
	int kv_blocks, block_tokens, max_batch_tokens;
	int alive;
	long long last_seen_us, last_report_us, last_probe_us;
	uint64_t last_report_seq;
	int report_ms; /* interval between its load reports, from its hello */
	int gone; /* a send found its connection gone: its requests to place again */
	/* from the latest load report */
	int draining;
	uint64_t queued_tokens;
	double prefill_tps;
	int running, waiting_kv, local_prefill;
	double step_ms;
	/* decode nodes: the step-time model the node fits (LoadReport says
	 * how), the positions its running sequences hold and the prompt
	 * tokens its local prefills have left */
	double step_base_ms, step_seq_ms, step_token_ms, step_kctx_ms, step_kpair_ms;
	unsigned steps_fitted;
	uint64_t context_tokens, local_prefill_tokens;
	/* the tokens its running streams may still make, fewest first; its
	 * local prefills in the order it computes them, the prompt tokens
	 * each has left and the tokens it may make after (this router's own
	 * placements added until the next report) */
	uint32_t left[DUET_REPORT_MAX_STREAMS];
	size_t n_left;
	uint32_t local_prompt[DUET_REPORT_MAX_STREAMS], local_left[DUET_REPORT_MAX_STREAMS];
	size_t n_local;
	uint64_t spec_verified, spec_proposed, spec_accepted; /* speculation */
	int kv_free, kv_total;
	uint64_t bad_messages;
	uint64_t auth_refused; /* peers its sockets refused (CURVE) */
	/* prefix-cache chain hashes: a set of n_hashes in cap_hashes slots
	 * (router_node_set_prefix); the core thread's alone (the HTTP
	 * threads' snapshot copies the pointer only and never reads it) */
	uint64_t *hashes;
	int n_hashes, cap_hashes;
	/* placed and not yet finished by this router */
	int inflight;
	long long reserved_tokens; /* prompt + max tokens of requests in flight */
};

/* A node that takes new work of this role. */
/* place.c: a node's prefix summary (a report's hashes replace it), kept
 * as a hash set for lookups; freed by router_node_free. */
int router_node_set_prefix(struct router_node *n, const uint64_t *hashes, size_t count,
			   struct duet_err *err);
void router_node_free(struct router_node *n);
/* The node has just cached the full blocks of tokens (its prompt's KV is
 * complete there): added to its summary at once, so that the same prompt
 * right after finds them; its next load report replaces the guess. */
void router_node_learn_prefix(struct router_node *n, const int *tokens, int n_tokens);

static inline int router_node_usable(const struct router_node *n, Duet__Role role)
{
	return n->alive && !n->draining && n->role == role;
}

struct router;

enum rreq_state { RQ_PENDING, RQ_RESERVING, RQ_PREFILLING, RQ_DECODING, RQ_DONE };

/* One HTTP request may ask for several completions (n, a list of
 * prompts): each is a request of its own to the core, and its HTTP thread
 * waits on this, which the core signals whenever any of them changes.
 * Counted references (under its mu): the HTTP thread's and one per
 * request. */
struct rwaker {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t seq; /* bumped on every change */
	int refs;
};
/* NULL when out of memory; one reference, the caller's. */
struct rwaker *router_waker_new(void);
void router_waker_ref(struct rwaker *w);
void router_waker_unref(struct rwaker *w);
void router_waker_signal(struct rwaker *w);

/* A generated token's log-probabilities, as the node reported them. */
struct rlogprob {
	float chosen;
	int n_top;
	int top_id[DUET_MAX_TOP_LOGPROBS];
	float top[DUET_MAX_TOP_LOGPROBS];
};

struct rreq {
	uint64_t id;
	int *prompt, n_prompt;
	int max_tokens, ignore_eos, stream;
	int chat; /* /v1/chat/completions */
	int slo_ttft_ms, slo_tbt_ms; /* the request's own objectives; 0 = the router's */
	struct duet_sampling sampling;
	int format;	   /* Duet__ResponseFormat */
	char *json_schema; /* FORMAT_JSON_SCHEMA: the schema, compact JSON */
	char *stops[ROUTER_MAX_STOPS];
	int n_stops;
	struct rwaker *waker; /* the HTTP request's; NULL = none */
	/* core only */
	uint64_t wid; /* id on the wire for the current placement: id, then fresh ones */
	int attempts;
	int base;     /* tokens streamed before the current placement (resume) */
	int kv_done;  /* the current placement's decode node has the prompt's KV */
	/* prompt tokens this placement added to its prefill node's queue
	 * (until the first token says they left it) */
	int queued_on_pnode;
	int *work;    /* prompt + those tokens, when base > 0 */
	enum rreq_state state;
	int local;
	int pnode, dnode; /* indexes into the node table, -1 = none */
	struct duet_detok detok;
	struct duet_stopper stopper;
	int *tok;	  /* by index */
	struct rlogprob *lp; /* by index, when the sampling asks */
	unsigned char *have;
	int tok_cap, n_emitted, n_total; /* n_total: from Finish, -1 unknown */
	const char *finish_hint;	 /* from Finish */
	/* shared with the HTTP thread, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *text; /* text produced so far */
	size_t text_len, text_cap, text_sent;
	/* text_len after each token: a stream sends one event per token, so
	 * clients can time every token (as OpenAI's API does) */
	size_t *tok_end;
	int n_out;	/* tokens produced */
	int n_streamed; /* tokens sent as stream events */
	int done;
	int admitted;	  /* placed or queued: a stream may start */
	int retry_after_s; /* with a 429: when trying again may succeed */
	const char *finish_reason; /* "stop" or "length" */
	int http_status;	   /* != 0: failed with this status */
	char error[256];
	int refs; /* HTTP thread and core */
	long long t_arrival_us, t_first_us, t_last_us, queue_deadline_us;
	int sse_done;
};

struct router_cfg {
	const char *http_addr;
	int http_port;
	const char *control;
	const char *model;
	const char *policy;
	int max_body;
	int max_tokens_limit;
	int max_queue;	      /* requests waiting for room */
	int queue_timeout_ms; /* longest wait for room */
	int node_timeout_ms;  /* unanswered heartbeats this long: the node is dead */
	int client_timeout_s; /* idle connection (slow client) limit */
	int max_connections;
	int max_connections_per_ip; /* 0 = no limit */
	int request_timeout_s;	    /* arrival to the last token; 0 = no limit */
	const char *tls_cert, *tls_key; /* PEM files; both set = HTTPS */
	int local_max_prompt; /* length-aware: prompts up to this prefill on the decode node */
	const char *model_name;
	const char *log_level;
	const char *api_keys; /* comma-separated; empty = no authentication */
	const char *trace;    /* Chrome trace-event file; empty = none */
	/* Latency objectives placement aims at (0 = none): time to the first
	 * token, and between tokens (a decode step) */
	int slo_ttft_ms, slo_tbt_ms;
	/* 1: with a TBT objective, a decode node takes no more streams than
	 * keep its predicted step within it (the others wait in the queue);
	 * 0 (the default) any that fit its KV */
	int tbt_admission;
	/* "prefill" or "decode": who releases a handed-over request's first
	 * token to the client */
	const char *first_token;
	struct duet_curve_cfg curve;
};

struct router {
	struct router_cfg cfg;
	enum router_policy policy;
	/* a handed-over request's first token waits for KvDone: the decode
	 * node has taken the sequence in, the next token is one step away */
	int first_token_decode;
	struct duet_model *model; /* vocabulary and geometry only */
	enum duet_chat_family chat; /* from the GGUF's tokenizer.chat_template */
	int chat_unknown;	    /* a template is there, of no family duet renders */
	void *zctx, *ctl;
	int wake_fd;
	struct router_node nodes[ROUTER_MAX_NODES]; /* core thread only */
	int n_nodes;
	struct router_node snap[ROUTER_MAX_NODES]; /* copy for HTTP threads, under mu */
	int n_snap;
	char digest[DUET_DIGEST_HEX + 8]; /* the cluster's model, from the first node */
	pthread_mutex_t mu;		  /* guards pending, reqs, stats */
	struct rreq **pending;
	int n_pending, cap_pending;
	struct rreq **live;
	struct duet_idmap by_wid; /* live requests by their current wire id */
	int n_live, cap_live;
	struct rreq **waitq; /* placed nowhere yet: no room (also in live) */
	int n_waitq, cap_waitq;
	int queued; /* n_waitq for the HTTP threads, under mu */
	uint64_t next_id;
	unsigned rr;
	/* counters, under mu */
	uint64_t n_ok, n_failed, n_rejected, n_disagg, n_local, n_resumed, tokens_in, tokens_out;
	uint64_t n_early_rejected; /* of n_rejected: 429 because no placement met the TTFT objective */
	uint64_t n_requeued; /* placed, then refused for lack of room: queued again */
	uint64_t kv_bytes;
	struct router_hist e2e;
	/* Per-token histograms: the core thread adds to tok without a lock
	 * and publishes a copy, tok_pub (under mu), once a turn. */
	struct router_token_hists tok, tok_pub;
	char *keys[ROUTER_MAX_KEYS];
	int n_keys;
	struct duet_curve curve;
	struct duet_zap *zap; /* NULL without CURVE */
	char *tls_cert_pem, *tls_key_pem; /* http.c: loaded by start, freed by stop */
};

/* core.c */
int router_core_init(struct router *r, struct duet_err *err);
int router_submit(struct router *r, struct rreq *q);
void router_core_turn(struct router *r, int timeout_ms);
void router_release(struct router *r, struct rreq *q);
/* Ends every request (503) so no HTTP thread waits on the core any more. */
void router_shutdown(struct router *r);
/* Core thread: a decode node is up. */
int router_can_serve(struct router *r);
/* Any thread, from the snapshot (takes mu). */
int router_can_serve_snap(struct router *r);

/* place.c: where a request goes and why (for the log). */
struct router_placement {
	int pnode, dnode;   /* indexes into the node table; pnode -1 = local */
	/* prompt tokens the node that prefills (pnode, or dnode when local)
	 * computes: its prefix cache has the rest */
	int uncached;
	const char *reason; /* static text */
	/* predictions (-1: no measurement to predict from): time to the
	 * first token; the decode node's step while it prefills locally */
	double ttft_ms, step_ms;
	/* 1: answer 429 now, no placement meets the request's TTFT objective
	 * although an idle cluster would: it would only wait to miss it */
	int reject;
	int retry_after_s;
};
/* "length-aware", "round-robin", "least-loaded", "colocated"; -1 else. */
int router_policy_parse(const char *s, enum router_policy *out);
const char *router_policy_name(enum router_policy p);
/* The objectives that hold for q: its own, else the router's (0 = none). */
int router_slo_ttft_ms(const struct router *r, const struct rreq *q);
int router_slo_tbt_ms(const struct router *r, const struct rreq *q);
/* Predicted milliseconds of decode node n's next step if add_seqs more
 * sequences join it and it carries prefill_tokens prompt tokens holding
 * add_positions more positions; -1 before the node has measured steps. */
double router_step_ms(const struct router_node *n, int add_seqs, int prefill_tokens,
		      long add_positions);
/* The longest q waits in the queue for a decode node to take it: the
 * queue timeout, or its TTFT objective where that is shorter and no
 * token of it has gone out yet. */
long long router_queue_wait_ms(const struct router *r, const struct rreq *q);
/* Fails (err says why) when no decode node has room for q now, or none
 * keeps its streams' TBT objective with q beside them (tbt_admission). */
int router_place(struct router *r, struct rreq *q, struct router_placement *out,
		 struct duet_err *err);
/* The router's books on its node tables, kept the same way by the router
 * core and by `duet plan`'s simulator: q goes where pl says (counts it in
 * flight and queued on its nodes until their reports say so); its prompt's
 * KV is complete (it left the prefill queue, both nodes cache it); its
 * placement ended (finished, failed or moved). */
void router_placement_commit(struct router *r, struct rreq *q, const struct router_placement *pl);
void router_placement_prompt_done(struct router *r, struct rreq *q);
void router_placement_end(struct router *r, struct rreq *q);
/* A load report of node n, received at now_us, replaces what the table
 * knew of it; fails (n's prefix summary then empty) only out of memory. */
int router_node_report(struct router_node *n, const Duet__LoadReport *l, long long now_us,
		       struct duet_err *err);

/* request.c: what one HTTP body asks for: the fields every completion of
 * it shares (tmpl: limits, sampling, stops, format), its prompts, and n
 * completions of each (choice index = prompt * n + sample). */
#define ROUTER_MAX_N 8		/* OpenAI's n goes to 128; 8 fit a node's batch */
#define ROUTER_MAX_CHOICES 16	/* prompts * n */
#define ROUTER_MAX_WARNING 256

struct rjob {
	struct rreq tmpl; /* no prompt of its own */
	int n, n_prompts;
	int *prompt[ROUTER_MAX_CHOICES], n_prompt[ROUTER_MAX_CHOICES];
	char *prompt_text[ROUTER_MAX_CHOICES]; /* as sent, for echo (NULL: token ids) */
	int echo, include_usage;
	int logprobs; /* chosen token's log-probability reported */
	/* fields of OpenAI's API taken but not honoured: the response's
	 * X-Duet-Warning header and a log line */
	char warning[ROUTER_MAX_WARNING];
};
/* Fills job (job->tmpl.chat says which API) from a JSON body, or says why
 * not in err (the client's 400 message). rjob_free frees what it took. */
int router_parse_request(struct router *r, const char *text, size_t n, struct rjob *job,
			 struct duet_err *err);
void router_job_free(struct rjob *job);
/* A request for choice i of job (NULL when out of memory): the shared
 * fields copied, its prompt, its seed (the job's + the sample index, so a
 * choice reproduces alone). */
struct rreq *router_job_request(const struct rjob *job, int i);

/* http.c */
struct MHD_Daemon;
struct MHD_Daemon *router_http_start(struct router *r, struct duet_err *err);
/* Stops d (NULL is fine) and frees what start loaded. */
void router_http_stop(struct router *r, struct MHD_Daemon *d);

#endif
