/* AVX-512 attention over one KV head's cached rows, as decode and a
 * prefill chunk read them in place from the paged cache. Built with the
 * -mavx512* flags; only called when the CPU has them. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/kern/avx512_attn.h"
#include "engine/kern/avx512_util.h"
#include "engine/kern/kernels.h"

/* ---- decode attention over one KV head's cached rows ---- */

/* The kernels below take the row type as a constant (each instance reads
 * its rows with one instruction, no branch per row) and whole 16-row
 * tiles without per-row tests: decode attention had been the half of a
 * step at 1k positions, its loads waiting behind a switch and a test per
 * row (BENCHMARKS.md, 2026-12-05 ninth). */

/* Values [j, j + 16) of a KV row as f32 (m: which of them exist; full:
 * all 16, the common case), before an int8 row's scale. */
INLINE __m512 kv16(const enum duet_kv_dtype t, const uint8_t *row, int j, __mmask16 m,
		   const int full)
{
	switch (t) {
	case DUET_KV_F32:
		return full ? _mm512_loadu_ps((const float *)row + j)
			    : _mm512_maskz_loadu_ps(m, (const float *)row + j);
	case DUET_KV_F16: {
		const uint16_t *h = (const uint16_t *)row + j;
		return _mm512_cvtph_ps(full ? _mm256_loadu_si256((const __m256i *)h)
					    : _mm256_maskz_loadu_epi16(m, h));
	}
	case DUET_KV_INT8:
		return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
			full ? _mm_loadu_si128((const __m128i *)(row + j)) : _mm_maskz_loadu_epi8(m, row + j)));
	}
	return _mm512_setzero_ps();
}

/* 16 x 16 transpose: r[i] holds row i; afterwards r[j] holds column j. */
INLINE void transpose16(__m512 r[16])
{
	__m512 t[16];
	_Pragma("GCC unroll 8")
	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
	}
	_Pragma("GCC unroll 4")
	for (int i = 0; i < 16; i += 4) {
		r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
		r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
		r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
		r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
	}
	/* r[4k + m] now holds, per 128-bit lane L, row 4L' ... : gather the
	 * lanes of rows 4 apart, then 8 apart. */
	_Pragma("GCC unroll 4")
	for (int i = 0; i < 4; i++) {
		t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
		t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
		t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
		t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
	}
	_Pragma("GCC unroll 4")
	for (int i = 0; i < 4; i++) {
		r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
		r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
		r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
		r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
	}
}

/* Scales of 16 rows from i0 (n of them real), times the softmax scale. */
INLINE __m512 qk_scales(const enum duet_kv_dtype t, const struct duet_kv_rows *k, int i0, int n,
			float scale)
{
	if (t != DUET_KV_INT8)
		return _mm512_set1_ps(scale);
	float sc[16];
	for (int i = 0; i < 16; i++)
		sc[i] = i < n ? duet_kv_rows_scale(t, k, (const uint8_t *)k->base + (size_t)(i0 + i) * k->stride) : 0;
	return _mm512_mul_ps(_mm512_loadu_ps(sc), _mm512_set1_ps(scale));
}

/* One query head's scores for 16 rows from i0 (n of them real; full: 16):
 * a dot product per row kept in its own register over the head's values,
 * then one reduction for all 16 (transposing the rows instead, as below,
 * costs a transpose per 16 values and pays only for several heads). */
INLINE void qk16_one(const float *q, const struct duet_kv_rows *k, int i0, int n, float scale,
		     float *s, const enum duet_kv_dtype t, const int full)
{
	const int hd = k->hd;
	__m512 acc[16];
	_Pragma("GCC unroll 16")
	for (int i = 0; i < 16; i++)
		acc[i] = _mm512_setzero_ps();
	const uint8_t *base = (const uint8_t *)k->base + (size_t)i0 * k->stride;
	for (int j = 0; j < hd; j += 16) {
		int fullj = full && hd - j >= 16;
		__mmask16 m = tail_mask(hd - j);
		__m512 qv = _mm512_maskz_loadu_ps(m, q + j);
		if (fullj) {
			_Pragma("GCC unroll 16")
			for (int i = 0; i < 16; i++)
				acc[i] = _mm512_fmadd_ps(qv, kv16(t, base + (size_t)i * k->stride, j, m, 1), acc[i]);
		} else {
			_Pragma("GCC unroll 16")
			for (int i = 0; i < 16; i++)
				if (i < n)
					acc[i] = _mm512_fmadd_ps(qv, kv16(t, base + (size_t)i * k->stride, j, m, 0),
								 acc[i]);
		}
	}
	__m512 r = _mm512_mul_ps(hsum16(acc), qk_scales(t, k, i0, n, scale));
	_mm512_mask_storeu_ps(s + i0, tail_mask(n), r);
}

