/* duet bench: prefill and decode speed of one model, as a llama-bench
 * style table, with the machine's sgemm and memory-bandwidth ceilings
 * measured in the same run and every figure given as a fraction of the
 * ceiling it is bound by. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/cpu.h"
#include "base/mapfile.h"
#include "bench/ceilings.h"
#include "cli.h"
#include "commands.h"
#include "engine/forward.h"
#include "engine/sampler.h"

#define MAX_BATCHES 16
#define MAX_REPS 1000
#define SGEMM_N 2048
#define BW_BYTES ((size_t)1 << 30)

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: duet bench -m MODEL [-p N] [-n N] [-t THREADS] [-r REPS] [-b LIST]\n"
		"\n"
		"Measures prompt processing (ppN: N prompt tokens in one prefill) and text\n"
		"generation (tgN: N decode steps of one sequence), mean and standard\n"
		"deviation over REPS runs after one warm-up, and batched decode throughput\n"
		"for each batch size in LIST (B sequences decoding N tokens together).\n"
		"The sgemm and memory-bandwidth ceilings of this machine are measured in\n"
		"the same run: prefill is shown against sgemm peak / (2 x matrix params per\n"
		"token), decode against bandwidth / (weight bytes read per token), with\n"
		"bandwidth measured before and after the decode runs and averaged.\n"
		"\n"
		"  -m, --model FILE        GGUF or llama2.c model\n"
		"  -p, --prompt N          prompt tokens for ppN (default 512; 0 skips)\n"
		"  -n, --gen N             decode steps for tgN (default 128; 0 skips)\n"
		"  -t, --threads N         threads (default: all CPUs this process may use)\n"
		"  -r, --reps N            measured repetitions (default 5)\n"
		"  -b, --batch LIST        batch sizes for batched decode, e.g. 1,4,8\n"
		"                          (default 1; batch 1 is tgN itself)\n"
		"  --ceiling-seconds S     time spent on each ceiling (default 2)\n"
		"  --no-ceilings           skip measuring the ceilings\n"
		"  --tokenizer FILE        tokenizer.bin of a llama2.c model\n"
		"  --weights WHERE         hugepages (default: a copy in 2 MiB pages) or mmap\n"
		"                          (the file's 4 KiB page-cache pages)\n");
}

struct stats {
	double mean, sd;
};

static struct stats summarize(const double *x, int n)
{
	struct stats s = {0, 0};
	for (int i = 0; i < n; i++)
		s.mean += x[i];
	s.mean /= n;
	for (int i = 0; i < n; i++)
		s.sd += (x[i] - s.mean) * (x[i] - s.mean);
	s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0;
	return s;
}

struct bench {
	struct duet_model *m;
	struct duet_kv_pool *kv;
	struct duet_engine *e;
	int *tokens;
	float *logits;
};

/* Prompt tokens: a fixed pseudo-random walk over the vocabulary (speed
 * does not depend on which tokens, only how many). */
static void fill_tokens(int *t, int n, int vocab)
{
	uint64_t s = 88172645463325252ull;
	t[0] = 1;
	for (int i = 1; i < n; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		t[i] = 3 + (int)(s % (uint64_t)(vocab - 3));
	}
}

/* One prefill of n tokens into a fresh sequence; tokens/s. */
static int run_pp(struct bench *b, int n, double *tps, struct duet_err *err)
{
	struct duet_kv_seq s;
	duet_kv_seq_init(&s);
	int chunk = duet_engine_max_batch(b->e);
	double t0 = duet_now_s();
	for (int i = 0; i < n; i += chunk) {
		int k = n - i < chunk ? n - i : chunk;
		struct duet_fwd_seq fs = {&s, b->tokens + i, k,
					  i + k == n ? DUET_LOGITS_LAST : DUET_LOGITS_NONE,
					  b->logits, NULL};
		if (duet_forward(b->e, &fs, 1, err)) {
			duet_kv_seq_release(b->kv, &s);
			return -1;
		}
	}
	*tps = n / (duet_now_s() - t0);
	duet_kv_seq_release(b->kv, &s);
	return 0;
}

