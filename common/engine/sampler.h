/* Token sampling: greedy, temperature, top-k, top-p, seeded. */
#ifndef DUET_SAMPLER_H
#define DUET_SAMPLER_H

#include <stdint.h>

#include "base/err.h"

struct duet_sampling {
	float temperature; /* 0 = greedy */
	int top_k;	   /* 0 = no limit */
	float top_p;	   /* 1 = no limit */
	uint64_t seed;
};

struct duet_sampler {
	struct duet_sampling p;
	uint64_t s[4]; /* xoshiro256** state */
	int vocab;
	struct duet_cand {
		float p;
		int id;
	} *cand;
};

/* Checks the parameters (temperature >= 0, top_k >= 0, 0 < top_p <= 1). */
int duet_sampling_check(const struct duet_sampling *p, struct duet_err *err);

/* splitmix64: the next value of a full-period stream from any state (seeds
 * the sampler; also makes reproducible synthetic data). */
uint64_t duet_splitmix64(uint64_t *state);
int duet_sampler_init(struct duet_sampler *s, const struct duet_sampling *p,
		      int vocab, struct duet_err *err);
void duet_sampler_free(struct duet_sampler *s);
/* Picks a token from logits[vocab] (which it may overwrite). */
int duet_sample(struct duet_sampler *s, float *logits);
/* Advances the random stream past n samples, as if n tokens had been
 * drawn: a node that takes over a sequence after n tokens (the decode node
 * after the prefill node's first token, or a resumed stream) then draws
 * exactly what one process would have. */
void duet_sampler_skip(struct duet_sampler *s, int n);
/* Index of the largest logit (lowest index on ties). */
int duet_argmax(const float *x, int n);
/* Uniform float in [0, 1) from the sampler's stream. */
float duet_sampler_uniform(struct duet_sampler *s);

#endif
