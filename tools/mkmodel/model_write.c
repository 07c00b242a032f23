#include "mkmodel/model_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mkmodel/gguf_write.h"

/* Rows are produced and written in batches of about this many bytes. */
#define WRITE_CHUNK (4u << 20)

struct out {
	FILE *f;			 /* llama2.c */
	struct duet_gguf_writer *gw;	 /* GGUF */
	const char *path;
	const struct duet_model_spec *s;
	uint64_t done, total;
	float *frow;
	uint8_t *buf;
};

static int out_write(struct out *o, const void *p, size_t n, struct duet_err *err)
{
	if (o->gw)
		return duet_gguf_write_data(o->gw, p, n, err);
	if (fwrite(p, 1, n, o->f) != n)
		return duet_errnof(err, "%s: write failed", o->path);
	return 0;
}

/* Writes rows x cols of (role, layer) converted to dtype. */
static int write_tensor(struct out *o, enum duet_weight_role role, int layer,
			int64_t rows, int64_t cols, enum duet_dtype t, struct duet_err *err)
{
	size_t rb = duet_row_bytes(t, cols);
	size_t per = WRITE_CHUNK / rb ? WRITE_CHUNK / rb : 1;
	for (int64_t r = 0; r < rows;) {
		size_t k = 0;
		for (; k < per && r < rows; k++, r++) {
			o->s->weight(o->s->weight_ctx, role, layer, r, o->frow, (int)cols);
			duet_quant_row(t, o->frow, o->buf + k * rb, cols);
		}
		if (out_write(o, o->buf, k * rb, err))
			return -1;
		o->done += k * rb;
	}
	if (o->s->progress)
		o->s->progress(o->s->progress_ctx, o->done, o->total);
	return 0;
}

static int out_alloc(struct out *o, struct duet_err *err)
{
	const struct duet_config *c = &o->s->cfg;
	int64_t maxc = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
	o->frow = malloc(sizeof(float) * (size_t)maxc);
	size_t rb = duet_row_bytes(DUET_F32, maxc);
	o->buf = malloc(WRITE_CHUNK > rb ? WRITE_CHUNK : rb);
	if (!o->frow || !o->buf)
		return duet_errf(err, "%s: out of memory", o->path);
	return 0;
}

