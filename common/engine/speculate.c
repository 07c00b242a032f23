#include "engine/speculate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "engine/vocab.h"

/* The weight of the newest step in the moving averages. */
#define SPEC_EMA 0.1
/* Plain steps before speculation is tried again, to see whether it pays
 * by now. */
#define SPEC_PROBE_EVERY 16

/* The draft's random stream is its own, apart from the target's. */
#define SPEC_DRAFT_SEED_XOR 0x5bd1e9955bd1e995ull

static int hist_push(struct duet_spec *sp, int t, struct duet_err *err)
{
	if (sp->n_hist == sp->cap_hist) {
		int c = sp->cap_hist ? sp->cap_hist * 2 : 256;
		int *h = realloc(sp->hist, sizeof *h * (size_t)c);
		if (!h)
			return duet_errf(err, "speculate: out of memory");
		sp->hist = h;
		sp->cap_hist = c;
	}
	sp->hist[sp->n_hist++] = t;
	return 0;
}

int duet_spec_check_draft(const struct duet_model *m, const struct duet_model *d,
			  struct duet_err *err)
{
	/* Token ids must mean the same text in both models. */
	if (!d || d->vocab.n != m->vocab.n || d->cfg.vocab_size != m->cfg.vocab_size)
		return duet_errf(err, "speculate: the draft's vocabulary (%d tokens) is not the model's (%d)",
				 d ? d->vocab.n : 0, m->vocab.n);
	for (int i = 0; i < m->vocab.n; i++)
		if (m->vocab.len[i] != d->vocab.len[i] ||
		    memcmp(duet_vocab_piece(&m->vocab, i), duet_vocab_piece(&d->vocab, i),
			   m->vocab.len[i]) != 0)
			return duet_errf(err, "speculate: token %d differs between the draft's vocabulary and the model's",
					 i);
	return 0;
}

int duet_spec_init(struct duet_spec *sp, const struct duet_spec_cfg *cfg,
		   const struct duet_model *m, const struct duet_sampling *sampling,
		   const int *prompt, int n_prompt, struct duet_err *err)
{
	memset(sp, 0, sizeof *sp);
	sp->cfg = *cfg;
	if (cfg->k_max < 1 || cfg->k_max > DUET_SPEC_MAX_K)
		return duet_errf(err, "speculate: k %d must be from 1 to %d", cfg->k_max,
				 DUET_SPEC_MAX_K);
	if (!cfg->draft && cfg->ngram <= 0)
		return duet_errf(err, "speculate: neither a draft model nor prompt lookup");
	if (cfg->draft && duet_spec_check_draft(m, cfg->draft_model, err))
		return -1;
	sp->vocab = m->cfg.vocab_size;
	sp->k = cfg->adaptive ? (cfg->k_max < 4 ? cfg->k_max : 4) : cfg->k_max;
	/* an optimistic start: 80% acceptance, a free draft */
	sp->acc = 0.8;
	sp->trials = 1;
	duet_kv_seq_init(&sp->dkv);
	size_t V = (size_t)sp->vocab;
	sp->logits = malloc(sizeof(float) * V * (size_t)(cfg->k_max + 1));
	sp->dlogits = malloc(sizeof(float) * V);
	sp->p = malloc(sizeof(float) * V);
	sp->q = cfg->draft ? malloc(sizeof(float) * V * (size_t)cfg->k_max) : NULL;
	if (!sp->logits || !sp->dlogits || !sp->p || (cfg->draft && !sp->q)) {
		duet_spec_free(sp);
		return duet_errf(err, "speculate: out of memory");
	}
	struct duet_sampling ds = *sampling;
	ds.seed ^= SPEC_DRAFT_SEED_XOR;
	ds.logprobs = 0;
	if (duet_sampler_init(&sp->dsampler, &ds, sp->vocab, err)) {
		duet_spec_free(sp);
		return -1;
	}
	for (int i = 0; i < n_prompt; i++)
		if (hist_push(sp, prompt[i], err)) {
			duet_spec_free(sp);
			return -1;
		}
	return 0;
}

void duet_spec_free(struct duet_spec *sp)
{
	if (sp->cfg.draft_kv)
		duet_kv_seq_release(sp->cfg.draft_kv, &sp->dkv);
	duet_sampler_free(&sp->dsampler);
	free(sp->hist);
	free(sp->logits);
	free(sp->dlogits);
	free(sp->p);
	free(sp->q);
	sp->hist = NULL;
	sp->logits = sp->dlogits = sp->p = sp->q = NULL;
}

