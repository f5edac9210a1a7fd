/*
 * store_threads.c - one store shared by threads through its lock (csrc/store_lock.h).
 *
 *   store_threads check THREADS ROUNDS   many threads on a few hot keys; exit 0 if every
 *                                        check below holds, else 1 with the first failure
 *   store_threads bench THREADS KEYS VALUE SECONDS TIMED WORK_NS
 *                                        90% get / 10% set over KEYS keys of VALUE bytes, each
 *                                        request with WORK_NS of work outside the lock (what a
 *                                        worker spends reading, parsing and sending); prints one
 *                                        line of figures (see benchmarks/store_locking.py)
 *
 * Built by tests/test_store_threads.py (and under ThreadSanitizer by `make test-tsan`) and by
 * benchmarks/store_locking.py, with the store's own C files.
 *
 * What check proves, the store being used as worker threads will use it (copy or pin under the
 * lock, read a pinned value without it):
 *   - counters: each incr by 1..3 on a shared counter returns a distinct value (the deltas are
 *     positive), and the final value is the initial one plus every increment counted;
 *   - cas: for every CAS version at most one cas(version) is STORED;
 *   - values: every value read (copied under the lock, or pinned and read after unlocking while
 *     other threads overwrite and delete it) is one whole value some thread wrote: its header
 *     names the writer and its length, and every other byte is that writer's fill byte;
 *   - append: one key only grows by appends; at the end it holds every appended token exactly
 *     once, each thread's in the order it appended them;
 *   - the store's own accounting at the end: the LRU list holds curr_items items whose charges
 *     sum to `bytes`, and nothing is left pinned.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_lock.h"

static store S;
static store_mutex M;

#define MAX_THREADS 64
#define COUNTERS 4
#define VALUES 4
#define BIG 20000
#define CHECKED_APPENDS 200

static int failed; /* read and written atomically: the threads poll it to stop early */
static char failure[512];

static int has_failed(void) { return __atomic_load_n(&failed, __ATOMIC_ACQUIRE); }

static void fail(const char *what) {
    store_lock(&M); /* also serialises the message */
    if (!has_failed()) {
        snprintf(failure, sizeof failure, "%s", what);
        __atomic_store_n(&failed, 1, __ATOMIC_RELEASE);
    }
    store_unlock(&M);
}

