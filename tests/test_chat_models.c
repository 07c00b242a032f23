/* The models people download, end to end: a Llama 3 shaped and a Qwen3
 * shaped model with their real tokenizers (../shared/models
 * tokenizer.json and config, chat template included) served by the router
 * and both daemons; chat requests through /v1/chat/completions give, token
 * for token, what duet_generate makes of the rendered conversation, for a
 * short prompt (prefilled on the decode node) and a long one (prefilled on
 * the prefill node and shipped). */
#include <curl/curl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/forward.h"
#include "engine/kvcache.h"
#include "engine/tokenizer.h"
#include "mkmodel/model_random.h"
#include "mkmodel/vocab_hf.h"
#include "testutil.h"
#include "text/chat.h"

#define PORT 18571
#define MAX_TOKENS 12

static char bin_dir[PATH_MAX / 2];

static long post(const char *body, struct tu_buf *out)
{
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", PORT);
	out->p = calloc(1, 1);
	out->n = 0;
	return tu_http(url, "POST", body, NULL, NULL, tu_buf_write, out);
}

/* The value of a /metrics line that starts with name, or -1. */
static long metric(const char *name)
{
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", PORT);
	struct tu_buf b = {calloc(1, 1), 0};
	long v = -1;
	if (tu_http(url, "GET", NULL, NULL, NULL, tu_buf_write, &b) == 200) {
		for (const char *p = b.p; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
			if (!strncmp(p, name, strlen(name)))
				v = atol(p + strlen(name));
	}
	free(b.p);
	return v;
}

static int healthy(void)
{
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/health", PORT);
	struct tu_buf b = {calloc(1, 1), 0};
	long st = tu_http(url, "GET", NULL, NULL, NULL, tu_buf_write, &b);
	free(b.p);
	return st == 200;
}

/* A decode node for the router at ctl, its KV on kvep, logging to log. */
static pid_t spawn_decode(const char *model, const char *ctl, const char *kvep, const char *log)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/duet-decode", bin_dir);
	return tu_spawn(path, model,
			(char *[]){"--router", (char *)ctl, "--kv-endpoint", (char *)kvep, "--kv-mb",
				   "16", "--threads", "1", "--report-ms", "100", NULL},
			log, 0);
}

/* Waits (up to 30 s) for /health to say a decode node is up. */
static void wait_healthy(void)
{
	int up = 0;
	for (int i = 0; i < 600 && !up; i++) {
		up = healthy();
		if (!up)
			usleep(50000);
	}
	assert_true(up);
}

/* A random untied model of the shape with the tokenizer's vocabulary and
 * template (a tied random model repeats its last prompt token, which
 * would prove little). */
static void make_model(char *path, const char *shape, const char *tok)
{
	char tj[PATH_MAX + 64], file[64];
	snprintf(file, sizeof file, "%s-tokenizer.json", tok);
	tu_shared_path(file, tj, sizeof tj);
	struct duet_vocab v;
	char *tmpl, name[128];
	struct duet_err err;
	if (duet_vocab_from_hf(&v, tj, &tmpl, &err))
		fail_msg("%s", err.msg);
	struct duet_random_gen g;
	struct duet_model_spec spec;
	duet_random_spec(&spec, &g, duet_shape_find(shape), DUET_F32, 0, 0, 9, &v, name);
	spec.chat_template = tmpl;
	snprintf(path, 4096, "%s/%s-%s.gguf", tu_tmpdir(), shape, tok);
	if (duet_write_gguf(path, &spec, &err))
		fail_msg("%s", err.msg);
	duet_vocab_free(&v);
	free(tmpl);
}

