/* Stop strings over streamed text: text that might be the beginning of a
 * stop string is held back until it is known not to be, so no stop string
 * ever reaches the client, even split across tokens. */
#ifndef DUET_STOPPER_H
#define DUET_STOPPER_H

#include <stddef.h>

#include "base/err.h"

#define DUET_MAX_STOPS 16
#define DUET_MAX_STOP_LEN 256

struct duet_stopper {
	char *stops[DUET_MAX_STOPS];
	size_t lens[DUET_MAX_STOPS];
	int n;
	char *held;
	size_t n_held;
	int stopped;
};

int duet_stopper_init(struct duet_stopper *st, const char *const *stops, int n,
		      struct duet_err *err);
void duet_stopper_free(struct duet_stopper *st);
/* Feeds n bytes; writes what is safe to show to out (room for n +
 * DUET_MAX_STOP_LEN bytes) and returns its length. After a stop string is
 * seen, st->stopped is set, out ends just before it, and later calls emit
 * nothing. */
size_t duet_stopper_feed(struct duet_stopper *st, const char *text, size_t n, char *out);
/* End of generation: returns the held-back text (no stop string came). */
size_t duet_stopper_flush(struct duet_stopper *st, char *out);

#endif
