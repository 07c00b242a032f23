/* Compute kernels, one table per instruction set (scalar, AVX2, AVX-512),
 * chosen once at run time from the CPU. The scalar table is the portable
 * fallback and the yardstick the others are tested against. */
#ifndef DUET_KERNELS_H
#define DUET_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/kvrow.h"
#include "engine/dtype.h"

/* One KV head's rows at n consecutive positions of a cache block: head i
 * at (uint8_t *)base + i * stride, in type t (base/kvrow.h); for int8 its
 * scale is a float at scale_off bytes from the head's values. */
struct duet_kv_rows {
	const void *base;
	size_t stride;
	int hd;
	enum duet_kv_dtype t;
	long scale_off;
};

/* The scale of row `row` of r when its type t is int8, else 1 (t is r->t;
 * a kernel instance passes it as a constant so the test folds away). */
static inline float duet_kv_rows_scale(enum duet_kv_dtype t, const struct duet_kv_rows *r,
				       const void *row)
{
	float d = 1.0f;
	if (t == DUET_KV_INT8)
		memcpy(&d, (const uint8_t *)row + r->scale_off, sizeof d);
	return d;
}

/* How activations meet the weights of a matmul. */
enum duet_act {
	DUET_ACT_F32,  /* rows of K floats; weights dequantized exactly */
	DUET_ACT_Q8,   /* rows quantized per 32-block for integer dot products */
	DUET_ACT_BF16, /* rows split into two bfloat16 halves, for bf16 weights */
	DUET_ACT_Q8K,  /* rows quantized per 256, for the K-quants' integer sums */
	/* rows rounded to bfloat16 (the pairs' hi halves alone), for bf16
	 * weights in int8 mode: one bf16 dot product per weight, not two */
	DUET_ACT_BF16_HI,
};

/* The arithmetic instructions the matmul kernels are built of, whose
 * throughput bounds a wide batch the way bandwidth bounds batch 1. */
enum duet_peak_op {
	DUET_PEAK_FMA,	   /* f32 fused multiply-add (F32, F16, exact mode) */
	DUET_PEAK_DOT_I8,  /* unsigned x signed byte dot product (int8 mode) */
	DUET_PEAK_DOT_BF16, /* bf16 pair dot product into f32 (BF16 weights) */
};
#define DUET_PEAK_OPS 3

/* Quantized weights and activations: how they are multiplied. */
enum duet_qdot {
	/* Activations quantized per 32-block to int8, integer dot products
	 * (AVX-512 VNNI vpdpbusd): the fast path, and llama.cpp's numerics. */
	DUET_QDOT_INT8,
	/* Weights dequantized to f32 and multiplied in f32: the exact model,
	 * the accuracy reference. */
	DUET_QDOT_EXACT,
};

/* Activations are handed to the kernels as panels: the B rows interleaved
 * a chunk at a time, so that a kernel reaches every row of a chunk from
 * one pointer at fixed offsets (sixteen row pointers would not fit the
 * general registers, and the kernels slowed by half spilling them).
 *
 * f32 panel: chunk c (values [16c, 16c + 16)) of row b at
 * x[(c * B + b) * 16]; K is padded with zeros to a multiple of 32. */
#define DUET_PANEL_CHUNK 16
static inline size_t duet_panel_f32_floats(int K, int B)
{
	return (size_t)((K + 31) / 32 * 32) * (size_t)B;
}

/* Two 32-blocks of activations quantized for integer dot products: d =
 * max|x| / 127 and q = x / d rounded to nearest even, per block, as Q8_0
 * weights are made. corr and d are laid out for one 512-bit vector per
 * pair: the kernels compute sum((w + 128) * q) with an unsigned-by-signed
 * dot product, and corr (-128 * sum(q) of a block, in the first lane of
 * its half) starts the accumulator so that what remains is exactly
 * sum(w * q). The q8 panel: pair p of row b at x[p * B + b]; a row's last
 * pair is padded with a zero block when K / 32 is odd. */
