/* Read-only memory maps of whole files (model weights, tokenizers). */
#ifndef DUET_MAPFILE_H
#define DUET_MAPFILE_H

#include <stddef.h>

#include "base/err.h"

/* Maps the regular, non-empty file at path; *map is released with
 * duet_unmap_file(*map, *size). */
int duet_map_file(const char *path, void **map, size_t *size, struct duet_err *err);
void duet_unmap_file(void *map, size_t size);

#endif
