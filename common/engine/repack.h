/* Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K weights in groups of 16 rows, for integer dot
 * products that give 16 rows' sums in the 16 lanes of one vector; and F16
 * and F32 weights so, for f32 products that give 16 rows' sums likewise
 * (below).
 *
 * Why: a row met one activation row with four vector instructions per 64
 * weights (dot product, convert, scale, add), because each lane held part
 * of a block and every 32 values have their own scale. Interleaved, lane r
 * of a dot product sums row r's 32 values alone: eight dot products finish
 * them for 16 rows, and one convert, scale and add per 32 values follow,
 * about a third of the instructions per weight, and a group's 16 rows are
 * one sequential stream instead of 16.
 *
 * The layout (DUET_LAYOUT_R16) of a tensor with N rows of nb blocks (32
 * values; Q4_K, Q5_K, Q6_K: 256), a row's block being a header of HB bytes
 * (Q8_0, Q4_0: the f16 scale; Q4_1: d and the min; Q5_0: d and the 32
 * fifth bits, as two words; Q5_1: d, the min and the fifth bits; Q4_K: d,
 * dmin and the 12 bytes of scales and mins, Q5_K's as Q4_K's; Q6_K: its 16 scales and d,
 * which the row block stores after its quants) and QB bytes of quants
 * (Q8_0 32, Q4_0, Q4_1, Q5_0, Q5_1 16, Q4_K 128, Q5_K 160: qh then qs, Q6_K 192: ql then qh):
 * rows [16g, 16g + 16) for g < N / 16 take the bytes rows 16g to 16g + 15
 * took (16 x row_bytes), as units of U blocks (Q4_K, Q5_K: 1, the others 2; so
 * that units are whole 64-byte lines), the last one short
 * when U does not divide nb. A unit of m blocks holds first their headers
 * (block p's 16 HB bytes at 16 HB p, in which 16-bit word w of row 16g +
 * r's header is at 16 w + r), then their quants (block p's 16 QB bytes at
 * m 16 HB + 16 QB p, in which dword j of lane r is bytes [4d, 4d + 4) of
 * row 16g + r's block's quants, d = j but for Q6_K (duet_r16_dword_at):
 * Q8_0's each plus 128, so that an
 * unsigned-by-signed dot product takes them, as in kernels.h's q8 panel;
 * the others' bytes as they are). A unit is 64-byte lines (Q8_0 17, Q4_0
 * 9, Q4_1 10, Q5_0 11, Q5_1 12, Q4_K 36, Q5_K 44, Q6_K 105) and a group one
 * sequential stream: with the
 * headers of a group after its quants, a second stream per group, Q4_0
 * decoded 9% slower and Q4_K_M 4% (Q8_0 the same; BENCHMARKS.md,
 * 2026-12-05 fifth). The last N % 16 rows stay as they were. A slice of
 * blocks [i0, i0 + n), i0 a multiple of U and i0 + n a multiple of U or
 * nb, starts at unit i0 / U and is laid out as a group of n blocks would
 * be, and packing those blocks of 16 row-layout rows gives the same bytes
 * (duet_r16_pack), so weights packed at load and weights packed on the fly
 * meet the same kernel and give the same results bit for bit.
 *
 * F16, BF16 and F32 take the same form with no headers, blocks of 32 values and
 * units of one block, and (F16) 16-bit words where the others have dwords
 * (BF16: a dword holds two adjacent values of a row, as a bf16 dot product
 * takes them; element k of lane r is then row 16g + r's values 2k, 2k + 1):
 * element k of lane r is row 16g + r's value k of the block, so a block is
 * 32 vectors of 16 rows' values (1 KiB, F32 2 KiB). A kernel converts one such vector and multiplies
 * it by one activation broadcast: one convert per 16 rows and as many
 * FMAs as sequences, each lane's sum one chain in k, and no sums across
 * lanes at the end. The row tiles (four rows, each a dot product over 16
 * lanes) ran at 90-150 GFLOP/s on one core from memory for 4-16 sequences,
 * the group form 130-200 (BENCHMARKS.md, 2026-12-07 second). */
#ifndef DUET_REPACK_H
#define DUET_REPACK_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/model.h"

#define DUET_R16_ROWS 16
/* The largest row block of a type with the form (Q6_K's). */
#define DUET_R16_MAX_BLOCK ((int)sizeof(struct duet_q6_k_block))

/* Whether type t has the 16-row form (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K,
 * Q5_K, Q6_K, F16, BF16, F32); its block's values (32; the K-quants 256). */
int duet_r16_type(enum duet_dtype t);
int duet_r16_values(enum duet_dtype t);

/* The form's sizes, inline so that a kernel's constant type folds them:
 * blocks per unit, a block's quants (16 QB) and headers (16 HB) for 16
 * rows, a unit's bytes, the bytes of a slice of n blocks (as many as its
 * 16 rows take in row layout), and from the start of a slice, the unit
 * holding its block i and block i's quants and headers. */
/* The float types with the form (F16, F32: f32 activations, no headers). */
static inline int duet_r16_float(enum duet_dtype t)
{
	return t == DUET_F16 || t == DUET_F32;
}

/* BF16 takes the form against activations rounded to bf16 (kernels.h's
 * bf16 panel, its hi halves), a pair of values a dword. */
static inline int duet_r16_bf16(enum duet_dtype t)
{
	return t == DUET_BF16;
}

