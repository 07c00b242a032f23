/* What every model loader shares: the architectures' names, geometry
 * bounds and each tensor's shape and type against what the geometry
 * implies. */
#include "engine/model.h"
#include "engine/model_impl.h"

const char *duet_arch_name(enum duet_arch a)
{
	return a == DUET_ARCH_QWEN3 ? "qwen3" : a == DUET_ARCH_QWEN2 ? "qwen2" : "llama";
}

size_t duet_model_norms_count(const struct duet_config *c)
{
	return (2 * (size_t)c->n_layers + 1) * (size_t)c->dim;
}

int duet_model_check_config(const struct duet_config *c, const char *path,
			    struct duet_err *err)
{
#define BOUND(field, lo, hi)                                                        \
	if (c->field < (lo) || c->field > (hi))                                     \
		return duet_errf(err, "%s: %s = %d is out of range (%d to %d)", path, \
				 #field, c->field, (lo), (hi));
	BOUND(dim, 1, DUET_MAX_DIM)
	BOUND(hidden_dim, 1, DUET_MAX_HIDDEN)
	BOUND(n_layers, 1, DUET_MAX_LAYERS)
	BOUND(n_heads, 1, c->dim)
	BOUND(n_kv_heads, 1, c->n_heads)
	BOUND(vocab_size, 1, DUET_VOCAB_MAX_TOKENS)
	BOUND(ctx_len, 1, DUET_MAX_CTX)
#undef BOUND
	if (c->dim % c->n_heads)
		return duet_errf(err, "%s: dim %d is not a multiple of n_heads %d", path,
				 c->dim, c->n_heads);
	if (c->n_heads % c->n_kv_heads)
		return duet_errf(err, "%s: n_heads %d is not a multiple of n_kv_heads %d",
				 path, c->n_heads, c->n_kv_heads);
	/* Qwen3 states its head size; the others' is dim / n_heads. */
	int free_heads = c->arch == DUET_ARCH_QWEN3;
	if ((!free_heads && c->head_dim != c->dim / c->n_heads) || c->head_dim % 2 ||
	    c->head_dim < 2 || c->head_dim > DUET_MAX_HEAD_DIM)
		return duet_errf(err, "%s: head size %d is unsupported (must be dim/n_heads, even, at most %d)",
				 path, c->head_dim, DUET_MAX_HEAD_DIM);
	if (!(c->rope_base > 0) || !(c->rms_eps > 0) || !(c->rope_scale > 0))
		return duet_errf(err, "%s: RoPE base %g, RMS epsilon %g or RoPE scale %g is not positive",
				 path, c->rope_base, c->rms_eps, c->rope_scale);
	return 0;
}

int duet_model_bind(struct duet_tensor *t, const char *path, const char *name,
		    enum duet_dtype type, const void *data, int64_t cols,
		    int64_t rows, int64_t want_cols, int64_t want_rows,
		    struct duet_err *err)
{
	if (cols != want_cols || rows != want_rows)
		return duet_errf(err, "%s: tensor '%s' has shape [%lld, %lld] but the metadata implies [%lld, %lld]",
				 path, name, (long long)cols, (long long)rows,
				 (long long)want_cols, (long long)want_rows);
	if (!duet_dtype_supported(type))
		return duet_errf(err, "%s: tensor '%s' has type %s; duet computes with " DUET_DTYPE_LIST,
				 path, name, duet_dtype_name(type));
	if (cols % duet_dtype_block(type))
		return duet_errf(err, "%s: tensor '%s' row length %lld is not a multiple of the %s block size",
				 path, name, (long long)cols, duet_dtype_name(type));
	t->type = type;
	t->data = data;
	t->rows = rows;
	t->cols = cols;
	t->row_bytes = duet_row_bytes(type, cols);
	return 0;
}
