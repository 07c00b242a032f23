/* Placement: which decode node holds the request, and whether a prefill
 * node computes its prompt (disaggregated) or the decode node does
 * (local). See DESIGN.md, Placement. */
#include <stdlib.h>
#include <string.h>

#include "base/grow.h"
#include "node/prefix_cache.h"
#include "router.h"

/* Tokens a request can hold at most on a node of this context. */
static long need_tokens(const struct router *r, const struct rreq *q)
{
	long n = (long)q->n_prompt + q->max_tokens;
	return n > r->model->cfg.ctx_len ? r->model->cfg.ctx_len : n;
}

static long room(const struct router_node *n)
{
	return (long)n->kv_free * n->block_tokens - n->reserved_tokens;
}

static int load_of(const struct router_node *n)
{
	return n->running + n->local_prefill + n->waiting_kv + n->inflight;
}

static int pick_decode(struct router *r, const struct rreq *q)
{
	int cand[ROUTER_MAX_NODES], nc = 0;
	long need = need_tokens(r, q);
	for (int i = 0; i < r->n_nodes; i++)
		if (router_node_usable(&r->nodes[i], DUET__ROLE__ROLE_DECODE) && room(&r->nodes[i]) >= need)
			cand[nc++] = i;
	if (!nc)
		return -1;
	if (r->policy == ROUTER_POLICY_ROUND_ROBIN)
		return cand[r->rr % (unsigned)nc];
	/* Fewest sequences (a step's cost grows with them), then the most
	 * free KV. */
	int best = cand[0];
	for (int k = 1; k < nc; k++) {
		struct router_node *n = &r->nodes[cand[k]], *b = &r->nodes[best];
		if (load_of(n) < load_of(b) || (load_of(n) == load_of(b) && room(n) > room(b)))
			best = cand[k];
	}
	return best;
}

/* Prompt tokens/s of a prefill node: measured, or a guess until its first
 * report with a measurement. */
#define UNMEASURED_PREFILL_TPS 1000.0

