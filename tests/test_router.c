/* The router over real HTTP (libcurl) in front of real prefill and decode
 * daemons: completions (text and token-id prompts, both paths, streamed
 * and not) against duet_generate's text, stop strings, the endpoints, and
 * a table of bad requests each answered with the right status and a JSON
 * error while the router goes on serving. */
#include <curl/curl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "engine/forward.h"
#include "engine/generate.h"
#include "engine/tokenizer.h"
#include "engine/vocab.h"
#include "mkmodel/model_random.h"
#include "mkmodel/model_write.h"
#include "net/transport.h"
#include "testutil.h"
#include "text/chat.h"

#define PORT 18431
#define N_NODES 5 /* router, decode-0, prefill-0, decode-1, prefill-1 */

static char model_path[4096], bin_dir[PATH_MAX / 2], base_url[64];
static pid_t pids[N_NODES];
static struct duet_model *M;
static struct duet_engine *E;
static struct duet_kv_pool *KV;

#define API_KEY "sk-duet-test-2"

/* A request to the test router; the body into out (caller frees out->p). */
static long http_key(const char *method, const char *path, const char *body, const char *key,
		     struct tu_buf *out)
{
	char url[256];
	snprintf(url, sizeof url, "%s%s", base_url, path);
	out->p = NULL;
	out->n = 0;
	long status = tu_http(url, method, body, key, NULL, tu_buf_write, out);
	if (!out->p)
		out->p = calloc(1, 1);
	return status;
}

static long http(const char *method, const char *path, const char *body, struct tu_buf *out)
{
	return http_key(method, path, body, API_KEY, out);
}

static char router_ctl[300];
static pid_t spawn(const char *binary, const char *name, char **flags);

static pid_t start_router_with(const char *policy, const char *first_token)
{
	char port[16];
	snprintf(port, sizeof port, "%d", PORT);
	return spawn("duet-router", "router",
		     (char *[]){"--http-port", port, "--control", router_ctl, "--max-body", "65536",
				"--max-tokens", "480", "--api-keys", "sk-duet-test-1," API_KEY,
				"--policy", (char *)policy, "--first-token", (char *)first_token,
				"--log-level", "debug", NULL});
}

static pid_t start_router(void)
{
	return start_router_with("length-aware", "decode");
}

static pid_t spawn(const char *binary, const char *name, char **flags)
{
	char path[PATH_MAX], log[4200], logname[64];
	snprintf(path, sizeof path, "%s/%s", bin_dir, binary);
	snprintf(logname, sizeof logname, "%s.log", name);
	return tu_spawn(path, model_path, flags, tu_path(log, logname), 1);
}

static void reference_eos(const int *prompt, int n, int max_tokens, int ignore_eos,
			  struct tu_gen *out)
{
	tu_greedy(E, KV, M, prompt, n, max_tokens, ignore_eos, out);
}

static void reference(const int *prompt, int n, int max_tokens, struct tu_gen *out)
{
	reference_eos(prompt, n, max_tokens, 0, out);
}

/* A completion's first choice is generate's greedy text for the prompt. */
static void expect_text(json_t *j, const int *prompt, int n, int max_tokens)
{
	struct tu_gen ref;
	reference(prompt, n, max_tokens, &ref);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(j, "choices"), 0), "text")),
			    ref.text);
}

static int setup(void **state)
{
	(void)state;
	snprintf(bin_dir, sizeof bin_dir, "%s", tu_build_dir());
	snprintf(base_url, sizeof base_url, "http://127.0.0.1:%d", PORT);
	/* The tiny shape, with a ChatML chat template. */
	struct duet_vocab v;
	struct duet_random_gen g;
	struct duet_model_spec spec;
	char name[128];
	struct duet_err err;
	tu_path(model_path, "chat-tiny.gguf");
	if (duet_vocab_load_file(&v, tu_vocab_gguf(), &err))
		return -1;
	duet_random_spec(&spec, &g, duet_shape_find("tiny"), DUET_F32, -1, 0, 21, &v, name);
	spec.chat_template = duet_chat_template(DUET_CHAT_CHATML);
	int wrc = duet_write_gguf(model_path, &spec, &err);
	duet_vocab_free(&v);
	if (wrc)
		return -1;
	M = tu_open(model_path);
	struct duet_kv_geom kg = duet_kv_geom_for(M, 0, DUET_KV_DEFAULT);
	struct duet_engine_opts eo = {.n_threads = 1};
	if (duet_kv_pool_create(&KV, &kg, duet_kv_blocks_for(&kg, M->cfg.ctx_len), &err) ||
	    duet_engine_create(&E, M, KV, &eo, &err))
		return -1;
	char ctl[300], kv[300], port[16];
	snprintf(ctl, sizeof ctl, "ipc://%s/router.ipc", tu_tmpdir());
	snprintf(kv, sizeof kv, "ipc://%s/decode.ipc", tu_tmpdir());
	snprintf(port, sizeof port, "%d", PORT);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(router_ctl, sizeof router_ctl, "%s", ctl);
	pids[0] = start_router();
	pids[1] = spawn("duet-decode", "decode",
			(char *[]){"--router", ctl, "--kv-endpoint", kv, "--kv-mb", "16",
				   "--report-ms", "250", "--log-level", "debug", NULL});
	/* Nodes report at the default 250 ms: the failover tests hold them
	 * stopped (test_prefill_failover, while the router places a prompt)
	 * or mostly stopped (test_decode_failover's throttle), and that must
	 * stay inside their liveness window (3 reports) on a busy machine. */
	pids[2] = spawn("duet-prefill", "prefill",
			(char *[]){"--router", ctl, "--report-ms", "250", "--kv-dtype", "f32",
				   "--log-level", "debug", NULL});
	/* Ready when /health says a decode node is up and both nodes show;
	 * then a second decode node, so the first one comes first in the
	 * router's table (failover kills it). */
	for (int round = 0; round < 2; round++) {
		int up = 0;
		for (int i = 0; i < 300 && !up; i++) {
			struct tu_buf b;
			long st = http("GET", "/health", NULL, &b);
			free(b.p);
			http("GET", "/metrics", NULL, &b);
			up = st == 200 && strstr(b.p, "role=\"prefill\"} 1") &&
			     strstr(b.p, "duet_node_up{node=\"decode-0\",role=\"decode\"} 1") &&
			     (round == 0 ||
			      (strstr(b.p, "duet_node_up{node=\"decode-1\",role=\"decode\"} 1") &&
			       strstr(b.p, "duet_node_up{node=\"prefill-1\",role=\"prefill\"} 1")));
			free(b.p);
			if (!up)
				usleep(100000);
		}
		if (!up)
			break;
		if (round == 1)
			return 0;
		char kv1[300];
		snprintf(kv1, sizeof kv1, "ipc://%s/decode1.ipc", tu_tmpdir());
		pids[3] = spawn("duet-decode", "decode-1",
				(char *[]){"--router", ctl, "--kv-endpoint", kv1, "--kv-mb", "16",
					   "--report-ms", "250", "--name", "decode-1", "--log-level",
					   "debug", NULL});
		pids[4] = spawn("duet-prefill", "prefill-1",
				(char *[]){"--router", ctl, "--report-ms", "250", "--kv-dtype", "f16",
					   "--name", "prefill-1", "--log-level", "debug", NULL});
	}
	fprintf(stderr, "the cluster did not come up; its logs:\n");
	const char *logs[] = {"router.log", "decode.log", "prefill.log", "decode-1.log", "prefill-1.log"};
	for (int i = 0; i < 5; i++) {
		char path[4200];
		size_t n;
		tu_path(path, logs[i]);
		if (access(path, R_OK))
			continue;
		char *text = tu_read_file(path, &n);
		fprintf(stderr, "== %s\n%.*s\n", logs[i], (int)(n > 3000 ? 3000 : n), text);
		free(text);
	}
	return -1;
}

/* Daemons a test runs beside the shared cluster, stopped here if the test
 * fails before it stops them itself. */
static pid_t extra_pids[4];

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < 4; i++)
		if (extra_pids[i] > 0) {
			kill(extra_pids[i], SIGCONT);
			kill(extra_pids[i], SIGTERM);
			waitpid(extra_pids[i], NULL, 0);
		}
	for (int i = N_NODES - 1; i >= 0; i--)
		if (pids[i] > 0) {
			kill(pids[i], SIGTERM);
			waitpid(pids[i], NULL, 0);
		}
	curl_global_cleanup();
	duet_engine_destroy(E);
	duet_kv_pool_destroy(KV);
	duet_model_close(M);
	return 0;
}

static char *ids_body(const int *t, int n, int max_tokens, const char *extra)
{
	json_t *arr = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(arr, json_integer(t[i]));
	json_t *j = json_pack("{s:o,s:i,s:f}", "prompt", arr, "max_tokens", max_tokens,
			      "temperature", 0.0);
	if (extra) {
		json_t *x = json_loads(extra, 0, NULL);
		json_object_update(j, x);
		json_decref(x);
	}
	char *s = json_dumps(j, 0);
	json_decref(j);
	return s;
}

