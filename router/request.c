/* An OpenAI completions or chat completions request body, checked field by
 * field and turned into a job: sampling, stops, response format, and each
 * prompt as token ids (tokenized, or rendered with the model's chat
 * template first). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "router.h"
#include "text/chat.h"
#include "text/json_schema.h"

#define MAX_PROMPT_BYTES (1 << 20)

enum field_kind {
	F_OURS,	   /* duet reads it */
	F_IGNORED, /* OpenAI's, meaningless here (metadata, user): taken silently */
	F_WARN,	   /* OpenAI's, not honoured but harmless: taken with a warning */
};

struct field {
	const char *name;
	enum field_kind kind;
	int api; /* 1: completions only, 2: chat only, 3: both */
};

/* Every field a request may carry. One not here is in no version of
 * OpenAI's API (or duet's own) and gets a 400; fields OpenAI has that
 * would change the answer in a way duet cannot (tools, audio, suffix)
 * are checked below and refused by name. */
static const struct field FIELDS[] = {
	{"prompt", F_OURS, 1},
	{"messages", F_OURS, 2},
	{"model", F_OURS, 3},
	{"max_tokens", F_OURS, 3},
	{"max_completion_tokens", F_OURS, 3},
	{"temperature", F_OURS, 3},
	{"top_p", F_OURS, 3},
	{"top_k", F_OURS, 3},
	{"min_p", F_OURS, 3},
	{"seed", F_OURS, 3},
	{"stop", F_OURS, 3},
	{"stream", F_OURS, 3},
	{"stream_options", F_OURS, 3},
	{"n", F_OURS, 3},
	{"presence_penalty", F_OURS, 3},
	{"frequency_penalty", F_OURS, 3},
	{"repetition_penalty", F_OURS, 3},
	{"repeat_penalty", F_OURS, 3},
	{"logit_bias", F_OURS, 3},
	{"logprobs", F_OURS, 3},
	{"top_logprobs", F_OURS, 2},
	{"echo", F_OURS, 1},
	{"response_format", F_OURS, 3},
	{"ignore_eos", F_OURS, 3},
	{"slo_ttft_ms", F_OURS, 3},
	{"slo_tbt_ms", F_OURS, 3},
	{"user", F_IGNORED, 3},
	{"metadata", F_IGNORED, 3},
	{"store", F_IGNORED, 3},
	{"safety_identifier", F_IGNORED, 3},
	{"prompt_cache_key", F_IGNORED, 3},
	{"best_of", F_OURS, 1},
	{"suffix", F_OURS, 1},
	{"tools", F_OURS, 2},
	{"tool_choice", F_OURS, 2},
	{"functions", F_OURS, 2},
	{"function_call", F_OURS, 2},
	{"parallel_tool_calls", F_WARN, 2},
	{"service_tier", F_WARN, 3},
	{"reasoning_effort", F_WARN, 2},
	{"prediction", F_WARN, 2},
	{"modalities", F_OURS, 2},
	{"audio", F_OURS, 2},
	{"web_search_options", F_OURS, 2},
	{"verbosity", F_WARN, 2},
};

static const struct field *find_field(const char *key, int chat)
{
	for (size_t k = 0; k < sizeof FIELDS / sizeof FIELDS[0]; k++)
		if (strcmp(FIELDS[k].name, key) == 0 && (FIELDS[k].api & (chat ? 2 : 1)))
			return &FIELDS[k];
	return NULL;
}

static void warn(struct rjob *job, const char *field)
{
	size_t n = strlen(job->warning);
	snprintf(job->warning + n, sizeof job->warning - n, "%s%s", n ? ", " : "ignored: ", field);
}

/* A text message's content: a string, or OpenAI's list of parts of which
 * duet takes the text ones (joined); NULL with err when there is another
 * kind of part. The caller frees *owned. */
