#include "engine/dtype.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int duet_dtype_supported(uint32_t t)
{
	switch (t) {
	case DUET_F32:
	case DUET_F16:
	case DUET_BF16:
	case DUET_Q4_0:
	case DUET_Q4_1:
	case DUET_Q5_0:
	case DUET_Q5_1:
	case DUET_Q8_0:
	case DUET_Q4_K:
	case DUET_Q5_K:
	case DUET_Q6_K:
		return 1;
	}
	return 0;
}

int duet_dtype_quantized(enum duet_dtype t)
{
	return duet_dtype_supported(t) && t != DUET_F32 && t != DUET_F16 && t != DUET_BF16;
}

int duet_dtype_kquant(enum duet_dtype t)
{
	return t == DUET_Q4_K || t == DUET_Q5_K || t == DUET_Q6_K;
}

const char *duet_dtype_name(uint32_t t)
{
	/* GGUF's names for the types a user is likely to bring, so that an
	 * unsupported file is reported in words they recognise. */
	static const char *const names[] = {
		[0] = "f32",   [1] = "f16",   [2] = "q4_0",  [3] = "q4_1",
		[6] = "q5_0",  [7] = "q5_1",  [8] = "q8_0",  [9] = "q8_1",
		[10] = "q2_k", [11] = "q3_k", [12] = "q4_k", [13] = "q5_k",
		[14] = "q6_k", [15] = "q8_k", [16] = "iq2_xxs", [17] = "iq2_xs",
		[18] = "iq3_xxs", [19] = "iq1_s", [20] = "iq4_nl", [21] = "iq3_s",
		[22] = "iq2_s", [23] = "iq4_xs", [24] = "i8", [25] = "i16",
		[26] = "i32", [27] = "i64", [28] = "f64", [29] = "iq1_m",
		[30] = "bf16",
	};
	static _Thread_local char buf[24];
	if (t < sizeof names / sizeof names[0] && names[t])
		return names[t];
	snprintf(buf, sizeof buf, "type-%u", t);
	return buf;
}

int duet_dtype_block(enum duet_dtype t)
{
	switch (t) {
	case DUET_Q4_K:
	case DUET_Q5_K:
	case DUET_Q6_K:
		return DUET_QK;
	case DUET_F32:
	case DUET_F16:
	case DUET_BF16:
		return 1;
	default:
		return 32;
	}
}

size_t duet_dtype_block_bytes(enum duet_dtype t)
{
	switch (t) {
	case DUET_F32:
		return 4;
	case DUET_F16:
	case DUET_BF16:
		return 2;
	case DUET_Q4_0:
		return sizeof(struct duet_q4_0_block);
	case DUET_Q4_1:
		return sizeof(struct duet_q4_1_block);
	case DUET_Q5_0:
		return sizeof(struct duet_q5_0_block);
	case DUET_Q5_1:
		return sizeof(struct duet_q5_1_block);
	case DUET_Q8_0:
		return DUET_Q8_0_BYTES;
	case DUET_Q4_K:
		return sizeof(struct duet_q4_k_block);
	case DUET_Q5_K:
		return sizeof(struct duet_q5_k_block);
	case DUET_Q6_K:
		return sizeof(struct duet_q6_k_block);
	}
	return 0;
}

size_t duet_row_bytes(enum duet_dtype t, int64_t n)
{
	return (size_t)(n / duet_dtype_block(t)) * duet_dtype_block_bytes(t);
}


