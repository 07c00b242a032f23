/* Sampling, stop strings and the paged KV cache's bookkeeping. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kvcache.h"
#include "engine/sampler.h"
#include "text/stopper.h"

static void sampler(struct duet_sampler *s, float temp, int k, float p, uint64_t seed, int V)
{
	struct duet_sampling sp = {.temperature = temp, .top_k = k, .top_p = p, .seed = seed};
	struct duet_err err;
	if (duet_sampler_init(s, &sp, V, &err))
		fail_msg("%s", err.msg);
}

static void test_greedy_and_argmax(void **st)
{
	(void)st;
	float l[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f, 0};
	assert_int_equal(duet_argmax(l, 6), 1); /* lowest index on ties */
	/* Past the scan's lanes (the maximum in the tail, then in a lane and
	 * tied in the tail), NaN never winning, and x[0] when it is NaN
	 * (nothing compares above NaN): what a plain scan with > gives. */
	float v[53];
	for (int i = 0; i < 53; i++)
		v[i] = (float)(i % 5);
	v[7] = NAN, v[20] = NAN;
	v[50] = 9;
	assert_int_equal(duet_argmax(v, 53), 50);
	v[3] = 9;
	assert_int_equal(duet_argmax(v, 53), 3);
	v[0] = NAN;
	assert_int_equal(duet_argmax(v, 53), 0);
	struct duet_sampler s;
	sampler(&s, 0, 0, 1, 1, 6);
	float c[6];
	memcpy(c, l, sizeof l);
	assert_int_equal(duet_sample(&s, c), 1);
	duet_sampler_free(&s);
	/* top_k = 1 is greedy at any temperature. */
	sampler(&s, 5.0f, 1, 1, 1, 6);
	for (int i = 0; i < 50; i++) {
		memcpy(c, l, sizeof l);
		assert_int_equal(duet_sample(&s, c), 1);
	}
	duet_sampler_free(&s);
}

/* At temperature 1 with no cut the frequencies follow softmax(logits);
 * top-k and top-p leave out what they should. The seed is fixed, so these
 * counts are the same on every run. */
static void test_distribution(void **st)
{
	(void)st;
	const float pr[4] = {0.5f, 0.3f, 0.15f, 0.05f};
	float l[4], c[4];
	for (int i = 0; i < 4; i++)
		l[i] = logf(pr[i]) + 3.0f;
	const int N = 40000;
	struct duet_sampler s;
	int cnt[4] = {0};
	sampler(&s, 1.0f, 0, 1.0f, 42, 4);
	for (int i = 0; i < N; i++) {
		memcpy(c, l, sizeof l);
		cnt[duet_sample(&s, c)]++;
	}
	duet_sampler_free(&s);
	for (int i = 0; i < 4; i++)
		assert_true(fabs((double)cnt[i] / N - pr[i]) < 0.01);

	/* top_k 2: only the two best, renormalized 5:3. */
	memset(cnt, 0, sizeof cnt);
	sampler(&s, 1.0f, 2, 1.0f, 43, 4);
	for (int i = 0; i < N; i++) {
		memcpy(c, l, sizeof l);
		cnt[duet_sample(&s, c)]++;
	}
	duet_sampler_free(&s);
	assert_int_equal(cnt[2] + cnt[3], 0);
	assert_true(fabs((double)cnt[0] / N - 0.625) < 0.01);

	/* top_p 0.9: 0.5 + 0.3 + 0.15 reaches it, 0.05 is cut. */
	memset(cnt, 0, sizeof cnt);
	sampler(&s, 1.0f, 0, 0.9f, 44, 4);
	for (int i = 0; i < N; i++) {
		memcpy(c, l, sizeof l);
		cnt[duet_sample(&s, c)]++;
	}
	duet_sampler_free(&s);
	assert_int_equal(cnt[3], 0);
	assert_true(cnt[2] > 0);
	assert_true(fabs((double)cnt[2] / N - 0.15 / 0.95) < 0.01);

	/* Low temperature sharpens towards the best. */
	memset(cnt, 0, sizeof cnt);
	sampler(&s, 0.1f, 0, 1.0f, 45, 4);
	for (int i = 0; i < 1000; i++) {
		memcpy(c, l, sizeof l);
		cnt[duet_sample(&s, c)]++;
	}
	duet_sampler_free(&s);
	assert_true(cnt[0] > 990);
}

