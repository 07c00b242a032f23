/* The id map against a plain array doing the same operations: random puts,
 * replacements and deletions over keys that collide on purpose (runs of
 * consecutive ids, ids that differ only in high bits), through growth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "base/idmap.h"

#define KEYS 3000

static uint64_t key_of(int i)
{
	/* A third consecutive, a third spread in the high bits, a third
	 * arbitrary. */
	switch (i % 3) {
	case 0: return 1000 + (uint64_t)i;
	case 1: return ((uint64_t)i << 40) | 7;
	default: return (uint64_t)i * 0x2545F4914F6CDD1Dull | 1;
	}
}

static void test_against_array(void **state)
{
	(void)state;
	static void *want[KEYS];
	static int vals[KEYS];
	struct duet_idmap m = {0};
	struct duet_err err;
	uint64_t rng = 88172645463325252ull;
	size_t n = 0;
	for (int step = 0; step < 200000; step++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		int i = (int)(rng % KEYS), op = (int)((rng >> 32) % 8);
		uint64_t k = key_of(i);
		if (op < 5) { /* put, a new value each time */
			vals[i]++;
			n += want[i] == NULL;
			want[i] = &vals[i];
			assert_int_equal(duet_idmap_put(&m, k, want[i], &err), 0);
		} else if (op < 7) {
			assert_ptr_equal(duet_idmap_del(&m, k), want[i]);
			n -= want[i] != NULL;
			want[i] = NULL;
		}
		assert_ptr_equal(duet_idmap_get(&m, k), want[i]);
		assert_int_equal(m.n, n);
		if (step % 20000 == 0) /* every key, now and then */
			for (int j = 0; j < KEYS; j++)
				assert_ptr_equal(duet_idmap_get(&m, key_of(j)), want[j]);
	}
	/* Emptied key by key, it finds nothing and is empty. */
	for (int j = 0; j < KEYS; j++)
		duet_idmap_del(&m, key_of(j));
	assert_int_equal(m.n, 0);
	for (int j = 0; j < KEYS; j++)
		assert_null(duet_idmap_get(&m, key_of(j)));
	duet_idmap_free(&m);
}

static void test_edges(void **state)
{
	(void)state;
	struct duet_idmap m = {0};
	struct duet_err err;
	int a;
	assert_null(duet_idmap_get(&m, 5)); /* empty, unallocated */
	assert_null(duet_idmap_del(&m, 5));
	assert_int_equal(duet_idmap_put(&m, 0, &a, &err), -1); /* 0 is reserved */
	assert_true(err.msg[0] != 0);
	assert_int_equal(duet_idmap_put(&m, UINT64_MAX, &a, &err), 0);
	assert_ptr_equal(duet_idmap_get(&m, UINT64_MAX), &a);
	assert_null(duet_idmap_get(&m, 0));
	duet_idmap_free(&m);
	assert_null(duet_idmap_get(&m, UINT64_MAX));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_against_array),
		cmocka_unit_test(test_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