static double node_rate(const struct router_node *n)
{
	return n->prefill_tps > 1 ? n->prefill_tps : UNMEASURED_PREFILL_TPS;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int router_node_set_prefix(struct router_node *n, const uint64_t *hashes, size_t count,
			   struct duet_err *err)
{
	if (count > ROUTER_PREFIX_HASHES)
		count = ROUTER_PREFIX_HASHES; /* the most recently used come first */
	uint64_t *h = duet_grow(n->hashes, &n->cap_hashes, (int)count, sizeof *h, 256);
	if (!h) {
		n->n_hashes = 0;
		return duet_errf(err, "out of memory for %zu prefix hashes", count);
	}
	n->hashes = h;
	if (count)
		memcpy(h, hashes, sizeof *h * count);
	qsort(h, count, sizeof *h, cmp_u64);
	n->n_hashes = (int)count;
	return 0;
}

void router_node_learn_prefix(struct router_node *n, const int *tokens, int n_tokens)
{
	int bt = n->block_tokens, add = bt > 0 ? n_tokens / bt : 0;
	if (add > ROUTER_PREFIX_HASHES)
		add = ROUTER_PREFIX_HASHES;
	int keep = n->n_hashes < ROUTER_PREFIX_HASHES - add ? n->n_hashes
							     : ROUTER_PREFIX_HASHES - add;
	uint64_t *h = duet_grow(n->hashes, &n->cap_hashes, keep + add, sizeof *h, 256);
	if (!h)
		return; /* a guess only: the next report brings the truth */
	n->hashes = h;
	uint64_t c = DUET_PREFIX_SEED;
	for (int k = 0; k < add; k++) {
		c = duet_prefix_chain(c, tokens + (size_t)k * (size_t)bt, bt);
		h[keep + k] = c;
	}
	/* (Dropping the largest hashes to make room is as good a guess as
	 * any: the report says which the node really keeps.) */
	qsort(h, (size_t)(keep + add), sizeof *h, cmp_u64);
	n->n_hashes = keep + add;
}

void router_node_free(struct router_node *n)
{
	free(n->hashes);
	n->hashes = NULL;
	n->n_hashes = n->cap_hashes = 0;
}

/* Prompt tokens node n (prefill or decode) holds in its prefix cache
 * (whole blocks, by the chain hashes of its last load report and those
 * learned since). */
static int cached_tokens(const struct router_node *n, const struct rreq *q)
{
	int bt = n->block_tokens, k = 0;
	uint64_t h = DUET_PREFIX_SEED;
	if (bt < 1 || !n->n_hashes)
		return 0;
	/* The node computes at least the last token itself. */
	for (; (k + 1) * bt <= q->n_prompt - 1; k++) {
		h = duet_prefix_chain(h, q->prompt + (size_t)k * (size_t)bt, bt);
		if (!bsearch(&h, n->hashes, (size_t)n->n_hashes, sizeof h, cmp_u64))
			break;
	}
	return k * bt;
}

/* Predicted seconds until this prompt's first token on prefill node n:
 * its queue plus the part of this prompt it has not cached (*uncached),
 * at its measured rate. */
static double prefill_ttft(const struct router_node *n, const struct rreq *q, int *uncached)
{
	*uncached = q->n_prompt - cached_tokens(n, q);
	return ((double)n->queued_tokens + *uncached) / node_rate(n);
}

/* The prefill node for q, its predicted TTFT and the prompt tokens it
 * would compute (each candidate's prompt hashing done once). */
static int pick_prefill(struct router *r, const struct rreq *q, double *ttft, int *uncached)
{
	int cand[ROUTER_MAX_NODES], nc = 0;
	for (int i = 0; i < r->n_nodes; i++)
		if (router_node_usable(&r->nodes[i], DUET__ROLE__ROLE_PREFILL))
			cand[nc++] = i;
	if (!nc)
		return -1;
	if (r->policy == ROUTER_POLICY_ROUND_ROBIN) {
		int p = cand[r->rr % (unsigned)nc];
		*ttft = prefill_ttft(&r->nodes[p], q, uncached);
		return p;
	}
	int best = -1;
	for (int k = 0; k < nc; k++) {
		int u;
		double t = prefill_ttft(&r->nodes[cand[k]], q, &u);
		if (best < 0 || t < *ttft) {
			best = cand[k];
			*ttft = t;
			*uncached = u;
		}
	}
	return best;
}

int router_place(struct router *r, struct rreq *q, struct router_placement *out,
		 struct duet_err *err)
{
	out->pnode = -1;
	out->uncached = 0;
	out->dnode = pick_decode(r, q);
	if (out->dnode < 0)
		return duet_errf(err, "no decode node has room for %d prompt and %d new tokens",
				 q->n_prompt, q->max_tokens);
	if (r->policy == ROUTER_POLICY_COLOCATED) {
		out->reason = "colocated policy";
		return 0;
	}
	double ttft = 0;
	int uncached = 0;
	int p = pick_prefill(r, q, &ttft, &uncached);
	if (p < 0) {
		out->reason = "no prefill node";
		return 0;
	}
	if (r->policy == ROUTER_POLICY_LENGTH_AWARE) {
		/* What the decode node must compute of the prompt: its prefix
		 * cache may hold the rest (a prompt seen before, a chat's
		 * earlier turns), and then nothing need be sent either. */
		const struct router_node *dn = &r->nodes[out->dnode];
		int local_tokens = q->n_prompt - cached_tokens(dn, q);
		/* A short prompt costs the decode node's batch little, and
		 * skips a KV transfer. */
		if (local_tokens <= r->cfg.local_max_prompt) {
			out->reason = local_tokens < q->n_prompt ? "cached on the decode node"
								  : "short prompt";
			return 0;
		}
		/* Prefilling locally stalls every running stream on the
		 * decode node for the prompt's time; it only pays when all
		 * prefill nodes are queued that much deeper. */
		double local = (double)local_tokens / node_rate(&r->nodes[p]) *
			       (1 + dn->running + dn->local_prefill);
		if (local < ttft) {
			out->reason = "prefill nodes queued deeper than a local prefill costs";
			return 0;
		}
	}
	out->pnode = p;
	out->uncached = uncached;
	out->reason = "disaggregated";
	return 0;
}
