/*
 * worker_probe.c - a probe of issue 14's worker-thread design, not the daemon: N threads, each
 * with its own epoll set over its share of the client sockets, serving memcached's text get,
 * gets, set and delete in C against one native store behind its one mutex (csrc/store_lock.h).
 *
 *   main thread: accept() ──round robin──> worker[i]: epoll_wait ─> recv ─> parse ─┐
 *                                                     send <── reply <── store_lock│store_* │unlock
 *
 * It answers the question the store's lock design rests on: on real sockets under memaslap, does
 * one mutex over an exact LRU keep up with memcached's threads, and how contended is it?
 * benchmarks/store_locking.py --server runs it against memcached -t N in turn.
 *
 * Usage: worker_probe PORT THREADS    (prints "listening", then serves until killed; on SIGTERM
 *                                     it prints the lock's acquisitions, contention and hold time)
 *
 * Invariants: a connection belongs to one worker from accept to close (only that worker reads,
 * writes or frees it); `in` holds the unparsed input (at most MAX_INPUT bytes, or the client is
 * closed), `out` the reply bytes the kernel has not taken (EPOLLOUT is asked exactly while it
 * holds some, and no input is parsed meanwhile, so it is bounded by one read's replies).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "store.h"
#include "store_lock.h"

#define MAX_THREADS 64
#define MAX_INPUT (2u << 20)
#define READ_SIZE 65536

static store S;
static store_mutex M;

typedef struct buf {
    char *data;
    size_t len, cap;
} buf;

typedef struct conn {
    int fd;
    buf in, out;
    size_t out_off;
    uint32_t events;
} conn;

typedef struct worker {
    pthread_t th;
    int epfd;
} worker;

static worker workers[MAX_THREADS];

static int reserve(buf *b, size_t extra) {
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown)
        return -1;
    b->data = grown;
    b->cap = cap;
    return 0;
}

static int put(buf *b, const void *p, size_t n) {
    if (reserve(b, n) != 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static void conn_close(worker *w, conn *c) {
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in.data);
    free(c->out.data);
    free(c);
}

/* Answer the command line p[0:n) whose data block (if any) follows at `rest`; return the bytes
 * it took from the input (line, CRLF and block), 0 if the block is not all here yet. */
static size_t command(conn *c, const char *line, size_t n, const char *rest, size_t avail) {
    char key[STORE_MAX_KEY + 1];
    const char *end = line + n;
    if (n >= 4 && (memcmp(line, "get ", 4) == 0 || memcmp(line, "gets ", 5) == 0)) {
        int with_cas = line[3] == 's';
        const char *k = line + (with_cas ? 5 : 4);
        /* One acquisition per command, not per key: a 10-key get takes the lock once. */
        store_lock(&M);
        while (k < end) {
            while (k < end && *k == ' ')
                k++;
            const char *ke = k;
            while (ke < end && *ke != ' ')
                ke++;
            size_t nk = (size_t)(ke - k);
            if (nk == 0)
                break;
            char head[64 + STORE_MAX_KEY];
            item *it = nk <= STORE_MAX_KEY ? store_get(&S, k, nk) : NULL;
            if (it) {
                int h = with_cas ? snprintf(head, sizeof head, "VALUE %.*s %u %u %llu\r\n", (int)nk, k,
                                            item_flags(it), it->nbytes, (unsigned long long)it->cas)
                                 : snprintf(head, sizeof head, "VALUE %.*s %u %u\r\n", (int)nk, k,
                                            item_flags(it), it->nbytes);
                put(&c->out, head, (size_t)h);
                put(&c->out, item_value(it), it->nbytes); /* copied under the lock */
                put(&c->out, "\r\n", 2);
            }
            k = ke;
        }
        store_unlock(&M);
        put(&c->out, "END\r\n", 5);
        return (size_t)(rest - line);
    }
    if (n >= 4 && memcmp(line, "set ", 4) == 0) {
        unsigned flags, bytes;
        long exptime;
        int used = 0;
        if (sscanf(line + 4, "%250s %u %ld %u%n", key, &flags, &exptime, &bytes, &used) != 4) {
            put(&c->out, "ERROR\r\n", 7);
            return (size_t)(rest - line);
        }
        int noreply = memmem(line + 4 + used, (size_t)(end - line - 4 - used), "noreply", 7) != NULL;
        if (avail < (size_t)bytes + 2)
            return 0;
        store_lock(&M);
        int rc = store_update(&S, STORE_SET, key, strlen(key), rest, bytes, flags, exptime, 0, NULL);
        store_unlock(&M);
        if (!noreply)
            put(&c->out, rc == STORE_STORED ? "STORED\r\n" : "SERVER_ERROR out of memory\r\n",
                rc == STORE_STORED ? 8 : 28);
        return (size_t)(rest - line) + bytes + 2;
    }
    if (n >= 7 && memcmp(line, "delete ", 7) == 0 && sscanf(line + 7, "%250s", key) == 1) {
        store_lock(&M);
        int rc = store_delete(&S, key, strlen(key));
        store_unlock(&M);
        put(&c->out, rc == STORE_DELETED ? "DELETED\r\n" : "NOT_FOUND\r\n", rc == STORE_DELETED ? 9 : 11);
        return (size_t)(rest - line);
    }
    put(&c->out, "ERROR\r\n", 7);
    return (size_t)(rest - line);
}

