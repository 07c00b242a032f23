/* A Hugging Face tokenizer.json (byte-level BPE: Llama 3, Qwen2/Qwen3) with
 * the tokenizer_config.json beside it, read into a duet_vocab as the usual
 * GGUF conversion would have written it: tokens and their types (added
 * tokens control or user-defined, gaps unused), merges, the pre-tokenizer
 * (recognised by its regex), BOS/EOS from the config, add_bos from the
 * config or the post-processor, and the chat template. */
#ifndef DUET_VOCAB_HF_H
#define DUET_VOCAB_HF_H

#include "base/err.h"
#include "engine/vocab.h"

/* path must end in "tokenizer.json"; its config is the same path ending in
 * "tokenizer_config.json". *chat_template is NULL or malloc'd (the
 * caller frees it). */
int duet_vocab_from_hf(struct duet_vocab *v, const char *path, char **chat_template,
		       struct duet_err *err);

/* A Hugging Face tokenizer.json (a path ending in .json), or a GGUF or
 * tokenizer.bin through duet_vocab_load_file. */
int duet_vocab_load_any(struct duet_vocab *v, const char *path, char **chat_template,
			struct duet_err *err);

#endif
