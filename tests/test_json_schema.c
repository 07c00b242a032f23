/* The JSON document matcher behind response_format: documents valid
 * against a schema are taken byte by byte (and every proper prefix is
 * not yet complete), documents that break it are refused at the first
 * byte that does, schemas duet cannot honour are refused by keyword, and
 * the guide over a real vocabulary lets only tokens that keep the text a
 * document prefix through. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "engine/guide.h"
#include "engine/tokenizer.h"
#include "engine/vocab.h"
#include "text/json_schema.h"

#define PERSON                                                                                   \
	"{\"type\":\"object\",\"properties\":{"                                                  \
	"\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":5},"                        \
	"\"age\":{\"type\":\"integer\"},\"score\":{\"type\":\"number\"},"                        \
	"\"pet\":{\"enum\":[\"cat\",\"dog\",12,null]},"                                          \
	"\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"minItems\":1,\"maxItems\":2}," \
	"\"home\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":[\"string\",\"null\"]}}," \
	"\"required\":[\"city\"]}},"                                                             \
	"\"required\":[\"name\",\"age\"],\"additionalProperties\":false,\"title\":\"t\"}"

static struct duet_json_schema *compile(const char *schema)
{
	struct duet_err err;
	struct duet_json_schema *s = duet_json_schema_compile(schema, &err);
	if (!s)
		fail_msg("compile: %s", err.msg);
	return s;
}

/* -1 if doc is refused (or finished before its end), else the byte count
 * taken; *complete at the end. */
static int run(const struct duet_json_schema *s, const char *doc, int *complete)
{
	struct duet_json_state st;
	duet_json_start(&st, s);
	size_t n = strlen(doc);
	for (size_t i = 0; i < n; i++) {
		if (duet_json_feed(&st, doc + i, 1))
			return -1;
		/* A proper prefix of a valid document is never finished
		 * (generation would stop there). */
		if (i + 1 < n && duet_json_finished(&st) && !strchr(" \n", doc[i + 1]))
			return -1;
	}
	*complete = duet_json_complete(&st);
	return (int)n;
}

static void test_valid(void **state)
{
	(void)state;
	struct duet_json_schema *s = compile(PERSON);
	const char *good[] = {
		"{\"name\":\"Ann\",\"age\":30}",
		" {\"age\": -0, \"name\" : \"B\\n\\u00e9\"}",
		"{\"name\":\"\xc3\xa9t\xc3\xa9\",\"age\":1,\"pet\":null,\"score\":1.5e-3}",
		"{\"name\":\"x\",\"age\":2,\"pet\":12,\"tags\":[true,false],\"home\":{\"city\":null}}",
		"{\"name\":\"x\",\"age\":2,\"pet\":\"dog\",\"home\":{\"city\":\"Rome\"},\"tags\":[false]}",
		"{\n  \"name\": \"\xe2\x82\xac\",\n  \"age\": 7\n}",
	};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		int complete;
		if (run(s, good[i], &complete) < 0 || !complete)
			fail_msg("valid document %zu refused or incomplete: %s", i, good[i]);
	}
	duet_json_schema_free(s);
	/* json_object: any object, nested */
	s = compile(NULL);
	int complete;
	assert_true(run(s, "{\"a\":[1,{\"b\":null},\"c\"],\"d\":{}}", &complete) > 0 && complete);
	assert_int_equal(run(s, "[1]", &complete), -1);
	assert_int_equal(run(s, "\"x\"", &complete), -1);
	duet_json_schema_free(s);
	/* a number at the top is whole once it could end */
	s = compile("{\"type\":\"number\"}");
	assert_true(run(s, "12.5", &complete) > 0 && complete);
	assert_true(run(s, "12.", &complete) > 0 && !complete);
	duet_json_schema_free(s);
}

static void test_invalid(void **state)
{
	(void)state;
	struct duet_json_schema *s = compile(PERSON);
	const char *bad[] = {
		"{\"name\":\"Ann\"}",			   /* age is required */
		"{\"name\":\"Ann\",\"age\":30,\"x\":1}",  /* no other property */
		"{\"name\":\"Ann\",\"name\":\"B\"}",	   /* once each */
		"{\"name\":\"\",\"age\":1}",		   /* minLength */
		"{\"name\":\"abcdef\",\"age\":1}",	   /* maxLength */
		"{\"name\":\"a\",\"age\":1.5}",		   /* integer */
		"{\"name\":\"a\",\"age\":01}",		   /* leading zero */
		"{\"name\":\"a\",\"age\":1,\"pet\":\"cow\"}", /* enum */
		"{\"name\":\"a\",\"age\":1,\"pet\":1}",	   /* enum: 12 only */
		"{\"name\":\"a\",\"age\":1,\"tags\":[]}",	   /* minItems */
		"{\"name\":\"a\",\"age\":1,\"tags\":[true,true,true]}", /* maxItems */
		"{\"name\":\"a\",\"age\":1,\"tags\":[1]}",	   /* items */
		"{\"name\":\"\\x\",\"age\":1}",		   /* escape */
		"{\"name\":\"\\u12g4\",\"age\":1}",	   /* \u needs 4 hex digits */
		"{\"name\":\"\xc0\x80\",\"age\":1}",	   /* overlong UTF-8 */
		"{\"name\":\"\xed\xa0\x80\",\"age\":1}",	   /* a surrogate in UTF-8 */
		"{\"name\":\"a\nb\",\"age\":1}",		   /* raw control character */
		"{\"name\":\"a\",\"age\":1}x",		   /* nothing after the document */
		"{\"name\":\"a\",\"age\":1,\"home\":{}}",	   /* home.city is required */
		"{\"name\":\"a\",\"age\":1234567890123456}",   /* integer digits */
		"{     \"name\":\"a\",\"age\":1}",		   /* whitespace run */
		"{\"name\":\"a\",\"age\":tru}",		   /* literal */
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		int complete = 0, r = run(s, bad[i], &complete);
		if (r >= 0 && complete)
			fail_msg("invalid document %zu taken whole: %s", i, bad[i]);
	}
	duet_json_schema_free(s);
}

