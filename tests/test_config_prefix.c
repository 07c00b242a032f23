/* Daemon configuration (INI file plus flags), growable arrays, sorting
 * doubles and the prefix cache. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/grow.h"
#include "base/sort.h"
#include "node/prefix_cache.h"
#include "testutil.h"

struct settings {
	const char *name, *endpoint;
	int threads, stream;
	double timeout;
};

static int load(struct settings *s, struct duet_settings *c, int argc, char **argv,
		struct duet_err *err)
{
	*s = (struct settings){"n0", "ipc://x", 1, 1, 2.5};
	struct duet_opt o[] = {
		{"name", DUET_OPT_STR, &s->name, 0, 0, "NAME", "node name"},
		{"kv-endpoint", DUET_OPT_STR, &s->endpoint, 0, 0, "EP", "endpoint"},
		{"threads", DUET_OPT_INT, &s->threads, 1, 64, "N", "threads"},
		{"stream-layers", DUET_OPT_BOOL, &s->stream, 0, 0, "BOOL", "stream"},
		{"drain-timeout", DUET_OPT_DOUBLE, &s->timeout, 0, 100, "S", "drain"},
	};
	return duet_config_load(c, o, 5, argc, argv, err);
}

static void test_file_then_flags(void **state)
{
	(void)state;
	char ini[4096];
	tu_path(ini, "node.conf");
	const char *text = "; a decode node\n[node]\nname = decode-7\nkv_endpoint = tcp://*:5601\n"
			   "threads = 3\nstream-layers = off\n";
	tu_write_file(ini, text, strlen(text));
	struct settings s;
	struct duet_settings c;
	struct duet_err err;
	char *argv[] = {"x", "--config", ini, "--threads=2", "--drain-timeout", "9.5", NULL};
	assert_int_equal(load(&s, &c, 6, argv, &err), 0);
	assert_string_equal(s.name, "decode-7");
	assert_string_equal(s.endpoint, "tcp://*:5601");
	assert_int_equal(s.threads, 2); /* the flag wins */
	assert_int_equal(s.stream, 0);
	assert_true(s.timeout == 9.5);
	duet_config_free(&c);
	char *argv2[] = {"x", "--stream-layers", NULL};
	assert_int_equal(load(&s, &c, 2, argv2, &err), 0);
	assert_int_equal(s.stream, 1);
	duet_config_free(&c);
	char *argv3[] = {"x", "--stream-layers", "no", "--threads", "4", NULL};
	assert_int_equal(load(&s, &c, 5, argv3, &err), 0);
	assert_int_equal(s.stream, 0);
	assert_int_equal(s.threads, 4);
	duet_config_free(&c);
	char *help[] = {"x", "--threads", "5", "--help", NULL};
	assert_int_equal(load(&s, &c, 4, help, &err), 1);
}

