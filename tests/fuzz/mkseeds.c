/* Writes the seed corpus of fuzz_frames: one valid message of each kind
 * the daemons receive, in the target's input format. Usage: mkseeds DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/kvrow.h"
#include "net/wire.h"

static void put(const char *dir, const char *name, const Duet__Msg *m, const void *payload,
		size_t plen)
{
	uint8_t hdr[4096];
	size_t hlen = duet__msg__pack(m, hdr);
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		exit(1);
	}
	uint8_t flag = payload != NULL;
	fwrite(&flag, 1, 1, f);
	if (payload) {
		uint8_t l[2] = {(uint8_t)hlen, (uint8_t)(hlen >> 8)};
		fwrite(l, 1, 2, f);
	}
	fwrite(hdr, 1, hlen, f);
	if (payload)
		fwrite(payload, 1, plen, f);
	fclose(f);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mkseeds DIR\n");
		return 2;
	}
	const char *dir = argv[1];
	const enum duet_kv_dtype types[] = {DUET_KV_F32, DUET_KV_F16, DUET_KV_INT8};
	for (int t = 0; t < 3; t++) {
		int n = 2;
		size_t rb = duet_kv_row_bytes(types[t], 2, 32), plen = 2 * (size_t)n * rb;
		uint8_t *p = calloc(1, plen);
		float row[64];
		for (int i = 0; i < 64; i++)
			row[i] = (float)i - 30;
		for (int i = 0; i < 2 * n; i++)
			duet_kv_row_put(types[t], 2, 32, row, p + (size_t)i * rb);
		Duet__KvChunk c = DUET__KV_CHUNK__INIT;
		c.request_id = 7;
		c.layer = 1;
		c.first_pos = 16;
		c.n_tokens = (uint32_t)n;
		c.n_kv_heads = 2;
		c.head_dim = 32;
		c.dtype = (Duet__KvDtype)types[t];
		c.payload_bytes = plen;
		c.checksum = XXH3_64bits(p, plen);
		c.model_digest = "0123456789abcdef0123456789abcdef";
		Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_KV_CHUNK, &c);
		char name[64];
		snprintf(name, sizeof name, "kv_chunk_%s", duet_kv_dtype_name(types[t]));
		put(dir, name, &m, p, plen);
		free(p);
	}
	int32_t toks[5] = {1, 450, 4996, 29871, 13};
	Duet__Sampling s = DUET__SAMPLING__INIT;
	s.temperature = 0.7f;
	s.top_p = 0.9f;
	s.seed = 3;
	Duet__PrefillWork w = DUET__PREFILL_WORK__INIT;
	w.request_id = 9;
	w.n_tokens = 5;
	w.tokens = toks;
	w.sampling = &s;
	w.decode_node = "decode-0";
	w.decode_endpoint = "tcp://10.0.0.2:5601";
	w.decode_digest = "0123456789abcdef0123456789abcdef";
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_PREFILL, &w);
	put(dir, "prefill", &m, NULL, 0);
	Duet__LocalWork l = DUET__LOCAL_WORK__INIT;
	l.request_id = 10;
	l.n_tokens = 5;
	l.tokens = toks;
	l.max_tokens = 64;
	l.sampling = &s;
	m.body_case = DUET__MSG__BODY_LOCAL;
	m.local = &l;
	put(dir, "local", &m, NULL, 0);
	Duet__KvReserve r = DUET__KV_RESERVE__INIT;
	r.request_id = 11;
	r.n_prompt = 100;
	r.max_tokens = 50;
	r.sampling = &s;
	r.n_sampled = 1;
	m.body_case = DUET__MSG__BODY_RESERVE;
	m.reserve = &r;
	put(dir, "reserve", &m, NULL, 0);
	Duet__FirstToken f = DUET__FIRST_TOKEN__INIT;
	f.request_id = 7;
	f.token = 450;
	m.body_case = DUET__MSG__BODY_FIRST_TOKEN;
	m.first_token = &f;
	put(dir, "first_token", &m, NULL, 0);
	Duet__Hello h = DUET__HELLO__INIT;
	h.role = DUET__ROLE__ROLE_DECODE;
	h.name = "decode-0";
	h.model_digest = "0123456789abcdef0123456789abcdef";
	h.kv_endpoint = "ipc:///run/duet/decode-0.ipc";
	m.body_case = DUET__MSG__BODY_HELLO;
	m.hello = &h;
	put(dir, "hello", &m, NULL, 0);
	Duet__Cancel c = DUET__CANCEL__INIT;
	c.request_id = 7;
	m.body_case = DUET__MSG__BODY_CANCEL;
	m.cancel = &c;
	put(dir, "cancel", &m, NULL, 0);
	return 0;
}
