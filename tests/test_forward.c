/* The engine against the reference forward pass: prefill through sgemm
 * and through the native-type kernels, batched decode of sequences at
 * different positions, every weight type, both file formats, every
 * instruction set, and greedy generation by every route.
 *
 * Tolerance: logits within LOGIT_TOL of the reference, relative to the
 * largest reference logit of the same position. The reference works in
 * double from the same (already quantized) weights, so what remains is
 * float accumulation order: measured differences are below 1e-6 relative
 * (about 1e-5 absolute on logits of size 30-40), 100x inside the bound. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/mapfile.h"
#include "engine/attention.h"
#include "engine/forward.h"
#include "engine/generate.h"
#include "engine/kern/kernels.h"
#include "engine/kvcache.h"
#include "engine/sampler.h"
#include "ref_forward.h"

/* Logits within this fraction of the position's largest logit of the
 * reference: f32 arithmetic in another order (measured below 1e-6), and
 * for quantized weights in int8 mode, int8 activations (measured up to
 * 1.5% on the random test models, whose logits are flat: 3% allowed). */
#define LOGIT_TOL 1e-4f
#define LOGIT_TOL_INT8 3e-2f
/* bf16 weights in int8 mode meet activations rounded to bf16 (measured
 * up to 4.1e-3: 1e-2 allowed). */
#define LOGIT_TOL_BF16 1e-2f
/* The K-quants meet activations quantized per 256 values, not per 32: a
 * coarser step wherever one value of the 256 is large (measured up to
 * 3.5% on the random test models: 6% allowed). */
#define LOGIT_TOL_INT8_K 6e-2f
/* KV rows stored rounded: f16 (measured up to 1e-3 of the largest logit)
 * and int8 with a scale per head (measured up to 1.3%). */
#define LOGIT_TOL_KV_F16 3e-3f
#define LOGIT_TOL_KV_INT8 3e-2f
#define POOL_BLOCKS 512

/* How the engines of the current test multiply quantized weights and
 * store KV; the reference checks run exact unless a test says otherwise. */
static enum duet_qdot g_qdot = DUET_QDOT_EXACT;
static enum duet_kv_dtype g_kv = DUET_KV_F32;
/* Where the rigs' weights live (the mapping unless a test asks). */
static enum duet_weights g_weights = DUET_WEIGHTS_MMAP;

struct rig {
	struct duet_model *m;
	struct duet_kv_pool *kv;
	struct duet_engine *e;
};

static void rig_open(struct rig *r, const char *path, int threads, int max_batch,
		     const char *kernels)
{
	struct duet_err err;
	struct duet_model_opts mo = {.weights = g_weights};
	if (duet_model_open(&r->m, path, &mo, &err))
		fail_msg("%s", err.msg);
	struct duet_kv_geom g = duet_kv_geom_for(r->m, DUET_KV_BLOCK_TOKENS, g_kv);
	if (duet_kv_pool_create(&r->kv, &g, POOL_BLOCKS, &err))
		fail_msg("%s", err.msg);
	struct duet_engine_opts o = {.n_threads = threads, .max_batch_tokens = max_batch,
				     .kernels = kernels, .qdot = g_qdot};
	if (duet_engine_create(&r->e, r->m, r->kv, &o, &err))
		fail_msg("%s", err.msg);
}

static void rig_close(struct rig *r)
{
	duet_engine_destroy(r->e);
	duet_kv_pool_destroy(r->kv);
	duet_model_close(r->m);
}

/* Deterministic token ids spread over the vocabulary. */
static void some_tokens(int *t, int n, int salt, int vocab)
{
	uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(salt + 1);
	t[0] = 1;
	for (int i = 1; i < n; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		t[i] = 3 + (int)(s % (uint64_t)(vocab - 3));
	}
}

static float tol_for(const struct duet_model *m)
{
	enum duet_dtype dt = duet_model_dtype(m);
	float t = g_qdot == DUET_QDOT_INT8 && dt == DUET_BF16	       ? LOGIT_TOL_BF16
		  : g_qdot != DUET_QDOT_INT8 || !duet_dtype_quantized(dt) ? LOGIT_TOL
		  : duet_dtype_kquant(dt)				       ? LOGIT_TOL_INT8_K
									       : LOGIT_TOL_INT8;
	return t + (g_kv == DUET_KV_F16 ? LOGIT_TOL_KV_F16 : g_kv == DUET_KV_INT8 ? LOGIT_TOL_KV_INT8 : 0);
}

static void check_logits(const struct duet_model *m, const float *got, const float *ref,
			 int n_pos, int vocab, const char *what)
{
	for (int t = 0; t < n_pos; t++) {
		const float *g = got + (size_t)t * vocab, *r = ref + (size_t)t * vocab;
		float scale = tu_max_abs(r, (size_t)vocab);
		float d = tu_max_abs_diff(g, r, (size_t)vocab);
		if (getenv("DUET_TEST_SHOW_ERR"))
			fprintf(stderr, "%s: %.2e of the largest logit\n", what, d / scale);
		float tol = tol_for(m) * (scale > 1 ? scale : 1);
		if (!(d <= tol))
			fail_msg("%s: position %d: logits differ by %g (largest logit %g)", what,
				 t, (double)d, (double)scale);
		/* The same argmax, unless the reference itself has a near-tie
		 * there: its own logits for both tokens within the tolerance
		 * (int8 mode meets those on flat random models). */
		int ga = duet_argmax(g, vocab), ra = duet_argmax(r, vocab);
		if (ga != ra && !(r[ra] - r[ga] <= tol))
			fail_msg("%s: position %d: argmax %d, reference %d (reference logits %g and %g)",
				 what, t, ga, ra, (double)r[ga], (double)r[ra]);
	}
}

