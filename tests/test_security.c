/* Security: CURVE key files and allow-lists, the plaintext-only-on-loopback
 * rule, and a real cluster with every ZeroMQ link over CURVE (tcp) behind
 * an HTTPS router with API keys: completions equal duet_generate's; a
 * plaintext node, a node with an unknown key and one with a wrong router
 * key are refused, counted and logged while serving goes on; a bad API key
 * gets 401; plain HTTP gets no answer; the per-address connection limit
 * and request-timeout hold. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/forward.h"
#include "net/curve.h"
#include "testutil.h"

#define HTTP_PORT 18531
#define CTL_PORT 18532
#define KV_PORT 18533
#define API_KEY "sk-secure-1"
#define N_PROCS 3 /* router, decode-0, prefill-0 */
#define UP_WAIT_TRIES 300

static char model_path[4096], bin_dir[PATH_MAX / 2], keys[4096], cacert[4200];
static pid_t pids[N_PROCS];
static struct duet_model *M;
static struct duet_engine *E;
static struct duet_kv_pool *KV;

/* ---- key files ---- */

static void key_path(char *out, const char *file)
{
	snprintf(out, 4200, "%s/%s", keys, file);
}

static void test_key_files(void **state)
{
	(void)state;
	struct duet_curve_key k, back;
	struct duet_err err;
	char p[4200], pub[DUET_CURVE_Z85 + 1];
	assert_int_equal(duet_curve_keygen(&k, &err), 0);
	assert_int_equal(duet_curve_write(keys, "unit", &k, &err), 0);
	key_path(p, "unit.key");
	assert_int_equal(duet_curve_load_key(p, &back, &err), 0);
	assert_string_equal(back.pub, k.pub);
	assert_string_equal(back.sec, k.sec);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Never over an existing key. */
	assert_int_equal(duet_curve_write(keys, "unit", &k, &err), -1);
	assert_non_null(strstr(err.msg, "exists"));
	/* The .pub file, or the key itself, names a public key. */
	key_path(p, "unit.pub");
	assert_int_equal(duet_curve_load_public(p, pub, &err), 0);
	assert_string_equal(pub, k.pub);
	assert_int_equal(duet_curve_load_public(k.pub, pub, &err), 0);
	assert_int_equal(duet_curve_load_key(p, &back, &err), -1); /* a .pub is no secret key */
	/* A path of 40 Z85 characters is a valid key as text; the file it
	 * names is what it means (bench-cluster's OUT once made such a path). */
	char zdir[] = "/tmp/z85XXXXXX", zpath[64];
	assert_non_null(mkdtemp(zdir));
	snprintf(zpath, sizeof zpath, "%s/%s", zdir, "routerpubroutrpubroutpubx");
	assert_int_equal(strlen(zpath), DUET_CURVE_Z85);
	assert_true(duet_curve_valid(zpath));
	FILE *zf = fopen(zpath, "w");
	assert_non_null(zf);
	fprintf(zf, "%s router\n", k.pub);
	fclose(zf);
	assert_int_equal(duet_curve_load_public(zpath, pub, &err), 0);
	assert_string_equal(pub, k.pub);
	unlink(zpath);
	rmdir(zdir);
	assert_int_equal(duet_curve_write(keys, "../escape", &k, &err), -1);

	/* World-readable, mismatched, malformed: each refused with a reason. */
	struct {
		const char *text;
		int mode;
		const char *want;
	} bad[] = {
		{NULL, 0644, "readable by others"},
		{"public = %s\nsecret = %s\n", 0600, "does not belong"},
		{"secret = short\n", 0600, "not a 40-character Z85 key"},
		{"secrets = %s\n", 0600, "want 'public = KEY'"},
		{"", 0600, "no 'secret = KEY' line"},
	};
	struct duet_curve_key other;
	assert_int_equal(duet_curve_keygen(&other, &err), 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[256];
		key_path(p, "bad.key");
		unlink(p);
		if (bad[i].text)
			snprintf(text, sizeof text, bad[i].text, other.pub, k.sec);
		else
			snprintf(text, sizeof text, "public = %s\nsecret = %s\n", k.pub, k.sec);
		tu_write_file(p, text, strlen(text));
		chmod(p, (mode_t)bad[i].mode);
		if (duet_curve_load_key(p, &back, &err) == 0)
			fail_msg("case %zu: loaded", i);
		if (!strstr(err.msg, bad[i].want))
			fail_msg("case %zu: '%s' does not say '%s'", i, err.msg, bad[i].want);
	}
}

