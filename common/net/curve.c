#include "net/curve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define LINE_MAX_BYTES 512

int duet_curve_valid(const char *s)
{
	uint8_t bin[32];
	return s && strlen(s) == DUET_CURVE_Z85 && zmq_z85_decode(bin, s) != NULL;
}

int duet_curve_keygen(struct duet_curve_key *k, struct duet_err *err)
{
	if (zmq_curve_keypair(k->pub, k->sec))
		return duet_errf(err, "curve: cannot make a key pair: %s (is libzmq built with "
				      "libsodium?)", zmq_strerror(errno));
	return 0;
}

static int valid_name(const char *name)
{
	size_t n = strlen(name);
	if (!n || n > DUET_CURVE_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(name[i] == '-' || name[i] == '_' || name[i] == '.' ||
		      (name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'z') ||
		      (name[i] >= 'A' && name[i] <= 'Z')))
			return 0;
	return name[0] != '.';
}

static int write_file(const char *path, int mode, const char *text, struct duet_err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return duet_errnof(err, "%s: cannot create", path);
	size_t n = strlen(text);
	ssize_t w = write(fd, text, n);
	int e = errno;
	if (close(fd) || w != (ssize_t)n) {
		unlink(path);
		errno = e;
		return duet_errnof(err, "%s: cannot write", path);
	}
	return 0;
}

int duet_curve_write(const char *dir, const char *name, const struct duet_curve_key *k,
		     struct duet_err *err)
{
	if (!valid_name(name))
		return duet_errf(err, "key name '%s': want 1 to %d of A-Z a-z 0-9 - _ .", name,
				 DUET_CURVE_NAME_MAX);
	char sec_path[4096], pub_path[4096], text[LINE_MAX_BYTES];
	snprintf(sec_path, sizeof sec_path, "%s/%s.key", dir, name);
	snprintf(pub_path, sizeof pub_path, "%s/%s.pub", dir, name);
	snprintf(text, sizeof text,
		 "# duet CURVE key pair '%s' (duet keygen). Keep this file secret.\n"
		 "public = %s\nsecret = %s\n",
		 name, k->pub, k->sec);
	if (write_file(sec_path, 0600, text, err))
		return -1;
	snprintf(text, sizeof text, "%s %s\n", k->pub, name);
	if (write_file(pub_path, 0644, text, err)) {
		unlink(sec_path);
		return -1;
	}
	return 0;
}

/* Trims blanks in place. A line starting with '#' is a comment; '#'
 * elsewhere may be part of a Z85 key. */
static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = 0;
	return s;
}

/* Calls line(ctx, text, lineno) for every line of f that is neither blank
 * nor a comment, trimmed, until one fails; closes f. */
static int each_line(FILE *f, int (*line)(void *ctx, char *s, int lineno, struct duet_err *err),
		     void *ctx, struct duet_err *err)
{
	char buf[LINE_MAX_BYTES];
	int lineno = 0, rc = 0;
	while (rc == 0 && fgets(buf, sizeof buf, f)) {
		lineno++;
		char *s = trim(buf);
		if (*s && *s != '#')
			rc = line(ctx, s, lineno, err);
	}
	fclose(f);
	return rc;
}

struct key_file {
	const char *path;
	struct duet_curve_key *k;
};

/* "public = KEY" or "secret = KEY" */
static int key_line(void *ctx, char *s, int lineno, struct duet_err *err)
{
	struct key_file *kf = ctx;
	char *eq = strchr(s, '=');
	char *val = eq ? trim(eq + 1) : NULL;
	if (eq)
		*eq = 0;
	const char *key = trim(s);
	char *dst = !eq ? NULL : strcmp(key, "public") == 0 ? kf->k->pub
			     : strcmp(key, "secret") == 0   ? kf->k->sec
							    : NULL;
	if (!dst)
		return duet_errf(err, "curve key %s:%d: want 'public = KEY' or 'secret = KEY'",
				 kf->path, lineno);
	if (!duet_curve_valid(val))
		return duet_errf(err, "curve key %s:%d: %s is not a 40-character Z85 key", kf->path,
				 lineno, key);
	memcpy(dst, val, DUET_CURVE_Z85 + 1);
	return 0;
}

