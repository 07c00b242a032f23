/* The built-in byte-level vocabulary: <unk>, <s>, </s> and one token per
 * byte value, for machines without a real vocabulary file (every text
 * still tokenizes, through byte fallback). Built as a llama2.c
 * tokenizer.bin in memory and read by the same parser as a file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mkmodel/model_write.h"

#define BYTE_VOCAB_N (3 + 256)

static uint8_t *put_entry(uint8_t *p, const char *piece)
{
	float score = 0;
	int32_t len = (int32_t)strlen(piece);
	memcpy(p, &score, 4);
	memcpy(p + 4, &len, 4);
	memcpy(p + 8, piece, (size_t)len);
	return p + 8 + len;
}

int duet_vocab_bytes(struct duet_vocab *v, struct duet_err *err)
{
	/* header, then at most 8 + 6 bytes per entry */
	uint8_t *blob = malloc(4 + BYTE_VOCAB_N * 14), *p = blob;
	if (!blob)
		return duet_errf(err, "built-in byte vocabulary: out of memory");
	int32_t max_len = 6;
	memcpy(p, &max_len, 4);
	p += 4;
	p = put_entry(p, "<unk>");
	p = put_entry(p, "<s>");
	p = put_entry(p, "</s>");
	for (int b = 0; b < 256; b++) {
		char piece[8];
		snprintf(piece, sizeof piece, "<0x%02X>", b);
		p = put_entry(p, piece);
	}
	int rc = duet_vocab_from_llama2c(v, blob, (size_t)(p - blob), BYTE_VOCAB_N,
					 "built-in byte vocabulary", err);
	free(blob);
	return rc;
}