/* qk16_one for 16 whole rows of a head of HD values (a constant): each
 * row read front to back, two accumulators a row, every load its own
 * instruction. Each load then finds the next call's row (the next head's,
 * or the next block's) at a fixed distance, which the CPU's per-instruction
 * stride prefetcher follows ahead of use; qk16_one's order (16 rows at one
 * offset, then the next offset) hid that, and the K pass ran at 16-18 GB/s
 * from memory against 28-35 this way (BENCHMARKS.md, 2026-12-06 third). */
INLINE void qk16_rows(const float *q, const struct duet_kv_rows *k, int i0, float scale, float *s,
		      const enum duet_kv_dtype t, const int HD)
{
	__m512 acc[16];
	const uint8_t *base = (const uint8_t *)k->base + (size_t)i0 * k->stride;
	_Pragma("GCC unroll 16")
	for (int i = 0; i < 16; i++) {
		const uint8_t *row = base + (size_t)i * k->stride;
		__m512 a = _mm512_mul_ps(_mm512_loadu_ps(q), kv16(t, row, 0, 0xffff, 1));
		__m512 b = _mm512_mul_ps(_mm512_loadu_ps(q + 16), kv16(t, row, 16, 0xffff, 1));
		_Pragma("GCC unroll 8")
		for (int j = 32; j < HD; j += 32) {
			a = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), kv16(t, row, j, 0xffff, 1), a);
			b = _mm512_fmadd_ps(_mm512_loadu_ps(q + j + 16), kv16(t, row, j + 16, 0xffff, 1), b);
		}
		acc[i] = _mm512_add_ps(a, b);
	}
	_mm512_storeu_ps(s + i0, _mm512_mul_ps(hsum16(acc), qk_scales(t, k, i0, 16, scale)));
}

/* Scores of nh (<= 8) query heads for up to 16 rows at once: each 16 x 16
 * piece of the rows converted and transposed once, so that an accumulator
 * holds one head's scores for 16 positions and no per-position reduction
 * is needed. */
INLINE void qk16(const float *q, const struct duet_kv_rows *k, int i0, int n, float scale,
		 float *s, size_t ld, const int nh, const enum duet_kv_dtype t, const int full)
{
	const int hd = k->hd;
	__m512 acc[8];
	_Pragma("GCC unroll 8")
	for (int h = 0; h < nh; h++)
		acc[h] = _mm512_setzero_ps();
	const uint8_t *base = (const uint8_t *)k->base + (size_t)i0 * k->stride;
	for (int j = 0; j < hd; j += 16) {
		__mmask16 m = tail_mask(hd - j);
		int fullj = full && hd - j >= 16;
		__m512 col[16];
		if (fullj) {
			_Pragma("GCC unroll 16")
			for (int i = 0; i < 16; i++)
				col[i] = kv16(t, base + (size_t)i * k->stride, j, m, 1);
		} else {
			_Pragma("GCC unroll 16")
			for (int i = 0; i < 16; i++)
				col[i] = i < n ? kv16(t, base + (size_t)i * k->stride, j, m, 0)
					       : _mm512_setzero_ps();
		}
		transpose16(col);
		_Pragma("GCC unroll 16")
		for (int c = 0; c < 16; c++) {
			if (j + c >= hd)
				break;
			_Pragma("GCC unroll 8")
			for (int h = 0; h < nh; h++)
				acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)h * hd + j + c]), col[c],
							 acc[h]);
		}
	}
	__m512 f = qk_scales(t, k, i0, n, scale);
	__mmask16 out = tail_mask(n);
	_Pragma("GCC unroll 8")
	for (int h = 0; h < nh; h++)
		_mm512_mask_storeu_ps(s + (size_t)h * ld + i0, out, _mm512_mul_ps(acc[h], f));
}

