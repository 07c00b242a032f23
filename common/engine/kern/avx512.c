/* AVX-512 kernels (F, BW, VL, DQ, VNNI, plus F16C for half conversion).
 * Built with -mavx512* flags; only called when the CPU has them. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "base/cpu.h"
#include "engine/kern/avx512_attn.h"
#include "engine/kern/avx512_groups.h"
#include "engine/kern/avx512_quant.h"
#include "engine/kern/avx512_util.h"
#include "engine/kern/kernels.h"
#include "engine/repack.h"

/* A tile is NR = 4 weight rows by up to MAX_NB = 4 activation rows: 16
 * accumulators, the weights of a step converted once into 8 registers and
 * used by every activation row. Tiles of 2 x 8 and 1 x 16 were tried: they
 * re-read the activations from L2 for every block (BENCHMARKS.md). */
#define NR 4
#define MAX_NB 4
/* K per slice when B > MAX_NB (a multiple of 64, a q8 pair): the f32
 * panel's slice for 16 rows is 32 KiB, in L1 with a block's weights.
 * Measured in BENCHMARKS.md. */
#define KC_F32 512

/* Where a tile's rows are: row r at w + r * rs, its result at y + r * ys,
 * and what each row's step prefetches pf bytes further on.
 *
 * One decode step streams every weight from memory once, and a core reads
 * fastest from a few long sequential streams: a tile of four adjacent rows
 * starts four new short streams every tile (4 KiB each for an F16 row of
 * 2048), which the hardware prefetcher learns again each time, and which
 * ran at 0.65x the machine's read bandwidth even with the next tile
 * prefetched. So with one group of sequences (B <= MAX_NB, decode) a
 * thread's rows are four quarters, and a tile takes the i-th row of each:
 * each quarter is read start to end as one stream, prefetched a fixed
 * distance ahead (which runs on into the quarter's next row). Wide batches
 * are compute-bound and keep adjacent rows (the next block prefetched).
 * Each row's dot product is the same either way, bit for bit. Measured in
 * BENCHMARKS.md, issue 18. */
struct tgeo {
	size_t rs, pf;
	int ys;
};

/* A tile's result: the sum over its K, or added to what earlier slices of
 * K left (add). */
INLINE void store(float *y, float v, int add)
{
	*y = add ? *y + v : v;
}

/* ---- 32 weights as two f32 vectors, per storage type ---- */

/* A tile's nr x nb accumulators: cleared, and summed into y[b * ldy + r]
 * (added to it with add). Inlined with constant nr and nb, the loops
 * unroll away. */
INLINE void acc_zero(__m512 acc[4][MAX_NB], const int nr, const int nb)
{
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 16")
		for (int b = 0; b < nb; b++)
			acc[r][b] = _mm512_setzero_ps();
}

INLINE void acc_store(__m512 acc[4][MAX_NB], float *y, int ldy, int ys, int add,
		      const int nr, const int nb)
{
	/* Every tile's sums in one tree, whatever its shape: a reduction per
	 * accumulator cost wide batches, which end a tile every slice of K,
	 * 8-17% of a product of 8-16 sequences in cache (BENCHMARKS.md,
	 * 2026-12-07); and a row's sum is the same tree's in a tile of one
	 * row or of four, so how rows fall into tiles changes no bit. */
	__m512 v[16];
	_Pragma("GCC unroll 16")
	for (int i = 0; i < 16; i++)
		v[i] = i / 4 < nr && i % 4 < nb ? acc[i / 4][i % 4] : _mm512_setzero_ps();
	float s[16];
	_mm512_storeu_ps(s, hsum16(v));
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int b = 0; b < nb; b++)
			store(y + (size_t)b * ldy + (size_t)r * ys, s[r * 4 + b], add);
}

