/* The gatekeeper of a daemon's ZeroMQ links when CURVE is on: a thread that
 * answers ZeroMQ's authentication requests (ZAP, RFC 27) against the
 * allow-list, and watches the daemon's sockets for failed handshakes
 * (a plaintext peer, a wrong server key), so each refusal is counted and
 * logged with what was refused and where.
 *
 * libzmq admits any CURVE client when no ZAP handler is bound, so the
 * handler is bound (duet_zap_start) before any server socket exists. */
#ifndef DUET_ZAP_H
#define DUET_ZAP_H

#include <stdint.h>

#include "base/err.h"
#include "net/curve.h"

#define DUET_ZAP_DOMAIN "duet"
#define DUET_ZAP_MAX_WATCH 64

struct duet_zap;

/* allow: the keys to admit (copied); NULL when this daemon serves no
 * CURVE socket and only watches its clients. */
int duet_zap_start(void *zctx, const struct duet_curve_allow *allow, struct duet_zap **out,
		   struct duet_err *err);
/* Watches sock's handshakes; label names it in logs ("control",
 * "KV to decode-1"), server says whether sock accepts connections. Call
 * from the thread that owns sock; a closed socket is forgotten. */
int duet_zap_watch(struct duet_zap *z, void *sock, const char *label, int server,
		   struct duet_err *err);
/* Peers refused: keys not on the list, and failed handshakes (plaintext,
 * wrong keys) seen by the watched sockets. */
uint64_t duet_zap_refused(const struct duet_zap *z);
/* Stops the thread; call before closing the context. NULL is fine. */
void duet_zap_stop(struct duet_zap *z);

/* The socket options of one end of a CURVE link (before bind/connect):
 * server_key NULL makes sock a server, else a client of that server. */
int duet_curve_sockopts(void *sock, const struct duet_curve_key *own, const char *server_key,
			struct duet_err *err);

#endif
