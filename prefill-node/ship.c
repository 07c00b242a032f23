/* KV shipping to decode nodes: one PUSH socket per decode endpoint, a
 * multipart message per layer and chunk of positions (header, payload of
 * the cache's rows as they are), and the first token after the last
 * layer. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/grow.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/trace.h"
#include "prefill.h"

/* KV messages queued per decode node before a send waits (then fails
 * after the send timeout): a few prompts' worth of layers. */
#define KV_SNDHWM 256
#define KV_SEND_TIMEOUT_MS 10000

static int peer_in_use(const struct prefill *p, const struct peer *pe)
{
	for (int i = 0; i < p->n_q; i++)
		if (p->q[i]->peer == pe)
			return 1;
	return 0;
}

int prefill_connect(struct prefill *p, struct preq *r, const char *endpoint, const char *key,
		    struct duet_err *err)
{
	int curve = p->node.curve.on;
	if (curve && !*key)
		return duet_errf(err, "decode node %s has no CURVE key; KV is not sent in plaintext",
				 r->decode_node);
	if (!curve && *key)
		return duet_errf(err, "decode node %s takes KV over CURVE only; this prefill node has "
				      "no curve-key", r->decode_node);
	if (curve && !duet_curve_valid(key))
		return duet_errf(err, "decode node %s: CURVE key '%.48s' is not Z85", r->decode_node,
				 key);
	struct peer *free_slot = NULL, *lru = NULL;
	long long now = duet_now_us();
	for (int i = 0; i < PREFILL_MAX_PEERS; i++) {
		struct peer *pe = &p->peers[i];
		if (pe->sock && strcmp(pe->endpoint, endpoint) == 0 && strcmp(pe->key, key) == 0) {
			pe->used_us = now;
			r->peer = pe;
			return 0;
		}
		if (!pe->sock && !free_slot)
			free_slot = pe;
		if (pe->sock && !peer_in_use(p, pe) && (!lru || pe->used_us < lru->used_us))
			lru = pe;
	}
	struct peer *pe = free_slot ? free_slot : lru;
	if (!pe)
		return duet_errf(err, "more than %d decode nodes in use at once", PREFILL_MAX_PEERS);
	if (pe->sock) {
		zmq_close(pe->sock);
		pe->sock = NULL;
	}
	struct duet_zsock_opts o = {.sndhwm = KV_SNDHWM, .send_timeout_ms = KV_SEND_TIMEOUT_MS,
				    .linger_ms = 2000,
				    .curve = curve ? &p->node.curve.key : NULL,
				    .curve_server = curve ? key : NULL};
	char label[DUET_MAX_NAME + 32];
	snprintf(label, sizeof label, "KV to %s", r->decode_node);
	o.watch = p->node.zap;
	o.watch_label = label;
	if (duet_zsock(p->node.zctx, ZMQ_PUSH, endpoint, 0, &o, &pe->sock, err))
		return -1;
	snprintf(pe->endpoint, sizeof pe->endpoint, "%s", endpoint);
	snprintf(pe->key, sizeof pe->key, "%s", key);
	pe->used_us = now;
	r->peer = pe;
	return 0;
}

void prefill_close_peers(struct prefill *p)
{
	for (int i = 0; i < PREFILL_MAX_PEERS; i++)
		if (p->peers[i].sock) {
			zmq_close(p->peers[i].sock);
			p->peers[i].sock = NULL;
		}
}

void prefill_free_held(struct preq *r)
{
	for (int i = 0; i < r->n_held; i++)
		free(r->held[i].payload);
	free(r->held);
	r->held = NULL;
	r->n_held = r->cap_held = 0;
}

static int send_chunk(struct prefill *p, struct preq *r, Duet__KvChunk *h, void *payload,
		      size_t plen, struct duet_err *err)
{
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_KV_CHUNK, h);
	if (duet_zsend(r->peer->sock, NULL, &m, payload, plen, err))
		return -1;
	p->node.kv_bytes_out += plen;
	return 0;
}

/* Positions [first, first + n) of one layer as a KV chunk: the cache's
 * rows as they are (K rows, then V rows), in the cache's row type. */
