/* AVX2 + FMA + F16C kernels, for CPUs without AVX-512. Built with -mavx2
 * -mfma -mf16c; only called when the CPU has them. Same structure as the
 * AVX-512 file with 8-wide vectors and a smaller register tile.
 *
 * Built a second time with DUET_AVXVNNI (kern/avxvnni.c, -mavxvnni) for
 * CPUs with AVX-VNNI and no AVX-512 (Intel client cores from Alder Lake):
 * the integer dot products below then take vpdpbusd / vpdpwssd on 256-bit
 * vectors, one instruction where AVX2 takes two or three. The sums are the
 * same integers (maddubs's 16-bit pair sums never saturate on the values
 * these kernels feed it), so both tables give the same bits. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "base/half.h"
#include "engine/kern/kernels.h"

#define INLINE static inline __attribute__((always_inline))

#ifdef DUET_AVXVNNI
#define TABLE duet_kernels_avxvnni
#define TABLE_NAME "avxvnni"
#else
#define TABLE duet_kernels_avx2
#define TABLE_NAME "avx2"
#endif

/* acc + the dot products of unsigned bytes u with signed bytes v, four
 * to a 32-bit lane. */
INLINE __m256i dot_u8s8(__m256i acc, __m256i u, __m256i v)
{
#ifdef DUET_AVXVNNI
	return _mm256_dpbusd_avx_epi32(acc, u, v);
#else
	return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, v), _mm256_set1_epi16(1)));
#endif
}

/* acc + the products of 16-bit lanes, two to a 32-bit lane. */
INLINE __m256i dot_s16(__m256i acc, __m256i a, __m256i b)
{
#ifdef DUET_AVXVNNI
	return _mm256_dpwssd_avx_epi32(acc, a, b);
#else
	return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}
/* Tiles of NR weight rows by NB activation rows, NR x NB <= 8 accumulators
 * (16 ymm registers): 4 x 1-2, 2 x 3-4, 1 x 5-8; the AVX-512 file has the
 * full story. */
#define MAX_NB 8

INLINE float hsum(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

INLINE __m256 load_h(const uint16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

INLINE __m256 load_bf(const uint16_t *p)
{
	__m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
	return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

INLINE __m256 q8_scale(const uint8_t *blk)
{
	uint16_t h;
	memcpy(&h, blk, 2);
	return _mm256_set1_ps(_cvtsh_ss(h));
}

INLINE __m256 q8_group(const uint8_t *blk, int j, __m256 d)
{
	__m128i q = _mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * j));
	return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
}

/* A tile's nr x nb accumulators, cleared; and their sums into y (row r
 * of sequence b at y[b * ldy + r * ys]). */
INLINE void acc_zero(__m256 acc[4][MAX_NB], const int nr, const int nb)
{
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 8")
		for (int b = 0; b < nb; b++)
			acc[r][b] = _mm256_setzero_ps();
}

INLINE void acc_store(__m256 acc[4][MAX_NB], float *y, int ldy, int ys, const int nr,
		      const int nb)
{
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 8")
		for (int b = 0; b < nb; b++)
			y[(size_t)b * ldy + (size_t)r * ys] = hsum(acc[r][b]);
}

/* Weights [k, k + 16) of a row as two 8-float vectors (k + 16 <= K). */
INLINE void load16(enum duet_dtype t, const void *row, int k, __m256 *a, __m256 *b)
{
	switch (t) {
	case DUET_F32:
		*a = _mm256_loadu_ps((const float *)row + k);
		*b = _mm256_loadu_ps((const float *)row + k + 8);
		break;
	case DUET_F16:
		*a = load_h((const uint16_t *)row + k);
		*b = load_h((const uint16_t *)row + k + 8);
		break;
	case DUET_BF16:
		*a = load_bf((const uint16_t *)row + k);
		*b = load_bf((const uint16_t *)row + k + 8);
		break;
	case DUET_Q8_0: {
		const uint8_t *blk = (const uint8_t *)row + (size_t)(k / DUET_Q8_0_BLOCK) * DUET_Q8_0_BYTES;
		__m256 d = q8_scale(blk);
		int j = (k % DUET_Q8_0_BLOCK) / 8;
		*a = q8_group(blk, j, d);
		*b = q8_group(blk, j + 1, d);
		break;
	}
	default: /* instantiated for the four types above only */
		*a = *b = _mm256_setzero_ps();
		break;
	}
}

INLINE float weight_at(enum duet_dtype t, const void *row, int k)
{
	switch (t) {
	case DUET_F32:
		return ((const float *)row)[k];
	case DUET_F16:
		return _cvtsh_ss(((const uint16_t *)row)[k]);
	case DUET_BF16:
		return duet_bf16_to_fp32(((const uint16_t *)row)[k]);
	default:
		break; /* q8_0 rows are whole blocks: no tail */
	}
	return 0;
}

/* x: the tile's first row in an f32 panel of B rows (kernels.h). */
INLINE void tile_f(enum duet_dtype t, const uint8_t *w, size_t rb, int K, const float *x,
		   int B, float *y, int ldy, int ys, const int nr, const int nb)
{
	__m256 acc[4][MAX_NB];
	acc_zero(acc, nr, nb);
	const size_t cs = (size_t)B * DUET_PANEL_CHUNK;
	int k = 0;
	for (; k + 16 <= K; k += 16, x += cs) {
		__m256 wv[4][2];
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++)
			load16(t, w + (size_t)r * rb, k, &wv[r][0], &wv[r][1]);
		_Pragma("GCC unroll 8")
		for (int b = 0; b < nb; b++) {
			__m256 x0 = _mm256_loadu_ps(x + b * DUET_PANEL_CHUNK);
			__m256 x1 = _mm256_loadu_ps(x + b * DUET_PANEL_CHUNK + 8);
			_Pragma("GCC unroll 4")
			for (int r = 0; r < nr; r++) {
				acc[r][b] = _mm256_fmadd_ps(wv[r][0], x0, acc[r][b]);
				acc[r][b] = _mm256_fmadd_ps(wv[r][1], x1, acc[r][b]);
			}
		}
	}
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 8")
		for (int b = 0; b < nb; b++) {
			float s = hsum(acc[r][b]);
			for (int kk = k; kk < K; kk++)
				s += weight_at(t, w + (size_t)r * rb, kk) *
				     x[b * DUET_PANEL_CHUNK + kk - k];
			y[(size_t)b * ldy + (size_t)r * ys] = s;
		}
}

