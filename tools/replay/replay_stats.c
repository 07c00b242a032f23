/* What a replay measured: percentiles, the summary, its JSON form, the
 * per-request CSV and the data behind the plots. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/sort.h"
#include "replay/replay.h"

/* tokens.csv holds every token's time up to this many tokens; beyond, a
 * simulated day would write gigabytes, and requests.csv, the CDFs and the
 * timeline say what it would. */
#define TOKENS_CSV_MAX 10000000
/* Timeline buckets over a run (at least one second each). */
#define TIMELINE_BUCKETS 200

double replay_percentile(const double *v, int n, double p)
{
	if (n <= 0)
		return 0;
	double rank = p / 100.0 * (n - 1);
	int lo = (int)floor(rank);
	if (lo >= n - 1)
		return v[n - 1];
	if (lo < 0)
		return v[0];
	return v[lo] + (rank - lo) * (v[lo + 1] - v[lo]);
}

void replay_dist_of(double *v, int n, struct replay_dist *d)
{
	memset(d, 0, sizeof *d);
	d->n = n;
	if (n <= 0)
		return;
	duet_sort_f64(v, (size_t)n);
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += v[i];
	d->mean = sum / n;
	d->p50 = replay_percentile(v, n, 50);
	d->p90 = replay_percentile(v, n, 90);
	d->p99 = replay_percentile(v, n, 99);
	d->max = v[n - 1];
}

static double ttft_of(const struct replay_result *r)
{
	return r->n_tok ? r->tok_s[0] - r->sent_s : NAN;
}

static double t2_of(const struct replay_result *r)
{
	return r->n_tok > 1 ? r->tok_s[1] - r->sent_s : NAN;
}

/* One request's gaps between tokens into gaps (room for n_tok), in order. */
static int gaps_of(const struct replay_result *r, double *gaps)
{
	int n = 0;
	for (int k = 1; k < r->n_tok; k++)
		gaps[n++] = r->tok_s[k] - r->tok_s[k - 1];
	return n;
}

void replay_cdf_of(const double *sorted, int n, struct replay_cdf *c)
{
	int step = n > REPLAY_CDF_POINTS ? n / REPLAY_CDF_POINTS : 1;
	c->n = 0;
	for (int i = 0; i < n; i += step, c->n++) {
		c->value[c->n] = sorted[i];
		c->fraction[c->n] = (double)(i + 1) / n;
	}
	if (n && (n - 1) % step) {
		c->value[c->n] = sorted[n - 1];
		c->fraction[c->n++] = 1;
	}
}

static void count_kind(struct replay_summary *s, const char *kind)
{
	for (int i = 0; i < s->n_kinds; i++)
		if (!strcmp(s->kinds[i].kind, kind)) {
			s->kinds[i].count++;
			return;
		}
	if (s->n_kinds == REPLAY_MAX_KINDS) {
		count_kind(s, "other");
		return;
	}
	snprintf(s->kinds[s->n_kinds].kind, REPLAY_KIND_MAX, "%s", kind);
	s->kinds[s->n_kinds++].count = 1;
}