INLINE void qk_heads(const float *q, const struct duet_kv_rows *k, int n, float scale, float *s,
		     size_t ld, const int nh, const enum duet_kv_dtype t)
{
	int i0 = 0;
	for (; i0 + 16 <= n; i0 += 16)
		if (nh == 1 && k->hd == 64)
			qk16_rows(q, k, i0, scale, s, t, 64);
		else if (nh == 1 && k->hd == 128)
			qk16_rows(q, k, i0, scale, s, t, 128);
		else if (nh == 1)
			qk16_one(q, k, i0, 16, scale, s, t, 1);
		else
			qk16(q, k, i0, 16, scale, s, ld, nh, t, 1);
	if (i0 < n) {
		if (nh == 1)
			qk16_one(q, k, i0, n - i0, scale, s, t, 0);
		else
			qk16(q, k, i0, n - i0, scale, s, ld, nh, t, 0);
	}
}

INLINE void qk_type(const float *q, int nq, const struct duet_kv_rows *k, int n, float scale,
		    float *s, size_t ld, const enum duet_kv_dtype t)
{
	for (int h0 = 0; h0 < nq; h0 += 8) {
		const float *qh = q + (size_t)h0 * k->hd;
		float *sh = s + (size_t)h0 * ld;
		switch (nq - h0 < 8 ? nq - h0 : 8) {
		case 1: qk_heads(qh, k, n, scale, sh, ld, 1, t); break;
		case 2: qk_heads(qh, k, n, scale, sh, ld, 2, t); break;
		case 3: qk_heads(qh, k, n, scale, sh, ld, 3, t); break;
		case 4: qk_heads(qh, k, n, scale, sh, ld, 4, t); break;
		case 5: qk_heads(qh, k, n, scale, sh, ld, 5, t); break;
		case 6: qk_heads(qh, k, n, scale, sh, ld, 6, t); break;
		case 7: qk_heads(qh, k, n, scale, sh, ld, 7, t); break;
		default: qk_heads(qh, k, n, scale, sh, ld, 8, t); break;
		}
	}
}

/* ---- many query rows: a prefill chunk's rows x heads ---- */

/* From this many query rows on, a block's K and V are converted once into
 * f32 for all of them and the rows run in register tiles (below the decode
 * kernels' way, which converts per 8 or 4 heads, costs less). */
#define MANY_MIN_NQ 16
/* Head sizes the many-rows kernels take: whole 16-value vectors. */
#define MANY_MAX_HD 256
/* Query rows per register tile: QK holds a row's 16 scores in one
 * register, AV a row's 64 values in four. */
#define MANY_QK_ROWS 12
#define MANY_AV_ROWS 6

INLINE int many_rows(int nq, int hd)
{
	return nq >= MANY_MIN_NQ && hd % 16 == 0 && hd <= MANY_MAX_HD;
}

/* R rows' scores for one 16-position piece whose K values kt[d] holds
 * transposed (column d of the piece: its 16 positions' value d). hd is a
 * constant in the common instances (64, 128): the rows' broadcasts then
 * address one register plus fixed offsets, where a register per row ran
 * out of registers and reloaded them from the stack inside the loop. */
INLINE void qk_many_tile(const float *q, const int hd, const __m512 *kt, __m512 f, float *s,
			 size_t ld, __mmask16 out, const int R)
{
	__m512 acc[MANY_QK_ROWS];
	_Pragma("GCC unroll 12")
	for (int r = 0; r < R; r++)
		acc[r] = _mm512_setzero_ps();
	for (int d = 0; d < hd; d++) {
		__m512 kd = kt[d];
		_Pragma("GCC unroll 12")
		for (int r = 0; r < R; r++)
			acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)r * hd + d]), kd, acc[r]);
	}
	_Pragma("GCC unroll 12")
	for (int r = 0; r < R; r++)
		_mm512_mask_storeu_ps(s + (size_t)r * ld, out, _mm512_mul_ps(acc[r], f));
}