static void test_seed_reproducible(void **st)
{
	(void)st;
	const int V = 1000;
	float *l = malloc(sizeof(float) * V), *c = malloc(sizeof(float) * V);
	for (int i = 0; i < V; i++)
		l[i] = sinf((float)i) * 4;
	int a[64], b[64], d[64];
	struct duet_sampler s;
	for (int run = 0; run < 3; run++) {
		int *out = run == 0 ? a : run == 1 ? b : d;
		sampler(&s, 0.9f, 50, 0.95f, run == 2 ? 8 : 7, V);
		for (int i = 0; i < 64; i++) {
			memcpy(c, l, sizeof(float) * V);
			out[i] = duet_sample(&s, c);
		}
		duet_sampler_free(&s);
	}
	assert_memory_equal(a, b, sizeof a);
	assert_memory_not_equal(a, d, sizeof a);
	free(l), free(c);
}

static void test_bad_params(void **st)
{
	(void)st;
	struct duet_err err;
	struct duet_sampling bad[] = {
		{.temperature = -1, .top_p = 1},	 {.temperature = 1, .top_k = -3, .top_p = 1},
		{.temperature = 1, .top_p = 0},		 {.temperature = 1, .top_p = 1.5f},
		{.temperature = NAN, .top_p = 1},	 {.top_p = 1, .min_p = 1.5f},
		{.top_p = 1, .presence_penalty = 2.5f},	 {.top_p = 1, .frequency_penalty = -3},
		{.top_p = 1, .repetition_penalty = -1},	 {.top_p = 1, .top_logprobs = 21},
		{.top_p = 1, .n_bias = 1, .bias = {{100, 1}}}, {.top_p = 1, .n_bias = 1, .bias = {{1, 101}}},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_not_equal(duet_sampling_check(&bad[i], 100, &err), 0);
}

/* Feeds text in pieces and returns what the stopper lets through. */
static size_t run_stopper(const char *const *stops, int ns, const char *const *parts, int np,
			  char *out, int *stopped)
{
	struct duet_stopper s;
	struct duet_err err;
	if (duet_stopper_init(&s, stops, ns, &err))
		fail_msg("%s", err.msg);
	size_t n = 0;
	for (int i = 0; i < np; i++)
		n += duet_stopper_feed(&s, parts[i], strlen(parts[i]), out + n);
	n += duet_stopper_flush(&s, out + n);
	out[n] = 0;
	*stopped = s.stopped;
	duet_stopper_free(&s);
	return n;
}

static void test_stop_strings(void **st)
{
	(void)st;
	char out[1024];
	int stopped;
	const char *stops[] = {"\n\nUser:", "END"};
	const char *p1[] = {"Hello", " there\n", "\nUs", "er: more"};
	run_stopper(stops, 2, p1, 4, out, &stopped);
	assert_string_equal(out, "Hello there");
	assert_true(stopped);
	/* A false start is released in full. */
	const char *p2[] = {"a\n", "\nUse", "ful ", "EN", "D tail"};
	run_stopper(stops, 2, p2, 5, out, &stopped);
	assert_string_equal(out, "a\n\nUseful ");
	assert_true(stopped);
	/* Held text comes out at the end when no stop arrives. */
	const char *p3[] = {"ends with E", "N"};
	run_stopper(stops, 2, p3, 2, out, &stopped);
	assert_string_equal(out, "ends with EN");
	assert_false(stopped);
	/* No stops: everything passes. */
	run_stopper(NULL, 0, p1, 4, out, &stopped);
	assert_string_equal(out, "Hello there\n\nUser: more");
	struct duet_stopper s;
	struct duet_err err;
	const char *empty[] = {""};
	assert_int_not_equal(duet_stopper_init(&s, empty, 1, &err), 0);
}

static void test_kv_pool(void **st)
{
	(void)st;
	struct duet_kv_geom g = {.n_layers = 2, .n_kv_heads = 2, .head_dim = 4, .block_tokens = 4,
				 .dtype = DUET_KV_F32};
	struct duet_kv_pool *p;
	struct duet_err err;
	assert_int_equal(duet_kv_pool_create(&p, &g, 6, &err), 0);
	struct duet_kv_seq a, b;
	duet_kv_seq_init(&a), duet_kv_seq_init(&b);
	assert_int_equal(duet_kv_seq_reserve(p, &a, 9, &err), 0);
	assert_int_equal(a.n_blocks, 3);
	assert_int_equal(p->n_free, 3);
	/* Too many: refused, nothing taken. */
	assert_int_not_equal(duet_kv_seq_reserve(p, &b, 17, &err), 0);
	assert_int_equal(b.n_blocks, 0);
	assert_int_equal(p->n_free, 3);
	/* Rows of different positions, layers, K and V never alias. */
	a.n_tokens = 9;
	for (int l = 0; l < 2; l++)
		for (int w = 0; w < 2; w++)
			for (int pos = 0; pos < 9; pos++)
				for (int i = 0; i < 8; i++)
					((float *)duet_kv_row(p, l, w, &a, pos))[i] =
						(float)(((l * 2 + w) * 100 + pos) * 10 + i);
	for (int l = 0; l < 2; l++)
		for (int w = 0; w < 2; w++)
			for (int pos = 0; pos < 9; pos++)
				assert_true(((float *)duet_kv_row(p, l, w, &a, pos))[3] ==
					    (float)(((l * 2 + w) * 100 + pos) * 10 + 3));
	/* Sharing a full block: b takes a's first block; it stays allocated
	 * until both let go. */
	int shared = a.blocks[0];
	assert_int_equal(duet_kv_seq_append_shared(p, &b, shared, &err), 0);
	b.n_tokens = 4;
	assert_int_equal(p->refs[shared], 2);
	assert_true(duet_kv_row(p, 1, 1, &b, 2) == duet_kv_row(p, 1, 1, &a, 2));
	duet_kv_seq_release(p, &a);
	assert_int_equal(p->n_free, 5);
	assert_int_equal(p->refs[shared], 1);
	duet_kv_seq_release(p, &b);
	assert_int_equal(p->n_free, 6);
	duet_kv_pool_destroy(p);
	/* Bad geometry is refused. */
	struct duet_kv_geom bad = g;
	bad.n_layers = 0;
	assert_int_not_equal(duet_kv_pool_create(&p, &bad, 6, &err), 0);
	bad = g;
	bad.dtype = (enum duet_kv_dtype)7;
	assert_int_not_equal(duet_kv_pool_create(&p, &bad, 6, &err), 0);
	/* Each row type's block size: f16 half of f32, int8 a quarter plus a
	 * scale per head. */
	size_t f32 = duet_kv_block_bytes(&g);
	g.dtype = DUET_KV_F16;
	assert_int_equal(duet_kv_block_bytes(&g) * 2, f32);
	g.dtype = DUET_KV_INT8;
	assert_int_equal(duet_kv_block_bytes(&g), 2 * 2 * 4 * (8 + 2 * sizeof(float)));
}

/* Bias and penalties against the formulas written out plainly: OpenAI's
 * presence and frequency penalties over generated tokens, CTRL's
 * repetition penalty over prompt and output, then the log-softmax the
 * log-probabilities report and the greedy pick. */
static void test_penalties_scripted(void **st)
{
	(void)st;
	enum { V = 6 };
	const float base[V] = {2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -1.0f};
	const int history[] = {0, 3, 1, 1, 2}; /* prompt 0 3, generated 1 1 2 */
	static struct duet_sampling sp;
	sp = (struct duet_sampling){.top_p = 1, .presence_penalty = 0.5f, .frequency_penalty = 0.25f,
				    .repetition_penalty = 1.5f, .n_bias = 1, .logprobs = 1,
				    .top_logprobs = 3};
	sp.bias[0] = (struct duet_logit_bias){5, 4.0f};
	double want[V];
	const int count[V] = {0, 2, 1, 0, 0, 0}, seen[V] = {1, 1, 1, 1, 0, 0};
	for (int i = 0; i < V; i++) {
		double l = base[i] + (i == 5 ? 4.0 : 0);
		if (seen[i])
			l = l > 0 ? l / 1.5 : l * 1.5;
		l -= 0.25 * count[i] + (count[i] ? 0.5 : 0);
		want[i] = l;
	}
	double mx = want[0], sum = 0;
	int best = 0;
	for (int i = 1; i < V; i++)
		if (want[i] > mx)
			mx = want[i], best = i;
	for (int i = 0; i < V; i++)
		sum += exp(want[i] - mx);
	struct duet_sampler s;
	struct duet_err err;
	assert_int_equal(duet_sampler_init(&s, &sp, V, &err), 0);
	duet_sampler_history(&s, history, 5, 3);
	float l[V];
	memcpy(l, base, sizeof l);
	struct duet_logprobs lp;
	int tok = duet_sample_lp(&s, l, &lp);
	assert_int_equal(tok, best);
	assert_true(fabs(lp.chosen - (want[best] - mx - log(sum))) < 1e-5);
	assert_int_equal(lp.n_top, 3);
	for (int k = 0; k < 3; k++) {
		assert_true(fabs(lp.top[k] - (want[lp.top_id[k]] - mx - log(sum))) < 1e-5);
		if (k)
			assert_true(lp.top[k] <= lp.top[k - 1]);
	}
	assert_int_equal(lp.top_id[0], best);
	/* accepting the pick counts it: a second draw sees it penalized */
	duet_sampler_accept(&s, tok);
	memcpy(l, base, sizeof l);
	struct duet_logprobs lp2;
	duet_sample_lp(&s, l, &lp2);
	assert_true(lp2.top_id[0] != best || lp2.top[0] < lp.top[0]);
	duet_sampler_free(&s);
}

/* min_p keeps the tokens with at least min_p of the best one's
 * probability; the others are never drawn, the rest in proportion. */
static void test_min_p(void **st)
{
	(void)st;
	const float pr[4] = {0.5f, 0.3f, 0.15f, 0.05f};
	float l[4], c[4];
	for (int i = 0; i < 4; i++)
		l[i] = logf(pr[i]);
	static struct duet_sampling sp;
	sp = (struct duet_sampling){.temperature = 1, .top_p = 1, .seed = 5, .min_p = 0.2f};
	struct duet_sampler s;
	struct duet_err err;
	assert_int_equal(duet_sampler_init(&s, &sp, 4, &err), 0);
	const int N = 40000;
	int cnt[4] = {0};
	for (int i = 0; i < N; i++) {
		memcpy(c, l, sizeof l);
		cnt[duet_sample(&s, c)]++;
	}
	duet_sampler_free(&s);
	assert_int_equal(cnt[3], 0);
	for (int i = 0; i < 3; i++)
		assert_true(fabs((double)cnt[i] / N - pr[i] / 0.95) < 0.01);
}

static int even_only(void *ctx, int id)
{
	(*(int *)ctx)++;
	return id % 2 == 0;
}

/* A constraint: greedy takes the best allowed token; sampling follows the
 * allowed tokens' renormalized distribution (rejection first, the full
 * mask only when the first draw is refused). */
static void test_allow(void **st)
{
	(void)st;
	const float pr[6] = {0.4f, 0.25f, 0.15f, 0.1f, 0.06f, 0.04f};
	float l[6], c[6];
	for (int i = 0; i < 6; i++)
		l[i] = logf(pr[i]);
	int calls = 0;
	struct duet_sampler s;
	struct duet_err err;
	static struct duet_sampling sp;
	sp = (struct duet_sampling){.top_p = 1};
	assert_int_equal(duet_sampler_init(&s, &sp, 6, &err), 0);
	s.allow = even_only;
	s.allow_ctx = &calls;
	float g[6] = {0.1f, 3.0f, 0.5f, 2.0f, 0.7f, -1.0f};
	assert_int_equal(duet_sample(&s, g), 4);
	duet_sampler_free(&s);
	sp = (struct duet_sampling){.temperature = 1, .top_p = 1, .seed = 9};
	assert_int_equal(duet_sampler_init(&s, &sp, 6, &err), 0);
	s.allow = even_only;
	s.allow_ctx = &calls;
	const int N = 40000;
	int cnt[6] = {0};
	calls = 0;
	for (int i = 0; i < N; i++) {
		memcpy(c, l, sizeof l);
		cnt[duet_sample(&s, c)]++;
	}
	double even = pr[0] + pr[2] + pr[4];
	for (int i = 0; i < 6; i++)
		assert_true(fabs((double)cnt[i] / N - (i % 2 ? 0 : pr[i] / even)) < 0.01);
	/* 61% of first draws are allowed and cost one check */
	assert_true(s.n_masked > (uint64_t)(N * 0.35) && s.n_masked < (uint64_t)(N * 0.43));
	assert_true(calls < N * 4);
	duet_sampler_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greedy_and_argmax),
		cmocka_unit_test(test_distribution),
		cmocka_unit_test(test_seed_reproducible),
		cmocka_unit_test(test_bad_params),
		cmocka_unit_test(test_penalties_scripted),
		cmocka_unit_test(test_min_p),
		cmocka_unit_test(test_allow),
		cmocka_unit_test(test_stop_strings),
		cmocka_unit_test(test_kv_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
