#include "node/notify.h"

#include <stdint.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

static long long g_wd_interval_us; /* half of WATCHDOG_USEC; 0 = off */
static long long g_wd_last_us;

void duet_notify_init(void)
{
	uint64_t usec = 0;
	/* unset_environment = 0: the variables stay for anyone who forks. */
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
		g_wd_interval_us = (long long)(usec / 2);
}

void duet_notify_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void duet_notify_status(const char *status)
{
	sd_notifyf(0, "STATUS=%s", status);
}

void duet_notify_watchdog(long long now_us)
{
	if (!g_wd_interval_us || now_us - g_wd_last_us < g_wd_interval_us)
		return;
	g_wd_last_us = now_us;
	sd_notify(0, "WATCHDOG=1");
}

int duet_notify_wait_ms(long long now_us, int max_ms)
{
	if (!g_wd_interval_us)
		return max_ms;
	long long due_ms = (g_wd_last_us + g_wd_interval_us - now_us + 999) / 1000;
	return due_ms < 0 ? 0 : due_ms < max_ms ? (int)due_ms : max_ms;
}

void duet_notify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}
