/* duet mkmodel: model files with deterministic random weights of real
 * shapes and a real vocabulary, for tests and benchmarks (speed does not
 * depend on weight values). */
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "mkmodel/model_random.h"
#include "mkmodel/vocab_hf.h"
#include "text/chat.h"

struct prog {
	struct cli_progress p;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct prog *p = ctx;
	cli_progress_update(&p->p, (double)done / 1e6, (double)total / 1e6, "MB");
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: duet mkmodel --shape NAME --vocab FILE -o OUT [options]\n"
		"\n"
		"Writes a Llama-architecture model with deterministic random weights of a\n"
		"real shape and the vocabulary from FILE (a GGUF with tokenizer.ggml.* keys,\n"
		"a llama2.c tokenizer.bin, or a Hugging Face tokenizer.json of a byte-level\n"
		"BPE model, Llama 3 or Qwen2/Qwen3, with its tokenizer_config.json beside it).\n"
		"\n"
		"  --shape NAME        model shape (see --list-shapes)\n"
		"  --vocab FILE        vocabulary source; builtin:bytes is a built-in byte-level\n"
		"                      vocabulary (259 tokens) for machines without one\n"
		"  -o, --out OUT       output file\n"
		"  --dtype TYPE        weight matrices in f32 (default), f16, bf16, q8_0, q4_0,\n"
		"                      q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, or the mix q4_k_m\n"
		"                      (q4_k, with q6_k for the classifier and for attn_v and\n"
		"                      ffn_down in the layers llama.cpp gives more bits);\n"
		"                      K-quant rows that are not whole 256-blocks fall back\n"
		"                      as llama.cpp's do (q4_k->q5_0, q5_k->q5_1, q6_k->q8_0)\n"
		"  --format FMT        gguf (default) or llama2c; llama2c is f32 only and also\n"
		"                      writes tokenizer.bin next to OUT\n"
		"  --seed N            weight seed (default 1); same seed, same weights in\n"
		"                      either format\n"
		"  --ctx N             override the shape's context length\n"
		"  --layers N          keep the shape's first N layers: every row is seeded by\n"
		"                      its tensor and layer, so the result is the full model's\n"
		"                      first N layers, embedding and classifier (a draft that\n"
		"                      skips the last layers, for --draft)\n"
		"  --tied | --untied   share the classifier with the embedding, or not\n"
		"  --chat-template F   write a chat template of family F (llama2, chatml, zephyr,\n"
		"                      llama3), or none (default: a tokenizer.json's own\n"
		"                      template, else llama3 or chatml when the vocabulary has\n"
		"                      their special tokens, else llama2)\n"
		"  --list-shapes       print the shapes and exit\n");
}