/* B sequences, each started from BOS, decode n greedy tokens together;
 * tokens/s over all B (the BOS pass is not timed). */
static int run_tg(struct bench *b, int B, int n, double *tps, struct duet_err *err)
{
	const int V = b->m->cfg.vocab_size;
	struct duet_kv_seq s[MAX_BATCHES * 64];
	struct duet_fwd_seq fs[MAX_BATCHES * 64];
	int next[MAX_BATCHES * 64];
	int rc = -1;
	for (int i = 0; i < B; i++) {
		duet_kv_seq_init(&s[i]);
		next[i] = b->tokens[i % 8]; /* BOS, then different first tokens */
		fs[i] = (struct duet_fwd_seq){&s[i], &next[i], 1, DUET_LOGITS_LAST,
					      b->logits + (size_t)i * V, NULL};
	}
	if (duet_forward(b->e, fs, B, err))
		goto out;
	double t0 = duet_now_s();
	for (int step = 0; step < n; step++) {
		for (int i = 0; i < B; i++)
			next[i] = duet_argmax(b->logits + (size_t)i * V, V);
		if (duet_forward(b->e, fs, B, err))
			goto out;
	}
	*tps = (double)B * n / (duet_now_s() - t0);
	rc = 0;
out:
	for (int i = 0; i < B; i++)
		duet_kv_seq_release(b->kv, &s[i]);
	return rc;
}

/* One warm-up run, then reps measured ones into x: prefill of n tokens
 * (B = 0) or n decode steps of B sequences. */
static int repeat(struct bench *b, int B, int n, int reps, double *x, struct duet_err *err)
{
	struct cli_progress prog;
	cli_progress_init(&prog, "bench");
	for (int r = -1; r < reps; r++) {
		double v;
		if (B ? run_tg(b, B, n, &v, err) : run_pp(b, n, &v, err))
			return -1;
		if (r >= 0)
			x[r] = v;
		cli_progress_update(&prog, r + 2, (double)reps + 1, "runs");
	}
	cli_progress_end(&prog);
	return 0;
}

static int parse_batches(const char *s, int *out, int *n)
{
	*n = 0;
	const char *p = s;
	while (*p) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v < 1 || v > MAX_BATCHES * 64 || *n == MAX_BATCHES ||
		    (*end && *end != ','))
			return cli_fail("bench", "--batch '%s': expected up to %d comma-separated sizes from 1 to %d",
					s, MAX_BATCHES, MAX_BATCHES * 64);
		out[(*n)++] = (int)v;
		p = *end ? end + 1 : end;
	}
	return *n ? 0 : cli_fail("bench", "--batch is empty");
}

static void row(const char *test, struct stats s, double ceiling, const char *bound,
		const char *extra)
{
	char ceil_s[32] = "-", frac_s[32] = "-";
	if (ceiling > 0) {
		snprintf(ceil_s, sizeof ceil_s, "%.1f", ceiling);
		snprintf(frac_s, sizeof frac_s, "%.0f%% %s", 100 * s.mean / ceiling, bound);
	}
	printf("| %-10s | %10.2f | %8.2f | %11s | %-15s | %s\n", test, s.mean, s.sd, ceil_s,
	       frac_s, extra);
}