INLINE __m512 load_h_tail(const uint16_t *p, __mmask16 m)
{
	return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

INLINE __m512 bf16_to_ps(__m256i h)
{
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

INLINE __m512 q8_scale(const uint8_t *blk)
{
	uint16_t h;
	memcpy(&h, blk, 2);
	return _mm512_set1_ps(_cvtsh_ss(h));
}

INLINE __m512 q8_half(const uint8_t *blk, int half, __m512 d)
{
	__m128i q = _mm_loadu_si128((const __m128i *)(blk + 2 + 16 * half));
	return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
}

/* Byte offset of weight k in a row (k a multiple of 32): inline, as a call
 * in the loop would spill every accumulator (no vector register survives
 * a call). */
INLINE size_t offset_of(enum duet_dtype t, int k)
{
	switch (t) {
	case DUET_F32:
		return (size_t)k * 4;
	case DUET_F16:
	case DUET_BF16:
		return (size_t)k * 2;
	case DUET_Q8_0:
		return (size_t)(k / DUET_Q8_0_BLOCK) * DUET_Q8_0_BYTES;
	default: /* the types with no row kernel here (the 16-row kernels
		  * address their groups by unit) */
		break;
	}
	return 0;
}

/* Weights [k, k + 32) of a row into a and b; `rem` < 32 reads only that
 * many (the row's tail; never for q8_0, whose rows are whole blocks). */
INLINE void load32(enum duet_dtype t, const void *row, int k, int rem, __m512 *a, __m512 *b)
{
	__mmask16 m0 = tail_mask(rem), m1 = tail_mask(rem - 16 > 0 ? rem - 16 : 0);
	switch (t) {
	case DUET_F32: {
		const float *p = (const float *)row + k;
		if (rem >= 32) {
			*a = _mm512_loadu_ps(p);
			*b = _mm512_loadu_ps(p + 16);
		} else {
			*a = _mm512_maskz_loadu_ps(m0, p);
			*b = _mm512_maskz_loadu_ps(m1, p + 16);
		}
		break;
	}
	case DUET_F16: {
		const uint16_t *p = (const uint16_t *)row + k;
		if (rem >= 32) {
			*a = load_h(p);
			*b = load_h(p + 16);
		} else {
			*a = load_h_tail(p, m0);
			*b = load_h_tail(p + 16, m1);
		}
		break;
	}
	case DUET_BF16: {
		const uint16_t *p = (const uint16_t *)row + k;
		if (rem >= 32) {
			*a = bf16_to_ps(_mm256_loadu_si256((const __m256i *)p));
			*b = bf16_to_ps(_mm256_loadu_si256((const __m256i *)(p + 16)));
		} else {
			*a = bf16_to_ps(_mm256_maskz_loadu_epi16(m0, p));
			*b = bf16_to_ps(_mm256_maskz_loadu_epi16(m1, p + 16));
		}
		break;
	}
	case DUET_Q8_0: {
		const uint8_t *blk = (const uint8_t *)row + (size_t)(k / DUET_Q8_0_BLOCK) * DUET_Q8_0_BYTES;
		__m512 d = q8_scale(blk);
		*a = q8_half(blk, 0, d);
		*b = q8_half(blk, 1, d);
		break;
	}
	default: /* instantiated for the four types above only */
		*a = *b = _mm512_setzero_ps();
		break;
	}
}

/* One k-step of a tile: the nr rows' weights [k, k + 32) converted once,
 * then each activation row against all of them. x points at the step's
 * first chunk of the tile's first row in an f32 panel; the second chunk is
 * cs floats further (the panel's B rows of a chunk). `rem` < 32 only for
 * the row's tail, where the panel holds zeros past K. */
INLINE void step_f(enum duet_dtype t, const uint8_t *w, struct tgeo g, int k, int rem,
		   const float *x, size_t cs, __m512 acc[4][MAX_NB], const int nr, const int nb)
{
	__m512 wv[4][2];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++) {
		const uint8_t *row = w + (size_t)r * g.rs;
		const uint8_t *next = row + offset_of(t, k) + g.pf;
		PREFETCH(next);
		if (t == DUET_F32 || t == DUET_Q8_0) /* 128 and 68 bytes a step */
			PREFETCH(next + 64);
		load32(t, row, k, rem, &wv[r][0], &wv[r][1]);
		/* Several activation rows use each weight vector: keep it in a
		 * register. Left alone, gcc 12 folds the f32 loads into every
		 * row's FMA for 2 and 3 rows (each weight read 2-3 times from
		 * L1), and steps of 3, 6 and 7 sequences took longer than of 4
		 * and 8 (BENCHMARKS.md, 2026-12-04 session 3). One row reads each
		 * once anyway. */
		if (nb > 1)
			__asm__("" : "+v"(wv[r][0]), "+v"(wv[r][1]));
	}
	_Pragma("GCC unroll 16")
	for (int b = 0; b < nb; b++) {
		__m512 x0 = _mm512_loadu_ps(x + b * DUET_PANEL_CHUNK);
		__m512 x1 = _mm512_loadu_ps(x + cs + b * DUET_PANEL_CHUNK);
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			acc[r][b] = _mm512_fmadd_ps(wv[r][0], x0, acc[r][b]);
			acc[r][b] = _mm512_fmadd_ps(wv[r][1], x1, acc[r][b]);
		}
	}
}

