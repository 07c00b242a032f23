#include "driver.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

int drv_open(struct drv *d, const char *dir)
{
	memset(d, 0, sizeof *d);
	snprintf(d->dir, sizeof d->dir, "%s", dir);
	snprintf(d->endpoint, sizeof d->endpoint, "ipc://%s/router.ipc", dir);
	d->next_id = 1;
	d->zctx = zmq_ctx_new();
	struct duet_zsock_opts o = {.router_mandatory = 1};
	struct duet_err err;
	if (duet_zsock(d->zctx, ZMQ_ROUTER, d->endpoint, 1, &o, &d->sock, &err)) {
		fprintf(stderr, "driver: %s\n", err.msg);
		return -1;
	}
	return 0;
}

void drv_stop_nodes(struct drv *d)
{
	for (int i = 0; i < d->n_nodes; i++)
		if (d->nodes[i].pid > 0) {
			kill(d->nodes[i].pid, SIGTERM);
			int st;
			waitpid(d->nodes[i].pid, &st, 0);
			d->nodes[i].pid = 0;
		}
}

void drv_close(struct drv *d)
{
	drv_stop_nodes(d);
	if (d->sock)
		zmq_close(d->sock);
	if (d->zctx)
		zmq_ctx_term(d->zctx);
	d->sock = d->zctx = NULL;
}

pid_t drv_spawn(struct drv *d, const char *name, char *const argv[], char *const env[])
{
	char *args[64];
	int n = 0;
	while (argv[n] && n < 60) {
		args[n] = argv[n];
		n++;
	}
	args[n++] = "--router";
	args[n++] = d->endpoint;
	args[n++] = "--name";
	args[n++] = (char *)name;
	args[n] = NULL;
	char log[400];
	snprintf(log, sizeof log, "%s/%s.log", d->dir, name);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
		if (env)
			for (int i = 0; env[i]; i++)
				putenv(env[i]);
		execv(args[0], args);
		_exit(127);
	}
	if (pid > 0 && d->n_nodes < DRV_MAX_NODES) {
		struct drv_node *nd = &d->nodes[d->n_nodes++];
		memset(nd, 0, sizeof *nd);
		snprintf(nd->name, sizeof nd->name, "%s", name);
		nd->pid = pid;
	}
	return pid;
}

struct drv_node *drv_node(struct drv *d, const char *name)
{
	for (int i = 0; i < d->n_nodes; i++)
		if (strcmp(d->nodes[i].name, name) == 0)
			return &d->nodes[i];
	return NULL;
}

struct drv_req *drv_req(struct drv *d, uint64_t id)
{
	for (int i = 0; i < d->n_reqs; i++)
		if (d->reqs[i].id == id)
			return &d->reqs[i];
	return NULL;
}

int drv_send(struct drv *d, const char *node, const Duet__Msg *m)
{
	struct duet_err err;
	if (duet_zsend(d->sock, node, m, NULL, 0, &err)) {
		fprintf(stderr, "driver: to %s: %s\n", node, err.msg);
		return -1;
	}
	return 0;
}

static void add_token(struct drv_req *r, int index, int token, long long now)
{
	if (index >= 0 && index < DRV_MAX_TOKENS) {
		r->tokens[index] = token;
		r->t_tok[index] = now;
		if (index + 1 > r->n_tokens)
			r->n_tokens = index + 1;
	}
}

static void handle(struct drv *d, const char *peer, const Duet__Msg *m)
{
	struct drv_node *n = drv_node(d, peer);
	long long now = duet_now_us();
	switch (m->body_case) {
	case DUET__MSG__BODY_HELLO: {
		if (!n && d->n_nodes < DRV_MAX_NODES) {
			n = &d->nodes[d->n_nodes++];
			memset(n, 0, sizeof *n);
			snprintf(n->name, sizeof n->name, "%s", peer);
		}
		if (!n)
			return;
		n->role = m->hello->role;
		snprintf(n->kv_endpoint, sizeof n->kv_endpoint, "%s", m->hello->kv_endpoint);
		snprintf(n->digest, sizeof n->digest, "%s", m->hello->model_digest);
		n->kv_blocks = (int)m->hello->kv_blocks;
		Duet__HelloAck a = DUET__HELLO_ACK__INIT;
		a.router = "test-driver";
		Duet__Msg out = duet_wire_msg(DUET__MSG__BODY_HELLO_ACK, &a);
		drv_send(d, peer, &out);
		return;
	}
	case DUET__MSG__BODY_LOAD:
		if (n) {
			n->last = *m->load;
			n->last.n_prefix_hashes = 0;
			n->last.prefix_hashes = NULL;
			n->reports++;
		}
		return;
	default:
		break;
	}
	struct drv_req *r = drv_req(d, duet_wire_event_request(m));
	if (!r)
		return;
	switch (m->body_case) {
	case DUET__MSG__BODY_RESERVE_REPLY: r->reserved = 1; break;
	case DUET__MSG__BODY_FIRST_TOKEN:
		r->t_first = now;
		r->prefill_us = m->first_token->prefill_us;
		r->n_cached = (int)m->first_token->n_cached;
		add_token(r, 0, m->first_token->token, now);
		break;
	case DUET__MSG__BODY_KV_DONE:
		r->t_kv_done = now;
		r->kv_bytes = m->kv_done->bytes;
		break;
	case DUET__MSG__BODY_TOKEN: add_token(r, (int)m->token->index, m->token->token, now); break;
	case DUET__MSG__BODY_FINISH:
		r->finished = 1;
		r->reason = m->finish->reason;
		r->t_finish = now;
		break;
	case DUET__MSG__BODY_ERROR:
		r->error = m->error->code ? m->error->code : DUET__ERROR_CODE__ERR_INTERNAL;
		snprintf(r->error_msg, sizeof r->error_msg, "%s", m->error->message);
		break;
	default: break;
	}
}

