/* The daemons' benchmark (make bench-daemons): KV transfer rate over tcp
 * loopback and ipc per transit dtype against memcpy, the overlap of KV
 * streaming with prefill, and decode-node throughput at 1, 4 and 16
 * running sequences against the same decode in this process (the daemon
 * should keep up with its engine), and what a long prompt joining running
 * streams costs them and itself, handed over or prefilled locally. Every
 * node stores KV_DTYPE rows (f16 by default), as the in-process engine
 * does; the decode node and the engine both hold the weights in huge
 * pages.
 * Usage: bench_daemons BIN_DIR MODEL [REPS [KV_DTYPE [SECTIONS]]], SECTIONS
 * a comma list of transfer,overlap,decode,handoff (default: all). */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tests/driver.h"
#include "base/cpu.h"
#include "bench/ceilings.h"
#include "engine/forward.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "base/kvrow.h"

#define CHUNKS 200

static enum duet_kv_dtype g_kv = DUET_KV_F16;

struct sender {
	const char *endpoint;
	size_t plen;
	void *zctx;
};

static void *send_main(void *arg)
{
	struct sender *s = arg;
	void *sock;
	struct duet_err err;
	struct duet_zsock_opts o = {.sndhwm = 64, .send_timeout_ms = -1, .linger_ms = -1};
	if (duet_zsock(s->zctx, ZMQ_PUSH, s->endpoint, 0, &o, &sock, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return NULL;
	}
	Duet__Cancel c = DUET__CANCEL__INIT;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_CANCEL, &c);
	for (int i = 0; i < CHUNKS; i++) {
		void *p = malloc(s->plen);
		memset(p, i, s->plen);
		if (duet_zsend(sock, NULL, &m, p, s->plen, &err))
			fprintf(stderr, "%s\n", err.msg);
	}
	zmq_close(sock);
	return NULL;
}

