#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "engine/tokenizer.h"
#include "text/stopper.h"

const char *duet_finish_name(enum duet_finish f)
{
	return f == DUET_FINISH_STOP ? "stop" : "length";
}

/* What one generation carries from token to token. */
struct gen {
	const struct duet_model *m;
	const struct duet_gen_params *p;
	duet_gen_fn on_token;
	void *ctx;
	struct duet_sampler *sampler;
	struct duet_guide *guide; /* NULL = free text */
	struct duet_stopper *stopper;
	struct duet_detok dt;
	char *text, *shown;
	struct duet_gen_stats *st;
};

/* Hands a generated token on (counts, constraint, detokenizer, stop
 * strings, callback): 1 when generation ends with it, 0 to go on, -1 on
 * error. */
static int emit(struct gen *g, int tok, const struct duet_logprobs *lp, struct duet_err *err)
{
	const struct duet_gen_params *p = g->p;
	duet_sampler_accept(g->sampler, tok);
	if (lp && p->on_logprobs)
		p->on_logprobs(g->ctx, tok, lp);
	/* A whole guided document ends the text: nothing may follow. */
	int guided_end = g->guide && duet_guide_accept(g->guide, tok) == 0 &&
			 duet_guide_finished(g->guide);
	int is_eos = duet_vocab_is_eog(&g->m->vocab, tok) && !p->ignore_eos;
	size_t n = 0, ns = 0;
	if (!is_eos) {
		if (duet_detok_push(&g->dt, tok, g->text, &n, err))
			return -1;
		ns = duet_stopper_feed(g->stopper, g->text, n, g->shown);
	}
	g->st->n_gen++;
	if (g->on_token(g->ctx, tok, g->shown, ns) || is_eos || g->stopper->stopped || guided_end) {
		g->st->finish = DUET_FINISH_STOP;
		return 1;
	}
	return g->st->n_gen == p->max_tokens;
}

/* Speculation set up for this generation, or 0 (none asked, or the
 * sampling parameters need every token drawn alone: st says why). */
static int spec_start(struct duet_spec *sp, const struct duet_gen_params *p,
		      const struct duet_model *m, const struct duet_sampler *s, const int *prompt,
		      int n_prompt, struct duet_gen_stats *st, struct duet_err *err)
{
	if (!p->spec)
		return 0;
	if ((st->spec_off = duet_spec_unsupported(s)))
		return 0;
	if (duet_spec_init(sp, p->spec, m, &p->sampling, prompt, n_prompt, err))
		return -1;
	return 1;
}

