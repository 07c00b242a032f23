/* Shared helpers for the cmocka tests: where the real vocabulary lives, a
 * scratch directory, and small random models written through the same
 * code as `duet mkmodel`. */
#ifndef DUET_TESTUTIL_H
#define DUET_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/types.h>
#include <cmocka.h>

#include "engine/dtype.h"
#include "engine/forward.h"
#include "engine/generate.h"
#include "engine/model.h"
#include "mkmodel/model_write.h"

/* ../shared/models files, found from $DUET_SHARED_MODELS, the source
 * tree's parent, or /work/shared/models. Fails the test if absent. */
const char *tu_vocab_gguf(void);
/* Any file of ../shared/models by name, into buf. */
void tu_shared_path(const char *name, char *buf, size_t cap);
const char *tu_tokenizer_bin(void);

/* A scratch directory for this test program, removed at exit. */
const char *tu_tmpdir(void);
/* tu_tmpdir()/name into buf (4096 bytes). */
char *tu_path(char *buf, const char *name);

/* The next value in [-1, 1) of a xorshift generator whose state is *s
 * (nonzero): test data that does not depend on the C library's rand. */
float tu_frand(uint64_t *s);

/* Writes a random model of shape (see duet mkmodel --list-shapes) and
 * returns its path (static storage per call site is not needed: the path
 * goes into out, 4096 bytes). format "gguf" or "llama2c"; llama2c models
 * go into their own directory with a tokenizer.bin. tied -1 = shape's. */
void tu_make_model(char *out, const char *shape, enum duet_dtype dtype,
		   const char *format, int tied, uint64_t seed);
/* The same with a mix of weight types (mkmodel/model_write.h). */
void tu_make_model_mix(char *out, const char *shape, enum duet_dtype dtype, enum duet_mix mix,
		       const char *format, int tied, uint64_t seed);
/* Opens a model, failing the test with the loader's message on error. */
struct duet_model *tu_open(const char *path);

/* Largest |a - b| over n entries, and largest |b|. */
float tu_max_abs_diff(const float *a, const float *b, size_t n);
float tu_max_abs(const float *a, size_t n);

#define TU_GEN_MAX_TOKENS 2048
#define TU_GEN_MAX_TEXT 65536

/* A greedy continuation: its token ids and the text duet_generate shows. */
struct tu_gen {
	int tokens[TU_GEN_MAX_TOKENS], n;
	float logprob[TU_GEN_MAX_TOKENS]; /* when the sampling asks for them */
	int top_id[TU_GEN_MAX_TOKENS];	  /* the likeliest token, with top_logprobs */
	char text[TU_GEN_MAX_TEXT];
	size_t n_text;
};

/* What `duet generate` makes of the prompt at temperature 0: the reference
 * every other path is compared with. Fails the test on error. */
void tu_greedy(struct duet_engine *e, struct duet_kv_pool *kv, const struct duet_model *m,
	       const int *prompt, int n, int max_tokens, int ignore_eos, struct tu_gen *out);
/* The same with any parameters (sampling, response format). */
void tu_generate(struct duet_engine *e, struct duet_kv_pool *kv, const struct duet_model *m,
		 const int *prompt, int n, const struct duet_gen_params *gp, struct tu_gen *out);

/* The build directory this test program was built into (its daemons and
 * the duet tool live there): the parent of the tests/ directory. */
const char *tu_build_dir(void);

/* n pseudo-random token ids in [3, 31003) from seed (never BOS/EOS). */
void tu_random_prompt(int *t, int n, uint64_t seed);

/* A growing, NUL-terminated response body (p is malloc'd; the caller
 * frees it). */
struct tu_buf {
	char *p;
	size_t n;
};
/* A libcurl write callback appending to a struct tu_buf. */
size_t tu_buf_write(char *d, size_t sz, size_t n, void *ctx);
/* One HTTP(S) request; the response body goes to write(ctx) as it
 * arrives. key NULL: no Authorization header; cainfo NULL: the system's
 * CAs. Returns the status, 0 when no HTTP answer came. */
long tu_http(const char *url, const char *method, const char *body, const char *key,
	     const char *cainfo, size_t (*write)(char *, size_t, size_t, void *), void *ctx);

/* Starts `path --model model flags...` (flags NULL-terminated) with its
 * stderr in log (appended when append, else truncated); returns the pid. */
#define TU_SPAWN_MAX_ARGS 40
pid_t tu_spawn(const char *path, const char *model, char **flags, const char *log, int append);

/* Reads a whole file into a malloc'd buffer, NUL-terminated (not counted in n). */
void *tu_read_file(const char *path, size_t *n);
void tu_write_file(const char *path, const void *data, size_t n);

#endif
