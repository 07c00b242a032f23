/* duet plan search: the cheapest clusters that serve a trace within its
 * SLOs. A family of configurations (colocated nodes of one type; prefill
 * nodes of one type and decode nodes of another at a fixed share, under
 * one policy) grows with its node count: for each family the search
 * doubles the count until the share of requests within SLO reaches the
 * target (or the budget stops it), then bisects down to the smallest count
 * that reaches it. Every simulated configuration is kept for the table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sort.h"
#include "base/clock.h"
#include "base/grow.h"
#include "cli.h"
#include "plan/plan.h"

/* Shares of prefill nodes tried in a disaggregated family. */
static const double PREFILL_SHARES[] = {0.125, 0.25, 1.0 / 3, 0.5, 2.0 / 3};
#define N_SHARES ((int)(sizeof PREFILL_SHARES / sizeof *PREFILL_SHARES))
#define MAX_POLICIES 4
#define TABLE_ROWS 25

struct outcome {
	int ptype, dtype, n_prefill, n_decode;
	enum router_policy policy;
	double cost, goodput, attainment, ttft_p99, tbt_p99;
	int miss_ttft, miss_tbt, failed;
	double seconds; /* simulation's own time */
};

struct search {
	const struct plan_args *a;
	struct plan_profile types[PLAN_MAX_TYPES];
	struct trace t;
	struct synth syn;
	double scale;
	struct replay_result *res;
	struct sim_req *out;
	double *v;
	struct outcome *tried;
	int n_tried, cap_tried;
	struct cli_progress progress; /* families searched, on a terminal */
};

static int evaluate(struct search *s, struct outcome *o, struct duet_err *err)
{
	const struct plan_args *a = s->a;
	struct sim_cfg c = a->sim;
	c.n_prefill = o->n_prefill;
	c.n_decode = o->n_decode;
	c.policy = o->policy;
	c.prefill = &s->types[o->ptype];
	c.decode = &s->types[o->dtype];
	c.seed = a->seed;
	c.keep_tokens = 0;
	int n = s->t.n;
	memset(s->res, 0, sizeof *s->res * (size_t)n);
	memset(s->out, 0, sizeof *s->out * (size_t)n);
	struct sim_stats st;
	double t0 = duet_now_s();
	if (sim_run(&c, &s->t, &s->syn, s->scale, s->res, s->out, &st, err))
		return -1;
	o->seconds = duet_now_s() - t0;
	int within = 0, nt = 0;
	double first = 1e300, last = 0;
	for (int i = 0; i < n; i++) {
		const struct replay_result *r = &s->res[i];
		first = r->sent_s < first ? r->sent_s : first;
		last = r->done_s > last ? r->done_s : last;
		if (r->status != RS_OK) {
			o->failed++;
			continue;
		}
		int ttft_ok = s->out[i].ttft_s <= a->slo_ttft, tbt_ok = s->out[i].tbt_p99_s <= a->slo_tbt;
		o->miss_ttft += !ttft_ok;
		o->miss_tbt += !tbt_ok;
		within += ttft_ok && tbt_ok;
		s->v[nt++] = s->out[i].ttft_s;
	}
	o->ttft_p99 = duet_percentile_f64(s->v, (size_t)nt, 99);
	nt = 0;
	for (int i = 0; i < n; i++)
		if (s->res[i].status == RS_OK)
			s->v[nt++] = s->out[i].tbt_p99_s;
	/* of the requests' own p99 gaps */
	o->tbt_p99 = duet_percentile_f64(s->v, (size_t)nt, 99);
	o->attainment = (double)within / n;
	o->goodput = last > first ? within / (last - first) : 0;
	struct outcome *l = duet_grow(s->tried, &s->cap_tried, s->n_tried + 1, sizeof *l, 64);
	if (!l)
		return duet_errf(err, "out of memory");
	s->tried = l;
	l[s->n_tried++] = *o;
	return 0;
}

/* Configuration `total` nodes of a family; 0 when it has none (over budget
 * or node limit, or no room for a split). */
static int shape(const struct search *s, struct outcome *o, int total, double share)
{
	const struct plan_args *a = s->a;
	if (share > 0) {
		o->n_prefill = (int)lround(share * total);
		o->n_prefill = o->n_prefill < 1 ? 1 : o->n_prefill;
		o->n_decode = total - o->n_prefill;
		if (o->n_decode < 1)
			return 0;
	} else {
		o->n_prefill = 0;
		o->n_decode = total;
	}
	o->cost = o->n_prefill * s->types[o->ptype].price_per_hour +
		  o->n_decode * s->types[o->dtype].price_per_hour;
	return total <= a->max_nodes && o->cost <= a->budget;
}

