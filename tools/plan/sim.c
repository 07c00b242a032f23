/* The discrete-event simulator of `duet plan` (sim.h says what it models).
 * Time is in seconds from the trace's start; one event heap orders
 * arrivals, messages, forward passes ending and load reports, ties broken
 * by the order events were made, so a run is a pure function of its
 * inputs and seed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/grow.h"
#include "base/sort.h"
#include "engine/model.h"
#include "node/chunk.h"
#include "node/prefix_cache.h"
#include "plan/sim.h"

enum ev_type {
	EV_ARRIVE,	/* a request reaches the router */
	EV_RESERVE,	/* KvReserve reaches the decode node */
	EV_WORK,	/* PrefillWork reaches the prefill node */
	EV_LOCAL,	/* LocalWork reaches the decode node */
	EV_PASS_DONE,	/* a node's forward pass ends */
	EV_KV,		/* a prompt's KV has reached its decode node */
	EV_REPORT,	/* a node's load report reaches the router */
	EV_QUEUE_TIMEOUT, /* a request has waited queue-timeout-ms for room */
};

struct ev {
	double t;
	uint64_t order;
	int type, a; /* a: request or node */
	unsigned gen; /* EV_PASS_DONE: the node's pass it ends (snode.pass_gen) */
};

enum sreq_state { SQ_QUEUED, SQ_PREFILL, SQ_WAIT_KV, SQ_INGEST, SQ_LOCAL,
		  SQ_RUNNING, SQ_DONE };

struct sreq {
	/* what the router sees, from arrival to the end (pooled: a day of
	 * requests is not a day of these at once) */
	struct rreq *q;
	enum sreq_state st;
	int prefilled;	/* prompt tokens computed (or found cached) */
	int started;	/* a prefill node has taken its cached prefix */
	int queued;	/* in the router's wait queue */
	int n_gen;	/* tokens produced */
	int blocks;	/* KV blocks held on the decode node */
	int step_rows;	/* rows in the current pass */
	double pass_start; /* prefill: when its first chunk began */
	double *tok;	/* keep_tokens: every token's time (res->tok_s) */
	int cap_tok;
	double last_tok;
	double *gaps; /* keep_tokens 0: this request's gaps, for its p99 */
	int n_gaps, cap_gaps;
};

struct snode {
	int decode; /* role */
	const struct plan_profile *p;
	int busy;   /* a pass is running */
	int *reqs;  /* requests on the node, in arrival order */
	int n_reqs, cap_reqs;
	int *batch; /* requests in the running pass */
	int n_batch, cap_batch;
	/* decode: requests whose KvReserve came during a pass; the node
	 * answers at the pass's end, wherever a machine-mate moves it */
	int *replies;
	int n_replies, cap_replies;
	long pass_tokens;
	double pass_t0, pass_end;
	/* machine_nodes: what is left of the pass in seconds alone as of
	 * work_t, its speed (1 alone), how much slower it runs beside a
	 * neighbour's decode loop (its two models' ratio) and the share of
	 * it that reads memory (how hard it presses on its neighbours, as
	 * a share of a decode step of one sequence's) */
	double work_s, work_t, speed, beside, press;
	double press_ref; /* that share for its profile's decode step of one sequence */
	unsigned pass_gen; /* the pass end last pushed */
	int blocks_free, blocks_total;
	double rate;	/* prefill: tokens/s, as the node averages it */
	double step_ms; /* decode: as the node averages it */
	unsigned steps;
	/* prefix_cache: the node's blocks and its prefix cache, the
	 * daemons' own code over a pool with no KV data (NULL: off) */
	struct duet_kv_pool *pool;
	struct duet_prefix_cache *cache;
	double link_free; /* prefill: its link is busy until */
	double ingest_s;  /* decode: KV to write before the next pass */
	uint64_t report_seq;
	double phase;	  /* its reports come at phase + k * report-ms */
	int report_armed; /* a report is in the heap */
	int dirty;	  /* changed since its last report */
	uint64_t rng;	  /* its passes' draws from the step spread */
};

/* prefix_cache: a request's blocks on its decode and prefill node */
struct sim_kv {
	struct duet_kv_seq d, p;
	int dnode, pnode; /* where d and p hold blocks, -1: none */
};

struct sim {
	const struct sim_cfg *c;
	struct router *r;
	struct duet_model model;
	struct ev *heap;
	int n_heap, cap_heap;
	uint64_t order;
	const struct trace *t;
	const struct synth *syn;
	struct sreq *rq;
	int n_rq;
	struct sim_kv *kv;  /* per request; NULL without prefix caches */
	uint64_t *hashes;   /* a load report's prefix summary */
	/* a load report's lists of streams and local prefills */
	uint32_t tokens_left[DUET_REPORT_MAX_STREAMS];
	uint32_t local_prompt[DUET_REPORT_MAX_STREAMS], local_left[DUET_REPORT_MAX_STREAMS];
	struct rreq **spare; /* the pool of rreqs no request holds */
	int n_spare, cap_spare;
	struct snode *nodes;
	int n_nodes;
	int *waitq; /* requests no decode node had room for, FIFO */
	int n_waitq, cap_waitq;
	double now;
	struct replay_result *res;
	struct sim_req *out;
	struct sim_stats *st;
	int failed; /* out of memory: stop */
	int left;   /* requests not ended */
};

/* A pass of this shape on node n: the profile's model, times a draw from
 * its step spread when the configuration asks for one (each node its own
 * stream, so one node's passes do not move another's draws). */
