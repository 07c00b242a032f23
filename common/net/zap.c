#include "net/zap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "base/clock.h"
#include "base/log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_MAX_FRAMES 8
#define ZAP_POLL_MS 100
/* A refused peer reconnects every 100 ms or so; one line per peer and
 * reason a minute says what happens without flooding the journal. */
#define LOG_REPEAT_US (60 * 1000000LL)
#define LOG_SLOTS 32
#define WATCH_EVENTS                                                                               \
	(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |              \
	 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_MONITOR_STOPPED)

struct watch {
	void *pair; /* receives the monitor's events */
	char label[64];
	int server;
};

struct log_slot {
	char key[160];
	long long last_us;
	unsigned suppressed;
};

struct duet_zap {
	void *zctx, *rep;
	struct duet_curve_allow *allow;
	pthread_t th;
	int started;
	atomic_int stop;
	atomic_uint_least64_t refused;
	pthread_mutex_t mu; /* guards pending */
	struct watch pending[DUET_ZAP_MAX_WATCH];
	int n_pending;
	unsigned next_mon;
	/* the thread's own */
	struct watch w[DUET_ZAP_MAX_WATCH];
	int n_w;
	struct log_slot slots[LOG_SLOTS];
};

int duet_curve_sockopts(void *s, const struct duet_curve_key *own, const char *server_key,
			struct duet_err *err)
{
	int one = 1;
	int rc = server_key ? zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_key, DUET_CURVE_Z85) ||
				      zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, own->pub, DUET_CURVE_Z85) ||
				      zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, own->sec, DUET_CURVE_Z85)
			    : zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one) ||
				      zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, own->sec, DUET_CURVE_Z85) ||
				      zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, DUET_ZAP_DOMAIN,
						     strlen(DUET_ZAP_DOMAIN));
	if (rc)
		return duet_errf(err, "zmq: CURVE %s options: %s", server_key ? "client" : "server",
				 zmq_strerror(errno));
	return 0;
}

/* Logs at warning unless the same key was logged less than a minute ago. */
static void log_limited(struct duet_zap *z, const char *key, const char *msg)
{
	long long now = duet_now_us();
	struct log_slot *s = NULL, *oldest = &z->slots[0];
	for (int i = 0; i < LOG_SLOTS && !s; i++) {
		if (strcmp(z->slots[i].key, key) == 0)
			s = &z->slots[i];
		else if (z->slots[i].last_us < oldest->last_us)
			oldest = &z->slots[i];
	}
	if (s && now - s->last_us < LOG_REPEAT_US) {
		s->suppressed++;
		return;
	}
	if (!s) {
		s = oldest;
		snprintf(s->key, sizeof s->key, "%s", key);
		s->suppressed = 0;
	}
	if (s->suppressed)
		duet_log(DUET_LOG_WARN, 0, "%s (and %u more like it in the last minute)", msg,
			 s->suppressed);
	else
		duet_log(DUET_LOG_WARN, 0, "%s", msg);
	s->last_us = now;
	s->suppressed = 0;
}

static void reply(void *rep, const zmq_msg_t *req_id, const char *code, const char *text,
		  const char *user)
{
	const char *parts[] = {"1.0", NULL, code, text, user, ""};
	for (int i = 0; i < 6; i++) {
		int more = i < 5 ? ZMQ_SNDMORE : 0;
		if (i == 1)
			zmq_send(rep, req_id ? zmq_msg_data((zmq_msg_t *)req_id) : "",
				 req_id ? zmq_msg_size((zmq_msg_t *)req_id) : 0, more);
		else
			zmq_send(rep, parts[i], strlen(parts[i]), more);
	}
}

static void frame_str(zmq_msg_t *f, char *out, size_t cap)
{
	size_t n = zmq_msg_size(f);
	if (n >= cap)
		n = cap - 1;
	memcpy(out, zmq_msg_data(f), n);
	out[n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)out[i] < 32 || (unsigned char)out[i] > 126)
			out[i] = '?';
}

/* One ZAP request: version, request id, domain, address, routing id,
 * mechanism, credentials (CURVE: the client's 32-byte public key). */
