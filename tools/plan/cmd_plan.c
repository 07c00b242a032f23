/* duet plan: size a cluster for a trace by simulation (plan/sim.h), with
 * node profiles measured by `duet bench --profile` or written by hand. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "plan/plan.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: duet plan simulate --trace FILE --profile FILE [options]\n"
		"       duet plan search --trace FILE --node-type FILE... [options]\n"
		"       duet plan scale IN OUT [--compute X] [--bandwidth X] [--memory X]\n"
		"                       [--price X] [--name NAME] [--link-gb-s X]\n"
		"                       [--step-spread R1,...,R13 | --step-spread none]\n"
		"\n"
		"simulate replays a trace (as duet replay reads it) against a simulated\n"
		"cluster, with the router's own placement code, and writes what duet replay\n"
		"writes: summary.json, requests.csv, tokens.csv, CDFs, plots (and with\n"
		"--sweep, one directory per rate and sweep.csv). search tries node counts,\n"
		"prefill/decode splits, node types and policies within a budget and prints\n"
		"the configurations, best first. scale makes a profile of a machine we do\n"
		"not have from a measured one.\n"
		"\n"
		"Trace (as duet replay):\n"
		"  --trace FILE            Azure CSV, Mooncake JSONL or plain CSV\n"
		"  --start S, --duration S, --max-requests N   the slice (default: all)\n"
		"  --rate R                mean requests/s of the slice (default: as traced)\n"
		"  --length-scale X        prompt and output lengths times X (default 1)\n"
		"  --repeat N              the slice N times back to back (a day from an hour)\n"
		"  --seed N                prompts and report phases (default 1)\n"
		"Cluster (simulate):\n"
		"  --profile FILE          profile of every node\n"
		"  --prefill-profile FILE, --decode-profile FILE   per role\n"
		"  --prefill N             prefill nodes (default 1; 0 = colocated)\n"
		"  --decode N              decode nodes (default 1)\n"
		"  --policy P              length-aware (default), round-robin, least-loaded,\n"
		"                          colocated (what duet-router --policy takes)\n"
		"  --local-max-prompt N    the router's setting (default 64)\n"
		"  --router-slo-ttft-ms N, --router-slo-tbt-ms N   the router's objectives\n"
		"  --tbt-admission on|off  the router's tbt-admission (default off)\n"
		"  --report-ms N           load report interval (default %d)\n"
		"  --client-ms X           router to client, one way (default 0)\n"
		"  --first-token WHO       the router's first-token: decode (default) or prefill\n"
		"  --max-queue N, --queue-timeout-ms N   the router's wait queue for room\n"
		"                          (defaults %d and %d, as the router's)\n"
		"  --prefix-cache WHEN     nodes keep prefix caches: auto (default: when\n"
		"                          prompts share prefixes, i.e. the trace has hash ids),\n"
		"                          on, off (every prompt computed whole)\n"
		"  --step-spread on|off    each pass takes its profile's model times a draw\n"
		"                          from the profile's step_spread (on, the default,\n"
		"                          for profiles that have one), or the model's time\n"
		"  --machine-nodes K       nodes share machines K at a time, in order (prefill\n"
		"                          nodes first): a pass runs slower while a machine-\n"
		"                          mate's presses on its memory, up to the profile's\n"
		"                          beside model beside a decode loop (default 1: each\n"
		"                          node its own machine)\n"
		"SLOs (goodput counts requests within both):\n"
		"  --slo-ttft S, --slo-tbt S   seconds (required)\n"
		"Output (simulate):\n"
		"  --sweep X,Y,...         one run per rate multiplier into DIR/rate-X\n"
		"  --out DIR               default plan-out\n"
		"  --label NAME            in summary.json and plot legends\n"
		"  --no-plots              CSV and JSON only\n"
		"Search:\n"
		"  --node-type FILE        a profile with its price_per_hour (repeat)\n"
		"  --budget X              most price per hour of a cluster (default 100)\n"
		"  --max-nodes N           most nodes of a cluster (default %d)\n"
		"  --policies LIST         disaggregated policies tried (default length-aware)\n"
		"  --attainment X          share of requests within SLO a plan must reach\n"
		"                          (default 0.9)\n"
		"  --csv FILE              every configuration tried\n",
		SIM_DEFAULT_REPORT_MS, ROUTER_DEFAULT_MAX_QUEUE, ROUTER_DEFAULT_QUEUE_TIMEOUT_MS,
		ROUTER_MAX_NODES);
}

/* Up to max numbers in [lo, hi], comma-separated, into v: how many, or -1
 * (cli_float said what was wrong with which). */