int replay_summarize(const struct replay_result *res, int n, double slo_ttft_s, double slo_tbt_s,
		     struct replay_summary *s, struct duet_err *err)
{
	memset(s, 0, sizeof *s);
	s->n_verified = s->n_wrong = -1;
	long long n_tok = 0;
	for (int i = 0; i < n; i++)
		n_tok += res[i].n_tok;
	double *ttft = malloc(((size_t)n + 1) * sizeof *ttft);
	double *e2e = malloc(((size_t)n + 1) * sizeof *e2e);
	double *lag = malloc(((size_t)n + 1) * sizeof *lag);
	double *t2 = malloc(((size_t)n + 1) * sizeof *t2);
	double *tbt = malloc(((size_t)n_tok + 1) * sizeof *tbt);
	int rc = -1;
	if (!ttft || !e2e || !lag || !t2 || !tbt) {
		duet_errf(err, "out of memory summarizing %d requests", n);
		goto out;
	}
	s->n = n;
	s->slo_ttft_s = slo_ttft_s;
	s->slo_tbt_s = slo_tbt_s;
	int n_ttft = 0, n_tbt = 0, n_t2 = 0;
	double first = INFINITY, last = 0;
	for (int i = 0; i < n; i++) {
		const struct replay_result *r = &res[i];
		lag[i] = r->sent_s - r->sched_s;
		first = fmin(first, r->sent_s);
		last = fmax(last, r->done_s);
		s->output_tokens += r->n_tok;
		if (r->status != RS_OK) {
			s->n_failed++;
			s->n_lost += strncmp(r->kind, "http_", 5) != 0 && strncmp(r->kind, "stream_", 7) != 0;
			count_kind(s, r->kind[0] ? r->kind : "unknown");
			continue;
		}
		s->n_ok++;
		s->prompt_tokens += r->prompt_tokens;
		e2e[n_ttft] = r->done_s - r->sent_s;
		ttft[n_ttft++] = ttft_of(r);
		if (r->n_tok > 1)
			t2[n_t2++] = t2_of(r);
		int g = gaps_of(r, tbt + n_tbt);
		double own_p99 = duet_percentile_f64(tbt + n_tbt, (size_t)g, 99);
		n_tbt += g;
		if (ttft_of(r) <= slo_ttft_s && own_p99 <= slo_tbt_s)
			s->n_slo++;
	}
	s->duration_s = n && last > first ? last - first : 0;
	if (s->duration_s > 0) {
		s->req_per_s = s->n_ok / s->duration_s;
		s->out_tok_per_s = (double)s->output_tokens / s->duration_s;
		s->in_tok_per_s = (double)s->prompt_tokens / s->duration_s;
		s->goodput_rps = s->n_slo / s->duration_s;
	}
	s->slo_attainment = n ? (double)s->n_slo / n : 0;
	if (n > 1 && res[n - 1].sched_s > res[0].sched_s)
		s->offered_rps = (n - 1) / (res[n - 1].sched_s - res[0].sched_s);
	replay_dist_of(ttft, n_ttft, &s->ttft);
	replay_cdf_of(ttft, n_ttft, &s->ttft_cdf);
	replay_dist_of(e2e, n_ttft, &s->e2e);
	replay_dist_of(tbt, n_tbt, &s->tbt);
	replay_cdf_of(tbt, n_tbt, &s->tbt_cdf);
	replay_dist_of(lag, n, &s->send_lag);
	replay_dist_of(t2, n_t2, &s->t2);
	rc = 0;
out:
	free(ttft);
	free(e2e);
	free(lag);
	free(t2);
	free(tbt);
	return rc;
}

/* ---- files ---- */

static FILE *open_in(const char *dir, const char *name, struct duet_err *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		duet_errnof(err, "%s", path);
	return f;
}

static int close_checked(FILE *f, const char *dir, const char *name, struct duet_err *err)
{
	int bad = ferror(f);
	if (fclose(f) || bad)
		return duet_errnof(err, "%s/%s: write failed", dir, name);
	return 0;
}

static int write_cdf(const char *dir, const char *name, const struct replay_cdf *c,
		     struct duet_err *err)
{
	FILE *f = open_in(dir, name, err);
	if (!f)
		return -1;
	fprintf(f, "value_s,fraction\n");
	for (int i = 0; i < c->n; i++)
		fprintf(f, "%.6f,%.6f\n", c->value[i], c->fraction[i]);
	return close_checked(f, dir, name, err);
}

/* A value or NaN (gnuplot's missing-data marker, set in replay_plot.c). */
static void print_opt(FILE *f, double v, const char *sep)
{
	if (isnan(v))
		fprintf(f, "NaN%s", sep);
	else
		fprintf(f, "%.6f%s", v, sep);
}

static int write_requests(const char *dir, const struct replay_result *res, int n, double *gaps,
			  struct duet_err *err)
{
	FILE *f = open_in(dir, "requests.csv", err);
	if (!f)
		return -1;
	fprintf(f, "id,sched_s,sent_s,prompt_tokens,output_tokens,tokens,status,ttft_s,tbt_mean_s,"
		   "tbt_p50_s,tbt_p99_s,tbt_max_s,e2e_s,t2_s,server_id\n");
	for (int i = 0; i < n; i++) {
		const struct replay_result *r = &res[i];
		int g = gaps_of(r, gaps);
		double sum = 0, most = g ? gaps[0] : 0;
		for (int k = 0; k < g; k++) {
			sum += gaps[k];
			most = gaps[k] > most ? gaps[k] : most;
		}
		fprintf(f, "%d,%.6f,%.6f,%d,%d,%d,%s,", i, r->sched_s, r->sent_s, r->prompt_tokens,
			r->output_tokens, r->n_tok, r->status == RS_OK ? "ok" : r->kind);
		print_opt(f, ttft_of(r), ",");
		if (g)
			fprintf(f, "%.6f,%.6f,%.6f,%.6f,", sum / g,
				duet_percentile_f64(gaps, (size_t)g, 50),
				duet_percentile_f64(gaps, (size_t)g, 99), most);
		else
			fprintf(f, "NaN,NaN,NaN,NaN,");
		fprintf(f, "%.6f,", r->done_s - r->sent_s);
		print_opt(f, t2_of(r), ",");
		fprintf(f, "%s\n", r->server_id);
	}
	return close_checked(f, dir, "requests.csv", err);
}

