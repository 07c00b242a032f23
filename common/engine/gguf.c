#include "engine/gguf.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dtype.h"

/* A bounded cursor: every read checks the bytes left, so a truncated or
 * lying file can only produce an error naming the offset. */
struct cur {
	const uint8_t *base, *p, *end;
	const char *path;
	struct duet_err *err;
};

static int truncated(struct cur *c, const char *what)
{
	return duet_errf(c->err, "%s: truncated GGUF: %s at offset %zu runs past the end of the file",
			 c->path, what, (size_t)(c->p - c->base));
}

static int need(struct cur *c, uint64_t n, const char *what)
{
	if ((uint64_t)(c->end - c->p) < n)
		return truncated(c, what);
	return 0;
}

static int rd_u32(struct cur *c, uint32_t *v, const char *what)
{
	if (need(c, 4, what))
		return -1;
	memcpy(v, c->p, 4);
	c->p += 4;
	return 0;
}

static int rd_u64(struct cur *c, uint64_t *v, const char *what)
{
	if (need(c, 8, what))
		return -1;
	memcpy(v, c->p, 8);
	c->p += 8;
	return 0;
}

static int rd_str(struct cur *c, struct duet_gguf_str *s, const char *what)
{
	uint64_t n;
	if (rd_u64(c, &n, what))
		return -1;
	if (need(c, n, what))
		return -1;
	s->ptr = (const char *)c->p;
	s->len = n;
	c->p += n;
	return 0;
}

static uint64_t scalar_size(uint32_t t)
{
	switch (t) {
	case DUET_GGUF_U8:
	case DUET_GGUF_I8:
	case DUET_GGUF_BOOL:
		return 1;
	case DUET_GGUF_U16:
	case DUET_GGUF_I16:
		return 2;
	case DUET_GGUF_U32:
	case DUET_GGUF_I32:
	case DUET_GGUF_F32:
		return 4;
	case DUET_GGUF_U64:
	case DUET_GGUF_I64:
	case DUET_GGUF_F64:
		return 8;
	}
	return 0;
}

static int key_fmt(char *buf, size_t cap, struct duet_gguf_str k)
{
	size_t n = k.len < cap - 1 ? (size_t)k.len : cap - 1;
	memcpy(buf, k.ptr, n);
	buf[n] = 0;
	/* Keep messages on one printable line whatever the file holds. */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] == 0x7f)
			buf[i] = '?';
	return (int)n;
}

/* Skips one value of type t, validating nested arrays. */
static int skip_value(struct cur *c, uint32_t t, int depth, const char *key)
{
	if (t >= DUET_GGUF_NTYPES)
		return duet_errf(c->err, "%s: GGUF key '%s' has unknown value type %u",
				 c->path, key, t);
	if (t == DUET_GGUF_STRING) {
		struct duet_gguf_str s;
		return rd_str(c, &s, key);
	}
	if (t == DUET_GGUF_ARRAY) {
		uint32_t et;
		uint64_t n;
		if (depth >= DUET_GGUF_MAX_ARRAY_DEPTH)
			return duet_errf(c->err, "%s: GGUF key '%s' nests arrays deeper than %d",
					 c->path, key, DUET_GGUF_MAX_ARRAY_DEPTH);
		if (rd_u32(c, &et, key) || rd_u64(c, &n, key))
			return -1;
		if (et >= DUET_GGUF_NTYPES)
			return duet_errf(c->err, "%s: GGUF key '%s' is an array of unknown type %u",
					 c->path, key, et);
		uint64_t es = scalar_size(et);
		if (es) {
			if (n > (uint64_t)(c->end - c->p) / es)
				return truncated(c, key);
			c->p += n * es;
			return 0;
		}
		/* Strings and arrays take at least 8 bytes each, which bounds
		 * the loop by the file size before any element is read. */
		if (n > (uint64_t)(c->end - c->p) / 8)
			return truncated(c, key);
		for (uint64_t i = 0; i < n; i++)
			if (skip_value(c, et, depth + 1, key))
				return -1;
		return 0;
	}
	uint64_t s = scalar_size(t);
	if (need(c, s, key))
		return -1;
	c->p += s;
	return 0;
}