static void run(const char *shape, const char *tok, enum duet_chat_family family)
{
	char model[4096];
	make_model(model, shape, tok);
	struct duet_model *m = tu_open(model);
	struct duet_gguf_str t;
	struct duet_err err;
	assert_int_equal(duet_gguf_get_str(&m->gguf, "tokenizer.chat_template", 1, &t, &err), 0);
	assert_int_equal(duet_chat_detect(t.ptr, (size_t)t.len), family);
	struct duet_kv_geom kg = duet_kv_geom_for(m, 0, DUET_KV_DEFAULT);
	struct duet_kv_pool *kv;
	struct duet_engine *e;
	struct duet_engine_opts eo = {.n_threads = 1};
	if (duet_kv_pool_create(&kv, &kg, duet_kv_blocks_for(&kg, m->cfg.ctx_len), &err) ||
	    duet_engine_create(&e, m, kv, &eo, &err))
		fail_msg("%s", err.msg);

	char ctl[300], kvep[300], port[16], path[PATH_MAX], log[4200], lname[64];
	snprintf(ctl, sizeof ctl, "ipc://%s/%s-router.ipc", tu_tmpdir(), tok);
	snprintf(kvep, sizeof kvep, "ipc://%s/%s-decode.ipc", tu_tmpdir(), tok);
	snprintf(port, sizeof port, "%d", PORT);
	pid_t pids[3];
	snprintf(path, sizeof path, "%s/duet-router", bin_dir);
	snprintf(lname, sizeof lname, "%s-router.log", tok);
	pids[0] = tu_spawn(path, model,
			   (char *[]){"--http-port", port, "--control", ctl, "--policy", "length-aware",
				      "--local-max-prompt", "64", NULL},
			   tu_path(log, lname), 0);
	snprintf(lname, sizeof lname, "%s-decode.log", tok);
	pids[1] = spawn_decode(model, ctl, kvep, tu_path(log, lname));
	snprintf(path, sizeof path, "%s/duet-prefill", bin_dir);
	snprintf(lname, sizeof lname, "%s-prefill.log", tok);
	pids[2] = tu_spawn(path, model,
			   (char *[]){"--router", ctl, "--threads", "1", "--report-ms", "100", NULL},
			   tu_path(log, lname), 0);
	wait_healthy();
	/* /health needs a decode node only: until the prefill node has said
	 * hello, a long prompt would be prefilled locally ("no prefill node") */
	for (int i = 0; i < 600 && metric("duet_node_up{node=\"prefill-0\",role=\"prefill\"} ") != 1;
	     i++)
		usleep(50000);

	/* A short conversation (local prefill) and a long one (> 64 tokens:
	 * the prefill node), with whitespace, CJK and digits. */
	static char longtext[4096];
	longtext[0] = 0;
	for (int i = 0; i < 20; i++)
		strcat(longtext, "Le café coûte 3,50 €; 你好 world 12345. ");
	const struct duet_chat_msg convs[2][3] = {
		{{"user", " Name a colour.\n"}, {NULL, NULL}, {NULL, NULL}},
		{{"system", longtext}, {"user", "Summarise."}, {NULL, NULL}},
	};
	int n_msgs[2] = {1, 2};
	for (int c = 0; c < 2; c++) {
		char *text;
		assert_int_equal(duet_chat_render(family, convs[c], n_msgs[c], &text, &err), 0);
		size_t cap = duet_tokenize_max(strlen(text)), nt;
		int *ids = malloc(sizeof(int) * cap);
		assert_int_equal(duet_tokenize(&m->vocab, text, strlen(text), 1, ids, cap, &nt, &err), 0);
		assert_true(c == 0 ? nt <= 64 : nt > 64);
		struct tu_gen ref;
		tu_greedy(e, kv, m, ids, (int)nt, MAX_TOKENS, 0, &ref);
		json_t *msgs = json_array();
		for (int k = 0; k < n_msgs[c]; k++)
			json_array_append_new(msgs, json_pack("{ssss}", "role", convs[c][k].role,
							      "content", convs[c][k].content));
		json_t *req = json_pack("{sosisi}", "messages", msgs, "max_tokens", MAX_TOKENS,
					"temperature", 0);
		char *body = json_dumps(req, 0);
		struct tu_buf b;
		long st = post(body, &b);
		if (st != 200)
			fail_msg("%s: status %ld: %s", shape, st, b.p);
		json_t *j = json_loads(b.p, 0, NULL);
		assert_non_null(j);
		json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
		const char *got = json_string_value(json_object_get(json_object_get(ch, "message"), "content"));
		long pt = (long)json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens"));
		if (getenv("DUET_TEST_SHOW"))
			fprintf(stderr, "%s conversation %d: %zu prompt tokens, answer '%s'\n", shape, c,
				nt, ref.text);
		if (!got || strcmp(got, ref.text) || pt != (long)nt)
			fail_msg("%s conversation %d: router '%s' (%ld prompt tokens), generate '%s' (%zu)",
				 shape, c, got ? got : "(none)", pt, ref.text, nt);
		json_decref(j);
		free(b.p);
		free(body);
		json_decref(req);
		free(ids);
		free(text);
	}
	/* one conversation took each path */
	assert_int_equal(metric("duet_placements_total{path=\"local\"} "), 1);
	assert_int_equal(metric("duet_placements_total{path=\"disaggregated\"} "), 1);
	for (int i = 0; i < 3; i++) {
		kill(pids[i], SIGTERM);
		waitpid(pids[i], NULL, 0);
	}
	duet_engine_destroy(e);
	duet_kv_pool_destroy(kv);
	duet_model_close(m);
}

