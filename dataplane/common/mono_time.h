/**
 * @file mono_time.h
 * CLOCK_MONOTONIC as one number, for every deadline, timeout, period and
 * duration in Ferry: it never jumps with the wall clock. The wall clock
 * itself (ferry_wall_ns) only for what must mean something across processes
 * or restarts: a migration's start time, a placement's stamp. Header-only.
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

/** Wall-clock time (CLOCK_REALTIME) in nanoseconds since the epoch. */
static inline uint64_t ferry_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/** Monotonic time in milliseconds. */
static inline uint64_t ferry_mono_ms(void)
{
	return ferry_mono_ns() / 1000000u;
}

#endif /* FERRY_MONO_TIME_H */
