/* duet: the command-line tool (generate, tokenize, bench, mkmodel, up, replay,
 * keygen, trace). */
#include <stdio.h>
#include <string.h>

#include "base/cpu.h"
#include "base/version.h"
#include "commands.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *what;
} cmds[] = {
	{"generate", cmd_generate, "stream a completion from a model"},
	{"tokenize", cmd_tokenize, "print the tokens of text"},
	{"bench", cmd_bench, "prefill/decode speed against the machine's ceilings"},
	{"mkmodel", cmd_mkmodel, "write a random-weight model of a real shape"},
	{"up", cmd_up, "start a local cluster (router, prefill and decode nodes)"},
	{"replay", cmd_replay, "replay a request trace against a server and measure it"},
	{"keygen", cmd_keygen, "make CURVE key pairs for encrypted links between daemons"},
	{"plan", cmd_plan, "size a cluster for a trace by simulation (simulate, search, scale)"},
	{"trace", cmd_trace, "merge the daemons' trace files; attribute a replay's stalls"},
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: duet COMMAND [options]   (duet COMMAND --help for its options)\n\n");
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].what);
	fprintf(f, "\nEnvironment: DUET_KERNELS=scalar|avx2|avxvnni|avx512 forces a kernel set;\n"
		   "DUET_BLAS_AUTO=0 keeps OpenBLAS's own core choice (see README).\n");
}

int main(int argc, char **argv)
{
	duet_blas_select_core(argv);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("duet %s\n", DUET_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "duet: unknown command '%s' (duet --help lists the commands)\n", argv[1]);
	return 2;
}
