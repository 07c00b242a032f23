/* A node's forward passes as its trace measured them, against the step
 * model of a profile (duet bench --profile): how much slower or faster
 * the node ran in the cluster than the profile says, which is what
 * `duet plan simulate` assumes. Decode steps ("step" spans) and prefill
 * passes ("prefill" spans) both carry what the model weighs: sequences,
 * prompt tokens, positions after the pass and chunk pairs. */
#ifndef DUET_TRACE_STEPS_H
#define DUET_TRACE_STEPS_H

#include <jansson.h>

#include "base/err.h"
#include "plan/profile.h"

struct trace_steps {
	char node[64];
	int n;		  /* passes compared */
	double actual_ms; /* their measured time, summed */
	double model_ms;  /* the profile's model for each, summed */
	double spread[PLAN_SPREAD_N]; /* measured / model per pass, at plan_spread_p */
};

/* Compares the passes of the process named node (or, node NULL, of each
 * process with passes, up to max) that start in [from_us, to_us) of the
 * wall clock (to_us 0: no end) in events (tracefile_load's array or a
 * merged trace's object) with p's model. Fails naming the problem when no
 * process matches, or when its spans lack the model's fields (traces
 * written before they carried positions). *n_out: entries filled. */
int trace_steps_compare(json_t *events, const char *node, const struct plan_profile *p,
			long long from_us, long long to_us, struct trace_steps *out, int max,
			int *n_out, struct duet_err *err);

#endif
