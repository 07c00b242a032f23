/* Byte-level BPE encoding (vocabularies with bpe set); duet_tokenize
 * calls it, with the same contract. */
#ifndef DUET_TOKENIZER_BPE_H
#define DUET_TOKENIZER_BPE_H

#include <stddef.h>

#include "base/err.h"
#include "engine/vocab.h"

int duet_bpe_tokenize(const struct duet_vocab *v, const char *text, size_t n, int add_bos,
		      int *ids, size_t cap, size_t *n_out, struct duet_err *err);

#endif
