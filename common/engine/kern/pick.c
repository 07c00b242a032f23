#include "engine/kern/kernels.h"

#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "engine/repack.h"

/* The AVX-512 table's integer kernels (vpdpbusd), which its 16-row groups
 * are packed at load for, need VNNI: AVX-512 CPUs without it (Skylake-X)
 * take the AVX2 table whole. */
static int can_avx512(void)
{
	return duet_cpu_has_avx512() && duet_cpu_has_avx512vnni();
}

const struct duet_kernels *duet_kernels_named(const char *name)
{
	if (!strcmp(name, "scalar"))
		return &duet_kernels_scalar;
	if (!strcmp(name, "avx2") && duet_cpu_has_avx2())
		return &duet_kernels_avx2;
	if (!strcmp(name, "avxvnni") && duet_cpu_has_avxvnni())
		return &duet_kernels_avxvnni;
	if (!strcmp(name, "avx512") && can_avx512())
		return &duet_kernels_avx512;
	return NULL;
}

const struct duet_kernels *duet_kernels(void)
{
	static const struct duet_kernels *chosen;
	if (chosen)
		return chosen;
	const char *env = getenv("DUET_KERNELS");
	const struct duet_kernels *k = env ? duet_kernels_named(env) : NULL;
	if (!k)
		k = can_avx512()           ? &duet_kernels_avx512
		    : duet_cpu_has_avxvnni() ? &duet_kernels_avxvnni
		    : duet_cpu_has_avx2()    ? &duet_kernels_avx2
					  : &duet_kernels_scalar;
	chosen = k;
	return k;
}

enum duet_act duet_kernels_act(const struct duet_kernels *k, enum duet_dtype t,
			       enum duet_qdot q)
{
	if (duet_dtype_quantized(t) && q == DUET_QDOT_INT8)
		return duet_dtype_kquant(t) ? DUET_ACT_Q8K : DUET_ACT_Q8;
	/* A table is picked by its base ISA; bf16 dot products are an
	 * extension some AVX-512 CPUs lack. */
	if (t == DUET_BF16 && k->matmul_bf16_bf16 && duet_cpu_has_avx512bf16())
		return q == DUET_QDOT_INT8 && k->matmul_bf16_hi ? DUET_ACT_BF16_HI : DUET_ACT_BF16;
	return DUET_ACT_F32;
}

duet_matmul_fn duet_kernels_matmul(const struct duet_kernels *k, enum duet_dtype t,
				   enum duet_act a)
{
	if ((unsigned)t >= DUET_DTYPE_SLOTS)
		return NULL;
	if (a == DUET_ACT_BF16)
		return t == DUET_BF16 ? k->matmul_bf16_bf16 : NULL;
	if (a == DUET_ACT_BF16_HI)
		return t == DUET_BF16 ? k->matmul_bf16_hi : NULL;
	if (a == DUET_ACT_Q8 || a == DUET_ACT_Q8K) {
		if (!duet_dtype_quantized(t) || (a == DUET_ACT_Q8K && !duet_dtype_kquant(t)))
			return NULL;
		if (a == DUET_ACT_Q8K)
			return k->matmul_q8k[t] ? k->matmul_q8k[t] : duet_kernels_scalar.matmul_q8k[t];
		return k->matmul_q8[t] ? k->matmul_q8[t] : duet_kernels_scalar.matmul_q8[t];
	}
	return k->matmul_f[t] ? k->matmul_f[t] : duet_kernels_scalar.matmul_f[t];
}

void duet_kernels_cvt(const struct duet_kernels *k, enum duet_dtype t,
		      const void *src, float *dst, int n)
{
	switch (t) {
	case DUET_F32:
		memcpy(dst, src, sizeof(float) * (size_t)n);
		break;
	case DUET_F16:
		k->cvt_f16(src, dst, n);
		break;
	case DUET_BF16:
		k->cvt_bf16(src, dst, n);
		break;
	case DUET_Q8_0:
		k->cvt_q8_0(src, dst, n);
		break;
	default:
		duet_dequant_row(t, src, dst, n);
		break;
	}
}

void duet_kernels_kv_row(const struct duet_kernels *k, enum duet_kv_dtype t, int n_heads,
			 int head_dim, const void *src, float *dst)
{
	int n = n_heads * head_dim;
	switch (t) {
	case DUET_KV_F32:
		memcpy(dst, src, sizeof(float) * (size_t)n);
		break;
	case DUET_KV_F16:
		k->cvt_f16(src, dst, n);
		break;
	case DUET_KV_INT8:
		for (int h = 0; h < n_heads; h++)
			k->cvt_i8((const int8_t *)src + (size_t)h * head_dim,
				  duet_kv_row_scale(t, n_heads, head_dim, src, h),
				  dst + (size_t)h * head_dim, head_dim);
		break;
	}
}

int duet_kernels_packs(const struct duet_kernels *k, enum duet_dtype t)
{
	/* BF16's groups meet the bf16 activations of int8 mode, which need
	 * the CPU's bf16 dot product (a table is picked by its base ISA) */
	if (t == DUET_BF16 && duet_kernels_act(k, t, DUET_QDOT_INT8) != DUET_ACT_BF16_HI)
		return 0;
	return (unsigned)t < DUET_DTYPE_SLOTS && k->pack_r16[t] != NULL;
}

duet_r16_fn duet_kernels_r16(const struct duet_kernels *k, enum duet_dtype t)
{
	return k->matmul_r16[t] ? k->matmul_r16[t] : duet_kernels_scalar.matmul_r16[t];
}

void duet_kernels_pack_r16(const struct duet_kernels *k, enum duet_dtype t, const uint8_t *rows,
			   size_t rb, int nrows, int i0, int n, uint8_t *out)
{
	if (duet_kernels_packs(k, t))
		k->pack_r16[t](rows, rb, nrows, i0, n, out);
	else
		duet_r16_pack(t, rows, rb, nrows, i0, n, out);
}
