/* Prefill work: admission into a FIFO queue, cancel, and batches of
 * prompts (whole or in chunks) up to max-batch-tokens per forward pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/trace.h"
#include "node/chunk.h"
#include "prefill.h"

static void refuse(struct prefill *p, uint64_t id, Duet__ErrorCode code, const char *why)
{
	if (code == DUET__ERROR_CODE__ERR_BAD_MESSAGE)
		p->node.bad_messages++;
	char buf[DUET_ERR_MAX + 32];
	snprintf(buf, sizeof buf, "prefill work refused: %s", why);
	duet_node_fail(&p->node, id, code, buf);
}

/* Checks work from the router and makes its queue entry; NULL with the
 * code and reason of the refusal. */
static struct preq *admit(struct prefill *p, const Duet__PrefillWork *w, Duet__ErrorCode *code,
			  struct duet_err *err)
{
	const struct duet_node *n = &p->node;
	*code = DUET__ERROR_CODE__ERR_BAD_MESSAGE;
	if (n->stopping) {
		*code = DUET__ERROR_CODE__ERR_DRAINING;
		return duet_errf(err, "the node is draining"), NULL;
	}
	if (w->request_id == 0 || duet_idmap_get(&p->by_id, w->request_id))
		return duet_errf(err, "request id is 0 or already queued"), NULL;
	if (p->n_q == p->cfg.max_queue) {
		*code = DUET__ERROR_CODE__ERR_NO_ROOM;
		return duet_errf(err, "the queue is full"), NULL;
	}
	if (duet_wire_check_tokens(w->tokens, w->n_tokens, &n->lim, err) ||
	    duet_wire_check_str(w->decode_node, DUET_MAX_NAME, "decode_node", err) ||
	    duet_wire_check_str(w->decode_endpoint, DUET_MAX_ENDPOINT, "decode_endpoint", err))
		return NULL;
	if (strcmp(w->decode_digest, n->model->digest) != 0) {
		*code = DUET__ERROR_CODE__ERR_MODEL_MISMATCH;
		return duet_errf(err, "decode node %s serves model %.40s, this node %s",
				 w->decode_node, w->decode_digest, n->model->digest),
		       NULL;
	}
	/* The whole prompt's KV must fit beside nothing else. */
	if (duet_kv_blocks_for(&n->kv->g, (long)w->n_tokens) > n->kv->n_blocks) {
		*code = DUET__ERROR_CODE__ERR_NO_ROOM;
		return duet_errf(err,
				 "no room: a prompt of %zu tokens needs more than the %d KV blocks "
				 "of kv-mb",
				 w->n_tokens, n->kv->n_blocks),
		       NULL;
	}
	struct preq *r = calloc(1, sizeof *r);
	if (!r) {
		*code = DUET__ERROR_CODE__ERR_INTERNAL;
		return duet_errf(err, "out of memory"), NULL;
	}
	r->id = w->request_id;
	r->n = (int)w->n_tokens;
	r->sample_index = (int)(w->sample_index > (1u << 30) ? 1u << 30 : w->sample_index);
	r->resumed_from = duet_chunk_resumed_from(r->n, r->sample_index);
	snprintf(r->decode_node, sizeof r->decode_node, "%s", w->decode_node);
	duet_kv_seq_init(&r->kv);
	r->tokens = duet_wire_tokens_copy(w->tokens, w->n_tokens);
	r->logits = malloc(sizeof(float) * (size_t)n->model->cfg.vocab_size);
	if (!r->tokens || !r->logits) {
		*code = DUET__ERROR_CODE__ERR_INTERNAL;
		duet_errf(err, "out of memory");
		goto fail;
	}
	if (w->sampling && w->sampling->format) {
		r->format = (int)w->sampling->format;
		if (!(r->schema = strdup(w->sampling->json_schema ? w->sampling->json_schema : ""))) {
			*code = DUET__ERROR_CODE__ERR_INTERNAL;
			duet_errf(err, "out of memory");
			goto fail;
		}
	}
	if (duet_node_sampling(w->sampling, n->model->cfg.vocab_size, &r->sampling, err) ||
	    prefill_connect(p, r, w->decode_endpoint, w->decode_public_key, err))
		goto fail;
	if (duet_idmap_put(&p->by_id, r->id, r, err)) {
		*code = DUET__ERROR_CODE__ERR_INTERNAL;
		goto fail;
	}
	return r;
fail:
	free(r->tokens);
	free(r->logits);
	free(r->schema);
	free(r);
	return NULL;
}

