/* duet plan: the command line's arguments and its two runs.
 *   profile.c   node profiles (JSON, scaling)
 *   sim.c       the discrete-event simulator
 *   simulate.c  duet plan simulate: replay's outputs from a simulation
 *   search.c    duet plan search: configurations within a budget
 *   cmd_plan.c  the command line */
#ifndef DUET_PLAN_H
#define DUET_PLAN_H

#include "plan/profile.h"
#include "plan/sim.h"

#define PLAN_MAX_TYPES 8
/* Vocabulary of the synthetic prompts: any works, only their hashes
 * matter to placement. */
#define PLAN_VOCAB 32000

struct plan_args {
	const char *trace;
	double start, duration, rate, length_scale;
	int max_requests, repeat;
	uint64_t seed;
	const char *pprofile, *dprofile;
	struct sim_cfg sim;
	double slo_ttft, slo_tbt;
	double sweep[REPLAY_MAX_SWEEP];
	int n_sweep;
	const char *out, *label;
	int no_plots;
	const char *types[PLAN_MAX_TYPES];
	int n_types;
	double budget, attainment;
	int max_nodes;
	const char *policies;
	const char *csv;
};

/* The trace as a.trace, sliced, repeated, fitted to ctx_len; its
 * synthetic prompts; the rate scale that gives a.rate (1: as traced).
 * Settles a.sim.prefix_cache -1 (auto): on when prompts can share
 * prefixes (the trace has hash ids; a repeated slice's copies have
 * prompts of their own). */
int plan_load_trace(struct plan_args *a, int ctx_len, struct trace *t, struct synth *syn,
		    double *rate_scale, struct duet_err *err);
int plan_simulate(struct plan_args *a);
int plan_search(struct plan_args *a);

#endif
