/* KV arriving from prefill nodes, received and written into the paged
 * cache by a thread of its own, so that a decode step never waits for a
 * hand-off: the step loop only learns, between two steps, that a prompt's
 * KV is complete (its first token) or that a peer sent something wrong.
 *
 * The main thread owns the requests. It announces each reservation
 * (kv_ingest_expect) before the prefill node can hear of it, and takes it
 * back (kv_ingest_forget) before it frees the request's blocks; the
 * thread writes rows only while it holds the lock and the request's slot,
 * so no row lands in a block after the block went back to the pool. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/idmap.h"
#include "base/log.h"
#include "base/trace.h"
#include "decode.h"

/* A reservation whose KV is arriving. */
struct slot {
	uint64_t id;
	struct duet_kv_seq *kv; /* the request's blocks (the main thread's) */
	int n_prompt;
	int layers_done;
	uint64_t bytes;
	int layer_next[]; /* next position expected per layer */
};

struct kv_ingest {
	void *sock;	       /* the KV endpoint: the thread's alone once it runs */
	void *pipe_main;       /* main's end: events in, stop out */
	void *pipe_thread;     /* the thread's end */
	struct duet_kv_pool *pool;
	const struct duet_wire_limits *lim;
	int n_layers, vocab;
	float *row; /* one KV row in f32, converting another node's type */
	pthread_mutex_t mu;    /* slots, and every write into a slot's blocks */
	struct duet_idmap slots;
	atomic_ullong bytes_in;
	pthread_t thread;
	int running;
};

static void emit(struct kv_ingest *g, enum kv_event_kind kind, uint64_t id, int token,
		 uint64_t bytes, const char *why)
{
	struct kv_event ev = {.kind = kind, .id = id, .token = token, .bytes = bytes};
	if (why)
		snprintf(ev.why, sizeof ev.why, "%s", why);
	/* inproc PAIR with no high-water mark: never blocks, never drops;
	 * only a context being torn down refuses it */
	while (zmq_send(g->pipe_thread, &ev, sizeof ev, 0) < 0)
		if (zmq_errno() != EINTR) {
			duet_log(DUET_LOG_ERR, id, "KV ingest: event lost: %s",
				 zmq_strerror(zmq_errno()));
			return;
		}
}

/* The slot of id, taken out of the map (lock held): a request that
 * failed here is the main thread's again. */
static void take(struct kv_ingest *g, struct slot *s)
{
	duet_idmap_del(&g->slots, s->id);
	free(s);
}

/* A bad message about request id: the slot, if any, goes (lock held). */
static void bad(struct kv_ingest *g, uint64_t id, const char *why)
{
	struct slot *s = id ? duet_idmap_get(&g->slots, id) : NULL;
	enum kv_event_kind kind = s ? KV_EVENT_BAD : KV_EVENT_STRAY;
	if (s)
		take(g, s);
	emit(g, kind, id, 0, 0, why);
}

static struct slot *waiting(struct kv_ingest *g, uint64_t id, const char *what)
{
	struct slot *s = duet_idmap_get(&g->slots, id);
	if (!s) {
		/* the main thread knows whether it is late, early or wild */
		char why[160];
		snprintf(why, sizeof why, "%s for request %llu, which is not waiting for KV here",
			 what, (unsigned long long)id);
		emit(g, KV_EVENT_STRAY, id, 0, 0, why);
	}
	return s;
}

