/* AVX-512 kernels (F, BW, VL, DQ, plus F16C for half conversion). Built
 * with -mavx512* flags; only called when the CPU has them. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "engine/kern/kernels.h"

#define INLINE static inline __attribute__((always_inline))
/* Weight rows per block and activation rows per tile: 4 x 4 accumulators
 * plus 4 activation and 1 weight register fit the 32 zmm registers. */
#define NR 4
#define NBMAX 4
/* K chunk for converted weight tiles: NR x KC floats stay in L1. */
#define KC 1024

/* Decode streams weights from memory once per step; with several
 * activation rows per weight the hardware prefetcher alone falls behind
 * (measured: 14 GB/s at 8 rows against 32 GB/s at 1), so each tile asks
 * for the same columns of the next row block while it computes. */
#define PREFETCH_NEXT_BLOCK(p, block_bytes) \
	_mm_prefetch((const char *)(p) + (block_bytes), _MM_HINT_T0)

INLINE __mmask16 tail_mask(int r)
{
	return (__mmask16)((1u << r) - 1);
}

/* One NR x NB tile over K from f32 weights w (row stride rs floats). */
INLINE void tile_f32(const float *w, size_t rs, int K, const float *x, int ldx,
		     float *y, int ldy, int accumulate, const int nr, const int nb)
{
	__m512 acc[NR][NBMAX];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			acc[r][b] = _mm512_setzero_ps();
	int k = 0;
	for (; k + 16 <= K; k += 16) {
		__m512 xv[NBMAX];
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			xv[b] = _mm512_loadu_ps(x + (size_t)b * ldx + k);
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			PREFETCH_NEXT_BLOCK(w + r * rs + k, NR * rs * sizeof(float));
			__m512 wv = _mm512_loadu_ps(w + r * rs + k);
			_Pragma("GCC unroll 4")
			for (int b = 0; b < nb; b++)
				acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
		}
	}
	if (k < K) {
		__mmask16 m = tail_mask(K - k);
		__m512 xv[NBMAX];
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			xv[b] = _mm512_maskz_loadu_ps(m, x + (size_t)b * ldx + k);
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			__m512 wv = _mm512_maskz_loadu_ps(m, w + r * rs + k);
			_Pragma("GCC unroll 4")
			for (int b = 0; b < nb; b++)
				acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
		}
	}
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++) {
			float s = _mm512_reduce_add_ps(acc[r][b]);
			float *o = y + (size_t)b * ldy + r;
			*o = accumulate ? *o + s : s;
		}
}

/* Dispatches a tile of nr (<= NR) rows and nb (<= NBMAX) activation rows to
 * a specialised instance. */
static void tile_f32_any(const float *w, size_t rs, int K, const float *x, int ldx,
			 float *y, int ldy, int accumulate, int nr, int nb)
{
#define CASE(R, B)                                                              \
	case (R) * 8 + (B):                                                     \
		tile_f32(w, rs, K, x, ldx, y, ldy, accumulate, R, B);           \
		return;
	switch (nr * 8 + nb) {
		CASE(4, 1) CASE(4, 2) CASE(4, 3) CASE(4, 4)
		CASE(1, 1) CASE(1, 2) CASE(1, 3) CASE(1, 4)
	default:
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++)
			tile_f32_any(w + r * rs, rs, K, x, ldx, y + r, ldy, accumulate, 1, nb);
	}
#undef CASE
}

static void matmul_f32(const void *wv, size_t rb, int K, const float *x, int ldx,
		       int B, float *y, int ldy, int n0, int n1)
{
	const float *w = wv;
	size_t rs = rb / sizeof(float);
	for (int n = n0; n < n1; n += NR) {
		int nr = n1 - n < NR ? n1 - n : NR;
		/* All batch tiles of this row block while its rows are hot. */
		for (int b = 0; b < B; b += NBMAX) {
			int nb = B - b < NBMAX ? B - b : NBMAX;
			tile_f32_any(w + (size_t)n * rs, rs, K, x + (size_t)b * ldx, ldx,
				     y + (size_t)b * ldy + n, ldy, 0, nr, nb);
		}
	}
}

