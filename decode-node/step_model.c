/* The decode node's step-time model: what a step's time depends on, and
 * the prompt tokens a step may carry beside running streams by it. The
 * model is fitted in step.c from every step taken (and calibrate.c's
 * first samples) and reported to the router, which predicts placements
 * from it. */
#include "decode.h"
#include "node/chunk.h"

void decode_step_model_init(struct decode *d)
{
	duet_linfit_init(&d->step_model, DECODE_STEP_MODEL_FEATURES, DECODE_STEP_MODEL_LAMBDA,
			 DECODE_STEP_MODEL_RIDGE);
}

/* What a step's time depends on: a fixed part (reading the weights once),
 * each sequence (its activations through every matmul), each prefill
 * token (the same, heavier), attention over the positions seen, and a
 * prompt chunk's attention over the prompt before it. Without the last, a
 * node that prefills long prompts itself put their chunks' attention on
 * the positions and took it off the sequences: replayed over a colocated
 * node's steps on the code trace, the fit missed a step by 17% on average
 * and under-predicted a fifth of the steps that carry a chunk beside
 * streams by over 30%, so those chunks overran the TBT objective (50-55
 * ms steps against 29); with it 7.5%, and 4% of them (BENCHMARKS.md,
 * 2026-12-06 eighth). The router reads the first four (its load reports). */
void decode_step_features(int seqs, int prefill_tokens, long long positions, long long pairs,
			  double *x)
{
	x[0] = 1;
	x[1] = seqs;
	x[2] = prefill_tokens;
	x[3] = (double)positions / 1024.0;
	x[4] = (double)pairs / 1048576.0;
}

/* Prompt tokens this step may carry. While sequences stream, a prompt
 * chunk lengthens the gap between their tokens: no more tokens than keep
 * the step, by the node's step model, within the tightest TBT objective
 * among them, and at least one, so that a prompt always advances. A
 * cached prompt's tail of 11-16 tokens over thousands of cached positions
 * made single steps of 55-75 ms where the objective was 40 (BENCHMARKS.md,
 * 2026-12-06 third). */
int decode_chunk_budget(const struct decode *d)
{
	int budget = d->node.cfg.max_batch_tokens, target = 0, running = 0;
	long long positions = 0;
	const struct dreq *first = NULL;
	for (int i = 0; i < d->n_reqs; i++) {
		const struct dreq *r = d->reqs[i];
		if (r->st == DREQ_RUNNING) {
			running++;
			positions += r->kv.n_tokens + 1;
			if (r->tbt_ms > 0 && (!target || r->tbt_ms < target))
				target = r->tbt_ms;
		} else if (r->st == DREQ_LOCAL && !first) {
			first = r;
		}
	}
	if (!running || !target || !first || d->steps_fitted < 2)
		return budget;
	double x0[DECODE_STEP_MODEL_FEATURES], x1[DECODE_STEP_MODEL_FEATURES];
	/* a prompt token attends over the prompt before it */
	decode_step_features(running + 1, 0, positions + first->prefilled, 0, x0);
	decode_step_features(running + 1, 1, positions + first->prefilled + 1, first->prefilled, x1);
	double base = duet_linfit_predict(&d->step_model, x0);
	return duet_chunk_within(budget, target, base, duet_linfit_predict(&d->step_model, x1) - base);
}
