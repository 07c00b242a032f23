/* Request traces for `duet replay`: the Azure LLM inference CSV, Mooncake
 * JSONL with prefix-block hash ids, and a plain CSV. Parsing is strict: a
 * malformed row is an error naming the file, the line and the field. */
#ifndef DUET_TRACE_H
#define DUET_TRACE_H

#include <stdint.h>
#include <stdio.h>

#include "base/err.h"

/* Mooncake's hash ids each stand for this many prompt tokens. */
#define TRACE_MOONCAKE_BLOCK 512
/* Longest accepted line (Mooncake rows list one id per 512 tokens). */
#define TRACE_MAX_LINE (4 << 20)
/* Largest token count accepted in a row. */
#define TRACE_MAX_TOKENS (1 << 24)

enum trace_format { TRACE_AUTO, TRACE_AZURE, TRACE_MOONCAKE, TRACE_PLAIN };

struct trace_req {
	double arrival_s; /* from the trace's first row */
	int prompt_tokens;
	int output_tokens;
	int n_hash;
	int64_t *hash_ids; /* prefix-block ids, NULL when the trace has none */
};

struct trace {
	struct trace_req *req;
	int n;
	enum trace_format format;
	int block_tokens; /* tokens per hash id (0: no ids) */
};

/* What fitting did to the lengths, for the report. */
struct trace_fit {
	double prompt_scale, output_scale;
	int max_context;
	int n_scaled;
	int n_prompt_clipped, n_output_clipped;
	long long prompt_tokens_before, prompt_tokens_after;
	long long output_tokens_before, output_tokens_after;
};

const char *trace_format_name(enum trace_format f);
int trace_format_parse(const char *s, enum trace_format *out);

/* Reads a whole trace; TRACE_AUTO picks the format from the first line
 * (a JSON object: Mooncake; the Azure header: Azure; else plain CSV).
 * `name` is used in messages. The caller frees with trace_free. */
int trace_read(FILE *f, const char *name, enum trace_format fmt, struct trace *out,
	       struct duet_err *err);
int trace_load(const char *path, enum trace_format fmt, struct trace *out, struct duet_err *err);
void trace_free(struct trace *t);

/* Keeps requests with arrival >= start_s, at most max_requests of them (0:
 * all), and, when duration_s > 0, only those arriving before start_s +
 * duration_s; arrivals are then counted from start_s. Errors when nothing
 * is left. */
int trace_slice(struct trace *t, double start_s, double duration_s, int max_requests,
		struct duet_err *err);

/* Scales prompt and output lengths (rounded, at least 1) and the hash
 * block size with the prompt, then clips each request so prompt + output
 * <= max_context: output first to at most max_context / 4 when it alone is
 * too long, then the prompt. Fills *fit. */
int trace_fit(struct trace *t, double prompt_scale, double output_scale, int max_context,
	      struct trace_fit *fit, struct duet_err *err);

/* The arrival-time divisor that makes t's mean rate `rate` requests/s
 * (its first to last arrival); errors for a slice with no span. */
int trace_rate_scale(const struct trace *t, double rate, double *scale, struct duet_err *err);

#endif