/* Payload bytes per second from one thread's PUSH to a PULL here. */
static double transfer(void *zctx, const char *endpoint, size_t plen)
{
	void *pull;
	struct duet_err err;
	if (duet_zsock(zctx, ZMQ_PULL, endpoint, 1, NULL, &pull, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 0;
	}
	struct sender s = {endpoint, plen, zctx};
	long long t0 = duet_now_us();
	pthread_t th;
	pthread_create(&th, NULL, send_main, &s);
	for (int got = 0; got < CHUNKS;) {
		zmq_pollitem_t it = {pull, 0, ZMQ_POLLIN, 0};
		zmq_poll(&it, 1, 1000);
		struct duet_inmsg in;
		while (duet_zrecv(pull, 0, &in, &err) == 1) {
			got++;
			duet_inmsg_close(&in);
		}
	}
	double dt = (double)(duet_now_us() - t0) * 1e-6;
	pthread_join(th, NULL);
	zmq_close(pull);
	return (double)plen * CHUNKS / dt;
}

static double memcpy_rate(size_t plen)
{
	char *a = malloc(plen), *b = malloc(plen);
	memset(a, 1, plen);
	memset(b, 2, plen);
	long long t0 = duet_now_us();
	for (int i = 0; i < CHUNKS; i++) {
		a[0] = (char)i;
		memcpy(b, a, plen);
	}
	double dt = (double)(duet_now_us() - t0) * 1e-6;
	volatile char sink = b[plen / 2];
	(void)sink;
	free(a);
	free(b);
	return (double)plen * CHUNKS / dt;
}

static void bench_transfer(const struct duet_model *m, const char *dir)
{
	int n = 512;
	void *zctx = zmq_ctx_new();
	printf("\n## KV transfer: one layer of %d positions per message (%s)\n\n", n, m->name);
	printf("| dtype | bytes/msg | memcpy GB/s | ipc GB/s | ipc/memcpy | tcp GB/s | tcp/memcpy | tcp Ktok-layers/s |\n");
	printf("|---|---|---|---|---|---|---|---|\n");
	const enum duet_kv_dtype types[] = {DUET_KV_F32, DUET_KV_F16, DUET_KV_INT8};
	for (int t = 0; t < 3; t++) {
		size_t plen = 2 * (size_t)n *
			      duet_kv_row_bytes(types[t], m->cfg.n_kv_heads, m->cfg.head_dim);
		char ipc[300];
		snprintf(ipc, sizeof ipc, "ipc://%s/bench-%d.ipc", dir, t);
		char tcp[64];
		snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", 25700 + t);
		double mc = memcpy_rate(plen), ip = transfer(zctx, ipc, plen),
		       tc = transfer(zctx, tcp, plen);
		printf("| %s | %zu | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f |\n",
		       duet_kv_dtype_name(types[t]), plen, mc / 1e9, ip / 1e9, ip / mc, tc / 1e9,
		       tc / mc, tc / (double)plen * n / 1e3);
		fflush(stdout);
	}
	zmq_ctx_term(zctx);
}

static struct drv D;
/* One core's ceilings, measured first: each daemon runs on one core. */
static double g_gflops, g_gbps;

/* Stops the daemons on every way out, exit(1) included. */
static void stop_daemons(void)
{
	drv_stop_nodes(&D);
}

static char *flag(const char *fmt, int v)
{
	char *s = malloc(32);
	snprintf(s, 32, fmt, v);
	return s;
}

static void spawn(const char *bin_dir, const char *binary, const char *name, const char *model,
		  const char *cpu, char **extra)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", bin_dir, binary);
	char *argv[32] = {path, "--model", (char *)model, "--threads", "1", "--cpus", (char *)cpu,
			  "--report-ms", "100", "--kv-mb", "2048"};
	int n = 11;
	for (int i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	drv_spawn(&D, name, argv, NULL);
	if (!drv_wait_node(&D, name, 120000)) {
		fprintf(stderr, "%s did not start; see %s/%s.log\n", name, D.dir, name);
		exit(1);
	}
}

static void prompt(int *t, int n, int seed)
{
	for (int i = 0; i < n; i++)
		t[i] = 3 + (int)(((unsigned)(i + 1) * 2654435761u + (unsigned)seed * 40503u) % 31000u);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void bench_overlap(const struct duet_model *m, int reps)
{
	printf("\n## Overlap: (prefill start -> KV complete on the decode node) / prefill compute\n\n");
	printf("| prompt | streaming | prefill ms | of sgemm ceiling | to KV complete ms | ratio (median of %d) |\n", reps);
	printf("|---|---|---|---|---|---|\n");
	static int t[4096];
	const int lens[] = {512, 2048};
	const char *pnodes[] = {"prefill-stream", "prefill-nostream"};
	for (int l = 0; l < 2; l++) {
		if (lens[l] >= m->cfg.ctx_len)
			continue;
		for (int s = 0; s < 2; s++) {
			double ratio[16], pre[16], kv[16];
			for (int r = 0; r < reps; r++) {
				prompt(t, lens[l], 1000 * l + 10 * s + r);
				struct drv_params pp = {.max_tokens = 1};
				uint64_t id = drv_submit(&D, pnodes[s], "decode-0", t, lens[l], &pp);
				drv_wait(&D, id, 600000);
				struct drv_req *q = drv_req(&D, id);
				while (!q->t_kv_done && !q->error)
					drv_poll(&D, 10);
				if (q->error) {
					fprintf(stderr, "request failed: %s\n", q->error_msg);
					exit(1);
				}
				pre[r] = (double)q->prefill_us / 1000;
				kv[r] = (double)(q->t_kv_done - q->t_submit) / 1000;
				ratio[r] = kv[r] / pre[r];
			}
			qsort(ratio, (size_t)reps, sizeof *ratio, cmp_double);
			qsort(pre, (size_t)reps, sizeof *pre, cmp_double);
			qsort(kv, (size_t)reps, sizeof *kv, cmp_double);
			/* The ceiling counts the weight products only. */
			double ceil_ms = 2.0 * (double)m->n_matmul_params * lens[l] / (g_gflops * 1e9) * 1e3;
			printf("| %d | %s | %.0f | %.0f%% | %.0f | %.3f |\n", lens[l], s ? "off" : "on",
			       pre[reps / 2], 100 * ceil_ms / pre[reps / 2], kv[reps / 2], ratio[reps / 2]);
			fflush(stdout);
		}
	}
}

/* The baseline: the same decode in this process, on the decode node's CPU,
 * straight through duet_forward (no daemon, no messages). */
static double engine_rate(const struct duet_model *m, int B, int steps)
{
	cpu_set_t all;
	sched_getaffinity(0, sizeof all, &all);
	struct duet_err err;
	int cpu = 1;
	struct duet_kv_geom g = duet_kv_geom_for(m, 0, g_kv);
	struct duet_kv_pool *kv;
	struct duet_engine *e;
	struct duet_engine_opts eo = {.n_threads = 1, .cpus = &cpu, .n_cpus = 1};
	if (duet_cpu_pin_self(cpu, &err) ||
	    duet_kv_pool_create(&kv, &g, B * duet_kv_blocks_for(&g, 16 + steps + 1), &err) ||
	    duet_engine_create(&e, m, kv, &eo, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		exit(1);
	}
	int V = m->cfg.vocab_size;
	struct duet_kv_seq seq[16];
	struct duet_fwd_seq f[16];
	int prompts[16][16], next[16];
	float *logits = malloc(sizeof(float) * (size_t)V * (size_t)B);
	for (int b = 0; b < B; b++) {
		duet_kv_seq_init(&seq[b]);
		prompt(prompts[b], 16, 77 + b);
		f[b] = (struct duet_fwd_seq){&seq[b], prompts[b], 16, DUET_LOGITS_LAST,
					     logits + (size_t)b * V, NULL, 0};
	}
	if (duet_forward(e, f, B, &err))
		fprintf(stderr, "%s\n", err.msg);
	long long t0 = duet_now_us();
	for (int s = 0; s < steps; s++) {
		for (int b = 0; b < B; b++) {
			next[b] = duet_argmax(logits + (size_t)b * V, V);
			f[b].tokens = &next[b];
			f[b].n_tokens = 1;
		}
		if (duet_forward(e, f, B, &err))
			fprintf(stderr, "%s\n", err.msg);
	}
	double dt = (double)(duet_now_us() - t0) * 1e-6;
	for (int b = 0; b < B; b++)
		duet_kv_seq_release(kv, &seq[b]);
	free(logits);
	duet_engine_destroy(e);
	duet_kv_pool_destroy(kv);
	sched_setaffinity(0, sizeof all, &all);
	return (double)B * steps / dt;
}

static void bench_decode(const struct duet_model *m, int reps)
{
	printf("\n## Decode node throughput (local 16-token prompts, 128 tokens each)\n\n");
	printf("| running | tokens/s (median of %d) | ms per step | of bandwidth ceiling | vs 1 running | engine alone t/s | daemon / engine |\n", reps);
	printf("|---|---|---|---|---|---|---|\n");
	const int counts[] = {1, 4, 16};
	double base = 0;
	static int t[16];
	for (int c = 0; c < 3; c++) {
		double rate[16], eng[16];
		for (int r = 0; r < reps; r++) {
			eng[r] = engine_rate(m, counts[c], 127);
			uint64_t ids[16];
			struct drv_params pp = {.max_tokens = 128, .ignore_eos = 1};
			for (int i = 0; i < counts[c]; i++) {
				prompt(t, 16, 77 + i + 100 * r);
				ids[i] = drv_submit_local(&D, "decode-0", t, 16, &pp);
			}
			long long first = 0, last = 0;
			int tokens = 0;
			for (int i = 0; i < counts[c]; i++) {
				drv_wait(&D, ids[i], 600000);
				struct drv_req *q = drv_req(&D, ids[i]);
				if (!first || q->t_first < first)
					first = q->t_first;
				if (q->t_finish > last)
					last = q->t_finish;
				tokens += q->n_tokens - 1;
			}
			rate[r] = tokens / ((double)(last - first) * 1e-6);
			D.n_reqs = 0; /* forget finished requests */
		}
		qsort(rate, (size_t)reps, sizeof *rate, cmp_double);
		qsort(eng, (size_t)reps, sizeof *eng, cmp_double);
		double tps = rate[reps / 2];
		if (c == 0)
			base = tps;
		/* B sequences share one read of the weights per step. */
		double ceiling = counts[c] * g_gbps * 1e9 / (double)m->decode_bytes;
		printf("| %d | %.1f | %.1f | %.0f%% | %.2fx | %.1f | %.2f |\n", counts[c], tps,
		       1000.0 * counts[c] / tps, 100 * tps / ceiling, tps / base, eng[reps / 2],
		       tps / eng[reps / 2]);
		fflush(stdout);
	}
}

/* The largest gap (ms) between consecutive tokens of q that arrived in
 * [t0, t1); with g, every such gap is appended at g[(*n)++] too. */
static double gaps_between(const struct drv_req *q, long long t0, long long t1, double *g, int *n)
{
	double worst = 0;
	for (int k = 1; k < q->n_tokens; k++)
		if (q->t_tok[k - 1] >= t0 && q->t_tok[k] < t1) {
			double v = (double)(q->t_tok[k] - q->t_tok[k - 1]) / 1000;
			if (g)
				g[(*n)++] = v;
			worst = v > worst ? v : worst;
		}
	return worst;
}

/* Waits until request id has at least n tokens (or ended). */
static struct drv_req *wait_tokens(uint64_t id, int n)
{
	struct drv_req *q = drv_req(&D, id);
	long long end = duet_now_us() + 600000000LL;
	while (q->n_tokens < n && !q->finished && !q->error && duet_now_us() < end)
		drv_poll(&D, 1);
	if (q->n_tokens < n) {
		fprintf(stderr, "request %llu: %d tokens of %d (%s)\n", (unsigned long long)id,
			q->n_tokens, n, q->error ? q->error_msg : "ended early");
		exit(1);
	}
	return q;
}

/* A long prompt joins STREAMS running sequences, its KV handed over from
 * the prefill node or prefilled on the decode node in chunks (colocated):
 * what the running streams' worst gap becomes meanwhile, and the new
 * sequence's first-to-second token gap, against a plain step (the streams'
 * median gap before it came). */
#define STREAMS 4
static void bench_handoff(int reps, int len)
{
	printf("\n## A %d-token prompt joins %d running streams\n\n", len, STREAMS);
	printf("| how it arrives | plain step ms | streams' worst gap meanwhile ms | x step "
	       "| its 1st-to-2nd token ms | x step |\n|---|---:|---:|---:|---:|---:|\n");
	static int t[8192];
	for (int how = 0; how < 2; how++) {
		double step[16], worst[16], t2[16];
		for (int r = 0; r < reps; r++) {
			uint64_t ids[STREAMS];
			struct drv_params sp = {.max_tokens = 1000, .ignore_eos = 1};
			for (int i = 0; i < STREAMS; i++) {
				prompt(t, 16, 500 + i + 100 * r);
				ids[i] = drv_submit_local(&D, "decode-0", t, 16, &sp);
			}
			for (int i = 0; i < STREAMS; i++)
				wait_tokens(ids[i], 24);
			long long t0 = duet_now_us();
			prompt(t, len, 9000 + 10 * r + how);
			struct drv_params lp = {.max_tokens = 4, .ignore_eos = 1};
			uint64_t id = how ? drv_submit_local(&D, "decode-0", t, len, &lp)
					  : drv_submit(&D, "prefill-stream", "decode-0", t, len, &lp);
			struct drv_req *q = wait_tokens(id, 2);
			long long t1 = q->t_tok[1];
			static double g[STREAMS * 1000];
			int ng = 0;
			worst[r] = 0;
			for (int i = 0; i < STREAMS; i++) {
				double w = gaps_between(drv_req(&D, ids[i]), t0, t1 + 1, NULL, NULL);
				worst[r] = w > worst[r] ? w : worst[r];
				gaps_between(drv_req(&D, ids[i]), 0, t0, g, &ng);
			}
			qsort(g, (size_t)ng, sizeof *g, cmp_double);
			step[r] = g[ng / 2];
			t2[r] = (double)(q->t_tok[1] - q->t_tok[0]) / 1000;
			drv_wait(&D, id, 600000);
			for (int i = 0; i < STREAMS; i++)
				drv_cancel(&D, "decode-0", ids[i]);
			for (int i = 0; i < STREAMS; i++)
				drv_wait(&D, ids[i], 600000);
			D.n_reqs = 0;
		}
		qsort(step, (size_t)reps, sizeof *step, cmp_double);
		qsort(worst, (size_t)reps, sizeof *worst, cmp_double);
		qsort(t2, (size_t)reps, sizeof *t2, cmp_double);
		double s = step[reps / 2];
		printf("| %s | %.1f | %.1f | %.2f | %.1f | %.2f |\n",
		       how ? "prefilled here in chunks (colocated)" : "KV from the prefill node", s,
		       worst[reps / 2], worst[reps / 2] / s, t2[reps / 2], t2[reps / 2] / s);
		fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: bench_daemons BIN_DIR MODEL [REPS [KV_DTYPE [SECTIONS]]]\n");
		return 2;
	}
	int reps = argc > 3 ? atoi(argv[3]) : 3;
	if (reps < 1 || reps > 16)
		reps = 3;
	const char *kv_name = argc > 4 ? argv[4] : "f16";
	const char *sections = argc > 5 ? argv[5] : "transfer,overlap,decode,handoff";
#define SECTION(name) (strstr(sections, name) != NULL)
	if (duet_kv_dtype_parse(kv_name, &g_kv)) {
		fprintf(stderr, "KV_DTYPE '%s': want f16, int8 or f32\n", kv_name);
		return 2;
	}
	struct duet_model *m;
	struct duet_err err;
	struct duet_model_opts mo = {.weights = DUET_WEIGHTS_HUGEPAGES};
	if (duet_model_open(&m, argv[2], &mo, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	char dir[] = "/tmp/duet-bench-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	printf("# duet daemons benchmark: %s (%s), %d layers, kv_dim %d, KV rows %s\n", argv[2],
	       m->name, m->cfg.n_layers, m->cfg.n_kv_heads * m->cfg.head_dim, kv_name);
	struct duet_sgemm_ceiling sg;
	struct duet_bw_ceiling bw;
	if (duet_measure_sgemm(2048, 1, 3, &sg, &err) ||
	    duet_measure_bandwidth((size_t)1 << 30, 1, 3, &bw, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	g_gflops = sg.gflops;
	g_gbps = bw.gbps;
	printf("one core: sgemm %.0f GFLOP/s, read bandwidth %.1f GB/s; %.0f MB of weights read per "
	       "decode step\n",
	       g_gflops, g_gbps, (double)m->decode_bytes / 1e6);
	if (SECTION("transfer"))
		bench_transfer(m, dir);
	if (drv_open(&D, dir))
		return 1;
	atexit(stop_daemons);
	char ep[300];
	snprintf(ep, sizeof ep, "ipc://%s/decode-0.ipc", dir);
	spawn(argv[1], "duet-decode", "decode-0", argv[2], "1",
	      (char *[]){"--kv-endpoint", ep, "--max-requests", "32", "--kv-dtype", (char *)kv_name,
			 NULL});
	char *common[] = {"--prefix-cache-mb", "0", "--kv-dtype", (char *)kv_name, "--max-batch-tokens",
			  flag("%d", 2048), NULL, NULL, NULL};
	spawn(argv[1], "duet-prefill", "prefill-stream", argv[2], "0", common);
	common[6] = "--stream-layers";
	common[7] = "false";
	spawn(argv[1], "duet-prefill", "prefill-nostream", argv[2], "0", common);
	if (SECTION("overlap"))
		bench_overlap(m, reps);
	if (SECTION("decode"))
		bench_decode(m, reps);
	if (SECTION("handoff"))
		bench_handoff(reps, m->cfg.ctx_len > 2048 ? 2048 : m->cfg.ctx_len / 2);
	free(common[5]);
	drv_close(&D);
	duet_model_close(m);
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return 0;
}
