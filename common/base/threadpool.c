#include "base/threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* How long an idle worker polls for the next job before sleeping: long
 * enough to span the serial gaps between the parallel loops of one forward
 * pass, short enough not to hold a core once the engine goes idle. */
#define SPIN_ITERS 20000
/* How far one run moves the shares towards the speeds it measured: a few
 * runs (a layer or two of a decode step) follow a change, and one run
 * that a preemption slowed does not swing the split. */
#define SHARE_RATE 0.25
/* No thread's share falls below this fraction of an even one, so a thread
 * that was descheduled once keeps work and is measured again. */
#define SHARE_FLOOR 0.5

struct worker {
	struct duet_threadpool *pool;
	pthread_t tid;
	int ith;
	int cpu;
};

struct duet_threadpool {
	int n;
	struct worker *w;
	duet_threadpool_fn fn;
	void *arg;
	atomic_uint gen;
	atomic_int pending;
	atomic_int sleepers;
	atomic_int stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static void *worker_main(void *a)
{
	struct worker *w = a;
	struct duet_threadpool *p = w->pool;
	struct duet_err err;
	if (w->cpu >= 0)
		(void)duet_cpu_pin_self(w->cpu, &err); /* best effort: placement */
	/* Generation 0 is the pool's state at creation; reading p->gen here
	 * instead would skip a job posted before this thread got scheduled. */
	unsigned seen = 0;
	for (;;) {
		int spins = 0;
		while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop) &&
		       spins < SPIN_ITERS) {
			cpu_relax();
			spins++;
		}
		if (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) {
			pthread_mutex_lock(&p->mu);
			/* seq_cst pairing with duet_threadpool_run: either we see the
			 * new generation here or the runner sees us asleep. */
			atomic_fetch_add(&p->sleepers, 1);
			while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
				pthread_cond_wait(&p->cv, &p->mu);
			atomic_fetch_sub(&p->sleepers, 1);
			pthread_mutex_unlock(&p->mu);
		}
		if (atomic_load(&p->stop))
			return NULL;
		seen = atomic_load(&p->gen);
		p->fn(p->arg, w->ith, p->n);
		atomic_fetch_sub(&p->pending, 1);
	}
}

int duet_threadpool_create(struct duet_threadpool **out, int n_threads, const int *cpus,
		     int n_cpus, struct duet_err *err)
{
	*out = NULL;
	if (n_threads < 1 || n_threads > DUET_MAX_THREADS)
		return duet_errf(err, "thread count %d is out of range (1 to %d)", n_threads,
				 DUET_MAX_THREADS);
	struct duet_threadpool *p = calloc(1, sizeof *p);
	if (!p)
		return duet_errf(err, "out of memory creating a thread pool");
	p->n = n_threads;
	p->w = calloc((size_t)n_threads, sizeof *p->w);
	if (!p->w) {
		free(p);
		return duet_errf(err, "out of memory creating a thread pool");
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	for (int i = 1; i < n_threads; i++) {
		struct worker *w = &p->w[i];
		w->pool = p;
		w->ith = i;
		w->cpu = cpus && n_cpus > 0 ? cpus[i % n_cpus] : -1;
		int rc = pthread_create(&w->tid, NULL, worker_main, w);
		if (rc) {
			p->n = i; /* destroy joins the ones that started */
			duet_threadpool_destroy(p);
			errno = rc;
			return duet_errnof(err, "cannot start worker thread %d", i);
		}
	}
	*out = p;
	return 0;
}

void duet_threadpool_destroy(struct duet_threadpool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	atomic_store(&p->stop, 1);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->w[i].tid, NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->w);
	free(p);
}

int duet_threadpool_threads(const struct duet_threadpool *p)
{
	return p->n;
}

void duet_threadpool_run(struct duet_threadpool *p, duet_threadpool_fn fn, void *arg)
{
	if (p->n == 1) {
		fn(arg, 0, 1);
		return;
	}
	p->fn = fn;
	p->arg = arg;
	atomic_store(&p->pending, p->n - 1);
	atomic_fetch_add(&p->gen, 1);
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	fn(arg, 0, p->n);
	while (atomic_load(&p->pending) > 0)
		cpu_relax();
}

/* Units [ua, ub) of `align` rows as rows of [0, n). */
static void units_to_rows(long n, long align, long ua, long ub, long *a, long *b)
{
	*a = ua * align < n ? ua * align : n;
	*b = ub * align < n ? ub * align : n;
}

void duet_split(long n, int ith, int nth, long align, long *a, long *b)
{
	long units = (n + align - 1) / align;
	long per = units / nth, extra = units % nth;
	long ua = ith * per + (ith < extra ? ith : extra);
	long ub = ua + per + (ith < extra ? 1 : 0);
	units_to_rows(n, align, ua, ub, a, b);
}

void duet_split_shares(long n, int ith, int nth, long align, const float *share, long *a,
		       long *b)
{
	long units = (n + align - 1) / align;
	double cum = 0;
	for (int i = 0; i < ith; i++)
		cum += share[i];
	long ua = ith == 0 ? 0 : (long)(cum * (double)units + 0.5);
	long ub = ith == nth - 1 ? units : (long)((cum + share[ith]) * (double)units + 0.5);
	if (ua > units)
		ua = units;
	if (ub > units)
		ub = units;
	if (ub < ua)
		ub = ua;
	units_to_rows(n, align, ua, ub, a, b);
}

void duet_shares_even(float *share, int nth)
{
	for (int i = 0; i < nth; i++)
		share[i] = 1.0f / (float)nth;
}

void duet_shares_update(float *share, const double *done, const double *secs, int nth)
{
	double speed[DUET_MAX_THREADS], total = 0;
	for (int i = 0; i < nth; i++) {
		if (!(secs[i] > 0) || !(done[i] > 0))
			return; /* a thread that did nothing tells nothing */
		speed[i] = done[i] / secs[i];
		total += speed[i];
	}
	/* A mix of two sets of shares sums to 1; the floor is taken from the
	 * others, in proportion. */
	double floor = SHARE_FLOOR / nth, s[DUET_MAX_THREADS], low = 0, rest = 0;
	for (int i = 0; i < nth; i++) {
		s[i] = share[i] + SHARE_RATE * (speed[i] / total - share[i]);
		if (s[i] < floor)
			low += floor;
		else
			rest += s[i];
	}
	for (int i = 0; i < nth; i++)
		share[i] = (float)(s[i] < floor ? floor : s[i] * (1 - low) / rest);
}
