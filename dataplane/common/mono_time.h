/**
 * @file mono_time.h
 * CLOCK_MONOTONIC as one number, for every deadline, timeout, period and
 * duration in Ferry: it never jumps with the wall clock. Header-only.
 */
#ifndef FERRY_MONO_TIME_H
#define FERRY_MONO_TIME_H

#include <stdint.h>
#include <time.h>

/** Monotonic time in nanoseconds. */
static inline uint64_t ferry_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/** Monotonic time in milliseconds. */
static inline uint64_t ferry_mono_ms(void)
{
	return ferry_mono_ns() / 1000000u;
}

#endif /* FERRY_MONO_TIME_H */
