#include "mkmodel/vocab_hf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/vocab_impl.h"

/* Longest path this reader builds (the config file beside the JSON). */
#define HF_PATH_MAX 4096

/* An id: a non-negative integral number (integers are read as reals, see
 * below), or -1. */
static long long jint(const json_t *j)
{
	if (!json_is_number(j))
		return -1;
	double d = json_number_value(j);
	return d >= 0 && d < DUET_VOCAB_MAX_TOKENS && d == (double)(long long)d ? (long long)d : -1;
}

/* The Split regex of a pre_tokenizer (alone or in a Sequence), and whether
 * a ByteLevel step is there. */
static void scan_pre(json_t *pt, const char **regex, int *byte_level)
{
	if (!json_is_object(pt))
		return;
	const char *type = json_string_value(json_object_get(pt, "type"));
	if (!type)
		return;
	if (!strcmp(type, "Sequence")) {
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(pt, "pretokenizers"), i, e)
			scan_pre(e, regex, byte_level);
	} else if (!strcmp(type, "Split")) {
		*regex = json_string_value(json_object_get(json_object_get(pt, "pattern"), "Regex"));
	} else if (!strcmp(type, "ByteLevel")) {
		*byte_level = 1;
	}
}

/* A special token of tokenizer_config.json: a string or {"content": ...}. */
static const char *config_token(json_t *cfg, const char *key)
{
	json_t *t = json_object_get(cfg, key);
	if (json_is_object(t))
		t = json_object_get(t, "content");
	return json_string_value(t);
}

/* The id of a special token named in the config, by its text: an added
 * token, else a normal piece of the same text (linear: the piece map is
 * not built yet). */
static int id_of(const struct duet_vocab *v, const char *s)
{
	if (!s)
		return -1;
	int id = duet_vocab_find_special(v, s);
	for (int i = 0; id < 0 && i < v->n; i++)
		if (v->len[i] == strlen(s) && !memcmp(duet_vocab_piece(v, i), s, v->len[i]))
			id = i;
	return id;
}

/* Whether the post-processor puts the BOS token before a single text. */
static int post_adds(json_t *tok, const char *bos)
{
	json_t *pp = json_object_get(tok, "post_processor");
	json_t *single = json_object_get(pp, "single");
	if (!json_is_array(single) || !bos) {
		/* a Sequence of processors: look into each */
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(pp, "processors"), i, e)
			if (json_is_array(json_object_get(e, "single")))
				single = json_object_get(e, "single");
		if (!json_is_array(single) || !bos)
			return 0;
	}
	json_t *first = json_array_get(single, 0);
	const char *id = json_string_value(json_object_get(json_object_get(first, "SpecialToken"), "id"));
	return id && !strcmp(id, bos);
}

static char *config_path(const char *json_path)
{
	static const char suffix[] = "tokenizer.json";
	size_t n = strlen(json_path), sl = sizeof suffix - 1;
	if (n < sl || strcmp(json_path + n - sl, suffix) || n + 8 > HF_PATH_MAX)
		return NULL;
	char *p = malloc(n + 8);
	if (p)
		snprintf(p, n + 8, "%.*stokenizer_config.json", (int)(n - sl), json_path);
	return p;
}

