/* Errors: every fallible libduet function returns 0 on success or -1 on
 * failure and fills a caller-owned struct duet_err with one line that names
 * what was wrong with what (file, field, value). */
#ifndef DUET_ERR_H
#define DUET_ERR_H

#define DUET_ERR_MAX 512

struct duet_err {
	char msg[DUET_ERR_MAX];
};

/* Formats into err->msg and returns -1, so callers can write
 * `return duet_errf(err, ...)`. */
int duet_errf(struct duet_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Like duet_errf but appends ": <strerror(errno)>" for the errno at entry. */
int duet_errnof(struct duet_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Prepends "<prefix>: " to an existing message (for adding context such as
 * a file name on the way up). Returns -1. */
int duet_err_prefix(struct duet_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
