/* The one monotonic clock every timer and measurement in duet reads. */
#ifndef DUET_CLOCK_H
#define DUET_CLOCK_H

/* CLOCK_MONOTONIC in microseconds: comparable across processes on one
 * machine (the router's relay histogram relies on that). */
long long duet_now_us(void);
/* The same clock in seconds, for measurements. */
double duet_now_s(void);

#endif
