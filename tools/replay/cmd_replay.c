/* duet replay: a trace against a running server, open-loop; one run, a
 * sweep of request rates, or a comparison of earlier runs. */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/sort.h"
#include "cli.h"
#include "commands.h"
#include "http_get.h"
#include "replay/replay.h"
#include "trace/tracefile.h"

#define PROBE_OUTPUT 32 /* tokens per unloaded probe request */
#define DEFAULT_SLO_X 5.0

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = g_stop < 2 ? g_stop + 1 : 2;
}

/* A threshold in seconds, or a multiple of the unloaded figure ("5x"). */
struct slo {
	double v;
	int times;
};

struct args {
	struct replay_opts ro;
	const char *trace, *out, *label;
	struct replay_verify_opts verify;
	enum trace_format format;
	double start, duration, pscale, oscale, rate;
	long max_requests, max_context, vocab_size, probes;
	uint64_t seed;
	struct slo slo_ttft, slo_tbt;
	double sweep[REPLAY_MAX_SWEEP];
	int n_sweep;
	const char *node_trace[REPLAY_MAX_NODE_TRACES]; /* daemons' trace files */
	int n_node_trace;
};

/* What the unloaded probe measured. */
struct unloaded {
	int prompt_tokens, n;
	double ttft_s, tbt_s;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: duet replay --trace FILE [options]\n"
		"       duet replay --compare DIR DIR... [--out DIR]\n\n"
		"Replays a request trace against a completions server (duet-router or any\n"
		"OpenAI-style server), open-loop: each request is sent at its (scaled) arrival\n"
		"time whether or not earlier ones finished, as a streamed token-id prompt of the\n"
		"trace's exact length with max_tokens = its output length and ignore_eos.\n"
		"Writes requests.csv, summary.json, ttft_cdf.csv, tbt_cdf.csv, timeline.csv and\n"
		"PNG plots (gnuplot) to --out, and prints a table.\n\n"
		"  --url URL           server base URL (default http://127.0.0.1:8080)\n"
		"  --trace FILE        Azure LLM trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens),\n"
		"                      Mooncake JSONL (timestamp ms, input_length, output_length,\n"
		"                      hash_ids) or plain CSV (arrival_s,prompt_tokens,output_tokens)\n"
		"  --format F          auto (default: from the first line), azure, mooncake, csv\n"
		"  --rate-scale X      divide arrival times by X: 2 sends twice as fast (default 1)\n"
		"  --rate R            instead: scale times so the slice's mean rate is R requests/s\n"
		"  --start S           skip requests arriving before S seconds into the trace\n"
		"  --duration S        only requests arriving within S trace-seconds after --start\n"
		"  --max-requests N    at most N requests\n"
		"  --length-scale P[,O] multiply prompt lengths by P and output lengths by O\n"
		"                      (one value scales both; default 1); Mooncake blocks scale too\n"
		"  --max-context N     clip prompt + output to N tokens (default: the server's\n"
		"                      max_model_len): output to N/4 if it alone is too long, then\n"
		"                      the prompt. The report says how many were scaled and clipped.\n"
		"  --slo-ttft T        TTFT objective: seconds, or Nx = N times the unloaded TTFT\n"
		"                      the probe measured (default 5x)\n"
		"  --slo-tbt T         objective for each request's p99 time between tokens:\n"
		"                      seconds, or Nx of the unloaded TBT (default 5x)\n"
		"  --probe N           unloaded probe: N requests one at a time before the replay,\n"
		"                      with the slice's median prompt and %d output tokens; results\n"
		"                      are also given as ratios to it (default 3; 0 = none, then\n"
		"                      SLOs must be in seconds)\n"
		"  --seed N            seed of the synthetic prompts (default 1)\n"
		"  --vocab-size N      draw prompt tokens below N (default: the server's vocab_size)\n"
		"  --out DIR           output directory (default replay-out)\n"
		"  --label NAME        the run's name in tables and plots (default: DIR's name)\n"
		"  --api-key KEY       bearer key (default: $DUET_API_KEY)\n"
		"  --timeout S         per-request limit in seconds (default 600)\n"
		"  --sweep X,Y,...     one replay per rate multiplier (times --rate-scale) into\n"
		"                      DIR/rate-X, then DIR/sweep.csv and goodput/p99 plots;\n"
		"                      each rate has prompts of its own (the first: --seed's),\n"
		"                      so none hits the prefix cache the rates before warmed\n"
		"  --compare DIR...    overlay earlier runs (or sweeps) in one table and one set of\n"
		"                      plots, written to --out (default compare-out)\n"
		"  --verify MODEL      after the replay, generate every completed request again\n"
		"                      with MODEL (the server's model file) in this process and\n"
		"                      count streams whose text differs (greedy; the oracle;\n"
		"                      one generation per CPU at a time, one thread each)\n"
		"  --kv-dtype TYPE     for --verify: the nodes' KV rows (default f16)\n"
		"  --qdot MODE         for --verify: the nodes' quantized dot products (default\n"
		"                      int8)\n"
		"  --node-trace FILE   after the replay, attribute the worst 1%% of token gaps to\n"
		"                      what the decode node was doing, from the trace files its\n"
		"                      daemons wrote with --trace (repeatable; `duet up --trace`\n"
		"                      writes DIR/NAME.trace.json): prints the shares, writes\n"
		"                      stalls.json (as `duet trace stalls`)\n"
		"  -q, --quiet         no progress line\n"
		"  -h, --help          this help\n\n"
		"A request meets the SLO when it completed, its TTFT <= the TTFT objective and\n"
		"its own p99 time between tokens <= the TBT objective; goodput is such requests\n"
		"per second. A failed request is lost when the server never said it failed (no\n"
		"HTTP error status or error event: a timeout, a cut or refused connection, a\n"
		"short stream). Exit status: 0 all requests completed, 3 some failed, 4 some\n"
		"text differed from --verify's, 1 the replay could not run, 2 bad usage. Ctrl-C stops sending and writes what finished;\n"
		"a second Ctrl-C abandons running requests.\n",
		PROBE_OUTPUT);
}

