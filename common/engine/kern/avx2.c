/* AVX2 + FMA + F16C kernels, for CPUs without AVX-512. Built with -mavx2
 * -mfma -mf16c; only called when the CPU has them. Same structure as the
 * AVX-512 file with 8-wide vectors and a smaller register tile. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "engine/kern/kernels.h"

#define INLINE static inline __attribute__((always_inline))
/* 4 x 2 accumulators + 2 activations + 1 weight (+ 4 scales for q8_0)
 * fit the 16 ymm registers. */
#define NR 4
#define NBMAX 2
#define KC 1024

INLINE float hsum(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

INLINE void tile_f32(const float *w, size_t rs, int K, const float *x, int ldx,
		     float *y, int ldy, int accumulate, const int nr, const int nb)
{
	__m256 acc[NR][NBMAX];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			acc[r][b] = _mm256_setzero_ps();
	int k = 0;
	for (; k + 8 <= K; k += 8) {
		__m256 xv[NBMAX];
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			xv[b] = _mm256_loadu_ps(x + (size_t)b * ldx + k);
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			__m256 wv = _mm256_loadu_ps(w + r * rs + k);
			_Pragma("GCC unroll 4")
			for (int b = 0; b < nb; b++)
				acc[r][b] = _mm256_fmadd_ps(wv, xv[b], acc[r][b]);
		}
	}
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++) {
			float s = hsum(acc[r][b]);
			for (int kk = k; kk < K; kk++)
				s += w[r * rs + kk] * x[(size_t)b * ldx + kk];
			float *o = y + (size_t)b * ldy + r;
			*o = accumulate ? *o + s : s;
		}
}

static void tile_f32_any(const float *w, size_t rs, int K, const float *x, int ldx,
			 float *y, int ldy, int accumulate, int nr, int nb)
{
	if (nr == 4 && nb == 2)
		tile_f32(w, rs, K, x, ldx, y, ldy, accumulate, 4, 2);
	else if (nr == 4 && nb == 1)
		tile_f32(w, rs, K, x, ldx, y, ldy, accumulate, 4, 1);
	else
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			if (nb == 2)
				tile_f32(w + r * rs, rs, K, x, ldx, y + r, ldy, accumulate, 1, 2);
			else
				tile_f32(w + r * rs, rs, K, x, ldx, y + r, ldy, accumulate, 1, 1);
		}
}

static void matmul_f32(const void *wv, size_t rb, int K, const float *x, int ldx,
		       int B, float *y, int ldy, int n0, int n1)
{
	const float *w = wv;
	size_t rs = rb / sizeof(float);
	for (int n = n0; n < n1; n += NR) {
		int nr = n1 - n < NR ? n1 - n : NR;
		for (int b = 0; b < B; b += NBMAX) {
			int nb = B - b < NBMAX ? B - b : NBMAX;
			tile_f32_any(w + (size_t)n * rs, rs, K, x + (size_t)b * ldx, ldx,
				     y + (size_t)b * ldy + n, ldy, 0, nr, nb);
		}
	}
}

/* ---- f16 ---- */

INLINE __m256 load_h(const uint16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static void cvt_f16(const void *src, float *dst, int n)
{
	const uint16_t *h = src;
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, load_h(h + i));
	for (; i < n; i++)
		dst[i] = _cvtsh_ss(h[i]);
}

INLINE void tile_f16(const uint16_t *w, size_t rs, int K, const float *x, int ldx,
		     float *y, int ldy, const int nr, const int nb)
{
	__m256 acc[NR][NBMAX];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			acc[r][b] = _mm256_setzero_ps();
	int k = 0;
	for (; k + 8 <= K; k += 8) {
		__m256 xv[NBMAX];
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			xv[b] = _mm256_loadu_ps(x + (size_t)b * ldx + k);
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			__m256 wv = load_h(w + r * rs + k);
			_Pragma("GCC unroll 4")
			for (int b = 0; b < nb; b++)
				acc[r][b] = _mm256_fmadd_ps(wv, xv[b], acc[r][b]);
		}
	}
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++) {
			float s = hsum(acc[r][b]);
			for (int kk = k; kk < K; kk++)
				s += _cvtsh_ss(w[r * rs + kk]) * x[(size_t)b * ldx + kk];
			y[(size_t)b * ldy + r] = s;
		}
}

/* ---- q8_0 ---- */

INLINE __m256 q8_group(const uint8_t *blk, int j, __m256 d)
{
	__m128i q = _mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * j));
	return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
}

INLINE __m256 q8_scale(const uint8_t *blk)
{
	uint16_t h;
	memcpy(&h, blk, 2);
	return _mm256_set1_ps(_cvtsh_ss(h));
}

