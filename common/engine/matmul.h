/* y = x W^T for a weight matrix in any supported type, parallel over the
 * pool's threads (each owns a slice of W's rows).
 *
 * Few activation rows (decode): duet's own kernels read W in its stored
 * type once for all rows. Many rows (prefill): cblas_sgemm on each slice,
 * f16/q8_0 weights converted to f32 a tile at a time. */
#ifndef DUET_MATMUL_H
#define DUET_MATMUL_H

#include "base/err.h"
#include "base/threadpool.h"
#include "engine/kern/kernels.h"
#include "engine/model.h"

/* Up to this many activation rows use the native-type kernels; beyond it
 * sgemm wins (measured by `duet bench`, see BENCHMARKS.md). */
#define DUET_GEMV_MAX_ROWS 16
/* Weight rows converted per sgemm call on the prefill path of f16/q8_0. */
#define DUET_SGEMM_TILE_ROWS 128
#define DUET_MATMUL_MAX_JOBS 4

struct duet_matmul_job {
	const struct duet_tensor *w;
	const float *x; /* [T, w->cols] */
	int T;
	float *y;	/* [T, w->rows] */
	int accumulate; /* y += x W^T instead of y = x W^T */
};

struct duet_matmul {
	struct duet_threadpool *tp;
	const struct duet_kernels *k;
	int gemv_max_rows;
	float **scratch; /* per thread: DUET_SGEMM_TILE_ROWS x max_cols */
	int max_cols;
};

int duet_matmul_init(struct duet_matmul *mm, struct duet_threadpool *tp,
		     const struct duet_kernels *k, int max_cols, struct duet_err *err);
void duet_matmul_free(struct duet_matmul *mm);
/* Runs the jobs in one parallel region. */
void duet_matmul_run(struct duet_matmul *mm, const struct duet_matmul_job *jobs,
		     int n_jobs);

#endif
