/* Decode requests: admission (KV reservations and local work), lookup,
 * cancel, timeouts, and the end of a request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "decode.h"
#include "node/chunk.h"

struct dreq *decode_find(struct decode *d, uint64_t id)
{
	return duet_idmap_get(&d->by_id, id);
}

int decode_recently_failed(const struct decode *d, uint64_t id)
{
	for (int i = 0; i < DECODE_RECENT_FAILED; i++)
		if (d->recent_failed[i] == id)
			return 1;
	return 0;
}

/* A message's response format (checked by duet_wire_sampling). */
#define FORMAT(s) ((s) ? (int)(s)->format : 0)
#define SCHEMA(s) ((s) && (s)->json_schema ? (s)->json_schema : "")

static void send_or_log(struct decode *d, const Duet__Msg *m, uint64_t id)
{
	struct duet_err err;
	if (duet_node_send(&d->node, m, &err))
		duet_log(DUET_LOG_WARN, id, "sending %s to the router: %s",
			 duet_wire_body_name(m->body_case), err.msg);
}

struct dreq *decode_new_req(struct decode *d, uint64_t id, int n_prompt, const int *prompt,
			    int max_tokens, const Duet__Sampling *s, int ignore_eos,
			    int n_sampled, struct duet_err *err)
{
	struct duet_node *n = &d->node;
	int ctx = n->model->cfg.ctx_len;
	struct duet_sampling sp;
	if (id == 0)
		return duet_errf(err, "request id 0 is reserved"), NULL;
	if (decode_find(d, id))
		return duet_errf(err, "request %llu is already here", (unsigned long long)id), NULL;
	if (n_prompt < 1 || n_prompt >= ctx)
		return duet_errf(err, "prompt of %d tokens; the context holds %d", n_prompt, ctx), NULL;
	if (max_tokens < 1 || n_sampled < 0 || n_sampled > max_tokens)
		return duet_errf(err, "max_tokens %d with %d already sampled", max_tokens, n_sampled),
		       NULL;
	if (duet_node_sampling(s, n->model->cfg.vocab_size, &sp, err))
		return NULL;
	if (d->n_reqs == d->cfg.max_requests)
		return duet_errf(err, "no room: %d requests already here (max-requests)",
				 d->n_reqs), NULL;
	long need = (long)n_prompt + max_tokens - n_sampled;
	if (need > ctx)
		need = ctx;
	struct dreq *r = calloc(1, sizeof *r);
	if (!r)
		return duet_errf(err, "out of memory"), NULL;
	r->id = id;
	r->n_prompt = n_prompt;
	r->max_tokens = max_tokens;
	r->ignore_eos = ignore_eos;
	r->n_generated = n_sampled;
	duet_kv_seq_init(&r->kv);
	r->logits = malloc(sizeof(float) * (size_t)n->model->cfg.vocab_size);
	if (!r->logits) {
		duet_errf(err, "out of memory");
		goto fail_logits;
	}
	if (duet_sampler_init(&r->sampler, &sp, n->model->cfg.vocab_size, err))
		goto fail_logits;
	duet_sampler_skip(&r->sampler, n_sampled);
	/* The last prompt token is always computed: its logits give the
	 * next token. */
	if (prompt && (r->cached = duet_prefix_attach(n->cache, &r->kv, prompt, n_prompt - 1,
						      err)) < 0)
		goto fail_kv;
	/* Admission holds the room for the whole answer up front, so a
	 * running sequence can never run out of KV mid-stream; blocks only
	 * the prefix cache holds are room. */
	int more = duet_kv_blocks_for(&n->kv->g, need) - r->kv.n_blocks;
	if (duet_prefix_make_room(n->cache, more) < more) {
		duet_errf(err, "no room: %d more KV blocks wanted, %d free", more, n->kv->n_free);
		goto fail_kv;
	}
	if (duet_kv_seq_reserve(n->kv, &r->kv, (int)need, err)) {
		duet_err_prefix(err, "no room");
		goto fail_kv;
	}
	if (duet_idmap_put(&d->by_id, id, r, err))
		goto fail_kv;
	d->reqs[d->n_reqs++] = r;
	return r;
fail_kv:
	duet_kv_seq_release(n->kv, &r->kv);
	duet_sampler_free(&r->sampler);
fail_logits:
	free(r->logits);
	free(r);
	return NULL;
}