static uint64_t rng_next(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* A value: "W<thread>.<seq>.<len>|" then (thread * 31 + seq) % 26 + 'a' up to len bytes. */
static size_t make_value(char *buf, int t, uint64_t seq, size_t len) {
    int head = snprintf(buf, 64, "W%d.%llu.%zu|", t, (unsigned long long)seq, len);
    memset(buf + head, 'a' + (int)((t * 31 + seq) % 26), len - (size_t)head);
    return len;
}

static int value_ok(const char *v, size_t n) {
    int t;
    unsigned long long seq;
    size_t len;
    int head;
    char probe[64];
    if (n < 8 || sscanf(v, "W%d.%llu.%zu|", &t, &seq, &len) != 3 || len != n)
        return 0;
    head = snprintf(probe, sizeof probe, "W%d.%llu.%zu|", t, seq, len);
    if (memcmp(v, probe, (size_t)head) != 0)
        return 0;
    char fill = (char)('a' + (int)(((unsigned long long)t * 31 + seq) % 26));
    for (size_t i = (size_t)head; i < n; i++)
        if (v[i] != fill)
            return 0;
    return 1;
}

typedef struct worker {
    pthread_t th;
    int id, rounds;
    uint64_t rng;
    uint64_t incr_sum[COUNTERS];
    uint64_t *incr_seen[COUNTERS];
    size_t incr_n[COUNTERS];
    uint64_t *cas_won;
    size_t cas_n;
    int appended;
    char *buf;
} worker;

static void key_of(char *k, const char *prefix, int i) { snprintf(k, 16, "%s%d", prefix, i); }

static void *check_thread(void *arg) {
    worker *w = arg;
    char key[16];
    char *buf = w->buf;
    for (int r = 0; r < w->rounds && !has_failed(); r++) {
        uint64_t x = rng_next(&w->rng);
        int op = (int)(x % 100);
        int k = (int)((x >> 8) % VALUES);
        if (op < 25) { /* incr */
            int c = (int)((x >> 16) % COUNTERS);
            uint64_t by = 1 + (x >> 24) % 3, result;
            key_of(key, "c", c);
            store_lock(&M);
            int rc = store_delta(&S, key, strlen(key), 1, by, &result);
            store_unlock(&M);
            if (rc != STORE_STORED) {
                fail("incr of a counter that is always there failed");
                break;
            }
            w->incr_sum[c] += by;
            w->incr_seen[c][w->incr_n[c]++] = result;
        } else if (op < 45) { /* gets then cas */
            uint64_t cas = 0, won;
            key_of(key, "v", k);
            store_lock(&M);
            item *it = store_get(&S, key, strlen(key));
            if (it)
                cas = it->cas;
            store_unlock(&M);
            if (!cas)
                continue;
            size_t n = make_value(buf, w->id, (uint64_t)r, 200);
            store_lock(&M);
            int rc = store_update(&S, STORE_CAS, key, strlen(key), buf, n, 0, 0, cas, &won);
            store_unlock(&M);
            if (rc == STORE_STORED)
                w->cas_won[w->cas_n++] = cas;
        } else if (op < 65) { /* get, copied under the lock */
            size_t n = 0;
            key_of(key, "v", k);
            store_lock(&M);
            item *it = store_get(&S, key, strlen(key));
            if (it) {
                n = it->nbytes;
                memcpy(buf, item_value(it), n);
            }
            store_unlock(&M);
            if (n && !value_ok(buf, n))
                fail("a copied value is torn or mixed");
        } else if (op < 75) { /* get, pinned: read without the lock */
            item *pinned = NULL;
            key_of(key, "v", k);
            store_lock(&M);
            item *it = store_get(&S, key, strlen(key));
            if (it && store_pin(&S, it) == 0)
                pinned = it;
            store_unlock(&M);
            if (pinned) {
                if (!value_ok(item_value(pinned), pinned->nbytes))
                    fail("a pinned value changed while it was read");
                store_lock(&M);
                store_unpin(&S, pinned);
                store_unlock(&M);
            }
        } else if (op < 88) { /* set, small or large */
            size_t n = make_value(buf, w->id, (uint64_t)r, (x >> 20) % 2 ? BIG : 100);
            key_of(key, "v", k);
            store_lock(&M);
            int rc = store_update(&S, STORE_SET, key, strlen(key), buf, n, 0, 0, 0, NULL);
            store_unlock(&M);
            if (rc != STORE_STORED)
                fail("a set failed");
        } else if (op < 93) { /* delete */
            key_of(key, "v", k);
            store_lock(&M);
            store_delete(&S, key, strlen(key));
            store_unlock(&M);
        } else if (w->appended < CHECKED_APPENDS) { /* append a token */
            int n = snprintf(buf, 32, "%d.%d;", w->id, w->appended);
            store_lock(&M);
            int rc = store_update(&S, STORE_APPEND, "a", 1, buf, (size_t)n, 0, 0, 0, NULL);
            store_unlock(&M);
            if (rc != STORE_STORED)
                fail("an append to the append key failed");
            w->appended++;
        }
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int check(int threads, int rounds) {
    static worker ws[MAX_THREADS];
    uint8_t seed[16] = {1, 2, 3};
    char key[16];
    if (store_init(&S, 1ull << 30, 0, 1u << 20, seed) != 0 || store_mutex_init(&M, 0) != 0)
        return 2;
    store_set_time(&S, 1000);
    for (int c = 0; c < COUNTERS; c++) {
        key_of(key, "c", c);
        store_update(&S, STORE_SET, key, strlen(key), "1000", 4, 0, 0, 0, NULL);
    }
    store_update(&S, STORE_SET, "a", 1, "|", 1, 0, 0, 0, NULL);
    for (int t = 0; t < threads; t++) {
        worker *w = &ws[t];
        memset(w, 0, sizeof *w);
        w->id = t;
        w->rounds = rounds;
        w->rng = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1);
        for (int c = 0; c < COUNTERS; c++)
            w->incr_seen[c] = malloc(sizeof(uint64_t) * (size_t)rounds);
        w->cas_won = malloc(sizeof(uint64_t) * (size_t)rounds);
        w->buf = malloc(BIG + 64);
        pthread_create(&w->th, NULL, check_thread, w);
    }
    for (int t = 0; t < threads; t++)
        pthread_join(ws[t].th, NULL);
    if (failed) {
        fprintf(stderr, "store_threads: %s\n", failure);
        return 1;
    }

    for (int c = 0; c < COUNTERS; c++) {
        uint64_t sum = 1000, final;
        size_t n = 0;
        for (int t = 0; t < threads; t++)
            sum += ws[t].incr_sum[c], n += ws[t].incr_n[c];
        uint64_t *all = malloc(sizeof(uint64_t) * (n + 1));
        n = 0;
        for (int t = 0; t < threads; t++)
            for (size_t i = 0; i < ws[t].incr_n[c]; i++)
                all[n++] = ws[t].incr_seen[c][i];
        qsort(all, n, sizeof *all, cmp_u64);
        for (size_t i = 1; i < n; i++)
            if (all[i] == all[i - 1]) {
                fprintf(stderr, "store_threads: counter %d returned %llu twice\n", c,
                        (unsigned long long)all[i]);
                return 1;
            }
        key_of(key, "c", c);
        item *it = store_get(&S, key, strlen(key));
        if (!it || store_parse_counter(item_value(it), it->nbytes, &final) != 0 || final != sum ||
            (n && all[n - 1] != sum)) {
            fprintf(stderr, "store_threads: counter %d ends at %llu, increments sum to %llu\n", c,
                    it ? (unsigned long long)final : 0ull, (unsigned long long)sum);
            return 1;
        }
        free(all);
    }

    size_t won = 0;
    for (int t = 0; t < threads; t++)
        won += ws[t].cas_n;
    uint64_t *wins = malloc(sizeof(uint64_t) * (won + 1));
    won = 0;
    for (int t = 0; t < threads; t++)
        for (size_t i = 0; i < ws[t].cas_n; i++)
            wins[won++] = ws[t].cas_won[i];
    qsort(wins, won, sizeof *wins, cmp_u64);
    for (size_t i = 1; i < won; i++)
        if (wins[i] == wins[i - 1]) {
            fprintf(stderr, "store_threads: two cas won against version %llu\n",
                    (unsigned long long)wins[i]);
            return 1;
        }
    free(wins);

    /* The append key: "|" then each thread's tokens, each once, in each thread's order. */
    item *a = store_get(&S, "a", 1);
    int next[MAX_THREADS] = {0}, tokens = 0, expected = 0;
    const char *p = item_value(a) + 1, *end = item_value(a) + a->nbytes;
    while (p < end) {
        int t, seq, used;
        if (sscanf(p, "%d.%d;%n", &t, &seq, &used) != 2 || t < 0 || t >= threads || seq != next[t]) {
            fprintf(stderr, "store_threads: the append key has a token out of order or twice\n");
            return 1;
        }
        next[t]++;
        tokens++;
        p += used;
    }
    for (int t = 0; t < threads; t++)
        expected += ws[t].appended;
    if (tokens != expected) {
        fprintf(stderr, "store_threads: %d appends made, %d tokens kept\n", expected, tokens);
        return 1;
    }

    uint64_t count = 0, bytes = 0;
    for (item *it = store_oldest(&S); it; it = store_newer(&S, it)) {
        count++;
        bytes += it->nkey + it->nbytes + STORE_ITEM_OVERHEAD;
    }
    if (count != S.curr_items || bytes != S.bytes || S.npins || S.pinned_bytes ||
        S.stats.evictions) {
        fprintf(stderr, "store_threads: store accounting off: %llu items listed of %llu\n",
                (unsigned long long)count, (unsigned long long)S.curr_items);
        return 1;
    }
    printf("ok: %d threads x %d rounds, %llu lock acquisitions, %llu contended\n", threads, rounds,
           (unsigned long long)M.acquired, (unsigned long long)M.contended);
    for (int t = 0; t < threads; t++) {
        for (int c = 0; c < COUNTERS; c++)
            free(ws[t].incr_seen[c]);
        free(ws[t].cas_won);
        free(ws[t].buf);
    }
    store_destroy(&S);
    store_mutex_destroy(&M);
    return 0;
}

/* ---- bench -------------------------------------------------------------------------------- */

typedef struct bench_worker {
    pthread_t th;
    uint64_t rng, ops;
    int keys;
    size_t value;
    uint64_t work_ns;
} bench_worker;

/* Busy for about `ns` nanoseconds without touching shared memory (a request's own work). */
static uint64_t work(uint64_t ns, uint64_t x) {
    if (!ns)
        return x;
    uint64_t until = store_lock_now_ns() + ns;
    while (store_lock_now_ns() < until)
        for (int i = 0; i < 16; i++)
            x = x * 6364136223846793005ull + 1;
    return x;
}

static int stop_flag; /* set once by the main thread to end the run; under stop_mu */
static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;

static int stopping(void) {
    pthread_mutex_lock(&stop_mu);
    int s = stop_flag;
    pthread_mutex_unlock(&stop_mu);
    return s;
}

static void *bench_thread(void *arg) {
    bench_worker *w = arg;
    char key[24];
    char *buf = malloc(w->value + 64);
    memset(buf, 'x', w->value);
    while (1) {
        /* PERF: the stop flag is read every 1,024 ops (under its own mutex, TSan-clean). */
        if ((w->ops & 1023) == 0 && stopping())
            break;
        uint64_t x = rng_next(&w->rng);
        w->rng ^= work(w->work_ns, x) & 1; /* kept, so the work is not optimised away */
        snprintf(key, sizeof key, "key:%010d", (int)(x % (uint64_t)w->keys));
        size_t nkey = strlen(key);
        if ((x >> 40) % 10 == 0) {
            store_lock(&M);
            store_update(&S, STORE_SET, key, nkey, buf, w->value, 0, 0, 0, NULL);
            store_unlock(&M);
        } else {
            store_lock(&M);
            item *it = store_get(&S, key, nkey);
            if (it)
                memcpy(buf, item_value(it), it->nbytes);
            store_unlock(&M);
        }
        w->ops++;
    }
    free(buf);
    return NULL;
}

static int bench(int threads, int keys, size_t value, double seconds, int timed, uint64_t work_ns) {
    static bench_worker ws[MAX_THREADS];
    uint8_t seed[16] = {7};
    char key[24];
    char *buf = malloc(value);
    memset(buf, 'x', value);
    if (store_init(&S, 1ull << 34, 0, 1u << 20, seed) != 0 || store_mutex_init(&M, timed) != 0)
        return 2;
    store_set_time(&S, 1000);
    for (int k = 0; k < keys; k++) {
        snprintf(key, sizeof key, "key:%010d", k);
        store_update(&S, STORE_SET, key, strlen(key), buf, value, 0, 0, 0, NULL);
    }
    M.acquired = M.contended = M.held_ns = 0;
    uint64_t t0 = store_lock_now_ns();
    for (int t = 0; t < threads; t++) {
        ws[t].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1);
        ws[t].ops = 0;
        ws[t].keys = keys;
        ws[t].value = value;
        ws[t].work_ns = work_ns;
        pthread_create(&ws[t].th, NULL, bench_thread, &ws[t]);
    }
    struct timespec nap = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&nap, NULL);
    pthread_mutex_lock(&stop_mu);
    stop_flag = 1;
    pthread_mutex_unlock(&stop_mu);
    uint64_t ops = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(ws[t].th, NULL);
        ops += ws[t].ops;
    }
    double elapsed = (double)(store_lock_now_ns() - t0) / 1e9;
    printf("threads=%d ops_per_s=%.0f contended=%.4f hold_ns=%.1f\n", threads, (double)ops / elapsed,
           M.acquired ? (double)M.contended / (double)M.acquired : 0.0,
           timed && M.acquired ? (double)M.held_ns / (double)M.acquired : 0.0);
    store_destroy(&S);
    store_mutex_destroy(&M);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "check") == 0) {
        int threads = atoi(argv[2]), rounds = atoi(argv[3]);
        if (threads < 1 || threads > MAX_THREADS || rounds < 1)
            return 2;
        return check(threads, rounds);
    }
    if (argc == 8 && strcmp(argv[1], "bench") == 0) {
        int threads = atoi(argv[2]), keys = atoi(argv[3]);
        if (threads < 1 || threads > MAX_THREADS || keys < 1)
            return 2;
        return bench(threads, keys, (size_t)atol(argv[4]), atof(argv[5]), atoi(argv[6]),
                     (uint64_t)atoll(argv[7]));
    }
    fprintf(stderr, "usage: store_threads check THREADS ROUNDS | bench THREADS KEYS VALUE SECONDS TIMED WORK_NS\n");
    return 2;
}
