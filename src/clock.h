/*
 * clock.h -- the process's clocks: wall time, for what is stored or compared
 * with other machines (created_at, fetched_at), and monotonic time, for
 * durations and uptime, which wall-clock steps must not bend. A loop's
 * uv_now() stays the clock of its timers.
 */
#ifndef PFP_CLOCK_H
#define PFP_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Unix time in seconds. */
static inline int64_t clock_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* Unix time in milliseconds. */
static inline int64_t clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Nanoseconds on the monotonic clock, from an arbitrary start: only differences mean something. */
static inline uint64_t clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
