/* The router's core (main thread): membership from hellos and load
 * reports, placement of queued requests, and the events of each request
 * (first token, tokens, finish, errors) turned into text for its client. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/grow.h"
#include "base/log.h"
#include "base/trace.h"
#include "router.h"

static int send_to(struct router *r, int node, Duet__Msg *m)
{
	struct duet_err err;
	if (duet_zsend(r->ctl, r->nodes[node].name, m, NULL, 0, &err)) {
		/* ROUTER_MANDATORY: the peer's connection is gone, so the node
		 * is, whatever its last load report said. */
		duet_log(DUET_LOG_WARN, 0, "to %s: %s", r->nodes[node].name, err.msg);
		/* Its other requests are placed again by check_liveness, not
		 * here: the caller may be in the middle of placing one. */
		if (r->nodes[node].alive)
			r->nodes[node].gone = 1;
		r->nodes[node].alive = 0;
		return -1;
	}
	return 0;
}

static void resume(struct router *r, struct rreq *q, const char *why);

static int find_node(struct router *r, const char *name)
{
	for (int i = 0; i < r->n_nodes; i++)
		if (strcmp(r->nodes[i].name, name) == 0)
			return i;
	return -1;
}

static int any_decode_usable(const struct router_node *t, int n)
{
	for (int i = 0; i < n; i++)
		if (router_node_usable(&t[i], DUET__ROLE__ROLE_DECODE))
			return 1;
	return 0;
}

int router_can_serve(struct router *r)
{
	return any_decode_usable(r->nodes, r->n_nodes);
}

const double ROUTER_HIST_BOUNDS[ROUTER_HIST_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25,	0.5,	 1,	 2.5,	5,	10,    30,   60,    1e300};

void router_hist_add(struct router_hist *h, double s)
{
	for (int i = 0; i < ROUTER_HIST_BUCKETS; i++)
		if (s <= ROUTER_HIST_BOUNDS[i]) {
			h->le[i]++;
			break;
		}
	h->count++;
	h->sum += s;
}

int router_can_serve_snap(struct router *r)
{
	pthread_mutex_lock(&r->mu);
	int up = any_decode_usable(r->snap, r->n_snap);
	pthread_mutex_unlock(&r->mu);
	return up;
}

/* ---- requests ---- */

static int list_add(struct rreq ***l, int *n, int *cap, struct rreq *q)
{
	struct rreq **nl = duet_grow(*l, cap, *n + 1, sizeof *nl, 64);
	if (!nl)
		return -1;
	*l = nl;
	nl[(*n)++] = q;
	return 0;
}

static void list_del(struct rreq **l, int *n, struct rreq *q)
{
	for (int i = 0; i < *n; i++)
		if (l[i] == q) {
			memmove(&l[i], &l[i + 1], sizeof *l * (size_t)(*n - i - 1));
			(*n)--;
			return;
		}
}

/* Every message of a node names a wire id: found in O(1). */
static struct rreq *find_req(struct router *r, uint64_t id)
{
	struct rreq *q = duet_idmap_get(&r->by_wid, id);
	return q && q->state != RQ_PENDING ? q : NULL;
}

/* The request's current wire id stops naming it (late messages of an old
 * placement then find nothing). */
static void forget_wid(struct router *r, struct rreq *q)
{
	if (duet_idmap_get(&r->by_wid, q->wid) == q)
		duet_idmap_del(&r->by_wid, q->wid);
}

int router_submit(struct router *r, struct rreq *q)
{
	pthread_mutex_lock(&r->mu);
	q->id = r->next_id++;
	q->refs = 2; /* the HTTP thread's and the core's */
	int rc = list_add(&r->pending, &r->n_pending, &r->cap_pending, q);
	pthread_mutex_unlock(&r->mu);
	if (rc)
		return -1;
	uint64_t one = 1;
	if (write(r->wake_fd, &one, sizeof one) < 0)
		duet_log(DUET_LOG_WARN, q->id, "waking the core: %s", strerror(errno));
	return 0;
}

struct rwaker *router_waker_new(void)
{
	struct rwaker *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->refs = 1;
	return w;
}

void router_waker_ref(struct rwaker *w)
{
	pthread_mutex_lock(&w->mu);
	w->refs++;
	pthread_mutex_unlock(&w->mu);
}

void router_waker_unref(struct rwaker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	int last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (last) {
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		free(w);
	}
}