static double pass_ms(const struct sim *s, struct snode *n, double positions, double pairs)
{
	double ms = plan_profile_step_ms(n->p, n->n_batch, n->pass_tokens, positions, pairs);
	if (!s->c->step_spread || !n->p->has_spread)
		return ms;
	n->rng ^= n->rng << 13, n->rng ^= n->rng >> 7, n->rng ^= n->rng << 17;
	return ms * plan_profile_jitter(n->p, (double)(n->rng >> 11) / 9007199254740992.0);
}

/* ---- machines: nodes that share memory ---- */

/* The positions of a decode loop of one sequence over 256 tokens from an
 * empty context on average (what a profile's beside model is measured
 * beside: bench/validate_plan.sh) */
#define DECODE_LOOP_POSITIONS 128

static int shares_machine(const struct sim *s)
{
	return s->c->machine_nodes > 1;
}

/* The nodes of node ni's machine: [*first, *last) */
static void machine_of(const struct sim *s, int ni, int *first, int *last)
{
	int m = s->c->machine_nodes;
	*first = ni / m * m;
	*last = *first + m < s->n_nodes ? *first + m : s->n_nodes;
}

/* A pass's speed while its machine-mates' passes press on it: their
 * pressures summed, and at a pressure of 1 (one neighbour's decode loop)
 * the beside model's time. */
static double speed_of(const struct sim *s, int ni)
{
	int first, last;
	machine_of(s, ni, &first, &last);
	double press = 0;
	for (int k = first; k < last; k++)
		if (k != ni && s->nodes[k].busy)
			press += s->nodes[k].press;
	return 1 / (1 + press * (s->nodes[ni].beside - 1));
}

/* Node ni's machine changed (a pass began or ended at s->now): every pass
 * on it runs on at its new speed, its end moved where that puts it. */
static void push_pass_end(struct sim *s, int ni);

static void machine_changed(struct sim *s, int ni)
{
	int first, last;
	machine_of(s, ni, &first, &last);
	for (int k = first; k < last; k++) {
		struct snode *n = &s->nodes[k];
		if (!n->busy)
			continue;
		n->work_s -= (s->now - n->work_t) * n->speed;
		n->work_t = s->now;
		n->speed = speed_of(s, k);
		double end = s->now + (n->work_s > 0 ? n->work_s : 0) / n->speed;
		if (end != n->pass_end) {
			n->pass_end = end;
			push_pass_end(s, k);
		}
	}
}

/* Node ni's pass (of this shape) begins now and ends at `end` alone. */
static void begin_pass(struct sim *s, int ni, double end, double ingest, double positions,
		       double pairs)
{
	struct snode *n = &s->nodes[ni];
	n->busy = 1;
	n->pass_t0 = s->now;
	if (!shares_machine(s)) {
		n->pass_end = end;
		push_pass_end(s, ni);
		return;
	}
	const struct plan_profile *p = n->p;
	double alone = plan_profile_step_ms(p, n->n_batch, n->pass_tokens, positions, pairs);
	n->beside = alone > 0 ? plan_profile_beside_ms(p, n->n_batch, n->pass_tokens, positions,
						       pairs) / alone
			      : 1;
	/* KV written into the cache is all memory; a pass of no sequence is
	 * only that */
	double mem = plan_profile_memory_share(p, n->n_batch, n->pass_tokens, positions, pairs);
	double in_ms = ingest * 1e3, ms = n->n_batch ? alone : 0;
	n->press = n->press_ref > 0 && in_ms + ms > 0
			   ? (in_ms + mem * ms) / (in_ms + ms) / n->press_ref
			   : 0;
	n->work_s = end - s->now;
	n->work_t = s->now;
	n->speed = 1;
	n->pass_end = -1; /* pushed by machine_changed */
	machine_changed(s, ni);
}

/* Node ni's pass has ended: its machine-mates run on without it. */
static void pass_over(struct sim *s, int ni)
{
	s->nodes[ni].busy = 0;
	if (shares_machine(s))
		machine_changed(s, ni);
}

/* Whether e is the end of node e->a's pass as it now stands (a pass whose
 * machine changed has had its end moved). */
static int pass_done_now(const struct sim *s, const struct ev *e)
{
	return e->gen == s->nodes[e->a].pass_gen;
}

/* ---- the event heap ---- */

static int ev_before(const struct ev *x, const struct ev *y)
{
	return x->t < y->t || (x->t == y->t && x->order < y->order);
}

static void push_ordered(struct sim *s, double t, int type, int a, uint64_t order, unsigned gen)
{
	struct ev *h = duet_grow(s->heap, &s->cap_heap, s->n_heap + 1, sizeof *h, 1024);
	if (!h) {
		s->failed = 1;
		return;
	}
	s->heap = h;
	int i = s->n_heap++;
	struct ev e = {t, order, type, a, gen};
	while (i > 0 && ev_before(&e, &h[(i - 1) / 2])) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = e;
}

static void push(struct sim *s, double t, int type, int a)
{
	push_ordered(s, t, type, a, s->order++, 0);
}

/* The end of node ni's pass, where it now stands: an end pushed before
 * (its machine changed since) is stale. */
static void push_pass_end(struct sim *s, int ni)
{
	struct snode *n = &s->nodes[ni];
	push_ordered(s, n->pass_end, EV_PASS_DONE, ni, s->order++, ++n->pass_gen);
}

/* Arrivals enter the heap one at a time (the trace is in time order), so
 * the heap holds what is in flight, not a day of requests; each keeps the
 * tie-breaking order it would have had pushed up front. */