#define DUET_Q8A_PAIR 64
struct duet_q8a_pair {
	int8_t q[DUET_Q8A_PAIR];
	int32_t corr[16]; /* lanes 0 and 8: -128 * sum(q) of block 0 and 1 */
	float d[16];	  /* lanes 0-7: scale of block 0; 8-15: of block 1 */
};
static inline size_t duet_panel_q8_pairs(int K, int B)
{
	return (size_t)((K + DUET_Q8A_PAIR - 1) / DUET_Q8A_PAIR) * (size_t)B;
}

/* 256 activations quantized for the K-quants (Q4_K, Q5_K, Q6_K): one
 * scale per 256 values (d = max|x| / 127, q = x / d rounded to nearest
 * even), so that a super-block's sub-block products, times the weights'
 * integer sub-block scales, add up in integers and meet a float only once
 * per super-block (with a scale per 32 values, each 32 values' sum needs
 * its own float multiply). bsums[i] is the sum of values [16i, 16i + 16),
 * for the weights' mins and offsets. The quants are stored in Q4_K's
 * nibble order, so that a Q4_K row's low and high nibbles meet them as
 * loaded: of each 128 values, [0, 32) and [64, 96) then [32, 64) and [96,
 * 128) (value i at q[duet_q8k_pos(i)]; a 32-block stays in one piece).
 * The q8k panel: block s of row b at x[s * B + b]; K padded with zeros to
 * a multiple of 256. The padding makes a block whole cache lines. */
#define DUET_Q8K 256
struct duet_q8k_block {
	int8_t q[DUET_Q8K];
	int16_t bsums[DUET_Q8K / 16];
	float d;
	uint8_t pad[28];
};
_Static_assert(sizeof(struct duet_q8k_block) == 320, "a q8k block is five cache lines");
static inline int duet_q8k_pos(int i)
{
	return i / 128 * 128 + (i / 32) % 2 * 64 + (i / 64) % 2 * 32 + i % 32;
}
static inline size_t duet_panel_q8k_blocks(int K, int B)
{
	return (size_t)((K + DUET_Q8K - 1) / DUET_Q8K) * (size_t)B;
}

/* bf16 panel, for bf16 weights on CPUs with AVX512_BF16: each value x as
 * hi = bf16(x) and lo = bf16(x - hi), so that a bf16 dot product
 * (vdpbf16ps: products of two bf16 are exact in f32) of the weights with
 * hi and then with lo misses only x - hi - lo (2^-16 of x): the
 * activations stay as good as f32 for the purpose, at a third of the
 * instructions of converting every weight to f32. Chunk c (values [32c,
 * 32c + 32)) of row b at x[c * B + b]; K padded with zeros to a multiple
 * of 32. */
#define DUET_BF16_CHUNK 32
struct duet_bf16x2 {
	uint16_t hi[DUET_BF16_CHUNK];
	uint16_t lo[DUET_BF16_CHUNK];
};
static inline size_t duet_panel_bf16_chunks(int K, int B)
{
	return (size_t)((K + DUET_BF16_CHUNK - 1) / DUET_BF16_CHUNK) * (size_t)B;
}

/* The definition of the bf16 pair form: B rows of K floats into a bf16
 * panel, each bf16 rounded to nearest even with subnormal inputs as zero,
 * as vcvtneps2bf16 converts (the AVX-512 table's packing reproduces it bit
 * for bit). */
void duet_panel_pack_bf16_ref(const float *x, int ldx, int K, int B, struct duet_bf16x2 *panel);

/* B rows of K floats (ldx apart) into an f32 panel. */
void duet_panel_pack_f32(const float *x, int ldx, int K, int B, float *panel);
/* The definition of the int8 form: row b of K floats (K a multiple of 32:
 * quantized weights come in whole blocks) into the q8 panel of B rows
 * (the scalar table's; the others reproduce it bit for bit). */
void duet_quant_q8a_ref(const float *x, int K, struct duet_q8a_pair *panel, int B, int b);
/* The definition of the per-256 int8 form, likewise (K any length). */
void duet_quant_q8k_ref(const float *x, int K, struct duet_q8k_block *panel, int B, int b);