int duet_dtype_parse(const char *s, enum duet_dtype *out)
{
	static const enum duet_dtype all[] = {DUET_F32,  DUET_F16,  DUET_BF16, DUET_Q4_0,
					      DUET_Q4_1, DUET_Q5_0, DUET_Q5_1, DUET_Q8_0,
					      DUET_Q4_K, DUET_Q5_K, DUET_Q6_K};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (!strcmp(s, duet_dtype_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	return -1;
}

/* The layouts are packed byte arrays; the structs above must match them. */
_Static_assert(sizeof(struct duet_q4_0_block) == 18, "q4_0 block");
_Static_assert(sizeof(struct duet_q4_1_block) == 20, "q4_1 block");
_Static_assert(sizeof(struct duet_q5_0_block) == 22, "q5_0 block");
_Static_assert(sizeof(struct duet_q5_1_block) == 24, "q5_1 block");
_Static_assert(sizeof(struct duet_q4_k_block) == 144, "q4_k block");
_Static_assert(sizeof(struct duet_q5_k_block) == 176, "q5_k block");
_Static_assert(sizeof(struct duet_q6_k_block) == 210, "q6_k block");

static float h2f(uint16_t h)
{
	return duet_fp16_to_fp32(h);
}

/* ---- reference dequantizers, one per layout ---- */

static void dq_q4_0(const struct duet_q4_0_block *b, float *y)
{
	float d = h2f(b->d);
	for (int j = 0; j < 16; j++) {
		y[j] = d * (float)((b->qs[j] & 0xF) - 8);
		y[j + 16] = d * (float)((b->qs[j] >> 4) - 8);
	}
}

static void dq_q4_1(const struct duet_q4_1_block *b, float *y)
{
	float d = h2f(b->d), m = h2f(b->m);
	for (int j = 0; j < 16; j++) {
		y[j] = d * (float)(b->qs[j] & 0xF) + m;
		y[j + 16] = d * (float)(b->qs[j] >> 4) + m;
	}
}

static uint32_t le32(const uint8_t p[4])
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The 5-bit quants of a Q5_0/Q5_1 block, 0-31. */
static void q5_quants(const uint8_t qh[4], const uint8_t qs[16], int q[32])
{
	uint32_t h = le32(qh);
	for (int j = 0; j < 16; j++) {
		q[j] = (qs[j] & 0xF) | (int)((h >> j) & 1) << 4;
		q[j + 16] = (qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
	}
}

static void dq_q5_0(const struct duet_q5_0_block *b, float *y)
{
	int q[32];
	q5_quants(b->qh, b->qs, q);
	float d = h2f(b->d);
	for (int j = 0; j < 32; j++)
		y[j] = d * (float)(q[j] - 16);
}

static void dq_q5_1(const struct duet_q5_1_block *b, float *y)
{
	int q[32];
	q5_quants(b->qh, b->qs, q);
	float d = h2f(b->d), m = h2f(b->m);
	for (int j = 0; j < 32; j++)
		y[j] = d * (float)q[j] + m;
}

static void dq_q8_0(const uint8_t *p, float *y)
{
	float d = h2f((uint16_t)(p[0] | p[1] << 8));
	const int8_t *q = (const int8_t *)(p + 2);
	for (int i = 0; i < DUET_Q8_0_BLOCK; i++)
		y[i] = d * (float)q[i];
}

/* Q4_K, and Q5_K when qh is given. */
static void dq_qk45(uint16_t dh, uint16_t dminh, const uint8_t *scales, const uint8_t *qh,
		    const uint8_t *qs, float *y)
{
	float d = h2f(dh), dmin = h2f(dminh);
	for (int g = 0; g < 4; g++) {
		int sc1, m1, sc2, m2;
		duet_qk_scale_min(scales, 2 * g, &sc1, &m1);
		duet_qk_scale_min(scales, 2 * g + 1, &sc2, &m2);
		float d1 = d * (float)sc1, mm1 = dmin * (float)m1;
		float d2 = d * (float)sc2, mm2 = dmin * (float)m2;
		for (int l = 0; l < 32; l++) {
			int lo = qs[32 * g + l] & 0xF, hi = qs[32 * g + l] >> 4;
			if (qh) {
				lo |= ((qh[l] >> (2 * g)) & 1) << 4;
				hi |= ((qh[l] >> (2 * g + 1)) & 1) << 4;
			}
			y[64 * g + l] = d1 * (float)lo - mm1;
			y[64 * g + 32 + l] = d2 * (float)hi - mm2;
		}
	}
}

static void dq_q6_k(const struct duet_q6_k_block *b, float *y)
{
	float d = h2f(b->d);
	for (int h = 0; h < 2; h++) {
		const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
		const int8_t *sc = b->scales + 8 * h;
		float *o = y + 128 * h;
		for (int l = 0; l < 32; l++) {
			int is = l / 16;
			int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
			int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
			int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
			int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
			o[l] = d * (float)sc[is] * (float)q1;
			o[l + 32] = d * (float)sc[is + 2] * (float)q2;
			o[l + 64] = d * (float)sc[is + 4] * (float)q3;
			o[l + 96] = d * (float)sc[is + 6] * (float)q4;
		}
	}
}

void duet_dequant_row(enum duet_dtype t, const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;
	size_t bb = duet_dtype_block_bytes(t);
	int64_t bs = duet_dtype_block(t);
	switch (t) {
	case DUET_F32:
		memcpy(dst, src, (size_t)n * sizeof(float));
		return;
	case DUET_F16: {
		const uint16_t *h = src;
		for (int64_t i = 0; i < n; i++)
			dst[i] = duet_fp16_to_fp32(h[i]);
		return;
	}
	case DUET_BF16: {
		const uint16_t *h = src;
		for (int64_t i = 0; i < n; i++)
			dst[i] = duet_bf16_to_fp32(h[i]);
		return;
	}
	default:
		break;
	}
	for (int64_t b = 0; b < n / bs; b++, p += bb, dst += bs) {
		/* Blocks are copied out: a row of odd-sized blocks leaves
		 * their fp16 fields unaligned. */
		union {
			struct duet_q4_0_block q4_0;
			struct duet_q4_1_block q4_1;
			struct duet_q5_0_block q5_0;
			struct duet_q5_1_block q5_1;
			struct duet_q4_k_block q4_k;
			struct duet_q5_k_block q5_k;
			struct duet_q6_k_block q6_k;
		} u;
		if (t != DUET_Q8_0)
			memcpy(&u, p, bb);
		switch (t) {
		case DUET_Q4_0: dq_q4_0(&u.q4_0, dst); break;
		case DUET_Q4_1: dq_q4_1(&u.q4_1, dst); break;
		case DUET_Q5_0: dq_q5_0(&u.q5_0, dst); break;
		case DUET_Q5_1: dq_q5_1(&u.q5_1, dst); break;
		case DUET_Q8_0: dq_q8_0(p, dst); break;
		case DUET_Q4_K:
			dq_qk45(u.q4_k.d, u.q4_k.dmin, u.q4_k.scales, NULL, u.q4_k.qs, dst);
			break;
		case DUET_Q5_K:
			dq_qk45(u.q5_k.d, u.q5_k.dmin, u.q5_k.scales, u.q5_k.qh, u.q5_k.qs, dst);
			break;
		case DUET_Q6_K: dq_q6_k(&u.q6_k, dst); break;
		default: break;
		}
	}
}

/* ---- quantizers (plain round-to-nearest schemes) ---- */

static float clampf(float x, float lo, float hi)
{
	return x < lo ? lo : x > hi ? hi : x;
}

/* The value of largest magnitude (with its sign) and the min and max. */
static void extremes(const float *x, int n, float *signed_max, float *lo, float *hi)
{
	float amax = 0, mx = 0, mn = x[0], mxv = x[0];
	for (int i = 0; i < n; i++) {
		if (fabsf(x[i]) > amax) {
			amax = fabsf(x[i]);
			mx = x[i];
		}
		mn = fminf(mn, x[i]);
		mxv = fmaxf(mxv, x[i]);
	}
	*signed_max = mx;
	*lo = mn;
	*hi = mxv;
}

/* Symmetric quants in [-half, half - 1] around the value of largest
 * magnitude (which lands on -half, the end with one more level). */
static float sym_scale(const float *x, int n, int half)
{
	float mx, lo, hi;
	extremes(x, n, &mx, &lo, &hi);
	return mx / (float)-half;
}

static void put_h(uint16_t *h, float v, float *back)
{
	*h = duet_fp32_to_fp16(v);
	*back = duet_fp16_to_fp32(*h);
}

static int quant_level(float x, float d, float offset, int lo, int hi)
{
	return d != 0 ? (int)clampf(nearbyintf(x / d + offset), (float)lo, (float)hi) : (int)offset;
}

static void q_small(enum duet_dtype t, const float *x, uint8_t *out)
{
	int q[32];
	float d, m = 0;
	uint16_t dh, mh = 0;
	if (t == DUET_Q4_0 || t == DUET_Q5_0) {
		int half = t == DUET_Q4_0 ? 8 : 16;
		put_h(&dh, sym_scale(x, 32, half), &d);
		for (int i = 0; i < 32; i++)
			q[i] = quant_level(x[i], d, (float)half, 0, 2 * half - 1);
	} else { /* Q4_1, Q5_1: the block's range */
		int levels = t == DUET_Q4_1 ? 15 : 31;
		float mx, lo, hi;
		extremes(x, 32, &mx, &lo, &hi);
		put_h(&dh, (hi - lo) / (float)levels, &d);
		put_h(&mh, lo, &m);
		for (int i = 0; i < 32; i++)
			q[i] = quant_level(x[i] - m, d, 0, 0, levels);
	}
	uint8_t qs[16];
	uint32_t h = 0;
	for (int j = 0; j < 16; j++) {
		qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
		h |= (uint32_t)(q[j] >> 4) << j | (uint32_t)(q[j + 16] >> 4) << (j + 16);
	}
	uint8_t qh[4] = {(uint8_t)h, (uint8_t)(h >> 8), (uint8_t)(h >> 16), (uint8_t)(h >> 24)};
	memcpy(out, &dh, 2);
	switch (t) {
	case DUET_Q4_0:
		memcpy(out + 2, qs, 16);
		break;
	case DUET_Q4_1:
		memcpy(out + 2, &mh, 2);
		memcpy(out + 4, qs, 16);
		break;
	case DUET_Q5_0:
		memcpy(out + 2, qh, 4);
		memcpy(out + 6, qs, 16);
		break;
	default: /* Q5_1 */
		memcpy(out + 2, &mh, 2);
		memcpy(out + 4, qh, 4);
		memcpy(out + 8, qs, 16);
		break;
	}
}

/* Q4_K and Q5_K: each sub-block's range [min(0, lo), hi] over `levels`
 * steps, the 8 scales and mins then quantized to 6 bits against the
 * largest of each. */
static void q_k45(const float *x, int levels, uint16_t *dh, uint16_t *dminh,
		  uint8_t scales[DUET_QK_SCALES], int q[DUET_QK])
{
	float scale[8], mins[8], maxs = 0, maxm = 0;
	for (int j = 0; j < 8; j++) {
		float mx, lo, hi;
		extremes(x + 32 * j, 32, &mx, &lo, &hi);
		mins[j] = fminf(lo, 0);
		scale[j] = (hi - mins[j]) / (float)levels;
		maxs = fmaxf(maxs, scale[j]);
		maxm = fmaxf(maxm, -mins[j]);
	}
	float d, dmin;
	put_h(dh, maxs / 63, &d);
	put_h(dminh, maxm / 63, &dmin);
	memset(scales, 0, DUET_QK_SCALES);
	int sc[8], mq[8];
	for (int j = 0; j < 8; j++) {
		sc[j] = quant_level(scale[j], d, 0, 0, 63);
		mq[j] = quant_level(-mins[j], dmin, 0, 0, 63);
		if (j < 4) {
			scales[j] = (uint8_t)sc[j];
			scales[j + 4] = (uint8_t)mq[j];
		}
	}
	for (int j = 4; j < 8; j++) {
		scales[j + 4] = (uint8_t)((sc[j] & 0xF) | (mq[j] & 0xF) << 4);
		scales[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
		scales[j] |= (uint8_t)((mq[j] >> 4) << 6);
	}
	for (int j = 0; j < 8; j++) {
		float ds = d * (float)sc[j], dm = dmin * (float)mq[j];
		for (int i = 0; i < 32; i++)
			q[32 * j + i] = quant_level(x[32 * j + i] + dm, ds, 0, 0, levels);
	}
}

static void q_q4_k(const float *x, struct duet_q4_k_block *b)
{
	int q[DUET_QK];
	q_k45(x, 15, &b->d, &b->dmin, b->scales, q);
	for (int g = 0; g < 4; g++)
		for (int l = 0; l < 32; l++)
			b->qs[32 * g + l] = (uint8_t)(q[64 * g + l] | q[64 * g + 32 + l] << 4);
}

static void q_q5_k(const float *x, struct duet_q5_k_block *b)
{
	int q[DUET_QK];
	q_k45(x, 31, &b->d, &b->dmin, b->scales, q);
	memset(b->qh, 0, sizeof b->qh);
	for (int g = 0; g < 4; g++)
		for (int l = 0; l < 32; l++) {
			int lo = q[64 * g + l], hi = q[64 * g + 32 + l];
			b->qs[32 * g + l] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
			b->qh[l] |= (uint8_t)((lo >> 4) << (2 * g) | (hi >> 4) << (2 * g + 1));
		}
}

static void q_q6_k(const float *x, struct duet_q6_k_block *b)
{
	float scale[16], amax = 0;
	for (int s = 0; s < 16; s++) {
		scale[s] = sym_scale(x + 16 * s, 16, 32);
		amax = fmaxf(amax, fabsf(scale[s]));
	}
	float d;
	put_h(&b->d, amax / 127, &d);
	int q[DUET_QK];
	for (int s = 0; s < 16; s++) {
		int sc = quant_level(scale[s], d, 0, -127, 127);
		b->scales[s] = (int8_t)sc;
		for (int i = 0; i < 16; i++)
			q[16 * s + i] = quant_level(x[16 * s + i], d * (float)sc, 32, 0, 63);
	}
	for (int h = 0; h < 2; h++)
		for (int l = 0; l < 32; l++) {
			const int *v = q + 128 * h + l;
			b->ql[64 * h + l] = (uint8_t)((v[0] & 0xF) | (v[64] & 0xF) << 4);
			b->ql[64 * h + l + 32] = (uint8_t)((v[32] & 0xF) | (v[96] & 0xF) << 4);
			b->qh[32 * h + l] = (uint8_t)((v[0] >> 4) | (v[32] >> 4) << 2 |
						      (v[64] >> 4) << 4 | (v[96] >> 4) << 6);
		}
}

static void q_q8_0(const float *x, uint8_t *p)
{
	float amax = 0;
	for (int i = 0; i < DUET_Q8_0_BLOCK; i++)
		amax = fmaxf(amax, fabsf(x[i]));
	float d = amax / 127.0f;
	float id = d != 0 ? 1.0f / d : 0.0f;
	uint16_t dh = duet_fp32_to_fp16(d);
	memcpy(p, &dh, 2);
	int8_t *q = (int8_t *)(p + 2);
	for (int i = 0; i < DUET_Q8_0_BLOCK; i++)
		q[i] = (int8_t)roundf(x[i] * id);
}

void duet_quant_row(enum duet_dtype t, const float *src, void *dst, int64_t n)
{
	switch (t) {
	case DUET_F32:
		memcpy(dst, src, (size_t)n * sizeof(float));
		return;
	case DUET_F16: {
		uint16_t *h = dst;
		for (int64_t i = 0; i < n; i++)
			h[i] = duet_fp32_to_fp16(src[i]);
		return;
	}
	case DUET_BF16: {
		uint16_t *h = dst;
		for (int64_t i = 0; i < n; i++)
			h[i] = duet_fp32_to_bf16(src[i]);
		return;
	}
	default:
		break;
	}
	uint8_t *p = dst;
	size_t bb = duet_dtype_block_bytes(t);
	int64_t bs = duet_dtype_block(t);
	for (int64_t b = 0; b < n / bs; b++, p += bb, src += bs) {
		union {
			struct duet_q4_k_block q4_k;
			struct duet_q5_k_block q5_k;
			struct duet_q6_k_block q6_k;
		} u;
		switch (t) {
		case DUET_Q8_0: q_q8_0(src, p); continue;
		case DUET_Q4_K: q_q4_k(src, &u.q4_k); break;
		case DUET_Q5_K: q_q5_k(src, &u.q5_k); break;
		case DUET_Q6_K: q_q6_k(src, &u.q6_k); break;
		default: q_small(t, src, p); continue;
		}
		memcpy(p, &u, bb);
	}
}

/* ---- the integer form of a 32-value block ---- */

void duet_block_unpack32(enum duet_dtype t, const void *row, int64_t i, int8_t q[32],
			 float sc[2], float *m)
{
	const uint8_t *r = row;
	*m = 0;
	if (t == DUET_Q4_K || t == DUET_Q5_K || t == DUET_Q6_K) {
		const uint8_t *sb = r + (size_t)(i / 8) * duet_dtype_block_bytes(t);
		int j = (int)(i % 8);
		if (t == DUET_Q6_K) {
			struct duet_q6_k_block b;
			memcpy(&b, sb, sizeof b);
			int h = j / 4, g = j % 4;
			const uint8_t *ql = b.ql + 64 * h + (g & 1) * 32, *qh = b.qh + 32 * h;
			for (int l = 0; l < 32; l++) {
				int lo = g < 2 ? ql[l] & 0xF : ql[l] >> 4;
				q[l] = (int8_t)((lo | ((qh[l] >> (2 * g)) & 3) << 4) - 32);
			}
			float d = h2f(b.d);
			sc[0] = d * (float)b.scales[2 * j];
			sc[1] = d * (float)b.scales[2 * j + 1];
			return;
		}
		uint16_t dh, dminh;
		memcpy(&dh, sb, 2);
		memcpy(&dminh, sb + 2, 2);
		const uint8_t *scales = sb + 4;
		const uint8_t *qh = t == DUET_Q5_K ? sb + 4 + DUET_QK_SCALES : NULL;
		const uint8_t *qs = sb + 4 + DUET_QK_SCALES + (qh ? DUET_QK / 8 : 0);
		int s, mm, g = j / 2, hi = j % 2;
		duet_qk_scale_min(scales, j, &s, &mm);
		for (int l = 0; l < 32; l++) {
			int v = hi ? qs[32 * g + l] >> 4 : qs[32 * g + l] & 0xF;
			if (qh)
				v |= ((qh[l] >> (2 * g + hi)) & 1) << 4;
			q[l] = (int8_t)v;
		}
		sc[0] = sc[1] = h2f(dh) * (float)s;
		*m = -(h2f(dminh) * (float)mm);
		return;
	}
	const uint8_t *b = r + (size_t)i * duet_dtype_block_bytes(t);
	uint16_t dh, mh;
	memcpy(&dh, b, 2);
	sc[0] = sc[1] = h2f(dh);
	int v[32];
	switch (t) {
	case DUET_Q8_0:
		memcpy(q, b + 2, 32);
		return;
	case DUET_Q4_0:
	case DUET_Q4_1: {
		const uint8_t *qs = b + (t == DUET_Q4_0 ? 2 : 4);
		for (int l = 0; l < 16; l++) {
			v[l] = qs[l] & 0xF;
			v[l + 16] = qs[l] >> 4;
		}
		break;
	}
	default: /* Q5_0, Q5_1 */
		q5_quants(b + (t == DUET_Q5_0 ? 2 : 4), b + (t == DUET_Q5_0 ? 6 : 8), v);
		break;
	}
	int off = t == DUET_Q4_0 ? 8 : t == DUET_Q5_0 ? 16 : 0;
	for (int l = 0; l < 32; l++)
		q[l] = (int8_t)(v[l] - off);
	if (t == DUET_Q4_1 || t == DUET_Q5_1) {
		memcpy(&mh, b + 2, 2);
		*m = h2f(mh);
	}
}