INLINE void qk_many_hd(const float *q, int nq, const struct duet_kv_rows *k, int n, float scale,
		       float *s, size_t ld, const enum duet_kv_dtype t, const int hd)
{
	__m512 kt[MANY_MAX_HD];
	for (int i0 = 0; i0 < n; i0 += 16) {
		int m = n - i0 < 16 ? n - i0 : 16;
		const uint8_t *base = (const uint8_t *)k->base + (size_t)i0 * k->stride;
		for (int j = 0; j < hd; j += 16) {
			__m512 col[16];
			if (m == 16) {
				_Pragma("GCC unroll 16")
				for (int i = 0; i < 16; i++)
					col[i] = kv16(t, base + (size_t)i * k->stride, j, 0xffff, 1);
			} else {
				for (int i = 0; i < 16; i++)
					col[i] = i < m ? kv16(t, base + (size_t)i * k->stride, j, 0xffff, 1)
						       : _mm512_setzero_ps();
			}
			transpose16(col);
			_Pragma("GCC unroll 16")
			for (int c = 0; c < 16; c++)
				kt[j + c] = col[c];
		}
		__m512 f = qk_scales(t, k, i0, m, scale);
		__mmask16 out = tail_mask(m);
		int r = 0;
		for (; r + MANY_QK_ROWS <= nq; r += MANY_QK_ROWS)
			qk_many_tile(q + (size_t)r * hd, hd, kt, f, s + (size_t)r * ld + i0, ld, out,
				     MANY_QK_ROWS);
		if (nq - r >= 8) {
			qk_many_tile(q + (size_t)r * hd, hd, kt, f, s + (size_t)r * ld + i0, ld, out, 8);
			r += 8;
		}
		if (nq - r >= 4) {
			qk_many_tile(q + (size_t)r * hd, hd, kt, f, s + (size_t)r * ld + i0, ld, out, 4);
			r += 4;
		}
		for (; r < nq; r++)
			qk_many_tile(q + (size_t)r * hd, hd, kt, f, s + (size_t)r * ld + i0, ld, out, 1);
	}
}

INLINE void qk_many(const float *q, int nq, const struct duet_kv_rows *k, int n, float scale,
		    float *s, size_t ld, const enum duet_kv_dtype t)
{
	switch (k->hd) {
	case 64: qk_many_hd(q, nq, k, n, scale, s, ld, t, 64); break;
	case 128: qk_many_hd(q, nq, k, n, scale, s, ld, t, 128); break;
	default: qk_many_hd(q, nq, k, n, scale, s, ld, t, k->hd); break;
	}
}

void duet_avx512_attn_qk(const float *q, int nq, const struct duet_kv_rows *k, int n, float scale,
		    float *s, size_t ld)
{
	if (many_rows(nq, k->hd)) {
		switch (k->t) {
		case DUET_KV_F32: qk_many(q, nq, k, n, scale, s, ld, DUET_KV_F32); break;
		case DUET_KV_F16: qk_many(q, nq, k, n, scale, s, ld, DUET_KV_F16); break;
		case DUET_KV_INT8: qk_many(q, nq, k, n, scale, s, ld, DUET_KV_INT8); break;
		}
		return;
	}
	switch (k->t) {
	case DUET_KV_F32: qk_type(q, nq, k, n, scale, s, ld, DUET_KV_F32); break;
	case DUET_KV_F16: qk_type(q, nq, k, n, scale, s, ld, DUET_KV_F16); break;
	case DUET_KV_INT8: qk_type(q, nq, k, n, scale, s, ld, DUET_KV_INT8); break;
	}
}

