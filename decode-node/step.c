/* One decode step: every running sequence feeds its last token, and local
 * prefills add up to max-batch-tokens prompt tokens (chunked prefill, so a
 * long prompt delays running streams by one bounded chunk per step, never
 * by its whole length). Sequences join and leave between steps. */
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/trace.h"
#include "decode.h"
#include "node/chunk.h"

int decode_spec_start(struct decode *d, struct dreq *r, const int *tokens, int n,
		      struct duet_err *err)
{
	if ((!d->cfg.spec_ngram && !d->draft_engine) || duet_spec_unsupported(&r->sampler))
		return 0;
	struct duet_spec_cfg c = {.k_max = d->cfg.spec_k, .adaptive = 1, .ngram = d->cfg.spec_ngram,
				  .draft = d->draft_engine, .draft_kv = d->draft_kv,
				  .draft_model = d->draft_model};
	r->spec = malloc(sizeof *r->spec);
	if (!r->spec)
		return duet_errf(err, "out of memory");
	if (duet_spec_init(r->spec, &c, d->node.model, &r->sampler.p, tokens, n, err)) {
		free(r->spec);
		r->spec = NULL;
		return -1;
	}
	return 0;
}

/* This step's proposal for running sequence r (0 tokens when speculation
 * is off for it, for this batch, or too near the end of its room): what
 * the verification adds past the pending token. Plain steps still record
 * the pending token in its text. */
static int spec_propose(struct decode *d, struct dreq *r, int spec_on)
{
	r->spec_nd = 0;
	r->spec_d[0] = r->next_token;
	if (!r->spec)
		return 0;
	const struct duet_model *m = d->node.model;
	int room = r->max_tokens - r->n_generated;
	/* a proposal never reaches the context's end: the ends of a sequence
	 * stay those of plain decoding */
	if (!spec_on || r->kv.n_tokens + d->cfg.spec_k + 2 >= m->cfg.ctx_len)
		room = 1;
	struct duet_err err;
	int nd = duet_spec_propose(r->spec, r->next_token, room, r->spec_d, &err);
	if (nd < 0) {
		duet_log(DUET_LOG_WARN, r->id, "speculation: %s", err.msg);
		nd = 0;
	}
	return r->spec_nd = nd;
}

/* Verified proposals: the tokens kept and the target's own, each emitted
 * as plain decoding would have. */
static void spec_commit(struct decode *d, struct dreq *r)
{
	int out[DUET_SPEC_MAX_K + 1];
	struct duet_err err;
	int n = duet_spec_commit(r->spec, &r->kv, &r->sampler, r->spec_d, r->spec_nd, out, &err);
	if (n < 0) {
		decode_fail(d, r, DUET__ERROR_CODE__ERR_INTERNAL, err.msg);
		return;
	}
	d->spec_verified++;
	d->spec_proposed += (uint64_t)r->spec_nd;
	d->spec_accepted += (uint64_t)(n - 1);
	for (int i = 0; i < n; i++)
		if (decode_emit(d, r, out[i], 0, NULL))
			return; /* finished: r is gone */
}

int decode_has_work(const struct decode *d)
{
	for (int i = 0; i < d->n_reqs; i++)
		if (d->reqs[i]->st != DREQ_WAIT_KV)
			return 1;
	return 0;
}

static void send_first(struct decode *d, struct dreq *r, int token, long long us,
		       const struct duet_logprobs *lp)
{
	Duet__FirstToken f = DUET__FIRST_TOKEN__INIT;
	Duet__Logprobs wl;
	if (lp)
		f.logprobs = duet_node_logprobs(lp, &wl);
	f.request_id = r->id;
	f.token = token;
	f.n_prompt = (uint32_t)r->n_prompt;
	f.prefill_us = (uint64_t)us;
	Duet__Msg out = duet_wire_msg(DUET__MSG__BODY_FIRST_TOKEN, &f);
	struct duet_err err;
	if (duet_node_send(&d->node, &out, &err))
		duet_log(DUET_LOG_WARN, r->id, "sending first token: %s", err.msg);
}