void prefill_handle_work(struct prefill *p, const Duet__PrefillWork *w)
{
	struct duet_err err;
	Duet__ErrorCode code;
	struct preq *r = admit(p, w, &code, &err);
	if (!r) {
		refuse(p, w->request_id, code, err.msg);
		return;
	}
	p->q[p->n_q++] = r;
	duet_log(DUET_LOG_DEBUG, r->id, "queued %d prompt tokens for %s", r->n, r->decode_node);
}

void prefill_drop(struct prefill *p, struct preq *r)
{
	for (int i = 0; i < p->n_q; i++)
		if (p->q[i] == r) {
			memmove(&p->q[i], &p->q[i + 1], sizeof *p->q * (size_t)(p->n_q - i - 1));
			p->n_q--;
			break;
		}
	duet_idmap_del(&p->by_id, r->id);
	duet_kv_seq_release(p->node.kv, &r->kv);
	prefill_free_held(r);
	free(r->schema);
	free(r->tokens);
	free(r->logits);
	free(r);
}

void prefill_handle_cancel(struct prefill *p, const Duet__Cancel *c)
{
	struct preq *r = duet_idmap_get(&p->by_id, c->request_id);
	if (r) {
		duet_log(DUET_LOG_DEBUG, c->request_id, "cancelled");
		prefill_drop(p, r);
	}
}

/* Prompt tokens still to compute: what the cache holds of a waiting
 * prompt costs nothing (the router predicts time to first token from it;
 * a repeated long prompt counted whole sent the next prompts elsewhere). */
uint64_t prefill_queued_tokens(const struct prefill *p)
{
	uint64_t t = 0;
	for (int i = 0; i < p->n_q; i++) {
		const struct preq *r = p->q[i];
		int have = r->started ? r->done
				      : duet_prefix_cached(p->node.cache, r->tokens, r->n - 1);
		t += (uint64_t)(r->n - have);
	}
	return t;
}

/* Takes the cached prefix and reserves the rest; 0 when there is no room
 * yet (the request waits for running ones to finish). */
static int start(struct prefill *p, struct preq *r)
{
	struct duet_err err;
	struct duet_kv_pool *pool = p->node.kv;
	/* At least the last prompt token is computed: its logits give the
	 * first token. */
	int cached = duet_prefix_attach(p->node.cache, &r->kv, r->tokens, r->n - 1, &err);
	if (cached < 0)
		goto fail;
	int need = duet_kv_blocks_for(&pool->g, r->n) - r->kv.n_blocks;
	if (duet_prefix_make_room(p->node.cache, need) < need) {
		duet_kv_seq_release(pool, &r->kv);
		duet_kv_seq_init(&r->kv);
		return 0;
	}
	if (duet_kv_seq_reserve(pool, &r->kv, r->n, &err))
		goto fail;
	r->cached = r->done = cached;
	r->started = 1;
	if (cached && prefill_ship_cached(p, r, cached, &err)) {
		r->failed = 1;
		duet_log(DUET_LOG_WARN, r->id, "KV to %s: %s", r->peer->endpoint, err.msg);
	}
	return 1;
fail:
	r->failed = 1;
	duet_log(DUET_LOG_WARN, r->id, "%s", err.msg);
	return 1;
}

