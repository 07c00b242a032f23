/* Placement: which decode node holds the request, and whether a prefill
 * node computes its prompt (disaggregated) or the decode node does
 * (local). See DESIGN.md, Placement. */
#include <stdlib.h>
#include <string.h>

#include "node/chunk.h"
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

/* Streams a local prefill on decode node n would stall: those running or
 * in local prefill there, and those whose KV is on its way (they join the
 * batch while the chunks still run: a hand-off whose KV arrived during a
 * long local prefill waited a chunk's step for every token, BENCHMARKS.md);
 * or this router's own count of what it placed there and has not seen
 * finish, where the node's report is not yet in. */
static int streams_on(const struct router_node *n)
{
	int s = n->running + n->local_prefill + n->waiting_kv;
	return n->inflight > s ? n->inflight : s;
}

/* Prompt tokens/s of a prefill node: measured, or a guess until its first
 * report with a measurement. */
#define UNMEASURED_PREFILL_TPS 1000.0

static double node_rate(const struct router_node *n)
{
	return n->prefill_tps > 1 ? n->prefill_tps : UNMEASURED_PREFILL_TPS;
}

/* A node's summary is an open-addressing set of chain hashes (linear
 * probing, 0 marks an empty slot), at most half full: a load report
 * replaces it in time linear in its hashes (a node reports every few
 * hundred ms, a thousand nodes are thousands of reports a second), and a
 * prompt block is looked up in constant time. */
#define SET_MIN_SLOTS 64
/* Hashes learned between two reports beyond the report's own: a guess,
 * bounded. */
#define SET_MAX_HASHES (2 * ROUTER_PREFIX_HASHES)

static uint64_t set_key(uint64_t h)
{
	return h ? h : 1; /* 0 is the empty slot */
}

/* The first slot to probe: the key's high bits after a multiplication
 * (Fibonacci hashing), so that keys alike in their low bits spread. */
static uint64_t set_home(uint64_t k, int cap)
{
	return (k * 0x9E3779B97F4A7C15ull) >> (64 - __builtin_ctz((unsigned)cap));
}

static int set_has(const struct router_node *n, uint64_t h)
{
	if (!n->n_hashes)
		return 0;
	uint64_t k = set_key(h), mask = (uint64_t)n->cap_hashes - 1;
	for (uint64_t i = set_home(k, n->cap_hashes);; i = (i + 1) & mask) {
		if (n->hashes[i] == k)
			return 1;
		if (!n->hashes[i])
			return 0;
	}
}

static void set_put(uint64_t *slots, int cap, int *count, uint64_t h)
{
	uint64_t k = set_key(h), mask = (uint64_t)cap - 1;
	uint64_t i = set_home(k, cap);
	while (slots[i] && slots[i] != k)
		i = (i + 1) & mask;
	if (!slots[i]) {
		slots[i] = k;
		(*count)++;
	}
}

/* Room for `want` hashes at most half full, keeping those held (rehashed
 * when the table grows). -1 out of memory (the set is then as it was). */
static int set_reserve(struct router_node *n, int want)
{
	int cap = SET_MIN_SLOTS;
	while (cap < 2 * want)
		cap *= 2;
	if (cap <= n->cap_hashes)
		return 0;
	uint64_t *t = calloc((size_t)cap, sizeof *t);
	if (!t)
		return -1;
	int count = 0;
	for (int i = 0; i < n->cap_hashes; i++)
		if (n->hashes[i])
			set_put(t, cap, &count, n->hashes[i]);
	free(n->hashes);
	n->hashes = t;
	n->cap_hashes = cap;
	n->n_hashes = count;
	return 0;
}

int router_node_set_prefix(struct router_node *n, const uint64_t *hashes, size_t count,
			   struct duet_err *err)
{
	if (count > ROUTER_PREFIX_HASHES)
		count = ROUTER_PREFIX_HASHES; /* the most recently used come first */
	if (n->hashes)
		memset(n->hashes, 0, sizeof *n->hashes * (size_t)n->cap_hashes);
	n->n_hashes = 0;
	if (set_reserve(n, (int)count))
		return duet_errf(err, "out of memory for %zu prefix hashes", count);
	for (size_t i = 0; i < count; i++)
		set_put(n->hashes, n->cap_hashes, &n->n_hashes, hashes[i]);
	return 0;
}