/* q8_0 weights against int8 activations, a block at a time: |w| times x
 * with w's sign (maddubs keeps the pair sums within 16 bits that way),
 * summed to 32 bits by madd. x: the tile's first row in a q8 panel. */
INLINE void tile_q8(const uint8_t *w, size_t rb, int K, const struct duet_q8a_pair *x,
		    int B, float *y, int ldy, int ys, const int nr, const int nb)
{
	__m256 acc[4][MAX_NB];
	acc_zero(acc, nr, nb);
	for (int i = 0; i < K / DUET_Q8_0_BLOCK; i++) {
		const struct duet_q8a_pair *xp = x + (size_t)(i / 2) * B;
		int h = i % 2;
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			const uint8_t *blk = w + (size_t)r * rb + (size_t)i * DUET_Q8_0_BYTES;
			__m256i q = _mm256_loadu_si256((const __m256i *)(blk + 2));
			__m256i aq = _mm256_sign_epi8(q, q);
			__m256 d = q8_scale(blk);
			_Pragma("GCC unroll 8")
			for (int b = 0; b < nb; b++) {
				const struct duet_q8a_pair *a = xp + b;
				__m256i xq = _mm256_loadu_si256((const __m256i *)(a->q + 32 * h));
				__m256i dp = dot_u8s8(_mm256_setzero_si256(), aq,
						      _mm256_sign_epi8(xq, q));
				acc[r][b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp),
							    _mm256_mul_ps(d, _mm256_loadu_ps(a->d + 8 * h)),
							    acc[r][b]);
			}
		}
	}
	acc_store(acc, y, ldy, ys, nr, nb);
}

/* ---- other quantized weights against int8 activations ----
 * As the AVX-512 file's row kernels (step_q4_k there): a block's weights
 * unpacked to unsigned bytes, maddubs against the activations' signed
 * bytes (the pair sums stay within 16 bits: values at most 63 against at
 * most 128 in magnitude), madd against the sub-blocks' integer scales (or
 * ones) into 32 bits, so that a K-quant super-block adds up in integers
 * and meets floats once. A tile's rows are unpacked one at a time and
 * used by every sequence. x: block 0 of the tile's first sequence. */

INLINE __m256i lo_nibbles(__m256i v)
{
	return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

INLINE __m256i hi_nibbles(__m256i v)
{
	return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F));
}

/* Bits s.. of each byte (below 8 - s), masked by m, at bit 4 and up. */
INLINE __m256i bits_at4(__m256i v, int s, char m)
{
	return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(v, s), _mm256_set1_epi8(m)), 4);
}

/* The 32 bits of a Q5_0 block's qh as bytes: byte i 0x10 where bit i is set. */
INLINE __m256i fifth_bits(const uint8_t *qh)
{
	uint32_t h;
	memcpy(&h, qh, 4);
	const __m256i byte_of = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
						 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
	__m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), byte_of);
	v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
	return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* The 32-value types of a 16-bit d and 16 bytes of nibbles: Q4_0 (values
 * q - 8), Q5_0 (the nibble and a fifth bit from qh, less 16), Q4_1 and Q5_1
 * (d x q + m). Q4_0's and Q5_0's offsets start the dot product, from the
 * pair's corr (-128 x the activations' sum, kernels.h); the _1 types' min
 * meets that sum in floats, in the accumulator's first lane. */
