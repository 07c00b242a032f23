/* duet replay: trace parsers (good and malformed rows), slicing and
 * fitting, prompt synthesis, percentiles and the summary, open-loop send
 * times against a stub HTTP server, and an end-to-end replay of a real
 * trace slice against `duet up` checked against the router's /metrics. */
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "http_get.h"
#include "replay/replay.h"
#include "replay/synth.h"
#include "replay/trace.h"
#include "testutil.h"

/* ---- parsers ---- */

static int parse_str(const char *text, enum trace_format fmt, struct trace *t,
		     struct duet_err *err)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	assert_non_null(f);
	int rc = trace_read(f, "t", fmt, t, err);
	fclose(f);
	return rc;
}

static void test_azure(void **state)
{
	(void)state;
	struct trace t;
	struct duet_err err;
	const char *csv = "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
			  "2023-11-16 18:17:03.9799600,4808,10\r\n"
			  "2023-11-16 18:17:04.0319600,3180,8\r\n"
			  "\r\n"
			  "2023-11-17 00:00:01,5,1\r\n";
	assert_int_equal(parse_str(csv, TRACE_AUTO, &t, &err), 0);
	assert_int_equal(t.format, TRACE_AZURE);
	assert_int_equal(t.n, 3);
	assert_int_equal(t.block_tokens, 0);
	assert_true(t.req[0].arrival_s == 0);
	assert_true(fabs(t.req[1].arrival_s - 0.052) < 1e-9);
	/* across midnight: 5h42m57.02004 s later */
	assert_true(fabs(t.req[2].arrival_s - (5 * 3600 + 42 * 60 + 57.02004)) < 1e-6);
	assert_int_equal(t.req[0].prompt_tokens, 4808);
	assert_int_equal(t.req[1].output_tokens, 8);
	assert_null(t.req[0].hash_ids);
	trace_free(&t);
}

static void test_mooncake(void **state)
{
	(void)state;
	struct trace t;
	struct duet_err err;
	const char *jl = "{\"timestamp\": 0, \"input_length\": 1000, \"output_length\": 5, "
			 "\"hash_ids\": [0, 1]}\n"
			 "{\"timestamp\": 1500, \"input_length\": 600, \"output_length\": 2, "
			 "\"hash_ids\": [0, 7]}\n"
			 "{\"timestamp\": 1500.5, \"input_length\": 3, \"output_length\": 1}\n";
	assert_int_equal(parse_str(jl, TRACE_AUTO, &t, &err), 0);
	assert_int_equal(t.format, TRACE_MOONCAKE);
	assert_int_equal(t.n, 3);
	assert_int_equal(t.block_tokens, TRACE_MOONCAKE_BLOCK);
	assert_true(fabs(t.req[1].arrival_s - 1.5) < 1e-12);
	assert_true(fabs(t.req[2].arrival_s - 1.5005) < 1e-12);
	assert_int_equal(t.req[1].n_hash, 2);
	assert_int_equal(t.req[1].hash_ids[1], 7);
	assert_int_equal(t.req[2].n_hash, 0);
	trace_free(&t);
}

static void test_plain(void **state)
{
	(void)state;
	struct trace t;
	struct duet_err err;
	assert_int_equal(parse_str("arrival_s,prompt_tokens,output_tokens\n# comment\n"
				   "0.5,10,20\n0.75, 11 ,21\n",
				   TRACE_AUTO, &t, &err),
			 0);
	assert_int_equal(t.format, TRACE_PLAIN);
	assert_int_equal(t.n, 2);
	assert_true(t.req[0].arrival_s == 0 && fabs(t.req[1].arrival_s - 0.25) < 1e-12);
	assert_int_equal(t.req[1].prompt_tokens, 11);
	trace_free(&t);
	/* no header */
	assert_int_equal(parse_str("0,1,1\n2,3,4\n", TRACE_PLAIN, &t, &err), 0);
	assert_int_equal(t.n, 2);
	assert_true(t.req[1].arrival_s == 2);
	trace_free(&t);
}

