/* The systemd notify protocol (sd_notify): READY=1, STATUS=, WATCHDOG=1 and
 * STOPPING=1. Outside systemd (no NOTIFY_SOCKET) every call does nothing. */
#ifndef DUET_NOTIFY_H
#define DUET_NOTIFY_H

/* Reads WATCHDOG_USEC once; call at start. */
void duet_notify_init(void);
void duet_notify_ready(const char *status);
void duet_notify_status(const char *status);
/* Sends WATCHDOG=1 if the unit asked for it and half its interval has
 * passed since the last one; call from the main loop. */
void duet_notify_watchdog(long long now_us);
/* max_ms, or less if the next WATCHDOG=1 is due sooner: a main loop must
 * not sleep past its ping. */
int duet_notify_wait_ms(long long now_us, int max_ms);
void duet_notify_stopping(void);

#endif
