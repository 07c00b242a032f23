/* Guided decoding: the sampler may only pick tokens after which the text
 * generated so far is still the beginning of a valid JSON document (any
 * object, or one valid against a schema: response_format). The model's
 * token texts are laid out once (duet_token_table); each sequence keeps a
 * matcher state and advances it by every token it generates. */
#ifndef DUET_GUIDE_H
#define DUET_GUIDE_H

#include <stdint.h>

#include "base/err.h"
#include "engine/sampler.h"
#include "engine/vocab.h"
#include "text/json_schema.h"

/* The values of the wire's ResponseFormat. */
enum duet_format {
	DUET_FORMAT_TEXT = 0,
	DUET_FORMAT_JSON_OBJECT = 1,
	DUET_FORMAT_JSON_SCHEMA = 2,
};

/* Every token's bytes, end to end. */
struct duet_token_table {
	char *bytes;
	uint32_t *off; /* token i is bytes[off[i] .. off[i + 1]) */
	int n;
};
int duet_token_table_build(struct duet_token_table *t, const struct duet_vocab *v,
			   struct duet_err *err);
void duet_token_table_free(struct duet_token_table *t);

struct duet_guide {
	struct duet_json_schema *schema;
	struct duet_json_state st;
	const struct duet_token_table *tt;
	const struct duet_vocab *v;
	uint64_t checks; /* tokens tried against the state */
	/* which first bytes the state takes (a token starting otherwise is
	 * refused without a copy of the state); valid while first_ready */
	unsigned char first_ok[256];
	int first_ready;
};

/* schema: the JSON schema text for DUET_FORMAT_JSON_SCHEMA (else unused). */
int duet_guide_init(struct duet_guide *g, const struct duet_vocab *v,
		    const struct duet_token_table *tt, enum duet_format f, const char *schema,
		    struct duet_err *err);
void duet_guide_free(struct duet_guide *g);
/* The sampler's constraint (duet_allow_fn) on g. */
int duet_guide_allow(void *g, int id);
static inline void duet_guide_attach(struct duet_guide *g, struct duet_sampler *s)
{
	s->allow = duet_guide_allow;
	s->allow_ctx = g;
}
/* Advances by a generated token; -1 if it breaks the document (a token
 * that did not come from the guided sampler, e.g. on a resume). */
int duet_guide_accept(struct duet_guide *g, int id);
/* The document is whole and nothing may follow: the sequence ends. */
int duet_guide_finished(const struct duet_guide *g);

#endif
