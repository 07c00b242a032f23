/* KV rows in transit: the payload frame of a KV chunk. K rows, then V rows,
 * [n][kv_dim] each, in the transit dtype; int8 adds one f32 scale per row
 * (n for K, then n for V) after the values. Pools always hold f32; this
 * module converts rows on the way out and on the way in. */
#ifndef DUET_KVWIRE_H
#define DUET_KVWIRE_H

#include <stddef.h>

#include "base/err.h"

/* Numbered as KvDtype in proto/duet.proto. */
enum duet_kv_dtype {
	DUET_KV_F32 = 0,
	DUET_KV_F16 = 1,
	DUET_KV_INT8 = 2,
};

size_t duet_kvwire_bytes(enum duet_kv_dtype t, int n, int kv_dim);
const char *duet_kvwire_dtype_name(enum duet_kv_dtype t);
/* "f32", "f16", "int8". */
int duet_kvwire_dtype_parse(const char *s, enum duet_kv_dtype *out);

/* Writes row i of K (which = 0) or V (which = 1) into a payload of n rows. */
void duet_kvwire_put_row(enum duet_kv_dtype t, void *payload, int n, int kv_dim, int which,
			 int i, const float *src);
/* Reads row i back to f32. Fails on an int8 scale that is not a finite,
 * non-negative number (a hostile or corrupt sender). */
int duet_kvwire_get_row(enum duet_kv_dtype t, const void *payload, int n, int kv_dim,
			int which, int i, float *dst, struct duet_err *err);

#endif
