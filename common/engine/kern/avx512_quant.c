/* AVX-512 kernels for the quantized types in 16-row groups (engine/repack.h):
 * Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K against activations
 * quantized to int8, and their packing. A file apart from avx512.c so
 * that the two compile side by side (the sanitizer build spent 90 s on
 * the one file they were). */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "engine/kern/avx512_quant.h"
#include "engine/kern/avx512_util.h"
#include "engine/kern/kernels.h"
#include "engine/repack.h"

/* Blocks ahead that a group's stream is prefetched: with several
 * activation rows a block takes long enough that the hardware prefetcher
 * alone left the stream at half the bandwidth (BENCHMARKS.md). */
#ifndef R16_AHEAD
#define R16_AHEAD 16
#endif
/* Q4_K's stream, in bytes, near and far (kernels.h, far): at B = 1 on
 * two threads 8 KiB ahead read 67.7-84.5 GB/s where 32 KiB read
 * 57.9-65.4 while the memory was fast, 41.3 against 45.0 while it was
 * slow; B = 8 was the same at both (1090 and 1100 GFLOP/s; BENCHMARKS.md,
 * 2026-12-06 sixth). */
#define R16_AHEAD_Q4_K(far) ((far) ? 32 << 10 : 8 << 10)
/* Q6_K's, one distance: B = 1 from memory 4 KiB ahead 45 GB/s, 8 KiB
 * 60-63, 16 KiB 58, 32 KiB 52 (BENCHMARKS.md, 2026-12-05 seventh); with
 * 16 KiB as its far distance `q4_k_m` decoded 1-3 points slower in both
 * states (2026-12-06 sixth). */
#define R16_AHEAD_Q6_K (8 << 10)

INLINE int32_t dword_at(const int8_t *p)
{
	int32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* acc + w (unsigned bytes) . the dword at a, broadcast to every lane
 * (signed bytes), the instruction reading the dword itself ({1to16}).
 * gcc 12 neither folds the broadcast nor keeps the builtin's accumulator
 * in place (a register copy for every chain), so the batched kernels ran
 * an instruction and a half for each vpdpbusd: Q8_0 B = 12-16 in cache
 * +15-20%, from memory +4-24% (BENCHMARKS.md, 2026-12-05 sixth). */
INLINE __m512i dpbusd_bcast(__m512i acc, __m512i w, const int8_t *a)
{
	__asm__("vpdpbusd %2%{1to16%}, %1, %0"
		: "+v"(acc)
		: "v"(w), "m"(*(const struct { int8_t b[4]; } *)a));
	return acc;
}

/* A block's exact dot products for 16 rows: w[j] against dword j of the
 * activations' 32 quants, from the offset. (Two chains of four for one or
 * two activation rows, to halve the latency, ran slower: BENCHMARKS.md.) */
INLINE __m512i dot8(const __m512i w[8], const int8_t *aq, int32_t offset)
{
	__m512i dp = _mm512_set1_epi32(offset);
	_Pragma("GCC unroll 8")
	for (int j = 0; j < 8; j++)
		dp = dpbusd_bcast(dp, w[j], aq + 4 * j);
	return dp;
}

/* dot8 as two chains of four (the even and the odd dwords), added: the
 * same exact sum. Where a block's products of one group are the only
 * work in flight (Q4_K with one or two sequences), eight dependent
 * vpdpbusd a sub-block held back how far the core ran ahead of its loads:
 * Q4_K from memory 42 -> 48 GB/s at batch 1 (BENCHMARKS.md, 2026-12-06
 * fifth; four chains of two measured no better than one of eight). */
INLINE __m512i dot8_2(const __m512i w[8], const int8_t *aq, int32_t offset)
{
	__m512i e = _mm512_set1_epi32(offset), o = _mm512_setzero_si512();
	_Pragma("GCC unroll 4")
	for (int j = 0; j < 8; j += 2) {
		e = dpbusd_bcast(e, w[j], aq + 4 * j);
		o = dpbusd_bcast(o, w[j + 1], aq + 4 * j + 4);
	}
	return _mm512_add_epi32(e, o);
}

/* A tile's accumulators: y's values when a slice of K continues them (add),
 * else zero; and back into y, rows past the mask untouched. */
INLINE void r16_acc_load(__m512 acc[DUET_R16_SEQS], const float *y, int ldy, __mmask16 m,
			 int add, const int nb)
{
	_Pragma("GCC unroll 16")
	for (int b = 0; b < nb; b++)
		acc[b] = add ? _mm512_maskz_loadu_ps(m, y + (size_t)b * ldy) : _mm512_setzero_ps();
}

INLINE void r16_acc_store(const __m512 acc[DUET_R16_SEQS], float *y, int ldy, __mmask16 m,
			  const int nb)
{
	_Pragma("GCC unroll 16")
	for (int b = 0; b < nb; b++)
		_mm512_mask_storeu_ps(y + (size_t)b * ldy, m, acc[b]);
}

/* Rows of activations up to which r16_block keeps one dot product per row
 * in a register (eight weight vectors, eight sums, eight accumulators):
 * batched decode of 4 and 8 sequences 7-18% faster than a row's chain at
 * a time (BENCHMARKS.md, 2026-12-05 fifth). */
#define R16_INTERLEAVED 8

/* The 32-value types' traits in the 16-row form (T a constant after
 * inlining): nibbles (all but Q8_0), a min (Q4_1, Q5_1), fifth bits (Q5_0,
 * Q5_1), and the dot products' starting point, the zero point's offset
 * from the activations' corr (-128 x their sum): Q8_0 -128 x sum, Q4_0 -8
 * x sum, Q5_0 -16 x sum, the types with a min none. */
INLINE int r16_has_min(const enum duet_dtype T)
{
	return T == DUET_Q4_1 || T == DUET_Q5_1;
}

INLINE int r16_has_fifth(const enum duet_dtype T)
{
	return T == DUET_Q5_0 || T == DUET_Q5_1;
}

INLINE int32_t r16_offset(const enum duet_dtype T, int32_t corr)
{
	return T == DUET_Q8_0 ? corr : T == DUET_Q4_0 ? corr / 16 : T == DUET_Q5_0 ? corr / 8 : 0;
}

/* The fifth bits of 16 rows (their two header words at qh: bits 0-15, then
 * 16-31) as lane r's dword, one vector for each word. */
INLINE void r16_fifth_load(const uint8_t *qh, __m512i *lo, __m512i *hi)
{
	*lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)qh));
	*hi = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(qh + 32)));
}