static inline int duet_r16_unit(enum duet_dtype t)
{
	return t == DUET_Q4_K || t == DUET_Q5_K || duet_r16_float(t) || duet_r16_bf16(t) ? 1 : 2;
}

static inline size_t duet_r16_block_bytes(enum duet_dtype t)
{
	switch (t) {
	case DUET_Q8_0: return 512;
	case DUET_Q4_K: return 2048;
	case DUET_Q5_K: return 2560;
	case DUET_Q6_K: return 3072;
	case DUET_F16:
	case DUET_BF16: return 1024;
	case DUET_F32: return 2048;
	default: return 256;
	}
}

/* The interleaved element of a lane: a dword of quants, an F32 value or a
 * BF16 pair; an F16 value. */
static inline int duet_r16_elem_bytes(enum duet_dtype t)
{
	return t == DUET_F16 ? 2 : 4;
}

static inline size_t duet_r16_head_bytes(enum duet_dtype t)
{
	switch (t) {
	case DUET_Q4_K:
	case DUET_Q5_K:
		return 256;
	case DUET_Q6_K:
		return 288;
	case DUET_Q4_1:
		return 64; /* d, m */
	case DUET_Q5_0:
		return 96; /* d, the fifth bits' two words */
	case DUET_Q5_1:
		return 128; /* d, m, the fifth bits */
	case DUET_F16:
	case DUET_BF16:
	case DUET_F32:
		return 0;
	default:
		return 32; /* d */
	}
}

static inline size_t duet_r16_unit_bytes(enum duet_dtype t)
{
	return (size_t)duet_r16_unit(t) * (duet_r16_head_bytes(t) + duet_r16_block_bytes(t));
}

static inline size_t duet_r16_slice_bytes(enum duet_dtype t, int n)
{
	return (size_t)n * (duet_r16_head_bytes(t) + duet_r16_block_bytes(t));
}

/* The unit holding block i */
static inline size_t duet_r16_unit_at(enum duet_dtype t, int i)
{
	return (size_t)(i / duet_r16_unit(t)) * duet_r16_unit_bytes(t);
}

/* (in a slice of n blocks, whose last unit may be short) */
static inline size_t duet_r16_quants_at(enum duet_dtype t, int i, int n)
{
	const int u = duet_r16_unit(t), first = i - i % u, m = n - first < u ? n - first : u;
	return duet_r16_unit_at(t, i) + (size_t)m * duet_r16_head_bytes(t) +
	       (size_t)(i % u) * duet_r16_block_bytes(t);
}

static inline size_t duet_r16_heads_at(enum duet_dtype t, int i)
{
	return duet_r16_unit_at(t, i) + (size_t)(i % duet_r16_unit(t)) * duet_r16_head_bytes(t);
}

/* Where dword d of a row block's quants sits in a packed block's quants:
 * d, but for Q6_K, so that its kernel reads its lines in order: for each
 * half h of its 256 values and q = 0, 1, twelve lines: the four ql dwords
 * 16h + 4q.. (their low and high nibbles are values 128h + 16q + l and
 * 128h + 64 + 16q + l, l < 16), the four qh dwords 32 + 8h + 4q.. (the
 * high bits of those and of the next four's), the four ql dwords 16h + 8 +
 * 4q.. (values 32 further). Q6_K ran at 0.75x Q4_K's bandwidth with its
 * lines in row order (BENCHMARKS.md, 2026-12-05 seventh). */
static inline int duet_r16_dword_at(enum duet_dtype t, int d)
{
	if (t != DUET_Q6_K)
		return d;
	if (d < 32) /* ql */
		return 24 * (d / 16) + 12 * ((d % 8) / 4) + 8 * ((d % 16) / 8) + d % 4;
	d -= 32; /* qh */
	return 24 * (d / 8) + 12 * ((d % 8) / 4) + 4 + d % 4;
}

/* Blocks [i0, i0 + n) of nrows <= 16 row-layout rows of type t (rb bytes
 * apart) into the group form at out (duet_r16_slice_bytes(t, n)); rows
 * past nrows have zero headers (so zero weights). */
void duet_r16_pack(enum duet_dtype t, const uint8_t *rows, size_t rb, int nrows, int i0, int n,
		   uint8_t *out);

/* Whether a tensor of type t with rows of cols values can take the form
 * (rows of whole blocks: F16 and F32 rows may have any length). */
int duet_r16_fits(enum duet_dtype t, int64_t cols);

/* Group g of a packed tensor (g < rows / 16), and how far apart its
 * groups are. */
const uint8_t *duet_r16_group(const struct duet_tensor *t, int64_t g);
size_t duet_r16_group_bytes(const struct duet_tensor *t);

/* Whether row r of t is stored packed; if so, duet_r16_block writes its
 * block i in the type's own form to out. */
int duet_tensor_row_packed(const struct duet_tensor *t, int64_t r);
void duet_r16_block(const struct duet_tensor *t, int64_t r, int i, uint8_t *out);

/* Row r of a tensor in either layout, in row layout: a pointer into the
 * tensor when its row is stored so, else unpacked into buf (row_bytes). */
const void *duet_tensor_row_any(const struct duet_tensor *t, int64_t r, void *buf);

/* Packs a tensor of a type with the 16-row form in place (its memory must
 * be writable: the model's private copy). Tensors that do not fit it
 * (duet_r16_fits) or have fewer than 16 rows are left as they are. */
int duet_r16_pack_tensor(struct duet_tensor *t, struct duet_err *err);

#endif
