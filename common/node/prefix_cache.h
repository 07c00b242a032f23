/* Prefix cache: full KV blocks keyed by a chain hash of their tokens (the
 * hash of block i covers its tokens and the hash of block i-1, so equal
 * hashes mean equal whole prefixes). The cache holds one reference on each
 * block it keeps; least recently used blocks go first when the pool needs
 * room or the cache is over its budget. */
#ifndef DUET_PREFIX_CACHE_H
#define DUET_PREFIX_CACHE_H

#include <stdint.h>

#include "base/err.h"
#include "engine/kvcache.h"

#define DUET_PREFIX_SEED 0x6475657470726678ULL /* hash of the empty prefix */

struct duet_prefix_cache {
	struct duet_kv_pool *pool;
	int max_blocks; /* budget */
	int n;		/* blocks held */
	uint64_t *hash;	/* per pool block */
	unsigned char *held;
	int *prev, *next; /* LRU list, head = most recent */
	int head, tail;
	int *bucket, n_buckets, *chain;
	uint64_t hit_tokens; /* tokens served from the cache, for reports */
};

int duet_prefix_create(struct duet_prefix_cache **out, struct duet_kv_pool *pool,
		       int max_blocks, struct duet_err *err);
/* Drops every reference the cache holds. */
void duet_prefix_destroy(struct duet_prefix_cache *c);

/* Hash of one block of tokens following the prefix whose hash is prev. */
uint64_t duet_prefix_chain(uint64_t prev, const int *tokens, int n);

/* Puts the longest cached run of full blocks of tokens[0..max_tokens) into
 * the empty sequence seq (sharing the blocks) and returns how many tokens
 * it covers, or -1 on error. */
int duet_prefix_attach(struct duet_prefix_cache *c, struct duet_kv_seq *seq,
		       const int *tokens, int max_tokens, struct duet_err *err);
/* How many of tokens[0..max_tokens) duet_prefix_attach would cover now,
 * without attaching or touching anything. */
int duet_prefix_cached(const struct duet_prefix_cache *c, const int *tokens, int max_tokens);
/* Offers the full blocks of seq (holding tokens[0..n)) to the cache. */
void duet_prefix_insert(struct duet_prefix_cache *c, const struct duet_kv_seq *seq,
			const int *tokens, int n);
/* Evicts least recently used blocks until the pool has need_free free
 * blocks or the cache is empty. Returns the pool's free blocks. */
int duet_prefix_make_room(struct duet_prefix_cache *c, int need_free);
/* Blocks only the cache holds (no sequence shares them): what
 * duet_prefix_make_room can give back. */
int duet_prefix_evictable(const struct duet_prefix_cache *c);
/* Writes up to max chain hashes, most recently used first. */
int duet_prefix_summary(const struct duet_prefix_cache *c, uint64_t *out, int max);

#endif
