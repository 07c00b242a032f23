/* duet generate: one prompt, one process, streamed to stdout. This is the
 * reference output every other path (batched, disaggregated, colocated)
 * must reproduce. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cpu.h"
#include "cli.h"
#include "commands.h"
#include "engine/forward.h"
#include "engine/generate.h"
#include "engine/tokenizer.h"
#include "text/json_schema.h"
#include "text/stopper.h"

/* A schema file bigger than the wire takes is no use to the cluster. */
#define DUET_MAX_SCHEMA_FILE (64 * 1024)

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: duet generate -m MODEL -p PROMPT [options]\n"
		"\n"
		"Streams the prompt and its continuation to stdout; prints prompt and\n"
		"generation speed to stderr.\n"
		"\n"
		"  -m, --model FILE     GGUF or llama2.c model\n"
		"  --tokenizer FILE     tokenizer.bin of a llama2.c model (default: next to it)\n"
		"  -p, --prompt TEXT    prompt text (BOS is prepended)\n"
		"  -n, --max-tokens N   tokens to generate (default 128)\n"
		"  --temp T             temperature, 0 = greedy (default 0.8)\n"
		"  --top-k K            keep the K likeliest tokens, 0 = all (default 40)\n"
		"  --top-p P            nucleus sampling mass, 1 = off (default 0.95)\n"
		"  --seed N             sampling seed (default: from the clock, printed)\n"
		"  --min-p P            drop tokens below P times the likeliest's probability\n"
		"  --presence-penalty X subtract X from the logit of every token generated so\n"
		"                       far (-2..2, OpenAI's)\n"
		"  --frequency-penalty X subtract X times its count so far (-2..2)\n"
		"  --repeat-penalty X   divide positive logits (multiply negative ones) of every\n"
		"                       token in the prompt or output by X (1 = off)\n"
		"  --logit-bias ID=B    add B (-100..100) to token ID's logit (repeatable)\n"
		"  --logprobs K         print each generated token's log-probability and the K\n"
		"                       likeliest tokens' to stderr, one line per token\n"
		"  --json               the output is a JSON object (constrained sampling)\n"
		"  --json-schema FILE   the output is JSON valid against the schema in FILE\n"
		"  --draft FILE         speculative decoding with FILE as the draft model (the\n"
		"                       same vocabulary; e.g. this model in q4_0): it proposes\n"
		"                       tokens, the model checks them all in one pass\n"
		"  --lookup N           speculative decoding by prompt lookup: propose what\n"
		"                       followed the last N-gram (N down to 1) earlier in the text\n"
		"  --spec-k K           most tokens proposed per step (default 8; adapts to the\n"
		"                       acceptance from 4 up to K unless --spec-fixed)\n"
		"  --spec-fixed         always propose K tokens\n"
		"  --stop STR           stop before STR appears (repeatable, up to 16)\n"
		"  --ignore-eos         keep going past end-of-sequence\n"
		"  -t, --threads N      threads (default: all CPUs this process may use)\n"
		"  --cpus LIST          pin worker threads to these CPUs, e.g. 0-3,6\n"
		"  -b, --batch N        prompt tokens per forward pass (default 512)\n"
		"  --weights WHERE      hugepages (default: a copy in 2 MiB pages, which decode\n"
		"                       streams up to twice as fast; in 4 KiB pages where huge\n"
		"                       pages are off), copy (a copy in 4 KiB pages) or mmap\n"
		"                       (the file's pages); the copies hold Q8_0, Q4_0 and Q4_K\n"
		"                       packed for the kernels, mmap packs them on the fly\n"
		"  --qdot MODE          quantized and BF16 weights: int8 (default: integer dot\n"
		"                       products; BF16 against bf16 activations) or exact\n"
		"                       (dequantized to f32: the accuracy reference)\n"
		"  --kv-dtype TYPE      KV cache rows: f16 (default), int8 or f32\n"
		"  --ids                print generated token ids, one line, instead of text\n"
		"  --no-echo            do not print the prompt before the continuation\n");
}

struct out {
	int ids;
	int first;
};

/* "lp ID LOGPROB top ID:LOGPROB ..." on stderr. */
static void on_logprobs(void *ctx, int token, const struct duet_logprobs *lp)
{
	(void)ctx;
	fprintf(stderr, "lp %d %.6f top", token, lp->chosen);
	for (int i = 0; i < lp->n_top; i++)
		fprintf(stderr, " %d:%.6f", lp->top_id[i], lp->top[i]);
	fputc('\n', stderr);
}

