/* The wire: Msg envelope checks, KV chunk validation, the transit codecs,
 * and what each transit dtype does to the next token's logits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/kvrow.h"
#include "engine/forward.h"
#include "net/wire.h"
#include "node/node.h"
#include "testutil.h"

/* KV rows in each stored form and back (base/kvrow.h). */
static void test_kv_row_round_trip(void **state)
{
	(void)state;
	enum { N = 5, HEADS = 3, HD = 16, DIM = HEADS * HD };
	float src[N][DIM], back[DIM];
	for (int i = 0; i < N; i++)
		for (int j = 0; j < DIM; j++)
			src[i][j] = sinf((float)(i * 100 + j)) * (float)(i + 1) * (1 + j / HD);
	memset(src[3] + HD, 0, sizeof(float) * HD); /* an all-zero head */
	const enum duet_kv_dtype types[] = {DUET_KV_F32, DUET_KV_F16, DUET_KV_INT8};
	for (int t = 0; t < 3; t++) {
		size_t rb = duet_kv_row_bytes(types[t], HEADS, HD);
		assert_int_equal(rb, t == 0 ? 4 * DIM : t == 1 ? 2 * DIM : DIM + 4 * HEADS);
		uint8_t *p = malloc(rb * N);
		for (int i = 0; i < N; i++)
			duet_kv_row_put(types[t], HEADS, HD, src[i], p + i * rb);
		struct duet_err err;
		assert_int_equal(duet_kv_rows_check(types[t], HEADS, HD, p, N, &err), 0);
		for (int i = 0; i < N; i++) {
			duet_kv_row_get(types[t], HEADS, HD, p + i * rb, back);
			for (int h = 0; h < HEADS; h++) {
				/* f32 exact; f16 half an ulp at 11 bits; int8 half a
				 * step of the head's own scale. */
				float amax = tu_max_abs(src[i] + h * HD, HD);
				float d = tu_max_abs_diff(src[i] + h * HD, back + h * HD, HD);
				float bound = t == 0 ? 0 : t == 1 ? amax * 0x1p-11f : amax / 254.0f * 1.0001f;
				if (d > bound)
					fail_msg("%s row %d head %d: error %g > %g",
						 duet_kv_dtype_name(types[t]), i, h, d, bound);
			}
		}
		free(p);
	}
	enum duet_kv_dtype t;
	assert_int_equal(duet_kv_dtype_parse("int8", &t), 0);
	assert_int_equal(t, DUET_KV_INT8);
	assert_int_equal(duet_kv_dtype_parse("q4", &t), -1);
	assert_false(duet_kv_dtype_valid(3));
}

/* int8 rows from a peer whose scales are not finite non-negative numbers
 * are refused before they reach the cache. */
static void test_int8_bad_scale(void **state)
{
	(void)state;
	float row[16] = {1, 2, 3, 4, 5, 6, 7, 8, -1, -2, -3, -4, -5, -6, -7, -8};
	size_t rb = duet_kv_row_bytes(DUET_KV_INT8, 2, 8);
	uint8_t *p = malloc(2 * rb);
	duet_kv_row_put(DUET_KV_INT8, 2, 8, row, p);
	duet_kv_row_put(DUET_KV_INT8, 2, 8, row, p + rb);
	const float bad[] = {NAN, INFINITY, -1.0f};
	for (int i = 0; i < 3; i++) {
		uint8_t *q = malloc(2 * rb);
		memcpy(q, p, 2 * rb);
		memcpy(q + 2 * rb - 4, &bad[i], 4); /* the second row's second head */
		struct duet_err err;
		assert_int_equal(duet_kv_rows_check(DUET_KV_INT8, 2, 8, q, 2, &err), -1);
		assert_non_null(strstr(err.msg, "scale of row 1 head 1"));
		free(q);
	}
	free(p);
}