INLINE void tile_q32(const enum duet_dtype T, const uint8_t *w, size_t rb, int K,
		     const struct duet_q8a_pair *x, int B, float *y, int ldy, int ys, const int nr,
		     const int nb)
{
	const int has_min = T == DUET_Q4_1 || T == DUET_Q5_1, five = T == DUET_Q5_0 || T == DUET_Q5_1;
	const size_t bb = duet_dtype_block_bytes(T), qh_off = has_min ? 4 : 2, qs_off = qh_off + (five ? 4 : 0);
	/* corr / div is the offset's share: -8 or -16 x the sum */
	const int div = T == DUET_Q4_0 ? 16 : 8;
	__m256 acc[4][MAX_NB];
	acc_zero(acc, nr, nb);
	for (int i = 0; i < K / 32; i++) {
		const struct duet_q8a_pair *xp = x + (size_t)(i / 2) * B;
		int h = i % 2;
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			const uint8_t *blk = w + (size_t)r * rb + (size_t)i * bb;
			__m128i q = _mm_loadu_si128((const __m128i *)(blk + qs_off));
			__m256i v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F)),
						     _mm_and_si128(q, _mm_set1_epi8(0x0F)));
			if (five)
				v = _mm256_or_si256(v, fifth_bits(blk + qh_off));
			__m256 d = q8_scale(blk);
			float m = 0;
			if (has_min) {
				uint16_t mh;
				memcpy(&mh, blk + 2, 2);
				m = _cvtsh_ss(mh);
			}
			_Pragma("GCC unroll 8")
			for (int b = 0; b < nb; b++) {
				const struct duet_q8a_pair *a = xp + b;
				__m256i xq = _mm256_loadu_si256((const __m256i *)(a->q + 32 * h));
				int32_t off = has_min ? 0 : a->corr[8 * h] / div;
				__m256i dp = dot_u8s8(_mm256_setr_epi32(off, 0, 0, 0, 0, 0, 0, 0), v, xq);
				__m256 xd = _mm256_loadu_ps(a->d + 8 * h);
				acc[r][b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_mul_ps(d, xd),
							    acc[r][b]);
				if (has_min)
					acc[r][b] = _mm256_add_ps(
						acc[r][b],
						_mm256_setr_ps(m * a->d[8 * h] * (float)(a->corr[8 * h] / -128),
							       0, 0, 0, 0, 0, 0, 0));
			}
		}
	}
	acc_store(acc, y, ldy, ys, nr, nb);
}

/* Q4_K (five = 0) or Q5_K (five = 1) super-block of one row against nb
 * activation blocks (x[b]). Each 64-group is 32 bytes of nibbles, values
 * 0-31 low and 32-63 high; the activations are stored in that order
 * (kernels.h): group g's low nibbles meet q[128 (g / 2) + 32 (g % 2)],
 * its high ones 64 further on. */
INLINE void step_q4_k(const uint8_t *blk, const struct duet_q8k_block *x, __m256 *acc,
		      const int nb, const int five)
{
	const size_t qs_off = 4 + DUET_QK_SCALES + (five ? DUET_QK / 8 : 0);
	/* The 12 bytes of 6-bit scales and mins as dwords (duet_qk_scale_min
	 * four at a time): scales 0-3 and mins 0-3 are the low 6 bits of
	 * bytes 0-3 and 4-7; scales and mins 4-7 the nibbles of bytes 8-11
	 * under the top 2 bits of bytes 0-3 and 4-7. */
	uint32_t a, m, c;
	memcpy(&a, blk + 4, 4);
	memcpy(&m, blk + 8, 4);
	memcpy(&c, blk + 12, 4);
	const uint32_t six = 0x3f3f3f3f, low4 = 0x0f0f0f0f, two = 0x03030303;
	const uint32_t sc03 = a & six, sc47 = (c & low4) | ((a >> 6) & two) << 4;
	const uint32_t mn03 = m & six, mn47 = ((c >> 4) & low4) | ((m >> 6) & two) << 4;
	/* the scales as words in both 128-bit lanes; scale j in every word
	 * of s[j] by a byte shuffle */
	const __m256i sc16 = _mm256_broadcastsi128_si256(
		_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)((uint64_t)sc47 << 32 | sc03))));
	/* mins as word pairs (m_j, m_j) in dword j, for bsums 2j and 2j + 1 */
	const __m256i m32 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)((uint64_t)mn47 << 32 | mn03)));
	const __m256i mins = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16));
	__m256i q[8], s[8];
	__m256i qh = five ? _mm256_loadu_si256((const __m256i *)(blk + 4 + DUET_QK_SCALES))
			  : _mm256_setzero_si256();
	_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
		s[j] = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(2 * j | (2 * j + 1) << 8)));
	_Pragma("GCC unroll 4")
	for (int g = 0; g < 4; g++) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(blk + qs_off + 32 * g));
		q[2 * g] = lo_nibbles(v);
		q[2 * g + 1] = hi_nibbles(v);
		if (five) {
			/* value l of group g: bit 2g of qh[l]; value 32 + l: 2g + 1 */
			q[2 * g] = _mm256_or_si256(q[2 * g], bits_at4(qh, 2 * g, 1));
			q[2 * g + 1] = _mm256_or_si256(q[2 * g + 1], bits_at4(qh, 2 * g + 1, 1));
		}
	}
	const float d = _cvtsh_ss((uint16_t)(blk[0] | blk[1] << 8));
	const float dmin = _cvtsh_ss((uint16_t)(blk[2] | blk[3] << 8));
	_Pragma("GCC unroll 8")
	for (int b = 0; b < nb; b++) {
		const struct duet_q8k_block *ab = x + b;
		__m256i ai = _mm256_setzero_si256();
		_Pragma("GCC unroll 8")
		for (int j = 0; j < 8; j++) {
			const int g = j / 2, pos = 128 * (g / 2) + 32 * (g % 2) + 64 * (j % 2);
			__m256i p = _mm256_maddubs_epi16(q[j], _mm256_load_si256((const __m256i *)(ab->q + pos)));
			ai = dot_s16(ai, p, s[j]);
		}
		/* lane j: m_j x (bsums 2j and 2j + 1) */
		__m256i mi = dot_s16(_mm256_setzero_si256(), mins,
				     _mm256_load_si256((const __m256i *)ab->bsums));
		__m256 t = _mm256_fmsub_ps(_mm256_cvtepi32_ps(ai), _mm256_set1_ps(d),
					   _mm256_mul_ps(_mm256_cvtepi32_ps(mi), _mm256_set1_ps(dmin)));
		acc[b] = _mm256_fmadd_ps(t, _mm256_set1_ps(ab->d), acc[b]);
	}
}

