/* Helpers shared by the duet subcommands: strict number parsing (a bad
 * flag value is an error naming the flag), progress on a terminal. */
#ifndef DUET_CLI_H
#define DUET_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "engine/forward.h"
#include "engine/model.h"

int cli_int(const char *flag, const char *s, long lo, long hi, long *out);
int cli_float(const char *flag, const char *s, double lo, double hi, double *out);
int cli_u64(const char *flag, const char *s, uint64_t *out);
/* --weights hugepages|mmap (engine/model.h says which is for what). */
int cli_weights(const char *flag, const char *s, enum duet_weights *out);
/* --qdot int8|exact (engine/kern/kernels.h says which is for what). */
int cli_qdot(const char *flag, const char *s, enum duet_qdot *out);
/* --kv-dtype f16|int8|f32 (base/kvrow.h). */
int cli_kv_dtype(const char *flag, const char *s, enum duet_kv_dtype *out);
/* Says on stderr when a model's weights did not land where asked. */
void cli_weights_note(const char *cmd, enum duet_weights asked, const struct duet_model *m);
/* Prints "duet <cmd>: msg" to stderr; returns 1 (the exit status). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* mkdir -p. */
int cli_mkdirs(const char *path, struct duet_err *err);
/* A whole text file, NUL-terminated, malloc'd (caller frees); NULL after
 * printing why (missing, unreadable, longer than max). */
char *cli_read_file(const char *path, size_t max, size_t *n);

/* A progress line on stderr, redrawn at most every 100 ms, only when
 * stderr is a terminal. */
struct cli_progress {
	const char *what;
	double last;
	int tty;
};
void cli_progress_init(struct cli_progress *p, const char *what);
void cli_progress_update(struct cli_progress *p, double done, double total,
			 const char *unit);
void cli_progress_end(struct cli_progress *p);

#endif
