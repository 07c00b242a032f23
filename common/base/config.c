#include "base/config.h"
#include "base/version.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct duet_opt *find(const struct duet_opt *opts, int n, const char *key,
				   size_t len)
{
	for (int i = 0; i < n; i++) {
		const char *k = opts[i].key;
		if (strlen(k) != len)
			continue;
		size_t j = 0;
		/* kv_endpoint in a file names --kv-endpoint. */
		while (j < len && (key[j] == k[j] || (key[j] == '_' && k[j] == '-')))
			j++;
		if (j == len)
			return &opts[i];
	}
	return NULL;
}

static int parse_bool(const char *v, int *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return *out = 1, 0;
		if (strcasecmp(v, no[i]) == 0)
			return *out = 0, 0;
	}
	return -1;
}

/* Sets one key from text; where says where the text came from, dir is the
 * config file's directory ("" for flags). */
static int set(struct duet_settings *c, const struct duet_opt *o, const char *v, int copy,
	       const char *dir, const char *where, struct duet_err *err)
{
	char *end;
	char joined[4096];
	switch (o->type) {
	case DUET_OPT_PATH:
		if (*dir && *v && *v != '/') {
			if (snprintf(joined, sizeof joined, "%s/%s", dir, v) >= (int)sizeof joined)
				return duet_errf(err, "%s: %s path too long", where, o->key);
			v = joined;
			copy = 1;
		}
		/* fall through */
	case DUET_OPT_STR:
		if (copy) {
			if (c->n_owned == DUET_CONFIG_MAX_OWNED)
				return duet_errf(err, "%s: more than %d string settings", where,
						 DUET_CONFIG_MAX_OWNED);
			char *d = strdup(v);
			if (!d)
				return duet_errf(err, "%s: out of memory", where);
			c->owned[c->n_owned++] = d;
			v = d;
		}
		*(const char **)o->ptr = v;
		return 0;
	case DUET_OPT_INT: {
		errno = 0;
		long x = strtol(v, &end, 10);
		if (!*v || *end || errno || x < o->min || x > o->max)
			return duet_errf(err, "%s: %s is '%s'; want an integer in [%.0f, %.0f]", where,
					 o->key, v, o->min, o->max);
		*(int *)o->ptr = (int)x;
		return 0;
	}
	case DUET_OPT_DOUBLE: {
		errno = 0;
		double x = strtod(v, &end);
		if (!*v || *end || errno || !isfinite(x) || x < o->min || x > o->max)
			return duet_errf(err, "%s: %s is '%s'; want a number in [%g, %g]", where,
					 o->key, v, o->min, o->max);
		*(double *)o->ptr = x;
		return 0;
	}
	case DUET_OPT_BOOL:
		if (parse_bool(v, (int *)o->ptr))
			return duet_errf(err, "%s: %s is '%s'; want true or false", where, o->key, v);
		return 0;
	}
	return duet_errf(err, "%s: %s has an unknown type", where, o->key);
}

struct ini_ctx {
	struct duet_settings *c;
	const struct duet_opt *opts;
	int n;
	const char *file;
	char dir[4096];
	struct duet_err *err;
	int failed;
};

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
	(void)section; /* one file per daemon; sections only group keys for people */
	struct ini_ctx *x = user;
	if (x->failed)
		return 0;
	const struct duet_opt *o = find(x->opts, x->n, name, strlen(name));
	if (!o) {
		duet_errf(x->err, "unknown key '%s'", name);
		x->failed = 1;
		return 0;
	}
	if (set(x->c, o, value, 1, x->dir, "value", x->err)) {
		x->failed = 1;
		return 0;
	}
	return 1;
}

static int load_file(struct duet_settings *c, const struct duet_opt *opts, int n,
		     const char *file, struct duet_err *err)
{
	struct ini_ctx x = {c, opts, n, file, ".", err, 0};
	const char *slash = strrchr(file, '/');
	if (slash)
		snprintf(x.dir, sizeof x.dir, "%.*s", slash == file ? 1 : (int)(slash - file), file);
	int rc = ini_parse(file, on_ini, &x);
	if (rc == -1)
		return duet_errnof(err, "config %s: cannot open", file);
	if (rc == -2)
		return duet_errf(err, "config %s: out of memory", file);
	if (rc > 0) {
		if (!x.failed)
			return duet_errf(err, "config %s:%d: not a 'key = value' line", file, rc);
		return duet_err_prefix(err, "config %s:%d", file, rc);
	}
	return 0;
}