/* Every token's arrival, for analysis beyond the summaries. */
static int write_tokens(const char *dir, const struct replay_result *res, int n,
			long long n_tok, struct duet_err *err)
{
	if (n_tok > TOKENS_CSV_MAX) {
		fprintf(stderr, "%s/tokens.csv not written: %lld tokens (it holds at most %d)\n",
			dir, n_tok, TOKENS_CSV_MAX);
		return 0;
	}
	FILE *f = open_in(dir, "tokens.csv", err);
	if (!f)
		return -1;
	fprintf(f, "id,index,t_s\n");
	for (int i = 0; i < n; i++)
		for (int k = 0; k < res[i].n_tok; k++)
			fprintf(f, "%d,%d,%.6f\n", i, k, res[i].tok_s[k]);
	return close_checked(f, dir, "tokens.csv", err);
}

/* The bucket whose [b*w, b*w + w) holds t, or -1: estimated by division,
 * then settled on the same comparisons a bucket-by-bucket scan makes. */
static int bucket_of(double t, double w, int nb)
{
	if (!(t >= 0) || !(t < (double)nb * w + w))
		return -1;
	int b = (int)fmin(t / w, nb - 1);
	while (b > 0 && t < b * w)
		b--;
	while (b < nb && t >= b * w + w)
		b++;
	return b < nb && t >= b * w ? b : -1;
}

/* The first bucket whose middle (b*w + w/2) is at or after t (nb: none). */
static int first_mid_from(double t, double w, int nb)
{
	if (!(t <= (double)nb * w))
		return nb;
	int b = t <= 0 ? 0 : (int)fmin(ceil(t / w), nb);
	while (b > 0 && (b - 1) * w + w / 2 >= t)
		b--;
	while (b < nb && b * w + w / 2 < t)
		b++;
	return b;
}

/* Per bucket: tokens/s and completions/s, requests in flight, median TTFT of
 * the first tokens and p99 of the gaps that ended in it. One pass over the
 * tokens (a day simulated has a hundred million). */
