#include "base/half.h"

#include <string.h>

float duet_fp16_to_fp32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t man = h & 0x3ff;
	uint32_t bits;
	if (exp == 0x1f) {
		bits = sign | 0x7f800000 | (man << 13);
	} else if (exp != 0) {
		bits = sign | ((exp + 112) << 23) | (man << 13);
	} else if (man == 0) {
		bits = sign;
	} else {
		/* Subnormal half: value is man * 2^-24, exact in f32. */
		float f = (float)man * 0x1p-24f;
		memcpy(&bits, &f, 4);
		bits |= sign;
	}
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t duet_fp32_to_fp16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	uint32_t ax = x & 0x7fffffff;
	if (ax >= 0x7f800000) /* Inf or NaN (keep NaN quiet and non-zero) */
		return sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0);
	if (ax >= 0x477ff000) /* rounds to >= 65520: overflow to Inf */
		return sign | 0x7c00;
	if (ax < 0x38800000) { /* below the smallest normal half: subnormal */
		float a;
		memcpy(&a, &ax, 4);
		/* Scaling by 2^24 makes the subnormal's integer mantissa; the
		 * f32 addition of a big constant rounds it to nearest even. */
		float r = a * 0x1p24f + 0x1p23f;
		uint32_t rb;
		memcpy(&rb, &r, 4);
		return sign | (uint16_t)(rb - 0x4b000000);
	}
	/* Normal: rebias the exponent and round the 13 dropped bits to nearest
	 * even; a carry out of the mantissa correctly bumps the exponent. */
	uint32_t m = ax + 0xc8000fff + ((ax >> 13) & 1);
	return sign | (uint16_t)(m >> 13);
}

float duet_bf16_to_fp32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t duet_fp32_to_bf16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	if ((x & 0x7fffffff) > 0x7f800000)
		return (uint16_t)((x >> 16) | 0x40);
	return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}
