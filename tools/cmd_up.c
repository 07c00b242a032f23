/* duet up: a whole local cluster from one command, without systemd: the
 * router and P prefill plus D decode nodes, each pinned to a CPU, until
 * Ctrl-C. The daemons are the binaries beside this one. A daemon that
 * exits is started again after a backoff (as systemd's Restart=on-failure
 * would); the router places the work of a lost node elsewhere meanwhile. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/cpu.h"
#include "cli.h"
#include "commands.h"
#include "http_get.h"
#include "mkmodel/model_write.h"
#include "net/curve.h"

#define UP_MAX_NODES 32
#define UP_MAX_EXTRA 16 /* --node-arg, --decode-arg, --prefill-arg, --router-arg each */
#define UP_READY_TIMEOUT_S 300
#define UP_DEFAULT_SHAPE "stories110m"
#define UP_MAX_ARGS 64
/* Restart backoff: doubles from the first to the last while a daemon keeps
 * dying young; one that ran UP_STABLE_S starts over from the first. */
#define UP_BACKOFF_FIRST_MS 500
#define UP_BACKOFF_MAX_MS 30000
#define UP_STABLE_S 30

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

struct child {
	char name[32];
	pid_t pid;
	char *argv[UP_MAX_ARGS + 1]; /* copies, to start it again */
	int restarts, backoff_ms;
	long long started_ms, restart_at_ms; /* restart_at_ms 0: none due */
};

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: duet up [options]\n\n"
		"Starts a local cluster: duet-router, P prefill and D decode nodes (the\n"
		"binaries next to this one), each node pinned to its own CPU where there\n"
		"are enough, and serves until Ctrl-C, which stops everything cleanly.\n"
		"Logs go to DIR/NAME.log.\n\n"
		"  -m, --model FILE    model to serve; default: a stories110m-shaped random model\n"
		"                      made once with `duet mkmodel` into ~/.cache/duet/, with the\n"
		"                      Llama-2 vocabulary of ../shared/models (or DUET_SHARED_MODELS)\n"
		"                      when present, else a built-in byte-level vocabulary\n"
		"  -P, --prefill N     prefill nodes (default 1)\n"
		"  -D, --decode N      decode nodes (default 1)\n"
		"      --policy NAME   length-aware (default), round-robin, least-loaded, colocated\n"
		"      --host ADDR     HTTP address (default 127.0.0.1)\n"
		"      --port N        HTTP port (default 8080)\n"
		"  -t, --threads N     threads per node (default 1)\n"
		"      --node-cpus LIST CPUs the nodes are pinned over, e.g. 0-3,8: node k gets\n"
		"                      the next N (--threads) of them, round the list (default:\n"
		"                      the CPUs duet up may run on; give it when duet up itself\n"
		"                      is pinned, e.g. under taskset with the router)\n"
		"      --kv-mb N       KV pool per node in MB (default 2048)\n"
		"      --kv-prefault   nodes take their KV memory at start, as the daemons do by\n"
		"                      default (kv-prefault); without it the nodes of this one\n"
		"                      machine take pages as KV fills them, and start in a\n"
		"                      second instead of several\n"
		"      --dir DIR       run directory for sockets and logs (default: a new /tmp/duet-up-*)\n"
		"      --node-arg ARG  pass ARG to every prefill and decode node, e.g.\n"
		"                      --node-arg=--max-batch-tokens=128 (repeatable, up to %d)\n"
		"      --decode-arg ARG pass ARG to every decode node only, e.g.\n"
		"                      --decode-arg=--spec-lookup=3 (repeatable, up to 16)\n"
		"      --prefill-arg ARG pass ARG to every prefill node only, e.g.\n"
		"                      --prefill-arg=--max-batch-tokens=512, a prefill node's\n"
		"                      forward passes longer than decode nodes' chunks, as it\n"
		"                      runs no streams (repeatable, up to 16)\n"
		"      --router-arg ARG pass ARG to the router, e.g. --router-arg=--local-max-prompt=0\n"
		"      --curve         encrypt and authenticate every ZeroMQ link: key pairs for\n"
		"                      each daemon go to DIR/keys, every node key on one allow-list\n"
		"      --no-restart    stop the whole cluster when any daemon exits (for scripts);\n"
		"                      by default a daemon that exits is started again after\n"
		"                      0.5 s, doubling to 30 s while it keeps failing\n"
		"      --trace         every daemon writes a Chrome trace-event file,\n"
		"                      DIR/NAME.trace.json; `duet trace merge` joins them\n"
		"  -h, --help          this help\n", UP_MAX_EXTRA);
}

