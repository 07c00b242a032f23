/* AVX-512 kernels of the float types in 16-row groups (F16, F32, BF16:
 * engine/repack.h), apart from kern/avx512.c so that the two compile in
 * parallel (its compile is most of a build's time). Built with the same
 * flags; the table in kern/avx512.c points at these. */
#include <immintrin.h>
#include <string.h>

#include "engine/kern/avx512_groups.h"
#include "engine/kern/avx512_util.h"
#include "engine/kern/kernels.h"
#include "engine/repack.h"

/* ---- F16, F32 and BF16 in 16-row groups (engine/repack.h) ----
 * Each step loads 16 rows' value k of G groups (one vector each, F16
 * converted; BF16 a pair of values a lane) and multiplies them by the
 * broadcast value k (BF16: pair k, by one bf16 dot product) of S sequences:
 * G x S FMAs per G loads and S broadcasts, each lane's sum one chain in k
 * (the definition's order, whatever G and S), and the 16 results of a
 * group and sequence one store. Shapes (at most 16 accumulators): S <= 4
 * four groups, whose streams a decode step of a few sequences needs to
 * keep the memory busy (one group read 0.6x as fast there); S of 5-8
 * two groups; 9-16 sequences two passes of two groups over the same
 * weights, the second from cache (one group by 16: 0.9x). Measured on one
 * core from memory, BENCHMARKS.md, 2026-12-07 second. */
/* near and far (kernels.h, far); each group one stream */
#define FG_AHEAD(far) ((far) ? 2048 : 1024)
#define FG_GROUPS 4
#define FG_PASS 8

/* 16 rows' value k of a block (F16: 32 bytes; F32: 64) */
INLINE __m512 fg_load(enum duet_dtype t, const uint8_t *p)
{
	return t == DUET_F16 ? load_h((const uint16_t *)p) : _mm512_loadu_ps((const float *)p);
}

/* Steps of a block (a vector of 16 rows' elements each): F32 and F16 32
 * values, BF16 16 pairs. */
INLINE int fg_steps(enum duet_dtype t)
{
	return t == DUET_BF16 ? 16 : 32;
}

/* next: the bytes from this tile's groups to the next tile's (0: none),
 * of which this pass fetches half `half`; self: whether it fetches its own
 * lines FG_AHEAD ahead (what a tile no earlier pass fetched needs). x: the
 * f32 panel (F16, F32) or the bf16 panel (BF16, its hi halves: step k of
 * block i for sequence s is the pair 2k, 2k + 1 of x[i B + s], one bf16
 * dot product, `vdpbf16ps`, against 16 rows' pairs). */
INLINE void fg_tile(enum duet_dtype t, const uint8_t *const q[FG_GROUPS], int nblk,
		    const void *xv, int B, float *const yg[FG_GROUPS], int ldy, __mmask16 m,
		    int add, const int G, const int S, int far, size_t next, int half, int self)
{
	const size_t es = (size_t)duet_r16_elem_bytes(t) * DUET_R16_ROWS;
	const int steps = fg_steps(t), halves = t == DUET_BF16 ? 1 : 2;
	/* a line of each group a step (F16: every other step) */
	const int line = t == DUET_F16 ? 2 : 1;
	__m512 acc[FG_GROUPS][FG_PASS];
	_Pragma("GCC unroll 4")
	for (int g = 0; g < G; g++)
		_Pragma("GCC unroll 8")
		for (int s = 0; s < S; s++)
			acc[g][s] = add ? _mm512_maskz_loadu_ps(m, yg[g] + (size_t)s * ldy)
					: _mm512_setzero_ps();
	const size_t cs = (size_t)B * DUET_PANEL_CHUNK, ahead = FG_AHEAD(far);
	for (int i = 0; i < nblk; i++)
		for (int h = 0; h < halves; h++) {
			const float *c = (const float *)xv + (size_t)(2 * i + h) * cs;
			const struct duet_bf16x2 *cb = (const struct duet_bf16x2 *)xv + (size_t)i * B;
			_Pragma("GCC unroll 16")
			for (int k = 0; k < 16; k++) {
				__m512 wv[FG_GROUPS];
				__m512i wi[FG_GROUPS];
				_Pragma("GCC unroll 4")
				for (int g = 0; g < G; g++) {
					const size_t o = (size_t)i * steps * es + (size_t)(16 * h + k) * es;
					const uint8_t *p = q[g] + o;
					if (self && k % line == 0) /* each line once */
						PREFETCH(p + ahead);
					if (next && k % (2 * line) == 0)
						PREFETCH(q[g] + next + (size_t)half * nblk * (steps / 2) * es + o / 2);
					if (t == DUET_BF16)
						wi[g] = _mm512_loadu_si512(p);
					else
						wv[g] = fg_load(t, p);
				}
				_Pragma("GCC unroll 8")
				for (int s = 0; s < S; s++) {
					if (t == DUET_BF16) {
						int32_t pair;
						memcpy(&pair, cb[s].hi + 2 * k, sizeof pair);
						__m512bh xb = (__m512bh)_mm512_set1_epi32(pair);
						_Pragma("GCC unroll 4")
						for (int g = 0; g < G; g++)
							acc[g][s] = _mm512_dpbf16_ps(acc[g][s], (__m512bh)wi[g], xb);
						continue;
					}
					__m512 xb = _mm512_set1_ps(c[s * DUET_PANEL_CHUNK + k]);
					_Pragma("GCC unroll 4")
					for (int g = 0; g < G; g++)
						acc[g][s] = _mm512_fmadd_ps(wv[g], xb, acc[g][s]);
				}
			}
		}
	_Pragma("GCC unroll 4")
	for (int g = 0; g < G; g++)
		_Pragma("GCC unroll 8")
		for (int s = 0; s < S; s++)
			_mm512_mask_storeu_ps(yg[g] + (size_t)s * ldy, m, acc[g][s]);
}

