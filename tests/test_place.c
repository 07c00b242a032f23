/* Placement policies (router/place.c) on hand-made node tables: the
 * length-aware choice between local and disaggregated prefill, prefill
 * nodes by predicted time to first token including their cached prefix,
 * decode nodes by load, room and cached prefix, and the other policies. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "node/prefix_cache.h"
#include "router.h"
#include "testutil.h"

static struct duet_model model;
static struct router R;
static int prompt[400];

static void reset(enum router_policy p)
{
	for (int i = 0; i < ROUTER_MAX_NODES; i++)
		router_node_free(&R.nodes[i]);
	memset(&R, 0, sizeof R);
	model.cfg.ctx_len = 512;
	R.model = &model;
	R.policy = p;
	R.cfg.local_max_prompt = 64;
	R.cfg.tbt_admission = 1;
	const struct {
		const char *name;
		Duet__Role role;
		double rate;
	} nodes[] = {{"prefill-0", DUET__ROLE__ROLE_PREFILL, 5000},
		     {"prefill-1", DUET__ROLE__ROLE_PREFILL, 4000},
		     {"decode-0", DUET__ROLE__ROLE_DECODE, 0},
		     {"decode-1", DUET__ROLE__ROLE_DECODE, 0}};
	for (int i = 0; i < 4; i++) {
		struct router_node *n = &R.nodes[i];
		strcpy(n->name, nodes[i].name);
		n->role = nodes[i].role;
		n->alive = 1;
		n->prefill_tps = nodes[i].rate;
		n->block_tokens = 16;
		n->kv_free = n->kv_total = 1000;
	}
	R.n_nodes = 4;
}

static int place(int n_prompt, int max_tokens, int *p, int *d)
{
	struct rreq q = {0};
	q.prompt = prompt;
	q.n_prompt = n_prompt;
	q.max_tokens = max_tokens;
	struct router_placement pl;
	struct duet_err err;
	int rc = router_place(&R, &q, &pl, &err);
	*p = pl.pnode;
	*d = pl.dnode;
	return rc;
}

/* A node's report: the hashes others[0..n_others) (most recently used
 * first), then the blocks of prompt[0..tokens). */
static void report_prefix(struct router_node *n, const uint64_t *others, int n_others,
			  int tokens)
{
	static uint64_t all[ROUTER_PREFIX_HASHES + 64];
	uint64_t h = DUET_PREFIX_SEED;
	int c = n_others;
	if (c)
		memcpy(all, others, sizeof *all * (size_t)c);
	for (int k = 0; (k + 1) * 16 <= tokens; k++) {
		h = duet_prefix_chain(h, prompt + k * 16, 16);
		all[c++] = h;
	}
	struct duet_err err;
	assert_int_equal(router_node_set_prefix(n, all, (size_t)c, &err), 0);
}

static void cache_prefix(struct router_node *n, int tokens)
{
	report_prefix(n, NULL, 0, tokens);
}

