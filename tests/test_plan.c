/* duet plan's simulator (tools/plan/sim.c): a timeline checked by hand,
 * determinism for a seed, placements that are router_place's own, and
 * node profiles read and scaled. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "node/prefix_cache.h"
#include "plan/plan.h"
#include "trace/steps.h"
#include "testutil.h"

/* (cmocka of Debian 12 has no assert_double_equal) */
#define assert_near(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

/* Every pass 10 ms, whatever it carries; no link delay. */
static struct plan_profile flat(void)
{
	struct plan_profile p;
	plan_profile_defaults(&p);
	p.step.base_ms = 10;
	p.max_batch_tokens = 512;
	p.link_latency_ms = 0;
	p.kv_bytes_per_token = 1000;
	return p;
}

/* A cluster of p nodes as these tests run it: local-max-prompt 64, reports
 * every 200 ms, the router's wait queue, seed 1, every token's time kept. */
static struct sim_cfg cluster(const struct plan_profile *p, int n_prefill, int n_decode,
			      enum router_policy policy)
{
	return (struct sim_cfg){.n_prefill = n_prefill, .n_decode = n_decode, .prefill = p,
				.decode = p, .policy = policy, .local_max_prompt = 64,
				.report_ms = 200, .seed = 1, .keep_tokens = 1,
				.max_queue = ROUTER_DEFAULT_MAX_QUEUE,
				.queue_timeout_ms = ROUTER_DEFAULT_QUEUE_TIMEOUT_MS};
}

static void make_trace(struct trace *t, int n, const double *at, const int *prompt, const int *out)
{
	memset(t, 0, sizeof *t);
	t->req = calloc((size_t)n, sizeof *t->req);
	assert_non_null(t->req);
	t->n = n;
	t->format = TRACE_PLAIN;
	for (int i = 0; i < n; i++)
		t->req[i] = (struct trace_req){at[i], prompt[i], out[i], 0, NULL};
}

static void run(const struct sim_cfg *c, const struct trace *t, struct replay_result *res,
		struct sim_req *out)
{
	struct synth syn;
	struct sim_stats st;
	struct duet_err err;
	assert_int_equal(synth_init(&syn, 1, PLAN_VOCAB, t->block_tokens, &err), 0);
	memset(res, 0, sizeof *res * (size_t)t->n);
	int rc = sim_run(c, t, &syn, 1.0, res, out, &st, &err);
	if (rc)
		fail_msg("%s", err.msg);
}

/* One colocated node, 10 ms a pass, three requests:
 *   A at 0 (10-token prompt, 3 tokens): prefill [0, 10] -> 10; steps -> 20, 30
 *   B at 15 ms (2 tokens): joins the step from 20: its prompt [20, 30] -> 30,
 *     then [30, 40] -> 40 (A ended at 30)
 *   C at 100 ms (1 token): [100, 110] -> 110 */
static void test_hand_timeline(void **state)
{
	(void)state;
	struct plan_profile p = flat();
	struct trace t;
	make_trace(&t, 3, (double[]){0, 0.015, 0.1}, (int[]){10, 10, 5}, (int[]){3, 2, 1});
	struct sim_cfg c = cluster(&p, 0, 1, ROUTER_POLICY_COLOCATED);
	struct replay_result res[3];
	run(&c, &t, res, NULL);
	const double want[3][3] = {{0.010, 0.020, 0.030}, {0.030, 0.040}, {0.110}};
	const int n[3] = {3, 2, 1};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(res[i].status, RS_OK);
		assert_int_equal(res[i].n_tok, n[i]);
		for (int k = 0; k < n[i]; k++)
			assert_near(res[i].tok_s[k], want[i][k], 1e-9);
		assert_near(res[i].done_s, want[i][n[i] - 1], 1e-9);
	}
	replay_results_free(res, 3);
	trace_free(&t);
}

/* Two colocated nodes on one machine (machine_nodes 2): every pass 10 ms
 * alone, all of it reading memory, and 20 ms beside a decode loop (the
 * beside model), so a pass runs at half speed while the other node's
 * runs:
 *   A at 0 on one node (10-token prompt, 2 tokens): prefill from 0, 5 ms
 *     done at 5, the rest at half speed -> 15; its step from 15 at half
 *     speed while B runs (10 ms to 25: 5 ms done), alone 25 (B between
 *     passes, none), then beside B's step -> 35
 *   B at 5 ms on the other: prefill from 5 at half speed -> 25; its step
 *     from 25 at half speed to 35 (5 ms done), alone from 35 -> 40
 * Each node its own machine: A 10, 20 and B 15, 25. */
