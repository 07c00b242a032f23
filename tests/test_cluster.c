/* The prefill and decode daemons over the real protocol, driven by a small
 * stand-in router (driver.c): disaggregated and local output against
 * duet_generate, concurrency, prefix cache, cancel, admission, malformed
 * frames and the systemd notify sequence. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "driver.h"
#include "engine/forward.h"
#include "engine/generate.h"
#include "base/kvrow.h"
#include "testutil.h"

#define WAIT_MS 60000
#define N_PROMPTS 8

static struct drv D;
static void *kv_push; /* the malformed-frame sender; closed in teardown */
static char model_path[4096], bin_dir[PATH_MAX / 2];
static struct duet_model *M;
static struct duet_engine *E;
static struct duet_kv_pool *KV;

static void bin(char *out, const char *name)
{
	snprintf(out, PATH_MAX, "%s/%s", bin_dir, name);
}

/* What `duet generate` makes of the prompt: the reference. */
static void reference(const int *prompt, int n, int max_tokens, int ignore_eos,
		      struct tu_gen *out)
{
	tu_greedy(E, KV, M, prompt, n, max_tokens, ignore_eos, out);
}

static void expect_same(uint64_t id, const int *prompt, int n, int max_tokens, int ignore_eos)
{
	assert_int_equal(drv_wait(&D, id, WAIT_MS), 0);
	struct drv_req *r = drv_req(&D, id);
	if (r->error)
		fail_msg("request %llu failed: %s", (unsigned long long)id, r->error_msg);
	struct tu_gen ref;
	reference(prompt, n, max_tokens, ignore_eos, &ref);
	assert_int_equal(r->n_tokens, ref.n);
	for (int i = 0; i < ref.n; i++)
		if (r->tokens[i] != ref.tokens[i])
			fail_msg("prompt of %d: token %d is %d, generate gives %d", n, i, r->tokens[i],
				 ref.tokens[i]);
}

static void spawn(const char *name, const char *binary, char **flags, char *const env[])
{
	char path[PATH_MAX];
	bin(path, binary);
	char *argv[40] = {path, "--model", model_path, "--threads", "1", "--report-ms", "50"};
	int n = 7;
	for (int i = 0; flags[i]; i++)
		argv[n++] = flags[i];
	argv[n] = NULL;
	assert_true(drv_spawn(&D, name, argv, env) > 0);
}

