/* Llama- and Qwen2-architecture GGUF files: metadata keys (under the
 * architecture's name) and tensor names as llama.cpp's converters write
 * them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model_impl.h"

static int get_int(const struct duet_gguf *g, const char *key, int required,
		   int *out, struct duet_err *err)
{
	uint32_t v;
	int r = duet_gguf_get_u32(g, key, required, &v, err);
	if (r)
		return r;
	if (v > INT32_MAX)
		return duet_errf(err, "%s: GGUF key '%s' = %u is out of range", g->path, key, v);
	*out = (int)v;
	return 0;
}

static int gstr_is(struct duet_gguf_str s, const char *c)
{
	return duet_gguf_str_eq(s, c);
}

static void gstr_copy(char *dst, size_t cap, struct duet_gguf_str s)
{
	size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
	memcpy(dst, s.ptr, n);
	dst[n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)dst[i] < 0x20)
			dst[i] = '?';
}

/* "<arch>.<suffix>" into buf (64 bytes). */
static const char *akey(char *buf, const struct duet_config *c, const char *suffix)
{
	snprintf(buf, 64, "%s.%s", duet_arch_name(c->arch), suffix);
	return buf;
}

static int read_config(struct duet_model *m, struct duet_err *err)
{
	const struct duet_gguf *g = &m->gguf;
	struct duet_config *c = &m->cfg;
	struct duet_gguf_str arch;
	char k[64];
	if (duet_gguf_get_str(g, "general.architecture", 1, &arch, err))
		return -1;
	if (gstr_is(arch, "llama")) {
		c->arch = DUET_ARCH_LLAMA;
	} else if (gstr_is(arch, "qwen2")) {
		c->arch = DUET_ARCH_QWEN2;
	} else if (gstr_is(arch, "qwen3")) {
		c->arch = DUET_ARCH_QWEN3;
	} else {
		char a[64];
		gstr_copy(a, sizeof a, arch);
		return duet_errf(err, "%s: architecture '%s' is not supported (duet runs 'llama', 'qwen2' and 'qwen3')",
				 m->path, a);
	}
	int experts = 0;
	if (get_int(g, akey(k, c, "expert_count"), 0, &experts, err) < 0)
		return -1;
	if (experts > 0)
		return duet_errf(err, "%s: mixture-of-experts models (%s = %d) are not supported",
				 m->path, k, experts);
	if (get_int(g, akey(k, c, "context_length"), 1, &c->ctx_len, err) ||
	    get_int(g, akey(k, c, "embedding_length"), 1, &c->dim, err) ||
	    get_int(g, akey(k, c, "block_count"), 1, &c->n_layers, err) ||
	    get_int(g, akey(k, c, "feed_forward_length"), 1, &c->hidden_dim, err) ||
	    get_int(g, akey(k, c, "attention.head_count"), 1, &c->n_heads, err))
		return -1;
	c->n_kv_heads = c->n_heads;
	if (get_int(g, akey(k, c, "attention.head_count_kv"), 0, &c->n_kv_heads, err) < 0)
		return -1;
	if (duet_gguf_get_f32(g, akey(k, c, "attention.layer_norm_rms_epsilon"), 1, &c->rms_eps, err))
		return -1;
	c->rope_base = 10000.0f;
	if (duet_gguf_get_f32(g, akey(k, c, "rope.freq_base"), 0, &c->rope_base, err) < 0)
		return -1;
	c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
	/* Qwen3's heads are as wide as it says (128 on a dim of 1024). */
	if (c->arch == DUET_ARCH_QWEN3 &&
	    get_int(g, akey(k, c, "attention.key_length"), 0, &c->head_dim, err) < 0)
		return -1;
	const char *same_as_head[] = {"rope.dimension_count", "attention.key_length",
				      "attention.value_length"};
	for (size_t i = 0; i < 3; i++) {
		int v = c->head_dim;
		if (get_int(g, akey(k, c, same_as_head[i]), 0, &v, err) < 0)
			return -1;
		if (v != c->head_dim)
			return duet_errf(err, "%s: %s = %d differs from the head size %d; duet supports full-width RoPE and equal head sizes only",
					 m->path, k, v, c->head_dim);
	}
	c->rope_scale = 1.0f;
	struct duet_gguf_str st;
	int r = duet_gguf_get_str(g, akey(k, c, "rope.scaling.type"), 0, &st, err);
	if (r < 0)
		return -1;
	if (r == 0 && !gstr_is(st, "none")) {
		if (!gstr_is(st, "linear")) {
			char s[32];
			gstr_copy(s, sizeof s, st);
			return duet_errf(err, "%s: RoPE scaling '%s' is not supported (linear, or Llama 3's rope_freqs tensor)",
					 m->path, s);
		}
		if (duet_gguf_get_f32(g, akey(k, c, "rope.scaling.factor"), 1, &c->rope_scale, err))
			return -1;
	}
	if (duet_gguf_get_f32(g, akey(k, c, "rope.scale_linear"), 0, &c->rope_scale, err) < 0)
		return -1;
	struct duet_gguf_str name;
	if (duet_gguf_get_str(g, "general.name", 0, &name, err) == 0)
		gstr_copy(m->name, sizeof m->name, name);
	return 0;
}

