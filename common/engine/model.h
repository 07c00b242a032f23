/* A Llama-family model: geometry, weights (views into the memory-mapped
 * file, in their stored type), vocabulary and a digest that identifies the
 * weights and geometry across machines and file formats. */
#ifndef DUET_MODEL_H
#define DUET_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/dtype.h"
#include "engine/gguf.h"
#include "engine/vocab.h"

/* Bounds on geometry accepted from a file: generous for real models, tight
 * enough that sizes computed from them cannot overflow. */
#define DUET_MAX_DIM 65536
#define DUET_MAX_HIDDEN (1 << 20)
#define DUET_MAX_LAYERS 1024
#define DUET_MAX_HEAD_DIM 512
#define DUET_MAX_CTX (1 << 20)

/* How a tensor's rows are stored: as in the file, or Q8_0 in groups of 16
 * rows for the integer kernels (engine/repack.h). */
enum duet_layout {
	DUET_LAYOUT_ROWS,
	DUET_LAYOUT_R16,
};

/* A weight matrix of `rows` outputs by `cols` inputs, row-major, each row
 * row_bytes long in type `type` (GGUF's ne[0] = cols, ne[1] = rows); read
 * rows through duet_tensor_row only in DUET_LAYOUT_ROWS (engine/repack.h
 * has the reader for any layout). */
struct duet_tensor {
	enum duet_dtype type;
	const void *data;
	int64_t rows, cols;
	size_t row_bytes;
	enum duet_layout layout;
};

static inline const void *duet_tensor_row(const struct duet_tensor *t, int64_t r)
{
	return (const uint8_t *)t->data + (size_t)r * t->row_bytes;
}

struct duet_layer {
	const float *attn_norm, *ffn_norm; /* [dim], always f32 */
	/* Biases of the Q, K and V projections ([q], [kv], [kv], f32), added
	 * before RoPE: Qwen2 has them; NULL for Llama. */
	const float *bq, *bk, *bv;
	/* Qwen3: RMS norm weights applied to each head of Q and of K
	 * ([head_dim] each) before RoPE; NULL otherwise. */
	const float *q_norm, *k_norm;
	struct duet_tensor wq, wk, wv, wo;  /* [dim,dim] [kv,dim] [kv,dim] [dim,dim] */
	struct duet_tensor w_gate, w_up;    /* [hidden, dim] */
	struct duet_tensor w_down;	    /* [dim, hidden] */
};

/* The architectures duet runs (general.architecture): Llama (Llama 2 and
 * 3.x, TinyLlama, Mistral) and Qwen2 (Qwen2, Qwen2.5: Llama with biases on
 * Q, K and V). */
enum duet_arch {
	DUET_ARCH_LLAMA,
	DUET_ARCH_QWEN2,
	DUET_ARCH_QWEN3, /* no biases; per-head Q/K norms; heads may span more
			    than dim (head_dim from attention.key_length) */
};
const char *duet_arch_name(enum duet_arch a);


struct duet_config {
	enum duet_arch arch;
	/* n_heads * head_dim is dim for Llama and Qwen2, not always for
	 * Qwen3 (duet_q_dim): the width of Q and of attention's output. */
	int dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim;
	int vocab_size, ctx_len;
	float rope_base, rms_eps;
	float rope_scale; /* linear RoPE scaling: position is divided by it */
};

static inline int duet_q_dim(const struct duet_config *c)
{
	return c->n_heads * c->head_dim;
}

enum duet_model_format {
	DUET_FORMAT_GGUF,
	DUET_FORMAT_LLAMA2C,
};

#define DUET_DIGEST_HEX 33

/* Where the weights live. Decode streams every weight per token, and on
 * 4 KiB pages a TLB miss every 4 KiB halves the read rate: a copy in 2 MiB
 * transparent huge pages is the decode default. The file mapping shares
 * its pages with every process on the machine and costs no copy: the
 * prefill default (sgemm reads each weight once per many tokens). */
enum duet_weights {
	DUET_WEIGHTS_MMAP,
	DUET_WEIGHTS_HUGEPAGES,
	/* A private copy in base (4 KiB) pages: where huge pages are off. As
	 * the huge-page copy, and unlike the mapping, it holds the matrices
	 * packed for the kernels (engine/repack.h), which the mapping's
	 * readers pack on the fly for every product. */
	DUET_WEIGHTS_COPY,
};
/* "mmap", "hugepages", "copy"; parse returns -1 on anything else. */
const char *duet_weights_name(enum duet_weights w);
int duet_weights_parse(const char *s, enum duet_weights *out);

struct duet_model {
	char *path;
	enum duet_model_format format;
	char name[128];
	struct duet_config cfg;
	struct duet_tensor tok_embd; /* [vocab, dim] */
	struct duet_tensor output;   /* [vocab, dim]; tok_embd's data if tied */
	int tied_output;
	const float *out_norm;
	struct duet_layer *layers;
	struct duet_vocab vocab;
	char digest[DUET_DIGEST_HEX]; /* 32 hex digits */
	uint64_t n_params;	      /* every weight, embeddings included */
	uint64_t n_matmul_params;     /* weights a token multiplies through */
	uint64_t weight_bytes;	      /* bytes of all weights as stored */
	uint64_t decode_bytes;	      /* bytes read per decoded token */
	/* Where the weights ended up: hugepages only when asked for and this
	 * machine has transparent huge pages (else a copy, or mmap where
	 * there is no memory for one; weights_note says why). */
	enum duet_weights weights;
	char weights_note[96];
	/* private */
	struct duet_gguf gguf; /* kept for metadata such as chat templates */
	float *norms;	       /* owned f32 copies of every norm vector */
	float *biases;	       /* owned f32 copies of the Q/K/V biases or norms, or NULL */
	/* Llama 3.1+ RoPE: frequency i of each head is divided by
	 * rope_freqs[i] ([head_dim / 2], the file's rope_freqs.weight); NULL
	 * when the file has none. Owned. */
	float *rope_freqs;
	void *map;
	size_t map_size;  /* the file's bytes */
	size_t map_bytes; /* the mapping's (whole huge pages for a copy) */
	void *tok_map;
	size_t tok_map_size;
};

struct duet_model_opts {
	/* llama2.c models: tokenizer file; NULL means tokenizer.bin in the
	 * model's directory. Ignored for GGUF. */
	const char *tokenizer_path;
	/* Skip hashing the weights (the digest then covers geometry and
	 * vocabulary only, and says so with a leading 'g'). For tools that
	 * only need the vocabulary. */
	int skip_weight_digest;
	/* DUET_WEIGHTS_MMAP (the zero default) or a huge-page copy. */
	enum duet_weights weights;
};

int duet_model_open(struct duet_model **out, const char *path,
		    const struct duet_model_opts *opts, struct duet_err *err);
void duet_model_close(struct duet_model *m);

/* Human description, e.g. "llama 110M F32 (gguf)". */
void duet_model_describe(const struct duet_model *m, char *buf, size_t cap);
/* Dominant weight type (that of the layers' matrices). */
enum duet_dtype duet_model_dtype(const struct duet_model *m);

/* Checks geometry read from a file (or about to be written to one) against
 * duet's bounds; path names the file in the message. */
int duet_model_check_config(const struct duet_config *c, const char *path,
			    struct duet_err *err);
/* Floats the norm vectors take: (2 * n_layers + 1) * dim. */
size_t duet_model_norms_count(const struct duet_config *c);

#endif