static const char *msg_content(json_t *c, size_t i, char **owned, struct duet_err *err)
{
	*owned = NULL;
	if (json_is_string(c))
		return json_string_value(c);
	if (!json_is_array(c) || !json_array_size(c)) {
		duet_errf(err, "messages[%zu].content must be a string or a list of text parts", i);
		return NULL;
	}
	size_t len = 0, k;
	json_t *part;
	json_array_foreach(c, k, part)
	{
		json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
		if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
		    !json_is_string(text)) {
			duet_errf(err, "messages[%zu].content[%zu]: only {\"type\": \"text\", \"text\": string} parts are supported (this model reads text)",
				  i, k);
			return NULL;
		}
		len += json_string_length(text);
	}
	char *s = malloc(len + 1);
	if (!s) {
		duet_errf(err, "out of memory");
		return NULL;
	}
	len = 0;
	json_array_foreach(c, k, part)
	{
		json_t *text = json_object_get(part, "text");
		memcpy(s + len, json_string_value(text), json_string_length(text));
		len += json_string_length(text);
	}
	s[len] = 0;
	return *owned = s;
}

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
	char **owned = calloc(n, sizeof *owned);
	char *text = NULL;
	if (!m || !owned) {
		duet_errf(err, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(msgs, i);
		json_t *role = json_object_get(e, "role");
		if (!json_is_object(e) || !json_is_string(role)) {
			duet_errf(err, "messages[%zu] must be {\"role\": string, \"content\": ...}", i);
			goto out;
		}
		const char *key;
		json_t *v;
		json_object_foreach(e, key, v)
		{
			if (strcmp(key, "role") && strcmp(key, "content") && strcmp(key, "name")) {
				duet_errf(err, "messages[%zu].%.32s is not supported (%s)", i, key,
					  strstr(key, "tool") || strstr(key, "function")
						  ? "this model's template has no tool calls"
						  : "a message has role, content and name");
				goto out;
			}
		}
		const char *rs = json_string_value(role);
		/* OpenAI's newer name for the system role. */
		if (strcmp(rs, "developer") == 0)
			rs = "system";
		const char *content = msg_content(json_object_get(e, "content"), i, &owned[i], err);
		if (!content)
			goto out;
		m[i] = (struct duet_chat_msg){rs, content};
	}
	duet_chat_render(r->chat, m, (int)n, &text, err);
out:
	for (size_t i = 0; owned && i < n; i++)
		free(owned[i]);
	free(owned);
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

/* The field when present and not null. */
static json_t *field(json_t *root, const char *name)
{
	json_t *v = json_object_get(root, name);
	return v && !json_is_null(v) ? v : NULL;
}

static int opt_num(json_t *root, const char *name, double lo, double hi, float *out,
		   struct duet_err *err)
{
	json_t *v = field(root, name);
	double d;
	if (!v)
		return 0;
	if (num(v, lo, hi, &d))
		return duet_errf(err, "%s must be a number from %g to %g", name, lo, hi);
	*out = (float)d;
	return 0;
}

static int opt_int(json_t *root, const char *name, long long lo, long long hi, int *out,
		   struct duet_err *err)
{
	json_t *v = field(root, name);
	long long ll;
	if (!v)
		return 0;
	if (integer(v, lo, hi, &ll))
		return duet_errf(err, "%s must be an integer from %lld to %lld", name, lo, hi);
	*out = (int)ll;
	return 0;
}

static int opt_bool(json_t *root, const char *name, int *out, struct duet_err *err)
{
	json_t *v = field(root, name);
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return duet_errf(err, "%s must be true or false", name);
	*out = json_is_true(v);
	return 0;
}

/* Two names for one setting (max_tokens and max_completion_tokens,
 * repetition_penalty and repeat_penalty): either, or both when equal. */
static int alias_pair(json_t *root, const char *a, const char *b, struct duet_err *err)
{
	json_t *x = field(root, a), *y = field(root, b);
	if (x && y && !json_equal(x, y))
		return duet_errf(err, "%s and %s are the same setting and differ", a, b);
	if (!x && y)
		json_object_set(root, a, y);
	return 0;
}

static int parse_sampling(struct router *r, json_t *root, struct rjob *job, struct duet_err *err)
{
	struct rreq *q = &job->tmpl;
	struct duet_sampling *s = &q->sampling;
	const struct duet_config *mc = &r->model->cfg;
	json_t *v;
	if (opt_num(root, "temperature", 0, 100, &s->temperature, err) ||
	    opt_num(root, "top_p", 1e-9, 1, &s->top_p, err) ||
	    opt_int(root, "top_k", 0, mc->vocab_size, &s->top_k, err) ||
	    opt_num(root, "min_p", 0, 1, &s->min_p, err) ||
	    opt_num(root, "presence_penalty", -2, 2, &s->presence_penalty, err) ||
	    opt_num(root, "frequency_penalty", -2, 2, &s->frequency_penalty, err) ||
	    alias_pair(root, "repetition_penalty", "repeat_penalty", err) ||
	    opt_num(root, "repetition_penalty", 1e-6, 10, &s->repetition_penalty, err))
		return -1;
	if ((v = field(root, "seed"))) {
		long long ll;
		if (integer(v, 0, 0x7fffffffffffffffLL, &ll))
			return duet_errf(err, "seed must be a non-negative integer");
		s->seed = (uint64_t)ll;
	}
	if ((v = field(root, "logit_bias"))) {
		const char *key;
		json_t *b;
		if (!json_is_object(v) || json_object_size(v) > DUET_MAX_LOGIT_BIAS)
			return duet_errf(err, "logit_bias must be an object of up to %d token ids",
					 DUET_MAX_LOGIT_BIAS);
		json_object_foreach(v, key, b)
		{
			char *end;
			long id = strtol(key, &end, 10);
			double d;
			if (!*key || *end || id < 0 || id >= mc->vocab_size)
				return duet_errf(err, "logit_bias: '%.32s' is not a token id in [0, %d)",
						 key, mc->vocab_size);
			if (num(b, -100, 100, &d))
				return duet_errf(err, "logit_bias[%ld] must be a number from -100 to 100", id);
			s->bias[s->n_bias++] = (struct duet_logit_bias){(int)id, (float)d};
		}
	}
	/* Chat: logprobs is a boolean and top_logprobs the count; completions:
	 * logprobs is the count. */
	if (q->chat) {
		if (opt_bool(root, "logprobs", &s->logprobs, err) ||
		    opt_int(root, "top_logprobs", 0, DUET_MAX_TOP_LOGPROBS, &s->top_logprobs, err))
			return -1;
		if (field(root, "top_logprobs") && !s->logprobs)
			return duet_errf(err, "top_logprobs needs logprobs: true");
	} else if ((v = field(root, "logprobs"))) {
		long long ll;
		if (integer(v, 0, DUET_MAX_TOP_LOGPROBS, &ll))
			return duet_errf(err, "logprobs must be an integer from 0 to %d",
					 DUET_MAX_TOP_LOGPROBS);
		s->logprobs = 1;
		s->top_logprobs = (int)ll;
	}
	job->logprobs = s->logprobs;
	return 0;
}

static int parse_response_format(json_t *root, struct rreq *q, struct duet_err *err)
{
	json_t *v = field(root, "response_format");
	if (!v)
		return 0;
	json_t *type = json_object_get(v, "type");
	const char *t = json_is_string(type) ? json_string_value(type) : "";
	if (strcmp(t, "text") == 0)
		return 0;
	if (strcmp(t, "json_object") == 0) {
		q->format = DUET__RESPONSE_FORMAT__FORMAT_JSON_OBJECT;
		return 0;
	}
	if (strcmp(t, "json_schema") != 0)
		return duet_errf(err, "response_format.type must be text, json_object or json_schema");
	json_t *js = json_object_get(v, "json_schema");
	json_t *schema = json_object_get(js, "schema");
	if (!json_is_object(js) || !json_is_object(schema))
		return duet_errf(err, "response_format.json_schema.schema must be a JSON schema object");
	q->format = DUET__RESPONSE_FORMAT__FORMAT_JSON_SCHEMA;
	q->json_schema = json_dumps(schema, JSON_COMPACT);
	if (!q->json_schema)
		return duet_errf(err, "out of memory");
	if (strlen(q->json_schema) > DUET_MAX_SCHEMA)
		return duet_errf(err, "response_format.json_schema.schema is longer than %d bytes",
				 DUET_MAX_SCHEMA);
	/* Compiled here too, so that a schema the nodes would refuse is the
	 * client's 400 and not a failed request later. */
	struct duet_json_schema *c = duet_json_schema_compile(q->json_schema, err);
	if (!c) {
		duet_err_prefix(err, "response_format.json_schema.schema");
		return -1;
	}
	duet_json_schema_free(c);
	return 0;
}

/* Fields OpenAI has that duet cannot honour and that would change what a
 * client gets: refused by name. */
static int refuse_unsupported(json_t *root, struct rjob *job, struct duet_err *err)
{
	json_t *v;
	if (field(root, "tools") && json_array_size(field(root, "tools")))
		return duet_errf(err, "tools: this model's chat template has no tool calls");
	if ((v = field(root, "tool_choice")) &&
	    !(json_is_string(v) && (strcmp(json_string_value(v), "none") == 0 ||
				    strcmp(json_string_value(v), "auto") == 0)))
		return duet_errf(err, "tool_choice: this model's chat template has no tool calls");
	if (field(root, "functions") || field(root, "function_call"))
		return duet_errf(err, "functions: this model's chat template has no function calls");
	if (field(root, "audio"))
		return duet_errf(err, "audio: this model reads and writes text only");
	if (field(root, "web_search_options"))
		return duet_errf(err, "web_search_options: duet does not search the web");
	if ((v = field(root, "modalities"))) {
		size_t i;
		json_t *m;
		if (!json_is_array(v))
			return duet_errf(err, "modalities must be a list");
		json_array_foreach(v, i, m)
		{
			if (!json_is_string(m) || strcmp(json_string_value(m), "text") != 0)
				return duet_errf(err, "modalities: this model writes text only");
		}
	}
	if ((v = field(root, "suffix")) && !(json_is_string(v) && json_string_length(v) == 0))
		return duet_errf(err, "suffix: insertion (fill in the middle) is not supported");
	if ((v = field(root, "best_of"))) {
		long long ll;
		if (integer(v, 1, ROUTER_MAX_N, &ll) || ll != job->n)
			return duet_errf(err, "best_of: only equal to n (no server-side ranking)");
	}
	const char *key;
	json_object_foreach(root, key, v)
	{
		const struct field *f = find_field(key, job->tmpl.chat);
		if (f && f->kind == F_WARN && !json_is_null(v))
			warn(job, key);
	}
	return 0;
}

static int parse_stops(json_t *root, struct rreq *q, struct duet_err *err)
{
	json_t *v = field(root, "stop");
	if (!v)
		return 0;
	json_t *arr = json_is_string(v) ? json_pack("[O]", v) : json_incref(v);
	size_t i;
	json_t *s;
	int rc = -1;
	if (!json_is_array(arr) || json_array_size(arr) > ROUTER_MAX_STOPS) {
		duet_errf(err, "stop must be a string or up to %d strings", ROUTER_MAX_STOPS);
		goto out;
	}
	json_array_foreach(arr, i, s)
	{
		if (!json_is_string(s) || json_string_length(s) == 0 ||
		    json_string_length(s) > DUET_MAX_STOP_LEN) {
			duet_errf(err, "each stop must be a string of 1 to %d bytes", DUET_MAX_STOP_LEN);
			goto out;
		}
		if (!(q->stops[q->n_stops] = strdup(json_string_value(s)))) {
			duet_errf(err, "out of memory");
			goto out;
		}
		q->n_stops++;
	}
	rc = 0;
out:
	json_decref(arr);
	return rc;
}

/* One prompt: text (tokenized) or token ids. */
static int add_prompt(struct router *r, struct rjob *job, json_t *v, const char *where,
		      struct duet_err *err)
{
	const struct duet_config *mc = &r->model->cfg;
	int k = job->n_prompts;
	if (k * job->n >= ROUTER_MAX_CHOICES)
		return duet_errf(err, "prompts times n must be at most %d", ROUTER_MAX_CHOICES);
	if (json_is_string(v)) {
		size_t len = json_string_length(v), cap_t = duet_tokenize_max(len), nt = 0;
		if (len == 0 || len > MAX_PROMPT_BYTES)
			return duet_errf(err, "%s must be 1 to %d bytes", where, MAX_PROMPT_BYTES);
		job->prompt[k] = malloc(sizeof(int) * cap_t);
		job->prompt_text[k] = strdup(json_string_value(v));
		job->n_prompts++;
		if (!job->prompt[k] || !job->prompt_text[k])
			return duet_errf(err, "out of memory");
		if (duet_tokenize(&r->model->vocab, json_string_value(v), len, 1, job->prompt[k],
				  cap_t, &nt, err)) {
			duet_err_prefix(err, "%s", where);
			return -1;
		}
		job->n_prompt[k] = (int)nt;
		return 0;
	}
	size_t len = json_is_array(v) ? json_array_size(v) : 0, i;
	json_t *t;
	if (!len || len >= (size_t)mc->ctx_len)
		return duet_errf(err, "%s must be a string or 1 to %d token ids", where,
				 mc->ctx_len - 1);
	job->prompt[k] = malloc(sizeof(int) * len);
	job->n_prompts++;
	if (!job->prompt[k])
		return duet_errf(err, "out of memory");
	json_array_foreach(v, i, t)
	{
		long long ll;
		if (integer(t, 0, mc->vocab_size - 1, &ll))
			return duet_errf(err, "%s[%zu] is not a token id in [0, %d)", where, i,
					 mc->vocab_size);
		job->prompt[k][i] = (int)ll;
	}
	job->n_prompt[k] = (int)len;
	return 0;
}

/* A string, token ids, or a list of either (completions' batch form). */
static int parse_prompts(struct router *r, json_t *v, struct rjob *job, struct duet_err *err)
{
	json_t *first = json_array_get(v, 0);
	if (json_is_array(v) && (json_is_string(first) || json_is_array(first))) {
		size_t i;
		json_t *p;
		json_array_foreach(v, i, p)
		{
			char where[32];
			snprintf(where, sizeof where, "prompt[%zu]", i);
			if (add_prompt(r, job, p, where, err))
				return -1;
		}
		return 0;
	}
	if (!json_is_string(v) && !json_is_array(v))
		return duet_errf(err, "prompt must be a string, token ids, or a list of either");
	return add_prompt(r, job, v, "prompt", err);
}

int router_parse_request(struct router *r, const char *text, size_t n, struct rjob *job,
			 struct duet_err *err)
{
	struct rreq *q = &job->tmpl;
	json_error_t je;
	json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
	int rc = -1;
	if (!root)
		return duet_errf(err, "body is not valid JSON: %s (line %d, column %d)", je.text,
				 je.line, je.column);
	if (!json_is_object(root)) {
		duet_errf(err, "body must be a JSON object");
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v)
	{
		if (!find_field(key, q->chat)) {
			duet_errf(err, "unknown field '%.64s'%s", key,
				  find_field(key, !q->chat) ? (q->chat ? " (a /v1/completions field)"
								       : " (a /v1/chat/completions field)")
							    : "");
			goto out;
		}
	}
	q->max_tokens = 16;
	q->sampling = (struct duet_sampling){.temperature = 1, .top_p = 1,
					     .seed = (uint64_t)time(NULL)};
	job->n = 1;
	if (alias_pair(root, "max_tokens", "max_completion_tokens", err) ||
	    opt_int(root, "max_tokens", 1, r->cfg.max_tokens_limit, &q->max_tokens, err) ||
	    parse_sampling(r, root, job, err) ||
	    opt_int(root, "slo_ttft_ms", 1, 3600000, &q->slo_ttft_ms, err) ||
	    opt_int(root, "slo_tbt_ms", 1, 3600000, &q->slo_tbt_ms, err) ||
	    opt_int(root, "n", 1, ROUTER_MAX_N, &job->n, err) ||
	    opt_bool(root, "stream", &q->stream, err) ||
	    opt_bool(root, "ignore_eos", &q->ignore_eos, err) ||
	    opt_bool(root, "echo", &job->echo, err) || refuse_unsupported(root, job, err) ||
	    parse_response_format(root, q, err) || parse_stops(root, q, err))
		goto out;
	if ((v = field(root, "model")) && !json_is_string(v)) {
		duet_errf(err, "model must be a string");
		goto out;
	}
	if ((v = field(root, "stream_options"))) {
		json_t *u = json_object_get(v, "include_usage");
		if (!json_is_object(v) || (u && !json_is_boolean(u))) {
			duet_errf(err, "stream_options must be {\"include_usage\": true or false}");
			goto out;
		}
		job->include_usage = json_is_true(u);
	}
	if (job->echo && job->logprobs) {
		duet_errf(err, "echo with logprobs (the prompt's log-probabilities) is not supported");
		goto out;
	}
	if (q->chat) {
		char *rendered = render_chat(r, json_object_get(root, "messages"), err);
		if (!rendered)
			goto out;
		json_object_set_new(root, "prompt", json_string(rendered));
		free(rendered);
	}
	if (parse_prompts(r, json_object_get(root, "prompt"), job, err))
		goto out;
	for (int i = 0; i < job->n_prompts; i++) {
		const struct duet_config *mc = &r->model->cfg;
		if (job->n_prompt[i] >= mc->ctx_len || job->n_prompt[i] + q->max_tokens > mc->ctx_len) {
			duet_errf(err,
				  "prompt (%d tokens) plus max_tokens (%d) exceeds the context of %d tokens",
				  job->n_prompt[i], q->max_tokens, mc->ctx_len);
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

void router_job_free(struct rjob *job)
{
	for (int i = 0; i < job->tmpl.n_stops; i++)
		free(job->tmpl.stops[i]);
	free(job->tmpl.json_schema);
	for (int i = 0; i < job->n_prompts; i++) {
		free(job->prompt[i]);
		free(job->prompt_text[i]);
	}
	memset(job, 0, sizeof *job);
}

struct rreq *router_job_request(const struct rjob *job, int i)
{
	const struct rreq *t = &job->tmpl;
	int p = i / job->n;
	struct rreq *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->chat = t->chat;
	q->stream = t->stream;
	q->max_tokens = t->max_tokens;
	q->ignore_eos = t->ignore_eos;
	q->slo_ttft_ms = t->slo_ttft_ms;
	q->slo_tbt_ms = t->slo_tbt_ms;
	q->sampling = t->sampling;
	q->sampling.seed += (uint64_t)(i % job->n);
	q->format = t->format;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->refs = 1;
	int ok = 1;
	if (t->json_schema)
		ok = (q->json_schema = strdup(t->json_schema)) != NULL;
	for (int k = 0; k < t->n_stops; k++)
		if ((q->stops[q->n_stops] = strdup(t->stops[k])))
			q->n_stops++;
		else
			ok = 0;
	q->prompt = malloc(sizeof(int) * (size_t)job->n_prompt[p]);
	if (q->prompt) {
		memcpy(q->prompt, job->prompt[p], sizeof(int) * (size_t)job->n_prompt[p]);
		q->n_prompt = job->n_prompt[p];
	}
	if (!ok || !q->prompt) {
		for (int k = 0; k < q->n_stops; k++)
			free(q->stops[k]);
		free(q->json_schema);
		free(q->prompt);
		pthread_mutex_destroy(&q->mu);
		pthread_cond_destroy(&q->cv);
		free(q);
		return NULL;
	}
	return q;
}
