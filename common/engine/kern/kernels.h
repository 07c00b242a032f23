/* Compute kernels, one table per instruction set (scalar, AVX2, AVX-512),
 * chosen once at run time from the CPU. The scalar table is the portable
 * fallback and the yardstick the others are tested against. */
#ifndef DUET_KERNELS_H
#define DUET_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/dtype.h"

/* y[b*ldy + n] = sum_k W[n][k] * x[b*ldx + k] for rows n in [n0, n1) and
 * b in [0, B): each weight row, stored in its own type, is read once for
 * all B activation rows (batched decode reads the weights once per step). */
typedef void (*duet_matmul_fn)(const void *w, size_t row_bytes, int K,
			       const float *x, int ldx, int B, float *y, int ldy,
			       int n0, int n1);

struct duet_kernels {
	const char *name;
	duet_matmul_fn matmul_f32, matmul_f16, matmul_q8_0;
	/* Row of n elements to f32 (prefill converts weight tiles). */
	void (*cvt_f16)(const void *src, float *dst, int n);
	void (*cvt_q8_0)(const void *src, float *dst, int n);
	float (*dot)(const float *a, const float *b, int n);
	void (*axpy)(float a, const float *x, float *y, int n); /* y += a x */
	/* x = softmax(x) over n entries. */
	void (*softmax)(float *x, int n);
	/* g = silu(g) * u, SwiGLU's gate. */
	void (*silu_mul)(float *g, const float *u, int n);
	/* out = x / rms(x) * w. */
	void (*rmsnorm)(float *out, const float *x, const float *w, int n, float eps);
};

extern const struct duet_kernels duet_kernels_scalar;
extern const struct duet_kernels duet_kernels_avx2;
extern const struct duet_kernels duet_kernels_avx512;

/* Best table for this CPU; DUET_KERNELS=scalar|avx2|avx512 overrides (a
 * table the CPU cannot run is refused and the best one used instead). */
const struct duet_kernels *duet_kernels(void);
/* A table by name if this CPU can run it, else NULL (tests compare ISAs). */
const struct duet_kernels *duet_kernels_named(const char *name);

duet_matmul_fn duet_kernels_matmul(const struct duet_kernels *k, enum duet_dtype t);
/* Converts one row of any type to f32 with the table's kernels. */
void duet_kernels_cvt(const struct duet_kernels *k, enum duet_dtype t,
		      const void *src, float *dst, int n);

#endif
