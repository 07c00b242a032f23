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

/* Where a resumed stream's streamed tokens start in its prompt of n
 * tokens, the last `streamed` of which the lost node had already sent (0
 * when they are the whole prompt; n for a request that is no resume). */
static inline int duet_chunk_resumed_from(int n, int streamed)
{
	return streamed < n ? n - streamed : 0;
}

/* The next chunk of a prompt of n tokens whose first done have their KV,
 * at most budget tokens. A resumed stream's prompt ends with the tokens
 * streamed before a failover (from resumed_from on), which are attended as
 * the decode steps that made them were (engine/forward.h, decode_rows),
 * so a chunk never mixes them with the prompt before them; *decode_rows
 * says which kind this chunk is. */
static inline int duet_chunk_take(int done, int n, int resumed_from, int budget,
				  int *decode_rows)
{
	int end = done < resumed_from ? resumed_from : n;
	*decode_rows = done >= resumed_from;
	return end - done < budget ? end - done : budget;
}

#endif
