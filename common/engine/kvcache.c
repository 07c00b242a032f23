#include "engine/kvcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/grow.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older C libraries lack the name */
#endif

size_t duet_kv_block_bytes(const struct duet_kv_geom *g)
{
	return (size_t)g->n_layers * 2 * (size_t)g->block_tokens *
	       duet_kv_row_bytes(g->dtype, g->n_kv_heads, g->head_dim);
}

int duet_kv_pool_create(struct duet_kv_pool **out, const struct duet_kv_geom *g,
			int n_blocks, struct duet_err *err)
{
	*out = NULL;
	if (g->n_layers < 1 || g->n_kv_heads < 1 || g->head_dim < 1 || g->block_tokens < 1 ||
	    g->block_tokens > DUET_KV_MAX_BLOCK_TOKENS || !duet_kv_dtype_valid(g->dtype))
		return duet_errf(err, "KV pool: bad geometry (layers %d, %d heads of %d, block %d tokens, dtype %d)",
				 g->n_layers, g->n_kv_heads, g->head_dim, g->block_tokens,
				 (int)g->dtype);
	if (n_blocks < 1)
		return duet_errf(err, "KV pool: %d blocks requested; need at least 1", n_blocks);
	struct duet_kv_pool *p = calloc(1, sizeof *p);
	if (!p)
		return duet_errf(err, "KV pool: out of memory");
	p->g = *g;
	p->row_bytes = duet_kv_row_bytes(g->dtype, g->n_kv_heads, g->head_dim);
	p->n_blocks = n_blocks;
	p->bytes = duet_kv_block_bytes(g) * (size_t)n_blocks;
	/* Anonymous pages: zeroed, allocated when first written (or all at
	 * once by duet_kv_pool_prefault), and eligible for transparent huge
	 * pages. */
	void *mem = mmap(NULL, p->bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED) {
		size_t bytes = p->bytes;
		free(p);
		return duet_errnof(err, "KV pool: cannot map %zu bytes for %d blocks", bytes,
				   n_blocks);
	}
	madvise(mem, p->bytes, MADV_HUGEPAGE);
	p->data = mem;
	p->refs = calloc((size_t)n_blocks, sizeof *p->refs);
	p->free_ids = malloc(sizeof *p->free_ids * (size_t)n_blocks);
	if (!p->refs || !p->free_ids) {
		duet_kv_pool_destroy(p);
		return duet_errf(err, "KV pool: out of memory for %d block records", n_blocks);
	}
	/* Pop order hands out low ids first, which keeps a lightly used pool
	 * in few pages. */
	for (int i = 0; i < n_blocks; i++)
		p->free_ids[i] = n_blocks - 1 - i;
	p->n_free = n_blocks;
	*out = p;
	return 0;
}

int duet_kv_pool_prefault(struct duet_kv_pool *p, struct duet_err *err)
{
	/* MADV_POPULATE_WRITE (Linux 5.14) faults the range in, huge pages
	 * where madvise gave them, and reports ENOMEM instead of the OOM
	 * killer finding the process later. */
	if (madvise(p->data, p->bytes, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return duet_errnof(err, "KV pool: cannot take %zu MB of memory (kv-mb)",
				   p->bytes >> 20);
	/* an older kernel: touch a byte of every page (all zero already) */
	long page = sysconf(_SC_PAGESIZE);
	for (size_t o = 0; o < p->bytes; o += (size_t)(page > 0 ? page : 4096))
		((volatile uint8_t *)p->data)[o] = 0;
	return 0;
}

void duet_kv_pool_destroy(struct duet_kv_pool *p)
{
	if (!p)
		return;
	if (p->data)
		munmap(p->data, p->bytes);
	free(p->refs);
	free(p->free_ids);
	free(p);
}

void duet_kv_seq_init(struct duet_kv_seq *s)
{
	memset(s, 0, sizeof *s);
}

static int grow_table(struct duet_kv_seq *s, int need, struct duet_err *err)
{
	int *b = duet_grow(s->blocks, &s->cap, need, sizeof *b, 8);
	if (!b)
		return duet_errf(err, "KV: out of memory for a block table of %d", need);
	s->blocks = b;
	return 0;
}

int duet_kv_seq_reserve(struct duet_kv_pool *p, struct duet_kv_seq *s,
			int n_tokens, struct duet_err *err)
{
	int need = duet_kv_blocks_for(&p->g, n_tokens);
	if (need <= s->n_blocks)
		return 0;
	if (need - s->n_blocks > p->n_free)
		return duet_errf(err, "KV pool exhausted: %d more blocks needed for %d positions, %d free of %d",
				 need - s->n_blocks, n_tokens, p->n_free, p->n_blocks);
	if (grow_table(s, need, err))
		return -1;
	while (s->n_blocks < need) {
		int id = p->free_ids[--p->n_free];
		p->refs[id] = 1;
		s->blocks[s->n_blocks++] = id;
	}
	return 0;
}

void duet_kv_block_ref(struct duet_kv_pool *p, int block)
{
	p->refs[block]++;
}

void duet_kv_block_unref(struct duet_kv_pool *p, int block)
{
	if (--p->refs[block] == 0)
		p->free_ids[p->n_free++] = block;
}

int duet_kv_seq_append_shared(struct duet_kv_pool *p, struct duet_kv_seq *s,
			      int block, struct duet_err *err)
{
	if (s->n_tokens % p->g.block_tokens || s->n_blocks * p->g.block_tokens != s->n_tokens)
		return duet_errf(err, "KV: a shared block can only follow whole blocks (sequence has %d positions in %d blocks)",
				 s->n_tokens, s->n_blocks);
	if (block < 0 || block >= p->n_blocks || p->refs[block] < 1)
		return duet_errf(err, "KV: block %d is not a live block", block);
	if (grow_table(s, s->n_blocks + 1, err))
		return -1;
	duet_kv_block_ref(p, block);
	s->blocks[s->n_blocks++] = block;
	s->n_tokens += p->g.block_tokens;
	return 0;
}

void duet_kv_seq_release(struct duet_kv_pool *p, struct duet_kv_seq *s)
{
	for (int i = 0; i < s->n_blocks; i++)
		duet_kv_block_unref(p, s->blocks[i]);
	free(s->blocks);
	memset(s, 0, sizeof *s);
}