static int setup(void **state)
{
	(void)state;
	snprintf(bin_dir, sizeof bin_dir, "%s", tu_build_dir());
	/* untied: a tied random model just repeats the last prompt token whatever
	 * its KV holds, so its greedy text would prove nothing about the cache */
	tu_make_model(model_path, "tiny", DUET_F32, "gguf", 0, 11);
	M = tu_open(model_path);
	struct duet_kv_geom g = duet_kv_geom_for(M, 0, DUET_KV_DEFAULT);
	struct duet_err err;
	struct duet_engine_opts eo = {.n_threads = 1};
	if (duet_kv_pool_create(&KV, &g, duet_kv_blocks_for(&g, M->cfg.ctx_len), &err) ||
	    duet_engine_create(&E, M, KV, &eo, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	if (drv_open(&D, tu_tmpdir()))
		return -1;
	char ep0[300], ep1[300];
	snprintf(ep0, sizeof ep0, "ipc://%s/decode-0.ipc", tu_tmpdir());
	snprintf(ep1, sizeof ep1, "ipc://%s/decode-small.ipc", tu_tmpdir());
	/* Local prefill in chunks of 32 tokens, so long prompts take many
	 * steps beside running sequences. */
	spawn("decode-0", "duet-decode",
	      (char *[]){"--kv-endpoint", ep0, "--max-batch-tokens", "32", "--kv-mb", "16", NULL},
	      NULL);
	/* f32 rows: 1 MB is 128 blocks (test_admission counts on it). */
	spawn("decode-small", "duet-decode",
	      (char *[]){"--kv-endpoint", ep1, "--kv-mb", "1", "--max-requests", "16", "--kv-dtype",
			 "f32", NULL},
	      NULL);
	spawn("prefill-f32", "duet-prefill", (char *[]){"--kv-dtype", "f32", NULL}, NULL);
	spawn("prefill-f16", "duet-prefill",
	      (char *[]){"--kv-dtype", "f16", "--max-batch-tokens", "64", NULL}, NULL);
	const char *names[] = {"decode-0", "decode-small", "prefill-f32", "prefill-f16"};
	for (int i = 0; i < 4; i++)
		if (!drv_wait_node(&D, names[i], WAIT_MS)) {
			fprintf(stderr, "node %s did not register (see %s/%s.log)\n", names[i],
				tu_tmpdir(), names[i]);
			return -1;
		}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (kv_push)
		zmq_close(kv_push);
	drv_close(&D);
	duet_engine_destroy(E);
	duet_kv_pool_destroy(KV);
	duet_model_close(M);
	return 0;
}

static const int LENGTHS[N_PROMPTS] = {1, 5, 16, 17, 63, 130, 300, 450};

static void disagg_with(const char *prefill)
{
	static int prompts[N_PROMPTS][512];
	uint64_t ids[N_PROMPTS];
	struct drv_params pp = {.max_tokens = 20};
	for (int i = 0; i < N_PROMPTS; i++) {
		tu_random_prompt(prompts[i], LENGTHS[i], 100 + (uint64_t)i);
		ids[i] = drv_submit(&D, prefill, "decode-0", prompts[i], LENGTHS[i], &pp);
	}
	for (int i = 0; i < N_PROMPTS; i++)
		expect_same(ids[i], prompts[i], LENGTHS[i], 20, 0);
}

static void test_disaggregated_f32(void **state)
{
	(void)state;
	disagg_with("prefill-f32");
}

static void test_disaggregated_f16(void **state)
{
	(void)state;
	disagg_with("prefill-f16");
}

static void test_local_chunked_prefill(void **state)
{
	(void)state;
	static int prompts[N_PROMPTS][512];
	uint64_t ids[N_PROMPTS];
	struct drv_params pp = {.max_tokens = 16};
	for (int i = 0; i < N_PROMPTS; i++) {
		tu_random_prompt(prompts[i], LENGTHS[i], 200 + (uint64_t)i);
		ids[i] = drv_submit_local(&D, "decode-0", prompts[i], LENGTHS[i], &pp);
	}
	for (int i = 0; i < N_PROMPTS; i++)
		expect_same(ids[i], prompts[i], LENGTHS[i], 16, 0);
}

static void test_sixteen_concurrent(void **state)
{
	(void)state;
	enum { N = 16 };
	static int prompts[N][512];
	uint64_t ids[N];
	int len[N], max[N];
	for (int i = 0; i < N; i++) {
		len[i] = 3 + (i * 37) % 290;
		max[i] = 6 + (i * 11) % 40; /* sequences leave at different steps */
		tu_random_prompt(prompts[i], len[i], 300 + (uint64_t)i);
		struct drv_params pp = {.max_tokens = max[i], .ignore_eos = 1};
		if (i % 3 == 0)
			ids[i] = drv_submit_local(&D, "decode-0", prompts[i], len[i], &pp);
		else
			ids[i] = drv_submit(&D, i % 3 == 1 ? "prefill-f32" : "prefill-f16", "decode-0",
					    prompts[i], len[i], &pp);
	}
	for (int i = 0; i < N; i++)
		expect_same(ids[i], prompts[i], len[i], max[i], 1);
}

static void test_prefix_cache(void **state)
{
	(void)state;
	static int a[200], b[190];
	tu_random_prompt(a, 200, 400);
	memcpy(b, a, sizeof(int) * 170);
	tu_random_prompt(b + 170, 20, 401);
	struct drv_params pp = {.max_tokens = 12};
	struct drv_node *p = drv_node(&D, "prefill-f32");
	uint64_t id = drv_submit(&D, "prefill-f32", "decode-0", a, 200, &pp);
	expect_same(id, a, 200, 12, 0);
	assert_int_equal(drv_wait_report(&D, p, WAIT_MS), 0);
	uint64_t before = p->last.computed_prompt_tokens;
	id = drv_submit(&D, "prefill-f32", "decode-0", b, 190, &pp);
	expect_same(id, b, 190, 12, 0);
	/* 170 shared tokens: ten whole 16-token blocks come from the cache. */
	assert_int_equal(drv_req(&D, id)->n_cached, 160);
	assert_int_equal(drv_wait_report(&D, p, WAIT_MS), 0);
	assert_int_equal(p->last.computed_prompt_tokens - before, 190 - 160);
}

/* The decode node's own prefix cache: a prompt it received the KV of (or
 * prefilled itself) is served from its blocks when it comes back as local
 * work, with the same tokens. */
static void test_decode_prefix_cache(void **state)
{
	(void)state;
	static int c[200];
	tu_random_prompt(c, 200, 600);
	struct drv_params pp = {.max_tokens = 12};
	struct drv_node *dn = drv_node(&D, "decode-0");
	uint64_t id = drv_submit(&D, "prefill-f32", "decode-0", c, 200, &pp);
	expect_same(id, c, 200, 12, 0);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(drv_wait_report(&D, dn, WAIT_MS), 0);
		uint64_t before = dn->last.prefix_hit_tokens;
		id = drv_submit_local(&D, "decode-0", c, 200, &pp);
		expect_same(id, c, 200, 12, 0);
		/* The last token is computed: 12 whole blocks of the first 199. */
		assert_int_equal(drv_wait_report(&D, dn, WAIT_MS), 0);
		assert_int_equal(dn->last.prefix_hit_tokens - before, 192);
	}
}

static void wait_pool_idle(const char *name)
{
	struct drv_node *n = drv_node(&D, name);
	long long end = duet_now_us() + (long long)WAIT_MS * 1000;
	while (duet_now_us() < end) {
		assert_int_equal(drv_wait_report(&D, n, WAIT_MS), 0);
		/* Free counts the blocks only the prefix cache holds. */
		if (n->last.kv_blocks_free == n->last.kv_blocks_total &&
		    n->last.running == 0 && n->last.waiting_kv == 0 && n->last.queued_requests == 0)
			return;
	}
	fail_msg("%s: %u of %u KV blocks free", name, n->last.kv_blocks_free,
		 n->last.kv_blocks_total);
}

static void test_cancel_frees_blocks(void **state)
{
	(void)state;
	static int a[60], b[40];
	tu_random_prompt(a, 60, 500);
	tu_random_prompt(b, 40, 501);
	struct drv_params pp = {.max_tokens = 400, .ignore_eos = 1};
	uint64_t x = drv_submit(&D, "prefill-f32", "decode-0", a, 60, &pp);
	uint64_t y = drv_submit_local(&D, "decode-0", b, 40, &pp);
	struct drv_req *rx = drv_req(&D, x), *ry = drv_req(&D, y);
	long long end = duet_now_us() + (long long)WAIT_MS * 1000;
	while ((rx->n_tokens < 5 || ry->n_tokens < 5) && duet_now_us() < end)
		drv_poll(&D, 5);
	assert_true(rx->n_tokens >= 5 && ry->n_tokens >= 5);
	drv_cancel(&D, "decode-0", x);
	drv_cancel(&D, "prefill-f32", x);
	drv_cancel(&D, "decode-0", y);
	assert_int_equal(drv_wait(&D, x, WAIT_MS), 0);
	assert_int_equal(drv_wait(&D, y, WAIT_MS), 0);
	assert_int_equal(rx->reason, DUET__FINISH_REASON__FINISH_CANCELLED);
	assert_int_equal(ry->reason, DUET__FINISH_REASON__FINISH_CANCELLED);
	assert_true(rx->n_tokens < 400 && ry->n_tokens < 400);
	wait_pool_idle("decode-0");
	wait_pool_idle("prefill-f32");
	wait_pool_idle("prefill-f16");
}

static void test_admission(void **state)
{
	(void)state;
	/* decode-small holds 1 MB: 128 blocks of 16 positions, so four
	 * reservations of 100 + 412 tokens fill it. They are reservations
	 * whose KV never comes, so they hold the room until cancelled however
	 * fast this machine decodes. */
	static int t[100];
	tu_random_prompt(t, 100, 600);
	struct drv_params pp = {.max_tokens = 412, .ignore_eos = 1};
	uint64_t ids[4];
	for (int i = 0; i < 4; i++) {
		ids[i] = drv_submit(&D, NULL, "decode-small", t, 100, &pp);
		assert_true(drv_req(&D, ids[i])->reserved);
		assert_int_equal(drv_req(&D, ids[i])->error, 0);
	}
	uint64_t refused = drv_submit(&D, "prefill-f32", "decode-small", t, 100, &pp);
	struct drv_req *r = drv_req(&D, refused);
	assert_int_equal(r->error, DUET__ERROR_CODE__ERR_NO_ROOM);
	assert_false(r->reserved);
	assert_non_null(strstr(r->error_msg, "no room"));
	drv_cancel(&D, "decode-small", ids[0]);
	assert_int_equal(drv_wait(&D, ids[0], WAIT_MS), 0);
	struct drv_params small = {.max_tokens = 8};
	uint64_t ok = drv_submit(&D, "prefill-f32", "decode-small", t, 100, &small);
	expect_same(ok, t, 100, 8, 0);
	for (int i = 1; i < 4; i++)
		drv_cancel(&D, "decode-small", ids[i]);
	for (int i = 1; i < 4; i++)
		assert_int_equal(drv_wait(&D, ids[i], WAIT_MS), 0);
	wait_pool_idle("decode-small");
}

/* ---- malformed frames on the KV endpoint and the control channel ---- */

enum bad_kind {
	BAD_GARBAGE, BAD_FRAMES, BAD_UNKNOWN_REQ, BAD_CHECKSUM, BAD_GEOMETRY, BAD_LAYER,
	BAD_POSITIONS, BAD_PAYLOAD_SIZE, BAD_DTYPE, BAD_DIGEST, BAD_DUPLICATE, BAD_ORDER,
	BAD_EARLY_FIRST, BAD_NO_PAYLOAD, BAD_NAN_SCALE, BAD_VERSION, BAD_KINDS
};
static const char *const BAD_NAMES[BAD_KINDS] = {
	"garbage header", "four frames", "unknown request", "checksum", "geometry", "layer",
	"positions", "payload size", "dtype", "model digest", "duplicate layer", "out of order",
	"first token early", "no payload frame", "NaN int8 scale", "protocol version"};

static void send_frames(void *s, const void *const *f, const size_t *len, int n)
{
	for (int i = 0; i < n; i++)
		zmq_send(s, f[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0);
}

static void send_chunk(void *s, uint64_t id, int layer, int first, int n, enum duet_kv_dtype t,
		       enum bad_kind bad)
{
	int kv_dim = M->cfg.n_kv_heads * M->cfg.head_dim;
	size_t rb = duet_kv_row_bytes(t, M->cfg.n_kv_heads, M->cfg.head_dim), plen = 2 * (size_t)n * rb;
	float *row = calloc((size_t)kv_dim, sizeof(float));
	uint8_t *payload = calloc(1, plen);
	for (int i = 0; i < 2 * n; i++)
		duet_kv_row_put(t, M->cfg.n_kv_heads, M->cfg.head_dim, row, payload + (size_t)i * rb);
	if (bad == BAD_NAN_SCALE) {
		float nan = __builtin_nanf("");
		memcpy(payload + plen - sizeof nan, &nan, sizeof nan);
	}
	Duet__KvChunk h = DUET__KV_CHUNK__INIT;
	h.request_id = id;
	h.layer = (uint32_t)layer;
	h.first_pos = (uint32_t)first;
	h.n_tokens = (uint32_t)n;
	h.n_kv_heads = (uint32_t)M->cfg.n_kv_heads + (bad == BAD_GEOMETRY);
	h.head_dim = (uint32_t)M->cfg.head_dim;
	h.dtype = bad == BAD_DTYPE ? (Duet__KvDtype)7 : (Duet__KvDtype)t;
	h.payload_bytes = plen;
	h.checksum = XXH3_64bits(payload, plen) + (bad == BAD_CHECKSUM);
	h.model_digest = bad == BAD_DIGEST ? "0123456789abcdef0123456789abcdef" : M->digest;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_KV_CHUNK, &h);
	if (bad == BAD_VERSION)
		m.version = 99;
	uint8_t hdr[512];
	size_t hlen = duet__msg__pack(&m, hdr);
	const void *f[3] = {hdr, payload, payload};
	size_t len[3] = {hlen, plen - (bad == BAD_PAYLOAD_SIZE ? 4 : 0), plen};
	send_frames(s, f, len, bad == BAD_NO_PAYLOAD ? 1 : bad == BAD_FRAMES ? 3 : 2);
	free(row);
	free(payload);
}

static void send_first_token(void *s, uint64_t id)
{
	Duet__FirstToken f = DUET__FIRST_TOKEN__INIT;
	f.request_id = id;
	f.token = 5;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_FIRST_TOKEN, &f);
	uint8_t hdr[128];
	size_t hlen = duet__msg__pack(&m, hdr);
	const void *fr[1] = {hdr};
	send_frames(s, fr, &hlen, 1);
}