void drv_poll(struct drv *d, int timeout_ms)
{
	long long end = duet_now_us() + (long long)timeout_ms * 1000;
	for (;;) {
		long long left = (end - duet_now_us()) / 1000;
		zmq_pollitem_t it = {d->sock, 0, ZMQ_POLLIN, 0};
		if (zmq_poll(&it, 1, left > 0 ? (long)left : 0) <= 0)
			return;
		struct duet_inmsg in;
		struct duet_err err;
		int rc;
		while ((rc = duet_zrecv(d->sock, 1, &in, &err)) != 0) {
			if (rc < 0) {
				fprintf(stderr, "driver: bad message: %s\n", err.msg);
				duet_inmsg_close(&in);
				continue;
			}
			handle(d, in.peer, in.m);
			duet_inmsg_close(&in);
		}
		if (duet_now_us() >= end)
			return;
	}
}

struct drv_node *drv_wait_node(struct drv *d, const char *name, int timeout_ms)
{
	long long end = duet_now_us() + (long long)timeout_ms * 1000;
	while (duet_now_us() < end) {
		struct drv_node *n = drv_node(d, name);
		if (n && n->digest[0] && n->reports > 0)
			return n;
		drv_poll(d, 20);
	}
	return NULL;
}

int drv_wait_report(struct drv *d, struct drv_node *n, int timeout_ms)
{
	uint64_t seen = n->reports;
	long long end = duet_now_us() + (long long)timeout_ms * 1000;
	while (duet_now_us() < end && n->reports == seen)
		drv_poll(d, 10);
	return n->reports > seen ? 0 : -1;
}

static struct drv_req *new_req(struct drv *d)
{
	if (d->n_reqs == DRV_MAX_REQS)
		return NULL;
	struct drv_req *r = &d->reqs[d->n_reqs++];
	memset(r, 0, sizeof *r);
	r->id = d->next_id++;
	r->t_submit = duet_now_us();
	return r;
}

static Duet__Sampling sampling(const struct drv_params *pp)
{
	Duet__Sampling s = DUET__SAMPLING__INIT;
	s.temperature = pp->temperature;
	s.top_p = 1;
	s.seed = pp->seed;
	return s;
}

uint64_t drv_submit(struct drv *d, const char *p, const char *dn, const int *tokens, int n,
		    const struct drv_params *pp)
{
	struct drv_node *dnode = drv_node(d, dn);
	struct drv_req *r = new_req(d);
	if (!r || !dnode)
		return 0;
	Duet__Sampling s = sampling(pp);
	Duet__KvReserve res = DUET__KV_RESERVE__INIT;
	res.request_id = r->id;
	res.n_prompt = (uint32_t)n;
	res.max_tokens = (uint32_t)pp->max_tokens;
	res.sampling = &s;
	res.ignore_eos = pp->ignore_eos;
	res.n_sampled = 1;
	res.n_tokens = (size_t)n; /* as the router does: for the decode node's cache */
	res.tokens = (int32_t *)tokens;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_RESERVE, &res);
	uint64_t id = r->id;
	drv_send(d, dn, &m);
	long long end = duet_now_us() + 10000000;
	while (!r->reserved && !r->error && duet_now_us() < end)
		drv_poll(d, 5);
	if (!r->reserved || !p)
		return id;
	Duet__PrefillWork w = DUET__PREFILL_WORK__INIT;
	w.request_id = id;
	w.n_tokens = (size_t)n;
	w.tokens = (int32_t *)tokens;
	w.sampling = &s;
	w.decode_node = (char *)dn;
	w.decode_endpoint = dnode->kv_endpoint;
	w.decode_digest = dnode->digest;
	m = duet_wire_msg(DUET__MSG__BODY_PREFILL, &w);
	drv_send(d, p, &m);
	return id;
}

uint64_t drv_submit_local(struct drv *d, const char *dn, const int *tokens, int n,
			  const struct drv_params *pp)
{
	struct drv_req *r = new_req(d);
	if (!r)
		return 0;
	Duet__Sampling s = sampling(pp);
	Duet__LocalWork w = DUET__LOCAL_WORK__INIT;
	w.request_id = r->id;
	w.n_tokens = (size_t)n;
	w.tokens = (int32_t *)tokens;
	w.max_tokens = (uint32_t)pp->max_tokens;
	w.sampling = &s;
	w.ignore_eos = pp->ignore_eos;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_LOCAL, &w);
	drv_send(d, dn, &m);
	return r->id;
}

void drv_cancel(struct drv *d, const char *node, uint64_t id)
{
	Duet__Cancel c = DUET__CANCEL__INIT;
	c.request_id = id;
	Duet__Msg m = duet_wire_msg(DUET__MSG__BODY_CANCEL, &c);
	drv_send(d, node, &m);
}

int drv_wait(struct drv *d, uint64_t id, int timeout_ms)
{
	long long end = duet_now_us() + (long long)timeout_ms * 1000;
	struct drv_req *r = drv_req(d, id);
	if (!r)
		return -1;
	while (!r->finished && !r->error && duet_now_us() < end)
		drv_poll(d, 10);
	return r->finished || r->error ? 0 : -1;
}
