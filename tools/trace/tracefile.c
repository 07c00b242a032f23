#include "trace/tracefile.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/grow.h"

#define TRACE_MAX_FILES 64     /* files in one merge */
#define TRACE_MAX_PIDS 1024    /* distinct processes in one merge */
#define TRACE_FILE_MAX (1L << 31) /* bytes of one trace file */

static char *slurp(const char *path, size_t *len, struct duet_err *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return duet_errf(err, "%s: %s", path, strerror(errno)), NULL;
	char *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n + 65536 + 2 > cap) {
			cap = cap ? 2 * cap : 1 << 20;
			char *p = cap > (size_t)TRACE_FILE_MAX ? NULL : realloc(buf, cap);
			if (!p) {
				free(buf);
				fclose(f);
				return duet_errf(err, "%s: too large or out of memory", path), NULL;
			}
			buf = p;
		}
		size_t got = fread(buf + n, 1, 65536, f);
		n += got;
		if (got < 65536)
			break;
	}
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		free(buf);
		return duet_errf(err, "%s: read error", path), NULL;
	}
	buf[n] = 0;
	*len = n;
	return buf;
}

json_t *tracefile_load(const char *path, struct duet_err *err)
{
	size_t n;
	char *buf = slurp(path, &n, err);
	if (!buf)
		return NULL;
	json_error_t je;
	json_t *j = json_loadb(buf, n, 0, &je);
	if (!j) {
		/* Cut short: close the array after the last complete event. */
		size_t s = 0;
		while (s < n && isspace((unsigned char)buf[s]))
			s++;
		size_t e = n;
		while (e > s && (isspace((unsigned char)buf[e - 1]) || buf[e - 1] == ','))
			e--;
		if (s < n && buf[s] == '[') {
			buf[e] = ']';
			j = json_loadb(buf + s, e - s + 1, 0, &je);
		}
	}
	free(buf);
	if (!j)
		return duet_errf(err, "%s: line %d: %s", path, je.line, je.text), NULL;
	json_t *ev = json_is_array(j) ? json_incref(j) : json_incref(json_object_get(j, "traceEvents"));
	json_decref(j);
	if (!json_is_array(ev)) {
		json_decref(ev);
		return duet_errf(err, "%s: neither an array of events nor an object with traceEvents",
				 path), NULL;
	}
	for (size_t i = 0; i < json_array_size(ev); i++)
		if (!json_is_object(json_array_get(ev, i))) {
			json_decref(ev);
			return duet_errf(err, "%s: event %zu is not an object", path, i), NULL;
		}
	return ev;
}

