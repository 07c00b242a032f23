/* llama2.c checkpoints: the legacy layout (7-int header, version 0) and the
 * version 1 layout (256-byte "ak42" header), both f32, with the vocabulary
 * in a separate tokenizer.bin. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mapfile.h"
#include "engine/model_impl.h"

#define LLAMA2C_MAGIC 0x616b3432u
#define LLAMA2C_V1_HEADER 256
#define LLAMA2C_LEGACY_HEADER 28

/* Lays out the f32 weights of one kind for every layer, consecutively. */
struct cursor {
	const uint8_t *p;
};

static const float *take(struct cursor *c, uint64_t n_floats)
{
	const float *r = (const float *)c->p;
	c->p += n_floats * 4;
	return r;
}

static void bind_layers(struct duet_model *m, struct cursor *c,
			struct duet_tensor *first, size_t stride, int64_t rows,
			int64_t cols)
{
	for (int l = 0; l < m->cfg.n_layers; l++) {
		struct duet_tensor *t =
			(struct duet_tensor *)((uint8_t *)first + stride * (size_t)l);
		t->type = DUET_F32;
		t->rows = rows;
		t->cols = cols;
		t->row_bytes = (size_t)cols * 4;
		t->data = take(c, (uint64_t)rows * (uint64_t)cols);
	}
}

static void copy_norms(struct duet_model *m, struct cursor *c, int which)
{
	/* norms[]: attention norms of every layer, then ffn norms, then the
	 * final norm; which = 0 (attention) or 1 (ffn). */
	const struct duet_config *cfg = &m->cfg;
	for (int l = 0; l < cfg->n_layers; l++) {
		float *dst = m->norms + ((size_t)which * cfg->n_layers + l) * cfg->dim;
		memcpy(dst, take(c, (uint64_t)cfg->dim), sizeof(float) * (size_t)cfg->dim);
		if (which == 0)
			m->layers[l].attn_norm = dst;
		else
			m->layers[l].ffn_norm = dst;
	}
}

static void copy_out_norm(struct duet_model *m, struct cursor *c)
{
	float *dst = m->norms + 2 * (size_t)m->cfg.n_layers * m->cfg.dim;
	memcpy(dst, take(c, (uint64_t)m->cfg.dim), sizeof(float) * (size_t)m->cfg.dim);
	m->out_norm = dst;
}

static void bind_embedding(struct duet_model *m, struct cursor *c)
{
	struct duet_tensor *t = &m->tok_embd;
	t->type = DUET_F32;
	t->rows = m->cfg.vocab_size;
	t->cols = m->cfg.dim;
	t->row_bytes = (size_t)m->cfg.dim * 4;
	t->data = take(c, (uint64_t)t->rows * (uint64_t)t->cols);
}

#define LAYER_FIELD(f) (&m->layers[0].f), sizeof(struct duet_layer)

static uint64_t expected_size(const struct duet_config *c, int version, int shared)
{
	uint64_t dim = (uint64_t)c->dim, hid = (uint64_t)c->hidden_dim;
	uint64_t L = (uint64_t)c->n_layers, kv = (uint64_t)c->n_kv_heads * c->head_dim;
	uint64_t n = (uint64_t)c->vocab_size * dim;		  /* embedding */
	n += L * (2 * dim + dim * dim * 2 + dim * kv * 2 + 3 * dim * hid);
	n += dim;						  /* final norm */
	if (version == 0)
		n += 2 * (uint64_t)c->ctx_len * (uint64_t)(c->head_dim / 2); /* freq_cis */
	if (!shared)
		n += (uint64_t)c->vocab_size * dim;
	return (version == 0 ? LLAMA2C_LEGACY_HEADER : LLAMA2C_V1_HEADER) + n * 4;
}

static int resolve_tokenizer(struct duet_model *m, const char *given, char *buf,
			     size_t cap, struct duet_err *err)
{
	if (given) {
		snprintf(buf, cap, "%s", given);
		return 0;
	}
	char *copy = strdup(m->path);
	if (!copy)
		return duet_errf(err, "%s: out of memory", m->path);
	int n = snprintf(buf, cap, "%s/tokenizer.bin", dirname(copy));
	free(copy);
	if (n < 0 || (size_t)n >= cap)
		return duet_errf(err, "%s: path too long", m->path);
	return 0;
}

