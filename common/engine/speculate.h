/* Speculative decoding of one sequence. A proposer guesses the next k
 * tokens cheaply: a draft model (a smaller or lower-precision model with
 * the same vocabulary, its own KV cache kept in step) or prompt lookup
 * (the continuation of the latest earlier occurrence of the last n-gram).
 * The target model then checks all k + 1 positions in one forward pass,
 * which costs about one decode step since decode is bound by reading the
 * weights: it keeps the longest agreeing prefix and adds one token of its
 * own, and both KV caches roll back past what was rejected.
 *
 * Greedy, the tokens are exactly those of plain decoding. Sampling uses
 * the standard acceptance rule (accept a drafted token with probability
 * min(1, p/q), on rejection draw from max(0, p - q) renormalized), so the
 * output follows the target's distribution; the random stream then
 * differs from plain decoding's. */
#ifndef DUET_SPECULATE_H
#define DUET_SPECULATE_H

#include <stdint.h>

#include "base/err.h"
#include "engine/forward.h"
#include "engine/sampler.h"

#define DUET_SPEC_MAX_K 16

struct duet_spec_cfg {
	int k_max;    /* most tokens proposed per step, 1..DUET_SPEC_MAX_K */
	/* k follows what pays: the k (0 = plain decoding) with the most
	 * tokens per second for the acceptance rate and the draft and verify
	 * times measured over the recent steps */
	int adaptive;
	/* a draft model (NULL = none): its engine and KV pool, apart from
	 * the target's */
	struct duet_engine *draft;
	struct duet_kv_pool *draft_kv;
	const struct duet_model *draft_model;
	int ngram; /* prompt lookup: n-grams of up to this many tokens; 0 = off */
};

struct duet_spec_stats {
	uint64_t steps;	   /* target forward passes */
	uint64_t proposed; /* tokens proposed */
	uint64_t accepted; /* of them, kept */
	uint64_t emitted;  /* tokens committed (accepted + one per step) */
};

struct duet_spec {
	struct duet_spec_cfg cfg;
	int k;
	struct duet_kv_seq dkv; /* the draft model's sequence */
	struct duet_sampler dsampler;
	int *hist, n_hist, cap_hist; /* prompt and committed tokens */
	int draft_pos;		     /* tokens of hist in dkv */
	int vocab;
	float *logits; /* [(k_max + 1) * vocab]: the target's */
	float *dlogits, *p; /* [vocab] */
	float *q;	    /* [k_max * vocab]: the draft's distributions */
	/* recent history (moving averages): accepted proposals per trial
	 * (the acceptance rate), draft time per token, verify time */
	double acc, trials, draft_ms, verify_ms;
	double t_proposed; /* when the last proposal was ready */
	int plain_steps; /* since speculation was last tried */
	struct duet_spec_stats st;
};

/* The draft model d can draft for m: the same vocabulary, token for
 * token. */
int duet_spec_check_draft(const struct duet_model *m, const struct duet_model *d,
			  struct duet_err *err);
/* Checks that the draft model can draft for m (the same vocabulary),
 * allocates, and records the prompt. The target sampler's parameters are
 * the draft's too. */
int duet_spec_init(struct duet_spec *sp, const struct duet_spec_cfg *cfg,
		   const struct duet_model *m, const struct duet_sampling *sampling,
		   const int *prompt, int n_prompt, struct duet_err *err);
void duet_spec_free(struct duet_spec *sp);

/* Whether speculation can serve these parameters: not with penalties (they
 * depend on every earlier token of the step), a constraint or
 * log-probabilities; NULL or "" when it can, else why not. */
const char *duet_spec_unsupported(const struct duet_sampler *s);

/* One step for sequence seq of engine e, whose sampled token last is not
 * yet in its KV: proposes at most max_new - 1 tokens, verifies, and
 * writes the tokens it commits (at least one; the last is the next
 * pending token) to out[DUET_SPEC_MAX_K + 1]. Returns their count, or -1
 * with err. */
int duet_spec_step(struct duet_spec *sp, struct duet_engine *e, struct duet_kv_seq *seq,
		   struct duet_sampler *s, int last, int max_new, int *out,
		   struct duet_err *err);

/* The two halves of a step, for a caller that verifies many sequences in
 * one forward pass (the decode node): propose writes last and the proposed
 * tokens into d[DUET_SPEC_MAX_K + 1] and returns how many it proposed
 * (nd, maybe 0); the caller runs d[0..nd] through the target with
 * DUET_LOGITS_ALL into sp->logits; commit then picks the tokens as step
 * does (into out) and rolls seq back past the rejected ones. */
int duet_spec_propose(struct duet_spec *sp, int last, int max_new, int *d,
		      struct duet_err *err);
int duet_spec_commit(struct duet_spec *sp, struct duet_kv_seq *seq, struct duet_sampler *s,
		     const int *d, int nd, int *out, struct duet_err *err);

/* Prompt lookup: the tokens that followed the latest earlier occurrence of
 * hist's last n-gram (n from ngram down to 1), at most k, into out (past
 * the end of hist the continuation repeats itself). */
int duet_spec_lookup(const int *hist, int n, int ngram, int k, int *out);

/* The acceptance rule for a proposed token d: p is the target's
 * distribution, q the proposer's (NULL: d was proposed for certain).
 * Accepts with probability min(1, p[d] / q[d]) (by u), else draws from
 * max(0, p - q) renormalized (by u2). *accepted says which. */
int duet_spec_accept(const float *p, const float *q, int vocab, int d, float u, float u2,
		     int *accepted);

#endif
