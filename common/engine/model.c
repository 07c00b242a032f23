/* Opening a model: map the file, let the format's loader bind geometry,
 * weights and vocabulary (model_gguf.c, model_llama2c.c), then size and
 * digest what was bound. The loaders share only model_check.c. */
#include "engine/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/mapfile.h"
#include "engine/kern/kernels.h"
#include "engine/model_impl.h"
#include "engine/repack.h"

static void hash_tensor(XXH3_state_t *st, int role, int layer, const struct duet_tensor *t)
{
	uint64_t h = XXH3_64bits(t->data, (size_t)t->rows * t->row_bytes);
	int64_t desc[5] = {role, layer, t->type, t->rows, t->cols};
	XXH3_128bits_update(st, desc, sizeof desc);
	XXH3_128bits_update(st, &h, sizeof h);
}

static void hash_floats(XXH3_state_t *st, int role, int layer, const float *v, int n)
{
	int64_t desc[3] = {role, layer, n};
	XXH3_128bits_update(st, desc, sizeof desc);
	XXH3_128bits_update(st, v, sizeof *v * (size_t)n);
}

/* The digest covers what determines the model's outputs, in a canonical
 * order independent of the file format: geometry, every weight (type, shape,
 * content) and the vocabulary. Pieces of control tokens are left out since
 * the formats spell them differently ("<s>" vs "\n<s>\n"). */
static int compute_digest(struct duet_model *m, int skip_weights, struct duet_err *err)
{
	XXH3_state_t *st = XXH3_createState();
	if (!st)
		return duet_errf(err, "%s: out of memory for the digest", m->path);
	XXH3_128bits_reset(st);
	const struct duet_config *c = &m->cfg;
	int32_t geo[8] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads,
			  c->n_kv_heads, c->head_dim, c->vocab_size, c->ctx_len};
	float fgeo[3] = {c->rope_base, c->rms_eps, c->rope_scale};
	XXH3_128bits_update(st, "duet-model-1", 12);
	XXH3_128bits_update(st, geo, sizeof geo);
	XXH3_128bits_update(st, fgeo, sizeof fgeo);
	if (!skip_weights) {
		hash_tensor(st, 0, -1, &m->tok_embd);
		for (int l = 0; l < c->n_layers; l++) {
			const struct duet_layer *L = &m->layers[l];
			hash_floats(st, 1, l, L->attn_norm, c->dim);
			hash_tensor(st, 2, l, &L->wq);
			hash_tensor(st, 3, l, &L->wk);
			hash_tensor(st, 4, l, &L->wv);
			hash_tensor(st, 5, l, &L->wo);
			hash_floats(st, 6, l, L->ffn_norm, c->dim);
			hash_tensor(st, 7, l, &L->w_gate);
			hash_tensor(st, 8, l, &L->w_up);
			hash_tensor(st, 9, l, &L->w_down);
		}
		hash_floats(st, 10, -1, m->out_norm, c->dim);
		/* Architecture-specific parts, only when present (the digests
		 * of plain Llama files stay as they were). */
		int kvd = c->n_kv_heads * c->head_dim;
		for (int l = 0; l < c->n_layers; l++)
			if (m->layers[l].bq) {
				hash_floats(st, 12, l, m->layers[l].bq, c->dim);
				hash_floats(st, 13, l, m->layers[l].bk, kvd);
				hash_floats(st, 14, l, m->layers[l].bv, kvd);
			}
		for (int l = 0; l < c->n_layers; l++)
			if (m->layers[l].q_norm) {
				hash_floats(st, 16, l, m->layers[l].q_norm, c->head_dim);
				hash_floats(st, 17, l, m->layers[l].k_norm, c->head_dim);
			}
		if (m->rope_freqs)
			hash_floats(st, 15, -1, m->rope_freqs, c->head_dim / 2);
		if (m->tied_output)
			XXH3_128bits_update(st, "tied", 4);
		else
			hash_tensor(st, 11, -1, &m->output);
	}
	const struct duet_vocab *v = &m->vocab;
	int32_t vh[4] = {v->n, v->bos, v->eos, v->unk};
	XXH3_128bits_update(st, vh, sizeof vh);
	for (int i = 0; i < v->n; i++) {
		XXH3_128bits_update(st, &v->type[i], 1);
		XXH3_128bits_update(st, &v->score[i], 4);
		if (v->type[i] != DUET_TOK_CONTROL) {
			XXH3_128bits_update(st, &v->len[i], 4);
			XXH3_128bits_update(st, duet_vocab_piece(v, i), v->len[i]);
		}
	}
	XXH128_hash_t h = XXH3_128bits_digest(st);
	XXH3_freeState(st);
	snprintf(m->digest, sizeof m->digest, "%016llx%016llx",
		 (unsigned long long)h.high64, (unsigned long long)h.low64);
	if (skip_weights)
		m->digest[0] = 'g'; /* cannot be mistaken for a full digest */
	return 0;
}