static int parse_list(const char *opt, const char *s, double *v, int max, double lo, double hi)
{
	char buf[512];
	int n = 0;
	snprintf(buf, sizeof buf, "%s", s);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (n == max || cli_float(opt, t, lo, hi, &v[n++]))
			return -1;
	return n;
}

static int scale_cmd(int argc, char **argv)
{
	double compute = 1, bw = 1, mem = 1, price = -1, link = 0;
	const char *name = NULL, *spread = NULL;
	static const struct option opts[] = {
		{"compute", 1, 0, 'c'}, {"bandwidth", 1, 0, 'b'}, {"memory", 1, 0, 'm'},
		{"price", 1, 0, 'p'},	{"name", 1, 0, 'n'},	  {"link-gb-s", 1, 0, 'l'},
		{"step-spread", 1, 0, 's'}, {"help", 0, 0, 'h'},	{0, 0, 0, 0}};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': spread = optarg; break;
		case 'c': if (cli_float("--compute", optarg, 1e-3, 1e6, &compute)) return 2; break;
		case 'b': if (cli_float("--bandwidth", optarg, 1e-3, 1e6, &bw)) return 2; break;
		case 'm': if (cli_float("--memory", optarg, 1e-3, 1e6, &mem)) return 2; break;
		case 'p': if (cli_float("--price", optarg, 0, 1e9, &price)) return 2; break;
		case 'l': if (cli_float("--link-gb-s", optarg, 1e-6, 1e6, &link)) return 2; break;
		case 'n': name = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	struct duet_err err;
	struct plan_profile p;
	if (plan_profile_load(argv[optind], &p, &err))
		return cli_fail("plan", "%s", err.msg);
	plan_profile_scale(&p, compute, bw, mem);
	if (price >= 0)
		p.price_per_hour = price;
	if (link > 0)
		p.link_gb_s = link;
	if (name)
		snprintf(p.name, sizeof p.name, "%s", name);
	if (spread && !strcmp(spread, "none")) {
		p.has_spread = 0;
	} else if (spread) {
		double q[PLAN_SPREAD_N];
		if (parse_list("--step-spread", spread, q, PLAN_SPREAD_N, 1e-6, 100) != PLAN_SPREAD_N)
			return cli_fail("plan", "--step-spread expects %d comma-separated ratios or none",
					PLAN_SPREAD_N), 2;
		if (plan_profile_set_spread(&p, q, "--step-spread", &err))
			return cli_fail("plan", "%s", err.msg), 2;
	}
	json_t *j = plan_profile_to_json(&p);
	json_object_set_new(j, "scaled_from", json_pack("{s:s, s:f, s:f, s:f}", "profile",
							argv[optind], "compute", compute,
							"bandwidth", bw, "memory", mem));
	int bad = json_dump_file(j, argv[optind + 1], JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(j);
	if (bad)
		return cli_fail("plan", "%s: cannot write the profile", argv[optind + 1]);
	return 0;
}

enum {
	O_TRACE = 256, O_START, O_DURATION, O_MAXREQ, O_RATE, O_LSCALE, O_REPEAT, O_SEED,
	O_PROFILE, O_PPROFILE, O_DPROFILE, O_PREFILL, O_DECODE, O_POLICY, O_LOCALMAX,
	O_RTTFT, O_RTBT, O_REPORT, O_CLIENT, O_FIRST, O_SLOTTFT, O_SLOTBT, O_SWEEP, O_OUT, O_LABEL,
	O_NOPLOTS, O_PCACHE, O_MAXQ, O_QTIMEOUT, O_NODETYPE, O_BUDGET, O_MAXNODES, O_POLICIES, O_ATTAIN, O_CSV,
	O_SPREAD,
	O_ADMIT, O_MACHINE,
};

static int parse(int argc, char **argv, struct plan_args *a)
{
	static const struct option opts[] = {
		{"trace", 1, 0, O_TRACE},	   {"start", 1, 0, O_START},
		{"duration", 1, 0, O_DURATION},	   {"max-requests", 1, 0, O_MAXREQ},
		{"rate", 1, 0, O_RATE},		   {"length-scale", 1, 0, O_LSCALE},
		{"repeat", 1, 0, O_REPEAT},	   {"seed", 1, 0, O_SEED},
		{"profile", 1, 0, O_PROFILE},	   {"prefill-profile", 1, 0, O_PPROFILE},
		{"decode-profile", 1, 0, O_DPROFILE}, {"prefill", 1, 0, O_PREFILL},
		{"decode", 1, 0, O_DECODE},	   {"policy", 1, 0, O_POLICY},
		{"local-max-prompt", 1, 0, O_LOCALMAX}, {"router-slo-ttft-ms", 1, 0, O_RTTFT},
		{"router-slo-tbt-ms", 1, 0, O_RTBT}, {"report-ms", 1, 0, O_REPORT},
		{"client-ms", 1, 0, O_CLIENT},	   {"slo-ttft", 1, 0, O_SLOTTFT},
		{"first-token", 1, 0, O_FIRST},	   {"prefix-cache", 1, 0, O_PCACHE},
		{"max-queue", 1, 0, O_MAXQ},	   {"queue-timeout-ms", 1, 0, O_QTIMEOUT},
		{"slo-tbt", 1, 0, O_SLOTBT},	   {"sweep", 1, 0, O_SWEEP},
		{"out", 1, 0, O_OUT},		   {"label", 1, 0, O_LABEL},
		{"no-plots", 0, 0, O_NOPLOTS},	   {"node-type", 1, 0, O_NODETYPE},
		{"budget", 1, 0, O_BUDGET},	   {"max-nodes", 1, 0, O_MAXNODES},
		{"policies", 1, 0, O_POLICIES},	   {"attainment", 1, 0, O_ATTAIN},
		{"csv", 1, 0, O_CSV},		   {"step-spread", 1, 0, O_SPREAD},
		{"tbt-admission", 1, 0, O_ADMIT},  {"machine-nodes", 1, 0, O_MACHINE},
		{"help", 0, 0, 'h'},
		{0, 0, 0, 0}};
	int c;
	long v;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_TRACE: a->trace = optarg; break;
		case O_START: if (cli_float("--start", optarg, 0, 1e9, &a->start)) return 2; break;
		case O_DURATION: if (cli_float("--duration", optarg, 0, 1e9, &a->duration)) return 2; break;
		case O_MAXREQ: if (cli_int("--max-requests", optarg, 0, 1 << 30, &v)) return 2; a->max_requests = (int)v; break;
		case O_RATE: if (cli_float("--rate", optarg, 1e-9, 1e9, &a->rate)) return 2; break;
		case O_LSCALE: if (cli_float("--length-scale", optarg, 1e-6, 1e6, &a->length_scale)) return 2; break;
		case O_REPEAT: if (cli_int("--repeat", optarg, 1, 100000, &v)) return 2; a->repeat = (int)v; break;
		case O_SEED: if (cli_int("--seed", optarg, 0, 1L << 62, &v)) return 2; a->seed = (uint64_t)v; break;
		case O_PROFILE: a->pprofile = a->dprofile = optarg; break;
		case O_PPROFILE: a->pprofile = optarg; break;
		case O_DPROFILE: a->dprofile = optarg; break;
		case O_PREFILL: if (cli_int("--prefill", optarg, 0, ROUTER_MAX_NODES, &v)) return 2; a->sim.n_prefill = (int)v; break;
		case O_DECODE: if (cli_int("--decode", optarg, 1, ROUTER_MAX_NODES, &v)) return 2; a->sim.n_decode = (int)v; break;
		case O_POLICY:
			if (router_policy_parse(optarg, &a->sim.policy))
				return cli_fail("plan", "--policy '%s': length-aware, round-robin, least-loaded or colocated", optarg), 2;
			break;
		case O_LOCALMAX: if (cli_int("--local-max-prompt", optarg, 0, 1 << 24, &v)) return 2; a->sim.local_max_prompt = (int)v; break;
		case O_RTTFT: if (cli_int("--router-slo-ttft-ms", optarg, 0, 1 << 30, &v)) return 2; a->sim.slo_ttft_ms = (int)v; break;
		case O_RTBT: if (cli_int("--router-slo-tbt-ms", optarg, 0, 1 << 30, &v)) return 2; a->sim.slo_tbt_ms = (int)v; break;
		case O_REPORT: if (cli_int("--report-ms", optarg, 1, 1 << 20, &v)) return 2; a->sim.report_ms = (int)v; break;
		case O_CLIENT: if (cli_float("--client-ms", optarg, 0, 1e6, &a->sim.client_ms)) return 2; break;
		case O_FIRST:
			if (strcmp(optarg, "decode") && strcmp(optarg, "prefill"))
				return cli_fail("plan", "--first-token '%s': decode or prefill", optarg), 2;
			a->sim.first_token_prefill = !strcmp(optarg, "prefill");
			break;
		case O_MAXQ: if (cli_int("--max-queue", optarg, 0, 1 << 20, &v)) return 2; a->sim.max_queue = (int)v; break;
		case O_QTIMEOUT: if (cli_int("--queue-timeout-ms", optarg, 0, 3600000, &v)) return 2; a->sim.queue_timeout_ms = (int)v; break;
		case O_PCACHE:
			if (strcmp(optarg, "auto") && strcmp(optarg, "on") && strcmp(optarg, "off"))
				return cli_fail("plan", "--prefix-cache '%s': auto, on or off", optarg), 2;
			a->sim.prefix_cache = !strcmp(optarg, "auto") ? -1 : !strcmp(optarg, "on");
			break;
		case O_ADMIT:
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				return cli_fail("plan", "--tbt-admission '%s': on or off", optarg), 2;
			a->sim.tbt_admission = !strcmp(optarg, "on");
			break;
		case O_SPREAD:
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				return cli_fail("plan", "--step-spread '%s': on or off", optarg), 2;
			a->sim.step_spread = !strcmp(optarg, "on");
			break;
		case O_MACHINE: if (cli_int("--machine-nodes", optarg, 1, ROUTER_MAX_NODES, &v)) return 2; a->sim.machine_nodes = (int)v; break;
		case O_SLOTTFT: if (cli_float("--slo-ttft", optarg, 1e-6, 1e6, &a->slo_ttft)) return 2; break;
		case O_SLOTBT: if (cli_float("--slo-tbt", optarg, 1e-6, 1e6, &a->slo_tbt)) return 2; break;
		case O_SWEEP:
			if ((a->n_sweep = parse_list("--sweep", optarg, a->sweep, REPLAY_MAX_SWEEP, 1e-6, 1e6)) < 1)
				return cli_fail("plan", "--sweep expects up to %d rate multipliers like 1,2,3", REPLAY_MAX_SWEEP), 2;
			break;
		case O_OUT: a->out = optarg; break;
		case O_LABEL: a->label = optarg; break;
		case O_NOPLOTS: a->no_plots = 1; break;
		case O_NODETYPE:
			if (a->n_types == PLAN_MAX_TYPES)
				return cli_fail("plan", "at most %d --node-type", PLAN_MAX_TYPES), 2;
			a->types[a->n_types++] = optarg;
			break;
		case O_BUDGET: if (cli_float("--budget", optarg, 0, 1e12, &a->budget)) return 2; break;
		case O_MAXNODES: if (cli_int("--max-nodes", optarg, 1, ROUTER_MAX_NODES, &v)) return 2; a->max_nodes = (int)v; break;
		case O_POLICIES: a->policies = optarg; break;
		case O_ATTAIN: if (cli_float("--attainment", optarg, 0, 1, &a->attainment)) return 2; break;
		case O_CSV: a->csv = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc)
		return cli_fail("plan", "unexpected argument '%s'", argv[optind]), 2;
	if (!a->trace)
		return cli_fail("plan", "--trace FILE is required (--help for usage)"), 2;
	if (a->slo_ttft <= 0 || a->slo_tbt <= 0)
		return cli_fail("plan", "--slo-ttft and --slo-tbt (seconds) are required"), 2;
	return -1;
}

int cmd_plan(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	if (!strcmp(sub, "scale"))
		return scale_cmd(argc - 1, argv + 1);
	if (strcmp(sub, "simulate") && strcmp(sub, "search"))
		return cli_fail("plan", "unknown subcommand '%s': simulate, search or scale", sub), 2;
	struct plan_args a = {.length_scale = 1, .repeat = 1, .seed = 1, .out = "plan-out",
			      .budget = 100, .max_nodes = ROUTER_MAX_NODES, .attainment = 0.9,
			      .policies = "length-aware",
			      .sim = {.n_prefill = 1, .n_decode = 1, .policy = ROUTER_POLICY_LENGTH_AWARE,
				      .local_max_prompt = 64, .report_ms = SIM_DEFAULT_REPORT_MS,
				      .prefix_cache = -1, .max_queue = ROUTER_DEFAULT_MAX_QUEUE,
				      .queue_timeout_ms = ROUTER_DEFAULT_QUEUE_TIMEOUT_MS,
				      .step_spread = 1}};
	int rc = parse(argc - 1, argv + 1, &a);
	if (rc >= 0)
		return rc;
	return !strcmp(sub, "simulate") ? plan_simulate(&a) : plan_search(&a);
}
