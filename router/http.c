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

static json_t *usage(const struct rreq *q)
{
	return json_pack("{s:i,s:i,s:i}", "prompt_tokens", q->n_prompt, "completion_tokens",
			 q->n_out, "total_tokens", q->n_prompt + q->n_out);
}

/* A chat answer: the whole message, or (stream) a delta chunk. */
static json_t *chat_completion(struct router *r, const struct rreq *q, const char *text, size_t n,
			       const char *finish, int with_usage, int stream)
{
	char id[48];
	snprintf(id, sizeof id, "chatcmpl-%llu", (unsigned long long)q->id);
	json_t *msg = json_pack("{s:s,s:s%}", "role", "assistant", "content", text, n);
	json_t *choice = json_pack("{s:i,s:o,s:n}", "index", 0, stream ? "delta" : "message", msg,
				   "finish_reason");
	if (finish)
		json_object_set_new(choice, "finish_reason", json_string(finish));
	json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", id, "object",
			      stream ? "chat.completion.chunk" : "chat.completion", "created",
			      (json_int_t)time(NULL), "model", r->cfg.model_name, "choices", choice);
	if (with_usage)
		json_object_set_new(j, "usage", usage(q));
	return j;
}

static json_t *completion(struct router *r, const struct rreq *q, const char *text, size_t n,
			  const char *finish, int with_usage)
{
	if (q->chat)
		return chat_completion(r, q, text, n, finish, with_usage, q->stream);
	char id[48];
	snprintf(id, sizeof id, "cmpl-%llu", (unsigned long long)q->id);
	json_t *choice = json_pack("{s:s%,s:i,s:n,s:s?}", "text", text, n, "index", 0, "logprobs",
				   "finish_reason", finish);
	if (!finish)
		json_object_set_new(choice, "finish_reason", json_null());
	json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", id, "object", "text_completion",
			      "created", (json_int_t)time(NULL), "model", r->cfg.model_name,
			      "choices", choice);
	if (with_usage)
		json_object_set_new(j, "usage", usage(q));
	return j;
}

struct stream {
	struct router *r;
	struct rreq *q;
	char *pending; /* formatted bytes not yet handed to MHD */
	size_t n, off;
	int finished;
};

static void stream_queue(struct stream *s, json_t *j)
{
	char *t = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!t)
		return;
	size_t len = strlen(t);
	/* "data: " + t + "\n\n" + NUL */
	char *p = realloc(s->pending, s->n + len + 9);
	if (p) {
		s->pending = p;
		s->n += (size_t)snprintf(p + s->n, len + 9, "data: %s\n\n", t);
	}
	free(t);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct stream *s = cls;
	while (s->off == s->n) {
		s->off = s->n = 0;
		if (s->finished)
			return MHD_CONTENT_READER_END_OF_STREAM;
		struct rreq *q = s->q;
		pthread_mutex_lock(&q->mu);
		while (q->n_streamed == q->n_out && !q->done)
			pthread_cond_wait(&q->cv, &q->mu);
		long long t0 = duet_now_us();
		int first = q->n_streamed;
		/* One event per token, even when its text is empty (held back by
		 * the detokenizer or the stop-string matcher). */
		for (; q->n_streamed < q->n_out; q->n_streamed++) {
			size_t from = q->text_sent, to = q->tok_end[q->n_streamed];
			q->text_sent = to;
			stream_queue(s, completion(s->r, q, q->text ? q->text + from : "", to - from,
						   NULL, 0));
		}
		int done = q->done, status = q->http_status;
		size_t from = q->text_sent, to = q->text_len;
		q->text_sent = to;
		pthread_mutex_unlock(&q->mu);
		if (done) {
			if (status)
				stream_queue(s, json_pack("{s:{s:s,s:i}}", "error", "message", q->error,
							  "code", status));
			else /* with what the detokenizer held until the end */
				stream_queue(s, completion(s->r, q, q->text ? q->text + from : "",
							   to - from, q->finish_reason, 1));
			static const char done_line[] = "data: [DONE]\n\n";
			char *p = realloc(s->pending, s->n + sizeof done_line);
			if (p) {
				s->pending = p;
				memcpy(p + s->n, done_line, sizeof done_line);
				s->n += sizeof done_line - 1;
			}
			s->finished = 1;
		}
		duet_trace_span("router", "sse", t0, duet_now_us(),
				"\"request\":%llu,\"first\":%d,\"tokens\":%d,\"done\":%d",
				(unsigned long long)q->id, first, q->n_streamed - first, done);
	}
	size_t k = s->n - s->off < max ? s->n - s->off : max;
	memcpy(buf, s->pending + s->off, k);
	s->off += k;
	return (ssize_t)k;
}

