#include "node/node.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/log.h"
#include "base/trace.h"
#include "node/notify.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

void duet_node_defaults(struct duet_node_cfg *c, const char *name)
{
	memset(c, 0, sizeof *c);
	c->name = name;
	c->router = "tcp://127.0.0.1:5555"; /* the router's default control */
	c->model = "";
	c->threads = 1;
	c->cpus = "";
	c->report_ms = 200;
	c->kv_mb = 1024;
	c->kv_prefault = 1;
	c->prefix_cache_mb = DUET_NODE_CACHE_MB_ALL;
	c->block_tokens = DUET_KV_BLOCK_TOKENS;
	c->max_batch_tokens = 512;
	c->drain_timeout_s = 30;
	c->log_level = "info";
	c->kernels = "";
	c->weights = "";
	c->qdot = "int8";
	c->kv_dtype = "f16";
	c->trace = "";
}

int duet_node_opts(struct duet_node_cfg *c, int server, struct duet_opt *o)
{
	const struct duet_opt t[] = {
		{"name", DUET_OPT_STR, &c->name, 0, 0, "NAME",
		 "node name: its ZeroMQ identity at the router and in logs"},
		{"router", DUET_OPT_STR, &c->router, 0, 0, "ENDPOINT",
		 "the router's control endpoint (tcp://host:port or ipc://path)"},
		{"model", DUET_OPT_STR, &c->model, 0, 0, "FILE",
		 "model file (GGUF, or llama2.c with tokenizer.bin beside it); required"},
		{"threads", DUET_OPT_INT, &c->threads, 1, 1024, "N", "compute threads"},
		{"cpus", DUET_OPT_STR, &c->cpus, 0, 0, "LIST",
		 "CPUs to pin the threads to, e.g. 0-1,4 (empty: no pinning)"},
		{"report-ms", DUET_OPT_INT, &c->report_ms, DUET_MIN_REPORT_MS, DUET_MAX_REPORT_MS, "MS",
		 "load report interval (and of heartbeats to the router)"},
		{"kv-mb", DUET_OPT_INT, &c->kv_mb, 1, 1 << 22, "MB", "KV pool memory budget"},
		{"kv-prefault", DUET_OPT_BOOL, &c->kv_prefault, 0, 0, NULL,
		 "take all of kv-mb at start (default true: the node fails at once if the "
		 "memory is not there, and never zeroes new pages during a step; false: "
		 "pages are taken as KV first fills them)"},
		{"prefix-cache-mb", DUET_OPT_INT, &c->prefix_cache_mb, 0, DUET_NODE_CACHE_MB_ALL, "MB",
		 "most KV kept for reuse by later prompts (0: off; the default, the most, keeps "
		 "all of kv-mb that requests in progress leave)"},
		{"block-tokens", DUET_OPT_INT, &c->block_tokens, 1, DUET_KV_MAX_BLOCK_TOKENS, "N",
		 "positions per KV block (and per prefix-cache entry)"},
		{"max-batch-tokens", DUET_OPT_INT, &c->max_batch_tokens, 1, 1 << 20, "N",
		 "prompt tokens per forward pass"},
		{"drain-timeout", DUET_OPT_DOUBLE, &c->drain_timeout_s, 0, 86400, "S",
		 "on SIGTERM, seconds to finish in-flight work before exiting"},
		{"log-level", DUET_OPT_STR, &c->log_level, 0, 0, "LEVEL",
		 "error, warning, info or debug"},
		{"kernels", DUET_OPT_STR, &c->kernels, 0, 0, "ISA",
		 "decode kernels: avx512, avx2 or scalar (empty: best for this CPU)"},
		{"weights", DUET_OPT_STR, &c->weights, 0, 0, "WHERE",
		 "hugepages (default: a copy in 2 MiB pages, which decode streams up to twice as "
		 "fast and prompts run 1.2-2.6x as fast through; a copy in 4 KiB pages where huge "
		 "pages are off), copy (a copy in 4 KiB pages) or mmap (the file's page-cache "
		 "pages, shared with other processes, no copy: for a machine without memory for a "
		 "copy); the copies hold Q8_0, Q4_0 and Q4_K packed for the kernels, the mapping "
		 "is packed on the fly"},
		{"qdot", DUET_OPT_STR, &c->qdot, 0, 0, "MODE",
		 "quantized and BF16 weights: int8 (activations quantized per 32-block, per 256 for "
		 "the K-quants; integer dot products; BF16 against bf16 activations) or exact (weights dequantized to f32, the accuracy reference); "
		 "every node of a cluster must use the same"},
		{"kv-dtype", DUET_OPT_STR, &c->kv_dtype, 0, 0, "TYPE",
		 "KV cache rows: f16 (half the memory of f32), int8 (a quarter, one scale "
		 "per head) or f32; sent to decode nodes as stored, so give every node the "
		 "same (a decode node converts what differs)"},
		{"trace", DUET_OPT_STR, &c->trace, 0, 0, "FILE",
		 "write a Chrome trace-event file of what the node spends its time on (steps, "
		 "prefill chunks, KV messages, sends; opens in Perfetto; `duet trace merge` "
		 "joins it with the router's and other nodes'); empty: none"},
	};
	/* the callers' arrays hold DUET_NODE_COMMON_OPTS and their own keys */
	_Static_assert(sizeof t / sizeof t[0] + DUET_CURVE_OPTS <= DUET_NODE_COMMON_OPTS,
		       "DUET_NODE_COMMON_OPTS is smaller than the node's keys");
	memcpy(o, t, sizeof t);
	int n = (int)(sizeof t / sizeof t[0]);
	return n + duet_curve_opts(&c->curve, server, 1, o + n);
}