/* One tile with f32 activations: rows [0, nr) of w against rows [0, nb)
 * of a panel of B rows (x at the tile's first row), into y[b * ldy + r]. */
INLINE void tile_f(enum duet_dtype t, const uint8_t *w, struct tgeo g, int K, const float *x,
		   int B, float *y, int ldy, int add, const int nr, const int nb)
{
	__m512 acc[4][MAX_NB];
	acc_zero(acc, nr, nb);
	const size_t cs = (size_t)B * DUET_PANEL_CHUNK;
	int k = 0;
	for (; k + 32 <= K; k += 32, x += 2 * cs)
		step_f(t, w, g, k, 32, x, cs, acc, nr, nb);
	if (k < K)
		step_f(t, w, g, k, K - k, x, cs, acc, nr, nb);
	acc_store(acc, y, ldy, g.ys, add, nr, nb);
}

/* ---- bf16 weights against bf16 activation pairs (AVX512_BF16) ---- */

/* 32 bf16 weights of a row from k, zero past `rem`. */
INLINE __m512bh load_bh(const uint8_t *row, int k, int rem)
{
	const uint16_t *p = (const uint16_t *)row + k;
	if (rem >= 32)
		return (__m512bh)_mm512_loadu_si512(p);
	return (__m512bh)_mm512_maskz_loadu_epi16((__mmask32)((1ull << rem) - 1), p);
}

/* One step of 32 values: x points at the step's chunk of the tile's first
 * row in a bf16 panel; halves 2 takes hi and lo, 1 hi alone. */
INLINE void step_bf(const uint8_t *w, struct tgeo g, int k, int rem, const struct duet_bf16x2 *x,
		    __m512 acc[4][MAX_NB], const int nr, const int nb, const int halves)
{
	__m512bh wv[4];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++) {
		const uint8_t *row = w + (size_t)r * g.rs;
		PREFETCH(row + (size_t)k * 2 + g.pf);
		wv[r] = load_bh(row, k, rem);
	}
	_Pragma("GCC unroll 16")
	for (int b = 0; b < nb; b++) {
		__m512bh hi = (__m512bh)_mm512_loadu_si512(x[b].hi);
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++)
			acc[r][b] = _mm512_dpbf16_ps(acc[r][b], wv[r], hi);
		if (halves == 2) {
			__m512bh lo = (__m512bh)_mm512_loadu_si512(x[b].lo);
			_Pragma("GCC unroll 4")
			for (int r = 0; r < nr; r++)
				acc[r][b] = _mm512_dpbf16_ps(acc[r][b], wv[r], lo);
		}
	}
}

INLINE void tile_bf(const uint8_t *w, struct tgeo g, int K, const struct duet_bf16x2 *x, int B,
		    float *y, int ldy, int add, const int nr, const int nb, const int halves)
{
	__m512 acc[4][MAX_NB];
	acc_zero(acc, nr, nb);
	int k = 0;
	for (; k + 32 <= K; k += 32, x += B)
		step_bf(w, g, k, 32, x, acc, nr, nb, halves);
	if (k < K)
		step_bf(w, g, k, K - k, x, acc, nr, nb, halves);
	acc_store(acc, y, ldy, g.ys, add, nr, nb);
}

/* duet_panel_pack_bf16_ref, bit for bit: vcvtneps2bf16 rounds to nearest
 * even and treats subnormal inputs as zero, as the reference does. */
