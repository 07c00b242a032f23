/* What the vocabulary loaders share (vocab.c, vocab_bpe.c) and the HF
 * tokenizer.json reader builds on. Not for the rest of the engine. */
#ifndef DUET_VOCAB_IMPL_H
#define DUET_VOCAB_IMPL_H

#include "engine/vocab.h"

/* Allocates the per-token arrays for n tokens and an arena of the given
 * size; the caller fills off/len/type and the arena, then calls
 * duet_vocab_index. */
int duet_vocab_alloc(struct duet_vocab *v, int n, size_t arena_bytes);
/* The piece map, the byte table (SentencePiece) and the special ids. */
int duet_vocab_index(struct duet_vocab *v, const char *path, struct duet_err *err);
/* A BPE piece from its GGUF spelling to the canonical raw bytes (out has
 * room for n bytes: the raw form is never longer); returns the length. */
size_t duet_vocab_bpe_canonical(const char *s, size_t n, int type, char *out);
/* The merges, each "left right" in the GGUF spelling, in rank order;
 * after duet_vocab_index. */
int duet_vocab_bpe_merges(struct duet_vocab *v, int n_merges, const char *const *merges,
			  const uint32_t *lens, const char *path, struct duet_err *err);
/* Byte tokens, added tokens and the pre-tokenizer; after the merges. */
int duet_vocab_bpe_finish(struct duet_vocab *v, enum duet_bpe_pre pre, const char *path,
			  struct duet_err *err);
void duet_vocab_bpe_free(struct duet_vocab *v);

#endif