static void test_length_aware(void **state)
{
	(void)state;
	tu_random_prompt(prompt, 400, 1);
	int p, d;
	reset(ROUTER_POLICY_LENGTH_AWARE);
	/* Short: local on the first least-loaded decode node. */
	assert_int_equal(place(40, 16, &p, &d), 0);
	assert_int_equal(p, -1);
	assert_int_equal(d, 2);
	/* Long: the faster prefill node. */
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, 0);
	/* ...unless the slower one holds most of the prompt in its cache,
	 * even among thousands of other cached blocks (the report lists them
	 * most recently used first; the prompt's come last here). */
	static uint64_t others[ROUTER_PREFIX_HASHES];
	for (size_t i = 0; i < ROUTER_PREFIX_HASHES; i++)
		others[i] = 0x9E3779B97F4A7C15ull * (i + 1);
	report_prefix(&R.nodes[1], others, ROUTER_PREFIX_HASHES - 18, 288);
	assert_int_equal(R.nodes[1].n_hashes, ROUTER_PREFIX_HASHES);
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, 1);
	/* A report keeps its first ROUTER_PREFIX_HASHES (the most recently
	 * used): the prompt's blocks past them are not counted. */
	report_prefix(&R.nodes[1], others, ROUTER_PREFIX_HASHES, 288);
	assert_int_equal(R.nodes[1].n_hashes, ROUTER_PREFIX_HASHES);
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, 0);
	/* Learned at its first token, the prompt joins the full summary
	 * (the set grows and keeps every hash it held). */
	router_node_learn_prefix(&R.nodes[1], prompt, 300);
	assert_int_equal(R.nodes[1].n_hashes, ROUTER_PREFIX_HASHES + 18);
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, 1);
	/* A deep queue sends work elsewhere. */
	struct duet_err err;
	assert_int_equal(router_node_set_prefix(&R.nodes[1], NULL, 0, &err), 0);
	R.nodes[0].queued_tokens = 5000;
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, 1);
	/* Both deeply queued, decode node idle: a local prefill is sooner. */
	R.nodes[1].queued_tokens = 50000;
	R.nodes[0].queued_tokens = 50000;
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, -1);
	/* Queued 600 tokens each: prefill-0 gives the first token in
	 * (600 + 300) / 5000 = 180 ms, a local prefill in 300 / 5000 = 60 ms
	 * times the streams it stalls, itself included. Idle: local. */
	R.nodes[0].queued_tokens = R.nodes[1].queued_tokens = 600;
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, -1);
	/* Two hand-offs on their way to both decode nodes (KV not yet in):
	 * they would join while the chunks run, 3 x 60 = 180 ms is not
	 * sooner, so the prefill node. */
	R.nodes[2].waiting_kv = R.nodes[3].waiting_kv = 2;
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, 0);
	/* The same known only to this router (placed, not yet reported). */
	R.nodes[2].waiting_kv = R.nodes[3].waiting_kv = 0;
	R.nodes[2].inflight = R.nodes[3].inflight = 2;
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, 0);
	R.nodes[2].inflight = R.nodes[3].inflight = 0;
	/* Decode nodes: fewer running sequences first, then room. */
	R.nodes[0].queued_tokens = R.nodes[1].queued_tokens = 0;
	R.nodes[2].running = 3;
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(d, 3);
	R.nodes[3].running = 3;
	R.nodes[3].kv_free = 2000;
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(d, 3);
	/* A long prompt the chosen decode node holds in its own prefix cache
	 * (all but the last 44 tokens, within local-max-prompt) is computed
	 * there: no prefill node, no KV sent. */
	cache_prefix(&R.nodes[3], 256);
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(d, 3);
	assert_int_equal(p, -1);
	/* Holding less than that, it goes to a prefill node as before. */
	router_node_free(&R.nodes[3]);
	cache_prefix(&R.nodes[3], 160);
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, 0);
	/* Once the prompt's KV is complete there (its first token), the
	 * router knows before the next report: the same prompt stays local. */
	router_node_learn_prefix(&R.nodes[3], prompt, 300);
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, -1);
	router_node_free(&R.nodes[3]);
	/* No room for prompt + max_tokens anywhere: refused. */
	R.nodes[2].kv_free = R.nodes[3].kv_free = 10; /* 160 positions */
	assert_int_equal(place(150, 100, &p, &d), -1);
	assert_int_equal(place(100, 50, &p, &d), 0);
	/* Dead or draining nodes take nothing. */
	R.nodes[2].alive = 0;
	R.nodes[3].draining = 1;
	assert_int_equal(place(10, 5, &p, &d), -1);
}