int duet_curve_load_key(const char *path, struct duet_curve_key *k, struct duet_err *err)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return duet_errnof(err, "curve key %s: cannot open", path);
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0007)) {
		fclose(f);
		return duet_errf(err, "curve key %s: readable by others (mode %03o); chmod 600 it",
				 path, (unsigned)(st.st_mode & 0777));
	}
	memset(k, 0, sizeof *k);
	struct key_file kf = {path, k};
	if (each_line(f, key_line, &kf, err))
		return -1;
	if (!*k->sec)
		return duet_errf(err, "curve key %s: no 'secret = KEY' line (a .pub file?)", path);
	char derived[DUET_CURVE_Z85 + 1];
	if (zmq_curve_public(derived, k->sec))
		return duet_errf(err, "curve key %s: cannot derive the public key: %s", path,
				 zmq_strerror(errno));
	if (*k->pub && strcmp(derived, k->pub) != 0)
		return duet_errf(err, "curve key %s: the public key does not belong to the secret "
				      "key", path);
	memcpy(k->pub, derived, sizeof derived);
	return 0;
}

typedef int (*pub_add_fn)(void *ctx, const char *pub, const char *name, int lineno,
			  struct duet_err *err);

struct pub_file {
	const char *path;
	pub_add_fn add;
	void *ctx;
};

/* "KEY [NAME]" */
static int pub_line(void *ctx, char *s, int lineno, struct duet_err *err)
{
	struct pub_file *pf = ctx;
	size_t kl = strcspn(s, " \t");
	char *name = s[kl] ? trim(s + kl + 1) : s + kl;
	s[kl] = 0;
	if (!duet_curve_valid(s))
		return duet_errf(err, "%s:%d: '%.48s' is not a 40-character Z85 public key",
				 pf->path, lineno, s);
	if (strlen(name) > DUET_CURVE_NAME_MAX)
		return duet_errf(err, "%s:%d: name longer than %d bytes", pf->path, lineno,
				 DUET_CURVE_NAME_MAX);
	return pf->add(pf->ctx, s, name, lineno, err);
}

/* Reads "KEY [NAME]" lines; each calls add. */
static int read_pub_lines(const char *path, pub_add_fn add, void *ctx, struct duet_err *err)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return duet_errnof(err, "%s: cannot open", path);
	struct pub_file pf = {path, add, ctx};
	return each_line(f, pub_line, &pf, err);
}

static int add_first(void *ctx, const char *pub, const char *name, int lineno,
		     struct duet_err *err)
{
	(void)name;
	(void)lineno;
	(void)err;
	char *out = ctx;
	if (!*out)
		memcpy(out, pub, DUET_CURVE_Z85 + 1);
	return 0;
}

/* A file first: a 40-character path of Z85's characters (letters, digits,
 * '/', '.', '-': /work/runs/netns-code-d8/keys/router.pub is one) decodes
 * as a key too, and taking it for one gave a node a key no router had. */
int duet_curve_load_public(const char *value, char out[DUET_CURVE_Z85 + 1],
			   struct duet_err *err)
{
	if (access(value, F_OK) != 0 && duet_curve_valid(value)) {
		memcpy(out, value, DUET_CURVE_Z85 + 1);
		return 0;
	}
	*out = 0;
	if (read_pub_lines(value, add_first, out, err))
		return duet_err_prefix(err, "public key");
	if (!*out)
		return duet_errf(err, "public key %s: the file holds no key", value);
	return 0;
}

static int add_allow(void *ctx, const char *pub, const char *name, int lineno,
		     struct duet_err *err)
{
	struct duet_curve_allow *a = ctx;
	if (a->n == DUET_CURVE_MAX_ALLOW)
		return duet_errf(err, "line %d: more than %d keys", lineno, DUET_CURVE_MAX_ALLOW);
	memcpy(a->e[a->n].pub, pub, DUET_CURVE_Z85 + 1);
	snprintf(a->e[a->n].name, sizeof a->e[a->n].name, "%s", *name ? name : "unnamed");
	a->n++;
	return 0;
}