static int same_file_content(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	int same = fa && fb;
	while (same) {
		int ca = fgetc(fa), cb = fgetc(fb);
		if (ca != cb)
			same = 0;
		if (ca == EOF || cb == EOF)
			break;
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return same;
}

/* llama2.c models read their vocabulary from tokenizer.bin beside them. */
static int write_sidecar_tokenizer(const char *out, const struct duet_vocab *v,
				   struct duet_err *err)
{
	char *copy = strdup(out);
	if (!copy)
		return duet_errf(err, "out of memory");
	char path[4096], tmp[4200];
	snprintf(path, sizeof path, "%s/tokenizer.bin", dirname(copy));
	free(copy);
	snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
	if (duet_write_llama2c_tokenizer(tmp, v, err))
		return -1;
	if (access(path, F_OK) == 0) {
		int same = same_file_content(tmp, path);
		unlink(tmp);
		if (!same)
			return duet_errf(err, "%s exists with a different vocabulary; llama2.c models read the tokenizer.bin next to them, so write this model into another directory",
					 path);
		return 0;
	}
	if (rename(tmp, path)) {
		unlink(tmp);
		return duet_errnof(err, "cannot create %s", path);
	}
	fprintf(stderr, "duet mkmodel: wrote %s\n", path);
	return 0;
}

int cmd_mkmodel(int argc, char **argv)
{
	const char *shape_name = NULL, *vocab_path = NULL, *out = NULL, *format = "gguf";
	enum duet_dtype dtype = DUET_F32;
	enum duet_mix mix = DUET_MIX_NONE;
	uint64_t seed = 1;
	long ctx = 0, layers = 0;
	int tied = -1;
	enum duet_chat_family chat = DUET_CHAT_NONE;
	int no_chat = 0;
	static const struct option opts[] = {
		{"shape", required_argument, 0, 's'}, {"vocab", required_argument, 0, 'v'},
		{"out", required_argument, 0, 'o'},   {"dtype", required_argument, 0, 'd'},
		{"format", required_argument, 0, 'f'}, {"seed", required_argument, 0, 'S'},
		{"ctx", required_argument, 0, 'c'},   {"tied", no_argument, 0, 'T'},
		{"layers", required_argument, 0, 'l'},
		{"untied", no_argument, 0, 'U'},      {"list-shapes", no_argument, 0, 'L'},
		{"chat-template", required_argument, 0, 'C'},
		{"help", no_argument, 0, 'h'},	      {0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': shape_name = optarg; break;
		case 'v': vocab_path = optarg; break;
		case 'o': out = optarg; break;
		case 'f': format = optarg; break;
		case 'd':
			if (!strcmp(optarg, "q4_k_m")) {
				mix = DUET_MIX_Q4_K_M;
				dtype = DUET_Q4_K;
			} else if (duet_dtype_parse(optarg, &dtype)) {
				return cli_fail("mkmodel", "--dtype '%s': want one of " DUET_DTYPE_LIST " or q4_k_m",
						optarg);
			}
			break;
		case 'S':
			if (cli_u64("--seed", optarg, &seed))
				return 1;
			break;
		case 'c':
			if (cli_int("--ctx", optarg, 1, DUET_MAX_CTX, &ctx))
				return 1;
			break;
		case 'l':
			if (cli_int("--layers", optarg, 1, DUET_MAX_LAYERS, &layers))
				return 1;
			break;
		case 'T': tied = 1; break;
		case 'U': tied = 0; break;
		case 'C':
			if (!strcmp(optarg, "none"))
				no_chat = 1;
			else if (duet_chat_family_parse(optarg, &chat))
				return cli_fail("mkmodel", "--chat-template '%s': want llama2, chatml, zephyr, llama3 or none",
						optarg);
			break;
		case 'L':
			for (int i = 0; duet_shape_at(i); i++) {
				const struct duet_shape *sh = duet_shape_at(i);
				printf("%-15s dim %4d hidden %5d layers %2d heads %2d/%2d ctx %4d %s  %s\n",
				       sh->name, sh->dim, sh->hidden, sh->layers, sh->heads,
				       sh->kv_heads, sh->ctx, sh->tied ? "tied  " : "untied", sh->what);
			}
			return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc)
		return cli_fail("mkmodel", "unexpected argument '%s'", argv[optind]);
	if (!shape_name || !vocab_path || !out) {
		usage(stderr);
		return 2;
	}
	const struct duet_shape *sh = duet_shape_find(shape_name);
	if (!sh)
		return cli_fail("mkmodel", "unknown shape '%s' (try --list-shapes)", shape_name);
	if (layers > sh->layers)
		return cli_fail("mkmodel", "--layers %ld: shape '%s' has %d layers", layers, sh->name,
				sh->layers);
	int llama2c = !strcmp(format, "llama2c");
	if (!llama2c && strcmp(format, "gguf"))
		return cli_fail("mkmodel", "--format must be gguf or llama2c, not '%s'", format);

	struct duet_err err;
	struct duet_vocab vocab;
	char *hf_template = NULL;
	if (strcmp(vocab_path, DUET_VOCAB_BUILTIN_BYTES) == 0
		    ? duet_vocab_bytes(&vocab, &err)
		    : duet_vocab_load_any(&vocab, vocab_path, &hf_template, &err))
		return cli_fail("mkmodel", "%s", err.msg);
	struct duet_random_gen g;
	char name[128];
	struct prog prog;
	cli_progress_init(&prog.p, "mkmodel");
	struct duet_model_spec spec;
	duet_random_spec(&spec, &g, sh, dtype, tied, (int)ctx, seed, &vocab, name);
	spec.mix = mix;
	if (layers > 0) {
		spec.cfg.n_layers = (int)layers;
		size_t nl = strlen(name);
		snprintf(name + nl, sizeof name - nl, "-%ld-layers", layers);
	}
	/* By default every model answers chat: a tokenizer.json brings its
	 * model's own template, else the family the vocabulary's special
	 * tokens belong to (Llama 2's [INST] for SentencePiece). */
	if (chat == DUET_CHAT_NONE && !hf_template && !no_chat)
		chat = duet_vocab_find_special(&vocab, "<|start_header_id|>") >= 0 ? DUET_CHAT_LLAMA3
		       : duet_vocab_find_special(&vocab, "<|im_start|>") >= 0	   ? DUET_CHAT_CHATML
										   : DUET_CHAT_LLAMA2;
	spec.chat_template = no_chat			       ? NULL
			     : chat == DUET_CHAT_NONE && hf_template ? hf_template
								     : duet_chat_template(chat);
	spec.progress = on_progress;
	spec.progress_ctx = &prog;
	int rc = llama2c ? duet_write_llama2c(out, &spec, &err) : duet_write_gguf(out, &spec, &err);
	cli_progress_end(&prog.p);
	if (!rc && llama2c)
		rc = write_sidecar_tokenizer(out, &vocab, &err);
	duet_vocab_free(&vocab);
	free(hf_template);
	if (rc)
		return cli_fail("mkmodel", "%s", err.msg);
	fprintf(stderr, "duet mkmodel: wrote %s (%s, %s, %s, seed %llu)\n", out, sh->name,
		mix == DUET_MIX_Q4_K_M ? "q4_k_m" : duet_dtype_name(dtype), llama2c ? "llama2.c" : "GGUF", (unsigned long long)seed);
	return 0;
}
