/* --verify: the oracle for a replay. Every completed request is generated
 * again in this process with duet_generate (greedy, ignore_eos, the same
 * synthetic prompt and length), and its text must equal what the server
 * streamed, byte for byte. */
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "engine/generate.h"
#include "replay/replay.h"

#define SHOW_MISMATCHES 3
#define SHOW_CONTEXT 40 /* bytes shown on each side of a difference */

static int on_token(void *ctx, int token, const char *s, size_t n)
{
	(void)token;
	return replay_text_add(ctx, s, n) ? 1 : 0;
}

/* How many bytes of a text of n to show from `from`. */
static int shown(size_t n, size_t from)
{
	return (int)(n - from < 2 * SHOW_CONTEXT ? n - from : 2 * SHOW_CONTEXT);
}

int replay_verify(const struct replay_verify_opts *o, const struct trace *t,
		  const struct synth *syn, const struct replay_result *res, int quiet,
		  struct replay_summary *s, struct duet_err *err)
{
	struct duet_model *m = NULL;
	struct duet_kv_pool *kv = NULL;
	struct duet_engine *e = NULL;
	int *prompt = NULL, rc = -1, max_prompt = 0, todo = 0;
	struct replay_text got = {0};
	for (int i = 0; i < t->n; i++) {
		if (t->req[i].prompt_tokens > max_prompt)
			max_prompt = t->req[i].prompt_tokens;
		todo += res[i].status == RS_OK;
	}
	struct duet_engine_opts eo = {.n_threads = duet_cpu_count(), .qdot = o->qdot};
	struct duet_model_opts mo = {.weights = DUET_WEIGHTS_HUGEPAGES};
	if (duet_model_open(&m, o->model, &mo, err))
		return duet_err_prefix(err, "--verify");
	struct duet_kv_geom g = duet_kv_geom_for(m, 0, o->kv);
	if (duet_kv_pool_create(&kv, &g, duet_kv_blocks_for(&g, m->cfg.ctx_len), err) ||
	    duet_engine_create(&e, m, kv, &eo, err))
		goto out;
	prompt = malloc(sizeof(int) * (size_t)(max_prompt + 1));
	if (!prompt) {
		duet_errf(err, "--verify: out of memory");
		goto out;
	}
	s->n_verified = s->n_wrong = 0;
	for (int i = 0; i < t->n; i++) {
		const struct replay_result *r = &res[i];
		if (r->status != RS_OK)
			continue;
		synth_prompt(syn, &t->req[i], i, prompt);
		struct duet_gen_params p = {.sampling = {.top_p = 1},
					    .max_tokens = t->req[i].output_tokens,
					    .ignore_eos = 1};
		struct duet_gen_stats st;
		got.n = 0;
		if (duet_generate(e, kv, m, prompt, t->req[i].prompt_tokens, &p, on_token, &got, &st,
				  err)) {
			duet_err_prefix(err, "--verify: request %d", i);
			goto out;
		}
		s->n_verified++;
		const char *want = got.p ? got.p : "";
		const char *sent = r->text.p ? r->text.p : "";
		if (got.n != r->text.n || memcmp(want, sent, got.n) != 0) {
			size_t at = 0; /* where they part */
			while (at < got.n && at < r->text.n && want[at] == sent[at])
				at++;
			size_t from = at > SHOW_CONTEXT ? at - SHOW_CONTEXT : 0;
			if (s->n_wrong++ < SHOW_MISMATCHES)
				fprintf(stderr,
					"duet replay: request %d (%d prompt tokens): the text differs from "
					"byte %zu of %zu: the server sent '...%.*s' (%zu bytes), duet "
					"generate gives '...%.*s' (%zu bytes)\n",
					i, t->req[i].prompt_tokens, at, got.n, shown(r->text.n, from),
					sent + from, r->text.n, shown(got.n, from), want + from, got.n);
		}
		if (!quiet)
			fprintf(stderr, "\rduet replay: verified %d/%d", s->n_verified, todo);
	}
	if (!quiet && todo)
		fputc('\n', stderr);
	rc = 0;
out:
	free(got.p);
	free(prompt);
	duet_engine_destroy(e);
	duet_kv_pool_destroy(kv);
	duet_model_close(m);
	return rc;
}