int duet_gguf_str_eq(struct duet_gguf_str s, const char *c)
{
	size_t n = strlen(c);
	return s.len == n && memcmp(s.ptr, c, n) == 0;
}

static int parse_kv(struct cur *c, struct duet_gguf *g)
{
	for (uint64_t i = 0; i < g->n_kv; i++) {
		struct duet_gguf_kv *kv = &g->kv[i];
		char key[128];
		if (rd_str(c, &kv->key, "metadata key") ||
		    rd_u32(c, &kv->type, "metadata value type"))
			return -1;
		key_fmt(key, sizeof key, kv->key);
		const uint8_t *start = c->p;
		if (kv->type == DUET_GGUF_ARRAY) {
			if (need(c, 12, key))
				return -1;
			memcpy(&kv->arr_type, c->p, 4);
			memcpy(&kv->arr_n, c->p + 4, 8);
			kv->data = c->p + 12;
		} else if (kv->type == DUET_GGUF_STRING) {
			if (need(c, 8, key))
				return -1;
			uint64_t n;
			memcpy(&n, c->p, 8);
			kv->str.ptr = (const char *)c->p + 8;
			kv->str.len = n;
		} else {
			kv->data = start;
		}
		if (skip_value(c, kv->type, 0, key))
			return -1;
	}
	return 0;
}

static int str_cmp(const void *a, const void *b)
{
	const struct duet_gguf_str *x = a, *y = b;
	uint64_t n = x->len < y->len ? x->len : y->len;
	int r = memcmp(x->ptr, y->ptr, n);
	if (r)
		return r;
	return x->len < y->len ? -1 : x->len > y->len;
}

/* Sorting copies of the names finds a repeated one in n log n, so a forged
 * file with many keys cannot make loading quadratic. */
static int check_unique(const struct duet_gguf *g, const char *what,
			const void *items, size_t stride, size_t name_off,
			uint64_t n, struct duet_err *err)
{
	if (n < 2)
		return 0;
	struct duet_gguf_str *s = malloc(sizeof *s * n);
	if (!s)
		return duet_errf(err, "%s: out of memory checking %s names", g->path, what);
	for (uint64_t i = 0; i < n; i++)
		memcpy(&s[i], (const uint8_t *)items + i * stride + name_off, sizeof *s);
	qsort(s, n, sizeof *s, str_cmp);
	for (uint64_t i = 1; i < n; i++) {
		if (!str_cmp(&s[i - 1], &s[i])) {
			char name[128];
			key_fmt(name, sizeof name, s[i]);
			free(s);
			return duet_errf(err, "%s: GGUF %s '%s' appears twice", g->path,
					 what, name);
		}
	}
	free(s);
	return 0;
}

static int range_cmp(const void *a, const void *b)
{
	uint64_t x = ((const uint64_t *)a)[0], y = ((const uint64_t *)b)[0];
	return x < y ? -1 : x > y;
}

static int check_overlaps(struct duet_gguf *g, struct duet_err *err)
{
	/* Sort a copy of (offset, end) by offset and compare neighbours: real
	 * files never overlap, and overlapping weights are a sign of a forged
	 * or damaged file. */
	uint64_t n = 0;
	uint64_t(*iv)[2] = malloc(sizeof *iv * (g->n_tensors ? g->n_tensors : 1));
	if (!iv)
		return duet_errf(err, "%s: out of memory checking tensor layout", g->path);
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		if (!g->tensors[i].nbytes)
			continue;
		iv[n][0] = g->tensors[i].offset;
		iv[n][1] = g->tensors[i].offset + g->tensors[i].nbytes;
		n++;
	}
	qsort(iv, n, sizeof *iv, range_cmp);
	for (uint64_t i = 1; i < n; i++) {
		if (iv[i][0] < iv[i - 1][1]) {
			uint64_t off = iv[i][0];
			free(iv);
			return duet_errf(err, "%s: GGUF tensors overlap at data offset %llu",
					 g->path, (unsigned long long)off);
		}
	}
	free(iv);
	return 0;
}

