/* Each instruction set's kernels against the scalar table, which is
 * itself checked against straight double-precision loops here. Sizes
 * cover the vector tails and every batch width of the decode kernels. */
#include "testutil.h"

#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/threadpool.h"
#include "engine/dtype.h"
#include "engine/kern/kernels.h"
#include "engine/matmul.h"
#include "engine/repack.h"

static void fill(float *x, int n, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
	for (int i = 0; i < n; i++)
		x[i] = tu_frand(&s);
}

static const char *isas[] = {"scalar", "avx2", "avxvnni", "avx512"};
#define N_ISAS ((int)(sizeof isas / sizeof isas[0]))

/* |a-b| <= tol * (1 + |ref|), element by element. */
static void close_enough(const float *a, const float *ref, int n, float tol, const char *what)
{
	for (int i = 0; i < n; i++)
		if (!(fabsf(a[i] - ref[i]) <= tol * (1 + fabsf(ref[i]))))
			fail_msg("%s: element %d is %g, expected %g", what, i, (double)a[i],
				 (double)ref[i]);
}

/* y = x W^T in double precision from the weights as stored (dequantized)
 * and the activations as the kernel sees them. */
static void reference(enum duet_dtype t, const uint8_t *w, size_t rb, int N, int K,
		      const float *x, int ldx, int B, double *ref)
{
	float *wd = malloc(sizeof(float) * K);
	for (int n = 0; n < N; n++) {
		duet_dequant_row(t, w + rb * n, wd, K);
		for (int b = 0; b < B; b++) {
			double s = 0;
			for (int k = 0; k < K; k++)
				s += (double)wd[k] * x[b * ldx + k];
			ref[b * N + n] = s;
		}
	}
	free(wd);
}

/* Row b of a q8 panel of B rows back to f32 (what the integer kernels
 * multiply by). */
static void dequant_q8a(const struct duet_q8a_pair *panel, int B, int b, float *x, int K)
{
	for (int k = 0; k < K; k++) {
		const struct duet_q8a_pair *p = &panel[(size_t)(k / 64) * B + b];
		x[k] = (float)p->q[k % 64] * p->d[(k % 64) / 32 * 8];
	}
}

/* Row b of a q8k panel of B rows back to f32. */
static void dequant_q8k(const struct duet_q8k_block *panel, int B, int b, float *x, int K)
{
	for (int k = 0; k < K; k++) {
		const struct duet_q8k_block *p = &panel[(size_t)(k / DUET_Q8K) * B + b];
		x[k] = (float)p->q[duet_q8k_pos(k % DUET_Q8K)] * p->d;
	}
}

/* Every kernel against double precision for every weight type, on odd
 * sizes: K with and without vector tails, N not a multiple of any tile
 * height (split in two row ranges, as threads split it), B = 1 to 17 (the
 * tile widths and their groups), for f32 activations and for int8 ones. */