static void test_refused_schemas(void **state)
{
	(void)state;
	const struct {
		const char *schema, *says;
	} cases[] = {
		{"{\"type\":\"string\",\"pattern\":\"a+\"}", "'pattern'"},
		{"{\"anyOf\":[{\"type\":\"string\"}]}", "'anyOf'"},
		{"{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/x\"}}}", "'$ref'"},
		{"{\"type\":\"text\"}", "not a JSON type"},
		{"{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", "required"},
		{"{\"type\":\"array\",\"items\":[{}]}", "tuples"},
		{"{\"type\":\"string\",\"minLength\":3,\"maxLength\":2}", "above its maximum"},
		{"{\"enum\":[]}", "enum"},
		{"{\"type\":\"string\",\"enum\":[1,2]}", "no enum"},
		{"[1]", "must be an object"},
		{"{\"type\":", "not JSON"},
		/* a property name is data, never a format (the fuzzer's crash) */
		{"{\"type\":\"object\",\"properties\":{\"x%s%n%s\":{\"a\":{\"tygth\":1}}}}",
		 "x%s%n%s"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct duet_err err;
		struct duet_json_schema *s = duet_json_schema_compile(cases[i].schema, &err);
		if (s || !strstr(err.msg, cases[i].says))
			fail_msg("case %zu: %s", i, s ? "compiled" : err.msg);
	}
}

/* Over the Llama 2 vocabulary: every token the guide allows keeps the
 * text a prefix; tokens it refuses break it; a greedy walk that takes the
 * first allowed token (by id) always ends in a whole document. */
static void test_guide_tokens(void **state)
{
	(void)state;
	struct duet_vocab v;
	struct duet_err err;
	assert_int_equal(duet_vocab_load_file(&v, tu_vocab_gguf(), &err), 0);
	struct duet_token_table tt;
	assert_int_equal(duet_token_table_build(&tt, &v, &err), 0);
	struct duet_guide g;
	assert_int_equal(duet_guide_init(&g, &v, &tt, DUET_FORMAT_JSON_SCHEMA, PERSON, &err), 0);
	char text[4096];
	size_t len = 0;
	int steps = 0;
	while (!duet_guide_finished(&g) && steps < 400) {
		int pick = -1, allowed = 0;
		/* prefer closing tokens so that the walk ends */
		for (int id = v.n - 1; id >= 0; id--)
			if (duet_guide_allow(&g, id)) {
				allowed++;
				uint32_t a = tt.off[id], b = tt.off[id + 1];
				if (pick < 0 || (b - a == 1 && strchr("}\"]", tt.bytes[a])))
					pick = id;
			}
		assert_true(allowed > 0);
		uint32_t a = tt.off[pick], b = tt.off[pick + 1];
		memcpy(text + len, tt.bytes + a, b - a);
		len += b - a;
		assert_int_equal(duet_guide_accept(&g, pick), 0);
		steps++;
	}
	text[len] = 0;
	assert_true(duet_guide_finished(&g));
	struct duet_json_schema *s = compile(PERSON);
	int complete;
	if (run(s, text, &complete) < 0 || !complete)
		fail_msg("the walk wrote '%s'", text);
	/* before any text: the end of text is refused, "{" is allowed */
	struct duet_guide h;
	assert_int_equal(duet_guide_init(&h, &v, &tt, DUET_FORMAT_JSON_OBJECT, NULL, &err), 0);
	assert_false(duet_guide_allow(&h, v.eos));
	assert_true(duet_guide_allow(&h, duet_vocab_find(&v, "{", 1)));
	assert_false(duet_guide_allow(&h, duet_vocab_find(&v, "[", 1)));
	duet_guide_free(&h);
	duet_json_schema_free(s);
	duet_guide_free(&g);
	duet_token_table_free(&tt);
	duet_vocab_free(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_refused_schemas),
		cmocka_unit_test(test_guide_tokens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