void decode_step(struct decode *d)
{
	int n = 0, spec_rows = 0, running = 0;
	for (int i = 0; i < d->n_reqs; i++)
		running += d->reqs[i]->st == DREQ_RUNNING;
	/* Above spec-max-batch running sequences a step reads the weights for
	 * enough tokens already: proposals would cost more than they save. A
	 * draft model's forward passes add up sequence by sequence. */
	int spec_on = running <= (d->draft_engine ? d->cfg.spec_draft_max_batch
						  : d->cfg.spec_max_batch);
	for (int i = 0; i < d->n_reqs; i++) {
		struct dreq *r = d->reqs[i];
		if (r->st != DREQ_RUNNING)
			continue;
		int nd = spec_propose(d, r, spec_on);
		spec_rows += nd;
		r->step_tokens = 1 + nd;
		d->fwd[n] = nd ? (struct duet_fwd_seq){&r->kv, r->spec_d, 1 + nd, DUET_LOGITS_ALL,
						       r->spec->logits, r, 0}
			       : (struct duet_fwd_seq){&r->kv, &r->next_token, 1, DUET_LOGITS_LAST,
						       r->logits, r, 0};
		d->batch[n++] = r;
	}
	int budget0 = decode_chunk_budget(d), budget = budget0;
	/* Oldest local prefill first (requests are kept in arrival order). */
	for (int i = 0; i < d->n_reqs && budget > 0; i++) {
		struct dreq *r = d->reqs[i];
		if (r->st != DREQ_LOCAL)
			continue;
		int rows, take = duet_chunk_take(r->prefilled, r->n_prompt, r->resumed_from,
						 budget, &rows);
		budget -= take;
		r->step_tokens = take;
		d->fwd[n] = (struct duet_fwd_seq){&r->kv, r->prompt + r->prefilled, take,
						  r->prefilled + take == r->n_prompt ? DUET_LOGITS_LAST
										     : DUET_LOGITS_NONE,
						  r->logits, r, rows};
		d->batch[n++] = r;
	}
	if (!n)
		return;
	struct duet_err err;
	long long t0 = duet_now_us();
	if (duet_forward(d->node.engine, d->fwd, n, &err)) {
		/* Room was reserved at admission, so this is not an expected
		 * failure; the batch's requests fail, the node goes on. */
		duet_log(DUET_LOG_ERR, 0, "decode step of %d sequences: %s", n, err.msg);
		for (int i = 0; i < n; i++)
			decode_fail(d, d->batch[i], DUET__ERROR_CODE__ERR_INTERNAL, err.msg);
		return;
	}
	long long t1 = duet_now_us(), dt = t1 - t0;
	long long positions = 0, pairs = 0;
	for (int i = 0; i < n; i++) {
		const struct dreq *r = d->batch[i];
		positions += (long long)r->kv.n_tokens; /* after the step */
		if (r->st == DREQ_LOCAL)
			pairs += (long long)r->step_tokens * r->prefilled;
	}
	/* positions and pairs: what a profile's step model weighs (duet trace
	 * steps holds a run against a profile) */
	duet_trace_span("decode", "step", t0, t1,
			"\"running\":%d,\"prefill_seqs\":%d,\"prefill_tokens\":%d,\"spec_rows\":%d,"
			"\"positions\":%lld,\"pairs\":%lld",
			running, n - running, budget0 - budget, spec_rows, positions, pairs);
	double ms = (double)dt / 1000.0;
	d->step_ms = d->step_ms == 0 ? ms : 0.9 * d->step_ms + 0.1 * ms;
	double x[DECODE_STEP_MODEL_FEATURES];
	/* verified proposals are rows like a prompt's */
	decode_step_features(n, budget0 - budget + spec_rows, positions, pairs, x);
	duet_linfit_add(&d->step_model, x, ms);
	d->steps_fitted++;
	for (int i = 0; i < n; i++) {
		struct dreq *r = d->batch[i];
		struct duet_logprobs lps, *lp = r->sampler.p.logprobs ? &lps : NULL;
		if (r->st == DREQ_RUNNING && r->spec_nd) {
			spec_commit(d, r);
			continue;
		}
		if (r->st == DREQ_RUNNING) {
			decode_emit(d, r, duet_sample_lp(&r->sampler, r->logits, lp), 0, lp);
			continue;
		}
		r->prefilled += r->step_tokens;
		if (r->prefilled < r->n_prompt)
			continue;
		decode_cache_prompt(d, r);
		int tok = duet_sample_lp(&r->sampler, r->logits, lp);
		if (r->n_generated == 0 && tok >= 0) {
			send_first(d, r, tok, dt, lp);
			decode_emit(d, r, tok, 1, lp);
		} else {
			decode_emit(d, r, tok, 0, lp); /* a resumed stream */
		}
	}
	duet_trace_span("decode", "sample+send", t1, duet_now_us(), "\"seqs\":%d", n);
}
