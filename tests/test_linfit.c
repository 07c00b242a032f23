/* The online least-squares fit behind the decode node's step-time model:
 * exact on noise-free data, following a change of the underlying costs
 * through its forgetting factor, leaving at zero what never varied, and
 * no weight below zero. */
#include "testutil.h"

#include <math.h>

#include "base/linfit.h"

static void test_fits_and_follows(void **st)
{
	(void)st;
	struct duet_linfit f;
	duet_linfit_init(&f, 3, 0.99, 1e-6);
	/* step = 5 + 2 per sequence + 0.5 per prefill token */
	for (int i = 0; i < 400; i++) {
		double x[3] = {1, 1 + i % 8, (i % 5) * 16};
		duet_linfit_add(&f, x, 5 + 2 * x[1] + 0.5 * x[2]);
	}
	assert_true(fabs(f.w[0] - 5) < 1e-3 && fabs(f.w[1] - 2) < 1e-3 && fabs(f.w[2] - 0.5) < 1e-3);
	double q[3] = {1, 4, 64};
	assert_true(fabs(duet_linfit_predict(&f, q) - 45) < 1e-2);
	/* The machine gets twice as slow: the fit follows within a few
	 * forgetting spans. */
	for (int i = 0; i < 1500; i++) {
		double x[3] = {1, 1 + i % 8, (i % 5) * 16};
		duet_linfit_add(&f, x, 2 * (5 + 2 * x[1] + 0.5 * x[2]));
	}
	assert_true(fabs(duet_linfit_predict(&f, q) - 90) < 0.5);
}

static void test_unseen_feature(void **st)
{
	(void)st;
	struct duet_linfit f;
	duet_linfit_init(&f, 2, 0.995, 1e-3);
	for (int i = 0; i < 100; i++) { /* no prefill token ever */
		double x[2] = {1, 0};
		duet_linfit_add(&f, x, 7);
	}
	assert_true(fabs(f.w[0] - 7) < 0.01);
	assert_true(fabs(f.w[1]) < 1e-9);
}

/* A prior on a feature: its weight before any sample has it, samples
 * that have it outweigh it, and once they are forgotten (steps without
 * the feature), the weight is the prior's again, not 0. */
static void test_prior(void **st)
{
	(void)st;
	struct duet_linfit f;
	duet_linfit_init(&f, 2, 0.995, 1e-3);
	duet_linfit_prior(&f, 1, 1.5, 2 * 64.0 * 64.0);
	assert_true(fabs(f.w[1] - 1.5) < 1e-6);
	for (int i = 0; i < 50; i++) {
		double d[2] = {1, 0}, c[2] = {1, 64};
		duet_linfit_add(&f, d, 20);
		duet_linfit_add(&f, c, 20 + 64 * 2.0); /* 2 ms a token, not 1.5 */
	}
	/* (the prior holds a little: a few % of the data's weight) */
	assert_true(fabs(f.w[0] - 20) < 1.5);
	assert_true(fabs(f.w[1] - 2.0) < 0.05);
	for (int i = 0; i < 5000; i++) {
		double d[2] = {1, 0};
		duet_linfit_add(&f, d, 20);
	}
	assert_true(fabs(f.w[1] - 1.5) < 0.01);
	duet_linfit_prior(&f, 7, 1, 1); /* no such feature: nothing changes */
	assert_true(fabs(f.w[1] - 1.5) < 0.01);
}

/* Weights are costs: where the unconstrained fit would give a feature a
 * negative weight, the fit is the best one with that weight at 0. y = 1 +
 * 2a - b over a and b each 0, 1, 2 (all nine pairs, uncorrelated): b's
 * weight 0, and the rest fitted to y alone, its mean -1 of b in the base:
 * 0 + 2a. Two features, y = 5 - 0.5x over x = 0..10: the slope 0, the base
 * the mean, 2.5. */
static void test_non_negative(void **st)
{
	(void)st;
	struct duet_linfit f;
	duet_linfit_init(&f, 3, 1.0, 1e-9);
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++) {
			double x[3] = {1, a, b};
			duet_linfit_add(&f, x, 1 + 2.0 * a - b);
		}
	assert_true(fabs(f.w[0]) < 1e-6);
	assert_true(fabs(f.w[1] - 2) < 1e-6);
	assert_true(f.w[2] == 0);
	duet_linfit_init(&f, 2, 1.0, 1e-9);
	for (int x = 0; x <= 10; x++) {
		double v[2] = {1, x};
		duet_linfit_add(&f, v, 5 - 0.5 * x);
	}
	assert_true(fabs(f.w[0] - 2.5) < 1e-6);
	assert_true(f.w[1] == 0);
	/* Both weights positive: the unconstrained fit, exactly. */
	duet_linfit_init(&f, 2, 1.0, 1e-9);
	for (int x = 0; x <= 10; x++) {
		double v[2] = {1, x};
		duet_linfit_add(&f, v, 5 + 0.5 * x);
	}
	assert_true(fabs(f.w[0] - 5) < 1e-6 && fabs(f.w[1] - 0.5) < 1e-6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fits_and_follows),
		cmocka_unit_test(test_unseen_feature),
		cmocka_unit_test(test_prior),
		cmocka_unit_test(test_non_negative),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