static void serve_zap(struct duet_zap *z)
{
	zmq_msg_t f[ZAP_MAX_FRAMES];
	int n = 0, more = 1;
	while (more) {
		zmq_msg_t spill, *m = n < ZAP_MAX_FRAMES ? &f[n] : &spill;
		zmq_msg_init(m);
		if (zmq_msg_recv(m, z->rep, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(m);
			break;
		}
		more = zmq_msg_more(m);
		if (m == &spill)
			zmq_msg_close(m);
		else
			n++;
	}
	if (n == 0)
		return;
	char version[8] = "", addr[64] = "?", mech[16] = "", msg[256], key[160];
	if (n >= 1)
		frame_str(&f[0], version, sizeof version);
	if (n >= 4)
		frame_str(&f[3], addr, sizeof addr);
	if (n >= 6)
		frame_str(&f[5], mech, sizeof mech);
	if (strcmp(version, "1.0") != 0 || n < 6) {
		reply(z->rep, n >= 2 ? &f[1] : NULL, "500", "malformed ZAP request", "");
	} else if (strcmp(mech, "CURVE") != 0 || n != 7 || zmq_msg_size(&f[6]) != 32) {
		atomic_fetch_add(&z->refused, 1);
		snprintf(key, sizeof key, "mech %s %s", mech, addr);
		snprintf(msg, sizeof msg, "refused a %s peer from %s: only CURVE is accepted", mech,
			 addr);
		log_limited(z, key, msg);
		reply(z->rep, &f[1], "400", "CURVE required", "");
	} else {
		char pub[DUET_CURVE_Z85 + 1];
		zmq_z85_encode(pub, zmq_msg_data(&f[6]), 32);
		const char *name = duet_curve_allowed(z->allow, pub);
		if (name) {
			reply(z->rep, &f[1], "200", "OK", name);
		} else {
			atomic_fetch_add(&z->refused, 1);
			snprintf(key, sizeof key, "key %s %s", pub, addr);
			snprintf(msg, sizeof msg,
				 "refused CURVE key %s from %s: not on the allow-list", pub, addr);
			log_limited(z, key, msg);
			reply(z->rep, &f[1], "400", "key not allowed", "");
		}
	}
	for (int i = 0; i < n; i++)
		zmq_msg_close(&f[i]);
}

static const char *protocol_reason(uint32_t v)
{
	switch (v) {
	case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
		return "security mechanisms differ (a plaintext peer, or CURVE on one side only)";
	case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
	case ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE:
		return "CURVE keys do not match (the client has a wrong server key)";
	default:
		return "malformed handshake";
	}
}

/* One monitor event; returns 0 when the watched socket is gone. */
static int serve_watch(struct duet_zap *z, struct watch *w)
{
	zmq_msg_t ev, ep;
	zmq_msg_init(&ev);
	zmq_msg_init(&ep);
	int alive = 1;
	if (zmq_msg_recv(&ev, w->pair, ZMQ_DONTWAIT) < 0)
		goto out;
	if (!zmq_msg_more(&ev) || zmq_msg_recv(&ep, w->pair, ZMQ_DONTWAIT) < 0 ||
	    zmq_msg_size(&ev) < 6)
		goto out;
	uint16_t event;
	uint32_t value;
	memcpy(&event, zmq_msg_data(&ev), 2);
	memcpy(&value, (char *)zmq_msg_data(&ev) + 2, 4);
	char where[128], key[160], msg[384];
	frame_str(&ep, where, sizeof where);
	if (event == ZMQ_EVENT_MONITOR_STOPPED) {
		alive = 0;
	} else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
		/* Servers logged the refusal in serve_zap already. */
		if (!w->server) {
			atomic_fetch_add(&z->refused, 1);
			snprintf(key, sizeof key, "auth %s", w->label);
			snprintf(msg, sizeof msg,
				 "%s: %s refused this daemon's CURVE key (status %u); add its .pub "
				 "to the peer's curve-allow",
				 w->label, where, (unsigned)value);
			log_limited(z, key, msg);
		}
	} else {
		atomic_fetch_add(&z->refused, 1);
		snprintf(key, sizeof key, "hs %s %s %x", w->label, where, (unsigned)value);
		snprintf(msg, sizeof msg, "%s: handshake on %s failed: %s", w->label, where,
			 event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? protocol_reason(value)
								     : "the peer broke off the handshake (plaintext, or its key was refused)");
		log_limited(z, key, msg);
	}
out:
	zmq_msg_close(&ev);
	zmq_msg_close(&ep);
	return alive;
}

/* A reply or event nobody will read must not hold up zmq_ctx_term. */
static void no_linger(void *sock)
{
	int zero = 0;
	zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
}

static void adopt_pending(struct duet_zap *z)
{
	pthread_mutex_lock(&z->mu);
	for (int i = 0; i < z->n_pending; i++) {
		if (z->n_w < DUET_ZAP_MAX_WATCH)
			z->w[z->n_w++] = z->pending[i];
		else
			zmq_close(z->pending[i].pair);
	}
	z->n_pending = 0;
	pthread_mutex_unlock(&z->mu);
}