static uint64_t tensor_bytes(const struct duet_tensor *t)
{
	return (uint64_t)t->rows * t->row_bytes;
}

static void compute_sizes(struct duet_model *m)
{
	const struct duet_config *c = &m->cfg;
	uint64_t layer_params = 0, layer_bytes = 0;
	for (int l = 0; l < c->n_layers; l++) {
		const struct duet_layer *L = &m->layers[l];
		const struct duet_tensor *ts[] = {&L->wq, &L->wk, &L->wv, &L->wo,
						  &L->w_gate, &L->w_up, &L->w_down};
		for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
			layer_params += (uint64_t)ts[i]->rows * (uint64_t)ts[i]->cols;
			layer_bytes += tensor_bytes(ts[i]);
		}
	}
	uint64_t norms = duet_model_norms_count(c);
	uint64_t emb = (uint64_t)m->tok_embd.rows * (uint64_t)m->tok_embd.cols;
	uint64_t out = (uint64_t)m->output.rows * (uint64_t)m->output.cols;
	m->n_matmul_params = layer_params;
	m->n_params = layer_params + emb + norms + (m->tied_output ? 0 : out);
	m->weight_bytes = layer_bytes + tensor_bytes(&m->tok_embd) + norms * 4 +
			  (m->tied_output ? 0 : tensor_bytes(&m->output));
	/* Each decoded token streams every layer matrix, the classifier and the
	 * norms; of the embedding table it reads one row. */
	m->decode_bytes = layer_bytes + tensor_bytes(&m->output) + norms * 4 +
			  m->tok_embd.row_bytes;
}

const char *duet_weights_name(enum duet_weights w)
{
	return w == DUET_WEIGHTS_HUGEPAGES ? "hugepages" : w == DUET_WEIGHTS_COPY ? "copy" : "mmap";
}

int duet_weights_parse(const char *s, enum duet_weights *out)
{
	if (strcmp(s, "mmap") == 0)
		*out = DUET_WEIGHTS_MMAP;
	else if (strcmp(s, "hugepages") == 0)
		*out = DUET_WEIGHTS_HUGEPAGES;
	else if (strcmp(s, "copy") == 0)
		*out = DUET_WEIGHTS_COPY;
	else
		return -1;
	return 0;
}

/* Maps the file, or copies it when asked: into huge pages where the
 * machine has them, else into base pages (still packed for the kernels,
 * which beats packing the mapping on the fly: BENCHMARKS.md). A copy that
 * cannot be made (no memory for it) falls back to the mapping, which
 * always works, and says so. */
static int place_weights(struct duet_model *m, enum duet_weights want, struct duet_err *err)
{
	m->weights = DUET_WEIGHTS_MMAP;
	if (want != DUET_WEIGHTS_MMAP) {
		if (want == DUET_WEIGHTS_HUGEPAGES && duet_thp_mode() == 0) {
			snprintf(m->weights_note, sizeof m->weights_note,
				 "transparent huge pages are off on this machine");
			want = DUET_WEIGHTS_COPY;
		}
		struct duet_err e;
		if (duet_copy_file(m->path, want == DUET_WEIGHTS_HUGEPAGES, &m->map, &m->map_size,
				   &m->map_bytes, &e) == 0) {
			m->weights = want;
			return 0;
		}
		snprintf(m->weights_note, sizeof m->weights_note, "%.90s", e.msg);
	}
	if (duet_map_file(m->path, &m->map, &m->map_size, err))
		return -1;
	m->map_bytes = m->map_size;
	return 0;
}

/* A matrix of a type the kernels pack into 16-row groups (engine/repack.h). */
static int pack_one(struct duet_tensor *t, struct duet_err *err)
{
	return duet_kernels_packs(duet_kernels(), t->type) ? duet_r16_pack_tensor(t, err) : 0;
}

