/* An OpenAI completions or chat completions request body, checked field by
 * field and turned into a request: sampling, stops, and the prompt as token
 * ids (tokenized, or rendered with the model's chat template first). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router.h"
#include "text/chat.h"

#define MAX_PROMPT_BYTES (1 << 20)

/* Fields a request may carry; the first is "prompt" or, for chat,
 * "messages". */
static const char *const KNOWN[] = {"prompt", "model", "max_tokens", "temperature", "top_p",
				    "top_k",  "seed",  "stop",	     "stream",	    "ignore_eos",
				    "n",      "user", "slo_ttft_ms", "slo_tbt_ms"};

/* Renders the chat messages with the model's template into text. */
static char *render_chat(struct router *r, json_t *msgs, struct duet_err *err)
{
	if (r->chat == DUET_CHAT_NONE) {
		duet_errf(err, r->chat_unknown ? "the model %s has a chat template duet cannot render (it renders llama2, chatml, zephyr and llama3); use /v1/completions"
					       : "the model %s has no chat template; use /v1/completions",
			  r->cfg.model_name);
		return NULL;
	}
	size_t n = json_is_array(msgs) ? json_array_size(msgs) : 0;
	if (!n || n > 1024) {
		duet_errf(err, "messages must be an array of 1 to 1024 messages");
		return NULL;
	}
	struct duet_chat_msg *m = calloc(n, sizeof *m);
	if (!m) {
		duet_errf(err, "out of memory");
		return NULL;
	}
	char *text = NULL;
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(msgs, i);
		json_t *role = json_object_get(e, "role"), *content = json_object_get(e, "content");
		if (!json_is_object(e) || !json_is_string(role) || !json_is_string(content) ||
		    json_object_size(e) > 3 || (json_object_size(e) == 3 && !json_object_get(e, "name"))) {
			duet_errf(err, "messages[%zu] must be {\"role\": string, \"content\": string}", i);
			goto out;
		}
		m[i] = (struct duet_chat_msg){json_string_value(role), json_string_value(content)};
	}
	duet_chat_render(r->chat, m, (int)n, &text, err);
out:
	free(m);
	return text;
}

static int num(json_t *v, double lo, double hi, double *out)
{
	if (!json_is_number(v))
		return -1;
	double x = json_number_value(v);
	if (!isfinite(x) || x < lo || x > hi)
		return -1;
	*out = x;
	return 0;
}

static int integer(json_t *v, long long lo, long long hi, long long *out)
{
	if (!json_is_integer(v))
		return -1;
	long long x = json_integer_value(v);
	if (x < lo || x > hi)
		return -1;
	*out = x;
	return 0;
}

