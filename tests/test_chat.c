/* Chat templates: recognising the family of real templates and rendering
 * messages exactly as each family's models were trained on. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include <jansson.h>
#include "text/chat.h"

static void test_detect(void **state)
{
	(void)state;
	/* Excerpts of templates as shipped in GGUF files. */
	const char *llama2 = "{% if messages[0]['role'] == 'system' %}...{{ bos_token + '[INST] ' + "
			     "content.strip() + ' [/INST]' }}";
	const char *chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + "
			     "'\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
	const char *zephyr = "{% for message in messages %}\\n{% if message['role'] == 'user' %}\\n"
			     "{{ '<|user|>\\n' + message['content'] + eos_token }}";
	assert_int_equal(duet_chat_detect(llama2, strlen(llama2)), DUET_CHAT_LLAMA2);
	assert_int_equal(duet_chat_detect(chatml, strlen(chatml)), DUET_CHAT_CHATML);
	assert_int_equal(duet_chat_detect(zephyr, strlen(zephyr)), DUET_CHAT_ZEPHYR);
	assert_int_equal(duet_chat_detect("{{ messages }}", 14), DUET_CHAT_NONE);
	assert_int_equal(duet_chat_detect(NULL, 0), DUET_CHAT_NONE);
	for (int f = DUET_CHAT_LLAMA2; f <= DUET_CHAT_LLAMA3; f++) {
		const char *t = duet_chat_template((enum duet_chat_family)f);
		assert_int_equal(duet_chat_detect(t, strlen(t)), f);
		enum duet_chat_family back;
		assert_int_equal(duet_chat_family_parse(duet_chat_family_name((enum duet_chat_family)f), &back), 0);
		assert_int_equal(back, f);
	}
}

static void test_render(void **state)
{
	(void)state;
	const struct duet_chat_msg m[] = {
		{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};
	const struct {
		enum duet_chat_family f;
		const char *want;
	} cases[] = {
		{DUET_CHAT_LLAMA2, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]"},
		{DUET_CHAT_CHATML, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
				   "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
				   "<|im_start|>assistant\n"},
		{DUET_CHAT_ZEPHYR, "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello.</s>\n"
				   "<|user|>\nBye</s>\n<|assistant|>\n"},
	};
	for (size_t i = 0; i < 3; i++) {
		char *out;
		struct duet_err err;
		assert_int_equal(duet_chat_render(cases[i].f, m, 4, &out, &err), 0);
		assert_string_equal(out, cases[i].want);
		free(out);
	}
	/* The real Llama 3 and Qwen3 templates (../shared/models), recognised
	 * and rendered as @huggingface/jinja renders them (bos_token empty:
	 * duet's tokenizer adds BOS), for turns with surrounding whitespace. */
	const struct duet_chat_msg ws[] = {
		{"system", "Be brief."}, {"user", " Hi\n"}, {"assistant", "Hello."}, {"user", "Bye"}};
	const struct {
		const char *config;
		enum duet_chat_family f;
		const char *want;
	} real[] = {
		{"llama3-tokenizer_config.json", DUET_CHAT_LLAMA3,
		 "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
		 "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello."
		 "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>"
		 "assistant<|end_header_id|>\n\n"},
		{"qwen3-tokenizer_config.json", DUET_CHAT_CHATML,
		 "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi\n<|im_end|>\n<|im_start|>"
		 "assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"},
	};
	for (size_t i = 0; i < 2; i++) {
		char path[4200];
		tu_shared_path(real[i].config, path, sizeof path);
		json_error_t je;
		json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &je);
		assert_non_null(cfg);
		const char *t = json_string_value(json_object_get(cfg, "chat_template"));
		assert_non_null(t);
		assert_int_equal(duet_chat_detect(t, strlen(t)), real[i].f);
		char *out;
		struct duet_err err;
		assert_int_equal(duet_chat_render(real[i].f, ws, 4, &out, &err), 0);
		assert_string_equal(out, real[i].want);
		free(out);
		json_decref(cfg);
	}
	char *out;
	struct duet_err err;
	const struct duet_chat_msg bad[] = {{"tool", "x"}};
	assert_int_equal(duet_chat_render(DUET_CHAT_CHATML, bad, 1, &out, &err), -1);
	assert_non_null(strstr(err.msg, "tool"));
	assert_int_equal(duet_chat_render(DUET_CHAT_CHATML, m, 0, &out, &err), -1);
	assert_int_equal(duet_chat_render(DUET_CHAT_NONE, m, 1, &out, &err), -1);
	assert_non_null(strstr(err.msg, "no chat template"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_render),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