static void stream_free(void *cls)
{
	struct stream *s = cls;
	router_release(s->r, s->q);
	free(s->pending);
	free(s);
}

static enum MHD_Result completions(struct router *r, struct MHD_Connection *c, struct body *b,
				   int chat)
{
	struct rreq *q = calloc(1, sizeof *q);
	if (!q)
		return send_error(c, 500, "out of memory");
	q->chat = chat;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->t_arrival_us = duet_now_us();
	struct duet_err err;
	q->refs = 1; /* this thread's, until submitted */
	if (router_parse_request(r, b->buf ? b->buf : "", b->n, q, &err)) {
		router_release(r, q);
		return send_error(c, 400, err.msg);
	}
	if (!router_can_serve_snap(r)) {
		router_release(r, q);
		return send_error(c, 503, "no decode node is up");
	}
	if (router_submit(r, q)) {
		router_release(r, q);
		return send_error(c, 500, "out of memory");
	}
	/* The status line waits for the placement decision, so that a request
	 * refused at once (an early 429, no node up) is an HTTP error with
	 * Retry-After even when it asked for a stream. */
	pthread_mutex_lock(&q->mu);
	while (!q->admitted && !q->done)
		pthread_cond_wait(&q->cv, &q->mu);
	int refused = q->done && q->http_status && q->n_out == 0;
	pthread_mutex_unlock(&q->mu);
	if (refused) {
		enum MHD_Result rc = send_error_retry(c, q->http_status, q->error, q->retry_after_s);
		router_release(r, q);
		return rc;
	}
	if (q->stream) {
		struct stream *s = calloc(1, sizeof *s);
		if (!s) {
			router_release(r, q);
			return send_error(c, 500, "out of memory");
		}
		s->r = r;
		s->q = q;
		struct MHD_Response *resp = MHD_create_response_from_callback(
			MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
		MHD_add_response_header(resp, "Content-Type", "text/event-stream");
		MHD_add_response_header(resp, "Cache-Control", "no-cache");
		enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
		MHD_destroy_response(resp);
		return rc;
	}
	pthread_mutex_lock(&q->mu);
	while (!q->done)
		pthread_cond_wait(&q->cv, &q->mu);
	pthread_mutex_unlock(&q->mu);
	enum MHD_Result rc = q->http_status
				     ? send_error_retry(c, q->http_status, q->error, q->retry_after_s)
				     : send_json(c, 200, completion(r, q, q->text ? q->text : "",
								    q->text_len, q->finish_reason, 1));
	router_release(r, q);
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
	static const char *const policies[] = {"length-aware", "round-robin", "least-loaded",
					       "colocated"};
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
		if (n->role == DUET__ROLE__ROLE_DECODE)
			json_object_set_new(
				json_array_get(nodes, json_array_size(nodes) - 1), "step_model",
				json_pack("{s:f,s:f,s:f,s:f,s:i,s:f,s:f}", "base_ms", n->step_base_ms,
					  "per_sequence_ms", n->step_seq_ms, "per_prefill_token_ms",
					  n->step_token_ms, "per_1k_positions_ms", n->step_kctx_ms,
					  "steps", (int)n->steps_fitted, "next_step_ms",
					  router_step_ms(n, 0, 0, 0), "prefill_chunk_step_ms",
					  router_step_ms(n, 1, n->max_batch_tokens, 0)));
	}
	json_t *j = json_pack("{s:s,s:s,s:o,s:{s:I,s:I,s:I},s:{s:i,s:i}}", "model",
			      r->cfg.model_name, "policy", policies[r->policy], "nodes", nodes,
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