/* ---- f16 ---- */

INLINE __m512 load_h(const uint16_t *p)
{
	return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

INLINE __m512 load_h_tail(const uint16_t *p, __mmask16 m)
{
	return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

INLINE void tile_f16(const uint16_t *w, size_t rs, int K, const float *x, int ldx,
		     float *y, int ldy, const int nr, const int nb)
{
	__m512 acc[NR][NBMAX];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			acc[r][b] = _mm512_setzero_ps();
	int k = 0;
	for (; k + 16 <= K; k += 16) {
		__m512 xv[NBMAX];
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			xv[b] = _mm512_loadu_ps(x + (size_t)b * ldx + k);
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			PREFETCH_NEXT_BLOCK(w + r * rs + k, NR * rs * sizeof(uint16_t));
			__m512 wv = load_h(w + r * rs + k);
			_Pragma("GCC unroll 4")
			for (int b = 0; b < nb; b++)
				acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
		}
	}
	if (k < K) {
		__mmask16 m = tail_mask(K - k);
		__m512 xv[NBMAX];
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			xv[b] = _mm512_maskz_loadu_ps(m, x + (size_t)b * ldx + k);
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			__m512 wv = load_h_tail(w + r * rs + k, m);
			_Pragma("GCC unroll 4")
			for (int b = 0; b < nb; b++)
				acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
		}
	}
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			y[(size_t)b * ldy + r] = _mm512_reduce_add_ps(acc[r][b]);
}

static void cvt_f16(const void *src, float *dst, int n)
{
	const uint16_t *h = src;
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(dst + i, load_h(h + i));
	if (i < n)
		_mm512_mask_storeu_ps(dst + i, tail_mask(n - i), load_h_tail(h + i, tail_mask(n - i)));
}

/* ---- q8_0 ---- */

INLINE __m512 q8_lo(const uint8_t *blk, __m512 d)
{
	__m128i q = _mm_loadu_si128((const __m128i *)(blk + 2));
	return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
}

INLINE __m512 q8_hi(const uint8_t *blk, __m512 d)
{
	__m128i q = _mm_loadu_si128((const __m128i *)(blk + 18));
	return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
}

INLINE __m512 q8_scale(const uint8_t *blk)
{
	uint16_t h;
	memcpy(&h, blk, 2);
	return _mm512_set1_ps(_cvtsh_ss(h));
}

INLINE void tile_q8(const uint8_t *w, size_t rb, int K, const float *x, int ldx,
		    float *y, int ldy, const int nr, const int nb)
{
	__m512 acc[NR][NBMAX];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			acc[r][b] = _mm512_setzero_ps();
	for (int k = 0, blk = 0; k < K; k += DUET_Q8_0_BLOCK, blk++) {
		__m512 xl[NBMAX], xh[NBMAX];
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++) {
			xl[b] = _mm512_loadu_ps(x + (size_t)b * ldx + k);
			xh[b] = _mm512_loadu_ps(x + (size_t)b * ldx + k + 16);
		}
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			const uint8_t *p = w + r * rb + (size_t)blk * DUET_Q8_0_BYTES;
			PREFETCH_NEXT_BLOCK(p, NR * rb);
			__m512 d = q8_scale(p);
			__m512 lo = q8_lo(p, d), hi = q8_hi(p, d);
			_Pragma("GCC unroll 4")
			for (int b = 0; b < nb; b++) {
				acc[r][b] = _mm512_fmadd_ps(lo, xl[b], acc[r][b]);
				acc[r][b] = _mm512_fmadd_ps(hi, xh[b], acc[r][b]);
			}
		}
	}
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			y[(size_t)b * ldy + r] = _mm512_reduce_add_ps(acc[r][b]);
}

