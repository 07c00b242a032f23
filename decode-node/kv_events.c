/* What the KV ingest thread reports, handled by the step loop between two
 * steps: a hand-off that completed joins the batch at the next step; a bad
 * message fails its request, is counted and logged, and nothing else. */
#include <stdio.h>

#include "base/log.h"
#include "decode.h"

static void on_ready(struct decode *d, struct dreq *r, const struct kv_event *ev)
{
	r->kv.n_tokens = r->n_prompt;
	decode_cache_prompt(d, r);
	Duet__KvDone done = DUET__KV_DONE__INIT;
	done.request_id = r->id;
	done.bytes = ev->bytes;
	Duet__Msg out = duet_wire_msg(DUET__MSG__BODY_KV_DONE, &done);
	struct duet_err err;
	if (duet_node_send(&d->node, &out, &err))
		duet_log(DUET_LOG_WARN, r->id, "sending kv_done: %s", err.msg);
	/* The prefill node counted its token as sampled (n_sampled). */
	r->n_generated--;
	decode_emit(d, r, ev->token, 1, NULL);
}

void decode_kv_event(struct decode *d, const struct kv_event *ev)
{
	struct dreq *r = ev->id ? decode_find(d, ev->id) : NULL;
	switch (ev->kind) {
	case KV_EVENT_READY:
		/* else cancelled or timed out while its last message was
		 * written: it is gone already */
		if (r && r->st == DREQ_WAIT_KV)
			on_ready(d, r, ev);
		return;
	case KV_EVENT_BAD:
	case KV_EVENT_STRAY:
		/* A straggler of a request that failed already: counted, not
		 * logged. */
		if (!r && ev->id && ev->kind == KV_EVENT_STRAY && decode_recently_failed(d, ev->id)) {
			d->node.bad_messages++;
			return;
		}
		duet_node_bad_message(&d->node, "KV peer", r ? r->id : 0, ev->why);
		if (r)
			decode_fail(d, r, DUET__ERROR_CODE__ERR_BAD_MESSAGE, ev->why);
		return;
	}
}