static void test_machine_shared(void **state)
{
	(void)state;
	struct plan_profile p = flat();
	p.has_beside = 1;
	p.beside.base_ms = 20;
	struct trace t;
	make_trace(&t, 2, (double[]){0, 0.005}, (int[]){10, 10}, (int[]){2, 2});
	struct sim_cfg c = cluster(&p, 0, 2, ROUTER_POLICY_COLOCATED);
	const double shared[2][2] = {{0.015, 0.035}, {0.025, 0.040}};
	const double apart[2][2] = {{0.010, 0.020}, {0.015, 0.025}};
	for (int m = 1; m <= 2; m++) {
		c.machine_nodes = m;
		struct replay_result res[2];
		struct sim_req out[2];
		run(&c, &t, res, out);
		assert_int_not_equal(out[0].dnode, out[1].dnode);
		for (int i = 0; i < 2; i++) {
			assert_int_equal(res[i].status, RS_OK);
			assert_int_equal(res[i].n_tok, 2);
			for (int k = 0; k < 2; k++)
				assert_near(res[i].tok_s[k], (m == 2 ? shared : apart)[i][k], 1e-9);
		}
		replay_results_free(res, 2);
	}
	/* a neighbour doing half the memory-bound work of a decode loop
	 * presses half as hard: 1 / (1 + 0.5 x (2 - 1)) */
	p.step.seq_ms = 10; /* a pass of one sequence: half memory */
	p.beside.seq_ms = 10;
	assert_near(plan_profile_memory_share(&p, 1, 0, 0, 0), 0.5, 1e-12);
	assert_near(plan_profile_beside_ms(&p, 1, 0, 0, 0) / plan_profile_step_ms(&p, 1, 0, 0, 0),
		    1.5, 1e-12);
	trace_free(&t);
}

/* A decode node answers a reservation between two steps, where its pass
 * really ends: a prefill node P (4 ms a pass alone) and a decode node D (10
 * ms) on one machine, each at half speed while the other's pass runs:
 *   A at 0 (10-token prompt: local on D): prefill [0, 10] alone
 *   E at 5 (100 tokens: P): reserved at 5, answered at 10; P computes it
 *     from 10 beside D's step -> 18; D's step from 10: 4 ms done by 18, the
 *     rest alone -> 24
 *   B at 12 (100 tokens: P): reserved at 12, when D's step was to end at
 *     30 (P then busy); answered at 24, where it ended; P from 24 beside
 *     D's next step -> first token 32 (answered at 30 it would be 38) */
static void test_reply_at_pass_end(void **state)
{
	(void)state;
	struct plan_profile dp = flat(), pp = flat();
	dp.ingest_gb_s = pp.ingest_gb_s = 1e6;
	dp.link_gb_s = pp.link_gb_s = 1e6;
	dp.has_beside = pp.has_beside = 1;
	dp.beside.base_ms = 20;
	pp.step.base_ms = 4;
	pp.beside.base_ms = 8;
	struct trace t;
	make_trace(&t, 3, (double[]){0, 0.005, 0.012}, (int[]){10, 100, 100}, (int[]){20, 2, 2});
	struct sim_cfg c = cluster(&dp, 1, 1, ROUTER_POLICY_LENGTH_AWARE);
	c.prefill = &pp;
	c.first_token_prefill = 1;
	c.machine_nodes = 2;
	struct replay_result res[3];
	struct sim_req out[3];
	run(&c, &t, res, out);
	assert_int_equal(out[0].pnode, -1);
	assert_int_equal(out[1].pnode, 0);
	assert_int_equal(out[2].pnode, 0);
	assert_near(res[0].tok_s[0], 0.010, 1e-9);
	assert_near(res[0].tok_s[1], 0.024, 1e-9);
	assert_near(res[1].tok_s[0], 0.018, 1e-9);
	assert_near(res[2].tok_s[0], 0.032, 1e-9);
	replay_results_free(res, 3);
	trace_free(&t);
}

/* A decode node keeps the router's TBT objective as the daemon does
 * (decode_chunk_budget): 10 ms a step and 1 ms a prompt token, one
 * colocated node, objective 15 ms:
 *   A at 0 (10-token prompt, 12 tokens): prefill [0, 20] -> 20, steps of 10
 *   B at 25 ms (20-token prompt): from 30, beside A, 5 tokens a step (15
 *     ms): [30, 45], [45, 60], [60, 75], [75, 90] -> first token 90, and A's
 *     gaps 15 ms meanwhile; without the objective one 30 ms step -> 60 */
