#include "base/idmap.h"

#include <stdlib.h>

#define IDMAP_MIN_CAP 64

/* Ids are mostly consecutive: a multiplicative mix spreads them over the
 * table (the constant is 2^64 over the golden ratio). */
static size_t slot_of(const struct duet_idmap *m, uint64_t key)
{
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (m->cap - 1);
}

void duet_idmap_free(struct duet_idmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}

void *duet_idmap_get(const struct duet_idmap *m, uint64_t key)
{
	if (!key || !m->cap)
		return NULL;
	for (size_t i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
		if (m->slots[i].key == key)
			return m->slots[i].val;
		if (!m->slots[i].key)
			return NULL;
	}
}

static void insert(struct duet_idmap *m, uint64_t key, void *val)
{
	size_t i = slot_of(m, key);
	while (m->slots[i].key && m->slots[i].key != key)
		i = (i + 1) & (m->cap - 1);
	if (!m->slots[i].key)
		m->n++;
	m->slots[i] = (struct duet_idmap_slot){key, val};
}

/* Kept at most half full, so probes stay short. */
static int grow(struct duet_idmap *m, struct duet_err *err)
{
	size_t cap = m->cap ? m->cap * 2 : IDMAP_MIN_CAP;
	struct duet_idmap_slot *s = calloc(cap, sizeof *s);
	if (!s)
		return duet_errf(err, "id map: out of memory for %zu entries", cap);
	struct duet_idmap old = *m;
	m->slots = s;
	m->cap = cap;
	m->n = 0;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].key)
			insert(m, old.slots[i].key, old.slots[i].val);
	free(old.slots);
	return 0;
}

int duet_idmap_put(struct duet_idmap *m, uint64_t key, void *val, struct duet_err *err)
{
	if (!key)
		return duet_errf(err, "id map: key 0 is reserved");
	if ((m->n + 1) * 2 > m->cap && grow(m, err))
		return -1;
	insert(m, key, val);
	return 0;
}

void *duet_idmap_del(struct duet_idmap *m, uint64_t key)
{
	if (!key || !m->cap)
		return NULL;
	size_t mask = m->cap - 1, i = slot_of(m, key);
	while (m->slots[i].key != key) {
		if (!m->slots[i].key)
			return NULL;
		i = (i + 1) & mask;
	}
	void *val = m->slots[i].val;
	/* Backward shift: pull later entries of the run into the hole when
	 * their home slot is not between the hole and them. */
	size_t hole = i;
	for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
		size_t home = slot_of(m, m->slots[j].key);
		if (((j - home) & mask) >= ((j - hole) & mask)) {
			m->slots[hole] = m->slots[j];
			hole = j;
		}
	}
	m->slots[hole] = (struct duet_idmap_slot){0, NULL};
	m->n--;
	return val;
}
