/* libFuzzer target: the JSON schema compiler and the document matcher of
 * response_format (common/text/json_schema.c). A schema comes from a
 * client and a document's bytes from a model's tokens: neither may crash
 * it, and what it takes byte by byte it takes whole.
 *
 * Input: a schema (empty = any object), a NUL byte, then document bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/json_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t slen = nul ? (size_t)(nul - data) : size;
	char *schema = malloc(slen + 1);
	if (!schema)
		return 0;
	memcpy(schema, data, slen);
	schema[slen] = 0;
	struct duet_err err;
	struct duet_json_schema *s = duet_json_schema_compile(slen ? schema : NULL, &err);
	free(schema);
	if (!s)
		return 0;
	const char *doc = nul ? (const char *)nul + 1 : "";
	size_t n = nul ? size - slen - 1 : 0;
	struct duet_json_state a, b;
	duet_json_start(&a, s);
	duet_json_start(&b, s);
	int ok_bytes = 0, ok_whole = duet_json_feed(&b, doc, n) == 0;
	size_t i = 0;
	for (; i < n; i++)
		if (duet_json_feed(&a, doc + i, 1))
			break;
	ok_bytes = i == n;
	if (ok_bytes != ok_whole)
		abort(); /* the same text must get the same answer in any pieces */
	(void)duet_json_complete(&a);
	duet_json_schema_free(s);
	return 0;
}
