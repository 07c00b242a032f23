/* GGUF v3 writer: header and key/values are buffered (their counts come
 * first in the file), tensor data is streamed in declaration order with
 * padding to DUET_GGUF_DEFAULT_ALIGNMENT between tensors. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/dtype.h"
#include "mkmodel/gguf_write.h"

static void fail(struct duet_gguf_writer *w, const char *what)
{
	if (!w->failed)
		duet_errf(&w->err, "%s: %s", w->path, what);
	w->failed = 1;
}

static void put(struct duet_gguf_writer *w, const void *p, size_t n)
{
	if (w->failed)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *b = realloc(w->buf, cap);
		if (!b) {
			fail(w, "out of memory building GGUF header");
			return;
		}
		w->buf = b;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void put_u32(struct duet_gguf_writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(struct duet_gguf_writer *w, uint64_t v) { put(w, &v, 8); }

static void put_string(struct duet_gguf_writer *w, const char *s, uint64_t n)
{
	put_u64(w, n);
	put(w, s, n);
}

static void put_key(struct duet_gguf_writer *w, const char *key, uint32_t type)
{
	if (w->n_tensors)
		fail(w, "key/value added after a tensor");
	put_string(w, key, strlen(key));
	put_u32(w, type);
	w->n_kv++;
}

int duet_gguf_writer_open(struct duet_gguf_writer *w, const char *path,
			  struct duet_err *err)
{
	memset(w, 0, sizeof *w);
	w->path = path;
	w->f = fopen(path, "wb");
	if (!w->f)
		return duet_errnof(err, "%s: cannot create", path);
	/* Placeholder header; the counts are patched in begin_data. */
	put_u32(w, DUET_GGUF_MAGIC);
	put_u32(w, 3);
	put_u64(w, 0);
	put_u64(w, 0);
	return 0;
}

void duet_gguf_put_u32(struct duet_gguf_writer *w, const char *key, uint32_t v)
{
	put_key(w, key, DUET_GGUF_U32);
	put_u32(w, v);
}

void duet_gguf_put_i32(struct duet_gguf_writer *w, const char *key, int32_t v)
{
	put_key(w, key, DUET_GGUF_I32);
	put(w, &v, 4);
}

void duet_gguf_put_f32(struct duet_gguf_writer *w, const char *key, float v)
{
	put_key(w, key, DUET_GGUF_F32);
	put(w, &v, 4);
}

void duet_gguf_put_bool(struct duet_gguf_writer *w, const char *key, int v)
{
	uint8_t b = v != 0;
	put_key(w, key, DUET_GGUF_BOOL);
	put(w, &b, 1);
}

void duet_gguf_put_str(struct duet_gguf_writer *w, const char *key, const char *v)
{
	put_key(w, key, DUET_GGUF_STRING);
	put_string(w, v, strlen(v));
}

void duet_gguf_put_str_arr(struct duet_gguf_writer *w, const char *key,
			   const char *const *v, const uint32_t *lens, uint64_t n)
{
	put_key(w, key, DUET_GGUF_ARRAY);
	put_u32(w, DUET_GGUF_STRING);
	put_u64(w, n);
	for (uint64_t i = 0; i < n; i++)
		put_string(w, v[i], lens ? lens[i] : strlen(v[i]));
}

void duet_gguf_put_f32_arr(struct duet_gguf_writer *w, const char *key,
			   const float *v, uint64_t n)
{
	put_key(w, key, DUET_GGUF_ARRAY);
	put_u32(w, DUET_GGUF_F32);
	put_u64(w, n);
	put(w, v, n * 4);
}

void duet_gguf_put_i32_arr(struct duet_gguf_writer *w, const char *key,
			   const int32_t *v, uint64_t n)
{
	put_key(w, key, DUET_GGUF_ARRAY);
	put_u32(w, DUET_GGUF_I32);
	put_u64(w, n);
	put(w, v, n * 4);
}

static uint64_t align_up(uint64_t x)
{
	return (x + DUET_GGUF_DEFAULT_ALIGNMENT - 1) /
	       DUET_GGUF_DEFAULT_ALIGNMENT * DUET_GGUF_DEFAULT_ALIGNMENT;
}

