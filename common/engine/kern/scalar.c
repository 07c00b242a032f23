/* Portable kernels: plain loops, also the reference for the SIMD ones. */
#include <math.h>
#include <string.h>

#include "engine/kern/kernels.h"

static void matmul_any(enum duet_dtype t, const void *w, size_t row_bytes, int K,
		       const float *x, int ldx, int B, float *y, int ldy, int n0, int n1)
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
				const float *xb = x + (size_t)b * ldx + k0;
				float s = 0;
				for (int k = 0; k < kc; k++)
					s += row[k] * xb[k];
				y[(size_t)b * ldy + n] += s;
			}
		}
	}
}

static void matmul_f32(const void *w, size_t rb, int K, const float *x, int ldx,
		       int B, float *y, int ldy, int n0, int n1)
{
	matmul_any(DUET_F32, w, rb, K, x, ldx, B, y, ldy, n0, n1);
}

static void matmul_f16(const void *w, size_t rb, int K, const float *x, int ldx,
		       int B, float *y, int ldy, int n0, int n1)
{
	matmul_any(DUET_F16, w, rb, K, x, ldx, B, y, ldy, n0, n1);
}

static void matmul_q8_0(const void *w, size_t rb, int K, const float *x, int ldx,
			int B, float *y, int ldy, int n0, int n1)
{
	matmul_any(DUET_Q8_0, w, rb, K, x, ldx, B, y, ldy, n0, n1);
}

static void cvt_f16(const void *src, float *dst, int n)
{
	duet_dequant_row(DUET_F16, src, dst, n);
}

static void cvt_q8_0(const void *src, float *dst, int n)
{
	duet_dequant_row(DUET_Q8_0, src, dst, n);
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

static void softmax(float *x, int n)
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