int duet_generate(struct duet_engine *e, struct duet_kv_pool *kv,
		  const struct duet_model *m, const int *prompt, int n_prompt,
		  const struct duet_gen_params *p, duet_gen_fn on_token, void *ctx,
		  struct duet_gen_stats *st, struct duet_err *err)
{
	const int V = m->cfg.vocab_size;
	memset(st, 0, sizeof *st);
	if (n_prompt < 1)
		return duet_errf(err, "generate: the prompt is empty");
	if (n_prompt >= m->cfg.ctx_len)
		return duet_errf(err, "generate: the prompt has %d tokens; the context holds %d",
				 n_prompt, m->cfg.ctx_len);
	if (p->max_tokens < 0)
		return duet_errf(err, "generate: max_tokens %d is negative", p->max_tokens);
	struct duet_sampler sampler;
	struct duet_stopper stopper;
	struct duet_token_table tt = {0};
	struct duet_guide guide = {0};
	struct duet_spec spec;
	int speculate = 0;
	if (duet_sampler_init(&sampler, &p->sampling, V, err))
		return -1;
	if (duet_stopper_init(&stopper, p->stops, p->n_stops, err)) {
		duet_sampler_free(&sampler);
		return -1;
	}
	duet_sampler_history(&sampler, prompt, n_prompt, 0);
	float *logits = malloc(sizeof(float) * (size_t)V);
	struct gen g = {m, p, on_token, ctx, &sampler, NULL, &stopper, {0}, NULL, NULL, st};
	g.text = malloc(DUET_DETOK_MAX_OUT);
	g.shown = malloc(DUET_DETOK_MAX_OUT + DUET_MAX_STOP_LEN);
	struct duet_kv_seq seq;
	duet_kv_seq_init(&seq);
	int rc = -1;
	if (!logits || !g.text || !g.shown) {
		duet_errf(err, "generate: out of memory");
		goto out;
	}
	if (p->format != DUET_FORMAT_TEXT) {
		if (duet_token_table_build(&tt, &m->vocab, err) ||
		    duet_guide_init(&guide, &m->vocab, &tt, p->format, p->json_schema, err))
			goto out;
		duet_guide_attach(&guide, &sampler);
		g.guide = &guide;
	}
	if ((speculate = spec_start(&spec, p, m, &sampler, prompt, n_prompt, st, err)) < 0)
		goto out;
	double t0 = duet_now_s();
	int chunk = duet_engine_max_batch(e);
	for (int i = 0; i < n_prompt; i += chunk) {
		int n = n_prompt - i < chunk ? n_prompt - i : chunk;
		struct duet_fwd_seq fs = {&seq, prompt + i, n,
					  i + n == n_prompt ? DUET_LOGITS_LAST : DUET_LOGITS_NONE,
					  logits, NULL, 0};
		if (duet_forward(e, &fs, 1, err))
			goto out;
	}
	st->n_prompt = n_prompt;
	double t1 = duet_now_s();
	st->t_prompt = t1 - t0;
	duet_detok_init(&g.dt, &m->vocab, 0);
	st->finish = DUET_FINISH_LENGTH;
	struct duet_logprobs lp, *want_lp = p->sampling.logprobs ? &lp : NULL;
	int tok = p->max_tokens ? duet_sample_lp(&sampler, logits, want_lp) : 0;
	while (p->max_tokens) {
		if (tok < 0) {
			duet_errf(err, "generate: no token continues the JSON document");
			goto out;
		}
		int r = emit(&g, tok, want_lp, err);
		if (r < 0)
			goto out;
		if (r || seq.n_tokens + 1 >= m->cfg.ctx_len)
			break;
		if (!speculate) {
			struct duet_fwd_seq fs = {&seq, &tok, 1, DUET_LOGITS_LAST, logits, NULL, 0};
			if (duet_forward(e, &fs, 1, err))
				goto out;
			st->n_decode++;
			tok = duet_sample_lp(&sampler, logits, want_lp);
			continue;
		}
		/* Tokens that may still come: max_tokens, and the context's
		 * room for the verified positions. */
		int room = p->max_tokens - st->n_gen, ctx_room = m->cfg.ctx_len - 1 - seq.n_tokens;
		int out[DUET_SPEC_MAX_K + 1];
		int n = duet_spec_step(&spec, e, &seq, &sampler, tok, room < ctx_room ? room : ctx_room,
				       out, err);
		if (n < 0)
			goto out;
		st->n_decode++;
		for (int i = 0; i + 1 < n && !r; i++)
			r = emit(&g, out[i], NULL, err);
		if (r < 0)
			goto out;
		if (r)
			break;
		tok = out[n - 1];
	}
	if (st->finish == DUET_FINISH_LENGTH || !stopper.stopped) {
		/* Whatever the stopper held back and the detokenizer still
		 * pends is real output once no stop string can complete. */
		size_t n = duet_detok_flush(&g.dt, g.text);
		size_t ns = duet_stopper_feed(&stopper, g.text, n, g.shown);
		ns += duet_stopper_flush(&stopper, g.shown + ns);
		if (ns)
			on_token(ctx, -1, g.shown, ns);
	}
	st->t_gen = duet_now_s() - t1;
	st->n_masked = sampler.n_masked;
	if (speculate)
		st->spec = spec.st;
	rc = 0;
out:
	duet_kv_seq_release(kv, &seq);
	if (speculate)
		duet_spec_free(&spec);
	if (guide.schema)
		duet_guide_free(&guide);
	duet_token_table_free(&tt);
	duet_stopper_free(&stopper);
	duet_sampler_free(&sampler);
	free(logits);
	free(g.text);
	free(g.shown);
	return rc;
}