/* Fills pieces (GGUF spelling), types, bos/eos from the JSON documents. */
static int build(struct duet_vocab *v, json_t *tok, json_t *cfg, const char *path,
		 char **chat_template, struct duet_err *err)
{
	json_t *model = json_object_get(tok, "model");
	const char *mtype = json_string_value(json_object_get(model, "type"));
	if (!mtype || strcmp(mtype, "BPE"))
		return duet_errf(err, "%s: model.type is '%s'; duet reads byte-level BPE tokenizers from tokenizer.json",
				 path, mtype ? mtype : "(none)");
	const char *regex = NULL;
	int byte_level = 0;
	scan_pre(json_object_get(tok, "pre_tokenizer"), &regex, &byte_level);
	if (!byte_level)
		return duet_errf(err, "%s: pre_tokenizer has no ByteLevel step; not a byte-level BPE tokenizer",
				 path);
	enum duet_bpe_pre pre;
	int found = 0;
	for (int p = DUET_PRE_LLAMA3; p <= DUET_PRE_QWEN2 && !found; p++)
		if (regex && !strcmp(regex, duet_bpe_pre_regex((enum duet_bpe_pre)p))) {
			pre = (enum duet_bpe_pre)p;
			found = 1;
		}
	if (!found)
		return duet_errf(err, "%s: pre_tokenizer regex '%.80s' is not one duet knows (Llama 3's, Qwen2's)",
				 path, regex ? regex : "(none)");
	json_t *norm = json_object_get(tok, "normalizer");
	const char *ntype = json_string_value(json_object_get(norm, "type"));
	int nfc = ntype && !strcmp(ntype, "NFC");
	if ((ntype && !nfc) || nfc != (pre == DUET_PRE_QWEN2))
		return duet_errf(err, "%s: normalizer '%s' with the %s pre-tokenizer is not a combination duet knows",
				 path, ntype ? ntype : "none", duet_bpe_pre_name(pre));
	json_t *vocab = json_object_get(model, "vocab"), *added = json_object_get(tok, "added_tokens");
	json_t *merges = json_object_get(model, "merges");
	if (!json_is_object(vocab) || !json_is_array(merges))
		return duet_errf(err, "%s: model.vocab or model.merges is missing", path);
	/* Ids are the vocabulary's and the added tokens'; gaps are unused. */
	long max_id = -1;
	const char *key;
	json_t *val;
	json_object_foreach(vocab, key, val) {
		long long id = jint(val);
		if (id < 0)
			return duet_errf(err, "%s: token '%.40s' has no valid id", path, key);
		max_id = id > max_id ? (long)id : max_id;
	}
	size_t i;
	json_t *e;
	json_array_foreach(added, i, e) {
		long long id = jint(json_object_get(e, "id"));
		if (id < 0 || !json_string_value(json_object_get(e, "content")))
			return duet_errf(err, "%s: added token %zu is malformed", path, i);
		max_id = id > max_id ? (long)id : max_id;
	}
	int n = (int)max_id + 1;
	if (n < 256)
		return duet_errf(err, "%s: %d tokens; a byte-level vocabulary has at least 256", path, n);
	const char **spell = calloc((size_t)n, sizeof *spell);
	uint8_t *types = calloc((size_t)n, 1);
	char (*pad)[24] = calloc((size_t)n, sizeof *pad);
	int rc = -1;
	if (!spell || !types || !pad) {
		duet_errf(err, "%s: out of memory for %d tokens", path, n);
		goto out;
	}
	json_object_foreach(vocab, key, val) {
		spell[jint(val)] = key;
		types[jint(val)] = DUET_TOK_NORMAL;
	}
	json_array_foreach(added, i, e) {
		long long id = jint(json_object_get(e, "id"));
		spell[id] = json_string_value(json_object_get(e, "content"));
		types[id] = json_is_true(json_object_get(e, "special")) ? DUET_TOK_CONTROL : DUET_TOK_USER;
	}
	size_t total = 0;
	for (int k = 0; k < n; k++) {
		if (!spell[k]) { /* as llama.cpp's converter fills gaps */
			snprintf(pad[k], sizeof pad[k], "[PAD%d]", k);
			spell[k] = pad[k];
			types[k] = DUET_TOK_UNUSED;
		}
		size_t l = strlen(spell[k]);
		if (l > DUET_VOCAB_MAX_PIECE) {
			duet_errf(err, "%s: token %d is %zu bytes long (limit %d)", path, k, l,
				  DUET_VOCAB_MAX_PIECE);
			goto out;
		}
		total += l + 1;
	}
	if (duet_vocab_alloc(v, n, total)) {
		duet_errf(err, "%s: out of memory for %d tokens", path, n);
		goto out;
	}
	size_t o = 0;
	for (int k = 0; k < n; k++) {
		v->type[k] = types[k];
		v->off[k] = (uint32_t)o;
		v->len[k] = (uint32_t)duet_vocab_bpe_canonical(spell[k], strlen(spell[k]), types[k],
							       v->arena + o);
		o += v->len[k];
		v->arena[o++] = 0;
	}
	v->bpe = 1;
	v->unk = -1;
	const char *bos = config_token(cfg, "bos_token"), *eos = config_token(cfg, "eos_token");
	v->bos = id_of(v, bos);
	v->eos = id_of(v, eos);
	json_t *ab = json_object_get(cfg, "add_bos_token");
	/* add_bos_token when the config says; else whether the post-processor
	 * prepends BOS; else Llama 3's practice (its published tokenizer.json
	 * prepends <|begin_of_text|>; copies without that post-processor
	 * exist). */
	v->add_bos = json_is_boolean(ab)       ? json_is_true(ab)
		     : post_adds(tok, bos)     ? 1
					       : v->bos >= 0 && pre == DUET_PRE_LLAMA3;
	if (v->eos < 0) {
		duet_errf(err, "%s: tokenizer_config.json names no eos_token in the vocabulary", path);
		goto out;
	}
	if (duet_vocab_index(v, path, err))
		goto out;
	/* Merges: "a b" strings, or [a, b] pairs in newer files. */
	size_t nm = json_array_size(merges);
	const char **ms = calloc(nm ? nm : 1, sizeof *ms);
	uint32_t *ml = calloc(nm ? nm : 1, sizeof *ml);
	char **owned = calloc(nm ? nm : 1, sizeof *owned);
	int ok = ms && ml && owned;
	json_array_foreach(merges, i, e) {
		if (!ok)
			break;
		if (json_is_string(e)) {
			ms[i] = json_string_value(e);
		} else {
			const char *a = json_string_value(json_array_get(e, 0));
			const char *b = json_string_value(json_array_get(e, 1));
			if (!a || !b || json_array_size(e) != 2) {
				duet_errf(err, "%s: merge %zu is neither a string nor a pair of strings",
					  path, i);
				ok = -1;
				break;
			}
			size_t l = strlen(a) + strlen(b) + 2;
			if (!(owned[i] = malloc(l))) {
				ok = 0;
				break;
			}
			snprintf(owned[i], l, "%s %s", a, b);
			ms[i] = owned[i];
		}
		ml[i] = (uint32_t)strlen(ms[i]);
	}
	if (!ok)
		duet_errf(err, "%s: out of memory for %zu merges", path, nm);
	else if (ok > 0 && !duet_vocab_bpe_merges(v, (int)nm, ms, ml, path, err) &&
		 !duet_vocab_bpe_finish(v, pre, path, err))
		rc = 0;
	for (size_t k = 0; owned && k < nm; k++)
		free(owned[k]);
	free(owned);
	free(ms);
	free(ml);
	if (rc)
		goto out;
	/* The chat template: a string, or named templates of which "default". */
	json_t *ct = json_object_get(cfg, "chat_template");
	const char *tmpl = json_string_value(ct);
	json_array_foreach(ct, i, e) {
		const char *name = json_string_value(json_object_get(e, "name"));
		if (name && !strcmp(name, "default"))
			tmpl = json_string_value(json_object_get(e, "template"));
	}
	*chat_template = tmpl ? strdup(tmpl) : NULL;
	if (tmpl && !*chat_template) {
		duet_errf(err, "%s: out of memory", path);
		rc = -1;
	}
out:
	free(spell);
	free(types);
	free(pad);
	return rc;
}

