/* duet bench --profile: the step-time model of this machine for `duet
 * plan`, fitted over a grid of forward passes shaped as the nodes run
 * them: decode steps of B sequences at a context depth, prefill chunks of
 * r tokens at a start position, and decode steps that carry a prefill
 * chunk (chunked local prefill). Each point is the median of REPS timed
 * passes after a warm-up; the fit minimizes relative error, so a 10 ms
 * step weighs as much as a 1 s chunk. Every timed pass against the fit
 * gives the profile's step spread (plan/profile.h): what the model
 * misses of each shape and the machine's noise from pass to pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sort.h"
#include "base/clock.h"
#include "base/linfit.h"
#include "bench/profile_measure.h"
#include "cli.h"
#include "engine/forward.h"
#include "engine/model.h"

#define PROFILE_MAX_POINTS 256
#define PROFILE_MAX_CHUNKS 4
#define PROFILE_MAX_REPS 64
/* Ridge of the offline fit: small against the squared relative errors. */
#define PROFILE_RIDGE 1e-9
/* Prefill chunks are timed at this many starts: 0, half and all the
 * deepest decode depth. */
#define PROFILE_CHUNK_STARTS 3

struct point {
	const char *kind;
	int seqs;
	long tokens;	  /* prefill rows */
	double positions; /* sum over the pass's sequences of their length after it */
	double pairs;	  /* prefill chunks: rows x the positions before them */
	double ms, pred;
	double rep_ms[PROFILE_MAX_REPS]; /* every timed pass, sorted */
	int reps;
};

struct prof {
	struct duet_engine *e;
	struct duet_kv_pool *kv;
	const int *tokens; /* at least max depth + chunk tokens */
	int reps;
	struct point pt[PROFILE_MAX_POINTS];
	int n;
	struct cli_progress prog;
	double work, done;
};

/* Times one pass of fs[0..n) reps times (after a warm-up) and records its
 * median; each pass appends to the sequences, which the caller accounts
 * for. */
static int measure(struct prof *p, const char *kind, struct duet_fwd_seq *fs, int n,
		   long prefill_tokens, struct duet_err *err)
{
	double t[PROFILE_MAX_REPS];
	int reps = p->reps < PROFILE_MAX_REPS ? p->reps : PROFILE_MAX_REPS;
	double positions = 0, pairs = 0;
	for (int r = -1; r < reps; r++) {
		positions = 0;
		pairs = 0;
		for (int i = 0; i < n; i++) {
			positions += (double)(fs[i].kv->n_tokens + fs[i].n_tokens);
			if (fs[i].n_tokens > 1)
				pairs += (double)fs[i].n_tokens * (double)fs[i].kv->n_tokens;
		}
		double t0 = duet_now_s();
		if (duet_forward(p->e, fs, n, err))
			return -1;
		if (r >= 0)
			t[r] = (duet_now_s() - t0) * 1e3;
	}
	duet_sort_f64(t, (size_t)reps);
	if (p->n == PROFILE_MAX_POINTS)
		return duet_errf(err, "more than %d profile points", PROFILE_MAX_POINTS);
	struct point *q = &p->pt[p->n++];
	*q = (struct point){kind, n, prefill_tokens, positions, pairs, t[reps / 2], 0, {0}, reps};
	memcpy(q->rep_ms, t, sizeof(double) * (size_t)reps);
	p->done += reps + 1;
	cli_progress_update(&p->prog, p->done, p->work, "passes");
	return 0;
}

/* Untimed: seq s grows to `to` positions. */
static int grow(struct prof *p, struct duet_kv_seq *s, int to, struct duet_err *err)
{
	int chunk = duet_engine_max_batch(p->e);
	while (s->n_tokens < to) {
		int k = to - s->n_tokens < chunk ? to - s->n_tokens : chunk;
		struct duet_fwd_seq fs = {s, p->tokens + s->n_tokens, k, DUET_LOGITS_NONE, NULL, NULL, 0};
		if (duet_forward(p->e, &fs, 1, err))
			return -1;
	}
	return 0;
}

/* The first B sequences, one decode row each. */
static void decode_rows(const struct bench_profile_opts *o, struct duet_kv_seq *s,
			struct duet_fwd_seq *fs, int *next, int B)
{
	for (int i = 0; i < B; i++) {
		next[i] = o->tokens[i % 8 + 1];
		fs[i] = (struct duet_fwd_seq){&s[i], &next[i], 1, DUET_LOGITS_LAST,
					      o->logits + (size_t)i * o->vocab, NULL, 0};
	}
}