/* The matrices the kernels pack into 16-row groups, in the private copy of
 * the weights, after the digest (which names the file's bytes). A
 * classifier tied to the embedding is the same memory: packed once, and
 * both views say so. */
static int pack_tensors(struct duet_model *m, struct duet_err *err)
{
	for (int l = 0; l < m->cfg.n_layers; l++) {
		struct duet_layer *L = &m->layers[l];
		struct duet_tensor *ts[] = {&L->wq, &L->wk, &L->wv, &L->wo,
					    &L->w_gate, &L->w_up, &L->w_down};
		for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
			if (pack_one(ts[i], err))
				return -1;
	}
	if (pack_one(&m->tok_embd, err))
		return -1;
	if (m->tied_output)
		m->output.layout = m->tok_embd.layout;
	else if (pack_one(&m->output, err))
		return -1;
	return 0;
}

static int pack_weights(struct duet_model *m, struct duet_err *err)
{
	if (duet_copy_set_writable(m->map, m->map_bytes, 1, err))
		return -1;
	int rc = pack_tensors(m, err);
	struct duet_err e2;
	if (duet_copy_set_writable(m->map, m->map_bytes, 0, rc ? &e2 : err))
		return -1;
	return rc;
}

int duet_model_open(struct duet_model **out, const char *path,
		    const struct duet_model_opts *opts, struct duet_err *err)
{
	struct duet_model_opts none = {0};
	if (!opts)
		opts = &none;
	*out = NULL;
	struct duet_model *m = calloc(1, sizeof *m);
	if (!m)
		return duet_errf(err, "%s: out of memory", path);
	m->path = strdup(path);
	if (!m->path) {
		free(m);
		return duet_errf(err, "%s: out of memory", path);
	}
	if (place_weights(m, opts->weights, err))
		goto fail;
	uint32_t magic = 0;
	if (m->map_size >= 4)
		memcpy(&magic, m->map, 4);
	int rc;
	if (magic == DUET_GGUF_MAGIC) {
		m->format = DUET_FORMAT_GGUF;
		rc = duet_model_load_gguf(m, err);
	} else {
		m->format = DUET_FORMAT_LLAMA2C;
		rc = duet_model_load_llama2c(m, opts->tokenizer_path, err);
	}
	if (rc)
		goto fail;
	if (m->vocab.n != m->cfg.vocab_size) {
		duet_errf(err, "%s: the vocabulary has %d tokens but the embedding has %d rows",
			  path, m->vocab.n, m->cfg.vocab_size);
		goto fail;
	}
	compute_sizes(m);
	if (compute_digest(m, opts->skip_weight_digest, err))
		goto fail;
	if (m->weights != DUET_WEIGHTS_MMAP && pack_weights(m, err))
		goto fail;
	*out = m;
	return 0;
fail:
	duet_model_close(m);
	return -1;
}

void duet_model_close(struct duet_model *m)
{
	if (!m)
		return;
	if (m->format == DUET_FORMAT_GGUF)
		duet_gguf_free(&m->gguf);
	duet_vocab_free(&m->vocab);
	free(m->layers);
	free(m->norms);
	free(m->biases);
	free(m->rope_freqs);
	duet_unmap_file(m->map, m->map_bytes);
	duet_unmap_file(m->tok_map, m->tok_map_size);
	free(m->path);
	free(m);
}

enum duet_dtype duet_model_dtype(const struct duet_model *m)
{
	return m->layers[0].wq.type;
}

void duet_model_describe(const struct duet_model *m, char *buf, size_t cap)
{
	double p = (double)m->n_params;
	const char *unit = "M";
	double v = p / 1e6;
	if (p >= 1e9) {
		unit = "B";
		v = p / 1e9;
	}
	char ty[8];
	snprintf(ty, sizeof ty, "%s", duet_dtype_name(duet_model_dtype(m)));
	for (char *c = ty; *c; c++)
		if (*c >= 'a' && *c <= 'z')
			*c = (char)(*c - 'a' + 'A');
	snprintf(buf, cap, "%s %.*f%s %s (%s)", duet_arch_name(m->cfg.arch), v < 10 ? 2 : v < 100 ? 1 : 0, v, unit,
		 ty, m->format == DUET_FORMAT_GGUF ? "gguf" : "llama2.c");
}
