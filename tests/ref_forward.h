/* The test oracle: a Llama forward pass written as plainly as possible:
 * straight loops, double accumulators, weights dequantized with the scalar
 * reference conversion, attention recomputed over the whole sequence. No
 * BLAS, no KV cache, no threads, nothing shared with the engine but the
 * loaded weights. */
#ifndef DUET_REF_FORWARD_H
#define DUET_REF_FORWARD_H

#include "engine/model.h"

/* logits[t * vocab + v] for every position t of tokens[0..T). Returns 0,
 * or -1 on allocation failure. */
int ref_forward(const struct duet_model *m, const int *tokens, int T, float *logits);

/* The same for the last n_out positions only (1 <= n_out <= T):
 * logits[(t - (T - n_out)) * vocab + v]. The classifier is the tiny test
 * models' largest matrix by far (a 32000-token vocabulary over a dim of
 * 64), so a decode check that needs a few positions skips it for the
 * rest. Returns -1 for an n_out out of range too. */
int ref_forward_last(const struct duet_model *m, const int *tokens, int T, int n_out,
		     float *logits);

#endif
