/* duet-decode: the decode daemon. See decode.h and `duet-decode --help`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/log.h"
#include "base/trace.h"
#include "decode.h"
#include "net/curve.h"
#include "node/notify.h"

#define MAX_MSGS_PER_TURN 256 /* messages handled between two steps */
#define IDLE_POLL_MS 50
#define DECODE_OPTS 11 /* the options of its own, besides the common ones */

static const char *ABOUT =
	"The decode daemon of duet. Registers with the router, holds a paged KV\n"
	"pool, receives prompt KV from prefill nodes layer by layer on its KV\n"
	"endpoint (a thread of its own writes it into the pool while steps run),\n"
	"or prefills short prompts itself, in chunks of at most\n"
	"max-batch-tokens per step, and decodes every running sequence in one\n"
	"batch per step, sending each token to the router as it is made.";

static void fill_report(void *ctx, Duet__LoadReport *r)
{
	struct decode *d = ctx;
	r->stream_tokens_left = d->report_left;
	r->local_prompt_left = d->report_local_prompt;
	r->local_tokens_left = d->report_local_left;
	for (int i = 0; i < d->n_reqs; i++) {
		const struct dreq *q = d->reqs[i];
		uint32_t left = duet_wire_tokens_left(q->max_tokens, q->n_generated);
		r->running += q->st == DREQ_RUNNING;
		if (q->st == DREQ_RUNNING)
			duet_wire_left_add(d->report_left, &r->n_stream_tokens_left, left);
		/* in arrival order, as the steps take them */
		if (q->st == DREQ_LOCAL)
			duet_wire_local_add(d->report_local_prompt, d->report_local_left,
					    &r->n_local_prompt_left,
					    (uint32_t)(q->n_prompt - q->prefilled), left);
		r->waiting_kv += q->st == DREQ_WAIT_KV;
		r->local_prefill += q->st == DREQ_LOCAL;
		if (q->st == DREQ_RUNNING)
			r->context_tokens += (uint64_t)q->kv.n_tokens;
		if (q->st == DREQ_LOCAL)
			r->local_prefill_tokens += (uint64_t)(q->n_prompt - q->prefilled);
	}
	r->n_local_tokens_left = r->n_local_prompt_left;
	r->kv_bytes_in = kv_ingest_bytes(d->ingest);
	r->step_ms = (float)d->step_ms;
	r->spec_verified = d->spec_verified;
	r->spec_proposed = d->spec_proposed;
	r->spec_accepted = d->spec_accepted;
	if (d->steps_fitted) {
		const double *w = d->step_model.w;
		r->step_base_ms = (float)w[0];
		r->step_seq_ms = (float)w[1];
		r->step_token_ms = (float)w[2];
		r->step_kctx_ms = (float)w[3];
		r->step_kpair_ms = (float)w[4];
		r->steps_fitted = d->steps_fitted;
	}
}

static void on_control(struct decode *d, const Duet__Msg *m)
{
	if (duet_node_handle_common(&d->node, m, d->cfg.kv_advertise))
		return;
	switch (m->body_case) {
	case DUET__MSG__BODY_RESERVE:
		decode_handle_reserve(d, m->reserve);
		break;
	case DUET__MSG__BODY_LOCAL:
		decode_handle_local(d, m->local);
		break;
	case DUET__MSG__BODY_CANCEL:
		decode_handle_cancel(d, m->cancel);
		break;
	default:
		duet_node_unexpected(&d->node, "router", m, "control channel");
	}
}

/* Reads what is waiting from the router and the KV ingest thread, at most
 * MAX_MSGS_PER_TURN of each. */
static void receive(struct decode *d, int timeout_ms)
{
	zmq_pollitem_t items[2] = {{d->node.ctl, 0, ZMQ_POLLIN, 0},
				   {kv_ingest_events(d->ingest), 0, ZMQ_POLLIN, 0}};
	if (duet_node_poll(items, 2, timeout_ms) <= 0)
		return;
	for (int k = 0; k < MAX_MSGS_PER_TURN; k++) {
		int got = 0;
		struct kv_event ev;
		if (kv_ingest_next(d->ingest, &ev)) {
			long long tm = duet_now_us();
			decode_kv_event(d, &ev);
			duet_trace_span("decode", "kv event", tm, duet_now_us(),
					"\"request\":%llu,\"kind\":%d", (unsigned long long)ev.id,
					(int)ev.kind);
			got = 1;
		}
		struct duet_inmsg in;
		struct duet_err err;
		long long tm = duet_now_us();
		int rc = duet_zrecv(d->node.ctl, 0, &in, &err);
		if (rc < 0) {
			duet_node_bad_message(&d->node, "router", 0, err.msg);
			got = 1;
		} else if (rc > 0) {
			on_control(d, in.m);
			duet_trace_span("decode", "control", tm, duet_now_us(), "\"kind\":\"%s\"",
					duet_wire_body_name(in.m->body_case));
			got = 1;
		}
		if (rc)
			duet_inmsg_close(&in);
		if (!got)
			return;
	}
}

