#include "node/prefix_cache.h"

#include <stdlib.h>
#include <xxhash.h>

int duet_prefix_create(struct duet_prefix_cache **out, struct duet_kv_pool *pool,
		       int max_blocks, struct duet_err *err)
{
	int nb = pool->n_blocks;
	struct duet_prefix_cache *c = calloc(1, sizeof *c);
	if (!c)
		return duet_errf(err, "prefix cache: out of memory");
	c->pool = pool;
	c->max_blocks = max_blocks < nb ? max_blocks : nb;
	c->n_buckets = 2 * nb + 1;
	c->hash = calloc((size_t)nb, sizeof *c->hash);
	c->held = calloc((size_t)nb, 1);
	c->prev = malloc(sizeof(int) * (size_t)nb);
	c->next = malloc(sizeof(int) * (size_t)nb);
	c->chain = malloc(sizeof(int) * (size_t)nb);
	c->bucket = malloc(sizeof(int) * (size_t)c->n_buckets);
	if (!c->hash || !c->held || !c->prev || !c->next || !c->chain || !c->bucket) {
		duet_prefix_destroy(c);
		return duet_errf(err, "prefix cache: out of memory for %d blocks", nb);
	}
	for (int i = 0; i < c->n_buckets; i++)
		c->bucket[i] = -1;
	c->head = c->tail = -1;
	*out = c;
	return 0;
}

static void lru_unlink(struct duet_prefix_cache *c, int b)
{
	if (c->prev[b] >= 0)
		c->next[c->prev[b]] = c->next[b];
	else
		c->head = c->next[b];
	if (c->next[b] >= 0)
		c->prev[c->next[b]] = c->prev[b];
	else
		c->tail = c->prev[b];
}

static void lru_push_front(struct duet_prefix_cache *c, int b)
{
	c->prev[b] = -1;
	c->next[b] = c->head;
	if (c->head >= 0)
		c->prev[c->head] = b;
	c->head = b;
	if (c->tail < 0)
		c->tail = b;
}

static void touch(struct duet_prefix_cache *c, int b)
{
	lru_unlink(c, b);
	lru_push_front(c, b);
}

static int lookup(const struct duet_prefix_cache *c, uint64_t h)
{
	for (int b = c->bucket[h % (uint64_t)c->n_buckets]; b >= 0; b = c->chain[b])
		if (c->hash[b] == h)
			return b;
	return -1;
}

static void drop(struct duet_prefix_cache *c, int b)
{
	int *p = &c->bucket[c->hash[b] % (uint64_t)c->n_buckets];
	while (*p != b)
		p = &c->chain[*p];
	*p = c->chain[b];
	lru_unlink(c, b);
	c->held[b] = 0;
	c->n--;
	duet_kv_block_unref(c->pool, b);
}

void duet_prefix_destroy(struct duet_prefix_cache *c)
{
	if (!c)
		return;
	if (c->held)
		while (c->head >= 0)
			drop(c, c->head);
	free(c->hash);
	free(c->held);
	free(c->prev);
	free(c->next);
	free(c->chain);
	free(c->bucket);
	free(c);
}

uint64_t duet_prefix_chain(uint64_t prev, const int *tokens, int n)
{
	return XXH3_64bits_withSeed(tokens, sizeof(int) * (size_t)n, prev);
}

/* Walks the chain of tokens' full blocks (at most max_tokens) while the
 * cache has them; with seq, appends each to it. Returns the tokens
 * covered, or -1 when appending fails. */
static int walk(const struct duet_prefix_cache *c, const int *tokens, int max_tokens,
		struct duet_kv_seq *seq, struct duet_err *err)
{
	int bt = c->pool->g.block_tokens, n = 0;
	uint64_t h = DUET_PREFIX_SEED;
	while (n + bt <= max_tokens) {
		h = duet_prefix_chain(h, tokens + n, bt);
		int b = lookup(c, h);
		if (b < 0)
			break;
		if (seq && duet_kv_seq_append_shared(c->pool, seq, b, err))
			return -1;
		n += bt;
	}
	return n;
}

int duet_prefix_cached(const struct duet_prefix_cache *c, const int *tokens, int max_tokens)
{
	return walk(c, tokens, max_tokens, NULL, NULL);
}

int duet_prefix_attach(struct duet_prefix_cache *c, struct duet_kv_seq *seq,
		       const int *tokens, int max_tokens, struct duet_err *err)
{
	int n = walk(c, tokens, max_tokens, seq, err);
	if (n < 0)
		return -1;
	/* Deepest first, so the root ends most recent: eviction then takes
	 * leaves before the blocks they hang from. */
	for (int i = seq->n_blocks - 1; i >= 0; i--)
		touch(c, seq->blocks[i]);
	c->hit_tokens += (uint64_t)n;
	return n;
}

void duet_prefix_insert(struct duet_prefix_cache *c, const struct duet_kv_seq *seq,
			const int *tokens, int n)
{
	int bt = c->pool->g.block_tokens;
	uint64_t h = DUET_PREFIX_SEED;
	int full = n / bt < seq->n_blocks ? n / bt : seq->n_blocks;
	for (int i = 0; i < full; i++) {
		h = duet_prefix_chain(h, tokens + (size_t)i * (size_t)bt, bt);
		int b = seq->blocks[i];
		if (c->held[b] || lookup(c, h) >= 0)
			continue; /* already cached, maybe as another block */
		if (c->n == c->max_blocks) {
			if (c->tail < 0)
				return;
			drop(c, c->tail);
		}
		c->hash[b] = h;
		c->held[b] = 1;
		c->n++;
		duet_kv_block_ref(c->pool, b);
		uint64_t k = h % (uint64_t)c->n_buckets;
		c->chain[b] = c->bucket[k];
		c->bucket[k] = b;
		lru_push_front(c, b);
	}
	for (int i = full - 1; i >= 0; i--)
		if (c->held[seq->blocks[i]])
			touch(c, seq->blocks[i]);
}

int duet_prefix_make_room(struct duet_prefix_cache *c, int need_free)
{
	while (c->pool->n_free < need_free && c->tail >= 0)
		drop(c, c->tail);
	return c->pool->n_free;
}

int duet_prefix_evictable(const struct duet_prefix_cache *c)
{
	int n = 0;
	for (int b = c->head; b >= 0; b = c->next[b])
		n += c->pool->refs[b] == 1;
	return n;
}

int duet_prefix_summary(const struct duet_prefix_cache *c, uint64_t *out, int max)
{
	int n = 0;
	for (int b = c->head; b >= 0 && n < max; b = c->next[b])
		out[n++] = c->hash[b];
	return n;
}