static void test_llama3(void **st)
{
	(void)st;
	run("tiny-llama3", "llama3", DUET_CHAT_LLAMA3);
}

static void test_qwen3(void **st)
{
	(void)st;
	run("tiny-qwen3", "qwen3", DUET_CHAT_CHATML);
}

/* A template of no family duet renders: the router says so in its log at
 * load, answers chat requests 400 naming the problem, and still serves
 * /v1/completions. */
static void test_unknown_template(void **st)
{
	(void)st;
	struct duet_vocab v;
	struct duet_random_gen g;
	struct duet_model_spec spec;
	char model[4096], name[128];
	struct duet_err err;
	assert_int_equal(duet_vocab_load_file(&v, tu_vocab_gguf(), &err), 0);
	duet_random_spec(&spec, &g, duet_shape_find("tiny"), DUET_F32, -1, 0, 9, &v, name);
	spec.chat_template = "{% for m in messages %}<<{{ m['role'] }}|{{ m['content'] }}>>{% endfor %}";
	snprintf(model, sizeof model, "%s/unknown-template.gguf", tu_tmpdir());
	assert_int_equal(duet_write_gguf(model, &spec, &err), 0);
	duet_vocab_free(&v);
	char ctl[300], kvep[300], port[16], path[PATH_MAX], rlog[4200], dlog[4200];
	snprintf(ctl, sizeof ctl, "ipc://%s/unk-router.ipc", tu_tmpdir());
	snprintf(kvep, sizeof kvep, "ipc://%s/unk-decode.ipc", tu_tmpdir());
	snprintf(port, sizeof port, "%d", PORT);
	pid_t pids[2];
	snprintf(path, sizeof path, "%s/duet-router", bin_dir);
	pids[0] = tu_spawn(path, model, (char *[]){"--http-port", port, "--control", ctl, NULL},
			   tu_path(rlog, "unk-router.log"), 0);
	pids[1] = spawn_decode(model, ctl, kvep, tu_path(dlog, "unk-decode.log"));
	wait_healthy();
	size_t n;
	char *log = tu_read_file(rlog, &n);
	assert_non_null(memmem(log, n, "is not one duet renders", 23));
	free(log);
	struct tu_buf b;
	assert_int_equal(post("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &b), 400);
	assert_non_null(strstr(b.p, "chat template duet cannot render"));
	free(b.p);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/completions", PORT);
	b = (struct tu_buf){calloc(1, 1), 0};
	assert_int_equal(tu_http(url, "POST", "{\"prompt\":\"hi\",\"max_tokens\":3}", NULL, NULL,
				 tu_buf_write, &b),
			 200);
	free(b.p);
	for (int i = 0; i < 2; i++) {
		kill(pids[i], SIGTERM);
		waitpid(pids[i], NULL, 0);
	}
}

int main(void)
{
	snprintf(bin_dir, sizeof bin_dir, "%s", tu_build_dir());
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_llama3),
		cmocka_unit_test(test_qwen3),
		cmocka_unit_test(test_unknown_template),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