static double num(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

static int by_time(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	double tx = num(x, "ts"), ty = num(y, "ts");
	/* metadata (no timestamp) first */
	int mx = isnan(tx), my = isnan(ty);
	if (mx != my)
		return mx ? -1 : 1;
	if (mx)
		return 0;
	return tx < ty ? -1 : tx > ty;
}

json_t *tracefile_merge(const char *const *paths, int n, struct duet_err *err)
{
	if (n < 1 || n > TRACE_MAX_FILES)
		return duet_errf(err, "merge: %d files (1 to %d)", n, TRACE_MAX_FILES), NULL;
	json_int_t used[TRACE_MAX_PIDS];
	int n_used = 0;
	json_int_t next_pid = 1 << 22; /* above Linux's default pid_max */
	json_t *all = json_array();
	for (int f = 0; f < n && all; f++) {
		json_t *ev = tracefile_load(paths[f], err);
		if (!ev) {
			json_decref(all);
			return NULL;
		}
		/* This file's pids, and what each becomes. */
		json_int_t from[TRACE_MAX_PIDS], to[TRACE_MAX_PIDS];
		int n_map = 0;
		for (size_t i = 0; i < json_array_size(ev); i++) {
			json_t *e = json_array_get(ev, i), *p = json_object_get(e, "pid");
			if (!json_is_integer(p))
				continue;
			json_int_t pid = json_integer_value(p);
			int k = 0;
			while (k < n_map && from[k] != pid)
				k++;
			if (k == n_map) {
				if (n_map == TRACE_MAX_PIDS || n_used == TRACE_MAX_PIDS) {
					json_decref(ev);
					json_decref(all);
					return duet_errf(err, "merge: more than %d processes",
							 TRACE_MAX_PIDS), NULL;
				}
				int clash = 0;
				for (int u = 0; u < n_used; u++)
					clash |= used[u] == pid;
				from[n_map] = pid;
				to[n_map] = clash ? next_pid++ : pid;
				used[n_used++] = to[n_map];
				n_map++;
			}
			if (to[k] != pid)
				json_object_set_new(e, "pid", json_integer(to[k]));
		}
		json_array_extend(all, ev);
		json_decref(ev);
	}
	if (!all)
		return duet_errf(err, "merge: out of memory"), NULL;
	size_t m = json_array_size(all);
	json_t **v = malloc(sizeof *v * (m ? m : 1));
	if (!v) {
		json_decref(all);
		return duet_errf(err, "merge: out of memory"), NULL;
	}
	for (size_t i = 0; i < m; i++)
		v[i] = json_incref(json_array_get(all, i));
	json_decref(all);
	/* qsort is not stable; equal timestamps keep file order by index. */
	qsort(v, m, sizeof *v, by_time);
	json_t *sorted = json_array();
	for (size_t i = 0; i < m; i++)
		json_array_append_new(sorted, v[i]);
	free(v);
	return json_pack("{s:o,s:s}", "traceEvents", sorted, "displayTimeUnit", "ms");
}

const char *stall_kind_name(enum stall_kind k)
{
	static const char *const names[STALL_KINDS] = {
		[STALL_STEP] = "decode step",
		[STALL_STEP_PREFILL] = "decode step with local prefill",
		[STALL_SEND] = "sampling and sending tokens",
		[STALL_KV] = "KV ingest",
		[STALL_CONTROL] = "router messages",
		[STALL_REPORT] = "load reports",
		[STALL_IDLE] = "idle, waiting for messages",
		[STALL_UNTRACED] = "untraced (off-CPU, between events)",
	};
	return k < STALL_KINDS ? names[k] : "?";
}

struct span {
	double t0, t1; /* seconds, wall clock */
	enum stall_kind kind;
};

static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;
	return x->t0 < y->t0 ? -1 : x->t0 > y->t0;
}

static int gap_cmp(const void *a, const void *b)
{
	const struct stall_gap *x = a, *y = b;
	double dx = x->t1 - x->t0, dy = y->t1 - y->t0;
	return dx > dy ? -1 : dx < dy; /* longest first */
}

static int kind_of(json_t *e, enum stall_kind *k)
{
	const char *name = json_string_value(json_object_get(e, "name"));
	if (!name)
		return -1;
	if (!strcmp(name, "step")) {
		json_t *pt = json_object_get(json_object_get(e, "args"), "prefill_tokens");
		*k = json_integer_value(pt) > 0 ? STALL_STEP_PREFILL : STALL_STEP;
	} else if (!strcmp(name, "sample+send")) {
		*k = STALL_SEND;
	} else if (!strcmp(name, "kv write") || !strcmp(name, "kv event")) {
		*k = STALL_KV;
	} else if (!strcmp(name, "control")) {
		*k = STALL_CONTROL;
	} else if (!strcmp(name, "load report")) {
		*k = STALL_REPORT;
	} else if (!strcmp(name, "idle")) {
		*k = STALL_IDLE;
	} else {
		return -1;
	}
	return 0;
}

/* One decode node's main thread, its spans sorted by start. */
struct node_spans {
	char name[64];
	json_int_t pid, tid;
	struct span *sp;
	int n;
};

/* A request the router placed, and on which decode node. */
struct placed {
	unsigned long long request;
	int node;
	int seq; /* order in the trace */
};