int router_parse_request(struct router *r, const char *text, size_t n, struct rreq *q,
			 struct duet_err *err)
{
	const char *first = q->chat ? "messages" : "prompt";
	json_error_t je;
	json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
	int rc = -1;
	if (!root) {
		duet_errf(err, "body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
			 je.column);
		return -1;
	}
	if (!json_is_object(root)) {
		duet_errf(err, "body must be a JSON object");
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v)
	{
		int known = strcmp(key, first) == 0;
		for (size_t k = 1; !known && k < sizeof KNOWN / sizeof KNOWN[0]; k++)
			known = strcmp(KNOWN[k], key) == 0;
		if (!known) {
			duet_errf(err, "unknown field '%.64s'", key);
			goto out;
		}
	}
	const struct duet_config *mc = &r->model->cfg;
	long long ll;
	double d;
	q->max_tokens = 16;
	q->sampling = (struct duet_sampling){1, 0, 1, (uint64_t)time(NULL)};
	if ((v = json_object_get(root, "max_tokens")) && !json_is_null(v)) {
		if (integer(v, 1, r->cfg.max_tokens_limit, &ll)) {
			duet_errf(err, "max_tokens must be an integer from 1 to %d",
				 r->cfg.max_tokens_limit);
			goto out;
		}
		q->max_tokens = (int)ll;
	}
	if ((v = json_object_get(root, "temperature")) && !json_is_null(v)) {
		if (num(v, 0, 100, &d)) {
			duet_errf(err, "temperature must be a number from 0 to 100");
			goto out;
		}
		q->sampling.temperature = (float)d;
	}
	if ((v = json_object_get(root, "top_p")) && !json_is_null(v)) {
		if (num(v, 1e-9, 1, &d)) {
			duet_errf(err, "top_p must be a number in (0, 1]");
			goto out;
		}
		q->sampling.top_p = (float)d;
	}
	if ((v = json_object_get(root, "top_k")) && !json_is_null(v)) {
		if (integer(v, 0, mc->vocab_size, &ll)) {
			duet_errf(err, "top_k must be an integer from 0 to %d", mc->vocab_size);
			goto out;
		}
		q->sampling.top_k = (int)ll;
	}
	if ((v = json_object_get(root, "seed")) && !json_is_null(v)) {
		if (integer(v, 0, 0x7fffffffffffffffLL, &ll)) {
			duet_errf(err, "seed must be a non-negative integer");
			goto out;
		}
		q->sampling.seed = (uint64_t)ll;
	}
	/* duet's own: the request's latency objectives (place.c) */
	if ((v = json_object_get(root, "slo_ttft_ms")) && !json_is_null(v)) {
		if (integer(v, 1, 3600000, &ll)) {
			duet_errf(err, "slo_ttft_ms must be an integer from 1 to 3600000");
			goto out;
		}
		q->slo_ttft_ms = (int)ll;
	}
	if ((v = json_object_get(root, "slo_tbt_ms")) && !json_is_null(v)) {
		if (integer(v, 1, 3600000, &ll)) {
			duet_errf(err, "slo_tbt_ms must be an integer from 1 to 3600000");
			goto out;
		}
		q->slo_tbt_ms = (int)ll;
	}
	if ((v = json_object_get(root, "n")) && !json_is_null(v) &&
	    (integer(v, 1, 1, &ll))) {
		duet_errf(err, "n must be 1");
		goto out;
	}
	if ((v = json_object_get(root, "stream")) && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			duet_errf(err, "stream must be true or false");
			goto out;
		}
		q->stream = json_is_true(v);
	}
	if ((v = json_object_get(root, "ignore_eos")) && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			duet_errf(err, "ignore_eos must be true or false");
			goto out;
		}
		q->ignore_eos = json_is_true(v);
	}
	if ((v = json_object_get(root, "model")) && !json_is_null(v) && !json_is_string(v)) {
		duet_errf(err, "model must be a string");
		goto out;
	}
	if ((v = json_object_get(root, "stop")) && !json_is_null(v)) {
		json_t *arr = json_is_string(v) ? json_pack("[O]", v) : json_incref(v);
		size_t i;
		json_t *s;
		if (!json_is_array(arr) || json_array_size(arr) > ROUTER_MAX_STOPS) {
			json_decref(arr);
			duet_errf(err, "stop must be a string or up to %d strings", ROUTER_MAX_STOPS);
			goto out;
		}
		json_array_foreach(arr, i, s)
		{
			if (!json_is_string(s) || json_string_length(s) == 0 ||
			    json_string_length(s) > DUET_MAX_STOP_LEN) {
				json_decref(arr);
				duet_errf(err, "each stop must be a string of 1 to %d bytes",
					 DUET_MAX_STOP_LEN);
				goto out;
			}
			q->stops[q->n_stops++] = strdup(json_string_value(s));
		}
		json_decref(arr);
	}
	char *rendered = NULL;
	if (q->chat) {
		rendered = render_chat(r, json_object_get(root, "messages"), err);
		if (!rendered)
			goto out;
		v = json_string(rendered);
		free(rendered);
		json_object_set_new(root, "prompt", v);
	}
	v = json_object_get(root, "prompt");
	if (json_is_string(v)) {
		size_t len = json_string_length(v);
		if (len == 0 || len > MAX_PROMPT_BYTES) {
			duet_errf(err, "prompt must be 1 to %d bytes", MAX_PROMPT_BYTES);
			goto out;
		}
		size_t cap_t = duet_tokenize_max(len), nt = 0;
		q->prompt = malloc(sizeof(int) * cap_t);
		if (!q->prompt) {
			duet_errf(err, "out of memory");
			goto out;
		}
		if (duet_tokenize(&r->model->vocab, json_string_value(v), len, 1, q->prompt, cap_t,
				  &nt, err)) {
			duet_err_prefix(err, "prompt");
			goto out;
		}
		q->n_prompt = (int)nt;
	} else if (json_is_array(v)) {
		size_t len = json_array_size(v), i;
		json_t *t;
		if (len == 0 || len >= (size_t)mc->ctx_len) {
			duet_errf(err, "prompt must have 1 to %d token ids", mc->ctx_len - 1);
			goto out;
		}
		q->prompt = malloc(sizeof(int) * len);
		if (!q->prompt) {
			duet_errf(err, "out of memory");
			goto out;
		}
		json_array_foreach(v, i, t)
		{
			if (integer(t, 0, mc->vocab_size - 1, &ll)) {
				duet_errf(err, "prompt[%zu] is not a token id in [0, %d)", i,
					 mc->vocab_size);
				goto out;
			}
			q->prompt[i] = (int)ll;
		}
		q->n_prompt = (int)len;
	} else {
		duet_errf(err, "prompt must be a string or an array of token ids");
		goto out;
	}
	if (q->n_prompt >= mc->ctx_len || q->n_prompt + q->max_tokens > mc->ctx_len) {
		duet_errf(err, "prompt (%d tokens) plus max_tokens (%d) exceeds the context of %d tokens",
			  q->n_prompt, q->max_tokens, mc->ctx_len);
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}
