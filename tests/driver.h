/* A small stand-in for the router, for integration tests and the daemon
 * benchmark: binds the control endpoint, registers nodes, submits work over
 * the real protocol and records every event per request. */
#ifndef DUET_DRIVER_H
#define DUET_DRIVER_H

#include <stdint.h>
#include <sys/types.h>

#include "net/transport.h"

#define DRV_MAX_NODES 8
#define DRV_MAX_REQS 256
#define DRV_MAX_TOKENS 2048

struct drv_node {
	char name[DUET_MAX_NAME + 1];
	Duet__Role role;
	char kv_endpoint[DUET_MAX_ENDPOINT + 1];
	char digest[64];
	int kv_blocks;
	uint64_t reports;
	Duet__LoadReport last; /* scalar fields of the latest report */
	pid_t pid;
};

struct drv_req {
	uint64_t id;
	int tokens[DRV_MAX_TOKENS], n_tokens;
	int finished; /* Finish seen */
	Duet__FinishReason reason;
	int reserved; /* KvReserveReply seen */
	Duet__ErrorCode error;
	char error_msg[256];
	long long t_submit, t_first, t_kv_done, t_finish;
	long long t_tok[DRV_MAX_TOKENS]; /* arrival of each token, by index */
	uint64_t prefill_us, kv_bytes;
	int n_cached;
};

struct drv {
	void *zctx, *sock;
	char dir[256];
	char endpoint[300];
	struct drv_node nodes[DRV_MAX_NODES];
	int n_nodes;
	struct drv_req reqs[DRV_MAX_REQS];
	int n_reqs;
	uint64_t next_id;
};

/* Binds ipc://DIR/router.ipc. */
int drv_open(struct drv *d, const char *dir);
void drv_close(struct drv *d);
/* Starts a daemon: argv[0] the binary, then its flags; --router is added.
 * Its stderr goes to DIR/NAME.log. Returns the pid, or -1. */
pid_t drv_spawn(struct drv *d, const char *name, char *const argv[], char *const env[]);
/* Waits for a node to say hello; returns it or NULL on timeout. */
struct drv_node *drv_wait_node(struct drv *d, const char *name, int timeout_ms);
/* Handles what arrives within timeout_ms. */
void drv_poll(struct drv *d, int timeout_ms);
/* Waits for a new load report from the node. */
int drv_wait_report(struct drv *d, struct drv_node *n, int timeout_ms);
struct drv_node *drv_node(struct drv *d, const char *name);
struct drv_req *drv_req(struct drv *d, uint64_t id);
int drv_send(struct drv *d, const char *node, const Duet__Msg *m);

struct drv_params {
	int max_tokens;
	int ignore_eos;
	float temperature;
	uint64_t seed;
};

/* Disaggregated: reserve on D (waiting for the answer), then work to P.
 * Returns the request id; the request records a refusal in ->error. With
 * p NULL only the reservation is made: no KV ever comes, so D holds the
 * room until the request is cancelled (or its kv-timeout). */
uint64_t drv_submit(struct drv *d, const char *p, const char *dn, const int *tokens, int n,
		    const struct drv_params *pp);
/* Local prefill on D. */
uint64_t drv_submit_local(struct drv *d, const char *dn, const int *tokens, int n,
			  const struct drv_params *pp);
void drv_cancel(struct drv *d, const char *node, uint64_t id);
/* Waits until the request finished or failed; 0 if it did in time. */
int drv_wait(struct drv *d, uint64_t id, int timeout_ms);
/* Sends SIGTERM to every spawned node and waits for them. */
void drv_stop_nodes(struct drv *d);

#endif