static json_t *ok_json(const char *body)
{
	struct tu_buf b;
	long st = http("POST", "/v1/completions", body, &b);
	if (st != 200)
		fail_msg("status %ld: %s", st, b.p);
	json_t *j = json_loads(b.p, 0, NULL);
	free(b.p);
	assert_non_null(j);
	return j;
}

static void test_completion_paths(void **state)
{
	(void)state;
	/* 20 tokens go local (under local-max-prompt), 200 disaggregated. */
	const int lens[] = {1, 20, 200, 400};
	for (int i = 0; i < 4; i++) {
		static int t[512];
		tu_random_prompt(t, lens[i], 50 + (uint64_t)i);
		char *body = ids_body(t, lens[i], 24, NULL);
		json_t *j = ok_json(body);
		free(body);
		struct tu_gen ref;
		reference(t, lens[i], 24, &ref);
		const char *text = json_string_value(json_object_get(
			json_array_get(json_object_get(j, "choices"), 0), "text"));
		assert_non_null(text);
		if (strcmp(text, ref.text) != 0)
			fail_msg("prompt of %d: got '%s', generate gives '%s'", lens[i], text, ref.text);
		json_t *u = json_object_get(j, "usage");
		assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), lens[i]);
		json_decref(j);
	}
	struct tu_buf b;
	assert_int_equal(http("GET", "/metrics", NULL, &b), 200);
	assert_non_null(strstr(b.p, "duet_placements_total{path=\"disaggregated\"} 2"));
	assert_non_null(strstr(b.p, "duet_placements_total{path=\"local\"} 2"));
	free(b.p);
}

/* Reads a server-sent completion stream (modified in place): the text of
 * every chunk (for chat, each delta's content) appended to got, the last
 * finish_reason into finish when given. Fails the test on an error event,
 * a chunk of the wrong kind or a stream without [DONE]; returns the number
 * of chunks. */
static int read_sse(char *stream, int chat, char *got, size_t cap, char *finish, size_t fcap)
{
	int chunks = 0, done = 0;
	size_t len = 0;
	got[0] = 0;
	for (char *line = strtok(stream, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "data: ", 6) != 0)
			continue;
		if (strcmp(line + 6, "[DONE]") == 0) {
			done = 1;
			continue;
		}
		json_t *j = json_loads(line + 6, 0, NULL);
		json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
		const char *object = json_string_value(json_object_get(j, "object"));
		const char *text = json_string_value(
			chat ? json_object_get(json_object_get(ch, "delta"), "content")
			     : json_object_get(ch, "text"));
		if (!ch || !text || !object ||
		    strcmp(object, chat ? "chat.completion.chunk" : "text_completion") != 0)
			fail_msg("stream error or bad chunk: %s", line);
		size_t n = strlen(text);
		if (len + n >= cap)
			fail_msg("stream text longer than %zu bytes", cap);
		memcpy(got + len, text, n + 1);
		len += n;
		const char *f = json_string_value(json_object_get(ch, "finish_reason"));
		if (f && finish)
			snprintf(finish, fcap, "%s", f);
		chunks++;
		json_decref(j);
	}
	if (!done)
		fail_msg("the stream did not end with [DONE]");
	return chunks;
}

static void test_text_prompt_and_stream(void **state)
{
	(void)state;
	const char *prompt = "Once upon a time, in a land far away";
	size_t cap = duet_tokenize_max(strlen(prompt)), n;
	int *t = malloc(sizeof(int) * cap);
	struct duet_err err;
	assert_int_equal(duet_tokenize(&M->vocab, prompt, strlen(prompt), 1, t, cap, &n, &err), 0);
	struct tu_gen ref;
	reference(t, (int)n, 30, &ref);
	free(t);
	struct tu_buf b;
	char body[256];
	snprintf(body, sizeof body,
		 "{\"prompt\":\"%s\",\"max_tokens\":30,\"temperature\":0,\"stream\":true}", prompt);
	assert_int_equal(http("POST", "/v1/completions", body, &b), 200);
	char got[65536], finish[32] = "";
	int chunks = read_sse(b.p, 0, got, sizeof got, finish, sizeof finish);
	free(b.p);
	assert_true(chunks >= 2);
	assert_string_equal(got, ref.text);
	assert_string_equal(finish, "length");
}

static void test_stop_string(void **state)
{
	(void)state;
	static int t[100];
	tu_random_prompt(t, 100, 77);
	struct tu_gen ref;
	reference(t, 100, 40, &ref);
	if (ref.n_text < 12)
		skip();
	/* Stop at a piece from the middle of the reference text. */
	char stop[5];
	memcpy(stop, ref.text + ref.n_text / 2, 4);
	stop[4] = 0;
	char extra[128];
	json_t *s = json_string(stop);
	char *sj = json_dumps(s, JSON_ENCODE_ANY);
	snprintf(extra, sizeof extra, "{\"stop\":[%s]}", sj);
	free(sj);
	json_decref(s);
	char *body = ids_body(t, 100, 40, extra);
	json_t *j = ok_json(body);
	free(body);
	json_t *c = json_array_get(json_object_get(j, "choices"), 0);
	const char *text = json_string_value(json_object_get(c, "text"));
	const char *cut = strstr(ref.text, stop);
	assert_int_equal(strlen(text), (size_t)(cut - ref.text));
	assert_memory_equal(text, ref.text, strlen(text));
	assert_string_equal(json_string_value(json_object_get(c, "finish_reason")), "stop");
	json_decref(j);
}

