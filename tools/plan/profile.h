/* Node profiles for `duet plan`: what a simulated node needs to know of
 * the machine it stands for. A forward pass (a decode step, a prefill
 * batch) takes
 *
 *   base_ms + seq_ms * seqs + token_ms * prefill_tokens
 *   + kctx_ms * positions / 1024 + kpair_ms * pairs / 2^20
 *
 * milliseconds, where positions sums the sequences' lengths after the pass
 * (what decode attention reads) and pairs sums, over the prefill chunks,
 * rows times the positions before them (what chunk attention adds).
 * The first four terms are the step-time model a decode node fits online
 * and reports to the router
 * (decode-node/step.c), here fitted offline over a grid of batches,
 * contexts and chunks by `duet bench --profile`, or written by hand for a
 * machine we do not have, or scaled from a measured one.
 *
 * A measured node's passes scatter about the model (the fit's misses of
 * each shape, the machine's own noise): the optional step spread gives
 * the quantiles of measured / model per pass at PLAN_SPREAD_P, and the
 * simulator draws each pass's time from it (with its mean taken out, so
 * the model still says how long a pass takes on average). Without it
 * every pass takes the model's time: the tails of the token gaps come out
 * short by what that scatter adds (BENCHMARKS.md, 2026-12-04 session 4).
 *
 * Nodes that share a machine's memory slow each other down: on this
 * project's two-vCPU VM a decode step beside another node's decode loop
 * took 1.3x its time alone, beside a prefill loop 1.05x (BENCHMARKS.md,
 * 2026-12-06 second), in the host's episodes of contention (eighth). The
 * optional beside model is the same step model measured while the
 * machine's other CPU runs a decode loop of one sequence (the hungriest
 * neighbour for memory bandwidth); the simulator
 * (plan/sim.h, machine_nodes) runs a pass between its two models by how
 * much of a memory-bound pass its neighbours are running at each moment.
 *
 * The JSON form (every field but the fit's coefficients optional):
 *   {"name": "...", "model": "...", "threads": 1,
 *    "step": {"base_ms": .., "seq_ms": .., "token_ms": .., "kctx_ms": ..,
 *             "kpair_ms": .. (optional)},
 *    "step_spread": [13 ratios at PLAN_SPREAD_P, non-decreasing],
 *    "beside": {the same five fields as "step"} (optional),
 *    "max_batch_tokens": 64, "max_batch_seqs": 64, "block_tokens": 16,
 *    "kv_bytes_per_token": .., "kv_tokens": .., "ctx_len": ..,
 *    "link_gb_s": .., "link_latency_ms": .., "ingest_gb_s": ..,
 *    "price_per_hour": .., "points": [...measured, for the record]} */
#ifndef DUET_PLAN_PROFILE_H
#define DUET_PLAN_PROFILE_H

#include <jansson.h>

#include "base/err.h"

#define PLAN_NAME_MAX 64
/* The step spread's probabilities: 1, 5, 10, 20, ..., 90, 95, 99%. */
#define PLAN_SPREAD_N 13
extern const double plan_spread_p[PLAN_SPREAD_N];
/* Where the 1st, 10th, 50th, 90th and 99th percentile are in a spread. */
enum { PLAN_SPREAD_P1 = 0, PLAN_SPREAD_P10 = 2, PLAN_SPREAD_P50 = 6, PLAN_SPREAD_P90 = 10,
       PLAN_SPREAD_P99 = 12 };
#define PLAN_MODEL_MAX 256

/* A step-time model's coefficients (the formula above). */
struct plan_step {
	double base_ms, seq_ms, token_ms, kctx_ms, kpair_ms;
};

struct plan_profile {
	char name[PLAN_NAME_MAX];
	char model[PLAN_MODEL_MAX]; /* what it was measured with (free text) */
	int threads;
	struct plan_step step;
	int max_batch_tokens; /* a node's max-batch-tokens: chunk of a prefill */
	int max_batch_seqs;   /* prompts in one prefill batch */
	int block_tokens;     /* KV positions per block */
	double kv_bytes_per_token;
	long kv_tokens;	       /* positions the node's KV memory holds */
	int ctx_len;	       /* longest sequence */
	double link_gb_s;      /* KV sent from this node (prefill) */
	double link_latency_ms; /* one message between two nodes */
	double ingest_gb_s;    /* KV written into a decode node's cache */
	double price_per_hour;
	int has_spread;
	double spread[PLAN_SPREAD_N]; /* measured / model at plan_spread_p */
	int has_beside;
	struct plan_step beside; /* beside a neighbour's decode loop */
};

/* Defaults of a field a hand-written profile leaves out. */
void plan_profile_defaults(struct plan_profile *p);
/* Milliseconds of a forward pass of this shape. */
double plan_profile_step_ms(const struct plan_profile *p, int seqs, long prefill_tokens,
			    double positions, double pairs);
/* The same pass beside a neighbour's decode loop (the beside model; the
 * step model where the profile has none). */
double plan_profile_beside_ms(const struct plan_profile *p, int seqs, long prefill_tokens,
			      double positions, double pairs);
/* The share of a pass's time alone that reads memory (its base and
 * attention-over-KV terms): how hard it presses on a neighbour. */
double plan_profile_memory_share(const struct plan_profile *p, int seqs, long prefill_tokens,
				 double positions, double pairs);
/* How much longer than the model a pass drawn at u in [0, 1) takes: the
 * spread's quantile at u (its 1% below u = 0.01, its 99% above 0.99,
 * linear between), over the spread's mean; 1 without a spread. */
double plan_profile_jitter(const struct plan_profile *p, double u);
/* Sets p's step spread to q: PLAN_SPREAD_N ratios in (0, 100],
 * non-decreasing; err names `name` and the first that is not. */
int plan_profile_set_spread(struct plan_profile *p, const double q[PLAN_SPREAD_N],
			    const char *name, struct duet_err *err);
/* The spread of n ratios r (reordered): their percentiles at
 * plan_spread_p. */
void plan_spread_of(double *r, size_t n, double spread[PLAN_SPREAD_N]);
/* From JSON (a file's root); err names the field that is wrong. */
int plan_profile_from_json(json_t *j, const char *name, struct plan_profile *p,
			   struct duet_err *err);
int plan_profile_load(const char *path, struct plan_profile *p, struct duet_err *err);
/* A new JSON object (the caller decrefs). */
json_t *plan_profile_to_json(const struct plan_profile *p);
/* A machine `compute` times as fast at arithmetic and `bandwidth` times
 * at reading memory, with `memory` times the KV memory: the weight-reading
 * part of a step (base, attention over the KV) scales with bandwidth, the
 * per-row arithmetic (seq, token) with compute. */
void plan_profile_scale(struct plan_profile *p, double compute, double bandwidth, double memory);

#endif