static void test_other_policies(void **state)
{
	(void)state;
	int p, d;
	reset(ROUTER_POLICY_COLOCATED);
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, -1);
	assert_int_equal(d, 2);
	/* The decode node holding the prompt's prefix is chosen though it
	 * runs more sequences, up to ROUTER_CACHE_LOAD_SLACK more; the one
	 * holding more of it goes first; past the slack, the least loaded. */
	cache_prefix(&R.nodes[3], 160);
	R.nodes[3].running = ROUTER_CACHE_LOAD_SLACK;
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(d, 3);
	cache_prefix(&R.nodes[2], 64);
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(d, 3);
	R.nodes[3].running = ROUTER_CACHE_LOAD_SLACK + 1;
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(d, 2);
	router_node_free(&R.nodes[2]);
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(d, 2);
	reset(ROUTER_POLICY_LEAST_LOADED);
	assert_int_equal(place(10, 16, &p, &d), 0);
	assert_int_equal(p, 0); /* no local shortcut */
	reset(ROUTER_POLICY_ROUND_ROBIN);
	int seen_p[2] = {0}, seen_d[2] = {0};
	for (int i = 0; i < 4; i++) {
		assert_int_equal(place(300, 16, &p, &d), 0);
		seen_p[p]++;
		seen_d[d - 2]++;
		R.rr++; /* the core advances it per placement */
	}
	assert_int_equal(seen_p[0], 2);
	assert_int_equal(seen_p[1], 2);
	assert_int_equal(seen_d[0], 2);
	assert_int_equal(seen_d[1], 2);
	/* Without prefill nodes everything is local. */
	reset(ROUTER_POLICY_LENGTH_AWARE);
	R.nodes[0].alive = R.nodes[1].alive = 0;
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(p, -1);
}

/* Admission by the TBT objective: a decode node takes one more stream
 * only while its predicted step with it keeps the objective, counting
 * streams it has not reported yet; an idle node takes any; with no node
 * left the request fails to place (the router queues it), and with the
 * setting off the least loaded node takes it. */
static void test_tbt_admission(void **state)
{
	(void)state;
	tu_random_prompt(prompt, 400, 5);
	reset(ROUTER_POLICY_LENGTH_AWARE);
	for (int i = 2; i < 4; i++) {
		R.nodes[i].steps_fitted = 100;
		R.nodes[i].step_base_ms = 10;
		R.nodes[i].step_seq_ms = 2;
		R.nodes[i].step_kctx_ms = 1; /* a ms per 1024 positions */
	}
	R.cfg.slo_tbt_ms = 20;
	/* decode-0: 3 streams over 1024 positions; with a 300-token prompt
	 * 10 + 2 x 4 + 1324 / 1024 = 19.3 ms: taken. decode-1 runs 5: 22+. */
	R.nodes[2].running = 3;
	R.nodes[2].context_tokens = 1024;
	R.nodes[3].running = 5;
	int p, d;
	assert_int_equal(place(300, 16, &p, &d), 0);
	assert_int_equal(d, 2);
	/* A fourth stream the router placed there and the node has not
	 * reported: 10 + 2 x 5 + 1.3 = 21.3 > 20, and decode-1 too: none. */
	R.nodes[2].inflight = 4;
	struct rreq q = {0};
	q.prompt = prompt;
	q.n_prompt = 300;
	q.max_tokens = 16;
	struct router_placement pl;
	struct duet_err err;
	assert_int_equal(router_place(&R, &q, &pl, &err), -1);
	assert_non_null(strstr(err.msg, "TBT objective"));
	/* The request's own looser objective admits it on both, and so does
	 * the setting off: the least loaded takes it (decode-1, 5 sequences
	 * against decode-0's 3 reported and 4 in flight). */
	q.slo_tbt_ms = 25;
	assert_int_equal(router_place(&R, &q, &pl, &err), 0);
	assert_int_equal(pl.dnode, 3);
	q.slo_tbt_ms = 0;
	R.cfg.tbt_admission = 0;
	assert_int_equal(router_place(&R, &q, &pl, &err), 0);
	assert_int_equal(pl.dnode, 3);
	/* At 22 ms only decode-0 keeps it (21.3 against 22.3), though it is
	 * the more loaded. */
	R.cfg.tbt_admission = 1;
	q.slo_tbt_ms = 22;
	assert_int_equal(router_place(&R, &q, &pl, &err), 0);
	assert_int_equal(pl.dnode, 2);
	q.slo_tbt_ms = 0;
	R.cfg.tbt_admission = 1;
	/* A node streaming nothing takes a request whatever its step. */
	R.nodes[3].running = 0;
	R.nodes[3].step_base_ms = 100;
	assert_int_equal(router_place(&R, &q, &pl, &err), 0);
	assert_int_equal(pl.dnode, 3);
	/* Without room no admission is asked: the KV message. */
	R.nodes[3].kv_free = R.nodes[2].kv_free = 0;
	assert_int_equal(router_place(&R, &q, &pl, &err), -1);
	assert_non_null(strstr(err.msg, "no decode node has room"));
	/* The queue's wait: the TTFT objective where shorter. */
	R.cfg.queue_timeout_ms = 30000;
	assert_int_equal(router_queue_wait_ms(&R, &q), 30000);
	R.cfg.slo_ttft_ms = 4000;
	assert_int_equal(router_queue_wait_ms(&R, &q), 4000);
	q.n_out = 3; /* a stream already going waits the queue's time */
	assert_int_equal(router_queue_wait_ms(&R, &q), 30000);
	q.n_out = 0;
	q.slo_ttft_ms = 60000;
	assert_int_equal(router_queue_wait_ms(&R, &q), 30000);
}

