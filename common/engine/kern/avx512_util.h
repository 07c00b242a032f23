/* What the AVX-512 kernel files share: small inline helpers (built with
 * the same -mavx512* flags as the files that include this). */
#ifndef DUET_AVX512_UTIL_H
#define DUET_AVX512_UTIL_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define INLINE static inline __attribute__((always_inline))
#define PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
/* Row blocks ahead that packing on the fly prefetches its 16 streams. */
#define PACK_AHEAD 8

INLINE __mmask16 tail_mask(int r)
{
	return (__mmask16)(r >= 16 ? 0xffff : (1u << r) - 1);
}

INLINE __m512 load_h(const uint16_t *p)
{
	return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

/* 16 bytes of 16 rows (row r's at p + r * rb) as four vectors, vector j
 * lane r dword j of row r: rows r, r + 4, r + 8, r + 12 share a register,
 * then a 4 x 4 dword transpose in every 128-bit lane. */
INLINE void transpose_16x16(const uint8_t *p, size_t rb, __m512i out[4])
{
	__m512i z[4], t[4];
	_Pragma("GCC unroll 4")
	for (int k = 0; k < 4; k++) {
		__m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + (size_t)k * rb)));
		v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + (size_t)(k + 4) * rb)), 1);
		v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + (size_t)(k + 8) * rb)), 2);
		z[k] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + (size_t)(k + 12) * rb)), 3);
	}
	t[0] = _mm512_unpacklo_epi32(z[0], z[1]);
	t[1] = _mm512_unpackhi_epi32(z[0], z[1]);
	t[2] = _mm512_unpacklo_epi32(z[2], z[3]);
	t[3] = _mm512_unpackhi_epi32(z[2], z[3]);
	out[0] = _mm512_unpacklo_epi64(t[0], t[2]);
	out[1] = _mm512_unpackhi_epi64(t[0], t[2]);
	out[2] = _mm512_unpacklo_epi64(t[1], t[3]);
	out[3] = _mm512_unpackhi_epi64(t[1], t[3]);
}

/* Lane i of the result: the sum of v[i]'s 16 lanes (a transpose folded
 * into a tree of adds: 37 instructions against transpose16's 64). */
INLINE __m512 hsum16(const __m512 v[16])
{
	__m512 x[8], y[4], z[2];
	_Pragma("GCC unroll 8")
	for (int i = 0; i < 8; i++) /* lane L: v[2i] and v[2i+1], two partial sums each */
		x[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
				     _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
	_Pragma("GCC unroll 4")
	for (int i = 0; i < 4; i++) /* lane L: v[4i .. 4i+3], one partial sum each */
		y[i] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0x44),
				     _mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0xee));
	_Pragma("GCC unroll 2")
	for (int i = 0; i < 2; i++) /* lanes 0-1: v[8i .. 8i+3], 2-3: v[8i+4 .. 8i+7] */
		z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0x88),
				     _mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0xdd));
	return _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x88),
			     _mm512_shuffle_f32x4(z[0], z[1], 0xdd));
}

/* One block's exact integer sums (a lane per weight row) into the
 * accumulators as the integer kernels' definition has it: acc +
 * float(sum) x (the rows' weight scales ws x the activations' scale d). */
INLINE __m512 acc_block(__m512 acc, __m512i sum, __m512 ws, float d)
{
	return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(ws, _mm512_set1_ps(d)), acc);
}

#endif
