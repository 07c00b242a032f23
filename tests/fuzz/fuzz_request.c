/* libFuzzer target: HTTP request bodies through the router's parser
 * (router_parse_request: JSON, every field's checks, chat rendering with
 * each template family, tokenization with the real Llama vocabulary).
 *
 * Input: one byte (bit 0: chat completions; bits 1-2: the chat template
 * family), then the body. The vocabulary comes from $DUET_FUZZ_VOCAB. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mkmodel/model_write.h"
#include "router.h"

static struct router R;
static struct duet_model M;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *path = getenv("DUET_FUZZ_VOCAB");
	struct duet_err err;
	if (!path || duet_vocab_load_file(&M.vocab, path, &err)) {
		fprintf(stderr, "fuzz_request: set DUET_FUZZ_VOCAB to a vocabulary GGUF (%s)\n",
			path ? err.msg : "unset");
		exit(2);
	}
	M.cfg.vocab_size = M.vocab.n;
	M.cfg.ctx_len = 4096;
	R.model = &M;
	R.cfg.max_tokens_limit = 4096;
	R.cfg.model_name = "fuzz";
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	static struct rjob job; /* large: off the stack */
	memset(&job, 0, sizeof job);
	job.tmpl.chat = data[0] & 1;
	R.chat = (enum duet_chat_family)((data[0] >> 1) & 3);
	struct duet_err err;
	(void)router_parse_request(&R, (const char *)data + 1, size - 1, &job, &err);
	router_job_free(&job);
	return 0;
}
