#include "engine/matmul.h"
#include "base/clock.h"
#include "engine/repack.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Output columns of y each kernel call fills when accumulating. */
#define ACC_CHUNK 64
/* Fewer activation rows than this are quantized on the calling thread:
 * waking the pool costs more than the work. */
#define QUANT_PARALLEL_ROWS 8
/* The 16-row kernels over batches wider than one pass (DUET_R16_SEQS
 * rows): K in slices of this many values (whole units of every type),
 * so a group's slice (16 x 2048 values, 34 KiB of Q8_0) stays in L1/L2
 * while R16_BATCH activation rows pass it, and their slice stays in L2. */
#define R16_SLICE 2048
#define R16_BATCH 64
/* Values of a narrow batch's group packed at a time (in L1), and groups
 * at a time for a several-group kernel: packed on the fly, and in a wide
 * batch (two, so that their slice stays in cache while R16_BATCH
 * activation rows pass it). */
#define R16_PACK_SLICE 256
#define R16_FLY_GROUPS 4
#define R16_WIDE_GROUPS 2
/* Runs shorter than this (on any thread) leave the shares as they are:
 * the clock's cost and a wake-up's jitter would dominate what they measure. */
#define BALANCE_MIN_S 20e-6
/* Rows a claim takes at least (four 16-row groups: one sequence's
 * four-stream kernel), and the part of a region's rows left that its
 * owner and another thread claim at a time (take()). */
#define CLAIM_ROWS 64
#define CLAIM_OWN_PARTS 2
#define CLAIM_PARTS 4
/* What regions and claims are cut in multiples of: a sequence's
 * four-stream kernel takes four groups at a time, and one to three groups
 * left at the end of a claim went through the one-stream kernel (6% of a
 * decode step's time when claims were cut by groups). */