static int write_timeline(const char *dir, const struct replay_result *res, int n, double span,
			  double *scratch, struct duet_err *err)
{
	double w = span / TIMELINE_BUCKETS > 1 ? span / TIMELINE_BUCKETS : 1;
	int nb = (int)ceil(span / w) + 1;
	int *toks = calloc((size_t)nb, sizeof *toks), *comp = calloc((size_t)nb, sizeof *comp);
	int *fly = calloc((size_t)nb + 1, sizeof *fly), *nt = calloc((size_t)nb + 1, sizeof *nt);
	int *ng = calloc((size_t)nb + 1, sizeof *ng), *at = calloc((size_t)nb + 1, sizeof *at);
	double *ttft = malloc(sizeof *ttft * ((size_t)n + 1));
	int rc = -1;
	FILE *f = NULL;
	if (!toks || !comp || !fly || !nt || !ng || !at || !ttft) {
		duet_errf(err, "out of memory for %s/timeline.csv", dir);
		goto out;
	}
	/* counts per bucket; fly as a difference array over the buckets */
	for (int i = 0; i < n; i++) {
		const struct replay_result *r = &res[i];
		int b = bucket_of(r->done_s, w, nb);
		if (r->status == RS_OK && b >= 0)
			comp[b]++;
		int b0 = first_mid_from(r->sent_s, w, nb), b1 = first_mid_from(r->done_s, w, nb);
		if (r->done_s > r->sent_s && b0 < b1) /* in flight at middles b0..b1-1 */
			fly[b0]++, fly[b1]--;
		if (r->n_tok && (b = bucket_of(r->tok_s[0], w, nb)) >= 0)
			nt[b + 1]++;
		for (int k = 0; k < r->n_tok; k++)
			if ((b = bucket_of(r->tok_s[k], w, nb)) >= 0) {
				toks[b]++;
				if (k)
					ng[b + 1]++;
			}
	}
	/* TTFTs and gaps grouped by bucket (counting sort), so that each
	 * bucket's percentile selects in its own segment */
	for (int b = 0; b < nb; b++)
		nt[b + 1] += nt[b], ng[b + 1] += ng[b];
	memcpy(at, nt, sizeof *at * (size_t)nb);
	for (int i = 0; i < n; i++) {
		int b;
		if (res[i].n_tok && (b = bucket_of(res[i].tok_s[0], w, nb)) >= 0)
			ttft[at[b]++] = ttft_of(&res[i]);
	}
	memcpy(at, ng, sizeof *at * (size_t)nb);
	for (int i = 0; i < n; i++)
		for (int k = 1, b; k < res[i].n_tok; k++)
			if ((b = bucket_of(res[i].tok_s[k], w, nb)) >= 0)
				scratch[at[b]++] = res[i].tok_s[k] - res[i].tok_s[k - 1];
	if (!(f = open_in(dir, "timeline.csv", err)))
		goto out;
	fprintf(f, "t_s,tokens_per_s,completed_per_s,in_flight,ttft_p50_s,tbt_p99_s\n");
	for (int b = 0, in_flight = 0; b < nb; b++) {
		in_flight += fly[b];
		double *tv = ttft + nt[b], *gv = scratch + ng[b];
		int ntb = nt[b + 1] - nt[b], ngb = ng[b + 1] - ng[b];
		fprintf(f, "%.3f,%.3f,%.3f,%d,", b * w, toks[b] / w, comp[b] / w, in_flight);
		print_opt(f, ntb ? duet_percentile_f64(tv, (size_t)ntb, 50) : NAN, ",");
		print_opt(f, ngb ? duet_percentile_f64(gv, (size_t)ngb, 99) : NAN, "\n");
	}
	rc = close_checked(f, dir, "timeline.csv", err);
out:
	free(toks);
	free(comp);
	free(fly);
	free(nt);
	free(ng);
	free(at);
	free(ttft);
	return rc;
}

int replay_write_csv(const char *dir, const struct replay_result *res, int n,
		     const struct replay_summary *s, struct duet_err *err)
{
	long long n_tok = 0;
	int most = 0;
	for (int i = 0; i < n; i++) {
		n_tok += res[i].n_tok;
		most = res[i].n_tok > most ? res[i].n_tok : most;
	}
	/* a: one request's gaps; b: every gap, by timeline bucket */
	double *a = malloc(((size_t)most + 1) * sizeof *a);
	double *b = malloc(((size_t)n_tok + 1) * sizeof *b);
	int rc = -1;
	if (!a || !b) {
		duet_errf(err, "out of memory writing %s", dir);
		goto out;
	}
	if (write_requests(dir, res, n, a, err) || write_tokens(dir, res, n, n_tok, err) ||
	    write_cdf(dir, "ttft_cdf.csv", &s->ttft_cdf, err) ||
	    write_cdf(dir, "tbt_cdf.csv", &s->tbt_cdf, err))
		goto out;
	double span = 0;
	for (int i = 0; i < n; i++)
		span = fmax(span, res[i].done_s);
	rc = write_timeline(dir, res, n, span > s->duration_s ? span : s->duration_s, b, err);
out:
	free(a);
	free(b);
	return rc;
}

/* ---- the table ---- */

static void row(FILE *f, const char *name, const struct replay_summary *s, int n,
		double (*get)(const struct replay_summary *), const char *fmt)
{
	fprintf(f, "%-22s", name);
	for (int i = 0; i < n; i++) {
		char cell[32];
		snprintf(cell, sizeof cell, fmt, get(&s[i]));
		fprintf(f, " %14s", cell);
	}
	fputc('\n', f);
}

#define GETTER(name, expr)                                            \
	static double name(const struct replay_summary *s) { return expr; }