static void cvt_q8_0(const void *src, float *dst, int n)
{
	const uint8_t *p = src;
	for (int k = 0; k < n; k += DUET_Q8_0_BLOCK, p += DUET_Q8_0_BYTES) {
		__m512 d = q8_scale(p);
		_mm512_storeu_ps(dst + k, q8_lo(p, d));
		_mm512_storeu_ps(dst + k + 16, q8_hi(p, d));
	}
}

/* Small batches convert in registers; larger ones convert each NR-row block
 * once into an L1-sized f32 tile and reuse it for every batch tile, so the
 * conversion cost does not grow with the batch. */
static void matmul_converted(enum duet_dtype t, const void *w, size_t rb, int K,
			     const float *x, int ldx, int B, float *y, int ldy,
			     int n0, int n1)
{
	float tile[NR * KC] __attribute__((aligned(64)));
	for (int n = n0; n < n1; n += NR) {
		int nr = n1 - n < NR ? n1 - n : NR;
		for (int k0 = 0; k0 < K; k0 += KC) {
			int kc = K - k0 < KC ? K - k0 : KC;
			_Pragma("GCC unroll 4")
			for (int r = 0; r < nr; r++) {
				const uint8_t *src = (const uint8_t *)w + (size_t)(n + r) * rb +
						     duet_row_bytes(t, k0);
				if (t == DUET_F16)
					cvt_f16(src, tile + r * KC, kc);
				else
					cvt_q8_0(src, tile + r * KC, kc);
			}
			for (int b = 0; b < B; b += NBMAX) {
				int nb = B - b < NBMAX ? B - b : NBMAX;
				tile_f32_any(tile, KC, kc, x + (size_t)b * ldx + k0, ldx,
					     y + (size_t)b * ldy + n, ldy, k0 > 0, nr, nb);
			}
		}
	}
}

#define DIRECT_CASES(fn, W, STRIDE)                                               \
	switch (nr * 8 + B) {                                                     \
	case 4 * 8 + 1: fn(W, STRIDE, K, x, ldx, yo, ldy, 4, 1); break;           \
	case 4 * 8 + 2: fn(W, STRIDE, K, x, ldx, yo, ldy, 4, 2); break;           \
	case 4 * 8 + 3: fn(W, STRIDE, K, x, ldx, yo, ldy, 4, 3); break;           \
	case 4 * 8 + 4: fn(W, STRIDE, K, x, ldx, yo, ldy, 4, 4); break;           \
	default:                                                                  \
		for (int r = 0; r < nr; r++)                                      \
			switch (B) {                                              \
			case 1: fn(W + r * (STRIDE), STRIDE, K, x, ldx, yo + r, ldy, 1, 1); break; \
			case 2: fn(W + r * (STRIDE), STRIDE, K, x, ldx, yo + r, ldy, 1, 2); break; \
			case 3: fn(W + r * (STRIDE), STRIDE, K, x, ldx, yo + r, ldy, 1, 3); break; \
			default: fn(W + r * (STRIDE), STRIDE, K, x, ldx, yo + r, ldy, 1, 4); break; \
			}                                                         \
	}

static void matmul_f16(const void *w, size_t rb, int K, const float *x, int ldx,
		       int B, float *y, int ldy, int n0, int n1)
{
	if (B > NBMAX) {
		matmul_converted(DUET_F16, w, rb, K, x, ldx, B, y, ldy, n0, n1);
		return;
	}
	size_t rs = rb / 2;
	for (int n = n0; n < n1; n += NR) {
		int nr = n1 - n < NR ? n1 - n : NR;
		const uint16_t *wr = (const uint16_t *)w + (size_t)n * rs;
		float *yo = y + n;
		DIRECT_CASES(tile_f16, wr, rs)
	}
}

