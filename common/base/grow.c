#include "base/grow.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

void *duet_grow(void *arr, int *cap, int need, size_t size, int first)
{
	if (need < 0 || first < 1)
		return NULL;
	if (need <= *cap && arr)
		return arr;
	long c = *cap > 0 ? *cap : first;
	while (c < need)
		c *= 2;
	if (c > INT_MAX || (size_t)c > SIZE_MAX / size)
		return NULL;
	void *p = realloc(arr, (size_t)c * size);
	if (!p)
		return NULL;
	*cap = (int)c;
	return p;
}