static void test_chunk_budget(void **state)
{
	(void)state;
	struct plan_profile p = flat();
	p.step.token_ms = 1;
	p.max_batch_tokens = 64;
	struct trace t;
	make_trace(&t, 2, (double[]){0, 0.025}, (int[]){10, 20}, (int[]){12, 1});
	struct sim_cfg c = cluster(&p, 0, 1, ROUTER_POLICY_COLOCATED);
	struct replay_result res[2];
	c.slo_tbt_ms = 15;
	run(&c, &t, res, NULL);
	assert_near(res[1].tok_s[0], 0.090, 1e-9);
	for (int k = 1; k <= 4; k++) /* A's tokens after 20 and 30: 45, 60, 75, 90 */
		assert_near(res[0].tok_s[k + 1], 0.030 + 0.015 * k, 1e-9);
	replay_results_free(res, 2);
	c.slo_tbt_ms = 0;
	run(&c, &t, res, NULL);
	assert_near(res[1].tok_s[0], 0.060, 1e-9);
	assert_near(res[0].tok_s[2], 0.060, 1e-9);
	replay_results_free(res, 2);
	trace_free(&t);
}

/* A disaggregated request: the prompt on the prefill node (one 10 ms
 * batch), its first token from there, the KV over the link (1000 bytes a
 * token at 1 GB/s: 10 us), then decode steps. */
static void test_hand_disaggregated(void **state)
{
	(void)state;
	struct plan_profile p = flat();
	p.link_gb_s = 1;
	p.ingest_gb_s = 1e6;
	struct trace t;
	make_trace(&t, 1, (double[]){0}, (int[]){100}, (int[]){3});
	struct sim_cfg c = cluster(&p, 1, 1, ROUTER_POLICY_LENGTH_AWARE);
	struct replay_result res[1];
	struct sim_req out[1];
	run(&c, &t, res, out);
	assert_int_equal(out[0].pnode, 0);
	assert_int_equal(out[0].dnode, 1);
	assert_int_equal(res[0].n_tok, 3);
	/* the KV (100 KB) streams from the prompt's start: done by 0.1 ms */
	double kv = 100 * 1000 / 1e9, ingest = 100 * 1000 / 1e15;
	assert_near(res[0].tok_s[0], 0.010, 1e-9);
	assert_near(res[0].tok_s[1], 0.010 + ingest + 0.010, 1e-9);
	assert_near(res[0].tok_s[2], 0.010 + ingest + 0.020, 1e-9);
	assert_true(kv < 0.010);
	replay_results_free(res, 1);
	trace_free(&t);
}

/* A hand-off into a busy decode node, with the router's first-token either
 * way:
 *   A at 0 (10-token prompt: local, 10 tokens): prefill [0, 10] -> 10, then
 *     a step every 10 ms
 *   B at 5 ms (100 tokens: the prefill node): the decode node answers its
 *     reservation between two steps, at 10, so the prefill node computes
 *     [10, 20] -> first token 20 (prefill); its KV lands at 20 as the step
 *     from 20 begins, so it joins the step from 30 -> 40; with first-token
 *     decode its first token leaves when it joins, at 30 */
static void test_first_token_release(void **state)
{
	(void)state;
	struct plan_profile p = flat();
	p.ingest_gb_s = 1e6;
	struct trace t;
	make_trace(&t, 2, (double[]){0, 0.005}, (int[]){10, 100}, (int[]){10, 3});
	for (int prefill = 0; prefill < 2; prefill++) {
		struct sim_cfg c = cluster(&p, 1, 1, ROUTER_POLICY_LENGTH_AWARE);
		c.first_token_prefill = prefill;
		struct replay_result res[2];
		struct sim_req out[2];
		run(&c, &t, res, out);
		assert_int_equal(out[0].pnode, -1);
		assert_int_equal(out[1].pnode, 0);
		assert_int_equal(res[1].n_tok, 3);
		double ingest = 100 * 1000 / 1e15;
		assert_near(res[0].tok_s[1], 0.020, 1e-9);
		assert_near(res[1].tok_s[0], prefill ? 0.020 : 0.030 + ingest, 1e-9);
		assert_near(res[1].tok_s[1], 0.040 + ingest, 1e-9);
		assert_near(res[1].tok_s[2], 0.050 + ingest, 1e-9);
		replay_results_free(res, 2);
	}
	trace_free(&t);
}

/* Tokens per trace hash id in these tests (Mooncake's are 512). */
#define TB 16

/* Request i's prompt made of trace blocks ids[0..n) (TB tokens each):
 * equal ids, equal tokens. */
static void set_hashes(struct trace *t, int i, const int64_t *ids, int n)
{
	t->req[i].hash_ids = malloc(sizeof *ids * (size_t)n);
	assert_non_null(t->req[i].hash_ids);
	memcpy(t->req[i].hash_ids, ids, sizeof *ids * (size_t)n);
	t->req[i].n_hash = n;
	t->block_tokens = TB;
}