/* A KV pool of kv_mb for model m and an engine on it, with the node's
 * settings (threads, CPUs, kernels, qdot, KV row type, block size). */
static int node_engine(struct duet_node *n, const struct duet_model *m, int kv_mb,
		       int extra_batch, struct duet_kv_pool **kv, struct duet_engine **e,
		       struct duet_err *err)
{
	const struct duet_node_cfg *c = &n->cfg;
	enum duet_qdot qdot;
	enum duet_kv_dtype kvt;
	if (duet_qdot_parse(c->qdot, &qdot) || duet_kv_dtype_parse(c->kv_dtype, &kvt))
		return duet_errf(err, "qdot '%s' or kv-dtype '%s' is unknown", c->qdot, c->kv_dtype);
	struct duet_kv_geom g = duet_kv_geom_for(m, c->block_tokens, kvt);
	long blocks = (long)((double)kv_mb * 1048576.0 / (double)duet_kv_block_bytes(&g));
	if (blocks < 1)
		return duet_errf(err, "kv-mb: %d MB holds no block of %zu bytes", kv_mb,
				 duet_kv_block_bytes(&g));
	if (blocks > 1 << 30)
		blocks = 1 << 30;
	struct duet_engine_opts eo = {.n_threads = c->threads,
				      .qdot = qdot,
				      .cpus = n->n_cpus ? n->cpus : NULL,
				      .n_cpus = n->n_cpus,
				      .max_batch_tokens = c->max_batch_tokens + extra_batch,
				      .kernels = *c->kernels ? c->kernels : NULL};
	if (duet_kv_pool_create(kv, &g, (int)blocks, err) ||
	    (c->kv_prefault && duet_kv_pool_prefault(*kv, err)))
		return -1;
	return duet_engine_create(e, m, *kv, &eo, err);
}

int duet_node_open_draft(struct duet_node *n, const char *path, int kv_mb,
			 struct duet_model **m, struct duet_kv_pool **kv, struct duet_engine **e,
			 struct duet_err *err)
{
	struct duet_model_opts mo = {.weights = n->model->weights};
	if (duet_model_open(m, path, &mo, err)) {
		duet_err_prefix(err, "draft");
		return -1;
	}
	if (node_engine(n, *m, kv_mb, 0, kv, e, err)) {
		duet_err_prefix(err, "draft");
		return -1;
	}
	return 0;
}