static void test_endpoints(void **state)
{
	(void)state;
	struct tu_buf b;
	assert_int_equal(http("GET", "/health", NULL, &b), 200);
	free(b.p);
	assert_int_equal(http("GET", "/v1/models", NULL, &b), 200);
	json_t *j = json_loads(b.p, 0, NULL);
	free(b.p);
	assert_string_equal(json_string_value(json_object_get(j, "object")), "list");
	assert_non_null(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id"));
	json_decref(j);
	assert_int_equal(http("GET", "/metrics", NULL, &b), 200);
	assert_non_null(strstr(b.p, "duet_requests_total{outcome=\"ok\"}"));
	assert_non_null(strstr(b.p, "duet_node_up{node=\"decode-0\",role=\"decode\"} 1"));
	assert_non_null(strstr(b.p, "# TYPE duet_ttft_seconds histogram"));
	free(b.p);
	assert_int_equal(http("GET", "/v1/cluster", NULL, &b), 200);
	j = json_loads(b.p, 0, NULL);
	free(b.p);
	assert_int_equal(json_array_size(json_object_get(j, "nodes")), 4);
	assert_string_equal(json_string_value(json_object_get(j, "policy")), "length-aware");
	json_decref(j);
	/* /health needs no key; everything else does. */
	assert_int_equal(http_key("GET", "/health", NULL, NULL, &b), 200);
	free(b.p);
}

/* Counts agree: every completed request is in the e2e histogram, every
 * first token in the TTFT one. */
static long metric(const char *text, const char *name)
{
	/* at the start of a line: "# TYPE name counter" names it too */
	for (const char *p = strstr(text, name); p; p = strstr(p + 1, name))
		if (p == text || p[-1] == '\n' || name[0] == '\n')
			return atol(p + strlen(name));
	return -1;
}

static void test_metrics_agree(void **state)
{
	(void)state;
	struct tu_buf b;
	assert_int_equal(http("GET", "/metrics", NULL, &b), 200);
	long ok = metric(b.p, "duet_requests_total{outcome=\"ok\"} ");
	assert_true(ok >= 5);
	assert_int_equal(metric(b.p, "duet_e2e_seconds_count "), ok);
	assert_int_equal(metric(b.p, "duet_ttft_seconds_count "), ok);
	/* Every completed request was placed once, and again for each
	 * failover or refusal for lack of room (a busy machine makes those). */
	assert_int_equal(metric(b.p, "duet_placements_total{path=\"disaggregated\"} ") +
				 metric(b.p, "duet_placements_total{path=\"local\"} ") -
				 metric(b.p, "\nduet_failovers_total ") - metric(b.p, "duet_requeued_total "),
			 ok);
	free(b.p);
}

static void test_bad_requests(void **state)
{
	(void)state;
	char big[70000];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = 0;
	char huge_body[70100];
	snprintf(huge_body, sizeof huge_body, "{\"prompt\":\"%s\"}", big);
	char long_prompt[8000] = "{\"prompt\":[";
	for (int i = 0; i < 600; i++)
		strcat(long_prompt, i ? ",5" : "5");
	strcat(long_prompt, "]}");
	const struct {
		const char *method, *path, *body;
		long status;
		const char *says;
		const char *key; /* NULL: the good key */
	} cases[] = {
		{"POST", "/v1/completions", "{\"prompt\":\"hi\"}", 401, "API key", ""},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\"}", 401, "API key", "sk-duet-test-3"},
		{"GET", "/v1/models", NULL, 401, "API key", "sk-duet-test"},
		{"GET", "/metrics", NULL, 401, "API key", "sk-duet-test-22"},
		{"POST", "/v1/completions", "{not json", 400, "not valid JSON", NULL},
		{"POST", "/v1/completions", "", 400, "not valid JSON", NULL},
		{"POST", "/v1/completions", "[1,2]", 400, "JSON object", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"bogus\":1}", 400, "unknown field", NULL},
		{"POST", "/v1/completions", "{\"max_tokens\":5}", 400, "prompt must be", NULL},
		{"POST", "/v1/completions", "{\"prompt\":5}", 400, "prompt must be", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"\"}", 400, "prompt must be", NULL},
		{"POST", "/v1/completions", "{\"prompt\":[]}", 400, "prompt must be", NULL},
		{"POST", "/v1/completions", "{\"prompt\":[1,99999999]}", 400, "token id", NULL},
		{"POST", "/v1/completions", "{\"prompt\":[1,-4]}", 400, "token id", NULL},
		{"POST", "/v1/completions", "{\"prompt\":[1,\"a\"]}", 400, "token id", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":-1}", 400, "max_tokens", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":0}", 400, "max_tokens", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":100000}", 400, "max_tokens", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":\"9\"}", 400, "max_tokens", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"temperature\":-1}", 400, "temperature", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"top_p\":0}", 400, "top_p", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"stream\":\"yes\"}", 400, "stream", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"stop\":[3]}", 400, "stop", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"n\":9}", 400, "n must be an integer from 1 to 8", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"top_logprobs\":2}", 400, "a /v1/chat/completions field", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"logprobs\":21}", 400, "logprobs", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"logprobs\":1,\"echo\":true}", 400, "echo with logprobs", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"logit_bias\":{\"99999999\":1}}", 400, "logit_bias", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"logit_bias\":{\"5\":101}}", 400, "logit_bias", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"presence_penalty\":3}", 400, "presence_penalty", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"min_p\":2}", 400, "min_p", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":3,\"max_completion_tokens\":4}", 400, "differ", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"suffix\":\"x\"}", 400, "suffix", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"stream_options\":{\"include_usage\":1}}", 400, "stream_options", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"response_format\":{\"type\":\"yaml\"}}", 400, "response_format", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"string\",\"pattern\":\"a+\"}}}}", 400, "'pattern' is not supported", NULL},
		{"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"type\":\"function\"}]}", 400, "tools", NULL},
		{"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"echo\":true}", 400, "a /v1/completions field", NULL},
		{"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400, "parts are supported", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"prompt\":\"x\"}", 400, "JSON", NULL},
		{"POST", "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":2,\"seed\":-3}", 400, "seed", NULL},
		{"POST", "/v1/completions", long_prompt, 400, "token ids", NULL},
		{"POST", "/v1/completions", "{\"prompt\":[5,5,5],\"max_tokens\":256,\"x\":1}", 400, "unknown", NULL},
		{"POST", "/v1/completions", huge_body, 413, "max-body", NULL},
		{"GET", "/v1/completions", NULL, 405, "POST", NULL},
		{"DELETE", "/health", NULL, 405, "not allowed", NULL},
		{"GET", "/v2/nothing", NULL, 404, "no such", NULL},
		{"POST", "/health", "{}", 405, "POST", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct tu_buf b;
		const char *key = !cases[i].key ? API_KEY : *cases[i].key ? cases[i].key : NULL;
		long st = http_key(cases[i].method, cases[i].path, cases[i].body, key, &b);
		if (st != cases[i].status)
			fail_msg("case %zu: status %ld, want %ld: %s", i, st, cases[i].status, b.p);
		json_t *j = json_loads(b.p, 0, NULL);
		const char *msg = json_string_value(
			json_object_get(json_object_get(j, "error"), "message"));
		if (!msg || !strstr(msg, cases[i].says))
			fail_msg("case %zu: error '%s' lacks '%s'", i, msg ? msg : b.p, cases[i].says);
		json_decref(j);
		free(b.p);
	}
	/* Context: 500 prompt tokens + 100 exceed the 512 of the tiny shape. */
	static int t[500];
	tu_random_prompt(t, 500, 9);
	char *body = ids_body(t, 500, 100, NULL);
	struct tu_buf b;
	assert_int_equal(http("POST", "/v1/completions", body, &b), 400);
	assert_non_null(strstr(b.p, "context"));
	free(b.p);
	free(body);
	/* Still serving. */
	json_t *j = ok_json("{\"prompt\":\"Hello\",\"max_tokens\":4}");
	json_decref(j);
}

/* ---- OpenAI request fields ---- */

/* duet generate's answer with these sampling parameters and format. */
static void sampled_reference(const int *t, int n, int max_tokens, const struct duet_sampling *sp,
			      enum duet_format f, const char *schema, struct tu_gen *out)
{
	static struct duet_gen_params gp;
	memset(&gp, 0, sizeof gp);
	gp.sampling = *sp;
	gp.max_tokens = max_tokens;
	gp.format = f;
	gp.json_schema = schema;
	tu_generate(E, KV, M, t, n, &gp, out);
}

static json_t *choice_n(json_t *j, size_t i)
{
	return json_array_get(json_object_get(j, "choices"), i);
}

static const char *choice_text(json_t *j, size_t i)
{
	const char *t = json_string_value(json_object_get(choice_n(j, i), "text"));
	assert_non_null(t);
	return t;
}

/* Penalties, logit bias, min-p, top-k/top-p and log-probabilities on both
 * paths (local and disaggregated prefill) give duet generate's tokens, and
 * log-probabilities within 1e-3 of its own. */
static void test_sampling_fields(void **state)
{
	(void)state;
	const int lens[] = {20, 200};
	for (int k = 0; k < 2; k++) {
		static int t[256];
		tu_random_prompt(t, lens[k], 300 + (uint64_t)k);
		struct tu_gen greedy;
		reference(t, lens[k], 4, &greedy);
		static struct duet_sampling sp;
		memset(&sp, 0, sizeof sp);
		sp = (struct duet_sampling){.temperature = 0.9f, .top_k = 40, .top_p = 0.95f,
					    .seed = 11, .min_p = 0.05f, .presence_penalty = 0.6f,
					    .frequency_penalty = 0.4f, .repetition_penalty = 1.3f,
					    .n_bias = 2, .logprobs = 1, .top_logprobs = 2};
		/* the greedy first token banned, another pushed up */
		sp.bias[0] = (struct duet_logit_bias){greedy.tokens[0], -100};
		sp.bias[1] = (struct duet_logit_bias){1000 + k, 3};
		struct tu_gen ref;
		sampled_reference(t, lens[k], 24, &sp, DUET_FORMAT_TEXT, NULL, &ref);
		assert_int_not_equal(ref.tokens[0], greedy.tokens[0]);
		char extra[512];
		snprintf(extra, sizeof extra,
			 "{\"temperature\":0.9,\"top_k\":40,\"top_p\":0.95,\"seed\":11,\"min_p\":0.05,"
			 "\"presence_penalty\":0.6,\"frequency_penalty\":0.4,\"repetition_penalty\":1.3,"
			 "\"logit_bias\":{\"%d\":-100,\"%d\":3},\"logprobs\":2}",
			 greedy.tokens[0], 1000 + k);
		char *body = ids_body(t, lens[k], 24, extra);
		json_t *j = ok_json(body);
		free(body);
		if (strcmp(choice_text(j, 0), ref.text) != 0)
			fail_msg("prompt of %d: got '%s', generate gives '%s'", lens[k],
				 choice_text(j, 0), ref.text);
		json_t *lp = json_object_get(choice_n(j, 0), "logprobs");
		json_t *tl = json_object_get(lp, "token_logprobs"), *tops = json_object_get(lp, "top_logprobs");
		assert_int_equal(json_array_size(tl), ref.n);
		for (int i = 0; i < ref.n; i++) {
			double got = json_number_value(json_array_get(tl, (size_t)i));
			if (fabs(got - ref.logprob[i]) > 1e-3)
				fail_msg("token %d: logprob %g, generate's %g", i, got, ref.logprob[i]);
			assert_int_equal(json_object_size(json_array_get(tops, (size_t)i)), 2);
		}
		json_decref(j);
	}
}

/* n samples of each prompt of a list, each its own choice: choice j of a
 * prompt is what a single request with seed + j gives, and the same again
 * on a second run; echo puts the prompt before each text. */
static void test_n_and_prompt_lists(void **state)
{
	(void)state;
	const char *body = "{\"prompt\":[\"Once upon a time\",\"The little dog\"],\"n\":2,"
			   "\"max_tokens\":12,\"temperature\":1,\"seed\":7,\"echo\":true}";
	json_t *a = ok_json(body), *b = ok_json(body);
	assert_int_equal(json_array_size(json_object_get(a, "choices")), 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(json_integer_value(json_object_get(choice_n(a, (size_t)i), "index")), i);
		assert_string_equal(choice_text(a, (size_t)i), choice_text(b, (size_t)i));
		char one[256];
		snprintf(one, sizeof one,
			 "{\"prompt\":\"%s\",\"max_tokens\":12,\"temperature\":1,\"seed\":%d}",
			 i < 2 ? "Once upon a time" : "The little dog", 7 + i % 2);
		json_t *s = ok_json(one);
		const char *p = i < 2 ? "Once upon a time" : "The little dog";
		assert_memory_equal(choice_text(a, (size_t)i), p, strlen(p));
		assert_string_equal(choice_text(a, (size_t)i) + strlen(p), choice_text(s, 0));
		json_decref(s);
	}
	json_t *u = json_object_get(a, "usage");
	int out = (int)json_integer_value(json_object_get(u, "completion_tokens"));
	assert_true(out >= 4 && out <= 48);
	json_decref(a);
	json_decref(b);
	/* max_completion_tokens is max_tokens' other name */
	json_t *m = ok_json("{\"prompt\":\"Hello\",\"max_completion_tokens\":5,\"ignore_eos\":true,"
			    "\"user\":\"u1\",\"metadata\":{\"k\":\"v\"},\"store\":false,"
			    "\"service_tier\":\"auto\"}");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "usage"),
							    "completion_tokens")),
			 5);
	json_decref(m);
}