static void pack_bf16(const float *x, int ldx, int K, int B, struct duet_bf16x2 *panel)
{
	int chunks = (K + DUET_BF16_CHUNK - 1) / DUET_BF16_CHUNK;
	for (int c = 0; c < chunks; c++)
		for (int b = 0; b < B; b++) {
			struct duet_bf16x2 *o = &panel[(size_t)c * B + b];
			int k0 = c * DUET_BF16_CHUNK, left = K - k0;
			_Pragma("GCC unroll 2")
			for (int h = 0; h < 2; h++) {
				int n = left - 16 * h;
				__m512 v = _mm512_maskz_loadu_ps(tail_mask(n > 0 ? n : 0),
								 x + (size_t)b * ldx + k0 + 16 * h);
				__m256bh hi = _mm512_cvtneps_pbh(v);
				__m512 back = _mm512_castsi512_ps(
					_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)hi), 16));
				__m256bh lo = _mm512_cvtneps_pbh(_mm512_sub_ps(v, back));
				_mm256_storeu_si256((__m256i *)(o->hi + 16 * h), (__m256i)hi);
				_mm256_storeu_si256((__m256i *)(o->lo + 16 * h), (__m256i)lo);
			}
		}
}

/* ---- the tile shapes, each an instance with constant nr and nb ---- */

#define NB_CASES_4(F, NR) F(NR, 1) F(NR, 2) F(NR, 3) F(NR, 4)

#define F_CASE(R, NB)                                                                   \
	case (R) * 32 + (NB):                                                           \
		tile_f(T, w, g, K, x, B, y, ldy, add, R, NB);                          \
		return;

/* Dispatches a tile of (nr, nb) to its instance for type T. */
#define DEFINE_TILE_F(name, TYPE)                                                       \
	static void name(const uint8_t *w, struct tgeo g, int K, const float *x, int B,     \
			 float *y, int ldy, int add, int nr, int nb)                     \
	{                                                                               \
		const enum duet_dtype T = TYPE;                                         \
		switch (nr * 32 + nb) {                                                 \
			NB_CASES_4(F_CASE, 4)                                           \
			NB_CASES_4(F_CASE, 1)                                           \
		}                                                                       \
	}
DEFINE_TILE_F(tiles_f32, DUET_F32)
DEFINE_TILE_F(tiles_f16, DUET_F16)
DEFINE_TILE_F(tiles_bf16, DUET_BF16)
DEFINE_TILE_F(tiles_q8_0, DUET_Q8_0)


#define BF_CASE(R, NB)                                                                  \
	case (R) * 32 + (NB):                                                           \
		tile_bf(w, g, K, x, B, y, ldy, add, R, NB, HALVES);                    \
		return;
#define DEFINE_TILES_BF(name, H)                                                        \
	static void name(const uint8_t *w, struct tgeo g, int K, const struct duet_bf16x2 *x, \
			 int B, float *y, int ldy, int add, int nr, int nb)              \
	{                                                                               \
		const int HALVES = H;                                                   \
		switch (nr * 32 + nb) {                                                 \
			NB_CASES_4(BF_CASE, 4)                                          \
			NB_CASES_4(BF_CASE, 1)                                          \
		}                                                                       \
	}
DEFINE_TILES_BF(tiles_bf, 2)
DEFINE_TILES_BF(tiles_bf_hi, 1)

/* Rows [n0, n1) against the B activation rows.
 *
 * One group (B <= MAX_NB, decode) runs each tile over the whole of K: every
 * weight is read once, and accumulates in registers throughout; its rows
 * are four quarters, a tile of NR the i-th row of each (struct tgeo), the
 * rows past 4 x (n1 - n0) / 4 row by row. More groups take blocks of NR
 * adjacent rows (a short last block row by row) in groups of MAX_NB
 * sequences, and K in slices of KC: a slice of the panel for all B rows
 * stays in L1 while every block's slice of weights passes through it once
 * per group (from L1 after the first), where whole rows would re-read the
 * panel from L2 for every block and the step would wait on L2 (measured:
 * BENCHMARKS.md). OFF is a slice's offset into the panel, in XT units.
 * Wide batches (prefill) take the activation rows BC at a time, so that
 * the panel's slice stays in L2 while the weights pass (all 512 rows of a
 * prompt were read from L3 again for every block of weight rows). */