/* The smallest node count of the family reaching the target. */
static int family(struct search *s, struct outcome base, double share, struct duet_err *err)
{
	int lo = share > 0 ? 1 : 0, hi = -1, n = share > 0 ? 2 : 1;
	for (;; n *= 2) {
		struct outcome o = base;
		if (!shape(s, &o, n, share)) {
			/* the largest that fits, once */
			int m = n / 2 + 1, best = -1;
			for (int k = n - 1; k >= m; k--) {
				struct outcome x = base;
				if (shape(s, &x, k, share)) {
					best = k;
					break;
				}
			}
			if (best < 0)
				return 0;
			o = base;
			shape(s, &o, best, share);
			if (evaluate(s, &o, err))
				return -1;
			if (o.attainment < s->a->attainment)
				return 0;
			hi = best;
			lo = n / 2;
			break;
		}
		if (evaluate(s, &o, err))
			return -1;
		if (o.attainment >= s->a->attainment) {
			hi = n;
			lo = n / 2;
			break;
		}
	}
	while (hi - lo > 1) {
		int mid = (lo + hi) / 2;
		struct outcome o = base;
		if (!shape(s, &o, mid, share)) {
			lo = mid;
			continue;
		}
		if (evaluate(s, &o, err))
			return -1;
		if (o.attainment >= s->a->attainment)
			hi = mid;
		else
			lo = mid;
	}
	return 0;
}

/* Reaching the target (*ctx) first, cheapest first; then the most
 * goodput per unit of price. */
static int cmp_outcome(const void *x, const void *y, void *ctx)
{
	const struct outcome *a = x, *b = y;
	double target = *(const double *)ctx;
	int ma = a->attainment >= target, mb = b->attainment >= target;
	if (ma != mb)
		return mb - ma;
	if (ma && a->cost != b->cost)
		return a->cost < b->cost ? -1 : 1;
	double ga = a->cost > 0 ? a->goodput / a->cost : 0, gb = b->cost > 0 ? b->goodput / b->cost : 0;
	return ga > gb ? -1 : ga < gb;
}

static const char *binding(const struct outcome *o)
{
	if (o->failed > o->miss_ttft && o->failed > o->miss_tbt)
		return "rejected";
	if (!o->miss_ttft && !o->miss_tbt)
		return "none";
	return o->miss_ttft >= o->miss_tbt ? "TTFT" : "TBT";
}

static void describe(const struct search *s, const struct outcome *o, char *buf, size_t cap)
{
	if (o->policy == ROUTER_POLICY_COLOCATED)
		snprintf(buf, cap, "%d x %s colocated", o->n_decode, s->types[o->dtype].name);
	else
		snprintf(buf, cap, "%d x %s + %d x %s, %s", o->n_prefill, s->types[o->ptype].name,
			 o->n_decode, s->types[o->dtype].name, router_policy_name(o->policy));
}

static int write_csv(const struct search *s, const char *path, struct duet_err *err)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return duet_errnof(err, "%s", path);
	fprintf(f, "configuration,prefill_type,prefill_nodes,decode_type,decode_nodes,policy,"
		   "cost_per_hour,goodput_rps,attainment,ttft_p99_s,tbt_p99_s,failed,binding,"
		   "sim_seconds\n");
	for (int i = 0; i < s->n_tried; i++) {
		const struct outcome *o = &s->tried[i];
		char d[256];
		describe(s, o, d, sizeof d);
		fprintf(f, "\"%s\",%s,%d,%s,%d,%s,%.4f,%.4f,%.4f,%.4f,%.4f,%d,%s,%.2f\n", d,
			o->n_prefill ? s->types[o->ptype].name : "", o->n_prefill,
			s->types[o->dtype].name, o->n_decode, router_policy_name(o->policy), o->cost,
			o->goodput, o->attainment, o->ttft_p99, o->tbt_p99, o->failed, binding(o),
			o->seconds);
	}
	return fclose(f) ? duet_errnof(err, "%s", path) : 0;
}