static void test_matmul(void **st)
{
	(void)st;
	static const enum duet_dtype types[] = {DUET_F32,  DUET_F16,  DUET_BF16, DUET_Q8_0,
						DUET_Q4_0, DUET_Q4_1, DUET_Q5_0, DUET_Q5_1,
						DUET_Q4_K, DUET_Q5_K, DUET_Q6_K};
	static const int Ks[] = {32, 96, 160, 288, 1056, 37, 4099, 256, 768};
	const int N = 37, BMAX = 17;
	for (int ti = 0; ti < (int)(sizeof types / sizeof types[0]); ti++)
		for (int ki = 0; ki < (int)(sizeof Ks / sizeof Ks[0]); ki++) {
			int K = Ks[ki];
			enum duet_dtype t = types[ti];
			if (K % duet_dtype_block(t))
				continue;
			size_t rb = duet_row_bytes(t, K);
			int ldx = K + 3, ldy = N + 5;
			float *wf = malloc(sizeof(float) * (size_t)N * K);
			uint8_t *w = malloc(rb * N);
			float *x = malloc(sizeof(float) * BMAX * ldx);
			float *xq = malloc(sizeof(float) * BMAX * ldx);
			double *ref = malloc(sizeof(double) * BMAX * N);
			double *refq = malloc(sizeof(double) * BMAX * N);
			double *refk = malloc(sizeof(double) * BMAX * N);
			float *y = malloc(sizeof(float) * BMAX * ldy);
			float *y2 = malloc(sizeof(float) * BMAX * ldy);
			fill(wf, N * K, (uint64_t)K + ti);
			fill(x, BMAX * ldx, (uint64_t)K * 7);
			for (int n = 0; n < N; n++)
				duet_quant_row(t, wf + (size_t)n * K, w + rb * n, K);
			reference(t, w, rb, N, K, x, ldx, BMAX, ref);
			/* The panels depend on B: each B gets its own, and the
			 * int8 reference its own dequantized activations. */
			size_t np = duet_panel_q8_pairs(K, BMAX);
			struct duet_q8a_pair *qa = aligned_alloc(64, sizeof *qa * np);
			struct duet_q8a_pair *mine = aligned_alloc(64, sizeof *qa * np);
			float *pf = aligned_alloc(64, sizeof(float) * duet_panel_f32_floats(K, BMAX));
			size_t nk = duet_panel_q8k_blocks(K, BMAX);
			struct duet_q8k_block *kref = aligned_alloc(64, sizeof *kref * nk);
			struct duet_q8k_block *kmine = aligned_alloc(64, sizeof *kref * nk);
			size_t nbf = duet_panel_bf16_chunks(K, BMAX);
			struct duet_bf16x2 *bref = aligned_alloc(64, sizeof *bref * nbf);
			struct duet_bf16x2 *bmine = aligned_alloc(64, sizeof *bref * nbf);
			/* bf16 pairs: what the kernel multiplies is hi + lo;
			 * bf16 alone: hi. */
			double *refb = malloc(sizeof(double) * BMAX * N);
			double *refh = malloc(sizeof(double) * BMAX * N);
			if (t == DUET_BF16) {
				duet_panel_pack_bf16_ref(x, ldx, K, BMAX, bref);
				for (int b = 0; b < BMAX; b++)
					for (int k = 0; k < K; k++)
						xq[b * ldx + k] = duet_bf16_to_fp32(
							bref[(size_t)(k / 32) * BMAX + b].hi[k % 32]);
				reference(t, w, rb, N, K, xq, ldx, BMAX, refh);
				for (int b = 0; b < BMAX; b++)
					for (int k = 0; k < K; k++) {
						const struct duet_bf16x2 *c = &bref[(size_t)(k / 32) * BMAX + b];
						xq[b * ldx + k] = duet_bf16_to_fp32(c->hi[k % 32]) +
								  duet_bf16_to_fp32(c->lo[k % 32]);
					}
				reference(t, w, rb, N, K, xq, ldx, BMAX, refb);
			}
			/* A row's int8 form does not depend on the panel's width
			 * (only quantized weights, whole blocks, take it). */
			if (duet_dtype_quantized(t)) {
				for (int b = 0; b < BMAX; b++) {
					duet_quant_q8a_ref(x + b * ldx, K, qa, BMAX, b);
					dequant_q8a(qa, BMAX, b, xq + b * ldx, K);
				}
				reference(t, w, rb, N, K, xq, ldx, BMAX, refq);
			}
			if (duet_dtype_kquant(t)) {
				for (int b = 0; b < BMAX; b++) {
					duet_quant_q8k_ref(x + b * ldx, K, kref, BMAX, b);
					dequant_q8k(kref, BMAX, b, xq + b * ldx, K);
				}
				reference(t, w, rb, N, K, xq, ldx, BMAX, refk);
			}
			for (int ii = 0; ii < N_ISAS; ii++) {
				const struct duet_kernels *kt = duet_kernels_named(isas[ii]);
				if (!kt)
					continue;
				static const enum duet_act acts[] = {DUET_ACT_F32, DUET_ACT_Q8, DUET_ACT_BF16,
								     DUET_ACT_Q8K, DUET_ACT_BF16_HI};
				static const char *act_names[] = {"f32", "int8", "bf16 pair", "int8 per 256",
								  "bf16"};
				for (int ai = 0; ai < 5; ai++) {
					enum duet_act act = acts[ai];
					duet_matmul_fn mm = duet_kernels_matmul(kt, t, act);
					if (!mm) {
						assert_true(act != DUET_ACT_F32);
						continue;
					}
					int bf = act == DUET_ACT_BF16 || act == DUET_ACT_BF16_HI;
					if (bf && !duet_cpu_has_avx512bf16())
						continue;
					const double *want = act == DUET_ACT_Q8		? refq
							     : act == DUET_ACT_Q8K	? refk
							     : act == DUET_ACT_BF16	? refb
							     : act == DUET_ACT_BF16_HI	? refh
											: ref;
					for (int B = 1; B <= BMAX; B++) {
						const void *xa = pf;
						if (act == DUET_ACT_Q8) {
							/* This ISA's quantization is the
							 * reference's, bit for bit. */
							for (int b = 0; b < B; b++) {
								kt->quant_q8a(x + b * ldx, K, mine, B, b);
								duet_quant_q8a_ref(x + b * ldx, K, qa, B, b);
							}
							assert_memory_equal(mine, qa, sizeof *qa * duet_panel_q8_pairs(K, B));
							xa = mine;
						} else if (act == DUET_ACT_Q8K) {
							for (int b = 0; b < B; b++) {
								kt->quant_q8k(x + b * ldx, K, kmine, B, b);
								duet_quant_q8k_ref(x + b * ldx, K, kref, B, b);
							}
							assert_memory_equal(kmine, kref, sizeof *kref * duet_panel_q8k_blocks(K, B));
							xa = kmine;
						} else if (bf) {
							/* This ISA's packing is the
							 * reference's, bit for bit. */
							kt->pack_bf16(x, ldx, K, B, bmine);
							duet_panel_pack_bf16_ref(x, ldx, K, B, bref);
							assert_memory_equal(bmine, bref, sizeof *bref * duet_panel_bf16_chunks(K, B));
							xa = bmine;
						} else {
							duet_panel_pack_f32(x, ldx, K, B, pf);
						}
						memset(y, 0, sizeof(float) * BMAX * ldy);
						/* Two row ranges: the split threads make. */
						mm(w, rb, K, xa, B, y, ldy, 0, 13, 0);
						mm(w, rb, K, xa, B, y, ldy, 13, N, 0);
						for (int b = 0; b < B; b++)
							for (int n = 0; n < N; n++) {
								double r = want[b * N + n];
								float got = y[b * ldy + n];
								if (!(fabs(got - r) <= 1e-4 * (1 + fabs(r))))
									fail_msg("%s matmul %s (%s activations) K=%d B=%d: y[%d][%d] = %g, expected %g",
										 isas[ii], duet_dtype_name(t),
										 act_names[ai], K, B, b, n,
										 (double)got, r);
							}
						/* Outside the rows asked for stays untouched. */
						for (int b = 0; b < B; b++)
							for (int n = N; n < ldy; n++)
								assert_true(y[b * ldy + n] == 0);
						/* How a call's rows fall into tiles (adjacent,
						 * or a decode range's four quarters) and the
						 * prefetch distance change no bit of any
						 * row's result. */
						memset(y2, 0, sizeof(float) * BMAX * ldy);
						mm(w, rb, K, xa, B, y2, ldy, 0, N, 1);
						assert_memory_equal(y, y2, sizeof(float) * B * ldy);
						/* AVX-VNNI's table is AVX2's with fused
						 * dot products: the same integers, the
						 * same bits. */
						if (!strcmp(isas[ii], "avxvnni")) {
							memset(y2, 0, sizeof(float) * BMAX * ldy);
							duet_kernels_matmul(duet_kernels_named("avx2"), t, act)(
								w, rb, K, xa, B, y2, ldy, 0, N, 0);
							assert_memory_equal(y, y2, sizeof(float) * B * ldy);
						}
					}
				}
			}
			free(wf), free(w), free(x), free(xq), free(qa), free(mine), free(pf), free(ref),
				free(refq), free(y), free(y2), free(bref), free(bmine), free(refb), free(refh), free(refk),
				free(kref), free(kmine);
		}
}

/* Activation rows [0, B) of x (K floats apart) quantized as the 16-row
 * kernels of type t take them (q8 pairs; Q4_K, Q6_K: q8k blocks) into a panel
 * of B rows, and what that panel holds back in floats (xq, may be NULL). */
static void *r16_panel(enum duet_dtype t, const float *x, int K, int B, float *xq)
{
	if (duet_r16_bf16(t)) { /* the bf16 panel, whose hi halves BF16 meets */
		struct duet_bf16x2 *p = aligned_alloc(64, sizeof *p * duet_panel_bf16_chunks(K, B));
		duet_panel_pack_bf16_ref(x, K, K, B, p);
		for (int b = 0; xq && b < B; b++)
			for (int k = 0; k < K; k++)
				xq[(size_t)b * K + k] =
					duet_bf16_to_fp32(p[(size_t)(k / 32) * B + b].hi[k % 32]);
		return p;
	}
	if (duet_r16_float(t)) {
		float *p = aligned_alloc(64, sizeof(float) * duet_panel_f32_floats(K, B));
		duet_panel_pack_f32(x, K, K, B, p);
		if (xq)
			memcpy(xq, x, sizeof(float) * (size_t)B * K);
		return p;
	}
	if (duet_dtype_kquant(t)) {
		struct duet_q8k_block *p = aligned_alloc(64, sizeof *p * duet_panel_q8k_blocks(K, B));
		for (int b = 0; b < B; b++) {
			duet_quant_q8k_ref(x + (size_t)b * K, K, p, B, b);
			if (xq)
				dequant_q8k(p, B, b, xq + (size_t)b * K, K);
		}
		return p;
	}
	struct duet_q8a_pair *p = aligned_alloc(64, sizeof *p * duet_panel_q8_pairs(K, B));
	for (int b = 0; b < B; b++) {
		duet_quant_q8a_ref(x + (size_t)b * K, K, p, B, b);
		if (xq)
			dequant_q8a(p, B, b, xq + (size_t)b * K, K);
	}
	return p;
}