#define BC 64
/* Bytes ahead that each of a decode tile's streams is prefetched, near and
 * far (kernels.h, far). One core alone from memory read F16 7.5% and Q5_K
 * 18% faster 2048 bytes ahead, BF16 the same, F32 3% slower; in the model
 * F16 decoded 3.9 points faster in the fast state and 3.7 slower in the
 * slow one at 2048 always, and 3 faster and the same with the distance
 * chosen (BENCHMARKS.md, 2026-12-06 sixth and seventh). */
#define AHEAD_B1(far) ((far) ? 2048 : 1024)
#define DEFINE_MATMUL(name, tiles, XT, OFF)                                             \
	static void name(const void *wv, size_t rb, int K, const void *xv, int B,       \
			 float *y, int ldy, int n0, int n1, int far)                     \
	{                                                                               \
		const uint8_t *w = wv;                                                  \
		const XT *x = xv;                                                       \
		if (B <= MAX_NB) {                                                      \
			int q = (n1 - n0) / NR;                                         \
			struct tgeo g4 = {(size_t)q * rb, AHEAD_B1(far), q};            \
			struct tgeo g1 = {rb, AHEAD_B1(far), 1};                        \
			for (int i = 0; i < q; i++)                                     \
				tiles(w + (size_t)(n0 + i) * rb, g4, K, x, B, y + n0 + i, \
				      ldy, 0, NR, B);                                   \
			for (int n = n0 + NR * q; n < n1; n++)                          \
				tiles(w + (size_t)n * rb, g1, K, x, B, y + n, ldy, 0, 1, B); \
			return;                                                         \
		}                                                                       \
		for (int k0 = 0; k0 < K; k0 += KC_F32) {                                \
			int kn = K - k0 < KC_F32 ? K - k0 : KC_F32;                     \
			size_t wo = offset_of(T, k0);                                   \
			for (int bc = 0; bc < B; bc += BC) {                            \
				int be = B - bc < BC ? B : bc + BC;                     \
				for (int n = n0; n < n1;) {                             \
					int r = n1 - n >= NR ? NR : 1;                  \
					struct tgeo g = {rb, (size_t)r * rb, 1};        \
					for (int b = bc; b < be; b += MAX_NB)           \
						tiles(w + (size_t)n * rb + wo, g, kn,   \
						      x + (OFF) + (size_t)b * ROW, B,   \
						      y + (size_t)b * ldy + n, ldy,     \
						      k0 > 0, r,                        \
						      be - b < MAX_NB ? be - b : MAX_NB); \
					n += r;                                         \
				}                                                       \
			}                                                               \
		}                                                                       \
	}
#define T DUET_F32
#define ROW DUET_PANEL_CHUNK
DEFINE_MATMUL(matmul_f32, tiles_f32, float, (size_t)k0 * B)
#undef T
#define T DUET_F16
DEFINE_MATMUL(matmul_f16, tiles_f16, float, (size_t)k0 * B)
#undef T
#define T DUET_BF16
DEFINE_MATMUL(matmul_bf16, tiles_bf16, float, (size_t)k0 * B)
#undef T
#define T DUET_Q8_0
DEFINE_MATMUL(matmul_q8_0, tiles_q8_0, float, (size_t)k0 * B)
#undef ROW
#define ROW 1
#undef T
#define T DUET_BF16
DEFINE_MATMUL(matmul_bf16_bf16, tiles_bf, struct duet_bf16x2, (size_t)(k0 / 32) * B)
DEFINE_MATMUL(matmul_bf16_hi, tiles_bf_hi, struct duet_bf16x2, (size_t)(k0 / 32) * B)
#undef ROW
#undef T

/* ---- conversions ---- */

static void cvt_f16(const void *src, float *dst, int n)
{
	const uint16_t *h = src;
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(dst + i, load_h(h + i));
	if (i < n)
		_mm512_mask_storeu_ps(dst + i, tail_mask(n - i), load_h_tail(h + i, tail_mask(n - i)));
}

static void cvt_bf16(const void *src, float *dst, int n)
{
	const uint16_t *h = src;
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(dst + i, bf16_to_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
	if (i < n)
		_mm512_mask_storeu_ps(dst + i, tail_mask(n - i),
				      bf16_to_ps(_mm256_maskz_loadu_epi16(tail_mask(n - i), h + i)));
}

static void cvt_i8(const void *src, float d, float *dst, int n)
{
	const int8_t *q = src;
	__m512 dv = _mm512_set1_ps(d);
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
								_mm_loadu_si128((const __m128i *)(q + i)))),
							dv));
	for (; i < n; i++)
		dst[i] = d * (float)q[i];
}