GETTER(g_n, s->n)
GETTER(g_ok, s->n_ok)
GETTER(g_failed, s->n_failed)
GETTER(g_lost, s->n_lost)
GETTER(g_wrong, s->n_wrong)
GETTER(g_dur, s->duration_s)
GETTER(g_offered, s->offered_rps)
GETTER(g_rps, s->req_per_s)
GETTER(g_tps, s->out_tok_per_s)
GETTER(g_ttft50, s->ttft.p50 * 1e3)
GETTER(g_ttft90, s->ttft.p90 * 1e3)
GETTER(g_ttft99, s->ttft.p99 * 1e3)
GETTER(g_tbt50, s->tbt.p50 * 1e3)
GETTER(g_tbt90, s->tbt.p90 * 1e3)
GETTER(g_tbt99, s->tbt.p99 * 1e3)
GETTER(g_t2_50, s->t2.p50 * 1e3)
GETTER(g_e2e50, s->e2e.p50)
GETTER(g_e2e90, s->e2e.p90)
GETTER(g_e2e99, s->e2e.p99)
GETTER(g_slo, s->slo_attainment * 100)
GETTER(g_good, s->goodput_rps)
GETTER(g_lag, s->send_lag.max * 1e3)

void replay_print_table(FILE *f, const char *const *labels, const struct replay_summary *s,
			int n)
{
	fprintf(f, "%-22s", "");
	for (int i = 0; i < n; i++)
		fprintf(f, " %14.14s", labels[i]);
	fputc('\n', f);
	row(f, "requests", s, n, g_n, "%.0f");
	row(f, "  completed", s, n, g_ok, "%.0f");
	row(f, "  failed", s, n, g_failed, "%.0f");
	row(f, "    lost", s, n, g_lost, "%.0f");
	int verified = 0;
	for (int i = 0; i < n; i++)
		verified |= s[i].n_verified >= 0;
	if (verified) /* -1 shows where a run was not verified */
		row(f, "  wrong text", s, n, g_wrong, "%.0f");
	row(f, "duration s", s, n, g_dur, "%.1f");
	row(f, "offered req/s", s, n, g_offered, "%.3f");
	row(f, "completed req/s", s, n, g_rps, "%.3f");
	row(f, "output tokens/s", s, n, g_tps, "%.1f");
	row(f, "TTFT p50 ms", s, n, g_ttft50, "%.1f");
	row(f, "TTFT p90 ms", s, n, g_ttft90, "%.1f");
	row(f, "TTFT p99 ms", s, n, g_ttft99, "%.1f");
	row(f, "2nd token p50 ms", s, n, g_t2_50, "%.1f");
	row(f, "TBT p50 ms", s, n, g_tbt50, "%.1f");
	row(f, "TBT p90 ms", s, n, g_tbt90, "%.1f");
	row(f, "TBT p99 ms", s, n, g_tbt99, "%.1f");
	row(f, "E2E p50 s", s, n, g_e2e50, "%.2f");
	row(f, "E2E p90 s", s, n, g_e2e90, "%.2f");
	row(f, "E2E p99 s", s, n, g_e2e99, "%.2f");
	row(f, "SLO attained %", s, n, g_slo, "%.1f");
	row(f, "goodput req/s", s, n, g_good, "%.3f");
	row(f, "max send lag ms", s, n, g_lag, "%.1f");
	for (int i = 0; i < n; i++)
		for (int k = 0; k < s[i].n_kinds; k++)
			fprintf(f, "errors%s%s: %s %d\n", n > 1 ? " in " : "", n > 1 ? labels[i] : "",
				s[i].kinds[k].kind, s[i].kinds[k].count);
}

/* ---- summary.json ---- */

static json_t *dist_json(const struct replay_dist *d)
{
	return json_pack("{s:i,s:f,s:f,s:f,s:f,s:f}", "n", d->n, "mean", d->mean, "p50", d->p50,
			 "p90", d->p90, "p99", d->p99, "max", d->max);
}

