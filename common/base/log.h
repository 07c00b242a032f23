/* Daemon logging: to journald with structured fields (DUET_NODE,
 * DUET_REQUEST_ID, PRIORITY) when stderr is connected to the journal (as
 * systemd sets JOURNAL_STREAM), else one line per message on stderr. */
#ifndef DUET_LOG_H
#define DUET_LOG_H

#include <stdint.h>

enum duet_log_level {
	DUET_LOG_ERR = 3,
	DUET_LOG_WARN = 4,
	DUET_LOG_INFO = 6,
	DUET_LOG_DEBUG = 7,
}; /* syslog priorities */

/* node: name put on every message; level: the most verbose one shown. */
void duet_log_init(const char *node, enum duet_log_level level);
/* Parses "error", "warning", "info", "debug". */
int duet_log_level_parse(const char *s, enum duet_log_level *out);
/* 1 when messages go to journald. */
int duet_log_to_journal(void);
/* request 0 means the message concerns no request. */
void duet_log(enum duet_log_level level, uint64_t request, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
