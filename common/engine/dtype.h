/* Tensor element types duet reads, numbered as in GGUF (ggml_type) so a
 * file's type id can be used directly. */
#ifndef DUET_DTYPE_H
#define DUET_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "base/half.h"

enum duet_dtype {
	DUET_F32 = 0,
	DUET_F16 = 1,
	DUET_Q4_0 = 2,
	DUET_Q4_1 = 3,
	DUET_Q5_0 = 6,
	DUET_Q5_1 = 7,
	DUET_Q8_0 = 8,
	DUET_Q4_K = 12,
	DUET_Q5_K = 13,
	DUET_Q6_K = 14,
	DUET_BF16 = 30,
};
/* The types duet computes with, for messages. */
#define DUET_DTYPE_LIST "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k and q6_k"
/* Tables indexed by type id hold this many entries. */
#define DUET_DTYPE_SLOTS 31

/* The block layouts of ggml (ggml-common.h), byte for byte; fp16 fields as
 * raw bits. A weight is reconstructed as follows (x_i the i-th of the
 * block, q_i its quant):
 *
 * Q8_0: x_i = d * qs[i]                     (32 per block)
 * Q4_0: x_i = d * (q_i - 8), q_i a nibble   (32; element i < 16 is the low
 *       nibble of qs[i], element i + 16 the high one)
 * Q4_1: x_i = d * q_i + m                   (nibbles as Q4_0)
 * Q5_0: x_i = d * (q_i - 16), q_i the nibble plus bit i of qh (a
 *       little-endian uint32) as its fifth bit
 * Q5_1: x_i = d * q_i + m                   (bits as Q5_0)
 * K-quants: super-blocks of 256.
 * Q4_K: 8 sub-blocks of 32 with 6-bit scale sc_j and min m_j packed in 12
 *       bytes: x = d * sc_j * q - dmin * m_j. Each 64 values take 32 bytes
 *       of qs: the low nibbles are values 0-31, the high ones 32-63.
 * Q5_K: as Q4_K with a fifth bit from qh: value l of 64-group g (l < 32)
 *       takes bit 2g of qh[l], value l + 32 bit 2g + 1.
 * Q6_K: 16 sub-blocks of 16 with int8 scales: x = d * sc_s * (q - 32). In
 *       each 128 values (64 bytes of ql, 32 of qh), value l < 32 is the low
 *       nibble of ql[l] with bits 0-1 of qh[l] above it, l + 32 the low
 *       nibble of ql[l + 32] with bits 2-3, l + 64 the high nibble of
 *       ql[l] with bits 4-5, l + 96 the high nibble of ql[l + 32] with
 *       bits 6-7. */
#define DUET_Q8_0_BLOCK 32
#define DUET_Q8_0_BYTES (2 + DUET_Q8_0_BLOCK)
#define DUET_QK 256
#define DUET_QK_SCALES 12

struct duet_q8_0_block {
	uint16_t d;
	int8_t qs[DUET_Q8_0_BLOCK];
};
struct duet_q4_0_block {
	uint16_t d;
	uint8_t qs[16];
};
struct duet_q4_1_block {
	uint16_t d, m;
	uint8_t qs[16];
};
struct duet_q5_0_block {
	uint16_t d;
	uint8_t qh[4];
	uint8_t qs[16];
};
struct duet_q5_1_block {
	uint16_t d, m;
	uint8_t qh[4];
	uint8_t qs[16];
};
struct duet_q4_k_block {
	uint16_t d, dmin;
	uint8_t scales[DUET_QK_SCALES];
	uint8_t qs[DUET_QK / 2];
};
struct duet_q5_k_block {
	uint16_t d, dmin;
	uint8_t scales[DUET_QK_SCALES];
	uint8_t qh[DUET_QK / 8];
	uint8_t qs[DUET_QK / 2];
};
struct duet_q6_k_block {
	uint8_t ql[DUET_QK / 2];
	uint8_t qh[DUET_QK / 4];
	int8_t scales[DUET_QK / 16];
	uint16_t d;
};

/* 1 for the block-quantized types (their activations go int8). */
int duet_dtype_quantized(enum duet_dtype t);
/* 1 for the types of 256-value super-blocks (their activations go int8
 * per 256, kern/kernels.h). */
int duet_dtype_kquant(enum duet_dtype t);
/* Sub-block j (0-7) of a Q4_K/Q5_K super-block: its 6-bit scale and min.
 * Bytes 0-3: scales 0-3 in the low 6 bits, the top 2 bits of scales 4-7
 * above them; bytes 4-7 likewise for the mins; bytes 8-11: the low 4 bits
 * of scale 4+i and of min 4+i. (Inline: the kernels take it per block.) */
static inline void duet_qk_scale_min(const uint8_t q[DUET_QK_SCALES], int j, int *sc, int *m)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

/* A 32-value block of any quantized type in one integer form: value i is
 * sc[i / 16] * q[i] + m. The scalar integer kernels multiply this form;
 * the reference dequantizers do not use it (they follow the layouts
 * above), so the two check each other. blk is the tensor row, i the
 * 32-block's index in it. */
void duet_block_unpack32(enum duet_dtype t, const void *row, int64_t i, int8_t q[32],
			 float sc[2], float *m);

/* 1 if t is a type duet computes with. */
int duet_dtype_supported(uint32_t t);
/* "f32", "f16", "q8_0", or a GGUF name for types duet knows of but does not
 * support ("q4_k", ...), or "type-N". */
const char *duet_dtype_name(uint32_t t);
/* Elements per block and bytes per block (1/4, 1/2, 32/34, 256/144...). */
int duet_dtype_block(enum duet_dtype t);
size_t duet_dtype_block_bytes(enum duet_dtype t);
/* Bytes of a row of n elements; n must be a multiple of the block size. */
size_t duet_row_bytes(enum duet_dtype t, int64_t n);
/* Parses a type's name ("f32", "q4_k", ...); returns -1 if unknown. */
int duet_dtype_parse(const char *s, enum duet_dtype *out);

/* Scalar reference conversions of one row of n elements to f32. */
void duet_dequant_row(enum duet_dtype t, const void *src, float *dst, int64_t n);
/* f32 row to type t (n a multiple of the block size). For Q8_0 this is the
 * round-to-nearest scheme of llama.cpp: d = max|x|/127, q = round(x/d);
 * the other types are quantized by the plain schemes in dtype.c (for test
 * and benchmark models: a file from llama.cpp's quantizer may round
 * differently, but reads the same way). */
void duet_quant_row(enum duet_dtype t, const float *src, void *dst, int64_t n);

#endif