/* The reference's logits for the T tokens some_tokens(T) gives a model.
 * Tests run the same model and tokens through each instruction set and
 * kernel set in turn, and the reference does not depend on either: the
 * last answer is kept, keyed by the model's digest (which covers its
 * weights) and T. */
static const float *ref_prefill(const struct duet_model *m, const int *tok, int T)
{
	static char digest[DUET_DIGEST_HEX];
	static int n;
	static float *ref;
	if (ref && n == T && strcmp(digest, m->digest) == 0)
		return ref;
	free(ref);
	ref = malloc(sizeof(float) * (size_t)T * m->cfg.vocab_size);
	assert_non_null(ref);
	assert_int_equal(ref_forward(m, tok, T, ref), 0);
	snprintf(digest, sizeof digest, "%s", m->digest);
	n = T;
	return ref;
}

/* Prefill of T tokens in chunks of `chunk` (a chunk after the first
 * attends over rows already in the cache), with logits for all of them,
 * against the reference. */
static void prefill_chunked_vs_ref(const char *path, int T, int chunk, const char *kernels)
{
	struct rig r;
	rig_open(&r, path, 2, 0, kernels);
	int V = r.m->cfg.vocab_size;
	int *tok = malloc(sizeof(int) * (size_t)T);
	float *got = malloc(sizeof(float) * (size_t)T * V);
	assert_true(tok && got);
	some_tokens(tok, T, T, V);
	struct duet_kv_seq s;
	duet_kv_seq_init(&s);
	for (int p0 = 0; p0 < T; p0 += chunk) {
		int n = T - p0 < chunk ? T - p0 : chunk;
		struct duet_fwd_seq fs = {&s, tok + p0, n, DUET_LOGITS_ALL,
					  got + (size_t)p0 * V, NULL, 0};
		struct duet_err err;
		if (duet_forward(r.e, &fs, 1, &err))
			fail_msg("%s", err.msg);
	}
	assert_int_equal(s.n_tokens, T);
	const float *ref = ref_prefill(r.m, tok, T);
	char what[256];
	snprintf(what, sizeof what, "%s prefill T=%d chunk=%d kernels=%s qdot=%s kv=%s", path, T,
		 chunk, kernels ? kernels : "best", duet_qdot_name(g_qdot), duet_kv_dtype_name(g_kv));
	check_logits(r.m, got, ref, T, V, what);
	duet_kv_seq_release(r.kv, &s);
	free(tok), free(got);
	rig_close(&r);
}

static void prefill_vs_ref(const char *path, int T, const char *kernels)
{
	prefill_chunked_vs_ref(path, T, T, kernels);
}

/* Every kernel table; a test skips those this CPU cannot run. */
static const char *const isas[] = {"scalar", "avx2", "avxvnni", "avx512"};
#define N_ISAS ((int)(sizeof isas / sizeof isas[0]))

static void model_path(char *p, const char *shape, enum duet_dtype dt, const char *fmt)
{
	tu_make_model(p, shape, dt, fmt, -1, 7);
}

static void test_prefill_f32_gguf(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny", DUET_F32, "gguf");
	prefill_vs_ref(p, 5, NULL);  /* native kernels path */
	prefill_vs_ref(p, 40, NULL); /* several KV blocks, two units of rows */
	/* After cached context: chunks of fewer query rows x heads than the
	 * many-rows kernels take, and chunks of more rows than a unit has
	 * (DUET_ATTN_UNIT_Q / 2 here). */
	prefill_chunked_vs_ref(p, 40, 7, NULL);
	prefill_chunked_vs_ref(p, 75, DUET_ATTN_UNIT_Q / 2 + 5, NULL);
}

static void test_prefill_llama2c_untied(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny-mha", DUET_F32, "llama2c");
	prefill_vs_ref(p, 9, NULL);
	prefill_vs_ref(p, 33, NULL);
}

static void test_prefill_f16(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny", DUET_F16, "gguf");
	prefill_vs_ref(p, 6, NULL);
	prefill_vs_ref(p, 37, NULL);
}

static void test_prefill_q8_0(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny-mha", DUET_Q8_0, "gguf");
	prefill_vs_ref(p, 6, NULL);
	prefill_vs_ref(p, 37, NULL);
}

/* Every instruction set this CPU runs computes the same function. */
static void test_prefill_each_isa(void **st)
{
	(void)st;
	static const enum duet_dtype types[] = {DUET_F32, DUET_F16, DUET_Q8_0};
	char p[4096];
	for (int t = 0; t < 3; t++) {
		model_path(p, "tiny", types[t], "gguf");
		for (int i = 0; i < N_ISAS; i++) {
			if (!duet_kernels_named(isas[i]))
				continue;
			prefill_vs_ref(p, 4, isas[i]);
			prefill_vs_ref(p, 20, isas[i]);
			prefill_chunked_vs_ref(p, 20, 6, isas[i]);
		}
	}
}

