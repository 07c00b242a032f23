/* JSON documents as a byte-level matcher: a compiled JSON schema (or "any
 * JSON object") and a state that takes text a byte at a time and refuses
 * the first byte after which no valid document could follow. Constrained
 * sampling (response_format) asks it of each candidate token's bytes.
 *
 * Schema keywords honoured: type (one or a list), properties, required,
 * additionalProperties (false, true or a schema), items, minItems,
 * maxItems, enum, const, minLength, maxLength; title, description,
 * default, examples, $schema, $id, $comment and strict are annotations.
 * Any other keyword is refused by name: a document this matcher lets
 * through must validate against the whole schema.
 *
 * Generated documents also keep to limits no schema states, so that a
 * document always ends: at most DUET_JSON_MAX_WS whitespace bytes in a
 * row, DUET_JSON_MAX_NUMBER bytes in a number (DUET_JSON_MAX_INT_DIGITS
 * before the point), DUET_JSON_MAX_DEPTH levels
 * of nesting. An object with declared properties takes only those (each
 * once), which every schema allows. */
#ifndef DUET_JSON_SCHEMA_H
#define DUET_JSON_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define DUET_JSON_MAX_DEPTH 16
#define DUET_JSON_MAX_PROPS 32 /* declared properties of one object */
#define DUET_JSON_MAX_ENUM 64  /* enum values */
#define DUET_JSON_MAX_WS 4
#define DUET_JSON_MAX_NUMBER 20
/* Digits before the point: 15 fit a double exactly and an int64, which
 * common parsers (jansson, JavaScript) need. */
#define DUET_JSON_MAX_INT_DIGITS 15
#define DUET_JSON_MAX_NODES 1024 /* subschemas of one schema */

struct duet_json_schema;
struct duet_json_node;

/* json: a schema as JSON text; NULL = any JSON object (json_object). */
struct duet_json_schema *duet_json_schema_compile(const char *json, struct duet_err *err);
void duet_json_schema_free(struct duet_json_schema *s);

struct duet_json_frame {
	const struct duet_json_node *node;
	uint8_t array;	 /* 1: an array, 0: an object */
	int16_t count;	 /* array: items begun */
	int16_t prop;	 /* object: the declared property being read, -1 = another key */
	uint32_t seen;	 /* object: declared properties present */
};

/* Where a document stands. Plain data: copy it to try bytes on a copy. */
struct duet_json_state {
	const struct duet_json_node *root;
	uint8_t mode, esc, utf8_left, ws, num;
	int8_t depth;
	int16_t chars, pos; /* string characters; literal bytes matched */
	const struct duet_json_node *vnode; /* the value being read */
	uint64_t cand; /* literals (or keys) still matching */
	struct duet_json_frame f[DUET_JSON_MAX_DEPTH];
};

void duet_json_start(struct duet_json_state *st, const struct duet_json_schema *s);
/* 0 if the n bytes keep the text a prefix of a valid document; -1 if not
 * (st is then unusable). */
int duet_json_feed(struct duet_json_state *st, const char *bytes, size_t n);
/* 1 when the text is a whole valid document. */
int duet_json_complete(const struct duet_json_state *st);
/* 1 when the document is complete and nothing but whitespace may follow:
 * generation should end. */
int duet_json_finished(const struct duet_json_state *st);

#endif