static int run(struct search *s, struct duet_err *err)
{
	const struct plan_args *a = s->a;
	enum router_policy pol[MAX_POLICIES];
	int n_pol = 0;
	char buf[256];
	snprintf(buf, sizeof buf, "%s", a->policies);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n_pol == MAX_POLICIES || router_policy_parse(t, &pol[n_pol]) ||
		    pol[n_pol] == ROUTER_POLICY_COLOCATED)
			return duet_errf(err, "--policies '%s': up to %d of length-aware, "
					      "round-robin, least-loaded (colocated is always tried)",
					 a->policies, MAX_POLICIES);
		n_pol++;
	}
	int n_fam = a->n_types * (1 + a->n_types * n_pol * N_SHARES), done = 0;
	cli_progress_init(&s->progress, "duet plan search");
	for (int d = 0; d < a->n_types; d++) {
		struct outcome base = {.ptype = d, .dtype = d, .policy = ROUTER_POLICY_COLOCATED};
		if (family(s, base, 0, err))
			return -1;
		cli_progress_update(&s->progress, ++done, n_fam, "families");
		for (int p = 0; p < a->n_types; p++)
			for (int k = 0; k < n_pol; k++)
				for (int sh = 0; sh < N_SHARES; sh++) {
					struct outcome b = {.ptype = p, .dtype = d, .policy = pol[k]};
					if (family(s, b, PREFILL_SHARES[sh], err))
						return -1;
					cli_progress_update(&s->progress, ++done, n_fam, "families");
				}
	}
	cli_progress_end(&s->progress);
	qsort_r(s->tried, (size_t)s->n_tried, sizeof *s->tried, cmp_outcome,
		(void *)&a->attainment);
	printf("%d requests over %.0f s; SLOs: TTFT %.3g s, TBT %.3g s; a plan keeps %.0f%% of "
	       "requests within both; budget %.4g per hour\n\n",
	       s->t.n, s->t.req[s->t.n - 1].arrival_s / s->scale, a->slo_ttft, a->slo_tbt,
	       100 * a->attainment, a->budget);
	printf("| %-44s | %9s | %9s | %7s | %9s | %9s | %8s |\n", "configuration", "cost/hour",
	       "goodput", "in SLO", "TTFT p99", "TBT p99", "binds");
	printf("|----------------------------------------------|-----------|-----------|---------|-----------|-----------|----------|\n");
	for (int i = 0; i < s->n_tried && i < TABLE_ROWS; i++) {
		const struct outcome *o = &s->tried[i];
		char d[256];
		describe(s, o, d, sizeof d);
		printf("| %-44s | %9.2f | %9.3f | %6.1f%% | %8.3fs | %8.4fs | %8s |\n", d, o->cost,
		       o->goodput, 100 * o->attainment, o->ttft_p99, o->tbt_p99, binding(o));
	}
	if (s->n_tried > TABLE_ROWS)
		printf("(%d more configurations%s)\n", s->n_tried - TABLE_ROWS,
		       a->csv ? " in the CSV" : "; --csv FILE lists them all");
	return a->csv ? write_csv(s, a->csv, err) : 0;
}

int plan_search(struct plan_args *a)
{
	struct duet_err err;
	struct search *s = calloc(1, sizeof *s);
	int rc = 1;
	if (!s)
		return cli_fail("plan", "out of memory");
	s->a = a;
	if (!a->n_types) {
		duet_errf(&err, "search needs at least one --node-type FILE");
		goto out;
	}
	int ctx = 1 << 30;
	for (int i = 0; i < a->n_types; i++) {
		if (plan_profile_load(a->types[i], &s->types[i], &err))
			goto out;
		ctx = s->types[i].ctx_len < ctx ? s->types[i].ctx_len : ctx;
	}
	if (plan_load_trace(a, ctx, &s->t, &s->syn, &s->scale, &err))
		goto out;
	s->res = calloc((size_t)s->t.n, sizeof *s->res);
	s->out = calloc((size_t)s->t.n, sizeof *s->out);
	s->v = calloc((size_t)s->t.n, sizeof *s->v);
	if (!s->res || !s->out || !s->v) {
		duet_errf(&err, "out of memory for %d requests", s->t.n);
		goto out;
	}
	if (run(s, &err))
		goto out;
	rc = 0;
out:
	if (s->res)
		replay_results_free(s->res, s->t.n);
	free(s->res);
	free(s->out);
	free(s->v);
	free(s->tried);
	trace_free(&s->t);
	free(s);
	return rc ? cli_fail("plan", "%s", err.msg) : 0;
}
