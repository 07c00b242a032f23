/* duet tokenize: the token ids (or pieces) of a text, for debugging and
 * for comparing with other tokenizers. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "mkmodel/model_write.h"
#include "mkmodel/vocab_hf.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: duet tokenize (-m MODEL | --vocab FILE) [--ids | --pieces] [-p TEXT] [--no-bos]\n"
		"\n"
		"Tokenizes TEXT, or all of standard input byte for byte (a trailing\n"
		"newline is part of the text), with the model's vocabulary.\n"
		"\n"
		"  -m, --model FILE    GGUF or llama2.c model (only its vocabulary is used)\n"
		"  --tokenizer FILE    tokenizer.bin of a llama2.c model (default: next to it)\n"
		"  --vocab FILE        a vocabulary alone instead of a model: a GGUF with\n"
		"                      tokenizer.ggml.* keys (vocab-only files work), a\n"
		"                      llama2.c tokenizer.bin, or a Hugging Face\n"
		"                      tokenizer.json (byte-level BPE; its\n"
		"                      tokenizer_config.json beside it)\n"
		"  -p, --prompt TEXT   text to tokenize instead of standard input\n"
		"  --ids               print the ids on one line (default)\n"
		"  --pieces            print one 'id <tab> piece' line per token, pieces as\n"
		"                      GGUF spells them (U+2581 for a word boundary, or\n"
		"                      GPT-2's byte characters: U+0120 for a space)\n"
		"  --no-bos            do not prepend the BOS token\n");
}

static char *read_all(FILE *f, size_t *n)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		size_t r = fread(buf + len, 1, cap - len, f);
		len += r;
		if (r == 0)
			break;
		if (len == cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
		}
	}
	*n = len;
	return buf;
}

int cmd_tokenize(int argc, char **argv)
{
	const char *model = NULL, *tok_path = NULL, *prompt = NULL, *vocab_path = NULL;
	int pieces = 0, bos = 1;
	static const struct option opts[] = {
		{"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, 'z'},
		{"prompt", required_argument, 0, 'p'}, {"ids", no_argument, 0, 'i'},
		{"pieces", no_argument, 0, 'P'},      {"no-bos", no_argument, 0, 'B'},
		{"vocab", required_argument, 0, 'v'}, {"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "m:p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case 'z': tok_path = optarg; break;
		case 'v': vocab_path = optarg; break;
		case 'p': prompt = optarg; break;
		case 'i': pieces = 0; break;
		case 'P': pieces = 1; break;
		case 'B': bos = 0; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!model == !vocab_path || optind < argc) {
		usage(stderr);
		return 2;
	}
	struct duet_err err;
	struct duet_model *m = NULL;
	struct duet_vocab own;
	const struct duet_vocab *v = &own;
	if (vocab_path) {
		char *tmpl;
		int rc = duet_vocab_load_any(&own, vocab_path, &tmpl, &err);
		free(tmpl);
		if (rc)
			return cli_fail("tokenize", "%s", err.msg);
	} else {
		struct duet_model_opts mo = {.tokenizer_path = tok_path, .skip_weight_digest = 1};
		if (duet_model_open(&m, model, &mo, &err))
			return cli_fail("tokenize", "%s", err.msg);
		v = &m->vocab;
	}
	size_t n;
	char *text = prompt ? strdup(prompt) : read_all(stdin, &n);
	if (prompt && text)
		n = strlen(text);
	int *ids = text ? malloc(sizeof(int) * duet_tokenize_max(n)) : NULL;
	size_t k = 0;
	int rc = 0;
	if (!ids)
		rc = cli_fail("tokenize", "out of memory");
	else if (duet_tokenize(v, text, n, bos, ids, duet_tokenize_max(n), &k, &err))
		rc = cli_fail("tokenize", "%s", err.msg);
	for (size_t i = 0; !rc && i < k; i++) {
		if (pieces) {
			char buf[DUET_VOCAB_MAX_PIECE * 3 + 1];
			int l = duet_vocab_gguf_piece(v, ids[i], buf, sizeof buf - 1);
			buf[l < 0 ? 0 : l] = 0;
			/* Keep one token per line: show control bytes escaped. */
			printf("%d\t", ids[i]);
			for (int j = 0; j < l; j++) {
				unsigned char ch = (unsigned char)buf[j];
				if (ch < 0x20 || ch == 0x7f)
					printf("\\x%02x", ch);
				else
					putchar(ch);
			}
			putchar('\n');
		} else {
			printf(i ? " %d" : "%d", ids[i]);
		}
	}
	if (!rc && !pieces)
		putchar('\n');
	free(ids);
	free(text);
	if (m)
		duet_model_close(m);
	else
		duet_vocab_free(&own);
	return rc;
}