/* Every malformed input fails with its line number, never crashes. */
static void test_malformed(void **state)
{
	(void)state;
	static const struct {
		enum trace_format fmt;
		const char *text, *want;
	} cases[] = {
		{TRACE_AUTO, "", "no requests"},
		{TRACE_AUTO, "\n\n", "no requests"},
		{TRACE_AZURE, "TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"},
		{TRACE_AZURE, "TIME,Ctx,Gen\n2023-11-16 18:17:03,1,1\n", "t:1: expected the header"},
		{TRACE_AZURE, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,12\n",
		 "t:2: expected 3 columns"},
		{TRACE_AZURE, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1,2,3\n",
		 "t:2: expected 3 columns"},
		{TRACE_AZURE, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1x,2\n",
		 "t:2: ContextTokens '1x'"},
		{TRACE_AZURE, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,5,0\n",
		 "t:2: GeneratedTokens '0'"},
		{TRACE_AZURE, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-13-16 18:17:03,5,1\n",
		 "t:2: TIMESTAMP"},
		{TRACE_AZURE, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16T18:17:03,5,1\n",
		 "t:2: TIMESTAMP"},
		{TRACE_AZURE,
		 "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.5,5,1\n"
		 "2023-11-16 18:17:03.4,5,1\n",
		 "t:3: arrival -0.1"},
		{TRACE_PLAIN, "1,2,3\n-1,2,3\n", "t:2: arrival_s '-1'"},
		{TRACE_PLAIN, "0,2,3\nnan,2,3\n", "t:2: arrival_s 'nan'"},
		{TRACE_PLAIN, "0,2\n", "t:1: expected 3 columns"},
		{TRACE_PLAIN, "0,2,3\n1,-2,3\n", "t:2: prompt_tokens '-2'"},
		{TRACE_PLAIN, "0,2,3\n1,2,99999999999\n", "t:2: output_tokens"},
		{TRACE_PLAIN, "0,2,3\n5,2,3\n4,2,3\n", "t:3: arrival 4.000000 s is before"},
		{TRACE_PLAIN, "0,2,3\n1,,3\n", "t:2: prompt_tokens ''"},
		{TRACE_MOONCAKE, "{\"timestamp\": 0, \"input_length\": 3\n", "t:1: not JSON"},
		{TRACE_MOONCAKE, "[1,2]\n", "t:1: expected a JSON object"},
		{TRACE_MOONCAKE, "{\"timestamp\": -5, \"input_length\": 3, \"output_length\": 1}\n",
		 "t:1: timestamp"},
		{TRACE_MOONCAKE, "{\"timestamp\": \"0\", \"input_length\": 3, \"output_length\": 1}\n",
		 "t:1: timestamp"},
		{TRACE_MOONCAKE, "{\"timestamp\": 0, \"output_length\": 1}\n", "t:1: input_length"},
		{TRACE_MOONCAKE, "{\"timestamp\": 0, \"input_length\": 2.5, \"output_length\": 1}\n",
		 "t:1: input_length"},
		{TRACE_MOONCAKE,
		 "{\"timestamp\": 0, \"input_length\": 3, \"output_length\": 1, \"hash_ids\": 4}\n",
		 "t:1: hash_ids must be an array"},
		{TRACE_MOONCAKE,
		 "{\"timestamp\": 0, \"input_length\": 3, \"output_length\": 1, \"hash_ids\": [1, -2]}\n",
		 "t:1: hash_ids[1]"},
		{TRACE_MOONCAKE,
		 "{\"timestamp\": 9, \"input_length\": 3, \"output_length\": 1}\n"
		 "{\"timestamp\": 8, \"input_length\": 3, \"output_length\": 1, \"hash_ids\": [1]}\n",
		 "t:2: arrival"},
		{TRACE_MOONCAKE,
		 "{\"timestamp\": 0, \"timestamp\": 1, \"input_length\": 3, \"output_length\": 1}\n",
		 "t:1: not JSON"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct trace t;
		struct duet_err err = {{0}};
		int rc = parse_str(cases[i].text, cases[i].fmt, &t, &err);
		if (rc != -1 || !strstr(err.msg, cases[i].want))
			fail_msg("case %zu: rc %d, message '%s', wanted '%s'", i, rc, err.msg,
				 cases[i].want);
		assert_null(t.req);
	}
	/* The real files parse, with their documented row counts. */
	static const struct {
		const char *name;
		int rows;
	} real[] = {{"azure_llm_2023_code.csv", 8819}, {"azure_llm_2023_conv.csv", 19366},
		    {"mooncake_conversation.jsonl", 12031}, {"mooncake_synthetic.jsonl", 3993}};
	char dir[4096], path[4200];
	snprintf(dir, sizeof dir, "%s", tu_vocab_gguf());
	*strrchr(dir, '/') = 0;
	for (size_t i = 0; i < sizeof real / sizeof real[0]; i++) {
		snprintf(path, sizeof path, "%s/../traces/%s", dir, real[i].name);
		struct trace t;
		struct duet_err err;
		if (trace_load(path, TRACE_AUTO, &t, &err))
			fail_msg("%s", err.msg);
		assert_int_equal(t.n, real[i].rows);
		trace_free(&t);
	}
}

static void test_slice_fit(void **state)
{
	(void)state;
	struct trace t;
	struct duet_err err;
	assert_int_equal(parse_str("0,100,10\n1,200,20\n2,300,30\n3,4000,40\n4,50,3000\n",
				   TRACE_PLAIN, &t, &err),
			 0);
	/* from 1 s, 3 s long: rows at 1, 2, 3; arrivals count from the first */
	assert_int_equal(trace_slice(&t, 1, 3, 0, &err), 0);
	assert_int_equal(t.n, 3);
	assert_true(t.req[0].arrival_s == 0 && t.req[2].arrival_s == 2);
	assert_int_equal(t.req[0].prompt_tokens, 200);
	struct trace_fit fit;
	assert_int_equal(trace_fit(&t, 0.5, 1, 1024, &fit, &err), 0);
	assert_int_equal(t.req[0].prompt_tokens, 100);
	assert_int_equal(t.req[2].prompt_tokens, 1024 - 40); /* 2000 clipped */
	assert_int_equal(fit.n_scaled, 3);
	assert_int_equal(fit.n_prompt_clipped, 1);
	assert_int_equal(fit.n_output_clipped, 0);
	assert_int_equal(fit.prompt_tokens_before, 4500);
	assert_int_equal(fit.prompt_tokens_after, 100 + 150 + 984);
	trace_free(&t);
	/* an output longer than the context is cut to a quarter of it */
	assert_int_equal(parse_str("0,50,3000\n", TRACE_PLAIN, &t, &err), 0);
	assert_int_equal(trace_fit(&t, 1, 1, 1024, &fit, &err), 0);
	assert_int_equal(t.req[0].output_tokens, 256);
	assert_int_equal(t.req[0].prompt_tokens, 50);
	assert_int_equal(fit.n_output_clipped, 1);
	assert_int_equal(fit.n_prompt_clipped, 0);
	assert_int_equal(trace_slice(&t, 10, 0, 0, &err), -1);
	assert_non_null(strstr(err.msg, "no request"));
	assert_int_equal(trace_fit(&t, 0, 1, 1024, &fit, &err), -1);
	trace_free(&t);
}

/* ---- prompts ---- */

static void test_synth(void **state)
{
	(void)state;
	struct synth s;
	struct duet_err err;
	assert_int_equal(synth_init(&s, 7, 3, 512, &err), -1);
	assert_int_equal(synth_init(&s, 7, 32000, 512, &err), 0);
	int64_t ha[] = {1, 2, 3}, hb[] = {1, 2, 9};
	struct trace_req a = {.prompt_tokens = 1500, .n_hash = 3, .hash_ids = ha};
	struct trace_req b = {.prompt_tokens = 1200, .n_hash = 3, .hash_ids = hb};
	struct trace_req c = {.prompt_tokens = 700};
	struct trace_req d = {.prompt_tokens = 700};
	static int pa[1500], pa2[1500], pb[1200], pc[700], pd[700], pc2[700];
	for (size_t i = 0; i < 1500; i++)
		pa[i] = -1;
	synth_prompt(&s, &a, 0, pa);
	synth_prompt(&s, &a, 5, pa2); /* the index does not matter with ids */
	synth_prompt(&s, &b, 1, pb);
	synth_prompt(&s, &c, 2, pc);
	synth_prompt(&s, &d, 3, pd);
	for (int i = 0; i < 1500; i++)
		assert_true(pa[i] >= SYNTH_FIRST_TOKEN && pa[i] < 32000);
	assert_memory_equal(pa, pa2, sizeof pa);
	/* equal ids, equal blocks: the first 1024 tokens are shared */
	assert_memory_equal(pa, pb, 1024 * sizeof(int));
	/* a different id, a different block */
	int same = 0;
	for (int i = 1024; i < 1200; i++)
		same += pa[i] == pb[i];
	assert_true(same < 10);
	/* without ids each request has its own tokens */
	same = 0;
	for (int i = 0; i < 700; i++)
		same += pc[i] == pd[i] || pc[i] == pa[i];
	assert_true(same < 10);
	/* the seed changes everything */
	struct synth s2;
	assert_int_equal(synth_init(&s2, 8, 32000, 512, &err), 0);
	synth_prompt(&s2, &c, 2, pc2);
	same = 0;
	for (int i = 0; i < 700; i++)
		same += pc[i] == pc2[i];
	assert_true(same < 10);
	/* a sweep's first rate has the run's own prompts, the next ones their
	 * own, still sharing the blocks of equal ids within the rate */
	struct synth r0 = synth_for_rate(&s, 0), r1 = synth_for_rate(&s, 1), r2 = synth_for_rate(&s, 2);
	assert_true(r0.seed == s.seed && r1.seed != s.seed && r2.seed != r1.seed);
	synth_prompt(&r1, &c, 2, pc2);
	same = 0;
	for (int i = 0; i < 700; i++)
		same += pc[i] == pc2[i];
	assert_true(same < 10);
	synth_prompt(&r1, &a, 0, pa2);
	synth_prompt(&r1, &b, 1, pb);
	assert_memory_equal(pa2, pb, 1024 * sizeof(int));
	assert_memory_not_equal(pa2, pa, 1024 * sizeof(int));
	/* a scaled block size keeps the sharing aligned */
	struct synth s3;
	assert_int_equal(synth_init(&s3, 7, 32000, 100, &err), 0);
	a.prompt_tokens = 300;
	b.prompt_tokens = 250;
	synth_prompt(&s3, &a, 0, pa);
	synth_prompt(&s3, &b, 1, pb);
	assert_memory_equal(pa, pb, 200 * sizeof(int));
	assert_memory_not_equal(pa + 200, pb + 200, 50 * sizeof(int));
}

/* ---- statistics ---- */

static void test_percentiles(void **state)
{
	(void)state;
	double v[] = {15, 20, 35, 40, 50};
	assert_true(replay_percentile(v, 5, 0) == 15);
	assert_true(replay_percentile(v, 5, 50) == 35);
	assert_true(fabs(replay_percentile(v, 5, 90) - 46) < 1e-12);	/* 40 + 0.6 * 10 */
	assert_true(fabs(replay_percentile(v, 5, 99) - 49.6) < 1e-12); /* 40 + 0.96 * 10 */
	assert_true(replay_percentile(v, 5, 100) == 50);
	assert_true(fabs(replay_percentile(v, 5, 25) - 20) < 1e-12);
	assert_true(replay_percentile(v, 1, 99) == 15);
	assert_true(replay_percentile(v, 0, 50) == 0);
	double w[] = {4, 1, 3, 2};
	struct replay_dist d;
	replay_dist_of(w, 4, &d);
	assert_true(d.mean == 2.5 && d.p50 == 2.5 && d.max == 4);
	assert_true(fabs(d.p90 - 3.7) < 1e-12);
}

static void test_summary(void **state)
{
	(void)state;
	/* three requests: fast, slow between tokens, failed */
	double t0[] = {0.10, 0.12, 0.14, 0.16};
	double t1[] = {1.30, 1.32, 1.90};
	struct replay_result r[3] = {
		{.sched_s = 0, .sent_s = 0, .prompt_tokens = 10, .output_tokens = 4,
		 .status = RS_OK, .n_tok = 4, .tok_s = t0, .done_s = 0.2},
		{.sched_s = 1, .sent_s = 1.001, .prompt_tokens = 20, .output_tokens = 3,
		 .status = RS_OK, .n_tok = 3, .tok_s = t1, .done_s = 2.0},
		{.sched_s = 2, .sent_s = 2.003, .prompt_tokens = 30, .output_tokens = 3,
		 .status = RS_FAILED, .kind = "http_429", .done_s = 2.01},
	};
	struct replay_summary s;
	struct duet_err err;
	assert_int_equal(replay_summarize(r, 3, 0.5, 0.1, &s, &err), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.n_ok, 2);
	assert_int_equal(s.n_failed, 1);
	assert_int_equal(s.n_kinds, 1);
	assert_string_equal(s.kinds[0].kind, "http_429");
	assert_int_equal(s.prompt_tokens, 30);
	assert_int_equal(s.output_tokens, 7);
	assert_true(fabs(s.duration_s - 2.01) < 1e-12);
	assert_true(fabs(s.ttft.p50 - (0.1 + 0.299) / 2) < 1e-12);
	/* gaps: 0.02 x 4 and 0.58 */
	assert_int_equal(s.tbt.n, 5);
	assert_true(fabs(s.tbt.p50 - 0.02) < 1e-9 && fabs(s.tbt.max - 0.58) < 1e-9);
	/* only the first meets TTFT <= 0.5 and its own p99 TBT <= 0.1 */
	assert_int_equal(s.n_slo, 1);
	assert_true(fabs(s.slo_attainment - 1.0 / 3) < 1e-12);
	assert_true(fabs(s.goodput_rps - 1 / 2.01) < 1e-12);
	assert_true(fabs(s.offered_rps - 1.0) < 1e-12);
	assert_true(fabs(s.send_lag.max - 0.003) < 1e-12);
	/* second tokens at 0.12 and 0.319 after sending */
	assert_int_equal(s.t2.n, 2);
	assert_true(fabs(s.t2.p50 - (0.12 + 0.319) / 2) < 1e-12 && fabs(s.t2.max - 0.319) < 1e-12);
	/* the JSON form reads back */
	json_t *j = replay_summary_to_json(&s);
	struct replay_summary b;
	assert_int_equal(replay_summary_from_json(j, &b, &err), 0);
	json_decref(j);
	assert_int_equal(b.n_slo, 1);
	assert_true(fabs(b.t2.max - 0.319) < 1e-12);
	assert_int_equal(b.kinds[0].count, 1);
	assert_true(b.tbt.max == s.tbt.max && b.goodput_rps == s.goodput_rps);
}

/* ---- scheduling against a stub server ---- */

#define STUB_MAX 64
static int cmp_gap(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

#define STUB_GAP_US 5000
static double g_recv[STUB_MAX];
static int g_n_recv;
/* Streams end only once this many requests have arrived (or
 * STUB_HOLD_MAX_US passed): a sender that waited for answers before its
 * next request would stall on it. Their tokens flow as they would, so that
 * the streams' events stay staggered. 0: no hold. */
static int g_hold;
static double g_first_end; /* when the first stream ended, 0 before */
#define STUB_HOLD_MAX_US 10000000
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

struct stub_conn {
	char body[1 << 16];
	size_t n;
};

struct stub_stream {
	int tokens, sent, error, done;
};

static ssize_t stub_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct stub_stream *s = cls;
	if (s->done)
		return MHD_CONTENT_READER_END_OF_STREAM;
	for (int waited = 0; (s->error || s->sent >= s->tokens) && waited < STUB_HOLD_MAX_US;
	     waited += 1000) {
		pthread_mutex_lock(&g_mu);
		int held = g_n_recv < g_hold;
		pthread_mutex_unlock(&g_mu);
		if (!held)
			break;
		usleep(1000);
	}
	usleep(STUB_GAP_US);
	int n;
	if (s->error) {
		n = snprintf(buf, max, "data: {\"error\":{\"message\":\"x\",\"code\":503}}\n\n"
				       "data: [DONE]\n\n");
		s->done = 1;
	} else if (s->sent < s->tokens) {
		n = snprintf(buf, max,
			     "data: {\"choices\":[{\"text\":\"a\",\"index\":0,\"finish_reason\":"
			     "null}]}\n\n");
		s->sent++;
	} else {
		n = snprintf(buf, max,
			     "data: {\"choices\":[{\"text\":\"\",\"index\":0,\"finish_reason\":"
			     "\"length\"}],\"usage\":{\"completion_tokens\":%d}}\n\ndata: [DONE]\n\n",
			     s->sent);
		s->done = 1;
	}
	if (s->done) {
		pthread_mutex_lock(&g_mu);
		if (g_first_end == 0)
			g_first_end = duet_now_s();
		pthread_mutex_unlock(&g_mu);
	}
	return n;
}

/* max_tokens selects the answer: 7 = HTTP 429, 5 = an error event,
 * 4 = two tokens only; anything else = that many tokens. */
static enum MHD_Result stub(void *cls, struct MHD_Connection *c, const char *url,
			    const char *method, const char *version, const char *data,
			    size_t *size, void **con)
{
	(void)cls, (void)url, (void)method, (void)version;
	if (!*con) {
		pthread_mutex_lock(&g_mu);
		if (g_n_recv < STUB_MAX)
			g_recv[g_n_recv++] = duet_now_s();
		pthread_mutex_unlock(&g_mu);
		*con = calloc(1, sizeof(struct stub_conn));
		return MHD_YES;
	}
	struct stub_conn *sc = *con;
	if (*size) {
		size_t k = *size < sizeof sc->body - 1 - sc->n ? *size : sizeof sc->body - 1 - sc->n;
		memcpy(sc->body + sc->n, data, k);
		sc->n += k;
		*size = 0;
		return MHD_YES;
	}
	const char *mt = strstr(sc->body, "\"max_tokens\":");
	int tokens = mt ? atoi(mt + 13) : 1;
	struct MHD_Response *r;
	enum MHD_Result rc;
	if (tokens == 7) {
		static const char msg[] = "{\"error\":{\"message\":\"queue full\"}}";
		r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg,
						    MHD_RESPMEM_PERSISTENT);
		rc = MHD_queue_response(c, 429, r);
	} else {
		struct stub_stream *s = calloc(1, sizeof *s);
		s->tokens = tokens == 4 ? 2 : tokens;
		s->error = tokens == 5;
		r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stub_read, s, free);
		rc = MHD_queue_response(c, 200, r);
	}
	MHD_destroy_response(r);
	return rc;
}

