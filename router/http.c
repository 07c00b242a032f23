/* The HTTP front (libmicrohttpd, a thread per connection): the OpenAI
 * completions API with server-sent events, /v1/models, /health and
 * /metrics. Every bad request gets a 4xx with a JSON error body. */
#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/trace.h"
#include "router.h"
#include "text/chat.h"

struct body {
	char *buf;
	size_t n;
	int too_big;
};

/* retry_s: the Retry-After of a 429 or 503 (at least 1). */
static enum MHD_Result send_text_retry(struct MHD_Connection *c, int status, const char *type,
				       const char *text, size_t n, int retry_s)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(n, (void *)text, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", type);
	if (status == 429 || status == 503) {
		char v[16];
		snprintf(v, sizeof v, "%d", retry_s > 1 ? retry_s : 1);
		MHD_add_response_header(resp, "Retry-After", v);
	}
	enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *type,
				 const char *text, size_t n)
{
	return send_text_retry(c, status, type, text, n, 1);
}

static enum MHD_Result send_json_retry(struct MHD_Connection *c, int status, json_t *j,
				       int retry_s)
{
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return MHD_NO;
	enum MHD_Result rc = send_text_retry(c, status, "application/json", s, strlen(s), retry_s);
	free(s);
	return rc;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, json_t *j)
{
	return send_json_retry(c, status, j, 1);
}

static enum MHD_Result send_error_retry(struct MHD_Connection *c, int status, const char *msg,
					int retry_s)
{
	const char *type = status == 401 ? "authentication_error"
			   : status == 429 ? "rate_limit_error"
			   : status >= 500 ? "server_error"
					   : "invalid_request_error";
	return send_json_retry(
		c, status,
		json_pack("{s:{s:s,s:s,s:n}}", "error", "message", msg, "type", type, "code"),
		retry_s);
}

static enum MHD_Result send_error(struct MHD_Connection *c, int status, const char *msg)
{
	return send_error_retry(c, status, msg, 1);
}

/* ---- responses ---- */

/* An HTTP completions request in flight: the requests of its choices and,
 * when it streams, the formatted bytes not yet handed to MHD. */
struct run {
	struct router *r;
	struct rjob job;
	struct rwaker *w;
	int n_q;
	struct rreq *q[ROUTER_MAX_CHOICES];
	unsigned char submitted[ROUTER_MAX_CHOICES], ended[ROUTER_MAX_CHOICES];
	char id[48];
	json_int_t created;
	char *pending;
	size_t n, off;
	int finished;
};

static void run_free(struct run *u)
{
	for (int i = 0; i < u->n_q; i++)
		router_release(u->r, u->q[i]);
	router_waker_unref(u->w);
	router_job_free(&u->job);
	free(u->pending);
	free(u);
}

/* The prompts' tokens once each (n samples share a prompt) and every
 * choice's output. */
static json_t *usage(const struct run *u)
{
	int in = 0, out = 0;
	for (int i = 0; i < u->job.n_prompts; i++)
		in += u->job.n_prompt[i];
	for (int i = 0; i < u->n_q; i++)
		out += u->q[i]->n_out;
	return json_pack("{s:i,s:i,s:i}", "prompt_tokens", in, "completion_tokens", out,
			 "total_tokens", in + out);
}

/* A token's text in a log-probability entry: a token may hold part of a
 * UTF-8 character, which a JSON string cannot, so its text has U+FFFD
 * there and (chat) its bytes say exactly what it is. A control token
 * shows its piece ("</s>"). */