static void test_envelope(void **state)
{
	(void)state;
	struct duet_err err;
	Duet__Msg *m;
	assert_int_equal(duet_wire_unpack("\xff\xff\xff", 3, &m, &err), -1);
	assert_non_null(strstr(err.msg, "not a valid duet.Msg"));
	Duet__Msg out = duet_wire_msg(DUET__MSG__BODY__NOT_SET, NULL);
	void *buf;
	size_t len;
	assert_int_equal(duet_wire_pack(&out, &buf, &len, &err), 0);
	assert_int_equal(duet_wire_unpack(buf, len, &m, &err), -1); /* no body */
	assert_non_null(strstr(err.msg, "no body"));
	free(buf);
	Duet__Cancel c = DUET__CANCEL__INIT;
	c.request_id = 42;
	out = duet_wire_msg(DUET__MSG__BODY_CANCEL, &c);
	out.version = 7;
	assert_int_equal(duet_wire_pack(&out, &buf, &len, &err), 0);
	assert_int_equal(duet_wire_unpack(buf, len, &m, &err), -1);
	assert_non_null(strstr(err.msg, "version 7"));
	free(buf);
	out.version = DUET_PROTO_VERSION;
	assert_int_equal(duet_wire_pack(&out, &buf, &len, &err), 0);
	assert_int_equal(duet_wire_unpack(buf, len, &m, &err), 0);
	assert_int_equal(m->body_case, DUET__MSG__BODY_CANCEL);
	assert_int_equal(m->cancel->request_id, 42);
	duet_wire_free(m);
	free(buf);
	assert_int_equal(duet_wire_unpack("", DUET_MAX_CTRL_BYTES + 1, &m, &err), -1);
	assert_string_equal(duet_wire_body_name(99), "none");
}

static void test_tokens_and_sampling(void **state)
{
	(void)state;
	struct duet_wire_limits lim = {2, 2, 16, 100, 50, "d"};
	struct duet_err err;
	int32_t ok[3] = {0, 10, 49}, bad[2] = {3, 50}, neg[1] = {-1};
	assert_int_equal(duet_wire_check_tokens(ok, 3, &lim, &err), 0);
	assert_int_equal(duet_wire_check_tokens(bad, 2, &lim, &err), -1);
	assert_non_null(strstr(err.msg, "token 1 is 50"));
	assert_int_equal(duet_wire_check_tokens(neg, 1, &lim, &err), -1);
	assert_int_equal(duet_wire_check_tokens(ok, 0, &lim, &err), -1);
	int32_t *many = calloc(100, sizeof *many);
	assert_int_equal(duet_wire_check_tokens(many, 100, &lim, &err), -1);
	free(many);
	struct duet_sampling sp;
	Duet__Sampling s = DUET__SAMPLING__INIT;
	assert_int_equal(duet_node_sampling(NULL, 100, &sp, &err), 0);
	assert_true(sp.temperature == 0 && sp.top_p == 1);
	s.temperature = NAN;
	assert_int_equal(duet_node_sampling(&s, 100, &sp, &err), -1);
	s.temperature = -1;
	assert_int_equal(duet_node_sampling(&s, 100, &sp, &err), -1);
	s.temperature = 0.5f;
	s.top_p = 2;
	assert_int_equal(duet_node_sampling(&s, 100, &sp, &err), -1);
	assert_int_equal(duet_wire_check_str("abcdef", 5, "name", &err), -1);
}

static void test_kv_chunk_checks(void **state)
{
	(void)state;
	struct duet_wire_limits lim = {4, 2, 8, 64, 100, "digest"};
	int n = 3;
	size_t plen = 2 * (size_t)n * duet_kv_row_bytes(DUET_KV_F16, 2, 8);
	uint8_t *p = calloc(1, plen);
	Duet__KvChunk good = DUET__KV_CHUNK__INIT;
	good.request_id = 1;
	good.layer = 3;
	good.first_pos = 61;
	good.n_tokens = (uint32_t)n;
	good.n_kv_heads = 2;
	good.head_dim = 8;
	good.dtype = DUET__KV_DTYPE__KV_F16;
	good.payload_bytes = plen;
	good.checksum = XXH3_64bits(p, plen);
	good.model_digest = "digest";
	struct duet_err err;
	assert_int_equal(duet_wire_check_kv_chunk(&good, p, plen, &lim, &err), 0);
	struct {
		const char *want;
		Duet__KvChunk c;
		size_t plen;
	} cases[10];
	int k = 0;
	for (int i = 0; i < 10; i++)
		cases[i].c = good, cases[i].plen = plen;
	cases[k].want = "digest", cases[k++].c.model_digest = "other";
	cases[k].want = "geometry", cases[k++].c.n_kv_heads = 3;
	cases[k].want = "geometry", cases[k++].c.head_dim = 4;
	cases[k].want = "layer 4", cases[k++].c.layer = 4;
	cases[k].want = "positions", cases[k++].c.first_pos = 62;
	cases[k].want = "positions", cases[k++].c.n_tokens = 0;
	cases[k].want = "dtype", cases[k++].c.dtype = (Duet__KvDtype)3;
	cases[k].want = "payload", cases[k++].c.payload_bytes = plen + 1;
	cases[k].want = "payload", cases[k].c = good, cases[k++].plen = plen - 2;
	cases[k].want = "checksum", cases[k++].c.checksum ^= 1;
	for (int i = 0; i < k; i++) {
		if (duet_wire_check_kv_chunk(&cases[i].c, p, cases[i].plen, &lim, &err) != -1)
			fail_msg("case %d (%s) passed", i, cases[i].want);
		if (!strstr(err.msg, cases[i].want))
			fail_msg("case %d: '%s' does not say %s", i, err.msg, cases[i].want);
	}
	/* first_pos near UINT32_MAX must not wrap around. */
	Duet__KvChunk wrap = good;
	wrap.first_pos = 0xfffffffeu;
	assert_int_equal(duet_wire_check_kv_chunk(&wrap, p, plen, &lim, &err), -1);
	free(p);
}

