#include "trace/steps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace/tracefile.h"

static int int_arg(json_t *args, const char *key, long long *v)
{
	json_t *x = json_object_get(args, key);
	if (!json_is_integer(x))
		return -1;
	*v = json_integer_value(x);
	return 0;
}

/* The model's inputs of one span, or -1 if it is not a pass or lacks
 * them (*old set then). */
static int pass_of(json_t *e, int *seqs, long *tokens, double *positions, double *pairs,
		   int *old)
{
	const char *ph = json_string_value(json_object_get(e, "ph"));
	const char *nm = json_string_value(json_object_get(e, "name"));
	if (!ph || strcmp(ph, "X") || !nm)
		return -1;
	json_t *a = json_object_get(e, "args");
	long long s = 0, t = 0, pos = 0, pr = 0, running = 0, spec = 0;
	if (strcmp(nm, "step") == 0) {
		/* decode: running streams and local prefill chunks; verified
		 * proposals are rows like a prompt's */
		if (int_arg(a, "running", &running) || int_arg(a, "prefill_seqs", &s) ||
		    int_arg(a, "prefill_tokens", &t) || int_arg(a, "spec_rows", &spec))
			return -1;
		s += running;
		t += spec;
	} else if (strcmp(nm, "prefill") == 0) {
		if (int_arg(a, "seqs", &s) || int_arg(a, "tokens", &t))
			return -1;
	} else {
		return -1;
	}
	if (int_arg(a, "positions", &pos) || int_arg(a, "pairs", &pr)) {
		*old = 1;
		return -1;
	}
	*seqs = (int)s;
	*tokens = (long)t;
	*positions = (double)pos;
	*pairs = (double)pr;
	return 0;
}

static int compare_pid(json_t *ev, json_int_t pid, const struct plan_profile *p,
		       long long from_us, long long to_us, struct trace_steps *o, int *old,
		       struct duet_err *err)
{
	size_t n = json_array_size(ev);
	double *ratio = malloc(sizeof *ratio * (n ? n : 1));
	if (!ratio)
		return duet_errf(err, "out of memory for %zu events", n);
	o->n = 0;
	o->actual_ms = o->model_ms = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(ev, i);
		int seqs;
		long tokens;
		double positions, pairs;
		long long ts = json_integer_value(json_object_get(e, "ts"));
		if (json_integer_value(json_object_get(e, "pid")) != pid || ts < from_us ||
		    (to_us && ts >= to_us) || pass_of(e, &seqs, &tokens, &positions, &pairs, old))
			continue;
		double ms = (double)json_integer_value(json_object_get(e, "dur")) / 1000.0;
		double model = plan_profile_step_ms(p, seqs, tokens, positions, pairs);
		if (model <= 0)
			continue;
		ratio[o->n++] = ms / model;
		o->actual_ms += ms;
		o->model_ms += model;
	}
	if (o->n) {
		plan_spread_of(ratio, (size_t)o->n, o->spread);
	}
	free(ratio);
	return 0;
}

int trace_steps_compare(json_t *events, const char *node, const struct plan_profile *p,
			long long from_us, long long to_us, struct trace_steps *out, int max,
			int *n_out, struct duet_err *err)
{
	json_t *ev = tracefile_events(events);
	*n_out = 0;
	if (!ev)
		return duet_errf(err, "no trace events");
	int old = 0;
	for (size_t i = 0; i < json_array_size(ev); i++) {
		json_t *e = json_array_get(ev, i);
		const char *pn = tracefile_meta_name(e, "process_name");
		if (!pn || (node && strcmp(pn, node)))
			continue;
		struct trace_steps o;
		memset(&o, 0, sizeof o);
		snprintf(o.node, sizeof o.node, "%s", pn);
		if (compare_pid(ev, json_integer_value(json_object_get(e, "pid")), p, from_us, to_us,
				&o, &old, err))
			return -1;
		if (!o.n)
			continue;
		if (*n_out == max)
			return duet_errf(err, "more than %d processes with passes", max);
		out[(*n_out)++] = o;
	}
	if (*n_out)
		return 0;
	if (old)
		return duet_errf(err, "the passes carry no positions and pairs (a trace "
				      "written before they were recorded)");
	return duet_errf(err, "no decode steps or prefill passes of %s in the trace%s",
			 node ? node : "any process", from_us || to_us ? " in that time" : "");
}