/* y[b*ldy + n] = dot(W row n, activation row b) for rows n in [n0, n1) and
 * b in [0, B), the activations a panel in the form the kernel takes (f32,
 * or q8). Each weight row, stored in its own type, is read from memory
 * once for all B activation rows (a decode step reads the weights once for
 * the whole batch). far as for the 16-row kernels below (the AVX-512
 * row tiles' prefetch distance at B = 1; the others ignore it). */
typedef void (*duet_matmul_fn)(const void *w, size_t row_bytes, int K, const void *panel,
			       int B, float *y, int ldy, int n0, int n1, int far);

/* Weights of a type with the 16-row form (engine/repack.h: Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, F16, BF16, F32) in one group (g the start of a slice of its blocks, the first a
 * multiple of the type's unit: duet_r16_unit_at) against nb <=
 * DUET_R16_SEQS activation rows of a panel of B rows (the 32-value types: q8
 * pairs, x at the pair of that first block, which is even; the K-quants:
 * q8k blocks, x at that block; and at the first row): nblk blocks. For b
 * < nb and r < nrows, starting from acc = y[b * ldy + r] when add, else 0,
 * 32 values after 32 values:
 *   acc = fma(float(dot), w_scale x x_scale, acc)
 * with dot the exact integer dot product of the 32 weights' quants and the
 * activations' (offset by the type's zero point), then for Q4_1 and Q5_1
 * acc = fma(min x x_scale, float(the activations' sum), acc); Q4_K's scale is d x its
 * 6-bit sub-block scale, times the activations' per-256 scale, and before
 * each block's eight, acc = fma(-float(mins), dmin x x_scale, acc) with
 * mins the exact sum of its 6-bit mins times the activations' sums.
 * Q6_K instead takes a super-block at a time: acc = fma(float(sum), d x
 * x_scale, acc), sum the exact integer sum over its 16-value sub-blocks of
 * the int8 scale times (the values' dot product - 32 x the activations'
 * sum). Then y = acc. F16 and F32 (f32 activations: the f32 panel, x at block
 * 0's first chunk and the first row) takes every value in turn, acc =
 * fma(w, x, acc), k ascending. BF16 (the bf16 panel's hi halves, x at
 * block 0's chunk and the first row) takes every pair in turn as
 * AVX512_BF16's vdpbf16ps does: acc += w[2k+1] x[2k+1], then acc +=
 * w[2k] x[2k] (products exact in f32, each sum rounded). Every table computes exactly this, so the
 * results match bit for bit, and since a slice of blocks continues the
 * chain the last one left in y, K may be cut into slices at any unit
 * without changing a bit. */
/* Up to 16 sequences in one pass over a group: passes of 8 read a group
 * from memory in the first and from cache in the second, the memory idle
 * meanwhile; one pass of 9-16 made batched decode of 12 and 16 sequences
 * 5-38% faster (Q8_0 at 16 the same; BENCHMARKS.md, 2026-12-05 fifth). */
#define DUET_R16_SEQS 16
/* far: which of a kernel's two software prefetch distances it takes, 0 the
 * near, 1 the far. Which reads memory faster is the machine's state, not
 * the kernel's: here one distance won by up to 29% while the memory was
 * fast and lost by 8% while it was slow, and the VM switches between the
 * two every few seconds, so engine/pftune.c picks it for each window of
 * products by the read speed it measures (BENCHMARKS.md, 2026-12-06
 * sixth). The results do not depend on it. */
typedef void (*duet_r16_fn)(const uint8_t *g, int nblk, const void *x, int B, int nb, float *y,
			    int ldy, int nrows, int add, int far);
/* One activation row against DUET_R16_STREAMS full groups at once
 * (decode): group s at g[s], its 16 results at y[s] (added to them with
 * add); each group's arithmetic as above. */
#define DUET_R16_STREAMS 4
typedef void (*duet_r16x4_fn)(const uint8_t *const g[DUET_R16_STREAMS], int nblk,
			      const void *x, float *const y[DUET_R16_STREAMS], int add, int far);