/* Where a panel of B rows (r16_panel's) holds block i of its first row. */
static const void *r16_panel_at(enum duet_dtype t, const void *xa, int i, int B)
{
	if (duet_r16_bf16(t))
		return (const struct duet_bf16x2 *)xa + (size_t)i * B;
	if (duet_r16_float(t))
		return (const float *)xa + (size_t)2 * i * B * DUET_PANEL_CHUNK;
	if (duet_dtype_kquant(t))
		return (const struct duet_q8k_block *)xa + (size_t)i * B;
	return (const struct duet_q8a_pair *)xa + (size_t)i / 2 * B;
}

/* The types with a 16-row form (engine/repack.h) in 16-row groups: packing is
 * undone exactly; every table's packing and 16-row kernel give the scalar
 * definition's bytes and floats bit for bit (odd block counts, short
 * groups, 1 to 8 activation rows, continuing y or not); and a matmul over
 * packed weights equals the same matmul packing on the fly, bit for bit,
 * near the reference, for B from 1 to 17, K past one slice, and
 * accumulating jobs; the four-group kernels of one sequence equal the
 * 16-row kernel group by group, and N is large enough (and not a multiple
 * of 16) that each thread's range of a matmul takes them. */
/* The four-group kernel of one sequence (kt's) against the 16-row kernel
 * of the scalar table on each group: blocks [i0, i0 + n) of four different
 * sets of 16 rows of w, bit for bit, continuing y or not. */
static void r16x4_check(const struct duet_kernels *kt, enum duet_dtype t, const uint8_t *w,
			size_t rb, int K, const float *x, int i0, int n)
{
	void *xa = r16_panel(t, x, K, 1, NULL);
	const void *xs = r16_panel_at(t, xa, i0, 1);
	uint8_t *q[DUET_R16_STREAMS];
	float got[DUET_R16_STREAMS][DUET_R16_ROWS], want[DUET_R16_STREAMS][DUET_R16_ROWS];
	float *ys[DUET_R16_STREAMS];
	for (int g = 0; g < DUET_R16_STREAMS; g++) {
		q[g] = malloc(duet_r16_slice_bytes(t, n));
		duet_r16_pack(t, w + rb * (size_t)(7 * g), rb, DUET_R16_ROWS, i0, n, q[g]);
		ys[g] = got[g];
	}
	/* (both prefetch distances: the results do not depend on it) */
	for (int add = 0; add < 4; add++) {
		for (int g = 0; g < DUET_R16_STREAMS; g++) {
			for (int r = 0; r < DUET_R16_ROWS; r++)
				got[g][r] = want[g][r] = (float)(g * DUET_R16_ROWS + r) * 0.5f;
			duet_kernels_scalar.matmul_r16[t](q[g], n, xs, 1, 1, want[g], DUET_R16_ROWS,
							  DUET_R16_ROWS, add % 2, 0);
		}
		kt->matmul_r16x4[t]((const uint8_t *const *)q, n, xs, ys, add % 2, add / 2);
		if (memcmp(got, want, sizeof got))
			fail_msg("%s %s four-group kernel K=%d add=%d far=%d differs from the 16-row kernel",
				 kt->name, duet_dtype_name(t), K, add % 2, add / 2);
	}
	for (int g = 0; g < DUET_R16_STREAMS; g++)
		free(q[g]);
	free(xa);
}

/* The several-group kernel (kt's) against the 16-row kernel of the scalar
 * table on each group: 1 to 9 groups (tiles and the groups left over),
 * every width of pass, continuing y or not, both prefetch distances; past
 * a few blocks, five groups at a few widths (the definition's fmaf calls
 * under the sanitizers had cost the test run 20 s). */
static void r16n_check(const struct duet_kernels *kt, enum duet_dtype t, const uint8_t *w,
		       size_t rb, const float *x, int K, int i0, int n)
{
	enum { G = 9, S = DUET_R16_SEQS, LD = G * DUET_R16_ROWS };
	void *xa = r16_panel(t, x, K, S, NULL);
	const void *xs = r16_panel_at(t, xa, i0, S);
	const size_t gs = duet_r16_slice_bytes(t, n);
	uint8_t *q = malloc(gs * G);
	float *got = malloc(sizeof(float) * S * LD), *want = malloc(sizeof(float) * S * LD);
	for (int g = 0; g < G; g++)
		duet_r16_pack(t, w + rb * (size_t)(g % 3), rb, DUET_R16_ROWS, i0, n, q + gs * g);
	const int few = n > 4;
	for (int ng = few ? 5 : 1; ng <= (few ? 5 : G); ng += 2)
		for (int nb = 1; nb <= S; nb += few ? 5 : 1)
			for (int add = 0; add < 2; add++) {
				for (int i = 0; i < S * LD; i++)
					got[i] = want[i] = (float)(i % 97) * 0.5f;
				for (int g = 0; g < ng; g++)
					duet_kernels_scalar.matmul_r16[t](q + gs * g, n, xs, S, nb,
									  want + DUET_R16_ROWS * g, LD,
									  DUET_R16_ROWS, add, 0);
				kt->matmul_r16n[t](q, gs, ng, n, xs, S, nb, got, LD, add, nb % 2);
				if (memcmp(got, want, sizeof(float) * S * LD))
					fail_msg("%s %s several-group kernel K=%d groups=%d nb=%d add=%d differs from the 16-row kernel",
						 kt->name, duet_dtype_name(t), K, ng, nb, add);
			}
	free(q), free(got), free(want), free(xa);
}

