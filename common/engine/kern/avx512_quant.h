/* The AVX-512 table's kernels for the quantized types in 16-row groups
 * (kern/avx512_quant.c), by the signatures of kernels.h. */
#ifndef DUET_AVX512_QUANT_H
#define DUET_AVX512_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/kern/kernels.h"

#define DUET_AVX512_R16(t)                                                                  \
	void duet_avx512_##t##_r16(const uint8_t *g, int nblk, const void *x, int B, int nb, \
				   float *y, int ldy, int nrows, int add, int far);          \
	void duet_avx512_pack_##t##_r16(const uint8_t *rows, size_t rb, int nrows, int i0, int n, \
					uint8_t *out);
#define DUET_AVX512_R16X4(t)                                                                \
	void duet_avx512_##t##_r16x4(const uint8_t *const q[DUET_R16_STREAMS], int nblk,    \
				     const void *x, float *const y[DUET_R16_STREAMS], int add, \
				     int far);
DUET_AVX512_R16(q8_0)
DUET_AVX512_R16(q4_0)
DUET_AVX512_R16(q4_1)
DUET_AVX512_R16(q5_0)
DUET_AVX512_R16(q5_1)
DUET_AVX512_R16(q4_k)
DUET_AVX512_R16(q5_k)
DUET_AVX512_R16(q6_k)
DUET_AVX512_R16X4(q8_0)
DUET_AVX512_R16X4(q4_0)
DUET_AVX512_R16X4(q4_1)
DUET_AVX512_R16X4(q5_0)
DUET_AVX512_R16X4(q5_1)
#undef DUET_AVX512_R16
#undef DUET_AVX512_R16X4

#endif