static void on_chunk(struct kv_ingest *g, const Duet__KvChunk *c, const void *payload,
		     size_t plen)
{
	long long t0 = duet_now_us();
	struct duet_err err;
	struct slot *s = waiting(g, c->request_id, "KV chunk");
	if (!s)
		return;
	if (duet_wire_check_kv_chunk(c, payload, plen, g->lim, &err)) {
		bad(g, s->id, err.msg);
		return;
	}
	int layer = (int)c->layer, first = (int)c->first_pos, n = (int)c->n_tokens;
	if (first + n > s->n_prompt) {
		snprintf(err.msg, sizeof err.msg,
			 "kv_chunk: positions %d + %d past the reserved prompt of %d", first, n,
			 s->n_prompt);
		bad(g, s->id, err.msg);
		return;
	}
	if (first != s->layer_next[layer]) {
		snprintf(err.msg, sizeof err.msg, "kv_chunk: layer %d at position %d; expected %d (%s)",
			 layer, first, s->layer_next[layer],
			 first < s->layer_next[layer] ? "duplicate" : "out of order");
		bad(g, s->id, err.msg);
		return;
	}
	/* Rows in the cache's own type are copied as they are; a prefill
	 * node storing another type costs a conversion here. */
	const struct duet_kv_geom *geo = &g->pool->g;
	enum duet_kv_dtype t = (enum duet_kv_dtype)c->dtype;
	size_t rb = duet_kv_row_bytes(t, geo->n_kv_heads, geo->head_dim);
	if (duet_kv_rows_check(t, geo->n_kv_heads, geo->head_dim, payload, 2 * n, &err)) {
		bad(g, s->id, err.msg);
		return;
	}
	for (int which = 0; which < 2; which++)
		for (int i = 0; i < n; i++) {
			const uint8_t *src = (const uint8_t *)payload + ((size_t)which * n + i) * rb;
			void *dst = duet_kv_row(g->pool, layer, which, s->kv, first + i);
			if (t == geo->dtype) {
				memcpy(dst, src, rb);
			} else {
				duet_kv_row_get(t, geo->n_kv_heads, geo->head_dim, src, g->row);
				duet_kv_row_put(geo->dtype, geo->n_kv_heads, geo->head_dim, g->row, dst);
			}
		}
	s->layer_next[layer] += n;
	if (s->layer_next[layer] == s->n_prompt)
		s->layers_done++;
	s->bytes += plen;
	atomic_fetch_add(&g->bytes_in, plen);
	duet_trace_span("kv", "kv write", t0, duet_now_us(),
			"\"request\":%llu,\"layer\":%d,\"first\":%d,\"rows\":%d,\"bytes\":%zu",
			(unsigned long long)s->id, layer, first, n, plen);
}

static void on_first_token(struct kv_ingest *g, const Duet__FirstToken *f)
{
	struct slot *s = waiting(g, f->request_id, "first token");
	if (!s)
		return;
	char why[160];
	if (s->layers_done != g->n_layers) {
		snprintf(why, sizeof why, "first token before the KV is complete (%d of %d layers)",
			 s->layers_done, g->n_layers);
		bad(g, s->id, why);
		return;
	}
	if (f->token < 0 || f->token >= g->vocab) {
		snprintf(why, sizeof why, "first token %d outside the vocabulary", f->token);
		bad(g, s->id, why);
		return;
	}
	emit(g, KV_EVENT_READY, s->id, f->token, s->bytes, NULL);
	take(g, s);
}

static void handle(struct kv_ingest *g, const struct duet_inmsg *in)
{
	const Duet__Msg *m = in->m;
	switch (m->body_case) {
	case DUET__MSG__BODY_KV_CHUNK:
		if (!in->payload)
			bad(g, m->kv_chunk->request_id, "kv_chunk without a payload frame");
		else
			on_chunk(g, m->kv_chunk, in->payload, in->plen);
		return;
	case DUET__MSG__BODY_FIRST_TOKEN:
		on_first_token(g, m->first_token);
		return;
	default: {
		char why[96];
		snprintf(why, sizeof why, "%s message on the KV endpoint",
			 duet_wire_body_name(m->body_case));
		emit(g, KV_EVENT_STRAY, 0, 0, 0, why);
	}
	}
}

/* A message the transport refused: its request fails if the header named
 * one that is waiting. */
static void malformed(struct kv_ingest *g, const struct duet_inmsg *in, const char *why)
{
	uint64_t id = 0;
	if (in->m && in->m->body_case == DUET__MSG__BODY_KV_CHUNK)
		id = in->m->kv_chunk->request_id;
	else if (in->m && in->m->body_case == DUET__MSG__BODY_FIRST_TOKEN)
		id = in->m->first_token->request_id;
	bad(g, id, why);
}

static void *run(void *arg)
{
	struct kv_ingest *g = arg;
	duet_trace_thread("kv ingest");
	for (;;) {
		zmq_pollitem_t items[2] = {{g->sock, 0, ZMQ_POLLIN, 0},
					   {g->pipe_thread, 0, ZMQ_POLLIN, 0}};
		if (zmq_poll(items, 2, -1) < 0) {
			if (zmq_errno() == ETERM)
				break;
			continue; /* EINTR: a signal for the main thread */
		}
		if (items[1].revents & ZMQ_POLLIN)
			break; /* stop */
		for (;;) {
			struct duet_inmsg in;
			struct duet_err err;
			int rc = duet_zrecv(g->sock, 0, &in, &err);
			if (rc == 0)
				break;
			pthread_mutex_lock(&g->mu);
			if (rc < 0)
				malformed(g, &in, err.msg);
			else
				handle(g, &in);
			pthread_mutex_unlock(&g->mu);
			duet_inmsg_close(&in);
		}
	}
	zmq_close(g->sock);
	zmq_close(g->pipe_thread);
	return NULL;
}