/* A line's nibbles (values 4j + b of lane r's row in byte 4r + b; from hi:
 * values 16 + 4j + b) plus 16 where the value's fifth bit is set: byte
 * j / 2 of each lane's word spread over the lane's four bytes and tested
 * against bits 4 (j % 2) + b, a mask of 64 bytes, a masked add. */
INLINE __m512i r16_fifth(__m512i w, __m512i bits, const int j)
{
	const __m512i spread = _mm512_add_epi8(
		_mm512_set_epi32(0x0c0c0c0c, 0x08080808, 0x04040404, 0, 0x0c0c0c0c, 0x08080808,
				 0x04040404, 0, 0x0c0c0c0c, 0x08080808, 0x04040404, 0, 0x0c0c0c0c,
				 0x08080808, 0x04040404, 0),
		_mm512_set1_epi8((char)(j / 2)));
	const __m512i pick = _mm512_set1_epi32(j % 2 ? (int)0x80402010 : 0x08040201);
	__mmask64 k = _mm512_test_epi8_mask(_mm512_shuffle_epi8(bits, spread), pick);
	return _mm512_mask_add_epi8(w, k, w, _mm512_set1_epi8(16));
}

/* Line j of a nibble type's block (v) as the unsigned values of its low
 * nibbles (*lo, values 4j..) and high nibbles (*hi, values 16 + 4j..),
 * with their fifth bits (flo, fhi: r16_fifth_load) where the type has
 * them. */
INLINE void r16_nibbles(const enum duet_dtype T, __m512i v, __m512i flo, __m512i fhi, const int j,
			__m512i *lo, __m512i *hi)
{
	const __m512i low = _mm512_set1_epi8(0x0f);
	*lo = _mm512_and_si512(v, low);
	*hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
	if (r16_has_fifth(T)) {
		*lo = r16_fifth(*lo, flo, j);
		*hi = r16_fifth(*hi, fhi, j);
	}
}

/* A block's eight vectors of unsigned values from its lines at qi (its 16
 * headers at heads): Q8_0's four lines' bytes as they are; the others' four
 * lines' low nibbles (w[j], values 4j..) and high nibbles (w[j + 4], values
 * 16 + 4j..), with their fifth bits where the type has them. */
INLINE void r16_values(const enum duet_dtype T, const uint8_t *heads, const uint8_t *qi,
		       __m512i w[8])
{
	const int lines = (int)duet_r16_block_bytes(T) / 64;
	__m512i flo = _mm512_setzero_si512(), fhi = _mm512_setzero_si512();
	if (r16_has_fifth(T))
		r16_fifth_load(heads + 32 * (1 + r16_has_min(T)), &flo, &fhi);
	_Pragma("GCC unroll 8")
	for (int j = 0; j < lines; j++) {
		__m512i v = _mm512_loadu_si512(qi + 64 * j);
		if (T == DUET_Q8_0)
			w[j] = v;
		else
			r16_nibbles(T, v, flo, fhi, j, &w[j], &w[j + 4]);
	}
}

/* A block's sums into acc as the definition has them: acc_block, then for
 * a type with a min, acc = fma(min x the activations' scale, float(their
 * sum), acc). */
INLINE __m512 r16_acc(const enum duet_dtype T, __m512 acc, __m512i dp, __m512 ws, __m512 wm,
		      float xd, int32_t corr)
{
	acc = acc_block(acc, dp, ws, xd);
	if (r16_has_min(T))
		acc = _mm512_fmadd_ps(_mm512_mul_ps(wm, _mm512_set1_ps(xd)),
				      _mm512_set1_ps((float)(corr / -128)), acc);
	return acc;
}

INLINE __m512 r16_mins(const enum duet_dtype T, const uint8_t *heads)
{
	return r16_has_min(T) ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(heads + 32)))
			      : _mm512_setzero_ps();
}

/* A 32-value type (T, a constant after inlining) against nb activation
 * rows of a q8 panel: lane r of every vector is row r. A block's eight
 * vectors of unsigned values (r16_values) are shared by every row; each
 * row's eight dot products start from the type's offset (r16_offset) and
 * end as the block's exact sum (the activations' dwords broadcast); then
 * one convert and one fused multiply-add with the two scales' product
 * (and the min's), block after block, as the scalar definition. r16_block
 * is one block (its 16 headers at heads, its quants at qi) against nb
 * activation rows (their pair p, half h), into acc[0..nb). */
INLINE void r16_block(const enum duet_dtype T, const uint8_t *heads, const uint8_t *qi,
		      const struct duet_q8a_pair *p, int h, __m512 *acc, const int nb)
{
	__m512 ws = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)heads));
	__m512 wm = r16_mins(T, heads);
	__m512i w[8];
	r16_values(T, heads, qi, w);
	if (nb <= R16_INTERLEAVED) {
		/* each row's chain in step with the others': nb independent
		 * dot products in flight, not one row's eight in a row */
		__m512i dp[R16_INTERLEAVED];
		_Pragma("GCC unroll 8")
		for (int b = 0; b < nb; b++)
			dp[b] = _mm512_set1_epi32(r16_offset(T, p[b].corr[8 * h]));
		_Pragma("GCC unroll 8")
		for (int j = 0; j < 8; j++) {
			_Pragma("GCC unroll 8")
			for (int b = 0; b < nb; b++) {
				const int8_t *aq = p[b].q + 32 * h + 4 * j;
				dp[b] = dpbusd_bcast(dp[b], w[j], aq);
			}
		}
		_Pragma("GCC unroll 8")
		for (int b = 0; b < nb; b++)
			acc[b] = r16_acc(T, acc[b], dp[b], ws, wm, p[b].d[8 * h], p[b].corr[8 * h]);
		return;
	}
	_Pragma("GCC unroll 16")
	for (int b = 0; b < nb; b++) {
		const struct duet_q8a_pair *a = p + b;
		int32_t corr = a->corr[8 * h];
		__m512i dp = dot8(w, a->q + 32 * h, r16_offset(T, corr));
		acc[b] = r16_acc(T, acc[b], dp, ws, wm, a->d[8 * h], corr);
	}
}

