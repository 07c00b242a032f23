/* Speculative decoding: prompt lookup's proposals, the acceptance rule's
 * output distribution (it must be the target's, whatever the proposer's),
 * and greedy generation with a draft model or prompt lookup giving
 * exactly plain decoding's tokens. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/generate.h"
#include "engine/speculate.h"
#include "engine/tokenizer.h"

static void test_lookup(void **state)
{
	(void)state;
	int out[8];
	const int a[] = {1, 2, 3, 4, 9, 1, 2, 3};
	/* "1 2 3" occurred before, followed by 4 9 1 2 ... */
	assert_int_equal(duet_spec_lookup(a, 8, 3, 4, out), 4);
	assert_memory_equal(out, ((int[]){4, 9, 1, 2}), sizeof(int) * 4);
	/* a repeating tail proposes whole periods */
	const int b[] = {5, 7, 8, 7, 8};
	assert_int_equal(duet_spec_lookup(b, 5, 2, 5, out), 5);
	assert_memory_equal(out, ((int[]){7, 8, 7, 8, 7}), sizeof(int) * 5);
	/* a shorter n-gram when the longer one has no earlier occurrence */
	const int c[] = {4, 6, 1, 2, 6};
	assert_int_equal(duet_spec_lookup(c, 5, 3, 2, out), 2);
	assert_memory_equal(out, ((int[]){1, 2}), sizeof(int) * 2);
	/* nothing to copy */
	const int d[] = {1, 2, 3};
	assert_int_equal(duet_spec_lookup(d, 3, 3, 4, out), 0);
	assert_int_equal(duet_spec_lookup(d, 1, 3, 4, out), 0);
}

static uint64_t rng = 88172645463325252ull;
static float uniform(void)
{
	return (float)(duet_splitmix64(&rng) >> 40) * 0x1p-24f;
}

static int draw(const float *p, int n)
{
	float u = uniform(), acc = 0;
	for (int i = 0; i < n; i++) {
		acc += p[i];
		if (u < acc)
			return i;
	}
	return n - 1;
}

/* Drafts from q, the rule accepts or corrects: the tokens that come out
 * follow p, for a draft model's q and for a certain proposal. */
static void test_accept_rule(void **state)
{
	(void)state;
	enum { V = 5, N = 200000 };
	const float p[V] = {0.1f, 0.4f, 0.2f, 0.25f, 0.05f};
	const float q[V] = {0.3f, 0.1f, 0.4f, 0.05f, 0.15f};
	int cnt[V] = {0}, ok_total = 0;
	for (int i = 0; i < N; i++) {
		int d = draw(q, V), ok;
		cnt[duet_spec_accept(p, q, V, d, uniform(), uniform(), &ok)]++;
		ok_total += ok;
	}
	for (int i = 0; i < V; i++)
		if (fabs((double)cnt[i] / N - p[i]) > 0.005)
			fail_msg("token %d: %.4f, want %.4f", i, (double)cnt[i] / N, p[i]);
	/* acceptance = sum min(p, q) = 0.1 + 0.1 + 0.2 + 0.05 + 0.05 */
	assert_true(fabs((double)ok_total / N - 0.5) < 0.005);
	/* a certain proposal (prompt lookup): accepted with p[d] */
	memset(cnt, 0, sizeof cnt);
	ok_total = 0;
	for (int i = 0; i < N; i++) {
		int ok;
		cnt[duet_spec_accept(p, NULL, V, 3, uniform(), uniform(), &ok)]++;
		ok_total += ok;
	}
	for (int i = 0; i < V; i++)
		assert_true(fabs((double)cnt[i] / N - p[i]) < 0.005);
	assert_true(fabs((double)ok_total / N - p[3]) < 0.005);
}

struct toks {
	int t[512], n;
};

static int collect(void *ctx, int token, const char *text, size_t n)
{
	(void)text;
	(void)n;
	struct toks *o = ctx;
	if (token >= 0 && o->n < 512)
		o->t[o->n++] = token;
	return 0;
}

