/* Sorting and ranking many doubles: a simulated day has a hundred million
 * token gaps, and qsort's comparison callback was most of the time spent
 * summarizing them. */
#ifndef DUET_SORT_H
#define DUET_SORT_H

#include <stddef.h>

/* Sorts v[0..n) ascending (-0 before +0; NaNs last, or first when their sign
 * bit is set). An LSD radix sort on the values' bits, which needs n more
 * doubles (insertion sort for a few values; qsort when that memory is not
 * there). Cannot fail. */
void duet_sort_f64(double *v, size_t n);

/* Percentile p in [0, 100] of v[0..n) as replay_percentile computes it on
 * the sorted values (linear interpolation between the closest ranks, 0 for
 * n = 0), found by selection in linear time: v is reordered, not sorted.
 * For a few ranks of many values (a request's p99 gap, a bucket's). */
double duet_percentile_f64(double *v, size_t n, double p);

#endif
