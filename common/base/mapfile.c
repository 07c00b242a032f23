#include "base/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUGE_PAGE ((size_t)2 << 20)
/* read() in pieces this big: the progress of a huge copy stays smooth and
 * a signal interrupts at most one piece. */
#define READ_CHUNK ((size_t)64 << 20)

/* Opens a regular, non-empty file: its descriptor, or -1 with err set. */
static int open_regular(const char *path, size_t *size, struct duet_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return duet_errnof(err, "%s: cannot open", path);
	struct stat st;
	if (fstat(fd, &st)) {
		duet_errnof(err, "%s: cannot stat", path);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return duet_errf(err, "%s: not a regular file", path);
	}
	if (st.st_size == 0) {
		close(fd);
		return duet_errf(err, "%s: file is empty", path);
	}
	*size = (size_t)st.st_size;
	return fd;
}

int duet_map_file(const char *path, void **map, size_t *size, struct duet_err *err)
{
	size_t n;
	int fd = open_regular(path, &n, err);
	if (fd < 0)
		return -1;
	void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return duet_errnof(err, "%s: cannot map %zu bytes", path, n);
	*map = p;
	*size = n;
	return 0;
}

void duet_unmap_file(void *map, size_t size)
{
	if (map)
		munmap(map, size);
}

int duet_thp_mode(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	return strstr(buf, "[always]") ? 2 : strstr(buf, "[madvise]") ? 1 : 0;
}

int duet_copy_file(const char *path, int huge, void **map, size_t *size, size_t *map_bytes,
		   struct duet_err *err)
{
	size_t fsize;
	int fd = open_regular(path, &fsize, err);
	if (fd < 0)
		return -1;
	/* Room for the file rounded up to whole huge pages, plus one so the
	 * start can be moved to a huge-page boundary. */
	size_t want = (fsize + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
	size_t over = want + HUGE_PAGE;
	uint8_t *raw = mmap(NULL, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		duet_errnof(err, "%s: cannot allocate %zu bytes for the weights", path, over);
		close(fd);
		return -1;
	}
	uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	if (raw + over > p + want)
		munmap(p + want, (size_t)(raw + over - (p + want)));
	/* Not fatal either way: a copy refused huge pages reads as slowly as
	 * the mapping, and a base-page copy merged into huge pages (THP
	 * always) only faster than it says. */
	(void)madvise(p, want, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	size_t done = 0;
	while (done < fsize) {
		size_t n = fsize - done < READ_CHUNK ? fsize - done : READ_CHUNK;
		ssize_t r = read(fd, p + done, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r < 0)
				duet_errnof(err, "%s: cannot read at byte %zu", path, done);
			else
				duet_errf(err, "%s: file ended at byte %zu of %zu while reading", path,
					  done, fsize);
			munmap(p, want);
			close(fd);
			return -1;
		}
		done += (size_t)r;
	}
	close(fd);
	if (mprotect(p, want, PROT_READ)) {
		duet_errnof(err, "%s: cannot make the weights read-only", path);
		munmap(p, want);
		return -1;
	}
	*map = p;
	*size = fsize;
	*map_bytes = want;
	return 0;
}

long long duet_huge_bytes(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	if (!f)
		return -1;
	char line[256];
	long long kb = -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "AnonHugePages: %lld kB", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

int duet_copy_set_writable(void *map, size_t map_bytes, int writable, struct duet_err *err)
{
	if (mprotect(map, map_bytes, writable ? PROT_READ | PROT_WRITE : PROT_READ))
		return duet_errnof(err, "cannot make the weights %s",
				   writable ? "writable" : "read-only");
	return 0;
}