int duet_vocab_from_hf(struct duet_vocab *v, const char *path, char **chat_template,
		       struct duet_err *err)
{
	memset(v, 0, sizeof *v);
	*chat_template = NULL;
	json_error_t je;
	/* Configs hold integers past 64 bits (model_max_length 1e30). */
	json_t *tok = json_load_file(path, JSON_DECODE_INT_AS_REAL, &je);
	if (!tok)
		return duet_errf(err, "%s:%d: %s", path, je.line, je.text);
	char *cp = config_path(path);
	json_t *cfg = cp ? json_load_file(cp, JSON_DECODE_INT_AS_REAL, &je) : NULL;
	int rc;
	if (!cfg)
		rc = duet_errf(err, "%s: cannot read the tokenizer_config.json beside it (%s)", path,
			       cp ? je.text : "the file is not named *tokenizer.json");
	else
		rc = build(v, tok, cfg, path, chat_template, err);
	if (rc) {
		duet_vocab_free(v);
		free(*chat_template);
		*chat_template = NULL;
	}
	json_decref(tok);
	json_decref(cfg);
	free(cp);
	return rc;
}

int duet_vocab_load_any(struct duet_vocab *v, const char *path, char **chat_template,
			struct duet_err *err)
{
	size_t n = strlen(path);
	*chat_template = NULL;
	if (n >= 5 && !strcmp(path + n - 5, ".json"))
		return duet_vocab_from_hf(v, path, chat_template, err);
	return duet_vocab_load_file(v, path, err);
}
