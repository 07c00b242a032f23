#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int duet_sampling_check(const struct duet_sampling *p, int vocab, struct duet_err *err)
{
	if (!(p->temperature >= 0) || !isfinite(p->temperature))
		return duet_errf(err, "temperature %g must be a finite number >= 0", p->temperature);
	if (p->top_k < 0)
		return duet_errf(err, "top_k %d must be >= 0 (0 means no limit)", p->top_k);
	if (!(p->top_p > 0 && p->top_p <= 1))
		return duet_errf(err, "top_p %g must be in (0, 1]", p->top_p);
	if (!(p->min_p >= 0 && p->min_p <= 1))
		return duet_errf(err, "min_p %g must be in [0, 1]", p->min_p);
	if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2))
		return duet_errf(err, "presence_penalty %g must be in [-2, 2]", p->presence_penalty);
	if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
		return duet_errf(err, "frequency_penalty %g must be in [-2, 2]",
				 p->frequency_penalty);
	if (!(p->repetition_penalty >= 0 && p->repetition_penalty <= 10))
		return duet_errf(err, "repetition_penalty %g must be in (0, 10] (0 or 1 = off)",
				 p->repetition_penalty);
	if (p->top_logprobs < 0 || p->top_logprobs > DUET_MAX_TOP_LOGPROBS)
		return duet_errf(err, "top_logprobs %d must be from 0 to %d", p->top_logprobs,
				 DUET_MAX_TOP_LOGPROBS);
	if (p->n_bias < 0 || p->n_bias > DUET_MAX_LOGIT_BIAS)
		return duet_errf(err, "logit_bias has %d entries; at most %d", p->n_bias,
				 DUET_MAX_LOGIT_BIAS);
	for (int i = 0; i < p->n_bias; i++) {
		if (p->bias[i].id < 0 || (vocab > 0 && p->bias[i].id >= vocab))
			return duet_errf(err, "logit_bias: token %d is not in the vocabulary of %d",
					 p->bias[i].id, vocab);
		if (!(p->bias[i].bias >= -100 && p->bias[i].bias <= 100))
			return duet_errf(err, "logit_bias: %g for token %d must be in [-100, 100]",
					 p->bias[i].bias, p->bias[i].id);
	}
	return 0;
}

static int penalized(const struct duet_sampling *p)
{
	return p->presence_penalty != 0 || p->frequency_penalty != 0 ||
	       (p->repetition_penalty != 0 && p->repetition_penalty != 1);
}

uint64_t duet_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t next(struct duet_sampler *s)
{
	uint64_t r = rotl(s->s[1] * 5, 7) * 9, t = s->s[1] << 17;
	s->s[2] ^= s->s[0];
	s->s[3] ^= s->s[1];
	s->s[1] ^= s->s[2];
	s->s[0] ^= s->s[3];
	s->s[2] ^= t;
	s->s[3] = rotl(s->s[3], 45);
	return r;
}

float duet_sampler_uniform(struct duet_sampler *s)
{
	return (float)(next(s) >> 40) * 0x1p-24f;
}

int duet_sampler_init(struct duet_sampler *s, const struct duet_sampling *p,
		      int vocab, struct duet_err *err)
{
	memset(s, 0, sizeof *s);
	if (duet_sampling_check(p, vocab, err))
		return -1;
	s->p = *p;
	s->vocab = vocab;
	uint64_t x = p->seed;
	for (int i = 0; i < 4; i++)
		s->s[i] = duet_splitmix64(&x);
	s->cand = malloc(sizeof *s->cand * (size_t)vocab);
	if (penalized(p)) {
		s->count = calloc((size_t)vocab, sizeof *s->count);
		s->seen = calloc((size_t)vocab, 1);
	}
	if (!s->cand || (penalized(p) && (!s->count || !s->seen))) {
		duet_sampler_free(s);
		return duet_errf(err, "sampler: out of memory for %d candidates", vocab);
	}
	return 0;
}

void duet_sampler_free(struct duet_sampler *s)
{
	free(s->cand);
	free(s->count);
	free(s->seen);
	s->cand = NULL;
	s->count = NULL;
	s->seen = NULL;
}

void duet_sampler_accept(struct duet_sampler *s, int id)
{
	if (s->count && id >= 0 && id < s->vocab) {
		s->count[id]++;
		s->seen[id] = 1;
	}
}