/* One colocated node, chunks of 16, 10 ms a pass, the same 64-token prompt
 * twice (1 token each):
 *   A at 0: four chunks [0, 40] -> 40
 *   B at 100 ms: its cache holds 48 tokens (3 whole blocks of the 63 before
 *     the last, which is always computed): one chunk [100, 110] -> 110;
 *     without prefix caches four again -> 140 */
static void test_prefix_cache_timeline(void **state)
{
	(void)state;
	struct plan_profile p = flat();
	p.max_batch_tokens = 16;
	p.block_tokens = 16;
	struct trace t;
	make_trace(&t, 2, (double[]){0, 0.1}, (int[]){64, 64}, (int[]){1, 1});
	const int64_t ids[] = {7, 8, 9, 10, 11, 12, 13, 14};
	set_hashes(&t, 0, ids, 64 / TB);
	set_hashes(&t, 1, ids, 64 / TB);
	for (int on = 0; on < 2; on++) {
		struct sim_cfg c = cluster(&p, 0, 1, ROUTER_POLICY_COLOCATED);
		c.prefix_cache = on;
		struct replay_result res[2];
		run(&c, &t, res, NULL);
		assert_int_equal(res[0].status, RS_OK);
		assert_int_equal(res[1].status, RS_OK);
		assert_near(res[0].tok_s[0], 0.040, 1e-9);
		assert_near(res[1].tok_s[0], on ? 0.110 : 0.140, 1e-9);
		replay_results_free(res, 2);
	}
	trace_free(&t);
}

/* Disaggregated, prefill at 10 ms + 0.1 ms a token, first tokens from the
 * prefill node:
 *   A at 0 (200 tokens): prefill node, 10 + 20 ms -> 30
 *   B at 1 s, A's first 192 tokens (12 blocks) then 108 of its own: the
 *     decode node holds A's prompt too but 108 tokens are over
 *     local-max-prompt, so the prefill node, which computes the 108:
 *     10 + 10.8 ms -> 1.0208
 *   C at 2 s, A's prompt again: "cached on the decode node" (the router
 *     knows from the decode node's load report), 8 tokens left: one
 *     decode step there, 10 + 0.8 ms -> 2.0108 */
static void test_prefix_cache_placement(void **state)
{
	(void)state;
	struct plan_profile p = flat();
	p.step.token_ms = 0.1;
	p.block_tokens = 16;
	p.ingest_gb_s = 1e6;
	struct trace t;
	make_trace(&t, 3, (double[]){0, 1, 2}, (int[]){200, 300, 200}, (int[]){2, 2, 2});
	int64_t a[32], b[32];
	int na = (200 + TB - 1) / TB, nb = (300 + TB - 1) / TB;
	for (int k = 0; k < 32; k++) {
		a[k] = k;
		b[k] = k * TB < 192 ? k : 1000 + k;
	}
		set_hashes(&t, 0, a, na);
	set_hashes(&t, 1, b, nb);
	set_hashes(&t, 2, a, na);
	struct sim_cfg c = cluster(&p, 1, 1, ROUTER_POLICY_LENGTH_AWARE);
	c.first_token_prefill = 1;
	c.prefix_cache = 1;
	struct replay_result res[3];
	struct sim_req out[3];
	run(&c, &t, res, out);
	for (int i = 0; i < 3; i++)
		assert_int_equal(res[i].status, RS_OK);
	assert_int_equal(out[0].pnode, 0);
	assert_near(res[0].tok_s[0], 0.030, 1e-9);
	assert_int_equal(out[1].pnode, 0);
	assert_near(res[1].tok_s[0], 1.0208, 1e-9);
	assert_int_equal(out[2].pnode, -1);
	assert_string_equal(out[2].reason, "cached on the decode node");
	/* a decode step of 8 prompt tokens: 10 + 0.8 ms */
	assert_near(res[2].tok_s[0], 2.0108, 1e-9);
	replay_results_free(res, 3);
	trace_free(&t);
}

/* The router's wait queue, on one node with room for one request (two
 * blocks of 16): A (10 + 20 tokens) runs from 0 to 200 ms; B at 5 ms and
 * C at 6 ms wait for room. With queue-timeout-ms 50 both get 429 at 55
 * and 56 ms; with the default both are served after A (B first); with
 * max-queue 1 C is refused at once and B served. */
