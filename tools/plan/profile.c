/* Node profiles: the JSON form, defaults, prediction and scaling. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/sort.h"
#include "plan/profile.h"

const double plan_spread_p[PLAN_SPREAD_N] = {0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5,
					     0.6,  0.7,	 0.8, 0.9, 0.95, 0.99};

void plan_profile_defaults(struct plan_profile *p)
{
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "node");
	p->threads = 1;
	/* the nodes' own defaults (common/node/node.c) */
	p->max_batch_tokens = 512;
	p->max_batch_seqs = 64;
	p->block_tokens = 16;
	p->kv_tokens = 1 << 16;
	p->ctx_len = 4096;
	/* a stated link: 10 GbE, a message's trip through ZeroMQ on it */
	p->link_gb_s = 1.25;
	p->link_latency_ms = 0.1;
	p->ingest_gb_s = 10;
	p->price_per_hour = 1;
}

/* A fitted coefficient may come out slightly negative where its feature
 * barely varied; no cost it stands for can be. */
static double pos(double c)
{
	return c > 0 ? c : 0;
}

/* The memory-bound terms of a pass and the rest */
static double memory_ms(const struct plan_step *c, double positions)
{
	return pos(c->base_ms) + pos(c->kctx_ms) * positions / 1024.0;
}

static double compute_ms(const struct plan_step *c, int seqs, long prefill_tokens, double pairs)
{
	return pos(c->seq_ms) * seqs + pos(c->token_ms) * (double)prefill_tokens +
	       pos(c->kpair_ms) * pairs / 1048576.0;
}

double plan_profile_step_ms(const struct plan_profile *p, int seqs, long prefill_tokens,
			    double positions, double pairs)
{
	return memory_ms(&p->step, positions) + compute_ms(&p->step, seqs, prefill_tokens, pairs);
}

double plan_profile_beside_ms(const struct plan_profile *p, int seqs, long prefill_tokens,
			      double positions, double pairs)
{
	if (!p->has_beside)
		return plan_profile_step_ms(p, seqs, prefill_tokens, positions, pairs);
	return memory_ms(&p->beside, positions) + compute_ms(&p->beside, seqs, prefill_tokens, pairs);
}

double plan_profile_memory_share(const struct plan_profile *p, int seqs, long prefill_tokens,
				 double positions, double pairs)
{
	double m = memory_ms(&p->step, positions),
	       all = m + compute_ms(&p->step, seqs, prefill_tokens, pairs);
	return all > 0 ? m / all : 0;
}

/* The quantile function the spread's points define: flat outside the
 * first and last probability, linear between. */
static double spread_at(const double *q, double u)
{
	if (u <= plan_spread_p[0])
		return q[0];
	for (int i = 1; i < PLAN_SPREAD_N; i++)
		if (u <= plan_spread_p[i])
			return q[i - 1] + (q[i] - q[i - 1]) * (u - plan_spread_p[i - 1]) /
						  (plan_spread_p[i] - plan_spread_p[i - 1]);
	return q[PLAN_SPREAD_N - 1];
}

/* Its mean: the integral of spread_at over [0, 1]. */
static double spread_mean(const double *q)
{
	double m = plan_spread_p[0] * q[0] + (1 - plan_spread_p[PLAN_SPREAD_N - 1]) * q[PLAN_SPREAD_N - 1];
	for (int i = 1; i < PLAN_SPREAD_N; i++)
		m += (plan_spread_p[i] - plan_spread_p[i - 1]) * (q[i] + q[i - 1]) / 2;
	return m;
}

double plan_profile_jitter(const struct plan_profile *p, double u)
{
	if (!p->has_spread)
		return 1;
	return spread_at(p->spread, u) / spread_mean(p->spread);
}

void plan_spread_of(double *r, size_t n, double spread[PLAN_SPREAD_N])
{
	for (int i = 0; i < PLAN_SPREAD_N; i++)
		spread[i] = duet_percentile_f64(r, n, 100 * plan_spread_p[i]);
}

int plan_profile_set_spread(struct plan_profile *p, const double q[PLAN_SPREAD_N],
			    const char *name, struct duet_err *err)
{
	for (int i = 0; i < PLAN_SPREAD_N; i++) {
		if (!isfinite(q[i]) || q[i] <= 0 || q[i] > 100)
			return duet_errf(err, "%s: step spread ratio %d (%g) is not in (0, 100]", name,
					 i + 1, q[i]);
		if (i && q[i] < q[i - 1])
			return duet_errf(err, "%s: step spread ratio %d (%g) is below the one before (%g)",
					 name, i + 1, q[i], q[i - 1]);
	}
	memcpy(p->spread, q, sizeof p->spread);
	p->has_spread = 1;
	return 0;
}