/* A slice's units one after another (pointers moved along, not offsets
 * computed per block: the index arithmetic had been a fifth of the
 * loop's instructions), each unit's lines prefetched R16_AHEAD blocks of
 * Q8_0 ahead (one distance: far is not measured here); a unit's two
 * blocks are one q8 pair of the activations. A short last unit holds one
 * block, its quants after its one header. */
INLINE void r16_tile(const enum duet_dtype T, const uint8_t *g, int nblk, const void *xv, int B,
		     float *y, int ldy, __mmask16 m, int add, const int nb, const int far)
{
	(void)far;
	const struct duet_q8a_pair *x = xv;
	const size_t hb = duet_r16_head_bytes(T), qb = duet_r16_block_bytes(T);
	const size_t ub = duet_r16_unit_bytes(T), pf = R16_AHEAD * 512;
	__m512 acc[DUET_R16_SEQS];
	r16_acc_load(acc, y, ldy, m, add, nb);
	const uint8_t *u = g;
	for (int k = 0; k < nblk / 2; k++, u += ub, x += B) {
		_Pragma("GCC unroll 32")
		for (size_t j = 0; j < ub / 64; j++)
			PREFETCH(u + pf + 64 * j);
		r16_block(T, u, u + 2 * hb, x, 0, acc, nb);
		r16_block(T, u + hb, u + 2 * hb + qb, x, 1, acc, nb);
	}
	if (nblk % 2)
		r16_block(T, u, u + hb, x, 0, acc, nb);
	r16_acc_store(acc, y, ldy, m, nb);
}

#define R16_TILE_Q8_0(...) r16_tile(DUET_Q8_0, __VA_ARGS__)
#define R16_TILE_Q4_0(...) r16_tile(DUET_Q4_0, __VA_ARGS__)
#define R16_TILE_Q4_1(...) r16_tile(DUET_Q4_1, __VA_ARGS__)
#define R16_TILE_Q5_0(...) r16_tile(DUET_Q5_0, __VA_ARGS__)
#define R16_TILE_Q5_1(...) r16_tile(DUET_Q5_1, __VA_ARGS__)

/* 32 bytes of 16 rows (row r's at p + r * rb) into eight vectors, vector j
 * lane r dword j of row r, each byte xor bias, stored at out + 64 j for j <
 * 4 and out4 + 64 (j - 4) for the others: an 8 x 8 dword transpose in
 * each 256-bit half (rows r and r + 8 share a register), dwords then pairs
 * interleaved within 128-bit lanes, and a two-source permute putting four
 * rows' lanes in order (gathers ran at a tenth of the speed). */
INLINE void transpose_16x32(const uint8_t *p, size_t rb, uint8_t *out, uint8_t *out4, __m512i bias)
{
	const __m512i lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
	const __m512i hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
	__m512i z[8], t[8], u[8];
	_Pragma("GCC unroll 8")
	for (int k = 0; k < 8; k++)
		z[k] = _mm512_inserti64x4(
			_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + (size_t)k * rb))),
			_mm256_loadu_si256((const __m256i *)(p + (size_t)(k + 8) * rb)), 1);
	_Pragma("GCC unroll 4")
	for (int k = 0; k < 8; k += 2) {
		t[k] = _mm512_unpacklo_epi32(z[k], z[k + 1]);
		t[k + 1] = _mm512_unpackhi_epi32(z[k], z[k + 1]);
	}
	_Pragma("GCC unroll 2")
	for (int g = 0; g < 8; g += 4) {
		u[g + 0] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
		u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
		u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
		u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
	}
	_Pragma("GCC unroll 4")
	for (int c = 0; c < 4; c++) {
		__m512i a = _mm512_permutex2var_epi64(u[c], lo, u[4 + c]);
		__m512i b = _mm512_permutex2var_epi64(u[c], hi, u[4 + c]);
		_mm512_storeu_si512(out + 64 * c, _mm512_xor_si512(a, bias));
		_mm512_storeu_si512(out4 + 64 * c, _mm512_xor_si512(b, bias));
	}
}