/* Q6_K super-block of one row against nb activation blocks: values 6 bits
 * less 32, a signed scale per 16 values; the -32 is one madd of the
 * scales with the activations' sums per 16. In each half h, 32 values
 * per vector: values 32k.. of the half meet q[128 h + 32 (0, 2, 1, 3)[k]]
 * (the activations' order), sub-blocks 8h + 2k (low 128 bits) and 8h +
 * 2k + 1 (high). */
INLINE void step_q6_k(const uint8_t *blk, const struct duet_q8k_block *x, __m256 *acc,
		      const int nb)
{
	const uint8_t *ql = blk + offsetof(struct duet_q6_k_block, ql);
	const uint8_t *qhp = blk + offsetof(struct duet_q6_k_block, qh);
	const __m128i sc8 = _mm_loadu_si128((const __m128i *)(blk + offsetof(struct duet_q6_k_block, scales)));
	const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
	/* the even scales as words in the low 128 bits, the odd ones in the
	 * high: word m of both lanes is the pair of sub-blocks 2m, 2m + 1 */
	const __m256i eo = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(
		sc8, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
	__m256i q[8], s[8];
	_Pragma("GCC unroll 2")
	for (int h = 0; h < 2; h++) {
		__m256i l0 = _mm256_loadu_si256((const __m256i *)(ql + 64 * h));
		__m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 64 * h + 32));
		__m256i hb = _mm256_loadu_si256((const __m256i *)(qhp + 32 * h));
		/* bits 2k, 2k + 1 of qh moved to bits 4-5 (one shift of the
		 * 16-bit lanes each way, then the byte mask) */
		const __m256i m45 = _mm256_set1_epi8(0x30);
		q[4 * h] = _mm256_or_si256(lo_nibbles(l0), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m45));
		q[4 * h + 1] = _mm256_or_si256(lo_nibbles(l1), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m45));
		q[4 * h + 2] = _mm256_or_si256(hi_nibbles(l0), _mm256_and_si256(hb, m45));
		q[4 * h + 3] = _mm256_or_si256(hi_nibbles(l1), _mm256_and_si256(_mm256_srli_epi16(hb, 2), m45));
		_Pragma("GCC unroll 4")
		for (int k = 0; k < 4; k++)
			s[4 * h + k] = _mm256_shuffle_epi8(
				eo, _mm256_set1_epi16((short)(2 * (4 * h + k) | (2 * (4 * h + k) + 1) << 8)));
	}
	const float d = _cvtsh_ss((uint16_t)(blk[offsetof(struct duet_q6_k_block, d)] |
					     blk[offsetof(struct duet_q6_k_block, d) + 1] << 8));
	static const int pos_of[4] = {0, 64, 32, 96};
	_Pragma("GCC unroll 8")
	for (int b = 0; b < nb; b++) {
		const struct duet_q8k_block *a = x + b;
		__m256i off = dot_s16(_mm256_setzero_si256(), sc16,
				      _mm256_load_si256((const __m256i *)a->bsums));
		__m256i ai = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
		_Pragma("GCC unroll 8")
		for (int j = 0; j < 8; j++) {
			const int pos = 128 * (j / 4) + pos_of[j % 4];
			__m256i p = _mm256_maddubs_epi16(q[j], _mm256_load_si256((const __m256i *)(a->q + pos)));
			ai = dot_s16(ai, p, s[j]);
		}
		acc[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ai), _mm256_set1_ps(d * a->d), acc[b]);
	}
}

/* A tile of nr rows against nb sequences of a q8k panel, super-block by
 * super-block. */