/* stream_options.include_usage: a last chunk before [DONE] with empty
 * choices and the usage of all of them; chunks name their choice. */
static void test_stream_usage(void **state)
{
	(void)state;
	struct tu_buf b;
	assert_int_equal(http("POST", "/v1/completions",
			      "{\"prompt\":\"Hello there\",\"max_tokens\":6,\"n\":2,\"ignore_eos\":true,"
			      "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
			      &b),
			 200);
	int chunks[2] = {0, 0}, usage_last = 0, done = 0;
	for (char *line = strtok(b.p, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "data: ", 6) != 0)
			continue;
		assert_false(done);
		if (strcmp(line + 6, "[DONE]") == 0) {
			done = 1;
			continue;
		}
		json_t *j = json_loads(line + 6, 0, NULL);
		assert_non_null(j);
		json_t *ch = json_object_get(j, "choices");
		usage_last = json_array_size(ch) == 0;
		if (usage_last) {
			assert_int_equal(json_integer_value(json_object_get(
						 json_object_get(j, "usage"), "completion_tokens")),
					 12);
		} else {
			json_int_t idx = json_integer_value(json_object_get(json_array_get(ch, 0), "index"));
			assert_true(idx == 0 || idx == 1);
			assert_null(json_object_get(j, "usage"));
			chunks[idx]++;
		}
		json_decref(j);
	}
	free(b.p);
	assert_true(done && usage_last);
	assert_int_equal(chunks[0], 7); /* six tokens and the final chunk */
	assert_int_equal(chunks[1], 7);
}

#define SCHEMA "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12}," \
	       "\"age\":{\"type\":\"integer\"},\"pet\":{\"enum\":[\"cat\",\"dog\",null]}," \
	       "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"maxItems\":3}}," \
	       "\"required\":[\"name\",\"age\",\"pet\",\"tags\"],\"additionalProperties\":false}"

/* Characters (code points), as JSON Schema's maxLength counts them. */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* The document matches SCHEMA (the few checks it needs). */
static void check_document(const char *text)
{
	json_error_t je;
	json_t *d = json_loads(text, JSON_DECODE_ANY, &je);
	if (!d)
		fail_msg("not JSON (%s): '%s'", je.text, text);
	json_t *tags = json_object_get(d, "tags"), *pet = json_object_get(d, "pet");
	size_t i;
	json_t *v;
	if (!json_is_object(d) || json_object_size(d) != 4 ||
	    !json_is_string(json_object_get(d, "name")) ||
	    utf8_chars(json_string_value(json_object_get(d, "name"))) > 12 ||
	    !json_is_integer(json_object_get(d, "age")) || !json_is_array(tags) ||
	    json_array_size(tags) > 3 ||
	    !(json_is_null(pet) || (json_is_string(pet) && (!strcmp(json_string_value(pet), "cat") ||
							     !strcmp(json_string_value(pet), "dog")))))
		fail_msg("does not match the schema: '%s'", text);
	json_array_foreach(tags, i, v)
	{
		if (!json_is_boolean(v))
			fail_msg("tag not boolean: '%s'", text);
	}
	json_decref(d);
}

/* response_format json_schema: greedy on both paths is duet generate's
 * document; sampled ones all parse and match the schema. */
static void test_response_format(void **state)
{
	(void)state;
	const int lens[] = {20, 200};
	for (int k = 0; k < 2; k++) {
		static int t[256];
		tu_random_prompt(t, lens[k], 500 + (uint64_t)k);
		static struct duet_sampling sp;
		memset(&sp, 0, sizeof sp);
		sp.top_p = 1;
		struct tu_gen ref;
		sampled_reference(t, lens[k], 250, &sp, DUET_FORMAT_JSON_SCHEMA, SCHEMA, &ref);
		check_document(ref.text);
		char *body = ids_body(t, lens[k], 250,
				      "{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
				      "{\"name\":\"p\",\"schema\":" SCHEMA "}}}");
		json_t *j = ok_json(body);
		free(body);
		assert_string_equal(choice_text(j, 0), ref.text);
		assert_string_equal(json_string_value(json_object_get(choice_n(j, 0), "finish_reason")),
				    "stop");
		json_decref(j);
	}
	for (int i = 0; i < 4; i++) {
		char body[1024];
		snprintf(body, sizeof body,
			 "{\"prompt\":\"Tell me about a person number %d\",\"max_tokens\":250,\"temperature\":1,"
			 "\"seed\":%d,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
			 "{\"name\":\"p\",\"schema\":" SCHEMA "}}}",
			 i, i);
		json_t *j = ok_json(body);
		check_document(choice_text(j, 0));
		json_decref(j);
	}
	json_t *j = ok_json("{\"prompt\":\"x\",\"max_tokens\":200,\"temperature\":0,"
			    "\"response_format\":{\"type\":\"json_object\"}}");
	json_t *d = json_loads(choice_text(j, 0), 0, NULL);
	if (!json_is_object(d)) /* 200 tokens may not close an arbitrary object */
		assert_string_equal(json_string_value(json_object_get(choice_n(j, 0), "finish_reason")),
				    "length");
	json_decref(d);
	json_decref(j);
}

struct victim {
	struct tu_buf b;
	int killed, which; /* which: index into pids */
};

/* The tiny test model decodes 400 tokens in tens of milliseconds, faster
 * than a client can react; stopping both decode nodes most of the time
 * slows them enough to kill one mid-stream. */
static volatile int throttling;

static void *throttle(void *arg)
{
	(void)arg;
	while (throttling) {
		for (int i = 1; i < N_NODES; i += 2)
			if (pids[i] > 0)
				kill(pids[i], SIGSTOP);
		usleep(20000);
		for (int i = 1; i < N_NODES; i += 2)
			if (pids[i] > 0)
				kill(pids[i], SIGCONT);
		usleep(1000);
	}
	return NULL;
}

/* The node (index into pids; decode nodes, or prefill nodes when prefill
 * is set) whose debug log shows it took a prompt of this many tokens. */
static int serving_node(int n_prompt, int prefill)
{
	const int idx[2] = {prefill ? 2 : 1, prefill ? 4 : 3};
	const char *logs[2] = {prefill ? "prefill.log" : "decode.log",
			       prefill ? "prefill-1.log" : "decode-1.log"};
	char want[64];
	snprintf(want, sizeof want, prefill ? "queued %d prompt tokens" : "local prefill of %d tokens",
		 n_prompt);
	for (int i = 0; i < 2; i++) {
		char path[4200];
		size_t n;
		char *text = tu_read_file(tu_path(path, logs[i]), &n);
		text = realloc(text, n + 1);
		text[n] = 0;
		int hit = strstr(text, want) != NULL;
		free(text);
		if (hit)
			return idx[i];
	}
	return -1;
}

static size_t on_stream(char *d, size_t sz, size_t n, void *ctx)
{
	struct victim *v = ctx;
	tu_buf_write(d, sz, n, &v->b);
	int chunks = 0;
	for (const char *p = v->b.p; (p = strstr(p, "data: ")); p++)
		chunks++;
	if (!v->killed && chunks >= 3) {
		v->which = serving_node(21, 0);
		if (v->which > 0) {
			pid_t pid = pids[v->which];
			pids[v->which] = -pid; /* out of the throttle's hands */
			kill(pid, SIGKILL);    /* mid-stream */
			v->killed = 1;
			throttling = 0;
		}
	}
	return sz * n;
}

/* kill -9 the decode node in the middle of a stream: the router places the
 * request again (prompt + the tokens already sent) on the other decode
 * node and the client gets exactly the uninterrupted text. */
static void test_decode_failover(void **state)
{
	(void)state;
	static int t[21]; /* a length no other test sends */
	tu_random_prompt(t, 21, 4242);
	char *body = ids_body(t, 21, 400, "{\"stream\":true,\"ignore_eos\":true}");
	struct victim v = {{NULL, 0}, 0, 0};
	char url[128];
	snprintf(url, sizeof url, "%s/v1/completions", base_url);
	pthread_t th;
	throttling = 1;
	pthread_create(&th, NULL, throttle, NULL);
	long status = tu_http(url, "POST", body, API_KEY, NULL, on_stream, &v);
	throttling = 0;
	pthread_join(th, NULL);
	for (int i = 1; i < N_NODES; i += 2)
		if (pids[i] > 0)
			kill(pids[i], SIGCONT);
	assert_int_equal(status, 200);
	free(body);
	if (!v.killed)
		fail_msg("the stream ended before the kill: %.300s", v.b.p ? v.b.p : "(nothing)");
	waitpid(-pids[v.which], NULL, 0);
	pids[v.which] = 0;
	char got[65536];
	read_sse(v.b.p, 0, got, sizeof got, NULL, 0);
	free(v.b.p);
	struct tu_gen ref;
	reference_eos(t, 21, 400, 1, &ref);
	assert_string_equal(got, ref.text);
	struct tu_buf b;
	assert_int_equal(http("GET", "/metrics", NULL, &b), 200);
	assert_true(metric(b.p, "\nduet_failovers_total ") >= 1);
	free(b.p);
}