/* Sequence s0's activations in a panel */
INLINE const void *fg_seq(enum duet_dtype t, const void *x, int s0)
{
	if (t == DUET_BF16)
		return (const struct duet_bf16x2 *)x + s0;
	return (const float *)x + (size_t)s0 * DUET_PANEL_CHUNK;
}

/* Groups [0, ngroups) (group i at g + i gs, results at y + 16 i; one
 * masked group when ngroups is 1 and m short) against sequences [s0, s0 +
 * S) in tiles of G groups, the rest one at a time. */
#define FG_PASS_CASE(S, G)                                                              \
	case S: {                                                                       \
		int i = 0;                                                              \
		for (; i + (G) <= ngroups; i += (G)) {                                  \
			const uint8_t *q[FG_GROUPS];                                    \
			float *yg[FG_GROUPS];                                           \
			for (int j = 0; j < (G); j++) {                                 \
				q[j] = g + (size_t)(i + j) * gs;                        \
				yg[j] = y + (size_t)s0 * ldy + 16 * (i + j);            \
			}                                                               \
			fg_tile(T, q, nblk, fg_seq(T, x, s0), B, yg, ldy, m, add, (G), S, far,  \
				next, half, self);                                         \
		}                                                                       \
		for (; i < ngroups; i++) {                                              \
			const uint8_t *q[FG_GROUPS] = {g + (size_t)i * gs};             \
			float *yg[FG_GROUPS] = {y + (size_t)s0 * ldy + 16 * i};         \
			fg_tile(T, q, nblk, fg_seq(T, x, s0), B, yg, ldy, m, add, 1, S, far, 0, 0, 1);  \
		}                                                                       \
		return;                                                                 \
	}
/* ws: the widest pass of the call (its tile shape, kept by a narrower
 * second pass, which takes the same groups from cache); a function per
 * type, its cases inlined with T constant */
#define DEFINE_FG_PASS(name, TYPE)                                                      \
	static void name(const uint8_t *g, size_t gs, int ngroups, int nblk, const void *x,  \
			 int B, int s0, int S, int ws, float *y, int ldy, __mmask16 m, int add, \
			 int far, size_t next, int half, int self)                      \
	{                                                                               \
		const enum duet_dtype T = TYPE;                                         \
		if (ws <= 4) {                                                          \
			switch (S) {                                                    \
				FG_PASS_CASE(1, 4) FG_PASS_CASE(2, 4)                   \
				FG_PASS_CASE(3, 4) FG_PASS_CASE(4, 4)                   \
			}                                                               \
			return;                                                         \
		}                                                                       \
		switch (S) {                                                            \
			FG_PASS_CASE(1, 2) FG_PASS_CASE(2, 2) FG_PASS_CASE(3, 2)        \
			FG_PASS_CASE(4, 2) FG_PASS_CASE(5, 2) FG_PASS_CASE(6, 2)        \
			FG_PASS_CASE(7, 2) FG_PASS_CASE(8, 2)                           \
		}                                                                       \
	}
DEFINE_FG_PASS(fg_pass_f16, DUET_F16)
DEFINE_FG_PASS(fg_pass_f32, DUET_F32)
DEFINE_FG_PASS(fg_pass_bf16, DUET_BF16)

/* Sequences in passes of at most FG_PASS, tile by tile of groups so that
 * a second pass finds the tile's weights in cache. */