INLINE void tile_kq(const enum duet_dtype t, const uint8_t *w, size_t rb, int K,
		    const struct duet_q8k_block *x, int B, float *y, int ldy, int ys, const int nr,
		    const int nb)
{
	__m256 acc[4][MAX_NB];
	acc_zero(acc, nr, nb);
	const size_t bb = duet_dtype_block_bytes(t);
	for (int i = 0; i < K / DUET_QK; i++) {
		const struct duet_q8k_block *xi = x + (size_t)i * B;
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			const uint8_t *blk = w + (size_t)r * rb + (size_t)i * bb;
			if (t == DUET_Q6_K)
				step_q6_k(blk, xi, acc[r], nb);
			else
				step_q4_k(blk, xi, acc[r], nb, t == DUET_Q5_K);
		}
	}
	acc_store(acc, y, ldy, ys, nr, nb);
}

#define NB_CASES_2(F, NR) F(NR, 1) F(NR, 2)
#define NB_CASES_4(F, NR) F(NR, 3) F(NR, 4)
#define NB_CASES_8(F, NR)                                                               \
	F(NR, 1) F(NR, 2) F(NR, 3) F(NR, 4) F(NR, 5) F(NR, 6) F(NR, 7) F(NR, 8)

/* Weight rows per tile for B activation rows. f16 and bf16 weights are
 * converted once per tile, so more activation rows per tile share that
 * work; f32 and int8 weights need no conversion, and 2 or 4 rows against
 * 2-4 activation rows ran out of the 16 ymm registers: 1-row tiles read
 * f32 weights 1.3-1.7x and Q8_0 1.7-2.5x faster at B = 2-4
 * (BENCHMARKS.md, 2026-12-04 session 3). */
INLINE int rows_for(int B)
{
	return B <= 2 ? 4 : B <= 4 ? 2 : 1;
}

INLINE int rows_for_plain(int B)
{
	return B <= 1 ? 4 : 1;
}

#define F_CASE(R, NB)                                                                   \
	case (R) * 16 + (NB):                                                           \
		tile_f(T, w, rb, K, x, B, y, ldy, ys, R, NB);                           \
		return;
#define DEFINE_TILE_F(name, TYPE)                                                       \
	static void name(const uint8_t *w, size_t rb, int K, const float *x, int B,     \
			 float *y, int ldy, int ys, int nr, int nb)                      \
	{                                                                               \
		const enum duet_dtype T = TYPE;                                         \
		switch (nr * 16 + nb) {                                                 \
			NB_CASES_2(F_CASE, 4)                                           \
			NB_CASES_4(F_CASE, 2)                                           \
			NB_CASES_8(F_CASE, 1)                                           \
		}                                                                       \
	}
DEFINE_TILE_F(tiles_f32, DUET_F32)
DEFINE_TILE_F(tiles_f16, DUET_F16)
DEFINE_TILE_F(tiles_bf16, DUET_BF16)
DEFINE_TILE_F(tiles_q8_0, DUET_Q8_0)

#define Q_CASE(R, NB)                                                                   \
	case (R) * 16 + (NB):                                                           \
		tile_q8(w, rb, K, x, B, y, ldy, ys, R, NB);                             \
		return;
static void tiles_q8(const uint8_t *w, size_t rb, int K, const struct duet_q8a_pair *x,
		     int B, float *y, int ldy, int ys, int nr, int nb)
{
	switch (nr * 16 + nb) {
		NB_CASES_2(Q_CASE, 4)
		NB_CASES_4(Q_CASE, 2)
		NB_CASES_8(Q_CASE, 1)
	}
}

/* The integer tiles of one type each (TILE, with the type T as its first
 * argument), dispatched by rows and sequences. */
#define INT_CASE(R, NB)                                                                 \
	case (R) * 16 + (NB):                                                           \
		TILE(T, w, rb, K, x, B, y, ldy, ys, R, NB);                             \
		return;
#define DEFINE_TILE_INT(name, XT, TYPE)                                                 \
	static void name(const uint8_t *w, size_t rb, int K, const XT *x, int B, float *y, \
			 int ldy, int ys, int nr, int nb)                                \
	{                                                                               \
		const enum duet_dtype T = TYPE;                                         \
		switch (nr * 16 + nb) {                                                 \
			NB_CASES_2(INT_CASE, 4)                                         \
			NB_CASES_8(INT_CASE, 1)                                         \
		}                                                                       \
	}
#define TILE tile_q32
DEFINE_TILE_INT(tiles_q4_0, struct duet_q8a_pair, DUET_Q4_0)
DEFINE_TILE_INT(tiles_q5_0, struct duet_q8a_pair, DUET_Q5_0)
DEFINE_TILE_INT(tiles_q4_1, struct duet_q8a_pair, DUET_Q4_1)
DEFINE_TILE_INT(tiles_q5_1, struct duet_q8a_pair, DUET_Q5_1)
#undef TILE
#define TILE tile_kq
DEFINE_TILE_INT(tiles_q4_k, struct duet_q8k_block, DUET_Q4_K)
DEFINE_TILE_INT(tiles_q5_k, struct duet_q8k_block, DUET_Q5_K)
DEFINE_TILE_INT(tiles_q6_k, struct duet_q8k_block, DUET_Q6_K)
#undef TILE