static int parse_slo(const char *flag, const char *s, struct slo *out)
{
	char buf[64];
	size_t n = strlen(s);
	out->times = n > 1 && s[n - 1] == 'x';
	snprintf(buf, sizeof buf, "%.*s", (int)(out->times ? n - 1 : n), s);
	return cli_float(flag, buf, 1e-6, 1e6, &out->v);
}

static int parse_list(const char *s, double *v, int max, int *n)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s", s);
	*n = 0;
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (*n == max) {
			fprintf(stderr, "duet replay: at most %d values in a list\n", max);
			return -1;
		}
		if (cli_float("--sweep", t, 1e-6, 1e6, &v[(*n)++]))
			return -1;
	}
	return *n ? 0 : -1;
}

/* ---- the server ---- */

/* GET /v1/models: the model's name, context and vocabulary size (0 when the
 * server does not say). */
static int server_info(const struct replay_opts *o, char *model, size_t cap, long *ctx,
		       long *vocab, struct duet_err *err)
{
	char url[1024], *body = NULL;
	long code;
	snprintf(url, sizeof url, "%s/v1/models", o->url);
	if (http_get(url, o->api_key, 10, &body, &code, err))
		return -1;
	int ret = -1;
	json_t *j = NULL;
	if (code != 200) {
		duet_errf(err, "%s: HTTP %ld: %.200s", url, code, body ? body : "");
		goto out;
	}
	j = json_loads(body ? body : "", 0, NULL);
	json_t *m = json_array_get(json_object_get(j, "data"), 0);
	const char *id = json_string_value(json_object_get(m, "id"));
	if (!id) {
		duet_errf(err, "%s: no model in the answer", url);
		goto out;
	}
	snprintf(model, cap, "%s", id);
	json_t *v = json_object_get(m, "max_model_len");
	*ctx = json_is_integer(v) ? (long)json_integer_value(v) : 0;
	v = json_object_get(m, "vocab_size");
	*vocab = json_is_integer(v) ? (long)json_integer_value(v) : 0;
	ret = 0;
out:
	json_decref(j);
	free(body);
	return ret;
}

