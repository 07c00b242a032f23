#include "engine/guide.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"

int duet_token_table_build(struct duet_token_table *t, const struct duet_vocab *v,
			   struct duet_err *err)
{
	memset(t, 0, sizeof *t);
	size_t total = 0;
	char buf[DUET_VOCAB_MAX_PIECE + 8];
	for (int i = 0; i < v->n; i++)
		total += (size_t)duet_token_bytes(v, i, buf);
	t->bytes = malloc(total ? total : 1);
	t->off = malloc(sizeof *t->off * ((size_t)v->n + 1));
	if (!t->bytes || !t->off) {
		duet_token_table_free(t);
		return duet_errf(err, "token table: out of memory for %d tokens", v->n);
	}
	size_t o = 0;
	for (int i = 0; i < v->n; i++) {
		t->off[i] = (uint32_t)o;
		int n = duet_token_bytes(v, i, buf);
		memcpy(t->bytes + o, buf, (size_t)n);
		o += (size_t)n;
	}
	t->off[v->n] = (uint32_t)o;
	t->n = v->n;
	return 0;
}

void duet_token_table_free(struct duet_token_table *t)
{
	free(t->bytes);
	free(t->off);
	memset(t, 0, sizeof *t);
}

int duet_guide_init(struct duet_guide *g, const struct duet_vocab *v,
		    const struct duet_token_table *tt, enum duet_format f, const char *schema,
		    struct duet_err *err)
{
	memset(g, 0, sizeof *g);
	if (f != DUET_FORMAT_JSON_OBJECT && f != DUET_FORMAT_JSON_SCHEMA)
		return duet_errf(err, "response format %d is not a JSON format", (int)f);
	if (tt->n != v->n)
		return duet_errf(err, "token table of %d tokens for a vocabulary of %d", tt->n, v->n);
	g->schema = duet_json_schema_compile(f == DUET_FORMAT_JSON_SCHEMA ? schema : NULL, err);
	if (!g->schema) {
		duet_err_prefix(err, "json_schema");
		return -1;
	}
	g->tt = tt;
	g->v = v;
	duet_json_start(&g->st, g->schema);
	return 0;
}

void duet_guide_free(struct duet_guide *g)
{
	duet_json_schema_free(g->schema);
	g->schema = NULL;
}

/* The state's live part: frames above the depth are written before they
 * are read (a push initializes its frame), so a trial copy leaves them. */
static void copy_state(struct duet_json_state *to, const struct duet_json_state *from)
{
	memcpy(to, from,
	       offsetof(struct duet_json_state, f) + sizeof from->f[0] * (size_t)from->depth);
}

int duet_guide_allow(void *ctx, int id)
{
	struct duet_guide *g = ctx;
	g->checks++;
	/* The end of the text only after a whole document. */
	if (duet_vocab_is_eog(g->v, id))
		return duet_json_complete(&g->st);
	uint32_t a = g->tt->off[id], b = g->tt->off[id + 1];
	if (a == b)
		return 0; /* control tokens write nothing a document could use */
	/* Most tokens fail on their first byte: 256 trials once per state
	 * spare a copy per token. */
	if (!g->first_ready) {
		for (int c = 0; c < 256; c++) {
			struct duet_json_state s;
			char ch = (char)c;
			copy_state(&s, &g->st);
			g->first_ok[c] = duet_json_feed(&s, &ch, 1) == 0;
		}
		g->first_ready = 1;
	}
	if (!g->first_ok[(unsigned char)g->tt->bytes[a]])
		return 0;
	if (b - a == 1)
		return 1;
	struct duet_json_state s;
	copy_state(&s, &g->st);
	return duet_json_feed(&s, g->tt->bytes + a, b - a) == 0;
}

int duet_guide_accept(struct duet_guide *g, int id)
{
	if (id < 0 || id >= g->tt->n)
		return -1;
	g->first_ready = 0;
	if (duet_vocab_is_eog(g->v, id))
		return duet_json_complete(&g->st) ? 0 : -1;
	uint32_t a = g->tt->off[id], b = g->tt->off[id + 1];
	return duet_json_feed(&g->st, g->tt->bytes + a, b - a);
}

int duet_guide_finished(const struct duet_guide *g)
{
	return duet_json_finished(&g->st);
}