static void cvt_q8_0(const void *src, float *dst, int n)
{
	const uint8_t *p = src;
	for (int k = 0; k < n; k += DUET_Q8_0_BLOCK, p += DUET_Q8_0_BYTES) {
		__m512 d = q8_scale(p);
		_mm512_storeu_ps(dst + k, q8_half(p, 0, d));
		_mm512_storeu_ps(dst + k + 16, q8_half(p, 1, d));
	}
}

/* The scalar table's quant_q8a, bit for bit: max|x| per block, d =
 * amax / 127, q = x * (1 / d) rounded to nearest even. */
static void quant_q8a(const float *x, int K, struct duet_q8a_pair *panel, int B, int b)
{
	const __m512 sign = _mm512_set1_ps(-0.0f);
	int pairs = (K + 63) / 64;
	for (int p = 0; p < pairs; p++) {
		struct duet_q8a_pair *o = &panel[(size_t)p * B + b];
		__m512i corr = _mm512_setzero_si512();
		__m512 dv = _mm512_setzero_ps();
		__m128i qs[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(),
				 _mm_setzero_si128()};
		for (int h = 0; h < 2; h++) {
			int k0 = p * 64 + h * 32;
			if (k0 >= K)
				break;
			__m512 a = _mm512_loadu_ps(x + k0), c = _mm512_loadu_ps(x + k0 + 16);
			float amax = _mm512_reduce_max_ps(
				_mm512_max_ps(_mm512_andnot_ps(sign, a), _mm512_andnot_ps(sign, c)));
			float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
			__m512 idv = _mm512_set1_ps(id);
			__m512i ia = _mm512_cvtps_epi32(_mm512_mul_ps(a, idv));
			__m512i ic = _mm512_cvtps_epi32(_mm512_mul_ps(c, idv));
			qs[2 * h] = _mm512_cvtsepi32_epi8(ia);
			qs[2 * h + 1] = _mm512_cvtsepi32_epi8(ic);
			int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(ia, ic));
			corr = _mm512_mask_set1_epi32(corr, (__mmask16)(1u << (8 * h)), -128 * sum);
			dv = _mm512_mask_mov_ps(dv, (__mmask16)(0xffu << (8 * h)), _mm512_set1_ps(d));
		}
		_mm_storeu_si128((__m128i *)o->q, qs[0]);
		_mm_storeu_si128((__m128i *)(o->q + 16), qs[1]);
		_mm_storeu_si128((__m128i *)(o->q + 32), qs[2]);
		_mm_storeu_si128((__m128i *)(o->q + 48), qs[3]);
		_mm512_storeu_si512(o->corr, corr);
		_mm512_storeu_ps(o->d, dv);
	}
}

/* The scalar table's quant_q8k, bit for bit. */
static void quant_q8k(const float *x, int K, struct duet_q8k_block *panel, int B, int b)
{
	const __m512 sign = _mm512_set1_ps(-0.0f);
	int blocks = (K + DUET_Q8K - 1) / DUET_Q8K;
	for (int s = 0; s < blocks; s++) {
		struct duet_q8k_block *o = &panel[(size_t)s * B + b];
		int k0 = s * DUET_Q8K, n = K - k0 < DUET_Q8K ? K - k0 : DUET_Q8K;
		const float *v = x + k0;
		__m512 mx = _mm512_setzero_ps();
		for (int i = 0; i < DUET_Q8K; i += 16)
			mx = _mm512_max_ps(mx, _mm512_andnot_ps(sign, _mm512_maskz_loadu_ps(
								       tail_mask(n - i > 0 ? n - i : 0), v + i)));
		float amax = _mm512_reduce_max_ps(mx);
		float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
		__m512 idv = _mm512_set1_ps(id);
		for (int i = 0; i < DUET_Q8K; i += 16) {
			__m512 a = _mm512_maskz_loadu_ps(tail_mask(n - i > 0 ? n - i : 0), v + i);
			__m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(a, idv));
			_mm_store_si128((__m128i *)(o->q + duet_q8k_pos(i)), _mm512_cvtsepi32_epi8(q));
			o->bsums[i / 16] = (int16_t)_mm512_reduce_add_epi32(q);
		}
		o->d = d;
		memset(o->pad, 0, sizeof o->pad);
	}
}

