/*
 * store_lock.h - the lock that lets several threads share one store (issue 14, worker threads).
 *
 *   worker thread 1 ──┐
 *   worker thread 2 ──┼── store_lock() ── store_* calls, copy or pin what they return ── store_unlock()
 *   main thread     ──┘   (one mutex: the whole struct store is its critical data)
 *
 * What the lock protects: everything in struct store (store.h) and what it points to: the
 * items and their bytes, the hash table, the LRU list, the expiry heap, the slab pages, the
 * pins and their index, the statistics, the eviction log, the clock (store_set_time) and the
 * limits. Nothing of it may be read or written without the lock, with one exception: the
 * value bytes of an item pinned under the lock (store_pin) may be read without it until the
 * matching store_unpin (which takes the lock again), because a pinned item is never freed,
 * moved or written (store.h, "Pins").
 *
 * Lock order: the store lock is the innermost lock. A thread holding it takes no other lock and
 * makes no call that may block on another thread (no Python, no I/O, no condition wait): a
 * worker copies or pins what it needs under the lock, and builds and sends its reply after
 * store_unlock. So no cycle can form, whatever locks the callers hold around it.
 *
 * Why one mutex and not memcached's striped item locks plus an LRU lock: the LRU here is exact
 * (every hit moves its item to the head), so every get writes the shared LRU list and would take
 * the LRU lock anyway; striping would add a second lock to every request and gain nothing.
 * Measured by benchmarks/store_locking.py (hold times, contention and throughput at 1 and 2
 * threads, and where one lock saturates): see that script's docstring for the figures.
 *
 * Invariants:
 *   - `acquired` counts store_lock calls that returned and `contended` those of them that found
 *     the lock held by another thread; both are written only while holding the lock.
 *   - With `timed` set, `held_ns` sums the time the lock was held (between store_lock's return
 *     and store_unlock), also written only under the lock; off by default (two clock reads per
 *     acquisition), on for measurements.
 */
#ifndef PYCACHE_STORE_LOCK_H
#define PYCACHE_STORE_LOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

typedef struct store_mutex {
    pthread_mutex_t mu;
    uint64_t acquired, contended;
    uint64_t held_ns;
    uint64_t since_ns; /* when the current holder took it (timed only) */
    int timed;
} store_mutex;

static inline uint64_t store_lock_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int store_mutex_init(store_mutex *m, int timed) {
    m->acquired = m->contended = m->held_ns = m->since_ns = 0;
    m->timed = timed;
    return pthread_mutex_init(&m->mu, NULL);
}

static inline void store_mutex_destroy(store_mutex *m) { pthread_mutex_destroy(&m->mu); }

static inline void store_lock(store_mutex *m) {
    int contended = 0;
    if (pthread_mutex_trylock(&m->mu) != 0) {
        contended = 1;
        pthread_mutex_lock(&m->mu);
    }
    m->acquired++;
    m->contended += (uint64_t)contended;
    if (m->timed)
        m->since_ns = store_lock_now_ns();
}

static inline void store_unlock(store_mutex *m) {
    if (m->timed)
        m->held_ns += store_lock_now_ns() - m->since_ns;
    pthread_mutex_unlock(&m->mu);
}

#endif