static void complete(struct prefill *p, struct preq *r)
{
	struct duet_err err;
	struct duet_sampler s;
	if (duet_sampler_init(&s, &r->sampling, p->node.model->cfg.vocab_size, &err)) {
		duet_node_fail(&p->node, r->id, DUET__ERROR_CODE__ERR_INTERNAL, err.msg);
		return;
	}
	duet_sampler_skip(&s, r->sample_index);
	duet_sampler_history(&s, r->tokens, r->n, r->sample_index);
	struct duet_guide g;
	int guided;
	if (duet_node_guide(&p->node, r->format, r->schema, r->tokens, r->n, r->sample_index, &g, &s,
			    &guided, &err)) {
		duet_sampler_free(&s);
		duet_node_fail(&p->node, r->id, DUET__ERROR_CODE__ERR_BAD_MESSAGE, err.msg);
		return;
	}
	struct duet_logprobs lps, *lp = r->sampling.logprobs ? &lps : NULL;
	int tok = duet_sample_lp(&s, r->logits, lp);
	duet_sampler_free(&s);
	if (guided)
		duet_guide_free(&g);
	if (tok < 0) {
		duet_node_fail(&p->node, r->id, DUET__ERROR_CODE__ERR_INTERNAL,
			       "no token of the vocabulary continues the response_format document");
		return;
	}
	/* (a resume's streamed tokens have decode steps' K and V, which a
	 * later prompt holding them would not compute) */
	duet_prefix_insert(p->node.cache, &r->kv, r->tokens, r->resumed_from);
	if (prefill_ship_first(p, r, tok, lp, &err)) {
		char why[DUET_ERR_MAX + DUET_MAX_NAME + 32];
		snprintf(why, sizeof why, "sending to decode node %s: %s", r->decode_node, err.msg);
		duet_node_fail(&p->node, r->id, DUET__ERROR_CODE__ERR_UNREACHABLE, why);
		return;
	}
	duet_log(DUET_LOG_DEBUG, r->id, "prefilled %d tokens (%d cached) in %.1f ms", r->n,
		 r->cached, (double)r->compute_us / 1000.0);
}

int prefill_run_batch(struct prefill *p)
{
	int budget = p->node.cfg.max_batch_tokens, n = 0;
	for (int i = 0; i < p->n_q && budget > 0 && n < p->cfg.max_batch_seqs; i++) {
		struct preq *r = p->q[i];
		if (!r->started && !start(p, r))
			break; /* FIFO: later prompts wait behind this one */
		if (r->failed)
			continue;
		int rows, take = duet_chunk_take(r->done, r->n, r->resumed_from, budget, &rows);
		budget -= take;
		r->step = take;
		p->fwd[n] = (struct duet_fwd_seq){&r->kv, r->tokens + r->done, take,
						  r->done + take == r->n ? DUET_LOGITS_LAST
									 : DUET_LOGITS_NONE,
						  r->logits, r, rows};
		p->batch[n++] = r;
	}
	/* Requests whose KV could not be sent are reported and dropped. */
	for (int i = p->n_q - 1; i >= 0; i--)
		if (p->q[i]->failed) {
			struct preq *r = p->q[i];
			duet_node_fail(&p->node, r->id, DUET__ERROR_CODE__ERR_UNREACHABLE,
				       "the prefill node could not send the KV to the decode node");
			prefill_drop(p, r);
		}
	if (!n)
		return 0;
	struct duet_err err;
	long long t0 = duet_now_us();
	if (duet_forward(p->node.engine, p->fwd, n, &err)) {
		duet_log(DUET_LOG_ERR, 0, "prefill batch of %d prompts: %s", n, err.msg);
		for (int i = 0; i < n; i++) {
			duet_node_fail(&p->node, p->batch[i]->id, DUET__ERROR_CODE__ERR_INTERNAL, err.msg);
			prefill_drop(p, p->batch[i]);
		}
		return 1;
	}
	long long t1 = duet_now_us(), dt = t1 - t0;
	int tokens = p->node.cfg.max_batch_tokens - budget;
	long long positions = 0, pairs = 0;
	for (int i = 0; i < n; i++) {
		positions += (long long)p->batch[i]->kv.n_tokens; /* after the pass */
		pairs += (long long)p->batch[i]->step * p->batch[i]->done;
	}
	duet_trace_span("prefill", "prefill", t0, t1,
			"\"seqs\":%d,\"tokens\":%d,\"positions\":%lld,\"pairs\":%lld", n, tokens,
			positions, pairs);
	double rate = (double)tokens / ((double)dt * 1e-6 + 1e-9);
	p->rate = p->rate == 0 ? rate : 0.8 * p->rate + 0.2 * rate;
	p->computed_tokens += (uint64_t)tokens;
	for (int i = 0; i < n; i++) {
		struct preq *r = p->batch[i];
		r->done += r->step;
		r->compute_us += dt;
		if (r->failed) {
			duet_node_fail(&p->node, r->id, DUET__ERROR_CODE__ERR_UNREACHABLE,
				       "the prefill node could not send the KV to the decode node");
			prefill_drop(p, r);
		} else if (r->done == r->n) {
			complete(p, r);
			prefill_drop(p, r);
		}
	}
	return 1;
}