void decode_drop(struct decode *d, struct dreq *r)
{
	for (int i = 0; i < d->n_reqs; i++)
		if (d->reqs[i] == r) {
			/* Keep arrival order: local prefills are served FIFO. */
			memmove(&d->reqs[i], &d->reqs[i + 1],
				sizeof *d->reqs * (size_t)(d->n_reqs - i - 1));
			d->n_reqs--;
			break;
		}
	duet_idmap_del(&d->by_id, r->id);
	/* the ingest thread may be writing its rows: not after this */
	if (r->st == DREQ_WAIT_KV)
		kv_ingest_forget(d->ingest, r->id);
	duet_kv_seq_release(d->node.kv, &r->kv);
	duet_sampler_free(&r->sampler);
	if (r->guided)
		duet_guide_free(&r->guide);
	if (r->spec) {
		duet_spec_free(r->spec);
		free(r->spec);
	}
	free(r->logits);
	free(r->prompt);
	free(r);
}

void decode_fail(struct decode *d, struct dreq *r, Duet__ErrorCode code, const char *why)
{
	d->recent_failed[d->recent_pos] = r->id;
	d->recent_pos = (d->recent_pos + 1) % DECODE_RECENT_FAILED;
	duet_node_fail(&d->node, r->id, code, why);
	decode_drop(d, r);
}

/* A count from the wire as an int; absurd values become -1, which
 * decode_new_req refuses. */
static int as_int(uint32_t v)
{
	return v > (1u << 30) ? -1 : (int)v;
}

static Duet__ErrorCode refusal_code(const struct decode *d, const char *why)
{
	if (d->node.stopping)
		return DUET__ERROR_CODE__ERR_DRAINING;
	return strncmp(why, "no room", 7) == 0 ? DUET__ERROR_CODE__ERR_NO_ROOM
					       : DUET__ERROR_CODE__ERR_BAD_MESSAGE;
}

static void refuse(struct decode *d, uint64_t id, const char *what, const char *why)
{
	char buf[DUET_ERR_MAX + 64];
	snprintf(buf, sizeof buf, "%s refused: %s", what, why);
	Duet__ErrorCode code = refusal_code(d, why);
	if (code == DUET__ERROR_CODE__ERR_BAD_MESSAGE)
		d->node.bad_messages++;
	duet_node_fail(&d->node, id, code, buf);
}

/* What sampling needs of the tokens so far (n, the last n_gen of them
 * generated): the penalties' history, a response format's document state,
 * the speculation's text; fails (and drops) the request on a bad one. */
static int sampling_context(struct decode *d, struct dreq *r, const Duet__Sampling *s,
			    const int *tokens, int n, int n_gen)
{
	struct duet_err err;
	if (tokens)
		duet_sampler_history(&r->sampler, tokens, n, n_gen);
	if (duet_node_guide(&d->node, FORMAT(s), SCHEMA(s), tokens, n, n_gen, &r->guide,
			    &r->sampler, &r->guided, &err)) {
		d->node.bad_messages++;
		decode_fail(d, r, DUET__ERROR_CODE__ERR_BAD_MESSAGE, err.msg);
		return -1;
	}
	if (tokens && decode_spec_start(d, r, tokens, n, &err)) {
		decode_fail(d, r, DUET__ERROR_CODE__ERR_INTERNAL, err.msg);
		return -1;
	}
	return 0;
}

void decode_cache_prompt(struct decode *d, struct dreq *r)
{
	/* the prompt only: a resume's streamed tokens have decode steps' K
	 * and V, which a later prompt holding them would not compute */
	if (r->prompt)
		duet_prefix_insert(d->node.cache, &r->kv, r->prompt, r->resumed_from);
}