int duet_node_start(struct duet_node *n, Duet__Role role, int extra_batch,
		    struct duet_err *err)
{
	struct duet_node_cfg *c = &n->cfg;
	n->role = role;
	enum duet_log_level lvl;
	if (duet_log_level_parse(c->log_level, &lvl))
		return duet_errf(err, "log-level '%s': want error, warning, info or debug",
				 c->log_level);
	if (duet_wire_check_str(c->name, DUET_MAX_NAME, "name", err) || !*c->name)
		return duet_errf(err, "name: must be 1 to %d bytes", DUET_MAX_NAME);
	/* Every setting checked before the model loads (which takes a while). */
	/* Both roles copy: a prompt's chunks read every weight too, and through
	 * the page cache's 4 KiB pages they ran 1.2-2.6x slower (BENCHMARKS.md,
	 * 2026-12-08). */
	struct duet_model_opts mo = {.weights = DUET_WEIGHTS_HUGEPAGES};
	if (*c->weights && duet_weights_parse(c->weights, &mo.weights))
		return duet_errf(err, "weights '%s': want hugepages, copy or mmap", c->weights);
	enum duet_qdot qdot;
	if (duet_qdot_parse(c->qdot, &qdot))
		return duet_errf(err, "qdot '%s': want int8 or exact", c->qdot);
	enum duet_kv_dtype kvt;
	if (duet_kv_dtype_parse(c->kv_dtype, &kvt))
		return duet_errf(err, "kv-dtype '%s': want f16, int8 or f32", c->kv_dtype);
	duet_log_init(c->name, lvl);
	duet_notify_init();
	if (*c->trace && duet_trace_open(c->trace, c->name, err))
		return -1;
	int server = role == DUET__ROLE__ROLE_DECODE;
	const char *eps[] = {c->router, c->serve_endpoint ? c->serve_endpoint : c->router};
	if (duet_curve_setup(&c->curve, server, 1, eps, 2, &n->curve, err))
		return -1;
	if (!*c->model)
		return duet_errf(err, "model: no model file given (--model FILE)");
	if (*c->cpus && duet_cpu_parse_list(c->cpus, n->cpus, DUET_NODE_MAX_CPUS, &n->n_cpus, err))
		return -1;
	if (n->n_cpus && duet_cpu_pin_self(n->cpus[0], err))
		return -1;
	if (duet_model_open(&n->model, c->model, &mo, err))
		return -1;
	if (mo.weights != n->model->weights)
		duet_log(DUET_LOG_WARN, 0, "weights: %s instead of %s (%s)",
			 duet_weights_name(n->model->weights), duet_weights_name(mo.weights),
			 n->model->weights_note);
	const struct duet_config *mc = &n->model->cfg;
	if (node_engine(n, n->model, c->kv_mb, extra_batch, &n->kv, &n->engine, err))
		return -1;
	/* Cached blocks go back to new requests least recently used first, so
	 * a cache as big as the pool costs them nothing; a smaller one only
	 * forgets sooner (a replay that cycles through more prompts than the
	 * cache holds then never hits: LRU's worst case). */
	double cache_blocks = (double)c->prefix_cache_mb * 1048576.0 /
			      (double)duet_kv_block_bytes(&n->kv->g);
	if (cache_blocks > (double)n->kv->n_blocks)
		cache_blocks = (double)n->kv->n_blocks;
	if (duet_prefix_create(&n->cache, n->kv, (int)cache_blocks, err))
		return -1;
	n->lim = (struct duet_wire_limits){mc->n_layers, mc->n_kv_heads, mc->head_dim,
					   mc->ctx_len, mc->vocab_size, n->model->digest};
	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	n->zctx = zmq_ctx_new();
	if (!n->zctx)
		return duet_errf(err, "zmq: context: %s", zmq_strerror(errno));
	/* Heartbeats at the report interval, so that a node notices a router
	 * gone (and reconnects) as soon as the router notices a node gone. */
	struct duet_zsock_opts so = {.identity = c->name, .linger_ms = 1000,
				     .max_msg_bytes = DUET_MAX_CTRL_BYTES,
				     .heartbeat_ms = c->report_ms,
				     .peer_timeout_ms = DUET_MISSED_REPORTS * c->report_ms};
	if (n->curve.on) {
		so.curve = &n->curve.key;
		so.curve_server = n->curve.router_pub;
		/* Decode nodes admit prefill nodes by key: the handler is bound
		 * before the KV endpoint is. */
		if (duet_zap_start(n->zctx, n->curve.allow, &n->zap, err))
			return -1;
	}
	so.watch = n->zap;
	so.watch_label = "control channel to the router";
	if (duet_zsock(n->zctx, ZMQ_DEALER, c->router, 0, &so, &n->ctl, err))
		return -1;
	if (n->curve.on)
		duet_log(DUET_LOG_INFO, 0, "CURVE on: public key %s, router key %s", n->curve.key.pub,
			 n->curve.router_pub);
	duet_log(DUET_LOG_INFO, 0, "%s node: model %s (%s), %d KV blocks of %d positions, %d threads",
		 role == DUET__ROLE__ROLE_PREFILL ? "prefill" : "decode", c->model,
		 n->model->digest, n->kv->n_blocks, n->kv->g.block_tokens, duet_engine_threads(n->engine));
	return 0;
}