/* A 1-dimensional f32/f16/bf16 tensor of n values into dst as f32. */
static int bind_vector(struct duet_model *m, float *dst, const char *name, int64_t n,
		       unsigned char *used, struct duet_err *err)
{
	const struct duet_gguf *g = &m->gguf;
	const struct duet_gguf_tensor *gt = duet_gguf_tensor(g, name);
	if (!gt)
		return duet_errf(err, "%s: tensor '%s' is missing", m->path, name);
	used[gt - g->tensors] = 1;
	if (gt->n_dims != 1 || gt->ne[0] != (uint64_t)n)
		return duet_errf(err, "%s: tensor '%s' has shape [%llu%s] but the metadata implies [%lld]",
				 m->path, name, (unsigned long long)gt->ne[0],
				 gt->n_dims > 1 ? ", ..." : "", (long long)n);
	if (gt->type != DUET_F32 && gt->type != DUET_F16 && gt->type != DUET_BF16)
		return duet_errf(err, "%s: tensor '%s' has type %s; vectors are f32, f16 or bf16",
				 m->path, name, duet_dtype_name(gt->type));
	duet_dequant_row(gt->type, gt->data, dst, n);
	return 0;
}

/* Finds a tensor by name and checks its rank before binding it. */
static int bind(struct duet_model *m, struct duet_tensor *t, const char *name,
		int64_t want_cols, int64_t want_rows, unsigned char *used,
		struct duet_err *err)
{
	const struct duet_gguf *g = &m->gguf;
	const struct duet_gguf_tensor *gt = duet_gguf_tensor(g, name);
	if (!gt)
		return duet_errf(err, "%s: tensor '%s' is missing", m->path, name);
	used[gt - g->tensors] = 1;
	if (gt->n_dims != 2)
		return duet_errf(err, "%s: tensor '%s' has %u dimensions, expected 2", m->path,
				 name, gt->n_dims);
	return duet_model_bind(t, m->path, name, gt->type, gt->data, (int64_t)gt->ne[0],
			       (int64_t)gt->ne[1], want_cols, want_rows, err);
}

static int bind_norm(struct duet_model *m, float *dst, const char *name, unsigned char *used,
		     struct duet_err *err)
{
	return bind_vector(m, dst, name, m->cfg.dim, used, err);
}

/* A per-layer vector tensor: its name with %d for the layer, its length. */
struct layer_vec {
	const char *fmt;
	int n;
};