void decode_handle_reserve(struct decode *d, const Duet__KvReserve *m)
{
	struct duet_err err;
	if (d->node.stopping) {
		refuse(d, m->request_id, "reservation", "the node is draining");
		return;
	}
	if (m->n_sampled < 1) {
		refuse(d, m->request_id, "reservation",
		       "n_sampled must be at least 1 (the prefill node's token)");
		return;
	}
	/* A reservation's KV all comes from the prefill node, into blocks of
	 * its own (cached blocks are shared read-only, never written); the
	 * prompt's tokens, when given, let the node keep that KV in its
	 * prefix cache for later prompts. */
	if (m->n_tokens && (m->n_tokens != m->n_prompt ||
			    duet_wire_check_tokens(m->tokens, m->n_tokens, &d->node.lim, &err))) {
		refuse(d, m->request_id, "reservation",
		       m->n_tokens != m->n_prompt ? "tokens do not match n_prompt" : err.msg);
		return;
	}
	struct dreq *r = decode_new_req(d, m->request_id, as_int(m->n_prompt), NULL,
					as_int(m->max_tokens), m->sampling, m->ignore_eos,
					as_int(m->n_sampled), &err);
	if (!r) {
		refuse(d, m->request_id, "reservation", err.msg);
		return;
	}
	r->st = DREQ_WAIT_KV;
	r->tbt_ms = as_int(m->tbt_ms);
	if (m->n_tokens)
		r->prompt = duet_wire_tokens_copy(m->tokens, m->n_tokens);
	if (m->n_tokens && !r->prompt) {
		decode_fail(d, r, DUET__ERROR_CODE__ERR_INTERNAL, "out of memory");
		return;
	}
	/* The tokens end with the n_sampled - 1 generated before this
	 * placement; the prefill node's first token comes with the KV. */
	r->resumed_from = duet_chunk_resumed_from(r->n_prompt, as_int(m->n_sampled) - 1);
	if (sampling_context(d, r, m->sampling, r->prompt, r->prompt ? r->n_prompt : 0,
			     (int)m->n_sampled - 1))
		return;
	r->deadline_us = duet_now_us() + (long long)(d->cfg.kv_timeout_s * 1e6);
	/* before the reply: the prefill node sends as soon as it hears */
	if (kv_ingest_expect(d->ingest, r->id, &r->kv, r->n_prompt, &err)) {
		decode_fail(d, r, DUET__ERROR_CODE__ERR_INTERNAL, err.msg);
		return;
	}
	Duet__KvReserveReply rep = DUET__KV_RESERVE_REPLY__INIT;
	rep.request_id = r->id;
	rep.kv_blocks_free = (uint32_t)duet_node_kv_room(&d->node);
	Duet__Msg out = duet_wire_msg(DUET__MSG__BODY_RESERVE_REPLY, &rep);
	send_or_log(d, &out, r->id);
	duet_log(DUET_LOG_DEBUG, r->id, "reserved %d blocks for %d + %d tokens", r->kv.n_blocks,
		 r->n_prompt, r->max_tokens);
}

void decode_handle_local(struct decode *d, const Duet__LocalWork *m)
{
	struct duet_err err;
	if (d->node.stopping) {
		refuse(d, m->request_id, "local work", "the node is draining");
		return;
	}
	if (duet_wire_check_tokens(m->tokens, m->n_tokens, &d->node.lim, &err)) {
		refuse(d, m->request_id, "local work", err.msg);
		return;
	}
	if (m->n_sampled >= m->max_tokens) {
		refuse(d, m->request_id, "local work", "no token left to generate (n_sampled >= max_tokens)");
		return;
	}
	int *prompt = duet_wire_tokens_copy(m->tokens, m->n_tokens);
	if (!prompt) {
		refuse(d, m->request_id, "local work", "out of memory");
		return;
	}
	struct dreq *r = decode_new_req(d, m->request_id, (int)m->n_tokens, prompt,
					as_int(m->max_tokens), m->sampling, m->ignore_eos,
					as_int(m->n_sampled), &err);
	if (!r) {
		free(prompt);
		refuse(d, m->request_id, "local work", err.msg);
		return;
	}
	r->st = DREQ_LOCAL;
	r->prompt = prompt;
	r->resumed_from = duet_chunk_resumed_from(r->n_prompt, as_int(m->n_sampled));
	r->tbt_ms = as_int(m->tbt_ms);
	if (sampling_context(d, r, m->sampling, prompt, r->n_prompt, (int)m->n_sampled))
		return;
	r->prefilled = r->cached;
	duet_log(DUET_LOG_DEBUG, r->id, "local prefill of %d tokens (%d cached)", r->n_prompt,
		 r->cached);
}

