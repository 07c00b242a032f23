/* --verify: the oracle for a replay. Every completed request is generated
 * again in this process with duet_generate (greedy, ignore_eos, the same
 * synthetic prompt and length), and its text must equal what the server
 * streamed, byte for byte. One generation per CPU at a time, each on one
 * thread with its own engine and KV pool over the one model: a sequence's
 * text is the same on any number of threads, and a small model's matmuls
 * are too short to share between two. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/threadpool.h"
#include "engine/generate.h"
#include "replay/replay.h"

#define SHOW_MISMATCHES 3
#define SHOW_CONTEXT 40 /* bytes shown on each side of a difference */

/* A request whose text differs, and duet generate's text for the report. */
struct verify_diff {
	int wrong;
	struct replay_text want;
};

/* What the workers share; everything below mu is under it. */
struct verify_job {
	const struct trace *t;
	const struct synth *syn;
	const struct replay_result *res;
	const struct duet_model *m;
	enum duet_kv_dtype kv;
	enum duet_qdot qdot;
	int max_prompt, todo, quiet;
	struct verify_diff *diff;  /* per request */
	pthread_mutex_t mu;
	int next;	    /* the next request to take */
	int verified;
	int failed;	    /* a worker failed: err says why, the others stop */
	struct duet_err err;
};

static int on_token(void *ctx, int token, const char *s, size_t n)
{
	(void)token;
	return replay_text_add(ctx, s, n) ? 1 : 0;
}

/* The next completed request to verify, or -1 when none is left or a
 * worker failed. */
static int take(struct verify_job *j)
{
	pthread_mutex_lock(&j->mu);
	int i = -1;
	while (!j->failed && j->next < j->t->n)
		if (j->res[j->next++].status == RS_OK) {
			i = j->next - 1;
			break;
		}
	pthread_mutex_unlock(&j->mu);
	return i;
}

static void fail(struct verify_job *j, const struct duet_err *err)
{
	pthread_mutex_lock(&j->mu);
	if (!j->failed)
		j->err = *err;
	j->failed = 1;
	pthread_mutex_unlock(&j->mu);
}

/* One of the pool's threads: requests in turn until none is left. */
static void worker(void *arg, int ith, int nth)
{
	(void)ith, (void)nth;
	struct verify_job *j = arg;
	struct duet_err err = {{0}};
	struct duet_kv_pool *kv = NULL;
	struct duet_engine *e = NULL;
	struct replay_text got = {0};
	int *prompt = malloc(sizeof(int) * (size_t)(j->max_prompt + 1));
	struct duet_kv_geom g = duet_kv_geom_for(j->m, 0, j->kv);
	struct duet_engine_opts eo = {.n_threads = 1, .qdot = j->qdot};
	if (!prompt) {
		duet_errf(&err, "--verify: out of memory");
		goto fail;
	}
	if (duet_kv_pool_create(&kv, &g, duet_kv_blocks_for(&g, j->m->cfg.ctx_len), &err) ||
	    duet_engine_create(&e, j->m, kv, &eo, &err)) {
		duet_err_prefix(&err, "--verify");
		goto fail;
	}
	for (int i; (i = take(j)) >= 0;) {
		const struct trace_req *q = &j->t->req[i];
		const struct replay_text *sent = &j->res[i].text;
		synth_prompt(j->syn, q, i, prompt);
		struct duet_gen_params p = {.sampling = {.top_p = 1},
					    .max_tokens = q->output_tokens,
					    .ignore_eos = 1};
		struct duet_gen_stats st;
		got.n = 0;
		if (duet_generate(e, kv, j->m, prompt, q->prompt_tokens, &p, on_token, &got, &st,
				  &err)) {
			duet_err_prefix(&err, "--verify: request %d", i);
			goto fail;
		}
		if (got.n != sent->n || (got.n && memcmp(got.p, sent->p, got.n) != 0)) {
			j->diff[i].wrong = 1;
			j->diff[i].want = got; /* the report's from here on */
			got = (struct replay_text){0};
		}
		pthread_mutex_lock(&j->mu);
		j->verified++;
		if (!j->quiet)
			fprintf(stderr, "\rduet replay: verified %d/%d", j->verified, j->todo);
		pthread_mutex_unlock(&j->mu);
	}
	goto out;
fail:
	fail(j, &err);
out:
	free(got.p);
	free(prompt);
	duet_engine_destroy(e);
	duet_kv_pool_destroy(kv);
}