/* Node k's --cpus: entries [k*threads, (k+1)*threads) of list, round it
 * (each CPU once: more threads than CPUs share them). */
static void node_cpu_list(const int *list, int n, int k, int threads, char *out, size_t cap)
{
	size_t len = 0;
	out[0] = 0;
	for (int j = 0; j < threads && j < n; j++) {
		int c = list[((long)k * threads + j) % n];
		len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s%d", j ? "," : "", c);
	}
}

/* Where this binary's sibling daemons and the shared vocabulary are. */
static int exe_dir(char *out, size_t cap)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return -1;
	exe[n] = 0;
	snprintf(out, cap, "%s", dirname(exe));
	return 0;
}

static const char *find_vocab(const char *bin, char *buf, size_t cap)
{
	const char *env = getenv("DUET_SHARED_MODELS");
	const char *cands[3] = {env, NULL, "/work/shared/models"};
	char up[PATH_MAX + 32];
	snprintf(up, sizeof up, "%s/../../shared/models", bin);
	cands[1] = up;
	for (int i = 0; i < 3; i++) {
		if (!cands[i])
			continue;
		snprintf(buf, cap, "%s/ggml-vocab-llama-spm.gguf", cands[i]);
		if (access(buf, R_OK) == 0)
			return buf;
	}
	return NULL;
}

static int run_wait(char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* The default model, made once. */
static int default_model(const char *bin, char *out, size_t cap)
{
	const char *home = getenv("HOME");
	char dir[PATH_MAX / 2], vocab[PATH_MAX];
	/* The Llama-2 vocabulary when it is here, else the built-in
	 * byte-level one (so any fresh machine can serve). */
	int llama = find_vocab(bin, vocab, sizeof vocab) != NULL;
	if (!llama)
		snprintf(vocab, sizeof vocab, "%s", DUET_VOCAB_BUILTIN_BYTES);
	snprintf(dir, sizeof dir, "%s/.cache/duet", home && *home ? home : "/tmp");
	snprintf(out, cap, "%s/%s%s.gguf", dir, UP_DEFAULT_SHAPE, llama ? "" : "-bytes");
	if (access(out, R_OK) == 0)
		return 0;
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof cmd, "%s/.cache", home && *home ? home : "/tmp");
	mkdir(cmd, 0755);
	if (mkdir(dir, 0755) && errno != EEXIST)
		return cli_fail("up", "cannot create %s: %s", dir, strerror(errno));
	char self[PATH_MAX + 16], tmp[PATH_MAX + 16];
	snprintf(self, sizeof self, "%s/duet", bin);
	snprintf(tmp, sizeof tmp, "%s.tmp", out);
	fprintf(stderr, "duet up: making %s (once)\n", out);
	char *argv[] = {self, "mkmodel", "--shape", UP_DEFAULT_SHAPE, "--vocab", vocab, "-o", tmp, NULL};
	if (run_wait(argv) || rename(tmp, out))
		return cli_fail("up", "could not make the default model %s", out);
	return 0;
}

/* Nodes up according to the router's /metrics, or -1 if it does not answer. */
static int nodes_up(const char *base)
{
	char url[400], *body = NULL;
	long code;
	struct duet_err err;
	snprintf(url, sizeof url, "%s/metrics", base);
	int up = -1;
	if (http_get(url, NULL, 2, &body, &code, &err) == 0 && body) {
		up = 0;
		for (const char *p = body; (p = strstr(p, "duet_node_up{")); p++) {
			const char *e = strchr(p, '}');
			if (e && strncmp(e, "} 1", 3) == 0)
				up++;
		}
	}
	free(body);
	return up;
}

