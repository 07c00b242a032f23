#include "testutil.h"

#include <curl/curl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/generate.h"
#include "mkmodel/model_random.h"
#include "mkmodel/model_write.h"

#define VOCAB_GGUF "ggml-vocab-llama-spm.gguf"
#define TOKENIZER_BIN "llama2-tokenizer.bin"

static const char *shared_file(const char *name, char *buf, size_t cap)
{
	const char *env = getenv("DUET_SHARED_MODELS");
	char src[PATH_MAX];
	/* __FILE__ is tests/testutil.c relative to the repository root, where
	 * make runs; the shared data sits beside the repository. */
	const char *dirs[3] = {env, NULL, "/work/shared/models"};
	if (realpath(".", src)) {
		static char parent[PATH_MAX + 32];
		snprintf(parent, sizeof parent, "%s/../shared/models", src);
		dirs[1] = parent;
	}
	for (int i = 0; i < 3; i++) {
		if (!dirs[i])
			continue;
		snprintf(buf, cap, "%s/%s", dirs[i], name);
		if (access(buf, R_OK) == 0)
			return buf;
	}
	fail_msg("cannot find %s: set DUET_SHARED_MODELS to the shared models directory",
		 name);
	return NULL;
}

void tu_shared_path(const char *name, char *buf, size_t cap)
{
	shared_file(name, buf, cap);
}

const char *tu_vocab_gguf(void)
{
	static char buf[PATH_MAX + 64];
	return shared_file(VOCAB_GGUF, buf, sizeof buf);
}

const char *tu_tokenizer_bin(void)
{
	static char buf[PATH_MAX + 64];
	return shared_file(TOKENIZER_BIN, buf, sizeof buf);
}

static char tmpdir[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

static void rm_tmpdir(void)
{
	if (tmpdir[0] && !getenv("DUET_KEEP_TMP"))
		nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tu_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(tmpdir, sizeof tmpdir, "%s/duet-test-XXXXXX", base ? base : "/tmp");
		if (!mkdtemp(tmpdir))
			fail_msg("cannot create a scratch directory under %s", base ? base : "/tmp");
		atexit(rm_tmpdir);
	}
	return tmpdir;
}

float tu_frand(uint64_t *s)
{
	*s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
	return (float)(*s >> 40) * 0x1p-23f - 1.0f;
}

char *tu_path(char *buf, const char *name)
{
	snprintf(buf, 4096, "%s/%s", tu_tmpdir(), name);
	return buf;
}

void tu_make_model(char *out, const char *shape, enum duet_dtype dtype,
		   const char *format, int tied, uint64_t seed)
{
	tu_make_model_mix(out, shape, dtype, DUET_MIX_NONE, format, tied, seed);
}

void tu_make_model_mix(char *out, const char *shape, enum duet_dtype dtype, enum duet_mix mix,
		       const char *format, int tied, uint64_t seed)
{
	const struct duet_shape *sh = duet_shape_find(shape);
	assert_non_null(sh);
	int l2c = !strcmp(format, "llama2c");
	char dir[3072];
	snprintf(dir, sizeof dir, "%s/%s-%s-%s-t%d-s%llu", tu_tmpdir(), shape,
		 mix == DUET_MIX_Q4_K_M ? "q4_k_m" : duet_dtype_name(dtype), format, tied,
		 (unsigned long long)seed);
	snprintf(out, 4096, "%s/model.%s", dir, l2c ? "bin" : "gguf");
	if (access(out, R_OK) == 0)
		return; /* made earlier in this run */
	if (mkdir(dir, 0755))
		fail_msg("cannot create %s", dir);
	struct duet_err err;
	struct duet_vocab v;
	if (duet_vocab_load_file(&v, tu_vocab_gguf(), &err))
		fail_msg("%s", err.msg);
	struct duet_random_gen g;
	struct duet_model_spec spec;
	char name[128];
	duet_random_spec(&spec, &g, sh, dtype, tied, 0, seed, &v, name);
	spec.mix = mix;
	int rc = l2c ? duet_write_llama2c(out, &spec, &err) : duet_write_gguf(out, &spec, &err);
	if (!rc && l2c) {
		char tok[4200];
		snprintf(tok, sizeof tok, "%s/tokenizer.bin", dir);
		rc = duet_write_llama2c_tokenizer(tok, &v, &err);
	}
	duet_vocab_free(&v);
	if (rc)
		fail_msg("writing %s: %s", out, err.msg);
}

struct duet_model *tu_open(const char *path)
{
	struct duet_model *m = NULL;
	struct duet_err err;
	if (duet_model_open(&m, path, NULL, &err))
		fail_msg("%s", err.msg);
	return m;
}

float tu_max_abs_diff(const float *a, const float *b, size_t n)
{
	float mx = 0;
	for (size_t i = 0; i < n; i++) {
		float d = fabsf(a[i] - b[i]);
		if (!(d <= mx))
			mx = d; /* NaN propagates */
	}
	return mx;
}

float tu_max_abs(const float *a, size_t n)
{
	float mx = 0;
	for (size_t i = 0; i < n; i++)
		if (fabsf(a[i]) > mx)
			mx = fabsf(a[i]);
	return mx;
}

