/* GGUF v3 writer: key/values are buffered so their count leads the file,
 * tensor data streams straight to it. Type and key numbers are the
 * reader's (common/engine/gguf.h). */
#ifndef DUET_GGUF_WRITE_H
#define DUET_GGUF_WRITE_H

#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "engine/gguf.h"

#define DUET_GGUF_WRITER_MAX_TENSORS 1024

struct duet_gguf_writer {
	FILE *f;
	const char *path;
	uint64_t n_kv;
	/* Header and key/values are buffered so the counts can be written
	 * first; tensor data streams straight to the file. */
	uint8_t *buf;
	size_t len, cap;
	int n_tensors;
	uint64_t tensor_bytes[DUET_GGUF_WRITER_MAX_TENSORS];
	int tensors_written;
	uint64_t data_written;
	int failed;
	struct duet_err err;
};

int duet_gguf_writer_open(struct duet_gguf_writer *w, const char *path,
			  struct duet_err *err);
/* Key/values; errors are sticky and reported by _begin_data / _close. */
void duet_gguf_put_u32(struct duet_gguf_writer *w, const char *key, uint32_t v);
void duet_gguf_put_i32(struct duet_gguf_writer *w, const char *key, int32_t v);
void duet_gguf_put_f32(struct duet_gguf_writer *w, const char *key, float v);
void duet_gguf_put_bool(struct duet_gguf_writer *w, const char *key, int v);
void duet_gguf_put_str(struct duet_gguf_writer *w, const char *key,
		       const char *v);
void duet_gguf_put_str_arr(struct duet_gguf_writer *w, const char *key,
			   const char *const *v, const uint32_t *lens,
			   uint64_t n);
void duet_gguf_put_f32_arr(struct duet_gguf_writer *w, const char *key,
			   const float *v, uint64_t n);
void duet_gguf_put_i32_arr(struct duet_gguf_writer *w, const char *key,
			   const int32_t *v, uint64_t n);
/* Declares the next tensor (after all key/values). ne[0] is contiguous. */
void duet_gguf_add_tensor(struct duet_gguf_writer *w, const char *name,
			  uint32_t n_dims, const uint64_t *ne, uint32_t type);
/* Writes header, key/values and tensor infos; then tensor data follows in
 * declaration order through duet_gguf_write_data, each tensor's bytes in
 * one or more calls. */
int duet_gguf_writer_begin_data(struct duet_gguf_writer *w,
				struct duet_err *err);
int duet_gguf_write_data(struct duet_gguf_writer *w, const void *p, size_t n,
			 struct duet_err *err);
/* Checks every tensor got all its bytes, flushes and closes. On failure
 * the partial file is removed. */
int duet_gguf_writer_close(struct duet_gguf_writer *w, struct duet_err *err);
/* Abandons a writer (closing and removing the partial file). */
void duet_gguf_writer_abort(struct duet_gguf_writer *w);

#endif