/* ---- one run ---- */

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Unloaded figures: requests one at a time with the slice's median prompt,
 * each with its own prompt (no prefix-cache hits). */
static int probe(const struct args *a, const struct trace *t, const struct synth *s,
		 struct unloaded *u, struct duet_err *err)
{
	int *len = malloc((size_t)t->n * sizeof *len);
	if (!len)
		return duet_errf(err, "out of memory");
	for (int i = 0; i < t->n; i++)
		len[i] = t->req[i].prompt_tokens;
	qsort(len, (size_t)t->n, sizeof *len, cmp_int);
	struct trace_req q = {.prompt_tokens = len[t->n / 2], .output_tokens = PROBE_OUTPUT};
	free(len);
	if (q.prompt_tokens + q.output_tokens > a->max_context)
		q.prompt_tokens = (int)a->max_context - q.output_tokens;
	struct trace one = {.req = &q, .n = 1, .format = TRACE_PLAIN};
	double ttft[64], gaps[64 * PROBE_OUTPUT];
	int ng = 0;
	memset(u, 0, sizeof *u);
	u->prompt_tokens = q.prompt_tokens;
	struct replay_opts o = a->ro;
	o.quiet = 1;
	for (int k = 0; k < a->probes && !g_stop; k++) {
		struct replay_result r = {0};
		/* index past the trace's: a prompt of its own */
		struct synth ps = *s;
		ps.seed = s->seed ^ (0x9e3779b9ULL * (uint64_t)(k + 1));
		if (replay_run(&o, &one, &ps, &r, err))
			return -1;
		if (r.status != RS_OK) {
			duet_errf(err, "unloaded probe request failed (%s)", r.kind);
			replay_results_free(&r, 1);
			return -1;
		}
		ttft[u->n++] = r.tok_s[0] - r.sent_s;
		for (int i = 1; i < r.n_tok; i++)
			gaps[ng++] = r.tok_s[i] - r.tok_s[i - 1];
		replay_results_free(&r, 1);
	}
	duet_sort_f64(ttft, (size_t)u->n);
	duet_sort_f64(gaps, (size_t)ng);
	u->ttft_s = replay_percentile(ttft, u->n, 50);
	u->tbt_s = replay_percentile(gaps, ng, 50);
	return 0;
}

static json_t *context_json(const struct args *a, const struct trace *t,
			    const struct trace_fit *fit, const struct unloaded *u, double rate_scale)
{
	json_t *j = json_pack(
		"{s:s,s:s,s:s,s:{s:s,s:s,s:f,s:f,s:i,s:i},s:{s:f,s:f,s:i,s:i,s:i,s:i,s:I,s:I,s:I,"
		"s:I},s:f,s:I}",
		"url", a->ro.url, "model", a->ro.model, "label", a->label, "trace", "file", a->trace,
		"format", trace_format_name(t->format), "start_s", a->start, "duration_s",
		a->duration, "max_requests", (int)a->max_requests, "requests", t->n, "fit",
		"prompt_scale", fit->prompt_scale, "output_scale", fit->output_scale, "max_context",
		fit->max_context, "scaled", fit->n_scaled, "prompt_clipped", fit->n_prompt_clipped,
		"output_clipped", fit->n_output_clipped, "prompt_tokens_before",
		(json_int_t)fit->prompt_tokens_before, "prompt_tokens_after",
		(json_int_t)fit->prompt_tokens_after, "output_tokens_before",
		(json_int_t)fit->output_tokens_before, "output_tokens_after",
		(json_int_t)fit->output_tokens_after, "rate_scale", rate_scale, "seed",
		(json_int_t)a->seed);
	if (u->n)
		json_object_set_new(j, "unloaded",
				    json_pack("{s:i,s:i,s:f,s:f}", "probes", u->n, "prompt_tokens",
					      u->prompt_tokens, "ttft_s", u->ttft_s, "tbt_s",
					      u->tbt_s));
	return j;
}

