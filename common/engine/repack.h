/* Q8_0, Q4_0 and Q4_K weights in groups of 16 rows, for integer dot
 * products that give 16 rows' sums in the 16 lanes of one vector.
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
 * values; Q4_K: 256), a row's block being a header of HB bytes (Q8_0, Q4_0:
 * the f16 scale; Q4_K: d, dmin and the 12 bytes of scales and mins) then
 * QB bytes of quants (Q8_0 32, Q4_0 16, Q4_K 128): rows [16g, 16g + 16) for
 * g < N / 16 take the bytes rows 16g to 16g + 15 took (16 x row_bytes):
 * first nb x 16 QB bytes of quants, block i at 16 QB i, in which dword j of
 * lane r is bytes [4j, 4j + 4) of row 16g + r's block i's quants (Q8_0's
 * each plus 128, so that an unsigned-by-signed dot product takes them, as
 * in kernels.h's q8 panel; the nibbles of Q4_0 and Q4_K as they are); then
 * nb x 8 HB header words, block i's at 8 HB i, in which 16-bit word w of
 * row 16g + r's header is at 16 w + r. The last N % 16 rows stay as they
 * were. A group's slice of blocks [i0, i0 + n) is addressable as quants +
 * 16 QB i0 and headers + 8 HB i0, and packing those blocks of 16
 * row-layout rows gives the same bytes (duet_r16_pack), so weights packed
 * at load and weights packed on the fly meet the same kernel and give the
 * same results bit for bit. */
#ifndef DUET_REPACK_H
#define DUET_REPACK_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/model.h"

#define DUET_R16_ROWS 16
/* The largest row block of a type with the form (Q4_K's). */
#define DUET_R16_MAX_BLOCK ((int)sizeof(struct duet_q4_k_block))

/* Whether type t has the 16-row form (Q8_0, Q4_0, Q4_K); its block's
 * values (32; Q4_K 256); the bytes of a group's block of quants (16 QB)
 * and the 16-bit words of its headers (8 HB). */
int duet_r16_type(enum duet_dtype t);
int duet_r16_values(enum duet_dtype t);
size_t duet_r16_block_bytes(enum duet_dtype t);
size_t duet_r16_head_words(enum duet_dtype t);

/* Blocks [i0, i0 + n) of nrows <= 16 row-layout rows of type t (rb bytes
 * apart) into the group form: q gets n blocks of quants, h n blocks of
 * headers; rows past nrows have zero headers (so zero weights). */
void duet_r16_pack(enum duet_dtype t, const uint8_t *rows, size_t rb, int nrows, int i0, int n,
		   uint8_t *q, uint16_t *h);

/* Group g's quants and headers of a packed tensor (g < rows / 16). */
const uint8_t *duet_r16_quants(const struct duet_tensor *t, int64_t g);
const uint16_t *duet_r16_heads(const struct duet_tensor *t, int64_t g);

/* Whether row r of t is stored packed; if so, duet_r16_block writes its
 * block i in the type's own form to out. */
int duet_tensor_row_packed(const struct duet_tensor *t, int64_t r);
void duet_r16_block(const struct duet_tensor *t, int64_t r, int i, uint8_t *out);

/* Row r of a tensor in either layout, in row layout: a pointer into the
 * tensor when its row is stored so, else unpacked into buf (row_bytes). */
const void *duet_tensor_row_any(const struct duet_tensor *t, int64_t r, void *buf);

/* Packs a tensor of a type with the 16-row form in place (its memory must
 * be writable: the model's private copy). Tensors of other types, or with
 * fewer than 16 rows, are left as they are. */
int duet_r16_pack_tensor(struct duet_tensor *t, struct duet_err *err);

#endif