int duet_curve_load_allow(const char *path, struct duet_curve_allow *a, struct duet_err *err)
{
	a->n = 0;
	if (read_pub_lines(path, add_allow, a, err))
		return duet_err_prefix(err, "allow-list");
	if (!a->n)
		return duet_errf(err, "allow-list %s: no keys; every peer would be refused", path);
	return 0;
}

const char *duet_curve_allowed(const struct duet_curve_allow *a, const char *pub)
{
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->e[i].pub, pub) == 0)
			return a->e[i].name;
	return NULL;
}

int duet_endpoint_is_loopback(const char *ep)
{
	if (strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0)
		return 1;
	if (strncmp(ep, "tcp://", 6) != 0)
		return 0;
	const char *h = ep + 6;
	return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0 ||
	       strncmp(h, "[::1]:", 6) == 0;
}

int duet_endpoint_is_wildcard(const char *ep)
{
	if (strncmp(ep, "tcp://", 6) != 0)
		return 0;
	const char *h = ep + 6;
	return strncmp(h, "*:", 2) == 0 || strncmp(h, "0.0.0.0:", 8) == 0 ||
	       strncmp(h, "[::]:", 5) == 0;
}

int duet_curve_opts(struct duet_curve_cfg *c, int server, int client, struct duet_opt *o)
{
	int n = 0;
	o[n++] = (struct duet_opt){"curve-key", DUET_OPT_PATH, &c->key_file, 0, 0, "FILE",
				   "this daemon's CURVE secret key (duet keygen); set, every "
				   "ZeroMQ link is encrypted and authenticated"};
	if (server)
		o[n++] = (struct duet_opt){"curve-allow", DUET_OPT_PATH, &c->allow_file, 0, 0,
					   "FILE",
					   "public keys that may connect, one 'KEY NAME' line each "
					   "(cat *.pub); required with curve-key"};
	if (client)
		o[n++] = (struct duet_opt){"curve-router-key", DUET_OPT_STR, &c->router_key, 0, 0,
					   "KEY|FILE",
					   "the router's public key, or its .pub file; required with "
					   "curve-key"};
	o[n++] = (struct duet_opt){"allow-plaintext", DUET_OPT_BOOL, &c->allow_plaintext, 0, 0,
				   NULL,
				   "without curve-key, use plaintext ZeroMQ even on endpoints that "
				   "are not loopback"};
	return n;
}

int duet_curve_setup(const struct duet_curve_cfg *c, int server, int client,
		     const char *const *eps, int n, struct duet_curve *out, struct duet_err *err)
{
	memset(out, 0, sizeof *out);
	if (!c->key_file || !*c->key_file) {
		for (int i = 0; i < n && !c->allow_plaintext; i++)
			if (!duet_endpoint_is_loopback(eps[i]))
				return duet_errf(err,
						 "endpoint %s is not loopback and curve-key is not "
						 "set: give keys (duet keygen) or allow-plaintext = "
						 "true",
						 eps[i]);
		return 0;
	}
	if (duet_curve_load_key(c->key_file, &out->key, err))
		return -1;
	if (client) {
		if (!c->router_key || !*c->router_key)
			return duet_errf(err, "curve-router-key: required with curve-key");
		if (duet_curve_load_public(c->router_key, out->router_pub, err))
			return -1;
	}
	if (server) {
		if (!c->allow_file || !*c->allow_file)
			return duet_errf(err, "curve-allow: required with curve-key (the public "
					      "keys that may connect)");
		out->allow = malloc(sizeof *out->allow);
		if (!out->allow)
			return duet_errf(err, "curve-allow: out of memory");
		if (duet_curve_load_allow(c->allow_file, out->allow, err)) {
			duet_curve_free(out);
			return -1;
		}
	}
	out->on = 1;
	return 0;
}

void duet_curve_free(struct duet_curve *s)
{
	free(s->allow);
	s->allow = NULL;
	s->on = 0;
}
