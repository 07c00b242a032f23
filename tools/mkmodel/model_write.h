/* Writing model files (GGUF v3 or llama2.c legacy) whose weights come from
 * a row generator, so that a 4 GB model never needs to sit in memory. Used
 * by `duet mkmodel` and by tests that build models of their own. */
#ifndef DUET_MODEL_WRITE_H
#define DUET_MODEL_WRITE_H

#include <stdint.h>

#include "base/err.h"
#include "engine/dtype.h"
#include "engine/model.h"
#include "engine/vocab.h"

enum duet_weight_role {
	DUET_W_EMBD,
	DUET_W_ATTN_NORM,
	DUET_W_Q,
	DUET_W_K,
	DUET_W_V,
	DUET_W_O,
	DUET_W_FFN_NORM,
	DUET_W_GATE,
	DUET_W_UP,
	DUET_W_DOWN,
	DUET_W_OUT_NORM,
	DUET_W_OUTPUT,
	DUET_W_BQ, /* Qwen2's Q/K/V biases: one row each */
	DUET_W_BK,
	DUET_W_BV,
	DUET_W_QNORM, /* Qwen3's per-head Q/K norms: one row of head_dim */
	DUET_W_KNORM,
};

/* Fills out[n] with row `row` of the weight (role, layer); layer is -1 for
 * the ones outside layers. Norms are one row. Must be deterministic: the
 * writers may ask for a row more than once. */
typedef void (*duet_weight_fn)(void *ctx, enum duet_weight_role role, int layer,
			       int64_t row, float *out, int n);

/* Mixes of weight types, as llama.cpp's quantizer makes them. */
enum duet_mix {
	DUET_MIX_NONE,	 /* every matrix in the spec's dtype */
	DUET_MIX_Q4_K_M, /* Q4_K, with Q6_K for the classifier and for attn_v
			    and ffn_down in the layers that get more bits */
};

struct duet_model_spec {
	struct duet_config cfg; /* vocab_size taken from the vocabulary; head_dim
				   0 for dim / n_heads */
	enum duet_dtype dtype;	/* matrices; norms are always f32 */
	enum duet_mix mix;	/* overrides dtype when set */
	/* Llama 3.1+ RoPE: when nonzero, the scaling factor (8 for 3.1, 32 for
	 * 3.2; low/high frequency factors 1 and 4, original context 8192),
	 * written as rope_freqs.weight as llama.cpp's converter computes it. */
	int llama3_rope;
	int tied;		/* classifier shares the embedding */
	const char *name;
	const char *chat_template; /* GGUF tokenizer.chat_template, or NULL */
	const struct duet_vocab *vocab;
	duet_weight_fn weight;
	void *weight_ctx;
	/* Called after each tensor with done/total bytes, for progress. */
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *progress_ctx;
};

/* The type the writers give the matrix (role, layer) of rows of `cols`:
 * the spec's dtype or its mix, and where a row is not a whole number of
 * 256-value super-blocks, llama.cpp's fallback for the K-quants (Q4_K to
 * Q5_0, Q5_K to Q5_1, Q6_K to Q8_0). */
enum duet_dtype duet_spec_tensor_type(const struct duet_model_spec *s, enum duet_weight_role role,
				      int layer, int64_t cols);
/* Llama 3.1+'s RoPE frequency divisor for dimension i (even) of a head of
 * n at the given base and scaling factor. */
float duet_llama3_rope_factor(int i, int n, float base, double factor);
/* llama.cpp's llama_ftype number for the spec (general.file_type). */
int duet_spec_file_type(const struct duet_model_spec *s);

int duet_write_gguf(const char *path, const struct duet_model_spec *s,
		    struct duet_err *err);
/* llama2.c legacy layout (f32 only). */
int duet_write_llama2c(const char *path, const struct duet_model_spec *s,
		       struct duet_err *err);
/* tokenizer.bin for llama2.c: pieces with spaces, BOS/EOS spelled as
 * llama2.c's exporter does. */
int duet_write_llama2c_tokenizer(const char *path, const struct duet_vocab *v,
				 struct duet_err *err);
/* The built-in byte-level vocabulary (259 tokens: <unk>, <s>, </s>, bytes),
 * what `--vocab builtin:bytes` names. */
#define DUET_VOCAB_BUILTIN_BYTES "builtin:bytes"
int duet_vocab_bytes(struct duet_vocab *v, struct duet_err *err);

#endif