static float read4(const float *x, long n)
{
	long q = n / 4;
	__m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	for (long i = 0; i < q; i += 16) {
		s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
		s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + q + i));
		s2 = _mm512_add_ps(s2, _mm512_loadu_ps(x + 2 * q + i));
		s3 = _mm512_add_ps(s3, _mm512_loadu_ps(x + 3 * q + i));
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* ---- the compute ceiling ---- */

/* Twelve instructions INSN over the accumulators a0..a11 (locals: an
 * array would be stored back every round) with the same two sources, in
 * one asm block: written as builtins, gcc 12 keeps a vpdpbusd's
 * accumulator out of place and copies it for every instruction, which
 * would measure the copies. */
#define PEAK_ROUND(INSN)                                                                    \
	__asm__(INSN " %[y], %[x], %[a0]\n\t" INSN " %[y], %[x], %[a1]\n\t"                 \
		INSN " %[y], %[x], %[a2]\n\t" INSN " %[y], %[x], %[a3]\n\t"                 \
		INSN " %[y], %[x], %[a4]\n\t" INSN " %[y], %[x], %[a5]\n\t"                 \
		INSN " %[y], %[x], %[a6]\n\t" INSN " %[y], %[x], %[a7]\n\t"                 \
		INSN " %[y], %[x], %[a8]\n\t" INSN " %[y], %[x], %[a9]\n\t"                 \
		INSN " %[y], %[x], %[a10]\n\t" INSN " %[y], %[x], %[a11]"                     \
		: [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4),    \
		  [a5] "+v"(a5), [a6] "+v"(a6), [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9),    \
		  [a10] "+v"(a10), [a11] "+v"(a11)                                              \
		: [x] "v"(x), [y] "v"(y))

_Static_assert(DUET_PEAK_CHAINS == 12, "PEAK_ROUND writes twelve chains");

/* Chain i's starting value: distinct (equal chains would be merged into
 * one), and with the small sources below no chain overflows or reaches a
 * denormal. */
INLINE __m512 peak_start(enum duet_peak_op op, int i)
{
	return op == DUET_PEAK_DOT_I8 ? _mm512_castsi512_ps(_mm512_set1_epi32(i))
				      : _mm512_set1_ps(1.0f + (float)i);
}