static void stub_done(void *cls, struct MHD_Connection *c, void **con,
		      enum MHD_RequestTerminationCode toe)
{
	(void)cls, (void)c, (void)toe;
	free(*con);
	*con = NULL;
}

static struct MHD_Daemon *stub_start(int *port)
{
	for (*port = 18811; *port < 18900; (*port)++) {
		struct MHD_Daemon *d = MHD_start_daemon(
			MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)*port,
			NULL, NULL, stub, NULL, MHD_OPTION_NOTIFY_COMPLETED, stub_done, NULL,
			MHD_OPTION_END);
		if (d)
			return d;
	}
	fail_msg("no free port for the stub server");
	return NULL;
}

/* How late a send may reach the server, beyond the least delayed one, as
 * a share of the schedule's span (0.6 s here). A share, not a duration: a
 * thread held up 26-29 ms under ASan on a slow host failed the 25 ms this
 * was; a sender that drifted (at 0.75x the rate) or waited for answers
 * would be off by more. */
#define SEND_LATE_SHARE 0.25

static void test_schedule(void **state)
{
	(void)state;
	int port;
	struct MHD_Daemon *d = stub_start(&port);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
	enum { N = 20 };
	struct trace_req q[N];
	memset(q, 0, sizeof q);
	for (int i = 0; i < N; i++) {
		/* uneven gaps, some bursts of two at the same instant */
		q[i].arrival_s = i * 0.06 + (i % 3 == 1 ? -0.06 : 0) + (i % 5) * 0.013;
		q[i].prompt_tokens = 50 + i;
		q[i].output_tokens = 3;
	}
	for (int i = 1; i < N; i++)
		if (q[i].arrival_s < q[i - 1].arrival_s)
			q[i].arrival_s = q[i - 1].arrival_s;
	struct trace t = {.req = q, .n = N, .format = TRACE_PLAIN};
	struct synth s;
	struct duet_err err;
	assert_int_equal(synth_init(&s, 1, 32000, 0, &err), 0);
	struct replay_opts o = {.url = url, .model = "m", .rate_scale = 2, .timeout_s = 30,
				.quiet = 1};
	struct replay_result res[N];
	double gaps[N];
	memset(res, 0, sizeof res);
	pthread_mutex_lock(&g_mu);
	g_n_recv = 0;
	g_first_end = 0;
	g_hold = N;
	pthread_mutex_unlock(&g_mu);
	const double before = duet_now_s();
	assert_int_equal(replay_run(&o, &t, &s, res, &err), 0);
	pthread_mutex_lock(&g_mu);
	g_hold = 0;
	pthread_mutex_unlock(&g_mu);
	assert_int_equal(g_n_recv, N);
	/* Open loop: the stub ended no stream until all N had arrived, and
	 * the replay did not wait (a sender that waits for answers stalls in
	 * the hold; STUB_HOLD_MAX_US then lets a stream end first). */
	assert_true(g_recv[N - 1] < g_first_end);
	double off[N], lo = 0, span = res[N - 1].sched_s - res[0].sched_s;
	for (int i = 0; i < N; i++) {
		assert_int_equal(res[i].status, RS_OK);
		assert_int_equal(res[i].n_tok, 3);
		assert_true(fabs(res[i].sched_s - q[i].arrival_s / 2) < 1e-12);
		/* Never early: the i-th arrival comes after the i-th send, which
		 * is no earlier than the i-th time of the (sorted) schedule, on
		 * a clock that started after `before`. */
		off[i] = (g_recv[i] - before) - res[i].sched_s;
		if (off[i] < 0)
			fail_msg("request %d reached the server %.1f ms before its schedule", i,
				 -off[i] * 1e3);
		lo = i == 0 || off[i] < lo ? off[i] : lo;
		gaps[i] = res[i].tok_s[2] - res[i].tok_s[1];
	}
	for (int i = 0; i < N; i++) {
		double late = off[i] - lo;
		if (late > SEND_LATE_SHARE * span)
			fail_msg("request %d reached the server %.1f ms later than the least delayed "
				 "one, over %.0f%% of the schedule's %.0f ms",
				 i, late * 1e3, SEND_LATE_SHARE * 100, span * 1e3);
	}
	/* Tokens leave the stub STUB_GAP_US apart and are timed one event at a
	 * time. The median gap, not each one: a client thread held up (by a
	 * burst of sends, or ASan) can read two events in one go now and then. */
	qsort(gaps, N, sizeof *gaps, cmp_gap);
	if (gaps[N / 2] < 0.8 * STUB_GAP_US * 1e-6)
		fail_msg("median gap between token events %.2f ms, the stub sends them %d us apart",
			 gaps[N / 2] * 1e3, STUB_GAP_US);
	replay_results_free(res, N);

	/* failures are results, counted by kind */
	struct trace_req bad[4] = {{.prompt_tokens = 5, .output_tokens = 7},
				   {.arrival_s = 0.01, .prompt_tokens = 5, .output_tokens = 5},
				   {.arrival_s = 0.02, .prompt_tokens = 5, .output_tokens = 4},
				   {.arrival_s = 0.03, .prompt_tokens = 5, .output_tokens = 2}};
	struct trace tb = {.req = bad, .n = 4, .format = TRACE_PLAIN};
	struct replay_result rb[4];
	memset(rb, 0, sizeof rb);
	o.rate_scale = 1;
	assert_int_equal(replay_run(&o, &tb, &s, rb, &err), 0);
	assert_string_equal(rb[0].kind, "http_429");
	assert_string_equal(rb[1].kind, "stream_503");
	assert_string_equal(rb[2].kind, "short");
	assert_int_equal(rb[2].n_tok, 2);
	assert_int_equal(rb[3].status, RS_OK);
	struct replay_summary sum;
	assert_int_equal(replay_summarize(rb, 4, 1, 1, &sum, &err), 0);
	assert_int_equal(sum.n_failed, 3);
	assert_int_equal(sum.n_kinds, 3);
	replay_results_free(rb, 4);
	MHD_stop_daemon(d);

	/* nobody listening: a connect error per request, not a failed run */
	struct trace one = {.req = bad + 3, .n = 1, .format = TRACE_PLAIN};
	struct replay_result r1 = {0};
	assert_int_equal(replay_run(&o, &one, &s, &r1, &err), 0);
	assert_string_equal(r1.kind, "connect");
	replay_results_free(&r1, 1);
}

