/* y = x W^T for a weight matrix in any supported type, parallel over the
 * pool's threads (each owns a slice of W's rows).
 *
 * Few activation rows (decode): duet's own kernels read W in its stored
 * type once for all rows. Many rows (prefill): cblas_sgemm on each slice,
 * weights of other types converted to f32 a tile at a time, except where
 * the kernels take every width: quantized weights in int8 mode
 * (DUET_QDOT_INT8), with the activations quantized per 32-block (per 256
 * for the K-quants) first, and F16 and F32 weights where the kernels pack
 * them into 16-row groups; a row's result then does not depend on how many
 * rows share the call (prefill, decode and a failover's resumed tokens
 * agree bit for bit).
 * bf16 weights on CPUs with a bf16 dot product meet the activations
 * rounded to bf16 in int8 mode, as llama.cpp's do, and take the kernels at
 * every width too; in exact mode, the activations split into two bf16
 * halves (kern/kernels.h). */
#ifndef DUET_MATMUL_H
#define DUET_MATMUL_H

#include "base/cpu.h"
#include "base/err.h"
#include "base/threadpool.h"
#include "engine/kern/kernels.h"
#include "engine/model.h"
#include "engine/pftune.h"

/* Up to this many activation rows use the native-type kernels; beyond it
 * sgemm wins for the row kernels (measured by `duet bench`, see
 * BENCHMARKS.md). */
#define DUET_GEMV_MAX_ROWS 16
/* Weight rows converted per sgemm call on the prefill path of types that
 * are not f32. */
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
	enum duet_qdot qdot;
	int gemv_max_rows;
	float **scratch; /* per thread: conversion tile or partial sums */
	/* per thread: 16 rows of the widest matrix (Q8_0 or Q4_0), packed or
	 * unpacked on the fly (engine/repack.h) */
	uint8_t **rows16;
	int max_cols, max_rows;
	/* The activations of the current call as the kernels read them: an
	 * f32 panel, or a q8 panel (kernels.h). */
	float *panel;
	struct duet_q8a_pair *qa;
	struct duet_q8k_block *qk;
	struct duet_bf16x2 *bf;
	/* Each thread's share of a kernel product's rows: its region follows
	 * the threads' measured speeds (see duet_matmul_run). */
	float share[DUET_MAX_THREADS];
	/* The fewest rows (a multiple of 16) a thread claims of a kernel
	 * product at a time; tests make it small to move rows about. */
	int claim_rows;
	/* the prefetch distance the kernel products take */
	struct duet_pftune pf;
};

/* max_rows: the most activation rows a job will have; max_cols: the widest
 * weight matrix (its columns). */
int duet_matmul_init(struct duet_matmul *mm, struct duet_threadpool *tp,
		     const struct duet_kernels *k, enum duet_qdot qdot, int max_rows,
		     int max_cols, struct duet_err *err);
void duet_matmul_free(struct duet_matmul *mm);
/* Runs the jobs in one parallel region. Jobs that take the kernels must
 * share x and its width (as the forward pass's do). */
void duet_matmul_run(struct duet_matmul *mm, const struct duet_matmul_job *jobs,
		     int n_jobs);

#endif
