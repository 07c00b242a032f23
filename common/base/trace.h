/* Chrome trace-event files (the JSON array format that Perfetto and
 * chrome://tracing open): what a daemon spent its time on, span by span.
 *
 * One file per process, opened once (--trace FILE); events are written
 * one per line as they end, so a file cut short by a crash still reads
 * (the array's closing bracket is the only thing missing, which both
 * viewers and `duet trace merge` accept). Timestamps are wall-clock
 * microseconds (CLOCK_REALTIME, mapped from the monotonic clock once at
 * open), so the files of the router and of every node, on one machine or
 * on NTP-synchronized ones, merge into one timeline.
 *
 * Callers time spans with duet_now_us() (base/clock.h) and hand both ends
 * here; nothing is written, and nothing costs more than a branch, while
 * no file is open. Thread-safe. */
#ifndef DUET_TRACE_H
#define DUET_TRACE_H

#include <stddef.h>

#include "base/err.h"

/* Opens path for writing (truncating it) and names this process in it
 * (process is shown as the track's name, e.g. "decode-0"). */
int duet_trace_open(const char *path, const char *process, struct duet_err *err);
/* Writes what is buffered and the closing bracket; safe without open. */
void duet_trace_close(void);
/* 1 while a file is open: guards work done only for an event's args. */
int duet_trace_on(void);
/* Pushes buffered events to the file (the daemons call it at every load
 * report, so a killed process loses at most one interval). */
void duet_trace_flush(void);
/* Names the calling thread's track. */
void duet_trace_thread(const char *name);

/* s as the inside of a JSON string (quotes, backslashes and control bytes
 * escaped), truncated to fit cap: for names that came from outside. */
void duet_trace_escape(const char *s, char *out, size_t cap);

/* A complete span ("ph":"X") of category cat from t0_us to t1_us
 * (duet_now_us() values). args_fmt (may be NULL) is printf-formatted into
 * the body of the event's args object, e.g. "\"batch\":%d,\"tokens\":%d":
 * callers format numbers and names they have checked, never raw input. */
void duet_trace_span(const char *cat, const char *name, long long t0_us, long long t1_us,
		     const char *args_fmt, ...) __attribute__((format(printf, 5, 6)));
/* An instant event ("ph":"i", thread scope) at t_us. */
void duet_trace_instant(const char *cat, const char *name, long long t_us, const char *args_fmt,
			...) __attribute__((format(printf, 4, 5)));
/* A counter track ("ph":"C") named name with one series. */
void duet_trace_counter(const char *name, long long t_us, const char *series, double value);

/* The wall-clock microseconds of a duet_now_us() value, as the events
 * carry it (for tools lining a trace up with their own measurements). */
long long duet_trace_wall_us(long long mono_us);

#endif