static uint64_t reserve_only(int n_prompt)
{
	struct drv_req *r = &D.reqs[D.n_reqs++];
	memset(r, 0, sizeof *r);
	r->id = D.next_id++;
	Duet__KvReserve res = DUET__KV_RESERVE__INIT;
	res.request_id = r->id;
	res.n_prompt = (uint32_t)n_prompt;
	res.max_tokens = 8;
	res.n_sampled = 1;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_RESERVE, &res);
	drv_send(&D, "decode-0", &m);
	long long end = duet_now_us() + 10000000LL;
	while (!r->reserved && !r->error && duet_now_us() < end)
		drv_poll(&D, 5);
	assert_true(r->reserved);
	return r->id;
}

static void test_malformed_frames(void **state)
{
	(void)state;
	struct drv_node *dn = drv_node(&D, "decode-0");
	assert_int_equal(drv_wait_report(&D, dn, WAIT_MS), 0);
	uint64_t bad_before = dn->last.bad_messages;
	struct duet_err err;
	struct duet_zsock_opts o = {.linger_ms = 1000};
	assert_int_equal(duet_zsock(D.zctx, ZMQ_PUSH, dn->kv_endpoint, 0, &o, &kv_push, &err), 0);
	void *s = kv_push;
	static int good[40];
	tu_random_prompt(good, 40, 700);
	struct drv_params pp = {.max_tokens = 6};
	for (int k = 0; k < BAD_KINDS; k++) {
		/* A header that does not parse (or speaks another protocol
		 * version) names no request anyone can trust: counted only. */
		int names_request = k != BAD_GARBAGE && k != BAD_UNKNOWN_REQ && k != BAD_VERSION;
		uint64_t id = names_request ? reserve_only(32) : 0;
		enum duet_kv_dtype t = k == BAD_NAN_SCALE ? DUET_KV_INT8 : DUET_KV_F32;
		switch (k) {
		case BAD_GARBAGE: {
			static const char junk[] = "\xff\xff\xff\x0f garbage";
			const void *f[1] = {junk};
			size_t len[1] = {sizeof junk - 1};
			send_frames(s, f, len, 1);
			break;
		}
		case BAD_UNKNOWN_REQ:
		case BAD_VERSION: send_chunk(s, 987654321, 0, 0, 16, t, k); break;
		case BAD_LAYER: send_chunk(s, id, M->cfg.n_layers, 0, 16, t, k); break;
		case BAD_POSITIONS: send_chunk(s, id, 0, 16, 32, t, k); break;
		case BAD_DUPLICATE:
			send_chunk(s, id, 0, 0, 16, t, BAD_KINDS);
			send_chunk(s, id, 0, 0, 16, t, BAD_KINDS);
			break;
		case BAD_ORDER: send_chunk(s, id, 0, 16, 16, t, k); break;
		case BAD_EARLY_FIRST:
			send_chunk(s, id, 0, 0, 32, t, BAD_KINDS);
			send_first_token(s, id);
			break;
		default: send_chunk(s, id, 0, 0, 16, t, k); break;
		}
		if (id) {
			if (drv_wait(&D, id, 10000))
				fail_msg("%s: the request did not fail", BAD_NAMES[k]);
			struct drv_req *r = drv_req(&D, id);
			if (r->error != DUET__ERROR_CODE__ERR_BAD_MESSAGE)
				fail_msg("%s: the request did not fail as a bad message (error %d)",
					 BAD_NAMES[k], r->error);
		}
		/* The node still serves. */
		uint64_t g = drv_submit(&D, "prefill-f32", "decode-0", good, 40, &pp);
		expect_same(g, good, 40, 6, 0);
	}
	/* Control channel: garbage and a message kind nodes do not take. */
	const char *peers[] = {"prefill-f32", "decode-0"};
	for (int i = 0; i < 2; i++) {
		zmq_send(D.sock, peers[i], strlen(peers[i]), ZMQ_SNDMORE);
		zmq_send(D.sock, "\x08\x01\x12", 3, 0);
		Duet__TokenEvent t = DUET__TOKEN_EVENT__INIT;
		Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_TOKEN, &t);
		drv_send(&D, peers[i], &m);
	}
	/* A prefill node refuses to pair with a decode node of another model. */
	{
		struct drv_req *r = &D.reqs[D.n_reqs++];
		memset(r, 0, sizeof *r);
		r->id = D.next_id++;
		Duet__PrefillWork pw = DUET__PREFILL_WORK__INIT;
		pw.request_id = r->id;
		pw.n_tokens = 40;
		pw.tokens = good;
		pw.decode_node = "decode-0";
		pw.decode_endpoint = dn->kv_endpoint;
		pw.decode_digest = "ffffffffffffffffffffffffffffffff";
		Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_PREFILL, &pw);
		drv_send(&D, "prefill-f32", &m);
		assert_int_equal(drv_wait(&D, r->id, WAIT_MS), 0);
		assert_int_equal(r->error, DUET__ERROR_CODE__ERR_MODEL_MISMATCH);
	}
	/* Prompt tokens outside the vocabulary fail that request only. */
	int wild[3] = {1, M->cfg.vocab_size + 5, 7};
	uint64_t w = drv_submit_local(&D, "decode-0", wild, 3, &pp);
	assert_int_equal(drv_wait(&D, w, WAIT_MS), 0);
	assert_int_equal(drv_req(&D, w)->error, DUET__ERROR_CODE__ERR_BAD_MESSAGE);
	uint64_t g = drv_submit(&D, "prefill-f32", "decode-0", good, 40, &pp);
	expect_same(g, good, 40, 6, 0);
	assert_int_equal(drv_wait_report(&D, dn, WAIT_MS), 0);
	assert_int_equal(drv_wait_report(&D, dn, WAIT_MS), 0);
	/* Every kind counted: the duplicate and early-first cases send a good
	 * chunk first; a control garbage and a token message per node. */
	assert_true(dn->last.bad_messages - bad_before >= BAD_KINDS + 2 + 1);
	struct drv_node *pn = drv_node(&D, "prefill-f32");
	assert_int_equal(drv_wait_report(&D, pn, WAIT_MS), 0);
	assert_true(pn->last.bad_messages >= 2);
	wait_pool_idle("decode-0");
}