static void test_wait_queue(void **state)
{
	(void)state;
	struct plan_profile p = flat();
	p.block_tokens = 16;
	p.kv_tokens = 32;
	struct trace t;
	make_trace(&t, 3, (double[]){0, 0.005, 0.006}, (int[]){10, 10, 10}, (int[]){20, 5, 5});
	for (int v = 0; v < 3; v++) {
		struct sim_cfg c = cluster(&p, 0, 1, ROUTER_POLICY_COLOCATED);
		if (v == 0)
			c.queue_timeout_ms = 50;
		if (v == 2)
			c.max_queue = 1;
		struct replay_result res[3];
		run(&c, &t, res, NULL);
		assert_int_equal(res[0].status, RS_OK);
		assert_near(res[0].done_s, 0.200, 1e-9);
		if (v == 0) {
			for (int i = 1; i < 3; i++) {
				assert_int_equal(res[i].status, RS_FAILED);
				assert_string_equal(res[i].kind, "http_429");
			}
			assert_near(res[1].done_s, 0.055, 1e-9);
			assert_near(res[2].done_s, 0.056, 1e-9);
		} else {
			assert_int_equal(res[1].status, RS_OK);
			assert_true(res[1].tok_s[0] > 0.200);
			assert_int_equal(res[2].status, v == 1 ? RS_OK : RS_FAILED);
			if (v == 1)
				assert_true(res[2].tok_s[0] >= res[1].tok_s[0]);
			else
				assert_near(res[2].done_s, 0.006, 1e-9);
		}
		replay_results_free(res, 3);
	}
	trace_free(&t);
}

/* A busy trace of 300 requests on 2 + 3 nodes. */
static void busy_trace(struct trace *t)
{
	enum { N = 300 };
	double at[N];
	int pr[N], out[N];
	uint64_t x = 12345;
	double now = 0;
	for (int i = 0; i < N; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		now += (double)(x % 1000) / 4000.0;
		at[i] = now;
		pr[i] = 8 + (int)((x >> 20) % 1500);
		out[i] = 1 + (int)((x >> 40) % 200);
	}
	make_trace(t, N, at, pr, out);
}

static void test_deterministic(void **state)
{
	(void)state;
	struct plan_profile p = flat();
	p.step.base_ms = 5;
	p.step.seq_ms = 0.5;
	p.step.token_ms = 0.2;
	p.step.kctx_ms = 0.3;
	struct trace t;
	busy_trace(&t);
	struct sim_cfg c = cluster(&p, 2, 3, ROUTER_POLICY_LENGTH_AWARE);
	c.slo_ttft_ms = 2000;
	c.slo_tbt_ms = 60;
	c.seed = 7;
	struct replay_result *a = calloc((size_t)t.n, sizeof *a), *b = calloc((size_t)t.n, sizeof *b);
	struct sim_req *oa = calloc((size_t)t.n, sizeof *oa), *ob = calloc((size_t)t.n, sizeof *ob);
	run(&c, &t, a, oa);
	run(&c, &t, b, ob);
	int local = 0, disagg = 0, ok = 0;
	for (int i = 0; i < t.n; i++) {
		assert_int_equal(a[i].status, b[i].status);
		assert_int_equal(a[i].n_tok, b[i].n_tok);
		for (int k = 0; k < a[i].n_tok; k++)
			assert_true(a[i].tok_s[k] == b[i].tok_s[k]);
		assert_int_equal(oa[i].dnode, ob[i].dnode);
		ok += a[i].status == RS_OK;
		if (a[i].status == RS_OK) {
			assert_int_equal(a[i].n_tok, t.req[i].output_tokens);
			local += oa[i].pnode < 0;
			disagg += oa[i].pnode >= 0;
		}
	}
	/* both kinds of placement happen, and most requests are served */
	assert_true(local > 0 && disagg > 0);
	assert_true(ok > t.n / 2);
	replay_results_free(a, t.n);
	replay_results_free(b, t.n);
	free(a);
	free(b);
	free(oa);
	free(ob);
	trace_free(&t);
}

/* The busy trace as 20 conversations: request i continues conversation
 * i % 20 (its prompt's blocks are the conversation's, as many as it has).
 * With prefix caches: the same for a seed, every request served, and
 * prompts that find their prefix cached answer sooner on the whole. */
