/* The prefetch-distance chooser (engine/pftune.h): tries each distance for
 * a window, takes the faster, keeps trying the other every EXPLORE-th
 * window, and follows a change of the machine's state. */
#include "testutil.h"

#include "engine/pftune.h"

/* n windows of products that read 1 MB at gbs[far] GB/s; the number of
 * windows that took the far distance. */
static int run(struct duet_pftune *t, const double gbs[2], int n)
{
	int far_n = 0;
	for (int w = 0; w < n; w++) {
		int far = duet_pftune_pick(t);
		far_n += far;
		for (int i = 0; i < DUET_PFTUNE_WINDOW; i++) {
			/* a window holds one distance */
			assert_int_equal(duet_pftune_pick(t), far);
			duet_pftune_report(t, 1 << 20, (1 << 20) / (gbs[far] * 1e9));
		}
	}
	return far_n;
}

static void test_picks_the_faster_and_follows(void **st)
{
	(void)st;
	struct duet_pftune t = {0};
	const double far_wins[2] = {50, 60}, near_wins[2] = {85, 70};
	/* each tried for one window first: near, then far */
	assert_int_equal(run(&t, far_wins, 1), 0);
	assert_int_equal(run(&t, far_wins, 1), 1);
	/* then the faster, but for every EXPLORE-th window */
	int n = 20 * DUET_PFTUNE_EXPLORE;
	assert_int_equal(run(&t, far_wins, n), n - n / DUET_PFTUNE_EXPLORE);
	/* the machine changes state: the choice follows within two rounds of
	 * exploring, then holds */
	run(&t, near_wins, 2 * DUET_PFTUNE_EXPLORE);
	assert_int_equal(run(&t, near_wins, n), n / DUET_PFTUNE_EXPLORE);
	/* and back */
	run(&t, far_wins, 2 * DUET_PFTUNE_EXPLORE);
	assert_int_equal(run(&t, far_wins, n), n - n / DUET_PFTUNE_EXPLORE);
}

static void test_one_slow_window(void **st)
{
	(void)st;
	struct duet_pftune t = {0};
	const double far_wins[2] = {50, 60};
	run(&t, far_wins, 2 + 2 * DUET_PFTUNE_EXPLORE);
	/* one far window slowed by 30% (a preemption of a millisecond) does
	 * not flip the choice: far's mean falls to 51 GB/s, still over near's
	 * 50 */
	assert_int_equal(duet_pftune_pick(&t), 1);
	for (int i = 0; i < DUET_PFTUNE_WINDOW; i++)
		duet_pftune_report(&t, 1 << 20, (1 << 20) / (42e9));
	assert_int_equal(duet_pftune_pick(&t), 1);
	int n = 4 * DUET_PFTUNE_EXPLORE;
	assert_true(run(&t, far_wins, n) >= n - n / DUET_PFTUNE_EXPLORE - 1);
	/* a product that took no time is not a measurement */
	struct duet_pftune z = {0};
	duet_pftune_report(&z, 1 << 20, 0);
	assert_int_equal(z.in_window, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_picks_the_faster_and_follows),
		cmocka_unit_test(test_one_slow_window),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