/* "step_spread": PLAN_SPREAD_N ratios. */
static int get_spread(json_t *root, const char *name, struct plan_profile *p, struct duet_err *err)
{
	json_t *a = json_object_get(root, "step_spread");
	double q[PLAN_SPREAD_N];
	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) != PLAN_SPREAD_N)
		return duet_errf(err, "%s: field 'step_spread' is not an array of %d ratios", name,
				 PLAN_SPREAD_N);
	for (int i = 0; i < PLAN_SPREAD_N; i++) {
		json_t *v = json_array_get(a, (size_t)i);
		q[i] = json_is_number(v) ? json_number_value(v) : NAN;
	}
	return plan_profile_set_spread(p, q, name, err);
}

static int get_num(json_t *o, const char *key, const char *name, double lo, double hi,
		   double *out, int required, struct duet_err *err);

/* A step model's five coefficients in object `field` of j: "step"
 * (required), "beside" (optional: *has says whether it is there). */
static int get_step(json_t *j, const char *field, const char *name, struct plan_step *c, int *has,
		    struct duet_err *err)
{
	json_t *o = json_object_get(j, field);
	*has = o != NULL;
	if (!o && strcmp(field, "step") != 0)
		return 0;
	if (!json_is_object(o))
		return duet_errf(err, "%s: field '%s' (a step-time model) is %s", name, field,
				 o ? "not an object" : "missing");
	char where[PLAN_MODEL_MAX];
	snprintf(where, sizeof where, "%s, %s", name, field);
	return get_num(o, "base_ms", where, -1e6, 1e6, &c->base_ms, 1, err) ||
	       get_num(o, "seq_ms", where, -1e6, 1e6, &c->seq_ms, 1, err) ||
	       get_num(o, "token_ms", where, -1e6, 1e6, &c->token_ms, 1, err) ||
	       get_num(o, "kctx_ms", where, -1e6, 1e6, &c->kctx_ms, 1, err) ||
	       get_num(o, "kpair_ms", where, -1e6, 1e6, &c->kpair_ms, 0, err);
}

static int get_num(json_t *o, const char *key, const char *name, double lo, double hi,
		   double *out, int required, struct duet_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		if (required)
			return duet_errf(err, "%s: field '%s' is missing", name, key);
		return 0;
	}
	if (!json_is_number(v))
		return duet_errf(err, "%s: field '%s' is not a number", name, key);
	double x = json_number_value(v);
	if (!isfinite(x) || x < lo || x > hi)
		return duet_errf(err, "%s: field '%s' = %g is outside [%g, %g]", name, key, x, lo, hi);
	*out = x;
	return 0;
}

static int get_int(json_t *o, const char *key, const char *name, long lo, long hi, long *out,
		   struct duet_err *err)
{
	double x = (double)*out;
	if (get_num(o, key, name, (double)lo, (double)hi, &x, 0, err))
		return -1;
	if (x != floor(x))
		return duet_errf(err, "%s: field '%s' = %g is not a whole number", name, key, x);
	*out = (long)x;
	return 0;
}

static int get_str(json_t *o, const char *key, const char *name, char *out, size_t cap,
		   struct duet_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!v)
		return 0;
	if (!json_is_string(v))
		return duet_errf(err, "%s: field '%s' is not a string", name, key);
	if (strlen(json_string_value(v)) >= cap)
		return duet_errf(err, "%s: field '%s' is longer than %zu bytes", name, key, cap - 1);
	snprintf(out, cap, "%s", json_string_value(v));
	return 0;
}

