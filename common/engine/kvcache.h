/* Paged KV cache: a pool of fixed-size blocks (block_tokens positions of K
 * and V for every layer) and per-sequence block tables. Blocks are
 * refcounted so full blocks can be shared between sequences (prefix
 * caching); a sequence only ever writes blocks it holds alone. Rows are
 * stored in f32, f16 or int8 (base/kvrow.h), the form the wire carries. */
#ifndef DUET_KVCACHE_H
#define DUET_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/kvrow.h"

#define DUET_KV_BLOCK_TOKENS 16 /* default positions per block */
#define DUET_KV_MAX_BLOCK_TOKENS 4096

struct duet_kv_geom {
	int n_layers;
	int n_kv_heads, head_dim;
	int block_tokens;
	enum duet_kv_dtype dtype;
};

static inline int duet_kv_dim(const struct duet_kv_geom *g)
{
	return g->n_kv_heads * g->head_dim;
}

struct duet_kv_pool {
	struct duet_kv_geom g;
	size_t row_bytes; /* one position's K (or V) of one layer */
	int n_blocks;
	uint8_t *data; /* [layer][K|V][block][block_tokens] rows */
	size_t bytes;
	int *refs;
	int *free_ids; /* stack of free block ids */
	int n_free;
};

struct duet_kv_seq {
	int *blocks; /* block table: position p lives in blocks[p / block_tokens] */
	int n_blocks, cap;
	int n_tokens; /* positions [0, n_tokens) hold valid K and V */
};

/* Bytes one block takes. */
size_t duet_kv_block_bytes(const struct duet_kv_geom *g);
int duet_kv_pool_create(struct duet_kv_pool **out, const struct duet_kv_geom *g,
			int n_blocks, struct duet_err *err);
void duet_kv_pool_destroy(struct duet_kv_pool *p);
/* Writes every page of the pool now (a pool's pages are otherwise taken
 * when first written, mid-step), so that a serving node neither zeroes
 * pages while it steps nor finds memory short after it started: fails
 * naming the size when the memory is not there. */
int duet_kv_pool_prefault(struct duet_kv_pool *p, struct duet_err *err);

static inline int duet_kv_blocks_for(const struct duet_kv_geom *g, long n_tokens)
{
	return (int)((n_tokens + g->block_tokens - 1) / g->block_tokens);
}

void duet_kv_seq_init(struct duet_kv_seq *s);
/* Makes sure blocks exist for positions [0, n_tokens); fails without
 * changing anything if the pool has too few free blocks. */
int duet_kv_seq_reserve(struct duet_kv_pool *p, struct duet_kv_seq *s,
			int n_tokens, struct duet_err *err);
/* Returns every block to the pool (dropping this sequence's references)
 * and frees the table. The sequence can be reused after duet_kv_seq_init. */
void duet_kv_seq_release(struct duet_kv_pool *p, struct duet_kv_seq *s);
/* Appends a block already holding valid K/V (a shared prefix block),
 * taking a reference. Only at a block boundary of a sequence whose
 * n_tokens is a multiple of block_tokens. */
int duet_kv_seq_append_shared(struct duet_kv_pool *p, struct duet_kv_seq *s,
			      int block, struct duet_err *err);
void duet_kv_block_ref(struct duet_kv_pool *p, int block);
void duet_kv_block_unref(struct duet_kv_pool *p, int block);

/* K (which = 0) or V (which = 1) row of layer l at position pos; the rows
 * of one block follow each other. */
static inline void *duet_kv_row(const struct duet_kv_pool *p, int layer, int which,
				const struct duet_kv_seq *s, int pos)
{
	const struct duet_kv_geom *g = &p->g;
	size_t block = (size_t)s->blocks[pos / g->block_tokens];
	size_t slab = ((size_t)layer * 2 + (size_t)which) * (size_t)p->n_blocks;
	return p->data + ((slab + block) * (size_t)g->block_tokens +
			  (size_t)(pos % g->block_tokens)) * p->row_bytes;
}

#endif
