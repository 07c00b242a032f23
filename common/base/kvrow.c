#include "base/kvrow.h"

#include <math.h>
#include <string.h>

#include "base/half.h"

const char *duet_kv_dtype_name(enum duet_kv_dtype t)
{
	switch (t) {
	case DUET_KV_F32: return "f32";
	case DUET_KV_F16: return "f16";
	case DUET_KV_INT8: return "int8";
	}
	return "unknown";
}

int duet_kv_dtype_parse(const char *s, enum duet_kv_dtype *out)
{
	static const enum duet_kv_dtype all[] = {DUET_KV_F32, DUET_KV_F16, DUET_KV_INT8};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (strcmp(s, duet_kv_dtype_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	return -1;
}

int duet_kv_dtype_valid(uint32_t t)
{
	return t == DUET_KV_F32 || t == DUET_KV_F16 || t == DUET_KV_INT8;
}

size_t duet_kv_row_bytes(enum duet_kv_dtype t, int n_heads, int head_dim)
{
	size_t n = (size_t)n_heads * (size_t)head_dim;
	switch (t) {
	case DUET_KV_F32: return 4 * n;
	case DUET_KV_F16: return 2 * n;
	case DUET_KV_INT8: return n + sizeof(float) * (size_t)n_heads;
	}
	return 0;
}

float duet_kv_row_scale(enum duet_kv_dtype t, int n_heads, int head_dim, const void *row,
			int h)
{
	if (t != DUET_KV_INT8)
		return 1.0f;
	float d;
	memcpy(&d, (const uint8_t *)row + (size_t)n_heads * head_dim + sizeof(float) * (size_t)h,
	       sizeof d);
	return d;
}

void duet_kv_row_put(enum duet_kv_dtype t, int n_heads, int head_dim, const float *src,
		     void *dst)
{
	int n = n_heads * head_dim;
	switch (t) {
	case DUET_KV_F32:
		memcpy(dst, src, sizeof(float) * (size_t)n);
		break;
	case DUET_KV_F16: {
		uint16_t *h = dst;
		for (int j = 0; j < n; j++)
			h[j] = duet_fp32_to_fp16(src[j]);
		break;
	}
	case DUET_KV_INT8: {
		int8_t *q = dst;
		uint8_t *scales = (uint8_t *)dst + n;
		for (int h = 0; h < n_heads; h++) {
			const float *x = src + (size_t)h * head_dim;
			float amax = 0;
			for (int j = 0; j < head_dim; j++)
				amax = fmaxf(amax, fabsf(x[j]));
			float d = amax / 127.0f, inv = d > 0 ? 1.0f / d : 0;
			for (int j = 0; j < head_dim; j++)
				q[h * head_dim + j] = (int8_t)lrintf(x[j] * inv);
			memcpy(scales + sizeof(float) * (size_t)h, &d, sizeof d);
		}
		break;
	}
	}
}

void duet_kv_row_get(enum duet_kv_dtype t, int n_heads, int head_dim, const void *src,
		     float *dst)
{
	int n = n_heads * head_dim;
	switch (t) {
	case DUET_KV_F32:
		memcpy(dst, src, sizeof(float) * (size_t)n);
		break;
	case DUET_KV_F16: {
		const uint16_t *h = src;
		for (int j = 0; j < n; j++)
			dst[j] = duet_fp16_to_fp32(h[j]);
		break;
	}
	case DUET_KV_INT8: {
		const int8_t *q = src;
		for (int h = 0; h < n_heads; h++) {
			float d = duet_kv_row_scale(t, n_heads, head_dim, src, h);
			for (int j = 0; j < head_dim; j++)
				dst[h * head_dim + j] = d * (float)q[h * head_dim + j];
		}
		break;
	}
	}
}

int duet_kv_rows_check(enum duet_kv_dtype t, int n_heads, int head_dim, const void *rows,
		       int n, struct duet_err *err)
{
	if (t != DUET_KV_INT8)
		return 0;
	size_t rb = duet_kv_row_bytes(t, n_heads, head_dim);
	for (int i = 0; i < n; i++)
		for (int h = 0; h < n_heads; h++) {
			float d = duet_kv_row_scale(t, n_heads, head_dim,
						    (const uint8_t *)rows + (size_t)i * rb, h);
			if (!isfinite(d) || d < 0)
				return duet_errf(err, "kv rows: int8 scale of row %d head %d is %g", i,
						 h, (double)d);
		}
	return 0;
}