/* ---- sd_notify ---- */

static int notify_read(int fd, char *buf, size_t cap, int timeout_ms)
{
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	ssize_t n = recv(fd, buf, cap - 1, 0);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return 0;
}

/* Reads datagrams until one contains want; 0 if it came in time. */
static int notify_expect(int fd, const char *want, int timeout_ms)
{
	long long end = duet_now_us() + (long long)timeout_ms * 1000;
	char buf[1024];
	while (duet_now_us() < end) {
		drv_poll(&D, 5);
		if (notify_read(fd, buf, sizeof buf, 20) == 0 && strstr(buf, want))
			return 0;
	}
	return -1;
}

/* Watchdog pings seen while the driver keeps serving: their arrival times
 * (us) go to t[], at most cap; returns how many came within ms. */
static int watchdog_pings(int fd, int ms, long long *t, int cap)
{
	int n = 0;
	char buf[1024];
	long long end = duet_now_us() + (long long)ms * 1000;
	while (duet_now_us() < end) {
		drv_poll(&D, 1);
		while (recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT) > 0)
			if (strstr(buf, "WATCHDOG=1") && n < cap)
				t[n++] = duet_now_us();
	}
	return n;
}

static long long largest_gap(const long long *t, int n, long long from, long long to)
{
	long long gap = 0, prev = from;
	for (int i = 0; i < n; i++) {
		if (t[i] - prev > gap)
			gap = t[i] - prev;
		prev = t[i];
	}
	return to - prev > gap ? to - prev : gap;
}