int cmd_bench(int argc, char **argv)
{
	const char *model = NULL, *tok_path = NULL;
	long n_prompt = 512, n_gen = 128, threads = 0, reps = 5;
	double ceil_s = 2.0;
	int no_ceilings = 0, batches[MAX_BATCHES] = {1}, n_batches = 1;
	enum duet_weights weights = DUET_WEIGHTS_HUGEPAGES;
	static const struct option opts[] = {
		{"model", required_argument, 0, 'm'},	{"prompt", required_argument, 0, 'p'},
		{"gen", required_argument, 0, 'n'},	{"threads", required_argument, 0, 't'},
		{"reps", required_argument, 0, 'r'},	{"batch", required_argument, 0, 'b'},
		{"ceiling-seconds", required_argument, 0, 'C'},
		{"no-ceilings", no_argument, 0, 'N'},	{"tokenizer", required_argument, 0, 'z'},
		{"weights", required_argument, 0, 'W'},	{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "m:p:n:t:r:b:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case 'z': tok_path = optarg; break;
		case 'p': if (cli_int("--prompt", optarg, 0, DUET_MAX_CTX, &n_prompt)) return 2; break;
		case 'n': if (cli_int("--gen", optarg, 0, DUET_MAX_CTX, &n_gen)) return 2; break;
		case 't': if (cli_int("--threads", optarg, 1, DUET_MAX_THREADS, &threads)) return 2; break;
		case 'r': if (cli_int("--reps", optarg, 1, MAX_REPS, &reps)) return 2; break;
		case 'b': if (parse_batches(optarg, batches, &n_batches)) return 2; break;
		case 'C': if (cli_float("--ceiling-seconds", optarg, 0, 600, &ceil_s)) return 2; break;
		case 'N': no_ceilings = 1; break;
		case 'W': if (cli_weights("--weights", optarg, &weights)) return 2; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!model || optind < argc) {
		usage(stderr);
		return 2;
	}
	struct duet_err err;
	struct bench b = {0};
	struct duet_model_opts mo = {.tokenizer_path = tok_path, .weights = weights};
	if (duet_model_open(&b.m, model, &mo, &err))
		return cli_fail("bench", "%s", err.msg);
	cli_weights_note("bench", weights, b.m);
	const struct duet_config *cfg = &b.m->cfg;
	int max_b = 1;
	for (int i = 0; i < n_batches; i++)
		max_b = batches[i] > max_b ? batches[i] : max_b;
	int rc = 1;
	if (n_prompt >= cfg->ctx_len || n_gen + 1 > cfg->ctx_len) {
		cli_fail("bench", "-p %ld / -n %ld do not fit the model's context of %d", n_prompt,
			 n_gen, cfg->ctx_len);
		goto out;
	}
	struct duet_kv_geom g = duet_kv_geom_for(b.m, 0);
	int per_seq = duet_kv_blocks_for(&g, n_prompt > n_gen + 1 ? n_prompt : n_gen + 1);
	struct duet_engine_opts eo = {.n_threads = (int)threads};
	b.tokens = malloc(sizeof(int) * (size_t)(n_prompt > 8 ? n_prompt : 8));
	b.logits = malloc(sizeof(float) * (size_t)cfg->vocab_size * (size_t)max_b);
	if (!b.tokens || !b.logits) {
		cli_fail("bench", "out of memory");
		goto out;
	}
	fill_tokens(b.tokens, (int)(n_prompt > 8 ? n_prompt : 8), cfg->vocab_size);
	if (duet_kv_pool_create(&b.kv, &g, per_seq * max_b, &err) ||
	    duet_engine_create(&b.e, b.m, b.kv, &eo, &err)) {
		cli_fail("bench", "%s", err.msg);
		goto out;
	}
	int nth = duet_engine_threads(b.e);
	char desc[256];
	duet_model_describe(b.m, desc, sizeof desc);
	printf("model: %s, %s\n", model, desc);
	printf("  %.1f M matrix params/token, %.1f MB read per decoded token, digest %s\n",
	       b.m->n_matmul_params / 1e6, b.m->decode_bytes / 1e6, b.m->digest);
	printf("threads: %d, kernels: %s, OpenBLAS core: %s\n", nth, duet_engine_kernels(b.e),
	       duet_blas_core());
	long long huge = duet_huge_bytes();
	printf("weights: %s", duet_weights_name(b.m->weights));
	if (b.m->weights == DUET_WEIGHTS_HUGEPAGES && huge >= 0)
		printf(" (%.0f of %.0f MB in huge pages)", huge / 1e6, b.m->weight_bytes / 1e6);
	printf("\n");

	struct duet_sgemm_ceiling sg = {0};
	struct duet_bw_ceiling bw = {0};
	if (!no_ceilings) {
		fprintf(stderr, "duet bench: measuring the sgemm ceiling...\n");
		if (duet_measure_sgemm(SGEMM_N, nth, ceil_s, &sg, &err)) {
			cli_fail("bench", "%s", err.msg);
			goto out;
		}
		fprintf(stderr, "duet bench: measuring the memory bandwidth ceiling...\n");
		if (duet_measure_bandwidth(BW_BYTES, nth, ceil_s, &bw, &err)) {
			cli_fail("bench", "%s", err.msg);
			goto out;
		}
		printf("ceilings: sgemm %.1f GFLOP/s (%d^3, %d threads); read bandwidth %.1f GB/s (%zu MiB, %d threads)\n",
		       sg.gflops, sg.n, sg.threads, bw.gbps, bw.bytes >> 20, bw.threads);
	}
	double pp_ceiling = sg.gflops * 1e9 / (2.0 * (double)b.m->n_matmul_params);
	double tg_ceiling = bw.gbps * 1e9 / (double)b.m->decode_bytes;
	printf("\n| %-10s | %10s | %8s | %11s | %-15s |\n", "test", "t/s", "stddev", "ceiling t/s",
	       "of ceiling");
	printf("|------------|------------|----------|-------------|-----------------|\n");
	fflush(stdout);

	double x[MAX_REPS];
	char name[32];
	if (n_prompt > 0) {
		if (repeat(&b, 0, (int)n_prompt, (int)reps, x, &err)) {
			cli_fail("bench", "%s", err.msg);
			goto out;
		}
		snprintf(name, sizeof name, "pp%ld", n_prompt);
		row(name, summarize(x, (int)reps), pp_ceiling, "sgemm", "");
		fflush(stdout);
	}
	/* Decode rows wait for a second bandwidth measurement after the decode
	 * runs: on a shared machine the bandwidth drifts over a minute, and the
	 * decode figures are held against the mean of before and after. */
	struct stats tg[MAX_BATCHES];
	for (int bi = 0; n_gen > 0 && bi < n_batches; bi++) {
		if (repeat(&b, batches[bi], (int)n_gen, (int)reps, x, &err)) {
			cli_fail("bench", "%s", err.msg);
			goto out;
		}
		tg[bi] = summarize(x, (int)reps);
	}
	if (n_gen > 0 && !no_ceilings) {
		struct duet_bw_ceiling after;
		fprintf(stderr, "duet bench: measuring the memory bandwidth ceiling again...\n");
		if (duet_measure_bandwidth(BW_BYTES, nth, ceil_s, &after, &err)) {
			cli_fail("bench", "%s", err.msg);
			goto out;
		}
		printf("| (read bandwidth %.1f GB/s before and %.1f GB/s after the decode runs; decode uses the mean)\n",
		       bw.gbps, after.gbps);
		tg_ceiling = (bw.gbps + after.gbps) / 2 * 1e9 / (double)b.m->decode_bytes;
	}
	double b1 = 0;
	for (int bi = 0; n_gen > 0 && bi < n_batches; bi++) {
		int B = batches[bi];
		char extra[64] = "";
		if (B == 1) {
			b1 = tg[bi].mean;
			snprintf(name, sizeof name, "tg%ld", n_gen);
		} else {
			snprintf(name, sizeof name, "tg%ld b%d", n_gen, B);
			if (b1 > 0)
				snprintf(extra, sizeof extra, "%.2fx batch 1", tg[bi].mean / b1);
		}
		/* The bandwidth bound is per step: B tokens share one read of
		 * the weights, so it scales with B. */
		row(name, tg[bi], tg_ceiling * B, "bandwidth", extra);
	}
	rc = 0;
out:
	duet_engine_destroy(b.e);
	duet_kv_pool_destroy(b.kv);
	free(b.tokens);
	free(b.logits);
	duet_model_close(b.m);
	return rc;
}