static json_t *token_entry(struct router *r, int id, float lp, int with_bytes)
{
	char b[DUET_VOCAB_MAX_PIECE + 8], t[3 * (DUET_VOCAB_MAX_PIECE + 8)];
	int n = duet_token_bytes(&r->model->vocab, id, b);
	if (n == 0) {
		const char *piece = duet_vocab_piece(&r->model->vocab, id);
		n = (int)strnlen(piece, DUET_VOCAB_MAX_PIECE);
		memcpy(b, piece, (size_t)n);
	}
	size_t o = 0;
	for (int i = 0; i < n;) {
		int cl = duet_utf8_len((const unsigned char *)b + i, (size_t)(n - i));
		if (cl > 0) {
			memcpy(t + o, b + i, (size_t)cl);
			o += (size_t)cl;
			i += cl;
		} else {
			memcpy(t + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	json_t *e = json_pack("{s:s%}", "token", t, o);
	json_object_set_new(e, "logprob", isfinite(lp) ? json_real(lp) : json_null());
	if (with_bytes) {
		json_t *bytes = json_array();
		for (int i = 0; i < n; i++)
			json_array_append_new(bytes, json_integer((unsigned char)b[i]));
		json_object_set_new(e, "bytes", bytes);
	}
	return e;
}

/* The end-of-text token ends the answer and is not part of it. */
static int shown(const struct router *r, const struct rreq *q, int i)
{
	return q->ignore_eos || !duet_vocab_is_eog(&r->model->vocab, q->tok[i]);
}

/* Log-probabilities of tokens [a, b) of choice q, in the API's format:
 * chat's list of entries, or completions' parallel arrays (text_offset
 * counts from the start of the choice's text, after an echoed prompt of
 * echo_len bytes). */
static json_t *logprobs(struct run *u, const struct rreq *q, int a, int b, size_t echo_len)
{
	struct router *r = u->r;
	if (q->chat) {
		json_t *content = json_array();
		for (int i = a; i < b; i++) {
			if (!shown(r, q, i))
				continue;
			const struct rlogprob *lp = &q->lp[i];
			json_t *e = token_entry(r, q->tok[i], lp->chosen, 1), *top = json_array();
			for (int k = 0; k < lp->n_top; k++)
				json_array_append_new(top, token_entry(r, lp->top_id[k], lp->top[k], 1));
			json_object_set_new(e, "top_logprobs", top);
			json_array_append_new(content, e);
		}
		return json_pack("{s:o}", "content", content);
	}
	json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
	for (int i = a; i < b; i++) {
		if (!shown(r, q, i))
			continue;
		const struct rlogprob *lp = &q->lp[i];
		json_t *e = token_entry(r, q->tok[i], lp->chosen, 0);
		json_array_append(toks, json_object_get(e, "token"));
		json_array_append(lps, json_object_get(e, "logprob"));
		json_decref(e);
		json_t *top = json_object();
		for (int k = 0; k < lp->n_top; k++) {
			json_t *t = token_entry(r, lp->top_id[k], lp->top[k], 0);
			json_object_set(top, json_string_value(json_object_get(t, "token")),
					json_object_get(t, "logprob"));
			json_decref(t);
		}
		json_array_append_new(tops, top);
		json_array_append_new(offs,
				      json_integer((json_int_t)(echo_len + (i ? q->tok_end[i - 1] : 0))));
	}
	return json_pack("{s:o,s:o,s:o,s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs",
			 tops, "text_offset", offs);
}

/* The prompt as the client sent it, for echo (malloc'd). */
static char *prompt_text(struct run *u, int i, size_t *len)
{
	int p = i / u->job.n;
	if (u->job.prompt_text[p]) {
		*len = strlen(u->job.prompt_text[p]);
		return strdup(u->job.prompt_text[p]);
	}
	size_t cap = (size_t)u->job.n_prompt[p] * (DUET_VOCAB_MAX_PIECE + 4) + 1;
	char *t = malloc(cap);
	struct duet_err err;
	if (t && duet_detokenize(&u->r->model->vocab, u->job.prompt[p], (size_t)u->job.n_prompt[p],
				 t, cap, len, &err)) {
		free(t);
		return NULL;
	}
	return t;
}

/* Choice i with text, finish (NULL: more to come) and the log-probabilities
 * of tokens [a, b); a stream's first chunk of a choice that echoes carries
 * the prompt before its text. */
static json_t *choice(struct run *u, int i, const char *text, size_t n, const char *finish, int a,
		      int b, int with_echo)
{
	const struct rreq *q = u->q[i];
	size_t elen = 0;
	/* only the chunk that carries the prompt needs it (echo with logprobs
	 * is refused, so no offset counts past it) */
	char *echo = u->job.echo && with_echo ? prompt_text(u, i, &elen) : NULL;
	json_t *c;
	if (q->chat) {
		json_t *msg = json_pack("{s:s,s:s%}", "role", "assistant", "content", text, n);
		c = json_pack("{s:i,s:o}", "index", i, q->stream ? "delta" : "message", msg);
	} else if (echo) {
		char *t = malloc(elen + n + 1);
		if (t) {
			memcpy(t, echo, elen);
			memcpy(t + elen, text, n);
		}
		c = json_pack("{s:s%,s:i}", "text", t ? t : "", t ? elen + n : 0, "index", i);
		free(t);
	} else {
		c = json_pack("{s:s%,s:i}", "text", text, n, "index", i);
	}
	json_object_set_new(c, "logprobs",
			    q->lp && b > a ? logprobs(u, q, a, b, echo ? elen : 0) : json_null());
	json_object_set_new(c, "finish_reason", finish ? json_string(finish) : json_null());
	free(echo);
	return c;
}

static json_t *envelope(struct run *u, json_t *choices, int with_usage)
{
	const struct rreq *q = u->q[0];
	json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", u->id, "object",
			      !q->chat	   ? "text_completion"
			      : q->stream ? "chat.completion.chunk"
					  : "chat.completion",
			      "created", u->created, "model", u->r->cfg.model_name, "choices", choices);
	if (with_usage)
		json_object_set_new(j, "usage", usage(u));
	return j;
}

static void stream_raw(struct run *u, const char *t, size_t len)
{
	char *p = realloc(u->pending, u->n + len + 1);
	if (p) {
		u->pending = p;
		memcpy(p + u->n, t, len);
		u->n += len;
	}
}

static void stream_queue(struct run *u, json_t *j)
{
	char *t = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!t)
		return;
	stream_raw(u, "data: ", 6);
	stream_raw(u, t, strlen(t));
	stream_raw(u, "\n\n", 2);
	free(t);
}

/* Formats what the choices produced since the last call (under u->w->mu);
 * 0 when there was nothing. One event per token, even when its text is
 * empty (held back by the detokenizer or the stop-string matcher), so
 * clients can time every token as with OpenAI's API. */
static int stream_collect(struct run *u)
{
	int any = 0, all_done = 1, failed = -1, status = 0;
	char error[sizeof u->q[0]->error];
	for (int i = 0; i < u->n_q; i++) {
		struct rreq *q = u->q[i];
		pthread_mutex_lock(&q->mu);
		int first = q->n_streamed;
		for (; q->n_streamed < q->n_out; q->n_streamed++) {
			size_t from = q->text_sent, to = q->tok_end[q->n_streamed];
			q->text_sent = to;
			stream_queue(u, envelope(u,
						 json_pack("[o]", choice(u, i, q->text ? q->text + from : "",
									 to - from, NULL, q->n_streamed,
									 q->n_streamed + 1, q->n_streamed == 0)),
						 0));
			any = 1;
		}
		if (q->done && !u->ended[i]) {
			u->ended[i] = 1;
			any = 1;
			if (q->http_status) {
				failed = i;
				status = q->http_status;
				snprintf(error, sizeof error, "%s", q->error);
			} else { /* with what the detokenizer held until the end */
				size_t from = q->text_sent;
				q->text_sent = q->text_len;
				stream_queue(u, envelope(u,
							 json_pack("[o]", choice(u, i, q->text ? q->text + from : "",
										 q->text_len - from, q->finish_reason,
										 q->n_out, q->n_out, q->n_out == 0)),
							 u->n_q == 1 && !u->job.include_usage));
			}
		}
		all_done &= q->done;
		if (q->n_streamed > first)
			duet_trace_span("router", "sse", duet_now_us(), duet_now_us(),
					"\"request\":%llu,\"first\":%d,\"tokens\":%d",
					(unsigned long long)q->id, first, q->n_streamed - first);
		pthread_mutex_unlock(&q->mu);
	}
	if (failed >= 0) {
		/* An answer that cannot be finished ends with an error event:
		 * a client never mistakes a cut stream for a whole one. */
		stream_queue(u, json_pack("{s:{s:s,s:i,s:s,s:i}}", "error", "message", error, "code",
					  status, "type", status >= 500 ? "server_error" : "invalid_request_error",
					  "choice", failed));
	} else if (!all_done) {
		return any;
	} else if (u->job.include_usage) {
		stream_queue(u, envelope(u, json_array(), 1));
	}
	stream_raw(u, "data: [DONE]\n\n", 14);
	u->finished = 1;
	return 1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct run *u = cls;
	while (u->off == u->n) {
		u->off = u->n = 0;
		if (u->finished)
			return MHD_CONTENT_READER_END_OF_STREAM;
		pthread_mutex_lock(&u->w->mu);
		while (!stream_collect(u))
			pthread_cond_wait(&u->w->cv, &u->w->mu);
		pthread_mutex_unlock(&u->w->mu);
	}
	size_t k = u->n - u->off < max ? u->n - u->off : max;
	memcpy(buf, u->pending + u->off, k);
	u->off += k;
	return (ssize_t)k;
}

static void stream_free(void *cls)
{
	run_free(cls);
}

/* Hands choices [from, to) in steps of step to the core and waits until
 * each is placed or has failed; then, if first_token, until each has its
 * first token (so that the other samples of its prompt find the prompt's
 * KV in the prefix cache). -1 with the status of one refused at once. */
static int submit(struct run *u, int from, int to, int step, int first_token)
{
	for (int i = from; i < to; i += step) {
		if (router_submit(u->r, u->q[i]))
			return 500;
		u->submitted[i] = 1;
	}
	pthread_mutex_lock(&u->w->mu);
	for (;;) {
		int waiting = 0, refused = 0;
		for (int i = from; i < to; i += step) {
			struct rreq *q = u->q[i];
			pthread_mutex_lock(&q->mu);
			if (!q->done && (!q->admitted || (first_token && q->n_out == 0)))
				waiting = 1;
			if (q->done && q->http_status && q->n_out == 0)
				refused = i + 1;
			pthread_mutex_unlock(&q->mu);
		}
		if (refused) {
			pthread_mutex_unlock(&u->w->mu);
			return refused;
		}
		if (!waiting)
			break;
		pthread_cond_wait(&u->w->cv, &u->w->mu);
	}
	pthread_mutex_unlock(&u->w->mu);
	return 0;
}

static enum MHD_Result send_run_error(struct run *u, struct MHD_Connection *c, int which)
{
	struct rreq *q = u->q[which - 1];
	enum MHD_Result rc = send_error_retry(c, q->http_status, q->error, q->retry_after_s);
	run_free(u);
	return rc;
}

static enum MHD_Result completions(struct router *r, struct MHD_Connection *c, struct body *b,
				   int chat)
{
	struct run *u = calloc(1, sizeof *u);
	if (!u || !(u->w = router_waker_new())) {
		free(u);
		return send_error(c, 500, "out of memory");
	}
	u->r = r;
	u->created = (json_int_t)time(NULL);
	u->job.tmpl.chat = chat;
	long long t_arrival = duet_now_us();
	struct duet_err err;
	if (router_parse_request(r, b->buf ? b->buf : "", b->n, &u->job, &err)) {
		run_free(u);
		return send_error(c, 400, err.msg);
	}
	if (!router_can_serve_snap(r)) {
		run_free(u);
		return send_error(c, 503, "no decode node is up");
	}
	int n = u->job.n;
	for (; u->n_q < u->job.n_prompts * n; u->n_q++) {
		struct rreq *q = router_job_request(&u->job, u->n_q);
		if (!q) {
			run_free(u);
			return send_error(c, 500, "out of memory");
		}
		q->t_arrival_us = t_arrival;
		q->waker = u->w;
		router_waker_ref(u->w);
		u->q[u->n_q] = q;
	}
	if (*u->job.warning)
		duet_log(DUET_LOG_INFO, 0, "request fields %s", u->job.warning);
	/* The status line waits for the placement decision, so that a request
	 * refused at once (an early 429, no node up) is an HTTP error with
	 * Retry-After even when it asked for a stream. With n > 1 the first
	 * sample of each prompt goes first: the others then find the prompt's
	 * KV cached. */
	int bad = submit(u, 0, u->n_q, n, n > 1);
	if (!bad && n > 1)
		for (int p = 0; !bad && p < u->job.n_prompts; p++)
			bad = submit(u, p * n + 1, (p + 1) * n, 1, 0);
	if (bad == 500) {
		run_free(u);
		return send_error(c, 500, "out of memory");
	}
	if (bad)
		return send_run_error(u, c, bad);
	snprintf(u->id, sizeof u->id, "%s-%llu", chat ? "chatcmpl" : "cmpl",
		 (unsigned long long)u->q[0]->id);
	struct MHD_Response *resp;
	enum MHD_Result rc;
	if (u->q[0]->stream) {
		resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, u,
							 stream_free);
		if (!resp) {
			run_free(u);
			return MHD_NO;
		}
		MHD_add_response_header(resp, "Content-Type", "text/event-stream");
		MHD_add_response_header(resp, "Cache-Control", "no-cache");
	} else {
		pthread_mutex_lock(&u->w->mu);
		for (int i = 0; i < u->n_q; i++) {
			pthread_mutex_lock(&u->q[i]->mu);
			while (!u->q[i]->done) {
				pthread_mutex_unlock(&u->q[i]->mu);
				pthread_cond_wait(&u->w->cv, &u->w->mu);
				pthread_mutex_lock(&u->q[i]->mu);
			}
			pthread_mutex_unlock(&u->q[i]->mu);
		}
		pthread_mutex_unlock(&u->w->mu);
		for (int i = 0; i < u->n_q; i++)
			if (u->q[i]->http_status)
				return send_run_error(u, c, i + 1);
		json_t *choices = json_array();
		for (int i = 0; i < u->n_q; i++) {
			struct rreq *q = u->q[i];
			json_array_append_new(choices, choice(u, i, q->text ? q->text : "", q->text_len,
							      q->finish_reason, 0, q->n_out, 1));
		}
		json_t *j = envelope(u, choices, 1);
		char *s = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		resp = s ? MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE) : NULL;
		if (!resp) {
			free(s);
			run_free(u);
			return send_error(c, 500, "out of memory");
		}
		MHD_add_response_header(resp, "Content-Type", "application/json");
	}
	if (*u->job.warning)
		MHD_add_response_header(resp, "X-Duet-Warning", u->job.warning);
	rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	if (!u->q[0]->stream)
		run_free(u);
	return rc;
}