void duet_node_stop(struct duet_node *n)
{
	if (n->ctl)
		zmq_close(n->ctl);
	duet_zap_stop(n->zap);
	n->zap = NULL;
	duet_curve_free(&n->curve);
	if (n->zctx)
		zmq_ctx_term(n->zctx);
	duet_engine_destroy(n->engine);
	duet_prefix_destroy(n->cache); /* its references, before the pool goes */
	duet_kv_pool_destroy(n->kv);
	duet_token_table_free(&n->tokens);
	duet_model_close(n->model);
	n->ctl = n->zctx = NULL;
	n->engine = NULL;
	n->cache = NULL;
	n->kv = NULL;
	n->model = NULL;
	duet_trace_close();
}

int duet_node_kv_room(const struct duet_node *n)
{
	return n->kv->n_free + duet_prefix_evictable(n->cache);
}

int duet_node_poll(zmq_pollitem_t *items, int n, int timeout_ms)
{
	long long t0 = duet_now_us();
	int rc = zmq_poll(items, n, timeout_ms);
	if (timeout_ms != 0)
		duet_trace_span("node", "idle", t0, duet_now_us(), NULL);
	return rc;
}

int duet_node_send(struct duet_node *n, const Duet__Msg *m, struct duet_err *err)
{
	return duet_zsend(n->ctl, NULL, m, NULL, 0, err);
}

int duet_node_hello(struct duet_node *n, const char *kv_endpoint, struct duet_err *err)
{
	const struct duet_config *mc = &n->model->cfg;
	Duet__Hello h = DUET__HELLO__INIT;
	h.role = n->role;
	h.name = (char *)n->cfg.name;
	h.model_digest = n->model->digest;
	h.kv_endpoint = (char *)(kv_endpoint ? kv_endpoint : "");
	h.kv_public_key = kv_endpoint && n->curve.on ? n->curve.key.pub : "";
	h.threads = (uint32_t)duet_engine_threads(n->engine);
	h.kv_blocks = (uint32_t)n->kv->n_blocks;
	h.block_tokens = (uint32_t)n->kv->g.block_tokens;
	h.ctx_len = (uint32_t)mc->ctx_len;
	h.max_batch_tokens = (uint32_t)n->cfg.max_batch_tokens;
	h.vocab_size = (uint32_t)mc->vocab_size;
	h.report_ms = (uint32_t)n->cfg.report_ms;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_HELLO, &h);
	n->hello_us = duet_now_us();
	return duet_node_send(n, &m, err);
}