static int free_nodes(void **state)
{
	(void)state;
	for (int i = 0; i < ROUTER_MAX_NODES; i++)
		router_node_free(&R.nodes[i]);
	return 0;
}

/* Both decode nodes measured: step = 15 ms + 3 per sequence + 1 per
 * prefill token, chunks of 64. */
static void measured(struct router_node *n, int running)
{
	n->steps_fitted = 100;
	n->step_base_ms = 15;
	n->step_seq_ms = 3;
	n->step_token_ms = 1;
	n->step_kctx_ms = 0;
	n->max_batch_tokens = 64;
	n->running = running;
}

static struct router_placement place_slo(int n_prompt, int slo_ttft, int slo_tbt)
{
	struct rreq q = {0};
	q.prompt = prompt;
	q.n_prompt = n_prompt;
	q.max_tokens = 16;
	q.slo_ttft_ms = slo_ttft;
	q.slo_tbt_ms = slo_tbt;
	struct router_placement pl;
	struct duet_err err;
	assert_int_equal(router_place(&R, &q, &pl, &err), 0);
	return pl;
}

/* Placement against the objectives, on scripted load reports: a short
 * prompt is prefilled on the decode node only while the step carrying it
 * keeps the running streams' TBT objective; on the decode node in chunks
 * cut to keep the TBT objective where that gives the first token sooner
 * than the prefill nodes' queue and within the TTFT objective; a request
 * that would wait past its TTFT objective is refused at once with a
 * Retry-After, unless even an idle node could not meet it (then it is
 * served as well as can be). */