void router_waker_signal(struct rwaker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->seq++;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Wakes whoever waits on q (its HTTP thread), after a change made under
 * q->mu, which it releases. */
static void wake_unlock(struct rreq *q)
{
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	router_waker_signal(q->waker);
}

static void free_req(struct rreq *q)
{
	duet_stopper_free(&q->stopper);
	for (int i = 0; i < q->n_stops; i++)
		free(q->stops[i]);
	free(q->prompt);
	free(q->tok);
	free(q->lp);
	free(q->json_schema);
	router_waker_unref(q->waker);
	free(q->have);
	free(q->tok_end);
	free(q->work);
	free(q->text);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	free(q);
}

void router_release(struct router *r, struct rreq *q)
{
	pthread_mutex_lock(&r->mu);
	int last = --q->refs == 0;
	pthread_mutex_unlock(&r->mu);
	if (last)
		free_req(q);
}

/* Appends text for the client (under q->mu). */
static void append_text(struct rreq *q, const char *s, size_t n)
{
	if (!n)
		return;
	if (q->text_len + n + 1 > q->text_cap) {
		size_t c = q->text_cap ? q->text_cap : 256;
		while (c < q->text_len + n + 1)
			c *= 2;
		char *t = realloc(q->text, c);
		if (!t)
			return;
		q->text = t;
		q->text_cap = c;
	}
	memcpy(q->text + q->text_len, s, n);
	q->text_len += n;
	q->text[q->text_len] = 0;
}

static void node_done(struct router *r, struct rreq *q)
{
	router_placement_end(r, q);
}

/* Ends the request for its client: done, or failed with an HTTP status. */
static void end(struct router *r, struct rreq *q, const char *reason, int status, const char *msg)
{
	if (q->state == RQ_DONE)
		return;
	if (q->state != RQ_PENDING)
		node_done(r, q);
	q->state = RQ_DONE;
	forget_wid(r, q);
	pthread_mutex_lock(&q->mu);
	if (status) {
		q->http_status = status;
		snprintf(q->error, sizeof q->error, "%s", msg);
	} else {
		/* What the stopper or detokenizer still holds is output now. */
		char buf[DUET_DETOK_MAX_OUT + DUET_MAX_STOP_LEN];
		if (!q->stopper.stopped) {
			char t[DUET_DETOK_MAX_OUT];
			size_t n = duet_detok_flush(&q->detok, t);
			size_t k = duet_stopper_feed(&q->stopper, t, n, buf);
			k += duet_stopper_flush(&q->stopper, buf + k);
			append_text(q, buf, k);
		}
		q->finish_reason = reason;
	}
	q->done = 1;
	wake_unlock(q);
	pthread_mutex_lock(&r->mu);
	if (status) {
		r->n_failed++;
	} else {
		r->n_ok++;
		router_hist_add(&r->e2e, (double)(duet_now_us() - q->t_arrival_us) * 1e-6);
	}
	r->tokens_out += (uint64_t)q->n_out;
	r->tok_pub = r->tok; /* this request's tokens are in /metrics when it ends */
	list_del(r->live, &r->n_live, q);
	int last = --q->refs == 0;
	pthread_mutex_unlock(&r->mu);
	if (last)
		free_req(q);
}

static void cancel_on_nodes(struct router *r, struct rreq *q)
{
	Duet__Cancel c = DUET__CANCEL__INIT;
	c.request_id = q->wid;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_CANCEL, &c);
	if (q->dnode >= 0)
		send_to(r, q->dnode, &m);
	if (q->pnode >= 0)
		send_to(r, q->pnode, &m);
}

/* Feeds tokens that are now contiguous to the detokenizer and stopper. */
static void emit_ready(struct router *r, struct rreq *q)
{
	while (q->n_emitted < q->tok_cap && q->have[q->n_emitted] && q->state != RQ_DONE) {
		int t = q->tok[q->n_emitted++];
		long long now = duet_now_us();
		if (q->n_out == 0)
			router_hist_add(&r->tok.ttft, (double)(now - q->t_arrival_us) * 1e-6);
		else
			router_hist_add(&r->tok.tbt, (double)(now - q->t_last_us) * 1e-6);
		pthread_mutex_lock(&q->mu);
		if (q->n_out == 0)
			q->t_first_us = now;
		q->t_last_us = now;
		q->n_out++;
		int is_eos = duet_vocab_is_eog(&r->model->vocab, t) && !q->ignore_eos;
		if (!is_eos) {
			char text[DUET_DETOK_MAX_OUT], shown[DUET_DETOK_MAX_OUT + DUET_MAX_STOP_LEN];
			size_t n = 0;
			struct duet_err err;
			if (duet_detok_push(&q->detok, t, text, &n, &err) == 0)
				append_text(q, shown, duet_stopper_feed(&q->stopper, text, n, shown));
		}
		q->tok_end[q->n_out - 1] = q->text_len;
		wake_unlock(q);
		if (q->stopper.stopped) {
			cancel_on_nodes(r, q);
			end(r, q, "stop", 0, NULL);
			return;
		}
		if (is_eos) {
			end(r, q, "stop", 0, NULL);
			return;
		}
	}
	if (q->state != RQ_DONE && q->n_total >= 0 && q->n_emitted >= q->n_total)
		end(r, q, q->finish_hint, 0, NULL);
}

/* The node's log-probabilities as the request asked for them; a malformed
 * set is logged and left out (the token itself stands). */