static void *run(void *arg)
{
	struct duet_zap *z = arg;
	zmq_pollitem_t items[DUET_ZAP_MAX_WATCH + 1];
	while (!atomic_load(&z->stop)) {
		adopt_pending(z);
		int n = 0;
		if (z->rep)
			items[n++] = (zmq_pollitem_t){.socket = z->rep, .events = ZMQ_POLLIN};
		for (int i = 0; i < z->n_w; i++)
			items[n++] = (zmq_pollitem_t){.socket = z->w[i].pair, .events = ZMQ_POLLIN};
		if (zmq_poll(items, n, ZAP_POLL_MS) <= 0)
			continue;
		int k = 0;
		if (z->rep && (items[k++].revents & ZMQ_POLLIN))
			serve_zap(z);
		for (int i = 0; i < z->n_w; i++, k++) {
			if (!(items[k].revents & ZMQ_POLLIN) || serve_watch(z, &z->w[i]))
				continue;
			zmq_close(z->w[i].pair);
			z->w[i] = z->w[--z->n_w];
			/* the moved entry's poll result is stale; see it next turn */
			break;
		}
	}
	return NULL;
}

int duet_zap_start(void *zctx, const struct duet_curve_allow *allow, struct duet_zap **out,
		   struct duet_err *err)
{
	struct duet_zap *z = calloc(1, sizeof *z);
	if (!z)
		return duet_errf(err, "zap: out of memory");
	z->zctx = zctx;
	pthread_mutex_init(&z->mu, NULL);
	if (allow) {
		z->allow = malloc(sizeof *z->allow);
		z->rep = zmq_socket(zctx, ZMQ_REP);
		if (z->rep)
			no_linger(z->rep);
		if (!z->allow || !z->rep || zmq_bind(z->rep, ZAP_ENDPOINT)) {
			duet_errf(err, "zap: binding %s: %s", ZAP_ENDPOINT, zmq_strerror(errno));
			goto fail;
		}
		memcpy(z->allow, allow, sizeof *allow);
	}
	if (pthread_create(&z->th, NULL, run, z)) {
		duet_errf(err, "zap: cannot start its thread");
		goto fail;
	}
	z->started = 1;
	*out = z;
	return 0;
fail:
	duet_zap_stop(z);
	return -1;
}

int duet_zap_watch(struct duet_zap *z, void *sock, const char *label, int server,
		   struct duet_err *err)
{
	char ep[96];
	pthread_mutex_lock(&z->mu);
	snprintf(ep, sizeof ep, "inproc://duet-zap-monitor-%p-%u", (void *)z, z->next_mon++);
	pthread_mutex_unlock(&z->mu);
	if (zmq_socket_monitor(sock, ep, WATCH_EVENTS))
		return duet_errf(err, "zmq: monitoring %s: %s", label, zmq_strerror(errno));
	struct watch w = {.pair = zmq_socket(z->zctx, ZMQ_PAIR), .server = server};
	snprintf(w.label, sizeof w.label, "%s", label);
	if (w.pair)
		no_linger(w.pair);
	if (!w.pair || zmq_connect(w.pair, ep)) {
		if (w.pair)
			zmq_close(w.pair);
		zmq_socket_monitor(sock, NULL, 0);
		return duet_errf(err, "zmq: monitoring %s: %s", label, zmq_strerror(errno));
	}
	pthread_mutex_lock(&z->mu);
	int full = z->n_pending == DUET_ZAP_MAX_WATCH;
	if (!full)
		z->pending[z->n_pending++] = w;
	pthread_mutex_unlock(&z->mu);
	if (full) {
		zmq_close(w.pair);
		zmq_socket_monitor(sock, NULL, 0);
		return duet_errf(err, "zap: more than %d sockets watched", DUET_ZAP_MAX_WATCH);
	}
	return 0;
}

uint64_t duet_zap_refused(const struct duet_zap *z)
{
	return z ? atomic_load(&((struct duet_zap *)z)->refused) : 0;
}

void duet_zap_stop(struct duet_zap *z)
{
	if (!z)
		return;
	if (z->started) {
		atomic_store(&z->stop, 1);
		pthread_join(z->th, NULL);
	}
	adopt_pending(z);
	for (int i = 0; i < z->n_w; i++)
		zmq_close(z->w[i].pair);
	if (z->rep)
		zmq_close(z->rep);
	pthread_mutex_destroy(&z->mu);
	free(z->allow);
	free(z);
}