const char *duet_spec_unsupported(const struct duet_sampler *s)
{
	if (s->count)
		return "penalties depend on every token before the one drawn";
	if (s->allow)
		return "a response format constrains each token";
	if (s->p.logprobs)
		return "log-probabilities are reported per token";
	return NULL;
}

int duet_spec_lookup(const int *hist, int n, int ngram, int k, int *out)
{
	for (int g = ngram < n - 1 ? ngram : n - 1; g >= 1; g--) {
		const int *tail = hist + n - g;
		/* the latest earlier occurrence, followed by at least one token */
		for (int i = n - g - 1; i >= 0; i--) {
			if (memcmp(hist + i, tail, sizeof(int) * (size_t)g) != 0)
				continue;
			/* the continuation runs on into what it proposes itself, so
			 * a repeating tail proposes whole periods */
			int m = 0;
			for (int j = i + g; m < k; j++)
				out[m++] = j < n ? hist[j] : out[j - n];
			return m;
		}
	}
	return 0;
}

int duet_spec_accept(const float *p, const float *q, int vocab, int d, float u, float u2,
		     int *accepted)
{
	double qd = q ? q[d] : 1.0;
	if (qd > 0 && u * qd < p[d]) {
		*accepted = 1;
		return d;
	}
	*accepted = 0;
	double total = 0;
	for (int i = 0; i < vocab; i++) {
		double r = p[i] - (q ? q[i] : (i == d));
		if (r > 0)
			total += r;
	}
	if (total <= 0) /* p == q: nothing to correct toward; keep d */
		return d;
	double x = u2 * total, acc = 0;
	int last = d;
	for (int i = 0; i < vocab; i++) {
		double r = p[i] - (q ? q[i] : (i == d));
		if (r <= 0)
			continue;
		acc += r;
		last = i;
		if (x < acc)
			return i;
	}
	return last;
}

/* A draw from the dense distribution p with the uniform u. */
static int draw(const float *p, int vocab, float u)
{
	double acc = 0;
	int last = 0;
	for (int i = 0; i < vocab; i++) {
		if (p[i] <= 0)
			continue;
		acc += p[i];
		last = i;
		if (u < acc)
			return i;
	}
	return last;
}

/* Feeds tokens to the draft model in chunks; the logits of the last. */
static int draft_feed(struct duet_spec *sp, const int *t, int n, struct duet_err *err)
{
	int chunk = duet_engine_max_batch(sp->cfg.draft);
	for (int i = 0; i < n; i += chunk) {
		int m = n - i < chunk ? n - i : chunk;
		struct duet_fwd_seq fs = {&sp->dkv, t + i, m,
					  i + m == n ? DUET_LOGITS_LAST : DUET_LOGITS_NONE, sp->dlogits,
					  NULL, 0};
		if (duet_forward(sp->cfg.draft, &fs, 1, err)) {
			duet_err_prefix(err, "draft model");
			return -1;
		}
	}
	return 0;
}

/* Proposes up to k tokens after hist (whose last is the pending token). */
static int propose(struct duet_spec *sp, int k, int *d, struct duet_err *err)
{
	if (!sp->cfg.draft)
		return duet_spec_lookup(sp->hist, sp->n_hist, sp->cfg.ngram, k, d);
	/* catch up: whatever of hist the draft has not seen, the pending
	 * token last */
	if (draft_feed(sp, sp->hist + sp->draft_pos, sp->n_hist - sp->draft_pos, err))
		return -1;
	sp->draft_pos = sp->n_hist;
	size_t V = (size_t)sp->vocab;
	for (int i = 0; i < k; i++) {
		if (sp->dsampler.p.temperature == 0) {
			d[i] = duet_sample(&sp->dsampler, sp->dlogits);
		} else {
			float *q = sp->q + V * (size_t)i;
			duet_sample_dist(&sp->dsampler, sp->dlogits, q);
			d[i] = draw(q, sp->vocab, duet_sampler_uniform(&sp->dsampler));
		}
		if (i + 1 < k && draft_feed(sp, &d[i], 1, err))
			return -1;
	}
	return k;
}

/* The k that gives the most tokens per millisecond: a step proposing k
 * tokens commits (1 - a^(k+1)) / (1 - a) of them on average (a the
 * acceptance rate) and costs k draft tokens plus one verification. */