void duet_sampler_history(struct duet_sampler *s, const int *ids, int n, int n_generated)
{
	if (!s->seen)
		return;
	for (int i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= s->vocab)
			continue;
		if (i >= n - n_generated)
			duet_sampler_accept(s, ids[i]);
		else
			s->seen[ids[i]] = 1;
	}
}

/* Bias, then the penalties, in place (llama.cpp's and vLLM's order). */
static void adjust(const struct duet_sampler *s, float *l)
{
	const struct duet_sampling *p = &s->p;
	for (int i = 0; i < p->n_bias; i++)
		l[p->bias[i].id] += p->bias[i].bias;
	if (!s->seen)
		return;
	float rp = p->repetition_penalty == 0 ? 1 : p->repetition_penalty;
	for (int i = 0; i < s->vocab; i++) {
		if (!s->seen[i])
			continue;
		l[i] = l[i] > 0 ? l[i] / rp : l[i] * rp;
		if (s->count[i])
			l[i] -= p->frequency_penalty * (float)s->count[i] + p->presence_penalty;
	}
}

/* Log-softmax normalizer and the k most likely tokens (ties: lower id). */
static void fill_logprobs(const struct duet_sampler *s, const float *l, struct duet_logprobs *lp,
			  double *lse)
{
	int n = s->vocab, k = s->p.top_logprobs;
	float mx = l[duet_argmax(l, n)];
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += exp((double)l[i] - mx);
	*lse = mx + log(sum);
	lp->n_top = 0;
	for (int i = 0; i < n && k > 0; i++) {
		if (lp->n_top == k && l[i] <= lp->top[k - 1])
			continue;
		int j = lp->n_top < k ? lp->n_top++ : k - 1;
		while (j > 0 && lp->top[j - 1] < l[i]) {
			lp->top[j] = lp->top[j - 1];
			lp->top_id[j] = lp->top_id[j - 1];
			j--;
		}
		lp->top[j] = l[i];
		lp->top_id[j] = i;
	}
	for (int j = 0; j < lp->n_top; j++)
		lp->top[j] = (float)(lp->top[j] - *lse);
}

/* Lanes of the running maximum: one compare-and-keep chain per lane, so
 * that a vocabulary's scan is not one chain of dependent compares (128K
 * logits of a Llama 3 vocabulary per sequence and step, on the step's
 * critical path). */
#define ARGMAX_LANES 16

/* The first index of the largest value, as a plain scan with > gives:
 * NaN never wins, and a NaN x[0] is kept (nothing compares above it). */
