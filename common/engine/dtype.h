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
	DUET_Q8_0 = 8,
	DUET_BF16 = 30,
};

/* Q8_0: blocks of 32 weights, one fp16 scale then 32 signed bytes. */
#define DUET_Q8_0_BLOCK 32
#define DUET_Q8_0_BYTES (2 + DUET_Q8_0_BLOCK)

struct duet_q8_0_block {
	uint16_t d;
	int8_t qs[DUET_Q8_0_BLOCK];
};

/* 1 if t is a type duet computes with: f32, f16, bf16, q8_0. */
int duet_dtype_supported(uint32_t t);
/* "f32", "f16", "q8_0", or a GGUF name for types duet knows of but does not
 * support ("q4_k", ...), or "type-N". */
const char *duet_dtype_name(uint32_t t);
/* Elements per block and bytes per block (1/4, 1/2, 32/34). */
int duet_dtype_block(enum duet_dtype t);
size_t duet_dtype_block_bytes(enum duet_dtype t);
/* Bytes of a row of n elements; n must be a multiple of the block size. */
size_t duet_row_bytes(enum duet_dtype t, int64_t n);
/* Parses "f32", "f16", "bf16", "q8_0"; returns -1 if unknown. */
int duet_dtype_parse(const char *s, enum duet_dtype *out);

/* Scalar reference conversions of one row of n elements to f32. */
void duet_dequant_row(enum duet_dtype t, const void *src, float *dst, int64_t n);
/* f32 row to type t (n a multiple of the block size). For Q8_0 this is the
 * round-to-nearest scheme of llama.cpp: d = max|x|/127, q = round(x/d). */
void duet_quant_row(enum duet_dtype t, const float *src, void *dst, int64_t n);

#endif
