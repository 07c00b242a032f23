/* SentencePiece BPE encoding and decoding over a duet_vocab. */
#ifndef DUET_TOKENIZER_H
#define DUET_TOKENIZER_H

#include <stddef.h>

#include "base/err.h"
#include "engine/vocab.h"

/* Upper bound on the tokens of a text of n bytes (every byte a token, plus
 * BOS and the dummy prefix), for sizing the output of duet_tokenize. */
static inline size_t duet_tokenize_max(size_t n) { return n + 2; }

/* Encodes text (any bytes; invalid UTF-8 falls back to byte tokens) into
 * out, which has room for cap ids. add_bos prepends BOS when the
 * vocabulary asks for it. */
int duet_tokenize(const struct duet_vocab *v, const char *text, size_t n,
		  int add_bos, int *out, size_t cap, size_t *n_out,
		  struct duet_err *err);

/* Incremental detokenizer: bytes come out only as whole UTF-8 characters,
 * so a character spelled by several byte tokens is never split across two
 * outputs; bytes that can never form a character become U+FFFD. */
struct duet_detok {
	const struct duet_vocab *v;
	int strip_space; /* drop the dummy-prefix space of the next piece */
	unsigned char pend[4];
	int npend;
};

/* Bytes that one push can write at most. */
#define DUET_DETOK_MAX_OUT (DUET_VOCAB_MAX_PIECE * 3 + 16)

/* at_start: the next token begins a text (after BOS), so SentencePiece's
 * leading space is removed. A continuation of a prompt passes 0. */
void duet_detok_init(struct duet_detok *d, const struct duet_vocab *v, int at_start);
/* Appends token id's text; writes the newly complete characters to out
 * (room for DUET_DETOK_MAX_OUT bytes) and their length to *n. */
int duet_detok_push(struct duet_detok *d, int id, char *out, size_t *n,
		    struct duet_err *err);
/* Ends the text: whatever is pending becomes U+FFFD. */
size_t duet_detok_flush(struct duet_detok *d, char *out);

/* Decodes a whole sequence (as from its start) into out of cap bytes,
 * NUL-terminated; fails if it does not fit or an id is invalid. */
int duet_detokenize(const struct duet_vocab *v, const int *ids, size_t n,
		    char *out, size_t cap, size_t *n_out, struct duet_err *err);

/* The bytes a token stands for, without any leading-space handling:
 * a byte token gives its byte, a control token nothing, the unknown
 * token " \xe2\x81\x87 " (what SentencePiece prints), others the piece.
 * Returns the length; buf needs DUET_VOCAB_MAX_PIECE + 8 bytes. */
int duet_token_bytes(const struct duet_vocab *v, int id, char *buf);

/* Length of the valid UTF-8 sequence at s (n bytes available): >0 for a
 * complete character, 0 for a valid but incomplete prefix, -1 if s[0]
 * cannot start a character here. */
int duet_utf8_len(const unsigned char *s, size_t n);

#endif