static int placed_cmp(const void *a, const void *b)
{
	const struct placed *x = a, *y = b;
	if (x->request != y->request)
		return x->request < y->request ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

static int request_cmp(const void *a, const void *b)
{
	const struct placed *x = a, *y = b;
	return x->request < y->request ? -1 : x->request > y->request;
}

json_t *tracefile_events(json_t *trace)
{
	json_t *ev = json_is_array(trace) ? trace : json_object_get(trace, "traceEvents");
	return json_is_array(ev) ? ev : NULL;
}

const char *tracefile_meta_name(json_t *e, const char *what)
{
	const char *ph = json_string_value(json_object_get(e, "ph"));
	const char *nm = json_string_value(json_object_get(e, "name"));
	if (!ph || strcmp(ph, "M") || !nm || strcmp(nm, what))
		return NULL;
	return json_string_value(json_object_get(json_object_get(e, "args"), "name"));
}

/* The processes that wrote events of the decode category (a decode
 * node's name is whatever it was given: decode-0 from duet up, d0 on the
 * five-host cluster), in one pass: at most cap pids into pids, their
 * count returned (one past STALL_MAX_NODES already says there are too
 * many). */
static int decode_pids(json_t *ev, json_int_t *pids, int cap)
{
	int n = 0;
	for (size_t i = 0; i < json_array_size(ev) && n < cap; i++) {
		json_t *e = json_array_get(ev, i);
		const char *cat = json_string_value(json_object_get(e, "cat"));
		if (!cat || strcmp(cat, "decode"))
			continue;
		json_int_t pid = json_integer_value(json_object_get(e, "pid"));
		int k = 0;
		while (k < n && pids[k] != pid)
			k++;
		if (k == n)
			pids[n++] = pid;
	}
	return n;
}

static int pid_in(const json_int_t *pids, int n, json_int_t pid)
{
	for (int k = 0; k < n; k++)
		if (pids[k] == pid)
			return 1;
	return 0;
}

/* The decode nodes to attribute to (node, or every process named decode*
 * or with decode events), with the spans of their main threads. */
static int find_nodes(json_t *ev, const char *node, struct node_spans *nodes, int *n_nodes,
		      struct duet_err *err)
{
	int n = 0;
	json_int_t dpids[STALL_MAX_NODES + 1];
	int n_dpids = node ? 0 : decode_pids(ev, dpids, STALL_MAX_NODES + 1);
	for (size_t i = 0; i < json_array_size(ev); i++) {
		json_t *e = json_array_get(ev, i);
		const char *pn = tracefile_meta_name(e, "process_name");
		if (!pn || (node ? strcmp(pn, node) != 0
				 : strncmp(pn, "decode", 6) != 0 &&
					   !pid_in(dpids, n_dpids, json_integer_value(json_object_get(e, "pid")))))
			continue;
		if (n == STALL_MAX_NODES)
			return duet_errf(err, "stalls: more than %d decode nodes", STALL_MAX_NODES);
		memset(&nodes[n], 0, sizeof nodes[n]);
		snprintf(nodes[n].name, sizeof nodes[n].name, "%s", pn);
		nodes[n].pid = json_integer_value(json_object_get(e, "pid"));
		nodes[n].tid = -1;
		n++;
	}
	*n_nodes = n;
	if (!n)
		return node ? duet_errf(err, "stalls: no process named %s in the trace", node)
			    : duet_errf(err, "stalls: no decode node's events in the trace");
	for (size_t i = 0; i < json_array_size(ev); i++) {
		json_t *e = json_array_get(ev, i);
		const char *tn = tracefile_meta_name(e, "thread_name");
		if (!tn || strcmp(tn, "main"))
			continue;
		json_int_t pid = json_integer_value(json_object_get(e, "pid"));
		for (int k = 0; k < n; k++)
			if (nodes[k].pid == pid)
				nodes[k].tid = json_integer_value(json_object_get(e, "tid"));
	}
	for (int k = 0; k < n; k++) {
		if (nodes[k].tid < 0)
			return duet_errf(err, "stalls: process %s has no main thread in the trace",
					 nodes[k].name);
		nodes[k].sp = malloc(sizeof(struct span) * (json_array_size(ev) + 1));
		if (!nodes[k].sp)
			return duet_errf(err, "stalls: out of memory");
	}
	for (size_t i = 0; i < json_array_size(ev); i++) {
		json_t *e = json_array_get(ev, i);
		const char *ph = json_string_value(json_object_get(e, "ph"));
		enum stall_kind kind;
		if (!ph || strcmp(ph, "X") || kind_of(e, &kind))
			continue;
		json_int_t pid = json_integer_value(json_object_get(e, "pid"));
		json_int_t tid = json_integer_value(json_object_get(e, "tid"));
		double ts = num(e, "ts"), dur = num(e, "dur");
		if (isnan(ts) || isnan(dur))
			continue;
		for (int k = 0; k < n; k++)
			if (nodes[k].pid == pid && nodes[k].tid == tid)
				nodes[k].sp[nodes[k].n++] = (struct span){ts * 1e-6, (ts + dur) * 1e-6, kind};
	}
	for (int k = 0; k < n; k++)
		qsort(nodes[k].sp, (size_t)nodes[k].n, sizeof(struct span), span_cmp);
	return 0;
}

/* The router's placements: request id -> index into nodes (the last
 * placement wins: a request that failed over ended where it was placed
 * last). Sorted by request. */
static struct placed *placements(json_t *ev, const struct node_spans *nodes, int n_nodes,
				 int *n_out)
{
	struct placed *pl = malloc(sizeof *pl * (json_array_size(ev) + 1));
	int n = 0;
	if (!pl)
		return NULL;
	for (size_t i = 0; i < json_array_size(ev); i++) {
		json_t *e = json_array_get(ev, i);
		const char *nm = json_string_value(json_object_get(e, "name"));
		if (!nm || strcmp(nm, "place"))
			continue;
		json_t *args = json_object_get(e, "args");
		const char *dn = json_string_value(json_object_get(args, "decode"));
		json_t *rq = json_object_get(args, "request");
		if (!dn || !json_is_integer(rq))
			continue;
		for (int k = 0; k < n_nodes; k++)
			if (!strcmp(nodes[k].name, dn)) {
				pl[n] = (struct placed){(unsigned long long)json_integer_value(rq), k, n};
				n++;
			}
	}
	qsort(pl, (size_t)n, sizeof *pl, placed_cmp);
	int m = 0; /* the last placement of each request */
	for (int i = 0; i < n; i++) {
		if (i + 1 < n && pl[i + 1].request == pl[i].request)
			continue;
		pl[m++] = pl[i];
	}
	*n_out = m;
	return pl;
}

static int node_of(const struct stall_gap *g, const struct placed *pl, int n_pl, int n_nodes,
		   int fixed)
{
	if (fixed || n_nodes == 1)
		return 0;
	struct placed key = {g->request, 0, 0};
	const struct placed *p = g->request ? bsearch(&key, pl, (size_t)n_pl, sizeof *pl, request_cmp)
					     : NULL;
	return p ? p->node : -1;
}

static void attribute(const struct node_spans *ns, double a, double b, struct stall_report *out,
		      double *steps_s)
{
	const struct span *sp = ns->sp;
	double covered = 0;
	/* Spans of the main thread do not overlap: the first that ends after
	 * a is found by bisection on start times. */
	int lo = 0, hi = ns->n;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (sp[mid].t1 <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (int i = lo; i < ns->n && sp[i].t0 < b; i++) {
		double o = fmin(b, sp[i].t1) - fmax(a, sp[i].t0);
		if (o <= 0)
			continue;
		out->seconds[sp[i].kind] += o;
		covered += o;
		if (sp[i].kind == STALL_STEP || sp[i].kind == STALL_STEP_PREFILL) {
			*steps_s += sp[i].t1 - sp[i].t0;
			out->steps++;
		}
	}
	out->seconds[STALL_UNTRACED] += fmax(0, (b - a) - covered);
}

int tracefile_stalls(json_t *merged, const char *node, struct stall_gap *gaps, int n,
		     double top_pct, struct stall_report *out, struct duet_err *err)
{
	memset(out, 0, sizeof *out);
	json_t *ev = tracefile_events(merged);
	if (!ev)
		return duet_errf(err, "stalls: not a trace");
	if (n < 1)
		return duet_errf(err, "stalls: no token gaps to attribute");
	struct node_spans nodes[STALL_MAX_NODES];
	int n_nodes = 0, n_pl = 0, rc = -1;
	struct placed *pl = NULL;
	if (find_nodes(ev, node, nodes, &n_nodes, err))
		goto out;
	if (!(pl = placements(ev, nodes, n_nodes, &n_pl))) {
		duet_errf(err, "stalls: out of memory");
		goto out;
	}
	for (int k = 0; k < n_nodes; k++)
		snprintf(out->node + strlen(out->node), sizeof out->node - strlen(out->node), "%s%s",
			 k ? "," : "", nodes[k].name);
	qsort(gaps, (size_t)n, sizeof *gaps, gap_cmp);
	int worst = (int)ceil((double)n * top_pct / 100.0);
	worst = worst < 1 ? 1 : worst > n ? n : worst;
	out->n_gaps = n;
	out->n_worst = worst;
	out->threshold_s = gaps[worst - 1].t1 - gaps[worst - 1].t0;
	double steps_s = 0;
	for (int g = 0; g < worst; g++) {
		out->worst_mean_s += (gaps[g].t1 - gaps[g].t0) / worst;
		int k = node_of(&gaps[g], pl, n_pl, n_nodes, node != NULL);
		if (k < 0)
			out->n_unplaced++;
		else
			attribute(&nodes[k], gaps[g].t0, gaps[g].t1, out, &steps_s);
	}
	out->steps_mean_ms = out->steps ? 1e3 * steps_s / out->steps : 0;
	rc = 0;
out:
	for (int k = 0; k < n_nodes; k++)
		free(nodes[k].sp);
	free(pl);
	return rc;
}

/* requests.csv's server_id column, as the router's request ids (cmpl-N,
 * chatcmpl-N); 0 where there is none. ids[i] for replay request i. */
static int read_request_ids(const char *dir, unsigned long long **out, int *n_out,
			    struct duet_err *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/requests.csv", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return duet_errf(err, "%s: %s", path, strerror(errno));
	char line[1024];
	unsigned long long *ids = NULL;
	int n = 0, cap = 0, header = 1;
	while (fgets(line, sizeof line, f)) {
		if (header) {
			header = 0;
			continue;
		}
		long id = strtol(line, NULL, 10);
		char *last = strrchr(line, ',');
		char *dash = last ? strrchr(last, '-') : NULL;
		unsigned long long rq = dash ? strtoull(dash + 1, NULL, 10) : 0;
		if (id < 0 || id > (1L << 30))
			continue;
		if (id >= cap) {
			int old = cap;
			unsigned long long *p = duet_grow(ids, &cap, (int)id + 1, sizeof *p, 1024);
			if (!p) {
				fclose(f);
				free(ids);
				return duet_errf(err, "%s: out of memory", path);
			}
			memset(p + old, 0, sizeof *p * (size_t)(cap - old));
			ids = p;
		}
		ids[id] = rq;
		if (id >= n)
			n = (int)id + 1;
	}
	fclose(f);
	*out = ids;
	*n_out = n;
	return 0;
}

/* tokens.csv: "id,index,t_s" rows; gaps between consecutive tokens of a
 * request, in wall-clock seconds. */
static int read_gaps(const char *dir, double start_s, const unsigned long long *ids, int n_ids,
		     struct stall_gap **out, int *n, struct duet_err *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/tokens.csv", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return duet_errf(err, "%s: %s", path, strerror(errno));
	char line[256];
	struct stall_gap *g = NULL;
	int cap = 0, k = 0;
	long prev_id = -1;
	double prev_t = 0;
	int header = 1;
	while (fgets(line, sizeof line, f)) {
		if (header) {
			header = 0;
			continue;
		}
		long id, idx;
		double t;
		if (sscanf(line, "%ld,%ld,%lf", &id, &idx, &t) != 3) {
			fclose(f);
			free(g);
			return duet_errf(err, "%s: bad row '%.40s'", path, line);
		}
		if (id == prev_id && idx > 0) {
			struct stall_gap *p = duet_grow(g, &cap, k + 1, sizeof *g, 1024);
			if (!p) {
				fclose(f);
				free(g);
				return duet_errf(err, "%s: out of memory", path);
			}
			g = p;
			g[k++] = (struct stall_gap){start_s + prev_t, start_s + t,
						    id < n_ids ? ids[id] : 0};
		}
		prev_id = id;
		prev_t = t;
	}
	fclose(f);
	*out = g;
	*n = k;
	return 0;
}

int tracefile_stalls_for_replay(const char *dir, const char *const *traces, int n_traces,
				const char *node, double top_pct, FILE *f, struct duet_err *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/summary.json", dir);
	json_error_t je;
	json_t *sum = json_load_file(path, 0, &je);
	if (!sum)
		return duet_errf(err, "%s: %s", path, je.text);
	json_t *st = json_object_get(sum, "start_unix_us");
	double start_s = json_is_integer(st) ? (double)json_integer_value(st) * 1e-6 : NAN;
	json_decref(sum);
	if (isnan(start_s))
		return duet_errf(err, "%s: no start_unix_us (a replay of an older duet?)", path);
	struct stall_gap *gaps = NULL;
	unsigned long long *ids = NULL;
	int n = 0, n_ids = 0;
	if (read_request_ids(dir, &ids, &n_ids, err))
		return -1;
	if (read_gaps(dir, start_s, ids, n_ids, &gaps, &n, err)) {
		free(ids);
		return -1;
	}
	free(ids);
	json_t *merged = tracefile_merge(traces, n_traces, err);
	struct stall_report r;
	int rc = -1;
	if (!merged || tracefile_stalls(merged, node, gaps, n, top_pct, &r, err))
		goto out;
	double total = 0; /* the attributed gaps' time */
	for (int k = 0; k < STALL_KINDS; k++)
		total += r.seconds[k];
	int placed = r.n_worst - r.n_unplaced;
	fprintf(f,
		"stalls: the worst %.3g%% of %d token gaps (%d, >= %.1f ms, mean %.1f ms) on %s; "
		"%d decode steps overlap them, mean %.1f ms%s:\n",
		top_pct, r.n_gaps, r.n_worst, r.threshold_s * 1e3, r.worst_mean_s * 1e3, r.node,
		r.steps, r.steps_mean_ms, r.n_unplaced ? " (some on no known node)" : "");
	if (r.n_unplaced)
		fprintf(f, "  %d of the gaps belong to requests the router's trace did not place "
			   "(give its trace file too)\n", r.n_unplaced);
	json_t *kinds = json_object();
	for (int k = 0; k < STALL_KINDS; k++) {
		double share = total > 0 ? r.seconds[k] / total : 0;
		if (r.seconds[k] > 0)
			fprintf(f, "  %-40s %5.1f%%  (%.1f ms per gap)\n", stall_kind_name(k),
				100 * share, placed ? 1e3 * r.seconds[k] / placed : 0);
		json_object_set_new(kinds, stall_kind_name(k),
				    json_pack("{s:f,s:f}", "share", share, "ms_per_gap",
					      placed ? 1e3 * r.seconds[k] / placed : 0));
	}
	json_t *j = json_pack("{s:s,s:i,s:i,s:i,s:f,s:f,s:f,s:i,s:f,s:o}", "node", r.node, "gaps",
			      r.n_gaps, "worst", r.n_worst, "unplaced", r.n_unplaced, "top_pct", top_pct,
			      "threshold_ms",
			      r.threshold_s * 1e3, "worst_mean_ms", r.worst_mean_s * 1e3,
			      "steps_overlapping", r.steps, "steps_mean_ms", r.steps_mean_ms, "kinds",
			      kinds);
	snprintf(path, sizeof path, "%s/stalls.json", dir);
	if (!j || json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS)) {
		duet_errf(err, "%s: write failed", path);
		json_decref(j);
		goto out;
	}
	json_decref(j);
	rc = 0;
out:
	json_decref(merged);
	free(gaps);
	return rc;
}