static void fg_groups(enum duet_dtype t, const uint8_t *g, size_t gs, int ngroups, int nblk,
		      const void *x, int B, int nb, float *y, int ldy, __mmask16 m, int add,
		      int far)
{
	void (*pass)(const uint8_t *, size_t, int, int, const void *, int, int, int, int, float *,
		     int, __mmask16, int, int, size_t, int, int) =
		t == DUET_F16 ? fg_pass_f16 : t == DUET_BF16 ? fg_pass_bf16 : fg_pass_f32;
	if (nb <= FG_PASS) {
		pass(g, gs, ngroups, nblk, x, B, 0, nb, nb, y, ldy, m, add, far, 0, 0, 1);
		return;
	}
	const int G = 2;
	size_t fetched = 0; /* whether the last tile fetched this one */
	for (int i = 0; i < ngroups; i += G) {
		int n = ngroups - i < G ? ngroups - i : G;
		/* The second pass reads the tile from cache, which left the
		 * memory idle for half the time: each pass now fetches half of
		 * the next tile as it goes (one line for every two it uses), so
		 * that the tile's first pass finds it in cache and the memory
		 * streams through both (16 sequences from memory, both cores:
		 * F32 +14-17%, F16 +6-9%; BENCHMARKS.md, 2026-12-07 fourth). The
		 * first pass of a tile no pass fetched fetches its own lines
		 * ahead. (A tile of one group, the last, is not fetched.) */
		size_t next = i + 2 * G <= ngroups ? (size_t)G * gs : 0;
		for (int s0 = 0; s0 < nb; s0 += FG_PASS)
			pass(g + (size_t)i * gs, gs, n, nblk, x, B, s0,
			     nb - s0 < FG_PASS ? nb - s0 : FG_PASS, FG_PASS, y + 16 * i, ldy, m, add,
			     far, next, s0 / FG_PASS, s0 == 0 && !fetched);
		fetched = next;
	}
}

#define DEFINE_FG(T, r16, r16n, r16x4)                                                  \
	void r16(const uint8_t *g, int nblk, const void *x, int B, int nb, float *y, int ldy,  \
		 int nrows, int add, int far)                                           \
	{                                                                               \
		fg_groups(T, g, 0, 1, nblk, x, B, nb, y, ldy, tail_mask(nrows), add, far); \
	}                                                                               \
	void r16n(const uint8_t *g, size_t gs, int ngroups, int nblk, const void *x, int B,    \
		  int nb, float *y, int ldy, int add, int far)                          \
	{                                                                               \
		fg_groups(T, g, gs, ngroups, nblk, x, B, nb, y, ldy, 0xffff, add, far); \
	}                                                                               \
	void r16x4(const uint8_t *const q[DUET_R16_STREAMS], int nblk, const void *x,   \
		   float *const y[DUET_R16_STREAMS], int add, int far)                  \
	{                                                                               \
		fg_tile(T, q, nblk, x, 1, y, 0, 0xffff, add, DUET_R16_STREAMS, 1, far, 0, 0, 1); \
	}
DEFINE_FG(DUET_F16, duet_avx512_f16_r16, duet_avx512_f16_r16n, duet_avx512_f16_r16x4)
DEFINE_FG(DUET_F32, duet_avx512_f32_r16, duet_avx512_f32_r16n, duet_avx512_f32_r16x4)
DEFINE_FG(DUET_BF16, duet_avx512_bf16_r16, duet_avx512_bf16_r16n, duet_avx512_bf16_r16x4)

/* duet_r16_pack for F16 and F32: each 16 bytes of 16 rows transposed as
 * dwords, four F32 values of each row, or two F16 values split into their
 * low and high words. */
INLINE void pack_float_r16(enum duet_dtype t, const uint8_t *rows, size_t rb, int nrows, int i0,
			   int n, uint8_t *out)
{
	if (nrows < 16) {
		duet_r16_pack(t, rows, rb, nrows, i0, n, out);
		return;
	}
	const size_t bb = t == DUET_F32 ? 128 : 64; /* a row's block */
	for (int i = 0; i < n; i++) {
		const uint8_t *blk = rows + (size_t)(i0 + i) * bb;
		for (int r = 0; r < 16; r++)
			PREFETCH(blk + (size_t)r * rb + PACK_AHEAD * bb);
		uint8_t *qi = out + duet_r16_quants_at(t, i, n);
		_Pragma("GCC unroll 8")
		for (int c = 0; c < (int)bb / 16; c++) {
			__m512i d[4];
			transpose_16x16(blk + 16 * c, rb, d);
			_Pragma("GCC unroll 4")
			for (int j = 0; j < 4; j++) {
				if (t != DUET_F16) { /* F32's values, BF16's pairs */
					_mm512_storeu_si512((void *)(qi + 64 * (4 * c + j)), d[j]);
					continue;
				}
				_mm256_storeu_si256((__m256i *)(qi + 32 * (8 * c + 2 * j)),
						    _mm512_cvtepi32_epi16(d[j]));
				_mm256_storeu_si256((__m256i *)(qi + 32 * (8 * c + 2 * j + 1)),
						    _mm512_cvtepi32_epi16(_mm512_srli_epi32(d[j], 16)));
			}
		}
	}
}

void duet_avx512_pack_f16_r16(const uint8_t *rows, size_t rb, int nrows, int i0, int n,
			      uint8_t *out)
{
	pack_float_r16(DUET_F16, rows, rb, nrows, i0, n, out);
}

void duet_avx512_pack_f32_r16(const uint8_t *rows, size_t rb, int nrows, int i0, int n,
			      uint8_t *out)
{
	pack_float_r16(DUET_F32, rows, rb, nrows, i0, n, out);
}

void duet_avx512_pack_bf16_r16(const uint8_t *rows, size_t rb, int nrows, int i0, int n,
			       uint8_t *out)
{
	pack_float_r16(DUET_BF16, rows, rb, nrows, i0, n, out);
}
