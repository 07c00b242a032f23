#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int duet_sampling_check(const struct duet_sampling *p, struct duet_err *err)
{
	if (!(p->temperature >= 0) || !isfinite(p->temperature))
		return duet_errf(err, "temperature %g must be a finite number >= 0", p->temperature);
	if (p->top_k < 0)
		return duet_errf(err, "top_k %d must be >= 0 (0 means no limit)", p->top_k);
	if (!(p->top_p > 0 && p->top_p <= 1))
		return duet_errf(err, "top_p %g must be in (0, 1]", p->top_p);
	return 0;
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
	if (duet_sampling_check(p, err))
		return -1;
	s->p = *p;
	s->vocab = vocab;
	uint64_t x = p->seed;
	for (int i = 0; i < 4; i++)
		s->s[i] = duet_splitmix64(&x);
	s->cand = malloc(sizeof *s->cand * (size_t)vocab);
	if (!s->cand)
		return duet_errf(err, "sampler: out of memory for %d candidates", vocab);
	return 0;
}

void duet_sampler_free(struct duet_sampler *s)
{
	free(s->cand);
	s->cand = NULL;
}

int duet_argmax(const float *x, int n)
{
	int best = 0;
	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
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

int duet_sample(struct duet_sampler *s, float *logits)
{
	int n = s->vocab;
	if (s->p.temperature == 0)
		return duet_argmax(logits, n);
	float mx = logits[duet_argmax(logits, n)];
	double sum = 0;
	for (int i = 0; i < n; i++) {
		float p = expf((logits[i] - mx) / s->p.temperature);
		s->cand[i] = (struct duet_cand){p, i};
		sum += p;
	}
	int m = n;
	if (s->p.top_k > 0 && s->p.top_k < n) {
		select_top(s->cand, n, s->p.top_k);
		m = s->p.top_k;
	} else if (s->p.top_p < 1) {
		/* Candidates below (1 - top_p) / (n - 1) of the mass can never
		 * be inside the nucleus; dropping them first keeps the sort
		 * small. */
		float cut = (float)((1.0 - s->p.top_p) / (n - 1) * sum);
		m = 0;
		for (int i = 0; i < n; i++)
			if (s->cand[i].p >= cut)
				s->cand[m++] = s->cand[i];
	}
	qsort(s->cand, (size_t)m, sizeof *s->cand, cand_cmp);
	double kept = 0;
	for (int i = 0; i < m; i++)
		kept += s->cand[i].p;
	if (s->p.top_p < 1) {
		double acc = 0;
		int last = m - 1;
		for (int i = 0; i < m; i++) {
			acc += s->cand[i].p;
			if (acc >= s->p.top_p * kept) {
				last = i;
				break;
			}
		}
		m = last + 1;
		kept = acc;
	}
	double r = (double)duet_sampler_uniform(s) * kept, acc = 0;
	for (int i = 0; i < m; i++) {
		acc += s->cand[i].p;
		if (r < acc)
			return s->cand[i].id;
	}
	return s->cand[m - 1].id;
}
