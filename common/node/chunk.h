/* The prompt tokens a decode step may carry beside running streams under
 * a TBT objective: as many as keep the predicted step (base_ms, and
 * per_token_ms more for each prompt token) within target_ms, at least one
 * so that a prompt always advances, and max_tokens at most; max_tokens
 * when there is no objective or a token costs nothing. The decode node
 * (decode-node/step_model.c) predicts from the step model it fits; duet
 * plan's simulated node (tools/plan/sim.c) from its profile. */
#ifndef DUET_NODE_CHUNK_H
#define DUET_NODE_CHUNK_H

static inline int duet_chunk_within(int max_tokens, double target_ms, double base_ms,
				    double per_token_ms)
{
	if (target_ms <= 0 || per_token_ms <= 0)
		return max_tokens;
	double fit = (target_ms - base_ms) / per_token_ms;
	if (fit < 1)
		return 1;
	return fit < max_tokens ? (int)fit : max_tokens;
}

#endif