static int parse_tensors(struct cur *c, struct duet_gguf *g)
{
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		struct duet_gguf_tensor *t = &g->tensors[i];
		char name[128];
		if (rd_str(c, &t->name, "tensor name"))
			return -1;
		key_fmt(name, sizeof name, t->name);
		if (rd_u32(c, &t->n_dims, name))
			return -1;
		if (t->n_dims < 1 || t->n_dims > DUET_GGUF_MAX_DIMS)
			return duet_errf(c->err, "%s: tensor '%s' has %u dimensions (expected 1 to %d)",
					 g->path, name, t->n_dims, DUET_GGUF_MAX_DIMS);
		uint64_t nel = 1;
		for (uint32_t d = 0; d < DUET_GGUF_MAX_DIMS; d++)
			t->ne[d] = 1;
		for (uint32_t d = 0; d < t->n_dims; d++) {
			if (rd_u64(c, &t->ne[d], name))
				return -1;
			/* 2^40 elements bounds any tensor a machine can hold
			 * and keeps the products below from overflowing. */
			if (t->ne[d] == 0 || t->ne[d] > (1ull << 40) ||
			    nel > (1ull << 40) / t->ne[d])
				return duet_errf(c->err, "%s: tensor '%s' has invalid dimension %u = %llu",
						 g->path, name, d, (unsigned long long)t->ne[d]);
			nel *= t->ne[d];
		}
		if (rd_u32(c, &t->type, name) || rd_u64(c, &t->offset, name))
			return -1;
		if (duet_dtype_supported(t->type)) {
			int bs = duet_dtype_block(t->type);
			if (t->ne[0] % (uint64_t)bs)
				return duet_errf(c->err, "%s: tensor '%s' of type %s has row length %llu, not a multiple of its block size %d",
						 g->path, name, duet_dtype_name(t->type),
						 (unsigned long long)t->ne[0], bs);
			t->nbytes = nel / (uint64_t)bs * duet_dtype_block_bytes(t->type);
		}
	}
	return 0;
}