void duet_node_tick(struct duet_node *n, const char *kv_endpoint,
		    void (*fill)(void *ctx, Duet__LoadReport *r), void *ctx)
{
	long long now = duet_now_us();
	struct duet_err err;
	if (!n->registered && now - n->hello_us >= DUET_NODE_HELLO_RETRY_US &&
	    duet_node_hello(n, kv_endpoint, &err))
		duet_log(DUET_LOG_WARN, 0, "hello: %s", err.msg);
	if (now - n->report_us >= (long long)n->cfg.report_ms * 1000) {
		n->report_us = now;
		Duet__LoadReport r = DUET__LOAD_REPORT__INIT;
		r.seq = ++n->report_seq;
		r.draining = n->stopping;
		r.bad_messages = n->bad_messages;
		r.auth_refused = duet_zap_refused(n->zap);
		r.kv_blocks_total = (uint32_t)n->kv->n_blocks;
		/* Blocks only the prefix cache holds are room: taken back the
		 * moment a request needs them. */
		r.kv_blocks_free = (uint32_t)duet_node_kv_room(n);
		r.prefix_cached_blocks = (uint32_t)n->cache->n;
		r.n_prefix_hashes = (size_t)duet_prefix_summary(n->cache, n->hashes,
								DUET_NODE_SUMMARY_HASHES);
		r.prefix_hashes = n->hashes;
		r.prefix_hit_tokens = n->cache->hit_tokens;
		r.kv_bytes_in = n->kv_bytes_in;
		r.kv_bytes_out = n->kv_bytes_out;
		fill(ctx, &r);
		Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_LOAD, &r);
		if (duet_node_send(n, &m, &err))
			duet_log(DUET_LOG_WARN, 0, "load report: %s", err.msg);
		duet_trace_span("node", "load report", now, duet_now_us(), "\"kv_free\":%u",
				r.kv_blocks_free);
		duet_trace_flush();
		char status[DUET_NODE_STATUS_MAX];
		snprintf(status, sizeof status, "%s; %u/%u KV blocks free; %s",
			 n->registered ? "registered" : "waiting for the router",
			 r.kv_blocks_free, r.kv_blocks_total,
			 n->role == DUET__ROLE__ROLE_PREFILL ? "prefill" : "decode");
		if (n->role == DUET__ROLE__ROLE_PREFILL)
			snprintf(status + strlen(status), sizeof status - strlen(status),
				 ", %u queued (%llu tokens)", r.queued_requests,
				 (unsigned long long)r.queued_prompt_tokens);
		else
			snprintf(status + strlen(status), sizeof status - strlen(status),
				 ", %u running, %u receiving KV", r.running, r.waiting_kv);
		/* Only changes: PID 1 reads every message. */
		if (n->ready_sent && strcmp(status, n->last_status)) {
			duet_notify_status(status);
			snprintf(n->last_status, sizeof n->last_status, "%s", status);
		}
	}
	duet_notify_watchdog(now);
}

int duet_node_handle_common(struct duet_node *n, const Duet__Msg *m, const char *kv_endpoint)
{
	struct duet_err err;
	if (m->body_case == DUET__MSG__BODY_HELLO_ACK) {
		if (!n->registered)
			duet_log(DUET_LOG_INFO, 0, "registered with the router");
		n->registered = 1;
		if (!n->ready_sent) {
			n->ready_sent = 1;
			duet_notify_ready("registered with the router");
		}
		return 1;
	}
	if (m->body_case == DUET__MSG__BODY_PING)
		return 1; /* the router checking that the connection is there */
	if (m->body_case == DUET__MSG__BODY_ERROR &&
	    m->error->code == DUET__ERROR_CODE__ERR_UNKNOWN_NODE) {
		/* The router restarted and forgot us: register again. */
		duet_log(DUET_LOG_INFO, 0, "router does not know this node; saying hello again");
		n->registered = 0;
		if (duet_node_hello(n, kv_endpoint, &err))
			duet_log(DUET_LOG_WARN, 0, "hello: %s", err.msg);
		return 1;
	}
	return 0;
}

void duet_node_fail(struct duet_node *n, uint64_t request, Duet__ErrorCode code,
		    const char *msg)
{
	duet_log(DUET_LOG_WARN, request, "%s", msg);
	struct duet_err err;
	if (duet_zsend_error(n->ctl, NULL, request, code, msg, &err))
		duet_log(DUET_LOG_WARN, request, "reporting the error: %s", err.msg);
}

