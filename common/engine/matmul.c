#include "engine/matmul.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* Output columns of y each kernel call fills when accumulating. */
#define ACC_CHUNK 64

int duet_matmul_init(struct duet_matmul *mm, struct duet_threadpool *tp,
		     const struct duet_kernels *k, int max_cols, struct duet_err *err)
{
	memset(mm, 0, sizeof *mm);
	mm->tp = tp;
	mm->k = k;
	mm->gemv_max_rows = DUET_GEMV_MAX_ROWS;
	mm->max_cols = max_cols;
	int n = duet_threadpool_threads(tp);
	mm->scratch = calloc((size_t)n, sizeof *mm->scratch);
	if (!mm->scratch)
		return duet_errf(err, "matmul: out of memory");
	for (int i = 0; i < n; i++) {
		mm->scratch[i] = aligned_alloc(64, sizeof(float) * DUET_SGEMM_TILE_ROWS *
							   (size_t)max_cols);
		if (!mm->scratch[i]) {
			duet_matmul_free(mm);
			return duet_errf(err, "matmul: out of memory for conversion tiles");
		}
	}
	return 0;
}

void duet_matmul_free(struct duet_matmul *mm)
{
	if (mm->scratch && mm->tp)
		for (int i = 0; i < duet_threadpool_threads(mm->tp); i++)
			free(mm->scratch[i]);
	free(mm->scratch);
	mm->scratch = NULL;
}

static void run_kernel(const struct duet_matmul *mm, const struct duet_matmul_job *j,
		       long n0, long n1)
{
	const struct duet_tensor *w = j->w;
	duet_matmul_fn fn = duet_kernels_matmul(mm->k, w->type);
	int K = (int)w->cols, N = (int)w->rows;
	if (!j->accumulate) {
		fn(w->data, w->row_bytes, K, j->x, K, j->T, j->y, N, (int)n0, (int)n1);
		return;
	}
	float tmp[DUET_GEMV_MAX_ROWS * ACC_CHUNK];
	for (long n = n0; n < n1; n += ACC_CHUNK) {
		long nc = n1 - n < ACC_CHUNK ? n1 - n : ACC_CHUNK;
		/* The kernel writes column c of row b at tmp[b*ACC_CHUNK + c - n]. */
		fn((const char *)w->data + (size_t)n * w->row_bytes, w->row_bytes, K, j->x, K,
		   j->T, tmp, ACC_CHUNK, 0, (int)nc);
		for (int b = 0; b < j->T; b++) {
			float *yr = j->y + (size_t)b * N + n;
			for (long c = 0; c < nc; c++)
				yr[c] += tmp[b * ACC_CHUNK + c];
		}
	}
}

static void run_sgemm(const struct duet_matmul *mm, const struct duet_matmul_job *j,
		      long n0, long n1, float *tile)
{
	const struct duet_tensor *w = j->w;
	int K = (int)w->cols, N = (int)w->rows;
	float beta = j->accumulate ? 1.0f : 0.0f;
	if (w->type == DUET_F32) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, (int)(n1 - n0), K,
			    1.0f, j->x, K, (const float *)w->data + (size_t)n0 * K, K, beta,
			    j->y + n0, N);
		return;
	}
	for (long n = n0; n < n1; n += DUET_SGEMM_TILE_ROWS) {
		long nt = n1 - n < DUET_SGEMM_TILE_ROWS ? n1 - n : DUET_SGEMM_TILE_ROWS;
		for (long r = 0; r < nt; r++)
			duet_kernels_cvt(mm->k, w->type, duet_tensor_row(w, n + r),
					 tile + (size_t)r * K, K);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, (int)nt, K, 1.0f,
			    j->x, K, tile, K, beta, j->y + n, N);
	}
}

struct run_args {
	const struct duet_matmul *mm;
	const struct duet_matmul_job *jobs;
	int n_jobs;
};

static void run_part(void *arg, int ith, int nth)
{
	const struct run_args *a = arg;
	for (int i = 0; i < a->n_jobs; i++) {
		const struct duet_matmul_job *j = &a->jobs[i];
		int small = j->T <= a->mm->gemv_max_rows;
		long n0, n1;
		duet_split(j->w->rows, ith, nth, small ? 16 : 64, &n0, &n1);
		if (n0 >= n1)
			continue;
		if (small)
			run_kernel(a->mm, j, n0, n1);
		else
			run_sgemm(a->mm, j, n0, n1, a->mm->scratch[ith]);
	}
}

void duet_matmul_run(struct duet_matmul *mm, const struct duet_matmul_job *jobs,
		     int n_jobs)
{
	struct run_args a = {mm, jobs, n_jobs};
	duet_threadpool_run(mm->tp, run_part, &a);
}
