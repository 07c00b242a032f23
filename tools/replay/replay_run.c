/* The open-loop sender: one thread drives every request through libcurl's
 * multi interface, so a request leaves at its scheduled time however many
 * earlier ones are still streaming. Token times are taken as each
 * server-sent event arrives. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/grow.h"
#include "cli.h"
#include "replay/replay.h"

/* Longest poll while waiting: bounds how late the progress line and the
 * stop flag are noticed; sends wake on their own schedule. */
#define POLL_MAX_MS 100
/* Bytes of a non-200 response body kept for the error message. */
#define ERR_BODY_MAX 256

struct xfer {
	CURL *h;
	struct curl_slist *hdr;
	char *body;
	struct replay_result *r;
	int tok_cap;
	struct replay_text line; /* SSE bytes not yet ending in a newline */
	char errbody[ERR_BODY_MAX];
	size_t n_err;
	int saw_done, saw_final, usage_tokens;
	char stream_kind[REPLAY_KIND_MAX];
	double t0;
};

static void set_kind(char *dst, const char *fmt, long v)
{
	snprintf(dst, REPLAY_KIND_MAX, fmt, v);
}

static void add_token(struct xfer *x, double t)
{
	struct replay_result *r = x->r;
	double *p = duet_grow(r->tok_s, &x->tok_cap, r->n_tok + 1, sizeof *p, r->output_tokens + 1);
	if (!p)
		return; /* counted as short */
	r->tok_s = p;
	r->tok_s[r->n_tok++] = t;
}

int replay_text_add(struct replay_text *t, const char *s, size_t n)
{
	if (t->n + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 256;
		while (cap < t->n + n + 1)
			cap *= 2;
		char *p = realloc(t->p, cap);
		if (!p)
			return -1;
		t->p = p;
		t->cap = cap;
	}
	memcpy(t->p + t->n, s, n);
	t->n += n;
	t->p[t->n] = 0;
	return 0;
}

static void add_text(struct replay_result *r, json_t *c0)
{
	json_t *t = json_object_get(c0, "text");
	/* out of memory, the text differs: --verify says so */
	if (json_is_string(t))
		(void)replay_text_add(&r->text, json_string_value(t), json_string_length(t));
}

/* One "data: ..." payload. Every chunk whose finish_reason is null is one
 * token; the final chunk counts as one more only when its usage says a
 * token is still missing (servers that put the last token in it). */