static void r16_type(enum duet_dtype t, struct duet_threadpool *tp)
{
	/* BF16's groups meet bf16 activations: CPUs without the bf16 dot
	 * product never take them */
	if (duet_r16_bf16(t) && !duet_cpu_has_avx512bf16())
		return;
	/* Q8_0 and Q4_0: one unit; a short last unit; many */
	static const int Ks[] = {64, 96, 4160}, Kk[] = {256, 768, 4352};
	/* S: the widest pass of one kernel call */
	/* BMAX: past a prefill pass's activation rows (the matmul's R16_BATCH) */
	const int N = 9 * DUET_R16_ROWS + 5, BMAX = 70, S = DUET_R16_SEQS, V = duet_r16_values(t);
	struct duet_err err;
	for (int ki = 0; ki < 3; ki++) {
		int K = duet_dtype_kquant(t) ? Kk[ki] : Ks[ki], nb = K / V;
		size_t rb = duet_row_bytes(t, K);
		float *wf = malloc(sizeof(float) * (size_t)N * K);
		uint8_t *w = malloc(rb * N), *wp = malloc(rb * N), *row = malloc(rb);
		float *x = malloc(sizeof(float) * (size_t)BMAX * K);
		fill(wf, N * K, (uint64_t)K + 11);
		fill(x, BMAX * K, (uint64_t)K * 5);
		for (int n = 0; n < N; n++)
			duet_quant_row(t, wf + (size_t)n * K, w + rb * n, K);
		memcpy(wp, w, rb * N);
		struct duet_tensor tw = {t, w, N, K, rb, DUET_LAYOUT_ROWS};
		struct duet_tensor tp16 = {t, wp, N, K, rb, DUET_LAYOUT_ROWS};
		assert_int_equal(duet_r16_pack_tensor(&tp16, &err), 0);
		assert_int_equal(tp16.layout, DUET_LAYOUT_R16);
		for (int n = 0; n < N; n++)
			assert_memory_equal(duet_tensor_row_any(&tp16, n, row), w + rb * n, rb);

		/* packing and the kernel against the definition */
		const size_t sb = duet_r16_slice_bytes(t, nb);
		uint8_t *q = malloc(sb), *qm = malloc(sb);
		void *xa = r16_panel(t, x, K, S, NULL);
		/* the definition's results, add = 0 then 1 */
		float *yr = malloc(sizeof(float) * 2 * S * 20), *ym = malloc(sizeof(float) * S * 20);
		float *ye = malloc(sizeof(float) * S * 20);
		/* the kernels start at an even block of q8 pairs */
		int i0 = nb > 2 ? duet_r16_unit(t) : 0, n = nb - i0;
		const void *xs = r16_panel_at(t, xa, i0, S);
		for (int nrows = 1; nrows <= 16; nrows += 5) {
			duet_r16_pack(t, w + rb, rb, nrows, i0, n, q);
			/* The definition's activation rows are independent, so one
			 * call over all S gives every width's rows (once, for every
			 * table): a kernel over bn rows must match its first bn and
			 * leave the others as they were. */
			for (int add = 0; add < 2; add++) {
				for (int i = 0; i < S * 20; i++)
					yr[add * S * 20 + i] = (float)i * 0.25f;
				duet_kernels_scalar.matmul_r16[t](q, n, xs, S, S, yr + add * S * 20, 20,
								  nrows, add, 0);
			}
			for (int ii = 0; ii < N_ISAS; ii++) {
				const struct duet_kernels *kt = duet_kernels_named(isas[ii]);
				if (!kt)
					continue;
				duet_r16_fn fn = duet_kernels_r16(kt, t);
				if (kt->pack_r16[t]) {
					kt->pack_r16[t](w + rb, rb, nrows, i0, n, qm);
					assert_memory_equal(qm, q, duet_r16_slice_bytes(t, n));
				}
				for (int add = 0; add < 2; add++)
					for (int bn = 1; bn <= S; bn++) {
						for (int i = 0; i < S * 20; i++) {
							ym[i] = (float)i * 0.25f;
							ye[i] = i < bn * 20 ? yr[add * S * 20 + i] : ym[i];
						}
						/* (the far prefetch distance at odd
						 * widths: the results do not depend on it) */
						fn(q, n, xs, S, bn, ym, 20, nrows, add, bn % 2);
						if (memcmp(ye, ym, sizeof(float) * S * 20))
							fail_msg("%s %s r16 kernel K=%d rows=%d nb=%d add=%d differs from the definition",
								 isas[ii], duet_dtype_name(t), K, nrows, bn, add);
					}
			}
		}
		for (int ii = 0; ii < N_ISAS; ii++) {
			const struct duet_kernels *kt = duet_kernels_named(isas[ii]);
			if (kt && kt->matmul_r16x4[t])
				r16x4_check(kt, t, w, rb, K, x, i0, n);
			if (kt && kt->matmul_r16n[t])
				r16n_check(kt, t, w, rb, x, K, i0, n);
		}

		/* through the matmul: packed against packed on the fly */
		double *ref = malloc(sizeof(double) * BMAX * N);
		float *xq = malloc(sizeof(float) * (size_t)BMAX * K);
		free(r16_panel(t, x, K, BMAX, xq));
		float *y0 = malloc(sizeof(float) * BMAX * N), *y1 = malloc(sizeof(float) * BMAX * N);
		float *y2 = malloc(sizeof(float) * BMAX * N);
		float *yw[2] = {malloc(sizeof(float) * BMAX * N), malloc(sizeof(float) * BMAX * N)};
		/* the first B rows of it are every width's reference */
		reference(t, w, rb, N, K, xq, K, BMAX, ref);
		for (int ii = 0; ii < N_ISAS; ii++) {
			const struct duet_kernels *kt = duet_kernels_named(isas[ii]);
			if (!kt)
				continue;
			/* (BF16 takes the groups against bf16 activations only;
			 * other tables multiply it by f32 ones, checked above) */
			if (duet_r16_bf16(t) && duet_kernels_act(kt, t, DUET_QDOT_INT8) != DUET_ACT_BF16_HI)
				continue;
			struct duet_matmul mm;
			assert_int_equal(duet_matmul_init(&mm, tp, kt, DUET_QDOT_INT8, BMAX, K, &err), 0);
			/* Where the kernels take the type at every width (int8
			 * activations; F16 and F32 where the table packs them), a
			 * row's results do not depend on the rows beside it: the
			 * widest product's first B rows are every width's, bit for
			 * bit (prefill, decode and a failover's resumed tokens
			 * compute alike). */
			int any_width = !duet_r16_float(t) || duet_kernels_packs(kt, t);
			/* (the scalar definition's products past 17 rows take
			 * minutes: tables with the type's own kernel only) */
			int bmax = kt != &duet_kernels_scalar && kt->matmul_r16[t] ? BMAX : 17;
			for (int acc = 0; acc < 2 && bmax == BMAX; acc++) {
				for (int i = 0; i < BMAX * N; i++)
					yw[acc][i] = acc ? (float)(i % 7) : 0;
				struct duet_matmul_job jw = {&tp16, x, BMAX, yw[acc], acc};
				duet_matmul_run(&mm, &jw, 1);
			}
			for (int B = 1; B <= bmax; B = B < 9 ? B + 1 : B < 17 ? B + 4 : B < BMAX ? BMAX : BMAX + 1) {
				for (int acc = 0; acc < 2; acc++) {
					for (int i = 0; i < B * N; i++)
						y0[i] = y1[i] = acc ? (float)(i % 7) : 0;
					struct duet_matmul_job j0 = {&tw, x, B, y0, acc};
					struct duet_matmul_job j1 = {&tp16, x, B, y1, acc};
					duet_matmul_run(&mm, &j0, 1);
					duet_matmul_run(&mm, &j1, 1);
					if (duet_kernels_packs(kt, t) && memcmp(y0, y1, sizeof(float) * B * N))
						fail_msg("%s %s K=%d B=%d: packed and unpacked weights differ",
							 isas[ii], duet_dtype_name(t), K, B);
					/* Claims of one group (as when one thread runs far
					 * ahead of the other) move rows between threads
					 * and between a decode range's four streams and
					 * its tail: no bit changes. */
					for (int i = 0; i < B * N; i++)
						y2[i] = acc ? (float)(i % 7) : 0;
					struct duet_matmul_job j2 = {&tp16, x, B, y2, acc};
					int claim_rows = mm.claim_rows;
					mm.claim_rows = DUET_R16_ROWS;
					duet_matmul_run(&mm, &j2, 1);
					mm.claim_rows = claim_rows;
					if (memcmp(y1, y2, sizeof(float) * B * N))
						fail_msg("%s %s K=%d B=%d: claims of other sizes changed the result",
							 isas[ii], duet_dtype_name(t), K, B);
					if (any_width && bmax == BMAX && memcmp(y1, yw[acc], sizeof(float) * B * N))
						fail_msg("%s %s K=%d B=%d: rows differ from the same rows of %d",
							 isas[ii], duet_dtype_name(t), K, B, BMAX);
					for (int i = 0; i < B * N; i++) {
						double r = ref[i] + (acc ? (double)(i % 7) : 0);
						if (!(fabs(y1[i] - r) <= 1e-4 * (1 + fabs(r))))
							fail_msg("%s packed %s K=%d B=%d: y[%d] = %g, expected %g",
								 isas[ii], duet_dtype_name(t), K, B, i,
								 (double)y1[i], r);
					}
				}
			}
			duet_matmul_free(&mm);
		}
		free(wf), free(w), free(wp), free(row), free(x), free(q), free(qm);
		free(xa), free(yr), free(ym), free(ye), free(ref), free(xq), free(y0), free(y1), free(y2);
		free(yw[0]), free(yw[1]);
	}
}

