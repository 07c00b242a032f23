#include "mkmodel/model_random.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Llama 2's architecture, RoPE and norm. */
#define LLAMA2 DUET_ARCH_LLAMA, 10000.0f, 1e-5f, 0, 0

static const struct duet_shape shapes[] = {
	{"tiny", 64, 192, 2, 4, 2, 512, 1, "test shape, grouped-query attention", LLAMA2},
	{"tiny-mha", 96, 256, 3, 3, 3, 512, 0, "test shape, separate classifier", LLAMA2},
	{"tiny-k", 256, 768, 2, 4, 2, 512, 0, "test shape, rows of whole K-quant blocks", LLAMA2},
	{"stories15m", 288, 768, 6, 6, 6, 256, 1, "llama2.c TinyStories 15M", LLAMA2},
	{"stories42m", 512, 1376, 8, 8, 8, 1024, 1, "llama2.c TinyStories 42M", LLAMA2},
	{"stories110m", 768, 2048, 12, 12, 12, 1024, 1, "llama2.c TinyStories 110M", LLAMA2},
	/* (RoPE base 10000: with Llama 3's and Qwen's larger bases, these
	 * small heads hardly rotate and the random models repeat one token) */
	{"tiny-llama3", 64, 192, 2, 4, 2, 512, 1, "test shape, Llama 3 RoPE scaling", DUET_ARCH_LLAMA,
	 10000.0f, 1e-5f, 32, 0},
	{"tiny-qwen2", 64, 192, 2, 4, 2, 512, 1, "test shape, Q/K/V biases", DUET_ARCH_QWEN2,
	 10000.0f, 1e-6f, 0, 0},
	{"tiny-qwen3", 64, 192, 2, 4, 2, 512, 1, "test shape, Q/K norms, heads wider than dim",
	 DUET_ARCH_QWEN3, 10000.0f, 1e-6f, 0, 32},
	{"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 2048, 0, "TinyLlama 1.1B", LLAMA2},
	{"llama2-7b", 4096, 11008, 32, 32, 32, 4096, 0, "Llama 2 7B", LLAMA2},
	{"llama3.2-1b", 2048, 8192, 16, 32, 8, 131072, 1, "Llama 3.2 1B", DUET_ARCH_LLAMA, 500000.0f,
	 1e-5f, 32, 0},
	{"llama3.1-8b", 4096, 14336, 32, 32, 8, 131072, 0, "Llama 3.1 8B", DUET_ARCH_LLAMA,
	 500000.0f, 1e-5f, 8, 0},
	{"qwen2.5-0.5b", 896, 4864, 24, 14, 2, 32768, 1, "Qwen2.5 0.5B", DUET_ARCH_QWEN2, 1e6f, 1e-6f,
	 0, 0},
	{"qwen2.5-1.5b", 1536, 8960, 28, 12, 2, 32768, 1, "Qwen2.5 1.5B", DUET_ARCH_QWEN2, 1e6f,
	 1e-6f, 0, 0},
	{"qwen3-0.6b", 1024, 3072, 28, 16, 8, 40960, 1, "Qwen3 0.6B", DUET_ARCH_QWEN3, 1e6f, 1e-6f,
	 0, 128},
	{"qwen3-1.7b", 2048, 6144, 28, 16, 8, 40960, 1, "Qwen3 1.7B", DUET_ARCH_QWEN3, 1e6f, 1e-6f,
	 0, 128},
};

#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

const struct duet_shape *duet_shape_find(const char *name)
{
	for (int i = 0; i < N_SHAPES; i++)
		if (!strcmp(shapes[i].name, name))
			return &shapes[i];
	return NULL;
}

const struct duet_shape *duet_shape_at(int i)
{
	return i >= 0 && i < N_SHAPES ? &shapes[i] : NULL;
}

static uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Standard deviations chosen so activations keep unit scale through the
 * layers and logits spread with a deviation of about 8: neighbouring
 * logits then differ by far more than any rounding between code paths.
 * Each row is seeded from (role, layer, row) alone, so a writer may ask for
 * rows in any order, and both file formats get the same numbers. */
void duet_random_weight(void *ctx, enum duet_weight_role role, int layer, int64_t row,
			float *out, int n)
{
	const struct duet_random_gen *g = ctx;
	uint64_t s = mix(g->seed ^ ((uint64_t)role << 56) ^ ((uint64_t)(layer + 1) << 40) ^
			 (uint64_t)row);
	double std;
	switch (role) {
	case DUET_W_ATTN_NORM:
	case DUET_W_FFN_NORM:
	case DUET_W_OUT_NORM:
	case DUET_W_QNORM:
	case DUET_W_KNORM:
		for (int i = 0; i < n; i++) {
			s += 0x9e3779b97f4a7c15ull;
			out[i] = 1.0f + 0.2f * ((float)(mix(s) >> 40) * 0x1p-24f - 0.5f);
		}
		return;
	case DUET_W_EMBD:
	case DUET_W_OUTPUT:
		std = 8.0 / sqrt(g->dim);
		break;
	case DUET_W_DOWN:
		std = 1.0 / sqrt(g->hidden);
		break;
	default:
		std = 1.0 / sqrt(g->dim);
	}
	/* Uniform on [-a, a] has deviation a / sqrt(3). */
	float a = (float)(std * sqrt(3.0));
	for (int i = 0; i < n; i++) {
		s += 0x9e3779b97f4a7c15ull;
		out[i] = a * (2.0f * ((float)(mix(s) >> 40) * 0x1p-24f) - 1.0f);
	}
}

void duet_random_spec(struct duet_model_spec *spec, struct duet_random_gen *g,
		      const struct duet_shape *sh, enum duet_dtype dtype, int tied,
		      int ctx, uint64_t seed, const struct duet_vocab *vocab, char *name)
{
	g->seed = seed;
	g->dim = sh->dim;
	g->hidden = sh->hidden;
	snprintf(name, 128, "duet-%s-random-seed%llu", sh->name, (unsigned long long)seed);
	memset(spec, 0, sizeof *spec);
	spec->cfg = (struct duet_config){
		.dim = sh->dim, .hidden_dim = sh->hidden, .n_layers = sh->layers,
		.n_heads = sh->heads, .n_kv_heads = sh->kv_heads,
		.ctx_len = ctx > 0 ? ctx : sh->ctx, .arch = sh->arch, .head_dim = sh->head_dim,
		.rope_base = sh->rope_base > 0 ? sh->rope_base : 10000.0f,
		.rms_eps = sh->rms_eps > 0 ? sh->rms_eps : 1e-5f, .rope_scale = 1.0f};
	spec->llama3_rope = sh->llama3_rope;
	spec->dtype = dtype;
	spec->tied = tied >= 0 ? tied : sh->tied;
	spec->name = name;
	spec->vocab = vocab;
	spec->weight = duet_random_weight;
	spec->weight_ctx = g;
}