/* B sequences with prompts of different lengths decode together, one token
 * each per step; each step's logits match the reference over the whole
 * sequence so far. (The reference is causal: one pass over a sequence's
 * final tokens gives every step's logits at its position, so it runs once
 * per sequence, not once per step.) */
static void batched_decode(const char *path, int B, int steps)
{
	struct rig r;
	rig_open(&r, path, 2, 0, NULL);
	int V = r.m->cfg.vocab_size;
	int maxlen = 12 + 5 * B + steps;
	struct duet_kv_seq *s = calloc((size_t)B, sizeof *s);
	int *tok = calloc((size_t)B * maxlen, sizeof *tok);
	int *len = calloc((size_t)B, sizeof *len);
	float *logits = malloc(sizeof(float) * (size_t)B * V);
	float *ref = malloc(sizeof(float) * (size_t)maxlen * V);
	float *got = malloc(sizeof(float) * (size_t)B * steps * V); /* [b][step] */
	struct duet_fwd_seq *fs = calloc((size_t)B, sizeof *fs);
	int *next = calloc((size_t)B, sizeof *next);
	assert_true(s && tok && len && logits && ref && got && fs && next);
	struct duet_err err;
	for (int b = 0; b < B; b++) {
		duet_kv_seq_init(&s[b]);
		len[b] = 2 + 5 * b + (b % 3) * 4; /* positions cross block edges */
		some_tokens(tok + b * maxlen, len[b], 100 + b, V);
		struct duet_fwd_seq one = {&s[b], tok + b * maxlen, len[b], DUET_LOGITS_LAST,
					   logits + (size_t)b * V, NULL, 0};
		if (duet_forward(r.e, &one, 1, &err))
			fail_msg("%s", err.msg);
	}
	for (int step = 0; step < steps; step++) {
		for (int b = 0; b < B; b++) {
			next[b] = duet_argmax(logits + (size_t)b * V, V);
			tok[b * maxlen + len[b]] = next[b];
			fs[b] = (struct duet_fwd_seq){&s[b], &next[b], 1, DUET_LOGITS_LAST,
						      logits + (size_t)b * V, NULL, 0};
		}
		if (duet_forward(r.e, fs, B, &err))
			fail_msg("%s", err.msg);
		for (int b = 0; b < B; b++) {
			len[b]++;
			assert_int_equal(s[b].n_tokens, len[b]);
			memcpy(got + ((size_t)b * steps + step) * V, logits + (size_t)b * V,
			       sizeof(float) * V);
		}
	}
	for (int b = 0; b < B; b++) {
		/* the positions the steps fed: the last `steps` */
		assert_int_equal(ref_forward_last(r.m, tok + b * maxlen, len[b], steps, ref), 0);
		for (int step = 0; step < steps; step++) {
			int at = len[b] - steps + step;
			char what[256];
			snprintf(what, sizeof what, "%s decode B=%d step %d seq %d (len %d) qdot=%s",
				 path, B, step, b, at + 1, duet_qdot_name(g_qdot));
			check_logits(r.m, got + ((size_t)b * steps + step) * V, ref + (size_t)step * V,
				     1, V, what);
		}
	}
	for (int b = 0; b < B; b++)
		duet_kv_seq_release(r.kv, &s[b]);
	assert_int_equal(r.kv->n_free, r.kv->n_blocks);
	free(s), free(tok), free(len), free(logits), free(ref), free(got), free(fs), free(next);
	rig_close(&r);
}

static void test_batched_decode_f32(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny", DUET_F32, "gguf");
	batched_decode(p, 1, 3);
	batched_decode(p, 3, 3);
	batched_decode(p, 8, 2);
}

static void test_batched_decode_f16_q8(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny", DUET_F16, "gguf");
	batched_decode(p, 3, 2);
	model_path(p, "tiny-mha", DUET_Q8_0, "gguf");
	batched_decode(p, 8, 2);
}

/* Batch sizes past the kernel path's limit go through sgemm as decode rows. */
static void test_batched_decode_wide(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny", DUET_Q8_0, "gguf");
	batched_decode(p, 20, 1);
}

