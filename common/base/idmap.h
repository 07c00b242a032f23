/* Request ids to their records in O(1): an open-addressing hash table of
 * nonzero 64-bit keys (ids are never 0 on the wire) with linear probing
 * and backward-shift deletion, so no tombstones pile up in a daemon that
 * runs for months. Not thread-safe: each map belongs to one thread. */
#ifndef DUET_IDMAP_H
#define DUET_IDMAP_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct duet_idmap_slot {
	uint64_t key; /* 0 = empty */
	void *val;
};

struct duet_idmap {
	struct duet_idmap_slot *slots;
	size_t cap; /* a power of two, or 0 before the first put */
	size_t n;
};

/* An empty map needs no allocation: struct duet_idmap m = {0}. */
void duet_idmap_free(struct duet_idmap *m);
/* The value under key, NULL when absent (or key is 0). */
void *duet_idmap_get(const struct duet_idmap *m, uint64_t key);
/* Sets key to val (replacing any value). Fails only for key 0 or when out
 * of memory, and then the map is as it was. */
int duet_idmap_put(struct duet_idmap *m, uint64_t key, void *val, struct duet_err *err);
/* Removes key; returns its value, NULL when it was absent. */
void *duet_idmap_del(struct duet_idmap *m, uint64_t key);

#endif