static void test_allow_list(void **state)
{
	(void)state;
	struct duet_curve_key a, b;
	struct duet_err err;
	assert_int_equal(duet_curve_keygen(&a, &err), 0);
	assert_int_equal(duet_curve_keygen(&b, &err), 0);
	char p[4200], text[512];
	/* '#' is a Z85 character (never the first of a key): only a line
	 * starting with it is a comment. */
	struct duet_curve_key h;
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(duet_curve_keygen(&h, &err), 0);
		if (strchr(h.pub, '#'))
			break;
	}
	const char *hash_key = h.pub;
	assert_non_null(strchr(hash_key, '#'));
	snprintf(text, sizeof text, "# the cluster\n\n%s prefill-0\n  %s\t decode-0 \n%s\n", a.pub,
		 b.pub, hash_key);
	key_path(p, "cluster.allow");
	tu_write_file(p, text, strlen(text));
	struct duet_curve_allow *l = malloc(sizeof *l);
	assert_int_equal(duet_curve_load_allow(p, l, &err), 0);
	assert_int_equal(l->n, 3);
	assert_string_equal(duet_curve_allowed(l, a.pub), "prefill-0");
	assert_string_equal(duet_curve_allowed(l, b.pub), "decode-0");
	assert_string_equal(duet_curve_allowed(l, hash_key), "unnamed");
	struct duet_curve_key c;
	assert_int_equal(duet_curve_keygen(&c, &err), 0);
	assert_null(duet_curve_allowed(l, c.pub));

	snprintf(text, sizeof text, "%s ok\nnot-a-key bad\n", a.pub);
	tu_write_file(p, text, strlen(text));
	assert_int_equal(duet_curve_load_allow(p, l, &err), -1);
	assert_non_null(strstr(err.msg, ":2:"));
	tu_write_file(p, "# nobody\n", 9);
	assert_int_equal(duet_curve_load_allow(p, l, &err), -1);
	assert_non_null(strstr(err.msg, "no keys"));
	free(l);
}

static void test_plaintext_rule(void **state)
{
	(void)state;
	struct duet_curve s;
	struct duet_err err;
	struct duet_curve_cfg c = {0};
	const char *local[] = {"tcp://127.0.0.1:5555", "ipc:///run/x.ipc", "tcp://[::1]:1",
			       "tcp://localhost:9"};
	const char *remote[] = {"tcp://127.0.0.1:5555", "tcp://10.0.0.2:5601"};
	assert_int_equal(duet_curve_setup(&c, 1, 1, local, 4, &s, &err), 0);
	assert_false(s.on);
	assert_int_equal(duet_curve_setup(&c, 1, 1, remote, 2, &s, &err), -1);
	assert_non_null(strstr(err.msg, "tcp://10.0.0.2:5601 is not loopback"));
	assert_false(duet_endpoint_is_loopback("tcp://*:5555"));
	assert_false(duet_endpoint_is_loopback("tcp://0.0.0.0:5555"));
	c.allow_plaintext = 1;
	assert_int_equal(duet_curve_setup(&c, 1, 1, remote, 2, &s, &err), 0);

	/* With a key, a server needs its allow-list and a client the router's key. */
	char kp[4200], ap[4200], rp[4200];
	key_path(kp, "decode-0.key");
	key_path(ap, "nodes.allow");
	key_path(rp, "router.pub");
	c = (struct duet_curve_cfg){.key_file = kp};
	assert_int_equal(duet_curve_setup(&c, 1, 0, remote, 2, &s, &err), -1);
	assert_non_null(strstr(err.msg, "curve-allow"));
	assert_int_equal(duet_curve_setup(&c, 0, 1, remote, 2, &s, &err), -1);
	assert_non_null(strstr(err.msg, "curve-router-key"));
	c.allow_file = ap;
	c.router_key = rp;
	assert_int_equal(duet_curve_setup(&c, 1, 1, remote, 2, &s, &err), 0);
	assert_true(s.on);
	assert_true(s.allow->n >= 2);
	duet_curve_free(&s);
}