int duet_model_load_gguf(struct duet_model *m, struct duet_err *err)
{
	if (duet_gguf_parse(&m->gguf, m->map, m->map_size, m->path, err))
		return -1;
	struct duet_gguf *g = &m->gguf;
	if (read_config(m, err))
		return -1;
	if (duet_vocab_from_gguf(&m->vocab, g, err))
		return -1;
	struct duet_config *c = &m->cfg;
	c->vocab_size = m->vocab.n;
	int vs = c->vocab_size;
	char k[64];
	if (get_int(g, akey(k, c, "vocab_size"), 0, &vs, err) < 0)
		return -1;
	if (vs != c->vocab_size)
		return duet_errf(err, "%s: %s = %d but tokenizer.ggml.tokens has %d entries",
				 m->path, k, vs, c->vocab_size);
	if (duet_model_check_config(c, m->path, err))
		return -1;

	unsigned char *used = calloc(g->n_tensors ? g->n_tensors : 1, 1);
	m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
	m->norms = malloc(sizeof(float) * duet_model_norms_count(c));
	if (!used || !m->layers || !m->norms) {
		free(used);
		return duet_errf(err, "%s: out of memory", m->path);
	}
	int kv = c->n_kv_heads * c->head_dim;
	char name[64];
	int rc = -1;
	if (bind(m, &m->tok_embd, "token_embd.weight", c->dim, c->vocab_size, used, err))
		goto out;
	float *nv = m->norms;
	for (int l = 0; l < c->n_layers; l++) {
		struct duet_layer *L = &m->layers[l];
		struct {
			const char *suffix;
			struct duet_tensor *t;
			int64_t cols, rows;
		} mats[] = {
			{"attn_q", &L->wq, c->dim, duet_q_dim(c)},
			{"attn_k", &L->wk, c->dim, kv},
			{"attn_v", &L->wv, c->dim, kv},
			{"attn_output", &L->wo, duet_q_dim(c), c->dim},
			{"ffn_gate", &L->w_gate, c->dim, c->hidden_dim},
			{"ffn_up", &L->w_up, c->dim, c->hidden_dim},
			{"ffn_down", &L->w_down, c->hidden_dim, c->dim},
		};
		for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
			snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[i].suffix);
			if (bind(m, mats[i].t, name, mats[i].cols, mats[i].rows, used, err))
				goto out;
		}
		snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
		if (bind_norm(m, nv, name, used, err))
			goto out;
		L->attn_norm = nv;
		nv += c->dim;
		snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
		if (bind_norm(m, nv, name, used, err))
			goto out;
		L->ffn_norm = nv;
		nv += c->dim;
	}
	if (bind_norm(m, nv, "output_norm.weight", used, err))
		goto out;
	m->out_norm = nv;
	/* The architectures' per-layer vectors, copied to f32: Qwen2's Q/K/V
	 * biases, Qwen3's per-head Q/K norm weights. */
	struct layer_vec vec[3];
	int n_vec = 0, per_layer = 0;
	if (c->arch == DUET_ARCH_QWEN2) {
		vec[n_vec++] = (struct layer_vec){"blk.%d.attn_q.bias", duet_q_dim(c)};
		vec[n_vec++] = (struct layer_vec){"blk.%d.attn_k.bias", kv};
		vec[n_vec++] = (struct layer_vec){"blk.%d.attn_v.bias", kv};
	} else if (c->arch == DUET_ARCH_QWEN3) {
		vec[n_vec++] = (struct layer_vec){"blk.%d.attn_q_norm.weight", c->head_dim};
		vec[n_vec++] = (struct layer_vec){"blk.%d.attn_k_norm.weight", c->head_dim};
	}
	for (int i = 0; i < n_vec; i++)
		per_layer += vec[i].n;
	if (n_vec && !(m->biases = malloc(sizeof(float) * (size_t)c->n_layers * (size_t)per_layer))) {
		duet_errf(err, "%s: out of memory", m->path);
		goto out;
	}
	float *bv = m->biases;
	for (int l = 0; l < c->n_layers && n_vec; l++) {
		struct duet_layer *L = &m->layers[l];
		const float **dst[3] = {&L->bq, &L->bk, &L->bv};
		if (c->arch == DUET_ARCH_QWEN3)
			dst[0] = &L->q_norm, dst[1] = &L->k_norm;
		for (int i = 0; i < n_vec; i++) {
			snprintf(name, sizeof name, vec[i].fmt, l);
			if (bind_vector(m, bv, name, vec[i].n, used, err))
				goto out;
			*dst[i] = bv;
			bv += vec[i].n;
		}
	}
	if (duet_gguf_tensor(g, "rope_freqs.weight")) {
		m->rope_freqs = malloc(sizeof(float) * (size_t)(c->head_dim / 2));
		if (!m->rope_freqs) {
			duet_errf(err, "%s: out of memory", m->path);
			goto out;
		}
		if (bind_vector(m, m->rope_freqs, "rope_freqs.weight", c->head_dim / 2, used, err))
			goto out;
		for (int i = 0; i < c->head_dim / 2; i++)
			if (!(m->rope_freqs[i] > 0) || m->rope_freqs[i] > 1e6f) {
				duet_errf(err, "%s: rope_freqs.weight[%d] = %g is not a frequency divisor",
					  m->path, i, (double)m->rope_freqs[i]);
				goto out;
			}
	}
	if (duet_gguf_tensor(g, "output.weight")) {
		if (bind(m, &m->output, "output.weight", c->dim, c->vocab_size, used, err))
			goto out;
	} else {
		m->output = m->tok_embd;
		m->tied_output = 1;
	}
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		if (used[i])
			continue;
		char tn[96];
		gstr_copy(tn, sizeof tn, g->tensors[i].name);
		duet_errf(err, "%s: tensor '%s' is not part of the %s architecture duet implements",
			  m->path, tn, duet_arch_name(c->arch));
		goto out;
	}
	rc = 0;
out:
	free(used);
	return rc;
}
