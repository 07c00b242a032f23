/* Which of the kernels' two software prefetch distances (kern/kernels.h,
 * far) the kernel products take, chosen by the read speed measured on the
 * products before.
 *
 * Which distance reads memory faster is the machine's state, not the
 * kernel's: on this project's VM one distance won by up to 29% while the
 * memory was fast and lost by 8% while it was slow, and the VM switches
 * between the two every few seconds (BENCHMARKS.md, 2026-12-06 sixth). So
 * products of one sequence (decode) run in windows of DUET_PFTUNE_WINDOW
 * at one distance (wider ones take the current one); each
 * distance keeps a running mean of the bytes per second its windows read,
 * the faster takes the next window, and every DUET_PFTUNE_EXPLORE-th
 * window the other, so that a change of state is seen within a few decode
 * steps. (Per product the times of one shape varied more than the two
 * distances differ; a window of a few layers' products sums that out.) */
#ifndef DUET_PFTUNE_H
#define DUET_PFTUNE_H

#include <stddef.h>

/* A window: about a third of a decode step's products for a 22-layer
 * model (4 per layer). */
#define DUET_PFTUNE_WINDOW 32
#define DUET_PFTUNE_EXPLORE 16
/* How far one window moves a distance's mean: one window slowed by a
 * preemption does not flip the choice, a change of state does within a
 * few. */
#define DUET_PFTUNE_RATE 0.5

struct duet_pftune {
	double rate[2]; /* mean bytes per second of each distance's windows */
	unsigned windows[2];
	int far;         /* the current window's distance */
	int in_window;   /* products of it so far */
	double bytes, seconds;
};

/* The distance (0 near, 1 far) for the next product. */
int duet_pftune_pick(const struct duet_pftune *t);
/* The product just run at the picked distance read bytes in seconds. */
void duet_pftune_report(struct duet_pftune *t, size_t bytes, double seconds);

#endif
