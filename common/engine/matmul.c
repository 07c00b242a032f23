#include "engine/matmul.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* Output columns of y each kernel call fills when accumulating. */
#define ACC_CHUNK 64
/* Fewer activation rows than this are quantized on the calling thread:
 * waking the pool costs more than the work. */
#define QUANT_PARALLEL_ROWS 8

int duet_matmul_init(struct duet_matmul *mm, struct duet_threadpool *tp,
		     const struct duet_kernels *k, enum duet_qdot qdot, int max_rows,
		     int max_cols, struct duet_err *err)
{
	memset(mm, 0, sizeof *mm);
	mm->tp = tp;
	mm->k = k;
	mm->qdot = qdot;
	mm->gemv_max_rows = DUET_GEMV_MAX_ROWS;
	mm->max_cols = max_cols;
	mm->max_rows = max_rows;
	int n = duet_threadpool_threads(tp);
	mm->scratch = calloc((size_t)n, sizeof *mm->scratch);
	if (!mm->scratch)
		return duet_errf(err, "matmul: out of memory");
	/* A conversion tile for sgemm, or partial sums when accumulating. */
	size_t floats = (size_t)DUET_SGEMM_TILE_ROWS * (size_t)max_cols;
	if (floats < (size_t)max_rows * ACC_CHUNK)
		floats = (size_t)max_rows * ACC_CHUNK;
	for (int i = 0; i < n; i++) {
		mm->scratch[i] = aligned_alloc(64, sizeof(float) * floats);
		if (!mm->scratch[i]) {
			duet_matmul_free(mm);
			return duet_errf(err, "matmul: out of memory for conversion tiles");
		}
	}
	mm->panel = aligned_alloc(64, sizeof(float) * duet_panel_f32_floats(max_cols, max_rows));
	mm->qa = aligned_alloc(64, sizeof *mm->qa * duet_panel_q8_pairs(max_cols, max_rows));
	mm->bf = aligned_alloc(64, sizeof *mm->bf * duet_panel_bf16_chunks(max_cols, max_rows));
	mm->qk = aligned_alloc(64, sizeof *mm->qk * duet_panel_q8k_blocks(max_cols, max_rows));
	if (!mm->panel || !mm->qa || !mm->bf || !mm->qk) {
		duet_matmul_free(mm);
		return duet_errf(err, "matmul: out of memory for %d quantized activation rows",
				 max_rows);
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
	free(mm->panel);
	free(mm->qa);
	free(mm->bf);
	free(mm->qk);
	mm->qk = NULL;
	mm->panel = NULL;
	mm->qa = NULL;
	mm->bf = NULL;
}

static enum duet_act act_of(const struct duet_matmul *mm, const struct duet_matmul_job *j)
{
	return duet_kernels_act(mm->k, j->w->type, mm->qdot);
}

/* The kernels, on rows [n0, n1) of the job's weights; tmp (room for T x
 * ACC_CHUNK floats) holds partial results when accumulating. */
static void run_kernel(const struct duet_matmul *mm, const struct duet_matmul_job *j,
		       long n0, long n1, float *tmp)
{
	const struct duet_tensor *w = j->w;
	enum duet_act act = act_of(mm, j);
	duet_matmul_fn fn = duet_kernels_matmul(mm->k, w->type, act);
	int K = (int)w->cols, N = (int)w->rows;
	const void *x = act == DUET_ACT_Q8	  ? (const void *)mm->qa
			: act == DUET_ACT_Q8K  ? (const void *)mm->qk
			: act == DUET_ACT_BF16 ? (const void *)mm->bf
					       : (const void *)mm->panel;
	if (!j->accumulate) {
		fn(w->data, w->row_bytes, K, x, j->T, j->y, N, (int)n0, (int)n1);
		return;
	}
	for (long n = n0; n < n1; n += ACC_CHUNK) {
		long nc = n1 - n < ACC_CHUNK ? n1 - n : ACC_CHUNK;
		/* The kernel writes column c of row b at tmp[b*ACC_CHUNK + c - n]. */
		fn((const char *)w->data + (size_t)n * w->row_bytes, w->row_bytes, K, x, j->T, tmp,
		   ACC_CHUNK, 0, (int)nc);
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
	/* the activations the kernels take, prepared before the region (a
	 * layer's matrices may mix types, so both forms may be needed) */
	const float *x;
	int T, K;
	int f32, q8, q8k, bf16;
};

static int uses_kernels(const struct duet_matmul *mm, const struct duet_matmul_job *j)
{
	enum duet_act act = act_of(mm, j);
	return j->T <= mm->gemv_max_rows || act == DUET_ACT_Q8 || act == DUET_ACT_Q8K;
}

static void run_part(void *arg, int ith, int nth)
{
	const struct run_args *a = arg;
	for (int i = 0; i < a->n_jobs; i++) {
		const struct duet_matmul_job *j = &a->jobs[i];
		int kernel = uses_kernels(a->mm, j);
		long n0, n1;
		duet_split(j->w->rows, ith, nth, kernel ? 16 : 64, &n0, &n1);
		if (n0 >= n1)
			continue;
		if (kernel)
			run_kernel(a->mm, j, n0, n1, a->mm->scratch[ith]);
		else
			run_sgemm(a->mm, j, n0, n1, a->mm->scratch[ith]);
	}
}

static void prepare_rows(const struct run_args *a, long t0, long t1)
{
	const struct duet_matmul *mm = a->mm;
	for (long t = t0; t < t1; t++) {
		if (a->q8)
			mm->k->quant_q8a(a->x + (size_t)t * a->K, a->K, mm->qa, a->T, (int)t);
		if (a->q8k)
			mm->k->quant_q8k(a->x + (size_t)t * a->K, a->K, mm->qk, a->T, (int)t);
	}
}

static void prepare_part(void *arg, int ith, int nth)
{
	const struct run_args *a = arg;
	long t0, t1;
	duet_split(a->T, ith, nth, 1, &t0, &t1);
	prepare_rows(a, t0, t1);
}

void duet_matmul_run(struct duet_matmul *mm, const struct duet_matmul_job *jobs,
		     int n_jobs)
{
	struct run_args a = {mm, jobs, n_jobs, NULL, 0, 0, 0, 0, 0, 0};
	for (int i = 0; i < n_jobs; i++)
		if (uses_kernels(mm, &jobs[i])) {
			a.x = jobs[i].x;
			a.T = jobs[i].T;
			a.K = (int)jobs[i].w->cols;
			switch (act_of(mm, &jobs[i])) {
			case DUET_ACT_Q8: a.q8 = 1; break;
			case DUET_ACT_Q8K: a.q8k = 1; break;
			case DUET_ACT_BF16: a.bf16 = 1; break;
			case DUET_ACT_F32: a.f32 = 1; break;
			}
		}
	if (a.f32)
		duet_panel_pack_f32(a.x, a.K, a.K, a.T, mm->panel);
	if (a.bf16)
		mm->k->pack_bf16(a.x, a.K, a.K, a.T, mm->bf);
	if ((a.q8 || a.q8k) && a.T < QUANT_PARALLEL_ROWS)
		prepare_rows(&a, 0, a.T);
	else if (a.q8 || a.q8k)
		duet_threadpool_run(mm->tp, prepare_part, &a);
	duet_threadpool_run(mm->tp, run_part, &a);
}