/* Splitting rows by shares: the parts tile [0, n) in order, each near its
 * share; the shares follow the threads' speeds and keep a floor. */
static void test_split_shares(void **st)
{
	(void)st;
	const float sh3[3] = {0.2f, 0.5f, 0.3f};
	for (long n = 1; n < 3000; n += 37) {
		long end = 0;
		for (int i = 0; i < 3; i++) {
			long a, b;
			duet_split_shares(n, i, 3, 16, sh3, &a, &b);
			assert_int_equal(a, end);
			assert_true(b >= a && (b % 16 == 0 || b == n));
			long units = (n + 15) / 16, got = (b - a + 15) / 16;
			assert_true(labs(got - (long)(sh3[i] * (float)units + 0.5f)) <= 1);
			end = b;
		}
		assert_int_equal(end, n);
	}
	/* Thread 1 twice as fast: secs as each share's work takes at its speed. */
	float share[2];
	duet_shares_even(share, 2);
	const double speed[2] = {1.0, 2.0};
	for (int r = 0; r < 40; r++) {
		double done[2] = {share[0], share[1]};
		double secs[2] = {share[0] / speed[0], share[1] / speed[1]};
		duet_shares_update(share, done, secs, 2);
	}
	assert_true(fabsf(share[0] - 1.0f / 3) < 0.01f && fabsf(share[0] + share[1] - 1) < 1e-5f);
	/* One thread stalled: its share stops at the floor (half of even). */
	for (int r = 0; r < 40; r++) {
		double done[2] = {share[0], share[1]};
		double secs[2] = {share[0] * 1000, share[1]};
		duet_shares_update(share, done, secs, 2);
	}
	assert_true(share[0] >= 0.25f - 1e-5f && share[0] < 0.26f);
	/* A thread that measured nothing changes nothing. */
	float before = share[0];
	duet_shares_update(share, (const double[2]){0.5, 0.5}, (const double[2]){0, 1e-3}, 2);
	assert_true(share[0] == before);
	/* Nor does one that did no work. */
	duet_shares_update(share, (const double[2]){0, 1}, (const double[2]){1e-3, 1e-3}, 2);
	assert_true(share[0] == before);
}

/* Several jobs in one region, of row counts that are no multiple of a
 * claim or of a group (packed and in rows, Q8_0 and F16), with claims of
 * one group, the default and one for all: each job's result is the same
 * bit for bit as that job run alone. */
static void test_claims(void **st)
{
	(void)st;
	struct duet_threadpool *tp;
	struct duet_err err;
	assert_int_equal(duet_threadpool_create(&tp, 2, NULL, 0, &err), 0);
	enum { K = 128, T = 3, JOBS = 4 };
	static const int rows[JOBS] = {200, 37, 64, 1000};
	static const enum duet_dtype types[JOBS] = {DUET_Q8_0, DUET_Q8_0, DUET_F16, DUET_Q8_0};
	float *x = malloc(sizeof(float) * T * K), *wf = malloc(sizeof(float) * 1000 * K);
	fill(x, T * K, 3);
	struct duet_tensor w[JOBS];
	float *alone[JOBS], *y[JOBS];
	struct duet_matmul mm;
	assert_int_equal(duet_matmul_init(&mm, tp, duet_kernels(), DUET_QDOT_INT8, T, K, &err), 0);
	for (int i = 0; i < JOBS; i++) {
		size_t rb = duet_row_bytes(types[i], K);
		uint8_t *d = malloc(rb * (size_t)rows[i]);
		fill(wf, rows[i] * K, (uint64_t)i + 40);
		for (int n = 0; n < rows[i]; n++)
			duet_quant_row(types[i], wf + (size_t)n * K, d + rb * n, K);
		w[i] = (struct duet_tensor){types[i], d, rows[i], K, rb, DUET_LAYOUT_ROWS};
		if (i == 3)
			assert_int_equal(duet_r16_pack_tensor(&w[i], &err), 0);
		alone[i] = malloc(sizeof(float) * T * (size_t)rows[i]);
		y[i] = malloc(sizeof(float) * T * (size_t)rows[i]);
		struct duet_matmul_job j = {&w[i], x, T, alone[i], 0};
		duet_matmul_run(&mm, &j, 1);
	}
	const int claims[3] = {DUET_R16_ROWS, mm.claim_rows, 1 << 16};
	for (int c = 0; c < 3; c++) {
		mm.claim_rows = claims[c];
		struct duet_matmul_job jobs[JOBS];
		for (int i = 0; i < JOBS; i++) {
			memset(y[i], 0xff, sizeof(float) * T * (size_t)rows[i]);
			jobs[i] = (struct duet_matmul_job){&w[i], x, T, y[i], 0};
		}
		duet_matmul_run(&mm, jobs, JOBS);
		for (int i = 0; i < JOBS; i++)
			if (memcmp(y[i], alone[i], sizeof(float) * T * (size_t)rows[i]))
				fail_msg("job %d of %d rows differs with claims of %d rows", i, rows[i],
					 claims[c]);
	}
	duet_matmul_free(&mm);
	for (int i = 0; i < JOBS; i++)
		free((void *)w[i].data), free(alone[i]), free(y[i]);
	free(x), free(wf);
	duet_threadpool_destroy(tp);
}

static void test_r16(void **st)
{
	(void)st;
	struct duet_threadpool *tp;
	struct duet_err err;
	assert_int_equal(duet_threadpool_create(&tp, 2, NULL, 0, &err), 0);
	r16_type(DUET_Q8_0, tp);
	r16_type(DUET_Q4_0, tp);
	r16_type(DUET_Q4_1, tp);
	r16_type(DUET_Q5_0, tp);
	r16_type(DUET_Q5_1, tp);
	r16_type(DUET_Q4_K, tp);
	r16_type(DUET_Q5_K, tp);
	r16_type(DUET_Q6_K, tp);
	r16_type(DUET_F16, tp);
	r16_type(DUET_F32, tp);
	r16_type(DUET_BF16, tp);
	duet_threadpool_destroy(tp);
}