static void fail_all(struct decode *d, const char *why)
{
	while (d->n_reqs)
		decode_fail(d, d->reqs[0], DUET__ERROR_CODE__ERR_DRAINING, why);
}

int main(int argc, char **argv)
{
	duet_blas_select_core(argv);
	static struct decode d;
	duet_node_defaults(&d.node.cfg, "decode-0");
	d.cfg = (struct decode_cfg){"ipc:///tmp/duet-decode-0.ipc", "", 64, 60, 0, 8, 8, "", 1024, 1, 1};
	decode_step_model_init(&d);
	struct duet_opt opts[DUET_NODE_COMMON_OPTS + DECODE_OPTS];
	int n = duet_node_opts(&d.node.cfg, 1, opts);
	opts[n++] = (struct duet_opt){"kv-endpoint", DUET_OPT_STR, &d.cfg.kv_endpoint, 0, 0,
				      "ENDPOINT", "where this node receives KV from prefill nodes (bound)"};
	opts[n++] = (struct duet_opt){
		"kv-advertise", DUET_OPT_STR, &d.cfg.kv_advertise, 0, 0, "ENDPOINT",
		"the endpoint prefill nodes are told to connect to, when kv-endpoint binds a wildcard "
		"(tcp://*:5601) or the node is reached through NAT or a relay (empty: kv-endpoint)"};
	opts[n++] = (struct duet_opt){"max-requests", DUET_OPT_INT, &d.cfg.max_requests, 1, 4096,
				      "N", "requests held at once: running, prefilling or receiving KV"};
	opts[n++] = (struct duet_opt){"kv-timeout", DUET_OPT_DOUBLE, &d.cfg.kv_timeout_s, 0.1, 3600,
				      "S", "a reservation whose KV has not all arrived by then fails"};
	opts[n++] = (struct duet_opt){
		"spec-lookup", DUET_OPT_INT, &d.cfg.spec_ngram, 0, 16, "N",
		"speculative decoding by prompt lookup: propose what followed the latest earlier "
		"occurrence of each sequence's last N-gram (N down to 1) and verify the proposals "
		"in the step's one forward pass (0: off); greedy output is unchanged"};
	opts[n++] = (struct duet_opt){
		"draft", DUET_OPT_STR, &d.cfg.draft, 0, 0, "FILE",
		"speculative decoding with FILE as the draft model (the same vocabulary, e.g. this "
		"model in q4_0): it proposes, the step verifies (instead of spec-lookup)"};
	opts[n++] = (struct duet_opt){"draft-kv-mb", DUET_OPT_INT, &d.cfg.draft_kv_mb, 1, 1 << 22,
				      "MB", "the draft model's KV pool"};
	opts[n++] = (struct duet_opt){"spec-k", DUET_OPT_INT, &d.cfg.spec_k, 1, DUET_SPEC_MAX_K,
				      "K", "most tokens proposed per sequence and step"};
	opts[n++] = (struct duet_opt){
		"spec-max-batch", DUET_OPT_INT, &d.cfg.spec_max_batch, 0, 4096, "N",
		"propose only while at most N sequences run: a larger batch already reads the "
		"weights for enough tokens per step (BENCHMARKS.md)"};
	opts[n++] = (struct duet_opt){
		"spec-draft-max-batch", DUET_OPT_INT, &d.cfg.spec_draft_max_batch, 0, 4096, "N",
		"with a draft model, propose only while at most N sequences run: it drafts one "
		"sequence at a time, so its cost grows with the batch (8 streams drafting ran at a "
		"quarter of the plain rate, BENCHMARKS.md)"};
	opts[n++] = (struct duet_opt){
		"calibrate", DUET_OPT_BOOL, &d.cfg.calibrate, 0, 0, NULL,
		"at start, time one prompt chunk (max-batch-tokens, at most 64) and one decode step "
		"on a scratch sequence into the step-time model the router places by (default true: "
		"otherwise a node that has only decoded predicts prompt tokens at no cost, and the "
		"router lets local prefills stall its streams)"};
	struct duet_settings cfg;
	struct duet_err err;
	int rc = duet_config_main(&cfg, opts, n, argc, argv, "duet-decode", ABOUT);
	if (rc >= 0)
		return rc;
	struct duet_node *node = &d.node;
	node->cfg.serve_endpoint = d.cfg.kv_endpoint;
	int status = 1;
	if (!*d.cfg.kv_advertise)
		d.cfg.kv_advertise = d.cfg.kv_endpoint;
	const char *kv_public = d.cfg.kv_advertise;
	if (duet_endpoint_is_wildcard(kv_public)) {
		fprintf(stderr,
			"duet-decode: kv-endpoint %s binds every address, which prefill nodes cannot "
			"connect to: set kv-advertise to this machine's address (tcp://10.0.0.2:5601)\n",
			kv_public);
		goto out;
	}
	/* a step's rows: every running sequence's pending token and its
	 * proposals, besides the prompt chunk */
	int rows = d.cfg.max_requests * (d.cfg.spec_ngram || *d.cfg.draft ? d.cfg.spec_k + 1 : 1);
	if (duet_node_start(node, DUET__ROLE__ROLE_DECODE, rows, &err)) {
		fprintf(stderr, "duet-decode: %s\n", err.msg);
		goto out;
	}
	if (*d.cfg.draft && (duet_node_open_draft(node, d.cfg.draft, d.cfg.draft_kv_mb,
						  &d.draft_model, &d.draft_kv, &d.draft_engine, &err) ||
			     duet_spec_check_draft(node->model, d.draft_model, &err))) {
		fprintf(stderr, "duet-decode: %s\n", err.msg);
		goto out;
	}
	if (d.cfg.calibrate && decode_calibrate(&d, &err)) {
		fprintf(stderr, "duet-decode: %s\n", err.msg);
		goto out;
	}
	const struct duet_config *mc = &node->model->cfg;
	struct duet_zsock_opts ko = {
		/* The largest chunk: a whole context of f32 rows, K and V. */
		.max_msg_bytes = (long long)(2 * (size_t)mc->ctx_len *
					     duet_kv_row_bytes(DUET_KV_F32, mc->n_kv_heads,
							       mc->head_dim)) +
				 DUET_MAX_CTRL_BYTES,
		.linger_ms = 0,
		.curve = node->curve.on ? &node->curve.key : NULL};
	d.reqs = calloc((size_t)d.cfg.max_requests, sizeof *d.reqs);
	d.batch = calloc((size_t)d.cfg.max_requests, sizeof *d.batch);
	d.fwd = calloc((size_t)d.cfg.max_requests, sizeof *d.fwd);
	if (!d.reqs || !d.batch || !d.fwd) {
		fprintf(stderr, "duet-decode: out of memory\n");
		goto out;
	}
	void *kv_sock = NULL;
	ko.watch = node->zap;
	ko.watch_label = "KV endpoint";
	ko.watch_server = 1;
	if (duet_zsock(node->zctx, ZMQ_PULL, d.cfg.kv_endpoint, 1, &ko, &kv_sock, &err) ||
	    kv_ingest_start(&d.ingest, node->zctx, kv_sock, node->kv, &node->lim, mc->n_layers,
			    mc->vocab_size, node->cpus, node->n_cpus, &err)) {
		if (kv_sock)
			zmq_close(kv_sock);
		fprintf(stderr, "duet-decode: %s\n", err.msg);
		goto out;
	}
	if (duet_node_hello(node, kv_public, &err)) {
		fprintf(stderr, "duet-decode: %s\n", err.msg);
		goto out;
	}
	duet_log(DUET_LOG_INFO, 0, "KV endpoint %s (announced as %s), router %s", d.cfg.kv_endpoint,
		 kv_public, node->cfg.router);
	for (;;) {
		if (duet_node_stopping(node)) {
			if (d.n_reqs == 0)
				break;
			if (duet_node_drain_expired(node)) {
				duet_log(DUET_LOG_WARN, 0, "drain timeout: failing %d requests", d.n_reqs);
				fail_all(&d, "the decode node stopped before the request finished");
				break;
			}
		}
		int busy = decode_has_work(&d);
		receive(&d, busy ? 0 : duet_notify_wait_ms(duet_now_us(), IDLE_POLL_MS));
		decode_expire(&d, duet_now_us());
		decode_step(&d);
		duet_node_tick(node, kv_public, fill_report, &d);
	}
	duet_log(DUET_LOG_INFO, 0, "stopped");
	status = 0;
out:
	while (d.n_reqs)
		decode_drop(&d, d.reqs[0]);
	free(d.reqs);
	duet_idmap_free(&d.by_id);
	free(d.batch);
	free(d.fwd);
	kv_ingest_stop(d.ingest);
	duet_engine_destroy(d.draft_engine);
	duet_kv_pool_destroy(d.draft_kv);
	duet_model_close(d.draft_model);
	duet_node_stop(node);
	duet_config_free(&cfg);
	return status;
}