int plan_profile_from_json(json_t *j, const char *name, struct plan_profile *p,
			   struct duet_err *err)
{
	plan_profile_defaults(p);
	if (!json_is_object(j))
		return duet_errf(err, "%s: a profile is a JSON object", name);
	int has_step;
	if (get_step(j, "step", name, &p->step, &has_step, err) ||
	    get_step(j, "beside", name, &p->beside, &p->has_beside, err))
		return -1;
	long threads = p->threads, mbt = p->max_batch_tokens, mbs = p->max_batch_seqs,
	     bt = p->block_tokens, kvt = p->kv_tokens, ctx = p->ctx_len;
	if (get_str(j, "name", name, p->name, sizeof p->name, err) ||
	    get_str(j, "model", name, p->model, sizeof p->model, err) ||
	    get_int(j, "threads", name, 1, 1 << 16, &threads, err) ||
	    get_int(j, "max_batch_tokens", name, 1, 1 << 20, &mbt, err) ||
	    get_int(j, "max_batch_seqs", name, 1, 1 << 16, &mbs, err) ||
	    get_int(j, "block_tokens", name, 1, 1 << 16, &bt, err) ||
	    get_int(j, "kv_tokens", name, 1, 1L << 40, &kvt, err) ||
	    get_int(j, "ctx_len", name, 2, 1 << 24, &ctx, err) ||
	    get_num(j, "kv_bytes_per_token", name, 0, 1e12, &p->kv_bytes_per_token, 0, err) ||
	    get_num(j, "link_gb_s", name, 1e-6, 1e6, &p->link_gb_s, 0, err) ||
	    get_num(j, "link_latency_ms", name, 0, 1e6, &p->link_latency_ms, 0, err) ||
	    get_num(j, "ingest_gb_s", name, 1e-6, 1e6, &p->ingest_gb_s, 0, err) ||
	    get_num(j, "price_per_hour", name, 0, 1e9, &p->price_per_hour, 0, err) ||
	    get_spread(j, name, p, err))
		return -1;
	if (plan_profile_step_ms(p, 1, 0, 0, 0) <= 0)
		return duet_errf(err, "%s: the step model gives a step of one sequence no time", name);
	if (p->has_beside && plan_profile_beside_ms(p, 1, 0, 0, 0) <= 0)
		return duet_errf(err, "%s: the beside model gives a step of one sequence no time", name);
	if (kvt < ctx)
		return duet_errf(err, "%s: kv_tokens %ld holds less than one sequence of ctx_len %ld",
				 name, kvt, ctx);
	p->threads = (int)threads;
	p->max_batch_tokens = (int)mbt;
	p->max_batch_seqs = (int)mbs;
	p->block_tokens = (int)bt;
	p->kv_tokens = kvt;
	p->ctx_len = (int)ctx;
	return 0;
}

int plan_profile_load(const char *path, struct plan_profile *p, struct duet_err *err)
{
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (!j)
		return duet_errf(err, "%s:%d: %s", path, je.line, je.text);
	int rc = plan_profile_from_json(j, path, p, err);
	json_decref(j);
	return rc;
}

json_t *plan_profile_to_json(const struct plan_profile *p)
{
	json_t *j = json_pack("{s:s, s:s, s:i, s:{s:f, s:f, s:f, s:f, s:f}, s:i, s:i, s:i, s:f, s:I, s:i, "
			 "s:f, s:f, s:f, s:f}",
			 "name", p->name, "model", p->model, "threads", p->threads, "step",
			 "base_ms", p->step.base_ms, "seq_ms", p->step.seq_ms, "token_ms", p->step.token_ms,
			 "kctx_ms", p->step.kctx_ms, "kpair_ms", p->step.kpair_ms, "max_batch_tokens", p->max_batch_tokens,
			 "max_batch_seqs", p->max_batch_seqs, "block_tokens", p->block_tokens,
			 "kv_bytes_per_token", p->kv_bytes_per_token, "kv_tokens",
			 (json_int_t)p->kv_tokens, "ctx_len", p->ctx_len, "link_gb_s", p->link_gb_s,
			 "link_latency_ms", p->link_latency_ms, "ingest_gb_s", p->ingest_gb_s,
			 "price_per_hour", p->price_per_hour);
	if (j && p->has_spread) {
		json_t *a = json_array();
		for (int i = 0; i < PLAN_SPREAD_N; i++)
			json_array_append_new(a, json_real(p->spread[i]));
		json_object_set_new(j, "step_spread", a);
	}
	if (j && p->has_beside)
		json_object_set_new(j, "beside",
				    json_pack("{s:f, s:f, s:f, s:f, s:f}", "base_ms", p->beside.base_ms,
					      "seq_ms", p->beside.seq_ms, "token_ms", p->beside.token_ms,
					      "kctx_ms", p->beside.kctx_ms, "kpair_ms", p->beside.kpair_ms));
	return j;
}

static void scale_step(struct plan_step *c, double compute, double bandwidth)
{
	c->base_ms /= bandwidth;
	c->kctx_ms /= bandwidth;
	c->kpair_ms /= compute; /* chunk attention is matrix products */
	c->seq_ms /= compute;
	c->token_ms /= compute;
}

void plan_profile_scale(struct plan_profile *p, double compute, double bandwidth, double memory)
{
	scale_step(&p->step, compute, bandwidth);
	scale_step(&p->beside, compute, bandwidth);
	p->kv_tokens = (long)((double)p->kv_tokens * memory);
}