/* Greedy: a Q8_0 copy of the model as draft, and prompt lookup, both give
 * plain decoding's tokens, and both had proposals accepted. */
static void test_greedy_identical(void **state)
{
	(void)state;
	char tp[4096], dp[4096];
	tu_make_model(tp, "tiny", DUET_F32, "gguf", -1, 31);
	tu_make_model(dp, "tiny", DUET_Q8_0, "gguf", -1, 31);
	struct duet_model *m = tu_open(tp), *dm = tu_open(dp);
	struct duet_err err;
	struct duet_kv_geom g = duet_kv_geom_for(m, 0, DUET_KV_DEFAULT);
	struct duet_kv_pool *kv, *dkv;
	struct duet_engine *e, *de;
	struct duet_engine_opts eo = {.n_threads = 1};
	assert_int_equal(duet_kv_pool_create(&kv, &g, duet_kv_blocks_for(&g, 512), &err), 0);
	assert_int_equal(duet_kv_pool_create(&dkv, &g, duet_kv_blocks_for(&g, 512), &err), 0);
	assert_int_equal(duet_engine_create(&e, m, kv, &eo, &err), 0);
	assert_int_equal(duet_engine_create(&de, dm, dkv, &eo, &err), 0);
	struct duet_spec_cfg draft = {.k_max = 6, .adaptive = 1, .draft = de, .draft_kv = dkv,
				      .draft_model = dm};
	struct duet_spec_cfg lookup = {.k_max = 8, .adaptive = 0, .ngram = 3};
	for (int k = 0; k < 4; k++) {
		static int prompt[64];
		tu_random_prompt(prompt, 5 + 13 * k, 900 + (uint64_t)k);
		int n_prompt = 5 + 13 * k;
		static struct duet_gen_params gp;
		memset(&gp, 0, sizeof gp);
		gp.sampling.top_p = 1;
		gp.max_tokens = 150;
		gp.ignore_eos = 1;
		struct toks plain = {0}, with_draft = {0}, with_lookup = {0};
		struct duet_gen_stats st;
		assert_int_equal(duet_generate(e, kv, m, prompt, n_prompt, &gp, collect, &plain, &st, &err), 0);
		gp.spec = &draft;
		assert_int_equal(duet_generate(e, kv, m, prompt, n_prompt, &gp, collect, &with_draft, &st, &err), 0);
		assert_null(st.spec_off);
		assert_true(st.spec.accepted > 0 && st.spec.steps < 150);
		gp.spec = &lookup;
		assert_int_equal(duet_generate(e, kv, m, prompt, n_prompt, &gp, collect, &with_lookup, &st, &err), 0);
		assert_int_equal(plain.n, 150);
		assert_int_equal(with_draft.n, 150);
		assert_int_equal(with_lookup.n, 150);
		assert_memory_equal(plain.t, with_draft.t, sizeof(int) * 150);
		assert_memory_equal(plain.t, with_lookup.t, sizeof(int) * 150);
		/* and the pool is whole again */
		assert_int_equal(kv->n_free, kv->n_blocks);
		assert_int_equal(dkv->n_free, dkv->n_blocks);
	}
	/* penalties need each token drawn alone: speculation steps aside */
	static struct duet_gen_params gp;
	memset(&gp, 0, sizeof gp);
	gp.sampling = (struct duet_sampling){.top_p = 1, .presence_penalty = 1};
	gp.max_tokens = 8;
	gp.spec = &lookup;
	struct toks o = {0};
	struct duet_gen_stats st;
	int prompt[4] = {1, 5, 6, 7};
	assert_int_equal(duet_generate(e, kv, m, prompt, 4, &gp, collect, &o, &st, &err), 0);
	assert_non_null(st.spec_off);
	duet_engine_destroy(de);
	duet_engine_destroy(e);
	duet_kv_pool_destroy(dkv);
	duet_kv_pool_destroy(kv);
	duet_model_close(dm);
	duet_model_close(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_accept_rule),
		cmocka_unit_test(test_greedy_identical),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
