/* Decode attention alone (make bench-attention): one query row for each
 * of B sequences over POSITIONS cached positions each, every layer, as a
 * decode step meets it (the cache far larger than the caches, each
 * sequence's blocks scattered through the pool as a serving node's are).
 * Prints the KV cache's GB/s (what attention at depth is bound by) and ns
 * per cached position and layer, best of the passes and their mean.
 * Usage: bench_attention KV_TYPE POSITIONS [B [HEADS KV_HEADS HEAD_DIM LAYERS]]
 * (CONTIGUOUS=1: each sequence's blocks one run of memory, as in a fresh
 * pool; ROWS=N: a prefill chunk instead, N query rows of the first
 * sequence after its POSITIONS cached ones, as a node's chunked prefill
 * meets it; prints GFLOP/s of the products, causal pairs only)
 * (defaults: B 1, stories110m's 12 12 64 12; tinyllama is 32 4 64 22) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/cpu.h"
#include "base/threadpool.h"
#include "engine/attention.h"
#include "engine/forward.h"

#ifndef PASSES
#define PASSES 20
#endif
#define MAX_SEQS 64

static int arg(int argc, char **argv, int i, int dflt)
{
	return argc > i ? atoi(argv[i]) : dflt;
}

int main(int argc, char **argv)
{
	enum duet_kv_dtype t;
	if (argc < 3 || duet_kv_dtype_parse(argv[1], &t)) {
		fprintf(stderr, "usage: bench_attention KV_TYPE POSITIONS [B [HEADS KV_HEADS HEAD_DIM LAYERS]]\n");
		return 2;
	}
	int npos = atoi(argv[2]), B = arg(argc, argv, 3, 1);
	const char *rows_env = getenv("ROWS");
	int chunk = rows_env ? atoi(rows_env) : 0; /* prefill rows, 0: decode */
	struct duet_config cfg = {.n_heads = arg(argc, argv, 4, 12), .n_kv_heads = arg(argc, argv, 5, 12),
				  .head_dim = arg(argc, argv, 6, 64), .n_layers = arg(argc, argv, 7, 12)};
	if (npos < (chunk ? 0 : 1) || B < 1 || chunk < 0 || (chunk && B != 1) || B > MAX_SEQS || cfg.n_kv_heads < 1 || cfg.n_heads % cfg.n_kv_heads ||
	    cfg.head_dim < 1 || cfg.head_dim > 512 || cfg.n_layers < 1) {
		fprintf(stderr, "bench_attention: POSITIONS >= 1 (0 with ROWS), B 1-%d (1 with ROWS), HEADS a multiple of KV_HEADS, HEAD_DIM 1-512\n",
			MAX_SEQS);
		return 2;
	}
	struct duet_err err;
	struct duet_kv_geom g = {cfg.n_layers, cfg.n_kv_heads, cfg.head_dim, DUET_KV_BLOCK_TOKENS, t};
	int held = npos + chunk; /* positions each sequence holds */
	int per_seq = duet_kv_blocks_for(&g, held);
	/* twice the blocks needed, handed out in a shuffled order, so that a
	 * sequence's blocks are not one run of memory */
	int n_blocks = 2 * per_seq * B;
	struct duet_kv_pool *kv;
	struct duet_threadpool *tp;
	struct duet_attn a;
	duet_blas_single_thread();
	if (duet_kv_pool_create(&kv, &g, n_blocks, &err) || duet_kv_pool_prefault(kv, &err) ||
	    duet_threadpool_create(&tp, duet_cpu_count(), NULL, 0, &err) ||
	    duet_attn_init(&a, tp, duet_kernels(), kv, &cfg, &err) || duet_attn_reserve(&a, held, &err)) {
		fprintf(stderr, "bench_attention: %s\n", err.msg);
		return 1;
	}
	int kvd = duet_kv_dim(&g), qd = cfg.n_heads * cfg.head_dim;
	float *row = malloc(sizeof(float) * (size_t)kvd);
	int qrows = chunk ? chunk : B;
	float *q = malloc(sizeof(float) * (size_t)qrows * qd), *out = malloc(sizeof(float) * (size_t)qrows * qd);
	struct duet_kv_seq seqs[MAX_SEQS];
	const struct duet_kv_seq *sp[MAX_SEQS];
	int pos[MAX_SEQS], rows[MAX_SEQS];
	if (!row || !q || !out) {
		fprintf(stderr, "bench_attention: out of memory\n");
		return 1;
	}
	/* Take every block, then give back a random half: the sequences'
	 * reservations below take them in that order. */
	struct duet_kv_seq all;
	duet_kv_seq_init(&all);
	if (duet_kv_seq_reserve(kv, &all, n_blocks * g.block_tokens, &err)) {
		fprintf(stderr, "bench_attention: %s\n", err.msg);
		return 1;
	}
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	const char *contig = getenv("CONTIGUOUS");
	for (int i = contig && strcmp(contig, "1") == 0 ? 0 : n_blocks - 1; i > 0; i--) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		int j = (int)((rng >> 33) % (uint64_t)(i + 1)), x = all.blocks[i];
		all.blocks[i] = all.blocks[j];
		all.blocks[j] = x;
	}
	duet_kv_seq_release(kv, &all);
	for (int b = 0; b < B; b++) {
		duet_kv_seq_init(&seqs[b]);
		if (duet_kv_seq_reserve(kv, &seqs[b], held, &err)) {
			fprintf(stderr, "bench_attention: %s\n", err.msg);
			return 1;
		}
		seqs[b].n_tokens = held;
		sp[b] = &seqs[b];
		pos[b] = npos - 1;
		rows[b] = b;
		for (int l = 0; l < cfg.n_layers; l++)
			for (int p = 0; p < held; p++)
				for (int w = 0; w < 2; w++) {
					for (int i = 0; i < kvd; i++)
						row[i] = (float)((p * 31 + i * 7 + l + w) % 17) * 0.05f - 0.4f;
					duet_kv_row_put(t, cfg.n_kv_heads, cfg.head_dim, row,
							duet_kv_row(kv, l, w, &seqs[b], p));
				}
	}
	for (int i = 0; i < qrows * qd; i++)
		q[i] = (float)(i % 11) * 0.02f - 0.1f;
	double best = 1e30, sum = 0;
	for (int pass = 0; pass < PASSES; pass++) {
		double t0 = duet_now_s();
		for (int l = 0; l < cfg.n_layers; l++)
			if (chunk)
				duet_attn_rows(&a, l, sp[0], npos, chunk, q, out);
			else
				duet_attn_single(&a, l, sp, pos, rows, B, q, out);
		double dt = duet_now_s() - t0;
		if (pass > 0 && dt < best) /* the first pass warms up */
			best = dt;
		if (pass > 0)
			sum += dt;
	}
	if (chunk) {
		/* causal pairs: row i sees npos + i + 1 keys; QK and AV each
		 * one multiply-add per pair, head and dimension */
		double pairs = (double)chunk * npos + (double)chunk * (chunk + 1) / 2;
		double flops = 4.0 * pairs * cfg.head_dim * cfg.n_heads * cfg.n_layers;
		printf("prefill attention %s rows=%d after %d positions heads=%d/%d hd=%d layers=%d (%d threads): "
		       "%.1f GFLOP/s, %.3f ms a chunk (mean of the passes %.1f GFLOP/s)\n",
		       duet_kv_dtype_name(t), chunk, npos, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
		       cfg.n_layers, duet_threadpool_threads(tp), flops / best * 1e-9, best * 1e3,
		       flops / (sum / (PASSES - 1)) * 1e-9);
		goto done;
	}
	double bytes = 2.0 * (double)kv->row_bytes * npos * B * cfg.n_layers;
	double cells = (double)npos * B * cfg.n_layers;
	printf("attention %s B=%d positions=%d heads=%d/%d hd=%d layers=%d (%d threads): %.1f GB/s of KV, "
	       "%.2f ns a position and layer, %.3f ms a step (mean of the passes %.1f GB/s)\n",
	       duet_kv_dtype_name(t), B, npos, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.n_layers,
	       duet_threadpool_threads(tp), bytes / best * 1e-9, best / cells * 1e9, best * 1e3,
	       bytes / (sum / (PASSES - 1)) * 1e-9);
done:
	for (int b = 0; b < B; b++)
		duet_kv_seq_release(kv, &seqs[b]);
	duet_attn_free(&a);
	duet_threadpool_destroy(tp);
	duet_kv_pool_destroy(kv);
	free(row), free(q), free(out);
	return 0;
}