/* ngroups full groups at once, group i at g + i * gs and its results at
 * y + 16 i, each as duet_r16_fn with nrows 16: for kernels whose tiles
 * take several groups (F16, F32: a few sequences share each weight vector
 * poorly, so four groups share each activation instead). */
typedef void (*duet_r16n_fn)(const uint8_t *g, size_t gs, int ngroups, int nblk, const void *x,
			     int B, int nb, float *y, int ldy, int add, int far);
/* duet_r16_pack for one type (engine/repack.h): the same bytes. */
typedef void (*duet_r16_pack_fn)(const uint8_t *rows, size_t rb, int nrows, int i0, int n,
				 uint8_t *out);

struct duet_kernels {
	const char *name;
	/* By weight type, weights in 16-row groups against int8 activations
	 * (per 32; the K-quants per 256; F16, F32: f32; BF16: bf16) (the scalar table has the
	 * definition), and packing into them. A table with a pack_r16 entry
	 * for a type is faster with its weights so: they are packed at load
	 * into the decode copy of the weights, on the fly otherwise, and every
	 * matmul of the type in int8 mode takes this kernel (F16, F32: in either
	 * mode; BF16 in int8 mode, where the CPU has AVX512_BF16), at every
	 * width, so that a row's result does not depend on the batch. */
	duet_r16_fn matmul_r16[DUET_DTYPE_SLOTS];
	/* optional: the several-group form of matmul_r16 (F16, F32, BF16) */
	duet_r16n_fn matmul_r16n[DUET_DTYPE_SLOTS];
	/* optional: the four-group form of matmul_r16, for one sequence */
	duet_r16x4_fn matmul_r16x4[DUET_DTYPE_SLOTS];
	duet_r16_pack_fn pack_r16[DUET_DTYPE_SLOTS];
	/* By weight type: f32 activations with the weights dequantized
	 * exactly (matmul_f), and int8 activations for the quantized types:
	 * per 32 (DUET_ACT_Q8, matmul_q8) and for the K-quants per 256
	 * (DUET_ACT_Q8K, matmul_q8k). A NULL entry takes the scalar table's:
	 * the scalar table has every type. */
	duet_matmul_fn matmul_f[DUET_DTYPE_SLOTS];
	duet_matmul_fn matmul_q8[DUET_DTYPE_SLOTS];
	/* per-256 int8 activations (DUET_ACT_Q8K), for the K-quants */
	duet_matmul_fn matmul_q8k[DUET_DTYPE_SLOTS];
	/* bf16 activation pairs (DUET_ACT_BF16; NULL where the ISA has no
	 * bf16 dot product) and their packing from B rows of floats */
	duet_matmul_fn matmul_bf16_bf16;
	/* the same panel's hi halves alone (DUET_ACT_BF16_HI) */
	duet_matmul_fn matmul_bf16_hi;
	void (*pack_bf16)(const float *x, int ldx, int K, int B, struct duet_bf16x2 *panel);
	/* Row b of K activations into a q8 panel of B rows. */
	void (*quant_q8a)(const float *x, int K, struct duet_q8a_pair *panel, int B, int b);
	void (*quant_q8k)(const float *x, int K, struct duet_q8k_block *panel, int B, int b);
	/* Row of n elements to f32 (prefill converts weight tiles). */
	void (*cvt_f16)(const void *src, float *dst, int n);
	void (*cvt_bf16)(const void *src, float *dst, int n);
	void (*cvt_q8_0)(const void *src, float *dst, int n);
	/* n int8 values times d (int8 KV rows, one head at a time). */
	void (*cvt_i8)(const void *src, float d, float *dst, int n);
	float (*dot)(const float *a, const float *b, int n);
	/* Decode attention over n cached positions of one KV head, whose rows
	 * (struct duet_kv_rows) are read once for all nq query heads sharing
	 * it. qk: s[h * ld + i] = scale * dot(q + h * hd, K row i). av:
	 * out[h * hd ..] += sum over i of p[h * ld + i] * V row i. */
	void (*attn_qk)(const float *q, int nq, const struct duet_kv_rows *k, int n, float scale,
			float *s, size_t ld);
	void (*attn_av)(const float *p, size_t ld, int nq, const struct duet_kv_rows *v, int n,
			float *out);
	void (*axpy)(float a, const float *x, float *y, int n); /* y += a x */
	/* x = softmax(x) over n entries; returns log(sum of exp(x)) of the
	 * entries as given, by which softmaxes of parts of one row merge. */
	float (*softmax)(float *x, int n);
	/* g = silu(g) * u, SwiGLU's gate. */
	void (*silu_mul)(float *g, const float *u, int n);
	/* out = x / rms(x) * w. */
	void (*rmsnorm)(float *out, const float *x, const float *w, int n, float eps);
	/* Sum of n floats read as four interleaved streams (n a multiple of
	 * 64): the read pattern of a matmul, for the bandwidth ceiling. */
	float (*read4)(const float *x, long n);
	/* n rounds of DUET_PEAK_CHAINS independent instructions of kind op
	 * on registers, the widest form the table's kernels use: the
	 * compute ceiling. Returns the arithmetic operations done (a
	 * multiply and an add count two), 0 where the table or this CPU
	 * has no such instruction; *sink takes a value of the results so
	 * that none is elided. */
	double (*peak)(enum duet_peak_op op, long n, float *sink);
};
/* Independent accumulators of a peak loop: enough to cover an
 * instruction's latency at two a cycle (5 x 2 on the cores this project
 * sees), few enough to stay in the 16 registers of AVX2. */