json_t *replay_summary_to_json(const struct replay_summary *s)
{
	json_t *kinds = json_object();
	for (int i = 0; i < s->n_kinds; i++)
		json_object_set_new(kinds, s->kinds[i].kind, json_integer(s->kinds[i].count));
	json_t *j = json_pack("{s:i,s:i,s:i,s:o,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:o,s:o,s:o,s:o,"
			 "s:{s:f,s:f,s:i,s:f,s:f}}",
			 "requests", s->n, "completed", s->n_ok, "failed", s->n_failed, "errors",
			 kinds, "duration_s", s->duration_s, "offered_req_per_s", s->offered_rps,
			 "req_per_s", s->req_per_s, "output_tokens_per_s", s->out_tok_per_s,
			 "prompt_tokens_per_s", s->in_tok_per_s, "prompt_tokens",
			 (json_int_t)s->prompt_tokens, "output_tokens", (json_int_t)s->output_tokens,
			 "ttft_s", dist_json(&s->ttft), "tbt_s", dist_json(&s->tbt), "e2e_s",
			 dist_json(&s->e2e), "send_lag_s", dist_json(&s->send_lag), "slo", "ttft_s",
			 s->slo_ttft_s, "tbt_s", s->slo_tbt_s, "met", s->n_slo, "attainment",
			 s->slo_attainment, "goodput_req_per_s", s->goodput_rps);
	json_object_set_new(j, "lost", json_integer(s->n_lost));
	json_object_set_new(j, "t2_s", dist_json(&s->t2));
	if (s->n_verified >= 0) {
		json_object_set_new(j, "verified", json_integer(s->n_verified));
		json_object_set_new(j, "wrong_text", json_integer(s->n_wrong));
	}
	return j;
}

static int dist_from(json_t *j, const char *key, struct replay_dist *d, struct duet_err *err)
{
	json_t *o = json_object_get(j, key);
	json_int_t n;
	if (json_unpack(o, "{s:I,s:F,s:F,s:F,s:F,s:F}", "n", &n, "mean", &d->mean, "p50", &d->p50,
			"p90", &d->p90, "p99", &d->p99, "max", &d->max))
		return duet_errf(err, "%s is missing or incomplete", key);
	d->n = (int)n;
	return 0;
}

int replay_summary_from_json(json_t *j, struct replay_summary *s, struct duet_err *err)
{
	memset(s, 0, sizeof *s);
	json_int_t n, ok, failed, pt, ot, met;
	json_t *kinds;
	if (json_unpack(j, "{s:I,s:I,s:I,s:o,s:F,s:F,s:F,s:F,s:F,s:I,s:I,s:{s:F,s:F,s:I,s:F,s:F}}",
			"requests", &n, "completed", &ok, "failed", &failed, "errors", &kinds,
			"duration_s", &s->duration_s, "offered_req_per_s", &s->offered_rps,
			"req_per_s", &s->req_per_s, "output_tokens_per_s", &s->out_tok_per_s,
			"prompt_tokens_per_s", &s->in_tok_per_s, "prompt_tokens", &pt,
			"output_tokens", &ot, "slo", "ttft_s", &s->slo_ttft_s, "tbt_s",
			&s->slo_tbt_s, "met", &met, "attainment", &s->slo_attainment,
			"goodput_req_per_s", &s->goodput_rps))
		return duet_errf(err, "not a duet replay summary (fields missing)");
	if (dist_from(j, "ttft_s", &s->ttft, err) || dist_from(j, "tbt_s", &s->tbt, err) ||
	    dist_from(j, "e2e_s", &s->e2e, err) || dist_from(j, "send_lag_s", &s->send_lag, err))
		return -1;
	s->n = (int)n;
	s->n_ok = (int)ok;
	s->n_failed = (int)failed;
	s->prompt_tokens = pt;
	s->output_tokens = ot;
	s->n_slo = (int)met;
	/* runs from before t2 was measured have none */
	if (json_object_get(j, "t2_s") && dist_from(j, "t2_s", &s->t2, err))
		return -1;
	json_t *x;
	s->n_lost = json_is_integer(x = json_object_get(j, "lost")) ? (int)json_integer_value(x) : 0;
	s->n_verified = json_is_integer(x = json_object_get(j, "verified"))
				? (int)json_integer_value(x)
				: -1;
	s->n_wrong = json_is_integer(x = json_object_get(j, "wrong_text"))
			     ? (int)json_integer_value(x)
			     : -1;
	const char *k;
	json_t *v;
	json_object_foreach(kinds, k, v)
	{
		if (s->n_kinds == REPLAY_MAX_KINDS || !json_is_integer(v))
			break;
		snprintf(s->kinds[s->n_kinds].kind, REPLAY_KIND_MAX, "%s", k);
		s->kinds[s->n_kinds++].count = (int)json_integer_value(v);
	}
	return 0;
}