/* Starts child c from its argv (stderr to DIR/NAME.log). */
static pid_t start(const char *dir, struct child *c)
{
	char log[PATH_MAX];
	const char *name = c->name;
	char *const *argv = c->argv;
	snprintf(log, sizeof log, "%s/%s.log", dir, name);
	c->started_ms = now_ms();
	c->restart_at_ms = 0;
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen(log, "a", stderr))
			_exit(126);
		signal(SIGINT, SIG_IGN); /* Ctrl-C reaches us; we stop them in order */
		execv(argv[0], argv);
		_exit(127);
	}
	return c->pid = pid;
}

/* c's name and a copy of argv; -1 if it does not fit or memory is out. */
static int child_init(struct child *c, const char *name, char *const argv[])
{
	memset(c, 0, sizeof *c);
	snprintf(c->name, sizeof c->name, "%s", name);
	c->backoff_ms = UP_BACKOFF_FIRST_MS;
	for (int i = 0; argv[i]; i++) {
		if (i == UP_MAX_ARGS || !(c->argv[i] = strdup(argv[i])))
			return -1;
	}
	return 0;
}

static void child_free(struct child *c)
{
	for (int i = 0; c->argv[i]; i++)
		free(c->argv[i]);
	memset(c->argv, 0, sizeof c->argv);
}

/* A daemon died: schedule its restart, after longer and longer pauses while
 * it keeps dying young. */
