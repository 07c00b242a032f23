#include "base/trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

#define TRACE_ARGS_MAX 512 /* bytes of one event's args */
#define TRACE_NAME_MAX 128 /* bytes of a process or thread name, escaped */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static FILE *g_f;
static atomic_int g_on;
static int g_pid, g_events;
static long long g_wall_minus_mono;

static int tid(void)
{
	return (int)syscall(SYS_gettid);
}

long long duet_trace_wall_us(long long mono_us)
{
	return mono_us + g_wall_minus_mono;
}

void duet_trace_escape(const char *s, char *out, size_t cap)
{
	size_t o = 0;
	for (; *s && o + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			o += (size_t)snprintf(out + o, cap - o, "\\%c", c);
		else if (c < 0x20)
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = 0;
}

/* One event line; g_mu held. */
static void put(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void put(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(g_events++ ? ",\n" : "\n", g_f);
	vfprintf(g_f, fmt, ap);
	va_end(ap);
}

static void meta(const char *what, int thread, const char *name)
{
	char esc[TRACE_NAME_MAX];
	duet_trace_escape(name, esc, sizeof esc);
	put("{\"ph\":\"M\",\"name\":\"%s\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"%s\"}}", what,
	    g_pid, thread, esc);
}

int duet_trace_open(const char *path, const char *process, struct duet_err *err)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return duet_errf(err, "trace file %s: %s", path, strerror(errno));
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	long long mono = duet_now_us();
	pthread_mutex_lock(&g_mu);
	if (g_f)
		fclose(g_f);
	g_f = f;
	g_events = 0;
	g_pid = (int)getpid();
	g_wall_minus_mono = (long long)rt.tv_sec * 1000000LL + rt.tv_nsec / 1000 - mono;
	fputc('[', g_f);
	meta("process_name", tid(), process);
	meta("thread_name", tid(), "main");
	pthread_mutex_unlock(&g_mu);
	atomic_store(&g_on, 1);
	return 0;
}

void duet_trace_close(void)
{
	atomic_store(&g_on, 0);
	pthread_mutex_lock(&g_mu);
	if (g_f) {
		fputs("\n]\n", g_f);
		fclose(g_f);
		g_f = NULL;
	}
	pthread_mutex_unlock(&g_mu);
}

int duet_trace_on(void)
{
	return atomic_load_explicit(&g_on, memory_order_relaxed);
}

void duet_trace_flush(void)
{
	if (!duet_trace_on())
		return;
	pthread_mutex_lock(&g_mu);
	if (g_f)
		fflush(g_f);
	pthread_mutex_unlock(&g_mu);
}

void duet_trace_thread(const char *name)
{
	if (!duet_trace_on())
		return;
	pthread_mutex_lock(&g_mu);
	if (g_f)
		meta("thread_name", tid(), name);
	pthread_mutex_unlock(&g_mu);
}

/* A span (ph X, with dur) or an instant (ph i, dur < 0): the two differ
 * only in those fields. */
static void event(const char *cat, const char *name, long long t_us, long long dur,
		  const char *args_fmt, va_list ap)
{
	char args[TRACE_ARGS_MAX] = "";
	if (args_fmt)
		vsnprintf(args, sizeof args, args_fmt, ap);
	char kind[48];
	if (dur >= 0)
		snprintf(kind, sizeof kind, "\"ph\":\"X\",\"dur\":%lld", dur);
	else
		snprintf(kind, sizeof kind, "\"ph\":\"i\",\"s\":\"t\"");
	pthread_mutex_lock(&g_mu);
	if (g_f)
		put("{%s,\"cat\":\"%s\",\"name\":\"%s\",\"pid\":%d,\"tid\":%d,\"ts\":%lld,"
		    "\"args\":{%s}}",
		    kind, cat, name, g_pid, tid(), duet_trace_wall_us(t_us), args);
	pthread_mutex_unlock(&g_mu);
}

void duet_trace_span(const char *cat, const char *name, long long t0_us, long long t1_us,
		     const char *args_fmt, ...)
{
	if (!duet_trace_on())
		return;
	va_list ap;
	va_start(ap, args_fmt);
	event(cat, name, t0_us, t1_us > t0_us ? t1_us - t0_us : 0, args_fmt, ap);
	va_end(ap);
}

void duet_trace_instant(const char *cat, const char *name, long long t_us, const char *args_fmt,
			...)
{
	if (!duet_trace_on())
		return;
	va_list ap;
	va_start(ap, args_fmt);
	event(cat, name, t_us, -1, args_fmt, ap);
	va_end(ap);
}

void duet_trace_counter(const char *name, long long t_us, const char *series, double value)
{
	if (!duet_trace_on())
		return;
	pthread_mutex_lock(&g_mu);
	if (g_f)
		put("{\"ph\":\"C\",\"name\":\"%s\",\"pid\":%d,\"tid\":%d,\"ts\":%lld,"
		    "\"args\":{\"%s\":%.6g}}",
		    name, g_pid, tid(), duet_trace_wall_us(t_us), series, value);
	pthread_mutex_unlock(&g_mu);
}