static int parse_bias(const char *s, struct duet_sampling *sp)
{
	char *end;
	long id = strtol(s, &end, 10);
	if (end == s || *end != '=' || id < 0 || id > DUET_VOCAB_MAX_TOKENS)
		return cli_fail("generate", "--logit-bias '%s': want ID=BIAS", s);
	double b;
	if (cli_float("--logit-bias", end + 1, -100, 100, &b))
		return 2;
	if (sp->n_bias == DUET_MAX_LOGIT_BIAS)
		return cli_fail("generate", "at most %d --logit-bias", DUET_MAX_LOGIT_BIAS);
	sp->bias[sp->n_bias++] = (struct duet_logit_bias){(int)id, (float)b};
	return 0;
}

static int on_token(void *ctx, int token, const char *text, size_t n)
{
	struct out *o = ctx;
	if (o->ids) {
		if (token >= 0)
			printf(o->first++ ? " %d" : "%d", token);
	} else if (n) {
		fwrite(text, 1, n, stdout);
	}
	fflush(stdout);
	return 0;
}

int cmd_generate(int argc, char **argv)
{
	const char *model = NULL, *tok_path = NULL, *prompt = NULL, *cpus_s = NULL;
	const char *stops[DUET_MAX_STOPS];
	int n_stops = 0, ids = 0, echo = 1;
	long max_tokens = 128, threads = 0, batch = 512, top_k = 40;
	double temp = 0.8, top_p = 0.95;
	uint64_t seed = (uint64_t)time(NULL);
	int seed_given = 0, ignore_eos = 0;
	enum duet_weights weights = DUET_WEIGHTS_HUGEPAGES;
	enum duet_qdot qdot = DUET_QDOT_INT8;
	enum duet_kv_dtype kvt = DUET_KV_DEFAULT;
	static struct duet_sampling sp; /* large (logit bias): off the stack */
	double minp = 0, pres = 0, freq = 0, rep = 0;
	long top_lp = -1;
	enum duet_format format = DUET_FORMAT_TEXT;
	const char *schema_path = NULL, *draft_path = NULL;
	char *schema = NULL;
	long spec_k = 8, lookup = 0;
	int spec_fixed = 0;
	static const struct option opts[] = {
		{"min-p", required_argument, 0, 1},	 {"presence-penalty", required_argument, 0, 2},
		{"frequency-penalty", required_argument, 0, 3}, {"repeat-penalty", required_argument, 0, 4},
		{"logit-bias", required_argument, 0, 5}, {"logprobs", required_argument, 0, 6},
		{"json", no_argument, 0, 7},		 {"json-schema", required_argument, 0, 8},
		{"draft", required_argument, 0, 9},	 {"lookup", required_argument, 0, 10},
		{"spec-k", required_argument, 0, 11},	 {"spec-fixed", no_argument, 0, 12},
		{"model", required_argument, 0, 'm'},	 {"tokenizer", required_argument, 0, 'z'},
		{"prompt", required_argument, 0, 'p'},	 {"max-tokens", required_argument, 0, 'n'},
		{"temp", required_argument, 0, 'T'},	 {"top-k", required_argument, 0, 'K'},
		{"top-p", required_argument, 0, 'P'},	 {"seed", required_argument, 0, 'S'},
		{"stop", required_argument, 0, 's'},	 {"ignore-eos", no_argument, 0, 'E'},
		{"threads", required_argument, 0, 't'},	 {"cpus", required_argument, 0, 'c'},
		{"batch", required_argument, 0, 'b'},	 {"ids", no_argument, 0, 'I'},
		{"no-echo", no_argument, 0, 'N'},	 {"help", no_argument, 0, 'h'},
		{"weights", required_argument, 0, 'W'},	 {"qdot", required_argument, 0, 'Q'},
		{"kv-dtype", required_argument, 0, 'V'},
		{0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "m:p:n:t:b:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case 'z': tok_path = optarg; break;
		case 'p': prompt = optarg; break;
		case 'n': if (cli_int("--max-tokens", optarg, 0, DUET_MAX_CTX, &max_tokens)) return 2; break;
		case 'T': if (cli_float("--temp", optarg, 0, 100, &temp)) return 2; break;
		case 'K': if (cli_int("--top-k", optarg, 0, DUET_VOCAB_MAX_TOKENS, &top_k)) return 2; break;
		case 'P': if (cli_float("--top-p", optarg, 1e-6, 1, &top_p)) return 2; break;
		case 'S': if (cli_u64("--seed", optarg, &seed)) return 2; seed_given = 1; break;
		case 's':
			if (n_stops == DUET_MAX_STOPS)
				return cli_fail("generate", "at most %d --stop strings", DUET_MAX_STOPS);
			stops[n_stops++] = optarg;
			break;
		case 'E': ignore_eos = 1; break;
		case 't': if (cli_int("--threads", optarg, 1, DUET_MAX_THREADS, &threads)) return 2; break;
		case 'c': cpus_s = optarg; break;
		case 'b': if (cli_int("--batch", optarg, 1, 65536, &batch)) return 2; break;
		case 'I': ids = 1; break;
		case 'N': echo = 0; break;
		case 'W': if (cli_weights("--weights", optarg, &weights)) return 2; break;
		case 'Q': if (cli_qdot("--qdot", optarg, &qdot)) return 2; break;
		case 'V': if (cli_kv_dtype("--kv-dtype", optarg, &kvt)) return 2; break;
		case 1: if (cli_float("--min-p", optarg, 0, 1, &minp)) return 2; break;
		case 2: if (cli_float("--presence-penalty", optarg, -2, 2, &pres)) return 2; break;
		case 3: if (cli_float("--frequency-penalty", optarg, -2, 2, &freq)) return 2; break;
		case 4: if (cli_float("--repeat-penalty", optarg, 1e-6, 10, &rep)) return 2; break;
		case 5: if (parse_bias(optarg, &sp)) return 2; break;
		case 6: if (cli_int("--logprobs", optarg, 0, DUET_MAX_TOP_LOGPROBS, &top_lp)) return 2; break;
		case 7: format = DUET_FORMAT_JSON_OBJECT; break;
		case 8: format = DUET_FORMAT_JSON_SCHEMA; schema_path = optarg; break;
		case 9: draft_path = optarg; break;
		case 10: if (cli_int("--lookup", optarg, 1, 16, &lookup)) return 2; break;
		case 11: if (cli_int("--spec-k", optarg, 1, DUET_SPEC_MAX_K, &spec_k)) return 2; break;
		case 12: spec_fixed = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!model || !prompt || optind < argc) {
		usage(stderr);
		return 2;
	}
	struct duet_err err;
	if (schema_path) {
		size_t sn;
		if (!(schema = cli_read_file(schema_path, DUET_MAX_SCHEMA_FILE, &sn)))
			return 1;
		struct duet_json_schema *cs = duet_json_schema_compile(schema, &err);
		if (!cs) {
			free(schema);
			return cli_fail("generate", "--json-schema %s: %s", schema_path, err.msg);
		}
		duet_json_schema_free(cs);
	}
	int cpus[DUET_MAX_THREADS], n_cpus = 0;
	if (cpus_s && duet_cpu_parse_list(cpus_s, cpus, DUET_MAX_THREADS, &n_cpus, &err))
		return cli_fail("generate", "%s", err.msg);
	struct duet_model *m;
	struct duet_model_opts mo = {.tokenizer_path = tok_path, .weights = weights};
	if (duet_model_open(&m, model, &mo, &err))
		return cli_fail("generate", "%s", err.msg);
	cli_weights_note("generate", weights, m);
	size_t plen = strlen(prompt), n_prompt = 0;
	int *toks = malloc(sizeof(int) * duet_tokenize_max(plen));
	struct duet_kv_pool *kv = NULL, *dkv = NULL;
	struct duet_engine *e = NULL, *de = NULL;
	struct duet_model *dm = NULL;
	int rc = 1;
	if (!toks) {
		cli_fail("generate", "out of memory");
		goto out;
	}
	if (duet_tokenize(&m->vocab, prompt, plen, 1, toks, duet_tokenize_max(plen), &n_prompt, &err)) {
		cli_fail("generate", "%s", err.msg);
		goto out;
	}
	struct duet_kv_geom g = duet_kv_geom_for(m, 0, kvt);
	long need = (long)n_prompt + max_tokens;
	if (need > m->cfg.ctx_len)
		need = m->cfg.ctx_len;
	struct duet_engine_opts eo = {.n_threads = (int)threads, .cpus = n_cpus ? cpus : NULL,
				      .n_cpus = n_cpus, .max_batch_tokens = (int)batch,
				      .qdot = qdot};
	if (duet_kv_pool_create(&kv, &g, duet_kv_blocks_for(&g, need), &err) ||
	    duet_engine_create(&e, m, kv, &eo, &err)) {
		cli_fail("generate", "%s", err.msg);
		goto out;
	}
	struct duet_spec_cfg spec = {.k_max = (int)spec_k, .adaptive = !spec_fixed,
				     .ngram = (int)lookup};
	if (draft_path) {
		/* The draft's own pool, as deep as the model's context. */
		struct duet_model_opts dmo = {.weights = weights};
		if (duet_model_open(&dm, draft_path, &dmo, &err)) {
			cli_fail("generate", "--draft: %s", err.msg);
			goto out;
		}
		struct duet_kv_geom dg = duet_kv_geom_for(dm, 0, kvt);
		if (duet_kv_pool_create(&dkv, &dg, duet_kv_blocks_for(&dg, need), &err) ||
		    duet_engine_create(&de, dm, dkv, &eo, &err)) {
			cli_fail("generate", "--draft: %s", err.msg);
			goto out;
		}
		spec.draft = de;
		spec.draft_kv = dkv;
		spec.draft_model = dm;
	}
	if (!seed_given && temp > 0)
		fprintf(stderr, "duet generate: seed %llu\n", (unsigned long long)seed);
	if (echo && !ids) {
		fputs(prompt, stdout);
		fflush(stdout);
	}
	sp.temperature = (float)temp;
	sp.top_k = (int)top_k;
	sp.top_p = (float)top_p;
	sp.seed = seed;
	sp.min_p = (float)minp;
	sp.presence_penalty = (float)pres;
	sp.frequency_penalty = (float)freq;
	sp.repetition_penalty = (float)rep;
	sp.logprobs = top_lp >= 0;
	sp.top_logprobs = top_lp > 0 ? (int)top_lp : 0;
	struct duet_gen_params gp = {
		.sampling = sp,
		.format = format,
		.json_schema = schema,
		.on_logprobs = on_logprobs,
		.max_tokens = (int)max_tokens,
		.ignore_eos = ignore_eos,
		.stops = stops,
		.n_stops = n_stops,
		.spec = draft_path || lookup ? &spec : NULL,
	};
	struct duet_gen_stats st;
	struct out o = {ids, 0};
	if (duet_generate(e, kv, m, toks, (int)n_prompt, &gp, on_token, &o, &st, &err)) {
		putchar('\n');
		cli_fail("generate", "%s", err.msg);
		goto out;
	}
	putchar('\n');
	fflush(stdout);
	fprintf(stderr,
		"duet generate: prompt %d tokens in %.3f s (%.1f tok/s); generated %d tokens, "
		"%d decode steps in %.3f s (%.1f generated tok/s); finish: %s; %d threads, %s kernels\n",
		st.n_prompt, st.t_prompt, st.t_prompt > 0 ? st.n_prompt / st.t_prompt : 0, st.n_gen,
		st.n_decode, st.t_gen, st.t_gen > 0 ? st.n_gen / st.t_gen : 0,
		duet_finish_name(st.finish), duet_engine_threads(e), duet_engine_kernels(e));
	if (st.spec_off)
		fprintf(stderr, "duet generate: no speculation: %s\n", st.spec_off);
	else if (gp.spec)
		fprintf(stderr,
			"duet generate: speculation: %llu steps, %llu tokens proposed, %llu accepted "
			"(%.0f%%), %.2f tokens per step\n",
			(unsigned long long)st.spec.steps, (unsigned long long)st.spec.proposed,
			(unsigned long long)st.spec.accepted,
			st.spec.proposed ? 100.0 * (double)st.spec.accepted / (double)st.spec.proposed : 0,
			st.spec.steps ? (double)st.spec.emitted / (double)st.spec.steps : 0);
	if (format != DUET_FORMAT_TEXT)
		fprintf(stderr, "duet generate: guided: %llu of %d tokens needed the full token mask\n",
			(unsigned long long)st.n_masked, st.n_gen);
	rc = 0;
out:
	duet_engine_destroy(e);
	duet_kv_pool_destroy(kv);
	duet_engine_destroy(de);
	duet_kv_pool_destroy(dkv);
	duet_model_close(dm);
	free(toks);
	free(schema);
	duet_model_close(m);
	return rc;
}