static void on_event(struct xfer *x, const char *data, size_t len, double t)
{
	if (len == 6 && !memcmp(data, "[DONE]", 6)) {
		x->saw_done = 1;
		return;
	}
	json_t *j = json_loadb(data, len, 0, NULL);
	if (!j) {
		snprintf(x->stream_kind, REPLAY_KIND_MAX, "bad_event");
		return;
	}
	const char *id = json_string_value(json_object_get(j, "id"));
	if (id && !x->r->server_id[0]) {
		size_t k = 0;
		for (; id[k] && k < REPLAY_ID_MAX - 1; k++) {
			char c = id[k];
			int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				 (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
			x->r->server_id[k] = ok ? c : '_';
		}
		x->r->server_id[k] = 0;
	}
	json_t *e = json_object_get(j, "error");
	if (e) {
		json_t *code = json_object_get(e, "code");
		set_kind(x->stream_kind, "stream_%ld",
			 json_is_integer(code) ? (long)json_integer_value(code) : 0L);
	} else {
		json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
		json_t *fin = json_object_get(c0, "finish_reason");
		add_text(x->r, c0);
		if (!fin || json_is_null(fin)) {
			add_token(x, t);
		} else {
			x->saw_final = 1;
			json_t *u = json_object_get(json_object_get(j, "usage"), "completion_tokens");
			if (json_is_integer(u)) {
				x->usage_tokens = (int)json_integer_value(u);
				if (x->usage_tokens == x->r->n_tok + 1)
					add_token(x, t);
			}
		}
	}
	json_decref(j);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * nmemb;
	double t = duet_now_s() - x->t0;
	long code = 0;
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
	if (code != 200) {
		size_t k = len < ERR_BODY_MAX - 1 - x->n_err ? len : ERR_BODY_MAX - 1 - x->n_err;
		memcpy(x->errbody + x->n_err, p, k);
		x->n_err += k;
		x->errbody[x->n_err] = 0;
		return len;
	}
	if (replay_text_add(&x->line, p, len))
		return 0; /* aborts the transfer: a curl error */
	size_t start = 0;
	for (size_t i = 0; i < x->line.n; i++) {
		if (x->line.p[i] != '\n')
			continue;
		size_t e = i;
		if (e > start && x->line.p[e - 1] == '\r')
			e--;
		if (e - start > 6 && !memcmp(x->line.p + start, "data: ", 6))
			on_event(x, x->line.p + start + 6, e - start - 6, t);
		start = i + 1;
	}
	memmove(x->line.p, x->line.p + start, x->line.n - start);
	x->line.n -= start;
	return len;
}

/* The body: token ids written directly (a 100k-token prompt is a few
 * hundred KB; building it as a JSON tree would cost more than sending).
 * model is the "model" value already as JSON. */
static char *make_body(const char *model, const struct synth *s, const struct trace_req *q,
		       int index)
{
	int *ids = malloc((size_t)q->prompt_tokens * sizeof *ids);
	size_t cap = (size_t)q->prompt_tokens * 12 + 256 + strlen(model);
	char *b = malloc(cap);
	if (!ids || !b) {
		free(ids);
		free(b);
		return NULL;
	}
	synth_prompt(s, q, index, ids);
	size_t n = (size_t)snprintf(b, cap, "{\"model\":%s,\"prompt\":[", model);
	for (int i = 0; i < q->prompt_tokens; i++)
		n += (size_t)snprintf(b + n, cap - n, i ? ",%d" : "%d", ids[i]);
	snprintf(b + n, cap - n,
		 "],\"max_tokens\":%d,\"stream\":true,\"ignore_eos\":true,\"temperature\":0}",
		 q->output_tokens);
	free(ids);
	return b;
}

static struct xfer *start(CURLM *m, const struct replay_opts *o, const char *model,
			  const struct synth *s, const struct trace_req *q, int index,
			  struct replay_result *r, double t0)
{
	struct xfer *x = calloc(1, sizeof *x);
	char url[1024], auth[512];
	if (!x)
		return NULL;
	x->r = r;
	x->t0 = t0;
	x->h = curl_easy_init();
	x->body = make_body(model, s, q, index);
	snprintf(url, sizeof url, "%s/v1/completions", o->url);
	x->hdr = curl_slist_append(NULL, "Content-Type: application/json");
	x->hdr = curl_slist_append(x->hdr, "Accept: text/event-stream");
	if (o->api_key) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->api_key);
		x->hdr = curl_slist_append(x->hdr, auth);
	}
	if (!x->h || !x->body || !x->hdr) {
		curl_easy_cleanup(x->h);
		curl_slist_free_all(x->hdr);
		free(x->body);
		free(x);
		return NULL;
	}
	curl_easy_setopt(x->h, CURLOPT_URL, url);
	curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hdr);
	curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, x->body);
	curl_easy_setopt(x->h, CURLOPT_POSTFIELDSIZE, (long)strlen(x->body));
	curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS, (long)(o->timeout_s * 1000));
	curl_multi_add_handle(m, x->h);
	return x;
}

static void finish(CURLM *m, struct xfer *x, CURLcode rc, double t)
{
	struct replay_result *r = x->r;
	r->done_s = t;
	r->status = RS_FAILED;
	long code = 0;
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
	if (rc == CURLE_OPERATION_TIMEDOUT)
		set_kind(r->kind, "timeout", 0);
	else if (rc == CURLE_COULDNT_CONNECT)
		set_kind(r->kind, "connect", 0);
	else if (rc != CURLE_OK)
		set_kind(r->kind, "curl_%ld", (long)rc);
	else if (code != 200)
		set_kind(r->kind, "http_%ld", code);
	else if (x->stream_kind[0])
		snprintf(r->kind, REPLAY_KIND_MAX, "%s", x->stream_kind);
	else if (!x->saw_done || !x->saw_final)
		set_kind(r->kind, "incomplete", 0);
	else if (r->n_tok < r->output_tokens)
		set_kind(r->kind, "short", 0);
	else if (r->n_tok > r->output_tokens)
		set_kind(r->kind, "long", 0);
	else
		r->status = RS_OK;
	if (r->status == RS_FAILED && x->n_err)
		fprintf(stderr, "duet replay: request failed (%s): %s\n", r->kind, x->errbody);
	curl_multi_remove_handle(m, x->h);
	curl_easy_cleanup(x->h);
	curl_slist_free_all(x->hdr);
	free(x->body);
	free(x->line.p);
	free(x);
}

