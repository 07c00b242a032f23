/* Named model shapes and deterministic random weights for them: what
 * `duet mkmodel` writes and what the tests build their models from. No
 * trained weights are needed to measure speed or check that every code path
 * computes the same function. */
#ifndef DUET_MODEL_RANDOM_H
#define DUET_MODEL_RANDOM_H

#include <stdint.h>

#include "mkmodel/model_write.h"

struct duet_shape {
	const char *name;
	int dim, hidden, layers, heads, kv_heads, ctx, tied;
	const char *what;
	/* Zero for Llama 2's: llama, RoPE base 10000, RMS epsilon 1e-5. */
	enum duet_arch arch;
	float rope_base, rms_eps;
	int llama3_rope; /* Llama 3.1+ RoPE scaling factor (8 for 3.1, 32 for
			    3.2), written as rope_freqs.weight; 0 for none */
	int head_dim;	 /* 0: dim / heads (Qwen3 states its own) */
};

/* The shape called name, or NULL. */
const struct duet_shape *duet_shape_find(const char *name);
/* Shape i for listing, NULL past the end. */
const struct duet_shape *duet_shape_at(int i);

/* Generator state for duet_random_weight; lives as long as the spec. */
struct duet_random_gen {
	uint64_t seed;
	int dim, hidden;
};

/* Fills spec (weights from g, seeded by seed) for shape sh. ctx 0 keeps
 * the shape's context; tied -1 keeps its classifier choice. name must have
 * room for 128 bytes and outlive spec. */
void duet_random_spec(struct duet_model_spec *spec, struct duet_random_gen *g,
		      const struct duet_shape *sh, enum duet_dtype dtype, int tied,
		      int ctx, uint64_t seed, const struct duet_vocab *vocab, char *name);

/* The duet_weight_fn behind duet_random_spec: uniform weights scaled so
 * activations keep unit size through the layers and logits spread widely. */
void duet_random_weight(void *ctx, enum duet_weight_role role, int layer,
			int64_t row, float *out, int n);

#endif