static void schedule_restart(struct child *c, int st, const char *dir)
{
	long long now = now_ms();
	if (now - c->started_ms >= UP_STABLE_S * 1000LL)
		c->backoff_ms = UP_BACKOFF_FIRST_MS;
	fprintf(stderr, "duet up: %s exited (%s %d); restarting it in %.1f s (see %s/%s.log)\n",
		c->name, WIFSIGNALED(st) ? "signal" : "status",
		WIFSIGNALED(st) ? WTERMSIG(st) : WIFEXITED(st) ? WEXITSTATUS(st) : -1,
		c->backoff_ms / 1000.0, dir, c->name);
	c->pid = 0;
	c->restart_at_ms = now + c->backoff_ms;
	c->backoff_ms = c->backoff_ms * 2 > UP_BACKOFF_MAX_MS ? UP_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void stop_all(struct child *c, int n)
{
	/* All at once: the router ends open streams with an error and cancels
	 * their work, so the nodes have nothing left to drain. */
	for (int i = n - 1; i >= 0; i--)
		if (c[i].pid > 0)
			kill(c[i].pid, SIGTERM);
	for (int i = n - 1; i >= 0; i--)
		if (c[i].pid > 0) {
			waitpid(c[i].pid, NULL, 0);
			c[i].pid = 0;
		}
}

/* DIR/router.{key,pub}, one pair per node, and DIR/nodes.allow with every
 * node's public key (the router's and the decode nodes' allow-list). */
static int make_keys(const char *dir, int n_prefill, int n_decode)
{
	struct duet_err err;
	char path[PATH_MAX + 32], name[32];
	if (mkdir(dir, 0700) && errno != EEXIST)
		return cli_fail("up", "cannot create %s: %s", dir, strerror(errno));
	snprintf(path, sizeof path, "%s/nodes.allow", dir);
	FILE *allow = fopen(path, "w");
	if (!allow)
		return cli_fail("up", "cannot create %s: %s", path, strerror(errno));
	int rc = 0;
	for (int k = -1; k < n_prefill + n_decode && !rc; k++) {
		struct duet_curve_key key;
		if (k < 0)
			snprintf(name, sizeof name, "router");
		else
			snprintf(name, sizeof name, "%s-%d", k < n_prefill ? "prefill" : "decode",
				 k < n_prefill ? k : k - n_prefill);
		if (duet_curve_keygen(&key, &err) || duet_curve_write(dir, name, &key, &err))
			rc = cli_fail("up", "%s", err.msg);
		else if (k >= 0)
			fprintf(allow, "%s %s\n", key.pub, name);
	}
	if (fclose(allow) && !rc)
		rc = cli_fail("up", "cannot write %s", path);
	return rc;
}

/* Appends to a NULL-terminated argv with room for them. */
static void append_args(char **argv, char *const *extra, int n)
{
	int k = 0;
	while (argv[k])
		k++;
	for (int i = 0; i < n; i++)
		argv[k++] = extra[i];
	argv[k] = NULL;
}

int cmd_up(int argc, char **argv)
{
	const char *model = NULL, *policy = "length-aware", *host = "127.0.0.1", *dir_opt = NULL;
	long n_prefill = 1, n_decode = 1, port = 8080, threads = 1, kv_mb = 2048;
	char *node_extra[UP_MAX_EXTRA], *router_extra[UP_MAX_EXTRA], *decode_extra[UP_MAX_EXTRA],
		*prefill_extra[UP_MAX_EXTRA];
	int n_node_extra = 0, n_router_extra = 0, n_decode_extra = 0, n_prefill_extra = 0, curve = 0, trace = 0,
	    no_restart = 0, prefault = 0;
	static const struct option opts[] = {
		{"model", required_argument, 0, 'm'}, {"prefill", required_argument, 0, 'P'},
		{"decode", required_argument, 0, 'D'}, {"policy", required_argument, 0, 'p'},
		{"host", required_argument, 0, 'H'},  {"port", required_argument, 0, 'o'},
		{"threads", required_argument, 0, 't'}, {"kv-mb", required_argument, 0, 'k'},
		{"dir", required_argument, 0, 'd'},   {"help", no_argument, 0, 'h'},
		{"node-arg", required_argument, 0, 'N'}, {"router-arg", required_argument, 0, 'R'},
		{"decode-arg", required_argument, 0, 'A'}, {"prefill-arg", required_argument, 0, 'F'},
		{"curve", no_argument, 0, 'C'}, {"trace", no_argument, 0, 'T'},
		{"no-restart", no_argument, 0, 'n'}, {"node-cpus", required_argument, 0, 'c'},
		{"kv-prefault", no_argument, 0, 'K'},
		{0, 0, 0, 0}};
	int node_cpus[DUET_MAX_THREADS], n_node_cpus = duet_cpu_allowed(node_cpus, DUET_MAX_THREADS);
	int ch;
	while ((ch = getopt_long(argc, argv, "m:P:D:t:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'm': model = optarg; break;
		case 'P': if (cli_int("--prefill", optarg, 0, 16, &n_prefill)) return 2; break;
		case 'D': if (cli_int("--decode", optarg, 1, 15, &n_decode)) return 2; break;
		case 'p': policy = optarg; break;
		case 'H': host = optarg; break;
		case 'o': if (cli_int("--port", optarg, 1, 65535, &port)) return 2; break;
		case 't': if (cli_int("--threads", optarg, 1, 256, &threads)) return 2; break;
		case 'k': if (cli_int("--kv-mb", optarg, 1, 1 << 22, &kv_mb)) return 2; break;
		case 'd': dir_opt = optarg; break;
		case 'C': curve = 1; break;
		case 'T': trace = 1; break;
		case 'n': no_restart = 1; break;
		case 'K': prefault = 1; break;
		case 'c': {
			struct duet_err err;
			if (duet_cpu_parse_list(optarg, node_cpus, DUET_MAX_THREADS, &n_node_cpus, &err)) {
				cli_fail("up", "--node-cpus: %s", err.msg);
				return 2;
			}
			break;
		}
		case 'N':
		case 'R':
		case 'A':
		case 'F': {
			int *cnt = ch == 'N'   ? &n_node_extra
				   : ch == 'R' ? &n_router_extra
				   : ch == 'A' ? &n_decode_extra
					       : &n_prefill_extra;
			char **arr = ch == 'N' ? node_extra : ch == 'R' ? router_extra : ch == 'A' ? decode_extra : prefill_extra;
			if (*cnt == UP_MAX_EXTRA)
				return cli_fail("up",
						"at most %d of each of --node-arg, --decode-arg, --prefill-arg and --router-arg",
						UP_MAX_EXTRA);
			arr[(*cnt)++] = optarg;
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	char bin[PATH_MAX / 2], model_buf[PATH_MAX], dir[PATH_MAX / 2];
	if (exe_dir(bin, sizeof bin))
		return cli_fail("up", "cannot find its own binary");
	if (!model) {
		if (default_model(bin, model_buf, sizeof model_buf))
			return 1;
		model = model_buf;
	} else if (access(model, R_OK)) {
		return cli_fail("up", "%s: %s", model, strerror(errno));
	}
	if (dir_opt) {
		snprintf(dir, sizeof dir, "%s", dir_opt);
		if (mkdir(dir, 0755) && errno != EEXIST)
			return cli_fail("up", "cannot create %s: %s", dir, strerror(errno));
	} else {
		snprintf(dir, sizeof dir, "/tmp/duet-up-XXXXXX");
		if (!mkdtemp(dir))
			return cli_fail("up", "cannot create a run directory: %s", strerror(errno));
	}
	char keys[PATH_MAX / 2 + 16];
	snprintf(keys, sizeof keys, "%s/keys", dir);
	if (curve && make_keys(keys, (int)n_prefill, (int)n_decode))
		return 1;
	char path[PATH_MAX + 32], ctl[PATH_MAX + 16], port_s[16], threads_s[16], kv_s[16];
	snprintf(ctl, sizeof ctl, "ipc://%s/router.ipc", dir);
	snprintf(port_s, sizeof port_s, "%ld", port);
	snprintf(threads_s, sizeof threads_s, "%ld", threads);
	snprintf(kv_s, sizeof kv_s, "%ld", kv_mb);
	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct child kids[UP_MAX_NODES];
	int n = 0;
	snprintf(path, sizeof path, "%s/duet-router", bin);
	char *rargv[16 + UP_MAX_EXTRA] = {path, "--model", (char *)model, "--control", ctl,
					  "--policy", (char *)policy, "--http-addr", (char *)host,
					  "--http-port", port_s};
	char key_arg[PATH_MAX + 64], allow_arg[PATH_MAX + 32], router_pub_arg[PATH_MAX + 32];
	snprintf(allow_arg, sizeof allow_arg, "--curve-allow=%s/nodes.allow", keys);
	snprintf(router_pub_arg, sizeof router_pub_arg, "--curve-router-key=%s/router.pub", keys);
	if (curve) {
		snprintf(key_arg, sizeof key_arg, "--curve-key=%s/router.key", keys);
		char *c[] = {key_arg, allow_arg};
		append_args(rargv, c, 2);
	}
	char trace_arg[PATH_MAX + 64];
	if (trace) {
		snprintf(trace_arg, sizeof trace_arg, "--trace=%s/router.trace.json", dir);
		char *t[] = {trace_arg};
		append_args(rargv, t, 1);
	}
	append_args(rargv, router_extra, n_router_extra);
	if (child_init(&kids[n], "router", rargv))
		return cli_fail("up", "router: too many arguments");
	start(dir, &kids[n++]);
	for (int k = 0; k < n_prefill + n_decode; k++) {
		int is_prefill = k < n_prefill;
		char name[32], cpus[DUET_MAX_THREADS * 6], kv_ep[PATH_MAX + 32],
			node_path[PATH_MAX + 32];
		snprintf(name, sizeof name, "%s-%d", is_prefill ? "prefill" : "decode",
			 is_prefill ? k : k - (int)n_prefill);
		node_cpu_list(node_cpus, n_node_cpus, k, (int)threads, cpus, sizeof cpus);
		snprintf(kv_ep, sizeof kv_ep, "ipc://%s/%s-kv.ipc", dir, name);
		snprintf(node_path, sizeof node_path, "%s/%s", bin, is_prefill ? "duet-prefill" : "duet-decode");
		char *nargv[24 + 2 * UP_MAX_EXTRA] = {node_path, "--model", (char *)model, "--name", name,
						  "--router", ctl, "--threads", threads_s, "--cpus",
						  cpus, "--kv-mb", kv_s,
						  prefault ? "--kv-prefault=true" : "--kv-prefault=false"};
		if (!is_prefill) {
			char *kv[] = {"--kv-endpoint", kv_ep};
			append_args(nargv, kv, 2);
		}
		if (curve) {
			snprintf(key_arg, sizeof key_arg, "--curve-key=%s/%s.key", keys, name);
			char *c[] = {key_arg, router_pub_arg, allow_arg};
			append_args(nargv, c, is_prefill ? 2 : 3);
		}
		char node_trace[PATH_MAX + 64];
		if (trace) {
			snprintf(node_trace, sizeof node_trace, "--trace=%s/%s.trace.json", dir, name);
			char *t[] = {node_trace};
			append_args(nargv, t, 1);
		}
		append_args(nargv, node_extra, n_node_extra);
		if (is_prefill)
			append_args(nargv, prefill_extra, n_prefill_extra);
		else
			append_args(nargv, decode_extra, n_decode_extra);
		if (child_init(&kids[n], name, nargv)) {
			stop_all(kids, n);
			return cli_fail("up", "%s: too many arguments", name);
		}
		start(dir, &kids[n++]);
	}
	char base[300];
	snprintf(base, sizeof base, "http://%s:%ld", host, port);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fprintf(stderr, "duet up: starting %ld prefill and %ld decode nodes (logs in %s)\n", n_prefill,
		n_decode, dir);
	int status = 0;
	time_t t0 = time(NULL);
	int ready = 0;
	while (!g_stop) {
		int st;
		pid_t dead;
		while ((dead = waitpid(-1, &st, WNOHANG)) > 0)
			for (int i = 0; i < n; i++) {
				if (kids[i].pid != dead)
					continue;
				/* status 2 is a daemon refusing its flags or
				 * configuration: starting it again cannot help */
				int bad_usage = WIFEXITED(st) && WEXITSTATUS(st) == 2;
				if (no_restart || bad_usage) {
					fprintf(stderr, "duet up: %s exited (status %d); see %s/%s.log\n",
						kids[i].name, WIFEXITED(st) ? WEXITSTATUS(st) : -1, dir,
						kids[i].name);
					kids[i].pid = 0;
					status = 1;
				} else {
					schedule_restart(&kids[i], st, dir);
				}
			}
		if (status)
			break;
		long long now = now_ms();
		for (int i = 0; i < n; i++)
			if (!kids[i].pid && kids[i].restart_at_ms && now >= kids[i].restart_at_ms) {
				kids[i].restarts++;
				fprintf(stderr, "duet up: starting %s again (restart %d)\n", kids[i].name,
					kids[i].restarts);
				start(dir, &kids[i]);
			}
		if (!ready) {
			int up = nodes_up(base);
			if (up == n_prefill + n_decode) {
				ready = 1;
				printf("duet up: serving %s at %s (%ld prefill, %ld decode, policy %s)\n"
				       "  try: curl -N %s/v1/completions -H 'Content-Type: application/json' "
				       "-d '{\"prompt\": \"Once upon a time\", \"max_tokens\": 32, \"stream\": true}'\n"
				       "  Ctrl-C stops the cluster.\n",
				       model, base, n_prefill, n_decode, policy, base);
				fflush(stdout);
			} else if (time(NULL) - t0 > UP_READY_TIMEOUT_S) {
				fprintf(stderr, "duet up: the cluster did not come up in %d s; see %s\n",
					UP_READY_TIMEOUT_S, dir);
				status = 1;
				break;
			}
		}
		usleep(200000);
	}
	fprintf(stderr, "duet up: stopping\n");
	stop_all(kids, n);
	for (int i = 0; i < n; i++)
		child_free(&kids[i]);
	curl_global_cleanup();
	return status;
}
