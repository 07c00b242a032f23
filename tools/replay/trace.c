#include "replay/trace.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/grow.h"

#define AZURE_HEADER "TIMESTAMP,ContextTokens,GeneratedTokens"
#define CSV_COLUMNS 3

const char *trace_format_name(enum trace_format f)
{
	switch (f) {
	case TRACE_AZURE: return "azure";
	case TRACE_MOONCAKE: return "mooncake";
	case TRACE_PLAIN: return "csv";
	default: return "auto";
	}
}

int trace_format_parse(const char *s, enum trace_format *out)
{
	static const enum trace_format all[] = {TRACE_AUTO, TRACE_AZURE, TRACE_MOONCAKE, TRACE_PLAIN};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (!strcmp(s, trace_format_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	return -1;
}

/* State while reading one file. */
struct reader {
	const char *name;
	long line;
	enum trace_format fmt;
	int header_done;
	long long sec0; /* Azure: first row's whole seconds and fraction */
	double frac0, first;
	struct trace *t;
	int cap;
};

static int row_err(struct reader *r, struct duet_err *err, const char *fmt, const char *what)
{
	return duet_errf(err, "%s:%ld: %s%s", r->name, r->line, fmt, what);
}

/* A whole field as an integer in [lo, hi]. */
static int parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	while (*s == ' ')
		s++;
	if (!isdigit((unsigned char)*s) && *s != '-')
		return -1;
	errno = 0;
	long v = strtol(s, &end, 10);
	while (*end == ' ')
		end++;
	if (*end || errno || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int parse_num(const char *s, double *out)
{
	char *end;
	while (*s == ' ')
		s++;
	if (!*s)
		return -1;
	errno = 0;
	double v = strtod(s, &end);
	while (*end == ' ')
		end++;
	if (*end || errno || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

/* Splits a CSV line in place; returns the number of fields (quotes are
 * not part of any of these formats). */
static int split_csv(char *s, char **f, int max)
{
	int n = 0;
	for (;;) {
		if (n == max)
			return max + 1;
		f[n++] = s;
		char *c = strchr(s, ',');
		if (!c)
			return n;
		*c = 0;
		s = c + 1;
	}
}

static long days_from_civil(long y, long m, long d)
{
	y -= m <= 2;
	long era = (y >= 0 ? y : y - 399) / 400;
	long yoe = y - era * 400;
	long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DD HH:MM:SS[.fraction]" as whole seconds and a fraction. */
static int parse_timestamp(const char *s, long long *sec, double *frac)
{
	int y, mo, d, h, mi, se, n = 0;
	while (*s == ' ')
		s++;
	if (sscanf(s, "%4d-%2d-%2d %2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6 || n != 19)
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 || y < 1970)
		return -1;
	const char *p = s + n;
	*frac = 0;
	if (*p == '.') {
		double scale = 0.1;
		if (!isdigit((unsigned char)p[1]))
			return -1;
		for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
			*frac += (*p - '0') * scale;
	}
	while (*p == ' ')
		p++;
	if (*p)
		return -1;
	*sec = (long long)days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
	return 0;
}

static int lengths(struct reader *r, const char *p, const char *o, const char *pname,
		   const char *oname, struct trace_req *q, struct duet_err *err)
{
	long v;
	if (parse_int(p, 1, TRACE_MAX_TOKENS, &v))
		return duet_errf(err, "%s:%ld: %s '%s' is not a token count from 1 to %d", r->name,
				 r->line, pname, p, TRACE_MAX_TOKENS);
	q->prompt_tokens = (int)v;
	if (parse_int(o, 1, TRACE_MAX_TOKENS, &v))
		return duet_errf(err, "%s:%ld: %s '%s' is not a token count from 1 to %d", r->name,
				 r->line, oname, o, TRACE_MAX_TOKENS);
	q->output_tokens = (int)v;
	return 0;
}

static int azure_row(struct reader *r, char *line, struct trace_req *q, struct duet_err *err)
{
	if (!r->header_done) {
		if (strcmp(line, AZURE_HEADER))
			return row_err(r, err, "expected the header ", AZURE_HEADER);
		r->header_done = 1;
		return 1;
	}
	char *f[CSV_COLUMNS];
	if (split_csv(line, f, CSV_COLUMNS) != CSV_COLUMNS)
		return row_err(r, err, "expected 3 columns: ", AZURE_HEADER);
	long long sec;
	double frac;
	if (parse_timestamp(f[0], &sec, &frac))
		return duet_errf(err, "%s:%ld: TIMESTAMP '%s' is not YYYY-MM-DD HH:MM:SS[.fraction]",
				 r->name, r->line, f[0]);
	if (r->t->n == 0) {
		r->sec0 = sec;
		r->frac0 = frac;
	}
	q->arrival_s = (double)(sec - r->sec0) + (frac - r->frac0);
	return lengths(r, f[1], f[2], "ContextTokens", "GeneratedTokens", q, err);
}

static int plain_row(struct reader *r, char *line, struct trace_req *q, struct duet_err *err)
{
	char *f[CSV_COLUMNS];
	int n = split_csv(line, f, CSV_COLUMNS);
	double a;
	if (!r->header_done) {
		r->header_done = 1;
		if (n == CSV_COLUMNS && parse_num(f[0], &a))
			return 1; /* a header row names the columns */
	}
	if (n != CSV_COLUMNS)
		return row_err(r, err, "expected 3 columns: ", "arrival_s,prompt_tokens,output_tokens");
	if (parse_num(f[0], &a) || a < 0)
		return duet_errf(err, "%s:%ld: arrival_s '%s' is not a time >= 0 in seconds", r->name,
				 r->line, f[0]);
	q->arrival_s = a;
	return lengths(r, f[1], f[2], "prompt_tokens", "output_tokens", q, err);
}

static int json_count(struct reader *r, json_t *o, const char *key, int *out,
		      struct duet_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > TRACE_MAX_TOKENS)
		return duet_errf(err, "%s:%ld: %s must be a token count from 1 to %d", r->name,
				 r->line, key, TRACE_MAX_TOKENS);
	*out = (int)json_integer_value(v);
	return 0;
}

static int mooncake_row(struct reader *r, char *line, struct trace_req *q, struct duet_err *err)
{
	json_error_t je;
	json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
	if (!o)
		return duet_errf(err, "%s:%ld: not JSON: %s", r->name, r->line, je.text);
	int rc = -1;
	if (!json_is_object(o)) {
		row_err(r, err, "expected a JSON object", "");
		goto out;
	}
	json_t *ts = json_object_get(o, "timestamp");
	if (!json_is_number(ts) || !isfinite(json_number_value(ts)) || json_number_value(ts) < 0) {
		row_err(r, err, "timestamp must be a number of milliseconds >= 0", "");
		goto out;
	}
	q->arrival_s = json_number_value(ts) / 1000.0;
	if (json_count(r, o, "input_length", &q->prompt_tokens, err) ||
	    json_count(r, o, "output_length", &q->output_tokens, err))
		goto out;
	json_t *ids = json_object_get(o, "hash_ids");
	if (ids && !json_is_array(ids)) {
		row_err(r, err, "hash_ids must be an array of block ids", "");
		goto out;
	}
	size_t n = ids ? json_array_size(ids) : 0;
	if (n > (size_t)TRACE_MAX_TOKENS / TRACE_MOONCAKE_BLOCK + 1) {
		row_err(r, err, "too many hash_ids", "");
		goto out;
	}
	if (n) {
		q->hash_ids = malloc(n * sizeof *q->hash_ids);
		if (!q->hash_ids) {
			duet_errf(err, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			json_t *v = json_array_get(ids, i);
			if (!json_is_integer(v) || json_integer_value(v) < 0) {
				duet_errf(err, "%s:%ld: hash_ids[%zu] is not a block id >= 0", r->name,
					  r->line, i);
				free(q->hash_ids);
				q->hash_ids = NULL;
				goto out;
			}
			q->hash_ids[i] = json_integer_value(v);
		}
		q->n_hash = (int)n;
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}

static enum trace_format detect(const char *line)
{
	if (line[0] == '{')
		return TRACE_MOONCAKE;
	if (!strncmp(line, "TIMESTAMP,", 10))
		return TRACE_AZURE;
	return TRACE_PLAIN;
}

static int is_blank(const char *s)
{
	for (; *s; s++)
		if (!isspace((unsigned char)*s))
			return 0;
	return 1;
}

/* One line; 0 = a request was added, 1 = skipped, -1 = error. */
static int add_line(struct reader *r, char *line, struct duet_err *err)
{
	if (is_blank(line) || (r->fmt != TRACE_MOONCAKE && line[0] == '#'))
		return 1;
	if (r->fmt == TRACE_AUTO)
		r->fmt = detect(line);
	struct trace_req *p = duet_grow(r->t->req, &r->cap, r->t->n + 1, sizeof *p, 1024);
	if (!p)
		return duet_errf(err, "%s: out of memory at line %ld", r->name, r->line);
	r->t->req = p;
	struct trace_req *q = &r->t->req[r->t->n];
	memset(q, 0, sizeof *q);
	int rc = r->fmt == TRACE_AZURE	   ? azure_row(r, line, q, err)
		 : r->fmt == TRACE_MOONCAKE ? mooncake_row(r, line, q, err)
					    : plain_row(r, line, q, err);
	if (rc)
		return rc;
	if (r->t->n == 0)
		r->first = q->arrival_s;
	q->arrival_s -= r->first;
	if (r->t->n > 0 && q->arrival_s < r->t->req[r->t->n - 1].arrival_s) {
		free(q->hash_ids);
		return duet_errf(err,
				 "%s:%ld: arrival %.6f s is before the previous row's %.6f s (the trace "
				 "must be sorted by time)",
				 r->name, r->line, q->arrival_s, r->t->req[r->t->n - 1].arrival_s);
	}
	r->t->n++;
	return 0;
}

int trace_read(FILE *f, const char *name, enum trace_format fmt, struct trace *out,
	       struct duet_err *err)
{
	memset(out, 0, sizeof *out);
	struct reader r = {.name = name, .fmt = fmt, .t = out};
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		r.line++;
		if (len > TRACE_MAX_LINE) {
			rc = duet_errf(err, "%s:%ld: line longer than %d bytes", name, r.line,
				       TRACE_MAX_LINE);
			break;
		}
		if ((size_t)len != strlen(line)) {
			rc = duet_errf(err, "%s:%ld: NUL byte in line", name, r.line);
			break;
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (add_line(&r, line, err) < 0) {
			rc = -1;
			break;
		}
	}
	if (!rc && ferror(f))
		rc = duet_errnof(err, "%s: read error", name);
	free(line);
	if (!rc && out->n == 0)
		rc = duet_errf(err, "%s: no requests in the trace", name);
	out->format = r.fmt;
	out->block_tokens = r.fmt == TRACE_MOONCAKE ? TRACE_MOONCAKE_BLOCK : 0;
	if (rc)
		trace_free(out);
	return rc;
}

int trace_load(const char *path, enum trace_format fmt, struct trace *out, struct duet_err *err)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return duet_errnof(err, "%s", path);
	int rc = trace_read(f, path, fmt, out, err);
	fclose(f);
	return rc;
}

void trace_free(struct trace *t)
{
	for (int i = 0; i < t->n; i++)
		free(t->req[i].hash_ids);
	free(t->req);
	memset(t, 0, sizeof *t);
}

int trace_slice(struct trace *t, double start_s, double duration_s, int max_requests,
		struct duet_err *err)
{
	int lo = 0;
	while (lo < t->n && t->req[lo].arrival_s < start_s)
		lo++;
	int hi = lo;
	while (hi < t->n && (max_requests <= 0 || hi - lo < max_requests) &&
	       (duration_s <= 0 || t->req[hi].arrival_s < start_s + duration_s))
		hi++;
	if (hi == lo)
		return duet_errf(err, "no request of the trace's %d arrives in [%g s, %g s)", t->n,
				 start_s, duration_s > 0 ? start_s + duration_s : INFINITY);
	for (int i = 0; i < lo; i++)
		free(t->req[i].hash_ids);
	for (int i = hi; i < t->n; i++)
		free(t->req[i].hash_ids);
	memmove(t->req, t->req + lo, (size_t)(hi - lo) * sizeof *t->req);
	t->n = hi - lo;
	double t0 = t->req[0].arrival_s;
	for (int i = 0; i < t->n; i++)
		t->req[i].arrival_s -= t0;
	return 0;
}

static int scaled(int v, double s)
{
	double x = round(v * s);
	return x < 1 ? 1 : x > TRACE_MAX_TOKENS ? TRACE_MAX_TOKENS : (int)x;
}

int trace_fit(struct trace *t, double prompt_scale, double output_scale, int max_context,
	      struct trace_fit *fit, struct duet_err *err)
{
	if (!(prompt_scale > 0) || !(output_scale > 0))
		return duet_errf(err, "length scales must be > 0 (got %g, %g)", prompt_scale,
				 output_scale);
	if (max_context < 2)
		return duet_errf(err, "max context %d is too small (at least 2 tokens)", max_context);
	memset(fit, 0, sizeof *fit);
	fit->prompt_scale = prompt_scale;
	fit->output_scale = output_scale;
	fit->max_context = max_context;
	if (t->block_tokens)
		t->block_tokens = scaled(t->block_tokens, prompt_scale);
	for (int i = 0; i < t->n; i++) {
		struct trace_req *q = &t->req[i];
		fit->prompt_tokens_before += q->prompt_tokens;
		fit->output_tokens_before += q->output_tokens;
		int p = scaled(q->prompt_tokens, prompt_scale);
		int o = scaled(q->output_tokens, output_scale);
		fit->n_scaled += p != q->prompt_tokens || o != q->output_tokens;
		if (p + (long)o > max_context && o > max_context / 4) {
			o = max_context / 4 > 1 ? max_context / 4 : 1;
			fit->n_output_clipped++;
		}
		if (p + (long)o > max_context) {
			p = max_context - o;
			fit->n_prompt_clipped++;
		}
		q->prompt_tokens = p;
		q->output_tokens = o;
		fit->prompt_tokens_after += p;
		fit->output_tokens_after += o;
	}
	return 0;
}

int trace_rate_scale(const struct trace *t, double rate, double *scale, struct duet_err *err)
{
	double span = t->n ? t->req[t->n - 1].arrival_s : 0;
	if (t->n < 2 || span <= 0)
		return duet_errf(err, "--rate needs a slice of at least 2 requests spread in time");
	*scale = rate / ((t->n - 1) / span);
	return 0;
}
