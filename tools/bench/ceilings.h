/* The machine's own ceilings, measured in the run that reports against
 * them: sgemm throughput (what prefill can reach) and memory read
 * bandwidth (what decode can reach). Benchmarks print their figures as
 * fractions of these rather than as bare numbers that mean nothing on
 * another machine. */
#ifndef DUET_CEILINGS_H
#define DUET_CEILINGS_H

#include <stddef.h>

#include "base/err.h"
#include "engine/kern/kernels.h"

struct duet_sgemm_ceiling {
	int n;		/* square size used */
	int threads;
	double gflops;	/* best run */
};

struct duet_bw_ceiling {
	size_t bytes;	/* buffer streamed, far larger than the caches */
	int threads;
	double gbps;	/* best run, 1e9 bytes/s */
};

struct duet_peak_ceiling {
	enum duet_peak_op op;
	int threads;
	double gops;	/* best run, 1e9 arithmetic operations/s (a multiply-add is two) */
};

/* n x n x n sgemm with OpenBLAS on `threads` threads, repeated for about
 * `seconds` (at least 3 runs); the best run counts. Leaves OpenBLAS
 * single-threaded afterwards, as the engine wants it. */
int duet_measure_sgemm(int n, int threads, double seconds,
		       struct duet_sgemm_ceiling *out, struct duet_err *err);

/* Streams a buffer of `bytes` with the vector kernels on `threads`
 * threads (each its own slice), repeated for about `seconds`; best run. */
int duet_measure_bandwidth(size_t bytes, int threads, double seconds,
			   struct duet_bw_ceiling *out, struct duet_err *err);

/* The kernels' arithmetic instruction op (engine/kern/kernels.h) on
 * registers on `threads` threads, repeated for about `seconds`; best run.
 * gops is 0 where the kernels have no such instruction on this CPU. */
int duet_measure_peak(enum duet_peak_op op, int threads, double seconds,
		      struct duet_peak_ceiling *out, struct duet_err *err);
/* "FMA", "int8 dot", "bf16 dot" */
const char *duet_peak_op_name(enum duet_peak_op op);

/* The same measurement with its buffer and threads kept between samples,
 * so that short samples can bracket each run of a benchmark: a shared
 * machine's bandwidth moves within seconds (this project's VMs switch
 * between about 55 and 88 GB/s), and a run is only comparable with what
 * the machine could read in the same seconds. create allocates; sample
 * streams for about `seconds` (at least MIN_RUNS + 1 passes, the first not
 * counted) and fails only on bad arguments; destroy frees. */
struct duet_bw_probe;
int duet_bw_probe_create(struct duet_bw_probe **out, size_t bytes, int threads,
			 struct duet_err *err);
int duet_bw_probe_sample(struct duet_bw_probe *p, double seconds, struct duet_bw_ceiling *out,
			 struct duet_err *err);
void duet_bw_probe_destroy(struct duet_bw_probe *p);

#endif
