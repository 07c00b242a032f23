/* libFuzzer target: model files as users bring them, through the loader
 * the daemons and tools run (duet_model_open: GGUF or llama2.c with its
 * tokenizer.bin), then the vocabulary it read, through the tokenizer.
 *
 * Input: 4 bytes (little endian) giving the model file's length, the model
 * file, then the tokenizer.bin (used when the model is llama2.c). Both are
 * memfds opened by their /proc/self/fd path, so the loader maps them as
 * it maps files on disk. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/model.h"
#include "engine/tokenizer.h"

static int memfd_with(const char *name, const uint8_t *d, size_t n)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	while (n) {
		ssize_t w = write(fd, d, n);
		if (w <= 0) {
			close(fd);
			return -1;
		}
		d += w;
		n -= (size_t)w;
	}
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	size_t n = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 |
		   (size_t)data[3] << 24;
	data += 4, size -= 4;
	if (n > size)
		n = size;
	int mfd = memfd_with("model", data, n), tfd = memfd_with("tokenizer", data + n, size - n);
	if (mfd < 0 || tfd < 0)
		goto out;
	char mpath[64], tpath[64];
	snprintf(mpath, sizeof mpath, "/proc/self/fd/%d", mfd);
	snprintf(tpath, sizeof tpath, "/proc/self/fd/%d", tfd);
	struct duet_model_opts o = {.tokenizer_path = tpath};
	struct duet_model *m;
	struct duet_err err;
	if (duet_model_open(&m, mpath, &o, &err) == 0) {
		char desc[256];
		duet_model_describe(m, desc, sizeof desc);
		static const char text[] = "Hello, wörld! 12 \xe2\x96\x81<s>";
		int ids[64];
		size_t k = 0;
		if (duet_tokenize(&m->vocab, text, sizeof text - 1, 1, ids, 64, &k, &err) == 0) {
			char out[1024];
			size_t len;
			(void)duet_detokenize(&m->vocab, ids, k, out, sizeof out, &len, &err);
		}
		duet_model_close(m);
	}
out:
	if (mfd >= 0)
		close(mfd);
	if (tfd >= 0)
		close(tfd);
	return 0;
}