static void got_logprobs(struct router *r, struct rreq *q, uint32_t index,
			 const Duet__Logprobs *w)
{
	if (!q->lp)
		return;
	struct rlogprob *lp = &q->lp[index];
	lp->chosen = NAN;
	lp->n_top = 0;
	if (!w)
		return;
	size_t k = w->n_top_tokens;
	int ok = k == w->n_top && k <= (size_t)q->sampling.top_logprobs && isfinite(w->chosen) &&
		 w->chosen <= 0;
	for (size_t i = 0; ok && i < k; i++)
		ok = w->top_tokens[i] >= 0 && w->top_tokens[i] < r->model->cfg.vocab_size &&
		     w->top[i] <= 0 && !isnan(w->top[i]);
	if (!ok) {
		duet_log(DUET_LOG_WARN, q->id, "malformed log-probabilities for token %u", index);
		return;
	}
	lp->chosen = w->chosen;
	lp->n_top = (int)k;
	for (size_t i = 0; i < k; i++) {
		lp->top_id[i] = w->top_tokens[i];
		lp->top[i] = w->top[i];
	}
}

/* A token of the request at index; streamed to the client now (with every
 * earlier one), unless held (emit 0) for a later emit_ready. */
static void got_token(struct router *r, struct rreq *q, uint32_t index, int token,
		      const Duet__Logprobs *lp, int emit)
{
	if (token < 0 || token >= r->model->cfg.vocab_size || index >= (uint32_t)q->tok_cap) {
		duet_log(DUET_LOG_WARN, q->id, "token %d at index %u out of range", token, index);
		return;
	}
	got_logprobs(r, q, index, lp);
	q->tok[index] = token;
	q->have[index] = 1;
	if (q->state == RQ_PREFILLING || q->state == RQ_RESERVING)
		q->state = RQ_DECODING;
	if (emit)
		emit_ready(r, q);
}

/* Logit-bias arrays as the wire carries them. */
struct wire_bias {
	int32_t tok[DUET_MAX_LOGIT_BIAS];
	float val[DUET_MAX_LOGIT_BIAS];
};

static Duet__Sampling wire_sampling(const struct rreq *q, struct wire_bias *b)
{
	const struct duet_sampling *p = &q->sampling;
	Duet__Sampling s = DUET__SAMPLING__INIT;
	s.temperature = p->temperature;
	s.top_k = p->top_k;
	s.top_p = p->top_p;
	s.seed = p->seed;
	s.min_p = p->min_p;
	s.presence_penalty = p->presence_penalty;
	s.frequency_penalty = p->frequency_penalty;
	s.repetition_penalty = p->repetition_penalty;
	for (int i = 0; i < p->n_bias; i++) {
		b->tok[i] = p->bias[i].id;
		b->val[i] = p->bias[i].bias;
	}
	s.n_bias_tokens = s.n_bias_values = (size_t)p->n_bias;
	s.bias_tokens = b->tok;
	s.bias_values = b->val;
	s.logprobs = p->logprobs;
	s.top_logprobs = (uint32_t)p->top_logprobs;
	s.format = (Duet__ResponseFormat)q->format;
	s.json_schema = q->json_schema ? q->json_schema : "";
	return s;
}

static void send_prefill(struct router *r, struct rreq *q)
{
	struct router_node *d = &r->nodes[q->dnode];
	struct wire_bias b;
	Duet__Sampling s = wire_sampling(q, &b);
	Duet__PrefillWork w = DUET__PREFILL_WORK__INIT;
	w.request_id = q->wid;
	w.n_tokens = (size_t)(q->n_prompt + q->base);
	w.tokens = q->base ? q->work : q->prompt;
	w.sampling = &s;
	w.sample_index = (uint32_t)q->base;
	w.decode_node = d->name;
	w.decode_endpoint = d->kv_endpoint;
	w.decode_public_key = d->kv_key;
	w.decode_digest = d->digest;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_PREFILL, &w);
	q->state = RQ_PREFILLING;
	if (send_to(r, q->pnode, &m))
		resume(r, q, "the prefill node is unreachable");
}

/* The request is placed or queued: its HTTP thread may start a stream. */
static void admit(struct rreq *q)
{
	pthread_mutex_lock(&q->mu);
	q->admitted = 1;
	wake_unlock(q);
}

static void reject(struct router *r, struct rreq *q, int status, const char *why)
{
	pthread_mutex_lock(&r->mu);
	r->n_rejected++;
	pthread_mutex_unlock(&r->mu);
	end(r, q, NULL, status, why);
}

/* What the router knew of a decode node when it placed a request there
 * (before the placement counts): a trace of a placement or an early 429
 * says what its prediction came from. */
struct node_seen {
	int running, local_prefill, waiting_kv, inflight, n_left;
	unsigned long long local_tokens, context;
	double base, seq, token, kctx, kpair; /* its step model */
};

static void node_seen(const struct router_node *n, struct node_seen *v)
{
	*v = (struct node_seen){n->running,
				n->local_prefill,
				n->waiting_kv,
				n->inflight,
				(int)n->n_left,
				(unsigned long long)n->local_prefill_tokens,
				(unsigned long long)n->context_tokens,
				n->step_base_ms,
				n->step_seq_ms,
				n->step_token_ms,
				n->step_kctx_ms,
				n->step_kpair_ms};
}

