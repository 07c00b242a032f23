/* JSON schema compiled into nodes, and the byte-level matcher of documents
 * valid against it: a pushdown automaton (one frame per open object or
 * array) whose state is plain data, so that trying a token's bytes is a
 * copy and a few steps. */
#include "text/json_schema.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

enum {
	T_OBJECT = 1,
	T_ARRAY = 2,
	T_STRING = 4,
	T_NUMBER = 8,
	T_INTEGER = 16,
	T_BOOLEAN = 32,
	T_NULL = 64,
	T_ALL = 127,
};

struct duet_json_node {
	int types;
	int n_props;
	char *name[DUET_JSON_MAX_PROPS];
	int name_len[DUET_JSON_MAX_PROPS];
	const struct duet_json_node *prop[DUET_JSON_MAX_PROPS];
	uint32_t required;
	const struct duet_json_node *extra; /* values of undeclared keys; NULL = none */
	const struct duet_json_node *items;
	int min_items, max_items; /* -1 = no bound */
	int min_len, max_len;
	int n_lit; /* enum/const: the values as compact JSON text */
	char *lit[DUET_JSON_MAX_ENUM];
	int lit_len[DUET_JSON_MAX_ENUM];
};

struct duet_json_schema {
	struct duet_json_node **nodes;
	int n_nodes;
	struct duet_json_node *root, *any;
};

/* ---- compiling ---- */

static struct duet_json_node *new_node(struct duet_json_schema *s, struct duet_err *err)
{
	if (s->n_nodes == DUET_JSON_MAX_NODES)
		return duet_errf(err, "more than %d subschemas", DUET_JSON_MAX_NODES), NULL;
	if (s->n_nodes % 64 == 0) {
		void *p = realloc(s->nodes, sizeof *s->nodes * (size_t)(s->n_nodes + 64));
		if (!p)
			return duet_errf(err, "out of memory"), NULL;
		s->nodes = p;
	}
	struct duet_json_node *n = calloc(1, sizeof *n);
	if (!n)
		return duet_errf(err, "out of memory"), NULL;
	n->min_items = n->min_len = 0;
	n->max_items = n->max_len = -1;
	s->nodes[s->n_nodes++] = n;
	return n;
}

static const char *const ANNOTATIONS[] = {"title",   "description", "default", "examples",
					  "$schema", "$id",	    "$comment", "strict"};
static const char *const KEYWORDS[] = {"type",	   "properties", "required", "additionalProperties",
				       "items",	   "minItems",	 "maxItems", "enum",
				       "const",	   "minLength",	 "maxLength"};

static int in_list(const char *k, const char *const *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(k, l[i]) == 0)
			return 1;
	return 0;
}

static int type_bit(const char *t)
{
	static const char *const names[] = {"object", "array",	 "string", "number",
					    "integer", "boolean", "null"};
	for (int i = 0; i < 7; i++)
		if (strcmp(t, names[i]) == 0)
			return 1 << i;
	return 0;
}

static int value_type_bit(json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return T_OBJECT;
	case JSON_ARRAY:
		return T_ARRAY;
	case JSON_STRING:
		return T_STRING;
	case JSON_INTEGER:
		return T_INTEGER | T_NUMBER;
	case JSON_REAL:
		return T_NUMBER;
	case JSON_TRUE:
	case JSON_FALSE:
		return T_BOOLEAN;
	default:
		return T_NULL;
	}
}

static int count_kw(json_t *o, const char *k, int *out, struct duet_err *err)
{
	json_t *v = json_object_get(o, k);
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1 << 20)
		return duet_errf(err, "%s must be a non-negative integer", k);
	*out = (int)json_integer_value(v);
	return 0;
}

static struct duet_json_node *compile(struct duet_json_schema *s, json_t *j, int depth,
				      struct duet_err *err);

static int add_literal(struct duet_json_node *n, json_t *v, struct duet_err *err)
{
	if (!(n->types & value_type_bit(v)))
		return 0; /* a value the type forbids can never validate */
	if (n->n_lit == DUET_JSON_MAX_ENUM)
		return duet_errf(err, "enum has more than %d values", DUET_JSON_MAX_ENUM);
	char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!t)
		return duet_errf(err, "out of memory");
	n->lit[n->n_lit] = t;
	n->lit_len[n->n_lit++] = (int)strlen(t);
	return 0;
}

