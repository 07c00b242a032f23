/* The AVX-512 table's attention kernels over a KV head's cached rows
 * (kern/avx512_attn.c), by the signatures of kernels.h's attn_qk/attn_av. */
#ifndef DUET_AVX512_ATTN_H
#define DUET_AVX512_ATTN_H

#include <stddef.h>

#include "engine/kern/kernels.h"

void duet_avx512_attn_qk(const float *q, int nq, const struct duet_kv_rows *k, int n, float scale,
			 float *s, size_t ld);
void duet_avx512_attn_av(const float *p, size_t ld, int nq, const struct duet_kv_rows *v, int n,
			 float *out);

#endif