INLINE uint16_t word_at(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

/* Header word w of 16 rows (row r's block at blk + r * rb) into h[16 w + r]
 * (one word: Q8_0, Q4_0; two to four: Q4_1, Q5_0, Q5_1, whose row blocks
 * hold 16 bytes from their header on; eight: Q4_K), built in registers and
 * stored whole: sixteen narrow stores read back by the kernel's wide load
 * cannot be forwarded, and stalled it every block. */
INLINE void heads_16(const uint8_t *blk, size_t rb, const int words, uint16_t *h)
{
	if (words == 1) {
		__m256i v = _mm256_set_epi16(
			(short)word_at(blk + 15 * rb), (short)word_at(blk + 14 * rb), (short)word_at(blk + 13 * rb),
			(short)word_at(blk + 12 * rb), (short)word_at(blk + 11 * rb), (short)word_at(blk + 10 * rb),
			(short)word_at(blk + 9 * rb), (short)word_at(blk + 8 * rb), (short)word_at(blk + 7 * rb),
			(short)word_at(blk + 6 * rb), (short)word_at(blk + 5 * rb), (short)word_at(blk + 4 * rb),
			(short)word_at(blk + 3 * rb), (short)word_at(blk + 2 * rb), (short)word_at(blk + rb),
			(short)word_at(blk));
		_mm256_storeu_si256((__m256i *)h, v);
		return;
	}
	__m512i d[4];
	transpose_16x16(blk, rb, d);
	_Pragma("GCC unroll 4")
	for (int j = 0; 2 * j < words; j++) {
		_mm256_storeu_si256((__m256i *)(h + 16 * (2 * j)), _mm512_cvtepi32_epi16(d[j]));
		if (2 * j + 1 < words)
			_mm256_storeu_si256((__m256i *)(h + 16 * (2 * j + 1)),
					    _mm512_cvtepi32_epi16(_mm512_srli_epi32(d[j], 16)));
	}
}

/* duet_r16_pack for Q8_0 (a short group takes the definition). */
void duet_avx512_pack_q8_0_r16(const uint8_t *rows, size_t rb, int nrows, int i0, int n, uint8_t *out)
{
	if (nrows < 16) {
		duet_r16_pack(DUET_Q8_0, rows, rb, nrows, i0, n, out);
		return;
	}
	const __m512i bias = _mm512_set1_epi8((char)0x80);
	for (int i = 0; i < n; i++) {
		const uint8_t *blk = rows + (size_t)(i0 + i) * DUET_Q8_0_BYTES;
		heads_16(blk, rb, 1, (uint16_t *)(out + duet_r16_heads_at(DUET_Q8_0, i)));
		/* sixteen row streams: the hardware prefetcher follows few */
		if (i % 2 == 0)
			for (int r = 0; r < 16; r++)
				PREFETCH(blk + (size_t)r * rb + PACK_AHEAD * DUET_Q8_0_BYTES);
		uint8_t *qi = out + duet_r16_quants_at(DUET_Q8_0, i, n);
		transpose_16x32(blk + 2, rb, qi, qi + 256, bias);
	}
}

/* duet_r16_pack for Q4_K and Q5_K: each 32 bytes of quants (Q5_K's qh,
 * then each 64-value chunk's nibbles) as Q8_0's quants are moved, the
 * 16-byte headers word by word. */
INLINE void pack_kquant_r16(const enum duet_dtype T, const uint8_t *rows, size_t rb, int nrows,
			    int i0, int n, uint8_t *out)
{
	if (nrows < 16) {
		duet_r16_pack(T, rows, rb, nrows, i0, n, out);
		return;
	}
	const size_t bb = duet_dtype_block_bytes(T), head = 4 + DUET_QK_SCALES;
	for (int i = 0; i < n; i++) {
		const uint8_t *blk = rows + (size_t)(i0 + i) * bb;
		heads_16(blk, rb, (int)head / 2, (uint16_t *)(out + duet_r16_heads_at(T, i)));
		for (int r = 0; r < 16; r++)
			for (size_t o = 0; o < bb; o += 64)
				PREFETCH(blk + (size_t)r * rb + bb + o);
		uint8_t *qi = out + duet_r16_quants_at(T, i, n);
		for (int c = 0; c < (int)(bb - head) / 32; c++)
			transpose_16x32(blk + head + 32 * c, rb, qi + 512 * c, qi + 512 * c + 256,
					_mm512_setzero_si512());
	}
}

void duet_avx512_pack_q4_k_r16(const uint8_t *rows, size_t rb, int nrows, int i0, int n, uint8_t *out)
{
	pack_kquant_r16(DUET_Q4_K, rows, rb, nrows, i0, n, out);
}

void duet_avx512_pack_q5_k_r16(const uint8_t *rows, size_t rb, int nrows, int i0, int n, uint8_t *out)
{
	pack_kquant_r16(DUET_Q5_K, rows, rb, nrows, i0, n, out);
}

/* duet_r16_pack for Q6_K: its 192 bytes of quants (ql, qh) 32 at a time
 * as Q8_0's are moved, in the order of duet_r16_dword_at, the 16 scales
 * and d after them word by word. */
void duet_avx512_pack_q6_k_r16(const uint8_t *rows, size_t rb, int nrows, int i0, int n, uint8_t *out)
{
	if (nrows < 16) {
		duet_r16_pack(DUET_Q6_K, rows, rb, nrows, i0, n, out);
		return;
	}
	const size_t bb = sizeof(struct duet_q6_k_block), qb = DUET_QK / 2 + DUET_QK / 4;
	for (int i = 0; i < n; i++) {
		const uint8_t *blk = rows + (size_t)(i0 + i) * bb;
		uint16_t *h = (uint16_t *)(out + duet_r16_heads_at(DUET_Q6_K, i));
		heads_16(blk + qb, rb, 8, h);
		heads_16(blk + qb + DUET_QK / 16, rb, 1, h + 8 * DUET_R16_ROWS);
		for (int r = 0; r < 16; r++)
			for (size_t o = 0; o < bb; o += 64)
				PREFETCH(blk + (size_t)r * rb + bb + o);
		/* each 32 bytes' two runs of four dwords where they go */
		uint8_t *qi = out + duet_r16_quants_at(DUET_Q6_K, i, n);
		for (int c = 0; c < (int)qb / 32; c++)
			transpose_16x32(blk + 32 * c, rb, qi + 64 * duet_r16_dword_at(DUET_Q6_K, 8 * c),
					qi + 64 * duet_r16_dword_at(DUET_Q6_K, 8 * c + 4),
					_mm512_setzero_si512());
	}
}

/* duet_r16_pack for Q4_0, Q4_1, Q5_0 and Q5_1: a block's header words
 * (heads_16), then its 16 bytes of nibbles from 16 rows, a 16 x 4 dword
 * transpose (rows r, r + 4, r + 8 and r + 12 share a register), as they
 * are. */
INLINE void pack_nibbles_r16(const enum duet_dtype T, const uint8_t *rows, size_t rb, int nrows,
			     int i0, int n, uint8_t *out)
{
	if (nrows < 16) {
		duet_r16_pack(T, rows, rb, nrows, i0, n, out);
		return;
	}
	const size_t bb = duet_dtype_block_bytes(T);
	const int words = (int)duet_r16_head_bytes(T) / 32;
	for (int i = 0; i < n; i++) {
		const uint8_t *blk = rows + (size_t)(i0 + i) * bb;
		heads_16(blk, rb, words, (uint16_t *)(out + duet_r16_heads_at(T, i)));
		if (i % 4 == 0)
			for (int r = 0; r < 16; r++)
				PREFETCH(blk + (size_t)r * rb + PACK_AHEAD * 2 * bb);
		__m512i t[4];
		transpose_16x16(blk + 2 * words, rb, t);
		uint8_t *qi = out + duet_r16_quants_at(T, i, n);
		_Pragma("GCC unroll 4")
		for (int j = 0; j < 4; j++)
			_mm512_storeu_si512(qi + 64 * j, t[j]);
	}
}

#define DEFINE_PACK_NIBBLES(name, T)                                                    \
	void name(const uint8_t *rows, size_t rb, int nrows, int i0, int n, uint8_t *out) \
	{                                                                               \
		pack_nibbles_r16(T, rows, rb, nrows, i0, n, out);                       \
	}
DEFINE_PACK_NIBBLES(duet_avx512_pack_q4_0_r16, DUET_Q4_0)
DEFINE_PACK_NIBBLES(duet_avx512_pack_q4_1_r16, DUET_Q4_1)
DEFINE_PACK_NIBBLES(duet_avx512_pack_q5_0_r16, DUET_Q5_0)
DEFINE_PACK_NIBBLES(duet_avx512_pack_q5_1_r16, DUET_Q5_1)

/* Sub-block c of a Q4_K block (its values nib, the rows' scales times d
 * in dsc) against nb sequences' activations p, into acc. */
INLINE void q4_k_sub(__m512 acc[DUET_R16_SEQS], const __m512i nib[8],
		     const struct duet_q8k_block *p, const int nb, int c, __m512 dsc)
{
	_Pragma("GCC unroll 8")
	for (int b = 0; b < nb; b++) {
		const int8_t *aq = p[b].q + duet_q8k_pos(32 * c);
		/* (wider batches have a chain per sequence) */
		__m512i dp = nb <= 2 ? dot8_2(nib, aq, 0) : dot8(nib, aq, 0);
		acc[b] = acc_block(acc[b], dp, dsc, p[b].d);
	}
}

/* The fifth bits of Q5_K's values of 64-value chunk h (its qh line k,
 * whose byte l holds value l's bit 2h and value l + 32's bit 2h + 1) at
 * bit 4 of each byte: the low nibbles' (hb 0) or the high ones' (hb 1). A
 * 16-bit shift keeps each byte's bit within its byte for shifts to bit 4
 * from bits 0-7. */
INLINE __m512i q5_k_fifth(__m512i qh, int h, int hb)
{
	const int bit = 2 * h + hb;
	return bit <= 4 ? _mm512_slli_epi16(qh, 4 - bit) : _mm512_srli_epi16(qh, bit - 4);
}

/* Q4_K and Q5_K against nb activation rows (per-256, struct
 * duet_q8k_block), as the scalar definition (Q5_K's values with their
 * fifth bits, q5_k_fifth): first the mins' exact sum (their word pairs
 * against the activations' sums per 16, vpdpwssd) comes off, then each 32
 * values' exact sum meets d x its 6-bit scale x the activations' scale.
 * Per 64-value chunk the low nibbles, then the high ones (read again from
 * L1 but for one sequence), are shared by every row; the scales wait on
 * the stack, so that the nibbles and accumulators keep the registers (all
 * at once spilled). */
INLINE void r16_tile_kquant(const enum duet_dtype T, const uint8_t *g, int nblk, const void *xv,
			    int B, float *y, int ldy, __mmask16 m, int add, const int nb,
			    const int far)
{
	const struct duet_q8k_block *x = xv;
	const __m512i low = _mm512_set1_epi8(0x0f), six = _mm512_set1_epi32(63);
	const __m512i four = _mm512_set1_epi32(0x0f), bit4 = _mm512_set1_epi8(0x10);
	/* Q5_K's qh lines come before the nibbles */
	const size_t qs_at = T == DUET_Q5_K ? 512 : 0;
	__m512 acc[DUET_R16_SEQS];
	r16_acc_load(acc, y, ldy, m, add, nb);
	for (int i = 0; i < nblk; i++) {
		const uint8_t *qi = g + duet_r16_quants_at(T, i, nblk);
		const uint16_t *hi = (const uint16_t *)(g + duet_r16_heads_at(T, i));
		const struct duet_q8k_block *p = x + (size_t)i * B;
		_Pragma("GCC unroll 4")
		for (int j = 0; j < 4; j++)
			PREFETCH((const uint8_t *)hi + R16_AHEAD_Q4_K(far) + 64 * j);
		if (T == DUET_Q5_K)
			_Pragma("GCC unroll 8")
			for (int j = 0; j < 8; j++)
				PREFETCH(qi + R16_AHEAD_Q4_K(far) + 64 * j);
		__m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)hi));
		__m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(hi + 16)));
		/* byte k of the 12 bytes of scales and mins, each row's in its lane */
		__m512i sb[12];
		_Pragma("GCC unroll 6")
		for (int w = 0; w < 6; w++) {
			__m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(hi + 16 * (2 + w))));
			sb[2 * w] = _mm512_and_si512(v, _mm512_set1_epi32(0xff));
			sb[2 * w + 1] = _mm512_srli_epi32(v, 8);
		}
		__m512 dsc[8];
		__m512i mw[8]; /* the min, as the word pair (m, m) */
		_Pragma("GCC unroll 8")
		for (int j = 0; j < 8; j++) {
			__m512i sc, mn;
			if (j < 4) {
				sc = _mm512_and_si512(sb[j], six);
				mn = _mm512_and_si512(sb[j + 4], six);
			} else {
				sc = _mm512_or_si512(_mm512_and_si512(sb[j + 4], four),
						     _mm512_slli_epi32(_mm512_srli_epi32(sb[j - 4], 6), 4));
				mn = _mm512_or_si512(_mm512_srli_epi32(sb[j + 4], 4),
						     _mm512_slli_epi32(_mm512_srli_epi32(sb[j], 6), 4));
			}
			dsc[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
			mw[j] = _mm512_or_si512(mn, _mm512_slli_epi32(mn, 16));
		}
		_Pragma("GCC unroll 8")
		for (int b = 0; b < nb; b++) {
			const struct duet_q8k_block *a = p + b;
			__m512i mins = _mm512_setzero_si512();
			_Pragma("GCC unroll 8")
			for (int j = 0; j < 8; j++) {
				int32_t pair;
				memcpy(&pair, &a->bsums[2 * j], 4);
				mins = _mm512_dpwssd_epi32(mins, mw[j], _mm512_set1_epi32(pair));
			}
			acc[b] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins),
						  _mm512_mul_ps(dmin, _mm512_set1_ps(a->d)), acc[b]);
		}
		for (int h = 0; h < 4; h++) {
			/* chunk h: sub-block 2h its low nibbles, 2h + 1 its high
			 * (Q5_K: and their fifth bits, from qh's line k) */
			const uint8_t *qc = qi + qs_at + 512 * h;
			__m512i v[8], nib[8];
			_Pragma("GCC unroll 8")
			for (int k = 0; k < 8; k++) {
				PREFETCH(qc + R16_AHEAD_Q4_K(far) + 64 * k);
				v[k] = _mm512_loadu_si512(qc + 64 * k);
				nib[k] = _mm512_and_si512(v[k], low);
				if (T == DUET_Q5_K)
					nib[k] = _mm512_ternarylogic_epi32(
						nib[k], q5_k_fifth(_mm512_loadu_si512(qi + 64 * k), h, 0),
						bit4, 0xF8);
			}
			q4_k_sub(acc, nib, p, nb, 2 * h, dsc[2 * h]);
			/* one sequence keeps the chunk's lines in registers for the
			 * high nibbles (a load a line fewer: 5% faster from one core,
			 * BENCHMARKS.md, 2026-12-06 seventh); wider passes need the
			 * registers and read them again from L1 */
			_Pragma("GCC unroll 8")
			for (int k = 0; k < 8; k++) {
				if (nb > 1)
					v[k] = _mm512_loadu_si512(qc + 64 * k);
				nib[k] = _mm512_and_si512(_mm512_srli_epi16(v[k], 4), low);
				if (T == DUET_Q5_K)
					nib[k] = _mm512_ternarylogic_epi32(
						nib[k], q5_k_fifth(_mm512_loadu_si512(qi + 64 * k), h, 1),
						bit4, 0xF8);
			}
			q4_k_sub(acc, nib, p, nb, 2 * h + 1, dsc[2 * h + 1]);
		}
	}
	r16_acc_store(acc, y, ldy, m, nb);
}