/* A range's rows in tiles of ROWS_FOR(B) rows. With one group of
 * sequences (B <= MAX_NB) and 4-row tiles, a tile takes the i-th row of
 * each quarter of the range: four long sequential streams, which a core
 * reads faster than four adjacent rows at a time (avx512.c, struct tgeo);
 * each row's result is the same either way. */
#define DEFINE_MATMUL(name, tiles, XT, ROW, ROWS_FOR)                                   \
	static void name(const void *wv, size_t rb, int K, const void *xv, int B,       \
			 float *y, int ldy, int n0, int n1, int far)                     \
	{                                                                               \
		(void)far;                                                              \
		const uint8_t *w = wv;                                                  \
		const int nr = ROWS_FOR(B);                                             \
		if (nr == 4 && B <= MAX_NB) {                                           \
			int q = (n1 - n0) / 4;                                          \
			for (int i = 0; i < q; i++)                                     \
				tiles(w + (size_t)(n0 + i) * rb, (size_t)q * rb, K,     \
				      (const XT *)xv, B, y + n0 + i, ldy, q, 4, B);     \
			n0 += 4 * q;                                                    \
		}                                                                       \
		for (int n = n0; n < n1;) {                                             \
			int r = n1 - n >= nr ? nr : 1;                                  \
			for (int b = 0; b < B; b += MAX_NB) {                           \
				int nb = B - b < MAX_NB ? B - b : MAX_NB;               \
				tiles(w + (size_t)n * rb, rb, K,                        \
				      (const XT *)xv + (size_t)b * (ROW), B,            \
				      y + (size_t)b * ldy + n, ldy, 1, r, nb);          \
			}                                                               \
			n += r;                                                         \
		}                                                                       \
	}
DEFINE_MATMUL(matmul_f32, tiles_f32, float, DUET_PANEL_CHUNK, rows_for_plain)
DEFINE_MATMUL(matmul_f16, tiles_f16, float, DUET_PANEL_CHUNK, rows_for)
DEFINE_MATMUL(matmul_bf16, tiles_bf16, float, DUET_PANEL_CHUNK, rows_for)
DEFINE_MATMUL(matmul_q8_0, tiles_q8_0, float, DUET_PANEL_CHUNK, rows_for)
DEFINE_MATMUL(matmul_q8_0_q8, tiles_q8, struct duet_q8a_pair, 1, rows_for_plain)
DEFINE_MATMUL(matmul_q4_0_q8, tiles_q4_0, struct duet_q8a_pair, 1, rows_for_plain)
DEFINE_MATMUL(matmul_q5_0_q8, tiles_q5_0, struct duet_q8a_pair, 1, rows_for_plain)
DEFINE_MATMUL(matmul_q4_1_q8, tiles_q4_1, struct duet_q8a_pair, 1, rows_for_plain)
DEFINE_MATMUL(matmul_q5_1_q8, tiles_q5_1, struct duet_q8a_pair, 1, rows_for_plain)
DEFINE_MATMUL(matmul_q4_k_q8k, tiles_q4_k, struct duet_q8k_block, 1, rows_for_plain)
DEFINE_MATMUL(matmul_q5_k_q8k, tiles_q5_k, struct duet_q8k_block, 1, rows_for_plain)
DEFINE_MATMUL(matmul_q6_k_q8k, tiles_q6_k, struct duet_q8k_block, 1, rows_for_plain)

static void cvt_f16(const void *src, float *dst, int n)
{
	const uint16_t *h = src;
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, load_h(h + i));
	for (; i < n; i++)
		dst[i] = _cvtsh_ss(h[i]);
}

static void cvt_bf16(const void *src, float *dst, int n)
{
	const uint16_t *h = src;
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, load_bf(h + i));
	for (; i < n; i++)
		dst[i] = duet_bf16_to_fp32(h[i]);
}

static void cvt_i8(const void *src, float d, float *dst, int n)
{
	const int8_t *q = src;
	__m256 dv = _mm256_set1_ps(d);
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i,
				 _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
						       _mm_loadl_epi64((const __m128i *)(q + i)))),
					       dv));
	for (; i < n; i++)
		dst[i] = d * (float)q[i];
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

static float read4(const float *x, long n)
{
	long q = n / 4;
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	for (long i = 0; i < q; i += 8) {
		s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
		s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + q + i));
		s2 = _mm256_add_ps(s2, _mm256_loadu_ps(x + 2 * q + i));
		s3 = _mm256_add_ps(s3, _mm256_loadu_ps(x + 3 * q + i));
	}
	return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

/* ---- the compute ceiling ---- */

/* Twelve chains of the instruction the kernels use (dot_u8s8 is AVX2's
 * three-instruction sum or AVX-VNNI's one; either way one dot product of
 * 32 byte pairs), with builtins: this table runs on machines this project
 * does not have, and only its order of magnitude is asked of it. */
