#include "net/wire.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/kvrow.h"

int duet_wire_pack(const Duet__Msg *m, void **buf, size_t *len, struct duet_err *err)
{
	size_t n = duet__msg__get_packed_size(m);
	if (n > DUET_MAX_CTRL_BYTES)
		return duet_errf(err, "wire: %s message of %zu bytes exceeds the %u-byte limit",
				 duet_wire_body_name(m->body_case), n, DUET_MAX_CTRL_BYTES);
	/* malloc(0) may return NULL; an empty Msg is still a valid frame. */
	void *b = malloc(n ? n : 1);
	if (!b)
		return duet_errf(err, "wire: out of memory packing %zu bytes", n);
	duet__msg__pack(m, b);
	*buf = b;
	*len = n;
	return 0;
}

int duet_wire_unpack(const void *buf, size_t len, Duet__Msg **out, struct duet_err *err)
{
	*out = NULL;
	if (len > DUET_MAX_CTRL_BYTES)
		return duet_errf(err, "wire: header frame of %zu bytes exceeds the %u-byte limit",
				 len, DUET_MAX_CTRL_BYTES);
	Duet__Msg *m = duet__msg__unpack(NULL, len, buf);
	if (!m)
		return duet_errf(err, "wire: header frame of %zu bytes is not a valid duet.Msg", len);
	if (m->version != DUET_PROTO_VERSION) {
		duet_errf(err, "wire: protocol version %u, this node speaks %u", m->version,
			  DUET_PROTO_VERSION);
		duet__msg__free_unpacked(m, NULL);
		return -1;
	}
	if (m->body_case == DUET__MSG__BODY__NOT_SET || m->body_case > DUET__MSG__BODY_PING) {
		duet_errf(err, "wire: message has no body");
		duet__msg__free_unpacked(m, NULL);
		return -1;
	}
	*out = m;
	return 0;
}

void duet_wire_free(Duet__Msg *m)
{
	if (m)
		duet__msg__free_unpacked(m, NULL);
}

uint64_t duet_wire_event_request(const Duet__Msg *m)
{
	switch (m->body_case) {
	case DUET__MSG__BODY_RESERVE_REPLY: return m->reserve_reply->request_id;
	case DUET__MSG__BODY_FIRST_TOKEN: return m->first_token->request_id;
	case DUET__MSG__BODY_KV_DONE: return m->kv_done->request_id;
	case DUET__MSG__BODY_TOKEN: return m->token->request_id;
	case DUET__MSG__BODY_FINISH: return m->finish->request_id;
	case DUET__MSG__BODY_ERROR: return m->error->request_id;
	default: return 0;
	}
}

const char *duet_wire_body_name(int c)
{
	static const char *const names[] = {
		[DUET__MSG__BODY_HELLO] = "hello",
		[DUET__MSG__BODY_HELLO_ACK] = "hello_ack",
		[DUET__MSG__BODY_LOAD] = "load",
		[DUET__MSG__BODY_PREFILL] = "prefill",
		[DUET__MSG__BODY_RESERVE] = "reserve",
		[DUET__MSG__BODY_RESERVE_REPLY] = "reserve_reply",
		[DUET__MSG__BODY_LOCAL] = "local",
		[DUET__MSG__BODY_KV_CHUNK] = "kv_chunk",
		[DUET__MSG__BODY_FIRST_TOKEN] = "first_token",
		[DUET__MSG__BODY_KV_DONE] = "kv_done",
		[DUET__MSG__BODY_TOKEN] = "token",
		[DUET__MSG__BODY_FINISH] = "finish",
		[DUET__MSG__BODY_CANCEL] = "cancel",
		[DUET__MSG__BODY_ERROR] = "error",
		[DUET__MSG__BODY_PING] = "ping",
	};
	if (c <= 0 || c > DUET__MSG__BODY_PING || !names[c])
		return "none";
	return names[c];
}

int duet_wire_sampling(const Duet__Sampling *s, struct duet_wire_sampling *out,
		       struct duet_err *err)
{
	struct duet_wire_sampling p = {.top_p = 1, .json_schema = ""};
	if (s) {
		p.temperature = s->temperature;
		p.top_k = s->top_k;
		p.top_p = s->top_p == 0 ? 1 : s->top_p;
		p.seed = s->seed;
		p.min_p = s->min_p;
		p.presence_penalty = s->presence_penalty;
		p.frequency_penalty = s->frequency_penalty;
		p.repetition_penalty = s->repetition_penalty;
		if (s->n_bias_tokens != s->n_bias_values)
			return duet_errf(err, "sampling: %zu logit-bias tokens but %zu values",
					 s->n_bias_tokens, s->n_bias_values);
		if (s->n_bias_tokens > DUET_WIRE_MAX_BIAS)
			return duet_errf(err, "sampling: %zu logit-bias entries; at most %d",
					 s->n_bias_tokens, DUET_WIRE_MAX_BIAS);
		p.n_bias = s->n_bias_tokens;
		p.bias_tokens = s->bias_tokens;
		p.bias_values = s->bias_values;
		p.logprobs = s->logprobs;
		if (s->top_logprobs > 64)
			return duet_errf(err, "sampling: top_logprobs %u is out of range",
					 s->top_logprobs);
		p.top_logprobs = (int)s->top_logprobs;
		if (s->format != DUET__RESPONSE_FORMAT__FORMAT_TEXT &&
		    s->format != DUET__RESPONSE_FORMAT__FORMAT_JSON_OBJECT &&
		    s->format != DUET__RESPONSE_FORMAT__FORMAT_JSON_SCHEMA)
			return duet_errf(err, "sampling: response format %d is unknown", s->format);
		p.format = s->format;
		if (s->json_schema && duet_wire_check_str(s->json_schema, DUET_MAX_SCHEMA,
							  "sampling.json_schema", err))
			return -1;
		if (s->json_schema)
			p.json_schema = s->json_schema;
	}
	/* NaN fails every comparison in the sampler's range checks, so it is
	 * refused here explicitly. */
	if (p.temperature != p.temperature || p.top_p != p.top_p || p.min_p != p.min_p ||
	    p.presence_penalty != p.presence_penalty ||
	    p.frequency_penalty != p.frequency_penalty ||
	    p.repetition_penalty != p.repetition_penalty)
		return duet_errf(err, "sampling: a parameter is NaN");
	for (size_t i = 0; i < p.n_bias; i++)
		if (p.bias_values[i] != p.bias_values[i])
			return duet_errf(err, "sampling: logit bias %zu is NaN", i);
	if (p.temperature > 1e4f)
		return duet_errf(err, "sampling: temperature %g is out of range", p.temperature);
	*out = p;
	return 0;
}

