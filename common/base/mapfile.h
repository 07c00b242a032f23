/* Whole files in memory, read-only: mapped from the page cache (shared
 * with every process that maps the file, ready at once), or copied into
 * anonymous memory backed by transparent huge pages (2 MiB). Streaming
 * gigabytes of weights per token through 4 KiB pages costs a TLB miss per
 * page; with huge pages decode reads up to twice as fast (BENCHMARKS.md). */
#ifndef DUET_MAPFILE_H
#define DUET_MAPFILE_H

#include <stddef.h>

#include "base/err.h"

/* Maps the regular, non-empty file at path; *map is released with
 * duet_unmap_file(*map, *size). */
int duet_map_file(const char *path, void **map, size_t *size, struct duet_err *err);
void duet_unmap_file(void *map, size_t size);

/* Huge pages: 0 none (transparent huge pages are off on this machine),
 * 1 on request (madvise), 2 always. */
int duet_thp_mode(void);

/* Reads the regular, non-empty file at path into a private anonymous
 * mapping asking for transparent huge pages; *size is the file's size and
 * *map_bytes the mapping's (release with duet_unmap_file(*map, *map_bytes)). */
int duet_copy_file_huge(const char *path, void **map, size_t *size, size_t *map_bytes,
			struct duet_err *err);

/* A copy made by duet_copy_file_huge is read-only; its owner may open it
 * for writing while it rearranges it at load (writable 1), and closes it
 * again (0). */
int duet_copy_set_writable(void *map, size_t map_bytes, int writable, struct duet_err *err);

/* Bytes of this process's memory currently backed by huge pages. */
long long duet_huge_bytes(void);

#endif
