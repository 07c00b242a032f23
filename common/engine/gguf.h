/* GGUF v2/v3 reader (little-endian files only); the writer is duet
 * mkmodel's (tools/mkmodel/gguf_write.h).
 *
 * The reader parses a file already in memory (duet maps it) and validates
 * every length, count and offset against the bytes that exist; nothing is
 * copied: strings and tensor data point into the mapping. */
#ifndef DUET_GGUF_H
#define DUET_GGUF_H

#include <stdint.h>

#include "base/err.h"

#define DUET_GGUF_MAGIC 0x46554747u /* "GGUF" read as little-endian u32 */
#define DUET_GGUF_DEFAULT_ALIGNMENT 32
/* Sanity bounds: a real model has a few hundred tensors and keys, tensors
 * have at most 4 dimensions, and nested arrays are never deeper than 2. */
#define DUET_GGUF_MAX_TENSORS 65536
#define DUET_GGUF_MAX_KV 65536
#define DUET_GGUF_MAX_DIMS 4
#define DUET_GGUF_MAX_ARRAY_DEPTH 4

enum duet_gguf_type {
	DUET_GGUF_U8 = 0,
	DUET_GGUF_I8 = 1,
	DUET_GGUF_U16 = 2,
	DUET_GGUF_I16 = 3,
	DUET_GGUF_U32 = 4,
	DUET_GGUF_I32 = 5,
	DUET_GGUF_F32 = 6,
	DUET_GGUF_BOOL = 7,
	DUET_GGUF_STRING = 8,
	DUET_GGUF_ARRAY = 9,
	DUET_GGUF_U64 = 10,
	DUET_GGUF_I64 = 11,
	DUET_GGUF_F64 = 12,
	DUET_GGUF_NTYPES
};

struct duet_gguf_str {
	const char *ptr; /* not NUL-terminated */
	uint64_t len;
};

struct duet_gguf_kv {
	struct duet_gguf_str key;
	uint32_t type;
	/* Scalars: the raw little-endian bytes start at `data`. Strings:
	 * `str`. Arrays: element type, count and the first element. */
	const uint8_t *data;
	struct duet_gguf_str str;
	uint32_t arr_type;
	uint64_t arr_n;
};

struct duet_gguf_tensor {
	struct duet_gguf_str name;
	uint32_t n_dims;
	uint64_t ne[DUET_GGUF_MAX_DIMS]; /* ne[0] is the contiguous axis */
	uint32_t type;
	uint64_t offset;	/* relative to the data section */
	const uint8_t *data;	/* NULL if the type is not one duet knows */
	uint64_t nbytes;	/* 0 if the type is not one duet knows */
};

struct duet_gguf {
	const char *path; /* for messages; borrowed */
	const uint8_t *base;
	uint64_t size;
	uint32_t version;
	uint64_t n_kv, n_tensors;
	struct duet_gguf_kv *kv;		/* owned */
	struct duet_gguf_tensor *tensors;	/* owned */
	uint64_t alignment;
	uint64_t data_offset;
};

/* Parses and validates the container: header, every key/value, tensor
 * infos, alignment, and that every tensor of a known type lies inside the
 * file, at an aligned offset, without overlapping another. */
int duet_gguf_parse(struct duet_gguf *g, const void *base, uint64_t size,
		    const char *path, struct duet_err *err);
void duet_gguf_free(struct duet_gguf *g);

const struct duet_gguf_kv *duet_gguf_find(const struct duet_gguf *g,
					  const char *key);
const struct duet_gguf_tensor *duet_gguf_tensor(const struct duet_gguf *g,
						const char *name);
int duet_gguf_str_eq(struct duet_gguf_str s, const char *c);

/* Typed getters. Integer getters accept any integer type whose value fits
 * (files in the wild use u32, i32 or u64 for the same key). On a missing
 * key they return 1 and leave *out untouched if !required, or fail. */
int duet_gguf_get_u32(const struct duet_gguf *g, const char *key, int required,
		      uint32_t *out, struct duet_err *err);
int duet_gguf_get_f32(const struct duet_gguf *g, const char *key, int required,
		      float *out, struct duet_err *err);
int duet_gguf_get_str(const struct duet_gguf *g, const char *key, int required,
		      struct duet_gguf_str *out, struct duet_err *err);
/* An array of the given element type; *n gets its length. */
int duet_gguf_get_arr(const struct duet_gguf *g, const char *key, int required,
		      uint32_t arr_type, const struct duet_gguf_kv **out,
		      struct duet_err *err);

/* Iterates a validated string array: call with *cursor = kv->data first. */
struct duet_gguf_str duet_gguf_next_str(const uint8_t **cursor);

#endif