static void test_prefix_cache_busy(void **state)
{
	(void)state;
	struct plan_profile p = flat();
	p.step.base_ms = 5;
	p.step.seq_ms = 0.5;
	p.step.token_ms = 0.2;
	p.step.kctx_ms = 0.3;
	p.block_tokens = 16;
	struct trace t;
	busy_trace(&t);
	int64_t ids[1600 / TB];
	for (int i = 0; i < t.n; i++) {
		int n = (t.req[i].prompt_tokens + TB - 1) / TB;
		for (int k = 0; k < n; k++)
			ids[k] = (int64_t)(i % 20) * 1000 + k;
		set_hashes(&t, i, ids, n);
	}
	double ttft[2] = {0, 0};
	for (int on = 0; on < 2; on++) {
		struct sim_cfg c = cluster(&p, 2, 3, ROUTER_POLICY_LENGTH_AWARE);
		c.seed = 7;
		c.prefix_cache = on;
		struct replay_result *a = calloc((size_t)t.n, sizeof *a);
		struct replay_result *b = calloc((size_t)t.n, sizeof *b);
		struct sim_req *oa = calloc((size_t)t.n, sizeof *oa), *ob = calloc((size_t)t.n, sizeof *ob);
		run(&c, &t, a, oa);
		run(&c, &t, b, ob);
		for (int i = 0; i < t.n; i++) {
			assert_int_equal(a[i].status, RS_OK);
			assert_int_equal(a[i].n_tok, b[i].n_tok);
			for (int k = 0; k < a[i].n_tok; k++)
				assert_true(a[i].tok_s[k] == b[i].tok_s[k]);
			assert_int_equal(oa[i].pnode, ob[i].pnode);
			ttft[on] += a[i].tok_s[0] - a[i].sent_s;
		}
		replay_results_free(a, t.n);
		replay_results_free(b, t.n);
		free(a);
		free(b);
		free(oa);
		free(ob);
	}
	assert_true(ttft[1] < 0.8 * ttft[0]);
	trace_free(&t);
}

/* The reasons the simulator records are router_place's own static texts:
 * a placement decided anywhere but router/place.c fails this. */
static void test_router_placement(void **state)
{
	(void)state;
	static struct duet_model model;
	static struct router R;
	int prompt[200];
	tu_random_prompt(prompt, 200, 3);
	memset(&R, 0, sizeof R);
	model.cfg.ctx_len = 4096;
	R.model = &model;
	R.policy = ROUTER_POLICY_LENGTH_AWARE;
	R.cfg.local_max_prompt = 64;
	const Duet__Role roles[2] = {DUET__ROLE__ROLE_PREFILL, DUET__ROLE__ROLE_DECODE};
	for (int i = 0; i < 2; i++) {
		R.nodes[i].role = roles[i];
		R.nodes[i].alive = 1;
		R.nodes[i].block_tokens = 16;
		R.nodes[i].kv_free = R.nodes[i].kv_total = 1000;
	}
	R.n_nodes = 2;
	struct rreq q = {.prompt = prompt, .n_prompt = 10, .max_tokens = 4};
	struct router_placement short_pl, long_pl;
	struct duet_err err;
	assert_int_equal(router_place(&R, &q, &short_pl, &err), 0);
	q.n_prompt = 200;
	assert_int_equal(router_place(&R, &q, &long_pl, &err), 0);

	struct plan_profile p = flat();
	struct trace t;
	make_trace(&t, 2, (double[]){0, 1}, (int[]){10, 200}, (int[]){4, 4});
	struct sim_cfg c = cluster(&p, 1, 1, ROUTER_POLICY_LENGTH_AWARE);
	struct replay_result res[2];
	struct sim_req out[2];
	run(&c, &t, res, out);
	assert_ptr_equal(out[0].reason, short_pl.reason);
	assert_ptr_equal(out[1].reason, long_pl.reason);
	assert_int_equal(out[0].pnode, -1);
	assert_int_equal(out[1].pnode, 0);
	replay_results_free(res, 2);
	trace_free(&t);
}

static void test_profile_json(void **state)
{
	(void)state;
	struct duet_err err;
	struct plan_profile p = flat(), q;
	p.step.seq_ms = 2;
	p.kv_tokens = 100000;
	json_t *j = plan_profile_to_json(&p);
	assert_int_equal(plan_profile_from_json(j, "test", &q, &err), 0);
	assert_near(q.step.base_ms, 10, 0);
	assert_int_equal(q.kv_tokens, 100000);
	/* faster arithmetic and memory: the parts each bounds scale */
	plan_profile_scale(&q, 4, 2, 3);
	assert_near(q.step.base_ms, 5, 1e-12);
	assert_near(q.step.seq_ms, 0.5, 1e-12);
	assert_int_equal(q.kv_tokens, 300000);
	/* a wrong field is named */
	json_object_set_new(json_object_get(j, "step"), "seq_ms", json_string("fast"));
	assert_int_not_equal(plan_profile_from_json(j, "test", &q, &err), 0);
	assert_non_null(strstr(err.msg, "seq_ms"));
	json_object_del(j, "step");
	assert_int_not_equal(plan_profile_from_json(j, "test", &q, &err), 0);
	assert_non_null(strstr(err.msg, "step"));
	json_decref(j);
	/* the beside model: through JSON, scaled with the step model, and a
	 * wrong field of it named as its */
	p.has_beside = 1;
	p.beside = p.step;
	p.beside.base_ms = 14;
	j = plan_profile_to_json(&p);
	assert_int_equal(plan_profile_from_json(j, "test", &q, &err), 0);
	assert_true(q.has_beside);
	assert_near(q.beside.base_ms, 14, 0);
	plan_profile_scale(&q, 4, 2, 1);
	assert_near(q.beside.base_ms, 7, 1e-12);
	assert_near(q.beside.seq_ms, 0.5, 1e-12);
	json_object_del(json_object_get(j, "beside"), "kctx_ms");
	assert_int_not_equal(plan_profile_from_json(j, "test", &q, &err), 0);
	assert_non_null(strstr(err.msg, "beside"));
	assert_non_null(strstr(err.msg, "kctx_ms"));
	json_object_del(j, "beside");
	assert_int_equal(plan_profile_from_json(j, "test", &q, &err), 0);
	assert_false(q.has_beside);
	json_decref(j);
}