int duet_model_load_llama2c(struct duet_model *m, const char *tokenizer_path,
			    struct duet_err *err)
{
	const uint8_t *base = m->map;
	size_t size = m->map_size;
	struct duet_config *c = &m->cfg;
	int32_t h[7];
	int version = 0, shared;
	if (size < LLAMA2C_LEGACY_HEADER)
		return duet_errf(err, "%s: file is %zu bytes, too short for a GGUF or llama2.c model",
				 m->path, size);
	uint32_t magic;
	memcpy(&magic, base, 4);
	if (magic == LLAMA2C_MAGIC) {
		if (size < LLAMA2C_V1_HEADER)
			return duet_errf(err, "%s: llama2.c header is truncated (%zu bytes)",
					 m->path, size);
		memcpy(&version, base + 4, 4);
		if (version == 2)
			return duet_errf(err, "%s: llama2.c version 2 (int8) checkpoints are not supported; export with --version 1 or convert to GGUF q8_0",
					 m->path);
		if (version != 1)
			return duet_errf(err, "%s: unknown llama2.c checkpoint version %d", m->path,
					 version);
		memcpy(h, base + 8, sizeof h);
		shared = base[36] != 0;
		if (h[5] <= 0)
			return duet_errf(err, "%s: vocab_size = %d is not positive", m->path, h[5]);
	} else {
		memcpy(h, base, sizeof h);
		/* The legacy format signals a separate classifier by a
		 * negative vocabulary size. */
		shared = h[5] > 0;
		if (h[5] == INT32_MIN || h[5] == 0)
			return duet_errf(err, "%s: not a GGUF file, and as a llama2.c checkpoint its vocab_size %d is invalid",
					 m->path, h[5]);
		if (h[5] < 0)
			h[5] = -h[5];
	}
	c->dim = h[0];
	c->hidden_dim = h[1];
	c->n_layers = h[2];
	c->n_heads = h[3];
	c->n_kv_heads = h[4];
	c->vocab_size = h[5];
	c->ctx_len = h[6];
	c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
	c->rope_base = 10000.0f; /* llama2.c's fixed choices (model.py, run.c) */
	c->rms_eps = 1e-5f;
	c->rope_scale = 1.0f;
	/* A file that is neither format usually fails here: say which reading
	 * of it was tried. */
	char label[4200];
	snprintf(label, sizeof label, "%s (not GGUF; read as a llama2.c header)", m->path);
	if (duet_model_check_config(c, label, err))
		return -1;
	uint64_t want = expected_size(c, version, shared);
	if (want != size)
		return duet_errf(err, "%s: file is %zu bytes but its llama2.c header (dim %d, hidden %d, layers %d, heads %d/%d, vocab %d, seq %d, %s classifier) implies %llu",
				 m->path, size, c->dim, c->hidden_dim, c->n_layers, c->n_heads,
				 c->n_kv_heads, c->vocab_size, c->ctx_len,
				 shared ? "shared" : "separate", (unsigned long long)want);
	m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
	m->norms = malloc(sizeof(float) * duet_model_norms_count(c));
	if (!m->layers || !m->norms)
		return duet_errf(err, "%s: out of memory", m->path);
	snprintf(m->name, sizeof m->name, "llama2.c v%d", version);

	int64_t dim = c->dim, kv = (int64_t)c->n_kv_heads * c->head_dim, hid = c->hidden_dim;
	struct cursor cur;
	if (version == 0) {
		cur.p = base + LLAMA2C_LEGACY_HEADER;
		bind_embedding(m, &cur);
		copy_norms(m, &cur, 0);
		bind_layers(m, &cur, LAYER_FIELD(wq), dim, dim);
		bind_layers(m, &cur, LAYER_FIELD(wk), kv, dim);
		bind_layers(m, &cur, LAYER_FIELD(wv), kv, dim);
		bind_layers(m, &cur, LAYER_FIELD(wo), dim, dim);
		copy_norms(m, &cur, 1);
		bind_layers(m, &cur, LAYER_FIELD(w_gate), hid, dim);
		bind_layers(m, &cur, LAYER_FIELD(w_down), dim, hid);
		bind_layers(m, &cur, LAYER_FIELD(w_up), hid, dim);
		copy_out_norm(m, &cur);
		take(&cur, 2 * (uint64_t)c->ctx_len * (uint64_t)(c->head_dim / 2));
	} else {
		cur.p = base + LLAMA2C_V1_HEADER;
		copy_norms(m, &cur, 0);
		copy_norms(m, &cur, 1);
		copy_out_norm(m, &cur);
		bind_embedding(m, &cur);
		bind_layers(m, &cur, LAYER_FIELD(wq), dim, dim);
		bind_layers(m, &cur, LAYER_FIELD(wk), kv, dim);
		bind_layers(m, &cur, LAYER_FIELD(wv), kv, dim);
		bind_layers(m, &cur, LAYER_FIELD(wo), dim, dim);
		bind_layers(m, &cur, LAYER_FIELD(w_gate), hid, dim);
		bind_layers(m, &cur, LAYER_FIELD(w_down), dim, hid);
		bind_layers(m, &cur, LAYER_FIELD(w_up), hid, dim);
	}
	if (shared) {
		m->output = m->tok_embd;
		m->tied_output = 1;
	} else {
		m->output = m->tok_embd;
		m->output.data = take(&cur, (uint64_t)c->vocab_size * (uint64_t)dim);
	}

	char tpath[4096];
	if (resolve_tokenizer(m, tokenizer_path, tpath, sizeof tpath, err))
		return -1;
	if (duet_map_file(tpath, &m->tok_map, &m->tok_map_size, err))
		return duet_err_prefix(err, "%s: llama2.c models need their tokenizer.bin (give it with --tokenizer)",
				       m->path);
	if (duet_vocab_from_llama2c(&m->vocab, m->tok_map, m->tok_map_size, c->vocab_size,
				    tpath, err))
		return duet_err_prefix(err, "%s", m->path);
	return 0;
}
