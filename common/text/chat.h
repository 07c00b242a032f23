/* Chat templates: which prompt format a model was trained on (read from
 * the GGUF key tokenizer.chat_template, recognised by its markers) and the
 * rendering of a list of messages into that format, ending where the
 * assistant's answer starts. Families: Llama-2 ([INST]), ChatML
 * (<|im_start|>: Qwen), Zephyr (<|user|>) and Llama 3
 * (<|start_header_id|>). */
#ifndef DUET_CHAT_H
#define DUET_CHAT_H

#include <stddef.h>

#include "base/err.h"

enum duet_chat_family {
	DUET_CHAT_NONE,
	DUET_CHAT_LLAMA2,
	DUET_CHAT_CHATML,
	DUET_CHAT_ZEPHYR,
	DUET_CHAT_LLAMA3,
};

struct duet_chat_msg {
	const char *role; /* "system", "user" or "assistant" */
	const char *content;
};

/* The family of a Jinja template, DUET_CHAT_NONE if none is recognised. */
enum duet_chat_family duet_chat_detect(const char *tmpl, size_t n);
const char *duet_chat_family_name(enum duet_chat_family f);
/* "llama2", "chatml", "zephyr", "llama3". */
int duet_chat_family_parse(const char *s, enum duet_chat_family *out);
/* A template of the family as models ship it, for `duet mkmodel`. */
const char *duet_chat_template(enum duet_chat_family f);
/* Renders the messages (malloc'd text in *out, caller frees). Roles other
 * than system/user/assistant, or an empty list, are refused. */
int duet_chat_render(enum duet_chat_family f, const struct duet_chat_msg *m, int n, char **out,
		     struct duet_err *err);

#endif
