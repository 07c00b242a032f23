#include "engine/dtype.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int duet_dtype_supported(uint32_t t)
{
	return t == DUET_F32 || t == DUET_F16 || t == DUET_BF16 || t == DUET_Q8_0;
}

const char *duet_dtype_name(uint32_t t)
{
	/* GGUF's names for the types a user is likely to bring, so that an
	 * unsupported file is reported in words they recognise. */
	static const char *const names[] = {
		[0] = "f32",   [1] = "f16",   [2] = "q4_0",  [3] = "q4_1",
		[6] = "q5_0",  [7] = "q5_1",  [8] = "q8_0",  [9] = "q8_1",
		[10] = "q2_k", [11] = "q3_k", [12] = "q4_k", [13] = "q5_k",
		[14] = "q6_k", [15] = "q8_k", [16] = "iq2_xxs", [17] = "iq2_xs",
		[18] = "iq3_xxs", [19] = "iq1_s", [20] = "iq4_nl", [21] = "iq3_s",
		[22] = "iq2_s", [23] = "iq4_xs", [24] = "i8", [25] = "i16",
		[26] = "i32", [27] = "i64", [28] = "f64", [29] = "iq1_m",
		[30] = "bf16",
	};
	static _Thread_local char buf[24];
	if (t < sizeof names / sizeof names[0] && names[t])
		return names[t];
	snprintf(buf, sizeof buf, "type-%u", t);
	return buf;
}

int duet_dtype_block(enum duet_dtype t)
{
	return t == DUET_Q8_0 ? DUET_Q8_0_BLOCK : 1;
}

size_t duet_dtype_block_bytes(enum duet_dtype t)
{
	switch (t) {
	case DUET_F32:
		return 4;
	case DUET_F16:
	case DUET_BF16:
		return 2;
	case DUET_Q8_0:
		return DUET_Q8_0_BYTES;
	}
	return 0;
}

size_t duet_row_bytes(enum duet_dtype t, int64_t n)
{
	return (size_t)(n / duet_dtype_block(t)) * duet_dtype_block_bytes(t);
}

int duet_dtype_parse(const char *s, enum duet_dtype *out)
{
	if (!strcmp(s, "f32"))
		*out = DUET_F32;
	else if (!strcmp(s, "f16"))
		*out = DUET_F16;
	else if (!strcmp(s, "bf16"))
		*out = DUET_BF16;
	else if (!strcmp(s, "q8_0"))
		*out = DUET_Q8_0;
	else
		return -1;
	return 0;
}

void duet_dequant_row(enum duet_dtype t, const void *src, float *dst, int64_t n)
{
	switch (t) {
	case DUET_F32:
		memcpy(dst, src, (size_t)n * sizeof(float));
		break;
	case DUET_F16: {
		const uint16_t *h = src;
		for (int64_t i = 0; i < n; i++)
			dst[i] = duet_fp16_to_fp32(h[i]);
		break;
	}
	case DUET_BF16: {
		const uint16_t *h = src;
		for (int64_t i = 0; i < n; i++)
			dst[i] = duet_bf16_to_fp32(h[i]);
		break;
	}
	case DUET_Q8_0: {
		const uint8_t *p = src;
		for (int64_t b = 0; b < n / DUET_Q8_0_BLOCK; b++) {
			uint16_t dh;
			memcpy(&dh, p, 2);
			float d = duet_fp16_to_fp32(dh);
			const int8_t *q = (const int8_t *)(p + 2);
			for (int i = 0; i < DUET_Q8_0_BLOCK; i++)
				dst[b * DUET_Q8_0_BLOCK + i] = d * (float)q[i];
			p += DUET_Q8_0_BYTES;
		}
		break;
	}
	}
}

void duet_quant_row(enum duet_dtype t, const float *src, void *dst, int64_t n)
{
	switch (t) {
	case DUET_F32:
		memcpy(dst, src, (size_t)n * sizeof(float));
		break;
	case DUET_F16: {
		uint16_t *h = dst;
		for (int64_t i = 0; i < n; i++)
			h[i] = duet_fp32_to_fp16(src[i]);
		break;
	}
	case DUET_BF16: {
		uint16_t *h = dst;
		for (int64_t i = 0; i < n; i++)
			h[i] = duet_fp32_to_bf16(src[i]);
		break;
	}
	case DUET_Q8_0: {
		uint8_t *p = dst;
		for (int64_t b = 0; b < n / DUET_Q8_0_BLOCK; b++) {
			const float *x = src + b * DUET_Q8_0_BLOCK;
			float amax = 0;
			for (int i = 0; i < DUET_Q8_0_BLOCK; i++)
				amax = fmaxf(amax, fabsf(x[i]));
			float d = amax / 127.0f;
			float id = d != 0 ? 1.0f / d : 0.0f;
			uint16_t dh = duet_fp32_to_fp16(d);
			memcpy(p, &dh, 2);
			int8_t *q = (int8_t *)(p + 2);
			for (int i = 0; i < DUET_Q8_0_BLOCK; i++)
				q[i] = (int8_t)roundf(x[i] * id);
			p += DUET_Q8_0_BYTES;
		}
		break;
	}
	}
}
