/* 16-bit floats to and from f32, rounding to nearest even as the hardware
 * does: IEEE half precision (binary16: f16 weights, f16 KV rows, scales of
 * quantized blocks) and bfloat16 (the top half of an f32: bf16 weights). */
#ifndef DUET_HALF_H
#define DUET_HALF_H

#include <stdint.h>

float duet_fp16_to_fp32(uint16_t h);
uint16_t duet_fp32_to_fp16(float f);

float duet_bf16_to_fp32(uint16_t h);
/* NaN stays a quiet NaN; overflow rounds to infinity as IEEE says. */
uint16_t duet_fp32_to_bf16(float f);

#endif
