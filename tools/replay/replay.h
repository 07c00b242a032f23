/* duet replay: sends a trace's requests open-loop to an OpenAI-style
 * completions endpoint over streaming HTTP and measures every token.
 *
 *   replay_run.c     the open-loop sender (libcurl multi, one thread)
 *   replay_stats.c   percentiles, the summary, CSV and JSON output
 *   replay_plot.c    gnuplot plots of one run, several runs, a sweep
 *   replay_compare.c sweep.csv, and --compare of runs or sweeps
 *   cmd_replay.c     the command line, the unloaded probe, --sweep
 */
#ifndef DUET_REPLAY_H
#define DUET_REPLAY_H

#include <jansson.h>
#include <signal.h>
#include <stdio.h>

#include "base/kvrow.h"
#include "engine/kern/kernels.h"
#include "replay/synth.h"
#include "replay/trace.h"

#define REPLAY_KIND_MAX 32  /* length of an error kind ("http_503") */
#define REPLAY_ID_MAX 48 /* a response's id as the server named it */
#define REPLAY_MAX_KINDS 16 /* distinct error kinds counted; the rest are "other" */
#define REPLAY_MAX_SWEEP 32   /* rates in one --sweep */
#define REPLAY_MAX_COMPARE 16 /* directories in one --compare */
#define REPLAY_MAX_NODE_TRACES 16 /* --node-trace files */
/* A sweep's capacity, as DistServe defines it: the highest rate at which
 * this share of requests meets both SLOs. */
#define REPLAY_CAPACITY_ATTAINMENT 0.9
/* Before reading daemon traces: longer than their flush interval (a load
 * report, 200 ms by default). */
#define REPLAY_TRACE_FLUSH_WAIT_US 600000

enum replay_status { RS_PENDING, RS_OK, RS_FAILED };

/* A growing byte string, NUL-terminated once anything was added. */
struct replay_text {
	char *p;
	size_t n, cap;
};
/* Appends s[0..n); -1 when out of memory (t is then unchanged). */
int replay_text_add(struct replay_text *t, const char *s, size_t n);

/* One request's outcome. Times are seconds from the replay's start. */
struct replay_result {
	double sched_s; /* when the trace says it arrives (scaled) */
	double sent_s;	/* when it was handed to the HTTP client */
	int prompt_tokens, output_tokens; /* sent, and asked for */
	enum replay_status status;
	char kind[REPLAY_KIND_MAX]; /* why it failed: http_429, timeout, short, ... */
	int n_tok;		    /* token events received */
	double *tok_s;		    /* arrival time of each token event */
	double done_s;		    /* end of the response */
	struct replay_text text;    /* the streamed text, every event's in order */
	/* the response's "id" (duet-router: cmpl-N, N its request id in
	 * logs and traces), letters, digits, '-', '_' and '.' only */
	char server_id[REPLAY_ID_MAX];
};

struct replay_opts {
	const char *url;     /* base, e.g. http://127.0.0.1:8080 */
	const char *api_key; /* NULL: none */
	const char *model;   /* the "model" field */
	double rate_scale;   /* arrival times are divided by this */
	double timeout_s;    /* per request */
	int quiet;	     /* no progress line */
	/* Set by a signal handler: 1 = send nothing more, let running requests
	 * finish; 2 = abandon them too. NULL: never. */
	volatile sig_atomic_t *stop;
	/* Out, when not NULL: the wall-clock microseconds (CLOCK_REALTIME) of
	 * the replay's time 0, to line its times up with daemon traces. */
	long long *start_unix_us;
};

/* Sends every request of t at sched = arrival / rate_scale from the start,
 * whether or not earlier ones have finished, and fills res[0..t->n) (the
 * caller allocates, zeroed, and frees with replay_results_free). Fails only
 * when the replay cannot run at all; failed requests are results. */
int replay_run(const struct replay_opts *o, const struct trace *t, const struct synth *s,
	       struct replay_result *res, struct duet_err *err);
void replay_results_free(struct replay_result *res, int n);

/* Percentile p in [0, 100] of sorted v[0..n): linear interpolation between
 * the closest ranks (numpy's default). 0 for n = 0. */
double replay_percentile(const double *sorted, int n, double p);

struct replay_dist {
	int n;
	double mean, p50, p90, p99, max;
};
void replay_dist_of(double *v, int n, struct replay_dist *d); /* sorts v */