/* Besides OpenAI's fields, the context length (as vLLM's max_model_len) and
 * the vocabulary size: what a client needs to send token-id prompts that fit
 * (duet replay reads both). */
static enum MHD_Result models(struct router *r, struct MHD_Connection *c)
{
	return send_json(c, 200,
			 json_pack("{s:s,s:[{s:s,s:s,s:i,s:s,s:i,s:i}]}", "object", "list", "data",
				   "id", r->cfg.model_name, "object", "model", "created", 0,
				   "owned_by", "duet", "max_model_len", r->model->cfg.ctx_len,
				   "vocab_size", r->model->cfg.vocab_size));
}

static enum MHD_Result health(struct router *r, struct MHD_Connection *c)
{
	int ok = router_can_serve_snap(r);
	return send_json(c, ok ? 200 : 503,
			 json_pack("{s:s}", "status", ok ? "ok" : "no decode node is up"));
}

static void print_hist(FILE *f, const char *name, const char *help, const struct router_hist *h)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	uint64_t cum = 0;
	for (int i = 0; i < ROUTER_HIST_BUCKETS - 1; i++) {
		cum += h->le[i];
		fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, ROUTER_HIST_BOUNDS[i],
			(unsigned long long)cum);
	}
	fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
		(unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

static enum MHD_Result cluster(struct router *r, struct MHD_Connection *c)
{
	json_t *nodes = json_array();
	long long now = duet_now_us();
	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < r->n_snap; i++) {
		const struct router_node *n = &r->snap[i];
		/* A node computing a long step reports late but stays alive:
		 * the age of its last report shows it. */
		json_int_t age = n->last_report_us ? (now - n->last_report_us) / 1000 : -1;
		json_array_append_new(
			nodes,
			json_pack("{s:s,s:s,s:b,s:b,s:I,s:s,s:i,s:i,s:I,s:f,s:i,s:i,s:i,s:f,s:I}", "name",
				  n->name, "role", n->role == DUET__ROLE__ROLE_PREFILL ? "prefill" : "decode",
				  "alive", n->alive, "draining", n->draining, "report_age_ms", age,
				  "kv_endpoint", n->kv_endpoint,
				  "kv_blocks_free", n->kv_free, "kv_blocks_total", n->kv_total,
				  "queued_prompt_tokens", (json_int_t)n->queued_tokens,
				  "prefill_tokens_per_s", n->prefill_tps, "running", n->running,
				  "waiting_kv", n->waiting_kv, "local_prefill", n->local_prefill, "step_ms",
				  n->step_ms, "bad_messages", (json_int_t)n->bad_messages));
		/* requests this router placed there and has not seen end */
		json_object_set_new(json_array_get(nodes, json_array_size(nodes) - 1), "inflight",
				    json_integer(n->inflight));
		if (n->role == DUET__ROLE__ROLE_DECODE)
			json_object_set_new(
				json_array_get(nodes, json_array_size(nodes) - 1), "speculation",
				json_pack("{s:I,s:I,s:I,s:f,s:f}", "verified_steps",
					  (json_int_t)n->spec_verified, "proposed",
					  (json_int_t)n->spec_proposed, "accepted",
					  (json_int_t)n->spec_accepted, "acceptance",
					  n->spec_proposed ? (double)n->spec_accepted / (double)n->spec_proposed
							   : 0.0,
					  "tokens_per_step",
					  n->spec_verified ? 1.0 + (double)n->spec_accepted /
									   (double)n->spec_verified
							   : 1.0));
		if (n->role == DUET__ROLE__ROLE_DECODE)
			json_object_set_new(
				json_array_get(nodes, json_array_size(nodes) - 1), "step_model",
				json_pack("{s:f,s:f,s:f,s:f,s:f,s:i,s:f,s:f}", "base_ms", n->step_base_ms,
					  "per_sequence_ms", n->step_seq_ms, "per_prefill_token_ms",
					  n->step_token_ms, "per_1k_positions_ms", n->step_kctx_ms,
					  "per_1m_pairs_ms", n->step_kpair_ms,
					  "steps", (int)n->steps_fitted, "next_step_ms",
					  router_step_ms(n, 0, 0, 0), "prefill_chunk_step_ms",
					  router_step_ms(n, 1, n->max_batch_tokens, 0)));
	}
	json_t *j = json_pack("{s:s,s:s,s:s,s:o,s:{s:I,s:I,s:I},s:{s:i,s:i}}", "model",
			      r->cfg.model_name, "policy", router_policy_name(r->policy),
			      "first_token", r->first_token_decode ? "decode" : "prefill", "nodes", nodes,
			      "decisions", "disaggregated", (json_int_t)r->n_disagg, "local",
			      (json_int_t)r->n_local, "rejected_early", (json_int_t)r->n_early_rejected,
			      "slo", "ttft_ms", r->cfg.slo_ttft_ms, "tbt_ms", r->cfg.slo_tbt_ms);
	pthread_mutex_unlock(&r->mu);
	return send_json(c, 200, j);
}

