/* duet_sort_f64: IEEE-754 doubles map to unsigned keys in the same order
 * (flip every bit of a negative, the sign bit of a positive), which an LSD
 * radix sort orders in a few linear passes, with no comparison callback.
 * The keys live in double-typed storage (the values' own array and one
 * buffer), read and written through memcpy so no pointer aliases a type. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/sort.h"

/* Below this, insertion sort is as fast and needs no buffer. */
#define SORT_RADIX_MIN 48
#define SORT_DIGITS 8 /* bytes of a key */
#define SORT_BINS 256

static int cmp_f64(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static uint64_t ld(const double *p, size_t i)
{
	uint64_t k;
	memcpy(&k, &p[i], sizeof k);
	return k;
}

static void st(double *p, size_t i, uint64_t k)
{
	memcpy(&p[i], &k, sizeof k);
}

static uint64_t key_of(uint64_t u)
{
	return u >> 63 ? ~u : u | (1ull << 63);
}

static uint64_t bits_of(uint64_t k)
{
	return k >> 63 ? k & ~(1ull << 63) : ~k;
}

static void insertion(double *p, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		uint64_t x = ld(p, i);
		size_t j = i;
		for (; j > 0 && ld(p, j - 1) > x; j--)
			st(p, j, ld(p, j - 1));
		st(p, j, x);
	}
}

static double *radix(double *a, double *b, size_t n)
{
	size_t count[SORT_DIGITS][SORT_BINS] = {{0}};
	for (size_t i = 0; i < n; i++) {
		uint64_t k = ld(a, i);
		for (int d = 0; d < SORT_DIGITS; d++)
			count[d][(k >> (8 * d)) & (SORT_BINS - 1)]++;
	}
	for (int d = 0; d < SORT_DIGITS; d++) {
		/* a digit every key shares orders nothing: skip its pass */
		if (count[d][(ld(a, 0) >> (8 * d)) & (SORT_BINS - 1)] == n)
			continue;
		size_t at = 0;
		for (int j = 0; j < SORT_BINS; j++) {
			size_t c = count[d][j];
			count[d][j] = at;
			at += c;
		}
		for (size_t i = 0; i < n; i++) {
			uint64_t k = ld(a, i);
			st(b, count[d][(k >> (8 * d)) & (SORT_BINS - 1)]++, k);
		}
		double *t = a;
		a = b;
		b = t;
	}
	return a;
}

void duet_sort_f64(double *v, size_t n)
{
	double *buf = n >= SORT_RADIX_MIN ? malloc(n * sizeof *buf) : NULL;
	if (n >= SORT_RADIX_MIN && !buf) {
		qsort(v, n, sizeof *v, cmp_f64);
		return;
	}
	for (size_t i = 0; i < n; i++)
		st(v, i, key_of(ld(v, i)));
	const double *sorted = v;
	if (buf)
		sorted = radix(v, buf, n);
	else
		insertion(v, n);
	for (size_t i = 0; i < n; i++)
		st(v, i, bits_of(ld(sorted, i)));
	free(buf);
}

/* The k-th smallest of v[0..n), k < n; v is left partitioned around it
 * (quickselect, median-of-three pivots, small ranges sorted). */
static double select_k(double *v, size_t n, size_t k)
{
	size_t lo = 0, hi = n - 1;
	while (hi - lo >= SORT_RADIX_MIN) {
		size_t mid = lo + (hi - lo) / 2;
		double a = v[lo], b = v[mid], c = v[hi];
		double pivot = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
		size_t i = lo, j = hi;
		/* Hoare: the pivot is in the range, so both scans stop inside it */
		while (i <= j) {
			while (v[i] < pivot)
				i++;
			while (v[j] > pivot)
				j--;
			if (i <= j) {
				double t = v[i];
				v[i++] = v[j];
				v[j] = t;
				if (j-- == lo)
					break;
			}
		}
		/* v[lo..j] <= pivot, v[i..hi] >= pivot, what lies between == pivot */
		if (k <= j && j != (size_t)-1 && j >= lo)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			return v[k];
	}
	duet_sort_f64(v + lo, hi - lo + 1);
	return v[k];
}

double duet_percentile_f64(double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	double rank = p / 100.0 * (double)(n - 1);
	double fl = floor(rank);
	if (fl >= (double)(n - 1))
		fl = (double)(n - 1);
	if (fl < 0)
		fl = 0;
	size_t lo = (size_t)fl;
	double x = select_k(v, n, lo);
	if (lo + 1 >= n || rank <= fl)
		return x;
	/* the next rank is the smallest of what selection left above lo */
	double y = v[lo + 1];
	for (size_t i = lo + 2; i < n; i++)
		y = v[i] < y ? v[i] : y;
	return x + (rank - fl) * (y - x);
}