static void trace_place(const struct router *r, const struct rreq *q,
			const struct router_placement *pl, const struct node_seen *v,
			long long t0, const char *what)
{
	if (!duet_trace_on())
		return;
	char dn[2 * DUET_MAX_NAME + 2] = "", pn[2 * DUET_MAX_NAME + 2] = "";
	duet_trace_escape(r->nodes[pl->dnode].name, dn, sizeof dn);
	if (pl->pnode >= 0)
		duet_trace_escape(r->nodes[pl->pnode].name, pn, sizeof pn);
	duet_trace_span("router", what, t0, duet_now_us(),
			"\"request\":%llu,\"wire_id\":%llu,\"prompt\":%d,\"uncached\":%d,"
			"\"decode\":\"%s\",\"prefill\":\"%s\",\"ttft_ms\":%.1f,"
			"\"step_ms\":%.1f,\"reason\":\"%s\",\"running\":%d,"
			"\"local_prefill\":%d,\"waiting_kv\":%d,\"inflight\":%d,"
			"\"streams_listed\":%d,\"local_tokens\":%llu,\"context\":%llu,"
			"\"step_model\":[%.3f,%.3f,%.3f,%.3f,%.3f]",
			(unsigned long long)q->id, (unsigned long long)q->wid, q->n_prompt,
			pl->uncached, dn, pn, pl->ttft_ms, pl->step_ms, pl->reason, v->running,
			v->local_prefill, v->waiting_kv, v->inflight, v->n_left, v->local_tokens,
			v->context, v->base, v->seq, v->token, v->kctx, v->kpair);
}

/* Places the request; 1 if no decode node has room for it now (nothing
 * done: the caller queues it or answers). */
static int place(struct router *r, struct rreq *q)
{
	long long t0 = duet_now_us();
	struct router_placement pl;
	struct duet_err err;
	if (router_place(r, q, &pl, &err)) {
		if (!router_can_serve(r)) {
			reject(r, q, 503, "no decode node is up");
			return 0;
		}
		duet_log(DUET_LOG_DEBUG, q->id, "waits: %s", err.msg);
		return 1;
	}
	struct node_seen seen;
	node_seen(&r->nodes[pl.dnode], &seen);
	/* A request placed again after a node failed has its stream going:
	 * it is served, not refused. */
	if (pl.reject && q->attempts == 0) {
		trace_place(r, q, &pl, &seen, t0, "reject");
		char why[200];
		snprintf(why, sizeof why,
			 "the first token would come in %.0f ms, past the %d ms objective: the "
			 "cluster is queued too deep (retry after %d s)",
			 pl.ttft_ms, router_slo_ttft_ms(r, q), pl.retry_after_s);
		duet_log(DUET_LOG_DEBUG, q->id, "early 429: %s", why);
		pthread_mutex_lock(&r->mu);
		r->n_early_rejected++;
		pthread_mutex_unlock(&r->mu);
		q->retry_after_s = pl.retry_after_s;
		reject(r, q, 429, why);
		return 0;
	}
	admit(q);
	int p = pl.pnode, d = pl.dnode;
	/* The first placement uses the client's id, so the nodes' journal
	 * entries carry the same DUET_REQUEST_ID as the router's; a placement
	 * after a failure needs a fresh one (late messages of the old one must
	 * not match) and the router logs it. */
	forget_wid(r, q);
	if (q->attempts == 0) {
		q->wid = q->id;
	} else {
		pthread_mutex_lock(&r->mu);
		q->wid = r->next_id++;
		pthread_mutex_unlock(&r->mu);
	}
	if (duet_idmap_put(&r->by_wid, q->wid, q, &err)) {
		end(r, q, NULL, 500, err.msg);
		return 0;
	}
	q->attempts++;
	router_placement_commit(r, q, &pl);
	pthread_mutex_lock(&r->mu);
	if (q->local)
		r->n_local++;
	else
		r->n_disagg++;
	r->tokens_in += (uint64_t)q->n_prompt;
	pthread_mutex_unlock(&r->mu);
	duet_log(q->attempts > 1 ? DUET_LOG_INFO : DUET_LOG_DEBUG, q->id,
		 "%d prompt tokens: %s on %s%s%s (%s), wire id %llu", q->n_prompt,
		 q->local ? "local" : "disaggregated", r->nodes[d].name, p >= 0 ? " after " : "",
		 p >= 0 ? r->nodes[p].name : "", pl.reason, (unsigned long long)q->wid);
	trace_place(r, q, &pl, &seen, t0, "place");
	struct wire_bias b;
	Duet__Sampling s = wire_sampling(q, &b);
	if (q->local) {
		Duet__LocalWork w = DUET__LOCAL_WORK__INIT;
		w.request_id = q->wid;
		w.n_tokens = (size_t)(q->n_prompt + q->base);
		w.tokens = q->base ? q->work : q->prompt;
		w.max_tokens = (uint32_t)q->max_tokens;
		w.n_sampled = (uint32_t)q->base;
		w.sampling = &s;
		w.ignore_eos = q->ignore_eos;
		w.tbt_ms = (uint32_t)router_slo_tbt_ms(r, q);
		Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_LOCAL, &w);
		q->state = RQ_DECODING;
		if (send_to(r, d, &m))
			resume(r, q, "the decode node is unreachable");
		return 0;
	}
	Duet__KvReserve res = DUET__KV_RESERVE__INIT;
	res.request_id = q->wid;
	res.n_prompt = (uint32_t)(q->n_prompt + q->base);
	res.n_tokens = (size_t)(q->n_prompt + q->base);
	res.tokens = q->base ? q->work : q->prompt;
	res.max_tokens = (uint32_t)q->max_tokens;
	res.sampling = &s;
	res.ignore_eos = q->ignore_eos;
	res.n_sampled = (uint32_t)q->base + 1;
	res.tbt_ms = (uint32_t)router_slo_tbt_ms(r, q);
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_RESERVE, &res);
	q->state = RQ_RESERVING;
	if (send_to(r, d, &m))
		resume(r, q, "the decode node is unreachable");
	return 0;
}

