/* The AVX-512 table's kernels for F16, F32 and BF16 in 16-row groups
 * (kern/avx512_groups.c), by the signatures of kernels.h. */
#ifndef DUET_AVX512_GROUPS_H
#define DUET_AVX512_GROUPS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/kern/kernels.h"

void duet_avx512_f16_r16(const uint8_t *g, int nblk, const void *x, int B, int nb, float *y,
			 int ldy, int nrows, int add, int far);
void duet_avx512_f32_r16(const uint8_t *g, int nblk, const void *x, int B, int nb, float *y,
			 int ldy, int nrows, int add, int far);
void duet_avx512_f16_r16n(const uint8_t *g, size_t gs, int ngroups, int nblk, const void *x,
			  int B, int nb, float *y, int ldy, int add, int far);
void duet_avx512_f32_r16n(const uint8_t *g, size_t gs, int ngroups, int nblk, const void *x,
			  int B, int nb, float *y, int ldy, int add, int far);
void duet_avx512_f16_r16x4(const uint8_t *const q[DUET_R16_STREAMS], int nblk, const void *x,
			   float *const y[DUET_R16_STREAMS], int add, int far);
void duet_avx512_f32_r16x4(const uint8_t *const q[DUET_R16_STREAMS], int nblk, const void *x,
			   float *const y[DUET_R16_STREAMS], int add, int far);
void duet_avx512_pack_f16_r16(const uint8_t *rows, size_t rb, int nrows, int i0, int n,
			      uint8_t *out);
void duet_avx512_pack_f32_r16(const uint8_t *rows, size_t rb, int nrows, int i0, int n,
			      uint8_t *out);
void duet_avx512_bf16_r16(const uint8_t *g, int nblk, const void *x, int B, int nb, float *y,
			  int ldy, int nrows, int add, int far);
void duet_avx512_bf16_r16n(const uint8_t *g, size_t gs, int ngroups, int nblk, const void *x,
			   int B, int nb, float *y, int ldy, int add, int far);
void duet_avx512_bf16_r16x4(const uint8_t *const q[DUET_R16_STREAMS], int nblk, const void *x,
			    float *const y[DUET_R16_STREAMS], int add, int far);
void duet_avx512_pack_bf16_r16(const uint8_t *rows, size_t rb, int nrows, int i0, int n,
			       uint8_t *out);

#endif