/* Row i of v into nh heads' accumulators (values [j0, j0 + 64)). */
INLINE void av_row(const float *p, size_t ld, const struct duet_kv_rows *v, int i, int j0,
		   const __mmask16 m[4], __m512 acc[4][4], const int nh, const enum duet_kv_dtype t,
		   const int full)
{
	const uint8_t *row = (const uint8_t *)v->base + (size_t)i * v->stride;
	float d = duet_kv_rows_scale(t, v, row);
	__m512 kv[4];
	_Pragma("GCC unroll 4")
	for (int c = 0; c < 4; c++)
		kv[c] = kv16(t, row, j0 + 16 * c, m[c], full);
	_Pragma("GCC unroll 4")
	for (int h = 0; h < nh; h++) {
		__m512 w = _mm512_set1_ps(t == DUET_KV_INT8 ? p[(size_t)h * ld + i] * d
							    : p[(size_t)h * ld + i]);
		_Pragma("GCC unroll 4")
		for (int c = 0; c < 4; c++)
			acc[h][c] = _mm512_fmadd_ps(w, kv[c], acc[h][c]);
	}
}

/* out of nh (<= 4) heads, values [j0, j0 + 64), accumulated in registers
 * over every row: each row's 64 values converted once for all heads. A
 * whole block's 16 rows are unrolled, each row's loads their own
 * instructions, for the stride prefetcher (qk16_rows says why). */
INLINE void av_heads(const float *p, size_t ld, const struct duet_kv_rows *v, int n, float *out,
		     int j0, const int nh, const enum duet_kv_dtype t, const int full)
{
	const int hd = v->hd;
	__mmask16 m[4];
	__m512 acc[4][4];
	_Pragma("GCC unroll 4")
	for (int c = 0; c < 4; c++) {
		int left = hd - j0 - 16 * c;
		m[c] = tail_mask(left > 0 ? left : 0);
		_Pragma("GCC unroll 4")
		for (int h = 0; h < nh; h++)
			acc[h][c] = _mm512_maskz_loadu_ps(m[c], out + (size_t)h * hd + j0 + 16 * c);
	}
	if (n == 16) {
		_Pragma("GCC unroll 16")
		for (int i = 0; i < 16; i++)
			av_row(p, ld, v, i, j0, m, acc, nh, t, full);
	} else {
		for (int i = 0; i < n; i++)
			av_row(p, ld, v, i, j0, m, acc, nh, t, full);
	}
	_Pragma("GCC unroll 4")
	for (int c = 0; c < 4; c++)
		_Pragma("GCC unroll 4")
		for (int h = 0; h < nh; h++)
			_mm512_mask_storeu_ps(out + (size_t)h * hd + j0 + 16 * c, m[c], acc[h][c]);
}

INLINE void av_type(const float *p, size_t ld, int nq, const struct duet_kv_rows *v, int n,
		    float *out, const enum duet_kv_dtype t)
{
	for (int h0 = 0; h0 < nq; h0 += 4)
		for (int j0 = 0; j0 < v->hd; j0 += 64) {
			const float *ph = p + (size_t)h0 * ld;
			float *oh = out + (size_t)h0 * v->hd;
			int nh = nq - h0 < 4 ? nq - h0 : 4;
			if (v->hd - j0 >= 64) /* all four vectors of values whole */
				switch (nh) {
				case 1: av_heads(ph, ld, v, n, oh, j0, 1, t, 1); break;
				case 2: av_heads(ph, ld, v, n, oh, j0, 2, t, 1); break;
				case 3: av_heads(ph, ld, v, n, oh, j0, 3, t, 1); break;
				default: av_heads(ph, ld, v, n, oh, j0, 4, t, 1); break;
				}
			else
				switch (nh) {
				case 1: av_heads(ph, ld, v, n, oh, j0, 1, t, 0); break;
				case 2: av_heads(ph, ld, v, n, oh, j0, 2, t, 0); break;
				case 3: av_heads(ph, ld, v, n, oh, j0, 3, t, 0); break;
				default: av_heads(ph, ld, v, n, oh, j0, 4, t, 0); break;
				}
		}
}

/* R rows' values [c0, c0 + 16 C) over n positions of vf (f32 rows of hd,
 * an int8 row's scale applied), added to out. */
