/* CURVE keys for ZeroMQ links between duet's daemons: key files made by
 * `duet keygen`, allow-lists of public keys, and the rule that plaintext is
 * only accepted on loopback unless asked for.
 *
 * Files:
 *   NAME.key  "public = Z85" and "secret = Z85" lines; the secret key.
 *             Refused when readable by others.
 *   NAME.pub  one line "Z85 NAME": a public key. An allow-list is such lines,
 *             one per permitted peer (cat *.pub > cluster.allow); a line
 *             starting with '#' is a comment. */
#ifndef DUET_CURVE_H
#define DUET_CURVE_H

#include "base/config.h"
#include "base/err.h"

#define DUET_CURVE_Z85 40 /* a 32-byte key in Z85 */
#define DUET_CURVE_MAX_ALLOW 1024
#define DUET_CURVE_NAME_MAX 63

struct duet_curve_key {
	char pub[DUET_CURVE_Z85 + 1], sec[DUET_CURVE_Z85 + 1];
};

struct duet_curve_allow {
	int n;
	struct {
		char pub[DUET_CURVE_Z85 + 1];
		char name[DUET_CURVE_NAME_MAX + 1];
	} e[DUET_CURVE_MAX_ALLOW];
};

/* 1 when s is a 40-character Z85 string that decodes to a key. */
int duet_curve_valid(const char *s);
int duet_curve_keygen(struct duet_curve_key *k, struct duet_err *err);
/* Writes DIR/NAME.key (mode 0600, not over an existing file) and
 * DIR/NAME.pub. */
int duet_curve_write(const char *dir, const char *name, const struct duet_curve_key *k,
		     struct duet_err *err);
int duet_curve_load_key(const char *path, struct duet_curve_key *k, struct duet_err *err);
/* A public key given as its Z85 text or as the path of a .pub file. */
int duet_curve_load_public(const char *value, char out[DUET_CURVE_Z85 + 1],
			   struct duet_err *err);
int duet_curve_load_allow(const char *path, struct duet_curve_allow *a, struct duet_err *err);
/* The entry's name when pub (Z85) is on the list, else NULL. */
const char *duet_curve_allowed(const struct duet_curve_allow *a, const char *pub);

/* 1 for ipc://, inproc:// and tcp:// to a loopback address. */
int duet_endpoint_is_loopback(const char *endpoint);
/* 1 for a tcp:// endpoint that binds every address (*, 0.0.0.0, [::]):
 * fine to bind, useless to announce. */
int duet_endpoint_is_wildcard(const char *endpoint);

/* The security keys every daemon shares. */
struct duet_curve_cfg {
	const char *key_file;	/* this daemon's secret key; set = CURVE on */
	const char *allow_file; /* servers: public keys that may connect */
	const char *router_key; /* nodes: the router's public key (Z85 or .pub file) */
	int allow_plaintext;	/* accept plaintext on non-loopback endpoints */
};
#define DUET_CURVE_OPTS 4
/* Fills DUET_CURVE_OPTS entries of out; server says whether the daemon
 * accepts connections (router, decode) and client whether it makes them
 * to the router (nodes). */
int duet_curve_opts(struct duet_curve_cfg *c, int server, int client, struct duet_opt *out);

/* Loaded security settings. */
struct duet_curve {
	int on;
	struct duet_curve_key key;
	char router_pub[DUET_CURVE_Z85 + 1]; /* nodes */
	struct duet_curve_allow *allow;	     /* servers; NULL when no list */
};
/* Loads what c names. Without a key, every endpoint in eps (n of them)
 * must be loopback unless allow_plaintext; with one, servers need an
 * allow-list and nodes the router's key. */
int duet_curve_setup(const struct duet_curve_cfg *c, int server, int client,
		     const char *const *eps, int n, struct duet_curve *out, struct duet_err *err);
void duet_curve_free(struct duet_curve *s);

#endif