/* The step spread: the jitter a pass draws, by hand; a profile's spread
 * through JSON; and a simulation with it: the same for a seed, the mean
 * pass as the model says, the token gaps' tail longer than without. */
static void test_step_spread(void **state)
{
	(void)state;
	struct duet_err err;
	struct plan_profile p = flat();
	assert_near(plan_profile_jitter(&p, 0.5), 1, 0);
	/* 1 up to 90%, 1.5 at 95%, 3 at 99%: the mean is 1 + 0.05 x 0.25 +
	 * 0.04 x 1.25 + 0.01 x 2 = 1.0825 */
	double q[PLAN_SPREAD_N] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.5, 3};
	assert_int_equal(plan_profile_set_spread(&p, q, "test", &err), 0);
	const double mean = 1.0825;
	assert_near(plan_profile_jitter(&p, 0.5), 1 / mean, 1e-12);
	assert_near(plan_profile_jitter(&p, 0.925), 1.25 / mean, 1e-12);
	assert_near(plan_profile_jitter(&p, 0.995), 3 / mean, 1e-12);
	/* through JSON; a ratio below the one before is named */
	struct plan_profile r;
	json_t *j = plan_profile_to_json(&p);
	assert_int_equal(plan_profile_from_json(j, "test", &r, &err), 0);
	assert_true(r.has_spread);
	assert_near(r.spread[12], 3, 0);
	json_array_set_new(json_object_get(j, "step_spread"), 3, json_real(0.5));
	assert_int_not_equal(plan_profile_from_json(j, "test", &r, &err), 0);
	assert_non_null(strstr(err.msg, "ratio 4"));
	json_decref(j);
	/* the spread of 1..101 is its percentiles */
	double v[101];
	for (int i = 0; i < 101; i++)
		v[i] = 101 - i;
	plan_spread_of(v, 101, q);
	assert_near(q[0], 2, 1e-9);
	assert_near(q[6], 51, 1e-9);
	assert_near(q[12], 100, 1e-9);

	/* simulated: one node, a stream of requests */
	struct trace t;
	enum { N = 40 };
	double at[N];
	int pr[N], out[N];
	for (int i = 0; i < N; i++)
		at[i] = 0.05 * i, pr[i] = 8, out[i] = 50;
	make_trace(&t, N, at, pr, out);
	struct replay_result res[3][N];
	struct sim_cfg c = cluster(&p, 0, 1, ROUTER_POLICY_COLOCATED);
	c.step_spread = 1;
	run(&c, &t, res[0], NULL);
	run(&c, &t, res[1], NULL);
	c.step_spread = 0;
	run(&c, &t, res[2], NULL);
	double sum[3] = {0}, worst[3] = {0};
	long gaps = 0;
	for (int i = 0; i < N; i++) {
		assert_int_equal(res[0][i].n_tok, 50);
		for (int k = 1; k < 50; k++) {
			assert_true(res[0][i].tok_s[k] == res[1][i].tok_s[k]);
			for (int m = 0; m < 3; m += 2) {
				double g = res[m][i].tok_s[k] - res[m][i].tok_s[k - 1];
				sum[m] += g;
				worst[m] = g > worst[m] ? g : worst[m];
			}
			gaps++;
		}
	}
	/* without: every gap one 10 ms pass; with: the same on average
	 * (within 5% over ~2000 gaps), the worst near 3 / mean x 10 ms */
	assert_near(worst[2], 0.010, 1e-9);
	assert_near(sum[2] / (double)gaps, 0.010, 1e-9);
	assert_near(sum[0] / (double)gaps, 0.010, 0.0005);
	assert_true(worst[0] > 0.025);
	for (int m = 0; m < 3; m++)
		replay_results_free(res[m], N);
	trace_free(&t);
}

/* duet trace steps: a decode node's steps and a prefill node's passes
 * against a profile, by hand: model = 10 + 2/seq + 1/token + 4/1k
 * positions + 1024/1M pairs ms. */