/* A prompt and decode steps of other sequences in one forward call. */
static void test_mixed_batch(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny", DUET_F16, "gguf");
	struct rig r;
	rig_open(&r, p, 2, 0, NULL);
	int V = r.m->cfg.vocab_size;
	int a[30], b[12];
	some_tokens(a, 30, 1, V);
	some_tokens(b, 12, 2, V);
	struct duet_kv_seq sa, sb;
	duet_kv_seq_init(&sa), duet_kv_seq_init(&sb);
	float *la = malloc(sizeof(float) * (size_t)V * 30), *lb = malloc(sizeof(float) * V);
	float *ref = malloc(sizeof(float) * (size_t)V * 30);
	struct duet_err err;
	struct duet_fwd_seq f1 = {&sb, b, 11, DUET_LOGITS_NONE, NULL, NULL, 0};
	if (duet_forward(r.e, &f1, 1, &err))
		fail_msg("%s", err.msg);
	struct duet_fwd_seq f2[2] = {{&sa, a, 30, DUET_LOGITS_ALL, la, NULL, 0},
				     {&sb, b + 11, 1, DUET_LOGITS_LAST, lb, NULL, 0}};
	if (duet_forward(r.e, f2, 2, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(ref_forward(r.m, a, 30, ref), 0);
	check_logits(r.m, la, ref, 30, V, "mixed batch: prompt");
	assert_int_equal(ref_forward_last(r.m, b, 12, 1, ref), 0);
	check_logits(r.m, lb, ref, 1, V, "mixed batch: decode");
	duet_kv_seq_release(r.kv, &sa), duet_kv_seq_release(r.kv, &sb);
	free(la), free(lb), free(ref);
	rig_close(&r);
}

/* What the cluster's text rests on: a row's logits do not depend on the
 * rows beside it. A prompt then STEPS greedy decode steps of one token
 * (duet generate's route) against (a) the same prompt, then the tokens
 * those steps fed as one chunk with decode_rows (a failover's resumed
 * stream, wider than the narrow kernels' 16 rows), and (b) each step fed
 * beside a 20-token prompt of another sequence (a decode node's step
 * with a local prefill): the same logits bit for bit, wherever this
 * machine's kernels take the type at every width (F16 and F32 where they
 * pack it, the quantized types in int8 mode); elsewhere within the
 * tolerance. */
static void rows_exact(const char *path, int exact)
{
	enum { P = 20, STEPS = 24, OTHER = 20 };
	struct rig r;
	rig_open(&r, path, 2, 0, NULL);
	int V = r.m->cfg.vocab_size;
	int tok[P + STEPS], other[OTHER];
	some_tokens(tok, P, 5, V);
	some_tokens(other, OTHER, 6, V);
	float *step = malloc(sizeof(float) * (size_t)V * STEPS);
	float *chunk = malloc(sizeof(float) * (size_t)V * STEPS);
	float *mixed = malloc(sizeof(float) * (size_t)V * STEPS);
	float *last = malloc(sizeof(float) * V);
	assert_true(step && chunk && mixed && last);
	struct duet_err err;
	/* duet generate's route; (b) alongside, each step beside a prompt */
	struct duet_kv_seq a, b, o;
	duet_kv_seq_init(&a), duet_kv_seq_init(&b);
	struct duet_fwd_seq f = {&a, tok, P, DUET_LOGITS_LAST, last, NULL, 0};
	assert_int_equal(duet_forward(r.e, &f, 1, &err), 0);
	f = (struct duet_fwd_seq){&b, tok, P, DUET_LOGITS_LAST, last, NULL, 0};
	assert_int_equal(duet_forward(r.e, &f, 1, &err), 0);
	for (int i = 0; i < STEPS; i++) {
		tok[P + i] = duet_argmax(i ? step + (size_t)(i - 1) * V : last, V);
		f = (struct duet_fwd_seq){&a, tok + P + i, 1, DUET_LOGITS_LAST, step + (size_t)i * V,
					  NULL, 0};
		assert_int_equal(duet_forward(r.e, &f, 1, &err), 0);
		duet_kv_seq_init(&o);
		struct duet_fwd_seq two[2] = {
			{&o, other, OTHER, DUET_LOGITS_LAST, last, NULL, 0},
			{&b, tok + P + i, 1, DUET_LOGITS_LAST, mixed + (size_t)i * V, NULL, 0}};
		assert_int_equal(duet_forward(r.e, two, 2, &err), 0);
		duet_kv_seq_release(r.kv, &o);
	}
	/* (a): the resumed stream */
	duet_kv_seq_release(r.kv, &b);
	duet_kv_seq_init(&b);
	f = (struct duet_fwd_seq){&b, tok, P, DUET_LOGITS_NONE, NULL, NULL, 0};
	assert_int_equal(duet_forward(r.e, &f, 1, &err), 0);
	f = (struct duet_fwd_seq){&b, tok + P, STEPS, DUET_LOGITS_ALL, chunk, NULL, 1};
	assert_int_equal(duet_forward(r.e, &f, 1, &err), 0);
	char what[256];
	for (int i = 0; i < STEPS; i++) {
		const float *s = step + (size_t)i * V;
		snprintf(what, sizeof what, "%s: step %d resumed in one chunk", path, i);
		if (exact && memcmp(s, chunk + (size_t)i * V, sizeof(float) * V))
			fail_msg("%s: other bits than the step", what);
		check_logits(r.m, chunk + (size_t)i * V, s, 1, V, what);
		snprintf(what, sizeof what, "%s: step %d beside a prompt", path, i);
		if (exact && memcmp(s, mixed + (size_t)i * V, sizeof(float) * V))
			fail_msg("%s: other bits than the step alone", what);
		check_logits(r.m, mixed + (size_t)i * V, s, 1, V, what);
	}
	duet_kv_seq_release(r.kv, &a), duet_kv_seq_release(r.kv, &b);
	free(step), free(chunk), free(mixed), free(last);
	rig_close(&r);
}

static void test_rows_exact(void **st)
{
	(void)st;
	char p[4096];
	const struct duet_kernels *k = duet_kernels();
	static const enum duet_dtype floats[] = {DUET_F32, DUET_F16};
	for (int i = 0; i < 2; i++) {
		model_path(p, "tiny", floats[i], "gguf");
		rows_exact(p, duet_kernels_packs(k, floats[i]));
	}
	g_qdot = DUET_QDOT_INT8;
	model_path(p, "tiny", DUET_Q8_0, "gguf");
	rows_exact(p, 1);
	g_kv = DUET_KV_F16; /* rows rounded alike when computed alike */
	rows_exact(p, 1);
	g_kv = DUET_KV_F32;
	g_qdot = DUET_QDOT_EXACT;
}

static void greedy(const char *path, int max_batch, int threads, const int *prompt, int np,
		   int n, struct tu_gen *out)
{
	struct rig r;
	rig_open(&r, path, threads, max_batch, NULL);
	tu_greedy(r.e, r.kv, r.m, prompt, np, n, 1, out);
	assert_int_equal(out->n, n);
	assert_int_equal(r.kv->n_free, r.kv->n_blocks);
	rig_close(&r);
}

/* Prefill in one pass, in chunks, or one token at a time, on one thread or
 * two: the same greedy continuation, which the reference agrees with. */
static void greedy_routes(const char *p)
{
	struct duet_model *m = tu_open(p);
	int V = m->cfg.vocab_size;
	duet_model_close(m);
	int prompt[45];
	some_tokens(prompt, 45, 9, V);
	static struct tu_gen whole, chunked, single, one_thread;
	greedy(p, 0, 2, prompt, 45, 24, &whole);
	greedy(p, 8, 2, prompt, 45, 24, &chunked);
	greedy(p, 1, 2, prompt, 45, 24, &single);
	greedy(p, 0, 1, prompt, 45, 24, &one_thread);
	assert_memory_equal(whole.tokens, chunked.tokens, sizeof(int) * 24);
	assert_memory_equal(whole.tokens, single.tokens, sizeof(int) * 24);
	assert_memory_equal(whole.tokens, one_thread.tokens, sizeof(int) * 24);
	/* And the reference agrees on the whole continuation (fed the same
	 * tokens): its argmax at every position, or in int8 mode a token
	 * within the mode's tolerance of it (check_logits' near-tie). */
	int seq[45 + 24];
	memcpy(seq, prompt, sizeof prompt);
	memcpy(seq + 45, whole.tokens, sizeof(int) * 24);
	float *ref = malloc(sizeof(float) * (size_t)V * 69);
	m = tu_open(p);
	/* positions 44..68: the prompt's last and the continuation's */
	assert_int_equal(ref_forward_last(m, seq, 69, 25, ref), 0);
	for (int i = 0; i < 24; i++) {
		const float *r = ref + (size_t)i * V;
		int ra = duet_argmax(r, V), ga = whole.tokens[i];
		float scale = tu_max_abs(r, (size_t)V);
		float tol = g_qdot == DUET_QDOT_INT8 ? tol_for(m) * (scale > 1 ? scale : 1) : 0;
		if (ga != ra && !(r[ra] - r[ga] <= tol))
			fail_msg("%s: token %d of the continuation is %d, the reference's argmax %d "
				 "(reference logits %g and %g)",
				 p, i, ga, ra, (double)r[ga], (double)r[ra]);
	}
	duet_model_close(m);
	free(ref);
}

static void test_greedy_same_every_route(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny", DUET_F32, "gguf");
	greedy_routes(p);
}

static void test_bf16(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny", DUET_BF16, "gguf");
	prefill_vs_ref(p, 6, NULL);
	prefill_vs_ref(p, 37, NULL);
	batched_decode(p, 5, 2);
	greedy_routes(p);
}

static int int8_mode(void **st)
{
	(void)st;
	g_qdot = DUET_QDOT_INT8;
	return 0;
}

static int exact_mode(void **st)
{
	(void)st;
	g_qdot = DUET_QDOT_EXACT;
	g_kv = DUET_KV_F32;
	return 0;
}

static int kv_f16(void **st)
{
	(void)st;
	g_kv = DUET_KV_F16;
	return 0;
}

static int kv_int8(void **st)
{
	(void)st;
	g_kv = DUET_KV_INT8;
	return 0;
}

/* KV rows stored as f16 or int8 (test setup picks which): prompts whole,
 * prompts after cached context (attention over stored rows), batched
 * decode, and the same greedy text by every route, within the stated
 * tolerance of the exact reference. */
static void test_kv_rounded(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny-mha", DUET_F32, "gguf");
	prefill_vs_ref(p, 6, NULL);
	prefill_vs_ref(p, 37, NULL);
	prefill_chunked_vs_ref(p, 37, 5, NULL);
	prefill_chunked_vs_ref(p, 90, DUET_ATTN_UNIT_Q + 3, NULL); /* two units of rows */
	batched_decode(p, 1, 3);
	batched_decode(p, 6, 2);
	model_path(p, "tiny", DUET_F16, "gguf");
	batched_decode(p, 20, 1);
	greedy_routes(p);
}

/* Q8_0 weights with int8 activations (the default mode): logits within
 * LOGIT_TOL_INT8 of the exact reference with the same argmax, prefill and
 * decode of any batch width through the same integer kernels, and so the
 * same greedy text whether the prompt is prefilled whole or in pieces. */
static void test_q8_0_int8(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny-mha", DUET_Q8_0, "gguf");
	prefill_vs_ref(p, 6, NULL);
	prefill_vs_ref(p, 37, NULL);
	for (int i = 0; i < N_ISAS; i++)
		if (duet_kernels_named(isas[i])) {
			prefill_vs_ref(p, 4, isas[i]);
			prefill_vs_ref(p, 20, isas[i]);
		}
	batched_decode(p, 1, 3);
	batched_decode(p, 8, 2);
	model_path(p, "tiny", DUET_Q8_0, "gguf");
	batched_decode(p, 20, 1);
	greedy_routes(p);
}

/* Prefill of T tokens then `steps` greedy tokens, every position's logits
 * into out (T + steps rows), with the weights placed as asked. */
static void run_placed(const char *path, enum duet_weights wp, int T, int steps, float *out,
		       enum duet_layout *layout)
{
	struct rig r;
	g_weights = wp;
	rig_open(&r, path, 2, 0, NULL);
	g_weights = DUET_WEIGHTS_MMAP;
	*layout = r.m->layers[0].w_up.layout;
	int V = r.m->cfg.vocab_size, tok[64];
	assert_true(T + steps <= 64);
	some_tokens(tok, T, 3, V);
	struct duet_kv_seq s;
	duet_kv_seq_init(&s);
	struct duet_fwd_seq fs = {&s, tok, T, DUET_LOGITS_ALL, out, NULL, 0};
	struct duet_err err;
	if (duet_forward(r.e, &fs, 1, &err))
		fail_msg("%s", err.msg);
	for (int i = 0; i < steps; i++) {
		int p = T + i;
		tok[p] = duet_argmax(out + (size_t)(p - 1) * V, V);
		struct duet_fwd_seq d = {&s, tok + p, 1, DUET_LOGITS_ALL, out + (size_t)p * V, NULL, 0};
		if (duet_forward(r.e, &d, 1, &err))
			fail_msg("%s", err.msg);
	}
	duet_kv_seq_release(r.kv, &s);
	rig_close(&r);
}

/* Q8_0, Q4_0 and Q4_K weights (alone, and Q4_K_M's) packed in 16-row
 * groups at load (into the private copy a decode node makes, in huge
 * pages or in base pages, engine/repack.h) give the logits of the file's
 * layout bit for bit, prefill and decode: in int8 mode the packing table
 * packs mapped weights on the fly, and exact mode unpacks rows. The tied
 * classifier is packed with the embedding, whose rows are read back. */
static void test_q8_0_packed(void **st)
{
	(void)st;
	char p[4096];
	static const struct {
		const char *shape;
		enum duet_dtype t;
		enum duet_mix mix;
	} models[] = {
		{"tiny", DUET_Q8_0, DUET_MIX_NONE},   {"tiny-mha", DUET_Q8_0, DUET_MIX_NONE},
		{"tiny", DUET_Q4_0, DUET_MIX_NONE},   {"tiny-k", DUET_Q4_K, DUET_MIX_NONE},
		{"tiny-k", DUET_Q5_K, DUET_MIX_NONE},
		{"tiny-k", DUET_Q4_K, DUET_MIX_Q4_K_M},
	};
	for (size_t si = 0; si < sizeof models / sizeof models[0]; si++)
		for (int q = 0; q < 2; q++) {
			g_qdot = q ? DUET_QDOT_EXACT : DUET_QDOT_INT8;
			tu_make_model_mix(p, models[si].shape, models[si].t, models[si].mix, "gguf", -1, 7);
			struct duet_model *m = tu_open(p);
			int V = m->cfg.vocab_size;
			duet_model_close(m);
			const int T = 21, steps = 6;
			float *a = malloc(sizeof(float) * (size_t)(T + steps) * V);
			float *b = malloc(sizeof(float) * (size_t)(T + steps) * V);
			enum duet_layout la, lb;
			run_placed(p, DUET_WEIGHTS_MMAP, T, steps, a, &la);
			assert_int_equal(la, DUET_LAYOUT_ROWS);
			static const enum duet_weights copies[] = {DUET_WEIGHTS_HUGEPAGES,
								   DUET_WEIGHTS_COPY};
			for (int c = 0; c < 2; c++) {
				run_placed(p, copies[c], T, steps, b, &lb);
				if (duet_kernels_packs(duet_kernels(), models[si].t))
					assert_int_equal(lb, DUET_LAYOUT_R16);
				if (memcmp(a, b, sizeof(float) * (size_t)(T + steps) * V))
					fail_msg("%s (%s, %s): packed weights give other logits than mapped ones",
						 p, duet_qdot_name(g_qdot), duet_weights_name(copies[c]));
			}
			free(a), free(b);
		}
	g_qdot = DUET_QDOT_EXACT;
}

/* Every other quantized type (rows of 32-blocks on the tiny shape, of
 * 256-blocks on tiny-k, and the q4_k_m mix) against the reference: in
 * int8 mode prefill with every instruction set, batched decode, and greedy
 * text the same by every route; in exact mode prefill. */
static void test_quant_types(void **st)
{
	(void)st;
	static const struct {
		const char *shape;
		enum duet_dtype t;
		enum duet_mix mix;
	} models[] = {
		{"tiny", DUET_Q4_0, DUET_MIX_NONE},   {"tiny", DUET_Q4_1, DUET_MIX_NONE},
		{"tiny", DUET_Q5_0, DUET_MIX_NONE},   {"tiny", DUET_Q5_1, DUET_MIX_NONE},
		{"tiny-k", DUET_Q4_K, DUET_MIX_NONE}, {"tiny-k", DUET_Q5_K, DUET_MIX_NONE},
		{"tiny-k", DUET_Q6_K, DUET_MIX_NONE}, {"tiny-k", DUET_Q4_K, DUET_MIX_Q4_K_M},
	};
	char p[4096];
	for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
		tu_make_model_mix(p, models[i].shape, models[i].t, models[i].mix, "gguf", -1, 7);
		struct duet_model *m = tu_open(p);
		assert_int_equal(duet_model_dtype(m), models[i].t);
		duet_model_close(m);
		if (g_qdot == DUET_QDOT_EXACT) {
			/* Exact mode dequantizes these types with the scalar
			 * code on every instruction set. */
			prefill_vs_ref(p, 21, NULL);
			continue;
		}
		for (int k = 0; k < N_ISAS; k++)
			if (duet_kernels_named(isas[k]))
				prefill_vs_ref(p, 21, isas[k]);
		batched_decode(p, 6, 2);
		if (models[i].mix == DUET_MIX_Q4_K_M)
			greedy_routes(p);
	}
}

/* The architectures beyond Llama 2: Llama 3's RoPE frequency divisors
 * (rope_freqs.weight; a prompt of 150 positions turns the low frequencies
 * far enough for them to show), Qwen2 (Q/K/V biases, NeoX RoPE pairs) and
 * Qwen3 (per-head Q/K norms, heads of 32 on a dim of 64: Q twice as wide as
 * the residual), against the reference: prefill whole and in chunks, batched decode, and
 * greedy text by every route. (llama.cpp gives these files' greedy tokens
 * too: BENCHMARKS.md.) */
static void test_architectures(void **st)
{
	(void)st;
	static const char *shapes[] = {"tiny-llama3", "tiny-qwen2", "tiny-qwen3"};
	char p[4096];
	for (int i = 0; i < 3; i++) {
		tu_make_model(p, shapes[i], DUET_F32, "gguf", 0, 7);
		prefill_vs_ref(p, 5, NULL);
		prefill_chunked_vs_ref(p, 150, 37, NULL);
		batched_decode(p, 6, 2);
		greedy_routes(p);
	}
	tu_make_model(p, "tiny-qwen2", DUET_Q8_0, "gguf", 0, 7);
	prefill_vs_ref(p, 21, NULL);
}

/* The same model as GGUF and as llama2.c: same digest, same tokens. */
static void test_formats_agree(void **st)
{
	(void)st;
	char g[4096], l[4096];
	tu_make_model(g, "tiny-mha", DUET_F32, "gguf", -1, 3);
	tu_make_model(l, "tiny-mha", DUET_F32, "llama2c", -1, 3);
	struct duet_model *mg = tu_open(g), *ml = tu_open(l);
	assert_string_equal(mg->digest, ml->digest);
	int V = mg->cfg.vocab_size;
	duet_model_close(mg), duet_model_close(ml);
	int prompt[10];
	some_tokens(prompt, 10, 4, V);
	static struct tu_gen a, b;
	greedy(g, 0, 2, prompt, 10, 16, &a);
	greedy(l, 0, 2, prompt, 10, 16, &b);
	assert_memory_equal(a.tokens, b.tokens, sizeof(int) * 16);
}

struct hook_ctx {
	const struct duet_kv_pool *kv;
	int calls;
	int bad;
};

static int hook(void *ctx, int layer, const struct duet_fwd_seq *seq, int first_pos, int n,
		const float *k, const float *v, int kv_dim, struct duet_err *err)
{
	(void)err;
	struct hook_ctx *h = ctx;
	h->calls++;
	for (int i = 0; i < n; i++) {
		const float *ck = duet_kv_row(h->kv, layer, 0, seq->kv, first_pos + i);
		const float *cv = duet_kv_row(h->kv, layer, 1, seq->kv, first_pos + i);
		if (memcmp(ck, k + (size_t)i * kv_dim, sizeof(float) * kv_dim) ||
		    memcmp(cv, v + (size_t)i * kv_dim, sizeof(float) * kv_dim))
			h->bad++;
	}
	return 0;
}

static int failing_hook(void *ctx, int layer, const struct duet_fwd_seq *seq, int first_pos,
			int n, const float *k, const float *v, int kv_dim, struct duet_err *err)
{
	(void)ctx, (void)seq, (void)first_pos, (void)n, (void)k, (void)v, (void)kv_dim;
	if (layer == 1)
		return duet_errf(err, "sender gone");
	return 0;
}

/* The layer hook sees each layer's new K and V, equal to what the cache
 * holds, once per layer and sequence; a failing hook fails the pass. */
static void test_layer_hook(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny", DUET_F32, "gguf");
	struct rig r;
	rig_open(&r, p, 2, 0, NULL);
	struct hook_ctx h = {r.kv, 0, 0};
	duet_engine_set_hook(r.e, hook, &h);
	int t[20];
	some_tokens(t, 20, 5, r.m->cfg.vocab_size);
	struct duet_kv_seq s1, s2;
	duet_kv_seq_init(&s1), duet_kv_seq_init(&s2);
	struct duet_fwd_seq fs[2] = {{&s1, t, 20, DUET_LOGITS_NONE, NULL, NULL, 0},
				     {&s2, t, 3, DUET_LOGITS_NONE, NULL, NULL, 0}};
	struct duet_err err;
	assert_int_equal(duet_forward(r.e, fs, 2, &err), 0);
	assert_int_equal(h.calls, 2 * r.m->cfg.n_layers);
	assert_int_equal(h.bad, 0);
	duet_engine_set_hook(r.e, failing_hook, NULL);
	fs[0].tokens = t + 5, fs[0].n_tokens = 1;
	assert_int_not_equal(duet_forward(r.e, fs, 1, &err), 0);
	assert_non_null(strstr(err.msg, "sender gone"));
	duet_kv_seq_release(r.kv, &s1), duet_kv_seq_release(r.kv, &s2);
	rig_close(&r);
}

/* Too few KV blocks: the pass fails and no sequence moves. */
static void test_kv_exhaustion(void **st)
{
	(void)st;
	char p[4096];
	model_path(p, "tiny", DUET_F32, "gguf");
	struct duet_model *m = tu_open(p);
	struct duet_kv_geom g = duet_kv_geom_for(m, DUET_KV_BLOCK_TOKENS, DUET_KV_F32);
	struct duet_kv_pool *kv;
	struct duet_engine *e;
	struct duet_err err;
	assert_int_equal(duet_kv_pool_create(&kv, &g, 3, &err), 0);
	assert_int_equal(duet_engine_create(&e, m, kv, NULL, &err), 0);
	int t[40];
	some_tokens(t, 40, 1, m->cfg.vocab_size);
	struct duet_kv_seq a, b;
	duet_kv_seq_init(&a), duet_kv_seq_init(&b);
	struct duet_fwd_seq fs[2] = {{&a, t, 20, DUET_LOGITS_NONE, NULL, NULL, 0},
				     {&b, t, 20, DUET_LOGITS_NONE, NULL, NULL, 0}};
	assert_int_not_equal(duet_forward(e, fs, 2, &err), 0);
	assert_int_equal(a.n_tokens, 0);
	assert_int_equal(b.n_tokens, 0);
	assert_int_equal(kv->n_free, 3);
	assert_int_equal(duet_forward(e, fs, 1, &err), 0);
	assert_int_equal(a.n_tokens, 20);
	duet_kv_seq_release(kv, &a), duet_kv_seq_release(kv, &b);
	duet_engine_destroy(e);
	duet_kv_pool_destroy(kv);
	duet_model_close(m);
}

/* A prefaulted pool has every page resident before anything is written,
 * and is otherwise the pool it was. */
static void test_kv_prefault(void **st)
{
	(void)st;
	struct duet_kv_geom g = {.n_layers = 2, .n_kv_heads = 2, .head_dim = 64,
				 .block_tokens = DUET_KV_BLOCK_TOKENS, .dtype = DUET_KV_F16};
	struct duet_kv_pool *kv;
	struct duet_err err;
	assert_int_equal(duet_kv_pool_create(&kv, &g, 300, &err), 0);
	long page = sysconf(_SC_PAGESIZE);
	size_t pages = (kv->bytes + (size_t)page - 1) / (size_t)page, resident = 0;
	unsigned char *vec = malloc(pages);
	assert_non_null(vec);
	assert_int_equal(mincore(kv->data, kv->bytes, vec), 0);
	for (size_t i = 0; i < pages; i++)
		resident += vec[i] & 1;
	assert_true(resident < pages); /* taken lazily until now */
	assert_int_equal(duet_kv_pool_prefault(kv, &err), 0);
	assert_int_equal(mincore(kv->data, kv->bytes, vec), 0);
	resident = 0;
	for (size_t i = 0; i < pages; i++)
		resident += vec[i] & 1;
	assert_int_equal(resident, pages);
	assert_int_equal(kv->n_free, 300);
	for (size_t i = 0; i < kv->bytes; i += (size_t)page)
		assert_int_equal(((const uint8_t *)kv->data)[i], 0);
	free(vec);
	duet_kv_pool_destroy(kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prefill_f32_gguf),
		cmocka_unit_test(test_prefill_llama2c_untied),
		cmocka_unit_test(test_prefill_f16),
		cmocka_unit_test(test_prefill_q8_0),
		cmocka_unit_test(test_prefill_each_isa),
		cmocka_unit_test(test_batched_decode_f32),
		cmocka_unit_test(test_batched_decode_f16_q8),
		cmocka_unit_test(test_batched_decode_wide),
		cmocka_unit_test(test_mixed_batch),
		cmocka_unit_test(test_greedy_same_every_route),
		cmocka_unit_test(test_rows_exact),
		cmocka_unit_test(test_bf16),
		cmocka_unit_test_setup_teardown(test_bf16, int8_mode, exact_mode),
		cmocka_unit_test_setup_teardown(test_q8_0_int8, int8_mode, exact_mode),
		cmocka_unit_test(test_q8_0_packed),
		cmocka_unit_test_setup_teardown(test_quant_types, int8_mode, exact_mode),
		cmocka_unit_test(test_quant_types),
		cmocka_unit_test_setup_teardown(test_kv_rounded, kv_f16, exact_mode),
		cmocka_unit_test_setup_teardown(test_kv_rounded, kv_int8, exact_mode),
		cmocka_unit_test(test_architectures),
		cmocka_unit_test(test_formats_agree),
		cmocka_unit_test(test_layer_hook),
		cmocka_unit_test(test_kv_exhaustion),
		cmocka_unit_test(test_kv_prefault),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
