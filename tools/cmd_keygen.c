/* duet keygen: CURVE key pairs for the ZeroMQ links between daemons. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "net/curve.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: duet keygen [-d DIR] NAME...\n"
		"\n"
		"Makes one CURVE key pair per NAME: DIR/NAME.key holds the secret key\n"
		"(mode 0600; give it to that daemon as curve-key) and DIR/NAME.pub the\n"
		"public key as one 'KEY NAME' line. An allow-list is such lines:\n"
		"  cat prefill-*.pub decode-*.pub > nodes.allow   (the router's curve-allow)\n"
		"  cat prefill-*.pub > prefill.allow              (decode nodes' curve-allow)\n"
		"and nodes take router.pub as curve-router-key. Existing files are never\n"
		"overwritten.\n"
		"\n"
		"  -d, --dir DIR   where to write the files, created if missing (default: .)\n");
}

int cmd_keygen(int argc, char **argv)
{
	const char *dir = ".";
	static const struct option opts[] = {
		{"dir", required_argument, 0, 'd'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind == argc) {
		usage(stderr);
		return 2;
	}
	struct duet_err err;
	if (cli_mkdirs(dir, &err))
		return cli_fail("keygen", "%s", err.msg);
	for (int i = optind; i < argc; i++) {
		struct duet_curve_key k;
		if (duet_curve_keygen(&k, &err) || duet_curve_write(dir, argv[i], &k, &err))
			return cli_fail("keygen", "%s", err.msg);
		printf("%s %s\n", k.pub, argv[i]);
		memset(&k, 0, sizeof k);
	}
	return 0;
}