void duet_node_bad_message(struct duet_node *n, const char *peer, uint64_t request,
			   const char *why)
{
	n->bad_messages++;
	duet_log(DUET_LOG_WARN, request, "bad message from %s: %s", *peer ? peer : "a peer", why);
}

void duet_node_unexpected(struct duet_node *n, const char *peer, const Duet__Msg *m,
			  const char *where)
{
	char why[96];
	snprintf(why, sizeof why, "%s message on the %s", duet_wire_body_name(m->body_case), where);
	duet_node_bad_message(n, peer, 0, why);
}

int duet_node_stopping(struct duet_node *n)
{
	if (g_stop && !n->stopping) {
		n->stopping = 1;
		n->stop_deadline_us = duet_now_us() + (long long)(n->cfg.drain_timeout_s * 1e6);
		n->report_us = 0; /* the router hears of the drain at the next tick */
		duet_notify_stopping();
		duet_log(DUET_LOG_INFO, 0, "stopping: draining in-flight work (up to %.0f s)",
			 n->cfg.drain_timeout_s);
	}
	return n->stopping;
}

int duet_node_drain_expired(const struct duet_node *n)
{
	return n->stopping && duet_now_us() >= n->stop_deadline_us;
}

Duet__Logprobs *duet_node_logprobs(const struct duet_logprobs *lp, Duet__Logprobs *wl)
{
	duet__logprobs__init(wl);
	wl->chosen = lp->chosen;
	wl->n_top_tokens = wl->n_top = (size_t)lp->n_top;
	wl->top_tokens = (int32_t *)lp->top_id;
	wl->top = (float *)lp->top;
	return wl;
}

int duet_node_guide(struct duet_node *n, int format, const char *schema, const int *ids, int n_ids,
		    int n_gen, struct duet_guide *g, struct duet_sampler *sampler, int *guided,
		    struct duet_err *err)
{
	_Static_assert((int)DUET_FORMAT_JSON_SCHEMA == (int)DUET__RESPONSE_FORMAT__FORMAT_JSON_SCHEMA &&
			       (int)DUET_FORMAT_JSON_OBJECT ==
				       (int)DUET__RESPONSE_FORMAT__FORMAT_JSON_OBJECT,
		       "the engine's formats are the wire's");
	*guided = 0;
	if (format == DUET__RESPONSE_FORMAT__FORMAT_TEXT)
		return 0;
	if (!n->tokens.n && duet_token_table_build(&n->tokens, &n->model->vocab, err))
		return -1;
	if (duet_guide_init(g, &n->model->vocab, &n->tokens, (enum duet_format)format, schema,
			    err))
		return -1;
	for (int i = n_ids - n_gen; i < n_ids; i++)
		if (i >= 0 && duet_guide_accept(g, ids[i])) {
			duet_guide_free(g);
			return duet_errf(err, "response_format: the tokens generated so far are not the start of a valid document");
		}
	duet_guide_attach(g, sampler);
	*guided = 1;
	return 0;
}

int duet_node_sampling(const Duet__Sampling *s, int vocab, struct duet_sampling *out,
		       struct duet_err *err)
{
	struct duet_wire_sampling w;
	if (duet_wire_sampling(s, &w, err))
		return -1;
	struct duet_sampling p = {.temperature = w.temperature, .top_k = w.top_k, .top_p = w.top_p,
				  .seed = w.seed};
	p.min_p = w.min_p;
	p.presence_penalty = w.presence_penalty;
	p.frequency_penalty = w.frequency_penalty;
	p.repetition_penalty = w.repetition_penalty;
	p.n_bias = (int)w.n_bias;
	for (size_t i = 0; i < w.n_bias; i++)
		p.bias[i] = (struct duet_logit_bias){w.bias_tokens[i], w.bias_values[i]};
	p.logprobs = w.logprobs;
	p.top_logprobs = w.top_logprobs;
	if (duet_sampling_check(&p, vocab, err))
		return -1;
	*out = p;
	return 0;
}