/* ---- end to end: duet up + duet replay ---- */

static double metric(const char *text, const char *name)
{
	const char *p = strstr(text, name);
	if (!p)
		fail_msg("metric %s missing", name);
	return atof(p + strlen(name));
}

static pid_t spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();
	if (pid == 0) {
		FILE *f = freopen(log, "w", stdout);
		(void)f;
		dup2(STDOUT_FILENO, STDERR_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static pid_t g_up = -1;

/* Stops the cluster whether or not the test got to the end. */
static int stop_up(void **state)
{
	(void)state;
	int st;
	if (g_up > 0) {
		kill(g_up, SIGINT);
		waitpid(g_up, &st, 0);
		g_up = -1;
	}
	return 0;
}

static void test_end_to_end(void **state)
{
	(void)state;
	char model[4096], dir[4096], upout[4096], out[4096], rlog[4096], duet[4096];
	char trace[4200], vdir[4096];
	tu_make_model(model, "tiny", DUET_F32, "gguf", 0, 5);
	snprintf(duet, sizeof duet, "%s/duet", tu_build_dir());
	snprintf(vdir, sizeof vdir, "%s", tu_vocab_gguf());
	*strrchr(vdir, '/') = 0;
	snprintf(trace, sizeof trace, "%s/../traces/azure_llm_2023_conv.csv", vdir);
	tu_path(dir, "up");
	tu_path(upout, "up.log");
	tu_path(out, "replay");
	tu_path(rlog, "replay.log");
	/* a port nobody serves on: a stale cluster must not answer for ours */
	char port[16], base[64];
	int pn = 18733 + (int)(getpid() % 200);
	for (;; pn++) {
		snprintf(base, sizeof base, "http://127.0.0.1:%d", pn);
		CURL *probe = curl_easy_init();
		curl_easy_setopt(probe, CURLOPT_URL, base);
		curl_easy_setopt(probe, CURLOPT_CONNECT_ONLY, 1L);
		CURLcode pr = curl_easy_perform(probe);
		curl_easy_cleanup(probe);
		if (pr == CURLE_COULDNT_CONNECT)
			break;
	}
	snprintf(port, sizeof port, "%d", pn);
	char *up[] = {duet, "up", "--model", model, "--port", port, "--dir", dir, NULL};
	pid_t upid = g_up = spawn(up, upout);
	int ready = 0;
	for (int i = 0; i < 600 && !ready; i++) {
		size_t n = 0;
		usleep(100000);
		if (access(upout, R_OK))
			continue;
		char *s = tu_read_file(upout, &n);
		ready = memmem(s, n, "duet up: serving", 16) != NULL;
		free(s);
	}
	assert_true(ready);
	/* the first 50 requests of the conversation trace, 4x faster, lengths
	 * scaled to the tiny model's 512-token context */
	char *rp[] = {duet,	 "replay", "--url", base, "--trace", trace,
		      "--max-requests", "50", "--rate-scale", "4", "--length-scale", "0.2",
		      "--out",	 out,	   "-q",    "--verify", model, NULL};
	pid_t rpid = spawn(rp, rlog);
	int st;
	assert_int_equal(waitpid(rpid, &st, 0), rpid);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		size_t n;
		char *s = tu_read_file(rlog, &n);
		fail_msg("duet replay exited %d:\n%.*s", WEXITSTATUS(st), (int)n, s);
	}
	char sp[4200];
	snprintf(sp, sizeof sp, "%s/summary.json", out);
	json_error_t je;
	json_t *j = json_load_file(sp, 0, &je);
	assert_non_null(j);
	json_int_t n, ok, failed, pt, ot, probes, probe_prompt, lost, verified, wrong;
	assert_int_equal(json_unpack(j, "{s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I},s:I,s:I,s:I}",
				     "requests", &n, "completed", &ok, "failed", &failed,
				     "prompt_tokens", &pt, "output_tokens", &ot, "unloaded", "probes",
				     &probes, "prompt_tokens", &probe_prompt, "lost", &lost,
				     "verified", &verified, "wrong_text", &wrong),
			 0);
	json_decref(j);
	assert_int_equal(n, 50);
	assert_int_equal(ok, 50);
	assert_int_equal(failed, 0);
	assert_int_equal(lost, 0);
	/* every stream equals duet generate's text */
	assert_int_equal(verified, 50);
	assert_int_equal(wrong, 0);
	/* every file and plot is there */
	static const char *files[] = {"requests.csv", "ttft_cdf.csv", "tbt_cdf.csv",
				      "timeline.csv", "ttft_cdf.png", "tbt_cdf.png",
				      "latency_time.png", "throughput_time.png"};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(sp, sizeof sp, "%s/%s", out, files[i]);
		if (access(sp, R_OK))
			fail_msg("%s missing", sp);
	}
	/* the router counted the same requests and tokens (plus the probes) */
	char murl[96], *metrics = NULL;
	long code;
	struct duet_err err;
	snprintf(murl, sizeof murl, "%s/metrics", base);
	if (http_get(murl, NULL, 10, &metrics, &code, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(code, 200);
	assert_non_null(metrics);
	assert_true(metric(metrics, "duet_requests_total{outcome=\"ok\"} ") == ok + probes);
	assert_true(metric(metrics, "duet_requests_total{outcome=\"failed\"} ") == 0);
	assert_true(metric(metrics, "duet_tokens_total{direction=\"in\"} ") ==
		    pt + probes * probe_prompt);
	assert_true(metric(metrics, "duet_tokens_total{direction=\"out\"} ") == ot + probes * 32);
	free(metrics);
	/* --verify against another model's weights: every text differs, exit 4 */
	char other[4096], out2[4096];
	tu_make_model(other, "tiny", DUET_F32, "gguf", 0, 6);
	tu_path(out2, "replay-other");
	char *rp2[] = {duet, "replay", "--url", base, "--trace", trace, "--max-requests", "3",
		       "--length-scale", "0.2", "--probe", "0", "--slo-ttft", "1", "--slo-tbt", "1",
		       "--out", out2, "-q", "--verify", other, NULL};
	rpid = spawn(rp2, rlog);
	assert_int_equal(waitpid(rpid, &st, 0), rpid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 4) {
		size_t n;
		char *s = tu_read_file(rlog, &n);
		fail_msg("duet replay --verify OTHER exited %#x:\n%.*s", st, (int)n, s);
	}
	snprintf(sp, sizeof sp, "%s/summary.json", out2);
	j = json_load_file(sp, 0, &je);
	assert_non_null(j);
	assert_int_equal(json_unpack(j, "{s:I,s:I}", "verified", &verified, "wrong_text", &wrong), 0);
	json_decref(j);
	assert_int_equal(verified, 3);
	assert_int_equal(wrong, 3);
	/* --compare reads the run back */
	char cmp[4096];
	tu_path(cmp, "cmp");
	char *cp[] = {duet, "replay", "--compare", out, out, "--out", cmp, NULL};
	pid_t cpid = spawn(cp, rlog);
	assert_int_equal(waitpid(cpid, &st, 0), cpid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	snprintf(sp, sizeof sp, "%s/tbt_cdf.png", cmp);
	assert_int_equal(access(sp, R_OK), 0);
	kill(upid, SIGINT);
	g_up = -1;
	assert_int_equal(waitpid(upid, &st, 0), upid);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		size_t n;
		char *s = tu_read_file(upout, &n);
		fail_msg("duet up ended with status %#x:\n%.*s", st, (int)n, s);
	}
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_azure),	    cmocka_unit_test(test_mooncake),
		cmocka_unit_test(test_plain),	    cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_slice_fit),   cmocka_unit_test(test_synth),
		cmocka_unit_test(test_percentiles), cmocka_unit_test(test_summary),
		cmocka_unit_test(test_schedule),    cmocka_unit_test_teardown(test_end_to_end, stop_up),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