static void push_arrival(struct sim *s, int from)
{
	for (int i = from; i < s->n_rq; i++)
		if (s->rq[i].st != SQ_DONE) {
			push_ordered(s, s->res[i].sent_s + s->c->client_ms / 1e3, EV_ARRIVE, i,
				     (uint64_t)(s->n_nodes + i), 0);
			return;
		}
}

static struct ev pop(struct sim *s)
{
	struct ev *h = s->heap, top = h[0], last = h[--s->n_heap];
	int i = 0;
	for (;;) {
		int c = 2 * i + 1;
		if (c >= s->n_heap)
			break;
		if (c + 1 < s->n_heap && ev_before(&h[c + 1], &h[c]))
			c++;
		if (!ev_before(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (s->n_heap)
		h[i] = last;
	return top;
}

static int add_int(struct sim *s, int **l, int *n, int *cap, int v)
{
	int *nl = duet_grow(*l, cap, *n + 1, sizeof *nl, 16);
	if (!nl)
		return s->failed = 1, -1;
	*l = nl;
	nl[(*n)++] = v;
	return 0;
}

static void del_int(int *l, int *n, int v)
{
	for (int i = 0; i < *n; i++)
		if (l[i] == v) {
			memmove(&l[i], &l[i + 1], sizeof *l * (size_t)(*n - i - 1));
			(*n)--;
			return;
		}
}

static int add_ptr(struct sim *s, struct rreq *r)
{
	struct rreq **l = duet_grow(s->spare, &s->cap_spare, s->n_spare + 1, sizeof *l, 64);
	if (!l)
		return s->failed = 1, -1;
	s->spare = l;
	l[s->n_spare++] = r;
	return 0;
}

static double link_latency(const struct sim *s)
{
	return s->c->decode->link_latency_ms / 1e3;
}

/* ---- requests: the router's view of one in flight ---- */

/* Request i reaches the router: its rreq from the pool, its prompt made
 * (the prefix hashes placement reads). -1 when out of memory. */
static int acquire(struct sim *s, int i)
{
	struct sreq *q = &s->rq[i];
	const struct trace_req *tr = &s->t->req[i];
	struct rreq *r = s->n_spare ? s->spare[--s->n_spare] : calloc(1, sizeof *r);
	if (!r)
		return s->failed = 1, -1;
	r->id = (uint64_t)i + 1;
	r->n_prompt = tr->prompt_tokens;
	r->max_tokens = tr->output_tokens;
	r->pnode = r->dnode = -1;
	r->prompt = malloc(sizeof(int) * (size_t)tr->prompt_tokens);
	q->q = r;
	if (!r->prompt)
		return s->failed = 1, -1;
	synth_prompt(s->syn, tr, i, r->prompt);
	return 0;
}

/* Request q has ended: its rreq back to the pool. */
static void release(struct sim *s, struct sreq *q)
{
	if (!q->q)
		return;
	free(q->q->prompt);
	memset(q->q, 0, sizeof *q->q);
	if (add_ptr(s, q->q))
		free(q->q);
	q->q = NULL;
}

/* ---- requests: blocks in the nodes' pools (prefix caches on) ---- */

/* seq's blocks back to the pool of node *ni (-1: none held), the prefix
 * cache keeping its own references. */
static void drop_seq(struct sim *s, struct duet_kv_seq *seq, int *ni)
{
	if (*ni < 0)
		return;
	duet_kv_seq_release(s->nodes[*ni].pool, seq);
	duet_kv_seq_init(seq);
	*ni = -1;
}

/* Request i's blocks on both its nodes. */
static void drop_kv(struct sim *s, int i)
{
	if (!s->kv)
		return;
	drop_seq(s, &s->kv[i].d, &s->kv[i].dnode);
	drop_seq(s, &s->kv[i].p, &s->kv[i].pnode);
}

/* Request i's prompt is whole in node ni's blocks: its cache may keep
 * them (decode_cache_prompt, prefill-node/queue.c). */
static void cache_prompt(struct sim *s, int ni, int i)
{
	struct snode *n = &s->nodes[ni];
	const struct rreq *q = s->rq[i].q;
	if (n->cache)
		duet_prefix_insert(n->cache, n->decode ? &s->kv[i].d : &s->kv[i].p, q->prompt,
				   q->n_prompt);
}

/* ---- requests: tokens and the end ---- */

/* A token of request i leaves its node at time t. */
static void token(struct sim *s, int i, double t)
{
	struct sreq *q = &s->rq[i];
	struct replay_result *res = &s->res[i];
	double at = t + link_latency(s) + s->c->client_ms / 1e3;
	if (s->c->keep_tokens) {
		/* room for every token the request will have, at once */
		double *nt = duet_grow(q->tok, &q->cap_tok, res->n_tok + 1, sizeof *nt,
				       q->q->max_tokens > 0 ? q->q->max_tokens : 1);
		if (!nt) {
			s->failed = 1;
			return;
		}
		q->tok = res->tok_s = nt;
		nt[res->n_tok] = at;
	} else if (res->n_tok == 0) {
		s->out[i].ttft_s = at - res->sent_s;
	} else {
		double *g = duet_grow(q->gaps, &q->cap_gaps, q->n_gaps + 1, sizeof *g, 64);
		if (!g) {
			s->failed = 1;
			return;
		}
		q->gaps = g;
		g[q->n_gaps++] = at - q->last_tok;
	}
	q->last_tok = at;
	res->n_tok++;
	q->n_gen++;
}

static void try_waitq(struct sim *s);

/* Request i produced its last token on decode node d. */
static void finish(struct sim *s, int i, int d)
{
	struct sreq *q = &s->rq[i];
	struct snode *n = &s->nodes[d];
	struct replay_result *res = &s->res[i];
	n->blocks_free += q->blocks;
	q->blocks = 0;
	drop_kv(s, i);
	del_int(n->reqs, &n->n_reqs, i);
	q->st = SQ_DONE;
	s->left--;
	res->status = RS_OK;
	res->done_s = q->last_tok;
	if (!s->c->keep_tokens) {
		s->out[i].tbt_p99_s = duet_percentile_f64(q->gaps, (size_t)q->n_gaps, 99);
		free(q->gaps);
		q->gaps = NULL;
		q->n_gaps = q->cap_gaps = 0;
	}
	router_placement_end(s->r, q->q);
	release(s, q);
	try_waitq(s);
}

static void fail(struct sim *s, int i, const char *kind)
{
	struct replay_result *res = &s->res[i];
	s->rq[i].st = SQ_DONE;
	s->left--;
	res->status = RS_FAILED;
	snprintf(res->kind, sizeof res->kind, "%s", kind);
	res->done_s = s->now;
	drop_kv(s, i);
	release(s, &s->rq[i]);
}

/* ---- nodes ---- */

static int blocks_for(const struct plan_profile *p, long tokens)
{
	return (int)((tokens + p->block_tokens - 1) / p->block_tokens);
}

static void start_pass(struct sim *s, int ni);

/* Node ni changed: its next report must tell. An idle node whose last
 * report still holds sends none (the router's view of it would not
 * change), so a day of a thousand nodes is not a billion reports. */
static void touch(struct sim *s, int ni)
{
	struct snode *n = &s->nodes[ni];
	n->dirty = 1;
	if (n->report_armed)
		return;
	double period = s->c->report_ms / 1e3;
	double k = ceil((s->now - n->phase) / period);
	double t = n->phase + (k > 0 ? k : 0) * period;
	if (t <= s->now)
		t += period;
	n->report_armed = 1;
	push(s, t, EV_REPORT, ni);
}

static void kick(struct sim *s, int ni)
{
	if (!s->nodes[ni].busy)
		start_pass(s, ni);
}

/* Request i's next prompt chunk joins node n's pass, within *budget
 * tokens; the pass's positions and chunk pairs grow by it. */
static int take_chunk(struct sim *s, struct snode *n, int i, long *budget, double *positions,
		      double *pairs)
{
	struct sreq *q = &s->rq[i];
	int left = q->q->n_prompt - q->prefilled, take = left < *budget ? left : (int)*budget;
	*budget -= take;
	q->step_rows = take;
	*positions += q->prefilled + take;
	*pairs += (double)take * q->prefilled;
	return add_int(s, &n->batch, &n->n_batch, &n->cap_batch, i);
}

/* Request i's prompt starts on prefill node ni, past the blocks its cache
 * holds (prefill-node/queue.c start). A node short of room computes anyway
 * where the daemon would wait for room: a prefill node's profile gives it
 * room for its batches. */
static int prefill_start(struct sim *s, int ni, int i)
{
	struct sreq *q = &s->rq[i];
	struct snode *n = &s->nodes[ni];
	q->started = 1;
	q->pass_start = s->now;
	if (!n->cache)
		return 0;
	struct sim_kv *k = &s->kv[i];
	struct duet_err err;
	int cached = duet_prefix_attach(n->cache, &k->p, q->q->prompt, q->q->n_prompt - 1, &err);
	if (cached < 0)
		return s->failed = 1, -1;
	k->pnode = ni;
	q->prefilled = cached;
	int need = duet_kv_blocks_for(&n->pool->g, q->q->n_prompt) - k->p.n_blocks;
	if (duet_prefix_make_room(n->cache, need) >= need)
		duet_kv_seq_reserve(n->pool, &k->p, q->q->n_prompt, &err);
	return 0;
}

/* A prefill node's next batch: its FIFO queue, chunks up to
 * max-batch-tokens, at most max-batch-seqs prompts (prefill-node/queue.c). */
static void start_prefill(struct sim *s, int ni)
{
	struct snode *n = &s->nodes[ni];
	const struct plan_profile *p = n->p;
	long budget = p->max_batch_tokens;
	double positions = 0, pairs = 0;
	n->n_batch = 0;
	for (int k = 0; k < n->n_reqs && budget > 0 && n->n_batch < p->max_batch_seqs; k++) {
		int i = n->reqs[k];
		if (!s->rq[i].started && prefill_start(s, ni, i))
			return;
		if (take_chunk(s, n, i, &budget, &positions, &pairs))
			return;
	}
	if (!n->n_batch)
		return;
	n->pass_tokens = p->max_batch_tokens - budget;
	double ms = pass_ms(s, n, positions, pairs);
	begin_pass(s, ni, s->now + ms / 1e3, 0, positions, pairs);
}

/* The prompt tokens a decode node lets a step carry beside its n_batch
 * running sequences (decode-node/step_model.c, decode_chunk_budget): as
 * many as keep the predicted step within the router's TBT objective, at
 * least one, a token costing its attention over the prompt before it too.
 * The node predicts from the model it fits to its steps; here the
 * profile. */
static long decode_budget(const struct sim *s, const struct snode *n, double positions)
{
	const struct plan_profile *p = n->p;
	int first = -1;
	for (int k = 0; k < n->n_reqs && first < 0; k++)
		if (s->rq[n->reqs[k]].st == SQ_LOCAL)
			first = n->reqs[k];
	if (!n->n_batch || s->c->slo_tbt_ms <= 0 || first < 0)
		return p->max_batch_tokens;
	double at = positions + s->rq[first].prefilled;
	double base = plan_profile_step_ms(p, n->n_batch + 1, 0, at, 0);
	return duet_chunk_within(p->max_batch_tokens, s->c->slo_tbt_ms, base,
				 plan_profile_step_ms(p, n->n_batch + 1, 1, at + 1,
						      s->rq[first].prefilled) -
					 base);
}

/* A decode node's next step: every running sequence, then local prefill
 * chunks oldest first up to its budget (decode-node/step.c); KV received
 * since the last step is written first. */
static void start_decode(struct sim *s, int ni)
{
	struct snode *n = &s->nodes[ni];
	double positions = 0, pairs = 0, ingest = n->ingest_s;
	n->ingest_s = 0;
	n->n_batch = 0;
	for (int k = 0; k < n->n_reqs; k++) {
		int i = n->reqs[k];
		struct sreq *q = &s->rq[i];
		if (q->st == SQ_INGEST) {
			q->st = SQ_RUNNING; /* written by this step's ingest */
			cache_prompt(s, ni, i);
			if (q->n_gen == 0) /* first-token decode: it leaves now */
				token(s, i, s->now + ingest);
		}
		if (q->st != SQ_RUNNING)
			continue;
		q->step_rows = 1;
		positions += q->q->n_prompt + q->n_gen;
		if (add_int(s, &n->batch, &n->n_batch, &n->cap_batch, i))
			return;
	}
	long budget0 = decode_budget(s, n, positions), budget = budget0;
	for (int k = 0; k < n->n_reqs && budget > 0; k++) {
		int i = n->reqs[k];
		if (s->rq[i].st == SQ_LOCAL && take_chunk(s, n, i, &budget, &positions, &pairs))
			return;
	}
	if (!n->n_batch && ingest <= 0)
		return;
	n->pass_tokens = budget0 - budget;
	double ms = n->n_batch ? pass_ms(s, n, positions, pairs) : 0;
	if (n->n_batch) {
		n->step_ms = n->step_ms == 0 ? ms : 0.9 * n->step_ms + 0.1 * ms;
		n->steps++;
		s->st->steps++;
	}
	begin_pass(s, ni, s->now + ingest + ms / 1e3, ingest, positions, pairs);
}

static void start_pass(struct sim *s, int ni)
{
	if (s->nodes[ni].decode)
		start_decode(s, ni);
	else
		start_prefill(s, ni);
}

static void prefill_done(struct sim *s, int ni)
{
	struct snode *n = &s->nodes[ni];
	double dt = s->now - n->pass_t0;
	double rate = (double)n->pass_tokens / (dt + 1e-9);
	n->rate = n->rate == 0 ? rate : 0.8 * n->rate + 0.2 * rate;
	for (int k = 0; k < n->n_batch; k++) {
		int i = n->batch[k];
		struct sreq *q = &s->rq[i];
		q->prefilled += q->step_rows;
		if (q->prefilled < q->q->n_prompt)
			continue;
		del_int(n->reqs, &n->n_reqs, i);
		cache_prompt(s, ni, i);
		if (n->cache)
			drop_seq(s, &s->kv[i].p, &s->kv[i].pnode);
		/* the router learns of the prompt's KV from its first token */
		router_placement_prompt_done(s->r, q->q);
		if (s->c->first_token_prefill)
			token(s, i, s->now);
		/* The KV streamed over the link layer by layer as the prompt
		 * computed; what is left of it goes after the last chunk. */
		const struct plan_profile *p = n->p;
		double bytes = p->kv_bytes_per_token * q->q->n_prompt;
		double start = q->pass_start > n->link_free ? q->pass_start : n->link_free;
		double done = start + bytes / (p->link_gb_s * 1e9);
		if (done < s->now)
			done = s->now;
		n->link_free = done;
		q->st = SQ_WAIT_KV;
		push(s, done + p->link_latency_ms / 1e3, EV_KV, i);
	}
	pass_over(s, ni);
	kick(s, ni);
}

static void decode_done(struct sim *s, int ni)
{
	struct snode *n = &s->nodes[ni];
	pass_over(s, ni);
	for (int k = 0; k < n->n_batch; k++) {
		int i = n->batch[k];
		struct sreq *q = &s->rq[i];
		if (q->st == SQ_LOCAL) {
			q->prefilled += q->step_rows;
			if (q->prefilled < q->q->n_prompt)
				continue;
			router_placement_prompt_done(s->r, q->q);
			cache_prompt(s, ni, i);
			q->st = SQ_RUNNING;
		}
		token(s, i, s->now);
		if (q->n_gen >= q->q->max_tokens)
			finish(s, i, ni);
	}
	kick(s, ni);
}

/* ---- the router ---- */

static void report(struct sim *s, int ni)
{
	struct snode *n = &s->nodes[ni];
	Duet__LoadReport l = DUET__LOAD_REPORT__INIT;
	l.seq = ++n->report_seq;
	l.kv_blocks_total = (uint32_t)n->blocks_total;
	if (n->cache) {
		/* as duet_node_tick reports them */
		l.kv_blocks_free = (uint32_t)(n->pool->n_free + duet_prefix_evictable(n->cache));
		l.n_prefix_hashes =
			(size_t)duet_prefix_summary(n->cache, s->hashes, ROUTER_PREFIX_HASHES);
		l.prefix_hashes = s->hashes;
	} else {
		l.kv_blocks_free = (uint32_t)(n->blocks_free > 0 ? n->blocks_free : 0);
	}
	if (!n->decode) {
		uint64_t queued = 0;
		for (int k = 0; k < n->n_reqs; k++) {
			/* prefill_queued_tokens: what the cache holds costs nothing */
			const struct sreq *q = &s->rq[n->reqs[k]];
			int have = q->started ? q->prefilled
				   : n->cache ? duet_prefix_cached(n->cache, q->q->prompt,
								   q->q->n_prompt - 1)
					      : 0;
			queued += (uint64_t)(q->q->n_prompt - have);
		}
		l.queued_prompt_tokens = queued;
		l.prefill_tokens_per_s = (float)n->rate;
	} else {
		l.stream_tokens_left = s->tokens_left;
		l.local_prompt_left = s->local_prompt;
		l.local_tokens_left = s->local_left;
		for (int k = 0; k < n->n_reqs; k++) {
			const struct sreq *q = &s->rq[n->reqs[k]];
			uint32_t left = duet_wire_tokens_left(q->q->max_tokens, q->n_gen);
			l.running += q->st == SQ_RUNNING || q->st == SQ_INGEST;
			l.waiting_kv += q->st == SQ_WAIT_KV || q->st == SQ_QUEUED || q->st == SQ_PREFILL;
			l.local_prefill += q->st == SQ_LOCAL;
			if (q->st == SQ_RUNNING) {
				l.context_tokens += (uint64_t)(q->q->n_prompt + q->n_gen);
				duet_wire_left_add(s->tokens_left, &l.n_stream_tokens_left, left);
			}
			if (q->st == SQ_LOCAL) {
				l.local_prefill_tokens += (uint64_t)(q->q->n_prompt - q->prefilled);
				duet_wire_local_add(s->local_prompt, s->local_left,
						    &l.n_local_prompt_left,
						    (uint32_t)(q->q->n_prompt - q->prefilled), left);
			}
		}
		l.n_local_tokens_left = l.n_local_prompt_left;
		l.step_ms = (float)n->step_ms;
		if (n->steps) {
			/* what the node's online fit converges to */
			l.step_base_ms = (float)n->p->step.base_ms;
			l.step_seq_ms = (float)n->p->step.seq_ms;
			l.step_token_ms = (float)n->p->step.token_ms;
			l.step_kctx_ms = (float)n->p->step.kctx_ms;
			l.step_kpair_ms = (float)n->p->step.kpair_ms;
			l.steps_fitted = n->steps;
		}
	}
	struct duet_err err;
	if (router_node_report(&s->r->nodes[ni], &l, (long long)(s->now * 1e6), &err))
		s->failed = 1;
	n->report_armed = 0;
	if (n->dirty || n->busy || n->n_reqs) {
		n->dirty = 0;
		n->report_armed = 1;
		push(s, s->now + s->c->report_ms / 1e3, EV_REPORT, ni);
	}
	try_waitq(s);
}

/* Placement of request i now; 1 when no decode node has room for it. */
static int place(struct sim *s, int i)
{
	struct sreq *q = &s->rq[i];
	struct router_placement pl;
	struct duet_err err;
	if (router_place(s->r, q->q, &pl, &err))
		return 1;
	if (pl.reject) {
		s->st->rejected++;
		fail(s, i, "http_429");
		return 0;
	}
	router_placement_commit(s->r, q->q, &pl);
	if (s->out)
		s->out[i] = (struct sim_req){s->out[i].ttft_s, s->out[i].tbt_p99_s, pl.reason,
					     pl.pnode, pl.dnode};
	double lat = link_latency(s);
	if (pl.pnode < 0) {
		s->st->placed_local++;
		push(s, s->now + lat, EV_LOCAL, i);
	} else {
		s->st->placed_disagg++;
		/* KvReserve to the decode node (its reply, then PrefillWork) */
		push(s, s->now + lat, EV_RESERVE, i);
	}
	q->st = SQ_QUEUED;
	return 0;
}

static void try_waitq(struct sim *s)
{
	while (s->n_waitq && !s->failed) {
		int i = s->waitq[0];
		if (place(s, i))
			return;
		s->rq[i].queued = 0;
		del_int(s->waitq, &s->n_waitq, i);
	}
}

/* Request i finds no decode node with room (or others waiting before it):
 * it waits, within the queue's bounds (router/core.c wait_or_reject). */
static void wait_or_reject(struct sim *s, int i)
{
	if (s->n_waitq >= s->c->max_queue) {
		s->st->queue_full++;
		fail(s, i, "http_429");
		return;
	}
	s->st->waited++;
	s->rq[i].queued = 1;
	if (!add_int(s, &s->waitq, &s->n_waitq, &s->cap_waitq, i))
		push(s, s->now + (double)router_queue_wait_ms(s->r, s->rq[i].q) / 1e3,
		     EV_QUEUE_TIMEOUT, i);
}

/* A decode node takes request i (reserve, or local work that starts past
 * the blocks its prefix cache holds): its room was reserved by placement,
 * from the router's view of the node. With prefix caches the node's own
 * books decide (decode_new_req): a request they have no room for fails,
 * as the daemon refuses it. -1: the request did not stay. */
static int admit(struct sim *s, int i, int ni, int local)
{
	struct sreq *q = &s->rq[i];
	struct snode *n = &s->nodes[ni];
	long need = (long)q->q->n_prompt + q->q->max_tokens;
	if (!n->cache) {
		q->blocks = blocks_for(n->p, need);
		n->blocks_free -= q->blocks;
		return add_int(s, &n->reqs, &n->n_reqs, &n->cap_reqs, i);
	}
	struct sim_kv *k = &s->kv[i];
	struct duet_err err;
	k->dnode = ni;
	if (local) {
		int cached =
			duet_prefix_attach(n->cache, &k->d, q->q->prompt, q->q->n_prompt - 1, &err);
		if (cached < 0)
			return s->failed = 1, -1;
		q->prefilled = cached;
	}
	int more = duet_kv_blocks_for(&n->pool->g, need) - k->d.n_blocks;
	if (duet_prefix_make_room(n->cache, more) < more ||
	    duet_kv_seq_reserve(n->pool, &k->d, (int)need, &err)) {
		router_placement_end(s->r, q->q);
		fail(s, i, "no_room");
		return -1;
	}
	return add_int(s, &n->reqs, &n->n_reqs, &n->cap_reqs, i);
}

static void handle(struct sim *s, const struct ev *e)
{
	struct sreq *q = e->type == EV_PASS_DONE || e->type == EV_REPORT ? NULL : &s->rq[e->a];
	if (e->type == EV_QUEUE_TIMEOUT) {
		if (q->queued) { /* not placed meanwhile */
			q->queued = 0;
			del_int(s->waitq, &s->n_waitq, e->a);
			s->st->queue_timeouts++;
			fail(s, e->a, "http_429");
		}
		return;
	}
	if (e->type == EV_PASS_DONE && !pass_done_now(s, e))
		return; /* moved since: its machine changed */
	if (e->type == EV_PASS_DONE)
		touch(s, e->a);
	else if (q && e->type != EV_ARRIVE)
		touch(s, e->type == EV_WORK ? q->q->pnode : q->q->dnode);
	switch (e->type) {
	case EV_ARRIVE:
		push_arrival(s, e->a + 1);
		if (acquire(s, e->a))
			break;
		if (s->n_waitq || place(s, e->a)) /* FIFO: nobody overtakes the queue */
			wait_or_reject(s, e->a);
		break;
	case EV_RESERVE: {
		if (admit(s, e->a, q->q->dnode, 0))
			break;
		q->st = SQ_WAIT_KV;
		/* The node answers between two steps (decode-node/main.c reads
		 * control messages there); the router then sends PrefillWork. */
		struct snode *dn = &s->nodes[q->q->dnode];
		if (!dn->busy)
			push(s, s->now + 2 * link_latency(s), EV_WORK, e->a);
		else
			(void)add_int(s, &dn->replies, &dn->n_replies, &dn->cap_replies, e->a);
		break;
	}
	case EV_WORK:
		q->st = SQ_PREFILL;
		if (!add_int(s, &s->nodes[q->q->pnode].reqs, &s->nodes[q->q->pnode].n_reqs,
			     &s->nodes[q->q->pnode].cap_reqs, e->a))
			kick(s, q->q->pnode);
		break;
	case EV_LOCAL:
		q->st = SQ_LOCAL;
		if (!admit(s, e->a, q->q->dnode, 1))
			kick(s, q->q->dnode);
		break;
	case EV_KV: {
		struct snode *n = &s->nodes[q->q->dnode];
		n->ingest_s += n->p->kv_bytes_per_token * q->q->n_prompt / (n->p->ingest_gb_s * 1e9);
		if (q->n_gen == 0 && q->q->max_tokens <= 1)
			token(s, e->a, s->now); /* the first token is the last */
		if (q->n_gen >= q->q->max_tokens) {
			cache_prompt(s, q->q->dnode, e->a);
			finish(s, e->a, q->q->dnode);
		} else {
			q->st = SQ_INGEST;
			kick(s, q->q->dnode);
		}
		break;
	}
	case EV_PASS_DONE:
		if (s->nodes[e->a].decode) {
			struct snode *n = &s->nodes[e->a];
			for (int k = 0; k < n->n_replies; k++) /* before its next pass */
				push(s, s->now + 2 * link_latency(s), EV_WORK, n->replies[k]);
			n->n_replies = 0;
			decode_done(s, e->a);
		} else {
			prefill_done(s, e->a);
		}
		break;
	case EV_REPORT:
		report(s, e->a);
		break;
	}
}

/* ---- setup ---- */

/* Node n's books: a pool of its blocks with no KV data (one f16 value a
 * row, never written) and the prefix cache over all of it, as a node
 * started with the default prefix-cache-mb keeps. */
static int cache_setup(struct snode *n, struct duet_err *err)
{
	struct duet_kv_geom g = {.n_layers = 1, .n_kv_heads = 1, .head_dim = 1,
				 .block_tokens = n->p->block_tokens, .dtype = DUET_KV_F16};
	if (duet_kv_pool_create(&n->pool, &g, n->blocks_total, err) ||
	    duet_prefix_create(&n->cache, n->pool, n->blocks_total, err))
		return duet_err_prefix(err, "a simulated node's prefix cache"), -1;
	return 0;
}

static int setup(struct sim *s, const struct sim_cfg *c, const struct trace *t,
		 double rate_scale, struct duet_err *err)
{
	int nn = c->n_prefill + c->n_decode;
	if (c->n_decode < 1 || c->n_prefill < 0 || nn > ROUTER_MAX_NODES)
		return duet_errf(err, "a cluster of %d prefill and %d decode nodes: at least one "
				      "decode node, at most %d nodes",
				 c->n_prefill, c->n_decode, ROUTER_MAX_NODES);
	s->r = calloc(1, sizeof *s->r);
	s->nodes = calloc((size_t)nn, sizeof *s->nodes);
	s->rq = calloc((size_t)t->n, sizeof *s->rq);
	if (!s->r || !s->nodes || !s->rq)
		return duet_errf(err, "out of memory for %d nodes and %d requests", nn, t->n);
	if (c->prefix_cache) {
		s->kv = calloc((size_t)t->n, sizeof *s->kv);
		for (int i = 0; s->kv && i < t->n; i++)
			s->kv[i].dnode = s->kv[i].pnode = -1;
		s->hashes = malloc(sizeof *s->hashes * ROUTER_PREFIX_HASHES);
		if (!s->kv || !s->hashes)
			return duet_errf(err, "out of memory for %d requests' KV books", t->n);
	}
	s->model.cfg.ctx_len = c->decode->ctx_len;
	s->r->model = &s->model;
	s->r->policy = c->policy;
	s->r->cfg.local_max_prompt = c->local_max_prompt;
	s->r->cfg.slo_ttft_ms = c->slo_ttft_ms;
	s->r->cfg.slo_tbt_ms = c->slo_tbt_ms;
	s->r->cfg.tbt_admission = c->tbt_admission;
	s->r->cfg.queue_timeout_ms = c->queue_timeout_ms;
	s->r->n_nodes = s->n_nodes = nn;
	uint64_t x = c->seed * 0x9E3779B97F4A7C15ull + 1;
	for (int k = 0; k < nn; k++) {
		struct snode *n = &s->nodes[k];
		struct router_node *rn = &s->r->nodes[k];
		n->decode = k >= c->n_prefill;
		n->p = n->decode ? c->decode : c->prefill;
		n->blocks_total = n->blocks_free = (int)(n->p->kv_tokens / n->p->block_tokens);
		n->press_ref = plan_profile_memory_share(n->p, 1, 0, DECODE_LOOP_POSITIONS, 0);
		if (c->prefix_cache && cache_setup(n, err))
			return -1;
		snprintf(rn->name, sizeof rn->name, "%s-%d", n->decode ? "decode" : "prefill",
			 n->decode ? k - c->n_prefill : k);
		rn->role = n->decode ? DUET__ROLE__ROLE_DECODE : DUET__ROLE__ROLE_PREFILL;
		rn->alive = 1;
		rn->block_tokens = n->p->block_tokens;
		rn->max_batch_tokens = n->p->max_batch_tokens;
		rn->kv_blocks = rn->kv_total = rn->kv_free = n->blocks_total;
		rn->report_ms = c->report_ms;
		/* each node reports on its own phase, as nodes started apart do */
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		n->phase = (double)(x % 1000000) / 1e6 * c->report_ms / 1e3;
		n->rng = x * 0x2545F4914F6CDD1Dull + (uint64_t)k + 1;
		n->report_armed = 1;
		push(s, n->phase, EV_REPORT, k);
	}
	s->n_rq = s->left = t->n;
	for (int i = 0; i < t->n; i++) {
		const struct trace_req *tr = &t->req[i];
		double at = tr->arrival_s / rate_scale;
		s->res[i].sched_s = s->res[i].sent_s = at;
		s->res[i].prompt_tokens = tr->prompt_tokens;
		s->res[i].output_tokens = tr->output_tokens;
		if (tr->prompt_tokens + tr->output_tokens > c->decode->ctx_len)
			fail(s, i, "too_long");
	}
	s->order = (uint64_t)nn + (uint64_t)t->n;
	push_arrival(s, 0);
	return s->failed ? duet_errf(err, "out of memory for the events") : 0;
}

int sim_run(const struct sim_cfg *c, const struct trace *t, const struct synth *syn,
	    double rate_scale, struct replay_result *res, struct sim_req *out,
	    struct sim_stats *st, struct duet_err *err)
{
	struct sim s = {.c = c, .t = t, .syn = syn, .res = res, .out = out, .st = st};
	memset(st, 0, sizeof *st);
	int rc = setup(&s, c, t, rate_scale, err);
	/* Reports go on forever: the run ends when every request has. */
	while (!rc && s.left && s.n_heap && !s.failed) {
		struct ev e = pop(&s);
		s.now = e.t;
		handle(&s, &e);
		st->events++;
	}
	if (!rc && s.failed)
		rc = duet_errf(err, "out of memory while simulating");
	st->end_s = s.now;
	for (int i = 0; i < s.n_rq; i++) {
		if (s.nodes)
			drop_kv(&s, i);
		release(&s, &s.rq[i]);
		free(s.rq[i].gaps);
	}
	for (int k = 0; k < s.n_spare; k++)
		free(s.spare[k]);
	free(s.spare);
	for (int k = 0; k < s.n_nodes; k++) {
		free(s.nodes[k].reqs);
		free(s.nodes[k].batch);
		free(s.nodes[k].replies);
		duet_prefix_destroy(s.nodes[k].cache);
		duet_kv_pool_destroy(s.nodes[k].pool);
		if (s.r)
			router_node_free(&s.r->nodes[k]);
	}
	free(s.waitq);
	free(s.heap);
	free(s.kv);
	free(s.hashes);
	free(s.rq);
	free(s.nodes);
	free(s.r);
	return rc;
}
