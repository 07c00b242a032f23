#include "net/kvwire.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/half.h"

static size_t elem_bytes(enum duet_kv_dtype t)
{
	return t == DUET_KV_F32 ? 4 : t == DUET_KV_F16 ? 2 : 1;
}

size_t duet_kvwire_bytes(enum duet_kv_dtype t, int n, int kv_dim)
{
	size_t rows = 2 * (size_t)n;
	size_t b = rows * (size_t)kv_dim * elem_bytes(t);
	if (t == DUET_KV_INT8)
		b += rows * sizeof(float);
	return b;
}

const char *duet_kvwire_dtype_name(enum duet_kv_dtype t)
{
	switch (t) {
	case DUET_KV_F32: return "f32";
	case DUET_KV_F16: return "f16";
	case DUET_KV_INT8: return "int8";
	}
	return "unknown";
}

int duet_kvwire_dtype_parse(const char *s, enum duet_kv_dtype *out)
{
	static const enum duet_kv_dtype all[] = {DUET_KV_F32, DUET_KV_F16, DUET_KV_INT8};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (strcmp(s, duet_kvwire_dtype_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	return -1;
}

static size_t row_index(int n, int which, int i)
{
	return (size_t)which * (size_t)n + (size_t)i;
}

void duet_kvwire_put_row(enum duet_kv_dtype t, void *payload, int n, int kv_dim, int which,
			 int i, const float *src)
{
	size_t r = row_index(n, which, i);
	uint8_t *base = (uint8_t *)payload + r * (size_t)kv_dim * elem_bytes(t);
	switch (t) {
	case DUET_KV_F32:
		memcpy(base, src, sizeof(float) * (size_t)kv_dim);
		break;
	case DUET_KV_F16:
		for (int j = 0; j < kv_dim; j++) {
			uint16_t h = duet_fp32_to_fp16(src[j]);
			memcpy(base + 2 * (size_t)j, &h, 2);
		}
		break;
	case DUET_KV_INT8: {
		float amax = 0;
		for (int j = 0; j < kv_dim; j++)
			amax = fmaxf(amax, fabsf(src[j]));
		float d = amax / 127.0f, inv = d > 0 ? 1.0f / d : 0;
		int8_t *q = (int8_t *)base;
		for (int j = 0; j < kv_dim; j++)
			q[j] = (int8_t)lrintf(src[j] * inv);
		uint8_t *scales = (uint8_t *)payload + 2 * (size_t)n * (size_t)kv_dim;
		memcpy(scales + r * sizeof(float), &d, sizeof d);
		break;
	}
	}
}

int duet_kvwire_get_row(enum duet_kv_dtype t, const void *payload, int n, int kv_dim,
			int which, int i, float *dst, struct duet_err *err)
{
	size_t r = row_index(n, which, i);
	const uint8_t *base = (const uint8_t *)payload + r * (size_t)kv_dim * elem_bytes(t);
	switch (t) {
	case DUET_KV_F32:
		memcpy(dst, base, sizeof(float) * (size_t)kv_dim);
		return 0;
	case DUET_KV_F16:
		for (int j = 0; j < kv_dim; j++) {
			uint16_t h;
			memcpy(&h, base + 2 * (size_t)j, 2);
			dst[j] = duet_fp16_to_fp32(h);
		}
		return 0;
	case DUET_KV_INT8: {
		const uint8_t *scales = (const uint8_t *)payload + 2 * (size_t)n * (size_t)kv_dim;
		float d;
		memcpy(&d, scales + r * sizeof(float), sizeof d);
		if (!isfinite(d) || d < 0)
			return duet_errf(err, "kv payload: int8 scale of row %d is %g", i, d);
		const int8_t *q = (const int8_t *)base;
		for (int j = 0; j < kv_dim; j++)
			dst[j] = d * (float)q[j];
		return 0;
	}
	}
	return duet_errf(err, "kv payload: unknown dtype %d", (int)t);
}