int duet_gguf_parse(struct duet_gguf *g, const void *base, uint64_t size,
		    const char *path, struct duet_err *err)
{
	memset(g, 0, sizeof *g);
	g->path = path;
	g->base = base;
	g->size = size;
	struct cur c = {base, base, (const uint8_t *)base + size, path, err};
	uint32_t magic;
	if (size < 4)
		return duet_errf(err, "%s: file is %llu bytes, too short for any model",
				 path, (unsigned long long)size);
	if (rd_u32(&c, &magic, "magic"))
		return -1;
	if (magic != DUET_GGUF_MAGIC)
		return duet_errf(err, "%s: not a GGUF file (bad magic)", path);
	if (rd_u32(&c, &g->version, "version"))
		return -1;
	if (g->version == 1)
		return duet_errf(err, "%s: GGUF version 1 is obsolete and not supported (convert it with a current llama.cpp)", path);
	if (g->version > 0xffff)
		return duet_errf(err, "%s: GGUF file is big-endian (version field 0x%08x); duet reads little-endian files only",
				 path, g->version);
	if (g->version != 2 && g->version != 3)
		return duet_errf(err, "%s: unsupported GGUF version %u (duet reads 2 and 3)",
				 path, g->version);
	if (rd_u64(&c, &g->n_tensors, "tensor count") ||
	    rd_u64(&c, &g->n_kv, "metadata count"))
		return -1;
	if (g->n_tensors > DUET_GGUF_MAX_TENSORS)
		return duet_errf(err, "%s: GGUF claims %llu tensors (limit %d)", path,
				 (unsigned long long)g->n_tensors, DUET_GGUF_MAX_TENSORS);
	if (g->n_kv > DUET_GGUF_MAX_KV)
		return duet_errf(err, "%s: GGUF claims %llu metadata keys (limit %d)", path,
				 (unsigned long long)g->n_kv, DUET_GGUF_MAX_KV);
	g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
	g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
	if (!g->kv || !g->tensors) {
		duet_gguf_free(g);
		return duet_errf(err, "%s: out of memory reading GGUF header", path);
	}
	if (parse_kv(&c, g) || parse_tensors(&c, g))
		goto fail;
	if (check_unique(g, "key", g->kv, sizeof *g->kv,
			 offsetof(struct duet_gguf_kv, key), g->n_kv, err) ||
	    check_unique(g, "tensor", g->tensors, sizeof *g->tensors,
			 offsetof(struct duet_gguf_tensor, name), g->n_tensors, err))
		goto fail;

	g->alignment = DUET_GGUF_DEFAULT_ALIGNMENT;
	uint32_t al;
	int r = duet_gguf_get_u32(g, "general.alignment", 0, &al, err);
	if (r < 0)
		goto fail;
	if (r == 0) {
		if (al == 0 || (al & (al - 1)) || al > 65536) {
			duet_errf(err, "%s: general.alignment = %u is not a power of two up to 65536",
				  path, al);
			goto fail;
		}
		g->alignment = al;
	}
	uint64_t here = (uint64_t)(c.p - c.base);
	g->data_offset = (here + g->alignment - 1) / g->alignment * g->alignment;
	if (g->data_offset > size && g->n_tensors) {
		duet_errf(err, "%s: truncated GGUF: tensor data section would start at %llu, past the end (%llu bytes)",
			  path, (unsigned long long)g->data_offset,
			  (unsigned long long)size);
		goto fail;
	}
	uint64_t data_size = size > g->data_offset ? size - g->data_offset : 0;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		struct duet_gguf_tensor *t = &g->tensors[i];
		char name[128];
		key_fmt(name, sizeof name, t->name);
		if (t->offset % g->alignment) {
			duet_errf(err, "%s: tensor '%s' offset %llu is not a multiple of the alignment %llu",
				  path, name, (unsigned long long)t->offset,
				  (unsigned long long)g->alignment);
			goto fail;
		}
		if (!t->nbytes)
			continue; /* unknown type: reported if the model uses it */
		if (t->offset > data_size || t->nbytes > data_size - t->offset) {
			duet_errf(err, "%s: tensor '%s' (%llu bytes at data offset %llu) lies past the end of the file (data section is %llu bytes)",
				  path, name, (unsigned long long)t->nbytes,
				  (unsigned long long)t->offset,
				  (unsigned long long)data_size);
			goto fail;
		}
		t->data = g->base + g->data_offset + t->offset;
	}
	if (check_overlaps(g, err))
		goto fail;
	return 0;
fail:
	duet_gguf_free(g);
	return -1;
}

void duet_gguf_free(struct duet_gguf *g)
{
	free(g->kv);
	free(g->tensors);
	g->kv = NULL;
	g->tensors = NULL;
}

const struct duet_gguf_kv *duet_gguf_find(const struct duet_gguf *g,
					  const char *key)
{
	for (uint64_t i = 0; i < g->n_kv; i++)
		if (duet_gguf_str_eq(g->kv[i].key, key))
			return &g->kv[i];
	return NULL;
}

const struct duet_gguf_tensor *duet_gguf_tensor(const struct duet_gguf *g,
						const char *name)
{
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if (duet_gguf_str_eq(g->tensors[i].name, name))
			return &g->tensors[i];
	return NULL;
}

static const char *type_name(uint32_t t)
{
	static const char *const n[] = {"u8",  "i8",  "u16",	"i16", "u32",
					"i32", "f32", "bool",	"string", "array",
					"u64", "i64", "f64"};
	return t < DUET_GGUF_NTYPES ? n[t] : "unknown";
}

static int missing(const struct duet_gguf *g, const char *key, int required,
		   struct duet_err *err)
{
	if (required)
		return duet_errf(err, "%s: required GGUF key '%s' is missing", g->path, key);
	return 1;
}