/* Next-token logits after a 200-token prompt with the KV cache stored in
 * each row type, against f32 storage: the measured error is printed and
 * bounded (f32 must be exact). */
static void test_stored_kv_logit_error(void **state)
{
	(void)state;
	char path[4096];
	tu_make_model(path, "tiny", DUET_F32, "gguf", -1, 5);
	struct duet_model *m = tu_open(path);
	enum { N = 200 };
	int prompt[N], next = 42;
	for (int i = 0; i < N; i++)
		prompt[i] = 3 + (i * 7919) % 30000;
	int V = m->cfg.vocab_size;
	float *ref = malloc(sizeof(float) * (size_t)V), *got = malloc(sizeof(float) * (size_t)V);
	const enum duet_kv_dtype types[] = {DUET_KV_F32, DUET_KV_F16, DUET_KV_INT8};
	const float bound[] = {0, 2e-3f, 2e-2f}; /* measured: 0, 2.3e-4, 3.7e-3 */
	for (int t = 0; t < 3; t++) {
		struct duet_kv_geom g = duet_kv_geom_for(m, 0, types[t]);
		struct duet_kv_pool *kv;
		struct duet_engine *e;
		struct duet_err err;
		struct duet_engine_opts eo = {.n_threads = 1};
		assert_int_equal(duet_kv_pool_create(&kv, &g, 64, &err), 0);
		assert_int_equal(duet_engine_create(&e, m, kv, &eo, &err), 0);
		struct duet_kv_seq s;
		duet_kv_seq_init(&s);
		struct duet_fwd_seq f = {&s, prompt, N, DUET_LOGITS_NONE, NULL, NULL, 0};
		assert_int_equal(duet_forward(e, &f, 1, &err), 0);
		f = (struct duet_fwd_seq){&s, &next, 1, DUET_LOGITS_LAST, t ? got : ref, NULL, 0};
		assert_int_equal(duet_forward(e, &f, 1, &err), 0);
		duet_kv_seq_release(kv, &s);
		duet_engine_destroy(e);
		duet_kv_pool_destroy(kv);
		if (t == 0)
			continue;
		float rel = tu_max_abs_diff(ref, got, (size_t)V) / tu_max_abs(ref, (size_t)V);
		printf("KV stored as %s: next-token logits differ by at most %.2e of the largest "
		       "logit (argmax %s)\n",
		       duet_kv_dtype_name(types[t]), (double)rel,
		       duet_argmax(ref, V) == duet_argmax(got, V) ? "same" : "DIFFERS");
		if (rel > bound[t])
			fail_msg("%s KV error %g over %g", duet_kv_dtype_name(types[t]), (double)rel,
				 (double)bound[t]);
	}
	free(ref);
	free(got);
	duet_model_close(m);
}

/* A load report's streams' tokens left: ascending whatever the order
 * added, the largest dropped when full. */
static void test_tokens_left(void **state)
{
	(void)state;
	uint32_t left[DUET_REPORT_MAX_STREAMS];
	size_t n = 0;
	const uint32_t in[] = {7, 3, 9, 3, 1};
	for (size_t i = 0; i < sizeof in / sizeof *in; i++)
		duet_wire_left_add(left, &n, in[i]);
	assert_int_equal(n, 5);
	const uint32_t want[] = {1, 3, 3, 7, 9};
	for (size_t i = 0; i < n; i++)
		assert_int_equal(left[i], want[i]);
	/* full: 1000 down to 1 keeps 1..256; a larger value changes nothing */
	n = 0;
	for (uint32_t v = 1000; v >= 1; v--)
		duet_wire_left_add(left, &n, v);
	duet_wire_left_add(left, &n, 5000);
	assert_int_equal(n, DUET_REPORT_MAX_STREAMS);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(left[i], i + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kv_row_round_trip),
		cmocka_unit_test(test_int8_bad_scale),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_tokens_and_sampling),
		cmocka_unit_test(test_kv_chunk_checks),
		cmocka_unit_test(test_stored_kv_logit_error),
		cmocka_unit_test(test_tokens_left),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
