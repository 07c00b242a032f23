/* duet plan simulate: a simulated run written as duet replay writes a
 * measured one, so `duet replay --compare` overlays the two. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/clock.h"
#include "plan/plan.h"

int plan_load_trace(struct plan_args *a, int ctx_len, struct trace *t, struct synth *syn,
		    double *rate_scale, struct duet_err *err)
{
	struct trace_fit fit;
	*rate_scale = 1;
	if (trace_load(a->trace, TRACE_AUTO, t, err))
		return -1;
	if (trace_slice(t, a->start, a->duration, a->max_requests, err) ||
	    (a->rate > 0 && trace_rate_scale(t, a->rate, rate_scale, err)))
		goto fail;
	if (a->repeat > 1) {
		/* back to back, each copy one mean gap after the last */
		int n = t->n;
		double span = t->req[n - 1].arrival_s + t->req[n - 1].arrival_s / (n > 1 ? n - 1 : 1);
		struct trace_req *r = realloc(t->req, sizeof *r * (size_t)n * (size_t)a->repeat);
		if (!r) {
			duet_errf(err, "out of memory for %d x %d requests", n, a->repeat);
			goto fail;
		}
		t->req = r;
		for (int k = 1; k < a->repeat; k++)
			for (int i = 0; i < n; i++) {
				struct trace_req *q = &r[(size_t)k * (size_t)n + (size_t)i];
				*q = r[i];
				q->arrival_s += span * k;
				if (r[i].n_hash) {
					q->hash_ids = malloc(sizeof *q->hash_ids * (size_t)r[i].n_hash);
					if (!q->hash_ids) {
						q->n_hash = 0;
						t->n = k * n + i;
						duet_errf(err, "out of memory");
						goto fail;
					}
					memcpy(q->hash_ids, r[i].hash_ids,
					       sizeof *q->hash_ids * (size_t)r[i].n_hash);
				}
			}
		t->n = n * a->repeat;
	}
	if (a->sim.prefix_cache < 0)
		a->sim.prefix_cache = t->block_tokens > 0;
	if (trace_fit(t, a->length_scale, a->length_scale, ctx_len, &fit, err) ||
	    synth_init(syn, a->seed, PLAN_VOCAB, t->block_tokens, err))
		goto fail;
	return 0;
fail:
	trace_free(t);
	return -1;
}

static int load_profiles(const struct plan_args *a, struct plan_profile *pp,
			 struct plan_profile *dp, struct duet_err *err)
{
	if (!a->dprofile)
		return duet_errf(err, "--profile FILE (or --decode-profile) is required");
	if (plan_profile_load(a->dprofile, dp, err))
		return -1;
	if (a->pprofile && strcmp(a->pprofile, a->dprofile))
		return plan_profile_load(a->pprofile, pp, err);
	*pp = *dp;
	return 0;
}

static int write_summary(const char *dir, const struct plan_args *a, const struct sim_cfg *c,
			 const struct sim_stats *st, double rate_scale, const char *label,
			 const struct replay_summary *sum, struct duet_err *err)
{
	json_t *j = replay_summary_to_json(sum);
	json_object_set_new(j, "label", json_string(label));
	json_object_set_new(j, "trace", json_pack("{s:s, s:f, s:f, s:i, s:f, s:i}", "file", a->trace,
						  "start_s", a->start, "duration_s", a->duration,
						  "max_requests", a->max_requests, "length_scale",
						  a->length_scale, "repeat", a->repeat));
	json_object_set_new(j, "rate_scale", json_real(rate_scale));
	json_object_set_new(
		j, "simulated",
		json_pack("{s:i, s:i, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, "
			  "s:I, s:f, s:b, s:i, s:i, s:I, s:I, s:b, s:b, s:i}",
			  "prefill_nodes", c->n_prefill, "decode_nodes", c->n_decode, "policy",
			  router_policy_name(c->policy), "prefill_profile", c->prefill->name,
			  "decode_profile", c->decode->name, "local_max_prompt", c->local_max_prompt,
			  "router_slo_ttft_ms", c->slo_ttft_ms, "router_slo_tbt_ms", c->slo_tbt_ms,
			  "report_ms", c->report_ms, "events", (json_int_t)st->events, "steps",
			  (json_int_t)st->steps, "placed_local", (json_int_t)st->placed_local,
			  "placed_disaggregated", (json_int_t)st->placed_disagg, "rejected_early",
			  (json_int_t)st->rejected, "waited_for_room", (json_int_t)st->waited,
			  "seed", (double)c->seed, "prefix_cache", c->prefix_cache, "max_queue",
			  c->max_queue, "queue_timeout_ms", c->queue_timeout_ms, "queue_full",
			  (json_int_t)st->queue_full, "queue_timeouts", (json_int_t)st->queue_timeouts,
			  "step_spread", c->step_spread && (c->decode->has_spread || c->prefill->has_spread),
			  "router_tbt_admission", c->tbt_admission, "machine_nodes",
			  c->machine_nodes > 1 ? c->machine_nodes : 1));
	char path[4096];
	snprintf(path, sizeof path, "%s/summary.json", dir);
	int bad = json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(j);
	return bad ? duet_errnof(err, "%s: write failed", path) : 0;
}