int duet_config_load(struct duet_settings *c, const struct duet_opt *opts, int n_opts,
		     int argc, char **argv, struct duet_err *err)
{
	memset(c, 0, sizeof *c);
	const char *file = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
		if (strcmp(argv[i], "--version") == 0)
			return 2;
		if (strcmp(argv[i], "--config") == 0) {
			if (i + 1 == argc)
				return duet_errf(err, "--config needs a file");
			file = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			file = argv[i] + 9;
		}
	}
	if (file && load_file(c, opts, n_opts, file, err))
		return -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--config") == 0) {
			i++;
			continue;
		}
		if (strncmp(a, "--config=", 9) == 0)
			continue;
		if (strncmp(a, "--", 2) != 0)
			return duet_errf(err, "unexpected argument '%s' (see --help)", a);
		const char *key = a + 2, *eq = strchr(key, '=');
		size_t len = eq ? (size_t)(eq - key) : strlen(key);
		const struct duet_opt *o = find(opts, n_opts, key, len);
		if (!o)
			return duet_errf(err, "unknown flag '%.*s' (see --help)", (int)len + 2, a);
		const char *v;
		if (eq)
			v = eq + 1;
		else if (o->type == DUET_OPT_BOOL) {
			/* --flag alone is true; --flag false works as well. */
			int b;
			v = i + 1 < argc && parse_bool(argv[i + 1], &b) == 0 ? argv[++i] : "true";
		}
		else if (i + 1 < argc)
			v = argv[++i];
		else
			return duet_errf(err, "--%s needs a value", o->key);
		if (set(c, o, v, 0, "", "flag", err))
			return -1;
	}
	return 0;
}

void duet_config_free(struct duet_settings *c)
{
	for (int i = 0; i < c->n_owned; i++)
		free(c->owned[i]);
	c->n_owned = 0;
}

static void print_value(FILE *f, const struct duet_opt *o)
{
	switch (o->type) {
	case DUET_OPT_PATH:
	case DUET_OPT_STR: {
		const char *s = *(const char **)o->ptr;
		if (s && *s)
			fprintf(f, " (default: %s)", s);
		break;
	}
	case DUET_OPT_INT:
		fprintf(f, " (default: %d)", *(int *)o->ptr);
		break;
	case DUET_OPT_DOUBLE:
		fprintf(f, " (default: %g)", *(double *)o->ptr);
		break;
	case DUET_OPT_BOOL:
		fprintf(f, " (default: %s)", *(int *)o->ptr ? "true" : "false");
		break;
	}
}

void duet_config_usage(FILE *f, const char *usage_line, const char *about,
		       const struct duet_opt *opts, int n_opts)
{
	fprintf(f, "Usage: %s\n\n%s\n\n", usage_line, about);
	fprintf(f, "Every key below may be set in the INI file given by --config (as\n"
		   "'key = value', '-' or '_' alike, sections ignored) and overridden by\n"
		   "the flag of the same name.\n\n");
	fprintf(f, "  --config FILE\n      read keys from this INI file first\n");
	fprintf(f, "  --help\n      print this help\n");
	fprintf(f, "  --version\n      print the version\n");
	for (int i = 0; i < n_opts; i++) {
		const struct duet_opt *o = &opts[i];
		fprintf(f, "  --%s%s%s\n      %s", o->key, o->arg ? " " : "", o->arg ? o->arg : "",
			o->help);
		print_value(f, o);
		fputc('\n', f);
	}
}

int duet_config_main(struct duet_settings *c, const struct duet_opt *opts, int n_opts,
		     int argc, char **argv, const char *prog, const char *about)
{
	struct duet_err err;
	char usage[128];
	switch (duet_config_load(c, opts, n_opts, argc, argv, &err)) {
	case 0:
		return -1;
	case 1:
		snprintf(usage, sizeof usage, "%s [--config FILE] [--key VALUE]...", prog);
		duet_config_usage(stdout, usage, about, opts, n_opts);
		return 0;
	case 2:
		printf("%s %s\n", prog, DUET_VERSION);
		return 0;
	default:
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		return 2;
	}
}