int duet_argmax(const float *x, int n)
{
	if (n < 1)
		return 0;
	float m[ARGMAX_LANES];
	for (int j = 0; j < ARGMAX_LANES; j++)
		m[j] = x[0];
	int i = 0;
	for (; i + ARGMAX_LANES <= n; i += ARGMAX_LANES)
		for (int j = 0; j < ARGMAX_LANES; j++)
			m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
	float mx = x[0];
	for (int j = 0; j < ARGMAX_LANES; j++)
		mx = m[j] > mx ? m[j] : mx;
	for (; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	for (i = 0; i < n; i++)
		if (x[i] == mx)
			return i;
	return 0; /* x[0] is NaN and nothing is above it */
}

/* Descending probability; equal probabilities by ascending id, so the
 * order (and the sampled token) never depends on qsort's internals. */
static int cand_cmp(const void *a, const void *b)
{
	const struct duet_cand *x = a, *y = b;
	if (x->p != y->p)
		return x->p > y->p ? -1 : 1;
	return x->id - y->id;
}

/* Moves the k best candidates to the front (quickselect). */
static void select_top(struct duet_cand *c, int n, int k)
{
	int lo = 0, hi = n - 1;
	while (lo < hi) {
		struct duet_cand pivot = c[(lo + hi) / 2];
		int i = lo, j = hi;
		while (i <= j) {
			while (cand_cmp(&c[i], &pivot) < 0)
				i++;
			while (cand_cmp(&c[j], &pivot) > 0)
				j--;
			if (i <= j) {
				struct duet_cand t = c[i];
				c[i++] = c[j];
				c[j--] = t;
			}
		}
		if (k - 1 <= j)
			hi = j;
		else if (k - 1 >= i)
			lo = i;
		else
			break;
	}
}

void duet_sampler_skip(struct duet_sampler *s, int n)
{
	/* duet_sample draws one uniform per token, and none when greedy. */
	if (s->p.temperature == 0)
		return;
	for (int i = 0; i < n; i++)
		(void)duet_sampler_uniform(s);
}

/* The candidates the distribution keeps after temperature, min-p, top-k
 * and top-p, most likely first, in s->cand (weights not normalized);
 * returns how many, and their total weight in *kept. Not for greedy. */
static int candidates(struct duet_sampler *s, const float *logits, double *kept)
{
	int n = s->vocab;
	float mx = logits[duet_argmax(logits, n)];
	double sum = 0;
	/* min_p is relative to the best token, whose weight here is 1. */
	int m = 0;
	for (int i = 0; i < n; i++) {
		float p = expf((logits[i] - mx) / s->p.temperature);
		if (p > 0 && p >= s->p.min_p) {
			s->cand[m++] = (struct duet_cand){p, i};
			sum += p;
		}
	}
	n = m;
	if (s->p.top_k > 0 && s->p.top_k < n) {
		select_top(s->cand, n, s->p.top_k);
		m = s->p.top_k;
	} else if (s->p.top_p < 1) {
		/* Candidates below (1 - top_p) / (n - 1) of the mass can never
		 * be inside the nucleus; dropping them first keeps the sort
		 * small. */
		float cut = n > 1 ? (float)((1.0 - s->p.top_p) / (n - 1) * sum) : 0;
		m = 0;
		for (int i = 0; i < n; i++)
			if (s->cand[i].p >= cut)
				s->cand[m++] = s->cand[i];
	}
	qsort(s->cand, (size_t)m, sizeof *s->cand, cand_cmp);
	*kept = 0;
	for (int i = 0; i < m; i++)
		*kept += s->cand[i].p;
	if (s->p.top_p < 1) {
		double acc = 0;
		int last = m - 1;
		for (int i = 0; i < m; i++) {
			acc += s->cand[i].p;
			if (acc >= s->p.top_p * *kept) {
				last = i;
				break;
			}
		}
		m = last + 1;
		*kept = acc;
	}
	return m;
}

/* Draws from the distribution logits give after temperature, min-p, top-k
 * and top-p, with the uniform u. */
static int pick(struct duet_sampler *s, const float *logits, float u)
{
	if (s->p.temperature == 0)
		return duet_argmax(logits, s->vocab);
	double kept;
	int m = candidates(s, logits, &kept);
	double r = (double)u * kept, acc = 0;
	for (int i = 0; i < m; i++) {
		acc += s->cand[i].p;
		if (r < acc)
			return s->cand[i].id;
	}
	return s->cand[m - 1].id;
}

void duet_sample_dist(struct duet_sampler *s, float *logits, float *probs)
{
	adjust(s, logits);
	memset(probs, 0, sizeof *probs * (size_t)s->vocab);
	if (s->p.temperature == 0) {
		probs[duet_argmax(logits, s->vocab)] = 1;
		return;
	}
	double kept;
	int m = candidates(s, logits, &kept);
	for (int i = 0; i < m; i++)
		probs[s->cand[i].id] = (float)(s->cand[i].p / kept);
}

int duet_sample_lp(struct duet_sampler *s, float *logits, struct duet_logprobs *lp)
{
	adjust(s, logits);
	double lse = 0;
	if (lp)
		fill_logprobs(s, logits, lp, &lse);
	float u = s->p.temperature == 0 ? 0 : duet_sampler_uniform(s);
	int tok = pick(s, logits, u);
	if (s->allow && !s->allow(s->allow_ctx, tok)) {
		/* Rejection first: a draw that happens to be allowed is exactly
		 * a draw from the allowed tokens' renormalized distribution, and
		 * checking one token is cheap; only otherwise is every token
		 * checked. The second draw's uniform comes from the first's, so
		 * the stream still takes one uniform per token (skip). */
		s->n_masked++;
		int any = 0;
		for (int i = 0; i < s->vocab; i++) {
			if (logits[i] == -INFINITY)
				continue;
			if (s->allow(s->allow_ctx, i))
				any = 1;
			else
				logits[i] = -INFINITY;
		}
		if (!any)
			return -1;
		uint64_t x = ((uint64_t)(u * 0x1p24f) << 20) ^ s->n_masked;
		tok = pick(s, logits, (float)(duet_splitmix64(&x) >> 40) * 0x1p-24f);
	}
	if (lp)
		lp->chosen = (float)(logits[tok] - lse);
	return tok;
}