INLINE void r16_tile_q4_k(const uint8_t *g, int nblk, const void *xv, int B, float *y, int ldy,
			  __mmask16 m, int add, const int nb, const int far)
{
	r16_tile_kquant(DUET_Q4_K, g, nblk, xv, B, y, ldy, m, add, nb, far);
}

INLINE void r16_tile_q5_k(const uint8_t *g, int nblk, const void *xv, int B, float *y, int ldy,
			  __mmask16 m, int add, const int nb, const int far)
{
	r16_tile_kquant(DUET_Q5_K, g, nblk, xv, B, y, ldy, m, add, nb, far);
}

/* The scales of Q6_K sub-block s of 16 rows, a lane each, from w (header
 * word s / 2 as words: sub-block s & ~1's the low, s | 1's the high). */
INLINE __m512i q6_scales(__m512i w, int s)
{
	return s % 2 ? _mm512_srai_epi32(w, 16) : _mm512_srai_epi32(_mm512_slli_epi32(w, 16), 16);
}

/* One sequence's dot product of a Q6_K sub-block's four value vectors
 * with its 16 activations, times the rows' scales, into sum. */
INLINE __m512i q6_sub(__m512i sum, const __m512i v[4], __m512i sc, const struct duet_q8k_block *a,
		      int s)
{
	const int8_t *aq = a->q + duet_q8k_pos(16 * s);
	__m512i dp = _mm512_setzero_si512();
	_Pragma("GCC unroll 4")
	for (int j = 0; j < 4; j++)
		dp = dpbusd_bcast(dp, v[j], aq + 4 * j);
	return _mm512_add_epi32(sum, _mm512_mullo_epi32(dp, sc));
}