INLINE void av_many_tile(const float *p, size_t ld, const float *vf, int n, int hd, float *out,
			 int c0, const int R, const int C)
{
	__m512 acc[MANY_AV_ROWS][4];
	_Pragma("GCC unroll 6")
	for (int r = 0; r < R; r++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < C; c++)
			acc[r][c] = _mm512_loadu_ps(out + (size_t)r * hd + c0 + 16 * c);
	for (int i = 0; i < n; i++) {
		__m512 vv[4];
		_Pragma("GCC unroll 4")
		for (int c = 0; c < C; c++)
			vv[c] = _mm512_load_ps(vf + (size_t)i * hd + c0 + 16 * c);
		_Pragma("GCC unroll 6")
		for (int r = 0; r < R; r++) {
			__m512 w = _mm512_set1_ps(p[(size_t)r * ld + i]);
			_Pragma("GCC unroll 4")
			for (int c = 0; c < C; c++)
				acc[r][c] = _mm512_fmadd_ps(w, vv[c], acc[r][c]);
		}
	}
	_Pragma("GCC unroll 6")
	for (int r = 0; r < R; r++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < C; c++)
			_mm512_storeu_ps(out + (size_t)r * hd + c0 + 16 * c, acc[r][c]);
}

/* The tiles of every row for the values [c0, c0 + 16 C). */
INLINE void av_many_cols(const float *p, size_t ld, int nq, const float *vf, int n, int hd,
			 float *out, int c0, const int C)
{
	int r = 0;
	for (; r + MANY_AV_ROWS <= nq; r += MANY_AV_ROWS)
		av_many_tile(p + (size_t)r * ld, ld, vf, n, hd, out + (size_t)r * hd, c0, MANY_AV_ROWS, C);
	if (nq - r >= 4) {
		av_many_tile(p + (size_t)r * ld, ld, vf, n, hd, out + (size_t)r * hd, c0, 4, C);
		r += 4;
	}
	for (; r < nq; r++)
		av_many_tile(p + (size_t)r * ld, ld, vf, n, hd, out + (size_t)r * hd, c0, 1, C);
}

INLINE void av_many(const float *p, size_t ld, int nq, const struct duet_kv_rows *v, int n,
		    float *out, const enum duet_kv_dtype t)
{
	const int hd = v->hd;
	_Alignas(64) float vf[16 * MANY_MAX_HD];
	for (int i0 = 0; i0 < n; i0 += 16) {
		int m = n - i0 < 16 ? n - i0 : 16;
		for (int i = 0; i < m; i++) {
			const uint8_t *row = (const uint8_t *)v->base + (size_t)(i0 + i) * v->stride;
			__m512 d = _mm512_set1_ps(duet_kv_rows_scale(t, v, row));
			for (int j = 0; j < hd; j += 16) {
				__m512 x = kv16(t, row, j, 0xffff, 1);
				_mm512_store_ps(vf + (size_t)i * hd + j, t == DUET_KV_INT8 ? _mm512_mul_ps(x, d) : x);
			}
		}
		const float *pi = p + i0;
		int c0 = 0;
		for (; c0 + 64 <= hd; c0 += 64)
			av_many_cols(pi, ld, nq, vf, m, hd, out, c0, 4);
		switch ((hd - c0) / 16) {
		case 1: av_many_cols(pi, ld, nq, vf, m, hd, out, c0, 1); break;
		case 2: av_many_cols(pi, ld, nq, vf, m, hd, out, c0, 2); break;
		case 3: av_many_cols(pi, ld, nq, vf, m, hd, out, c0, 3); break;
		default: break;
		}
	}
}

void duet_avx512_attn_av(const float *p, size_t ld, int nq, const struct duet_kv_rows *v, int n,
		    float *out)
{
	if (many_rows(nq, v->hd)) {
		switch (v->t) {
		case DUET_KV_F32: av_many(p, ld, nq, v, n, out, DUET_KV_F32); break;
		case DUET_KV_F16: av_many(p, ld, nq, v, n, out, DUET_KV_F16); break;
		case DUET_KV_INT8: av_many(p, ld, nq, v, n, out, DUET_KV_INT8); break;
		}
		return;
	}
	switch (v->t) {
	case DUET_KV_F32: av_type(p, ld, nq, v, n, out, DUET_KV_F32); break;
	case DUET_KV_F16: av_type(p, ld, nq, v, n, out, DUET_KV_F16); break;
	case DUET_KV_INT8: av_type(p, ld, nq, v, n, out, DUET_KV_INT8); break;
	}
}
