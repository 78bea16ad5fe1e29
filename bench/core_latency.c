/* core_latency.c: the round trip of a cache line between CPU 0 and CPU 1.
 *
 * Two threads, pinned to the two CPUs, pass a counter back and forth through
 * one cache line; the round trip is the time for the line to go to the other
 * core and come back. On one Zen core complex it takes tens of nanoseconds;
 * between two complexes or sockets, hundreds. In a VM the hypervisor places
 * the two virtual CPUs, and may move them. A probe, not part of bench/run:
 * on this host it measured 215-500 ns within minutes, and the two-thread
 * ratios did not follow it (docs/performance.md, section 15).
 *
 * Build: cc -O2 -pthread core_latency.c -o core_latency
 * Run:   ./core_latency   (prints the median and min-max of 9 reps, in ns)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define REPS 9
#define TRIPS 100000

static _Alignas(64) _Atomic long ball;

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// Returns the odd values the main thread throws, plus one.
static void *returner(void *arg) {
    (void)arg;
    pin(1);
    for (long i = 0; i < (long)REPS * TRIPS; i++) {
        while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * i + 1)
            ;
        atomic_store_explicit(&ball, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

int main(void) {
    if (pin(0) != 0) {
        fprintf(stderr, "core_latency: cannot pin to CPU 0\n");
        return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, returner, NULL) != 0) {
        fprintf(stderr, "core_latency: cannot start a thread\n");
        return 1;
    }
    double ns[REPS];
    long k = 0;
    for (int r = 0; r < REPS; r++) {
        double t0 = now_ns();
        for (int i = 0; i < TRIPS; i++, k++) {
            atomic_store_explicit(&ball, 2 * k + 1, memory_order_release);
            while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * k + 2)
                ;
        }
        ns[r] = (now_ns() - t0) / TRIPS;
    }
    pthread_join(t, NULL);
    qsort(ns, REPS, sizeof ns[0], cmpd);
    printf("cache line round trip CPU 0 <-> CPU 1  median %8.1f  min %8.1f  max %8.1f  ns\n", ns[REPS / 2], ns[0],
           ns[REPS - 1]);
    return 0;
}