/* Q6_K against nb activation rows (per-256, struct duet_q8k_block), as
 * the scalar definition: -32 x the sum over sub-blocks of the scale x
 * the activations' sum (the scales as word pairs against the sums, eight
 * vpdpwssd a sequence), then per 16-value sub-block the rows' values
 * (shared by every sequence) against the activations' dwords, times each
 * row's int8 scale (vpmulld), into one exact integer sum per super-block
 * and sequence; then one convert and multiply-add with d x the
 * activations' scale, as the row kernel's per-256 step. A block's
 * quants are read in order, 12 lines per quarter of a half
 * (duet_r16_dword_at): four of ql, whose low and high nibbles are values
 * l and 64 + l of the half, four of their qh, four of ql for values 32 +
 * l and 96 + l; each value's two bits of qh (bits 2 kind, 2 kind + 1, kind
 * = which 32 of the half) moved to bits 4 and 5 (16-bit shifts: the bits
 * kept come from one byte) and merged with its nibble by one ternary
 * logic op. Prefetched R16_AHEAD_Q6_K bytes ahead, line by line (one
 * distance: far is ignored). */
INLINE void r16_tile_q6_k(const uint8_t *g, int nblk, const void *xv, int B, float *y, int ldy,
			  __mmask16 m, int add, const int nb, const int far)
{
	(void)far;
	const struct duet_q8k_block *x = xv;
	const __m512i lo4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
	__m512 acc[DUET_R16_SEQS];
	r16_acc_load(acc, y, ldy, m, add, nb);
	for (int i = 0; i < nblk; i++) {
		const uint8_t *qi = g + duet_r16_quants_at(DUET_Q6_K, i, nblk);
		const uint8_t *hi = g + duet_r16_heads_at(DUET_Q6_K, i);
		const struct duet_q8k_block *p = x + (size_t)i * B;
		_Pragma("GCC unroll 5")
		for (int j = 0; j < 5; j++)
			PREFETCH(hi + R16_AHEAD_Q6_K + 64 * j);
		__m512i sum[DUET_R16_SEQS] = {0}, scw[8]; /* (the unused ones fold away) */
		_Pragma("GCC unroll 8")
		for (int w = 0; w < 8; w++) /* lane r: row r's scales 2w, 2w + 1 as words */
			scw[w] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(hi + 32 * w)));
		_Pragma("GCC unroll 16")
		for (int b = 0; b < nb; b++) {
			__m512i off = _mm512_setzero_si512();
			_Pragma("GCC unroll 8")
			for (int w = 0; w < 8; w++) {
				int32_t pair;
				memcpy(&pair, &p[b].bsums[2 * w], 4);
				off = _mm512_dpwssd_epi32(off, scw[w], _mm512_set1_epi32(pair));
			}
			sum[b] = _mm512_sub_epi32(sum[b], _mm512_slli_epi32(off, 5));
		}
		_Pragma("GCC unroll 4")
		for (int c = 0; c < 4; c++) {
			/* half h, quarter c % 2: lines 12 c.. */
			const int h = c / 2;
			const uint8_t *ql = qi + 64 * 12 * c;
			_Pragma("GCC unroll 12")
			for (int j = 0; j < 12; j++)
				PREFETCH(ql + R16_AHEAD_Q6_K + 64 * j);
			__m512i qh[4];
			_Pragma("GCC unroll 4")
			for (int j = 0; j < 4; j++)
				qh[j] = _mm512_loadu_si512(ql + 64 * (4 + j));
			_Pragma("GCC unroll 2")
			for (int k = 0; k < 2; k++) {
				/* kinds k (low nibbles) and k + 2 (high) */
				const int s_lo = 8 * h + 2 * k + c % 2, s_hi = s_lo + 4;
				__m512i vl[4], vh[4];
				_Pragma("GCC unroll 4")
				for (int j = 0; j < 4; j++) {
					const __m512i l = _mm512_loadu_si512(ql + 64 * (8 * k + j));
					vl[j] = _mm512_ternarylogic_epi32(_mm512_and_si512(l, lo4),
									  _mm512_slli_epi16(qh[j], k ? 2 : 4),
									  m30, 0xF8);
					vh[j] = _mm512_ternarylogic_epi32(
						_mm512_and_si512(_mm512_srli_epi16(l, 4), lo4),
						k ? _mm512_srli_epi16(qh[j], 2) : qh[j], m30, 0xF8);
				}
				const __m512i sc_lo = q6_scales(scw[s_lo / 2], s_lo);
				const __m512i sc_hi = q6_scales(scw[s_hi / 2], s_hi);
				_Pragma("GCC unroll 16")
				for (int b = 0; b < nb; b++) {
					sum[b] = q6_sub(sum[b], vl, sc_lo, p + b, s_lo);
					sum[b] = q6_sub(sum[b], vh, sc_hi, p + b, s_hi);
				}
			}
		}
		const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(hi + 256)));
		_Pragma("GCC unroll 16")
		for (int b = 0; b < nb; b++)
			acc[b] = acc_block(acc[b], sum[b], d, p[b].d);
	}
	r16_acc_store(acc, y, ldy, m, nb);
}

