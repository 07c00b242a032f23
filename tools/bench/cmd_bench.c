/* duet bench: prefill and decode speed of one model, as a llama-bench
 * style table, with the machine's sgemm and memory-bandwidth ceilings
 * measured in the same run and every figure given as a fraction of the
 * ceiling it is bound by; --json writes the same as a file for scripts. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/cpu.h"
#include "base/mapfile.h"
#include "bench/ceilings.h"
#include "bench/profile_measure.h"
#include "cli.h"
#include "commands.h"
#include "engine/forward.h"
#include "engine/sampler.h"

#define MAX_BATCHES 16
#define MAX_DEPTHS 8
#define MAX_BATCH 1024
#define MAX_REPS 1000
#define SGEMM_N 2048
#define BW_BYTES ((size_t)1 << 30)
/* --agree: prompts and greedy tokens each, int8 against exact. */
#define AGREE_TOKENS 64
#define AGREE_PROMPT 32
/* Distinct first tokens of the sequences of a batched decode. */
#define FIRST_TOKENS 8

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: duet bench -m MODEL [-p N] [-n N] [-t THREADS] [-r REPS] [-b LIST] [options]\n"
		"\n"
		"Measures prompt processing (ppN: N prompt tokens in one prefill) and text\n"
		"generation (tgN: N decode steps of one sequence), mean and standard\n"
		"deviation over REPS runs after one warm-up, and batched decode throughput\n"
		"for each batch size in LIST (B sequences decoding N tokens together).\n"
		"The ceilings of this machine are measured in the same run: sgemm, memory\n"
		"bandwidth, and the compute ceiling: the peak of the instructions the model's\n"
		"products use (f32 FMA, int8 or bf16 dot products), measured on registers,\n"
		"over one multiply-add per weight and token. Prefill is shown against the\n"
		"compute ceiling, decode against bandwidth / (bytes read per step: weights,\n"
		"and the KV cache at the run's depth): each decode run against the mean of\n"
		"the bandwidth read just before and just after it (a shared machine's\n"
		"bandwidth moves within seconds), its of-ceiling column the mean over the\n"
		"runs; a batched row against the compute ceiling where that is lower.\n"
		"\n"
		"  -m, --model FILE        GGUF or llama2.c model\n"
		"  -p, --prompt N          prompt tokens for ppN (default 512; 0 skips)\n"
		"  -n, --gen N             decode steps for tgN (default 128; 0 skips)\n"
		"  -t, --threads N         threads (default: all CPUs this process may use)\n"
		"  -r, --reps N            measured repetitions (default 5)\n"
		"  -b, --batch LIST        batch sizes for batched decode, e.g. 1,4,8\n"
		"                          (default 1; batch 1 is tgN itself)\n"
		"  -d, --depth LIST        context already in the cache of every sequence\n"
		"                          before each measured run (prefilled, not timed;\n"
		"                          default 0), as llama-bench -d; e.g. 0,2048 measures\n"
		"                          both in one run\n"
		"  --kv-dtype TYPE         KV cache rows: f16 (default), int8 or f32\n"
		"  --qdot MODE             quantized and BF16 weights: int8 (default) or exact\n"
		"  --weights WHERE         hugepages (default: a copy in 2 MiB pages; 4 KiB\n"
		"                          where huge pages are off), copy (a copy in 4 KiB\n"
		"                          pages) or mmap (the file's 4 KiB page-cache pages)\n"
		"  --agree N               also generate N prompts greedily with --qdot int8 and\n"
		"                          exact and count the tokens on which they agree\n"
		"                          (quantized models)\n"
		"  --json FILE             every figure, the ceilings and the settings as JSON\n"
		"  --ceiling-seconds S     time spent on each ceiling (default 2; an eighth of\n"
		"                          it on each bandwidth sample between decode runs, a\n"
		"                          quarter on each instruction's peak)\n"
		"  --no-ceilings           skip measuring the ceilings\n"
		"  --tokenizer FILE        tokenizer.bin of a llama2.c model\n"
		"\n"
		"Node profile for duet plan (instead of the table above):\n"
		"  --profile FILE          fit the step-time model (ms = base + per sequence +\n"
		"                          per prefill token + per 1k positions) over decode\n"
		"                          steps (-b batches, default 1,2,4,8,16, at -d depths,\n"
		"                          default 64,512,1024), prefill chunks and decode steps\n"
		"                          carrying a chunk; print measured against fitted\n"
		"                          and the spread of every timed pass about the fit;\n"
		"                          write the profile as JSON (README, duet plan)\n"
		"  --chunk N               max-batch-tokens of the nodes profiled (default 512)\n"
		"  --kv-mb N               their kv-mb: KV memory (default 1024)\n"
		"  --name NAME             the profile's name (default: the model file's)\n"
		"  --price X               price per node-hour, for duet plan search (default 1)\n"
		"  --link-gb-s X           KV link in GB/s (default: a stated 10 GbE, 1.25)\n");
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
	int *tokens; /* prompt and context tokens */
	int n_tokens;
	float *logits;
	int depth;
};

