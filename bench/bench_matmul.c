/* The matmul kernels alone (make bench-matmul): y = x W^T over distinct
 * weight matrices of one shape in huge pages, one after another as a
 * decode step meets them (so none is in cache), for B activation rows, on
 * all threads. Prints weight GB/s (what batch-1 decode is bound by) and
 * GFLOP/s (what wide batches are bound by), best of 5 passes, and the
 * passes' mean GB/s (about 7% below the best here: a decode step's
 * products meet the mean, not the best).
 * The copies together take WORKING_SET bytes by default, a 1.1B model's
 * weights: on this project's VM one core read the same kernel 15-20%
 * faster over 200 MB of copies than over 400 MB or more (a plain read
 * loop 10% faster), so a smaller set overstated what a decode step gets
 * (BENCHMARKS.md, 2026-12-06 seventh).
 * Usage: bench_matmul TYPE B [N K [COPIES]]   (TYPE any weight type duet reads;
 * DUET_QDOT=exact for the exact q8_0 path, PACKED=1 for Q8_0 packed as a
 * decode node packs it) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/clock.h"
#include "base/cpu.h"
#include "base/threadpool.h"
#include "engine/dtype.h"
#include "engine/forward.h"
#include "engine/matmul.h"
#include "engine/repack.h"

#define HUGE_PAGE ((size_t)2 << 20)
#define MAX_COPIES 4096
#define WORKING_SET ((size_t)1 << 30)
#define PASSES 6

int main(int argc, char **argv)
{
	enum duet_dtype t;
	if (argc < 3 || duet_dtype_parse(argv[1], &t)) {
		fprintf(stderr, "usage: bench_matmul TYPE B [N K [COPIES]]\n");
		return 2;
	}
	int B = atoi(argv[2]), N = argc > 3 ? atoi(argv[3]) : 5632, K = argc > 4 ? atoi(argv[4]) : 2048;
	int copies = argc > 5 ? atoi(argv[5]) : 0;
	const char *q = getenv("DUET_QDOT");
	enum duet_qdot qdot = DUET_QDOT_INT8;
	if (B < 1 || B > 512 || N < 1 || K < 32 || K % duet_dtype_block(t) || copies < 0 || copies > MAX_COPIES ||
	    (q && duet_qdot_parse(q, &qdot))) {
		fprintf(stderr, "bench_matmul: B 1-512, K a multiple of the block size, COPIES 1-%d (0 or none: as many as make 1 GiB)\n",
			MAX_COPIES);
		return 2;
	}
	size_t rb = duet_row_bytes(t, K), bytes = rb * (size_t)N;
	if (copies == 0) {
		size_t c = (WORKING_SET + bytes - 1) / bytes;
		copies = c < 2 ? 2 : c > MAX_COPIES ? MAX_COPIES : (int)c;
	}
	size_t total = (bytes * (size_t)copies + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
	uint8_t *w = aligned_alloc(HUGE_PAGE, total);
	float *row = malloc(sizeof(float) * (size_t)K);
	float *x = malloc(sizeof(float) * (size_t)B * K), *y = malloc(sizeof(float) * (size_t)B * N);
	if (!w || !row || !x || !y) {
		fprintf(stderr, "bench_matmul: out of memory\n");
		return 1;
	}
	(void)madvise(w, total, MADV_HUGEPAGE);
	for (int k = 0; k < K; k++)
		row[k] = (float)(k % 7) * 0.01f - 0.03f;
	/* one copy quantized, the others copied from it (the bytes do not
	 * change the kernels' speed) */
	for (int n = 0; n < N; n++)
		duet_quant_row(t, row, w + (size_t)n * rb, K);
	for (int c = 1; c < copies; c++)
		memcpy(w + (size_t)c * bytes, w, bytes);
	for (size_t i = 0; i < (size_t)B * K; i++)
		x[i] = (float)(i % 13) * 0.01f;
	struct duet_tensor *ts = malloc(sizeof *ts * (size_t)copies);
	if (!ts) {
		fprintf(stderr, "bench_matmul: out of memory\n");
		return 1;
	}
	struct duet_err err;
	/* PACKED=1: Q8_0 in 16-row groups, as a decode node's weights are
	 * (engine/repack.h); else in file layout, packed on the fly. */
	const char *packed = getenv("PACKED");
	for (int c = 0; c < copies; c++) {
		ts[c] = (struct duet_tensor){t, w + (size_t)c * bytes, N, K, rb, DUET_LAYOUT_ROWS};
		if (packed && strcmp(packed, "1") == 0 && duet_r16_pack_tensor(&ts[c], &err)) {
			fprintf(stderr, "bench_matmul: %s\n", err.msg);
			return 1;
		}
	}
	struct duet_threadpool *tp;
	struct duet_matmul mm;
	duet_blas_single_thread();
	if (duet_threadpool_create(&tp, duet_cpu_count(), NULL, 0, &err) ||
	    duet_matmul_init(&mm, tp, duet_kernels(), qdot, B, K > N ? K : N, &err)) {
		fprintf(stderr, "bench_matmul: %s\n", err.msg);
		return 1;
	}
	double best = 1e30, sum = 0;
	for (int pass = 0; pass < PASSES; pass++) {
		double t0 = duet_now_s();
		for (int c = 0; c < copies; c++) {
			struct duet_matmul_job j = {&ts[c], x, B, y, 0};
			duet_matmul_run(&mm, &j, 1);
		}
		double dt = duet_now_s() - t0;
		if (pass > 0 && dt < best) /* the first pass warms up */
			best = dt;
		if (pass > 0)
			sum += dt;
	}
	printf("%s%s B=%d N=%d K=%d (%s, %d threads): %.1f GB/s of weights, %.1f GFLOP/s, %.3f ms a matrix (mean of the passes %.1f GB/s; %d copies, %.0f MB)\n",
	       duet_dtype_name(t), ts[0].layout == DUET_LAYOUT_R16 ? " packed" : "", B, N, K, duet_qdot_name(qdot), duet_threadpool_threads(tp),
	       (double)bytes * copies / best * 1e-9, 2.0 * B * N * (double)K * copies / best * 1e-9,
	       best / copies * 1e3, (double)bytes * copies / (sum / (PASSES - 1)) * 1e-9, copies,
	       (double)bytes * copies * 1e-6);
	duet_matmul_free(&mm);
	duet_threadpool_destroy(tp);
	free(w), free(row), free(x), free(y), free(ts);
	return 0;
}
