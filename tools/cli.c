#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mapfile.h"

int cli_int(const char *flag, const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < lo || v > hi) {
		fprintf(stderr, "duet: %s expects an integer from %ld to %ld, got '%s'\n", flag, lo,
			hi, s);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_weights(const char *flag, const char *s, enum duet_weights *out)
{
	if (duet_weights_parse(s, out)) {
		fprintf(stderr, "duet: %s expects hugepages, copy or mmap, got '%s'\n", flag, s);
		return -1;
	}
	return 0;
}

int cli_qdot(const char *flag, const char *s, enum duet_qdot *out)
{
	if (duet_qdot_parse(s, out)) {
		fprintf(stderr, "duet: %s expects int8 or exact, got '%s'\n", flag, s);
		return -1;
	}
	return 0;
}

int cli_kv_dtype(const char *flag, const char *s, enum duet_kv_dtype *out)
{
	if (duet_kv_dtype_parse(s, out)) {
		fprintf(stderr, "duet: %s expects f16, int8 or f32, got '%s'\n", flag, s);
		return -1;
	}
	return 0;
}

void cli_weights_note(const char *cmd, enum duet_weights asked, const struct duet_model *m)
{
	if (asked != m->weights)
		fprintf(stderr, "duet %s: weights in %s, not %s: %s\n", cmd,
			duet_weights_name(m->weights), duet_weights_name(asked), m->weights_note);
}

int cli_float(const char *flag, const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi) {
		fprintf(stderr, "duet: %s expects a number from %g to %g, got '%s'\n", flag, lo, hi,
			s);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_u64(const char *flag, const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (!*s || *end || errno || *s == '-') {
		fprintf(stderr, "duet: %s expects a non-negative integer, got '%s'\n", flag, s);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_fail(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "duet %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

void cli_progress_init(struct cli_progress *p, const char *what)
{
	p->what = what;
	p->last = 0;
	p->tty = isatty(STDERR_FILENO);
}

void cli_progress_update(struct cli_progress *p, double done, double total, const char *unit)
{
	if (!p->tty)
		return;
	double now = duet_now_s();
	if (now - p->last < 0.1 && done < total)
		return;
	p->last = now;
	int width = 30, fill = total > 0 ? (int)(width * done / total) : 0;
	fprintf(stderr, "\r%s [", p->what);
	for (int i = 0; i < width; i++)
		fputc(i < fill ? '#' : '.', stderr);
	fprintf(stderr, "] %.1f/%.1f %s ", done, total, unit);
	fflush(stderr);
}

void cli_progress_end(struct cli_progress *p)
{
	if (p->tty)
		fprintf(stderr, "\r\033[K");
}

int cli_mkdirs(const char *path, struct duet_err *err)
{
	char p[4096];
	snprintf(p, sizeof p, "%s", path);
	for (char *s = p + 1;; s++) {
		if (*s == '/' || !*s) {
			char c = *s;
			*s = 0;
			if (mkdir(p, 0755) && errno != EEXIST)
				return duet_errnof(err, "cannot create %s", p);
			*s = c;
			if (!c)
				return 0;
		}
	}
}

char *cli_read_file(const char *path, size_t max, size_t *n)
{
	struct duet_err err;
	void *map;
	size_t size;
	if (duet_map_file(path, &map, &size, &err)) {
		fprintf(stderr, "duet: %s\n", err.msg);
		return NULL;
	}
	char *t = size <= max ? malloc(size + 1) : NULL;
	if (t) {
		memcpy(t, map, size);
		t[size] = 0;
		*n = size;
	} else {
		fprintf(stderr, "duet: %s: %s\n", path,
			size > max ? "larger than the limit" : "out of memory");
	}
	duet_unmap_file(map, size);
	return t;
}