/* The text duet_generate makes from a rendered chat. */
static void chat_reference(const struct duet_chat_msg *m, int n, int max_tokens,
			   struct tu_gen *ref)
{
	char *text;
	struct duet_err err;
	assert_int_equal(duet_chat_render(DUET_CHAT_CHATML, m, n, &text, &err), 0);
	size_t cap = duet_tokenize_max(strlen(text)), nt;
	int *t = malloc(sizeof(int) * cap);
	assert_int_equal(duet_tokenize(&M->vocab, text, strlen(text), 1, t, cap, &nt, &err), 0);
	reference(t, (int)nt, max_tokens, ref);
	free(t);
	free(text);
}

static void test_chat(void **state)
{
	(void)state;
	const struct duet_chat_msg m[] = {{"system", "You are terse."},
					  {"user", "Name a color."},
					  {"assistant", "Blue."},
					  {"user", "Another?"}};
	struct tu_gen ref;
	chat_reference(m, 4, 20, &ref);
	const char *body = "{\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
			   "{\"role\":\"user\",\"content\":\"Name a color.\"},"
			   "{\"role\":\"assistant\",\"content\":\"Blue.\"},"
			   "{\"role\":\"user\",\"content\":\"Another?\"}],"
			   "\"max_tokens\":20,\"temperature\":0%s}";
	char req[1024];
	snprintf(req, sizeof req, body, "");
	struct tu_buf b;
	long st = http("POST", "/v1/chat/completions", req, &b);
	if (st != 200)
		fail_msg("status %ld: %s", st, b.p);
	json_t *j = json_loads(b.p, 0, NULL);
	free(b.p);
	assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
	json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
	assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
	assert_string_equal(json_string_value(json_object_get(msg, "content")), ref.text);
	json_decref(j);
	/* Streamed: deltas add up to the same answer. */
	snprintf(req, sizeof req, body, ",\"stream\":true");
	assert_int_equal(http("POST", "/v1/chat/completions", req, &b), 200);
	char got[65536];
	read_sse(b.p, 1, got, sizeof got, NULL, 0);
	free(b.p);
	assert_string_equal(got, ref.text);
	/* Bad chats. */
	const char *bad[] = {"{\"messages\":[]}", "{\"messages\":\"hi\"}",
			     "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}",
			     "{\"messages\":[{\"role\":\"user\"}]}",
			     "{\"prompt\":\"hi\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		st = http("POST", "/v1/chat/completions", bad[i], &b);
		if (st != 400 || !strstr(b.p, "\"error\""))
			fail_msg("bad chat %zu: status %ld: %s", i, st, b.p);
		free(b.p);
	}
}

/* The router restarts: the nodes register again by themselves and the
 * next request is served. */
static void restart_router(const char *policy, const char *first_token)
{
	kill(pids[0], SIGTERM);
	int st;
	assert_int_equal(waitpid(pids[0], &st, 0), pids[0]);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	pids[0] = start_router_with(policy, first_token);
	int up = 0;
	for (int i = 0; i < 300 && !up; i++) {
		struct tu_buf b;
		if (http("GET", "/metrics", NULL, &b) == 200)
			up = strstr(b.p, "duet_node_up{node=\"decode-0\",role=\"decode\"} 1") &&
			     strstr(b.p, "duet_node_up{node=\"decode-1\",role=\"decode\"} 1") &&
			     strstr(b.p, "duet_node_up{node=\"prefill-0\",role=\"prefill\"} 1") &&
			     strstr(b.p, "duet_node_up{node=\"prefill-1\",role=\"prefill\"} 1");
		free(b.p);
		if (!up)
			usleep(100000);
	}
	assert_true(up);
}

/* Streamed greedy text of short and long prompts equals generate's. */
static void stream_matches(int n, uint64_t seed)
{
	static int t[512];
	tu_random_prompt(t, n, seed);
	char *body = ids_body(t, n, 16, "{\"stream\":true}");
	struct tu_buf b;
	assert_int_equal(http("POST", "/v1/completions", body, &b), 200);
	free(body);
	char got[65536];
	read_sse(b.p, 0, got, sizeof got, NULL, 0);
	free(b.p);
	struct tu_gen ref;
	reference(t, n, 16, &ref);
	assert_string_equal(got, ref.text);
}

/* The router restarts (once per policy): the nodes register again by
 * themselves, and every policy streams generate's text, with handed-over
 * first tokens released by the prefill node's word, then (the default, as
 * every other test runs) held until the decode node has the sequence:
 * failover also covers a held token whose decode node died. */
static void test_router_restart_policies(void **state)
{
	(void)state;
	const char *policies[] = {"round-robin", "least-loaded", "colocated", "length-aware",
				  "length-aware"};
	for (int p = 0; p < 5; p++) {
		const char *first = p == 4 ? "decode" : "prefill";
		restart_router(policies[p], first);
		stream_matches(10, 1000 + (uint64_t)p);
		stream_matches(300, 2000 + (uint64_t)p);
		struct tu_buf b;
		assert_int_equal(http("GET", "/v1/cluster", NULL, &b), 200);
		json_t *j = json_loads(b.p, 0, NULL);
		assert_string_equal(json_string_value(json_object_get(j, "policy")), policies[p]);
		assert_string_equal(json_string_value(json_object_get(j, "first_token")), first);
		json_decref(j);
		free(b.p);
	}
	/* A held first token that is also the last one. */
	static int t[300];
	tu_random_prompt(t, 300, 2100);
	char *body = ids_body(t, 300, 1, NULL);
	json_t *j = ok_json(body);
	free(body);
	expect_text(j, t, 300, 1);
	json_decref(j);
}

struct conc {
	int id;
	int ok;
};

static void *one_stream(void *arg)
{
	struct conc *c = arg;
	static int t[32][512];
	int n = 5 + c->id * 13;
	tu_random_prompt(t[c->id], n, 5000 + (uint64_t)c->id);
	char *body = ids_body(t[c->id], n, 12, "{\"stream\":true}");
	struct tu_buf b;
	long st = http("POST", "/v1/completions", body, &b);
	free(body);
	c->ok = st == 200 && strstr(b.p, "data: [DONE]") && !strstr(b.p, "\"error\"");
	free(b.p);
	return NULL;
}

/* 32 streams at once; /metrics counts exactly what was sent. */
static void test_concurrent_streams(void **state)
{
	(void)state;
	struct tu_buf b;
	long ok0 = -1, in0 = 0, out0 = 0;
	/* The previous test's last request may still be ending in the core
	 * (counted after its client had its answer): the baseline is taken
	 * once two reads agree. */
	for (int k = 0; k < 50; k++) {
		assert_int_equal(http("GET", "/metrics", NULL, &b), 200);
		long ok = metric(b.p, "duet_requests_total{outcome=\"ok\"} ");
		in0 = metric(b.p, "duet_tokens_total{direction=\"in\"} ");
		out0 = metric(b.p, "duet_tokens_total{direction=\"out\"} ");
		free(b.p);
		if (ok == ok0)
			break;
		ok0 = ok;
		usleep(200000);
	}
	pthread_t th[32];
	struct conc c[32];
	long want_in = 0;
	for (int i = 0; i < 32; i++) {
		c[i] = (struct conc){i, 0};
		want_in += 5 + i * 13;
		pthread_create(&th[i], NULL, one_stream, &c[i]);
	}
	for (int i = 0; i < 32; i++) {
		pthread_join(th[i], NULL);
		assert_true(c[i].ok);
	}
	assert_int_equal(http("GET", "/metrics", NULL, &b), 200);
	assert_int_equal(metric(b.p, "duet_requests_total{outcome=\"ok\"} ") - ok0, 32);
	assert_int_equal(metric(b.p, "duet_tokens_total{direction=\"in\"} ") - in0, want_in);
	assert_int_equal(metric(b.p, "duet_tokens_total{direction=\"out\"} ") - out0, 32 * 12);
	free(b.p);
}

struct bg_req {
	char *body;
	struct tu_buf b;
	_Atomic long status; /* the HTTP status once the stream has ended */
};

static void *bg_post(void *arg)
{
	struct bg_req *q = arg;
	q->status = http("POST", "/v1/completions", q->body, &q->b);
	return NULL;
}

/* kill -9 the prefill node computing a prompt: the router places the
 * request again (the decode node frees the partial KV) and the client gets
 * exactly the reference text. */
/* The prefill node (index into pids) the router's log says it placed a
 * prompt of this many tokens on, or -1 while it has not. */