/* Queues a request no decode node has room for, bounded in length and
 * time; past either bound the answer is 429 (with Retry-After). */
static void wait_or_reject(struct router *r, struct rreq *q)
{
	if (r->n_waitq >= r->cfg.max_queue) {
		reject(r, q, 429, "no decode node has room and the queue is full");
		return;
	}
	q->queue_deadline_us = duet_now_us() + router_queue_wait_ms(r, q) * 1000;
	if (list_add(&r->waitq, &r->n_waitq, &r->cap_waitq, q))
		reject(r, q, 500, "out of memory");
	else
		admit(q);
}

/* Places queued requests in arrival order while there is room. */
static void drain_waitq(struct router *r)
{
	long long now = duet_now_us();
	while (r->n_waitq) {
		struct rreq *q = r->waitq[0];
		if (q->state == RQ_DONE) { /* client left */
			list_del(r->waitq, &r->n_waitq, q);
			continue;
		}
		if (place(r, q) == 0) {
			list_del(r->waitq, &r->n_waitq, q);
			continue;
		}
		break;
	}
	for (int k = r->n_waitq - 1; k >= 0; k--) {
		struct rreq *q = r->waitq[k];
		if (now > q->queue_deadline_us) {
			list_del(r->waitq, &r->n_waitq, q);
			reject(r, q, 429,
			       "no decode node could take the request within queue-timeout-ms or its "
			       "TTFT objective");
		}
	}
}

/* ---- membership ---- */

static void fail_node_requests(struct router *r, int i, const char *why);

static void on_hello(struct router *r, const char *peer, const Duet__Hello *h)
{
	struct duet_err err;
	if (duet_wire_check_str(h->name, DUET_MAX_NAME, "name", &err) ||
	    duet_wire_check_str(h->kv_endpoint, DUET_MAX_ENDPOINT, "kv_endpoint", &err) ||
	    duet_wire_check_str(h->model_digest, DUET_DIGEST_HEX, "model_digest", &err)) {
		duet_log(DUET_LOG_WARN, 0, "hello from %s refused: %s", peer, err.msg);
		return;
	}
	if (h->report_ms && (h->report_ms < DUET_MIN_REPORT_MS || h->report_ms > DUET_MAX_REPORT_MS)) {
		duet_log(DUET_LOG_WARN, 0, "hello from %s refused: report_ms %u is outside %d-%d", peer,
			 h->report_ms, DUET_MIN_REPORT_MS, DUET_MAX_REPORT_MS);
		return;
	}
	if (*h->kv_public_key && !duet_curve_valid(h->kv_public_key)) {
		duet_log(DUET_LOG_WARN, 0, "hello from %s refused: kv_public_key is not a Z85 key",
			 peer);
		return;
	}
	if (h->vocab_size != (uint32_t)r->model->cfg.vocab_size ||
	    h->ctx_len != (uint32_t)r->model->cfg.ctx_len ||
	    (r->digest[0] && strcmp(r->digest, h->model_digest) != 0) ||
	    (h->role != DUET__ROLE__ROLE_PREFILL && h->role != DUET__ROLE__ROLE_DECODE)) {
		duet_log(DUET_LOG_WARN, 0,
			 "hello from %s refused: model %s (vocabulary %u, context %u) differs from the "
			 "cluster's %s",
			 peer, h->model_digest, h->vocab_size, h->ctx_len,
			 r->digest[0] ? r->digest : "(router model)");
		duet_zsend_error(r->ctl, peer, 0, DUET__ERROR_CODE__ERR_MODEL_MISMATCH,
				 "model differs from the cluster's", &err);
		return;
	}
	if (!r->digest[0])
		snprintf(r->digest, sizeof r->digest, "%s", h->model_digest);
	int i = find_node(r, peer);
	if (i < 0) {
		if (r->n_nodes == ROUTER_MAX_NODES) {
			duet_log(DUET_LOG_WARN, 0, "hello from %s: more than %d nodes", peer,
				 ROUTER_MAX_NODES);
			return;
		}
		i = r->n_nodes++;
		memset(&r->nodes[i], 0, sizeof r->nodes[i]);
		snprintf(r->nodes[i].name, sizeof r->nodes[i].name, "%s", peer);
	}
	struct router_node *n = &r->nodes[i];
	if (n->gone || (n->alive && n->last_report_seq > 0)) {
		/* A hello from a node that was running is a new process under
		 * the old name (the control socket hands the name over to the
		 * newest connection): whatever the old one held is gone. */
		if (n->alive) /* expected after a drain; otherwise it crashed */
			duet_log(n->draining ? DUET_LOG_INFO : DUET_LOG_WARN, 0,
				 "node %s registered again while alive: it restarted (or two nodes "
				 "share the name)", peer);
		n->gone = 0;
		fail_node_requests(r, i, "the node serving the request restarted");
	}
	n->role = h->role;
	snprintf(n->kv_endpoint, sizeof n->kv_endpoint, "%s", h->kv_endpoint);
	snprintf(n->kv_key, sizeof n->kv_key, "%s", h->kv_public_key);
	snprintf(n->digest, sizeof n->digest, "%s", h->model_digest);
	n->kv_blocks = (int)h->kv_blocks;
	n->block_tokens = h->block_tokens ? (int)h->block_tokens : 16;
	n->max_batch_tokens = (int)h->max_batch_tokens;
	n->kv_total = n->kv_free = n->kv_blocks;
	n->alive = 1;
	n->last_seen_us = n->last_report_us = duet_now_us();
	n->last_report_seq = 0;
	/* The node's own interval: judged by a fixed default, a node that
	 * reports once a second was buried before its first report. */
	n->report_ms = h->report_ms ? (int)h->report_ms : ROUTER_DEFAULT_REPORT_MS;
	duet_log(DUET_LOG_INFO, 0, "%s node %s registered (%d KV blocks)",
		 n->role == DUET__ROLE__ROLE_PREFILL ? "prefill" : "decode", n->name, n->kv_blocks);
	Duet__HelloAck a = DUET__HELLO_ACK__INIT;
	a.router = "duet-router";
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_HELLO_ACK, &a);
	send_to(r, i, &m);
}