/* Attention kernels against the scalar table, for every KV row type on odd
 * sizes: head sizes with and without vector tails, 1 to 9 query heads per
 * KV head (decode) and 16 to 71 (a prefill chunk's rows x heads: every
 * register tile and its remainders), 1 to 37 positions (past one 16-row
 * tile). */
static void test_attention_kernels(void **st)
{
	(void)st;
	static const int hds[] = {16, 40, 48, 64, 80, 128};
	static const int nqs[] = {1, 3, 8, 9, 16, 29, 71};
	static const int ns[] = {1, 5, 16, 37};
	const struct duet_kernels *ref = duet_kernels_named("scalar");
	enum { HEADS = 2, MAXN = 37, MAXQ = 71, MAXHD = 128, N_HD = 6, N_NQ = 7 };
	static float rows[MAXN][HEADS * MAXHD], q[MAXQ * MAXHD], p[MAXQ * MAXN];
	static float s0[MAXQ * MAXN], s1[MAXQ * MAXN], o0[MAXQ * MAXHD], o1[MAXQ * MAXHD];
	static uint8_t store[MAXN * (HEADS * MAXHD * 4 + 64)];
	for (int hi = 0; hi < N_HD; hi++)
		for (int t = 0; t < 3; t++) {
			int hd = hds[hi];
			enum duet_kv_dtype kt = (enum duet_kv_dtype)t;
			size_t rb = duet_kv_row_bytes(kt, HEADS, hd);
			fill(&rows[0][0], MAXN * HEADS * MAXHD, (uint64_t)hd * 3 + t);
			for (int i = 0; i < MAXN; i++)
				duet_kv_row_put(kt, HEADS, hd, rows[i], store + i * rb);
			fill(q, MAXQ * MAXHD, 5);
			fill(p, MAXQ * MAXN, 6);
			for (int g = 0; g < HEADS; g++) {
				/* head g of every row, as attention.c describes it */
				const uint8_t *h = duet_kv_row_head(kt, hd, store, g);
				struct duet_kv_rows r = {h, rb, hd, kt,
							 (long)(HEADS * hd + 4 * g) - (long)(h - store)};
				for (int ii = 1; ii < N_ISAS; ii++) {
					const struct duet_kernels *k = duet_kernels_named(isas[ii]);
					if (!k)
						continue;
					for (int qi = 0; qi < N_NQ; qi++)
						for (int ni = 0; ni < 4; ni++) {
							int nq = nqs[qi], n = ns[ni];
							char what[128];
							snprintf(what, sizeof what, "%s attention %s hd=%d nq=%d n=%d",
								 isas[ii], duet_kv_dtype_name(kt), hd, nq, n);
							ref->attn_qk(q, nq, &r, n, 0.125f, s0, MAXN);
							k->attn_qk(q, nq, &r, n, 0.125f, s1, MAXN);
							for (int h2 = 0; h2 < nq; h2++)
								close_enough(s1 + h2 * MAXN, s0 + h2 * MAXN, n, 1e-4f, what);
							for (int j = 0; j < MAXQ * MAXHD; j++)
								o0[j] = o1[j] = (float)(j % 7) * 0.01f;
							ref->attn_av(p, MAXN, nq, &r, n, o0);
							k->attn_av(p, MAXN, nq, &r, n, o1);
							close_enough(o1, o0, MAXQ * MAXHD, 1e-4f, what);
						}
				}
			}
		}
}

static void test_vector_ops(void **st)
{
	(void)st;
	static const int ns[] = {1, 7, 16, 33, 288, 1000};
	for (int ii = 0; ii < N_ISAS; ii++) {
		const struct duet_kernels *k = duet_kernels_named(isas[ii]);
		if (!k)
			continue;
		for (int ni = 0; ni < 6; ni++) {
			int n = ns[ni];
			float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
			float *r = malloc(sizeof(float) * n), *o = malloc(sizeof(float) * n);
			fill(a, n, 1 + n), fill(b, n, 2 + n);
			char what[64];
			snprintf(what, sizeof what, "%s n=%d", isas[ii], n);
			double d = 0;
			for (int i = 0; i < n; i++)
				d += (double)a[i] * b[i];
			float got = k->dot(a, b, n);
			close_enough(&got, &(float){(float)d}, 1, 1e-5f, what);

			memcpy(o, b, sizeof(float) * n);
			k->axpy(0.5f, a, o, n);
			for (int i = 0; i < n; i++)
				r[i] = b[i] + 0.5f * a[i];
			close_enough(o, r, n, 1e-6f, what);

			/* Softmax of values spread over [-30, 30]. */
			for (int i = 0; i < n; i++)
				o[i] = a[i] * 30;
			double mx = -INFINITY, sum = 0;
			for (int i = 0; i < n; i++)
				mx = o[i] > mx ? o[i] : mx;
			for (int i = 0; i < n; i++)
				sum += exp(o[i] - mx);
			for (int i = 0; i < n; i++)
				r[i] = (float)(exp(o[i] - mx) / sum);
			float lse = k->softmax(o, n);
			close_enough(o, r, n, 1e-5f, what);
			/* the log-sum-exp that merges softmaxes of parts of a row */
			close_enough(&lse, &(float){(float)(mx + log(sum))}, 1, 1e-6f, what);

			for (int i = 0; i < n; i++)
				o[i] = a[i] * 8;
			for (int i = 0; i < n; i++)
				r[i] = (float)(o[i] / (1 + exp(-(double)o[i])) * b[i]);
			k->silu_mul(o, b, n);
			close_enough(o, r, n, 1e-5f, what);

			double ss = 0;
			for (int i = 0; i < n; i++)
				ss += (double)a[i] * a[i];
			for (int i = 0; i < n; i++)
				r[i] = (float)(a[i] / sqrt(ss / n + 1e-5) * b[i]);
			k->rmsnorm(o, a, b, n, 1e-5f);
			close_enough(o, r, n, 1e-5f, what);
			free(a), free(b), free(r), free(o);
		}
	}
}

/* The compute ceiling's loops: each table's count of operations for n
 * rounds (its vector width, two per multiply-add), and the chains' sums
 * as n rounds of that arithmetic leave them, so that a loop that ran
 * fewer rounds or fewer chains than it counts fails. Speed is not
 * asserted (bench/ceilings.c measures it). */