static int best_k(const struct duet_spec *sp)
{
	double a = sp->acc / sp->trials;
	if (a > 0.999)
		a = 0.999;
	int best = 0;
	double best_rate = 0;
	for (int k = 0; k <= sp->cfg.k_max; k++) {
		double tokens = (1 - pow(a, k + 1)) / (1 - a);
		double ms = k * sp->draft_ms + sp->verify_ms;
		double rate = tokens / (ms > 0 ? ms : 1e-9);
		if (rate > best_rate * 1.0001) {
			best_rate = rate;
			best = k;
		}
	}
	return best;
}

int duet_spec_propose(struct duet_spec *sp, int last, int max_new, int *d,
		      struct duet_err *err)
{
	if (sp->cfg.adaptive && sp->verify_ms > 0) {
		sp->k = best_k(sp);
		/* now and then a try, or a k of 0 would never be measured again */
		if (sp->k == 0 && ++sp->plain_steps >= SPEC_PROBE_EVERY) {
			sp->k = 1;
			sp->plain_steps = 0;
		}
	}
	int k = sp->k < max_new - 1 ? sp->k : max_new - 1;
	if (k < 0)
		k = 0;
	if (hist_push(sp, last, err))
		return -1;
	double t0 = duet_now_s();
	int nd = k ? propose(sp, k, d + 1, err) : 0;
	if (nd < 0)
		return -1;
	sp->t_proposed = duet_now_s();
	if (nd && sp->cfg.draft)
		sp->draft_ms = (1 - SPEC_EMA) * sp->draft_ms +
			       SPEC_EMA * (sp->t_proposed - t0) * 1e3 / nd;
	d[0] = last;
	return nd;
}

int duet_spec_commit(struct duet_spec *sp, struct duet_kv_seq *seq, struct duet_sampler *s,
		     const int *d, int nd, int *out, struct duet_err *err)
{
	double t2 = duet_now_s();
	sp->verify_ms = sp->verify_ms ? (1 - SPEC_EMA) * sp->verify_ms +
						SPEC_EMA * (t2 - sp->t_proposed) * 1e3
				      : (t2 - sp->t_proposed) * 1e3;
	sp->st.steps++;
	sp->st.proposed += (uint64_t)nd;
	size_t V = (size_t)sp->vocab;
	int n = 0, greedy = s->p.temperature == 0;
	for (int j = 0; j <= nd; j++) {
		float *l = sp->logits + V * (size_t)j;
		int t;
		if (j == nd || greedy) { /* the target's own (everything was kept) */
			t = duet_sample(s, l);
		} else {
			duet_sample_dist(s, l, sp->p);
			int ok;
			float u = duet_sampler_uniform(s), u2 = duet_sampler_uniform(s);
			t = duet_spec_accept(sp->p, sp->cfg.draft ? sp->q + V * (size_t)j : NULL,
					     sp->vocab, d[j + 1], u, u2, &ok);
		}
		out[n++] = t;
		if (j == nd || t != d[j + 1])
			break;
	}
	int accepted = n - 1;
	sp->st.accepted += (uint64_t)accepted;
	sp->st.emitted += (uint64_t)n;
	/* keep the pending token and the accepted ones; the last committed
	 * token is the next pending one */
	seq->n_tokens -= nd - accepted;
	for (int i = 0; i < accepted; i++)
		if (hist_push(sp, out[i], err))
			return -1;
	if (sp->cfg.draft && nd > 0) {
		/* the draft model holds the drafts it fed itself (all but the
		 * last): keep those that were accepted */
		int fed = nd - 1;
		sp->draft_pos += accepted < fed ? accepted : fed;
		sp->dkv.n_tokens = sp->draft_pos;
	}
	if (nd > 0) { /* every accepted proposal a success, a rejection a failure */
		sp->acc = (1 - SPEC_EMA) * sp->acc + SPEC_EMA * accepted;
		sp->trials = (1 - SPEC_EMA) * sp->trials + SPEC_EMA * (accepted + (accepted < nd));
	}
	return n;
}

int duet_spec_step(struct duet_spec *sp, struct duet_engine *e, struct duet_kv_seq *seq,
		   struct duet_sampler *s, int last, int max_new, int *out,
		   struct duet_err *err)
{
	int d[DUET_SPEC_MAX_K + 1];
	int nd = duet_spec_propose(sp, last, max_new, d, err);
	if (nd < 0)
		return -1;
	struct duet_fwd_seq fs = {seq, d, nd + 1, DUET_LOGITS_ALL, sp->logits, NULL, 0};
	if (duet_forward(e, &fs, 1, err))
		return -1;
	return duet_spec_commit(sp, seq, s, d, nd, out, err);
}