#define WD_USEC 20000 /* WATCHDOG_USEC: a ping every 10 ms */

/* Time from submission to the first token of a local prefill of n tokens
 * on node dn, in microseconds. */
static long long prefill_us(const char *dn, const int *p, int n, const struct drv_params *pp)
{
	long long from = duet_now_us();
	uint64_t id = drv_submit_local(&D, dn, p, n, pp);
	assert_int_equal(drv_wait(&D, id, WAIT_MS), 0);
	struct drv_req *r = drv_req(&D, id);
	assert_true(r->t_first > 0);
	return r->t_first - from;
}

static int notify_fd = -1;

/* Whatever failed: a stopped node resumes, and with the socket closed its
 * pings fail at once instead of blocking on a full queue. */
static int notify_teardown(void **state)
{
	(void)state;
	struct drv_node *n = drv_node(&D, "decode-notify");
	if (n && n->pid > 0)
		kill(n->pid, SIGCONT);
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
	return 0;
}

/* The notify protocol against a real socket, on a stories42m-shaped decode
 * node (so that one local prefill step can be made long): no READY=1
 * before the router acknowledged, then READY=1 and STATUS=, WATCHDOG=1
 * every WATCHDOG_USEC/2, none while the main loop is busy with a long step
 * or stopped, and STOPPING=1 on SIGTERM. */
