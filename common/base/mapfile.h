/* Whole files in memory, read-only: mapped from the page cache (shared
 * with every process that maps the file, ready at once), or copied into
 * private anonymous memory, backed by transparent huge pages (2 MiB) when
 * asked. Streaming gigabytes of weights per token through 4 KiB pages
 * costs a TLB miss per page; with huge pages decode reads up to twice as
 * fast (BENCHMARKS.md). A private copy can also be rearranged at load. */
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
 * mapping, in transparent huge pages (huge 1: asked for) or in the
 * kernel's base pages (huge 0: asked not to be merged, so that the copy is
 * what it says even where huge pages are always on); *size is the file's
 * size and *map_bytes the mapping's (release with
 * duet_unmap_file(*map, *map_bytes)). */
int duet_copy_file(const char *path, int huge, void **map, size_t *size, size_t *map_bytes,
		   struct duet_err *err);

/* A copy made by duet_copy_file is read-only; its owner may open it
 * for writing while it rearranges it at load (writable 1), and closes it
 * again (0). */
int duet_copy_set_writable(void *map, size_t map_bytes, int writable, struct duet_err *err);

/* Bytes of this process's memory currently backed by huge pages. */
long long duet_huge_bytes(void);

#endif