static int compile_object(struct duet_json_schema *s, struct duet_json_node *n, json_t *j,
			  int depth, struct duet_err *err)
{
	json_t *props = json_object_get(j, "properties"), *req = json_object_get(j, "required");
	json_t *add = json_object_get(j, "additionalProperties");
	if (props && !json_is_object(props))
		return duet_errf(err, "properties must be an object");
	if (json_object_size(props) > DUET_JSON_MAX_PROPS)
		return duet_errf(err, "more than %d properties in one object", DUET_JSON_MAX_PROPS);
	const char *key;
	json_t *v;
	json_object_foreach(props, key, v)
	{
		size_t len = strlen(key);
		for (size_t i = 0; i < len; i++)
			if (key[i] == '"' || key[i] == '\\' || (unsigned char)key[i] < 0x20)
				return duet_errf(err, "property name '%.32s' needs escaping, which is not supported",
						 key);
		if (!len || len > 255)
			return duet_errf(err, "property names must be 1 to 255 bytes");
		int i = n->n_props;
		if (!(n->name[i] = strdup(key)))
			return duet_errf(err, "out of memory");
		n->name_len[i] = (int)len;
		n->n_props++;
		if (!(n->prop[i] = compile(s, v, depth + 1, err))) {
			duet_err_prefix(err, "%s", key);
			return -1;
		}
	}
	if (req) {
		size_t i;
		json_t *r;
		if (!json_is_array(req))
			return duet_errf(err, "required must be a list of property names");
		json_array_foreach(req, i, r)
		{
			int k = 0;
			while (json_is_string(r) && k < n->n_props &&
			       strcmp(n->name[k], json_string_value(r)) != 0)
				k++;
			if (!json_is_string(r) || k == n->n_props)
				return duet_errf(err, "required[%zu] is not a property in properties", i);
			n->required |= 1u << k;
		}
	}
	if (json_is_false(add))
		n->extra = NULL;
	else if (!add || json_is_true(add))
		n->extra = s->any;
	else if (!(n->extra = compile(s, add, depth + 1, err)))
		return duet_err_prefix(err, "additionalProperties"), -1;
	return 0;
}

static struct duet_json_node *compile(struct duet_json_schema *s, json_t *j, int depth,
				      struct duet_err *err)
{
	if (depth > DUET_JSON_MAX_DEPTH)
		return duet_errf(err, "nested more than %d deep", DUET_JSON_MAX_DEPTH), NULL;
	if (json_is_true(j) || (json_is_object(j) && json_object_size(j) == 0))
		return s->any;
	if (!json_is_object(j))
		return duet_errf(err, "a schema must be an object"), NULL;
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v)
	{
		if (!in_list(key, KEYWORDS, sizeof KEYWORDS / sizeof *KEYWORDS) &&
		    !in_list(key, ANNOTATIONS, sizeof ANNOTATIONS / sizeof *ANNOTATIONS))
			return duet_errf(err, "keyword '%.40s' is not supported (duet honours type, properties, required, additionalProperties, items, minItems, maxItems, enum, const, minLength, maxLength)",
					 key),
			       NULL;
	}
	struct duet_json_node *n = new_node(s, err);
	if (!n)
		return NULL;
	json_t *type = json_object_get(j, "type");
	if (json_is_string(type)) {
		n->types = type_bit(json_string_value(type));
	} else if (json_is_array(type)) {
		size_t i;
		json_t *t;
		json_array_foreach(type, i, t)
		{
			int b = json_is_string(t) ? type_bit(json_string_value(t)) : 0;
			if (!b)
				return duet_errf(err, "type[%zu] is not a JSON type", i), NULL;
			n->types |= b;
		}
	} else if (type) {
		return duet_errf(err, "type must be a string or a list of strings"), NULL;
	} else {
		n->types = json_object_get(j, "properties") ? T_OBJECT
			   : json_object_get(j, "items")    ? T_ARRAY
							    : T_ALL;
	}
	if (!n->types)
		return duet_errf(err, "type '%.32s' is not a JSON type", json_string_value(type)), NULL;
	if (compile_object(s, n, j, depth, err))
		return NULL;
	json_t *items = json_object_get(j, "items");
	if (items && json_is_array(items))
		return duet_errf(err, "items as a list (tuples) is not supported"), NULL;
	n->items = items ? compile(s, items, depth + 1, err) : s->any;
	if (!n->items)
		return duet_err_prefix(err, "items"), NULL;
	if (count_kw(j, "minItems", &n->min_items, err) || count_kw(j, "maxItems", &n->max_items, err) ||
	    count_kw(j, "minLength", &n->min_len, err) || count_kw(j, "maxLength", &n->max_len, err))
		return NULL;
	if ((n->max_items >= 0 && n->min_items > n->max_items) ||
	    (n->max_len >= 0 && n->min_len > n->max_len))
		return duet_errf(err, "a minimum is above its maximum"), NULL;
	json_t *en = json_object_get(j, "enum"), *cn = json_object_get(j, "const");
	if (en) {
		size_t i;
		if (!json_is_array(en) || !json_array_size(en))
			return duet_errf(err, "enum must be a non-empty list"), NULL;
		json_array_foreach(en, i, v)
		{
			if (add_literal(n, v, err))
				return NULL;
		}
	}
	if (cn && add_literal(n, cn, err))
		return NULL;
	if ((en || cn) && !n->n_lit)
		return duet_errf(err, "no enum/const value has the schema's type"), NULL;
	return n;
}

