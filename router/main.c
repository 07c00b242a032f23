/* duet-router: the router daemon. See router.h and `duet-router --help`. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <microhttpd.h>

#include "base/config.h"
#include "base/log.h"
#include "base/trace.h"
#include "node/notify.h"
#include "router.h"

#define CORE_POLL_MS 20
#define TRACE_FLUSH_US 200000LL /* a killed router loses at most this much of its trace */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static const char *ABOUT =
	"The router of duet. Serves the OpenAI completions API over HTTP\n"
	"(POST /v1/completions, GET /v1/models, /health, /metrics), accepts\n"
	"prefill and decode nodes on its control endpoint, and places each\n"
	"request by prompt length and node load: disaggregated (a prefill node\n"
	"computes the prompt and streams its KV to a decode node) or local (the\n"
	"decode node prefills it in chunks).";

int main(int argc, char **argv)
{
	static struct router r;
	r.cfg = (struct router_cfg){.http_addr = "127.0.0.1",
				    .http_port = 8080,
				    .control = "tcp://127.0.0.1:5555",
				    .model = "",
				    .policy = "length-aware",
				    .max_body = 4 << 20,
				    .max_tokens_limit = 4096,
				    .local_max_prompt = 64,
				    .model_name = "",
				    .log_level = "info",
				    .api_keys = "",
				    .max_queue = ROUTER_DEFAULT_MAX_QUEUE,
				    .queue_timeout_ms = ROUTER_DEFAULT_QUEUE_TIMEOUT_MS,
				    .node_timeout_ms = 1000,
				    .client_timeout_s = 60,
				    .max_connections = 1000,
				    .max_connections_per_ip = 0,
				    .request_timeout_s = 0,
				    .tls_cert = "",
				    .tls_key = "",
				    .trace = "",
				    .first_token = "decode"};
	struct duet_opt opts[] = {
		{"http-addr", DUET_OPT_STR, &r.cfg.http_addr, 0, 0, "ADDR", "IPv4 address to serve HTTP on"},
		{"http-port", DUET_OPT_INT, &r.cfg.http_port, 1, 65535, "PORT", "HTTP port"},
		{"control", DUET_OPT_STR, &r.cfg.control, 0, 0, "ENDPOINT",
		 "control endpoint nodes connect to (bound; tcp:// or ipc://)"},
		{"model", DUET_OPT_STR, &r.cfg.model, 0, 0, "FILE",
		 "the model file the nodes serve (only its vocabulary and geometry are used)"},
		{"model-name", DUET_OPT_STR, &r.cfg.model_name, 0, 0, "NAME",
		 "model id in the API (default: the model's name)"},
		{"policy", DUET_OPT_STR, &r.cfg.policy, 0, 0, "POLICY",
		 "length-aware, round-robin, least-loaded or colocated"},
		{"local-max-prompt", DUET_OPT_INT, &r.cfg.local_max_prompt, 0, 1 << 20, "N",
		 "length-aware: prompts of at most N tokens prefill on the decode node"},
		{"max-body", DUET_OPT_INT, &r.cfg.max_body, 1024, 1 << 30, "BYTES", "largest request body"},
		{"max-tokens", DUET_OPT_INT, &r.cfg.max_tokens_limit, 1, 1 << 20, "N",
		 "largest max_tokens a request may ask for"},
		{"log-level", DUET_OPT_STR, &r.cfg.log_level, 0, 0, "LEVEL", "error, warning, info or debug"},
		{"max-queue", DUET_OPT_INT, &r.cfg.max_queue, 0, 1 << 20, "N",
		 "requests that may wait for room (KV, or a stream within the TBT objective: "
		 "tbt-admission); more get 429"},
		{"queue-timeout-ms", DUET_OPT_INT, &r.cfg.queue_timeout_ms, 0, 3600000, "MS",
		 "longest wait for room before 429 (a request's TTFT objective where shorter)"},
		{"node-timeout-ms", DUET_OPT_INT, &r.cfg.node_timeout_ms, 100, 600000, "MS",
		 "a node whose ZeroMQ heartbeats go unanswered this long is dead (a node busy "
		 "computing still answers them)"},
		{"client-timeout", DUET_OPT_INT, &r.cfg.client_timeout_s, 1, 86400, "S",
		 "a connection idle this long (a slow or stalled client) is closed"},
		{"max-connections", DUET_OPT_INT, &r.cfg.max_connections, 1, 100000, "N",
		 "HTTP connections at once"},
		{"max-connections-per-ip", DUET_OPT_INT, &r.cfg.max_connections_per_ip, 0, 100000,
		 "N", "HTTP connections at once from one client address (0: no limit)"},
		{"request-timeout", DUET_OPT_INT, &r.cfg.request_timeout_s, 0, 86400 * 7, "S",
		 "a request not finished this long after it arrived ends with 504 (0: no limit)"},
		{"api-keys", DUET_OPT_STR, &r.cfg.api_keys, 0, 0, "KEY,KEY",
		 "bearer keys clients must send (Authorization: Bearer KEY); empty: none"},
		{"tls-cert", DUET_OPT_PATH, &r.cfg.tls_cert, 0, 0, "FILE",
		 "PEM certificate (chain) for HTTPS; with tls-key, the API is served over TLS only"},
		{"tls-key", DUET_OPT_PATH, &r.cfg.tls_key, 0, 0, "FILE", "PEM private key of tls-cert"},
		{"slo-ttft-ms", DUET_OPT_INT, &r.cfg.slo_ttft_ms, 0, 3600000, "MS",
		 "time-to-first-token objective (0: none): a request whose predicted first token "
		 "misses it only because of the queue ahead is answered 429 with Retry-After at "
		 "once; a request may set its own with slo_ttft_ms"},
		{"slo-tbt-ms", DUET_OPT_INT, &r.cfg.slo_tbt_ms, 0, 3600000, "MS",
		 "time-between-tokens objective (0: none): a prompt is prefilled on a decode node "
		 "only while the predicted step that carries it keeps this for the node's running "
		 "streams, and decode nodes size their prompt chunks to keep it while the request "
		 "streams; a request may set its own with slo_tbt_ms"},
		{"tbt-admission", DUET_OPT_BOOL, &r.cfg.tbt_admission, 0, 0, NULL,
		 "with a TBT objective, a decode node takes a new stream only while its "
		 "predicted step with one more keeps the objective (a node streaming nothing "
		 "takes any); the request waits in the queue meanwhile (default false: streams "
		 "then keep their objective at the cost of first tokens; see BENCHMARKS.md)"},
		{"first-token", DUET_OPT_STR, &r.cfg.first_token, 0, 0, "WHO",
		 "who releases the first token of a prompt prefilled on a prefill node to the "
		 "client: decode (when the decode node takes the sequence into its batch, as "
		 "vLLM's and SGLang's disaggregated serving do: the second token follows one step "
		 "later, for up to one decode step and the KV transfer's tail more TTFT) or "
		 "prefill (as soon as that node samples it; the second token then waits for the "
		 "decode node's step under way as well)"},
		{"trace", DUET_OPT_STR, &r.cfg.trace, 0, 0, "FILE",
		 "write a Chrome trace-event file of placements, node messages and SSE writes "
		 "(`duet trace merge` joins it with the nodes'); empty: none"},
	};
	struct duet_opt all[sizeof opts / sizeof opts[0] + DUET_CURVE_OPTS];
	int n_opts = (int)(sizeof opts / sizeof opts[0]);
	memcpy(all, opts, sizeof opts);
	n_opts += duet_curve_opts(&r.cfg.curve, 1, 0, all + n_opts);
	struct duet_settings cfg;
	struct duet_err err;
	int rc = duet_config_main(&cfg, all, n_opts, argc, argv, "duet-router", ABOUT);
	if (rc >= 0)
		return rc;
	enum duet_log_level lvl;
	if (strcmp(r.cfg.first_token, "prefill") && strcmp(r.cfg.first_token, "decode")) {
		fprintf(stderr, "duet-router: first-token '%s': want prefill or decode\n",
			r.cfg.first_token);
		return 2;
	}
	r.first_token_decode = !strcmp(r.cfg.first_token, "decode");
	if (router_policy_parse(r.cfg.policy, &r.policy) || duet_log_level_parse(r.cfg.log_level, &lvl)) {
		fprintf(stderr, "duet-router: bad policy '%s' or log-level '%s'\n", r.cfg.policy,
			r.cfg.log_level);
		duet_config_free(&cfg);
		return 2;
	}
	duet_log_init("router", lvl);
	if (*r.cfg.trace && duet_trace_open(r.cfg.trace, "router", &err)) {
		fprintf(stderr, "duet-router: %s\n", err.msg);
		duet_config_free(&cfg);
		return 1;
	}
	for (const char *p = r.cfg.api_keys; *p && r.n_keys < ROUTER_MAX_KEYS;) {
		size_t n = strcspn(p, ",");
		if (n)
			r.keys[r.n_keys++] = strndup(p, n);
		p += n + (p[n] == ',');
	}
	duet_notify_init();
	int status = 1;
	struct MHD_Daemon *http = NULL;
	struct duet_model_opts mo = {.skip_weight_digest = 1};
	if (!*r.cfg.model) {
		fprintf(stderr, "duet-router: model: no model file given (--model FILE)\n");
		goto out;
	}
	if (duet_model_open(&r.model, r.cfg.model, &mo, &err)) {
		fprintf(stderr, "duet-router: %s\n", err.msg);
		goto out;
	}
	if (!*r.cfg.model_name)
		r.cfg.model_name = r.model->name;
	struct duet_gguf_str tmpl = {0};
	if (r.model->format == DUET_FORMAT_GGUF &&
	    duet_gguf_get_str(&r.model->gguf, "tokenizer.chat_template", 0, &tmpl, &err) == 0)
		r.chat = duet_chat_detect(tmpl.ptr, (size_t)tmpl.len);
	/* A template duet cannot render is never rendered approximately:
	 * chat requests are refused, and the operator told now. */
	r.chat_unknown = tmpl.len > 0 && r.chat == DUET_CHAT_NONE;
	if (r.chat_unknown)
		duet_log(DUET_LOG_WARN, 0,
			 "%s: tokenizer.chat_template is not one duet renders (llama2, chatml, zephyr, llama3): /v1/chat/completions will answer 400",
			 r.cfg.model);
	else
		duet_log(DUET_LOG_INFO, 0, "chat template: %s", duet_chat_family_name(r.chat));
	pthread_mutex_init(&r.mu, NULL);
	r.next_id = 1;
	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	r.zctx = zmq_ctx_new();
	/* Heartbeats are what keeps a node alive: ZeroMQ's I/O thread in the
	 * node answers them while its main thread computes a step or a prompt
	 * of any length, and stops when the process stops or its host goes
	 * away; the connection is dropped then (check_liveness notices). */
	int hb = r.cfg.node_timeout_ms / ROUTER_PINGS_PER_TIMEOUT;
	struct duet_zsock_opts so = {.router_mandatory = 1,
				     .router_handover = 1,
				     .max_msg_bytes = DUET_MAX_CTRL_BYTES,
				     .heartbeat_ms = hb > 0 ? hb : 1,
				     .peer_timeout_ms = r.cfg.node_timeout_ms};
	const char *eps[] = {r.cfg.control};
	if (duet_curve_setup(&r.cfg.curve, 1, 0, eps, 1, &r.curve, &err)) {
		fprintf(stderr, "duet-router: %s\n", err.msg);
		goto out;
	}
	if (r.curve.on)
		so.curve = &r.curve.key;
	/* The ZAP handler is bound before the control socket exists. */
	if (!r.zctx || router_core_init(&r, &err) ||
	    (r.curve.on && duet_zap_start(r.zctx, r.curve.allow, &r.zap, &err))) {
		fprintf(stderr, "duet-router: %s\n", err.msg);
		goto out;
	}
	so.watch = r.zap;
	so.watch_label = "control";
	so.watch_server = 1;
	if (duet_zsock(r.zctx, ZMQ_ROUTER, r.cfg.control, 1, &so, &r.ctl, &err) ||
	    !(http = router_http_start(&r, &err))) {
		fprintf(stderr, "duet-router: %s\n", err.msg);
		goto out;
	}
	duet_log(DUET_LOG_INFO, 0,
		 "serving %s on %s://%s:%d, nodes connect to %s (%s), policy %s",
		 r.cfg.model_name, *r.cfg.tls_cert ? "https" : "http", r.cfg.http_addr,
		 r.cfg.http_port, r.cfg.control,
		 r.curve.on ? "CURVE" : "plaintext", r.cfg.policy);
	if (r.curve.on)
		duet_log(DUET_LOG_INFO, 0, "CURVE public key %s, %d node keys allowed",
			 r.curve.key.pub, r.curve.allow->n);
	duet_notify_ready("serving");
	long long flushed_us = 0;
	while (!g_stop) {
		router_core_turn(&r, duet_notify_wait_ms(duet_now_us(), CORE_POLL_MS));
		long long now = duet_now_us();
		duet_notify_watchdog(now);
		if (now - flushed_us >= TRACE_FLUSH_US) {
			duet_trace_flush();
			flushed_us = now;
		}
	}
	duet_notify_stopping();
	duet_log(DUET_LOG_INFO, 0, "stopping");
	router_shutdown(&r);
	status = 0;
out:
	router_http_stop(&r, http);
	if (r.ctl)
		zmq_close(r.ctl);
	duet_zap_stop(r.zap);
	duet_curve_free(&r.curve);
	if (r.zctx)
		zmq_ctx_term(r.zctx);
	duet_model_close(r.model);
	for (int i = 0; i < r.n_keys; i++)
		free(r.keys[i]);
	duet_config_free(&cfg);
	duet_trace_close();
	return status;
}
