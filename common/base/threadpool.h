/* A fixed pool of worker threads running one function at a time across
 * all threads (the caller is thread 0). Used for every parallel loop in the
 * forward pass, so that the thread count and CPU placement are decided in
 * one place and BLAS never adds threads of its own. */
#ifndef DUET_POOL_H
#define DUET_POOL_H

#include "base/err.h"

struct duet_threadpool;

typedef void (*duet_threadpool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 including the caller. cpus (may be NULL) pins thread i to
 * cpus[i % n_cpus]; the caller's own pinning is left to the caller. */
int duet_threadpool_create(struct duet_threadpool **out, int n_threads, const int *cpus,
		     int n_cpus, struct duet_err *err);
void duet_threadpool_destroy(struct duet_threadpool *p);
/* Runs fn(arg, i, n) for i in [0, n) concurrently; returns when all are
 * done. Not reentrant: fn must not call duet_threadpool_run. */
void duet_threadpool_run(struct duet_threadpool *p, duet_threadpool_fn fn, void *arg);
int duet_threadpool_threads(const struct duet_threadpool *p);

/* Splits [0, n) into nth parts aligned to `align`; part ith is [*a, *b). */
void duet_split(long n, int ith, int nth, long align, long *a, long *b);
/* The same with part i about share[i] of the units (shares sum to 1). */
void duet_split_shares(long n, int ith, int nth, long align, const float *share, long *a,
		       long *b);
/* Even shares for nth threads. */
void duet_shares_even(float *share, int nth);
/* Moves the shares towards the threads' speeds as one run measured them:
 * thread i did the fraction done[i] of the work in secs[i] seconds. */
void duet_shares_update(float *share, const double *done, const double *secs, int nth);

#endif