static void on_load(struct router *r, int i, const Duet__LoadReport *l)
{
	struct duet_err err;
	if (router_node_report(&r->nodes[i], l, duet_now_us(), &err))
		duet_log(DUET_LOG_WARN, 0, "node %s: %s", r->nodes[i].name, err.msg);
}

/* Places the request again after one of its nodes died: the tokens the
 * client already has become part of the prompt, and the stream goes on
 * from the next index (no token lost or repeated). */
static void resume(struct router *r, struct rreq *q, const char *why)
{
	cancel_on_nodes(r, q); /* frees whatever the surviving partner holds */
	node_done(r, q);
	q->pnode = q->dnode = -1;
	q->state = RQ_PENDING;
	q->n_total = -1;
	if (q->attempts >= ROUTER_MAX_ATTEMPTS) {
		end(r, q, NULL, 503, why);
		return;
	}
	q->base = q->n_emitted;
	q->kv_done = 0;
	/* tokens of the dead placement the client never saw (a held first
	 * token) are made again by the next one */
	memset(q->have + q->base, 0, (size_t)(q->tok_cap - q->base));
	if (q->base) {
		int *w = realloc(q->work, sizeof(int) * (size_t)(q->n_prompt + q->base));
		if (!w) {
			end(r, q, NULL, 500, "out of memory");
			return;
		}
		memcpy(w, q->prompt, sizeof(int) * (size_t)q->n_prompt);
		memcpy(w + q->n_prompt, q->tok, sizeof(int) * (size_t)q->base);
		q->work = w;
	}
	duet_log(DUET_LOG_INFO, q->id, "%s: placing again after %d tokens", why, q->base);
	pthread_mutex_lock(&r->mu);
	r->n_resumed++;
	pthread_mutex_unlock(&r->mu);
	if (place(r, q))
		wait_or_reject(r, q);
}

static void fail_node_requests(struct router *r, int i, const char *why)
{
	for (int k = r->n_live - 1; k >= 0; k--) {
		struct rreq *q = r->live[k];
		if (q->state != RQ_DONE && (q->dnode == i || q->pnode == i))
			resume(r, q, why);
	}
}

/* Liveness is the connection's, not the reports': heartbeats (answered by
 * ZeroMQ's I/O thread in the node) keep it while the node computes a step
 * or a prompt of any length, and drop it node-timeout-ms after the process
 * stops or its host goes away. A silent node is pinged once a report
 * interval so that a dropped connection shows at once as a failed send. */
static void check_liveness(struct router *r)
{
	long long now = duet_now_us();
	for (int i = 0; i < r->n_nodes; i++) {
		struct router_node *n = &r->nodes[i];
		long long interval = (long long)n->report_ms * 1000;
		if (n->alive && now - n->last_seen_us > interval &&
		    now - n->last_probe_us >= interval) {
			n->last_probe_us = now;
			Duet__Ping p = DUET__PING__INIT;
			Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_PING, &p);
			if (send_to(r, i, &m))
				duet_log(DUET_LOG_WARN, 0,
					 "node %s: its connection is gone (silent %.1f s): dead",
					 n->name, (double)(now - n->last_seen_us) / 1e6);
		}
		if (n->gone) {
			n->gone = 0;
			fail_node_requests(r, i, "the connection to a node serving the request is gone");
		}
	}
}