static void parse(conn *c) {
    size_t pos = 0;
    while (pos < c->in.len) {
        char *nl = memchr(c->in.data + pos, '\n', c->in.len - pos);
        if (!nl)
            break;
        size_t lend = (size_t)(nl - c->in.data);
        size_t n = lend - pos - (lend > pos && c->in.data[lend - 1] == '\r');
        size_t took = command(c, c->in.data + pos, n, nl + 1, c->in.len - (lend + 1));
        if (!took)
            break;
        pos += took;
    }
    memmove(c->in.data, c->in.data + pos, c->in.len - pos);
    c->in.len -= pos;
}

/* Send what `out` holds; 0 when all sent or waiting for EPOLLOUT, -1 to close. */
static int flush(worker *w, conn *c) {
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN)
                break;
            return -1;
        }
        c->out_off += (size_t)n;
    }
    uint32_t want = EPOLLIN;
    if (c->out_off == c->out.len)
        c->out.len = c->out_off = 0;
    else
        want = EPOLLOUT; /* no input is parsed until the replies before it are out */
    if (want != c->events) {
        struct epoll_event ev = {.events = want, .data.ptr = c};
        epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->events = want;
    }
    return 0;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(w->epfd, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) {
                if (flush(w, c) != 0)
                    conn_close(w, c);
                continue;
            }
            if (reserve(&c->in, READ_SIZE) != 0) {
                conn_close(w, c);
                continue;
            }
            ssize_t got = recv(c->fd, c->in.data + c->in.len, READ_SIZE, 0);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN)
                    continue;
                conn_close(w, c);
                continue;
            }
            c->in.len += (size_t)got;
            parse(c);
            if (c->in.len > MAX_INPUT || flush(w, c) != 0)
                conn_close(w, c);
        }
    }
    return NULL;
}

static void report(int sig) {
    (void)sig;
    /* Read without the lock: the process is ending and the figures are only printed (write(),
     * not stdio: this runs in a signal handler). */
    char line[160];
    int n = snprintf(line, sizeof line, "lock: %llu acquired, %.2f%% contended, %.0f ns held on average\n",
                     (unsigned long long)M.acquired,
                     M.acquired ? 100.0 * (double)M.contended / (double)M.acquired : 0.0,
                     M.acquired ? (double)M.held_ns / (double)M.acquired : 0.0);
    if (write(2, line, (size_t)n) < 0)
        _exit(1);
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: worker_probe PORT THREADS\n");
        return 2;
    }
    int port = atoi(argv[1]), threads = atoi(argv[2]);
    if (threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "worker_probe: THREADS must be 1..%d\n", MAX_THREADS);
        return 2;
    }
    uint8_t seed[16] = {9};
    if (store_init(&S, 2048ull << 20, 0, 1u << 20, seed) != 0 || store_mutex_init(&M, 1) != 0)
        return 1;
    store_set_time(&S, 1000);
    signal(SIGTERM, report);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(ls, 1024) != 0) {
        perror("worker_probe");
        return 1;
    }
    for (int t = 0; t < threads; t++) {
        workers[t].epfd = epoll_create1(EPOLL_CLOEXEC);
        pthread_create(&workers[t].th, NULL, worker_main, &workers[t]);
    }
    printf("listening\n");
    fflush(stdout);
    for (unsigned next = 0;; next++) {
        int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        c->fd = fd;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(workers[next % (unsigned)threads].epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}