struct duet_json_schema *duet_json_schema_compile(const char *text, struct duet_err *err)
{
	struct duet_json_schema *s = calloc(1, sizeof *s);
	if (!s)
		return duet_errf(err, "out of memory"), NULL;
	if (!(s->any = new_node(s, err)))
		goto fail;
	s->any->types = T_ALL;
	s->any->extra = s->any->items = s->any;
	if (!text) {
		if (!(s->root = new_node(s, err)))
			goto fail;
		s->root->types = T_OBJECT;
		s->root->extra = s->root->items = s->any;
		return s;
	}
	json_error_t je;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		duet_errf(err, "not JSON: %s", je.text);
		goto fail;
	}
	const struct duet_json_node *root = compile(s, j, 0, err);
	json_decref(j);
	if (!root)
		goto fail;
	s->root = (struct duet_json_node *)root;
	return s;
fail:
	duet_json_schema_free(s);
	return NULL;
}

void duet_json_schema_free(struct duet_json_schema *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n_nodes; i++) {
		struct duet_json_node *n = s->nodes[i];
		for (int k = 0; k < n->n_props; k++)
			free(n->name[k]);
		for (int k = 0; k < n->n_lit; k++)
			free(n->lit[k]);
		free(n);
	}
	free(s->nodes);
	free(s);
}

/* ---- matching ---- */

enum {
	M_VALUE,     /* a value of vnode starts (after whitespace) */
	M_AFTER,     /* a value inside the top frame ended */
	M_OBJ_FIRST, /* after '{' */
	M_OBJ_KEY,   /* after ',' in an object */
	M_KEY,	     /* in a key */
	M_COLON,
	M_ARR_FIRST, /* after '[' */
	M_STRING,
	M_NUMBER,
	M_LITERAL,
	M_DONE,
};