static int write_json(const char *dir, const char *name, json_t *j, struct duet_err *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS))
		return duet_errnof(err, "%s: write failed", path);
	return 0;
}

static void print_ratios(const struct replay_summary *s, const struct unloaded *u)
{
	if (!u->n || u->ttft_s <= 0 || u->tbt_s <= 0)
		return;
	printf("unloaded (probe, %d-token prompt): TTFT %.1f ms, TBT %.1f ms; loaded p50/p99: "
	       "TTFT %.2fx/%.2fx, TBT %.2fx/%.2fx\n",
	       u->prompt_tokens, u->ttft_s * 1e3, u->tbt_s * 1e3, s->ttft.p50 / u->ttft_s,
	       s->ttft.p99 / u->ttft_s, s->tbt.p50 / u->tbt_s, s->tbt.p99 / u->tbt_s);
}

/* One replay into dir; fills *sum. Returns -1 when it could not run. */
static int run_one(const struct args *a, const struct trace *t, const struct synth *s,
		   const struct trace_fit *fit, const struct unloaded *u, double rate_scale,
		   const char *dir, const char *label, struct replay_summary *sum,
		   struct duet_err *err)
{
	if (cli_mkdirs(dir, err))
		return -1;
	struct replay_result *res = calloc((size_t)t->n, sizeof *res);
	if (!res)
		return duet_errf(err, "out of memory for %d results", t->n);
	struct replay_opts o = a->ro;
	o.rate_scale = rate_scale;
	long long start_unix_us = 0;
	o.start_unix_us = &start_unix_us;
	int rc = -1;
	double slo_ttft = a->slo_ttft.times ? a->slo_ttft.v * u->ttft_s : a->slo_ttft.v;
	double slo_tbt = a->slo_tbt.times ? a->slo_tbt.v * u->tbt_s : a->slo_tbt.v;
	fprintf(stderr, "duet replay: %s: %d requests over %.1f s (rate scale %g)\n", label, t->n,
		t->req[t->n - 1].arrival_s / rate_scale, rate_scale);
	if (replay_run(&o, t, s, res, err) ||
	    replay_summarize(res, t->n, slo_ttft, slo_tbt, sum, err) ||
	    replay_write_csv(dir, res, t->n, sum, err) ||
	    (a->verify.model && replay_verify(&a->verify, t, s, res, a->ro.quiet, sum, err)))
		goto out;
	json_t *j = replay_summary_to_json(sum);
	json_t *ctx = context_json(a, t, fit, u, rate_scale);
	json_object_update(j, ctx);
	json_object_set_new(j, "label", json_string(label));
	json_object_set_new(j, "start_unix_us", json_integer(start_unix_us));
	json_decref(ctx);
	int bad = write_json(dir, "summary.json", j, err);
	json_decref(j);
	if (bad)
		goto out;
	if (a->n_node_trace) {
		/* The daemons flush their traces at every load report. */
		usleep(REPLAY_TRACE_FLUSH_WAIT_US);
		struct duet_err terr;
		if (tracefile_stalls_for_replay(dir, a->node_trace, a->n_node_trace, NULL, 1.0,
						stdout, &terr))
			fprintf(stderr, "duet replay: no stall attribution: %s\n", terr.msg);
	}
	const char *dirs[1] = {dir}, *labels[1] = {label};
	struct duet_err perr;
	if (replay_plot_runs(dir, dirs, labels, 1, &perr))
		fprintf(stderr, "duet replay: no plots: %s\n", perr.msg);
	rc = 0;
out:
	replay_results_free(res, t->n);
	free(res);
	return rc;
}

static void print_fit(const struct trace *t, const struct trace_fit *f)
{
	printf("trace: %d requests (%s); lengths x%g prompt, x%g output; %d of them changed by "
	       "scaling; clipped to %d tokens: %d prompts, %d outputs; prompt tokens %lld -> "
	       "%lld, output tokens %lld -> %lld\n",
	       t->n, trace_format_name(t->format), f->prompt_scale, f->output_scale, f->n_scaled,
	       f->max_context, f->n_prompt_clipped, f->n_output_clipped, f->prompt_tokens_before,
	       f->prompt_tokens_after, f->output_tokens_before, f->output_tokens_after);
}

