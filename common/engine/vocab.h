/* A SentencePiece vocabulary as Llama uses it, read from GGUF
 * (tokenizer.ggml.*) or from llama2.c's tokenizer.bin.
 *
 * Pieces are kept in one canonical form whatever the source: GGUF spells
 * the word-boundary marker U+2581 ("▁"), tokenizer.bin a plain space; here
 * it is always a space. Token types follow GGUF's numbering; when a source
 * has none (tokenizer.bin) they are inferred the same way for both, so the
 * two files of one vocabulary give the same ids. */
#ifndef DUET_VOCAB_H
#define DUET_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/gguf.h"

enum duet_tok_type {
	DUET_TOK_NORMAL = 1,
	DUET_TOK_UNKNOWN = 2,
	DUET_TOK_CONTROL = 3,
	DUET_TOK_USER = 4,
	DUET_TOK_UNUSED = 5,
	DUET_TOK_BYTE = 6,
};

/* Longest piece accepted from a file (Llama's longest is 16 bytes; the
 * limit guards buffers sized from it against forged files). */
#define DUET_VOCAB_MAX_PIECE 256
/* End-of-generation tokens kept (EOS plus the end-of-turn ones). */
#define DUET_VOCAB_MAX_EOG 8
#define DUET_VOCAB_MAX_TOKENS (1 << 22)

/* Byte-level BPE pre-tokenizers (tokenizer.ggml.pre). */
enum duet_bpe_pre {
	DUET_PRE_LLAMA3, /* "llama-bpe": Llama 3 */
	DUET_PRE_QWEN2,	 /* "qwen2": Qwen2, Qwen2.5, Qwen3 (and NFC first) */
};

struct duet_vocab {
	int n;
	char *arena;	 /* all pieces, canonical form, NUL-separated */
	uint32_t *off;	 /* piece i is arena + off[i], len[i] bytes */
	uint32_t *len;
	float *score;
	uint8_t *type;
	int bos, eos, unk;
	/* Tokens that end a generation: EOS, and the chat models' end-of-turn
	 * tokens (tokenizer.ggml.eot_token_id, or control tokens spelled
	 * <|eot_id|>, <|eom_id|>, <|im_end|>, <|end|>, <end_of_turn>,
	 * <|endoftext|>, as llama.cpp recognises them). */
	int eog[DUET_VOCAB_MAX_EOG];
	int n_eog;
	int byte_id[256]; /* token of each raw byte, -1 if absent */
	int max_piece_len;
	int add_bos;	      /* prepend BOS when encoding a prompt */
	int add_space_prefix; /* SentencePiece's dummy prefix */
	/* Open-addressing map from piece to id, for normal and user tokens
	 * only: control, byte and unknown tokens never come out of merging. */
	int32_t *map;
	uint32_t map_mask;
	/* Byte-level BPE (tokenizer.ggml.model "gpt2"): pieces are raw bytes
	 * (GGUF spells them in GPT-2's byte-to-character form); the merges
	 * in rank order as (left, right, merged) ids, and a map from the pair
	 * to its rank; the added tokens (control and user-defined), longest
	 * first, matched in text before the pre-tokenizer, with a bitmap of
	 * their first bytes; the pre-tokenizer's compiled regex. */
	int bpe;
	enum duet_bpe_pre pre;
	int n_merges;
	int32_t *merges;
	uint64_t *merge_key;
	int32_t *merge_rank;
	uint32_t merge_mask;
	int n_special;
	int32_t *special;
	uint8_t special_first[32];
	void *re;
};

/* tokenizer.* keys of a GGUF file (tokenizer.ggml.model "llama" or "gpt2"). */
int duet_vocab_from_gguf(struct duet_vocab *v, const struct duet_gguf *g,
			 struct duet_err *err);
/* A llama2.c tokenizer.bin in memory. expect_n is the model's vocabulary
 * size, or -1 to read entries up to the end of the file. */
int duet_vocab_from_llama2c(struct duet_vocab *v, const void *data, size_t size,
			    int expect_n, const char *path, struct duet_err *err);
void duet_vocab_free(struct duet_vocab *v);
/* Reads a vocabulary from a vocab-only (or any) GGUF or a tokenizer.bin. */
int duet_vocab_load_file(struct duet_vocab *v, const char *path, struct duet_err *err);

/* Id of the control or user-defined token spelled s, or -1. */
int duet_vocab_find_special(const struct duet_vocab *v, const char *s);

/* Whether token id ends a generation (EOS or an end-of-turn token). */
int duet_vocab_is_eog(const struct duet_vocab *v, int id);

/* Id of a normal or user piece (canonical form), or -1. */
int duet_vocab_find(const struct duet_vocab *v, const char *s, size_t n);

static inline const char *duet_vocab_piece(const struct duet_vocab *v, int id)
{
	return v->arena + v->off[id];
}

/* Piece i spelled as GGUF stores it (space back to U+2581, or a BPE piece
 * in the byte-to-character form) into buf of cap bytes; returns the
 * length, or -1 if it does not fit. */
int duet_vocab_gguf_piece(const struct duet_vocab *v, int id, char *buf,
			  size_t cap);

/* The rank of merging tokens l and r and the merged id, or -1. */
int duet_bpe_merge_find(const struct duet_vocab *v, int l, int r, int *merged);
/* Pre-tokenizer names (tokenizer.ggml.pre) and the regex of each. */
int duet_bpe_pre_parse(const char *s, size_t n, enum duet_bpe_pre *out);
const char *duet_bpe_pre_name(enum duet_bpe_pre p);
const char *duet_bpe_pre_regex(enum duet_bpe_pre p);
/* GPT-2's byte-level spelling: raw bytes to characters (out needs 2n
 * bytes), and back (-1 if a character is not in the table). */
size_t duet_bytelevel_encode(const char *raw, size_t n, char *out);
int duet_bytelevel_decode(const char *s, size_t n, char *out, size_t *n_out);

#endif
