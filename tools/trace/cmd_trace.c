/* duet trace: merge the daemons' trace files into one timeline, and
 * attribute a replay's worst token gaps. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "plan/profile.h"
#include "trace/steps.h"
#include "trace/tracefile.h"

#define TRACE_DEFAULT_TOP_PCT 1.0
#define TRACE_STEPS_MAX_NODES 64

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: duet trace merge -o OUT FILE...\n"
		"       duet trace stalls --replay DIR [--node NAME] [--top PCT] FILE...\n"
		"       duet trace steps --profile FILE [--node NAME] [--from US] [--to US]\n"
		"                        [--json] FILE...\n\n"
		"Works on the Chrome trace-event files that duet-router, duet-prefill and\n"
		"duet-decode write with --trace FILE (duet up --trace writes one per daemon\n"
		"into its run directory). Timestamps are wall-clock microseconds, so the\n"
		"files of one run line up.\n\n"
		"merge     writes one trace with every file's events, sorted by time (a file\n"
		"          cut short by a killed daemon is read up to its last event); open\n"
		"          it in https://ui.perfetto.dev or chrome://tracing\n"
		"  -o, --out FILE     the merged trace\n\n"
		"stalls    for the worst PCT%% of the gaps between two tokens of a request that\n"
		"          `duet replay` measured into DIR, what the decode node's main thread\n"
		"          was doing: decode steps (with or without a local prefill chunk),\n"
		"          sampling and sending, KV ingest, router messages, load reports,\n"
		"          idle, or nothing traced (off-CPU); prints the shares and writes\n"
		"          DIR/stalls.json\n"
		"  --replay DIR       a duet replay output directory (tokens.csv, summary.json)\n"
		"  --node NAME        the decode node (default: every process named decode*\n"
		"                     or with decode events)\n"
		"  --top PCT          share of gaps attributed, worst first (default %g)\n\n"
		"steps     each node's forward passes (decode steps, prefill passes) against\n"
		"          the step model of a profile (duet bench --profile): how much slower\n"
		"          (ratio > 1) or faster the node ran in the cluster than the profile\n"
		"          that duet plan simulates with; prints passes, total measured / total\n"
		"          modelled, and the 10th, 50th, 90th percentile of the per-pass ratio\n"
		"  --profile FILE     the profile (its \"step\" model)\n"
		"  --node NAME        one process (default: every one with passes)\n"
		"  --from US, --to US only passes starting in [US, US) of the wall clock, in\n"
		"                     microseconds since 1970 (a replay's summary.json gives\n"
		"                     its start_unix_us and duration_s)\n"
		"  --json             one JSON object per node instead of the table, with\n"
		"                     \"spread\": the per-pass ratio at 1, 5, 10, 20, ..., 90,\n"
		"                     95, 99%% (what duet plan scale --step-spread takes)\n",
		TRACE_DEFAULT_TOP_PCT);
}

static int merge(int argc, char **argv)
{
	const char *out = NULL;
	static const struct option opts[] = {
		{"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!out || optind == argc) {
		usage(stderr);
		return 2;
	}
	struct duet_err err;
	json_t *m = tracefile_merge((const char *const *)argv + optind, argc - optind, &err);
	if (!m)
		return cli_fail("trace merge", "%s", err.msg);
	size_t n = json_array_size(json_object_get(m, "traceEvents"));
	int bad = json_dump_file(m, out, JSON_COMPACT);
	json_decref(m);
	if (bad)
		return cli_fail("trace merge", "%s: write failed", out);
	printf("%s: %zu events from %d files\n", out, n, argc - optind);
	return 0;
}

static int stalls(int argc, char **argv)
{
	const char *dir = NULL, *node = NULL;
	double top = TRACE_DEFAULT_TOP_PCT;
	static const struct option opts[] = {{"replay", required_argument, 0, 'r'},
					     {"node", required_argument, 0, 'n'},
					     {"top", required_argument, 0, 't'},
					     {"help", no_argument, 0, 'h'},
					     {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': dir = optarg; break;
		case 'n': node = optarg; break;
		case 't': if (cli_float("--top", optarg, 1e-6, 100, &top)) return 2; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!dir || optind == argc) {
		usage(stderr);
		return 2;
	}
	struct duet_err err;
	if (tracefile_stalls_for_replay(dir, (const char *const *)argv + optind, argc - optind,
					node, top, stdout, &err))
		return cli_fail("trace stalls", "%s", err.msg);
	return 0;
}

static int steps(int argc, char **argv)
{
	const char *prof = NULL, *node = NULL;
	int json = 0;
	uint64_t from_us = 0, to_us = 0;
	static const struct option opts[] = {{"profile", required_argument, 0, 'p'},
					     {"node", required_argument, 0, 'n'},
					     {"json", no_argument, 0, 'j'},
					     {"from", required_argument, 0, 'f'},
					     {"to", required_argument, 0, 't'},
					     {"help", no_argument, 0, 'h'},
					     {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': prof = optarg; break;
		case 'n': node = optarg; break;
		case 'j': json = 1; break;
		case 'f': if (cli_u64("--from", optarg, &from_us)) return 2; break;
		case 't': if (cli_u64("--to", optarg, &to_us)) return 2; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!prof || optind == argc) {
		usage(stderr);
		return 2;
	}
	struct duet_err err;
	struct plan_profile p;
	if (plan_profile_load(prof, &p, &err))
		return cli_fail("trace steps", "%s", err.msg);
	json_t *ev = tracefile_merge((const char *const *)argv + optind, argc - optind, &err);
	if (!ev)
		return cli_fail("trace steps", "%s", err.msg);
	struct trace_steps st[TRACE_STEPS_MAX_NODES];
	int n;
	int rc = trace_steps_compare(ev, node, &p, (long long)from_us, (long long)to_us, st,
				     TRACE_STEPS_MAX_NODES, &n, &err);
	json_decref(ev);
	if (rc)
		return cli_fail("trace steps", "%s", err.msg);
	if (!json)
		printf("%-12s %8s %14s %8s %8s %8s\n", "node", "passes", "measured/model", "p10",
		       "p50", "p90");
	for (int i = 0; i < n; i++) {
		const struct trace_steps *s = &st[i];
		if (json) {
			printf("{\"node\": \"%s\", \"passes\": %d, \"measured_ms\": %.3f, "
			       "\"model_ms\": %.3f, \"ratio\": %.4f, \"p10\": %.4f, \"p50\": %.4f, "
			       "\"p90\": %.4f, \"spread\": [",
			       s->node, s->n, s->actual_ms, s->model_ms, s->actual_ms / s->model_ms,
			       s->spread[PLAN_SPREAD_P10], s->spread[PLAN_SPREAD_P50],
			       s->spread[PLAN_SPREAD_P90]);
			for (int q = 0; q < PLAN_SPREAD_N; q++)
				printf("%s%.4f", q ? ", " : "", s->spread[q]);
			printf("]}\n");
		} else
			printf("%-12s %8d %14.3f %8.3f %8.3f %8.3f\n", s->node, s->n,
			       s->actual_ms / s->model_ms, s->spread[PLAN_SPREAD_P10],
			       s->spread[PLAN_SPREAD_P50], s->spread[PLAN_SPREAD_P90]);
	}
	return 0;
}

int cmd_trace(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "merge"))
		return merge(argc - 1, argv + 1);
	if (!strcmp(argv[1], "stalls"))
		return stalls(argc - 1, argv + 1);
	if (!strcmp(argv[1], "steps"))
		return steps(argc - 1, argv + 1);
	fprintf(stderr, "duet trace: unknown subcommand '%s' (merge, stalls or steps)\n", argv[1]);
	return 2;
}
