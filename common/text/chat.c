#include "text/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int contains(const char *s, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	for (size_t i = 0; i + k <= n; i++)
		if (memcmp(s + i, needle, k) == 0)
			return 1;
	return 0;
}

enum duet_chat_family duet_chat_detect(const char *t, size_t n)
{
	if (!t || !n)
		return DUET_CHAT_NONE;
	if (contains(t, n, "<|start_header_id|>"))
		return DUET_CHAT_LLAMA3;
	if (contains(t, n, "<|im_start|>"))
		return DUET_CHAT_CHATML;
	if (contains(t, n, "<|user|>") || contains(t, n, "<|assistant|>"))
		return DUET_CHAT_ZEPHYR;
	if (contains(t, n, "[INST]"))
		return DUET_CHAT_LLAMA2;
	return DUET_CHAT_NONE;
}

const char *duet_chat_family_name(enum duet_chat_family f)
{
	switch (f) {
	case DUET_CHAT_LLAMA2: return "llama2";
	case DUET_CHAT_CHATML: return "chatml";
	case DUET_CHAT_ZEPHYR: return "zephyr";
	case DUET_CHAT_LLAMA3: return "llama3";
	case DUET_CHAT_NONE: break;
	}
	return "none";
}

int duet_chat_family_parse(const char *s, enum duet_chat_family *out)
{
	for (int f = DUET_CHAT_LLAMA2; f <= DUET_CHAT_LLAMA3; f++)
		if (strcmp(s, duet_chat_family_name((enum duet_chat_family)f)) == 0) {
			*out = (enum duet_chat_family)f;
			return 0;
		}
	return -1;
}

const char *duet_chat_template(enum duet_chat_family f)
{
	switch (f) {
	case DUET_CHAT_LLAMA2:
		return "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + "
		       "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
		       "'assistant' %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% "
		       "endfor %}";
	case DUET_CHAT_CHATML:
		return "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
		       "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
		       "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
	case DUET_CHAT_ZEPHYR:
		return "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + "
		       "message['content'] + eos_token + '\\n' }}{% endfor %}{% if "
		       "add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";
	case DUET_CHAT_LLAMA3:
		return "{% set loop_messages = messages %}{% for message in loop_messages %}{% set "
		       "content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ "
		       "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set "
		       "content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if "
		       "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' "
		       "}}{% endif %}";
	case DUET_CHAT_NONE: break;
	}
	return NULL;
}

/* Appends to a growing string; on allocation failure the string is freed
 * and *s set to NULL, which the caller checks once at the end. */
static void put_n(char **s, size_t *len, size_t *cap, const char *a, size_t n)
{
	if (!*s)
		return;
	if (*len + n + 1 > *cap) {
		size_t c = *cap * 2 > *len + n + 1 ? *cap * 2 : *len + n + 1;
		char *ns = realloc(*s, c);
		if (!ns) {
			free(*s);
			*s = NULL;
			return;
		}
		*s = ns;
		*cap = c;
	}
	memcpy(*s + *len, a, n);
	*len += n;
	(*s)[*len] = 0;
}

static void put(char **s, size_t *len, size_t *cap, const char *a)
{
	put_n(s, len, cap, a, strlen(a));
}

int duet_chat_render(enum duet_chat_family f, const struct duet_chat_msg *m, int n, char **out,
		     struct duet_err *err)
{
	if (f == DUET_CHAT_NONE)
		return duet_errf(err, "the model has no chat template");
	if (n < 1)
		return duet_errf(err, "messages: at least one message is needed");
	for (int i = 0; i < n; i++)
		if (strcmp(m[i].role, "system") && strcmp(m[i].role, "user") &&
		    strcmp(m[i].role, "assistant"))
			return duet_errf(err, "messages[%d]: role '%.32s' is not system, user or assistant",
					 i, m[i].role);
	size_t len = 0, cap = 256;
	char *s = malloc(cap);
	if (s)
		s[0] = 0;
	if (f == DUET_CHAT_LLAMA2) {
		/* The system prompt goes inside the first [INST] block; BOS is
		 * added by the tokenizer, later turns are separated by EOS. */
		const char *sys = NULL;
		int first = 1;
		for (int i = 0; i < n; i++) {
			if (!strcmp(m[i].role, "system")) {
				sys = m[i].content;
			} else if (!strcmp(m[i].role, "user")) {
				put(&s, &len, &cap, first ? "[INST] " : "<s>[INST] ");
				if (sys) {
					put(&s, &len, &cap, "<<SYS>>\n");
					put(&s, &len, &cap, sys);
					put(&s, &len, &cap, "\n<</SYS>>\n\n");
					sys = NULL;
				}
				put(&s, &len, &cap, m[i].content);
				put(&s, &len, &cap, " [/INST]");
				first = 0;
			} else {
				put(&s, &len, &cap, " ");
				put(&s, &len, &cap, m[i].content);
				put(&s, &len, &cap, " </s>");
			}
		}
	} else if (f == DUET_CHAT_LLAMA3) {
		/* Each turn's content trimmed (the template's | trim); BOS,
		 * which the template puts first, is added by the tokenizer. */
		for (int i = 0; i < n; i++) {
			const char *c = m[i].content, *e = c + strlen(c);
			while (c < e && strchr(" \t\n\r\f\v", *c))
				c++;
			while (e > c && strchr(" \t\n\r\f\v", e[-1]))
				e--;
			put(&s, &len, &cap, "<|start_header_id|>");
			put(&s, &len, &cap, m[i].role);
			put(&s, &len, &cap, "<|end_header_id|>\n\n");
			put_n(&s, &len, &cap, c, (size_t)(e - c));
			put(&s, &len, &cap, "<|eot_id|>");
		}
		put(&s, &len, &cap, "<|start_header_id|>assistant<|end_header_id|>\n\n");
	} else {
		for (int i = 0; i < n; i++) {
			if (f == DUET_CHAT_CHATML) {
				put(&s, &len, &cap, "<|im_start|>");
				put(&s, &len, &cap, m[i].role);
				put(&s, &len, &cap, "\n");
				put(&s, &len, &cap, m[i].content);
				put(&s, &len, &cap, "<|im_end|>\n");
			} else {
				put(&s, &len, &cap, "<|");
				put(&s, &len, &cap, m[i].role);
				put(&s, &len, &cap, "|>\n");
				put(&s, &len, &cap, m[i].content);
				put(&s, &len, &cap, "</s>\n");
			}
		}
		put(&s, &len, &cap, f == DUET_CHAT_CHATML ? "<|im_start|>assistant\n" : "<|assistant|>\n");
	}
	if (!s)
		return duet_errf(err, "out of memory rendering the chat");
	*out = s;
	return 0;
}