static int encode(struct prefill *p, struct preq *r, int layer, int first, int n,
		  struct duet_err *err)
{
	const struct duet_kv_pool *pool = p->node.kv;
	size_t rb = pool->row_bytes, plen = 2 * (size_t)n * rb;
	uint8_t *payload = malloc(plen);
	if (!payload)
		return duet_errf(err, "out of memory for a %zu-byte KV chunk", plen);
	for (int which = 0; which < 2; which++)
		for (int i = 0; i < n; i++)
			memcpy(payload + ((size_t)which * n + i) * rb,
			       duet_kv_row(pool, layer, which, &r->kv, first + i), rb);
	Duet__KvChunk h = DUET__KV_CHUNK__INIT;
	h.request_id = r->id;
	h.layer = (uint32_t)layer;
	h.first_pos = (uint32_t)first;
	h.n_tokens = (uint32_t)n;
	h.n_kv_heads = (uint32_t)pool->g.n_kv_heads;
	h.head_dim = (uint32_t)pool->g.head_dim;
	h.dtype = (Duet__KvDtype)pool->g.dtype;
	h.payload_bytes = plen;
	h.checksum = XXH3_64bits(payload, plen);
	h.model_digest = p->node.model->digest;
	if (p->cfg.stream_layers)
		return send_chunk(p, r, &h, payload, plen, err);
	struct held *nh = duet_grow(r->held, &r->cap_held, r->n_held + 1, sizeof *nh, 64);
	if (!nh) {
		free(payload);
		return duet_errf(err, "out of memory holding KV chunks");
	}
	r->held = nh;
	r->held[r->n_held++] = (struct held){h, payload, plen};
	return 0;
}

int prefill_ship_cached(struct prefill *p, struct preq *r, int n, struct duet_err *err)
{
	int chunk = p->node.cfg.max_batch_tokens;
	long long t0 = duet_now_us();
	for (int l = 0; l < p->node.model->cfg.n_layers; l++)
		for (int first = 0; first < n; first += chunk) {
			int m = n - first < chunk ? n - first : chunk;
			if (encode(p, r, l, first, m, err))
				return -1;
		}
	duet_trace_span("kv", "kv send cached", t0, duet_now_us(), "\"request\":%llu,\"rows\":%d",
			(unsigned long long)r->id, n);
	return 0;
}

int prefill_layer_hook(void *ctx, int layer, const struct duet_fwd_seq *seq, int first_pos,
		       int n, const float *k, const float *v, int kv_dim, struct duet_err *err)
{
	struct prefill *p = ctx;
	struct preq *r = seq->user;
	(void)err;
	/* A long prompt keeps the main loop in the forward pass for seconds;
	 * load reports and the watchdog go on from here, layer by layer, so
	 * the router does not take a busy node for a dead one. */
	duet_node_tick(&p->node, NULL, prefill_fill_report, p);
	if (r->failed)
		return 0;
	/* The layer's new rows are in the cache already, in its row type:
	 * they go as they are (k and v are the f32 values before that). */
	(void)k, (void)v, (void)kv_dim;
	struct duet_err e;
	long long t0 = duet_now_us();
	int rc = encode(p, r, layer, first_pos, n, &e);
	duet_trace_span("kv", "kv send", t0, duet_now_us(),
			"\"request\":%llu,\"layer\":%d,\"first\":%d,\"rows\":%d",
			(unsigned long long)r->id, layer, first_pos, n);
	if (rc) {
		/* Only this request fails; the batch goes on for the others. */
		r->failed = 1;
		duet_log(DUET_LOG_WARN, r->id, "KV to %s: %s", r->peer->endpoint, e.msg);
	}
	return 0;
}

int prefill_ship_first(struct prefill *p, struct preq *r, int token,
		       const struct duet_logprobs *lp, struct duet_err *err)
{
	for (int i = 0; i < r->n_held; i++) {
		struct held *h = &r->held[i];
		void *payload = h->payload;
		h->payload = NULL; /* zmq owns it from here */
		if (send_chunk(p, r, &h->hdr, payload, h->plen, err))
			return -1;
	}
	Duet__FirstToken f = DUET__FIRST_TOKEN__INIT;
	f.request_id = r->id;
	f.token = token;
	f.n_prompt = (uint32_t)r->n;
	f.n_cached = (uint32_t)r->cached;
	f.prefill_us = (uint64_t)r->compute_us;
	Duet__Logprobs wl;
	if (lp)
		f.logprobs = duet_node_logprobs(lp, &wl);
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_FIRST_TOKEN, &f);
	if (duet_zsend(r->peer->sock, NULL, &m, NULL, 0, err))
		return -1;
	return duet_node_send(&p->node, &m, err);
}
