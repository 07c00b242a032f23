/* ZeroMQ for every message between processes: sockets with duet's options,
 * multipart send of a Msg header plus an optional raw payload handed to
 * ZeroMQ without copying, and receive with every frame bounded. */
#ifndef DUET_TRANSPORT_H
#define DUET_TRANSPORT_H

#include <stddef.h>
#include <zmq.h>

#include "base/clock.h"
#include "base/err.h"
#include "net/curve.h"
#include "net/wire.h"

/* Frames in one message: [peer identity] header [payload]. More is an
 * error (the rest is received and dropped). */
#define DUET_MAX_FRAMES 3
#define DUET_DEFAULT_HWM 1000
#define DUET_DEFAULT_SEND_TIMEOUT_MS 2000
/* ZMTP heartbeats on links that do not say otherwise (the KV links). */
#define DUET_HEARTBEAT_MS 1000
#define DUET_PEER_TIMEOUT_MS 3000

struct duet_zap;

struct duet_zsock_opts {
	const char *identity; /* DEALER: the node name */
	int sndhwm, rcvhwm;   /* messages; 0 = DUET_DEFAULT_HWM */
	int send_timeout_ms;  /* 0 = DUET_DEFAULT_SEND_TIMEOUT_MS; < 0 = wait forever */
	int linger_ms;	      /* on close */
	int router_mandatory; /* ROUTER: sending to an unknown peer fails */
	/* ROUTER: a new connection under a name in use takes the name over
	 * (else it is refused until the old connection dies, which for a peer
	 * that lost power without closing can be never) */
	int router_handover;
	long long max_msg_bytes; /* larger incoming frames drop the peer; 0 = none */
	/* ZMTP heartbeats, sent and answered by ZeroMQ's I/O thread whatever
	 * the application's thread is doing: a PING every heartbeat_ms, and
	 * the connection dropped when nothing arrives within peer_timeout_ms
	 * of one. 0 = DUET_HEARTBEAT_MS and DUET_PEER_TIMEOUT_MS; heartbeat_ms
	 * < 0: this end sends none (it still answers the peer's). Each end
	 * judges by its own timeout: ZMQ_HEARTBEAT_TTL is not used, because
	 * any message cancels the TTL and only a PING re-arms it, so a peer
	 * whose last word was a message is never timed out by it. */
	int heartbeat_ms, peer_timeout_ms;
	/* CURVE: this end's key pair (NULL = plaintext), and for a client the
	 * server's public key (NULL = this socket is a CURVE server) */
	const struct duet_curve_key *curve;
	const char *curve_server;
	/* Handshake failures on this socket logged and counted by this ZAP
	 * handler (duet_zap_watch), watched from before the socket binds or
	 * connects: a watch begun after the connect missed a refusal that
	 * came first (a test waited 30 s for its log line). NULL = none. */
	struct duet_zap *watch;
	const char *watch_label;
	int watch_server; /* the socket is the CURVE server */
};

/* Opens a socket of `type` and binds (bind = 1) or connects it. */
int duet_zsock(void *ctx, int type, const char *endpoint, int bind,
	       const struct duet_zsock_opts *o, void **out, struct duet_err *err);

/* Sends m, preceded by the peer identity when peer != NULL (ROUTER), and
 * followed by payload when payload != NULL. The payload must come from
 * malloc; ZeroMQ owns it from this call on, whether or not it succeeds, and
 * frees it once it is on the wire. */
int duet_zsend(void *sock, const char *peer, const Duet__Msg *m, void *payload,
	       size_t plen, struct duet_err *err);

/* Sends an Error about request (0 = about the peer itself) with code and
 * message: the one reply every daemon gives to what it cannot take. */
int duet_zsend_error(void *sock, const char *peer, uint64_t request, Duet__ErrorCode code,
		     const char *message, struct duet_err *err);

/* One received message. */
struct duet_inmsg {
	char peer[DUET_MAX_NAME + 1]; /* sender identity (ROUTER sockets) */
	Duet__Msg *m;
	const void *payload; /* NULL when there is none */
	size_t plen;
	zmq_msg_t frames[DUET_MAX_FRAMES];
	int n_frames;
};

/* Receives one message without blocking. Returns 1 with *in filled (free
 * it with duet_inmsg_close), 0 when nothing is waiting, and -1 when a
 * message arrived but was malformed: it is consumed, err says why,
 * in->peer names the sender when it could be read, and in->m is set when
 * the header itself was valid (so the caller can fail its request). Close
 * *in after 1 and after -1. */
int duet_zrecv(void *sock, int has_peer, struct duet_inmsg *in, struct duet_err *err);
void duet_inmsg_close(struct duet_inmsg *in);

#endif