/* How many bytes of a text of n to show from `from`. */
static int shown(size_t n, size_t from)
{
	return (int)(n - from < 2 * SHOW_CONTEXT ? n - from : 2 * SHOW_CONTEXT);
}

/* Names where request i's texts part (want: duet generate's). */
static void report(const struct trace *t, int i, const struct replay_text *sent_t,
		   const struct replay_text *want_t)
{
	const char *want = want_t->p ? want_t->p : "", *sent = sent_t->p ? sent_t->p : "";
	size_t at = 0; /* where they part */
	while (at < want_t->n && at < sent_t->n && want[at] == sent[at])
		at++;
	size_t from = at > SHOW_CONTEXT ? at - SHOW_CONTEXT : 0;
	fprintf(stderr,
		"duet replay: request %d (%d prompt tokens): the text differs from byte %zu of %zu: "
		"the server sent '...%.*s' (%zu bytes), duet generate gives '...%.*s' (%zu bytes)\n",
		i, t->req[i].prompt_tokens, at, want_t->n, shown(sent_t->n, from), sent + from,
		sent_t->n, shown(want_t->n, from), want + from, want_t->n);
}

int replay_verify(const struct replay_verify_opts *o, const struct trace *t,
		  const struct synth *syn, const struct replay_result *res, int quiet,
		  struct replay_summary *s, struct duet_err *err)
{
	struct verify_job j = {.t = t, .syn = syn, .res = res, .kv = o->kv, .qdot = o->qdot,
			       .quiet = quiet};
	for (int i = 0; i < t->n; i++) {
		if (t->req[i].prompt_tokens > j.max_prompt)
			j.max_prompt = t->req[i].prompt_tokens;
		j.todo += res[i].status == RS_OK;
	}
	struct duet_model *m = NULL;
	struct duet_model_opts mo = {.weights = DUET_WEIGHTS_HUGEPAGES};
	if (duet_model_open(&m, o->model, &mo, err))
		return duet_err_prefix(err, "--verify");
	j.m = m;
	int n_workers = duet_cpu_count() < j.todo ? duet_cpu_count() : j.todo;
	if (n_workers > DUET_MAX_THREADS)
		n_workers = DUET_MAX_THREADS;
	struct duet_threadpool *pool = NULL;
	j.diff = calloc((size_t)t->n + 1, sizeof *j.diff);
	if (!j.diff) {
		duet_model_close(m);
		return duet_errf(err, "--verify: out of memory");
	}
	if (n_workers > 0 && duet_threadpool_create(&pool, n_workers, NULL, 0, err)) {
		free(j.diff);
		duet_model_close(m);
		return duet_err_prefix(err, "--verify");
	}
	pthread_mutex_init(&j.mu, NULL);
	if (pool)
		duet_threadpool_run(pool, worker, &j);
	duet_threadpool_destroy(pool);
	if (!quiet && j.todo)
		fputc('\n', stderr);
	int rc = 0;
	if (j.failed) {
		*err = j.err;
		rc = -1;
	} else {
		s->n_verified = j.verified;
		s->n_wrong = 0;
		for (int i = 0; i < t->n; i++)
			if (j.diff[i].wrong && s->n_wrong++ < SHOW_MISMATCHES)
				report(t, i, &res[i].text, &j.diff[i].want);
	}
	for (int i = 0; i < t->n; i++)
		free(j.diff[i].want.p);
	free(j.diff);
	pthread_mutex_destroy(&j.mu);
	duet_model_close(m);
	return rc;
}