/* Bearer keys, compared without an early exit so the time taken does not
 * tell how much of a guess was right. */
static int authorized(const struct router *r, struct MHD_Connection *c)
{
	if (!r->n_keys)
		return 1;
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (!h || strncmp(h, "Bearer ", 7) != 0)
		return 0;
	const char *key = h + 7;
	size_t kl = strlen(key);
	int ok = 0;
	for (int i = 0; i < r->n_keys; i++) {
		size_t n = strlen(r->keys[i]);
		unsigned char diff = (unsigned char)(n != kl);
		for (size_t j = 0; j < n; j++)
			diff |= (unsigned char)(r->keys[i][j] ^ (j < kl ? key[j] : 0));
		ok |= diff == 0;
	}
	return ok;
}

static enum MHD_Result metrics(struct router *r, struct MHD_Connection *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return send_error(c, 500, "out of memory");
	pthread_mutex_lock(&r->mu);
	fprintf(f, "# TYPE duet_requests_total counter\n");
	fprintf(f, "duet_requests_total{outcome=\"ok\"} %llu\n", (unsigned long long)r->n_ok);
	fprintf(f, "duet_requests_total{outcome=\"failed\"} %llu\n", (unsigned long long)r->n_failed);
	fprintf(f, "duet_requests_total{outcome=\"rejected\"} %llu\n",
		(unsigned long long)r->n_rejected);
	fprintf(f, "# TYPE duet_early_rejections_total counter\nduet_early_rejections_total %llu\n",
		(unsigned long long)r->n_early_rejected);
	fprintf(f, "# TYPE duet_placements_total counter\n");
	fprintf(f, "duet_placements_total{path=\"disaggregated\"} %llu\n",
		(unsigned long long)r->n_disagg);
	fprintf(f, "duet_placements_total{path=\"local\"} %llu\n", (unsigned long long)r->n_local);
	fprintf(f, "# TYPE duet_failovers_total counter\nduet_failovers_total %llu\n",
		(unsigned long long)r->n_resumed);
	fprintf(f, "# TYPE duet_requeued_total counter\nduet_requeued_total %llu\n",
		(unsigned long long)r->n_requeued);
	fprintf(f, "# TYPE duet_tokens_total counter\n");
	fprintf(f, "duet_tokens_total{direction=\"in\"} %llu\n", (unsigned long long)r->tokens_in);
	fprintf(f, "duet_tokens_total{direction=\"out\"} %llu\n", (unsigned long long)r->tokens_out);
	fprintf(f, "# TYPE duet_kv_bytes_total counter\nduet_kv_bytes_total %llu\n",
		(unsigned long long)r->kv_bytes);
	fprintf(f, "# TYPE duet_queue_depth gauge\nduet_queue_depth %d\n", r->n_pending + r->queued);
	print_hist(f, "duet_ttft_seconds", "time to first token", &r->tok_pub.ttft);
	print_hist(f, "duet_tbt_seconds", "time between tokens", &r->tok_pub.tbt);
	print_hist(f, "duet_e2e_seconds", "end-to-end latency of completed requests", &r->e2e);
	print_hist(f, "duet_relay_seconds",
		   "decode node sending a token to its text being ready for the client (same host)",
		   &r->tok_pub.relay);
	fprintf(f, "# HELP duet_auth_refused_total peers refused by CURVE authentication\n"
		   "# TYPE duet_auth_refused_total counter\n");
	fprintf(f, "duet_auth_refused_total{node=\"router\"} %llu\n",
		(unsigned long long)duet_zap_refused(r->zap));
	for (int i = 0; i < r->n_snap; i++)
		fprintf(f, "duet_auth_refused_total{node=\"%s\"} %llu\n", r->snap[i].name,
			(unsigned long long)r->snap[i].auth_refused);
	fprintf(f, "# TYPE duet_node_up gauge\n");
	for (int i = 0; i < r->n_snap; i++) {
		const struct router_node *n = &r->snap[i];
		const char *role = n->role == DUET__ROLE__ROLE_PREFILL ? "prefill" : "decode";
		fprintf(f, "duet_node_up{node=\"%s\",role=\"%s\"} %d\n", n->name, role, n->alive);
		fprintf(f, "duet_node_kv_blocks_free{node=\"%s\"} %d\n", n->name, n->kv_free);
		fprintf(f, "duet_node_running{node=\"%s\"} %d\n", n->name, n->running);
		fprintf(f, "duet_node_queued_tokens{node=\"%s\"} %llu\n", n->name,
			(unsigned long long)n->queued_tokens);
		if (n->role == DUET__ROLE__ROLE_DECODE)
			fprintf(f,
				"duet_spec_tokens_total{node=\"%s\",kind=\"proposed\"} %llu\n"
				"duet_spec_tokens_total{node=\"%s\",kind=\"accepted\"} %llu\n"
				"duet_spec_steps_total{node=\"%s\"} %llu\n",
				n->name, (unsigned long long)n->spec_proposed, n->name,
				(unsigned long long)n->spec_accepted, n->name,
				(unsigned long long)n->spec_verified);
	}
	pthread_mutex_unlock(&r->mu);
	fclose(f);
	enum MHD_Result rc = send_text(c, 200, "text/plain; version=0.0.4", buf, len);
	free(buf);
	return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	(void)version;
	struct router *r = cls;
	int post = strcmp(method, "POST") == 0;
	if (post && !*con_cls) {
		struct body *b = calloc(1, sizeof *b);
		if (!b)
			return MHD_NO;
		*con_cls = b;
		return MHD_YES;
	}
	if (post && *upload_size) {
		struct body *b = *con_cls;
		if (!b->too_big) {
			if (b->n + *upload_size > (size_t)r->cfg.max_body) {
				b->too_big = 1;
			} else {
				char *nb = realloc(b->buf, b->n + *upload_size + 1);
				if (!nb)
					return MHD_NO;
				memcpy(nb + b->n, upload, *upload_size);
				b->buf = nb;
				b->n += *upload_size;
				b->buf[b->n] = 0;
			}
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/health") != 0 && !authorized(r, c))
		return send_error(c, 401, "missing or wrong API key (Authorization: Bearer KEY)");
	int chat = strcmp(url, "/v1/chat/completions") == 0;
	if (chat || strcmp(url, "/v1/completions") == 0) {
		if (!post)
			return send_error(c, 405, "use POST for this endpoint");
		struct body *b = *con_cls;
		if (b->too_big)
			return send_error(c, 413, "body exceeds max-body bytes");
		return completions(r, c, b, chat);
	}
	if (post)
		return send_error(c, strcmp(url, "/v1/models") == 0 || strcmp(url, "/health") == 0 ||
						  strcmp(url, "/metrics") == 0
					  ? 405
					  : 404,
				  "no such POST endpoint");
	if (strcmp(method, "GET") != 0)
		return send_error(c, 405, "method not allowed");
	if (strcmp(url, "/v1/models") == 0)
		return models(r, c);
	if (strcmp(url, "/health") == 0)
		return health(r, c);
	if (strcmp(url, "/metrics") == 0)
		return metrics(r, c);
	if (strcmp(url, "/v1/cluster") == 0)
		return cluster(r, c);
	return send_error(c, 404, "no such endpoint");
}

static void done_cb(void *cls, struct MHD_Connection *c, void **con_cls,
		    enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct body *b = *con_cls;
	if (b) {
		free(b->buf);
		free(b);
		*con_cls = NULL;
	}
}

/* Reads a PEM file whole; libmicrohttpd takes certificates from memory. */
static char *read_pem(const char *path, const char *key, struct duet_err *err)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		duet_errnof(err, "%s %s: cannot open", key, path);
		return NULL;
	}
	char *buf = malloc(ROUTER_MAX_PEM + 1);
	size_t n = buf ? fread(buf, 1, ROUTER_MAX_PEM + 1, f) : 0;
	int bad = ferror(f);
	fclose(f);
	if (!buf || bad || n == 0 || n > ROUTER_MAX_PEM || !memmem(buf, n, "-----BEGIN ", 11)) {
		duet_errf(err, "%s %s: %s", key, path,
			  !buf ? "out of memory"
			  : bad ? "read error"
			  : n > ROUTER_MAX_PEM ? "larger than 1 MiB"
					       : "not a PEM file (no -----BEGIN line)");
		free(buf);
		return NULL;
	}
	buf[n] = 0;
	return buf;
}