int duet_gguf_get_u32(const struct duet_gguf *g, const char *key, int required,
		      uint32_t *out, struct duet_err *err)
{
	const struct duet_gguf_kv *kv = duet_gguf_find(g, key);
	if (!kv)
		return missing(g, key, required, err);
	int64_t sv = 0;
	uint64_t uv = 0;
	int is_signed = 0;
	switch (kv->type) {
	case DUET_GGUF_U8: uv = kv->data[0]; break;
	case DUET_GGUF_I8: sv = (int8_t)kv->data[0]; is_signed = 1; break;
	case DUET_GGUF_U16: { uint16_t v; memcpy(&v, kv->data, 2); uv = v; break; }
	case DUET_GGUF_I16: { int16_t v; memcpy(&v, kv->data, 2); sv = v; is_signed = 1; break; }
	case DUET_GGUF_U32: { uint32_t v; memcpy(&v, kv->data, 4); uv = v; break; }
	case DUET_GGUF_I32: { int32_t v; memcpy(&v, kv->data, 4); sv = v; is_signed = 1; break; }
	case DUET_GGUF_U64: memcpy(&uv, kv->data, 8); break;
	case DUET_GGUF_I64: memcpy(&sv, kv->data, 8); is_signed = 1; break;
	default:
		return duet_errf(err, "%s: GGUF key '%s' is a %s, expected an integer",
				 g->path, key, type_name(kv->type));
	}
	if (is_signed) {
		if (sv < 0)
			return duet_errf(err, "%s: GGUF key '%s' = %lld is negative",
					 g->path, key, (long long)sv);
		uv = (uint64_t)sv;
	}
	if (uv > UINT32_MAX)
		return duet_errf(err, "%s: GGUF key '%s' = %llu is out of range",
				 g->path, key, (unsigned long long)uv);
	*out = (uint32_t)uv;
	return 0;
}

int duet_gguf_get_f32(const struct duet_gguf *g, const char *key, int required,
		      float *out, struct duet_err *err)
{
	const struct duet_gguf_kv *kv = duet_gguf_find(g, key);
	if (!kv)
		return missing(g, key, required, err);
	if (kv->type == DUET_GGUF_F32) {
		memcpy(out, kv->data, 4);
	} else if (kv->type == DUET_GGUF_F64) {
		double d;
		memcpy(&d, kv->data, 8);
		*out = (float)d;
	} else {
		return duet_errf(err, "%s: GGUF key '%s' is a %s, expected a float",
				 g->path, key, type_name(kv->type));
	}
	return 0;
}

int duet_gguf_get_str(const struct duet_gguf *g, const char *key, int required,
		      struct duet_gguf_str *out, struct duet_err *err)
{
	const struct duet_gguf_kv *kv = duet_gguf_find(g, key);
	if (!kv)
		return missing(g, key, required, err);
	if (kv->type != DUET_GGUF_STRING)
		return duet_errf(err, "%s: GGUF key '%s' is a %s, expected a string",
				 g->path, key, type_name(kv->type));
	*out = kv->str;
	return 0;
}

int duet_gguf_get_arr(const struct duet_gguf *g, const char *key, int required,
		      uint32_t arr_type, const struct duet_gguf_kv **out,
		      struct duet_err *err)
{
	const struct duet_gguf_kv *kv = duet_gguf_find(g, key);
	if (!kv)
		return missing(g, key, required, err);
	if (kv->type != DUET_GGUF_ARRAY || kv->arr_type != arr_type)
		return duet_errf(err, "%s: GGUF key '%s' is a %s%s%s, expected an array of %s",
				 g->path, key, type_name(kv->type),
				 kv->type == DUET_GGUF_ARRAY ? " of " : "",
				 kv->type == DUET_GGUF_ARRAY ? type_name(kv->arr_type) : "",
				 type_name(arr_type));
	*out = kv;
	return 0;
}

struct duet_gguf_str duet_gguf_next_str(const uint8_t **cursor)
{
	struct duet_gguf_str s;
	memcpy(&s.len, *cursor, 8);
	s.ptr = (const char *)*cursor + 8;
	*cursor += 8 + s.len;
	return s;
}