static void test_peak(void **st)
{
	(void)st;
	const long n = 1000;
	const double C = DUET_PEAK_CHAINS;
	for (int ii = 0; ii < N_ISAS; ii++) {
		const struct duet_kernels *k = duet_kernels_named(isas[ii]);
		if (!k)
			continue;
		/* lanes of f32 per vector: none for the scalar table */
		int lanes = !strcmp(isas[ii], "avx512") ? 16 : !strcmp(isas[ii], "scalar") ? 0 : 8;
		for (int op = 0; op < DUET_PEAK_OPS; op++) {
			float sink = -1;
			double ops = k->peak((enum duet_peak_op)op, n, &sink), want = 0, sum = 0;
			char what[64];
			snprintf(what, sizeof what, "%s peak op %d", isas[ii], op);
			if (op == DUET_PEAK_FMA && lanes) {
				/* chain i from 1 + i, 1e-3 x 0.5 a round */
				want = 2.0 * lanes * C * n;
				sum = lanes * (C * (C + 1) / 2 + C * n * 5e-4);
			} else if (op == DUET_PEAK_DOT_I8 && lanes) {
				/* chain i from i; a round adds four products of unsigned 1
				 * and signed y's bytes: 2 each on AVX2, and on AVX-512
				 * the bytes of 0.5f (0, 0, 0, 63) */
				want = 2.0 * 4 * lanes * C * n;
				sum = lanes * (C * (C - 1) / 2 + C * n * (lanes == 16 ? 63 : 8));
			} else if (op == DUET_PEAK_DOT_BF16 && lanes == 16 && duet_cpu_has_avx512bf16()) {
				/* chain i from 1 + i; two products of bf16 1e-3 and 0.5 a round */
				want = 2.0 * 2 * lanes * C * n;
				sum = lanes * (C * (C + 1) / 2 + C * n * 0.00099945068359375);
			}
			if (ops != want)
				fail_msg("%s: %g operations counted, %g expected", what, ops, want);
			if (want > 0)
				close_enough(&sink, &(float){(float)sum}, 1, 1e-5f, what);
		}
	}
}

/* fp16 <-> fp32 for all 65536 halves: exact, and round-to-nearest-even
 * back, in the scalar conversion and in every table's row conversion. */
static void test_fp16_exhaustive(void **st)
{
	(void)st;
	uint16_t *h = malloc(sizeof(uint16_t) * 65536);
	float *f = malloc(sizeof(float) * 65536), *g = malloc(sizeof(float) * 65536);
	for (int i = 0; i < 65536; i++)
		h[i] = (uint16_t)i;
	for (int i = 0; i < 65536; i++) {
		uint16_t x = h[i];
		int e = (x >> 10) & 31, m = x & 1023, sgn = x >> 15;
		double v;
		if (e == 0)
			v = ldexp(m, -24);
		else if (e == 31)
			v = m ? NAN : INFINITY;
		else
			v = ldexp(1024 + m, e - 25);
		f[i] = (float)(sgn ? -v : v);
		float got = duet_fp16_to_fp32(x);
		if (isnan(f[i]))
			assert_true(isnan(got));
		else
			assert_memory_equal(&got, &f[i], 4);
		if (!isnan(f[i]))
			assert_int_equal(duet_fp32_to_fp16(f[i]), x);
	}
	for (int ii = 0; ii < N_ISAS; ii++) {
		const struct duet_kernels *k = duet_kernels_named(isas[ii]);
		if (!k)
			continue;
		k->cvt_f16(h, g, 65536);
		for (int i = 0; i < 65536; i++)
			if (!(isnan(f[i]) ? isnan(g[i]) : !memcmp(&f[i], &g[i], 4)))
				fail_msg("%s cvt_f16 of 0x%04x gave %g", isas[ii], i, (double)g[i]);
	}
	/* Rounding: halfway cases go to even, overflow to infinity. */
	assert_int_equal(duet_fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);
	assert_int_equal(duet_fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);
	assert_int_equal(duet_fp32_to_fp16(65520.0f), 0x7c00);
	assert_int_equal(duet_fp32_to_fp16(0x1p-25f), 0);
	assert_int_equal(duet_fp32_to_fp16(0x1.8p-25f), 1);
	free(h), free(f), free(g);
}

/* Q8_0 as llama.cpp defines it: d = max|x| / 127, q = round(x / d). */
static void test_q8_0_format(void **st)
{
	(void)st;
	float x[64];
	fill(x, 64, 3);
	x[5] = -2.0f; /* largest magnitude of the first block */
	struct duet_q8_0_block b[2];
	assert_int_equal(sizeof b, 2 * DUET_Q8_0_BYTES);
	duet_quant_row(DUET_Q8_0, x, b, 64);
	float d = duet_fp16_to_fp32(b[0].d);
	assert_true(fabsf(d - 2.0f / 127) < 1e-5f);
	assert_int_equal(b[0].qs[5], -127);
	float y[64];
	duet_dequant_row(DUET_Q8_0, b, y, 64);
	for (int i = 0; i < 64; i++)
		assert_true(fabsf(y[i] - x[i]) <= duet_fp16_to_fp32(b[i / 32].d) * 0.5f + 1e-3f);
	for (int ii = 0; ii < N_ISAS; ii++) {
		const struct duet_kernels *k = duet_kernels_named(isas[ii]);
		if (!k)
			continue;
		float z[64];
		k->cvt_q8_0(b, z, 64);
		assert_memory_equal(y, z, sizeof z);
	}
}


/* Blocks built by hand from the layouts' descriptions (ggml-common.h),
 * element values worked out here independently of dtype.c. */