void duet_gguf_add_tensor(struct duet_gguf_writer *w, const char *name,
			  uint32_t n_dims, const uint64_t *ne, uint32_t type)
{
	if (w->n_tensors >= DUET_GGUF_WRITER_MAX_TENSORS) {
		fail(w, "too many tensors for the writer");
		return;
	}
	if (!duet_dtype_supported(type) || n_dims < 1 || n_dims > DUET_GGUF_MAX_DIMS) {
		fail(w, "tensor of unsupported type or rank");
		return;
	}
	uint64_t nel = 1;
	for (uint32_t d = 0; d < n_dims; d++)
		nel *= ne[d];
	uint64_t offset = 0;
	for (int i = 0; i < w->n_tensors; i++)
		offset += align_up(w->tensor_bytes[i]);
	put_string(w, name, strlen(name));
	put_u32(w, n_dims);
	for (uint32_t d = 0; d < n_dims; d++)
		put_u64(w, ne[d]);
	put_u32(w, type);
	put_u64(w, offset);
	w->tensor_bytes[w->n_tensors++] =
		nel / (uint64_t)duet_dtype_block(type) * duet_dtype_block_bytes(type);
}

static int write_all(struct duet_gguf_writer *w, const void *p, size_t n,
		     struct duet_err *err)
{
	if (n && fwrite(p, 1, n, w->f) != n)
		return duet_errnof(err, "%s: write failed", w->path);
	return 0;
}

static int pad_to_alignment(struct duet_gguf_writer *w, uint64_t pos,
			    struct duet_err *err)
{
	static const uint8_t zero[DUET_GGUF_DEFAULT_ALIGNMENT];
	return write_all(w, zero, align_up(pos) - pos, err);
}

int duet_gguf_writer_begin_data(struct duet_gguf_writer *w, struct duet_err *err)
{
	if (w->failed) {
		*err = w->err;
		return -1;
	}
	uint64_t nt = (uint64_t)w->n_tensors;
	memcpy(w->buf + 8, &nt, 8);
	memcpy(w->buf + 16, &w->n_kv, 8);
	if (write_all(w, w->buf, w->len, err) || pad_to_alignment(w, w->len, err))
		return -1;
	free(w->buf);
	w->buf = NULL;
	w->cap = w->len = 0;
	w->tensors_written = 0;
	w->data_written = 0;
	return 0;
}

int duet_gguf_write_data(struct duet_gguf_writer *w, const void *p, size_t n,
			 struct duet_err *err)
{
	const uint8_t *b = p;
	while (n) {
		if (w->tensors_written >= w->n_tensors)
			return duet_errf(err, "%s: more tensor data than declared", w->path);
		uint64_t want = w->tensor_bytes[w->tensors_written] - w->data_written;
		size_t k = n < want ? n : (size_t)want;
		if (write_all(w, b, k, err))
			return -1;
		b += k;
		n -= k;
		w->data_written += k;
		if (w->data_written == w->tensor_bytes[w->tensors_written]) {
			if (pad_to_alignment(w, w->data_written, err))
				return -1;
			w->tensors_written++;
			w->data_written = 0;
		}
	}
	return 0;
}

int duet_gguf_writer_close(struct duet_gguf_writer *w, struct duet_err *err)
{
	if (w->tensors_written != w->n_tensors) {
		duet_errf(err, "%s: %d of %d tensors written", w->path,
			  w->tensors_written, w->n_tensors);
		duet_gguf_writer_abort(w);
		return -1;
	}
	if (fclose(w->f)) {
		w->f = NULL;
		duet_errnof(err, "%s: close failed", w->path);
		unlink(w->path);
		return -1;
	}
	w->f = NULL;
	free(w->buf);
	w->buf = NULL;
	return 0;
}

void duet_gguf_writer_abort(struct duet_gguf_writer *w)
{
	if (w->f) {
		fclose(w->f);
		unlink(w->path);
	}
	w->f = NULL;
	free(w->buf);
	w->buf = NULL;
}