static void out_free(struct out *o)
{
	free(o->frow);
	free(o->buf);
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and
 * every third one between them. */
static int more_bits(int layer, int n)
{
	return layer < n / 8 || layer >= 7 * n / 8 || (layer - n / 8) % 3 == 2;
}

enum duet_dtype duet_spec_tensor_type(const struct duet_model_spec *s, enum duet_weight_role role,
				      int layer, int64_t cols)
{
	if (role == DUET_W_ATTN_NORM || role == DUET_W_FFN_NORM || role == DUET_W_OUT_NORM ||
	    role == DUET_W_BQ || role == DUET_W_BK || role == DUET_W_BV || role == DUET_W_QNORM ||
	    role == DUET_W_KNORM)
		return DUET_F32;
	enum duet_dtype t = s->dtype;
	if (s->mix == DUET_MIX_Q4_K_M) {
		t = DUET_Q4_K;
		if (role == DUET_W_OUTPUT || (role == DUET_W_EMBD && s->tied))
			t = DUET_Q6_K;
		else if ((role == DUET_W_V || role == DUET_W_DOWN) &&
			 more_bits(layer, s->cfg.n_layers))
			t = DUET_Q6_K;
	}
	if (cols % DUET_QK)
		t = t == DUET_Q4_K ? DUET_Q5_0 : t == DUET_Q5_K ? DUET_Q5_1 : t == DUET_Q6_K ? DUET_Q8_0 : t;
	return t;
}

int duet_spec_file_type(const struct duet_model_spec *s)
{
	if (s->mix == DUET_MIX_Q4_K_M)
		return 15;
	switch (s->dtype) {
	case DUET_F32: return 0;
	case DUET_F16: return 1;
	case DUET_Q4_0: return 2;
	case DUET_Q4_1: return 3;
	case DUET_Q8_0: return 7;
	case DUET_Q5_0: return 8;
	case DUET_Q5_1: return 9;
	case DUET_Q4_K: return 14; /* Q4_K_S: the nearest "mostly" type */
	case DUET_Q5_K: return 16;
	case DUET_Q6_K: return 18;
	case DUET_BF16: return 32;
	}
	return 0;
}

static int check_spec(const char *path, const struct duet_model_spec *s,
		      struct duet_config *c, struct duet_err *err)
{
	*c = s->cfg;
	c->vocab_size = s->vocab->n;
	if (c->head_dim <= 0)
		c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
	if (duet_model_check_config(c, path, err))
		return -1;
	/* The smallest block of the types the spec can give a matrix. */
	int bs = s->mix != DUET_MIX_NONE || duet_dtype_quantized(s->dtype) ? 32 : 1;
	if (c->dim % bs || c->hidden_dim % bs)
		return duet_errf(err, "%s: dim %d and hidden %d must be multiples of %d for %s",
				 path, c->dim, c->hidden_dim, bs, duet_dtype_name(s->dtype));
	return 0;
}

/* The matrices of a layer in llama.cpp's order, with their shapes. */
struct mat {
	enum duet_weight_role role;
	const char *name;
	int64_t rows, cols;
};

#define MAX_LAYER_MATS 12

/* A layer's tensors; Qwen2 adds the Q/K/V biases (vectors, so rows 1 and
 * the name's suffix .bias), Qwen3 the per-head Q/K norms. */
static int layer_mats(const struct duet_config *c, struct mat m[MAX_LAYER_MATS])
{
	int64_t d = c->dim, h = c->hidden_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
	int64_t q = duet_q_dim(c), hd = c->head_dim;
	struct mat all[9] = {
		{DUET_W_ATTN_NORM, "attn_norm", 1, d}, {DUET_W_Q, "attn_q", q, d},
		{DUET_W_K, "attn_k", kv, d},	       {DUET_W_V, "attn_v", kv, d},
		{DUET_W_O, "attn_output", d, q},       {DUET_W_FFN_NORM, "ffn_norm", 1, d},
		{DUET_W_GATE, "ffn_gate", h, d},       {DUET_W_UP, "ffn_up", h, d},
		{DUET_W_DOWN, "ffn_down", d, h},
	};
	memcpy(m, all, sizeof all);
	if (c->arch == DUET_ARCH_QWEN3) {
		struct mat norms[2] = {{DUET_W_QNORM, "attn_q_norm", 1, hd},
				       {DUET_W_KNORM, "attn_k_norm", 1, hd}};
		memcpy(m + 9, norms, sizeof norms);
		return 11;
	}
	if (c->arch != DUET_ARCH_QWEN2)
		return 9;
	struct mat bias[3] = {
		{DUET_W_BQ, "attn_q", 1, q}, {DUET_W_BK, "attn_k", 1, kv}, {DUET_W_BV, "attn_v", 1, kv}};
	memcpy(m + 9, bias, sizeof bias);
	return 12;
}

static int is_bias(enum duet_weight_role r)
{
	return r == DUET_W_BQ || r == DUET_W_BK || r == DUET_W_BV;
}

float duet_llama3_rope_factor(int i, int n, float base, double factor)
{
	const double low = 1, high = 4, orig = 8192;
	const double pi = 3.14159265358979323846;
	double freq = pow((double)base, -(double)i / n);
	double wavelen = 2 * pi / freq;
	if (wavelen < orig / high)
		return 1.0f;
	if (wavelen > orig / low)
		return (float)factor;
	double smooth = (orig / wavelen - low) / (high - low);
	return (float)(1.0 / ((1 - smooth) / factor + smooth));
}

static uint64_t total_bytes(const struct duet_config *c, const struct duet_model_spec *s)
{
	uint64_t vs = (uint64_t)c->vocab_size, n = c->dim * 4u;
	n += vs * duet_row_bytes(duet_spec_tensor_type(s, DUET_W_EMBD, -1, c->dim), c->dim);
	if (!s->tied)
		n += vs * duet_row_bytes(duet_spec_tensor_type(s, DUET_W_OUTPUT, -1, c->dim), c->dim);
	struct mat m[MAX_LAYER_MATS];
	if (s->llama3_rope)
		n += (uint64_t)c->head_dim / 2 * 4;
	for (int l = 0; l < c->n_layers; l++)
		for (int i = 0; i < layer_mats(c, m); i++)
			n += (uint64_t)m[i].rows *
			     duet_row_bytes(duet_spec_tensor_type(s, m[i].role, l, m[i].cols), m[i].cols);
	return n;
}

/* tokenizer.ggml.merges: "left right" in the GGUF spelling, rank order. */
static int put_merges(struct duet_gguf_writer *w, const struct duet_vocab *v, struct duet_err *err)
{
	size_t n = (size_t)v->n_merges;
	char **m = calloc(n ? n : 1, sizeof *m);
	uint32_t *len = calloc(n ? n : 1, sizeof *len);
	int rc = m && len ? 0 : -1;
	for (size_t i = 0; i < n && !rc; i++) {
		char a[DUET_VOCAB_MAX_PIECE * 2], b[DUET_VOCAB_MAX_PIECE * 2];
		int la = duet_vocab_gguf_piece(v, v->merges[3 * i], a, sizeof a);
		int lb = duet_vocab_gguf_piece(v, v->merges[3 * i + 1], b, sizeof b);
		if (la < 0 || lb < 0 || !(m[i] = malloc((size_t)la + (size_t)lb + 2))) {
			rc = -1;
			break;
		}
		memcpy(m[i], a, (size_t)la);
		m[i][la] = ' ';
		memcpy(m[i] + la + 1, b, (size_t)lb);
		len[i] = (uint32_t)(la + lb + 1);
	}
	if (!rc)
		duet_gguf_put_str_arr(w, "tokenizer.ggml.merges", (const char *const *)m, len, n);
	for (size_t i = 0; m && i < n; i++)
		free(m[i]);
	free(m);
	free(len);
	return rc ? duet_errf(err, "out of memory writing %zu merges", n) : 0;
}

int duet_write_gguf(const char *path, const struct duet_model_spec *s,
		    struct duet_err *err)
{
	struct duet_config c;
	if (check_spec(path, s, &c, err))
		return -1;
	const struct duet_vocab *v = s->vocab;
	struct duet_gguf_writer w;
	struct out o = {.path = path, .s = s, .gw = &w};
	if (out_alloc(&o, err)) {
		out_free(&o);
		return -1;
	}
	int rc = -1;
	char **pieces = calloc((size_t)v->n, sizeof *pieces);
	uint32_t *lens = calloc((size_t)v->n, sizeof *lens);
	int32_t *types = calloc((size_t)v->n, sizeof *types);
	if (!pieces || !lens || !types) {
		duet_errf(err, "%s: out of memory", path);
		goto done;
	}
	for (int i = 0; i < v->n; i++) {
		char buf[DUET_VOCAB_MAX_PIECE * 3];
		int n = duet_vocab_gguf_piece(v, i, buf, sizeof buf);
		pieces[i] = malloc((size_t)n + 1);
		if (!pieces[i]) {
			duet_errf(err, "%s: out of memory", path);
			goto done;
		}
		memcpy(pieces[i], buf, (size_t)n);
		lens[i] = (uint32_t)n;
		types[i] = v->type[i];
		/* A llama2.c source spells BOS/EOS with newlines around them;
		 * GGUF readers expect <s> and </s>. */
		if (!v->bpe && (i == v->bos || i == v->eos)) {
			const char *sp = i == v->bos ? "<s>" : "</s>";
			lens[i] = (uint32_t)strlen(sp);
			memcpy(pieces[i], sp, lens[i]);
		}
	}
	if (duet_gguf_writer_open(&w, path, err))
		goto done;
	int ftype = duet_spec_file_type(s);
	const char *arch = duet_arch_name(c.arch);
	char k[64];
#define AK(suffix) (snprintf(k, sizeof k, "%s." suffix, arch), k)
	duet_gguf_put_str(&w, "general.architecture", arch);
	duet_gguf_put_str(&w, "general.name", s->name ? s->name : "duet model");
	duet_gguf_put_u32(&w, "general.file_type", (uint32_t)ftype);
	if (ftype > 1 && ftype != 32)
		duet_gguf_put_u32(&w, "general.quantization_version", 2);
	duet_gguf_put_u32(&w, AK("context_length"), (uint32_t)c.ctx_len);
	duet_gguf_put_u32(&w, AK("embedding_length"), (uint32_t)c.dim);
	duet_gguf_put_u32(&w, AK("block_count"), (uint32_t)c.n_layers);
	duet_gguf_put_u32(&w, AK("feed_forward_length"), (uint32_t)c.hidden_dim);
	duet_gguf_put_u32(&w, AK("rope.dimension_count"), (uint32_t)c.head_dim);
	if (c.arch == DUET_ARCH_QWEN3) {
		duet_gguf_put_u32(&w, AK("attention.key_length"), (uint32_t)c.head_dim);
		duet_gguf_put_u32(&w, AK("attention.value_length"), (uint32_t)c.head_dim);
	}
	duet_gguf_put_u32(&w, AK("attention.head_count"), (uint32_t)c.n_heads);
	duet_gguf_put_u32(&w, AK("attention.head_count_kv"), (uint32_t)c.n_kv_heads);
	duet_gguf_put_f32(&w, AK("attention.layer_norm_rms_epsilon"), c.rms_eps);
	duet_gguf_put_f32(&w, AK("rope.freq_base"), c.rope_base);
	duet_gguf_put_u32(&w, AK("vocab_size"), (uint32_t)c.vocab_size);
#undef AK
	duet_gguf_put_str(&w, "tokenizer.ggml.model", v->bpe ? "gpt2" : "llama");
	if (v->bpe)
		duet_gguf_put_str(&w, "tokenizer.ggml.pre", duet_bpe_pre_name(v->pre));
	if (s->chat_template)
		duet_gguf_put_str(&w, "tokenizer.chat_template", s->chat_template);
	duet_gguf_put_str_arr(&w, "tokenizer.ggml.tokens", (const char *const *)pieces, lens,
			      (uint64_t)v->n);
	if (!v->bpe) /* byte-level vocabularies rank merges, not pieces */
		duet_gguf_put_f32_arr(&w, "tokenizer.ggml.scores", v->score, (uint64_t)v->n);
	duet_gguf_put_i32_arr(&w, "tokenizer.ggml.token_type", types, (uint64_t)v->n);
	if (v->bpe && put_merges(&w, v, err))
		goto fail;
	if (v->bos >= 0)
		duet_gguf_put_u32(&w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
	duet_gguf_put_u32(&w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
	if (v->unk >= 0)
		duet_gguf_put_u32(&w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
	duet_gguf_put_bool(&w, "tokenizer.ggml.add_bos_token", v->add_bos);
	duet_gguf_put_bool(&w, "tokenizer.ggml.add_eos_token", 0);

	/* Tensors in llama.cpp's order; norms f32 as llama.cpp keeps them. */
	uint64_t d = (uint64_t)c.dim, vs = (uint64_t)c.vocab_size;
	enum duet_dtype te = duet_spec_tensor_type(s, DUET_W_EMBD, -1, c.dim);
	enum duet_dtype to = duet_spec_tensor_type(s, DUET_W_OUTPUT, -1, c.dim);
	duet_gguf_add_tensor(&w, "token_embd.weight", 2, (uint64_t[]){d, vs}, te);
	duet_gguf_add_tensor(&w, "output_norm.weight", 1, (uint64_t[]){d}, DUET_F32);
	if (!s->tied)
		duet_gguf_add_tensor(&w, "output.weight", 2, (uint64_t[]){d, vs}, to);
	char name[64];
	struct mat m[MAX_LAYER_MATS];
	int nm = layer_mats(&c, m);
	if (s->llama3_rope)
		duet_gguf_add_tensor(&w, "rope_freqs.weight", 1, (uint64_t[]){(uint64_t)c.head_dim / 2},
				     DUET_F32);
	for (int l = 0; l < c.n_layers; l++)
		for (int i = 0; i < nm; i++) {
			snprintf(name, sizeof name, "blk.%d.%s.%s", l, m[i].name,
				 is_bias(m[i].role) ? "bias" : "weight");
			enum duet_dtype t = duet_spec_tensor_type(s, m[i].role, l, m[i].cols);
			if (m[i].rows == 1)
				duet_gguf_add_tensor(&w, name, 1, (uint64_t[]){(uint64_t)m[i].cols}, t);
			else
				duet_gguf_add_tensor(&w, name, 2,
						     (uint64_t[]){(uint64_t)m[i].cols, (uint64_t)m[i].rows}, t);
		}
	if (duet_gguf_writer_begin_data(&w, err))
		goto fail;
	o.total = total_bytes(&c, s);
	if (write_tensor(&o, DUET_W_EMBD, -1, c.vocab_size, c.dim, te, err) ||
	    write_tensor(&o, DUET_W_OUT_NORM, -1, 1, c.dim, DUET_F32, err) ||
	    (!s->tied && write_tensor(&o, DUET_W_OUTPUT, -1, c.vocab_size, c.dim, to, err)))
		goto fail;
	if (s->llama3_rope) {
		float f[DUET_MAX_HEAD_DIM / 2];
		for (int i = 0; i < c.head_dim / 2; i++)
			f[i] = duet_llama3_rope_factor(2 * i, c.head_dim, c.rope_base, s->llama3_rope);
		if (duet_gguf_write_data(&w, f, sizeof(float) * (size_t)(c.head_dim / 2), err))
			goto fail;
	}
	for (int l = 0; l < c.n_layers; l++)
		for (int i = 0; i < nm; i++)
			if (write_tensor(&o, m[i].role, l, m[i].rows, m[i].cols,
					 duet_spec_tensor_type(s, m[i].role, l, m[i].cols), err))
				goto fail;
	if (duet_gguf_writer_close(&w, err) == 0)
		rc = 0;
	goto done;
fail:
	duet_gguf_writer_abort(&w);
done:
	if (pieces)
		for (int i = 0; i < v->n; i++)
			free(pieces[i]);
	free(pieces);
	free(lens);
	free(types);
	out_free(&o);
	return rc;
}

int duet_write_llama2c(const char *path, const struct duet_model_spec *s,
		       struct duet_err *err)
{
	struct duet_config c;
	if (check_spec(path, s, &c, err))
		return -1;
	if (s->dtype != DUET_F32)
		return duet_errf(err, "%s: llama2.c checkpoints hold f32 weights only (asked for %s)",
				 path, duet_dtype_name(s->dtype));
	if (c.rope_base != 10000.0f || c.rms_eps != 1e-5f || c.arch != DUET_ARCH_LLAMA ||
	    s->llama3_rope)
		return duet_errf(err, "%s: llama2.c checkpoints imply Llama 2: RoPE base 10000 without scaling, RMS epsilon 1e-5, no biases",
				 path);
	struct out o = {.path = path, .s = s};
	if (out_alloc(&o, err)) {
		out_free(&o);
		return -1;
	}
	o.f = fopen(path, "wb");
	if (!o.f) {
		out_free(&o);
		return duet_errnof(err, "%s: cannot create", path);
	}
	int32_t h[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
			s->tied ? c.vocab_size : -c.vocab_size, c.ctx_len};
	int64_t kv = (int64_t)c.n_kv_heads * c.head_dim;
	o.total = total_bytes(&c, s);
	int rc = out_write(&o, h, sizeof h, err);
	rc = rc || write_tensor(&o, DUET_W_EMBD, -1, c.vocab_size, c.dim, DUET_F32, err);
	/* Layer weights grouped by kind, as llama2.c's legacy exporter does. */
	struct {
		enum duet_weight_role role;
		int64_t rows, cols;
	} kinds[] = {
		{DUET_W_ATTN_NORM, 1, c.dim}, {DUET_W_Q, c.dim, c.dim},
		{DUET_W_K, kv, c.dim},	       {DUET_W_V, kv, c.dim},
		{DUET_W_O, c.dim, c.dim},      {DUET_W_FFN_NORM, 1, c.dim},
		{DUET_W_GATE, c.hidden_dim, c.dim}, {DUET_W_DOWN, c.dim, c.hidden_dim},
		{DUET_W_UP, c.hidden_dim, c.dim},
	};
	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0] && !rc; k++)
		for (int l = 0; l < c.n_layers && !rc; l++)
			rc = write_tensor(&o, kinds[k].role, l, kinds[k].rows, kinds[k].cols,
					  DUET_F32, err);
	rc = rc || write_tensor(&o, DUET_W_OUT_NORM, -1, 1, c.dim, DUET_F32, err);
	/* freq_cis tables (unused by readers, part of the layout). */
	int half = c.head_dim / 2;
	for (int which = 0; which < 2 && !rc; which++)
		for (int p = 0; p < c.ctx_len && !rc; p++) {
			for (int i = 0; i < half; i++) {
				double f = pow(10000.0, -2.0 * i / c.head_dim);
				o.frow[i] = (float)(which ? sin(p * f) : cos(p * f));
			}
			rc = out_write(&o, o.frow, sizeof(float) * (size_t)half, err);
		}
	if (!s->tied && !rc)
		rc = write_tensor(&o, DUET_W_OUTPUT, -1, c.vocab_size, c.dim, DUET_F32, err);
	if (fclose(o.f) && !rc)
		rc = duet_errnof(err, "%s: close failed", path);
	if (rc)
		unlink(path);
	out_free(&o);
	return rc ? -1 : 0;
}

int duet_write_llama2c_tokenizer(const char *path, const struct duet_vocab *v,
				 struct duet_err *err)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return duet_errnof(err, "%s: cannot create", path);
	int32_t maxl = 0;
	for (int i = 0; i < v->n; i++)
		if ((int32_t)v->len[i] > maxl)
			maxl = (int32_t)v->len[i];
	if (maxl < 7)
		maxl = 7; /* room for "\n</s>\n" */
	int ok = fwrite(&maxl, 4, 1, f) == 1;
	for (int i = 0; i < v->n && ok; i++) {
		const char *p = duet_vocab_piece(v, i);
		int32_t len = (int32_t)v->len[i];
		if (i == v->bos) {
			p = "\n<s>\n";
			len = 5;
		} else if (i == v->eos) {
			p = "\n</s>\n";
			len = 6;
		}
		ok = fwrite(&v->score[i], 4, 1, f) == 1 && fwrite(&len, 4, 1, f) == 1 &&
		     fwrite(p, 1, (size_t)len, f) == (size_t)len;
	}
	if (fclose(f) || !ok) {
		duet_errnof(err, "%s: write failed", path);
		unlink(path);
		return -1;
	}
	return 0;
}