#define DUET_PEAK_CHAINS 12

extern const struct duet_kernels duet_kernels_scalar;
extern const struct duet_kernels duet_kernels_avx2;
extern const struct duet_kernels duet_kernels_avxvnni;
extern const struct duet_kernels duet_kernels_avx512;

/* Best table for this CPU; DUET_KERNELS=scalar|avx2|avxvnni|avx512 overrides (a
 * table the CPU cannot run is refused and the best one used instead). */
const struct duet_kernels *duet_kernels(void);
/* A table by name if this CPU can run it, else NULL (tests compare ISAs). */
const struct duet_kernels *duet_kernels_named(const char *name);

/* The activations weight type t takes with table k in mode q: int8 for
 * the quantized types in int8 mode (per 256 for the K-quants, per 32 for
 * the others); for bf16, where k and this CPU have a bf16 dot product,
 * bf16 (int8 mode) or bf16 pairs (exact mode); else f32. */
enum duet_act duet_kernels_act(const struct duet_kernels *k, enum duet_dtype t,
			       enum duet_qdot q);
/* The kernel for weight type t and activations a; NULL when there is none. */
duet_matmul_fn duet_kernels_matmul(const struct duet_kernels *k, enum duet_dtype t,
				   enum duet_act a);
/* Whether table k packs type t in 16-row groups; its 16-row kernel for t
 * (the scalar table's where it has none). */
int duet_kernels_packs(const struct duet_kernels *k, enum duet_dtype t);
duet_r16_fn duet_kernels_r16(const struct duet_kernels *k, enum duet_dtype t);
/* Rows into the 16-row form (engine/repack.h, duet_r16_pack's arguments)
 * with table k's packing where it has one, else the definition: the same
 * bytes either way. */
void duet_kernels_pack_r16(const struct duet_kernels *k, enum duet_dtype t, const uint8_t *rows,
			   size_t rb, int nrows, int i0, int n, uint8_t *out);
/* Converts one row of any type to f32 with the table's kernels. */
void duet_kernels_cvt(const struct duet_kernels *k, enum duet_dtype t,
		      const void *src, float *dst, int n);
/* Converts one KV cache row of n_heads x head_dim (base/kvrow.h layout) to
 * f32 with the table's kernels: the vectorized twin of duet_kv_row_get. */
void duet_kernels_kv_row(const struct duet_kernels *k, enum duet_kv_dtype t, int n_heads,
			 int head_dim, const void *src, float *dst);

#endif