static void test_errors(void **state)
{
	(void)state;
	char ini[4096];
	tu_path(ini, "bad.conf");
	struct settings s;
	struct duet_settings c;
	struct duet_err err;
	const struct {
		const char *file; /* NULL: no file */
		char *flag, *value;
		const char *want;
	} cases[] = {
		{"name = a\nthreads = 0\n", NULL, NULL, "bad.conf:2"},
		{"name = a\nbogus = 1\n", NULL, NULL, "unknown key 'bogus'"},
		{"[x]\nthis is not ini\n", NULL, NULL, "bad.conf:2"},
		{NULL, "--threads", "many", "'many'"},
		{NULL, "--threads", "65", "[1, 64]"},
		{NULL, "--drain-timeout", "nan", "drain-timeout"},
		{NULL, "--stream-layers=maybe", NULL, "true or false"},
		{NULL, "--nope", NULL, "unknown flag '--nope'"},
		{NULL, "positional", NULL, "unexpected argument"},
		{NULL, "--name", NULL, "needs a value"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *argv[6] = {"x"};
		int argc = 1;
		if (cases[i].file) {
			tu_write_file(ini, cases[i].file, strlen(cases[i].file));
			argv[argc++] = "--config";
			argv[argc++] = ini;
		} else {
			argv[argc++] = cases[i].flag;
			if (cases[i].value)
				argv[argc++] = cases[i].value;
		}
		argv[argc] = NULL;
		if (load(&s, &c, argc, argv, &err) != -1)
			fail_msg("case %zu accepted", i);
		if (!strstr(err.msg, cases[i].want))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
		duet_config_free(&c);
	}
	char *missing[] = {"x", "--config", "/nonexistent/duet.conf", NULL};
	assert_int_equal(load(&s, &c, 3, missing, &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/duet.conf"));
}

static void fill_seq(struct duet_kv_pool *p, struct duet_kv_seq *s, int n)
{
	struct duet_err err;
	assert_int_equal(duet_kv_seq_reserve(p, s, n, &err), 0);
	s->n_tokens = n;
}

static void test_prefix_cache(void **state)
{
	(void)state;
	struct duet_kv_geom g = {.n_layers = 1, .n_kv_heads = 1, .head_dim = 4, .block_tokens = 4,
				 .dtype = DUET_KV_F32};
	struct duet_kv_pool *p;
	struct duet_prefix_cache *c;
	struct duet_err err;
	assert_int_equal(duet_kv_pool_create(&p, &g, 16, &err), 0);
	assert_int_equal(duet_prefix_create(&c, p, 6, &err), 0);
	int a[14], b[14];
	for (int i = 0; i < 14; i++)
		a[i] = b[i] = 100 + i;
	b[9] = 7; /* b shares a's first two blocks, not the third */
	struct duet_kv_seq s;
	duet_kv_seq_init(&s);
	assert_int_equal(duet_prefix_attach(c, &s, a, 13, &err), 0); /* empty cache */
	fill_seq(p, &s, 14);
	duet_prefix_insert(c, &s, a, 14); /* 3 full blocks */
	assert_int_equal(c->n, 3);
	duet_kv_seq_release(p, &s);
	assert_int_equal(p->n_free, 16 - 3); /* the cache keeps its blocks */
	duet_kv_seq_init(&s);
	/* The lookup alone says what attaching would cover, and takes nothing. */
	uint64_t hits = c->hit_tokens;
	assert_int_equal(duet_prefix_cached(c, b, 13), 8);
	assert_int_equal(duet_prefix_cached(c, a, 13), 12);
	assert_int_equal(duet_prefix_cached(c, a, 7), 4);
	assert_true(c->hit_tokens == hits && p->n_free == 16 - 3);
	assert_int_equal(duet_prefix_attach(c, &s, b, 13, &err), 8);
	assert_int_equal(s.n_tokens, 8);
	assert_int_equal(p->refs[s.blocks[0]], 2);
	/* max_tokens bounds the match: whole blocks within 7 tokens. */
	struct duet_kv_seq t;
	duet_kv_seq_init(&t);
	assert_int_equal(duet_prefix_attach(c, &t, a, 7, &err), 4);
	duet_kv_seq_release(p, &t);
	fill_seq(p, &s, 14);
	duet_prefix_insert(c, &s, b, 14);
	assert_int_equal(c->n, 4); /* b's third block is new */
	duet_kv_seq_release(p, &s);
	uint64_t h[8];
	assert_int_equal(duet_prefix_summary(c, h, 8), 4);
	/* The chain hash: block 1 of a covers block 0 too. */
	uint64_t h0 = duet_prefix_chain(DUET_PREFIX_SEED, a, 4);
	assert_true(duet_prefix_chain(h0, a + 4, 4) != duet_prefix_chain(DUET_PREFIX_SEED, a + 4, 4));
	/* Making room evicts least recently used blocks, leaves first. */
	assert_int_equal(duet_prefix_make_room(c, 14), 14);
	assert_int_equal(c->n, 2);
	duet_kv_seq_init(&s);
	assert_int_equal(duet_prefix_attach(c, &s, a, 13, &err), 8); /* the roots survived */
	duet_kv_seq_release(p, &s);
	/* Over budget (6 blocks), inserting drops the oldest. */
	int z[40];
	for (int i = 0; i < 40; i++)
		z[i] = 1000 + i;
	duet_kv_seq_init(&s);
	fill_seq(p, &s, 40);
	duet_prefix_insert(c, &s, z, 40);
	assert_int_equal(c->n, 6);
	duet_kv_seq_release(p, &s);
	duet_prefix_destroy(c);
	assert_int_equal(p->n_free, 16);
	duet_kv_pool_destroy(p);
}

static void test_grow(void **state)
{
	(void)state;
	int *a = NULL, cap = 0;
	a = duet_grow(a, &cap, 1, sizeof *a, 4);
	assert_non_null(a);
	assert_int_equal(cap, 4);
	for (int i = 0; i < 4; i++)
		a[i] = i;
	assert_ptr_equal(duet_grow(a, &cap, 4, sizeof *a, 4), a); /* room: same array */
	a = duet_grow(a, &cap, 9, sizeof *a, 4);
	assert_non_null(a);
	assert_int_equal(cap, 16); /* doubled until it fits */
	for (int i = 0; i < 4; i++)
		assert_int_equal(a[i], i); /* contents kept */
	int *same = a;
	assert_null(duet_grow(a, &cap, -1, sizeof *a, 4)); /* absurd: refused, a kept */
	assert_null(duet_grow(a, &cap, 1 << 30, (size_t)1 << 40, 4));
	assert_int_equal(cap, 16);
	assert_ptr_equal(a, same);
	free(a);
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* duet_sort_f64 and duet_percentile_f64 against qsort: sizes either side of where the radix sort
 * takes over, negatives, zeros, duplicates, values whose leading bytes are
 * all the same (the skipped passes) and huge and tiny magnitudes. */
static void test_sort_f64(void **state)
{
	(void)state;
	const size_t sizes[] = {0, 1, 2, 47, 48, 49, 1000, 100003};
	uint64_t x = 88172645463325252ull;
	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
		for (int kind = 0; kind < 3; kind++) {
			size_t n = sizes[s];
			double *v = malloc((n + 1) * sizeof *v), *w = malloc((n + 1) * sizeof *w);
			assert_non_null(v);
			assert_non_null(w);
			for (size_t i = 0; i < n; i++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				double u = (double)(x >> 11) / (double)(1ull << 53);
				v[i] = kind == 0   ? 0.02 + u * 0.01 /* token gaps */
				       : kind == 1 ? (u - 0.5) * pow(10, (double)(x % 40) - 20)
						   : (double)(x % 5) - 2; /* duplicates, 0 */
			}
			memcpy(w, v, n * sizeof *v);
			qsort(w, n, sizeof *w, cmp_dbl);
			/* percentiles by selection: the sorted values' ranks,
			 * interpolated, whatever order selection leaves */
			const double ps[] = {0, 1, 50, 90, 99, 99.9, 100};
			for (size_t k = 0; k < sizeof ps / sizeof *ps; k++) {
				double rank = ps[k] / 100 * (n ? (double)(n - 1) : 0);
				size_t lo = (size_t)rank;
				double want = n == 0	       ? 0
					      : lo + 1 >= n ? w[n - 1]
							    : w[lo] + (rank - lo) * (w[lo + 1] - w[lo]);
				assert_true(duet_percentile_f64(v, n, ps[k]) == want);
			}
			duet_sort_f64(v, n);
			for (size_t i = 0; i < n; i++)
				assert_true(v[i] == w[i]);
			free(v);
			free(w);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_then_flags),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_grow),
		cmocka_unit_test(test_sort_f64),
		cmocka_unit_test(test_prefix_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
