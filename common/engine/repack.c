#include "engine/repack.h"

#include "engine/kern/kernels.h"

#include <stdlib.h>
#include <string.h>

int duet_r16_type(enum duet_dtype t)
{
	return t == DUET_Q8_0 || t == DUET_Q4_0 || t == DUET_Q4_1 || t == DUET_Q5_0 ||
	       t == DUET_Q5_1 || t == DUET_Q4_K || t == DUET_Q5_K || t == DUET_Q6_K ||
	       duet_r16_float(t) || duet_r16_bf16(t);
}

int duet_r16_fits(enum duet_dtype t, int64_t cols)
{
	return duet_r16_type(t) && cols % duet_r16_values(t) == 0;
}

int duet_r16_values(enum duet_dtype t)
{
	return duet_dtype_kquant(t) ? DUET_QK : 32;
}

/* A row's block: a header (Q8_0, Q4_0: the f16 scale; Q4_1, Q5_0, Q5_1:
 * d, the min, the fifth bits, as each has them; Q4_K, Q5_K: d, dmin and the
 * twelve bytes of 6-bit scales and mins; Q6_K: the 16 scales and d)
 * and the quants, the header first but for Q6_K. */
static int head_bytes(enum duet_dtype t)
{
	return (int)duet_r16_head_bytes(t) / DUET_R16_ROWS;
}

static int quant_bytes(enum duet_dtype t)
{
	return (int)duet_r16_block_bytes(t) / DUET_R16_ROWS;
}

static size_t row_block_bytes(enum duet_dtype t)
{
	return (size_t)head_bytes(t) + (size_t)quant_bytes(t);
}

/* Where a row block's header and quants start */
static int head_at(enum duet_dtype t)
{
	return t == DUET_Q6_K ? quant_bytes(t) : 0;
}

static int quants_at(enum duet_dtype t)
{
	return t == DUET_Q6_K ? 0 : head_bytes(t);
}

/* Q8_0's quants are stored plus 128 (kernels.h's unsigned-by-signed dot
 * products); the nibbles of Q4_0 and Q4_K are unsigned already. */
static uint8_t bias_of(enum duet_dtype t)
{
	return t == DUET_Q8_0 ? 0x80 : 0;
}

void duet_r16_pack(enum duet_dtype t, const uint8_t *rows, size_t rb, int nrows, int i0, int n,
		   uint8_t *out)
{
	const int qb = quant_bytes(t), hw = head_bytes(t) / 2, ho = head_at(t), qo = quants_at(t);
	const int es = duet_r16_elem_bytes(t), lb = DUET_R16_ROWS * es;
	const uint8_t bias = bias_of(t);
	for (int i = 0; i < n; i++) {
		uint8_t *qi = out + duet_r16_quants_at(t, i, n);
		uint16_t *hi = (uint16_t *)(out + duet_r16_heads_at(t, i));
		for (int r = 0; r < DUET_R16_ROWS; r++) {
			if (r >= nrows) {
				for (int w = 0; w < hw; w++)
					hi[w * DUET_R16_ROWS + r] = 0;
				for (int j = 0; j < qb / es; j++)
					memset(qi + duet_r16_dword_at(t, j) * lb + r * es, bias, (size_t)es);
				continue;
			}
			const uint8_t *blk = rows + (size_t)r * rb + (size_t)(i0 + i) * row_block_bytes(t);
			for (int w = 0; w < hw; w++)
				memcpy(&hi[w * DUET_R16_ROWS + r], blk + ho + 2 * w, 2);
			for (int j = 0; j < qb / es; j++)
				for (int b = 0; b < es; b++)
					qi[duet_r16_dword_at(t, j) * lb + r * es + b] =
						(uint8_t)(blk[qo + es * j + b] ^ bias);
		}
	}
}

size_t duet_r16_group_bytes(const struct duet_tensor *t)
{
	return DUET_R16_ROWS * t->row_bytes;
}

const uint8_t *duet_r16_group(const struct duet_tensor *t, int64_t g)
{
	return (const uint8_t *)t->data + (size_t)g * duet_r16_group_bytes(t);
}

void duet_r16_block(const struct duet_tensor *t, int64_t r, int i, uint8_t *out)
{
	int lane = (int)(r % DUET_R16_ROWS), qb = quant_bytes(t->type), hw = head_bytes(t->type) / 2;
	const int es = duet_r16_elem_bytes(t->type), lb = DUET_R16_ROWS * es;
	int ho = head_at(t->type), qo = quants_at(t->type);
	int nb = (int)(t->cols / duet_r16_values(t->type));
	const uint8_t bias = bias_of(t->type);
	const uint8_t *g = duet_r16_group(t, r / DUET_R16_ROWS);
	const uint16_t *hi = (const uint16_t *)(g + duet_r16_heads_at(t->type, i));
	for (int w = 0; w < hw; w++)
		memcpy(out + ho + 2 * w, &hi[w * DUET_R16_ROWS + lane], 2);
	const uint8_t *qi = g + duet_r16_quants_at(t->type, i, nb);
	for (int j = 0; j < qb / es; j++)
		for (int b = 0; b < es; b++)
			out[qo + es * j + b] =
				(uint8_t)(qi[duet_r16_dword_at(t->type, j) * lb + lane * es + b] ^ bias);
}

int duet_tensor_row_packed(const struct duet_tensor *t, int64_t r)
{
	return t->layout == DUET_LAYOUT_R16 && r < t->rows / DUET_R16_ROWS * DUET_R16_ROWS;
}

const void *duet_tensor_row_any(const struct duet_tensor *t, int64_t r, void *buf)
{
	if (!duet_tensor_row_packed(t, r))
		return duet_tensor_row(t, r);
	for (int i = 0; i < (int)(t->cols / duet_r16_values(t->type)); i++)
		duet_r16_block(t, r, i, (uint8_t *)buf + (size_t)i * row_block_bytes(t->type));
	return buf;
}

int duet_r16_pack_tensor(struct duet_tensor *t, struct duet_err *err)
{
	if (!duet_r16_fits(t->type, t->cols) || t->layout != DUET_LAYOUT_ROWS ||
	    t->rows < DUET_R16_ROWS)
		return 0;
	size_t gb = duet_r16_group_bytes(t);
	int nb = (int)(t->cols / duet_r16_values(t->type));
	/* the running table's packing (the same bytes): the definition's
	 * byte loop had been two thirds of loading a Q8_0 model */
	const struct duet_kernels *k = duet_kernels();
	uint8_t *tmp = malloc(gb);
	if (!tmp)
		return duet_errf(err, "repacking a %lld x %lld %s matrix: out of memory",
				 (long long)t->rows, (long long)t->cols, duet_dtype_name(t->type));
	uint8_t *data = (uint8_t *)t->data; /* the model's private copy */
	for (int64_t g = 0; g < t->rows / DUET_R16_ROWS; g++) {
		uint8_t *grp = data + (size_t)g * gb;
		memcpy(tmp, grp, gb);
		duet_kernels_pack_r16(k, t->type, tmp, t->row_bytes, DUET_R16_ROWS, 0, nb, grp);
	}
	free(tmp);
	t->layout = DUET_LAYOUT_R16;
	return 0;
}