static int placed_on_prefill(int n_prompt)
{
	char path[4200], want[64];
	size_t n;
	snprintf(want, sizeof want, "%d prompt tokens: disaggregated on ", n_prompt);
	char *text = tu_read_file(tu_path(path, "router.log"), &n);
	const char *at = text ? strstr(text, want) : NULL;
	const char *after = at ? strstr(at, " after ") : NULL;
	int which = -1;
	if (after && strchr(after, '(')) {
		after += strlen(" after ");
		/* pids[2] runs under the default name, pids[4] as prefill-1 */
		if (strncmp(after, "prefill-1 (", 11) == 0)
			which = 4;
		else if (strncmp(after, "prefill-0 (", 11) == 0)
			which = 2;
	}
	free(text);
	return which;
}

/* kill -9 the prefill node a prompt was placed on, before it could look at
 * it: both prefill nodes are stopped while the router places the request,
 * the chosen one is killed and the other resumed, so the request must go
 * to the other however fast this machine prefills. */
static void test_prefill_failover(void **state)
{
	(void)state;
	struct tu_buf b;
	assert_int_equal(http("GET", "/metrics", NULL, &b), 200);
	long before = metric(b.p, "\nduet_failovers_total ");
	free(b.p);
	static int t[401]; /* a length no other test sends; long: disaggregated */
	tu_random_prompt(t, 401, 31337);
	struct bg_req q = {ids_body(t, 401, 30, NULL), {NULL, 0}, 0};
	for (int i = 2; i < N_NODES; i += 2)
		if (pids[i] > 0)
			kill(pids[i], SIGSTOP);
	pthread_t th;
	pthread_create(&th, NULL, bg_post, &q);
	int victim = -1;
	long long end = duet_now_us() + 20000000LL;
	while ((victim = placed_on_prefill(401)) < 0 && duet_now_us() < end)
		usleep(1000);
	if (victim > 0) {
		pid_t pid = pids[victim];
		pids[victim] = -pid;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		pids[victim] = 0;
	}
	for (int i = 2; i < N_NODES; i += 2)
		if (pids[i] > 0)
			kill(pids[i], SIGCONT);
	pthread_join(th, NULL);
	if (victim < 0) {
		char path[4200];
		size_t n;
		char *text = tu_read_file(tu_path(path, "router.log"), &n);
		const char *at = text ? strstr(text, "401 prompt tokens") : NULL;
		fail_msg("the router did not place the prompt on a prefill node: %.300s",
			 at ? at : "(no placement in router.log)");
	}
	if (q.status != 200)
		fail_msg("status %ld: %s", q.status, q.b.p);
	json_t *j = json_loads(q.b.p, 0, NULL);
	free(q.b.p);
	free(q.body);
	expect_text(j, t, 401, 30);
	json_decref(j);
	assert_int_equal(http("GET", "/metrics", NULL, &b), 200);
	assert_true(metric(b.p, "\nduet_failovers_total ") > before);
	free(b.p);
}

struct qreq {
	const char *url;
	long status;
	int tokens;
};

static void *queue_post(void *arg)
{
	struct qreq *q = arg;
	static int t[20];
	tu_random_prompt(t, 20, 4321);
	char *body = ids_body(t, 20, 480, "{\"ignore_eos\":true}");
	struct tu_buf b = {NULL, 0};
	q->status = tu_http(q->url, "POST", body, NULL, NULL, tu_buf_write, &b);
	json_t *j = b.p ? json_loads(b.p, 0, NULL) : NULL;
	q->tokens = (int)json_integer_value(
		json_object_get(json_object_get(j, "usage"), "completion_tokens"));
	json_decref(j);
	free(b.p);
	free(body);
	return NULL;
}

/* The router-q's /metrics, whole. */
static char *queue_metrics(const char *url)
{
	struct tu_buf b = {NULL, 0};
	if (tu_http(url, "GET", NULL, NULL, NULL, tu_buf_write, &b) != 200) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* A second, small cluster: a decode node whose 1 MB pool of f32 rows
 * holds four requests of 500 tokens (128 blocks of 16), and a router with
 * a queue of one. Of six requests sent at once four run, one waits for room and then
 * runs, one is refused (429). */
static void test_queue(void **state)
{
	(void)state;
	char ctl[300], kv[300], port[16];
	snprintf(ctl, sizeof ctl, "ipc://%s/router-q.ipc", tu_tmpdir());
	snprintf(kv, sizeof kv, "ipc://%s/decode-q.ipc", tu_tmpdir());
	snprintf(port, sizeof port, "%d", PORT + 1);
	pid_t rq = spawn("duet-router", "router-q",
			 (char *[]){"--http-port", port, "--control", ctl, "--max-tokens", "480",
				    "--max-queue", "1", "--queue-timeout-ms", "30000", NULL});
	pid_t dq = spawn("duet-decode", "decode-q",
			 (char *[]){"--router", ctl, "--kv-endpoint", kv, "--kv-mb", "1",
				    "--kv-dtype", "f32", "--report-ms", "1000", "--name", "decode-q",
				    NULL});
	char url[128], health[128], metrics[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/completions", PORT + 1);
	snprintf(health, sizeof health, "http://127.0.0.1:%d/health", PORT + 1);
	snprintf(metrics, sizeof metrics, "http://127.0.0.1:%d/metrics", PORT + 1);
	long st = 0;
	for (int k = 0; k < 300 && st != 200; k++) {
		struct tu_buf b = {NULL, 0};
		st = tu_http(health, "GET", NULL, NULL, NULL, tu_buf_write, &b);
		free(b.p);
		if (st != 200)
			usleep(100000);
	}
	assert_int_equal(st, 200);
	/* A load report with the pool's size. */
	char *m = NULL;
	for (int k = 0; k < 300; k++) {
		free(m);
		m = queue_metrics(metrics);
		if (m && metric(m, "duet_node_kv_blocks_free{node=\"decode-q\"} ") > 0)
			break;
		usleep(20000);
	}
	assert_true(m && metric(m, "duet_node_kv_blocks_free{node=\"decode-q\"} ") > 0);
	free(m);
	/* Hold the decode node still until the router has placed four, queued
	 * one and refused one (within its 3 x 1 s liveness window), so none can
	 * finish and make room early however fast this machine decodes. */
	kill(dq, SIGSTOP);
	extra_pids[0] = rq;
	extra_pids[1] = dq;
	struct qreq q[6];
	pthread_t th[6];
	for (int i = 0; i < 6; i++) {
		q[i] = (struct qreq){url, 0, 0};
		pthread_create(&th[i], NULL, queue_post, &q[i]);
	}
	for (int k = 0; k < 100; k++) {
		m = queue_metrics(metrics);
		int settled = m && metric(m, "duet_requests_total{outcome=\"rejected\"} ") == 1 &&
			      metric(m, "duet_queue_depth ") == 1;
		free(m);
		if (settled)
			break;
		usleep(10000);
	}
	kill(dq, SIGCONT);
	int ok = 0, refused = 0;
	for (int i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		if (q[i].status == 200 && q[i].tokens == 480)
			ok++;
		else if (q[i].status == 429)
			refused++;
		else
			fail_msg("request %d: status %ld, %d tokens", i, q[i].status, q[i].tokens);
	}
	assert_int_equal(ok, 5);
	assert_int_equal(refused, 1);
	kill(dq, SIGTERM);
	kill(rq, SIGTERM);
	int s1, s2;
	waitpid(dq, &s1, 0);
	waitpid(rq, &s2, 0);
	extra_pids[0] = extra_pids[1] = 0;
	assert_true(WIFEXITED(s1) && WEXITSTATUS(s1) == 0);
	assert_true(WIFEXITED(s2) && WEXITSTATUS(s2) == 0);
}

/* A POST to url; status, the Retry-After header (0: none) and the body. */
static size_t retry_header(char *d, size_t sz, size_t n, void *ctx)
{
	if (sz * n > 13 && !strncasecmp(d, "Retry-After:", 12))
		*(int *)ctx = atoi(d + 12);
	return sz * n;
}

static long post_retry(const char *url, const char *body, int *retry, struct tu_buf *out)
{
	CURL *c = curl_easy_init();
	assert_non_null(c);
	*retry = 0;
	out->p = NULL;
	out->n = 0;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tu_buf_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, retry_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, retry);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	long status = 0;
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	return status;
}

struct long_req {
	const char *url;
	long status;
};

static void *post_long(void *arg)
{
	struct long_req *q = arg;
	static int t[400];
	tu_random_prompt(t, 400, 77);
	char *body = ids_body(t, 400, 4, NULL);
	struct tu_buf b = {NULL, 0};
	q->status = tu_http(q->url, "POST", body, NULL, NULL, tu_buf_write, &b);
	free(b.p);
	free(body);
	return NULL;
}

/* Early rejection: with 1600 prompt tokens of local prefill queued on the
 * only decode node (held still, so the queue is exactly what the router
 * placed), a 40-token request whose TTFT objective its own 5 chunks meet
 * but the 205 chunks ahead do not is answered 429 with Retry-After at
 * once, streamed or not; the objective is set from the step the router
 * itself predicts (/v1/cluster), so the case holds on any CPU. */
static void test_early_reject(void **state)
{
	(void)state;
	char ctl[300], kv[300], port[16], base[64], url[128];
	snprintf(ctl, sizeof ctl, "ipc://%s/router-s.ipc", tu_tmpdir());
	snprintf(kv, sizeof kv, "ipc://%s/decode-s.ipc", tu_tmpdir());
	snprintf(port, sizeof port, "%d", PORT + 2);
	snprintf(base, sizeof base, "http://127.0.0.1:%d", PORT + 2);
	snprintf(url, sizeof url, "%s/v1/completions", base);
	pid_t rs = spawn("duet-router", "router-s",
			 (char *[]){"--http-port", port, "--control", ctl, "--policy", "colocated",
				    "--node-timeout-ms", "60000", "--log-level", "debug", NULL});
	pid_t ds = spawn("duet-decode", "decode-s",
			 (char *[]){"--router", ctl, "--kv-endpoint", kv, "--max-batch-tokens", "8",
				    "--report-ms", "50", "--name", "decode-s", NULL});
	extra_pids[2] = rs;
	extra_pids[3] = ds;
	/* Served once, so that the node has measured steps and reported them. */
	static int t[40];
	tu_random_prompt(t, 40, 78);
	char *warm = ids_body(t, 20, 4, NULL);
	long st = 0;
	for (int k = 0; k < 300 && st != 200; k++) {
		struct tu_buf b = {NULL, 0};
		st = tu_http(url, "POST", warm, NULL, NULL, tu_buf_write, &b);
		free(b.p);
		if (st != 200)
			usleep(100000);
	}
	free(warm);
	assert_int_equal(st, 200);
	double chunk_ms = -1;
	char cl[128];
	snprintf(cl, sizeof cl, "%s/v1/cluster", base);
	for (int k = 0; k < 200 && chunk_ms <= 0; k++) {
		struct tu_buf b = {NULL, 0};
		json_t *j = tu_http(cl, "GET", NULL, NULL, NULL, tu_buf_write, &b) == 200
				    ? json_loads(b.p, 0, NULL)
				    : NULL;
		free(b.p);
		json_t *m = json_object_get(json_array_get(json_object_get(j, "nodes"), 0), "step_model");
		if (json_integer_value(json_object_get(m, "steps")) > 0 &&
		    json_integer_value(json_object_get(json_array_get(json_object_get(j, "nodes"), 0),
						       "running")) == 0)
			chunk_ms = json_real_value(json_object_get(m, "prefill_chunk_step_ms"));
		json_decref(j);
		if (chunk_ms <= 0)
			usleep(20000);
	}
	assert_true(chunk_ms > 0);
	kill(ds, SIGSTOP);
	/* A report already on its way would replace the router's count of
	 * what it placed since: let it land first. */
	usleep(300000);
	struct long_req lr[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		lr[i] = (struct long_req){url, 0};
		pthread_create(&th[i], NULL, post_long, &lr[i]);
	}
	char mu[128];
	snprintf(mu, sizeof mu, "%s/metrics", base);
	for (int k = 0; k < 300; k++) {
		char *m = queue_metrics(mu);
		int placed = m && metric(m, "duet_placements_total{path=\"local\"} ") == 5;
		free(m);
		if (placed)
			break;
		usleep(10000);
	}
	/* 40 tokens: 5 chunks of its own, 205 with the queue: an objective of
	 * 20 chunk steps sits between. */
	char extra[96];
	snprintf(extra, sizeof extra, "{\"slo_ttft_ms\":%d}", (int)(20 * chunk_ms) + 1);
	char *body = ids_body(t, 40, 4, extra);
	snprintf(extra, sizeof extra, "{\"slo_ttft_ms\":%d,\"stream\":true}", (int)(20 * chunk_ms) + 1);
	char *sbody = ids_body(t, 40, 4, extra);
	int retry = 0;
	struct tu_buf b;
	st = post_retry(url, body, &retry, &b);
	if (st != 429)
		fail_msg("status %ld: %s", st, b.p ? b.p : "");
	assert_true(retry >= 1);
	assert_non_null(strstr(b.p, "objective"));
	free(b.p);
	st = post_retry(url, sbody, &retry, &b);
	assert_int_equal(st, 429);
	assert_true(retry >= 1);
	free(b.p);
	free(body);
	free(sbody);
	kill(ds, SIGCONT);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(lr[i].status, 200);
	}
	char *m = queue_metrics(mu);
	assert_non_null(m);
	assert_int_equal(metric(m, "duet_early_rejections_total "), 2);
	free(m);
	kill(ds, SIGTERM);
	kill(rs, SIGTERM);
	int s1, s2;
	waitpid(ds, &s1, 0);
	waitpid(rs, &s2, 0);
	extra_pids[2] = extra_pids[3] = 0;
	assert_true(WIFEXITED(s1) && WEXITSTATUS(s1) == 0);
	assert_true(WIFEXITED(s2) && WEXITSTATUS(s2) == 0);
}