static double peak(enum duet_peak_op op, long n, float *sink)
{
	if (op == DUET_PEAK_DOT_BF16)
		return 0;
	__m256i a[DUET_PEAK_CHAINS];
	for (int i = 0; i < DUET_PEAK_CHAINS; i++)
		a[i] = op == DUET_PEAK_DOT_I8 ? _mm256_set1_epi32(i)
					     : _mm256_castps_si256(_mm256_set1_ps(1.0f + (float)i));
	if (op == DUET_PEAK_FMA) {
		const __m256 x = _mm256_set1_ps(1e-3f), y = _mm256_set1_ps(0.5f);
		for (long r = 0; r < n; r++)
			_Pragma("GCC unroll 12")
			for (int i = 0; i < DUET_PEAK_CHAINS; i++)
				a[i] = _mm256_castps_si256(
					_mm256_fmadd_ps(x, y, _mm256_castsi256_ps(a[i])));
	} else {
		const __m256i x = _mm256_set1_epi8(1), y = _mm256_set1_epi8(2);
		for (long r = 0; r < n; r++)
			_Pragma("GCC unroll 12")
			for (int i = 0; i < DUET_PEAK_CHAINS; i++)
				a[i] = dot_u8s8(a[i], x, y);
	}
	__m256 s = _mm256_setzero_ps();
	for (int i = 0; i < DUET_PEAK_CHAINS; i++) /* the dot products' sums are integers */
		s = _mm256_add_ps(s, op == DUET_PEAK_DOT_I8 ? _mm256_cvtepi32_ps(a[i])
							    : _mm256_castsi256_ps(a[i]));
	*sink = hsum(s);
	return (op == DUET_PEAK_FMA ? 2 * 8 : 2 * 32) * DUET_PEAK_CHAINS * (double)n;
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

/* One head of a KV row as f32 into buf (head sizes are at most 512). */
static const float *kv_head(const struct duet_kv_rows *r, int i, float *buf)
{
	const uint8_t *row = (const uint8_t *)r->base + (size_t)i * r->stride;
	int j = 0;
	switch (r->t) {
	case DUET_KV_F32:
		return (const float *)row;
	case DUET_KV_F16:
		for (; j + 8 <= r->hd; j += 8)
			_mm256_storeu_ps(buf + j, load_h((const uint16_t *)row + j));
		for (; j < r->hd; j++)
			buf[j] = _cvtsh_ss(((const uint16_t *)row)[j]);
		return buf;
	case DUET_KV_INT8: {
		float d = duet_kv_rows_scale(DUET_KV_INT8, r, row);
		for (; j < r->hd; j++)
			buf[j] = d * (float)((const int8_t *)row)[j];
		return buf;
	}
	}
	return buf;
}

/* Decode attention in 8-wide vectors, the row type a constant of each
 * instance (as kern/avx512.c, whose notes say why); head sizes that are
 * not a multiple of 8 take the row-at-a-time path above. */

/* Values [j, j + 8) of a KV row as f32, before an int8 row's scale. */
INLINE __m256 kv8(const enum duet_kv_dtype t, const uint8_t *row, int j)
{
	switch (t) {
	case DUET_KV_F32:
		return _mm256_loadu_ps((const float *)row + j);
	case DUET_KV_F16:
		return load_h((const uint16_t *)row + j);
	case DUET_KV_INT8:
		return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + j))));
	}
	return _mm256_setzero_ps();
}

/* Lane i: the sum of a[i]'s 8 lanes. */
INLINE __m256 hsum8(const __m256 a[8])
{
	__m256 lo = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
	__m256 hi = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
	return _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20), _mm256_permute2f128_ps(lo, hi, 0x31));
}

/* Scores of one query head for 8 rows from i0 (n of them real): a dot
 * product per row in a register, then one reduction for the 8. */
INLINE void qk8(const float *q, const struct duet_kv_rows *k, int i0, int n, float scale,
		float *s, const enum duet_kv_dtype t, const int full)
{
	__m256 acc[8];
	_Pragma("GCC unroll 8")
	for (int r = 0; r < 8; r++)
		acc[r] = _mm256_setzero_ps();
	const uint8_t *base = (const uint8_t *)k->base + (size_t)i0 * k->stride;
	for (int j = 0; j < k->hd; j += 8) {
		__m256 qv = _mm256_loadu_ps(q + j);
		_Pragma("GCC unroll 8")
		for (int r = 0; r < 8; r++)
			if (full || r < n)
				acc[r] = _mm256_fmadd_ps(qv, kv8(t, base + (size_t)r * k->stride, j), acc[r]);
	}
	float f[8];
	for (int r = 0; r < 8; r++)
		f[r] = r < n ? scale * duet_kv_rows_scale(t, k, base + (size_t)r * k->stride) : 0.0f;
	__m256 v = _mm256_mul_ps(hsum8(acc), _mm256_loadu_ps(f));
	if (full) {
		_mm256_storeu_ps(s + i0, v);
	} else {
		float o[8];
		_mm256_storeu_ps(o, v);
		memcpy(s + i0, o, sizeof(float) * (size_t)n);
	}
}

INLINE void qk_type(const float *q, int nq, const struct duet_kv_rows *k, int n, float scale,
		    float *s, size_t ld, const enum duet_kv_dtype t)
{
	for (int h = 0; h < nq; h++) {
		int i0 = 0;
		for (; i0 + 8 <= n; i0 += 8)
			qk8(q + (size_t)h * k->hd, k, i0, 8, scale, s + (size_t)h * ld, t, 1);
		if (i0 < n)
			qk8(q + (size_t)h * k->hd, k, i0, n - i0, scale, s + (size_t)h * ld, t, 0);
	}
}

