/* duet bench --profile: measures a node profile for `duet plan`
 * (plan/profile.h) with an engine the caller made. */
#ifndef DUET_BENCH_PROFILE_H
#define DUET_BENCH_PROFILE_H

#include <jansson.h>
#include <stdio.h>

#include "engine/kvcache.h"
#include "plan/profile.h"

#define BENCH_PROFILE_MAX_BATCH 64
#define BENCH_PROFILE_MAX_LIST 16

struct bench_profile_opts {
	struct duet_engine *engine;
	struct duet_kv_pool *kv; /* room for max batch + 1 sequences of max depth + chunk */
	const int *tokens;	 /* max depth + largest chunk prompt tokens */
	int vocab;
	float *logits; /* vocab x max batch */
	int reps;
	const int *batches, *depths, *chunks, *mixed_batches;
	int n_batches, n_depths, n_chunks, n_mixed_batches;
	FILE *table; /* measured against the fit; NULL: none */
};

/* Fills the step model of *out (the rest is the caller's) and *points
 * (a new JSON array of what was measured). */
int bench_profile(const struct bench_profile_opts *o, struct plan_profile *out, json_t **points,
		  struct duet_err *err);


/* The whole of `duet bench --profile FILE`: pool, engine, measurement,
 * the table on stdout and the profile written to a->path. */
struct duet_model;
struct bench_profile_args {
	const char *path, *name;
	int threads, reps;
	int chunk;	/* max-batch-tokens of the nodes it stands for */
	long kv_mb;	/* their kv-mb */
	double link_gb_s; /* 0: the default, a stated 10 GbE */
	double price;
	enum duet_kv_dtype kv_dtype;
	const int *batches, *depths; /* NULL counts: the defaults */
	int n_batches, n_depths;
};
int bench_profile_run(const struct duet_model *m, const struct bench_profile_args *a,
		      struct duet_err *err);

#endif