static void matmul_q8_0(const void *w, size_t rb, int K, const float *x, int ldx,
			int B, float *y, int ldy, int n0, int n1)
{
	if (B > NBMAX) {
		matmul_converted(DUET_Q8_0, w, rb, K, x, ldx, B, y, ldy, n0, n1);
		return;
	}
	for (int n = n0; n < n1; n += NR) {
		int nr = n1 - n < NR ? n1 - n : NR;
		const uint8_t *wr = (const uint8_t *)w + (size_t)n * rb;
		float *yo = y + n;
		DIRECT_CASES(tile_q8, wr, rb)
	}
}

/* ---- elementwise ---- */

/* exp(x) by range reduction to r in [-ln2/2, ln2/2] and Cephes' degree-6
 * polynomial (about 1 ulp); scalef applies 2^n without overflow tricks. */
INLINE __m512 exp512(__m512 x)
{
	x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f)),
			  _mm512_set1_ps(-103.0f));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
	__m512 p = _mm512_set1_ps(1.9875691500e-4f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
	p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
	p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(p, n);
}

static float dot(const float *a, const float *b, int n)
{
	__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
	int i = 0;
	for (; i + 32 <= n; i += 32) {
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
		s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
	}
	for (; i < n; i += 16) {
		__mmask16 m = n - i >= 16 ? 0xffff : tail_mask(n - i);
		s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void axpy(float a, const float *x, float *y, int n)
{
	__m512 av = _mm512_set1_ps(a);
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
	if (i < n) {
		__mmask16 m = tail_mask(n - i);
		__m512 r = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
		_mm512_mask_storeu_ps(y + i, m, r);
	}
}

static void softmax(float *x, int n)
{
	__m512 mv = _mm512_set1_ps(-INFINITY);
	int i = 0;
	for (; i + 16 <= n; i += 16)
		mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + i));
	float mx = _mm512_reduce_max_ps(mv);
	for (int j = i; j < n; j++)
		mx = x[j] > mx ? x[j] : mx;
	__m512 mb = _mm512_set1_ps(mx), sv = _mm512_setzero_ps();
	for (i = 0; i + 16 <= n; i += 16) {
		__m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mb));
		_mm512_storeu_ps(x + i, e);
		sv = _mm512_add_ps(sv, e);
	}
	if (i < n) {
		__mmask16 m = tail_mask(n - i);
		__m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mb));
		e = _mm512_maskz_mov_ps(m, e);
		_mm512_mask_storeu_ps(x + i, m, e);
		sv = _mm512_add_ps(sv, e);
	}
	__m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sv));
	for (i = 0; i + 16 <= n; i += 16)
		_mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
	if (i < n) {
		__mmask16 m = tail_mask(n - i);
		_mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
	}
}

INLINE __m512 silu_mul_v(__m512 g, __m512 u)
{
	__m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
	return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

static void silu_mul(float *g, const float *u, int n)
{
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(g + i, silu_mul_v(_mm512_loadu_ps(g + i), _mm512_loadu_ps(u + i)));
	if (i < n) {
		__mmask16 m = tail_mask(n - i);
		_mm512_mask_storeu_ps(g + i, m, silu_mul_v(_mm512_maskz_loadu_ps(m, g + i),
							   _mm512_maskz_loadu_ps(m, u + i)));
	}
}

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
	float r = 1.0f / sqrtf(dot(x, x, n) / (float)n + eps);
	__m512 rv = _mm512_set1_ps(r);
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), rv),
							_mm512_loadu_ps(w + i)));
	for (; i < n; i++)
		out[i] = x[i] * r * w[i];
}

const struct duet_kernels duet_kernels_avx512 = {
	.name = "avx512",
	.matmul_f32 = matmul_f32,
	.matmul_f16 = matmul_f16,
	.matmul_q8_0 = matmul_q8_0,
	.cvt_f16 = cvt_f16,
	.cvt_q8_0 = cvt_q8_0,
	.dot = dot,
	.axpy = axpy,
	.softmax = softmax,
	.silu_mul = silu_mul,
	.rmsnorm = rmsnorm,
};