static void finish(struct decode *d, struct dreq *r, Duet__FinishReason why)
{
	Duet__Finish f = DUET__FINISH__INIT;
	f.request_id = r->id;
	f.reason = why;
	f.n_generated = (uint32_t)r->n_generated;
	Duet__Msg out = duet_wire_msg(DUET__MSG__BODY_FINISH, &f);
	send_or_log(d, &out, r->id);
	duet_log(DUET_LOG_DEBUG, r->id, "finished (%s) after %d tokens",
		 why == DUET__FINISH_REASON__FINISH_STOP	 ? "stop"
		 : why == DUET__FINISH_REASON__FINISH_LENGTH ? "length"
							     : "cancelled",
		 r->n_generated);
	decode_drop(d, r);
}

void decode_handle_cancel(struct decode *d, const Duet__Cancel *m)
{
	struct dreq *r = decode_find(d, m->request_id);
	if (!r) {
		duet_log(DUET_LOG_DEBUG, m->request_id, "cancel of a request not here");
		return;
	}
	finish(d, r, DUET__FINISH_REASON__FINISH_CANCELLED);
}

void decode_expire(struct decode *d, long long now_us)
{
	for (int i = d->n_reqs - 1; i >= 0; i--) {
		struct dreq *r = d->reqs[i];
		if (r->st == DREQ_WAIT_KV && now_us > r->deadline_us)
			decode_fail(d, r, DUET__ERROR_CODE__ERR_TIMEOUT,
				    "the prompt's KV did not arrive in time (kv-timeout)");
	}
}

int decode_emit(struct decode *d, struct dreq *r, int token, int first,
		const struct duet_logprobs *lp)
{
	const struct duet_model *m = d->node.model;
	if (token < 0) {
		decode_fail(d, r, DUET__ERROR_CODE__ERR_INTERNAL,
			    "no token of the vocabulary continues the response_format document");
		return 1;
	}
	if (r->guided && duet_guide_accept(&r->guide, token)) {
		decode_fail(d, r, DUET__ERROR_CODE__ERR_BAD_MESSAGE,
			    "the first token breaks the response_format document");
		return 1;
	}
	int index = r->n_generated++;
	duet_sampler_accept(&r->sampler, token);
	if (!first) {
		/* The first token reached the router from whoever sampled it. */
		Duet__TokenEvent t = DUET__TOKEN_EVENT__INIT;
		t.request_id = r->id;
		t.index = (uint32_t)index;
		t.token = token;
		t.emitted_us = (uint64_t)duet_now_us();
		Duet__Logprobs wl;
		if (lp)
			t.logprobs = duet_node_logprobs(lp, &wl);
		Duet__Msg out = duet_wire_msg(DUET__MSG__BODY_TOKEN, &t);
		send_or_log(d, &out, r->id);
	}
	/* The same ends as duet_generate: EOS or an end-of-turn token,
	 * max_tokens, a full context. */
	/* A guided document that is whole ends the answer, even with
	 * ignore_eos: nothing could follow it. */
	if ((duet_vocab_is_eog(&m->vocab, token) && !r->ignore_eos) ||
	    (r->guided && duet_guide_finished(&r->guide))) {
		finish(d, r, DUET__FINISH_REASON__FINISH_STOP);
		return 1;
	}
	if (r->n_generated >= r->max_tokens || r->kv.n_tokens + 1 >= m->cfg.ctx_len) {
		finish(d, r, DUET__FINISH_REASON__FINISH_LENGTH);
		return 1;
	}
	r->next_token = token;
	r->st = DREQ_RUNNING;
	return 0;
}