void router_node_learn_prefix(struct router_node *n, const int *tokens, int n_tokens)
{
	int bt = n->block_tokens, add = bt > 0 ? n_tokens / bt : 0;
	if (n->n_hashes + add > SET_MAX_HASHES)
		add = SET_MAX_HASHES - n->n_hashes;
	if (add <= 0 || set_reserve(n, n->n_hashes + add))
		return; /* a guess only: the next report brings the truth */
	uint64_t c = DUET_PREFIX_SEED;
	for (int k = 0; k < add; k++) {
		c = duet_prefix_chain(c, tokens + (size_t)k * (size_t)bt, bt);
		set_put(n->hashes, n->cap_hashes, &n->n_hashes, c);
	}
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
		if (!set_has(n, h))
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

long long router_queue_wait_ms(const struct router *r, const struct rreq *q)
{
	long long w = r->cfg.queue_timeout_ms;
	int ttft = router_slo_ttft_ms(r, q);
	/* past its TTFT objective a request has missed it: better a 429
	 * (the client may go elsewhere) than a place that a request behind
	 * it could still use in time. Not a stream already going (placed
	 * again after its node failed): that one is served, not refused. */
	return q->n_out == 0 && ttft > 0 && ttft < w ? ttft : w;
}

/* None of the costs a coefficient stands for can be negative: the nodes
 * fit them so (base/linfit.h), and a report from elsewhere is held to it. */
static double cost(double c)
{
	return c > 0 ? c : 0;
}

/* Node n's predicted step with `seqs` sequences over `positions` cached
 * positions in all and `prefill_tokens` prompt tokens, which attend to
 * `pairs` prompt positions before them in all; -1 before it has measured
 * steps. */
static double step_ms(const struct router_node *n, double seqs, int prefill_tokens,
		      double positions, double pairs)
{
	if (!n->steps_fitted)
		return -1;
	return cost(n->step_base_ms) + cost(n->step_seq_ms) * seqs +
	       cost(n->step_token_ms) * prefill_tokens + cost(n->step_kctx_ms) * positions / 1024.0 +
	       cost(n->step_kpair_ms) * pairs / 1048576.0;
}

/* What a prompt of `tokens` computed from its start in chunks of `whole`
 * adds to their steps by each chunk's attention over the prompt before it
 * (the kpair term), in ms. */
static double chunks_pairs_ms(const struct router_node *n, long tokens, long whole)
{
	if (n->step_kpair_ms <= 0 || tokens <= 0 || whole <= 0)
		return 0;
	/* m whole chunks (chunk i after i x whole tokens), then the rest */
	double m = (double)(tokens / whole), w = (double)whole, rest = (double)(tokens % whole);
	double pairs = w * w * m * (m - 1) / 2 + rest * m * w;
	return cost(n->step_kpair_ms) * pairs / 1048576.0;
}

/* Admission by the streams' TBT objective (tbt_admission): one more
 * sequence on decode node n keeps its predicted plain step within the
 * objective, or nothing streams there (an idle node serves whatever comes,
 * as well as it can). A batch may grow until every step misses the
 * objective, and then every stream on the node misses it at once; with
 * admission a request waits in the router's queue for a stream to end
 * instead. It is off by default: simulated on the conversation trace it
 * gave up more first tokens (queued past their objective) than it saved
 * token gaps at every rate below deep overload (BENCHMARKS.md). The
 * running sequences count whether the node has reported them yet or not
 * (streams_on). */
static int admits(const struct router *r, const struct router_node *n, const struct rreq *q)
{
	int slo = router_slo_tbt_ms(r, q), s = streams_on(n);
	if (!r->cfg.tbt_admission || slo <= 0 || s == 0)
		return 1;
	double step = step_ms(n, s + 1, 0, (double)n->context_tokens + q->n_prompt, 0);
	return step < 0 || step <= slo;
}

/* The decode node for q, and the prompt tokens its prefix cache holds
 * (*cached). -1 when none has room for it, or none keeps its streams'
 * TBT objective with it (*full says which). */
static int pick_decode(struct router *r, const struct rreq *q, int *cached, int *full)
{
	int cand[ROUTER_MAX_NODES], nc = 0, roomy = 0;
	long need = need_tokens(r, q);
	for (int i = 0; i < r->n_nodes; i++) {
		const struct router_node *n = &r->nodes[i];
		if (!router_node_usable(n, DUET__ROLE__ROLE_DECODE) || room(n) < need)
			continue;
		roomy++;
		if (admits(r, n, q))
			cand[nc++] = i;
	}
	*full = roomy > 0;
	if (!nc)
		return -1;
	if (r->policy == ROUTER_POLICY_ROUND_ROBIN) {
		int d = cand[r->rr % (unsigned)nc];
		*cached = cached_tokens(&r->nodes[d], q);
		return d;
	}
	/* Fewest sequences (a step's cost grows with them), then the most
	 * free KV. */
	int best = cand[0];
	for (int k = 1; k < nc; k++) {
		struct router_node *n = &r->nodes[cand[k]], *b = &r->nodes[best];
		if (load_of(n) < load_of(b) || (load_of(n) == load_of(b) && room(n) > room(b)))
			best = cand[k];
	}
	/* A node whose prefix cache holds part of the prompt computes only
	 * the rest (a local prefill stalls every stream there for each of
	 * its chunks; the KV of a prefill node's prompt is sent whole), so
	 * the node holding the most of it goes first while it runs at most
	 * ROUTER_CACHE_LOAD_SLACK more sequences than the least loaded. */
	int most = 0, hit = -1, least = load_of(&r->nodes[best]);
	for (int k = 0; k < nc; k++) {
		const struct router_node *n = &r->nodes[cand[k]];
		if (load_of(n) > least + ROUTER_CACHE_LOAD_SLACK)
			continue;
		int c = cached_tokens(n, q);
		if (c > most || (c == most && hit >= 0 && load_of(n) < load_of(&r->nodes[hit]))) {
			most = c;
			hit = cand[k];
		}
	}
	/* (best, least loaded, was looked at: it holds nothing when most is 0) */
	*cached = most;
	return most > 0 ? hit : best;
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

int router_slo_ttft_ms(const struct router *r, const struct rreq *q)
{
	return q->slo_ttft_ms > 0 ? q->slo_ttft_ms : r->cfg.slo_ttft_ms;
}

int router_slo_tbt_ms(const struct router *r, const struct rreq *q)
{
	return q->slo_tbt_ms > 0 ? q->slo_tbt_ms : r->cfg.slo_tbt_ms;
}

double router_step_ms(const struct router_node *n, int add_seqs, int prefill_tokens,
		      long add_positions)
{
	return step_ms(n, (double)(n->running + n->local_prefill + add_seqs), prefill_tokens,
		       (double)n->context_tokens + (double)add_positions, 0);
}

/* A local prefill placed on decode node n, until its next report says
 * so itself: queued behind the node's others. */
static void local_add(struct router_node *n, int prompt_tokens, int max_tokens)
{
	n->local_prefill_tokens += (uint64_t)prompt_tokens;
	duet_wire_local_add(n->local_prompt, n->local_left, &n->n_local, (uint32_t)prompt_tokens,
			    duet_wire_tokens_left(max_tokens, 0));
}

/* A local prefill on a decode node, predicted (local_cost); -1 each
 * before the node has measured steps. */
struct local_cost {
	double whole_step; /* the step that carries a whole chunk of it */
	double step;	   /* the step that carries its first chunk as cut */
	double ttft_ms;	   /* its first token, in the chunks as cut */
	double own_ms;	   /* its first token in whole chunks, nothing queued */
};

/* Steps local_cost's walk takes one at a time while chunks pay for their
 * attention over the prompt before them. */
#define WALK_STEP_BY_STEP 8192

/* The steps at which the streams a local prefill is cut for end, in order
 * (cut_ends_add keeps it so); those before `ended` have. */
struct cut_ends {
	uint32_t at[2 * DUET_REPORT_MAX_STREAMS];
	size_t n, ended;
};

static void cut_ends_add(struct cut_ends *e, uint32_t at)
{
	size_t i = e->n++;
	for (; i > e->ended && e->at[i - 1] > at; i--)
		e->at[i] = e->at[i - 1];
	e->at[i] = at;
}

/* A local prefill of `tokens` prompt tokens on decode node n, behind the
 * local prefills it has queued. A step that carries a chunk of it is what
 * every running stream waits between two tokens. tbt_ms > 0: in chunks
 * cut to keep the streams there within that objective, as the node cuts
 * them (decode_chunk_budget), while they last: a stream the report lists
 * ends when its tokens left are made (one a step), a local prefill ahead
 * joins the streams when its prompt is done and ends likewise, and the
 * chunks grow as the batch shrinks; a stream the report does not list
 * (waiting for its KV, placed since) runs throughout. hold: every stream
 * there now runs throughout, as if each that ends were replaced (streams
 * that arrive meanwhile are not foreseen, so the other prediction is the
 * soonest the node can do it). 0: whole chunks.
 * Predicted in whole chunks, a colocated cluster took requests that then
 * waited past the TTFT objective; cut for today's streams for good, it
 * refused prompts of short answers that would have come in time
 * (BENCHMARKS.md, 2026-12-07 seventh). */
static struct local_cost local_cost(const struct router_node *n, int tokens, int tbt_ms,
				    int hold)
{
	struct local_cost c = {-1, -1, -1, -1};
	long pending = (long)n->local_prefill_tokens + tokens;
	long whole = n->max_batch_tokens > 0 && n->max_batch_tokens < pending ? n->max_batch_tokens
									      : pending;
	if (whole < 1)
		whole = 1;
	c.whole_step = c.step = router_step_ms(n, 1, (int)whole, tokens);
	if (c.step < 0)
		return c;
	/* (the prompt's chunks attend over its tokens before them: the
	 * node's kpair term; a prompt ahead counted from its start) */
	const double own_pairs = chunks_pairs_ms(n, tokens, whole);
	c.own_ms = (double)((tokens + whole - 1) / whole) * c.step + own_pairs;
	int streams = streams_on(n);
	if (tbt_ms <= 0 || streams == 0) {
		c.ttft_ms = (double)((pending + whole - 1) / whole) * c.step + own_pairs;
		for (size_t i = 0; i < n->n_local; i++)
			c.ttft_ms += chunks_pairs_ms(n, n->local_prompt[i], whole);
		return c;
	}
	struct cut_ends e;
	e.n = e.ended = 0;
	const size_t n_left = hold ? 0 : n->n_left, n_local = hold ? 0 : n->n_local;
	for (size_t i = 0; i < n_left; i++)
		cut_ends_add(&e, n->left[i]);
	int others = streams - (int)n_left - (int)n_local;
	if (others < 0)
		others = 0;
	double t = 0;
	long k = 0, done = 0; /* steps taken, queued prompt tokens computed */
	long head_end = 0;    /* where the next listed local prefill's prompt ends */
	long seg_start = 0;   /* where the prompt being computed starts */
	const long own_start = pending - tokens;
	size_t next = 0;
	if (n_local)
		head_end = n->local_prompt[0];
	for (int first = 1; done < pending; first = 0) {
		while (e.ended < e.n && e.at[e.ended] <= k)
			e.ended++;
		int alive = others + (int)(e.n - e.ended);
		/* the sequences in the step: held, those the node runs now
		 * (router_step_ms); else the streams alive, the ended ones'
		 * positions taken out in proportion */
		int seqs = hold ? n->running + n->local_prefill : alive;
		double pos = (double)tokens;
		if (hold)
			pos += (double)n->context_tokens;
		else if (n->running > 0 && streams > 0)
			pos += (double)n->context_tokens * alive / streams;
		/* the prompt tokens before this chunk, which it attends to (a
		 * prompt ahead's from where the walk met it) */
		const double before = (double)(done - (done >= own_start ? own_start : seg_start));
		long chunk = whole;
		if (alive > 0) {
			double base = step_ms(n, seqs + 1, 0, pos, 0);
			chunk = duet_chunk_within((int)whole, tbt_ms, base,
						  step_ms(n, seqs + 1, 1, pos, before) - base);
		}
		double s = step_ms(n, seqs + 1, (int)chunk, pos, (double)chunk * before);
		if (first)
			c.step = s;
		/* steps until the next change: all done, a stream ends, a
		 * local prefill ahead finishes its prompt */
		long steps = (pending - done + chunk - 1) / chunk;
		if (e.ended < e.n && (long)e.at[e.ended] - k < steps)
			steps = (long)e.at[e.ended] - k;
		if (next < n_local && (head_end - done + chunk - 1) / chunk < steps)
			steps = (head_end - done + chunk - 1) / chunk;
		/* a chunk's attention grows with the prompt before it, and
		 * the node cuts each chunk for it: step by step, for as many
		 * steps as a whole context can take at a token a step (then in
		 * leaps again, whatever a report claims is queued) */
		if (n->step_kpair_ms > 0 && k < WALK_STEP_BY_STEP)
			steps = 1;
		if (steps < 1)
			steps = 1;
		t += (double)steps * s;
		done += steps * chunk;
		k += steps;
		for (; next < n_local && head_end <= done; next++) {
			cut_ends_add(&e, (uint32_t)(k + n->local_left[next]));
			seg_start = head_end;
			if (next + 1 < n_local)
				head_end += n->local_prompt[next + 1];
		}
	}
	c.ttft_ms = t;
	return c;
}

/* Early rejection (as Mooncake does): the predicted first token misses
 * the objective, because of the work queued ahead of it (an idle node
 * would meet it); waiting would only make the request miss it, and hold
 * up those behind. */
static void maybe_reject(struct router_placement *out, int slo_ttft, double own_ms)
{
	if (slo_ttft <= 0 || out->ttft_ms < 0 || own_ms < 0 || out->ttft_ms <= slo_ttft ||
	    own_ms > slo_ttft)
		return;
	out->reject = 1;
	int s = (int)((out->ttft_ms - slo_ttft + 999) / 1000);
	out->retry_after_s = s < 1 ? 1 : s;
}

int router_place(struct router *r, struct rreq *q, struct router_placement *out,
		 struct duet_err *err)
{
	memset(out, 0, sizeof *out);
	out->pnode = -1;
	out->ttft_ms = out->step_ms = -1;
	int cached = 0, full = 0;
	out->dnode = pick_decode(r, q, &cached, &full);
	if (out->dnode < 0 && full)
		return duet_errf(err, "one more stream on any decode node would take its step past "
				      "the %d ms TBT objective", router_slo_tbt_ms(r, q));
	if (out->dnode < 0)
		return duet_errf(err, "no decode node has room for %d prompt and %d new tokens",
				 q->n_prompt, q->max_tokens);
	const struct router_node *dn = &r->nodes[out->dnode];
	int slo_ttft = router_slo_ttft_ms(r, q), slo_tbt = router_slo_tbt_ms(r, q);
	/* What the decode node must compute of the prompt: its prefix cache
	 * may hold the rest (a prompt seen before, a chat's earlier turns),
	 * and then nothing need be sent either. */
	int local_tokens = q->n_prompt - cached;
	/* A request is refused when the queue and the streams' cut, not its
	 * prompt, make it miss the TTFT objective: in whole chunks with
	 * nothing queued (own_ms) it would meet it. */
	const struct local_cost lc = local_cost(dn, local_tokens, slo_tbt, 0);
	const double local_step = lc.whole_step, local_own = lc.own_ms;
	out->ttft_ms = lc.ttft_ms;
	out->step_ms = lc.step;
	out->uncached = local_tokens;
	if (r->policy == ROUTER_POLICY_COLOCATED) {
		out->reason = "colocated policy";
		maybe_reject(out, slo_ttft, local_own);
		return 0;
	}
	double ttft = 0;
	int uncached = 0;
	int p = pick_prefill(r, q, &ttft, &uncached);
	if (p < 0) {
		out->reason = "no prefill node";
		maybe_reject(out, slo_ttft, local_own);
		return 0;
	}
	if (r->policy == ROUTER_POLICY_LENGTH_AWARE) {
		/* Running streams wait for every step that carries a chunk of
		 * the prompt: local only while that step keeps their TBT
		 * objective, or when nothing runs there and the prompt takes
		 * one step (a longer one would stall every stream that joins
		 * meanwhile: seconds of slow steps, as traces showed on the
		 * code trace, whose answers are a few tokens long). Before the
		 * node has measured its steps nothing says a longer prompt's
		 * step keeps the objective: one step at most. */
		int streams = streams_on(dn);
		int one_step = dn->max_batch_tokens <= 0 ||
			       (long)dn->local_prefill_tokens + local_tokens <= dn->max_batch_tokens;
		int keeps_tbt = slo_tbt <= 0 || (local_step >= 0 && local_step <= slo_tbt) ||
				((local_step < 0 || streams == 0) && one_step);
		/* A short prompt costs the decode node's batch little, and
		 * skips a KV transfer. */
		if (keeps_tbt && local_tokens <= r->cfg.local_max_prompt) {
			out->reason = local_tokens < q->n_prompt ? "cached on the decode node"
								  : "short prompt";
			maybe_reject(out, slo_ttft, local_own);
			return 0;
		}
		/* Prefilling locally stalls every running stream on the
		 * decode node for the prompt's time; it only pays when all
		 * prefill nodes are queued that much deeper. */
		double local = (double)local_tokens / node_rate(&r->nodes[p]) * (1 + streams);
		if (keeps_tbt && local < ttft) {
			out->reason = "prefill nodes queued deeper than a local prefill costs";
			maybe_reject(out, slo_ttft, local_own);
			return 0;
		}
		/* Prefilled on the decode node in chunks that keep its
		 * streams' TBT objective (as the node cuts them), where its
		 * first token comes sooner than from the prefill nodes' queue
		 * and within the TTFT objective: a burst of long prompts (one
		 * prefill node refused 4-6 of 20 Mooncake requests a run while
		 * the decode node's core only decoded), or a prompt-heavy
		 * trace whose answers are a few tokens long, whose decode node
		 * idled while its prompts queued on the prefill node for
		 * seconds (BENCHMARKS.md, 2026-12-07 and 2026-12-07 sixth).
		 * As prompts go local the decode node's queue grows and the
		 * prefill node's shrinks, so the two share the prompts while a
		 * queue lasts, and an idle prefill node (faster than chunks
		 * beside streams) takes them all again. The first token is
		 * held to the streams there now running throughout: with
		 * those that end foreseen, and those that come not, prompts
		 * went local to come later than from the prefill node (code
		 * trace, simulated and measured, BENCHMARKS.md 2026-12-07
		 * eighth). */
		if (slo_tbt > 0 && r->nodes[p].prefill_tps > 1) {
			const double prefill_ms = ttft * 1000.0;
			const struct local_cost held = local_cost(dn, local_tokens, slo_tbt, 1);
			if (held.step >= 0 && held.step <= slo_tbt && held.ttft_ms < prefill_ms &&
			    (slo_ttft <= 0 || held.ttft_ms <= slo_ttft)) {
				out->reason = slo_ttft > 0 && prefill_ms > slo_ttft
						      ? "prefill nodes past the TTFT objective, "
							"local chunks within both"
						      : "local chunks within the TBT objective, sooner "
							"than the prefill nodes";
				out->ttft_ms = held.ttft_ms;
				out->step_ms = held.step;
				return 0;
			}
		}
	}
	out->pnode = p;
	out->uncached = uncached;
	out->reason = "disaggregated";
	out->step_ms = -1;
	const struct router_node *pn = &r->nodes[p];
	if (pn->prefill_tps > 1) {
		out->ttft_ms = ttft * 1000.0;
		maybe_reject(out, slo_ttft, (double)uncached / pn->prefill_tps * 1000.0);
	} else {
		out->ttft_ms = -1;
	}
	return 0;
}

void router_placement_commit(struct router *r, struct rreq *q, const struct router_placement *pl)
{
	int p = pl->pnode, d = pl->dnode;
	r->rr++;
	q->pnode = p;
	q->dnode = d;
	q->local = p < 0;
	r->nodes[d].inflight++;
	r->nodes[d].reserved_tokens += (long)q->n_prompt + q->max_tokens;
	q->queued_on_pnode = p >= 0 ? pl->uncached : 0;
	/* Until the node's next report says so itself: what placement
	 * predicts from for the next request. */
	if (p >= 0)
		r->nodes[p].queued_tokens += (uint64_t)pl->uncached;
	else
		local_add(&r->nodes[d], pl->uncached, q->max_tokens);
}

void router_placement_prompt_done(struct router *r, struct rreq *q)
{
	/* The prompt left the prefill node's queue, so the next placement
	 * must not wait for the load report to know (a repeated prompt would
	 * be prefilled locally behind a queue that is gone); and both nodes
	 * now hold the prompt's KV in their prefix caches. */
	if (q->pnode >= 0 && q->queued_on_pnode) {
		struct router_node *pn = &r->nodes[q->pnode];
		uint64_t left = (uint64_t)q->queued_on_pnode;
		pn->queued_tokens = pn->queued_tokens > left ? pn->queued_tokens - left : 0;
		q->queued_on_pnode = 0;
	}
	const int *t = q->base ? q->work : q->prompt;
	int n = q->n_prompt + q->base;
	if (q->pnode >= 0)
		router_node_learn_prefix(&r->nodes[q->pnode], t, n);
	if (q->dnode >= 0)
		router_node_learn_prefix(&r->nodes[q->dnode], t, n);
}

void router_placement_end(struct router *r, struct rreq *q)
{
	if (q->dnode >= 0)
		r->nodes[q->dnode].inflight--;
}

int router_node_report(struct router_node *n, const Duet__LoadReport *l, long long now_us,
		       struct duet_err *err)
{
	if (l->n_stream_tokens_left > DUET_REPORT_MAX_STREAMS ||
	    l->n_local_prompt_left > DUET_REPORT_MAX_STREAMS)
		return duet_errf(err, "load report refused: it lists %zu streams and %zu local "
				      "prefills, more than %d",
				 l->n_stream_tokens_left, l->n_local_prompt_left,
				 DUET_REPORT_MAX_STREAMS);
	if (l->n_local_prompt_left != l->n_local_tokens_left)
		return duet_errf(err, "load report refused: local_prompt_left has %zu entries, "
				      "local_tokens_left %zu",
				 l->n_local_prompt_left, l->n_local_tokens_left);
	n->last_report_us = n->last_seen_us = now_us;
	n->last_report_seq = l->seq;
	n->alive = 1;
	n->draining = l->draining;
	n->queued_tokens = l->queued_prompt_tokens;
	n->prefill_tps = l->prefill_tokens_per_s;
	n->running = (int)l->running;
	n->waiting_kv = (int)l->waiting_kv;
	n->local_prefill = (int)l->local_prefill;
	n->step_ms = l->step_ms;
	n->step_base_ms = l->step_base_ms;
	n->step_seq_ms = l->step_seq_ms;
	n->step_token_ms = l->step_token_ms;
	n->step_kctx_ms = l->step_kctx_ms;
	n->step_kpair_ms = l->step_kpair_ms;
	n->steps_fitted = l->steps_fitted;
	n->context_tokens = l->context_tokens;
	n->local_prefill_tokens = l->local_prefill_tokens;
	n->n_left = 0;
	for (size_t i = 0; i < l->n_stream_tokens_left; i++)
		duet_wire_left_add(n->left, &n->n_left, l->stream_tokens_left[i]);
	n->n_local = l->n_local_prompt_left;
	for (size_t i = 0; i < n->n_local; i++) {
		n->local_prompt[i] = l->local_prompt_left[i];
		n->local_left[i] = l->local_tokens_left[i];
	}
	n->spec_verified = l->spec_verified;
	n->spec_proposed = l->spec_proposed;
	n->spec_accepted = l->spec_accepted;
	n->kv_free = (int)l->kv_blocks_free;
	n->kv_total = (int)l->kv_blocks_total;
	n->bad_messages = l->bad_messages;
	n->auth_refused = l->auth_refused;
	/* The report counts every reservation made before it. */
	n->reserved_tokens = 0;
	return router_node_set_prefix(n, l->prefix_hashes, l->n_prefix_hashes, err);
}

static const char *const POLICY_NAMES[] = {"length-aware", "round-robin", "least-loaded",
					   "colocated"};

int router_policy_parse(const char *s, enum router_policy *out)
{
	for (int i = 0; i < (int)(sizeof POLICY_NAMES / sizeof *POLICY_NAMES); i++)
		if (strcmp(s, POLICY_NAMES[i]) == 0)
			return *out = (enum router_policy)i, 0;
	return -1;
}

const char *router_policy_name(enum router_policy p)
{
	return (unsigned)p < sizeof POLICY_NAMES / sizeof *POLICY_NAMES ? POLICY_NAMES[p] : "?";
}
