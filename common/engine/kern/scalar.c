/* Portable kernels: plain loops, also the reference for the SIMD ones. */
#include <math.h>
#include <string.h>

#include "base/half.h"
#include "engine/kern/kernels.h"
#include "engine/repack.h"

/* Value k of row b of an f32 panel of B rows. */
static float panel_at(const float *p, int B, int b, int k)
{
	return p[((size_t)(k / DUET_PANEL_CHUNK) * B + b) * DUET_PANEL_CHUNK + k % DUET_PANEL_CHUNK];
}

static void matmul_any(enum duet_dtype t, const void *w, size_t row_bytes, int K,
		       const float *x, int B, float *y, int ldy, int n0, int n1)
{
	float row[4096];
	for (int n = n0; n < n1; n++) {
		const uint8_t *wr = (const uint8_t *)w + (size_t)n * row_bytes;
		for (int b = 0; b < B; b++)
			y[(size_t)b * ldy + n] = 0;
		/* Convert the row in chunks (a block-size multiple) and
		 * accumulate, so any K works with a fixed buffer. */
		for (int k0 = 0; k0 < K; k0 += 4096) {
			int kc = K - k0 < 4096 ? K - k0 : 4096;
			duet_dequant_row(t, wr + duet_row_bytes(t, k0), row, kc);
			for (int b = 0; b < B; b++) {
				float s = 0;
				for (int k = 0; k < kc; k++)
					s += row[k] * panel_at(x, B, b, k0 + k);
				y[(size_t)b * ldy + n] += s;
			}
		}
	}
}

#define F32_ACT_KERNEL(name, T)                                                          \
	static void name(const void *w, size_t rb, int K, const void *x, int B, float *y, \
			 int ldy, int n0, int n1, int far)                                \
	{                                                                                \
		(void)far;                                                               \
		matmul_any(T, w, rb, K, x, B, y, ldy, n0, n1);                           \
	}
F32_ACT_KERNEL(matmul_f32, DUET_F32)
F32_ACT_KERNEL(matmul_f16, DUET_F16)
F32_ACT_KERNEL(matmul_bf16, DUET_BF16)
F32_ACT_KERNEL(matmul_q8_0, DUET_Q8_0)
F32_ACT_KERNEL(matmul_q4_0, DUET_Q4_0)
F32_ACT_KERNEL(matmul_q4_1, DUET_Q4_1)
F32_ACT_KERNEL(matmul_q5_0, DUET_Q5_0)
F32_ACT_KERNEL(matmul_q5_1, DUET_Q5_1)
F32_ACT_KERNEL(matmul_q4_k, DUET_Q4_K)
F32_ACT_KERNEL(matmul_q5_k, DUET_Q5_K)
F32_ACT_KERNEL(matmul_q6_k, DUET_Q6_K)

/* n values (n <= 256) to int8 with scale max|x| / 127, rounded to
 * nearest (even on ties, as the vector conversions round); returns the
 * scale. The one rounding of both activation forms. */