/* The points of a CDF that ttft_cdf.csv and tbt_cdf.csv hold: every
 * step-th value (step = n / REPLAY_CDF_POINTS, at least 1) and the last,
 * enough for a smooth plot, few enough that a long run's files stay small. */
#define REPLAY_CDF_POINTS 1000
#define REPLAY_CDF_MAX (2 * REPLAY_CDF_POINTS + 1)
struct replay_cdf {
	int n; /* points */
	double value[REPLAY_CDF_MAX], fraction[REPLAY_CDF_MAX];
};
void replay_cdf_of(const double *sorted, int n, struct replay_cdf *c);

struct replay_kind {
	char kind[REPLAY_KIND_MAX];
	int count;
};

struct replay_summary {
	int n, n_ok, n_failed;
	/* failed without the server saying so (no HTTP error status or error
	 * event: timeout, refused or cut connection, short stream) */
	int n_lost;
	/* --verify: completed streams checked against duet generate, and how
	 * many differed (-1: not verified) */
	int n_verified, n_wrong;
	struct replay_kind kinds[REPLAY_MAX_KINDS + 1];
	int n_kinds;
	double duration_s; /* first send to last response */
	double req_per_s, out_tok_per_s, in_tok_per_s;
	long long prompt_tokens, output_tokens;
	struct replay_dist ttft, tbt, e2e, send_lag;
	/* Time to the second token. In a disaggregated cluster the first token
	 * comes from the prefill node with its last logits; the second only
	 * once the KV has reached the decode node, so this is where a slow
	 * KV link shows. */
	struct replay_dist t2;
	/* replay_summarize's, for the CDF files (not in summary.json) */
	struct replay_cdf ttft_cdf, tbt_cdf;
	double slo_ttft_s, slo_tbt_s;
	int n_slo;	    /* completed within both SLOs */
	double slo_attainment; /* n_slo / n */
	double goodput_rps;    /* n_slo / duration */
	double offered_rps;    /* n / last scheduled arrival */
};

/* A request meets the SLO when it completed, its TTFT <= slo_ttft_s and its
 * own p99 time between tokens <= slo_tbt_s. */
int replay_summarize(const struct replay_result *res, int n, double slo_ttft_s, double slo_tbt_s,
		     struct replay_summary *s, struct duet_err *err);

/* Regenerates every completed request's prompt locally with the model
 * (greedy, as the replay asks) and compares the text with what streamed;
 * fills s->n_verified and s->n_wrong, and names the first few mismatches
 * on stderr. */
struct replay_verify_opts {
	const char *model;	 /* the server's model file */
	enum duet_kv_dtype kv;	 /* and how its nodes run it */
	enum duet_qdot qdot;
};
int replay_verify(const struct replay_verify_opts *o, const struct trace *t,
		  const struct synth *syn, const struct replay_result *res, int quiet,
		  struct replay_summary *s, struct duet_err *err);

/* summary.json's measured part, and back (for --compare). */
json_t *replay_summary_to_json(const struct replay_summary *s);
int replay_summary_from_json(json_t *j, struct replay_summary *s, struct duet_err *err);

/* The run's files in dir: requests.csv, tokens.csv (every token's time),
 * ttft_cdf.csv, tbt_cdf.csv, timeline.csv. summary.json is written by the caller (it adds context). */
int replay_write_csv(const char *dir, const struct replay_result *res, int n,
		     const struct replay_summary *s, struct duet_err *err);

/* The printed table: one column per run. */
void replay_print_table(FILE *f, const char *const *labels, const struct replay_summary *s,
			int n_runs);

/* Plots with gnuplot into out_dir, from the CSV files of each run dir;
 * labels name the runs in legends. Returns -1 (with err) when gnuplot
 * cannot be run; the CSV files are still there. */
int replay_plot_runs(const char *out_dir, const char *const *dirs, const char *const *labels,
		     int n_runs, struct duet_err *err);
/* sweep.csv of a sweep into dir: one row per rate multiplier. */
int replay_write_sweep(const char *dir, const double *mult, const struct replay_summary *s,
		       int n, struct duet_err *err);
/* duet replay --compare: the table on stdout and the plots in out; an exit
 * status. */
int replay_compare(const char *out, char **dirs, int n);
/* A directory's last component, the default label of a run. */
void replay_dir_label(const char *dir, char *out, size_t cap);

/* Goodput, p99 TBT and p99 TTFT against offered rate, from sweep.csv of
 * each sweep dir. */
int replay_plot_sweeps(const char *out_dir, const char *const *dirs, const char *const *labels,
		       int n_runs, struct duet_err *err);

#endif
