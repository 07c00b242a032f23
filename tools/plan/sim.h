/* duet plan's discrete-event simulator: a trace replayed against N
 * prefill and M decode nodes described by profiles (plan/profile.h), with
 * the router's own placement code (router/place.c: router_place, the
 * books it keeps on its node table, load reports applied as the router
 * applies them), driven by simulated clocks and simulated load reports.
 *
 * What a simulated node does is what its daemon does (decode-node/step.c,
 * prefill-node/queue.c): a decode step carries every running sequence and
 * local prefill chunks oldest first up to max-batch-tokens; a prefill node
 * takes its FIFO queue in batches up to max-batch-tokens and -seqs; a
 * decode node answers a reservation between two steps, and the prefill
 * node gets the prompt after that answer; KV
 * streams over the prefill node's link while it computes and is written
 * into the decode node's cache between two steps. Each forward pass takes
 * what its profile's step model says. With prefix_cache, every node keeps
 * its prefix cache with the node's own code (node/prefix_cache.c over a
 * KV pool of block books and no data): prompts start past the blocks
 * cached, prompts done are offered to the cache, and load reports carry
 * the cache's summary to placement, as the daemons do. A request no decode
 * node has room for waits in the router's queue, within max-queue and
 * queue-timeout-ms, as in router/core.c. Nodes that share a machine
 * (machine_nodes) slow each other's passes as the profiles' beside models
 * say. Not simulated: node failures. */
#ifndef DUET_PLAN_SIM_H
#define DUET_PLAN_SIM_H

#include <stdint.h>

#include "plan/profile.h"
#include "replay/replay.h"
#include "router.h"

#define SIM_DEFAULT_REPORT_MS 200 /* the nodes' report-ms default */

struct sim_cfg {
	int n_prefill, n_decode; /* n_prefill 0: every prompt on decode nodes */
	const struct plan_profile *prefill, *decode;
	enum router_policy policy;
	int local_max_prompt; /* the router's setting (default 64) */
	int slo_ttft_ms, slo_tbt_ms; /* the router's objectives, 0 = none */
	int tbt_admission;	     /* the router's tbt-admission (default 0) */
	int report_ms;
	/* the router's wait queue for room: at most max_queue requests, each
	 * for at most queue_timeout_ms, past either a 429 (its defaults:
	 * ROUTER_DEFAULT_MAX_QUEUE, ROUTER_DEFAULT_QUEUE_TIMEOUT_MS) */
	int max_queue, queue_timeout_ms;
	double client_ms; /* router to client, one way, added to every token */
	/* the router's first-token: 0 (its default, decode) a handed-over
	 * request's first token leaves when the decode node takes the
	 * sequence in; 1 (prefill) when the prefill node samples it */
	int first_token_prefill;
	uint64_t seed;	  /* load report phases, step spread draws */
	/* 1: every token's time into res[i].tok_s (what duet replay keeps);
	 * 0: only the first and last token and the request's p99 gap
	 * (res[i].n_tok counts them all) into struct sim_req (search) */
	int keep_tokens;
	/* 1: nodes keep prefix caches over their whole KV pool (the nodes'
	 * default prefix-cache-mb); 0: every prompt is computed whole */
	int prefix_cache;
	/* 1: each pass takes the model's time times a draw from its node's
	 * profile's step spread (profiles without one: the model's time);
	 * 0: the model's time */
	int step_spread;
	/* nodes per machine, in index order (prefill nodes first): nodes of
	 * one machine share its memory, and a pass runs slower while a
	 * machine-mate's pass presses on it (the profile's beside model,
	 * plan/profile.h); 0 or 1: every node its own machine */
	int machine_nodes;
};

/* A request's placement (its last), and its outcome when tokens are not
 * kept. reason is router_place's own static text. */
struct sim_req {
	double ttft_s, tbt_p99_s;
	const char *reason;
	int pnode, dnode; /* node indexes: prefill nodes first; pnode -1 = local */
};

struct sim_stats {
	long long events, steps;
	long long placed_local, placed_disagg, rejected, waited;
	long long queue_full, queue_timeouts; /* 429s of the wait queue */
	double end_s;
};

/* Replays t (arrivals divided by rate_scale) into res[0..t->n) (zeroed by
 * the caller, freed with replay_results_free) and out[0..t->n) (NULL: none;
 * required with keep_tokens 0). Deterministic for a seed. */
int sim_run(const struct sim_cfg *c, const struct trace *t, const struct synth *syn,
	    double rate_scale, struct replay_result *res, struct sim_req *out,
	    struct sim_stats *st, struct duet_err *err);

#endif