static float quant_values(const float *v, int n, int8_t *q)
{
	float amax = 0;
	for (int i = 0; i < n; i++)
		amax = fmaxf(amax, fabsf(v[i]));
	float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
	for (int i = 0; i < n; i++) {
		float r = nearbyintf(v[i] * id);
		q[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
	}
	return d;
}

/* Padding blocks all zero. */
void duet_quant_q8a_ref(const float *x, int K, struct duet_q8a_pair *panel, int B, int b)
{
	int pairs = (K + DUET_Q8A_PAIR - 1) / DUET_Q8A_PAIR;
	for (int p = 0; p < pairs; p++) {
		struct duet_q8a_pair *o = &panel[(size_t)p * B + b];
		memset(o, 0, sizeof *o);
		for (int h = 0; h < 2; h++) {
			int k0 = p * DUET_Q8A_PAIR + h * 32;
			if (k0 >= K)
				break;
			float d = quant_values(x + k0, 32, o->q + h * 32);
			int sum = 0;
			for (int i = 0; i < 32; i++)
				sum += o->q[h * 32 + i];
			o->corr[h * 8] = -128 * sum;
			for (int i = 0; i < 8; i++)
				o->d[h * 8 + i] = d;
		}
	}
}

/* Per 256 values, zeros past K. */
void duet_quant_q8k_ref(const float *x, int K, struct duet_q8k_block *panel, int B, int b)
{
	int blocks = (K + DUET_Q8K - 1) / DUET_Q8K;
	for (int s = 0; s < blocks; s++) {
		struct duet_q8k_block *o = &panel[(size_t)s * B + b];
		memset(o, 0, sizeof *o);
		int k0 = s * DUET_Q8K, n = K - k0 < DUET_Q8K ? K - k0 : DUET_Q8K;
		int8_t q[DUET_Q8K] = {0};
		o->d = quant_values(x + k0, n, q);
		for (int i = 0; i < DUET_Q8K; i++) {
			o->q[duet_q8k_pos(i)] = q[i];
			o->bsums[i / 16] = (int16_t)(o->bsums[i / 16] + q[i]);
		}
	}
}

/* 32-block i of activation row b in either int8 form: its quants, their
 * scale and their sum. */
static const int8_t *act_block(enum duet_act act, const void *x, int B, int b, int i, float *d,
			       float *sum)
{
	if (act == DUET_ACT_Q8K) {
		const int per = DUET_Q8K / 32, j = i % per;
		const struct duet_q8k_block *xb = (const struct duet_q8k_block *)x + (size_t)(i / per) * B + b;
		*d = xb->d;
		*sum = (float)(xb->bsums[2 * j] + xb->bsums[2 * j + 1]);
		return xb->q + duet_q8k_pos(32 * j);
	}
	const struct duet_q8a_pair *pp = (const struct duet_q8a_pair *)x + (size_t)(i / 2) * B + b;
	*d = pp->d[(i % 2) * 8];
	*sum = (float)(pp->corr[(i % 2) * 8] / -128);
	return pp->q + (i % 2) * 32;
}

/* Any quantized type through its integer form (duet_block_unpack32):
 * each 32-block's two 16-value halves dotted in integers with the
 * activations' quants, scaled by the halves' scales, plus the block's
 * offset times the activations' sum; times the activations' scale (per
 * 32, or per 256 for DUET_ACT_Q8K). */
static void matmul_any_int(enum duet_dtype t, enum duet_act act, const void *w, size_t rb, int K,
			   const void *x, int B, float *y, int ldy, int n0, int n1)
{
	int blocks = K / 32;
	for (int n = n0; n < n1; n++) {
		const uint8_t *wr = (const uint8_t *)w + (size_t)n * rb;
		for (int b = 0; b < B; b++)
			y[(size_t)b * ldy + n] = 0;
		for (int i = 0; i < blocks; i++) {
			int8_t wq[32];
			float sc[2], m;
			duet_block_unpack32(t, wr, i, wq, sc, &m);
			for (int b = 0; b < B; b++) {
				float d, sum_x;
				const int8_t *xq = act_block(act, x, B, b, i, &d, &sum_x);
				int s0 = 0, s1 = 0;
				for (int l = 0; l < 16; l++) {
					s0 += wq[l] * xq[l];
					s1 += wq[l + 16] * xq[l + 16];
				}
				y[(size_t)b * ldy + n] +=
					d * (sc[0] * (float)s0 + sc[1] * (float)s1 + m * sum_x);
			}
		}
	}
}

#define INT_ACT_KERNEL(name, T, ACT)                                                     \
	static void name(const void *w, size_t rb, int K, const void *x, int B, float *y, \
			 int ldy, int n0, int n1, int far)                                \
	{                                                                                \
		(void)far;                                                               \
		matmul_any_int(T, ACT, w, rb, K, x, B, y, ldy, n0, n1);                  \
	}
INT_ACT_KERNEL(matmul_q8_0_q8, DUET_Q8_0, DUET_ACT_Q8)
INT_ACT_KERNEL(matmul_q4_0_q8, DUET_Q4_0, DUET_ACT_Q8)
INT_ACT_KERNEL(matmul_q4_1_q8, DUET_Q4_1, DUET_ACT_Q8)
INT_ACT_KERNEL(matmul_q5_0_q8, DUET_Q5_0, DUET_ACT_Q8)
INT_ACT_KERNEL(matmul_q5_1_q8, DUET_Q5_1, DUET_ACT_Q8)
INT_ACT_KERNEL(matmul_q4_k_q8k, DUET_Q4_K, DUET_ACT_Q8K)
INT_ACT_KERNEL(matmul_q5_k_q8k, DUET_Q5_K, DUET_ACT_Q8K)
INT_ACT_KERNEL(matmul_q6_k_q8k, DUET_Q6_K, DUET_ACT_Q8K)

/* byte p of row r's Q6_K quants (ql, then qh) */
static uint8_t r16_byte(const uint8_t *qi, int r, int p)
{
	return qi[duet_r16_dword_at(DUET_Q6_K, p / 4) * 64 + r * 4 + p % 4];
}

/* The definition of the 16-row kernels (kernels.h): value k of row r's
 * block in a group's block of quants, as the unsigned number the dot
 * product takes (Q8_0: value + 128; Q4_0: the nibble, 0 to 15 for -8 to
 * 7; Q4_K: the nibble, of its 64-value chunk's 32 bytes, low nibbles the
 * first 32 values; Q5_K: that with the fifth bit above it, bit 2c of
 * qh's byte for the low nibble of 64-value chunk c, 2c + 1 for the high;
 * Q6_K: the 6-bit value, 0 to 63 for -32 to 31, as
 * dtype.h puts it together from ql and qh), and the activations' offset
 * that makes a 32-value sum exact (Q8_0: -128 x sum, the q8 panel's corr;
 * Q4_0: -8 x sum, corr / 16; Q4_K: none, its mins come off first; Q6_K:
 * -32 x the sums per 16). Q4_1, Q5_0 and Q5_1 take Q4_0's nibbles; the
 * fifth bit and the offset or min are r16_pair_block's. */
static int r16_value(enum duet_dtype t, const uint8_t *qi, int r, int k)
{
	if (t == DUET_Q8_0)
		return qi[(k / 4) * 64 + r * 4 + k % 4];
	if (t == DUET_Q6_K) {
		int h = k / 128, kind = (k % 128) / 32, l = k % 32;
		uint8_t ql = r16_byte(qi, r, 64 * h + 32 * (kind % 2) + l);
		uint8_t qh = r16_byte(qi, r, DUET_QK / 2 + 32 * h + l);
		return (kind < 2 ? ql & 15 : ql >> 4) | ((qh >> (2 * kind)) & 3) << 4;
	}
	if (t == DUET_Q5_K) { /* qh's 8 dwords, then qs's 32 as Q4_K's */
		int c = k / 64, v = k % 64, l = v % 32;
		uint8_t byte = qi[(8 + 8 * c + l / 4) * 64 + r * 4 + l % 4];
		uint8_t qh = qi[(l / 4) * 64 + r * 4 + l % 4];
		return (v < 32 ? byte & 15 : byte >> 4) | ((qh >> (2 * c + v / 32)) & 1) << 4;
	}
	if (t != DUET_Q4_K) { /* Q4_0, Q4_1, Q5_0, Q5_1: the nibble */
		uint8_t byte = qi[((k % 16) / 4) * 64 + r * 4 + k % 4];
		return k < 16 ? byte & 15 : byte >> 4;
	}
	int c = k / 64, v = k % 64;
	uint8_t byte = qi[(8 * c + (v % 32) / 4) * 64 + r * 4 + v % 4];
	return v < 32 ? byte & 15 : byte >> 4;
}

/* Row r's 32 values of a block (its quants at qi, the 16 rows' header
 * words at h) as the dot product takes them: r16_value, and for Q5_0 and
 * Q5_1 plus 16 x the fifth bit, bit k of the row's two fifth-bit words. */
static void r16_pair_values(enum duet_dtype t, const uint8_t *qi, const uint16_t *h, int r,
			    int v[32])
{
	uint32_t fifth = 0;
	if (t == DUET_Q5_0 || t == DUET_Q5_1) {
		const uint16_t *qh = h + DUET_R16_ROWS * (t == DUET_Q5_1 ? 2 : 1);
		fifth = (uint32_t)qh[r] | (uint32_t)qh[DUET_R16_ROWS + r] << 16;
	}
	for (int k = 0; k < 32; k++)
		v[k] = r16_value(t, qi, r, k) | (int)((fifth >> k) & 1) << 4;
}

/* Those values against the activations' block hf of pair a, continuing
 * acc: their exact sum with the activations' quants, from the offset of
 * the type's zero point (Q8_0: -128 x sum, corr; Q4_0: -8 x sum, corr /
 * 16; Q5_0: -16 x sum, corr / 8; Q4_1, Q5_1: none), meets d x the
 * activations' scale; then Q4_1's and Q5_1's min meets the activations'
 * sum (-corr / 128): acc = fma(min x their scale, float(sum), acc). */
static float r16_pair_acc(enum duet_dtype t, const int v[32], const uint16_t *h, int r,
			  const struct duet_q8a_pair *a, int hf, float acc)
{
	const int32_t corr = a->corr[8 * hf];
	int32_t dot = t == DUET_Q8_0 ? corr : t == DUET_Q4_0 ? corr / 16 : t == DUET_Q5_0 ? corr / 8 : 0;
	for (int k = 0; k < 32; k++)
		dot += v[k] * a->q[32 * hf + k];
	const float xd = a->d[8 * hf];
	acc = fmaf((float)dot, duet_fp16_to_fp32(h[r]) * xd, acc);
	if (t == DUET_Q4_1 || t == DUET_Q5_1)
		acc = fmaf(duet_fp16_to_fp32(h[DUET_R16_ROWS + r]) * xd, (float)(corr / -128), acc);
	return acc;
}

/* Each row's block unpacked once for all nb activation rows (the
 * definition is the tests' oracle, run under the sanitizers: unpacking per
 * activation row had been most of their kernel test's time). */
static void matmul_r16_pairs(enum duet_dtype t, const uint8_t *g, int nblk,
			     const struct duet_q8a_pair *x, int B, int nb, float *y, int ldy,
			     int nrows, int add)
{
	for (int r = 0; r < nrows; r++) {
		float acc[DUET_R16_SEQS];
		for (int b = 0; b < nb; b++)
			acc[b] = add ? y[(size_t)b * ldy + r] : 0;
		for (int i = 0; i < nblk; i++) {
			const uint16_t *h = (const uint16_t *)(g + duet_r16_heads_at(t, i));
			int v[32];
			r16_pair_values(t, g + duet_r16_quants_at(t, i, nblk), h, r, v);
			for (int b = 0; b < nb; b++)
				acc[b] = r16_pair_acc(t, v, h, r, x + (size_t)(i / 2) * B + b, i % 2,
						      acc[b]);
		}
		for (int b = 0; b < nb; b++)
			y[(size_t)b * ldy + r] = acc[b];
	}
}

/* One Q4_K or Q5_K block of row r (its values v, as r16_value gives them; the 16
 * rows' headers at hi) against activation block a, continuing acc: first
 * its mins' exact sum comes off, then each 32 values' exact sum meets d x
 * its 6-bit scale. */
static float q4_k_r16_block(const int v[DUET_QK], const uint16_t *hi, int r,
			    const struct duet_q8k_block *a, float acc)
{
	float d = duet_fp16_to_fp32(hi[r]), dmin = duet_fp16_to_fp32(hi[16 + r]);
	uint8_t scales[DUET_QK_SCALES];
	for (int w = 0; w < DUET_QK_SCALES / 2; w++) {
		scales[2 * w] = (uint8_t)hi[(2 + w) * 16 + r];
		scales[2 * w + 1] = (uint8_t)(hi[(2 + w) * 16 + r] >> 8);
	}
	int sc[8], mn[8];
	int32_t mins = 0;
	for (int j = 0; j < 8; j++) {
		duet_qk_scale_min(scales, j, &sc[j], &mn[j]);
		mins += mn[j] * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
	}
	acc = fmaf(-(float)mins, dmin * a->d, acc);
	for (int j = 0; j < 8; j++) {
		const int8_t *aq = a->q + duet_q8k_pos(32 * j);
		int32_t dot = 0;
		for (int k = 0; k < 32; k++)
			dot += v[32 * j + k] * aq[k];
		acc = fmaf((float)dot, d * (float)sc[j] * a->d, acc);
	}
	return acc;
}

/* One Q6_K block likewise: the exact integer sum over its 16-value
 * sub-blocks of the int8 scale x (the values' dot product - 32 x the
 * activations' sum) meets floats once, acc = fma(sum, d x the
 * activations' scale, acc), as the row kernels' per-256 arithmetic. */
static float q6_k_r16_block(const int v[DUET_QK], const uint16_t *hi, int r,
			    const struct duet_q8k_block *a, float acc)
{
	int32_t sum = 0;
	for (int s = 0; s < DUET_QK / 16; s++) {
		uint16_t word = hi[(s / 2) * 16 + r];
		int sc = (int8_t)(s % 2 ? word >> 8 : word & 0xff);
		int32_t dot = -32 * a->bsums[s];
		for (int k = 16 * s; k < 16 * s + 16; k++)
			dot += v[k] * a->q[duet_q8k_pos(k)];
		sum += sc * dot;
	}
	return fmaf((float)sum, duet_fp16_to_fp32(hi[8 * 16 + r]) * a->d, acc);
}

/* The K-quants' 16-row definition: block after block of each row and
 * sequence against the per-256 activations, each row's block unpacked once
 * for all nb activation rows (as matmul_r16_pairs, for the sanitizers'
 * sake). */
static void matmul_kquant_r16(enum duet_dtype t, const uint8_t *g, int nblk,
			      const struct duet_q8k_block *x, int B, int nb, float *y, int ldy,
			      int nrows, int add)
{
	for (int r = 0; r < nrows; r++) {
		float acc[DUET_R16_SEQS];
		for (int b = 0; b < nb; b++)
			acc[b] = add ? y[(size_t)b * ldy + r] : 0;
		for (int i = 0; i < nblk; i++) {
			const uint8_t *qi = g + duet_r16_quants_at(t, i, nblk);
			const uint16_t *hi = (const uint16_t *)(g + duet_r16_heads_at(t, i));
			int v[DUET_QK];
			for (int k = 0; k < DUET_QK; k++)
				v[k] = r16_value(t, qi, r, k);
			for (int b = 0; b < nb; b++) {
				const struct duet_q8k_block *a = x + (size_t)i * B + b;
				acc[b] = t == DUET_Q6_K ? q6_k_r16_block(v, hi, r, a, acc[b])
							: q4_k_r16_block(v, hi, r, a, acc[b]);
			}
		}
		for (int b = 0; b < nb; b++)
			y[(size_t)b * ldy + r] = acc[b];
	}
}

/* The float types' 16-row definition (F16, F32): each row and sequence one
 * chain of fmas over the values in order (block i's value k of lane r at
 * element 16 k + r; its activations the f32 panel's chunks 2i and 2i + 1). */
static void matmul_float_r16(enum duet_dtype t, const uint8_t *g, int nblk, const float *x,
			     int B, int nb, float *y, int ldy, int nrows, int add)
{
	const int es = duet_r16_elem_bytes(t);
	for (int r = 0; r < nrows; r++)
		for (int b = 0; b < nb; b++) {
			float acc = add ? y[(size_t)b * ldy + r] : 0;
			for (int i = 0; i < nblk; i++) {
				const uint8_t *blk = g + duet_r16_quants_at(t, i, nblk);
				for (int k = 0; k < 32; k++) {
					const uint8_t *e = blk + (size_t)es * (DUET_R16_ROWS * k + r);
					float v;
					if (t == DUET_F16) {
						uint16_t h;
						memcpy(&h, e, 2);
						v = duet_fp16_to_fp32(h);
					} else {
						memcpy(&v, e, 4);
					}
					const float *c = x + ((size_t)(2 * i + k / 16) * B + b) * DUET_PANEL_CHUNK;
					acc = fmaf(v, c[k % 16], acc);
				}
			}
			y[(size_t)b * ldy + r] = acc;
		}
}

/* BF16 in 16-row groups against the bf16 panel's hi halves (the
 * activations rounded to bf16), as AVX512_BF16's dot product defines it:
 * a lane adds the product of a pair's second values, then of its first
 * (each product of two bf16 exact in f32, each sum rounded), pair after
 * pair, one chain a row. (Subnormal inputs and sums, which the
 * instruction takes as zero, do not arise in weights and activations.) */
static void matmul_bf16_r16_def(enum duet_dtype t, const uint8_t *g, int nblk, const void *xv,
				int B, int nb, float *y, int ldy, int nrows, int add)
{
	const struct duet_bf16x2 *x = xv;
	for (int r = 0; r < nrows; r++)
		for (int b = 0; b < nb; b++) {
			float acc = add ? y[(size_t)b * ldy + r] : 0;
			for (int i = 0; i < nblk; i++) {
				const uint8_t *blk = g + duet_r16_quants_at(t, i, nblk);
				const uint16_t *xh = x[(size_t)i * B + b].hi;
				for (int k = 0; k < 16; k++) {
					uint16_t w[2];
					memcpy(w, blk + (size_t)4 * (DUET_R16_ROWS * k + r), 4);
					acc += duet_bf16_to_fp32(w[1]) * duet_bf16_to_fp32(xh[2 * k + 1]);
					acc += duet_bf16_to_fp32(w[0]) * duet_bf16_to_fp32(xh[2 * k]);
				}
			}
			y[(size_t)b * ldy + r] = acc;
		}
}

/* The table's entries: each type's definition above with its type fixed
 * (it does not prefetch: far is for the tables that do). */
#define R16_KERNEL(name, DEF, T)                                                          \
	static void name(const uint8_t *g, int nblk, const void *x, int B, int nb, float *y, \
			 int ldy, int nrows, int add, int far)                            \
	{                                                                                 \
		(void)far;                                                                \
		DEF(T, g, nblk, x, B, nb, y, ldy, nrows, add);                            \
	}
R16_KERNEL(matmul_q8_0_r16, matmul_r16_pairs, DUET_Q8_0)
R16_KERNEL(matmul_q4_0_r16, matmul_r16_pairs, DUET_Q4_0)
R16_KERNEL(matmul_q4_1_r16, matmul_r16_pairs, DUET_Q4_1)
R16_KERNEL(matmul_q5_0_r16, matmul_r16_pairs, DUET_Q5_0)
R16_KERNEL(matmul_q5_1_r16, matmul_r16_pairs, DUET_Q5_1)
R16_KERNEL(matmul_q4_k_r16, matmul_kquant_r16, DUET_Q4_K)
R16_KERNEL(matmul_q5_k_r16, matmul_kquant_r16, DUET_Q5_K)
R16_KERNEL(matmul_q6_k_r16, matmul_kquant_r16, DUET_Q6_K)
R16_KERNEL(matmul_f16_r16, matmul_float_r16, DUET_F16)
R16_KERNEL(matmul_f32_r16, matmul_float_r16, DUET_F32)
R16_KERNEL(matmul_bf16_r16, matmul_bf16_r16_def, DUET_BF16)

static void cvt_f16(const void *src, float *dst, int n)
{
	duet_dequant_row(DUET_F16, src, dst, n);
}

static void cvt_bf16(const void *src, float *dst, int n)
{
	duet_dequant_row(DUET_BF16, src, dst, n);
}

static void cvt_i8(const void *src, float d, float *dst, int n)
{
	const int8_t *q = src;
	for (int i = 0; i < n; i++)
		dst[i] = d * (float)q[i];
}

static void cvt_q8_0(const void *src, float *dst, int n)
{
	duet_dequant_row(DUET_Q8_0, src, dst, n);
}

static float read4(const float *x, long n)
{
	long q = n / 4;
	float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	for (long i = 0; i < q; i++) {
		s0 += x[i];
		s1 += x[q + i];
		s2 += x[2 * q + i];
		s3 += x[3 * q + i];
	}
	return s0 + s1 + s2 + s3;
}

/* No vector unit: no compute ceiling to hold a batch to. */
static double peak(enum duet_peak_op op, long n, float *sink)
{
	(void)op, (void)n;
	*sink = 0;
	return 0;
}

/* Value j of row i of one KV head, as f32. */
static float kv_at(const struct duet_kv_rows *r, int i, int j)
{
	const uint8_t *row = (const uint8_t *)r->base + (size_t)i * r->stride;
	switch (r->t) {
	case DUET_KV_F32:
		return ((const float *)row)[j];
	case DUET_KV_F16:
		return duet_fp16_to_fp32(((const uint16_t *)row)[j]);
	case DUET_KV_INT8:
		return duet_kv_rows_scale(DUET_KV_INT8, r, row) * (float)((const int8_t *)row)[j];
	}
	return 0;
}

static void attn_qk(const float *q, int nq, const struct duet_kv_rows *k, int n, float scale,
		    float *s, size_t ld)
{
	for (int i = 0; i < n; i++)
		for (int h = 0; h < nq; h++) {
			float acc = 0;
			for (int j = 0; j < k->hd; j++)
				acc += q[(size_t)h * k->hd + j] * kv_at(k, i, j);
			s[(size_t)h * ld + i] = acc * scale;
		}
}

static void attn_av(const float *p, size_t ld, int nq, const struct duet_kv_rows *v, int n,
		    float *out)
{
	for (int i = 0; i < n; i++)
		for (int h = 0; h < nq; h++) {
			float w = p[(size_t)h * ld + i];
			for (int j = 0; j < v->hd; j++)
				out[(size_t)h * v->hd + j] += w * kv_at(v, i, j);
		}
}

static float dot(const float *a, const float *b, int n)
{
	float s = 0;
	for (int i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

static void axpy(float a, const float *x, float *y, int n)
{
	for (int i = 0; i < n; i++)
		y[i] += a * x[i];
}

static float softmax(float *x, int n)
{
	float mx = x[0];
	for (int i = 1; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	float s = 0;
	for (int i = 0; i < n; i++) {
		x[i] = expf(x[i] - mx);
		s += x[i];
	}
	float inv = 1.0f / s;
	for (int i = 0; i < n; i++)
		x[i] *= inv;
	return mx + logf(s);
}

static void silu_mul(float *g, const float *u, int n)
{
	for (int i = 0; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
	float ss = 0;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	float r = 1.0f / sqrtf(ss / (float)n + eps);
	for (int i = 0; i < n; i++)
		out[i] = x[i] * r * w[i];
}

const struct duet_kernels duet_kernels_scalar = {
	.name = "scalar",
	.matmul_r16 = {[DUET_Q8_0] = matmul_q8_0_r16, [DUET_Q4_0] = matmul_q4_0_r16,
		       [DUET_Q4_1] = matmul_q4_1_r16, [DUET_Q5_0] = matmul_q5_0_r16,
		       [DUET_Q5_1] = matmul_q5_1_r16, [DUET_Q4_K] = matmul_q4_k_r16,
		       [DUET_Q5_K] = matmul_q5_k_r16,
		       [DUET_Q6_K] = matmul_q6_k_r16, [DUET_F16] = matmul_f16_r16,
		       [DUET_F32] = matmul_f32_r16, [DUET_BF16] = matmul_bf16_r16},
	.matmul_f = {[DUET_F32] = matmul_f32, [DUET_F16] = matmul_f16, [DUET_BF16] = matmul_bf16,
		     [DUET_Q8_0] = matmul_q8_0, [DUET_Q4_0] = matmul_q4_0, [DUET_Q4_1] = matmul_q4_1,
		     [DUET_Q5_0] = matmul_q5_0, [DUET_Q5_1] = matmul_q5_1, [DUET_Q4_K] = matmul_q4_k,
		     [DUET_Q5_K] = matmul_q5_k, [DUET_Q6_K] = matmul_q6_k},
	.matmul_q8 = {[DUET_Q8_0] = matmul_q8_0_q8, [DUET_Q4_0] = matmul_q4_0_q8,
		      [DUET_Q4_1] = matmul_q4_1_q8, [DUET_Q5_0] = matmul_q5_0_q8,
		      [DUET_Q5_1] = matmul_q5_1_q8},
	.matmul_q8k = {[DUET_Q4_K] = matmul_q4_k_q8k, [DUET_Q5_K] = matmul_q5_k_q8k,
		       [DUET_Q6_K] = matmul_q6_k_q8k},
	.quant_q8a = duet_quant_q8a_ref,
	.quant_q8k = duet_quant_q8k_ref,
	.cvt_f16 = cvt_f16,
	.cvt_bf16 = cvt_bf16,
	.cvt_q8_0 = cvt_q8_0,
	.cvt_i8 = cvt_i8,
	.dot = dot,
	.attn_qk = attn_qk,
	.attn_av = attn_av,
	.axpy = axpy,
	.softmax = softmax,
	.silu_mul = silu_mul,
	.rmsnorm = rmsnorm,
	.read4 = read4,
	.peak = peak,
};