static void test_trace_steps(void **state)
{
	(void)state;
	struct plan_profile p = flat();
	p.step.seq_ms = 2, p.step.token_ms = 1, p.step.kctx_ms = 4, p.step.kpair_ms = 1024;
	const char *text =
		"[{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":1,\"args\":{\"name\":\"decode-0\"}},"
		"{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":2,\"args\":{\"name\":\"prefill-0\"}},"
		"{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":3,\"args\":{\"name\":\"router\"}},"
		/* 2 running, 1024 positions: 10 + 4 + 4 = 18 ms model, 36 measured */
		"{\"ph\":\"X\",\"name\":\"step\",\"pid\":1,\"ts\":0,\"dur\":36000,\"args\":"
		"{\"running\":2,\"prefill_seqs\":0,\"prefill_tokens\":0,\"spec_rows\":0,"
		"\"positions\":1024,\"pairs\":0}},"
		/* 1 running + a chunk of 8 after 128: 10 + 4 + 8 + 4 + 1 = 27, 27 measured */
		"{\"ph\":\"X\",\"name\":\"step\",\"pid\":1,\"ts\":1,\"dur\":27000,\"args\":"
		"{\"running\":1,\"prefill_seqs\":1,\"prefill_tokens\":8,\"spec_rows\":0,"
		"\"positions\":1024,\"pairs\":1024}},"
		/* not a pass */
		"{\"ph\":\"X\",\"name\":\"sample+send\",\"pid\":1,\"ts\":2,\"dur\":5000,\"args\":{}},"
		/* a prompt's second chunk of 64 after 64: 10 + 2 + 64 + 0.5 + 4 = 80.5 model, 40.25 */
		"{\"ph\":\"X\",\"name\":\"prefill\",\"pid\":2,\"ts\":3,\"dur\":40250,\"args\":"
		"{\"seqs\":1,\"tokens\":64,\"positions\":128,\"pairs\":4096}}]";
	json_error_t je;
	json_t *ev = json_loads(text, 0, &je);
	assert_non_null(ev);
	struct trace_steps st[4];
	int n;
	struct duet_err err;
	assert_int_equal(trace_steps_compare(ev, NULL, &p, 0, 0, st, 4, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(st[0].node, "decode-0");
	assert_int_equal(st[0].n, 2);
	assert_near(st[0].actual_ms, 63, 1e-9);
	assert_near(st[0].model_ms, 45, 1e-9);
	assert_near(st[0].spread[PLAN_SPREAD_P10], 1.1, 1e-9); /* interpolated between 1 and 2 */
	assert_near(st[0].spread[PLAN_SPREAD_P90], 1.9, 1e-9);
	assert_near(st[0].spread[PLAN_SPREAD_P50], 1.5, 1e-9);
	assert_string_equal(st[1].node, "prefill-0");
	assert_near(st[1].actual_ms / st[1].model_ms, 0.5, 1e-9);
	/* one node by name; a name without passes, and traces without the
	 * model's fields, are refused with a reason */
	assert_int_equal(trace_steps_compare(ev, "prefill-0", &p, 0, 0, st, 4, &n, &err), 0);
	assert_int_equal(n, 1);
	/* a window of the wall clock: the second step alone */
	assert_int_equal(trace_steps_compare(ev, "decode-0", &p, 1, 2, st, 4, &n, &err), 0);
	assert_int_equal(st[0].n, 1);
	assert_near(st[0].actual_ms / st[0].model_ms, 1, 1e-9);
	assert_int_not_equal(trace_steps_compare(ev, "prefill-0", &p, 0, 3, st, 4, &n, &err), 0);
	assert_int_not_equal(trace_steps_compare(ev, "router", &p, 0, 0, st, 4, &n, &err), 0);
	assert_non_null(strstr(err.msg, "router"));
	for (size_t i = 0; i < json_array_size(ev); i++)
		json_object_del(json_object_get(json_array_get(ev, i), "args"), "pairs");
	assert_int_not_equal(trace_steps_compare(ev, NULL, &p, 0, 0, st, 4, &n, &err), 0);
	assert_non_null(strstr(err.msg, "positions"));
	json_decref(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hand_timeline),
		cmocka_unit_test(test_hand_disaggregated),
		cmocka_unit_test(test_chunk_budget),
		cmocka_unit_test(test_machine_shared),
		cmocka_unit_test(test_reply_at_pass_end),
		cmocka_unit_test(test_first_token_release),
		cmocka_unit_test(test_prefix_cache_timeline),
		cmocka_unit_test(test_prefix_cache_placement),
		cmocka_unit_test(test_wait_queue),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_prefix_cache_busy),
		cmocka_unit_test(test_router_placement),
		cmocka_unit_test(test_profile_json),
		cmocka_unit_test(test_trace_steps),
		cmocka_unit_test(test_step_spread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