static void test_quant_layouts(void **st)
{
	(void)st;
	float y[DUET_QK];
	uint16_t half = duet_fp32_to_fp16(0.5f), quarter = duet_fp32_to_fp16(0.25f);
	/* Q4_0: value j < 16 the low nibble of qs[j], j + 16 the high one. */
	struct duet_q4_0_block a = {.d = half};
	for (int j = 0; j < 16; j++)
		a.qs[j] = (uint8_t)(j | (15 - j) << 4);
	duet_dequant_row(DUET_Q4_0, &a, y, 32);
	for (int j = 0; j < 16; j++) {
		assert_true(y[j] == 0.5f * (float)(j - 8));
		assert_true(y[j + 16] == 0.5f * (float)(7 - j));
	}
	/* Q4_1: d * q + m. */
	struct duet_q4_1_block a1 = {.d = half, .m = duet_fp32_to_fp16(-1.0f)};
	memcpy(a1.qs, a.qs, 16);
	duet_dequant_row(DUET_Q4_1, &a1, y, 32);
	assert_true(y[3] == 0.5f * 3 - 1 && y[16 + 3] == 0.5f * 12 - 1);
	/* Q5_0: bit i of qh (little-endian) is value i's fifth bit. */
	struct duet_q5_0_block b = {.d = half, .qh = {0x01, 0x00, 0x02, 0x80}};
	memcpy(b.qs, a.qs, 16);
	duet_dequant_row(DUET_Q5_0, &b, y, 32);
	assert_true(y[0] == 0.5f * (float)(0 + 16 - 16));  /* bit 0 */
	assert_true(y[1] == 0.5f * (float)(1 - 16));	    /* no bit */
	assert_true(y[17] == 0.5f * (float)(14 + 16 - 16)); /* bit 17 */
	assert_true(y[31] == 0.5f * (float)(0 + 16 - 16));  /* bit 31 */
	/* Q5_1 with the same quants, plus m. */
	struct duet_q5_1_block b1 = {.d = half, .m = quarter};
	memcpy(b1.qh, b.qh, 4);
	memcpy(b1.qs, b.qs, 16);
	duet_dequant_row(DUET_Q5_1, &b1, y, 32);
	assert_true(y[17] == 0.5f * 30 + 0.25f);
	/* Q4_K: scales 0-3 / mins 0-3 in the low 6 bits of bytes 0-3 / 4-7;
	 * scale and min 4+i: low 4 bits in byte 8+i (low / high nibble), top
	 * 2 bits in the top bits of byte i / 4+i. Scale j = 40 + j, min j =
	 * 20 + 3j here. */
	struct duet_q4_k_block k = {.d = half, .dmin = quarter};
	for (int j = 0; j < 8; j++) {
		int sc = 40 + j, mn = 20 + 3 * j;
		if (j < 4) {
			k.scales[j] |= (uint8_t)sc;
			k.scales[j + 4] |= (uint8_t)mn;
		} else {
			k.scales[j + 4] = (uint8_t)((sc & 15) | (mn & 15) << 4);
			k.scales[j - 4] |= (uint8_t)((sc >> 4) << 6);
			k.scales[j] |= (uint8_t)((mn >> 4) << 6);
		}
	}
	for (int i = 0; i < 128; i++)
		k.qs[i] = (uint8_t)((i % 16) | (15 - i % 16) << 4);
	duet_dequant_row(DUET_Q4_K, &k, y, DUET_QK);
	/* value 64g + l: low nibble of qs[32g + l], sub-block 2g; 64g + 32 +
	 * l: the high nibble, sub-block 2g + 1. */
	for (int g = 0; g < 4; g++)
		for (int l = 0; l < 32; l += 7) {
			int lo = l % 16, hi = 15 - l % 16;
			float w0 = 0.5f * (float)(40 + 2 * g) * (float)lo - 0.25f * (float)(20 + 6 * g);
			float w1 = 0.5f * (float)(41 + 2 * g) * (float)hi - 0.25f * (float)(23 + 6 * g);
			assert_true(y[64 * g + l] == w0);
			assert_true(y[64 * g + 32 + l] == w1);
		}
	/* Q5_K: the fifth bit of value 64g + l is bit 2g of qh[l], of 64g + 32
	 * + l bit 2g + 1. */
	struct duet_q5_k_block k5 = {.d = half, .dmin = quarter};
	memcpy(k5.scales, k.scales, sizeof k.scales);
	memcpy(k5.qs, k.qs, sizeof k.qs);
	k5.qh[5] = 0x24; /* bits 2 and 5: value 64 + 5 and 128 + 32 + 5 */
	duet_dequant_row(DUET_Q5_K, &k5, y, DUET_QK);
	assert_true(y[64 + 5] == 0.5f * 42 * (float)(5 + 16) - 0.25f * 26);
	assert_true(y[128 + 32 + 5] == 0.5f * 45 * (float)(10 + 16) - 0.25f * 35);
	assert_true(y[5] == 0.5f * 40 * 5 - 0.25f * 20);
	/* Q6_K: value l + 32c (c = 0..3) of each 128: low nibble of ql[l] (c
	 * = 0), of ql[l + 32] (1), high nibble of ql[l] (2), of ql[l + 32]
	 * (3), with bits 2c, 2c + 1 of qh[l] above; minus 32; times the
	 * int8 scale of its 16 and d. */
	struct duet_q6_k_block q6 = {.d = half};
	for (int i = 0; i < 16; i++)
		q6.scales[i] = (int8_t)(i % 2 ? -(i + 1) : i + 1);
	for (int i = 0; i < 128; i++)
		q6.ql[i] = (uint8_t)((i % 16) | (i % 7) << 4);
	for (int i = 0; i < 64; i++)
		q6.qh[i] = (uint8_t)(i % 4 | (3 - i % 4) << 2 | (i % 3) << 4 | 1 << 6);
	duet_dequant_row(DUET_Q6_K, &q6, y, DUET_QK);
	for (int h = 0; h < 2; h++)
		for (int c = 0; c < 4; c++)
			for (int l = 0; l < 32; l += 5) {
				int qlb = q6.ql[64 * h + l + (c % 2) * 32];
				int lo = c < 2 ? qlb & 15 : qlb >> 4;
				int hb = (q6.qh[32 * h + l] >> (2 * c)) & 3;
				int e = 128 * h + 32 * c + l;
				float want = 0.5f * (float)q6.scales[e / 16] * (float)((lo | hb << 4) - 32);
				if (y[e] != want)
					fail_msg("q6_k value %d: %g, expected %g", e, (double)y[e],
						 (double)want);
			}
}

/* Every type: quantizing then dequantizing stays within the type's step,
 * and the integer form the scalar kernels use (duet_block_unpack32) gives
 * exactly what the reference dequantizer gives. */
static void test_quant_round_trip(void **st)
{
	(void)st;
	static const struct {
		enum duet_dtype t;
		float step; /* worst error, as a fraction of the block's max|x| */
	} types[] = {
		{DUET_Q8_0, 0.01f}, {DUET_Q4_0, 0.15f}, {DUET_Q4_1, 0.15f}, {DUET_Q5_0, 0.07f},
		{DUET_Q5_1, 0.07f}, {DUET_Q4_K, 0.2f},	{DUET_Q5_K, 0.1f},  {DUET_Q6_K, 0.05f},
	};
	enum { K = 1024 };
	float x[K], y[K];
	uint8_t buf[K * 2];
	for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
		enum duet_dtype t = types[ti].t;
		fill(x, K, 11 + ti);
		x[300] = 7.0f; /* an outlier in one block */
		duet_quant_row(t, x, buf, K);
		duet_dequant_row(t, buf, y, K);
		int bs = duet_dtype_block(t);
		for (int b0 = 0; b0 < K; b0 += bs) {
			float amax = 0;
			for (int i = 0; i < bs; i++)
				amax = fmaxf(amax, fabsf(x[b0 + i]));
			for (int i = b0; i < b0 + bs; i++)
				if (!(fabsf(y[i] - x[i]) <= types[ti].step * amax))
					fail_msg("%s: value %d is %g after a round trip, was %g",
						 duet_dtype_name(t), i, (double)y[i], (double)x[i]);
		}
		for (int i = 0; i < K / 32; i++) {
			int8_t q[32];
			float sc[2], m;
			duet_block_unpack32(t, buf, i, q, sc, &m);
			for (int j = 0; j < 32; j++)
				if (sc[j / 16] * (float)q[j] + m != y[32 * i + j])
					fail_msg("%s: integer form of value %d is %g, dequantized %g",
						 duet_dtype_name(t), 32 * i + j,
						 (double)(sc[j / 16] * (float)q[j] + m),
						 (double)y[32 * i + j]);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matmul),
		cmocka_unit_test(test_r16),
		cmocka_unit_test(test_split_shares),
		cmocka_unit_test(test_claims),
		cmocka_unit_test(test_quant_layouts),
		cmocka_unit_test(test_quant_round_trip),
		cmocka_unit_test(test_attention_kernels),
		cmocka_unit_test(test_vector_ops),
		cmocka_unit_test(test_peak),
		cmocka_unit_test(test_fp16_exhaustive),
		cmocka_unit_test(test_q8_0_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