/* The step model a decode node reports before it has served anything:
 * with calibration (the default) the two samples measured at start and
 * the steps they predict; with --calibrate=false none, so the router
 * knows nothing of its steps. */
static void test_calibrated_step_model(void **state)
{
	(void)state;
	char ctl[300], kv1[300], kv2[300], port[16], cl[128];
	snprintf(ctl, sizeof ctl, "ipc://%s/router-c.ipc", tu_tmpdir());
	snprintf(kv1, sizeof kv1, "ipc://%s/decode-c1.ipc", tu_tmpdir());
	snprintf(kv2, sizeof kv2, "ipc://%s/decode-c2.ipc", tu_tmpdir());
	snprintf(port, sizeof port, "%d", PORT + 3);
	snprintf(cl, sizeof cl, "http://127.0.0.1:%d/v1/cluster", PORT + 3);
	pid_t rs = spawn("duet-router", "router-c",
			 (char *[]){"--http-port", port, "--control", ctl, NULL});
	pid_t d1 = spawn("duet-decode", "decode-c1",
			 (char *[]){"--router", ctl, "--kv-endpoint", kv1, "--max-batch-tokens", "16",
				    "--report-ms", "50", "--name", "decode-c1", NULL});
	pid_t d2 = spawn("duet-decode", "decode-c2",
			 (char *[]){"--router", ctl, "--kv-endpoint", kv2, "--report-ms", "50",
				    "--calibrate=false", "--name", "decode-c2", NULL});
	extra_pids[0] = rs;
	extra_pids[1] = d1;
	extra_pids[2] = d2;
	int seen = 0;
	for (int k = 0; k < 300 && seen != 3; k++) {
		struct tu_buf b = {NULL, 0};
		json_t *j = tu_http(cl, "GET", NULL, NULL, NULL, tu_buf_write, &b) == 200
				    ? json_loads(b.p, 0, NULL)
				    : NULL;
		free(b.p);
		size_t i;
		json_t *n;
		json_array_foreach(json_object_get(j, "nodes"), i, n) {
			const char *name = json_string_value(json_object_get(n, "name"));
			json_t *m = json_object_get(n, "step_model");
			if (name && !strcmp(name, "decode-c1") &&
			    json_integer_value(json_object_get(m, "steps")) > 0) {
				assert_int_equal(json_integer_value(json_object_get(m, "steps")), 2);
				/* (only that the measured steps are there: on the
				 * tests' tiny model a 16-token chunk can time below a
				 * decode step, so the sign of a prompt token's cost is
				 * the CPU's noise, not a property to assert) */
				double chunk = json_real_value(json_object_get(m, "prefill_chunk_step_ms"));
				double step = json_real_value(json_object_get(m, "next_step_ms"));
				assert_non_null(json_object_get(m, "per_prefill_token_ms"));
				if (!(chunk > 0 && step > 0))
					fail_msg("calibrated model: chunk step %.3f, decode step %.3f", chunk,
						 step);
				seen |= 1;
			}
			if (name && !strcmp(name, "decode-c2")) {
				if (json_integer_value(json_object_get(m, "steps")) > 0)
					fail_msg("decode-c2 reports fitted steps without calibration");
				seen |= 2;
			}
		}
		json_decref(j);
		if (seen != 3)
			usleep(20000);
	}
	assert_int_equal(seen, 3);
	for (int i = 0; i < 3; i++) {
		int st;
		kill(extra_pids[i], SIGTERM);
		waitpid(extra_pids[i], &st, 0);
		extra_pids[i] = 0;
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
}

/* /health: 503 once no decode node is alive, 200 again when one is back. */
static void test_health_follows_decode_nodes(void **state)
{
	(void)state;
	for (int i = 1; i < N_NODES; i += 2)
		if (pids[i] > 0)
			kill(pids[i], SIGSTOP);
	long st = 200;
	for (int k = 0; k < 100 && st == 200; k++) {
		struct tu_buf b;
		st = http("GET", "/health", NULL, &b);
		free(b.p);
		if (st == 200)
			usleep(50000);
	}
	/* Going on before asserting: a node left stopped would fail every
	 * later test. */
	for (int i = 1; i < N_NODES; i += 2)
		if (pids[i] > 0)
			kill(pids[i], SIGCONT);
	assert_int_equal(st, 503);
	for (int k = 0; k < 100 && st != 200; k++) {
		struct tu_buf b;
		st = http("GET", "/health", NULL, &b);
		free(b.p);
		if (st != 200)
			usleep(50000);
	}
	assert_int_equal(st, 200);
	stream_matches(40, 777);
}

/* One node's entry of /v1/cluster: alive (1/0, -1 when absent) and the age
 * of its last load report. */
static int cluster_node(const char *name, long long *report_age_ms)
{
	struct tu_buf b;
	long st = http("GET", "/v1/cluster", NULL, &b);
	json_t *j = st == 200 ? json_loads(b.p, 0, NULL) : NULL;
	free(b.p);
	int alive = -1;
	size_t i;
	json_t *n;
	json_array_foreach(json_object_get(j, "nodes"), i, n)
	{
		if (strcmp(json_string_value(json_object_get(n, "name")), name))
			continue;
		alive = json_is_true(json_object_get(n, "alive"));
		*report_age_ms = json_integer_value(json_object_get(n, "report_age_ms"));
	}
	json_decref(j);
	return alive;
}

/* This process as a node registered by hand (a prefill node of one KV
 * block, reporting every report_ms), acknowledged by the router. */
static void fake_node(const char *name, int report_ms, void **ctx, void **sock)
{
	struct duet_err err;
	*ctx = zmq_ctx_new();
	*sock = NULL;
	struct duet_zsock_opts o = {.identity = name, .heartbeat_ms = report_ms,
				    .peer_timeout_ms = DUET_MISSED_REPORTS * report_ms};
	if (duet_zsock(*ctx, ZMQ_DEALER, router_ctl, 0, &o, sock, &err))
		fail_msg("%s", err.msg);
	Duet__Hello h = DUET__HELLO__INIT;
	h.role = DUET__ROLE__ROLE_PREFILL;
	h.name = (char *)name;
	h.model_digest = M->digest;
	h.kv_endpoint = "";
	h.kv_public_key = "";
	h.threads = 1;
	h.kv_blocks = 1;
	h.block_tokens = 16;
	h.ctx_len = (uint32_t)M->cfg.ctx_len;
	h.vocab_size = (uint32_t)M->cfg.vocab_size;
	h.report_ms = (uint32_t)report_ms;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_HELLO, &h);
	assert_int_equal(duet_zsend(*sock, NULL, &m, NULL, 0, &err), 0);
	int acked = 0;
	for (int k = 0; k < 100 && !acked; k++) {
		zmq_pollitem_t it = {*sock, 0, ZMQ_POLLIN, 0};
		if (zmq_poll(&it, 1, 100) <= 0)
			continue;
		struct duet_inmsg in;
		if (duet_zrecv(*sock, 0, &in, &err) > 0)
			acked = in.m->body_case == DUET__MSG__BODY_HELLO_ACK;
		duet_inmsg_close(&in);
	}
	assert_true(acked);
}

