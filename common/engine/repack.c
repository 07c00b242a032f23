#include "engine/repack.h"

#include <stdlib.h>
#include <string.h>

void duet_r16_pack(const uint8_t *rows, size_t rb, int nrows, int i0, int n, uint8_t *q,
		   uint16_t *s)
{
	for (int i = 0; i < n; i++) {
		uint8_t *qi = q + (size_t)i * DUET_R16_BLOCK_BYTES;
		for (int r = 0; r < DUET_R16_ROWS; r++) {
			if (r >= nrows) {
				s[i * DUET_R16_ROWS + r] = 0;
				for (int j = 0; j < 8; j++)
					memset(qi + j * 64 + r * 4, 0x80, 4);
				continue;
			}
			const uint8_t *blk = rows + (size_t)r * rb + (size_t)(i0 + i) * DUET_Q8_0_BYTES;
			memcpy(&s[i * DUET_R16_ROWS + r], blk, 2);
			for (int j = 0; j < 8; j++)
				for (int b = 0; b < 4; b++)
					qi[j * 64 + r * 4 + b] = (uint8_t)(blk[2 + 4 * j + b] ^ 0x80);
		}
	}
}

static size_t group_bytes(const struct duet_tensor *t)
{
	return DUET_R16_ROWS * t->row_bytes;
}

const uint8_t *duet_r16_quants(const struct duet_tensor *t, int64_t g)
{
	return (const uint8_t *)t->data + (size_t)g * group_bytes(t);
}

const uint16_t *duet_r16_scales(const struct duet_tensor *t, int64_t g)
{
	size_t nb = (size_t)t->cols / DUET_Q8_0_BLOCK;
	return (const uint16_t *)(duet_r16_quants(t, g) + nb * DUET_R16_BLOCK_BYTES);
}

void duet_r16_block(const struct duet_tensor *t, int64_t r, int i, uint8_t *out)
{
	int64_t g = r / DUET_R16_ROWS;
	int lane = (int)(r % DUET_R16_ROWS);
	memcpy(out, &duet_r16_scales(t, g)[i * DUET_R16_ROWS + lane], 2);
	const uint8_t *qi = duet_r16_quants(t, g) + (size_t)i * DUET_R16_BLOCK_BYTES;
	for (int j = 0; j < 8; j++)
		for (int b = 0; b < 4; b++)
			out[2 + 4 * j + b] = (uint8_t)(qi[j * 64 + lane * 4 + b] ^ 0x80);
}

int duet_tensor_row_packed(const struct duet_tensor *t, int64_t r)
{
	return t->layout == DUET_LAYOUT_R16 && r < t->rows / DUET_R16_ROWS * DUET_R16_ROWS;
}

const void *duet_tensor_row_any(const struct duet_tensor *t, int64_t r, void *buf)
{
	if (!duet_tensor_row_packed(t, r))
		return duet_tensor_row(t, r);
	for (int i = 0; i < (int)(t->cols / DUET_Q8_0_BLOCK); i++)
		duet_r16_block(t, r, i, (uint8_t *)buf + (size_t)i * DUET_Q8_0_BYTES);
	return buf;
}

int duet_r16_pack_tensor(struct duet_tensor *t, struct duet_err *err)
{
	if (t->type != DUET_Q8_0 || t->layout != DUET_LAYOUT_ROWS || t->rows < DUET_R16_ROWS)
		return 0;
	size_t gb = group_bytes(t);
	int nb = (int)(t->cols / DUET_Q8_0_BLOCK);
	uint8_t *tmp = malloc(gb);
	if (!tmp)
		return duet_errf(err, "repacking a %lld x %lld Q8_0 matrix: out of memory",
				 (long long)t->rows, (long long)t->cols);
	uint8_t *data = (uint8_t *)t->data; /* the model's private copy */
	for (int64_t g = 0; g < t->rows / DUET_R16_ROWS; g++) {
		uint8_t *grp = data + (size_t)g * gb;
		memcpy(tmp, grp, gb);
		duet_r16_pack(tmp, t->row_bytes, DUET_R16_ROWS, 0, nb, grp,
			      (uint16_t *)(grp + (size_t)nb * DUET_R16_BLOCK_BYTES));
	}
	free(tmp);
	t->layout = DUET_LAYOUT_R16;
	return 0;
}