#define R16_CASE(TILE, NB)                                                              \
	case NB:                                                                        \
		TILE(g, nblk, x, B, y, ldy, m, add, NB, far);                           \
		return;
/* Each width of pass an instance with nb constant; Q4_K's widths past 8
 * share one (its sequence loop is unrolled by 8 and its accumulators live
 * in memory there anyway): eight more instances of its tile doubled the
 * file's compile time, most of the test run's build. */
#define R16_CASES_8(TILE)                                                               \
	R16_CASE(TILE, 1) R16_CASE(TILE, 2) R16_CASE(TILE, 3) R16_CASE(TILE, 4)         \
	R16_CASE(TILE, 5) R16_CASE(TILE, 6) R16_CASE(TILE, 7) R16_CASE(TILE, 8)
#define R16_CASES_16(TILE)                                                              \
	R16_CASES_8(TILE) R16_CASE(TILE, 9) R16_CASE(TILE, 10) R16_CASE(TILE, 11)       \
	R16_CASE(TILE, 12) R16_CASE(TILE, 13) R16_CASE(TILE, 14) R16_CASE(TILE, 15)     \
	R16_CASE(TILE, 16)
#define R16_CASES_8_ANY(TILE)                                                           \
	R16_CASES_8(TILE)                                                               \
	default:                                                                        \
		TILE(g, nblk, x, B, y, ldy, m, add, nb, far);
#define DEFINE_R16(name, TILE, CASES)                                                   \
	void name(const uint8_t *g, int nblk, const void *x, int B, int nb,             \
			 float *y, int ldy, int nrows, int add, int far)                    \
	{                                                                               \
		__mmask16 m = tail_mask(nrows);                                         \
		switch (nb) {                                                           \
			CASES(TILE)                                                     \
		}                                                                       \
	}
DEFINE_R16(duet_avx512_q8_0_r16, R16_TILE_Q8_0, R16_CASES_16)
DEFINE_R16(duet_avx512_q4_0_r16, R16_TILE_Q4_0, R16_CASES_16)
/* (widths past 8 share one instance, as Q4_K's: compile time) */
DEFINE_R16(duet_avx512_q4_1_r16, R16_TILE_Q4_1, R16_CASES_8_ANY)
DEFINE_R16(duet_avx512_q5_0_r16, R16_TILE_Q5_0, R16_CASES_8_ANY)
DEFINE_R16(duet_avx512_q5_1_r16, R16_TILE_Q5_1, R16_CASES_8_ANY)
DEFINE_R16(duet_avx512_q4_k_r16, r16_tile_q4_k, R16_CASES_8_ANY)
DEFINE_R16(duet_avx512_q5_k_r16, r16_tile_q5_k, R16_CASES_8_ANY)
DEFINE_R16(duet_avx512_q6_k_r16, r16_tile_q6_k, R16_CASES_8_ANY)