static void cvt_q8_0(const void *src, float *dst, int n)
{
	const uint8_t *p = src;
	for (int k = 0; k < n; k += DUET_Q8_0_BLOCK, p += DUET_Q8_0_BYTES) {
		__m256 d = q8_scale(p);
		for (int j = 0; j < 4; j++)
			_mm256_storeu_ps(dst + k + 8 * j, q8_group(p, j, d));
	}
}

INLINE void tile_q8(const uint8_t *w, size_t rb, int K, const float *x, int ldx,
		    float *y, int ldy, const int nr, const int nb)
{
	__m256 acc[NR][NBMAX];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			acc[r][b] = _mm256_setzero_ps();
	for (int k = 0, blk = 0; k < K; k += DUET_Q8_0_BLOCK, blk++) {
		__m256 d[NR];
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++)
			d[r] = q8_scale(w + r * rb + (size_t)blk * DUET_Q8_0_BYTES);
		for (int j = 0; j < 4; j++) {
			__m256 xv[NBMAX];
			_Pragma("GCC unroll 4")
			for (int b = 0; b < nb; b++)
				xv[b] = _mm256_loadu_ps(x + (size_t)b * ldx + k + 8 * j);
			_Pragma("GCC unroll 4")
			for (int r = 0; r < nr; r++) {
				__m256 wv = q8_group(w + r * rb + (size_t)blk * DUET_Q8_0_BYTES, j, d[r]);
				_Pragma("GCC unroll 4")
				for (int b = 0; b < nb; b++)
					acc[r][b] = _mm256_fmadd_ps(wv, xv[b], acc[r][b]);
			}
		}
	}
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			y[(size_t)b * ldy + r] = hsum(acc[r][b]);
}

static void matmul_converted(enum duet_dtype t, const void *w, size_t rb, int K,
			     const float *x, int ldx, int B, float *y, int ldy,
			     int n0, int n1)
{
	float tile[NR * KC] __attribute__((aligned(32)));
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

#define DIRECT(fn, W, STRIDE)                                                     \
	do {                                                                      \
		if (nr == 4 && B == 2)                                            \
			fn(W, STRIDE, K, x, ldx, yo, ldy, 4, 2);                  \
		else if (nr == 4 && B == 1)                                       \
			fn(W, STRIDE, K, x, ldx, yo, ldy, 4, 1);                  \
		else                                                              \
			for (int r = 0; r < nr; r++) {                            \
				if (B == 2)                                       \
					fn(W + r * (STRIDE), STRIDE, K, x, ldx, yo + r, ldy, 1, 2); \
				else                                              \
					fn(W + r * (STRIDE), STRIDE, K, x, ldx, yo + r, ldy, 1, 1); \
			}                                                         \
	} while (0)

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
		DIRECT(tile_f16, wr, rs);
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
		DIRECT(tile_q8, wr, rb);
	}
}

/* ---- elementwise ---- */

/* Same reduction and polynomial as the AVX-512 exp; 2^n is built in the
 * exponent field, which the clamp keeps in range. */
INLINE __m256 exp256(__m256 x)
{
	x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)),
			  _mm256_set1_ps(-87.3365447504f));
	__m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
				   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
	__m256 p = _mm256_set1_ps(1.9875691500e-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
	p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
	p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static float dot(const float *a, const float *b, int n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
	}
	float s = hsum(_mm256_add_ps(s0, s1));
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

static void axpy(float a, const float *x, float *y, int n)
{
	__m256 av = _mm256_set1_ps(a);
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
	for (; i < n; i++)
		y[i] += a * x[i];
}

static void softmax(float *x, int n)
{
	float mx = x[0];
	for (int i = 1; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	__m256 mb = _mm256_set1_ps(mx), sv = _mm256_setzero_ps();
	int i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mb));
		_mm256_storeu_ps(x + i, e);
		sv = _mm256_add_ps(sv, e);
	}
	float s = hsum(sv);
	for (; i < n; i++) {
		x[i] = expf(x[i] - mx);
		s += x[i];
	}
	float inv = 1.0f / s;
	__m256 iv = _mm256_set1_ps(inv);
	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
	for (; i < n; i++)
		x[i] *= inv;
}

static void silu_mul(float *g, const float *u, int n)
{
	int i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 gv = _mm256_loadu_ps(g + i);
		__m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv));
		__m256 s = _mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
		_mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
	}
	for (; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
	float r = 1.0f / sqrtf(dot(x, x, n) / (float)n + eps);
	__m256 rv = _mm256_set1_ps(r);
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), rv),
							_mm256_loadu_ps(w + i)));
	for (; i < n; i++)
		out[i] = x[i] * r * w[i];
}

const struct duet_kernels duet_kernels_avx2 = {
	.name = "avx2",
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