static void test_sd_notify(void **state)
{
	(void)state;
	char sock_path[4096], env_sock[4200], env_wd[64], big[4096];
	tu_path(sock_path, "notify.sock");
	int fd = notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	assert_true(strlen(sock_path) < sizeof a.sun_path);
	memcpy(a.sun_path, sock_path, strlen(sock_path) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	snprintf(env_sock, sizeof env_sock, "NOTIFY_SOCKET=%s", sock_path);
	snprintf(env_wd, sizeof env_wd, "WATCHDOG_USEC=%d", WD_USEC);
	char *env[] = {env_sock, env_wd, NULL};
	char ep[300];
	snprintf(ep, sizeof ep, "ipc://%s/decode-notify.ipc", tu_tmpdir());
	tu_make_model(big, "stories42m", DUET_F32, "gguf", -1, 5);
	spawn("decode-notify", "duet-decode",
	      (char *[]){"--model", big, "--kv-endpoint", ep, "--kv-mb", "64",
			 "--max-batch-tokens", "1024", NULL},
	      env);
	struct drv_node *n = drv_node(&D, "decode-notify");
	/* Not ready before the router acknowledged: read without answering. */
	char buf[1024];
	long long end = duet_now_us() + 1500000;
	while (duet_now_us() < end)
		if (notify_read(fd, buf, sizeof buf, 100) == 0)
			assert_null(strstr(buf, "READY=1"));
	assert_int_equal(notify_expect(fd, "READY=1", WAIT_MS), 0);
	assert_int_equal(notify_expect(fd, "STATUS=", 5000), 0);

	/* Idle: a ping every 10 ms, so at least 20 in 500 ms even on a busy
	 * machine, and no gap near the 20 ms systemd would act on. */
	static long long t[4096];
	long long from = duet_now_us();
	int k = watchdog_pings(fd, 500, t, 4096);
	assert_true(k >= 20);
	assert_true(largest_gap(t, k, from, t[k - 1]) < 4 * WD_USEC);

	/* A long step: a prefill in one chunk. The loop does not turn during
	 * it, so neither do the pings: the largest gap covers most of the time
	 * to the first token. The prompt is sized from a short prefill timed
	 * here first, so the step lasts some 8 watchdog intervals on any
	 * machine (the check needs at least 2.5). */
	static int p[1000];
	tu_random_prompt(p, 1000, 77);
	struct drv_params pp = {.max_tokens = 1, .ignore_eos = 1};
	prefill_us("decode-notify", p, 100, &pp); /* the first pages the weights in */
	long long probe = prefill_us("decode-notify", p, 100, &pp);
	int n_long = (int)(100.0 * 8 * WD_USEC / (double)(probe > 1 ? probe : 1));
	n_long = n_long < 100 ? 100 : n_long > 1000 ? 1000 : n_long;
	from = duet_now_us();
	uint64_t id = drv_submit_local(&D, "decode-notify", p, n_long, &pp);
	struct drv_req *r = drv_req(&D, id);
	k = 0;
	while (!r->finished && duet_now_us() - from < (long long)WAIT_MS * 1000)
		k += watchdog_pings(fd, 5, t + k, 4096 - k);
	assert_true(r->finished && r->t_first > 0);
	long long step = r->t_first - from;
	long long gap = largest_gap(t, k, from, r->t_first);
	print_message("   100 tokens took %.1f ms; %d-token step: %.1f ms to the first token, "
		      "largest ping gap %.1f ms\n",
		      probe / 1e3, n_long, step / 1e3, gap / 1e3);
	assert_true(step >= 5 * WD_USEC / 2); /* else the check below says nothing */
	assert_true(gap >= step / 2);
	/* Pings resume once the loop turns again. */
	assert_true(watchdog_pings(fd, 200, t, 4096) >= 5);

	/* Stopped: nothing at all, then pings again after SIGCONT. */
	kill(n->pid, SIGSTOP);
	usleep(50000); /* a ping in flight when the signal landed */
	watchdog_pings(fd, 1, t, 4096);
	assert_int_equal(watchdog_pings(fd, 300, t, 4096), 0);
	kill(n->pid, SIGCONT);
	assert_true(watchdog_pings(fd, 300, t, 4096) >= 5);

	kill(n->pid, SIGTERM);
	assert_int_equal(notify_expect(fd, "STOPPING=1", 5000), 0);
	int st;
	assert_int_equal(waitpid(n->pid, &st, 0), n->pid);
	n->pid = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* SIGTERM: the running request finishes, new work is refused as
 * draining, then the node exits 0. */
static void test_drain(void **state)
{
	(void)state;
	static int t[30];
	tu_random_prompt(t, 30, 800);
	/* 470 steps: a node reports draining at the first turn of its loop
	 * after the signal, a step or two later, so the request still runs
	 * then however fast the machine is. */
	struct drv_params pp = {.max_tokens = 470, .ignore_eos = 1};
	uint64_t id = drv_submit_local(&D, "decode-small", t, 30, &pp);
	struct drv_req *r = drv_req(&D, id);
	long long end = duet_now_us() + (long long)WAIT_MS * 1000;
	while (r->n_tokens < 3 && duet_now_us() < end)
		drv_poll(&D, 2);
	struct drv_node *n = drv_node(&D, "decode-small");
	kill(n->pid, SIGTERM);
	while (!n->last.draining && duet_now_us() < end)
		drv_poll(&D, 1);
	assert_false(r->finished);
	uint64_t late = drv_submit_local(&D, "decode-small", t, 30, &pp);
	assert_int_equal(drv_wait(&D, late, WAIT_MS), 0);
	assert_int_equal(drv_req(&D, late)->error, DUET__ERROR_CODE__ERR_DRAINING);
	expect_same(id, t, 30, 470, 1);
	assert_int_equal(r->reason, DUET__FINISH_REASON__FINISH_LENGTH);
	int st;
	assert_int_equal(waitpid(n->pid, &st, 0), n->pid);
	n->pid = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* Every daemon exits 0 on SIGTERM, and none logged a sanitizer report. */
static void test_clean_exit(void **state)
{
	(void)state;
	for (int i = 0; i < D.n_nodes; i++) {
		struct drv_node *n = &D.nodes[i];
		if (n->pid <= 0)
			continue;
		kill(n->pid, SIGTERM);
		int st;
		assert_int_equal(waitpid(n->pid, &st, 0), n->pid);
		n->pid = 0;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fail_msg("%s: exit status %d (see its log)", n->name, st);
		char log[4096], name[128];
		snprintf(name, sizeof name, "%s.log", n->name);
		size_t len;
		char *text = tu_read_file(tu_path(log, name), &len);
		text = realloc(text, len + 1);
		text[len] = 0;
		if (strstr(text, "Sanitizer") || strstr(text, "runtime error"))
			fail_msg("%s logged a sanitizer report:\n%s", n->name, text);
		free(text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_disaggregated_f32),
		cmocka_unit_test(test_disaggregated_f16),
		cmocka_unit_test(test_local_chunked_prefill),
		cmocka_unit_test(test_sixteen_concurrent),
		cmocka_unit_test(test_prefix_cache),
		cmocka_unit_test(test_decode_prefix_cache),
		cmocka_unit_test(test_cancel_frees_blocks),
		cmocka_unit_test(test_admission),
		cmocka_unit_test(test_malformed_frames),
		cmocka_unit_test_teardown(test_sd_notify, notify_teardown),
		cmocka_unit_test(test_drain),
		cmocka_unit_test(test_clean_exit),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
