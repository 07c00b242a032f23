/* What guided decoding (response_format) costs a decode step: the time to
 * check every token of a vocabulary against a JSON document state (the
 * full mask, taken only when the sampler's first draw is refused) and to
 * check one token (the common case), at states along a document.
 * Usage: bench_guide VOCAB_FILE [REPS] (a GGUF, tokenizer.bin or
 * tokenizer.json, as duet mkmodel --vocab takes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "engine/guide.h"
#include "engine/vocab.h"
#include "mkmodel/vocab_hf.h"

#define SCHEMA                                                                                 \
	"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"                 \
	"\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]}}}," \
	"\"required\":[\"name\",\"age\",\"tags\"],\"additionalProperties\":false}"

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_guide VOCAB_FILE [REPS]\n");
		return 2;
	}
	int reps = argc > 2 ? atoi(argv[2]) : 20;
	struct duet_vocab v;
	struct duet_token_table tt;
	struct duet_guide g;
	struct duet_err err;
	char *tmpl = NULL;
	if (duet_vocab_load_any(&v, argv[1], &tmpl, &err) || duet_token_table_build(&tt, &v, &err) ||
	    duet_guide_init(&g, &v, &tt, DUET_FORMAT_JSON_SCHEMA, SCHEMA, &err)) {
		fprintf(stderr, "bench_guide: %s\n", err.msg);
		return 1;
	}
	/* states: the start, inside a key, inside a string value, in a number,
	 * inside the array */
	const char *prefixes[] = {"", "{\"na", "{\"name\": \"Jo", "{\"name\":\"x\",\"age\":4",
				  "{\"name\":\"x\",\"age\":4,\"tags\":[\"a\","};
	printf("vocabulary %s: %d tokens\n", argv[1], v.n);
	printf("%-40s %10s %8s %12s\n", "state", "mask us", "allowed", "one tok ns");
	for (size_t k = 0; k < sizeof prefixes / sizeof *prefixes; k++) {
		duet_json_start(&g.st, g.schema);
		if (duet_json_feed(&g.st, prefixes[k], strlen(prefixes[k]))) {
			fprintf(stderr, "bench_guide: prefix %zu refused\n", k);
			return 1;
		}
		g.first_ready = 0; /* the state changed under the guide */
		int allowed = 0;
		double t0 = duet_now_s();
		for (int r = 0; r < reps; r++) {
			allowed = 0;
			for (int id = 0; id < v.n; id++)
				allowed += duet_guide_allow(&g, id);
		}
		double mask = (duet_now_s() - t0) / reps;
		int n1 = 1000000, sink = 0;
		t0 = duet_now_s();
		for (int i = 0; i < n1; i++)
			sink += duet_guide_allow(&g, (int)(((long long)i * 7919) % v.n));
		double one = (duet_now_s() - t0) / n1;
		char label[48];
		snprintf(label, sizeof label, "'%s'", prefixes[k]);
		printf("%-40s %10.0f %8d %12.0f%s\n", label, mask * 1e6, allowed, one * 1e9,
		       sink < 0 ? "!" : "");
	}
	duet_guide_free(&g);
	duet_token_table_free(&tt);
	duet_vocab_free(&v);
	free(tmpl);
	return 0;
}