void *tu_read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	void *buf = malloc((size_t)sz + 1);
	assert_non_null(buf);
	if (fread(buf, 1, (size_t)sz, f) != (size_t)sz)
		fail_msg("cannot read %s", path);
	fclose(f);
	((char *)buf)[sz] = 0; /* text files can be used as strings */
	*n = (size_t)sz;
	return buf;
}

void tu_write_file(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		fail_msg("cannot create %s", path);
	if (fwrite(data, 1, n, f) != n || fclose(f))
		fail_msg("cannot write %s", path);
}

void tu_random_prompt(int *t, int n, uint64_t seed)
{
	for (int i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		t[i] = 3 + (int)((seed >> 33) % 31000);
	}
}

static int gen_token(void *ctx, int token, const char *text, size_t n)
{
	struct tu_gen *g = ctx;
	if (token >= 0 && g->n < TU_GEN_MAX_TOKENS)
		g->tokens[g->n++] = token;
	if (g->n_text + n < TU_GEN_MAX_TEXT) {
		memcpy(g->text + g->n_text, text, n);
		g->n_text += n;
		g->text[g->n_text] = 0;
	}
	return 0;
}

static void gen_logprobs(void *ctx, int token, const struct duet_logprobs *lp)
{
	struct tu_gen *g = ctx;
	(void)token;
	if (g->n < TU_GEN_MAX_TOKENS) { /* called before gen_token for the token */
		g->logprob[g->n] = lp->chosen;
		g->top_id[g->n] = lp->n_top ? lp->top_id[0] : -1;
	}
}

void tu_generate(struct duet_engine *e, struct duet_kv_pool *kv, const struct duet_model *m,
		 const int *prompt, int n, const struct duet_gen_params *gp, struct tu_gen *out)
{
	struct duet_gen_params p = *gp;
	struct duet_gen_stats st;
	struct duet_err err;
	p.on_logprobs = gen_logprobs;
	out->n = 0;
	out->n_text = 0;
	out->text[0] = 0;
	if (duet_generate(e, kv, m, prompt, n, &p, gen_token, out, &st, &err))
		fail_msg("reference generate: %s", err.msg);
}

void tu_greedy(struct duet_engine *e, struct duet_kv_pool *kv, const struct duet_model *m,
	       const int *prompt, int n, int max_tokens, int ignore_eos, struct tu_gen *out)
{
	struct duet_gen_params gp = {.sampling = {.top_p = 1}, .max_tokens = max_tokens,
				     .ignore_eos = ignore_eos};
	tu_generate(e, kv, m, prompt, n, &gp, out);
}

const char *tu_build_dir(void)
{
	static char dir[4096];
	if (!dir[0]) {
		char exe[4096];
		ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
		if (k <= 0)
			fail_msg("cannot read /proc/self/exe");
		exe[k] = 0;
		snprintf(dir, sizeof dir, "%s", dirname(dirname(exe)));
	}
	return dir;
}

size_t tu_buf_write(char *d, size_t sz, size_t n, void *ctx)
{
	struct tu_buf *b = ctx;
	char *np = realloc(b->p, b->n + sz * n + 1);
	if (!np)
		return 0; /* libcurl fails the transfer */
	memcpy(np + b->n, d, sz * n);
	b->p = np;
	b->n += sz * n;
	b->p[b->n] = 0;
	return sz * n;
}

long tu_http(const char *url, const char *method, const char *body, const char *key,
	     const char *cainfo, size_t (*write)(char *, size_t, size_t, void *), void *ctx)
{
	CURL *c = curl_easy_init();
	assert_non_null(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, ctx);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	if (cainfo)
		curl_easy_setopt(c, CURLOPT_CAINFO, cainfo);
	struct curl_slist *hdr = NULL;
	char auth[128];
	if (key) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
		hdr = curl_slist_append(hdr, auth);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	}
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	long status = 0;
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdr);
	return status;
}

/* Daemons a test started and did not stop: a failed assertion leaves its
 * test before the kill, and a daemon left running would hold the test
 * run's output pipe open (make test waited on it for ever). */
#define TU_MAX_SPAWNED 256
static pid_t spawned[TU_MAX_SPAWNED];
static int n_spawned;

static void kill_spawned(void)
{
	for (int i = 0; i < n_spawned; i++)
		/* still our unreaped child (not a reused pid): stop it */
		if (waitpid(spawned[i], NULL, WNOHANG) == 0) {
			kill(spawned[i], SIGKILL);
			waitpid(spawned[i], NULL, 0);
		}
}

pid_t tu_spawn(const char *path, const char *model, char **flags, const char *log, int append)
{
	char *argv[TU_SPAWN_MAX_ARGS] = {(char *)path, "--model", (char *)model};
	int n = 3;
	for (int i = 0; flags[i]; i++) {
		assert_true(n < TU_SPAWN_MAX_ARGS - 1);
		argv[n++] = flags[i];
	}
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen(log, append ? "a" : "w", stderr) || dup2(2, 1) < 0)
			_exit(126);
		execv(path, argv);
		_exit(127);
	}
	if (pid > 0 && n_spawned < TU_MAX_SPAWNED) {
		if (!n_spawned)
			atexit(kill_spawned);
		spawned[n_spawned++] = pid;
	}
	return pid;
}