#define CLAIM_ALIGN (DUET_R16_ROWS * DUET_R16_STREAMS)

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
	duet_shares_even(mm->share, n);
	mm->claim_rows = CLAIM_ROWS;
	mm->scratch = calloc((size_t)n, sizeof *mm->scratch);
	mm->rows16 = calloc((size_t)n, sizeof *mm->rows16);
	if (!mm->scratch || !mm->rows16) {
		duet_matmul_free(mm);
		return duet_errf(err, "matmul: out of memory");
	}
	/* 16 rows of the widest row layout with a 16-row form, F32's (and a
	 * block more): room for the 16-row form of any slice, its rows' bytes
	 * (duet_r16_slice_bytes), and for 16 rows unpacked; or the groups
	 * packed on the fly at a time, narrow or wide */
	size_t rows16 = (size_t)(max_cols / 32 + 1) * DUET_R16_ROWS * duet_row_bytes(DUET_F32, 32);
	size_t fly = (size_t)R16_FLY_GROUPS * duet_r16_slice_bytes(DUET_F32, R16_PACK_SLICE / 32);
	size_t wide = (size_t)R16_WIDE_GROUPS * duet_r16_slice_bytes(DUET_F32, R16_SLICE / 32);
	rows16 = rows16 > fly ? rows16 : fly;
	rows16 = rows16 > wide ? rows16 : wide;
	/* A conversion tile for sgemm, or partial sums when accumulating. */
	size_t floats = (size_t)DUET_SGEMM_TILE_ROWS * (size_t)max_cols;
	if (floats < (size_t)max_rows * ACC_CHUNK)
		floats = (size_t)max_rows * ACC_CHUNK;
	for (int i = 0; i < n; i++) {
		mm->scratch[i] = aligned_alloc(64, sizeof(float) * floats);
		mm->rows16[i] = malloc(rows16);
		if (!mm->scratch[i] || !mm->rows16[i]) {
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
	for (int i = 0; mm->tp && i < duet_threadpool_threads(mm->tp); i++) {
		if (mm->scratch)
			free(mm->scratch[i]);
		if (mm->rows16)
			free(mm->rows16[i]);
	}
	free(mm->scratch);
	free(mm->rows16);
	mm->scratch = NULL;
	mm->rows16 = NULL;
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

/* Rows [n, n + nc) of the job, row n stored at wrows in row layout, through
 * kernel fn; tmp (room for T x ACC_CHUNK floats) holds partial results
 * when accumulating. */
static void kernel_rows(const struct duet_matmul_job *j, duet_matmul_fn fn, const void *x,
			const uint8_t *wrows, long n, long nc, float *tmp, int far)
{
	const struct duet_tensor *w = j->w;
	int K = (int)w->cols, N = (int)w->rows;
	if (!j->accumulate) {
		fn(wrows, w->row_bytes, K, x, j->T, j->y + n, N, 0, (int)nc, far);
		return;
	}
	for (long c0 = 0; c0 < nc; c0 += ACC_CHUNK) {
		long cn = nc - c0 < ACC_CHUNK ? nc - c0 : ACC_CHUNK;
		/* The kernel writes column c of row b at tmp[b*ACC_CHUNK + c - c0]. */
		fn(wrows + (size_t)c0 * w->row_bytes, w->row_bytes, K, x, j->T, tmp, ACC_CHUNK, 0,
		   (int)cn, far);
		for (int b = 0; b < j->T; b++) {
			float *yr = j->y + (size_t)b * N + n + c0;
			for (long c = 0; c < cn; c++)
				yr[c] += tmp[b * ACC_CHUNK + c];
		}
	}
}

/* Row r of w in row layout at out (rb bytes). */
static void row_into(const struct duet_tensor *w, int64_t r, uint8_t *out)
{
	const void *src = duet_tensor_row_any(w, r, out);
	if (src != out)
		memcpy(out, src, w->row_bytes);
}

/* The kernels, on rows [n0, n1) of the job's weights; rows16 holds 16 rows
 * of a packed tensor unpacked for kernels that read rows (the exact mode). */
static void run_kernel(const struct duet_matmul *mm, const struct duet_matmul_job *j,
		       long n0, long n1, float *tmp, uint8_t *rows16, int far)
{
	const struct duet_tensor *w = j->w;
	enum duet_act act = act_of(mm, j);
	duet_matmul_fn fn = duet_kernels_matmul(mm->k, w->type, act);
	const void *x = act == DUET_ACT_Q8	  ? (const void *)mm->qa
			: act == DUET_ACT_Q8K  ? (const void *)mm->qk
			: act == DUET_ACT_BF16 || act == DUET_ACT_BF16_HI ? (const void *)mm->bf
					       : (const void *)mm->panel;
	if (w->layout == DUET_LAYOUT_ROWS) {
		kernel_rows(j, fn, x, duet_tensor_row(w, n0), n0, n1 - n0, tmp, far);
		return;
	}
	for (long n = n0; n < n1; n += DUET_R16_ROWS) {
		long nc = n1 - n < DUET_R16_ROWS ? n1 - n : DUET_R16_ROWS;
		for (long r = 0; r < nc; r++)
			row_into(w, n + r, rows16 + (size_t)r * w->row_bytes);
		kernel_rows(j, fn, x, rows16, n, nc, tmp, far);
	}
}

/* The activations of blocks [k0, ...) of row b as the 16-row kernels take
 * them: q8 pairs (Q8_0, Q4_0; k0 even), q8k blocks (the K-quants), the f32
 * panel (F16, F32) or the bf16 panel (BF16: a chunk a block). */
static const void *r16_act(const struct duet_matmul *mm, enum duet_dtype t, int k0, int B, int b)
{
	if (duet_r16_float(t)) /* the f32 panel: two chunks a block */
		return mm->panel + ((size_t)2 * k0 * B + b) * DUET_PANEL_CHUNK;
	if (duet_r16_bf16(t))
		return mm->bf + (size_t)k0 * B + b;
	if (duet_r16_values(t) == DUET_QK)
		return mm->qk + (size_t)k0 * B + b;
	return mm->qa + (size_t)(k0 / 2) * B + b;
}

/* One sequence against a packed tensor (decode): the thread's full packed
 * groups in DUET_R16_STREAMS quarters, the i-th group of each through the
 * table's four-group kernel, so that the core reads four streams instead of
 * one (the same results bit for bit). Returns the first row left to the
 * rest of run_r16. */
static long run_r16_streams(const struct duet_matmul *mm, const struct duet_matmul_job *j,
			    long n0, long n1, int far)
{
	const struct duet_tensor *w = j->w;
	const enum duet_dtype t = w->type;
	duet_r16x4_fn fn = mm->k->matmul_r16x4[t];
	long packed = w->layout == DUET_LAYOUT_R16 ? (long)w->rows / DUET_R16_ROWS : 0;
	long g0 = n0 / DUET_R16_ROWS, g1 = n1 / DUET_R16_ROWS < packed ? n1 / DUET_R16_ROWS : packed;
	if (!fn || j->T != 1 || n0 % DUET_R16_ROWS || g1 - g0 < DUET_R16_STREAMS)
		return n0;
	int blocks = (int)(w->cols / duet_r16_values(t));
	long q = (g1 - g0) / DUET_R16_STREAMS;
	for (long i = 0; i < q; i++) {
		const uint8_t *gs[DUET_R16_STREAMS];
		float *ys[DUET_R16_STREAMS];
		for (int s = 0; s < DUET_R16_STREAMS; s++) {
			long g = g0 + s * q + i;
			gs[s] = duet_r16_group(w, g);
			ys[s] = j->y + g * DUET_R16_ROWS;
		}
		fn(gs, blocks, r16_act(mm, t, 0, 1, 0), ys, j->accumulate, far);
	}
	return (g0 + DUET_R16_STREAMS * q) * DUET_R16_ROWS;
}

/* ng full groups of rows from row n (all packed or none) through the
 * several-group kernel: packed ones as stored, the slice of blocks [i0,
 * i1) at once; others a step of blocks at a time, packed group by group
 * into rows16 (in L1 together), so that the kernel's tiles take several
 * groups as they do packed weights (one group's single chain of FMAs a
 * sequence waits on its latency: F16 one sequence on the fly 13 GFLOP/s a
 * core so, 16 with four groups, 35 packed; the rest is the packing's
 * reads, BENCHMARKS.md, 2026-12-07 second). */
static void run_r16n(const struct duet_matmul *mm, const struct duet_matmul_job *j,
		     duet_r16n_fn rn, long n, int ng, int own, int i0, int i1, int step_fly, int bc,
		     int be, uint8_t *rows16, int far)
{
	const struct duet_tensor *w = j->w;
	const enum duet_dtype t = w->type;
	const int N = (int)w->rows, B = j->T, step = own ? i1 - i0 : step_fly;
	for (int k0 = i0; k0 < i1; k0 += step) {
		int nblk = i1 - k0 < step ? i1 - k0 : step;
		const uint8_t *q = rows16;
		size_t gs = duet_r16_slice_bytes(t, nblk);
		if (own) {
			q = duet_r16_group(w, n / DUET_R16_ROWS) + duet_r16_unit_at(t, k0);
			gs = duet_r16_group_bytes(w);
		} else {
			for (int g = 0; g < ng; g++)
				duet_kernels_pack_r16(mm->k, t,
						      duet_tensor_row(w, n + (long)g * DUET_R16_ROWS),
						      w->row_bytes, DUET_R16_ROWS, k0, nblk, rows16 + gs * g);
		}
		for (int b = bc; b < be; b += DUET_R16_SEQS)
			rn(q, gs, ng, nblk, r16_act(mm, t, k0, B, b), B,
			   be - b < DUET_R16_SEQS ? be - b : DUET_R16_SEQS, j->y + (size_t)b * N + n, N,
			   k0 > 0 || j->accumulate, far);
	}
}

/* Weights of a type with the 16-row form against int8 activations through
 * its kernel: packed groups as stored, other rows packed on the fly into
 * rows16 (the same bytes, and slices of K continue the same chain: the
 * same results). A narrow batch takes each group whole, packing it
 * R16_PACK_SLICE values at a time (in L1 when the kernel reads it); a
 * wide one takes K in slices over every group, so the activations' slice
 * stays in cache. */
static void run_r16(const struct duet_matmul *mm, const struct duet_matmul_job *j, long n0,
		    long n1, uint8_t *rows16, int far)
{
	n0 = run_r16_streams(mm, j, n0, n1, far);
	const struct duet_tensor *w = j->w;
	const enum duet_dtype t = w->type;
	duet_r16_fn fn = duet_kernels_r16(mm->k, t);
	duet_r16n_fn rn = mm->k->matmul_r16n[t];
	const int V = duet_r16_values(t);
	int N = (int)w->rows, blocks = (int)(w->cols / V), B = j->T;
	long packed = w->layout == DUET_LAYOUT_R16 ? N / DUET_R16_ROWS : 0;
	int wide = B > DUET_R16_SEQS;
	/* (packing starts at whole units: Q6_K's are two 256-value blocks) */
	const int unit = duet_r16_unit(t), fly = (R16_PACK_SLICE / V + unit - 1) / unit * unit;
	int slice = wide ? R16_SLICE / V : blocks, step_fly = wide ? slice : fly;
	for (int i0 = 0; i0 < blocks; i0 += slice) {
		int i1 = blocks - i0 < slice ? blocks : i0 + slice;
		for (int bc = 0; bc < B; bc += R16_BATCH) {
			int be = B - bc < R16_BATCH ? B : bc + R16_BATCH;
			for (long n = n0; n < n1; n += DUET_R16_ROWS) {
				int nr = n1 - n < DUET_R16_ROWS ? (int)(n1 - n) : DUET_R16_ROWS;
				int own = n / DUET_R16_ROWS < packed;
				/* full groups from here: packed ones at once, others
				 * R16_FLY_GROUPS at a time */
				long ng = ((own && n1 > packed * DUET_R16_ROWS ? packed * DUET_R16_ROWS : n1) -
					   n) / DUET_R16_ROWS;
				if (!own && ng > R16_FLY_GROUPS)
					ng = R16_FLY_GROUPS;
				if (wide && ng > R16_WIDE_GROUPS)
					ng = R16_WIDE_GROUPS;
				if (rn && ng >= 2) {
					run_r16n(mm, j, rn, n, (int)ng, own, i0, i1, step_fly, bc, be,
						 rows16, far);
					n += (ng - 1) * DUET_R16_ROWS;
					continue;
				}
				int step = own ? i1 - i0 : step_fly;
				for (int k0 = i0; k0 < i1; k0 += step) {
					int nblk = i1 - k0 < step ? i1 - k0 : step;
					const uint8_t *q = rows16;
					if (own) {
						q = duet_r16_group(w, n / DUET_R16_ROWS) +
						    duet_r16_unit_at(t, k0);
					} else {
						const uint8_t *rows = duet_tensor_row(w, n);
						duet_kernels_pack_r16(mm->k, t, rows, w->row_bytes, nr, k0,
								      nblk, rows16);
					}
					for (int b = bc; b < be; b += DUET_R16_SEQS)
						fn(q, nblk, r16_act(mm, t, k0, B, b), B,
						   be - b < DUET_R16_SEQS ? be - b : DUET_R16_SEQS,
						   j->y + (size_t)b * N + n, N, nr, k0 > 0 || j->accumulate,
						   far);
				}
			}
		}
	}
}

/* sgemm on rows [n0, n1): F32 rows as they lie, others converted to f32
 * a tile of rows at a time. */
static void run_sgemm(const struct duet_matmul *mm, const struct duet_matmul_job *j,
		      long n0, long n1, float *tile, uint8_t *row)
{
	const struct duet_tensor *w = j->w;
	int K = (int)w->cols, N = (int)w->rows;
	float beta = j->accumulate ? 1.0f : 0.0f;
	if (w->type == DUET_F32 && w->layout == DUET_LAYOUT_ROWS) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, (int)(n1 - n0), K,
			    1.0f, j->x, K, (const float *)w->data + (size_t)n0 * K, K, beta,
			    j->y + n0, N);
		return;
	}
	for (long n = n0; n < n1; n += DUET_SGEMM_TILE_ROWS) {
		long nt = n1 - n < DUET_SGEMM_TILE_ROWS ? n1 - n : DUET_SGEMM_TILE_ROWS;
		for (long r = 0; r < nt; r++)
			duet_kernels_cvt(mm->k, w->type, duet_tensor_row_any(w, n + r, row),
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
	int claims; /* every job takes the kernels: rows handed out by claim() */
	int far;    /* the kernels' prefetch distance (engine/pftune.h) */
	/* Each thread's region of the jobs' rows end to end (each job padded
	 * to whole groups): its unclaimed positions [front, back), as front |
	 * back << 32 (a layer's products hold far fewer than 2^32 rows). */
	_Atomic uint64_t span[DUET_MAX_THREADS];
	long total; /* positions of all the regions */
	/* what each thread did: positions claimed, seconds in run_part */
	double done[DUET_MAX_THREADS], part_s[DUET_MAX_THREADS];
};

/* The types with a 16-row form take its kernel when their weights are
 * packed, and always with a table that packs them (so that a node's
 * weights, packed at load or mapped from the file, give the same results
 * bit for bit): the quantized types against int8 activations, F16 and F32
 * (whole blocks) against f32 ones, BF16 against bf16 ones (int8 mode), at
 * every width. Each row's result is
 * then one chain in K whatever the batch, so a prompt's rows, a decode
 * step's and a failover's resumed tokens are computed alike (sgemm's had
 * other bits than the decode kernels', which made near-tied greedy tokens
 * of a mixed step or a resume flip), and the group tiles ran prefill as
 * fast as sgemm or faster (BENCHMARKS.md, 2026-12-07 third). */
static int uses_r16(const struct duet_matmul *mm, const struct duet_matmul_job *j)
{
	const struct duet_tensor *w = j->w;
	enum duet_act act = act_of(mm, j);
	int packed = w->layout == DUET_LAYOUT_R16 || duet_kernels_packs(mm->k, w->type);
	if (duet_r16_float(w->type))
		return packed && duet_r16_fits(w->type, w->cols);
	if (duet_r16_bf16(w->type)) /* against bf16 activations only (int8 mode) */
		return act == DUET_ACT_BF16_HI && packed && duet_r16_fits(w->type, w->cols);
	return (act == DUET_ACT_Q8 || act == DUET_ACT_Q8K) && duet_r16_type(w->type) && packed;
}

/* Rounded activations (int8, bf16) take the kernels at every width, so
 * that prefill and decode round a row's activations alike, whatever the
 * chunk (int8: the same bits; bf16: the same products, which the wide
 * tiles sum per K slice, as for f32 activations); bf16's tile also ran at
 * twice sgemm's rate at 512 rows (BENCHMARKS.md, 2026-12-05 third). */
static int uses_kernels(const struct duet_matmul *mm, const struct duet_matmul_job *j)
{
	enum duet_act act = act_of(mm, j);
	return j->T <= mm->gemv_max_rows || act == DUET_ACT_Q8 || act == DUET_ACT_Q8K ||
	       act == DUET_ACT_BF16_HI || uses_r16(mm, j);
}

/* A job's rows rounded up to whole 16-row groups: the positions of the
 * jobs' rows end to end, where claims start and regions end. */
static long padded_rows(const struct duet_matmul_job *j)
{
	return ((long)j->w->rows + DUET_R16_ROWS - 1) / DUET_R16_ROWS * DUET_R16_ROWS;
}

/* The job holding position pos: its index in *ji, its first position
 * returned. */
static long job_at(const struct run_args *a, long pos, int *ji)
{
	long base = 0;
	int i = 0;
	while (pos >= base + padded_rows(&a->jobs[i]))
		base += padded_rows(&a->jobs[i++]);
	*ji = i;
	return base;
}

/* Thread ith's claim of region r's rows: from its front if the region is
 * its own (which it so reads as one stream, as the kernels' prefetching
 * expects), else from its back; half or a quarter of the rows left, at
 * least claim_rows, never across two jobs. Job *ji's rows [*n0, *n1)
 * (empty for a claim of padding); 0 when the region is done. */
static int take(struct run_args *a, int ith, int r, int *ji, long *n0, long *n1)
{
	const long least = a->mm->claim_rows;
	const int own = r == ith;
	uint64_t v = atomic_load_explicit(&a->span[r], memory_order_relaxed);
	for (;;) {
		long f = (long)(uint32_t)v, b = (long)(v >> 32), s, e, base;
		if (f >= b)
			return 0;
		long want = (b - f) / (own ? CLAIM_OWN_PARTS : CLAIM_PARTS);
		want = want < least ? least : (want + CLAIM_ALIGN - 1) / CLAIM_ALIGN * CLAIM_ALIGN;
		uint64_t nv;
		if (own) {
			s = f;
			base = job_at(a, s, ji);
			e = base + padded_rows(&a->jobs[*ji]);
			e = e < s + want ? e : s + want;
			e = e < b ? e : b;
			nv = (uint64_t)e | (uint64_t)b << 32;
		} else {
			e = b;
			base = job_at(a, e - 1, ji);
			s = e - want > base ? e - want : base;
			s = s > f ? s : f;
			nv = (uint64_t)f | (uint64_t)s << 32;
		}
		if (atomic_compare_exchange_weak_explicit(&a->span[r], &v, nv, memory_order_relaxed,
							  memory_order_relaxed)) {
			long rows = (long)a->jobs[*ji].w->rows;
			a->done[ith] += (double)(e - s);
			*n0 = s - base;
			*n1 = e - base < rows ? e - base : rows;
			return 1;
		}
	}
}

/* The next rows for thread ith: from its own region while it lasts, then
 * from the back of the others'. */
static int claim(struct run_args *a, int ith, int nth, int *ji, long *n0, long *n1)
{
	for (int k = 0; k < nth; k++)
		if (take(a, ith, (ith + k) % nth, ji, n0, n1))
			return 1;
	return 0;
}

static void run_rows(const struct run_args *a, const struct duet_matmul_job *j, int ith, long n0,
		     long n1)
{
	const struct duet_matmul *mm = a->mm;
	if (uses_r16(mm, j))
		run_r16(mm, j, n0, n1, mm->rows16[ith], a->far);
	else if (uses_kernels(mm, j))
		run_kernel(mm, j, n0, n1, mm->scratch[ith], mm->rows16[ith], a->far);
	else
		run_sgemm(mm, j, n0, n1, mm->scratch[ith], mm->rows16[ith]);
}

static void run_part(void *arg, int ith, int nth)
{
	struct run_args *a = arg;
	long n0, n1;
	if (a->claims) {
		double t0 = duet_now_s();
		int i;
		while (claim(a, ith, nth, &i, &n0, &n1))
			if (n0 < n1)
				run_rows(a, &a->jobs[i], ith, n0, n1);
		a->part_s[ith] = duet_now_s() - t0;
		return;
	}
	for (int i = 0; i < a->n_jobs; i++) {
		const struct duet_matmul_job *j = &a->jobs[i];
		duet_split(j->w->rows, ith, nth, uses_kernels(a->mm, j) ? 16 : 64, &n0, &n1);
		if (n0 < n1)
			run_rows(a, j, ith, n0, n1);
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

/* The threads of one machine do not run equally fast: two vCPUs of one
 * VM streamed memory 7-11% apart here, whichever thread ran on the slower
 * (BENCHMARKS.md, 2026-12-05 later), and apart by more from one product to
 * the next. Kernel products therefore give each thread a region of rows
 * by shares that follow the threads' measured speeds, which it claims
 * from the front in large pieces (one stream, as the kernels' prefetching
 * expects); a thread done with its region takes smaller claims from the
 * back of another's, so no thread waits long at the end of a product. A
 * row's result does not depend on which thread computes it or with which
 * neighbours (test_kernels checks it bit for bit), so neither the shares
 * nor the claims change the output; sgemm products keep the even split,
 * as OpenBLAS's blocking might depend on the range. */
void duet_matmul_run(struct duet_matmul *mm, const struct duet_matmul_job *jobs,
		     int n_jobs)
{
	struct run_args a = {.mm = mm, .jobs = jobs, .n_jobs = n_jobs, .claims = 1};
	int nth = duet_threadpool_threads(mm->tp);
	for (int i = 0; i < n_jobs; i++) {
		a.total += padded_rows(&jobs[i]);
		if (!uses_kernels(mm, &jobs[i])) {
			a.claims = 0;
			continue;
		}
		a.x = jobs[i].x;
		a.T = jobs[i].T;
		a.K = (int)jobs[i].w->cols;
		switch (act_of(mm, &jobs[i])) {
		case DUET_ACT_Q8: a.q8 = 1; break;
		case DUET_ACT_Q8K: a.q8k = 1; break;
		case DUET_ACT_BF16:
		case DUET_ACT_BF16_HI: a.bf16 = 1; break;
		case DUET_ACT_F32: a.f32 = 1; break;
		}
	}
	for (int r = 0; a.claims && r < nth; r++) {
		long lo, hi;
		duet_split_shares(a.total, r, nth, CLAIM_ALIGN, mm->share, &lo, &hi);
		atomic_init(&a.span[r], (uint64_t)lo | (uint64_t)hi << 32);
	}
	if (a.f32)
		duet_panel_pack_f32(a.x, a.K, a.K, a.T, mm->panel);
	if (a.bf16)
		mm->k->pack_bf16(a.x, a.K, a.K, a.T, mm->bf);
	if ((a.q8 || a.q8k) && a.T < QUANT_PARALLEL_ROWS)
		prepare_rows(&a, 0, a.T);
	else if (a.q8 || a.q8k)
		duet_threadpool_run(mm->tp, prepare_part, &a);
	a.far = duet_pftune_pick(&mm->pf);
	double t0 = duet_now_s();
	duet_threadpool_run(mm->tp, run_part, &a);
	/* (one sequence only: a wider product's bytes per second is its
	 * width's, and a window of mixed widths would compare the mix) */
	if (a.claims && a.T == 1) {
		size_t bytes = 0;
		for (int i = 0; i < n_jobs; i++)
			bytes += jobs[i].w->row_bytes * (size_t)jobs[i].w->rows;
		duet_pftune_report(&mm->pf, bytes, duet_now_s() - t0);
	}
	if (!a.claims || nth < 2)
		return;
	for (int i = 0; i < nth; i++) {
		if (a.part_s[i] < BALANCE_MIN_S)
			return;
		a.done[i] /= (double)a.total;
	}
	duet_shares_update(mm->share, a.done, a.part_s, nth);
}