/* ---- events ---- */

static void on_message(struct router *r, const char *peer, const Duet__Msg *m)
{
	if (m->body_case == DUET__MSG__BODY_HELLO) {
		on_hello(r, peer, m->hello);
		return;
	}
	int i = find_node(r, peer);
	if (i < 0) {
		/* A node from before a router restart: ask it to register. */
		struct duet_err err;
		duet_zsend_error(r->ctl, peer, 0, DUET__ERROR_CODE__ERR_UNKNOWN_NODE,
				 "say hello first", &err);
		return;
	}
	r->nodes[i].last_seen_us = duet_now_us();
	if (m->body_case == DUET__MSG__BODY_LOAD) {
		on_load(r, i, m->load);
		return;
	}
	uint64_t id = duet_wire_event_request(m);
	if (!id) {
		duet_log(DUET_LOG_WARN, 0, "%s sent a %s message", peer,
			 duet_wire_body_name(m->body_case));
		return;
	}
	struct rreq *q = find_req(r, id);
	if (!q)
		return; /* ended already (cancelled, failed, stopped) */
	if (i != q->pnode && i != q->dnode) {
		/* From a node outside the request's placement. Late messages of
		 * an earlier placement cannot get here (each placement after the
		 * first has a fresh wire id, forget_wid); this keeps a registered
		 * node that speaks a current id it does not hold (a bug, or a
		 * hostile peer guessing the sequential ids) from ending or
		 * moving a request streaming elsewhere. */
		duet_log(DUET_LOG_DEBUG, q->id, "a %s from %s, which does not hold it: ignored",
			 duet_wire_body_name(m->body_case), peer);
		return;
	}
	switch (m->body_case) {
	case DUET__MSG__BODY_RESERVE_REPLY:
		if (q->state == RQ_RESERVING)
			send_prefill(r, q);
		break;
	case DUET__MSG__BODY_FIRST_TOKEN: {
		/* Before the token: it may end the request, and free it. The
		 * prompt left the prefill node's queue, so the next placement
		 * must not wait for the load report to know (a repeated prompt
		 * would be prefilled locally behind a queue that is gone); and
		 * both nodes now hold the prompt's KV in their prefix caches. */
		router_placement_prompt_done(r, q);
		/* The first token of this placement: index 0, or the first
		 * after those already streamed when resuming. */
		/* With first-token = decode, a handed-over request's first token
		 * waits for KvDone, the decode node's word that the sequence is
		 * in its batch (a local prefill's comes from the decode node). */
		got_token(r, q, (uint32_t)q->base, m->first_token->token, m->first_token->logprobs,
			  q->local || !r->first_token_decode || q->kv_done);
		break;
	}
	case DUET__MSG__BODY_KV_DONE:
		pthread_mutex_lock(&r->mu);
		r->kv_bytes += m->kv_done->bytes;
		pthread_mutex_unlock(&r->mu);
		/* a held first token; or KvDone overtook the prefill node's
		 * FirstToken (two connections: no order between them) */
		q->kv_done = 1;
		emit_ready(r, q);
		break;
	case DUET__MSG__BODY_TOKEN: {
		got_token(r, q, m->token->index, m->token->token, m->token->logprobs, 1);
		/* The clocks agree only on one machine (CLOCK_MONOTONIC);
		 * across machines the difference means nothing, so only a
		 * plausible one is kept. */
		long long dt = duet_now_us() - (long long)m->token->emitted_us;
		if (m->token->emitted_us && dt >= 0 && dt < 10000000)
			router_hist_add(&r->tok.relay, (double)dt * 1e-6);
		break;
	}
	case DUET__MSG__BODY_FINISH:
		q->n_total = (int)m->finish->n_generated;
		q->finish_hint = m->finish->reason == DUET__FINISH_REASON__FINISH_STOP ? "stop" : "length";
		if (m->finish->reason == DUET__FINISH_REASON__FINISH_CANCELLED)
			end(r, q, NULL, 503, "the request was cancelled by a node");
		else
			emit_ready(r, q);
		break;
	case DUET__MSG__BODY_ERROR: {
		if (m->error->code == DUET__ERROR_CODE__ERR_NO_ROOM &&
		    (q->state == RQ_RESERVING || (q->local && q->n_emitted == q->base))) {
			/* The router's view of the decode node's room was stale
			 * (reports lag): wait for room like any other request. */
			duet_log(DUET_LOG_DEBUG, q->id, "%s had no room after all; queueing", peer);
			pthread_mutex_lock(&r->mu);
			r->n_requeued++;
			pthread_mutex_unlock(&r->mu);
			cancel_on_nodes(r, q);
			node_done(r, q);
			q->pnode = q->dnode = -1;
			q->state = RQ_PENDING;
			wait_or_reject(r, q);
			break;
		}
		/* The router checked the client's request, so a node's error is
		 * about the nodes: KV lost on a connection that broke (a decode
		 * node that came back), a reservation whose KV never came, a
		 * stopping node, an unreachable peer. Like a death: the request
		 * is placed again, up to ROUTER_MAX_ATTEMPTS placements. */
		char msg[300];
		snprintf(msg, sizeof msg, "%s: %s", peer, m->error->message);
		resume(r, q, msg); /* which logs msg */
		break;
	}
	default:
		break;
	}
}