static void test_slo(void **state)
{
	(void)state;
	tu_random_prompt(prompt, 400, 3);
	reset(ROUTER_POLICY_LENGTH_AWARE);
	measured(&R.nodes[2], 4);
	measured(&R.nodes[3], 6);
	R.cfg.slo_tbt_ms = 60;
	/* 40 tokens on decode-0 (the less loaded): 15 + 3 x 5 + 40 = 70 ms
	 * a step > 60: the prefill node takes it. */
	struct router_placement pl = place_slo(40, 0, 0);
	assert_int_equal(pl.dnode, 2);
	assert_int_equal(pl.pnode, 0);
	assert_string_equal(pl.reason, "disaggregated");
	R.cfg.slo_tbt_ms = 80; /* 70 ms keeps it: local, one step to the first token */
	pl = place_slo(40, 0, 0);
	assert_int_equal(pl.pnode, -1);
	assert_true(pl.step_ms > 69.9 && pl.step_ms < 70.1);
	assert_true(pl.ttft_ms > 69.9 && pl.ttft_ms < 70.1);
	pl = place_slo(40, 0, 50); /* the request's own objective is tighter */
	assert_int_equal(pl.pnode, 0);
	R.nodes[2].running = 0; /* nobody to stall, one step: local whatever the step */
	pl = place_slo(40, 0, 10);
	assert_int_equal(pl.pnode, -1);
	/* Four steps of 200 tokens (the prefill nodes queued deeper) would
	 * stall whatever joins meanwhile: the prefill node. */
	R.nodes[0].queued_tokens = R.nodes[1].queued_tokens = 100000;
	pl = place_slo(200, 0, 10);
	assert_int_equal(pl.pnode, 0);
	R.cfg.slo_tbt_ms = 0; /* without an objective: local pays */
	pl = place_slo(200, 0, 0);
	assert_int_equal(pl.pnode, -1);
	R.cfg.slo_tbt_ms = 80;
	R.nodes[0].queued_tokens = R.nodes[1].queued_tokens = 0;
	R.nodes[2].running = 4;

	/* Prefill queues: 10000 tokens at 5000/s and 9000 at 4000/s. A
	 * 200-token prompt would be prefilled on decode-0 (4 steps of 94 ms,
	 * 376 ms) were its 94 ms steps within the 60 ms TBT objective; they
	 * are not, so prefill-0: first token in (10000 + 200) / 5000 = 2.04 s
	 * against 500 ms, where an idle prefill node needs 40 ms: 429, retry
	 * after 2 s. */
	R.nodes[0].queued_tokens = 10000;
	R.nodes[1].queued_tokens = 9000;
	R.cfg.slo_ttft_ms = 500;
	R.cfg.slo_tbt_ms = 0;
	pl = place_slo(200, 0, 0);
	assert_int_equal(pl.pnode, -1); /* no TBT objective: local pays */
	assert_true(pl.ttft_ms > 375.9 && pl.ttft_ms < 376.1);
	R.cfg.slo_tbt_ms = 60;
	/* In chunks cut to keep the 60 ms, as the decode node cuts them (15 +
	 * 3 x 5 + 30 tokens = 60 ms): 7 steps, 420 ms, within 500: local. */
	pl = place_slo(200, 0, 0);
	assert_int_equal(pl.reject, 0);
	assert_int_equal(pl.pnode, -1);
	assert_string_equal(pl.reason, "prefill nodes past the TTFT objective, local chunks within both");
	assert_true(pl.step_ms > 59.9 && pl.step_ms < 60.1);
	assert_true(pl.ttft_ms > 419.9 && pl.ttft_ms < 420.1);
	/* Against 400 ms neither way meets it: refused. */
	pl = place_slo(200, 400, 0);
	assert_int_equal(pl.reject, 1);
	assert_int_equal(pl.retry_after_s, 2);
	assert_true(pl.ttft_ms > 2039 && pl.ttft_ms < 2041);
	/* Nor when even one prompt token beside the streams breaks the TBT
	 * objective (15 + 3 x 5 + 1 > 30). */
	pl = place_slo(200, 0, 30);
	assert_int_equal(pl.reject, 1);
	/* Within its own looser objective: placed, and where the first token
	 * comes sooner: the decode node's 420 ms against the prefill node's
	 * 2.04 s queue. */
	pl = place_slo(200, 3000, 0);
	assert_int_equal(pl.reject, 0);
	assert_int_equal(pl.pnode, -1);
	assert_string_equal(pl.reason, "local chunks within the TBT objective, sooner than the prefill nodes");
	assert_true(pl.ttft_ms > 419.9 && pl.ttft_ms < 420.1);
	/* A prefill node with less queued (1000 tokens: 240 ms) is sooner. */
	uint64_t q0 = R.nodes[0].queued_tokens;
	R.nodes[0].queued_tokens = 1000;
	pl = place_slo(200, 3000, 0);
	assert_int_equal(pl.pnode, 0);
	assert_string_equal(pl.reason, "disaggregated");
	/* The four streams end after 3 tokens: the decode node could give
	 * the first token in 344 ms (3 cut steps, then two whole chunks of
	 * 82 ms alone), but streams that come meanwhile are not foreseen,
	 * so the choice holds them throughout (420 ms) against the prefill
	 * node's (1700 + 200) / 5000 = 380 ms: disaggregated. */
	R.nodes[0].queued_tokens = 1700;
	R.nodes[2].n_left = 4;
	for (int i = 0; i < 4; i++)
		R.nodes[2].left[i] = 3;
	pl = place_slo(200, 3000, 0);
	assert_int_equal(pl.pnode, 0);
	R.nodes[2].n_left = 0;
	R.nodes[0].queued_tokens = q0;
	/* An objective no idle node meets (40 ms > 30): served anyway. */
	pl = place_slo(200, 30, 0);
	assert_int_equal(pl.reject, 0);
	/* Nothing measured yet: no prediction, no refusal. */
	R.nodes[0].prefill_tps = R.nodes[1].prefill_tps = 0;
	pl = place_slo(200, 0, 0);
	assert_int_equal(pl.reject, 0);
	assert_true(pl.ttft_ms < 0);

	/* Decode nodes that have not measured their steps, nothing running
	 * and the prefill nodes queued deeper than a local prefill: under a
	 * TBT objective a prompt of several chunks (200 in chunks of 64)
	 * goes to a prefill node, as nothing says its steps keep the
	 * objective for the streams that join meanwhile; one of a single
	 * chunk is prefilled there. */
	reset(ROUTER_POLICY_LENGTH_AWARE);
	R.nodes[2].max_batch_tokens = R.nodes[3].max_batch_tokens = 64;
	R.nodes[0].queued_tokens = R.nodes[1].queued_tokens = 100000;
	R.cfg.slo_tbt_ms = 60;
	pl = place_slo(200, 0, 0);
	assert_true(pl.step_ms < 0);
	assert_int_equal(pl.pnode, 0);
	pl = place_slo(60, 0, 0);
	assert_int_equal(pl.pnode, -1);
	R.cfg.slo_tbt_ms = 0; /* without an objective: local pays */
	pl = place_slo(200, 0, 0);
	assert_int_equal(pl.pnode, -1);

	/* Colocated: decode-0 has 1000 prompt tokens of local prefill queued;
	 * 40 more make 1040, 17 steps of 15 + 3 x 5 + 64 = 94 ms: 1598 ms
	 * against 500 where its own chunk alone is one step. */
	reset(ROUTER_POLICY_COLOCATED);
	measured(&R.nodes[2], 4);
	measured(&R.nodes[3], 6);
	R.nodes[2].local_prefill_tokens = 1000;
	R.cfg.slo_ttft_ms = 500;
	pl = place_slo(40, 0, 0);
	assert_int_equal(pl.dnode, 2);
	assert_true(pl.ttft_ms > 1597 && pl.ttft_ms < 1599);
	assert_int_equal(pl.reject, 1);
	assert_int_equal(pl.retry_after_s, 2);
	/* Under a 60 ms TBT objective the node cuts its chunks to 30 tokens
	 * (15 + 3 x 5 + 30 = 60 ms), and the first token is predicted as it
	 * will come: 35 steps, 2100 ms; its own in whole chunks, one step. */
	R.cfg.slo_tbt_ms = 60;
	pl = place_slo(40, 0, 0);
	assert_true(pl.ttft_ms > 2099 && pl.ttft_ms < 2101);
	assert_true(pl.step_ms > 59.9 && pl.step_ms < 60.1);
	assert_int_equal(pl.reject, 1);
	assert_int_equal(pl.retry_after_s, 2);
	/* Nothing queued: 200 tokens in whole chunks would take 4 steps of
	 * 94 ms, 376 ms, within 400; cut for streams that run throughout
	 * (the report lists none), 7 steps of 60 ms, 420 ms, past it: the
	 * streams there, not the prompt, make it miss, so refused (at 450,
	 * whose 420 it meets, served). */
	R.nodes[2].local_prefill_tokens = 0;
	pl = place_slo(200, 400, 0);
	assert_true(pl.ttft_ms > 419.9 && pl.ttft_ms < 420.1);
	assert_int_equal(pl.reject, 1);
	assert_int_equal(pl.retry_after_s, 1);
	pl = place_slo(200, 450, 0);
	assert_int_equal(pl.reject, 0);
	/* The four streams have 3, 3, 3 and 5 tokens left: three steps of 30
	 * tokens (180 ms), two beside one stream (15 + 3 x 2 + 39 = 60 ms:
	 * 78 tokens, 120 ms), then 32 left in one whole-chunk step alone
	 * (15 + 3 + 64 = 82 ms, as a whole chunk is predicted): 382 ms,
	 * within 400: served. */
	Duet__LoadReport l = DUET__LOAD_REPORT__INIT;
	uint32_t left[] = {5, 3, 3, 3};
	l.running = 4;
	l.steps_fitted = 100;
	l.step_base_ms = 15;
	l.step_seq_ms = 3;
	l.step_token_ms = 1;
	l.kv_blocks_free = l.kv_blocks_total = 1000;
	l.stream_tokens_left = left;
	l.n_stream_tokens_left = 4;
	struct duet_err err;
	assert_int_equal(router_node_report(&R.nodes[2], &l, 1, &err), 0);
	assert_int_equal(R.nodes[2].n_left, 4);
	assert_int_equal(R.nodes[2].left[0], 3);
	assert_int_equal(R.nodes[2].left[3], 5);
	pl = place_slo(200, 400, 0);
	assert_true(pl.ttft_ms > 381.9 && pl.ttft_ms < 382.1);
	assert_int_equal(pl.reject, 0);
	/* A stream waiting for its KV joins the batch and runs throughout:
	 * three steps of 27 tokens (180 ms), two of 36 (120 ms), then 39 a
	 * step beside it (two more): 420 ms, refused. */
	R.nodes[2].waiting_kv = 1;
	pl = place_slo(200, 400, 0);
	assert_true(pl.ttft_ms > 419.9 && pl.ttft_ms < 420.1);
	assert_int_equal(pl.reject, 1);
	R.nodes[2].waiting_kv = 0;
	/* A report listing more streams than any node sends is refused, and
	 * changes nothing. */
	uint32_t many[DUET_REPORT_MAX_STREAMS + 1] = {0};
	l.stream_tokens_left = many;
	l.n_stream_tokens_left = DUET_REPORT_MAX_STREAMS + 1;
	assert_int_equal(router_node_report(&R.nodes[2], &l, 2, &err), -1);
	assert_non_null(strstr(err.msg, "more than"));
	assert_int_equal(R.nodes[2].n_left, 4);
	/* A prompt no node meets 400 with even in whole chunks (1000 tokens:
	 * 16 steps of 94 ms): served as well as can be. */
	pl = place_slo(1000, 400, 0);
	assert_int_equal(pl.reject, 0);
	/* The node's chunks also pay for their attention over the prompt
	 * before them (its kpair, here 0.001 ms a pair), and it cuts each
	 * chunk for that: the four streams as above, per token 1 + 0.001 x
	 * the prompt before it. Chunks of 30 (60 ms), 29 (30 + 29 + 29 x
	 * 0.030 = 59.870), 28 (59.652); beside one stream 35 (21 + 35 + 35 x
	 * 0.087 = 59.045), 34 (59.148); alone a whole chunk after 156 (82 +
	 * 64 x 0.156 = 91.984): 389.699 ms against 382. */
	R.nodes[2].step_kpair_ms = 1048.576;
	struct router_placement paired = place_slo(200, 400, 0);
	assert_true(fabs(paired.ttft_ms - 389.699) < 1e-6);
	/* A report claiming 10^12 prompt tokens queued: the walk goes step
	 * by step for a context's worth, then in leaps; it ends, refused. */
	R.nodes[2].local_prefill_tokens = 1000000000000ull;
	paired = place_slo(200, 400, 0);
	assert_true(paired.ttft_ms > 1e9 && paired.reject);
	R.nodes[2].local_prefill_tokens = 0;
	/* Nothing running there: nothing to cut for, whole chunks. 200
	 * tokens in chunks of 64 attend over 64 x 64 + 64 x 128 + 8 x 192
	 * = 13824 prompt positions before them: 13.824 ms more. */
	R.nodes[2].running = 0;
	R.nodes[2].n_left = 0;
	paired = place_slo(200, 400, 0);
	R.nodes[2].step_kpair_ms = 0;
	pl = place_slo(200, 400, 0);
	assert_true(pl.ttft_ms < 400);
	assert_true(fabs(paired.ttft_ms - pl.ttft_ms - 13.824) < 1e-6);
	/* A local prefill of 60 tokens ahead, nothing running: the first
	 * step takes it whole with 4 of the prompt's (15 + 3 + 64 = 82 ms),
	 * then it streams and the chunks are cut to 39 (60 ms). With 100
	 * tokens to make it outlasts the prompt's 196 left (6 steps): 442
	 * ms; with 2, two steps (78 tokens), then 118 left in two whole
	 * chunks alone: 366 ms. */
	uint32_t lp[] = {60}, ll[] = {100};
	l.running = 0;
	l.n_stream_tokens_left = 0;
	l.local_prefill = 1;
	l.local_prefill_tokens = 60;
	l.local_prompt_left = lp;
	l.local_tokens_left = ll;
	l.n_local_prompt_left = l.n_local_tokens_left = 1;
	assert_int_equal(router_node_report(&R.nodes[2], &l, 3, &err), 0);
	pl = place_slo(200, 0, 0);
	assert_true(pl.ttft_ms > 441.9 && pl.ttft_ms < 442.1);
	ll[0] = 2;
	assert_int_equal(router_node_report(&R.nodes[2], &l, 4, &err), 0);
	pl = place_slo(200, 0, 0);
	assert_true(pl.ttft_ms > 365.9 && pl.ttft_ms < 366.1);
	/* Lists of unequal length: refused. */
	l.n_local_tokens_left = 0;
	assert_int_equal(router_node_report(&R.nodes[2], &l, 5, &err), -1);
	assert_non_null(strstr(err.msg, "local_tokens_left"));
	/* The router's own local placement joins the list until the next
	 * report: the same request again queues behind it. */
	struct rreq q = {0};
	q.prompt = prompt;
	q.n_prompt = 200;
	q.max_tokens = 16;
	assert_int_equal(router_place(&R, &q, &pl, &err), 0);
	router_placement_commit(&R, &q, &pl);
	assert_int_equal(R.nodes[2].n_local, 2);
	assert_int_equal(R.nodes[2].local_prompt[1], 200);
	assert_int_equal(R.nodes[2].local_left[1], 16);
	assert_int_equal(R.nodes[2].local_prefill_tokens, 260);
	struct router_placement pl2 = place_slo(200, 0, 0);
	assert_true(pl2.ttft_ms > pl.ttft_ms + 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_length_aware),
		cmocka_unit_test(test_other_policies),
		cmocka_unit_test(test_slo),
		cmocka_unit_test(test_tbt_admission),
	};
	return cmocka_run_group_tests(tests, NULL, free_nodes);
}
