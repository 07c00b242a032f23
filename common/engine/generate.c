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
	if (duet_sampler_init(&sampler, &p->sampling, V, err))
		return -1;
	if (duet_stopper_init(&stopper, p->stops, p->n_stops, err)) {
		duet_sampler_free(&sampler);
		return -1;
	}
	duet_sampler_history(&sampler, prompt, n_prompt, 0);
	float *logits = malloc(sizeof(float) * (size_t)V);
	char *text = malloc(DUET_DETOK_MAX_OUT);
	char *shown = malloc(DUET_DETOK_MAX_OUT + DUET_MAX_STOP_LEN);
	struct duet_kv_seq seq;
	duet_kv_seq_init(&seq);
	int rc = -1;
	if (!logits || !text || !shown) {
		duet_errf(err, "generate: out of memory");
		goto out;
	}
	if (p->format != DUET_FORMAT_TEXT) {
		if (duet_token_table_build(&tt, &m->vocab, err) ||
		    duet_guide_init(&guide, &m->vocab, &tt, p->format, p->json_schema, err))
			goto out;
		duet_guide_attach(&guide, &sampler);
	}
	double t0 = duet_now_s();
	int chunk = duet_engine_max_batch(e);
	for (int i = 0; i < n_prompt; i += chunk) {
		int n = n_prompt - i < chunk ? n_prompt - i : chunk;
		struct duet_fwd_seq fs = {&seq, prompt + i, n,
					  i + n == n_prompt ? DUET_LOGITS_LAST : DUET_LOGITS_NONE,
					  logits, NULL};
		if (duet_forward(e, &fs, 1, err))
			goto out;
	}
	st->n_prompt = n_prompt;
	double t1 = duet_now_s();
	st->t_prompt = t1 - t0;
	struct duet_detok dt;
	duet_detok_init(&dt, &m->vocab, 0);
	st->finish = DUET_FINISH_LENGTH;
	for (int i = 0; i < p->max_tokens; i++) {
		struct duet_logprobs lp;
		int tok = duet_sample_lp(&sampler, logits, p->sampling.logprobs ? &lp : NULL);
		if (tok < 0) {
			duet_errf(err, "generate: no token continues the JSON document");
			goto out;
		}
		duet_sampler_accept(&sampler, tok);
		if (p->sampling.logprobs && p->on_logprobs)
			p->on_logprobs(ctx, tok, &lp);
		/* A whole guided document ends the text: nothing may follow. */
		int guided_end = guide.schema && (duet_guide_accept(&guide, tok) == 0) &&
				 duet_guide_finished(&guide);
		int is_eos = duet_vocab_is_eog(&m->vocab, tok) && !p->ignore_eos;
		size_t n = 0, ns = 0;
		if (!is_eos) {
			if (duet_detok_push(&dt, tok, text, &n, err))
				goto out;
			ns = duet_stopper_feed(&stopper, text, n, shown);
		}
		st->n_gen++;
		if (on_token(ctx, tok, shown, ns)) {
			st->finish = DUET_FINISH_STOP;
			break;
		}
		if (is_eos || stopper.stopped || guided_end) {
			st->finish = DUET_FINISH_STOP;
			break;
		}
		if (i + 1 == p->max_tokens || seq.n_tokens + 1 >= m->cfg.ctx_len)
			break;
		struct duet_fwd_seq fs = {&seq, &tok, 1, DUET_LOGITS_LAST, logits, NULL};
		if (duet_forward(e, &fs, 1, err))
			goto out;
		st->n_decode++;
	}
	if (st->finish == DUET_FINISH_LENGTH || !stopper.stopped) {
		/* Whatever the stopper held back and the detokenizer still
		 * pends is real output once no stop string can complete. */
		size_t n = duet_detok_flush(&dt, text);
		size_t ns = duet_stopper_feed(&stopper, text, n, shown);
		ns += duet_stopper_flush(&stopper, shown + ns);
		if (ns)
			on_token(ctx, -1, shown, ns);
	}
	st->t_gen = duet_now_s() - t1;
	st->n_masked = sampler.n_masked;
	rc = 0;
out:
	duet_kv_seq_release(kv, &seq);
	if (guide.schema)
		duet_guide_free(&guide);
	duet_token_table_free(&tt);
	duet_stopper_free(&stopper);
	duet_sampler_free(&sampler);
	free(logits);
	free(text);
	free(shown);
	return rc;
}
