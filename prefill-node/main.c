/* duet-prefill: the prefill daemon. See prefill.h and `duet-prefill --help`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/log.h"
#include "node/notify.h"
#include "prefill.h"

#define MAX_MSGS_PER_TURN 256
#define IDLE_POLL_MS 50

static const char *ABOUT =
	"The prefill daemon of duet. Registers with the router, queues the\n"
	"prompts it is sent, batches them up to max-batch-tokens per forward\n"
	"pass, reuses cached prefixes (full KV blocks keyed by a chain hash of\n"
	"their tokens), and streams each layer's K and V to the request's decode\n"
	"node while the next layer computes; then sends the first token to the\n"
	"router and the decode node.";

void prefill_fill_report(void *ctx, Duet__LoadReport *r)
{
	struct prefill *p = ctx;
	r->queued_requests = (uint32_t)p->n_q;
	r->queued_prompt_tokens = prefill_queued_tokens(p);
	r->prefill_tokens_per_s = (float)p->rate;
	r->computed_prompt_tokens = p->computed_tokens;
}

static void on_control(struct prefill *p, const Duet__Msg *m)
{
	if (duet_node_handle_common(&p->node, m, NULL))
		return;
	switch (m->body_case) {
	case DUET__MSG__BODY_PREFILL:
		prefill_handle_work(p, m->prefill);
		break;
	case DUET__MSG__BODY_CANCEL:
		prefill_handle_cancel(p, m->cancel);
		break;
	default:
		duet_node_unexpected(&p->node, "router", m, "control channel");
	}
}

static void receive(struct prefill *p, int timeout_ms)
{
	zmq_pollitem_t item = {p->node.ctl, 0, ZMQ_POLLIN, 0};
	if (duet_node_poll(&item, 1, timeout_ms) <= 0)
		return;
	for (int k = 0; k < MAX_MSGS_PER_TURN; k++) {
		struct duet_inmsg in;
		struct duet_err err;
		int rc = duet_zrecv(p->node.ctl, 0, &in, &err);
		if (rc == 0)
			return;
		if (rc < 0) {
			duet_node_bad_message(&p->node, "router", 0, err.msg);
			duet_inmsg_close(&in);
			continue;
		}
		on_control(p, in.m);
		duet_inmsg_close(&in);
	}
}

int main(int argc, char **argv)
{
	duet_blas_select_core(argv);
	static struct prefill p;
	duet_node_defaults(&p.node.cfg, "prefill-0");
	p.cfg = (struct prefill_cfg){1, 1024, 64};
	struct duet_opt opts[DUET_NODE_COMMON_OPTS + 3];
	int n = duet_node_opts(&p.node.cfg, 0, opts);
	opts[n++] = (struct duet_opt){"stream-layers", DUET_OPT_BOOL, &p.cfg.stream_layers, 0, 0,
				      "BOOL", "send each layer as soon as it is computed (false: send "
				      "all after the prefill, to measure what overlap buys)"};
	opts[n++] = (struct duet_opt){"max-queue", DUET_OPT_INT, &p.cfg.max_queue, 1, 1 << 20, "N",
				      "prompts queued at once; more are refused"};
	opts[n++] = (struct duet_opt){"max-batch-seqs", DUET_OPT_INT, &p.cfg.max_batch_seqs, 1, 4096,
				      "N", "prompts in one forward pass"};
	struct duet_settings cfg;
	struct duet_err err;
	int rc = duet_config_main(&cfg, opts, n, argc, argv, "duet-prefill", ABOUT);
	if (rc >= 0)
		return rc;
	struct duet_node *node = &p.node;
	int status = 1;
	if (duet_node_start(node, DUET__ROLE__ROLE_PREFILL, 0, &err)) {
		fprintf(stderr, "duet-prefill: %s\n", err.msg);
		goto out;
	}
	duet_engine_set_hook(node->engine, prefill_layer_hook, &p);
	p.q = calloc((size_t)p.cfg.max_queue, sizeof *p.q);
	p.fwd = calloc((size_t)p.cfg.max_batch_seqs, sizeof *p.fwd);
	p.batch = calloc((size_t)p.cfg.max_batch_seqs, sizeof *p.batch);
	if (!p.q || !p.fwd || !p.batch) {
		fprintf(stderr, "duet-prefill: out of memory\n");
		goto out;
	}
	if (duet_node_hello(node, NULL, &err)) {
		fprintf(stderr, "duet-prefill: %s\n", err.msg);
		goto out;
	}
	duet_log(DUET_LOG_INFO, 0, "router %s, KV %s, prefix cache %d blocks, streaming %s",
		 node->cfg.router, duet_kv_dtype_name(node->kv->g.dtype), node->cache->max_blocks,
		 p.cfg.stream_layers ? "on" : "off");
	for (;;) {
		if (duet_node_stopping(node)) {
			if (p.n_q == 0)
				break;
			if (duet_node_drain_expired(node)) {
				duet_log(DUET_LOG_WARN, 0, "drain timeout: failing %d queued prompts", p.n_q);
				while (p.n_q) {
					duet_node_fail(node, p.q[0]->id, DUET__ERROR_CODE__ERR_DRAINING,
						       "the prefill node stopped before the prompt was done");
					prefill_drop(&p, p.q[0]);
				}
				break;
			}
		}
		receive(&p, p.n_q ? 0 : duet_notify_wait_ms(duet_now_us(), IDLE_POLL_MS));
		prefill_run_batch(&p);
		duet_node_tick(node, NULL, prefill_fill_report, &p);
	}
	duet_log(DUET_LOG_INFO, 0, "stopped");
	status = 0;
out:
	while (p.n_q)
		prefill_drop(&p, p.q[0]);
	free(p.q);
	duet_idmap_free(&p.by_id);
	free(p.fwd);
	free(p.batch);
	prefill_close_peers(&p);
	duet_node_stop(node);
	duet_config_free(&cfg);
	return status;
}
