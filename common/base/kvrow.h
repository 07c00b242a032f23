/* K and V rows as the cache stores them and the wire carries them: one
 * format for both, so that no node converts KV it does not have to.
 *
 * A row is one position's K (or V) for every KV head: n_heads x head_dim
 * values. f32 and f16 store the values; int8 stores them quantized per
 * head (as Q8_0 quantizes a block: d = max|x| / 127, q = round(x / d)),
 * the values of every head first and then each head's scale as an f32. */
#ifndef DUET_KVROW_H
#define DUET_KVROW_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Numbered as KvDtype in proto/duet.proto. */
enum duet_kv_dtype {
	DUET_KV_F32 = 0,
	DUET_KV_F16 = 1,
	DUET_KV_INT8 = 2,
};

/* "f32", "f16", "int8"; parse returns -1 on anything else. */
const char *duet_kv_dtype_name(enum duet_kv_dtype t);
int duet_kv_dtype_parse(const char *s, enum duet_kv_dtype *out);
/* 1 for the three types above (a number read from the network may be
 * anything). */
int duet_kv_dtype_valid(uint32_t t);

size_t duet_kv_row_bytes(enum duet_kv_dtype t, int n_heads, int head_dim);
/* One row from f32 values, and back. */
void duet_kv_row_put(enum duet_kv_dtype t, int n_heads, int head_dim, const float *src,
		     void *dst);
void duet_kv_row_get(enum duet_kv_dtype t, int n_heads, int head_dim, const void *src,
		     float *dst);
/* Head h of a row: its values (in the row's type) and, for int8, its
 * scale (1 otherwise). */
static inline const void *duet_kv_row_head(enum duet_kv_dtype t, int head_dim, const void *row,
					   int h)
{
	size_t e = t == DUET_KV_F32 ? 4 : t == DUET_KV_F16 ? 2 : 1;
	return (const uint8_t *)row + (size_t)h * (size_t)head_dim * e;
}
float duet_kv_row_scale(enum duet_kv_dtype t, int n_heads, int head_dim, const void *row,
			int h);
/* n rows that came from elsewhere: every int8 scale a finite number >= 0
 * (a NaN would poison every later attention over them). */
int duet_kv_rows_check(enum duet_kv_dtype t, int n_heads, int head_dim, const void *rows,
		       int n, struct duet_err *err);

#endif