static double peak(enum duet_peak_op op, long n, float *sink)
{
	if (op == DUET_PEAK_DOT_BF16 && !duet_cpu_has_avx512bf16())
		return 0;
	__m512 a0 = peak_start(op, 0), a1 = peak_start(op, 1), a2 = peak_start(op, 2),
	       a3 = peak_start(op, 3), a4 = peak_start(op, 4), a5 = peak_start(op, 5),
	       a6 = peak_start(op, 6), a7 = peak_start(op, 7), a8 = peak_start(op, 8),
	       a9 = peak_start(op, 9), a10 = peak_start(op, 10), a11 = peak_start(op, 11);
	__m512 x = _mm512_set1_ps(1e-3f), y = _mm512_set1_ps(0.5f);
	double per = 0;
	switch (op) {
	case DUET_PEAK_FMA:
		for (long r = 0; r < n; r++)
			PEAK_ROUND("vfmadd231ps");
		per = 2 * 16;
		break;
	case DUET_PEAK_DOT_I8:
		x = _mm512_castsi512_ps(_mm512_set1_epi8(1));
		for (long r = 0; r < n; r++)
			PEAK_ROUND("vpdpbusd");
		per = 2 * 64;
		break;
	case DUET_PEAK_DOT_BF16:
		x = _mm512_castsi512_ps(_mm512_set1_epi16(0x3a83)); /* bf16 1e-3 */
		y = _mm512_castsi512_ps(_mm512_set1_epi16(0x3f00)); /* bf16 0.5 */
		for (long r = 0; r < n; r++)
			PEAK_ROUND("vdpbf16ps");
		per = 2 * 32;
		break;
	}
	__m512 c[DUET_PEAK_CHAINS] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
	__m512 s = _mm512_setzero_ps();
	for (int i = 0; i < DUET_PEAK_CHAINS; i++) /* the dot products' sums are integers */
		s = _mm512_add_ps(s, op == DUET_PEAK_DOT_I8
					     ? _mm512_cvtepi32_ps(_mm512_castps_si512(c[i]))
					     : c[i]);
	*sink = _mm512_reduce_add_ps(s);
	return per * DUET_PEAK_CHAINS * (double)n;
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

static float softmax(float *x, int n)
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
	float sum = _mm512_reduce_add_ps(sv);
	__m512 inv = _mm512_set1_ps(1.0f / sum);
	for (i = 0; i + 16 <= n; i += 16)
		_mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
	if (i < n) {
		__mmask16 m = tail_mask(n - i);
		_mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
	}
	return mx + logf(sum);
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
	.matmul_r16 = {[DUET_Q8_0] = duet_avx512_q8_0_r16, [DUET_Q4_0] = duet_avx512_q4_0_r16,
		       [DUET_Q4_1] = duet_avx512_q4_1_r16, [DUET_Q5_0] = duet_avx512_q5_0_r16,
		       [DUET_Q5_1] = duet_avx512_q5_1_r16, [DUET_Q4_K] = duet_avx512_q4_k_r16,
		       [DUET_Q5_K] = duet_avx512_q5_k_r16,
		       [DUET_Q6_K] = duet_avx512_q6_k_r16, [DUET_F16] = duet_avx512_f16_r16,
		       [DUET_F32] = duet_avx512_f32_r16, [DUET_BF16] = duet_avx512_bf16_r16},
	.matmul_r16n = {[DUET_F16] = duet_avx512_f16_r16n, [DUET_F32] = duet_avx512_f32_r16n,
			[DUET_BF16] = duet_avx512_bf16_r16n},
	.matmul_r16x4 = {[DUET_Q8_0] = duet_avx512_q8_0_r16x4, [DUET_Q4_0] = duet_avx512_q4_0_r16x4,
			 [DUET_Q4_1] = duet_avx512_q4_1_r16x4, [DUET_Q5_0] = duet_avx512_q5_0_r16x4,
			 [DUET_Q5_1] = duet_avx512_q5_1_r16x4, [DUET_F16] = duet_avx512_f16_r16x4,
			 [DUET_F32] = duet_avx512_f32_r16x4, [DUET_BF16] = duet_avx512_bf16_r16x4},
	.pack_r16 = {[DUET_Q8_0] = duet_avx512_pack_q8_0_r16, [DUET_Q4_0] = duet_avx512_pack_q4_0_r16,
		     [DUET_Q4_1] = duet_avx512_pack_q4_1_r16, [DUET_Q5_0] = duet_avx512_pack_q5_0_r16,
		     [DUET_Q5_1] = duet_avx512_pack_q5_1_r16, [DUET_Q4_K] = duet_avx512_pack_q4_k_r16,
		     [DUET_Q5_K] = duet_avx512_pack_q5_k_r16,
		     [DUET_Q6_K] = duet_avx512_pack_q6_k_r16, [DUET_F16] = duet_avx512_pack_f16_r16,
		     [DUET_F32] = duet_avx512_pack_f32_r16, [DUET_BF16] = duet_avx512_pack_bf16_r16},
	.matmul_f = {[DUET_F32] = matmul_f32, [DUET_F16] = matmul_f16, [DUET_BF16] = matmul_bf16,
		     [DUET_Q8_0] = matmul_q8_0},
	.matmul_bf16_bf16 = matmul_bf16_bf16,
	.matmul_bf16_hi = matmul_bf16_hi,
	.pack_bf16 = pack_bf16,
	/* (no row kernels against per-256 activations: every K-quant takes the
	 * 16-row kernels) */
	.quant_q8a = quant_q8a,
	.quant_q8k = quant_q8k,
	.cvt_f16 = cvt_f16,
	.cvt_bf16 = cvt_bf16,
	.cvt_q8_0 = cvt_q8_0,
	.cvt_i8 = cvt_i8,
	.dot = dot,
	.attn_qk = duet_avx512_attn_qk,
	.attn_av = duet_avx512_attn_av,
	.axpy = axpy,
	.softmax = softmax,
	.silu_mul = silu_mul,
	.rmsnorm = rmsnorm,
	.read4 = read4,
	.peak = peak,
};