int *duet_wire_tokens_copy(const int32_t *t, size_t n)
{
	int *c = malloc(sizeof(int) * (n ? n : 1));
	if (c)
		for (size_t i = 0; i < n; i++)
			c[i] = t[i];
	return c;
}

int duet_wire_check_tokens(const int32_t *t, size_t n, const struct duet_wire_limits *lim,
			   struct duet_err *err)
{
	if (n == 0)
		return duet_errf(err, "tokens: the prompt is empty");
	if (n >= (size_t)lim->ctx_len)
		return duet_errf(err, "tokens: %zu prompt tokens; the context holds %d", n,
				 lim->ctx_len);
	for (size_t i = 0; i < n; i++)
		if (t[i] < 0 || t[i] >= lim->vocab_size)
			return duet_errf(err, "tokens: token %zu is %d, outside the vocabulary [0, %d)",
					 i, t[i], lim->vocab_size);
	return 0;
}

void duet_wire_left_add(uint32_t *left, size_t *n, uint32_t v)
{
	size_t i = *n;
	if (i == DUET_REPORT_MAX_STREAMS) {
		if (v >= left[i - 1])
			return;
		i--;
	} else {
		(*n)++;
	}
	for (; i > 0 && left[i - 1] > v; i--)
		left[i] = left[i - 1];
	left[i] = v;
}

void duet_wire_local_add(uint32_t *prompt_left, uint32_t *tokens_left, size_t *n,
			 uint32_t prompt, uint32_t tokens)
{
	if (*n >= DUET_REPORT_MAX_STREAMS)
		return;
	prompt_left[*n] = prompt;
	tokens_left[(*n)++] = tokens;
}

int duet_wire_check_str(const char *s, size_t max, const char *field, struct duet_err *err)
{
	if (!s)
		return duet_errf(err, "%s: missing", field);
	if (strnlen(s, max + 1) > max)
		return duet_errf(err, "%s: longer than %zu bytes", field, max);
	return 0;
}

int duet_wire_check_kv_chunk(const Duet__KvChunk *c, const void *payload, size_t plen,
			     const struct duet_wire_limits *lim, struct duet_err *err)
{
	if (lim->digest && strcmp(c->model_digest, lim->digest) != 0)
		return duet_errf(err, "kv_chunk: model digest %.40s differs from this node's %s",
				 c->model_digest, lim->digest);
	if ((int64_t)c->n_kv_heads != lim->n_kv_heads || (int64_t)c->head_dim != lim->head_dim)
		return duet_errf(err, "kv_chunk: geometry %u kv heads x %u differs from %d x %d",
				 c->n_kv_heads, c->head_dim, lim->n_kv_heads, lim->head_dim);
	if (c->layer >= (uint32_t)lim->n_layers)
		return duet_errf(err, "kv_chunk: layer %u, the model has %d", c->layer,
				 lim->n_layers);
	if (c->n_tokens == 0 || c->n_tokens > (uint32_t)lim->ctx_len ||
	    c->first_pos > (uint32_t)lim->ctx_len - c->n_tokens)
		return duet_errf(err, "kv_chunk: positions %u + %u outside the context of %d",
				 c->first_pos, c->n_tokens, lim->ctx_len);
	if (!duet_kv_dtype_valid((uint32_t)c->dtype))
		return duet_errf(err, "kv_chunk: unknown dtype %d", (int)c->dtype);
	size_t want = 2 * (size_t)c->n_tokens *
		      duet_kv_row_bytes((enum duet_kv_dtype)c->dtype, lim->n_kv_heads, lim->head_dim);
	if (c->payload_bytes != want || plen != want)
		return duet_errf(err,
				 "kv_chunk: payload of %zu bytes (header says %llu); %u tokens "
				 "in %s take %zu",
				 plen, (unsigned long long)c->payload_bytes, c->n_tokens,
				 duet_kv_dtype_name((enum duet_kv_dtype)c->dtype), want);
	uint64_t h = XXH3_64bits(payload, plen);
	if (h != c->checksum)
		return duet_errf(err, "kv_chunk: checksum %016llx, payload hashes to %016llx",
				 (unsigned long long)c->checksum, (unsigned long long)h);
	return 0;
}