/* out of nh (<= 2) heads, values [j0, j0 + 8 nv) (nv <= 4), accumulated
 * in registers over every row, each row's values converted once for both. */
INLINE void av_heads(const float *p, size_t ld, const struct duet_kv_rows *v, int n, float *out,
		     int j0, int nv, const int nh, const enum duet_kv_dtype t)
{
	const int hd = v->hd;
	__m256 acc[2][4];
	_Pragma("GCC unroll 2")
	for (int h = 0; h < nh; h++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < 4; c++)
			acc[h][c] = c < nv ? _mm256_loadu_ps(out + (size_t)h * hd + j0 + 8 * c)
					   : _mm256_setzero_ps();
	for (int i = 0; i < n; i++) {
		const uint8_t *row = (const uint8_t *)v->base + (size_t)i * v->stride;
		float d = duet_kv_rows_scale(t, v, row);
		__m256 kv[4];
		_Pragma("GCC unroll 4")
		for (int c = 0; c < 4; c++)
			kv[c] = c < nv ? kv8(t, row, j0 + 8 * c) : _mm256_setzero_ps();
		_Pragma("GCC unroll 2")
		for (int h = 0; h < nh; h++) {
			__m256 w = _mm256_set1_ps(t == DUET_KV_INT8 ? p[(size_t)h * ld + i] * d
								    : p[(size_t)h * ld + i]);
			_Pragma("GCC unroll 4")
			for (int c = 0; c < 4; c++)
				if (c < nv)
					acc[h][c] = _mm256_fmadd_ps(w, kv[c], acc[h][c]);
		}
	}
	_Pragma("GCC unroll 2")
	for (int h = 0; h < nh; h++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < 4; c++)
			if (c < nv)
				_mm256_storeu_ps(out + (size_t)h * hd + j0 + 8 * c, acc[h][c]);
}

INLINE void av_type(const float *p, size_t ld, int nq, const struct duet_kv_rows *v, int n,
		    float *out, const enum duet_kv_dtype t)
{
	for (int h0 = 0; h0 < nq; h0 += 2)
		for (int j0 = 0; j0 < v->hd; j0 += 32) {
			int nv = (v->hd - j0) / 8 < 4 ? (v->hd - j0) / 8 : 4;
			if (nq - h0 >= 2)
				av_heads(p + (size_t)h0 * ld, ld, v, n, out + (size_t)h0 * v->hd, j0, nv, 2, t);
			else
				av_heads(p + (size_t)h0 * ld, ld, v, n, out + (size_t)h0 * v->hd, j0, nv, 1, t);
		}
}

static void attn_qk(const float *q, int nq, const struct duet_kv_rows *k, int n, float scale,
		    float *s, size_t ld)
{
	if (k->hd % 8) {
		float buf[512];
		for (int i = 0; i < n; i++) {
			const float *kr = kv_head(k, i, buf);
			for (int h = 0; h < nq; h++)
				s[(size_t)h * ld + i] = dot(q + (size_t)h * k->hd, kr, k->hd) * scale;
		}
		return;
	}
	switch (k->t) {
	case DUET_KV_F32: qk_type(q, nq, k, n, scale, s, ld, DUET_KV_F32); break;
	case DUET_KV_F16: qk_type(q, nq, k, n, scale, s, ld, DUET_KV_F16); break;
	case DUET_KV_INT8: qk_type(q, nq, k, n, scale, s, ld, DUET_KV_INT8); break;
	}
}

static void attn_av(const float *p, size_t ld, int nq, const struct duet_kv_rows *v, int n,
		    float *out)
{
	if (v->hd % 8) {
		float buf[512];
		for (int i = 0; i < n; i++) {
			const float *vr = kv_head(v, i, buf);
			for (int h = 0; h < nq; h++)
				axpy(p[(size_t)h * ld + i], vr, out + (size_t)h * v->hd, v->hd);
		}
		return;
	}
	switch (v->t) {
	case DUET_KV_F32: av_type(p, ld, nq, v, n, out, DUET_KV_F32); break;
	case DUET_KV_F16: av_type(p, ld, nq, v, n, out, DUET_KV_F16); break;
	case DUET_KV_INT8: av_type(p, ld, nq, v, n, out, DUET_KV_INT8); break;
	}
}

static float softmax(float *x, int n)
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
	return mx + logf(s);
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

const struct duet_kernels TABLE = {
	.name = TABLE_NAME,
	.matmul_f = {[DUET_F32] = matmul_f32, [DUET_F16] = matmul_f16, [DUET_BF16] = matmul_bf16,
		     [DUET_Q8_0] = matmul_q8_0},
	.matmul_q8 = {[DUET_Q8_0] = matmul_q8_0_q8, [DUET_Q4_0] = matmul_q4_0_q8,
		      [DUET_Q5_0] = matmul_q5_0_q8, [DUET_Q4_1] = matmul_q4_1_q8,
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