/* Prompt tokens: a fixed pseudo-random walk over the vocabulary (speed
 * does not depend on which tokens, only how many). */
static void fill_tokens(int *t, int n, int vocab, uint64_t salt)
{
	uint64_t s = 88172645463325252ull ^ salt;
	t[0] = 1;
	for (int i = 1; i < n; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		t[i] = 3 + (int)(s % (uint64_t)(vocab - 3));
	}
}

/* n tokens into a sequence in engine-sized chunks; logits of the last. */
static int prefill(struct bench *b, struct duet_kv_seq *s, const int *t, int n, float *logits,
		   struct duet_err *err)
{
	int chunk = duet_engine_max_batch(b->e);
	for (int i = 0; i < n; i += chunk) {
		int k = n - i < chunk ? n - i : chunk;
		struct duet_fwd_seq fs = {s, t + i, k,
					  i + k == n && logits ? DUET_LOGITS_LAST : DUET_LOGITS_NONE,
					  logits, NULL, 0};
		if (duet_forward(b->e, &fs, 1, err))
			return -1;
	}
	return 0;
}

/* One prefill of n tokens after the depth's context (not timed). */
static int run_pp(struct bench *b, int n, double *tps, struct duet_err *err)
{
	struct duet_kv_seq s;
	duet_kv_seq_init(&s);
	int rc = -1;
	if (b->depth && prefill(b, &s, b->tokens + n, b->depth, NULL, err))
		goto out;
	double t0 = duet_now_s();
	if (prefill(b, &s, b->tokens, n, b->logits, err))
		goto out;
	*tps = n / (duet_now_s() - t0);
	rc = 0;
out:
	duet_kv_seq_release(b->kv, &s);
	return rc;
}

/* B sequences, each holding the depth's context (and then a first token
 * of its own), decode n greedy tokens together; tokens/s over all B. */
static int run_tg(struct bench *b, int B, int n, double *tps, struct duet_err *err)
{
	const int V = b->m->cfg.vocab_size;
	static struct duet_kv_seq s[MAX_BATCH];
	static struct duet_fwd_seq fs[MAX_BATCH];
	static int next[MAX_BATCH];
	int rc = -1;
	for (int i = 0; i < B; i++)
		duet_kv_seq_init(&s[i]);
	for (int i = 0; i < B; i++) {
		if (b->depth && prefill(b, &s[i], b->tokens, b->depth, NULL, err))
			goto out;
		next[i] = b->tokens[1 + i % FIRST_TOKENS]; /* different first tokens */
		fs[i] = (struct duet_fwd_seq){&s[i], &next[i], 1, DUET_LOGITS_LAST,
					      b->logits + (size_t)i * V, NULL, 0};
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

/* Bandwidth samples around each decode run: the probe (NULL: none) and
 * the seconds of each sample. */
struct brackets {
	struct duet_bw_probe *probe;
	double seconds;
	double lo, hi; /* the samples' range, GB/s */
};

/* A run whose two samples differ by more than this share of their mean
 * saw the machine change state (BENCHMARKS.md: 55 against 88 GB/s) and is
 * comparable to neither; such runs count only when every run is one. */
#define BRACKET_SETTLED 0.15

/* The bandwidth samples just before and after a run, GB/s. */
struct bracket {
	double before, after;
};

static double bracket_mean(struct bracket b)
{
	return (b.before + b.after) / 2;
}

static int bracket_settled(struct bracket b)
{
	return fabs(b.before - b.after) <= BRACKET_SETTLED * bracket_mean(b);
}

static int bracket_sample(struct brackets *k, double *gbps, struct duet_err *err)
{
	struct duet_bw_ceiling c;
	if (duet_bw_probe_sample(k->probe, k->seconds, &c, err))
		return -1;
	*gbps = c.gbps;
	k->lo = k->lo > 0 && k->lo < c.gbps ? k->lo : c.gbps;
	k->hi = k->hi > c.gbps ? k->hi : c.gbps;
	return 0;
}

/* One warm-up run, then reps measured ones into x[d][r], of prefill of n
 * tokens (B = 0) or n decode steps of B sequences, at each depth in turn:
 * the depths alternate run by run, so a drift of the machine's bandwidth
 * during the runs moves them alike and their ratio holds. With brackets
 * (k, not NULL), bw[d][r] holds the bandwidth sampled just before and just
 * after run x[d][r] (a sample serves the runs on both sides). */
static int repeat(struct bench *b, const int *depths, int n_depths, int B, int n, int reps,
		  double x[][MAX_REPS], struct brackets *k, struct bracket bw[][MAX_REPS],
		  struct duet_err *err)
{
	struct cli_progress prog;
	double before = 0, after = 0;
	cli_progress_init(&prog, "bench");
	for (int r = -1; r < reps; r++)
		for (int d = 0; d < n_depths; d++) {
			double v;
			b->depth = depths[d];
			/* (the first measured run's sample starts the chain) */
			if (k && r >= 0 && d == 0 && before == 0 && bracket_sample(k, &before, err))
				return -1;
			if (B ? run_tg(b, B, n, &v, err) : run_pp(b, n, &v, err))
				return -1;
			if (k && r >= 0) {
				if (bracket_sample(k, &after, err))
					return -1;
				bw[d][r] = (struct bracket){before, after};
				before = after;
			}
			if (r >= 0)
				x[d][r] = v;
			cli_progress_update(&prog, (r + 1) * n_depths + d + 1,
					    (double)(reps + 1) * n_depths, "runs");
		}
	cli_progress_end(&prog);
	return 0;
}

/* "1,4,8": up to cap numbers from lo to hi. */
static int parse_list(const char *flag, const char *s, int lo, int hi, int cap, int *out, int *n)
{
	*n = 0;
	const char *p = s;
	while (*p) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v < lo || v > hi || *n == cap || (*end && *end != ','))
			return cli_fail("bench", "%s '%s': expected up to %d comma-separated numbers from %d to %d",
					flag, s, cap, lo, hi);
		out[(*n)++] = (int)v;
		p = *end ? end + 1 : end;
	}
	return *n ? 0 : cli_fail("bench", "%s is empty", flag);
}

