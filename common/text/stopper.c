#include "text/stopper.h"

#include <stdlib.h>
#include <string.h>

int duet_stopper_init(struct duet_stopper *st, const char *const *stops, int n,
		      struct duet_err *err)
{
	memset(st, 0, sizeof *st);
	if (n < 0 || n > DUET_MAX_STOPS)
		return duet_errf(err, "%d stop strings given; at most %d", n, DUET_MAX_STOPS);
	for (int i = 0; i < n; i++) {
		size_t l = strlen(stops[i]);
		if (l == 0 || l > DUET_MAX_STOP_LEN) {
			duet_stopper_free(st);
			return duet_errf(err, "stop string %d has length %zu (must be 1 to %d bytes)",
					 i, l, DUET_MAX_STOP_LEN);
		}
		st->stops[i] = strdup(stops[i]);
		if (!st->stops[i]) {
			duet_stopper_free(st);
			return duet_errf(err, "out of memory for stop strings");
		}
		st->lens[i] = l;
		st->n = i + 1;
	}
	st->held = malloc(DUET_MAX_STOP_LEN);
	if (!st->held) {
		duet_stopper_free(st);
		return duet_errf(err, "out of memory for stop strings");
	}
	return 0;
}

void duet_stopper_free(struct duet_stopper *st)
{
	for (int i = 0; i < st->n; i++)
		free(st->stops[i]);
	free(st->held);
	memset(st, 0, sizeof *st);
}

/* Longest suffix of buf (shorter than some stop) that begins a stop. */
static size_t partial_suffix(const struct duet_stopper *st, const char *buf, size_t n)
{
	size_t best = 0;
	for (int i = 0; i < st->n; i++) {
		size_t maxl = st->lens[i] - 1 < n ? st->lens[i] - 1 : n;
		for (size_t l = maxl; l > best; l--)
			if (!memcmp(buf + n - l, st->stops[i], l)) {
				best = l;
				break;
			}
	}
	return best;
}

size_t duet_stopper_feed(struct duet_stopper *st, const char *text, size_t n, char *out)
{
	if (st->stopped)
		return 0;
	if (st->n == 0) {
		memcpy(out, text, n);
		return n;
	}
	/* Work in out: held text, then the new text. */
	memcpy(out, st->held, st->n_held);
	memcpy(out + st->n_held, text, n);
	size_t len = st->n_held + n;
	size_t cut = len;
	for (int i = 0; i < st->n; i++) {
		if (st->lens[i] > len)
			continue;
		for (size_t p = 0; p + st->lens[i] <= len && p < cut; p++)
			if (!memcmp(out + p, st->stops[i], st->lens[i])) {
				cut = p;
				break;
			}
	}
	if (cut < len) {
		st->stopped = 1;
		st->n_held = 0;
		return cut;
	}
	size_t keep = partial_suffix(st, out, len);
	memcpy(st->held, out + len - keep, keep);
	st->n_held = keep;
	return len - keep;
}

size_t duet_stopper_flush(struct duet_stopper *st, char *out)
{
	if (st->stopped)
		return 0;
	size_t n = st->n_held;
	memcpy(out, st->held, n);
	st->n_held = 0;
	return n;
}
