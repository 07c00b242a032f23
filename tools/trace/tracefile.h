/* The Chrome trace-event files the daemons write (base/trace.h): read
 * back, merged into one timeline, and asked what a decode node was doing
 * during the worst gaps between tokens that a replay measured.
 *
 *   tracefile.c  load, merge, stall attribution
 *   cmd_trace.c  `duet trace merge` and `duet trace stalls`
 */
#ifndef DUET_TRACEFILE_H
#define DUET_TRACEFILE_H

#include <jansson.h>
#include <stdio.h>

#include "base/err.h"

/* The events of one file, a new reference: a JSON array, or an object with
 * a traceEvents array; an array cut short by a killed process (no closing
 * bracket, a trailing comma) is accepted, as the viewers accept it. */
json_t *tracefile_load(const char *path, struct duet_err *err);

/* The events of a trace: events itself if it is an array, else its
 * traceEvents (a merged trace); a borrowed reference, NULL if neither. */
json_t *tracefile_events(json_t *trace);

/* args.name of a metadata event ("ph": "M") named what ("process_name",
 * "thread_name"); NULL for any other event. */
const char *tracefile_meta_name(json_t *e, const char *what);

/* One object {"traceEvents": [...], "displayTimeUnit": "ms"} with the
 * events of every file, metadata first, then by timestamp; a process id
 * that two files share (two machines) is renumbered in the later file. */
json_t *tracefile_merge(const char *const *paths, int n, struct duet_err *err);

/* What the node's main thread was doing in a gap between two tokens. */
enum stall_kind {
	STALL_STEP,	    /* a decode step of running streams only */
	STALL_STEP_PREFILL, /* a decode step carrying a local prefill chunk */
	STALL_SEND,	    /* sampling and sending the step's tokens */
	STALL_KV,	    /* writing KV received from a prefill node */
	STALL_CONTROL,	    /* router messages: reservations, local work, cancels */
	STALL_REPORT,	    /* load reports */
	STALL_IDLE,	    /* waiting for messages */
	STALL_UNTRACED,	    /* none of these: off-CPU, or between events */
	STALL_KINDS
};
const char *stall_kind_name(enum stall_kind k);

/* A token gap in wall-clock seconds: the earlier token's arrival, the
 * later one's; request: the router's id of the request (0: unknown). */
struct stall_gap {
	double t0, t1;
	unsigned long long request;
};

#define STALL_MAX_NODES 16 /* decode nodes told apart in one attribution */

struct stall_report {
	char node[256];	     /* the processes attributed, comma-separated */
	int n_gaps, n_worst; /* gaps given, and the worst ones */
	int n_unplaced;	     /* worst gaps whose decode node is not known (not attributed) */
	double threshold_s;  /* the shortest of the worst */
	double worst_mean_s;
	double seconds[STALL_KINDS]; /* summed over the worst gaps */
	double steps_mean_ms;	     /* decode steps that overlap them */
	int steps;
};

/* Attributes the worst top_pct percent of gaps (at least one) to what the
 * main thread of a decode node spent each moment on, from the events of a
 * merged trace: the process named node if given, else the node the
 * router's trace placed the gap's request on (its last "place" event), or
 * the only process named decode* when there is one. Sorts gaps. */
int tracefile_stalls(json_t *merged, const char *node, struct stall_gap *gaps, int n,
		     double top_pct, struct stall_report *out, struct duet_err *err);

/* The same for a `duet replay` run directory: its token gaps (tokens.csv,
 * placed on the wall clock by summary.json's start_unix_us, each request
 * named by requests.csv's server_id) against the trace files; prints the
 * table to f and writes DIR/stalls.json. */
int tracefile_stalls_for_replay(const char *dir, const char *const *traces, int n_traces,
				const char *node, double top_pct, FILE *f, struct duet_err *err);

#endif