static void fit(struct prof *p, struct plan_profile *out)
{
	struct duet_linfit f;
	duet_linfit_init(&f, 5, 1.0, PROFILE_RIDGE);
	for (int i = 0; i < p->n; i++) {
		const struct point *q = &p->pt[i];
		double w = 1.0 / q->ms;
		double x[5] = {w, q->seqs * w, (double)q->tokens * w, q->positions / 1024.0 * w,
			       q->pairs / 1048576.0 * w};
		duet_linfit_add(&f, x, 1.0);
	}
	out->step.base_ms = f.w[0];
	out->step.seq_ms = f.w[1];
	out->step.token_ms = f.w[2];
	out->step.kctx_ms = f.w[3];
	out->step.kpair_ms = f.w[4];
	static double ratio[PROFILE_MAX_POINTS * PROFILE_MAX_REPS]; /* 128 KiB: not on the stack */
	size_t n = 0;
	for (int i = 0; i < p->n; i++) {
		struct point *q = &p->pt[i];
		q->pred = plan_profile_step_ms(out, q->seqs, q->tokens, q->positions, q->pairs);
		for (int r = 0; r < q->reps && q->pred > 0; r++)
			ratio[n++] = q->rep_ms[r] / q->pred;
	}
	if (n) {
		plan_spread_of(ratio, n, out->spread);
		out->has_spread = 1;
	}
}

int bench_profile(const struct bench_profile_opts *o, struct plan_profile *out, json_t **points,
		  struct duet_err *err)
{
	static struct duet_kv_seq s[BENCH_PROFILE_MAX_BATCH + 1];
	static struct duet_fwd_seq fs[BENCH_PROFILE_MAX_BATCH + 1];
	static int next[BENCH_PROFILE_MAX_BATCH];
	struct prof *p = calloc(1, sizeof *p);
	int max_b = 1, max_d = 0, rc = -1;
	*points = NULL;
	if (!p)
		return duet_errf(err, "out of memory");
	for (int i = 0; i < o->n_batches; i++)
		max_b = o->batches[i] > max_b ? o->batches[i] : max_b;
	for (int i = 0; i < o->n_depths; i++)
		max_d = o->depths[i] > max_d ? o->depths[i] : max_d;
	*p = (struct prof){.e = o->engine, .kv = o->kv, .tokens = o->tokens, .reps = o->reps};
	p->work = (double)(o->reps + 1) *
		  (o->n_depths * o->n_batches + o->n_chunks * 4 * PROFILE_CHUNK_STARTS +
		   o->n_mixed_batches * 2);
	cli_progress_init(&p->prog, "bench --profile");
	for (int i = 0; i <= max_b; i++)
		duet_kv_seq_init(&s[i]);
	/* Decode steps, depth by depth: the sequences grow between depths. */
	for (int di = 0; di < o->n_depths; di++) {
		for (int i = 0; i < max_b; i++)
			if (grow(p, &s[i], o->depths[di], err))
				goto out;
		for (int bi = 0; bi < o->n_batches; bi++) {
			int B = o->batches[bi];
			decode_rows(o, s, fs, next, B);
			if (measure(p, "decode", fs, B, 0, err))
				goto out;
		}
	}
	/* Prefill chunks of one prompt, at starts 0, max_d / 2 and max_d
	 * (attention grows with the start, faster than linearly as the KV
	 * leaves the caches: the middle start keeps the fit near the prompts
	 * most traces send). */
	for (int ci = 0; ci < o->n_chunks; ci++) {
		int r = o->chunks[ci];
		int starts[PROFILE_CHUNK_STARTS] = {0, max_d / 2, max_d};
		for (int k = 0; k < PROFILE_CHUNK_STARTS; k++) {
			struct duet_kv_seq *c = &s[max_b];
			duet_kv_seq_init(c);
			if (grow(p, c, starts[k], err))
				goto out;
			/* every timed pass appends r: start from the same place
			 * by growing a fresh sequence per pass is too slow;
			 * the drift (reps * r positions) is in the features */
			/* no logits: a node's chunks but a prompt's last
			 * skip the classifier (a fifth of stories110m's
			 * weights), and the chunk of a decode+chunk point
			 * below skips it too */
			fs[0] = (struct duet_fwd_seq){c, o->tokens, r, DUET_LOGITS_NONE, NULL, NULL, 0};
			int rc2 = measure(p, "prefill", fs, 1, r, err);
			duet_kv_seq_release(p->kv, c);
			if (rc2)
				goto out;
		}
	}
	/* Decode steps carrying one chunk of a local prefill. */
	for (int bi = 0; bi < o->n_mixed_batches; bi++) {
		int B = o->mixed_batches[bi], r = o->chunks[0];
		for (int k = 0; k < 2; k++) {
			struct duet_kv_seq *c = &s[max_b];
			duet_kv_seq_init(c);
			if (grow(p, c, k ? max_d / 2 : 0, err))
				goto out;
			decode_rows(o, s, fs, next, B);
			fs[B] = (struct duet_fwd_seq){c, o->tokens, r, DUET_LOGITS_NONE, NULL, NULL, 0};
			int rc2 = measure(p, "decode+chunk", fs, B + 1, r, err);
			duet_kv_seq_release(p->kv, c);
			if (rc2)
				goto out;
		}
	}
	cli_progress_end(&p->prog);
	fit(p, out);
	*points = json_array();
	for (int i = 0; i < p->n; i++) {
		const struct point *q = &p->pt[i];
		json_array_append_new(*points, json_pack("{s:s, s:i, s:I, s:f, s:f, s:f}", "kind",
							 q->kind, "seqs", q->seqs, "prefill_tokens",
							 (json_int_t)q->tokens, "positions",
							 q->positions, "ms", q->ms, "fit_ms", q->pred));
	}
	if (o->table) {
		double worst = 0, sum = 0;
		fprintf(o->table, "| %-12s | %5s | %7s | %9s | %9s | %9s | %6s |\n", "pass", "seqs",
			"tokens", "positions", "ms", "model ms", "error");
		fprintf(o->table, "|--------------|-------|---------|-----------|-----------|-----------|--------|\n");
		for (int i = 0; i < p->n; i++) {
			const struct point *q = &p->pt[i];
			double e = (q->pred - q->ms) / q->ms;
			worst = e * e > worst * worst ? e : worst;
			sum += e < 0 ? -e : e;
			fprintf(o->table, "| %-12s | %5d | %7ld | %9.0f | %9.2f | %9.2f | %+5.1f%% |\n",
				q->kind, q->seqs, q->tokens, q->positions, q->ms, q->pred, 100 * e);
		}
		fprintf(o->table,
			"step model: %.3f ms + %.4f ms/sequence + %.4f ms/prefill token + %.4f "
			"ms/1k positions + %.4f ms/1M chunk pairs; error mean %.1f%%, worst %+.1f%%\n",
			out->step.base_ms, out->step.seq_ms, out->step.token_ms, out->step.kctx_ms, out->step.kpair_ms, 100 * sum / p->n,
			100 * worst);
		if (out->has_spread)
			fprintf(o->table,
				"step spread (each timed pass / model): 1%% %.3f, 10%% %.3f, 50%% %.3f, "
				"90%% %.3f, 99%% %.3f\n",
				out->spread[PLAN_SPREAD_P1], out->spread[PLAN_SPREAD_P10],
				out->spread[PLAN_SPREAD_P50], out->spread[PLAN_SPREAD_P90],
				out->spread[PLAN_SPREAD_P99]);
	}
	rc = 0;
out:
	for (int i = 0; i < max_b; i++)
		duet_kv_seq_release(p->kv, &s[i]);
	free(p);
	return rc;
}