enum { N_SIGN, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
enum { LIT_ENUM, LIT_BOOL, LIT_NULL };

static const char *const BOOLS[] = {"true", "false"};
static const int BOOL_LEN[] = {4, 5};
static const char *const NULLS[] = {"null"};
static const int NULL_LEN[] = {4};

void duet_json_start(struct duet_json_state *st, const struct duet_json_schema *s)
{
	memset(st, 0, offsetof(struct duet_json_state, f));
	st->root = st->vnode = s->root;
	st->mode = M_VALUE;
}

static int is_ws(unsigned c)
{
	return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

static void lits(const struct duet_json_state *st, const char *const **l, const int **len, int *n)
{
	switch (st->num) {
	case LIT_BOOL:
		*l = BOOLS, *len = BOOL_LEN, *n = 2;
		break;
	case LIT_NULL:
		*l = NULLS, *len = NULL_LEN, *n = 1;
		break;
	default:
		*l = (const char *const *)st->vnode->lit, *len = st->vnode->lit_len,
		*n = st->vnode->n_lit;
	}
}

static void end_value(struct duet_json_state *st)
{
	st->mode = st->depth == 0 ? M_DONE : M_AFTER;
	st->ws = 0;
}

static int push(struct duet_json_state *st, int array)
{
	if (st->depth == DUET_JSON_MAX_DEPTH)
		return -1;
	struct duet_json_frame *f = &st->f[st->depth++];
	*f = (struct duet_json_frame){st->vnode, (uint8_t)array, 0, -1, 0};
	st->mode = array ? M_ARR_FIRST : M_OBJ_FIRST;
	st->ws = 0;
	return 0;
}

static void pop(struct duet_json_state *st)
{
	st->depth--;
	st->vnode = st->f[st->depth].node;
	end_value(st);
}

/* Literals whose text continues with c at pos. */
static uint64_t lit_next(const struct duet_json_state *st, unsigned c)
{
	const char *const *l;
	const int *len;
	int n;
	lits(st, &l, &len, &n);
	uint64_t m = 0;
	for (int i = 0; i < n; i++)
		if ((st->cand >> i & 1) && len[i] > st->pos && (unsigned char)l[i][st->pos] == c)
			m |= 1ull << i;
	return m;
}

/* 1: a candidate ends here; 2: every candidate ends here. */
static int lit_ends(const struct duet_json_state *st)
{
	const char *const *l;
	const int *len;
	int n, some = 0, all = 1;
	lits(st, &l, &len, &n);
	for (int i = 0; i < n; i++)
		if (st->cand >> i & 1) {
			if (len[i] == st->pos)
				some = 1;
			else
				all = 0;
		}
	return some ? 1 + all : 0;
}

static int start_literal(struct duet_json_state *st, int kind, unsigned c)
{
	st->mode = M_LITERAL;
	st->num = (uint8_t)kind;
	st->cand = ~0ull;
	st->pos = 0;
	uint64_t m = lit_next(st, c);
	if (!m)
		return -1;
	st->cand = m;
	st->pos = 1;
	if (lit_ends(st) == 2)
		end_value(st);
	return 0;
}

static int value_start(struct duet_json_state *st, unsigned c)
{
	const struct duet_json_node *n = st->vnode;
	st->ws = 0;
	if (n->n_lit)
		return start_literal(st, LIT_ENUM, c);
	if (c == '{' && (n->types & T_OBJECT))
		return push(st, 0);
	if (c == '[' && (n->types & T_ARRAY))
		return push(st, 1);
	if (c == '"' && (n->types & T_STRING)) {
		st->mode = M_STRING;
		st->chars = 0;
		st->esc = st->utf8_left = 0;
		return 0;
	}
	if ((c == '-' || (c >= '0' && c <= '9')) && (n->types & (T_NUMBER | T_INTEGER))) {
		st->mode = M_NUMBER;
		st->num = c == '-' ? N_SIGN : c == '0' ? N_ZERO : N_INT;
		st->esc = !(n->types & T_NUMBER); /* integers only */
		st->pos = 1;
		st->chars = c != '-'; /* integer digits */
		return 0;
	}
	if ((c == 't' || c == 'f') && (n->types & T_BOOLEAN))
		return start_literal(st, LIT_BOOL, c);
	if (c == 'n' && (n->types & T_NULL))
		return start_literal(st, LIT_NULL, c);
	return -1;
}

/* A byte of a string's body: 0 taken, 1 the closing quote, -1 refused.
 * Escapes and UTF-8 are checked exactly (a parser would refuse an
 * overlong form or a surrogate); max counts characters (-1 = none). */
static int string_byte(struct duet_json_state *st, unsigned c, int max)
{
	if (st->utf8_left) {
		unsigned lo = 0x80, hi = 0xBF;
		if (st->num == 0xE0)
			lo = 0xA0;
		else if (st->num == 0xED)
			hi = 0x9F;
		else if (st->num == 0xF0)
			lo = 0x90;
		else if (st->num == 0xF4)
			hi = 0x8F;
		if (c < lo || c > hi)
			return -1;
		st->num = 0;
		st->utf8_left--;
		return 0;
	}
	if (st->esc == 1) {
		if (c == 'u')
			st->esc = 2;
		else if (strchr("\"\\/bfnrt", (int)c) && c)
			st->esc = 0;
		else
			return -1;
		return 0;
	}
	if (st->esc >= 2) {
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return -1;
		st->esc = st->esc == 5 ? 0 : st->esc + 1;
		return 0;
	}
	if (c == '"')
		return 1;
	if (c < 0x20)
		return -1;
	if (max >= 0 && st->chars >= max)
		return -1;
	st->chars++;
	if (c == '\\') {
		st->esc = 1;
		return 0;
	}
	if (c < 0x80)
		return 0;
	st->num = (uint8_t)c;
	if (c >= 0xC2 && c <= 0xDF)
		st->utf8_left = 1;
	else if (c >= 0xE0 && c <= 0xEF)
		st->utf8_left = 2;
	else if (c >= 0xF0 && c <= 0xF4)
		st->utf8_left = 3;
	else
		return -1;
	return 0;
}

static uint32_t all_props(const struct duet_json_node *n)
{
	return n->n_props == 32 ? 0xffffffffu : (1u << n->n_props) - 1;
}

static int key_start(struct duet_json_state *st)
{
	struct duet_json_frame *f = &st->f[st->depth - 1];
	const struct duet_json_node *n = f->node;
	st->mode = M_KEY;
	st->pos = 0;
	st->esc = st->utf8_left = 0;
	st->chars = 0;
	if (n->n_props) {
		st->cand = all_props(n) & ~f->seen;
		return st->cand ? 0 : -1;
	}
	st->cand = 0;
	return n->extra ? 0 : -1;
}

static int key_byte(struct duet_json_state *st, unsigned c)
{
	struct duet_json_frame *f = &st->f[st->depth - 1];
	const struct duet_json_node *n = f->node;
	if (!n->n_props) {
		int r = string_byte(st, c, -1);
		if (r == 1) {
			f->prop = -1;
			st->mode = M_COLON;
			st->ws = 0;
		}
		return r < 0 ? -1 : 0;
	}
	if (c == '"') {
		for (int i = 0; i < n->n_props; i++)
			if ((st->cand >> i & 1) && n->name_len[i] == st->pos) {
				f->prop = (int16_t)i;
				f->seen |= 1u << i;
				st->mode = M_COLON;
				st->ws = 0;
				return 0;
			}
		return -1;
	}
	uint64_t m = 0;
	for (int i = 0; i < n->n_props; i++)
		if ((st->cand >> i & 1) && n->name_len[i] > st->pos &&
		    (unsigned char)n->name[i][st->pos] == c)
			m |= 1ull << i;
	if (!m)
		return -1;
	st->cand = m;
	st->pos++;
	return 0;
}

static int number_complete(const struct duet_json_state *st)
{
	return st->num == N_ZERO || st->num == N_INT || st->num == N_FRAC || st->num == N_EXP;
}

/* 0: taken; 1: not part of the number, which has ended (c is for what
 * follows); -1: refused. */
static int number_byte(struct duet_json_state *st, unsigned c)
{
	int digit = c >= '0' && c <= '9', ints = st->esc, next = -1;
	switch (st->num) {
	case N_SIGN:
		next = c == '0' ? N_ZERO : digit ? N_INT : -1;
		if (next < 0)
			return -1;
		break;
	case N_ZERO:
	case N_INT:
		if (digit && st->num == N_INT)
			next = N_INT;
		else if (c == '.' && !ints)
			next = N_DOT;
		else if ((c == 'e' || c == 'E') && !ints)
			next = N_E;
		break;
	case N_DOT:
		if (!digit)
			return -1;
		next = N_FRAC;
		break;
	case N_FRAC:
		next = digit ? N_FRAC : (c == 'e' || c == 'E') ? N_E : -1;
		break;
	case N_E:
		next = (c == '+' || c == '-') ? N_ESIGN : digit ? N_EXP : -1;
		if (next < 0)
			return -1;
		break;
	case N_ESIGN:
		if (!digit)
			return -1;
		next = N_EXP;
		break;
	case N_EXP:
		next = digit ? N_EXP : -1;
		break;
	}
	if (next < 0)
		return number_complete(st) ? 1 : -1;
	if (++st->pos > DUET_JSON_MAX_NUMBER)
		return -1;
	if ((next == N_INT || next == N_ZERO) && ++st->chars > DUET_JSON_MAX_INT_DIGITS)
		return -1;
	st->num = (uint8_t)next;
	return 0;
}

static int after_byte(struct duet_json_state *st, unsigned c)
{
	struct duet_json_frame *f = &st->f[st->depth - 1];
	const struct duet_json_node *n = f->node;
	st->ws = 0;
	if (!f->array) {
		if (c == '}') {
			if ((f->seen & n->required) != n->required)
				return -1;
			pop(st);
			return 0;
		}
		if (c != ',')
			return -1;
		if (n->n_props && !(all_props(n) & ~f->seen))
			return -1;
		st->mode = M_OBJ_KEY;
		return 0;
	}
	if (c == ']') {
		if (f->count < n->min_items)
			return -1;
		pop(st);
		return 0;
	}
	if (c != ',' || (n->max_items >= 0 && f->count >= n->max_items) || f->count == INT16_MAX)
		return -1;
	f->count++;
	st->vnode = n->items;
	st->mode = M_VALUE;
	return 0;
}

static int step(struct duet_json_state *st, unsigned c)
{
	int ws_ok = st->mode != M_KEY && st->mode != M_STRING && st->mode != M_NUMBER &&
		    st->mode != M_LITERAL;
	if (ws_ok && is_ws(c))
		return ++st->ws > DUET_JSON_MAX_WS ? -1 : 0;
	struct duet_json_frame *f = st->depth ? &st->f[st->depth - 1] : NULL;
	switch (st->mode) {
	case M_VALUE:
		return value_start(st, c);
	case M_AFTER:
		return after_byte(st, c);
	case M_OBJ_FIRST:
		st->ws = 0;
		if (c == '}') {
			if (f->node->required)
				return -1;
			pop(st);
			return 0;
		}
		return c == '"' ? key_start(st) : -1;
	case M_OBJ_KEY:
		st->ws = 0;
		return c == '"' ? key_start(st) : -1;
	case M_KEY:
		return key_byte(st, c);
	case M_COLON:
		if (c != ':')
			return -1;
		st->ws = 0;
		st->vnode = f->prop >= 0 ? f->node->prop[f->prop] : f->node->extra;
		st->mode = M_VALUE;
		return 0;
	case M_ARR_FIRST:
		st->ws = 0;
		if (c == ']') {
			if (f->node->min_items > 0)
				return -1;
			pop(st);
			return 0;
		}
		if (f->node->max_items == 0)
			return -1;
		f->count = 1;
		st->vnode = f->node->items;
		return value_start(st, c);
	case M_STRING: {
		int r = string_byte(st, c, st->vnode->max_len);
		if (r == 1) {
			if (st->chars < st->vnode->min_len)
				return -1;
			end_value(st);
		}
		return r < 0 ? -1 : 0;
	}
	case M_NUMBER: {
		int r = number_byte(st, c);
		if (r != 1)
			return r;
		end_value(st);
		return step(st, c);
	}
	case M_LITERAL: {
		uint64_t m = lit_next(st, c);
		if (m) {
			st->cand = m;
			st->pos++;
			if (lit_ends(st) == 2)
				end_value(st);
			return 0;
		}
		if (!lit_ends(st))
			return -1;
		end_value(st);
		return step(st, c);
	}
	default: /* M_DONE: only whitespace */
		return -1;
	}
}

int duet_json_feed(struct duet_json_state *st, const char *bytes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (step(st, (unsigned char)bytes[i]))
			return -1;
	return 0;
}

int duet_json_complete(const struct duet_json_state *st)
{
	if (st->mode == M_DONE)
		return 1;
	if (st->depth)
		return 0;
	if (st->mode == M_NUMBER)
		return number_complete(st);
	return st->mode == M_LITERAL && lit_ends(st);
}

int duet_json_finished(const struct duet_json_state *st)
{
	return st->mode == M_DONE;
}
