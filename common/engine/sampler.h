/* Token sampling: logit bias, repetition/presence/frequency penalties,
 * greedy or temperature with top-k, top-p and min-p, seeded; log
 * probabilities of the chosen and the most likely tokens; an optional
 * constraint that says which tokens may come next (response_format). */
#ifndef DUET_SAMPLER_H
#define DUET_SAMPLER_H

#include <stdint.h>

#include "base/err.h"

/* OpenAI allows 300 biased tokens per request. */
#define DUET_MAX_LOGIT_BIAS 300
/* OpenAI's top_logprobs goes up to 20. */
#define DUET_MAX_TOP_LOGPROBS 20

struct duet_logit_bias {
	int id;
	float bias; /* added to the logit; -100 bans, +100 all but forces */
};

/* Zero-initialized fields beyond the first four mean "off", so a struct
 * written as {temperature, top_k, top_p, seed} samples as before. */
struct duet_sampling {
	float temperature; /* 0 = greedy */
	int top_k;	   /* 0 = no limit */
	float top_p;	   /* 1 = no limit */
	uint64_t seed;
	float min_p; /* keep tokens with p >= min_p * p(best); 0 = off */
	/* OpenAI's: logit -= frequency * count + presence * (count > 0),
	 * count over the generated tokens */
	float presence_penalty, frequency_penalty;
	/* CTRL's (HF, vLLM, llama.cpp): over prompt and generated tokens a
	 * positive logit is divided by it, a negative one multiplied;
	 * 0 or 1 = off */
	float repetition_penalty;
	int n_bias;
	struct duet_logit_bias bias[DUET_MAX_LOGIT_BIAS];
	int logprobs;	  /* report the chosen token's log-probability */
	int top_logprobs; /* and the k most likely tokens' (0..20) */
};

/* Log-probabilities as reported: log-softmax of the logits after bias and
 * penalties, before temperature and truncation (what the model thinks,
 * not how it was sampled). */
struct duet_logprobs {
	float chosen;
	int n_top;
	int top_id[DUET_MAX_TOP_LOGPROBS];
	float top[DUET_MAX_TOP_LOGPROBS];
};

/* Whether token id may come next (a grammar, a JSON schema). */
typedef int (*duet_allow_fn)(void *ctx, int id);

struct duet_sampler {
	struct duet_sampling p;
	uint64_t s[4]; /* xoshiro256** state */
	int vocab;
	struct duet_cand {
		float p;
		int id;
	} *cand;
	/* penalties: how often each token was generated (frequency,
	 * presence) and whether it was seen at all (repetition); NULL when
	 * no penalty is set */
	int *count;
	unsigned char *seen;
	duet_allow_fn allow; /* NULL = every token may come */
	void *allow_ctx;
	uint64_t n_masked; /* samples the constraint had to redo */
};

/* Checks the parameters (temperature >= 0, top_k >= 0, 0 < top_p <= 1,
 * 0 <= min_p <= 1, penalties in OpenAI's ranges, bias ids in the
 * vocabulary when vocab > 0). */
int duet_sampling_check(const struct duet_sampling *p, int vocab, struct duet_err *err);

/* splitmix64: the next value of a full-period stream from any state (seeds
 * the sampler; also makes reproducible synthetic data). */
uint64_t duet_splitmix64(uint64_t *state);
int duet_sampler_init(struct duet_sampler *s, const struct duet_sampling *p,
		      int vocab, struct duet_err *err);
void duet_sampler_free(struct duet_sampler *s);
/* The tokens so far, for the penalties: n ids of which the last
 * n_generated were generated (the rest are the prompt). */
void duet_sampler_history(struct duet_sampler *s, const int *ids, int n, int n_generated);
/* A token was generated (by this sampler or another node's): counts for
 * the penalties. Every path calls it once per generated token. */
void duet_sampler_accept(struct duet_sampler *s, int id);
/* Picks a token from logits[vocab] (which it overwrites); fills *lp when
 * not NULL (as s->p.logprobs asks). Does not accept the token. */
int duet_sample_lp(struct duet_sampler *s, float *logits, struct duet_logprobs *lp);
/* The distribution duet_sample draws from (after bias, penalties,
 * temperature, min-p, top-k, top-p; one-hot when greedy) into probs[vocab]:
 * what speculative decoding's acceptance rule compares. Overwrites logits. */
void duet_sample_dist(struct duet_sampler *s, float *logits, float *probs);
static inline int duet_sample(struct duet_sampler *s, float *logits)
{
	return duet_sample_lp(s, logits, 0);
}
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