int plan_simulate(struct plan_args *a)
{
	struct duet_err err;
	struct plan_profile pp, dp;
	struct trace t = {0};
	struct synth syn;
	double scale;
	if (load_profiles(a, &pp, &dp, &err) ||
	    plan_load_trace(a, dp.ctx_len, &t, &syn, &scale, &err))
		return cli_fail("plan", "%s", err.msg);
	struct sim_cfg c = a->sim;
	c.prefill = &pp;
	c.decode = &dp;
	c.seed = a->seed;
	c.keep_tokens = 1;
	if (c.policy == ROUTER_POLICY_COLOCATED)
		c.n_prefill = 0;
	int n_runs = a->n_sweep ? a->n_sweep : 1, rc = 1, done = 0;
	struct replay_summary *sums = calloc((size_t)n_runs, sizeof *sums);
	char (*dirs)[4096] = calloc((size_t)n_runs, sizeof *dirs);
	char (*names)[32] = calloc((size_t)n_runs, sizeof *names);
	const char **dps = calloc((size_t)n_runs, sizeof *dps), **lps = calloc((size_t)n_runs, sizeof *lps);
	const char *label = a->label ? a->label : "simulated";
	if (!sums || !dirs || !names || !dps || !lps) {
		duet_errf(&err, "out of memory");
		goto out;
	}
	printf("cluster: %d prefill (%s) and %d decode (%s) nodes, policy %s; %d requests\n",
	       c.n_prefill, pp.name, c.n_decode, dp.name, router_policy_name(c.policy), t.n);
	for (int i = 0; i < n_runs; i++, done++) {
		if (a->n_sweep) {
			snprintf(dirs[i], sizeof dirs[i], "%s/rate-%g", a->out, a->sweep[i]);
			snprintf(names[i], sizeof names[i], "x%g", a->sweep[i]);
		} else {
			snprintf(dirs[i], sizeof dirs[i], "%s", a->out);
			snprintf(names[i], sizeof names[i], "%.31s", label);
		}
		dps[i] = dirs[i];
		lps[i] = names[i];
		double rs = scale * (a->n_sweep ? a->sweep[i] : 1);
		struct replay_result *res = calloc((size_t)t.n, sizeof *res);
		struct sim_stats st;
		if (!res) {
			duet_errf(&err, "out of memory for %d results", t.n);
			goto out;
		}
		double t0 = duet_now_s(), t1 = t0;
		struct synth syn_i = synth_for_rate(&syn, i); /* as duet replay --sweep */
		int bad = cli_mkdirs(dirs[i], &err) || sim_run(&c, &t, &syn_i, rs, res, NULL, &st, &err) ||
			  (t1 = duet_now_s(),
			   replay_summarize(res, t.n, a->slo_ttft, a->slo_tbt, &sums[i], &err)) ||
			  replay_write_csv(dirs[i], res, t.n, &sums[i], &err) ||
			  write_summary(dirs[i], a, &c, &st, rs, names[i], &sums[i], &err);
		double t2 = duet_now_s();
		replay_results_free(res, t.n);
		free(res);
		if (bad)
			goto out;
		replay_print_table(stdout, &lps[i], &sums[i], 1);
		printf("simulated: %lld events, %lld decode steps, %lld local and %lld "
		       "disaggregated placements, %lld rejected early, %lld waited for room (%lld "
		       "of them past queue-timeout-ms), %lld refused with the queue full; %.1f s "
		       "simulating, %.1f s summarizing and writing\n",
		       st.events, st.steps, st.placed_local, st.placed_disagg, st.rejected, st.waited,
		       st.queue_timeouts, st.queue_full, t1 - t0, t2 - t1);
		struct duet_err perr;
		if (!a->no_plots && replay_plot_runs(dirs[i], &dps[i], &lps[i], 1, &perr))
			fprintf(stderr, "duet plan: no plots: %s\n", perr.msg);
	}
	if (a->n_sweep) {
		if (replay_write_sweep(a->out, a->sweep, sums, done, &err))
			goto out;
		printf("\nsweep (%s):\n", label);
		replay_print_table(stdout, lps, sums, done);
		struct duet_err perr;
		if (!a->no_plots && (replay_plot_runs(a->out, dps, lps, done, &perr) ||
				     replay_plot_sweeps(a->out, (const char *const[]){a->out}, &label,
							1, &perr)))
			fprintf(stderr, "duet plan: no sweep plots: %s\n", perr.msg);
	}
	printf("results: %s\n", a->out);
	rc = 0;
out:
	free(sums);
	free(dirs);
	free(names);
	free(dps);
	free(lps);
	trace_free(&t);
	return rc ? cli_fail("plan", "%s", err.msg) : 0;
}
