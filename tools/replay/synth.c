#include "replay/synth.h"

#include <xxhash.h>

#include "engine/sampler.h"

int synth_init(struct synth *s, uint64_t seed, int vocab_size, int block_tokens,
	       struct duet_err *err)
{
	if (vocab_size <= SYNTH_FIRST_TOKEN + 1)
		return duet_errf(err, "vocabulary of %d tokens is too small to draw prompts from",
				 vocab_size);
	s->seed = seed;
	s->vocab_size = vocab_size;
	s->block_tokens = block_tokens > 0 ? block_tokens : SYNTH_BLOCK;
	return 0;
}

/* The stream for one block: keyed by the seed, whether the key is a trace
 * hash id or a request's own block, and the key. */
static uint64_t block_state(uint64_t seed, int shared, uint64_t a, uint64_t b)
{
	uint64_t key[4] = {seed, (uint64_t)shared, a, b};
	return XXH64(key, sizeof key, 0);
}

void synth_prompt(const struct synth *s, const struct trace_req *q, int index, int *out)
{
	const int bs = q->n_hash ? s->block_tokens : SYNTH_BLOCK;
	const uint64_t range = (uint64_t)(s->vocab_size - SYNTH_FIRST_TOKEN);
	for (int b = 0; b * bs < q->prompt_tokens; b++) {
		uint64_t x = b < q->n_hash ? block_state(s->seed, 1, (uint64_t)q->hash_ids[b], 0)
					   : block_state(s->seed, 0, (uint64_t)index, (uint64_t)b);
		int end = (b + 1) * bs < q->prompt_tokens ? (b + 1) * bs : q->prompt_tokens;
		for (int p = b * bs; p < end; p++)
			out[p] = SYNTH_FIRST_TOKEN + (int)(duet_splitmix64(&x) % range);
	}
}

struct synth synth_for_rate(const struct synth *s, int k)
{
	struct synth r = *s;
	uint64_t key[2] = {s->seed, (uint64_t)k};
	if (k > 0)
		r.seed = XXH64(key, sizeof key, 0);
	return r;
}
