#include "net/transport.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/zap.h"

static int setopt_int(void *s, int opt, int v, const char *name, struct duet_err *err)
{
	if (zmq_setsockopt(s, opt, &v, sizeof v))
		return duet_errf(err, "zmq: setting %s to %d: %s", name, v, zmq_strerror(errno));
	return 0;
}

int duet_zsock(void *ctx, int type, const char *endpoint, int bind,
	       const struct duet_zsock_opts *o, void **out, struct duet_err *err)
{
	static const struct duet_zsock_opts none = {0};
	if (!o)
		o = &none;
	void *s = zmq_socket(ctx, type);
	if (!s)
		return duet_errf(err, "zmq: socket: %s", zmq_strerror(errno));
	int timeout = o->send_timeout_ms ? o->send_timeout_ms : DUET_DEFAULT_SEND_TIMEOUT_MS;
	int hb = o->heartbeat_ms ? o->heartbeat_ms : DUET_HEARTBEAT_MS;
	int peer_timeout = o->peer_timeout_ms ? o->peer_timeout_ms : DUET_PEER_TIMEOUT_MS;
	if (setopt_int(s, ZMQ_SNDHWM, o->sndhwm ? o->sndhwm : DUET_DEFAULT_HWM, "ZMQ_SNDHWM", err) ||
	    setopt_int(s, ZMQ_RCVHWM, o->rcvhwm ? o->rcvhwm : DUET_DEFAULT_HWM, "ZMQ_RCVHWM", err) ||
	    setopt_int(s, ZMQ_SNDTIMEO, timeout < 0 ? -1 : timeout, "ZMQ_SNDTIMEO", err) ||
	    setopt_int(s, ZMQ_LINGER, o->linger_ms, "ZMQ_LINGER", err) ||
	    (hb > 0 && (setopt_int(s, ZMQ_HEARTBEAT_IVL, hb, "ZMQ_HEARTBEAT_IVL", err) ||
			setopt_int(s, ZMQ_HEARTBEAT_TIMEOUT, peer_timeout, "ZMQ_HEARTBEAT_TIMEOUT",
				   err))) ||
	    (o->router_mandatory &&
	     setopt_int(s, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY", err)) ||
	    (o->router_handover &&
	     setopt_int(s, ZMQ_ROUTER_HANDOVER, 1, "ZMQ_ROUTER_HANDOVER", err)))
		goto fail;
	/* A frame bigger than the largest legitimate one closes the peer's
	 * connection before it is buffered whole. */
	if (o->max_msg_bytes > 0) {
		int64_t v = o->max_msg_bytes;
		if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &v, sizeof v)) {
			duet_errf(err, "zmq: ZMQ_MAXMSGSIZE: %s", zmq_strerror(errno));
			goto fail;
		}
	}
	if (o->identity && zmq_setsockopt(s, ZMQ_ROUTING_ID, o->identity, strlen(o->identity))) {
		duet_errf(err, "zmq: identity '%s': %s", o->identity, zmq_strerror(errno));
		goto fail;
	}
	if (o->curve && duet_curve_sockopts(s, o->curve, o->curve_server, err))
		goto fail;
	if (o->watch && duet_zap_watch(o->watch, s, o->watch_label, o->watch_server, err))
		goto fail;
	if ((bind ? zmq_bind(s, endpoint) : zmq_connect(s, endpoint)) != 0) {
		duet_errf(err, "zmq: %s %s: %s", bind ? "bind" : "connect", endpoint,
			  zmq_strerror(errno));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	zmq_close(s);
	return -1;
}

static void free_payload(void *data, void *hint)
{
	(void)hint;
	free(data);
}

static int send_part(void *sock, zmq_msg_t *msg, int more, struct duet_err *err)
{
	if (zmq_msg_send(msg, sock, more ? ZMQ_SNDMORE : 0) < 0) {
		int e = errno;
		zmq_msg_close(msg);
		return duet_errf(err, "zmq: send: %s",
				 e == EAGAIN ? "peer not keeping up (send timed out)" : zmq_strerror(e));
	}
	return 0;
}

int duet_zsend(void *sock, const char *peer, const Duet__Msg *m, void *payload,
	       size_t plen, struct duet_err *err)
{
	void *hdr;
	size_t hlen;
	zmq_msg_t f;
	if (duet_wire_pack(m, &hdr, &hlen, err)) {
		free(payload);
		return -1;
	}
	if (peer) {
		zmq_msg_init_size(&f, strlen(peer));
		memcpy(zmq_msg_data(&f), peer, strlen(peer));
		if (send_part(sock, &f, 1, err))
			goto fail;
	}
	if (zmq_msg_init_data(&f, hdr, hlen, free_payload, NULL)) {
		free(hdr);
		hdr = NULL;
		duet_errf(err, "zmq: message init: %s", zmq_strerror(errno));
		goto fail;
	}
	hdr = NULL; /* zmq owns it now */
	if (send_part(sock, &f, payload != NULL, err))
		goto fail;
	if (payload) {
		if (zmq_msg_init_data(&f, payload, plen, free_payload, NULL)) {
			duet_errf(err, "zmq: message init: %s", zmq_strerror(errno));
			goto fail;
		}
		payload = NULL;
		if (send_part(sock, &f, 0, err))
			return -1;
	}
	return 0;
fail:
	free(hdr);
	free(payload);
	return -1;
}

int duet_zsend_error(void *sock, const char *peer, uint64_t request, Duet__ErrorCode code,
		     const char *message, struct duet_err *err)
{
	Duet__Error e = DUET__ERROR__INIT;
	e.request_id = request;
	e.code = code;
	e.message = (char *)message;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_ERROR, &e);
	return duet_zsend(sock, peer, &m, NULL, 0, err);
}

