/* KV arriving from prefill nodes: each chunk is checked against this
 * node's model and the request's reservation, then its rows are written
 * into the request's blocks; the first token completes the sequence. */
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/trace.h"
#include "decode.h"

static void bad(struct decode *d, struct dreq *r, const char *peer, const char *why)
{
	duet_node_bad_message(&d->node, peer, r ? r->id : 0, why);
	if (r)
		decode_fail(d, r, DUET__ERROR_CODE__ERR_BAD_MESSAGE, why);
}

static struct dreq *waiting(struct decode *d, uint64_t id, const char *what)
{
	struct dreq *r = decode_find(d, id);
	if (r && r->st == DREQ_WAIT_KV)
		return r;
	char why[160];
	if (r)
		snprintf(why, sizeof why, "%s for a request that is not waiting for KV", what);
	else
		snprintf(why, sizeof why, "%s for unknown request %llu", what,
			 (unsigned long long)id);
	if (r) {
		bad(d, r, "KV peer", why);
	} else if (decode_recently_failed(d, id)) {
		/* The rest of a request already failed: counted, not logged. */
		d->node.bad_messages++;
	} else {
		bad(d, NULL, "KV peer", why);
	}
	return NULL;
}

static void on_chunk(struct decode *d, const Duet__KvChunk *c, const void *payload, size_t plen)
{
	long long t0 = duet_now_us();
	struct duet_err err;
	struct dreq *r = waiting(d, c->request_id, "KV chunk");
	if (!r)
		return;
	if (duet_wire_check_kv_chunk(c, payload, plen, &d->node.lim, &err)) {
		bad(d, r, "KV peer", err.msg);
		return;
	}
	int layer = (int)c->layer, first = (int)c->first_pos, n = (int)c->n_tokens;
	if (first + n > r->n_prompt) {
		snprintf(err.msg, sizeof err.msg,
			 "kv_chunk: positions %d + %d past the reserved prompt of %d", first, n,
			 r->n_prompt);
		bad(d, r, "KV peer", err.msg);
		return;
	}
	if (first != r->layer_next[layer]) {
		snprintf(err.msg, sizeof err.msg, "kv_chunk: layer %d at position %d; expected %d (%s)",
			 layer, first, r->layer_next[layer],
			 first < r->layer_next[layer] ? "duplicate" : "out of order");
		bad(d, r, "KV peer", err.msg);
		return;
	}
	/* Rows in the cache's own type are copied as they are; a prefill
	 * node storing another type costs a conversion here. */
	struct duet_kv_pool *pool = d->node.kv;
	const struct duet_kv_geom *g = &pool->g;
	enum duet_kv_dtype t = (enum duet_kv_dtype)c->dtype;
	size_t rb = duet_kv_row_bytes(t, g->n_kv_heads, g->head_dim);
	if (duet_kv_rows_check(t, g->n_kv_heads, g->head_dim, payload, 2 * n, &err)) {
		bad(d, r, "KV peer", err.msg);
		return;
	}
	for (int which = 0; which < 2; which++)
		for (int i = 0; i < n; i++) {
			const uint8_t *src = (const uint8_t *)payload + ((size_t)which * n + i) * rb;
			void *dst = duet_kv_row(pool, layer, which, &r->kv, first + i);
			if (t == g->dtype) {
				memcpy(dst, src, rb);
			} else {
				duet_kv_row_get(t, g->n_kv_heads, g->head_dim, src, d->row);
				duet_kv_row_put(g->dtype, g->n_kv_heads, g->head_dim, d->row, dst);
			}
		}
	r->layer_next[layer] += n;
	if (r->layer_next[layer] == r->n_prompt)
		r->layers_done++;
	r->kv_bytes += plen;
	d->node.kv_bytes_in += plen;
	duet_trace_span("kv", "kv write", t0, duet_now_us(),
			"\"request\":%llu,\"layer\":%d,\"first\":%d,\"rows\":%d,\"bytes\":%zu",
			(unsigned long long)r->id, layer, first, n, plen);
}

static void on_first_token(struct decode *d, const Duet__FirstToken *f)
{
	struct dreq *r = waiting(d, f->request_id, "first token");
	if (!r)
		return;
	const struct duet_model *m = d->node.model;
	char why[160];
	if (r->layers_done != m->cfg.n_layers) {
		snprintf(why, sizeof why, "first token before the KV is complete (%d of %d layers)",
			 r->layers_done, m->cfg.n_layers);
		bad(d, r, "KV peer", why);
		return;
	}
	if (f->token < 0 || f->token >= m->cfg.vocab_size) {
		snprintf(why, sizeof why, "first token %d outside the vocabulary", f->token);
		bad(d, r, "KV peer", why);
		return;
	}
	r->kv.n_tokens = r->n_prompt;
	decode_cache_prompt(d, r);
	Duet__KvDone done = DUET__KV_DONE__INIT;
	done.request_id = r->id;
	done.bytes = r->kv_bytes;
	Duet__Msg out = duet_wire_msg(DUET__MSG__BODY_KV_DONE, &done);
	struct duet_err err;
	if (duet_node_send(&d->node, &out, &err))
		duet_log(DUET_LOG_WARN, r->id, "sending kv_done: %s", err.msg);
	/* The prefill node counted its token as sampled (n_sampled). */
	r->n_generated--;
	decode_emit(d, r, f->token, 1, NULL);
}

void decode_handle_kv(struct decode *d, const struct duet_inmsg *in)
{
	const Duet__Msg *m = in->m;
	switch (m->body_case) {
	case DUET__MSG__BODY_KV_CHUNK:
		if (!in->payload) {
			struct dreq *r = decode_find(d, m->kv_chunk->request_id);
			bad(d, r, "KV peer", "kv_chunk without a payload frame");
			return;
		}
		on_chunk(d, m->kv_chunk, in->payload, in->plen);
		return;
	case DUET__MSG__BODY_FIRST_TOKEN:
		on_first_token(d, m->first_token);
		return;
	default:
		duet_node_unexpected(&d->node, "KV peer", m, "KV endpoint");
	}
}

void decode_kv_malformed(struct decode *d, const struct duet_inmsg *in, const char *why)
{
	uint64_t id = 0;
	if (in->m && in->m->body_case == DUET__MSG__BODY_KV_CHUNK)
		id = in->m->kv_chunk->request_id;
	else if (in->m && in->m->body_case == DUET__MSG__BODY_FIRST_TOKEN)
		id = in->m->first_token->request_id;
	struct dreq *r = id ? decode_find(d, id) : NULL;
	bad(d, r, "KV peer", why);
}