int bench_profile_run(const struct duet_model *m, const struct bench_profile_args *a,
		      struct duet_err *err)
{
	static const int def_b[] = {1, 2, 4, 8, 16}, def_d[] = {64, 512, 1024};
	int batches[BENCH_PROFILE_MAX_LIST], depths[BENCH_PROFILE_MAX_LIST], nb = 0, nd = 0;
	const int *bl = a->n_batches ? a->batches : def_b;
	const int *dl = a->n_depths ? a->depths : def_d;
	int nbl = a->n_batches ? a->n_batches : 5, ndl = a->n_depths ? a->n_depths : 3;
	int max_b = 1, max_d = 0;
	for (int i = 0; i < nbl && nb < BENCH_PROFILE_MAX_LIST; i++)
		if (bl[i] <= BENCH_PROFILE_MAX_BATCH) {
			batches[nb++] = bl[i];
			max_b = bl[i] > max_b ? bl[i] : max_b;
		}
	int chunks[2] = {a->chunk, a->chunk * 4 <= 512 ? a->chunk * 4 : a->chunk / 2};
	int n_chunks = chunks[1] >= 1 && chunks[1] != chunks[0] ? 2 : 1;
	int max_c = chunks[0] > chunks[1] ? chunks[0] : chunks[1];
	int reps = a->reps;
	/* room each sequence may take: the depth, each timed pass's growth */
	long grow_max = (long)(reps + 1) * (nb + 2) + (long)(reps + 1) * max_c;
	for (int i = 0; i < ndl && nd < BENCH_PROFILE_MAX_LIST; i++)
		if (dl[i] + grow_max < m->cfg.ctx_len) {
			depths[nd++] = dl[i];
			max_d = dl[i] > max_d ? dl[i] : max_d;
		}
	if (!nb || !nd)
		return duet_errf(err, "--profile: no batch up to %d and depth that fits the model's "
				      "context of %d (with %ld positions the passes add)",
				 BENCH_PROFILE_MAX_BATCH, m->cfg.ctx_len, grow_max);
	int mixed[3] = {1, max_b / 4 > 1 ? max_b / 4 : 2, max_b}, n_mixed = max_b >= 4 ? 3 : 1;
	struct duet_kv_geom g = duet_kv_geom_for(m, 0, a->kv_dtype);
	int per_seq = duet_kv_blocks_for(&g, max_d + grow_max);
	long n_tok = max_d + (long)(reps + 1) * max_c + 16;
	int *tokens = malloc(sizeof(int) * (size_t)n_tok);
	float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size * (size_t)(max_b + 1));
	struct duet_kv_pool *kv = NULL;
	struct duet_engine *e = NULL;
	json_t *points = NULL, *doc = NULL;
	int rc = -1;
	if (!tokens || !logits) {
		duet_errf(err, "out of memory");
		goto out;
	}
	uint64_t x = 88172645463325252ull;
	for (long i = 0; i < n_tok; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		tokens[i] = i ? 3 + (int)(x % (uint64_t)(m->cfg.vocab_size - 3)) : 1;
	}
	struct duet_engine_opts eo = {.n_threads = a->threads, .max_batch_tokens = max_c + max_b + 1};
	if (duet_kv_pool_create(&kv, &g, per_seq * (max_b + 1), err) ||
	    duet_engine_create(&e, m, kv, &eo, err))
		goto out;
	struct plan_profile p;
	plan_profile_defaults(&p);
	snprintf(p.name, sizeof p.name, "%s", a->name);
	duet_model_describe(m, p.model, sizeof p.model);
	p.threads = duet_engine_threads(e);
	p.max_batch_tokens = a->chunk;
	p.block_tokens = g.block_tokens;
	p.kv_bytes_per_token = 2.0 * m->cfg.n_layers * (double)kv->row_bytes;
	p.kv_tokens = (long)((double)a->kv_mb * 1048576.0 / p.kv_bytes_per_token);
	p.ctx_len = m->cfg.ctx_len;
	p.price_per_hour = a->price;
	if (a->link_gb_s > 0)
		p.link_gb_s = a->link_gb_s;
	fprintf(stderr, "duet bench: profile of %s on %d thread(s): decode batches", p.model,
		p.threads);
	for (int i = 0; i < nb; i++)
		fprintf(stderr, " %d", batches[i]);
	fprintf(stderr, " at depths");
	for (int i = 0; i < nd; i++)
		fprintf(stderr, " %d", depths[i]);
	fprintf(stderr, "; prefill chunks of %d", chunks[0]);
	if (n_chunks > 1)
		fprintf(stderr, " and %d", chunks[1]);
	fprintf(stderr, "\n");
	struct bench_profile_opts o = {.engine = e, .kv = kv, .tokens = tokens,
				       .vocab = m->cfg.vocab_size, .logits = logits, .reps = reps,
				       .batches = batches, .depths = depths, .chunks = chunks,
				       .mixed_batches = mixed, .n_batches = nb, .n_depths = nd,
				       .n_chunks = n_chunks, .n_mixed_batches = n_mixed,
				       .table = stdout};
	if (bench_profile(&o, &p, &points, err))
		goto out;
	doc = plan_profile_to_json(&p);
	json_object_set_new(doc, "kv_dtype", json_string(duet_kv_dtype_name(a->kv_dtype)));
	json_object_set_new(doc, "kernels", json_string(duet_engine_kernels(e)));
	json_object_set(doc, "points", points);
	if (json_dump_file(doc, a->path, JSON_INDENT(2) | JSON_SORT_KEYS)) {
		duet_errf(err, "%s: cannot write the profile", a->path);
		goto out;
	}
	printf("profile: %s (%s, %.0f KB of KV per token, %ld tokens of KV in %ld MB)\n", a->path,
	       p.name, p.kv_bytes_per_token / 1e3, p.kv_tokens, a->kv_mb);
	rc = 0;
out:
	json_decref(points);
	json_decref(doc);
	duet_engine_destroy(e);
	duet_kv_pool_destroy(kv);
	free(tokens);
	free(logits);
	return rc;
}
