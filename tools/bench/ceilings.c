#include "bench/ceilings.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/clock.h"
#include "base/cpu.h"
#include "base/threadpool.h"
#include "engine/kern/kernels.h"

#define MIN_RUNS 3
#define PAGE 4096
#define HUGE_PAGE ((size_t)2 << 20)

void openblas_set_num_threads(int n);

int duet_measure_sgemm(int n, int threads, double seconds,
		       struct duet_sgemm_ceiling *out, struct duet_err *err)
{
	if (n < 64 || n > 16384)
		return duet_errf(err, "sgemm ceiling: size %d out of range (64 to 16384)", n);
	size_t nn = (size_t)n * (size_t)n;
	float *a = malloc(sizeof(float) * nn), *b = malloc(sizeof(float) * nn);
	float *c = malloc(sizeof(float) * nn);
	if (!a || !b || !c) {
		free(a), free(b), free(c);
		return duet_errf(err, "sgemm ceiling: out of memory for %d x %d matrices", n, n);
	}
	/* Small, normal values: denormals would slow the arithmetic down. */
	for (size_t i = 0; i < nn; i++) {
		a[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
		b[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
	}
	openblas_set_num_threads(threads);
	double best = 1e30, t_end = duet_now_s() + seconds;
	for (int r = 0; r < MIN_RUNS + 1 || duet_now_s() < t_end; r++) {
		double t0 = duet_now_s();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n,
			    0.0f, c, n);
		double t = duet_now_s() - t0;
		if (r > 0 && t < best) /* the first run pages memory in */
			best = t;
	}
	openblas_set_num_threads(1);
	free(a), free(b), free(c);
	out->n = n;
	out->threads = threads;
	out->gflops = 2.0 * n * (double)n * n / best * 1e-9;
	return 0;
}

struct bw_arg {
	const float *buf;
	size_t n;
	const struct duet_kernels *k;
	volatile float sink[256];
};

static void bw_part(void *arg, int ith, int nth)
{
	struct bw_arg *a = arg;
	long lo, hi;
	duet_split((long)a->n, ith, nth, PAGE / sizeof(float), &lo, &hi);
	/* Four interleaved streams per thread, as a matmul reads weight rows:
	 * one stream alone reads a third slower on these machines. The sum
	 * keeps the reads from being elided. */
	long n = (hi - lo) / 64 * 64;
	a->sink[ith] = a->k->read4(a->buf + lo, n);
}

struct duet_bw_probe {
	float *buf;
	size_t n;
	int threads;
	struct duet_threadpool *tp;
	struct bw_arg a;
};

int duet_bw_probe_create(struct duet_bw_probe **out, size_t bytes, int threads,
			 struct duet_err *err)
{
	size_t n = bytes / sizeof(float);
	*out = NULL;
	if (n < PAGE || n > (size_t)1 << 31)
		return duet_errf(err, "bandwidth ceiling: buffer of %zu bytes out of range", bytes);
	struct duet_bw_probe *p = calloc(1, sizeof *p);
	/* In huge pages, as the weights are (engine/model.h): the ceiling is
	 * what the machine can read at best, not what 4 KiB pages allow. */
	float *buf = aligned_alloc(HUGE_PAGE, (n * sizeof(float) + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
	if (!p || !buf) {
		free(p);
		free(buf);
		return duet_errf(err, "bandwidth ceiling: out of memory for %zu bytes", bytes);
	}
	(void)madvise(buf, n * sizeof(float), MADV_HUGEPAGE);
	for (size_t i = 0; i < n; i++)
		buf[i] = 1.0f / (float)(1 + (i & 255));
	if (duet_threadpool_create(&p->tp, threads, NULL, 0, err)) {
		free(buf);
		free(p);
		return -1;
	}
	p->buf = buf;
	p->n = n;
	p->threads = threads;
	p->a = (struct bw_arg){.buf = buf, .n = n, .k = duet_kernels()};
	*out = p;
	return 0;
}

int duet_bw_probe_sample(struct duet_bw_probe *p, double seconds, struct duet_bw_ceiling *out,
			 struct duet_err *err)
{
	if (!(seconds >= 0))
		return duet_errf(err, "bandwidth ceiling: %g seconds", seconds);
	double best = 1e30, t_end = duet_now_s() + seconds;
	for (int r = 0; r < MIN_RUNS + 1 || duet_now_s() < t_end; r++) {
		double t0 = duet_now_s();
		duet_threadpool_run(p->tp, bw_part, &p->a);
		double t = duet_now_s() - t0;
		if (r > 0 && t < best) /* the first pass brings the buffer back */
			best = t;
	}
	out->bytes = p->n * sizeof(float);
	out->threads = p->threads;
	out->gbps = (double)out->bytes / best * 1e-9;
	return 0;
}

void duet_bw_probe_destroy(struct duet_bw_probe *p)
{
	if (!p)
		return;
	duet_threadpool_destroy(p->tp);
	free(p->buf);
	free(p);
}

int duet_measure_bandwidth(size_t bytes, int threads, double seconds,
			   struct duet_bw_ceiling *out, struct duet_err *err)
{
	struct duet_bw_probe *p;
	if (duet_bw_probe_create(&p, bytes, threads, err))
		return -1;
	int rc = duet_bw_probe_sample(p, seconds, out, err);
	duet_bw_probe_destroy(p);
	return rc;
}

/* Rounds of a peak loop per run: 2.4 M instructions, about a third of a
 * millisecond at two a cycle, short against a time slice. */
#define PEAK_ROUNDS 200000L

struct peak_arg {
	enum duet_peak_op op;
	const struct duet_kernels *k;
	double ops[DUET_MAX_THREADS];
	float sink[DUET_MAX_THREADS];
};

static void peak_part(void *arg, int ith, int nth)
{
	(void)nth;
	struct peak_arg *a = arg;
	a->ops[ith] = a->k->peak(a->op, PEAK_ROUNDS, &a->sink[ith]);
}

const char *duet_peak_op_name(enum duet_peak_op op)
{
	return op == DUET_PEAK_FMA ? "FMA" : op == DUET_PEAK_DOT_I8 ? "int8 dot" : "bf16 dot";
}

int duet_measure_peak(enum duet_peak_op op, int threads, double seconds,
		      struct duet_peak_ceiling *out, struct duet_err *err)
{
	if (!(seconds >= 0) || threads < 1 || threads > DUET_MAX_THREADS)
		return duet_errf(err, "compute ceiling: %d threads for %g seconds", threads,
				 seconds);
	struct duet_threadpool *tp;
	if (duet_threadpool_create(&tp, threads, NULL, 0, err))
		return -1;
	struct peak_arg a = {.op = op, .k = duet_kernels()};
	double best = 0, t_end = duet_now_s() + seconds;
	for (int r = 0; r < MIN_RUNS + 1 || duet_now_s() < t_end; r++) {
		double t0 = duet_now_s();
		duet_threadpool_run(tp, peak_part, &a);
		double t = duet_now_s() - t0, ops = 0;
		for (int i = 0; i < threads; i++)
			ops += a.ops[i];
		if (r > 0 && t > 0 && ops / t > best) /* the first run wakes the threads */
			best = ops / t;
	}
	duet_threadpool_destroy(tp);
	out->op = op;
	out->threads = threads;
	out->gops = best * 1e-9;
	return 0;
}
