/* Growable arrays: capacity doubles, so n appends cost O(n). */
#ifndef DUET_GROW_H
#define DUET_GROW_H

#include <stddef.h>

/* Returns arr (elements of `size` bytes, capacity *cap) with room for at
 * least `need` elements: arr itself when it has room, else a reallocation
 * whose capacity doubles from `first` (and *cap updated). NULL when out of
 * memory or need is absurd; arr and *cap are then unchanged and the caller
 * still owns arr. */
void *duet_grow(void *arr, int *cap, int need, size_t size, int first);

#endif