struct MHD_Daemon *router_http_start(struct router *r, struct duet_err *err)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->cfg.http_port)};
	if (inet_pton(AF_INET, r->cfg.http_addr, &a.sin_addr) != 1) {
		duet_errf(err, "http-addr '%s': not an IPv4 address", r->cfg.http_addr);
		return NULL;
	}
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_ERROR_LOG;
	int tls = *r->cfg.tls_cert || *r->cfg.tls_key;
	if (tls) {
		if (!*r->cfg.tls_cert || !*r->cfg.tls_key) {
			duet_errf(err, "tls-cert and tls-key: give both or neither");
			return NULL;
		}
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			duet_errf(err, "tls-cert: this libmicrohttpd has no TLS support");
			return NULL;
		}
		if (!(r->tls_cert_pem = read_pem(r->cfg.tls_cert, "tls-cert", err)) ||
		    !(r->tls_key_pem = read_pem(r->cfg.tls_key, "tls-key", err)))
			return NULL;
		flags |= MHD_USE_TLS;
	}
	/* Options end early (at the first MHD_OPTION_END) without TLS. */
	struct MHD_Daemon *d = MHD_start_daemon(
		flags, (uint16_t)r->cfg.http_port, NULL, NULL, handle, r,
		MHD_OPTION_NOTIFY_COMPLETED, done_cb, r, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)r->cfg.client_timeout_s,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)r->cfg.max_connections,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)r->cfg.max_connections_per_ip,
		tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, r->tls_cert_pem,
		MHD_OPTION_HTTPS_MEM_KEY, r->tls_key_pem, MHD_OPTION_END);
	if (!d)
		duet_errf(err, "http: cannot listen on %s:%d%s", r->cfg.http_addr, r->cfg.http_port,
			  tls ? " (or tls-cert and tls-key do not make a usable pair)" : "");
	return d;
}

void router_http_stop(struct router *r, struct MHD_Daemon *d)
{
	if (d)
		MHD_stop_daemon(d);
	free(r->tls_cert_pem);
	free(r->tls_key_pem);
	r->tls_cert_pem = r->tls_key_pem = NULL;
}
