/* The step-time model's first samples, measured at start: one prompt
 * chunk (max-batch-tokens, at most CALIBRATE_MAX_TOKENS) and one decode
 * step on a scratch sequence.
 *
 * Why: the router keeps a local prefill off a decode node whose running
 * streams would wait longer than its TBT objective, predicting the step
 * from the node's fitted model. A node that had only decoded had never
 * seen a prompt token, so its model said they cost nothing: on the
 * Mooncake trace the router placed 64-token chunks predicted at 21 ms that
 * took 150, and every stream there missed its TBT (BENCHMARKS.md,
 * 2026-12-06). The chunk's cost per token also becomes the fit's prior for
 * that feature, which long runs of plain decoding cannot forget. */
#include <stdlib.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/trace.h"
#include "decode.h"

/* The prior's strength: as many chunk-sized samples (linfit.h). */
#define CALIBRATE_PRIOR_CHUNKS 2
/* The longest chunk timed: a prompt token's cost is nearly flat in the
 * chunk's length past a few dozen tokens (a little higher below: the
 * guard errs on the safe side), and a 512-token chunk of a 7B model would
 * hold a node's start for half a minute on a few cores. */
#define CALIBRATE_MAX_TOKENS 64

/* Times one forward pass of n tokens of kv in ms; -1 on failure. */
static double timed_forward(struct decode *d, struct duet_kv_seq *kv, const int *tokens, int n,
			    float *logits, struct duet_err *err)
{
	struct duet_fwd_seq s = {kv, tokens, n, DUET_LOGITS_LAST, logits, NULL, 0};
	long long t0 = duet_now_us();
	if (duet_forward(d->node.engine, &s, 1, err))
		return -1;
	return (double)(duet_now_us() - t0) / 1000.0;
}

int decode_calibrate(struct decode *d, struct duet_err *err)
{
	const struct duet_model *m = d->node.model;
	int chunk = d->node.cfg.max_batch_tokens;
	if (chunk > CALIBRATE_MAX_TOKENS)
		chunk = CALIBRATE_MAX_TOKENS;
	if (chunk > m->cfg.ctx_len - 2)
		chunk = m->cfg.ctx_len - 2;
	if (chunk < 1)
		return 0;
	int *tokens = malloc(sizeof(int) * (size_t)(chunk + 2));
	float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
	struct duet_kv_seq kv;
	duet_kv_seq_init(&kv);
	int rc = -1;
	if (!tokens || !logits) {
		duet_errf(err, "calibration: out of memory");
		goto out;
	}
	for (int i = 0; i < chunk + 2; i++)
		tokens[i] = (int)((7919u * (unsigned)i + 13u) % (unsigned)m->cfg.vocab_size);
	if (duet_kv_seq_reserve(d->node.kv, &kv, chunk + 2, err))
		goto out;
	long long t0 = duet_now_us();
	/* The first pass pages the weights in and sizes the scratch: not a
	 * step the node will take again, so not a sample. */
	double chunk_ms, decode_ms;
	if (timed_forward(d, &kv, tokens, 1, logits, err) < 0 ||
	    (chunk_ms = timed_forward(d, &kv, tokens + 1, chunk, logits, err)) < 0 ||
	    (decode_ms = timed_forward(d, &kv, tokens + 1 + chunk, 1, logits, err)) < 0)
		goto out;
	double x[DECODE_STEP_MODEL_FEATURES];
	decode_step_features(1, chunk, chunk + 1, chunk, x); /* the chunk after one token */
	duet_linfit_add(&d->step_model, x, chunk_ms);
	decode_step_features(1, 0, chunk + 2, 0, x);
	duet_linfit_add(&d->step_model, x, decode_ms);
	d->steps_fitted += 2;
	double per_token = chunk_ms > decode_ms ? (chunk_ms - decode_ms) / chunk : 0;
	duet_linfit_prior(&d->step_model, DECODE_STEP_FEATURE_TOKENS, per_token,
			  CALIBRATE_PRIOR_CHUNKS * (double)chunk * chunk);
	duet_trace_span("decode", "calibrate", t0, duet_now_us(),
			"\"chunk\":%d,\"chunk_ms\":%.3f,\"decode_ms\":%.3f", chunk, chunk_ms,
			decode_ms);
	duet_log(DUET_LOG_INFO, 0,
		 "calibrated: a %d-token prompt chunk %.1f ms, a decode step %.1f ms (%.3f ms a "
		 "prompt token)",
		 chunk, chunk_ms, decode_ms, per_token);
	rc = 0;
out:
	duet_kv_seq_release(d->node.kv, &kv);
	free(tokens);
	free(logits);
	return rc;
}