/* The instruction weight type t's kernels are made of in mode q
 * (engine/kern/kernels.h), and how many of its multiply-adds a weight
 * takes per token (two bf16 dot products where bf16 weights meet
 * activation pairs). */
static enum duet_peak_op peak_op(enum duet_dtype t, enum duet_qdot q, double *passes)
{
	enum duet_act a = duet_kernels_act(duet_kernels(), t, q);
	*passes = a == DUET_ACT_BF16 ? 2 : 1;
	return a == DUET_ACT_Q8 || a == DUET_ACT_Q8K		 ? DUET_PEAK_DOT_I8
	       : a == DUET_ACT_BF16 || a == DUET_ACT_BF16_HI ? DUET_PEAK_DOT_BF16
							     : DUET_PEAK_FMA;
}

/* Product i of a decode step's DECODE_MATRICES: the layers' seven each,
 * then the classifier. */
#define DECODE_MATRICES(m) (7 * (m)->cfg.n_layers + 1)
static const struct duet_tensor *decode_matrix(const struct duet_model *m, int i)
{
	if (i / 7 >= m->cfg.n_layers)
		return &m->output;
	const struct duet_layer *L = &m->layers[i / 7];
	const struct duet_tensor *lt[] = {&L->wq,     &L->wk,	&L->wv,	    &L->wo,
					  &L->w_gate, &L->w_up, &L->w_down};
	return lt[i % 7];
}

/* Tokens/s a sequence's matrix products allow at the compute ceilings
 * (gops per instruction, 1e9 operations/s; a multiply-add is two), each
 * product at its kernels' instruction: a decode step's, or with
 * classifier 0 a prompt token's (the classifier runs for the last one
 * only). *bound names the instruction when every product uses the same
 * one. 0 where a product's instruction has no measured ceiling. used[op]
 * (may be NULL) counts the products per instruction, which is all it
 * computes when gops is NULL. */
static double compute_ceiling(const struct duet_model *m, enum duet_qdot q, int classifier,
			      const double *gops, const char **bound, int *used)
{
	int count[DUET_PEAK_OPS] = {0}, kinds = 0, known = 1;
	double secs = 0;
	*bound = "compute";
	for (int i = 0; i < DECODE_MATRICES(m) - !classifier; i++) {
		const struct duet_tensor *t = decode_matrix(m, i);
		double passes;
		enum duet_peak_op op = peak_op(t->type, q, &passes);
		if (!count[op]++) {
			kinds++;
			*bound = duet_peak_op_name(op);
		}
		if (!gops || !(gops[op] > 0))
			known = 0;
		else
			secs += 2.0 * passes * (double)t->rows * (double)t->cols / (gops[op] * 1e9);
	}
	if (kinds > 1)
		*bound = "compute";
	if (used)
		memcpy(used, count, sizeof count);
	return known && secs > 0 ? 1 / secs : 0;
}

/* One row of the table, and of the JSON results: its ceiling and the
 * fraction of it reached (of; the runs' mean where each run has its own
 * ceiling), and its runs (NULL: none; the row takes the reference). */
