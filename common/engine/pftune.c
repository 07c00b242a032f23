#include "engine/pftune.h"

int duet_pftune_pick(const struct duet_pftune *t)
{
	return t->far;
}

void duet_pftune_report(struct duet_pftune *t, size_t bytes, double seconds)
{
	if (seconds <= 0)
		return;
	t->bytes += (double)bytes;
	t->seconds += seconds;
	if (++t->in_window < DUET_PFTUNE_WINDOW)
		return;
	int f = t->far;
	double r = t->bytes / t->seconds;
	t->rate[f] = t->windows[f] ? t->rate[f] + DUET_PFTUNE_RATE * (r - t->rate[f]) : r;
	t->windows[f]++;
	t->in_window = 0;
	t->bytes = t->seconds = 0;
	/* each tried once first; then the faster, and the other every
	 * EXPLORE-th window */
	if (!t->windows[0] || !t->windows[1]) {
		t->far = !t->windows[1];
		return;
	}
	int best = t->rate[1] > t->rate[0];
	unsigned done = t->windows[0] + t->windows[1];
	t->far = done % DUET_PFTUNE_EXPLORE == DUET_PFTUNE_EXPLORE - 1 ? !best : best;
}