/* ---- main ---- */

static int parse_args(int argc, char **argv, struct args *a, int *compare_at, const char **out)
{
	enum { O_URL = 256, O_TRACE, O_FORMAT, O_RATE, O_MEANRATE, O_START, O_DUR, O_MAXREQ, O_LEN, O_CTX,
	       O_TTFT, O_TBT, O_PROBE, O_SEED, O_VOCAB, O_OUT, O_LABEL, O_KEY, O_TIMEOUT, O_SWEEP,
	       O_COMPARE, O_VERIFY, O_KVTYPE, O_QDOT, O_NODETRACE };
	static const struct option opts[] = {
		{"url", 1, 0, O_URL}, {"trace", 1, 0, O_TRACE}, {"format", 1, 0, O_FORMAT},
		{"rate-scale", 1, 0, O_RATE}, {"rate", 1, 0, O_MEANRATE}, {"start", 1, 0, O_START}, {"duration", 1, 0, O_DUR},
		{"max-requests", 1, 0, O_MAXREQ}, {"length-scale", 1, 0, O_LEN},
		{"max-context", 1, 0, O_CTX}, {"slo-ttft", 1, 0, O_TTFT}, {"slo-tbt", 1, 0, O_TBT},
		{"probe", 1, 0, O_PROBE}, {"seed", 1, 0, O_SEED}, {"vocab-size", 1, 0, O_VOCAB},
		{"out", 1, 0, O_OUT}, {"label", 1, 0, O_LABEL}, {"api-key", 1, 0, O_KEY},
		{"timeout", 1, 0, O_TIMEOUT}, {"sweep", 1, 0, O_SWEEP},
		{"compare", 0, 0, O_COMPARE}, {"verify", 1, 0, O_VERIFY}, {"kv-dtype", 1, 0, O_KVTYPE},
		{"qdot", 1, 0, O_QDOT}, {"node-trace", 1, 0, O_NODETRACE}, {"quiet", 0, 0, 'q'},
		{"help", 0, 0, 'h'}, {0}};
	int ch;
	double v;
	char *comma;
	while ((ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (ch) {
		case O_URL: a->ro.url = optarg; break;
		case O_TRACE: a->trace = optarg; break;
		case O_FORMAT:
			if (trace_format_parse(optarg, &a->format)) {
				fprintf(stderr, "duet replay: --format is auto, azure, mooncake or csv, "
						"got '%s'\n", optarg);
				return 2;
			}
			break;
		case O_RATE: if (cli_float("--rate-scale", optarg, 1e-6, 1e6, &a->ro.rate_scale)) return 2; break;
		case O_MEANRATE: if (cli_float("--rate", optarg, 1e-6, 1e6, &a->rate)) return 2; break;
		case O_START: if (cli_float("--start", optarg, 0, 1e9, &a->start)) return 2; break;
		case O_DUR: if (cli_float("--duration", optarg, 1e-3, 1e9, &a->duration)) return 2; break;
		case O_MAXREQ: if (cli_int("--max-requests", optarg, 1, 100000000, &a->max_requests)) return 2; break;
		case O_LEN:
			comma = strchr(optarg, ',');
			if (comma) {
				*comma = 0;
				if (cli_float("--length-scale", comma + 1, 1e-6, 1e3, &a->oscale))
					return 2;
			}
			if (cli_float("--length-scale", optarg, 1e-6, 1e3, &a->pscale))
				return 2;
			if (!comma)
				a->oscale = a->pscale;
			break;
		case O_CTX: if (cli_int("--max-context", optarg, 2, 1 << 24, &a->max_context)) return 2; break;
		case O_TTFT: if (parse_slo("--slo-ttft", optarg, &a->slo_ttft)) return 2; break;
		case O_TBT: if (parse_slo("--slo-tbt", optarg, &a->slo_tbt)) return 2; break;
		case O_PROBE: if (cli_int("--probe", optarg, 0, 64, &a->probes)) return 2; break;
		case O_SEED: if (cli_u64("--seed", optarg, &a->seed)) return 2; break;
		case O_VOCAB: if (cli_int("--vocab-size", optarg, 8, 1 << 24, &a->vocab_size)) return 2; break;
		case O_OUT: *out = optarg; break;
		case O_LABEL: a->label = optarg; break;
		case O_KEY: a->ro.api_key = optarg; break;
		case O_TIMEOUT:
			if (cli_float("--timeout", optarg, 0.001, 1e6, &v))
				return 2;
			a->ro.timeout_s = v;
			break;
		case O_SWEEP:
			if (parse_list(optarg, a->sweep, REPLAY_MAX_SWEEP, &a->n_sweep)) {
				fprintf(stderr, "duet replay: --sweep expects rate multipliers like 0.5,1,2\n");
				return 2;
			}
			break;
		case O_COMPARE: *compare_at = 1; break;
		case 'q': a->ro.quiet = 1; break;
		case O_VERIFY: a->verify.model = optarg; break;
		case O_KVTYPE: if (cli_kv_dtype("--kv-dtype", optarg, &a->verify.kv)) return 2; break;
		case O_QDOT: if (cli_qdot("--qdot", optarg, &a->verify.qdot)) return 2; break;
		case O_NODETRACE:
			if (a->n_node_trace == REPLAY_MAX_NODE_TRACES)
				return cli_fail("replay", "at most %d --node-trace files",
						REPLAY_MAX_NODE_TRACES);
			a->node_trace[a->n_node_trace++] = optarg;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (*compare_at) {
		*compare_at = optind;
		if (argc - optind < 1) {
			fprintf(stderr, "duet replay: --compare needs run directories\n");
			return 2;
		}
		return -1;
	}
	if (optind < argc) {
		fprintf(stderr, "duet replay: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!a->trace) {
		fprintf(stderr, "duet replay: --trace FILE is required (--help for usage)\n");
		return 2;
	}
	if (!a->probes && (a->slo_ttft.times || a->slo_tbt.times)) {
		fprintf(stderr, "duet replay: with --probe 0, give --slo-ttft and --slo-tbt in seconds\n");
		return 2;
	}
	return -1;
}

int cmd_replay(int argc, char **argv)
{
	struct args a = {.ro = {.url = "http://127.0.0.1:8080", .rate_scale = 1, .timeout_s = 600,
				.stop = &g_stop},
			 .pscale = 1, .oscale = 1, .probes = 3, .seed = 1,
			 .slo_ttft = {DEFAULT_SLO_X, 1}, .slo_tbt = {DEFAULT_SLO_X, 1},
			 .verify = {NULL, DUET_KV_DEFAULT, DUET_QDOT_INT8}};
	a.ro.api_key = getenv("DUET_API_KEY");
	const char *out = NULL;
	int compare_at = 0;
	int rc = parse_args(argc, argv, &a, &compare_at, &out);
	if (rc >= 0)
		return rc;
	if (compare_at)
		return replay_compare(out ? out : "compare-out", argv + compare_at, argc - compare_at);
	a.out = out ? out : "replay-out";
	char label[64];
	if (!a.label) {
		replay_dir_label(a.out, label, sizeof label);
		a.label = label;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	struct duet_err err;
	struct trace t;
	char model[256];
	long ctx = 0, vocab = 0;
	struct trace_fit fit;
	struct synth syn;
	struct unloaded u = {0};
	struct replay_summary *sums = NULL;
	rc = 1;
	if (trace_load(a.trace, a.format, &t, &err))
		return cli_fail("replay", "%s", err.msg);
	if (trace_slice(&t, a.start, a.duration, (int)a.max_requests, &err) ||
	    server_info(&a.ro, model, sizeof model, &ctx, &vocab, &err))
		goto fail;
	a.ro.model = model;
	if (a.rate > 0) {
		if (trace_rate_scale(&t, a.rate, &a.ro.rate_scale, &err))
			goto fail;
		printf("rate: the slice's %.3f requests/s scaled by %.4f to %.3f\n",
		       a.rate / a.ro.rate_scale, a.ro.rate_scale, a.rate);
	}
	if (!a.max_context)
		a.max_context = ctx;
	if (!a.vocab_size)
		a.vocab_size = vocab;
	if (!a.max_context || !a.vocab_size) {
		duet_errf(&err, "the server does not report max_model_len/vocab_size: give "
				"--max-context and --vocab-size");
		goto fail;
	}
	if (trace_fit(&t, a.pscale, a.oscale, (int)a.max_context, &fit, &err) ||
	    synth_init(&syn, a.seed, (int)a.vocab_size, t.block_tokens, &err))
		goto fail;
	print_fit(&t, &fit);
	fflush(stdout);
	if (a.probes) {
		if (probe(&a, &t, &syn, &u, &err))
			goto fail;
		printf("unloaded: TTFT %.1f ms (%d-token prompt), TBT %.1f ms (median of %d probes)\n",
		       u.ttft_s * 1e3, u.prompt_tokens, u.tbt_s * 1e3, u.n);
	}
	int n_runs = a.n_sweep ? a.n_sweep : 1;
	sums = calloc((size_t)n_runs, sizeof *sums);
	char (*dirs)[4096] = calloc((size_t)n_runs, sizeof *dirs);
	char (*names)[32] = calloc((size_t)n_runs, sizeof *names);
	const char **dp = calloc((size_t)n_runs, sizeof *dp), **lp = calloc((size_t)n_runs, sizeof *lp);
	if (!sums || !dirs || !names || !dp || !lp) {
		duet_errf(&err, "out of memory");
		goto fail_sweep;
	}
	int done = 0;
	for (int i = 0; i < n_runs && !g_stop; i++, done++) {
		if (a.n_sweep) {
			snprintf(dirs[i], sizeof dirs[i], "%s/rate-%g", a.out, a.sweep[i]);
			snprintf(names[i], sizeof names[i], "x%g", a.sweep[i]);
		} else {
			snprintf(dirs[i], sizeof dirs[i], "%s", a.out);
			snprintf(names[i], sizeof names[i], "%.31s", a.label);
		}
		dp[i] = dirs[i];
		lp[i] = names[i];
		double rs = a.ro.rate_scale * (a.n_sweep ? a.sweep[i] : 1);
		struct synth syn_i = synth_for_rate(&syn, i);
		if (run_one(&a, &t, &syn_i, &fit, &u, rs, dirs[i], names[i], &sums[i], &err))
			goto fail_sweep;
		replay_print_table(stdout, &lp[i], &sums[i], 1);
		print_ratios(&sums[i], &u);
		printf("results: %s (requests.csv, summary.json, *.png)\n", dirs[i]);
	}
	if (a.n_sweep && done) {
		if (replay_write_sweep(a.out, a.sweep, sums, done, &err))
			goto fail_sweep;
		printf("\nsweep (%s):\n", a.label);
		replay_print_table(stdout, lp, sums, done);
		if (replay_plot_runs(a.out, dp, lp, done, &err) ||
		    replay_plot_sweeps(a.out, (const char *const[]){a.out}, &a.label, 1, &err))
			fprintf(stderr, "duet replay: no sweep plots: %s\n", err.msg);
		printf("sweep: %s/sweep.csv, goodput.png, tbt_p99.png, ttft_p99.png\n", a.out);
	}
	rc = 0;
	for (int i = 0; i < done; i++) {
		if (sums[i].n_failed && rc == 0)
			rc = 3;
		if (sums[i].n_wrong > 0)
			rc = 4;
	}
fail_sweep:
	free(dirs);
	free(names);
	free(dp);
	free(lp);
fail:
	free(sums);
	trace_free(&t);
	curl_global_cleanup();
	if (rc == 1)
		return cli_fail("replay", "%s", err.msg);
	return rc;
}
