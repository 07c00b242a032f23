#include "base/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int duet_errf(struct duet_err *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	return -1;
}

int duet_errnof(struct duet_err *err, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof err->msg)
		snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s",
			 strerror(saved));
	return -1;
}

int duet_err_prefix(struct duet_err *err, const char *fmt, ...)
{
	char old[DUET_ERR_MAX];
	memcpy(old, err->msg, sizeof old);
	old[sizeof old - 1] = 0;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	/* Messages are one line; what does not fit is cut off. */
	size_t used = n < 0 ? 0 : (size_t)n < sizeof err->msg ? (size_t)n : sizeof err->msg - 1;
	size_t room = sizeof err->msg - 1 - used;
	const char *sep = ": ";
	size_t sl = room < 2 ? room : 2;
	memcpy(err->msg + used, sep, sl);
	used += sl;
	room -= sl;
	size_t ol = strlen(old);
	if (ol > room)
		ol = room;
	memcpy(err->msg + used, old, ol);
	err->msg[used + ol] = 0;
	return -1;
}
