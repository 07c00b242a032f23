/* libFuzzer target: Hugging Face tokenizer.json files as `duet mkmodel
 * --vocab` and `duet tokenize --vocab` read them (duet_vocab_from_hf), with
 * a fixed tokenizer_config.json beside them; a vocabulary that loads then
 * tokenizes and detokenizes a fixed text.
 *
 * Input: the tokenizer.json bytes (written to a file in a private
 * directory, since the reader takes paths). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/tokenizer.h"
#include "mkmodel/vocab_hf.h"

static char json_path[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char dir[] = "/tmp/duet-fuzz-hfvocab-XXXXXX";
	if (!mkdtemp(dir))
		abort();
	snprintf(json_path, sizeof json_path, "%s/tokenizer.json", dir);
	char cfg[256];
	snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
	FILE *f = fopen(cfg, "w");
	if (!f)
		abort();
	fputs("{\"eos_token\": \"<|im_end|>\", \"bos_token\": null, \"add_bos_token\": false, "
	      "\"chat_template\": \"{{ messages }}\"}",
	      f);
	fclose(f);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fopen(json_path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	struct duet_vocab v;
	char *tmpl;
	struct duet_err err;
	if (duet_vocab_from_hf(&v, json_path, &tmpl, &err) == 0) {
		static const char text[] = "the thing <|im_start|>caf\xc3\xa9 12345\n\n  x";
		int ids[256];
		size_t n;
		if (duet_tokenize(&v, text, sizeof text - 1, 1, ids, 256, &n, &err) == 0) {
			char out[2048];
			size_t on;
			(void)duet_detokenize(&v, ids, n, out, sizeof out, &on, &err);
		}
		duet_vocab_free(&v);
		free(tmpl);
	}
	return 0;
}
