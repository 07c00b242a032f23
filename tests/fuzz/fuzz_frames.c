/* libFuzzer target: arbitrary ZeroMQ frames through the decoders every
 * daemon runs on what it receives (envelope, then the checks of each
 * message kind, then the KV payload codec).
 *
 * Input: one byte whose low bit says whether a payload frame follows; with
 * a payload, two bytes (little endian) of header length; then the header
 * frame, then the payload frame. */
#include <stdint.h>
#include <stdlib.h>

#include "base/kvrow.h"
#include "net/wire.h"
#include "node/node.h"

/* The geometry of the `tiny` test shape. */
static const struct duet_wire_limits LIM = {2, 2, 32, 512, 32000, "0123456789abcdef0123456789abcdef"};

static void kv_chunk(const Duet__KvChunk *c, const uint8_t *payload, size_t plen)
{
	struct duet_err err;
	if (duet_wire_check_kv_chunk(c, payload, plen, &LIM, &err))
		return;
	/* What a decode node does next: check the rows, then read them. */
	enum duet_kv_dtype t = (enum duet_kv_dtype)c->dtype;
	int n = (int)c->n_tokens;
	if (duet_kv_rows_check(t, LIM.n_kv_heads, LIM.head_dim, payload, 2 * n, &err))
		return;
	size_t rb = duet_kv_row_bytes(t, LIM.n_kv_heads, LIM.head_dim);
	float row[64];
	for (int i = 0; i < 2 * n; i++)
		duet_kv_row_get(t, LIM.n_kv_heads, LIM.head_dim, payload + (size_t)i * rb, row);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int with_payload = data[0] & 1;
	data++, size--;
	size_t hlen = size, plen = 0;
	const uint8_t *payload = NULL;
	if (with_payload) {
		if (size < 2)
			return 0;
		hlen = (size_t)data[0] | (size_t)data[1] << 8;
		data += 2, size -= 2;
		if (hlen > size)
			hlen = size;
		payload = data + hlen;
		plen = size - hlen;
	}
	Duet__Msg *m;
	struct duet_err err;
	if (duet_wire_unpack(data, hlen, &m, &err))
		return 0;
	struct duet_sampling sp;
	switch (m->body_case) {
	case DUET__MSG__BODY_KV_CHUNK:
		if (payload)
			kv_chunk(m->kv_chunk, payload, plen);
		break;
	case DUET__MSG__BODY_PREFILL:
		(void)duet_wire_check_tokens(m->prefill->tokens, m->prefill->n_tokens, &LIM, &err);
		(void)duet_wire_check_str(m->prefill->decode_endpoint, DUET_MAX_ENDPOINT, "ep", &err);
		(void)duet_node_sampling(m->prefill->sampling, 32000, &sp, &err);
		break;
	case DUET__MSG__BODY_LOCAL:
		(void)duet_wire_check_tokens(m->local->tokens, m->local->n_tokens, &LIM, &err);
		(void)duet_node_sampling(m->local->sampling, 32000, &sp, &err);
		break;
	case DUET__MSG__BODY_RESERVE:
		(void)duet_node_sampling(m->reserve->sampling, 32000, &sp, &err);
		break;
	case DUET__MSG__BODY_HELLO:
		(void)duet_wire_check_str(m->hello->name, DUET_MAX_NAME, "name", &err);
		(void)duet_wire_check_str(m->hello->kv_endpoint, DUET_MAX_ENDPOINT, "ep", &err);
		break;
	default:
		(void)duet_wire_body_name(m->body_case);
		break;
	}
	duet_wire_free(m);
	return 0;
}