void duet_inmsg_close(struct duet_inmsg *in)
{
	duet_wire_free(in->m);
	in->m = NULL;
	for (int i = 0; i < in->n_frames; i++)
		zmq_msg_close(&in->frames[i]);
	in->n_frames = 0;
	in->payload = NULL;
	in->plen = 0;
}

int duet_zrecv(void *sock, int has_peer, struct duet_inmsg *in, struct duet_err *err)
{
	memset(in, 0, sizeof *in);
	int more = 1, extra = 0;
	while (more) {
		zmq_msg_t *f = &in->frames[in->n_frames];
		zmq_msg_t spill;
		if (in->n_frames == DUET_MAX_FRAMES) {
			f = &spill; /* counted and dropped */
			extra++;
		}
		zmq_msg_init(f);
		if (zmq_msg_recv(f, sock, ZMQ_DONTWAIT) < 0) {
			int e = errno;
			zmq_msg_close(f);
			if (e == EAGAIN && in->n_frames == 0)
				return 0;
			duet_inmsg_close(in);
			return duet_errf(err, "zmq: receive: %s", zmq_strerror(e));
		}
		more = zmq_msg_more(f);
		if (f == &spill)
			zmq_msg_close(f);
		else
			in->n_frames++;
	}
	int h = 0;
	if (has_peer) {
		size_t n = zmq_msg_size(&in->frames[0]);
		if (n > DUET_MAX_NAME)
			n = DUET_MAX_NAME;
		memcpy(in->peer, zmq_msg_data(&in->frames[0]), n);
		in->peer[n] = 0;
		h = 1;
	}
	if (in->n_frames <= h) {
		duet_inmsg_close(in);
		return duet_errf(err, "transport: message without a header frame");
	}
	if (duet_wire_unpack(zmq_msg_data(&in->frames[h]), zmq_msg_size(&in->frames[h]),
			     &in->m, err)) {
		duet_inmsg_close(in);
		return -1;
	}
	int frames = in->n_frames + extra;
	if (frames > h + 2)
		/* The header is kept so the caller can fail its request. */
		return duet_errf(err, "transport: %s message of %d frames; at most %d",
				 duet_wire_body_name(in->m->body_case), frames, h + 2);
	if (in->n_frames > h + 1) {
		in->payload = zmq_msg_data(&in->frames[h + 1]);
		in->plen = zmq_msg_size(&in->frames[h + 1]);
	}
	return 1;
}