/* A node busy computing (its thread silent: no load reports, no replies)
 * is not a dead node: ZeroMQ's I/O thread keeps its heartbeats going. Here
 * the node is this process, registered by hand, whose thread simply stops
 * talking for 10 report intervals. Closing its socket then is a death the
 * router notices without waiting for reports. */
static void test_busy_node_stays_alive(void **state)
{
	(void)state;
	enum { REPORT_MS = 50, SILENT_INTERVALS = 10 };
	void *ctx, *sock;
	fake_node("busy-0", REPORT_MS, &ctx, &sock);
	struct duet_err err;
	Duet__Msg m;
	Duet__LoadReport l = DUET__LOAD_REPORT__INIT;
	l.seq = 1;
	l.kv_blocks_total = l.kv_blocks_free = 1;
	m = duet_wire_msg(DUET__MSG__BODY_LOAD, &l);
	assert_int_equal(duet_zsend(sock, NULL, &m, NULL, 0, &err), 0);
	/* Silent until its last report is 10 intervals old, alive all along
	 * (the router pings it meanwhile; nobody reads them). */
	long long age = 0;
	int checks = 0;
	while (age < SILENT_INTERVALS * REPORT_MS) {
		int alive = cluster_node("busy-0", &age);
		if (alive != 1)
			fail_msg("a silent but connected node taken for dead after %lld ms (alive %d)",
				 age, alive);
		checks++;
		usleep(REPORT_MS * 1000 / 2);
	}
	assert_true(checks >= SILENT_INTERVALS);
	/* The process goes away: dead without a report interval's grace
	 * times 3 more to wait (its connection is gone at once). */
	zmq_close(sock);
	zmq_ctx_term(ctx);
	int alive = 1;
	for (int k = 0; k < 200 && alive == 1; k++) {
		alive = cluster_node("busy-0", &age);
		if (alive == 1)
			usleep(50000);
	}
	assert_int_equal(alive, 0);
	/* The real nodes went on serving. */
	stream_matches(16, 4242);
}

/* A node outside a request's placement cannot end or move it, even with
 * the request's current wire id: once a long stream runs on the real
 * nodes, a node registered by hand that holds nothing sends a cancelled
 * Finish and an Error for every request id, and the stream still gets its
 * whole text (without the router's check it ended with a 503, "the
 * request was cancelled by a node"). */
struct long_stream {
	int t[23];
	struct tu_buf b;
	_Atomic long status; /* the HTTP status once the stream has ended */
};

static void *long_stream_run(void *arg)
{
	struct long_stream *ls = arg;
	char *body = ids_body(ls->t, 23, 400, "{\"stream\":true,\"ignore_eos\":true}");
	ls->status = http("POST", "/v1/completions", body, &ls->b);
	free(body);
	return NULL;
}

static void test_stale_node_messages(void **state)
{
	(void)state;
	struct long_stream ls = {.b = {NULL, 0}};
	atomic_init(&ls.status, 0);
	tu_random_prompt(ls.t, 23, 5151);
	pthread_t th;
	pthread_create(&th, NULL, long_stream_run, &ls);
	usleep(20 * 1000); /* placed on the real nodes before the stranger exists */
	void *ctx, *sock;
	fake_node("stale-0", 50, &ctx, &sock);
	struct duet_err err;
	int sent = 0;
	for (int round = 0; round < 50 && !ls.status; round++)
		for (uint64_t id = 1; id < 200; id++, sent++) {
			Duet__Finish f = DUET__FINISH__INIT;
			f.request_id = id;
			f.reason = DUET__FINISH_REASON__FINISH_CANCELLED;
			Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_FINISH, &f);
			assert_int_equal(duet_zsend(sock, NULL, &m, NULL, 0, &err), 0);
			assert_int_equal(duet_zsend_error(sock, NULL, id, DUET__ERROR_CODE__ERR_INTERNAL,
							  "stale", &err),
					 0);
		}
	pthread_join(th, NULL);
	zmq_close(sock);
	zmq_ctx_term(ctx);
	assert_true(sent > 0);
	assert_int_equal(ls.status, 200);
	char got[65536];
	read_sse(ls.b.p, 0, got, sizeof got, NULL, 0);
	free(ls.b.p);
	struct tu_gen ref;
	reference_eos(ls.t, 23, 400, 1, &ref);
	assert_string_equal(got, ref.text);
}

/* SIGTERM: every process exits 0 with no sanitizer report in its log. */
static void test_clean_exit(void **state)
{
	(void)state;
	const char *names[N_NODES] = {"router", "decode", "prefill", "decode-1", "prefill-1"};
	for (int i = N_NODES - 1; i >= 0; i--) {
		if (pids[i] <= 0)
			continue;
		kill(pids[i], SIGTERM);
		int st;
		assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
		pids[i] = 0;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fail_msg("%s: exit status %d", names[i], st);
		char log[4200], name[64];
		snprintf(name, sizeof name, "%s.log", names[i]);
		size_t n;
		char *text = tu_read_file(tu_path(log, name), &n);
		text = realloc(text, n + 1);
		text[n] = 0;
		if (strstr(text, "Sanitizer") || strstr(text, "runtime error"))
			fail_msg("%s logged a sanitizer report:\n%s", names[i], text);
		free(text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_endpoints),
		cmocka_unit_test(test_completion_paths),
		cmocka_unit_test(test_text_prompt_and_stream),
		cmocka_unit_test(test_stop_string),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_metrics_agree),
		cmocka_unit_test(test_chat),
		cmocka_unit_test(test_sampling_fields),
		cmocka_unit_test(test_n_and_prompt_lists),
		cmocka_unit_test(test_stream_usage),
		cmocka_unit_test(test_response_format),
		cmocka_unit_test(test_concurrent_streams),
		cmocka_unit_test(test_queue),
		cmocka_unit_test(test_early_reject),
		cmocka_unit_test(test_calibrated_step_model),
		cmocka_unit_test(test_router_restart_policies),
		cmocka_unit_test(test_decode_failover),
		cmocka_unit_test(test_prefill_failover),
		cmocka_unit_test(test_health_follows_decode_nodes),
		cmocka_unit_test(test_busy_node_stays_alive),
		cmocka_unit_test(test_stale_node_messages),
		cmocka_unit_test(test_clean_exit),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
