/* Single-sequence generation: prefill the prompt (in chunks of the
 * engine's batch size), then sample and decode one token at a time until
 * EOS, max_tokens, a stop string or the end of the context. This is what
 * `duet generate` runs and the reference every other path must match. */
#ifndef DUET_GENERATE_H
#define DUET_GENERATE_H

#include <stddef.h>

#include "base/err.h"
#include "engine/forward.h"
#include "engine/guide.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/speculate.h"

enum duet_finish {
	DUET_FINISH_STOP,   /* EOS or a stop string */
	DUET_FINISH_LENGTH, /* max_tokens or the context is full */
};

/* Receives each generated token's log-probabilities (sampling.logprobs). */
typedef void (*duet_gen_lp_fn)(void *ctx, int token, const struct duet_logprobs *lp);

struct duet_gen_params {
	struct duet_sampling sampling;
	int max_tokens;
	int ignore_eos;
	const char *const *stops;
	int n_stops;
	enum duet_format format; /* response_format: the output is JSON */
	const char *json_schema; /* DUET_FORMAT_JSON_SCHEMA: the schema's text */
	duet_gen_lp_fn on_logprobs; /* NULL = not wanted */
	/* speculative decoding (NULL = none); set aside, with the reason in
	 * the stats, for sampling it cannot serve (duet_spec_unsupported) */
	const struct duet_spec_cfg *spec;
};

struct duet_gen_stats {
	int n_prompt, n_gen;
	int n_decode;		/* forward passes after the prompt's */
	uint64_t n_masked;	/* guided tokens whose first draw was refused */
	struct duet_spec_stats spec;
	const char *spec_off; /* why speculation was not used, or NULL */
	double t_prompt, t_gen; /* seconds */
	enum duet_finish finish;
};

/* Receives each generated token and the text it completes (whole UTF-8
 * characters, with stop strings held back and cut). A last call with token
 * -1 may carry text held back until the end. Non-zero stops generation. */
typedef int (*duet_gen_fn)(void *ctx, int token, const char *text, size_t n);

int duet_generate(struct duet_engine *e, struct duet_kv_pool *kv,
		  const struct duet_model *m, const int *prompt, int n_prompt,
		  const struct duet_gen_params *p, duet_gen_fn on_token, void *ctx,
		  struct duet_gen_stats *st, struct duet_err *err);

const char *duet_finish_name(enum duet_finish f);

#endif