static void row(json_t *results, const char *test, int B, int depth, struct stats s,
		double ceiling, double of, const char *bound, double vs_b1, json_t *runs)
{
	char ceil_s[32] = "-", frac_s[32] = "-", extra[48] = "";
	if (ceiling > 0) {
		snprintf(ceil_s, sizeof ceil_s, "%.1f", ceiling);
		snprintf(frac_s, sizeof frac_s, "%.0f%% %s", 100 * of, bound);
	}
	/* the ratio to batch 1 the row's ceiling would allow (its ceiling over
	 * batch 1's tokens/s), beside the one reached */
	double allows = vs_b1 > 0 && ceiling > 0 && s.mean > 0 ? ceiling * vs_b1 / s.mean : 0;
	if (allows > 0)
		snprintf(extra, sizeof extra, "%.2fx batch 1 (ceiling %.1fx)", vs_b1, allows);
	else if (vs_b1 > 0)
		snprintf(extra, sizeof extra, "%.2fx batch 1", vs_b1);
	printf("| %-14s | %10.2f | %8.2f | %11s | %-15s | %s\n", test, s.mean, s.sd, ceil_s, frac_s,
	       extra);
	json_t *r = json_pack("{s:s, s:i, s:i, s:f, s:f}", "test", test, "batch", B, "depth", depth,
			      "tokens_per_s", s.mean, "stddev", s.sd);
	if (ceiling > 0) {
		json_object_set_new(r, "ceiling_tokens_per_s", json_real(ceiling));
		json_object_set_new(r, "of_ceiling", json_real(of));
		json_object_set_new(r, "bound", json_string(bound));
	}
	if (vs_b1 > 0)
		json_object_set_new(r, "vs_batch1", json_real(vs_b1));
	if (allows > 0)
		json_object_set_new(r, "ceiling_vs_batch1", json_real(allows));
	if (runs)
		json_object_set_new(r, "runs", runs);
	json_array_append_new(results, r);
}

/* Greedy continuations of n prompts under int8 and exact quantized dot
 * products: how many tokens agree (position by position, counting until
 * the first difference of each prompt, and in all). */
static int agreement(struct bench *b, const struct duet_engine_opts *base, int n_prompts,
		     json_t *out, struct duet_err *err)
{
	const int V = b->m->cfg.vocab_size;
	struct duet_engine *e[2] = {NULL, NULL};
	int rc = -1, prefix = 0, same = 0, total = 0;
	int *gen[2] = {malloc(sizeof(int) * AGREE_TOKENS), malloc(sizeof(int) * AGREE_TOKENS)};
	int prompt[AGREE_PROMPT];
	if (!gen[0] || !gen[1]) {
		duet_errf(err, "--agree: out of memory");
		goto out;
	}
	for (int q = 0; q < 2; q++) {
		struct duet_engine_opts o = *base;
		o.qdot = q ? DUET_QDOT_EXACT : DUET_QDOT_INT8;
		if (duet_engine_create(&e[q], b->m, b->kv, &o, err))
			goto out;
	}
	for (int p = 0; p < n_prompts; p++) {
		fill_tokens(prompt, AGREE_PROMPT, V, (uint64_t)p * 7919 + 1);
		for (int q = 0; q < 2; q++) {
			struct duet_kv_seq s;
			duet_kv_seq_init(&s);
			struct bench bb = *b;
			bb.e = e[q];
			int ok = prefill(&bb, &s, prompt, AGREE_PROMPT, b->logits, err) == 0;
			for (int i = 0; ok && i < AGREE_TOKENS; i++) {
				gen[q][i] = duet_argmax(b->logits, V);
				struct duet_fwd_seq fs = {&s, &gen[q][i], 1, DUET_LOGITS_LAST,
							  b->logits, NULL, 0};
				ok = i + 1 == AGREE_TOKENS || duet_forward(e[q], &fs, 1, err) == 0;
			}
			duet_kv_seq_release(b->kv, &s);
			if (!ok)
				goto out;
		}
		int first = AGREE_TOKENS;
		for (int i = 0; i < AGREE_TOKENS; i++) {
			if (gen[0][i] == gen[1][i])
				same++;
			else if (first == AGREE_TOKENS)
				first = i;
		}
		prefix += first;
		total += AGREE_TOKENS;
	}
	printf("| agreement: int8 and exact greedy tokens equal at %d of %d positions; "
	       "%d of %d before each prompt's first difference (%d prompts of %d tokens)\n",
	       same, total, prefix, total, n_prompts, AGREE_PROMPT);
	json_object_set_new(out, "agreement",
			    json_pack("{s:i, s:i, s:i, s:i, s:i}", "prompts", n_prompts,
				      "tokens_each", AGREE_TOKENS, "equal", same, "before_first_difference",
				      prefix, "total", total));
	rc = 0;
out:
	duet_engine_destroy(e[0]);
	duet_engine_destroy(e[1]);
	free(gen[0]);
	free(gen[1]);
	return rc;
}