/* ---- the cluster ---- */

/* One request to the router over HTTPS (scheme "https") or plain HTTP;
 * returns the status, 0 when no HTTP answer came. */
static long req(const char *scheme, const char *method, const char *path, const char *body,
		const char *key, struct tu_buf *out)
{
	char url[256];
	snprintf(url, sizeof url, "%s://127.0.0.1:%d%s", scheme, HTTP_PORT, path);
	out->p = calloc(1, 1);
	out->n = 0;
	return tu_http(url, method, body, key, cacert, tu_buf_write, out);
}

static long https(const char *method, const char *path, const char *body, struct tu_buf *out)
{
	return req("https", method, path, body, API_KEY, out);
}

static pid_t spawn(const char *binary, const char *log_name, char **flags)
{
	char path[PATH_MAX], log[4200];
	snprintf(path, sizeof path, "%s/%s", bin_dir, binary);
	return tu_spawn(path, model_path, flags, tu_path(log, log_name), 0);
}

static void stop(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGCONT);
		kill(*pid, SIGTERM);
		waitpid(*pid, NULL, 0);
	}
	*pid = 0;
}

static int run(char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *file_text(const char *name)
{
	char p[4200];
	size_t n;
	tu_path(p, name);
	return tu_read_file(p, &n);
}

/* Polls the router's metrics until want appears (or ~30 s pass). */
static int wait_metric(const char *want)
{
	for (int i = 0; i < UP_WAIT_TRIES; i++) {
		struct tu_buf b;
		long st = https("GET", "/metrics", NULL, &b);
		int ok = st == 200 && strstr(b.p, want);
		free(b.p);
		if (ok)
			return 1;
		usleep(100000);
	}
	return 0;
}

static int setup(void **state)
{
	(void)state;
	snprintf(bin_dir, sizeof bin_dir, "%s", tu_build_dir());
	tu_path(keys, "keys");
	mkdir(keys, 0700);
	tu_make_model(model_path, "tiny", DUET_F32, "gguf", 0, 33);
	M = tu_open(model_path);
	struct duet_kv_geom kg = duet_kv_geom_for(M, 0, DUET_KV_DEFAULT);
	struct duet_engine_opts eo = {.n_threads = 1};
	struct duet_err err;
	if (duet_kv_pool_create(&KV, &kg, duet_kv_blocks_for(&kg, M->cfg.ctx_len), &err) ||
	    duet_engine_create(&E, M, KV, &eo, &err))
		return -1;
	/* Keys as a user makes them: duet keygen, then cat *.pub. */
	char duet[PATH_MAX], allow[4200], prefill_pub[4200], decode_pub[4200];
	snprintf(duet, sizeof duet, "%s/duet", bin_dir);
	if (run((char *[]){duet, "keygen", "-d", keys, "router", "prefill-0", "decode-0", "rogue",
			   NULL}) != 0)
		return -1;
	key_path(allow, "nodes.allow");
	key_path(prefill_pub, "prefill-0.pub");
	key_path(decode_pub, "decode-0.pub");
	char *pp = NULL, *dp = NULL;
	size_t n1, n2;
	pp = tu_read_file(prefill_pub, &n1);
	dp = tu_read_file(decode_pub, &n2);
	FILE *f = fopen(allow, "w");
	fprintf(f, "# prefill and decode nodes\n%s%s", pp, dp);
	fclose(f);
	free(pp);
	free(dp);
	/* A self-signed certificate for 127.0.0.1. */
	char crt[4200], key[4200], subj[64];
	tu_path(crt, "tls.crt");
	tu_path(key, "tls.key");
	snprintf(cacert, sizeof cacert, "%s", crt);
	snprintf(subj, sizeof subj, "/CN=127.0.0.1");
	if (run((char *[]){"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
			   "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
			   "-days", "2", "-subj", subj, "-addext", "subjectAltName=IP:127.0.0.1",
			   NULL}) != 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	char port[16], ctl[64], kv[64], rkey[4200], pkey[4200], dkey[4200], rpub[4200];
	snprintf(port, sizeof port, "%d", HTTP_PORT);
	snprintf(ctl, sizeof ctl, "tcp://127.0.0.1:%d", CTL_PORT);
	snprintf(kv, sizeof kv, "tcp://127.0.0.1:%d", KV_PORT);
	key_path(rkey, "router.key");
	key_path(pkey, "prefill-0.key");
	key_path(dkey, "decode-0.key");
	key_path(rpub, "router.pub");
	pids[0] = spawn("duet-router", "router.log",
			(char *[]){"--http-port", port, "--control", ctl, "--api-keys", API_KEY,
				   "--policy", "least-loaded", "--tls-cert", crt, "--tls-key", key,
				   "--curve-key", rkey, "--curve-allow", allow,
				   "--max-connections-per-ip", "4", "--request-timeout", "2",
				   "--node-timeout-ms", "5000", NULL});
	pids[1] = spawn("duet-decode", "decode.log",
			(char *[]){"--router", ctl, "--kv-endpoint", kv, "--kv-mb", "16",
				   "--report-ms", "1000", "--curve-key", dkey, "--curve-allow", allow,
				   "--curve-router-key", rpub, NULL});
	pids[2] = spawn("duet-prefill", "prefill.log",
			(char *[]){"--router", ctl, "--report-ms", "50", "--kv-dtype", "f32",
				   "--curve-key", pkey, "--curve-router-key", rpub, NULL});
	if (wait_metric("duet_node_up{node=\"decode-0\",role=\"decode\"} 1") &&
	    wait_metric("duet_node_up{node=\"prefill-0\",role=\"prefill\"} 1"))
		return 0;
	const char *logs[] = {"router.log", "decode.log", "prefill.log"};
	for (int i = 0; i < 3; i++) {
		char *t = file_text(logs[i]);
		fprintf(stderr, "== %s\n%s\n", logs[i], t ? t : "(none)");
		free(t);
	}
	return -1;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = N_PROCS - 1; i >= 0; i--)
		stop(&pids[i]);
	curl_global_cleanup();
	duet_engine_destroy(E);
	duet_kv_pool_destroy(KV);
	duet_model_close(M);
	return 0;
}

static char *ids_body(const int *t, int n, int max_tokens)
{
	json_t *arr = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(arr, json_integer(t[i]));
	json_t *j = json_pack("{s:o,s:i,s:f}", "prompt", arr, "max_tokens", max_tokens,
			      "temperature", 0.0);
	char *s = json_dumps(j, 0);
	json_decref(j);
	return s;
}

/* A disaggregated completion over HTTPS, KV over CURVE: generate's text. */
static void expect_completion(int n, uint64_t seed)
{
	static int t[256];
	tu_random_prompt(t, n, seed);
	char *body = ids_body(t, n, 16);
	struct tu_buf b;
	long st = https("POST", "/v1/completions", body, &b);
	free(body);
	if (st != 200)
		fail_msg("status %ld: %s", st, b.p);
	json_t *j = json_loads(b.p, 0, NULL);
	free(b.p);
	assert_non_null(j);
	const char *text = json_string_value(
		json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
	struct tu_gen ref;
	tu_greedy(E, KV, M, t, n, 16, 0, &ref);
	assert_non_null(text);
	if (strcmp(text, ref.text) != 0)
		fail_msg("got '%s', generate gives '%s'", text, ref.text);
	json_decref(j);
}

static void test_curve_cluster_serves(void **state)
{
	(void)state;
	expect_completion(40, 1);
	expect_completion(120, 2);
	struct tu_buf b;
	assert_int_equal(https("GET", "/metrics", NULL, &b), 200);
	assert_non_null(strstr(b.p, "duet_placements_total{path=\"disaggregated\"} 2"));
	assert_non_null(strstr(b.p, "duet_auth_refused_total{node=\"router\"} 0"));
	free(b.p);
	char *log = file_text("router.log");
	assert_non_null(strstr(log, "(CURVE)"));
	free(log);
}

/* 1 when the test file name exists and holds want. */
static int file_has(const char *name, const char *want)
{
	char p[4200];
	size_t n;
	if (access(tu_path(p, name), R_OK))
		return 0;
	char *text = tu_read_file(p, &n);
	int has = strstr(text, want) != NULL;
	free(text);
	return has;
}

/* Runs an intruder node until the log `where` says `want` (its attempt was
 * seen and refused; under ASan a node takes seconds to load), then stops
 * it. */
static void intrude(const char *name, char **flags, const char *where, const char *want)
{
	char log[64];
	snprintf(log, sizeof log, "%s.log", name);
	pid_t pid = spawn("duet-prefill", log, flags);
	for (int i = 0; i < UP_WAIT_TRIES && !file_has(where, want); i++)
		usleep(100000);
	stop(&pid);
	if (!file_has(where, want)) {
		char *text = file_text(where);
		fail_msg("intruder %s: %s lacks '%s':\n%s", name, where, want, text);
	}
}

static void test_intruders_refused(void **state)
{
	(void)state;
	char ctl[64], rogue_key[4200], prefill_key[4200], rogue_pub_file[4200];
	char rogue_pub[DUET_CURVE_Z85 + 1], want[160];
	struct duet_err err;
	snprintf(ctl, sizeof ctl, "tcp://127.0.0.1:%d", CTL_PORT);
	key_path(rogue_key, "rogue.key");
	key_path(prefill_key, "prefill-0.key");
	key_path(rogue_pub_file, "rogue.pub");
	assert_int_equal(duet_curve_load_public(rogue_pub_file, rogue_pub, &err), 0);
	/* Plaintext; no router key; an unknown key; a known key with the
	 * wrong router key. Each is refused, and says or is told why. */
	/* libzmq reports a plaintext peer as a mechanism mismatch or as a
	 * broken-off handshake, depending on who closes first */
	intrude("plain", (char *[]){"--router", ctl, "--name", "plain", NULL}, "router.log",
		"control: handshake on");
	intrude("rogue2",
		(char *[]){"--router", ctl, "--name", "rogue2", "--curve-key", rogue_key,
			   "--curve-router-key", "", NULL},
		"rogue2.log", "curve-router-key");
	char rpub[4200];
	key_path(rpub, "router.pub");
	snprintf(want, sizeof want, "refused CURVE key %s from 127.0.0.1", rogue_pub);
	intrude("unknown",
		(char *[]){"--router", ctl, "--name", "unknown", "--curve-key", rogue_key,
			   "--curve-router-key", rpub, NULL},
		"unknown.log", "refused this daemon's CURVE key");
	if (!file_has("router.log", want))
		fail_msg("the router log lacks '%s'", want);
	intrude("wrongsrv",
		(char *[]){"--router", ctl, "--name", "wrongsrv", "--curve-key", prefill_key,
			   "--curve-router-key", rogue_pub_file, NULL},
		"router.log", "CURVE keys do not match");
	struct tu_buf b;
	assert_int_equal(https("GET", "/metrics", NULL, &b), 200);
	const char *p = strstr(b.p, "duet_auth_refused_total{node=\"router\"} ");
	assert_non_null(p);
	assert_true(atol(p + strlen("duet_auth_refused_total{node=\"router\"} ")) >= 3);
	free(b.p);
	assert_int_equal(https("GET", "/v1/cluster", NULL, &b), 200);
	assert_null(strstr(b.p, "\"plain\""));
	assert_null(strstr(b.p, "\"unknown\""));
	assert_null(strstr(b.p, "\"wrongsrv\""));
	free(b.p);
	/* Nobody got in, and serving goes on. */
	expect_completion(64, 3);
}

static void test_https_and_api_keys(void **state)
{
	(void)state;
	struct tu_buf b;
	assert_int_equal(req("https", "GET", "/v1/models", NULL, "sk-wrong", &b), 401);
	assert_non_null(strstr(b.p, "\"error\""));
	free(b.p);
	assert_int_equal(req("https", "GET", "/v1/models", NULL, NULL, &b), 401);
	free(b.p);
	/* A longer key sharing the real one as its prefix is no key either. */
	assert_int_equal(req("https", "GET", "/v1/models", NULL, API_KEY "x", &b), 401);
	free(b.p);
	assert_int_equal(https("GET", "/v1/models", NULL, &b), 200);
	free(b.p);
	/* Plain HTTP to the TLS port gets no HTTP answer. */
	assert_int_equal(req("http", "GET", "/health", NULL, API_KEY, &b), 0);
	free(b.p);
}

static int tcp_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(HTTP_PORT)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

/* GET /health until it answers want (0: no HTTP answer at all), for up to
 * 5 s; the last status. */
static long health_until(long want)
{
	long st = -1;
	for (int i = 0; i < 50 && st != want; i++) {
		struct tu_buf b;
		st = https("GET", "/health", NULL, &b);
		free(b.p);
		if (st != want)
			usleep(100000);
	}
	return st;
}

/* Whether the router has closed fd (it refuses a connection over the limit
 * by accepting and closing it). */
static int closed_by_peer(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void test_connection_limit_per_ip(void **state)
{
	(void)state;
	int fds[4];
	for (int i = 0; i < 4; i++) /* max-connections-per-ip 4, all idle */
		fds[i] = tcp_connect();
	/* Once the router has accepted all four (on a busy machine that takes
	 * a while; until then a fifth may still get in), a fifth is refused.
	 * A connection of the previous test that the router has not yet
	 * reaped still counts, so one of ours may have been refused: it is
	 * opened again until four of ours are held. */
	long st = -1;
	for (int round = 0; round < 50 && st != 0; round++) {
		for (int i = 0; i < 4; i++)
			if (closed_by_peer(fds[i])) {
				close(fds[i]);
				fds[i] = tcp_connect();
			}
		struct tu_buf b;
		st = https("GET", "/health", NULL, &b);
		free(b.p);
		if (st != 0)
			usleep(100000);
	}
	assert_int_equal(st, 0);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	assert_int_equal(health_until(200), 200);
}

static void test_request_timeout(void **state)
{
	(void)state;
	/* A stopped decode node sends no more tokens: request-timeout (2 s)
	 * ends the request with 504 before the router would declare the node
	 * dead (node-timeout-ms 5000) and resume the request elsewhere. */
	static int t[64];
	tu_random_prompt(t, 8, 9);
	char *body = ids_body(t, 8, 400);
	kill(pids[1], SIGSTOP);
	struct tu_buf b;
	long st = https("POST", "/v1/completions", body, &b);
	kill(pids[1], SIGCONT);
	free(body);
	if (st != 504)
		fail_msg("status %ld: %s", st, b.p);
	assert_non_null(strstr(b.p, "\"error\""));
	free(b.p);
	assert_true(wait_metric("duet_node_up{node=\"decode-0\",role=\"decode\"} 1"));
	expect_completion(32, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_files),
		cmocka_unit_test(test_allow_list),
		cmocka_unit_test(test_plaintext_rule),
		cmocka_unit_test(test_curve_cluster_serves),
		cmocka_unit_test(test_intruders_refused),
		cmocka_unit_test(test_https_and_api_keys),
		cmocka_unit_test(test_connection_limit_per_ip),
		cmocka_unit_test(test_request_timeout),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
