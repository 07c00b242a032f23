#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <time.h>

#define LOG_LINE_MAX 1024

static char g_node[64] = "duet";
static enum duet_log_level g_level = DUET_LOG_INFO;
static int g_journal;

/* systemd sets JOURNAL_STREAM=dev:ino of the stream it gave us; if stderr
 * is still that stream, structured entries can go to the journal. */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &st))
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void duet_log_init(const char *node, enum duet_log_level level)
{
	snprintf(g_node, sizeof g_node, "%s", node);
	g_level = level;
	g_journal = stderr_is_journal();
}

int duet_log_to_journal(void)
{
	return g_journal;
}

int duet_log_level_parse(const char *s, enum duet_log_level *out)
{
	static const struct {
		const char *name;
		enum duet_log_level l;
	} t[] = {{"error", DUET_LOG_ERR}, {"warning", DUET_LOG_WARN},
		 {"info", DUET_LOG_INFO}, {"debug", DUET_LOG_DEBUG}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (strcmp(s, t[i].name) == 0)
			return *out = t[i].l, 0;
	return -1;
}

void duet_log(enum duet_log_level level, uint64_t request, const char *fmt, ...)
{
	if (level > g_level)
		return;
	char msg[LOG_LINE_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (g_journal) {
		if (request)
			sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", (int)level,
					"DUET_NODE=%s", g_node, "DUET_REQUEST_ID=%llu",
					(unsigned long long)request, NULL);
		else
			sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", (int)level,
					"DUET_NODE=%s", g_node, NULL);
		return;
	}
	static const char *const names[] = {[DUET_LOG_ERR] = "error", [DUET_LOG_WARN] = "warning",
					    [DUET_LOG_INFO] = "info", [DUET_LOG_DEBUG] = "debug"};
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	localtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof when, "%H:%M:%S", &tm);
	if (request)
		fprintf(stderr, "%s.%03ld %s %s: [req %llu] %s\n", when, ts.tv_nsec / 1000000,
			g_node, names[level] ? names[level] : "log", (unsigned long long)request,
			msg);
	else
		fprintf(stderr, "%s.%03ld %s %s: %s\n", when, ts.tv_nsec / 1000000, g_node,
			names[level] ? names[level] : "log", msg);
}
