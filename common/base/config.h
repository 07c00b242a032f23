/* Daemon configuration: one table of keys per daemon, read from an INI file
 * (--config FILE, sections ignored) and then from command-line flags with
 * the same names (--key VALUE or --key=VALUE), so every key is both. The
 * table also writes --help. */
#ifndef DUET_CONFIG_H
#define DUET_CONFIG_H

#include <stdio.h>

#include "base/err.h"

#define DUET_CONFIG_MAX_OWNED 128

enum duet_opt_type {
	DUET_OPT_STR,	 /* const char ** */
	DUET_OPT_INT,	 /* int * within [min, max] */
	DUET_OPT_DOUBLE, /* double * within [min, max] */
	DUET_OPT_BOOL,	 /* int *: true/false, yes/no, on/off, 1/0; a bare flag is true */
	DUET_OPT_PATH,	 /* const char **: a file; relative in a config file means
			  * relative to that file's directory (so a unit can load
			  * keys as credentials beside its config) */
};

struct duet_opt {
	const char *key; /* "kv-endpoint"; in INI files kv_endpoint works too */
	enum duet_opt_type type;
	void *ptr;
	double min, max; /* numbers only */
	const char *arg; /* placeholder in --help, e.g. "N" */
	const char *help;
};

/* Strings read from a file are copied; they live until duet_config_free. */
struct duet_settings {
	char *owned[DUET_CONFIG_MAX_OWNED];
	int n_owned;
};

/* Applies --config FILE (if given) and then every flag of argv[1..].
 * Returns 0, 1 when --help was asked, 2 when --version was (nothing else
 * applied), or -1 with a message naming the file and line or the flag and
 * value. */
int duet_config_load(struct duet_settings *c, const struct duet_opt *opts, int n_opts,
		     int argc, char **argv, struct duet_err *err);
void duet_config_free(struct duet_settings *c);
/* Lists --config, --help and every key with its placeholder, help and
 * current value (the default, before loading). */
void duet_config_usage(FILE *f, const char *usage_line, const char *about,
		       const struct duet_opt *opts, int n_opts);
/* A daemon's main: duet_config_load, and on --help the usage ("PROG
 * [--config FILE] [--key VALUE]...", about, the keys) or on --version
 * "PROG VERSION" to stdout, or an error as "PROG: message" to stderr.
 * Returns -1 when the daemon should go on, else its exit status. */
int duet_config_main(struct duet_settings *c, const struct duet_opt *opts, int n_opts,
		     int argc, char **argv, const char *prog, const char *about);

#endif