int kv_ingest_start(struct kv_ingest **out, void *zctx, void *sock, struct duet_kv_pool *pool,
		    const struct duet_wire_limits *lim, int n_layers, int vocab, const int *cpus,
		    int n_cpus, struct duet_err *err)
{
	struct kv_ingest *g = calloc(1, sizeof *g);
	if (!g)
		return duet_errf(err, "out of memory");
	g->sock = sock;
	g->pool = pool;
	g->lim = lim;
	g->n_layers = n_layers;
	g->vocab = vocab;
	pthread_mutex_init(&g->mu, NULL);
	g->row = malloc(sizeof(float) * (size_t)pool->g.n_kv_heads * (size_t)pool->g.head_dim);
	char ep[64];
	snprintf(ep, sizeof ep, "inproc://duet-kv-ingest-%p", (void *)g);
	int zero = 0;
	g->pipe_main = zmq_socket(zctx, ZMQ_PAIR);
	g->pipe_thread = zmq_socket(zctx, ZMQ_PAIR);
	if (!g->row || !g->pipe_main || !g->pipe_thread ||
	    zmq_setsockopt(g->pipe_thread, ZMQ_SNDHWM, &zero, sizeof zero) ||
	    zmq_setsockopt(g->pipe_main, ZMQ_RCVHWM, &zero, sizeof zero) ||
	    zmq_bind(g->pipe_main, ep) || zmq_connect(g->pipe_thread, ep)) {
		duet_errf(err, "KV ingest: %s", g->row ? zmq_strerror(zmq_errno()) : "out of memory");
		goto fail;
	}
	/* Any of the node's CPUs, not only the main thread's: where a core
	 * is idle, the rows are written while the step runs. */
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	cpu_set_t set;
	CPU_ZERO(&set);
	for (int i = 0; i < n_cpus; i++)
		CPU_SET(cpus[i], &set);
	int rc = n_cpus ? pthread_attr_setaffinity_np(&attr, sizeof set, &set) : 0;
	if (!rc)
		rc = pthread_create(&g->thread, &attr, run, g);
	pthread_attr_destroy(&attr);
	if (rc) {
		duet_errf(err, "KV ingest thread: %s", strerror(rc));
		goto fail;
	}
	g->running = 1;
	*out = g;
	return 0;
fail:
	g->sock = NULL; /* the caller's still */
	kv_ingest_stop(g);
	return -1;
}

void *kv_ingest_events(const struct kv_ingest *g)
{
	return g->pipe_main;
}

int kv_ingest_next(struct kv_ingest *g, struct kv_event *ev)
{
	int n = zmq_recv(g->pipe_main, ev, sizeof *ev, ZMQ_DONTWAIT);
	return n == (int)sizeof *ev;
}

int kv_ingest_expect(struct kv_ingest *g, uint64_t id, struct duet_kv_seq *kv, int n_prompt,
		     struct duet_err *err)
{
	struct slot *s = calloc(1, sizeof *s + sizeof(int) * (size_t)g->n_layers);
	if (!s)
		return duet_errf(err, "out of memory");
	s->id = id;
	s->kv = kv;
	s->n_prompt = n_prompt;
	pthread_mutex_lock(&g->mu);
	int rc = duet_idmap_put(&g->slots, id, s, err);
	pthread_mutex_unlock(&g->mu);
	if (rc)
		free(s);
	return rc;
}

void kv_ingest_forget(struct kv_ingest *g, uint64_t id)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->mu);
	struct slot *s = duet_idmap_get(&g->slots, id);
	if (s)
		take(g, s);
	pthread_mutex_unlock(&g->mu);
}

uint64_t kv_ingest_bytes(const struct kv_ingest *g)
{
	return g ? atomic_load(&((struct kv_ingest *)g)->bytes_in) : 0;
}

void kv_ingest_stop(struct kv_ingest *g)
{
	if (!g)
		return;
	if (g->running) {
		zmq_send(g->pipe_main, "", 0, 0);
		pthread_join(g->thread, NULL);
	} else {
		if (g->pipe_thread)
			zmq_close(g->pipe_thread);
		if (g->sock)
			zmq_close(g->sock);
	}
	if (g->pipe_main)
		zmq_close(g->pipe_main);
	for (size_t i = 0; i < g->slots.cap; i++)
		free(g->slots.slots[i].val);
	duet_idmap_free(&g->slots);
	pthread_mutex_destroy(&g->mu);
	free(g->row);
	free(g);
}