int replay_run(const struct replay_opts *o, const struct trace *t, const struct synth *s,
	       struct replay_result *res, struct duet_err *err)
{
	if (!(o->rate_scale > 0))
		return duet_errf(err, "rate scale must be > 0, got %g", o->rate_scale);
	CURLM *m = curl_multi_init();
	if (!m)
		return duet_errf(err, "curl_multi_init failed");
	curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
	for (int i = 0; i < t->n; i++) {
		res[i].sched_s = t->req[i].arrival_s / o->rate_scale;
		res[i].prompt_tokens = t->req[i].prompt_tokens;
		res[i].output_tokens = t->req[i].output_tokens;
		res[i].status = RS_PENDING;
	}
	struct cli_progress prog;
	cli_progress_init(&prog, "replay");
	if (o->quiet)
		prog.tty = 0;
	struct xfer **live = calloc((size_t)t->n, sizeof *live);
	json_t *mj = json_string(o->model ? o->model : "");
	char *model = mj ? json_dumps(mj, JSON_ENCODE_ANY) : NULL;
	json_decref(mj);
	if (!live || !model) {
		free(live);
		free(model);
		curl_multi_cleanup(m);
		return duet_errf(err, "out of memory for %d requests", t->n);
	}
	const double t0 = duet_now_s();
	if (o->start_unix_us) {
		struct timespec rt;
		clock_gettime(CLOCK_REALTIME, &rt);
		*o->start_unix_us = (long long)rt.tv_sec * 1000000LL + rt.tv_nsec / 1000 -
				    (long long)((duet_now_s() - t0) * 1e6);
	}
	int next = 0, active = 0, done = 0, failed = 0;
	while (next < t->n || active > 0) {
		double now = duet_now_s() - t0;
		if (o->stop && *o->stop) /* Ctrl-C: what ran so far is still a result */
			for (; next < t->n; next++, failed++) {
				res[next].status = RS_FAILED;
				set_kind(res[next].kind, "not_sent", 0);
			}
		while (next < t->n && res[next].sched_s <= now) {
			res[next].sent_s = now;
			if ((live[next] = start(m, o, model, s, &t->req[next], next, &res[next], t0))) {
				active++;
			} else {
				res[next].status = RS_FAILED;
				res[next].done_s = now;
				set_kind(res[next].kind, "client_oom", 0);
				done++;
				failed++;
			}
			next++;
		}
		int running;
		curl_multi_perform(m, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct xfer *x;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			struct replay_result *r = x->r;
			live[r - res] = NULL;
			finish(m, x, msg->data.result, duet_now_s() - t0);
			failed += r->status == RS_FAILED;
			active--;
			done++;
		}
		char unit[96];
		snprintf(unit, sizeof unit, "requests done (%d running, %d failed)", active, failed);
		cli_progress_update(&prog, done, t->n, unit);
		if (next == t->n && active == 0)
			break;
		if (o->stop && *o->stop >= 2) /* a second Ctrl-C: stop waiting */
			for (int i = 0; i < t->n; i++)
				if (live[i]) {
					finish(m, live[i], CURLE_ABORTED_BY_CALLBACK, duet_now_s() - t0);
					set_kind(res[i].kind, "interrupted", 0);
					live[i] = NULL;
					active--;
				}
		now = duet_now_s() - t0;
		double wait = next < t->n ? (res[next].sched_s - now) * 1000 : POLL_MAX_MS;
		int ms = wait <= 0 ? 0 : wait >= POLL_MAX_MS ? POLL_MAX_MS : (int)wait + 1;
		if (ms > 0)
			curl_multi_poll(m, NULL, 0, ms, NULL);
	}
	cli_progress_end(&prog);
	free(live);
	free(model);
	curl_multi_cleanup(m);
	return 0;
}

void replay_results_free(struct replay_result *res, int n)
{
	for (int i = 0; i < n; i++) {
		free(res[i].tok_s);
		free(res[i].text.p);
	}
}
