/* The wire schema's runtime side: packing and unpacking Msg (proto/duet.proto)
 * and checking every field a peer sent against this node's limits. Frames
 * come from the network, so nothing here trusts a size, index or enum. */
#ifndef DUET_WIRE_H
#define DUET_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "duet.pb-c.h"

/* 2: KV rows in the cache's form (int8 with one scale per head).
 * 3: Ping (the router's liveness probe). */
#define DUET_PROTO_VERSION 4
/* A control message (prompt tokens included) is never bigger than this. */
#define DUET_MAX_CTRL_BYTES (16u << 20)
/* Node names, endpoints and digests are short; longer ones are refused. */
#define DUET_MAX_NAME 64
#define DUET_MAX_ENDPOINT 256
/* A node's load report interval (Hello.report_ms, --report-ms). */
#define DUET_MIN_REPORT_MS 20
#define DUET_MAX_REPORT_MS 60000
/* A node takes its router for gone after this many report intervals
 * without a heartbeat's answer (the router judges nodes by its own
 * node-timeout-ms). */
#define DUET_MISSED_REPORTS 3
/* Running streams a load report lists the tokens left of (stream_tokens_left,
 * the fewest first), and local prefills it lists (local_prompt_left,
 * local_tokens_left, the first in the node's order); a node with more
 * reports those, a router refuses a report with more. */
#define DUET_REPORT_MAX_STREAMS 256

/* Packs m into a malloc'd buffer the caller frees. */
int duet_wire_pack(const Duet__Msg *m, void **buf, size_t *len, struct duet_err *err);
/* Unpacks and checks the envelope: size, version, a body set. On success
 * *out is freed with duet_wire_free. */
int duet_wire_unpack(const void *buf, size_t len, Duet__Msg **out, struct duet_err *err);
void duet_wire_free(Duet__Msg *m);
/* The request an event for the router names (reserve reply, first token,
 * KV done, token, finish, error); 0 for every other kind of message. */
uint64_t duet_wire_event_request(const Duet__Msg *m);
/* "hello", "kv_chunk", ... for logs. */
const char *duet_wire_body_name(int body_case);

/* What a receiver checks fields against: its model and its limits. */
struct duet_wire_limits {
	int n_layers, n_kv_heads, head_dim;
	int ctx_len, vocab_size;
	const char *digest;
};

/* Sampling parameters as sent, defaults filled in: the network layer knows
 * nothing of the sampler; a node hands them to it (duet_node_sampling),
 * which checks the ranges the sampler needs. */
struct duet_wire_sampling {
	float temperature; /* 0 = greedy */
	int top_k;	   /* 0 = no limit */
	float top_p;	   /* 1 = no limit */
	uint64_t seed;
	float min_p, presence_penalty, frequency_penalty, repetition_penalty;
	size_t n_bias; /* pointers into the message */
	const int32_t *bias_tokens;
	const float *bias_values;
	int logprobs, top_logprobs;
	int format;		 /* Duet__ResponseFormat */
	const char *json_schema; /* "" = none */
};
/* The longest JSON schema a request may carry. */
#define DUET_MAX_SCHEMA (64 * 1024)
/* Logit-bias entries on the wire (OpenAI's limit). */
#define DUET_WIRE_MAX_BIAS 300
/* Fills *out from s (NULL means greedy); fails on NaN or absurd values. */
int duet_wire_sampling(const Duet__Sampling *s, struct duet_wire_sampling *out,
		       struct duet_err *err);
/* A message's token ids as a malloc'd array of int the caller frees (NULL
 * when out of memory): what the daemons keep of a prompt. */
int *duet_wire_tokens_copy(const int32_t *t, size_t n);
/* Prompt tokens: 1 to ctx_len - 1 of them, each in the vocabulary. */
int duet_wire_check_tokens(const int32_t *t, size_t n, const struct duet_wire_limits *lim,
			   struct duet_err *err);
/* Adds v to the ascending list left[0..*n) of at most DUET_REPORT_MAX_STREAMS
 * (a load report's stream_tokens_left), dropping the largest when full:
 * how a node builds the list and a router keeps it, whatever order a
 * report came in. */
void duet_wire_left_add(uint32_t *left, size_t *n, uint32_t v);
/* Appends a local prefill (the prompt tokens it has left, the tokens it may
 * make after) to a load report's lists of *n, unless they hold
 * DUET_REPORT_MAX_STREAMS already: how a node builds them and a router adds
 * its own placements until the next report. */
void duet_wire_local_add(uint32_t *prompt_left, uint32_t *tokens_left, size_t *n,
			 uint32_t prompt, uint32_t tokens);
/* The tokens a stream may still make: max_tokens less those made, 0 past. */
static inline uint32_t duet_wire_tokens_left(int max_tokens, int made)
{
	return (uint32_t)(max_tokens > made ? max_tokens - made : 0);
}
/* A string field: at most max bytes (names, endpoints). */
int duet_wire_check_str(const char *s, size_t max, const char *field, struct duet_err *err);
/* A KV chunk header and its payload: geometry, layer and position ranges,
 * dtype, payload size and checksum. */
int duet_wire_check_kv_chunk(const Duet__KvChunk *c, const void *payload, size_t plen,
			     const struct duet_wire_limits *lim, struct duet_err *err);
/* The envelope around one body: body_case says which message body points
 * at (a Duet__Hello for DUET__MSG__BODY_HELLO, ...). Every body is a
 * pointer to a protobuf-c message struct, and C gives all pointers to
 * structs one representation, so one member of the union holds any. */
static inline Duet__Msg duet_wire_msg(Duet__Msg__BodyCase body_case, void *body)
{
	Duet__Msg m = DUET__MSG__INIT;
	m.version = DUET_PROTO_VERSION;
	m.body_case = body_case;
	m.hello = body;
	return m;
}

#endif
