/* Prompts for replayed requests: traces carry lengths, not text, so
 * `duet replay` makes token-id prompts of the exact length. Tokens are a
 * pure function of (seed, block key, position), so a Mooncake hash id gives
 * the same block of tokens in every request that names it (shared prefixes
 * are really shared, and the prefix cache sees them), while requests without
 * ids get blocks of their own. */
#ifndef DUET_SYNTH_H
#define DUET_SYNTH_H

#include <stdint.h>

#include "replay/trace.h"

/* Block size for requests without hash ids (any value works; this one keeps
 * the per-block key cheap to recompute). */
#define SYNTH_BLOCK 512
/* Ids below this are the Llama convention's <unk>, <s>, </s>: never drawn. */
#define SYNTH_FIRST_TOKEN 3

struct synth {
	uint64_t seed;
	int vocab_size;
	int block_tokens; /* tokens per hash id, from the (fitted) trace */
};

/* Checks that the vocabulary leaves room to draw from. */
int synth_init(struct synth *s, uint64_t seed, int vocab_size, int block_tokens,
	       struct duet_err *err);

/* The prompt of request `index` of the trace: q->prompt_tokens ids into
 * out (room for that many). */
void synth_prompt(const struct synth *s, const struct trace_req *q, int index, int *out);

/* The prompts of rate k (from 0) of a sweep: rate 0 is s itself, the
 * others draw their own, so no rate is served from the prefix cache the
 * rates before it warmed (a sweep measures load, not the cache; replaying
 * one slice twice does measure the cache). */
struct synth synth_for_rate(const struct synth *s, int k);

#endif