int cmd_bench(int argc, char **argv)
{
	const char *model = NULL, *tok_path = NULL, *json_path = NULL, *profile = NULL, *pname = NULL;
	long chunk = 512, kv_mb = 1024;
	double price = 1, link = 0;
	int lists_given = 0;
	long n_prompt = 512, n_gen = 128, threads = 0, reps = 5, agree = 0;
	double ceil_s = 2.0;
	int no_ceilings = 0, batches[MAX_BATCHES] = {1}, n_batches = 1;
	int depths[MAX_DEPTHS] = {0}, n_depths = 1;
	enum duet_weights weights = DUET_WEIGHTS_HUGEPAGES;
	enum duet_qdot qdot = DUET_QDOT_INT8;
	enum duet_kv_dtype kvt = DUET_KV_DEFAULT;
	static const struct option opts[] = {
		{"model", required_argument, 0, 'm'},	{"prompt", required_argument, 0, 'p'},
		{"gen", required_argument, 0, 'n'},	{"threads", required_argument, 0, 't'},
		{"reps", required_argument, 0, 'r'},	{"batch", required_argument, 0, 'b'},
		{"depth", required_argument, 0, 'd'},	{"ceiling-seconds", required_argument, 0, 'C'},
		{"no-ceilings", no_argument, 0, 'N'},	{"tokenizer", required_argument, 0, 'z'},
		{"weights", required_argument, 0, 'W'},	{"qdot", required_argument, 0, 'Q'},
		{"kv-dtype", required_argument, 0, 'K'}, {"json", required_argument, 0, 'J'},
		{"agree", required_argument, 0, 'A'},	{"help", no_argument, 0, 'h'},
		{"profile", required_argument, 0, 'P'},	{"chunk", required_argument, 0, 'c'},
		{"kv-mb", required_argument, 0, 'M'},	{"name", required_argument, 0, 'S'},
		{"price", required_argument, 0, '$'},	{"link-gb-s", required_argument, 0, 'L'},
		{0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "m:p:n:t:r:b:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case 'z': tok_path = optarg; break;
		case 'p': if (cli_int("--prompt", optarg, 0, DUET_MAX_CTX, &n_prompt)) return 2; break;
		case 'n': if (cli_int("--gen", optarg, 0, DUET_MAX_CTX, &n_gen)) return 2; break;
		case 't': if (cli_int("--threads", optarg, 1, DUET_MAX_THREADS, &threads)) return 2; break;
		case 'r': if (cli_int("--reps", optarg, 1, MAX_REPS, &reps)) return 2; break;
		case 'b':
			if (parse_list("--batch", optarg, 1, MAX_BATCH, MAX_BATCHES, batches, &n_batches))
				return 2;
			lists_given |= 1;
			break;
		case 'd':
			if (parse_list("--depth", optarg, 0, DUET_MAX_CTX, MAX_DEPTHS, depths, &n_depths))
				return 2;
			lists_given |= 2;
			break;
		case 'P': profile = optarg; break;
		case 'S': pname = optarg; break;
		case 'c': if (cli_int("--chunk", optarg, 1, 4096, &chunk)) return 2; break;
		case 'M': if (cli_int("--kv-mb", optarg, 1, 1 << 24, &kv_mb)) return 2; break;
		case '$': if (cli_float("--price", optarg, 0, 1e9, &price)) return 2; break;
		case 'L': if (cli_float("--link-gb-s", optarg, 1e-6, 1e6, &link)) return 2; break;
		case 'C': if (cli_float("--ceiling-seconds", optarg, 0, 600, &ceil_s)) return 2; break;
		case 'N': no_ceilings = 1; break;
		case 'W': if (cli_weights("--weights", optarg, &weights)) return 2; break;
		case 'Q': if (cli_qdot("--qdot", optarg, &qdot)) return 2; break;
		case 'K': if (cli_kv_dtype("--kv-dtype", optarg, &kvt)) return 2; break;
		case 'J': json_path = optarg; break;
		case 'A': if (cli_int("--agree", optarg, 1, 1000, &agree)) return 2; break;
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
	if (profile) {
		const char *base = strrchr(model, '/');
		struct bench_profile_args pa = {
			.path = profile, .name = pname ? pname : base ? base + 1 : model,
			.threads = (int)threads, .reps = (int)reps, .chunk = (int)chunk,
			.kv_mb = kv_mb, .link_gb_s = link, .price = price, .kv_dtype = kvt,
			.batches = batches, .depths = depths,
			.n_batches = lists_given & 1 ? n_batches : 0,
			.n_depths = lists_given & 2 ? n_depths : 0};
		int prc = bench_profile_run(b.m, &pa, &err);
		duet_model_close(b.m);
		return prc ? cli_fail("bench", "%s", err.msg) : 0;
	}
	const struct duet_config *cfg = &b.m->cfg;
	int max_b = 1, max_d = 0;
	for (int i = 0; i < n_batches; i++)
		max_b = batches[i] > max_b ? batches[i] : max_b;
	for (int i = 0; i < n_depths; i++)
		max_d = depths[i] > max_d ? depths[i] : max_d;
	int rc = 1;
	struct duet_bw_probe *probe = NULL; /* the bandwidth ceiling's, kept for the samples */
	json_t *doc = json_object(), *results = json_array();
	if (max_d + n_prompt >= cfg->ctx_len || max_d + n_gen + 1 > cfg->ctx_len) {
		cli_fail("bench", "-d %d with -p %ld / -n %ld does not fit the model's context of %d",
			 max_d, n_prompt, n_gen, cfg->ctx_len);
		goto out;
	}
	struct duet_kv_geom g = duet_kv_geom_for(b.m, 0, kvt);
	long seq_len = max_d + (n_prompt > n_gen + 1 ? n_prompt : n_gen + 1);
	if (agree && AGREE_PROMPT + AGREE_TOKENS > seq_len)
		seq_len = AGREE_PROMPT + AGREE_TOKENS;
	int per_seq = duet_kv_blocks_for(&g, seq_len);
	struct duet_engine_opts eo = {.n_threads = (int)threads, .qdot = qdot};
	/* the batches' first tokens are tokens[1 .. FIRST_TOKENS], also with no
	 * prompt (-p 0: they read one past the array before) */
	b.n_tokens = (int)(n_prompt + max_d > FIRST_TOKENS + 1 ? n_prompt + max_d : FIRST_TOKENS + 1);
	b.tokens = malloc(sizeof(int) * (size_t)b.n_tokens);
	b.logits = malloc(sizeof(float) * (size_t)cfg->vocab_size * (size_t)max_b);
	if (!b.tokens || !b.logits || !doc || !results) {
		cli_fail("bench", "out of memory");
		goto out;
	}
	fill_tokens(b.tokens, b.n_tokens, cfg->vocab_size, 0);
	if (duet_kv_pool_create(&b.kv, &g, per_seq * max_b, &err) ||
	    duet_engine_create(&b.e, b.m, b.kv, &eo, &err)) {
		cli_fail("bench", "%s", err.msg);
		goto out;
	}
	int nth = duet_engine_threads(b.e);
	char desc[256];
	duet_model_describe(b.m, desc, sizeof desc);
	/* Bytes a decode step reads besides the weights: every layer's K and V
	 * rows of the context. */
	double kv_per_pos = 2.0 * cfg->n_layers * (double)b.kv->row_bytes;
	printf("model: %s, %s\n", model, desc);
	printf("  %.1f M matrix params/token, %.1f MB of weights read per decode step, digest %s\n",
	       b.m->n_matmul_params / 1e6, b.m->decode_bytes / 1e6, b.m->digest);
	printf("threads: %d, kernels: %s, OpenBLAS core: %s, quantized dot products: %s\n", nth,
	       duet_engine_kernels(b.e), duet_blas_core(), duet_qdot_name(qdot));
	long long huge = duet_huge_bytes();
	printf("weights: %s", duet_weights_name(b.m->weights));
	if (b.m->weights == DUET_WEIGHTS_HUGEPAGES && huge >= 0)
		printf(" (%.0f of %.0f MB in huge pages)", huge / 1e6, b.m->weight_bytes / 1e6);
	printf("; KV cache: %s, %.1f KB per position (%.0f positions per GiB)\n",
	       duet_kv_dtype_name(kvt), kv_per_pos / 1e3, 1073741824.0 / kv_per_pos);
	json_object_set_new(doc, "model", json_pack("{s:s, s:s, s:s, s:I, s:I, s:f}", "file", model,
						     "description", desc, "digest", b.m->digest,
						     "matrix_params", (json_int_t)b.m->n_matmul_params,
						     "weight_bytes_per_step", (json_int_t)b.m->decode_bytes,
						     "kv_bytes_per_position", kv_per_pos));
	json_object_set_new(doc, "settings",
			    json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i}", "threads", nth,
				      "kernels", duet_engine_kernels(b.e), "blas_core", duet_blas_core(),
				      "weights", duet_weights_name(b.m->weights), "kv_dtype",
				      duet_kv_dtype_name(kvt), "qdot", duet_qdot_name(qdot), "prompt",
				      (int)n_prompt, "gen", (int)n_gen, "reps", (int)reps));

	struct duet_sgemm_ceiling sg = {0};
	struct duet_bw_ceiling bw = {0}, after = {0};
	/* the compute ceiling: the peak of each instruction (GOP/s) and what
	 * they allow (tokens/s, 0 unknown): a decoding sequence (cc) and a
	 * prompt (cc_pp) */
	double peaks[DUET_PEAK_OPS] = {0}, cc = 0, cc_pp = 0;
	const char *cc_bound = "compute";
	if (!no_ceilings) {
		fprintf(stderr, "duet bench: measuring the sgemm ceiling...\n");
		if (duet_measure_sgemm(SGEMM_N, nth, ceil_s, &sg, &err)) {
			cli_fail("bench", "%s", err.msg);
			goto out;
		}
		fprintf(stderr, "duet bench: measuring the memory bandwidth ceiling...\n");
		if (duet_bw_probe_create(&probe, BW_BYTES, nth, &err) ||
		    duet_bw_probe_sample(probe, ceil_s, &bw, &err)) {
			cli_fail("bench", "%s", err.msg);
			goto out;
		}
		printf("ceilings: sgemm %.1f GFLOP/s (%d^3, %d threads); read bandwidth %.1f GB/s (%zu MiB, %d threads)\n",
		       sg.gflops, sg.n, sg.threads, bw.gbps, bw.bytes >> 20, bw.threads);
		/* the instructions this model's products are made of */
		int used[DUET_PEAK_OPS];
		compute_ceiling(b.m, qdot, 1, NULL, &cc_bound, used);
		for (int op = 0; op < DUET_PEAK_OPS; op++) {
			struct duet_peak_ceiling pk;
			if (!used[op])
				continue;
			if (duet_measure_peak((enum duet_peak_op)op, nth, ceil_s / 4, &pk, &err)) {
				cli_fail("bench", "%s", err.msg);
				goto out;
			}
			peaks[op] = pk.gops;
		}
		cc = compute_ceiling(b.m, qdot, 1, peaks, &cc_bound, NULL);
		cc_pp = compute_ceiling(b.m, qdot, 0, peaks, &cc_bound, NULL);
		if (cc > 0) {
			printf("compute: ");
			for (int op = 0; op < DUET_PEAK_OPS; op++)
				if (peaks[op] > 0)
					printf("%s %.0f GOP/s, ", duet_peak_op_name((enum duet_peak_op)op),
					       peaks[op]);
			printf("so at most %.1f tokens/s of decode at any batch and %.1f of prompt in "
			       "the matrix products (register loops, %d threads)\n", cc, cc_pp, nth);
		}
	}
	/* prefill against the instructions its kernels use where they were
	 * measured (sgemm is one of them only for some types and ISAs) */
	double pp_ceiling = cc_pp > 0 ? cc_pp : sg.gflops * 1e9 / (2.0 * (double)b.m->n_matmul_params);
	const char *pp_bound = cc_pp > 0 ? cc_bound : "sgemm";
	printf("\n| %-14s | %10s | %8s | %11s | %-15s |\n", "test", "t/s", "stddev", "ceiling t/s",
	       "of ceiling");
	printf("|----------------|------------|----------|-------------|-----------------|\n");
	fflush(stdout);

	static double x[MAX_DEPTHS][MAX_REPS];
	char name[48];
	if (n_prompt > 0) {
		if (repeat(&b, depths, n_depths, 0, (int)n_prompt, (int)reps, x, NULL, NULL, &err)) {
			cli_fail("bench", "%s", err.msg);
			goto out;
		}
		for (int di = 0; di < n_depths; di++) {
			char at[24] = "";
			if (depths[di])
				snprintf(at, sizeof at, " @ d%d", depths[di]);
			snprintf(name, sizeof name, "pp%ld%s", n_prompt, at);
			struct stats s = summarize(x[di], (int)reps);
			row(results, name, 1, depths[di], s, pp_ceiling, s.mean / pp_ceiling, pp_bound, 0,
			    NULL);
		}
		fflush(stdout);
	}
	/* Each decode run is held against the bandwidth read in the seconds
	 * around it: this project's VMs switched between about 55 and 88 GB/s
	 * every few seconds, and a run in one state against a ceiling read in
	 * the other showed 73% or 114% of the bandwidth (BENCHMARKS.md,
	 * 2026-12-06 fifth). The ceilings before and after all the runs are
	 * printed and kept in the JSON as well. */
	static struct stats tg[MAX_DEPTHS][MAX_BATCHES];
	static double xs[MAX_BATCHES][MAX_DEPTHS][MAX_REPS];
	static struct bracket bws[MAX_BATCHES][MAX_DEPTHS][MAX_REPS];
	struct brackets k = {probe, ceil_s / 8, 0, 0};
	for (int bi = 0; n_gen > 0 && bi < n_batches; bi++) {
		if (repeat(&b, depths, n_depths, batches[bi], (int)n_gen, (int)reps, xs[bi],
			   probe ? &k : NULL, bws[bi], &err)) {
			cli_fail("bench", "%s", err.msg);
			goto out;
		}
		for (int di = 0; di < n_depths; di++)
			tg[di][bi] = summarize(xs[bi][di], (int)reps);
	}
	double gbps = bw.gbps;
	if (n_gen > 0 && !no_ceilings) {
		fprintf(stderr, "duet bench: measuring the memory bandwidth ceiling again...\n");
		if (duet_bw_probe_sample(probe, ceil_s, &after, &err)) {
			cli_fail("bench", "%s", err.msg);
			goto out;
		}
		printf("| (read bandwidth %.1f GB/s before and %.1f GB/s after the decode runs, %.1f-%.1f "
		       "GB/s in %.2f s samples between them; each decode run is held against the mean "
		       "of the samples just before and after it, leaving out runs whose two differ by "
		       "more than %.0f%%)\n",
		       bw.gbps, after.gbps, k.lo, k.hi, k.seconds, 100 * BRACKET_SETTLED);
		gbps = (bw.gbps + after.gbps) / 2;
	}
	int unsettled = 0; /* runs left out of the ratios */
	for (int di = 0; n_gen > 0 && di < n_depths; di++) {
		double b1 = 0;
		/* KV read per sequence and step, at the middle of the steps */
		double kv_bytes = kv_per_pos * ((double)depths[di] + (double)n_gen / 2);
		for (int bi = 0; bi < n_batches; bi++) {
			int B = batches[bi];
			char at[24] = "";
			if (depths[di])
				snprintf(at, sizeof at, " @ d%d", depths[di]);
			if (B == 1) {
				b1 = tg[di][bi].mean;
				snprintf(name, sizeof name, "tg%ld%s", n_gen, at);
			} else {
				snprintf(name, sizeof name, "tg%ld b%d%s", n_gen, B, at);
			}
			/* The weights are read once per step for all B sequences;
			 * each sequence's KV is its own. */
			double per_gbps = 1e9 * B / ((double)b.m->decode_bytes + B * kv_bytes);
			double ceiling = gbps * per_gbps, of = gbps > 0 ? tg[di][bi].mean / ceiling : 0;
			json_t *runs = json_array();
			if (probe) {
				int settled = 0, used = 0;
				for (int r = 0; r < reps; r++)
					settled += bracket_settled(bws[bi][di][r]);
				ceiling = of = 0;
				for (int r = 0; r < reps; r++) {
					struct bracket w = bws[bi][di][r];
					double c = bracket_mean(w) * per_gbps;
					if (!settled || bracket_settled(w)) {
						ceiling += c, of += xs[bi][di][r] / c, used++;
					}
					json_array_append_new(
						runs, json_pack("{s:f, s:f, s:f, s:b}", "tokens_per_s",
								xs[bi][di][r], "bandwidth_gbps_before",
								w.before, "bandwidth_gbps_after", w.after,
								"settled", bracket_settled(w)));
				}
				ceiling /= used, of /= used;
				unsettled += (int)reps - settled;
			}
			/* a wide batch reads each weight once for B sequences:
			 * past some width the arithmetic binds, not the reads */
			const char *bound = "bandwidth";
			if (cc > 0 && cc < ceiling) {
				ceiling = cc, of = tg[di][bi].mean / cc;
				bound = cc_bound;
			}
			row(results, name, B, depths[di], tg[di][bi], ceiling, of, bound,
			    B > 1 && b1 > 0 ? tg[di][bi].mean / b1 : 0, runs);
		}
		if (di > 0 && depths[0] == 0 && tg[0][0].mean > 0 && batches[0] == 1)
			printf("| (depth %d: %.2fx the tokens/s at depth 0, batch %d)\n", depths[di],
			       tg[di][0].mean / tg[0][0].mean, batches[0]);
	}
	if (unsettled)
		printf("| (%d of the decode runs saw the bandwidth change by more than %.0f%% and are "
		       "left out of the of-ceiling column, but for rows where every run did)\n",
		       unsettled, 100 * BRACKET_SETTLED);
	if (agree && agreement(&b, &eo, (int)agree, doc, &err)) {
		cli_fail("bench", "%s", err.msg);
		goto out;
	}
	if (!no_ceilings)
		json_object_set_new(doc, "ceilings",
				    json_pack("{s:f, s:i, s:f, s:f, s:I, s:f, s:f, s:f, s:f, s:f}",
					      "sgemm_gflops", sg.gflops, "sgemm_n", sg.n,
					      "bandwidth_gbps_before", bw.gbps, "bandwidth_gbps_after",
					      after.gbps, "bandwidth_bytes", (json_int_t)bw.bytes,
					      "fma_gops", peaks[DUET_PEAK_FMA], "int8_dot_gops",
					      peaks[DUET_PEAK_DOT_I8], "bf16_dot_gops",
					      peaks[DUET_PEAK_DOT_BF16], "compute_tokens_per_s", cc,
					      "compute_prompt_tokens_per_s", cc_pp));
	json_object_set(doc, "results", results);
	if (json_path && json_dump_file(doc, json_path, JSON_INDENT(2) | JSON_SORT_KEYS)) {
		cli_fail("bench", "%s: cannot write the JSON results", json_path);
		goto out;
	}
	rc = 0;
out:
	json_decref(results);
	json_decref(doc);
	duet_bw_probe_destroy(probe);
	duet_engine_destroy(b.e);
	duet_kv_pool_destroy(b.kv);
	free(b.tokens);
	free(b.logits);
	duet_model_close(b.m);
	return rc;
}