/* ---- decode: one activation row against four groups at once ----
 * A thread's packed groups are one sequential stream, and a core reads a
 * few streams faster than one (the row tiles' quarters, struct tgeo):
 * with one sequence a thread's groups are four quarters (engine/matmul.c),
 * and these take block i of each in turn, four streams and four
 * accumulators. Within a block the four groups go line by line (64 bytes
 * of each in turn, as the row tiles read their rows) and share each
 * broadcast of the activations: reading a group's eight lines at a go ran
 * at 55-62 GB/s over a long run where the row tiles' F16 read 72-77
 * (BENCHMARKS.md, 2026-12-05 later). The integer sums are exact in any
 * order, and each group's float steps are r16_block's, block after block:
 * the same bits as the 16-row tiles. (Slices of several blocks of each
 * group in turn were slower than one stream, and Q4_K's four groups
 * slower than its one: BENCHMARKS.md.) */
/* Near and far (kernels.h, far): one core alone from memory read Q4_0
 * 4-8% faster 2048 bytes ahead than 1024, Q4_1 3-5%, Q5_0 13%, Q5_1 18%
 * (1536 about as 2048, 3072 and 4096 slower); the model on two threads
 * while the memory was slow decoded 2-3% slower (BENCHMARKS.md,
 * 2026-12-06 sixth). */
#define R16X4_AHEAD(far) ((far) ? 2048 : 1024)
/* Whether the four-group kernel of type T prefetches its lines (quants
 * and headers) R16X4_AHEAD(far) bytes ahead. Q8_0 reads faster on the
 * hardware prefetcher alone (decode at 94% of the bandwidth against 83%
 * in the slow state, 79% against 77% in the fast one), the nibble types
 * the same or slower without; prefetching the headers without the quants
 * was slower than either (BENCHMARKS.md, 2026-12-06 fifth). */
INLINE int r16x4_prefetches(enum duet_dtype T)
{
	return T != DUET_Q8_0;
}

INLINE void r16x4_block(const enum duet_dtype T, const uint8_t *const q[DUET_R16_STREAMS], int i,
			int n, const struct duet_q8a_pair *p, int hh, __m512 acc[DUET_R16_STREAMS],
			const int far)
{
	const size_t at = duet_r16_quants_at(T, i, n), ha = duet_r16_heads_at(T, i);
	const int lines = (int)duet_r16_block_bytes(T) / 64;
	const int8_t *aq = p->q + 32 * hh;
	int32_t corr = p->corr[8 * hh];
	__m512i dp[DUET_R16_STREAMS], flo[DUET_R16_STREAMS], fhi[DUET_R16_STREAMS];
	_Pragma("GCC unroll 4")
	for (int g = 0; g < DUET_R16_STREAMS; g++) {
		dp[g] = _mm512_set1_epi32(r16_offset(T, corr));
		flo[g] = fhi[g] = _mm512_setzero_si512();
		if (r16_has_fifth(T))
			r16_fifth_load(q[g] + ha + 32 * (1 + r16_has_min(T)), &flo[g], &fhi[g]);
	}
	_Pragma("GCC unroll 8")
	for (int j = 0; j < lines; j++) {
		const __m512i a = _mm512_set1_epi32(dword_at(aq + 4 * j));
		/* the nibble types: a line's high nibbles are values 16 + 4j.. */
		const __m512i a4 =
			T == DUET_Q8_0 ? a : _mm512_set1_epi32(dword_at(aq + 4 * (j + 4)));
		_Pragma("GCC unroll 4")
		for (int g = 0; g < DUET_R16_STREAMS; g++) {
			if (r16x4_prefetches(T))
				PREFETCH(q[g] + at + R16X4_AHEAD(far) + 64 * j);
			__m512i v = _mm512_loadu_si512(q[g] + at + 64 * j);
			if (T == DUET_Q8_0) {
				dp[g] = _mm512_dpbusd_epi32(dp[g], v, a);
				continue;
			}
			__m512i lo, hi;
			r16_nibbles(T, v, flo[g], fhi[g], j, &lo, &hi);
			dp[g] = _mm512_dpbusd_epi32(dp[g], lo, a);
			dp[g] = _mm512_dpbusd_epi32(dp[g], hi, a4);
		}
	}
	/* a unit's headers: one line for Q8_0 and Q4_0, up to four */
	const int head_lines = (int)(duet_r16_unit(T) * duet_r16_head_bytes(T) + 63) / 64;
	_Pragma("GCC unroll 4")
	for (int g = 0; g < DUET_R16_STREAMS; g++) {
		const uint8_t *h = q[g] + ha;
		if (r16x4_prefetches(T) && i % duet_r16_unit(T) == 0)
			_Pragma("GCC unroll 4")
			for (int l = 0; l < head_lines; l++)
				PREFETCH(h + R16X4_AHEAD(far) + 64 * l);
		__m512 ws = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
		acc[g] = r16_acc(T, acc[g], dp[g], ws, r16_mins(T, h), p->d[8 * hh], corr);
	}
}

#define DEFINE_R16X4(name, T)                                                           \
	void name(const uint8_t *const q[DUET_R16_STREAMS], int nblk,                   \
			 const void *x, float *const y[DUET_R16_STREAMS], int add, int far)     \
	{                                                                               \
		__m512 acc[DUET_R16_STREAMS];                                           \
		for (int g = 0; g < DUET_R16_STREAMS; g++)                              \
			acc[g] = add ? _mm512_loadu_ps(y[g]) : _mm512_setzero_ps();     \
		for (int i = 0; i < nblk; i++)                                          \
			r16x4_block(T, q, i, nblk, (const struct duet_q8a_pair *)x + (i >> 1), \
				    i & 1, acc, far);                                   \
		for (int g = 0; g < DUET_R16_STREAMS; g++)                              \
			_mm512_storeu_ps(y[g], acc[g]);                                 \
	}
DEFINE_R16X4(duet_avx512_q8_0_r16x4, DUET_Q8_0)
DEFINE_R16X4(duet_avx512_q4_0_r16x4, DUET_Q4_0)
DEFINE_R16X4(duet_avx512_q4_1_r16x4, DUET_Q4_1)
DEFINE_R16X4(duet_avx512_q5_0_r16x4, DUET_Q5_0)
DEFINE_R16X4(duet_avx512_q5_1_r16x4, DUET_Q5_1)
