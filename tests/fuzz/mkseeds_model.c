/* Writes the seed corpus of fuzz_model: micro models (dim 32, one layer,
 * the 259-token byte vocabulary) in each format the loader reads, in the
 * target's input format (4-byte model length, model, tokenizer.bin).
 * Usage: mkseeds_model DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/vocab.h"
#include "engine/vocab_impl.h"
#include "mkmodel/model_random.h"
#include "mkmodel/model_write.h"

static unsigned char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc((size_t)len + 1);
	*n = b ? fread(b, 1, (size_t)len, f) : 0;
	fclose(f);
	return b;
}

/* DIR/name = length of model, model, tokenizer (tok may be NULL). */
static int put(const char *dir, const char *name, const char *model, const char *tok)
{
	size_t nm = 0, nt = 0;
	unsigned char *m = slurp(model, &nm), *t = tok ? slurp(tok, &nt) : NULL;
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!m || !f) {
		perror(path);
		return -1;
	}
	unsigned char l[4] = {(unsigned char)nm, (unsigned char)(nm >> 8),
			      (unsigned char)(nm >> 16), (unsigned char)(nm >> 24)};
	fwrite(l, 1, 4, f);
	fwrite(m, 1, nm, f);
	if (t)
		fwrite(t, 1, nt, f);
	fclose(f);
	free(m);
	free(t);
	return 0;
}

/* A byte-level BPE vocabulary in miniature: the 256 byte tokens, a few
 * merges ("Ġt", "th", "the", "Ġthe", "in", "ing"), two special tokens;
 * Qwen's pre-tokenizer, so the NFC step is fuzzed too. */
static int micro_bpe(struct duet_vocab *v, struct duet_err *err)
{
	static const char *const extra[] = {" t", "th", "the", " the", "in", "ing"};
	static const char *const special[] = {"<|im_start|>", "<|im_end|>"};
	static const char *const merges[] = {"Ġ t", "t h", "th e", "Ġ the", "i n", "in g"};
	int n = 256 + 6 + 2;
	if (duet_vocab_alloc(v, n, 4096))
		return -1;
	size_t o = 0;
	for (int i = 0; i < n; i++) {
		const char *p;
		size_t l;
		char b = (char)i;
		if (i < 256) {
			p = &b;
			l = 1;
		} else {
			p = i < 262 ? extra[i - 256] : special[i - 262];
			l = strlen(p);
		}
		v->type[i] = i < 262 ? DUET_TOK_NORMAL : DUET_TOK_CONTROL;
		v->off[i] = (uint32_t)o;
		v->len[i] = (uint32_t)l;
		memcpy(v->arena + o, p, l);
		o += l;
		v->arena[o++] = 0;
	}
	v->bpe = 1;
	v->bos = -1;
	v->eos = 263;
	v->unk = -1;
	uint32_t ml[6];
	for (int i = 0; i < 6; i++)
		ml[i] = (uint32_t)strlen(merges[i]);
	if (duet_vocab_index(v, "micro-bpe", err) ||
	    duet_vocab_bpe_merges(v, 6, merges, ml, "micro-bpe", err) ||
	    duet_vocab_bpe_finish(v, DUET_PRE_QWEN2, "micro-bpe", err))
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mkseeds_model DIR\n");
		return 2;
	}
	const char *dir = argv[1];
	static const struct duet_shape micro = {"micro", 32, 64, 1, 2, 1, 16, 1, "fuzz seed",
						DUET_ARCH_LLAMA, 10000.0f, 1e-5f, 0, 0};
	struct duet_vocab v;
	struct duet_err err;
	if (duet_vocab_bytes(&v, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	/* Rows of 256 for the K-quants (smaller rows fall back to 32-blocks). */
	static const struct duet_shape micro_k = {"micro-k", 256, 256, 1, 2, 1, 16, 1, "fuzz seed",
						  DUET_ARCH_LLAMA, 10000.0f, 1e-5f, 0, 0};
	const struct {
		enum duet_dtype t;
		enum duet_mix mix;
		const struct duet_shape *shape;
		const char *name;
	} seeds[] = {
		{DUET_F32, DUET_MIX_NONE, &micro, "gguf_f32"},
		{DUET_F16, DUET_MIX_NONE, &micro, "gguf_f16"},
		{DUET_Q8_0, DUET_MIX_NONE, &micro, "gguf_q8_0"},
		{DUET_Q5_1, DUET_MIX_NONE, &micro, "gguf_q5_1"},
		{DUET_Q4_K, DUET_MIX_Q4_K_M, &micro_k, "gguf_q4_k_m"},
		{DUET_Q5_K, DUET_MIX_NONE, &micro_k, "gguf_q5_k"},
		{DUET_F32, DUET_MIX_NONE, &micro, "llama2c"},
	};
	char tmp[1024], tok[1024], name[128];
	snprintf(tmp, sizeof tmp, "%s/.model.tmp", dir);
	snprintf(tok, sizeof tok, "%s/.tokenizer.tmp", dir);
	int rc = 0;
	for (size_t i = 0; i < sizeof seeds / sizeof seeds[0] && !rc; i++) {
		struct duet_random_gen g;
		struct duet_model_spec spec;
		int llama2c = !strcmp(seeds[i].name, "llama2c");
		duet_random_spec(&spec, &g, seeds[i].shape, seeds[i].t, -1, 0, 5, &v, name);
		spec.mix = seeds[i].mix;
		if (llama2c)
			rc = duet_write_llama2c(tmp, &spec, &err) ||
			     duet_write_llama2c_tokenizer(tok, &v, &err) ||
			     put(dir, "llama2c", tmp, tok);
		else
			rc = duet_write_gguf(tmp, &spec, &err) || put(dir, seeds[i].name, tmp, NULL);
		if (rc)
			fprintf(stderr, "%s\n", err.msg);
	}
	struct duet_vocab bv;
	if (!rc && micro_bpe(&bv, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		rc = 1;
	} else if (!rc) {
		struct duet_random_gen g;
		struct duet_model_spec spec;
		duet_random_spec(&spec, &g, &micro, DUET_Q8_0, -1, 0, 5, &bv, name);
		rc = duet_write_gguf(tmp, &spec, &err) || put(dir, "gguf_bpe", tmp, NULL);
		if (rc)
			fprintf(stderr, "%s\n", err.msg);
		duet_vocab_free(&bv);
	}
	remove(tmp);
	remove(tok);
	duet_vocab_free(&v);
	return rc;
}