void router_core_turn(struct router *r, int timeout_ms)
{
	zmq_pollitem_t items[2] = {{r->ctl, 0, ZMQ_POLLIN, 0}, {NULL, r->wake_fd, ZMQ_POLLIN, 0}};
	zmq_poll(items, 2, timeout_ms);
	if (items[1].revents) {
		uint64_t v;
		if (read(r->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
			duet_log(DUET_LOG_WARN, 0, "eventfd: %s", strerror(errno));
	}
	for (int k = 0; k < 1024; k++) {
		struct duet_inmsg in;
		struct duet_err err;
		long long t0 = duet_now_us();
		int rc = duet_zrecv(r->ctl, 1, &in, &err);
		if (rc == 0)
			break;
		if (rc > 0) {
			on_message(r, in.peer, in.m);
			duet_trace_span("router", duet_wire_body_name(in.m->body_case), t0,
					duet_now_us(), NULL);
		} else
			duet_log(DUET_LOG_WARN, 0, "bad message from %s: %s", in.peer, err.msg);
		duet_inmsg_close(&in);
	}
	/* New requests, and clients that went away. */
	pthread_mutex_lock(&r->mu);
	struct rreq **pend = r->pending;
	int n = r->n_pending;
	r->pending = NULL;
	r->n_pending = r->cap_pending = 0;
	for (int i = 0; i < n; i++)
		list_add(&r->live, &r->n_live, &r->cap_live, pend[i]);
	pthread_mutex_unlock(&r->mu);
	for (int i = 0; i < n; i++) {
		struct rreq *q = pend[i];
		q->pnode = q->dnode = -1;
		q->n_total = -1;
		q->tok_cap = q->max_tokens;
		q->tok = calloc((size_t)q->tok_cap, sizeof(int));
		q->have = calloc((size_t)q->tok_cap, 1);
		if (q->sampling.logprobs)
			q->lp = calloc((size_t)q->tok_cap, sizeof *q->lp);
		q->tok_end = calloc((size_t)q->tok_cap, sizeof(size_t));
		duet_detok_init(&q->detok, &r->model->vocab, 0);
		struct duet_err err;
		if (!q->tok || !q->have || !q->tok_end || (q->sampling.logprobs && !q->lp) ||
		    duet_stopper_init(&q->stopper, (const char *const *)q->stops, q->n_stops, &err)) {
			end(r, q, NULL, 500, "out of memory");
			continue;
		}
		if (r->n_waitq || place(r, q)) /* FIFO: nobody overtakes the queue */
			wait_or_reject(r, q);
	}
	free(pend);
	drain_waitq(r);
	for (int k = r->n_live - 1; k >= 0; k--) {
		struct rreq *q = r->live[k];
		pthread_mutex_lock(&r->mu);
		int gone = q->refs < 2; /* the HTTP side let go: client left */
		pthread_mutex_unlock(&r->mu);
		if (gone && q->state != RQ_DONE) {
			cancel_on_nodes(r, q);
			end(r, q, NULL, 499, "the client went away");
		} else if (r->cfg.request_timeout_s > 0 && q->state != RQ_DONE &&
			   duet_now_us() - q->t_arrival_us >
				   (long long)r->cfg.request_timeout_s * 1000000) {
			char why[96];
			snprintf(why, sizeof why, "the request took longer than request-timeout (%d s)",
				 r->cfg.request_timeout_s);
			duet_log(DUET_LOG_WARN, q->id, "%s after %d tokens", why, q->n_out);
			cancel_on_nodes(r, q); /* drain_waitq drops it if queued */
			end(r, q, NULL, 504, why);
		}
	}
	check_liveness(r);
	/* A copy of the node table for the HTTP threads. */
	pthread_mutex_lock(&r->mu);
	memcpy(r->snap, r->nodes, sizeof r->nodes);
	r->n_snap = r->n_nodes;
	r->queued = r->n_waitq;
	r->tok_pub = r->tok;
	pthread_mutex_unlock(&r->mu);
}

int router_core_init(struct router *r, struct duet_err *err)
{
	r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->wake_fd < 0)
		return duet_errnof(err, "eventfd");
	return 0;
}

void router_shutdown(struct router *r)
{
	/* Move what was never placed to the live list, then end everything:
	 * the HTTP threads waiting on these requests return at once. */
	router_core_turn(r, 0);
	for (int k = r->n_live - 1; k >= 0; k--) {
		struct rreq *q = r->live[k];
		cancel_on_nodes(r, q);
		end(r, q, NULL, 503, "the router is stopping");
	}
	free(r->live);
	r->live = NULL;
	r->n_live = r->cap_live = 0;
	duet_idmap_free(&r->by_wid);
	for (int i = 0; i < r->n_nodes; i++)
		router_node_free(&r->nodes[i]);
	free(r->waitq);
	r->waitq = NULL;
	r->n_waitq = r->cap_waitq = 0;
}
