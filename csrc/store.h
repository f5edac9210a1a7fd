/*
 * store.h - the LRU cache: items in a hash table, an intrusive LRU list and an expiry heap.
 *
 *   assoc (hash table)           LRU list                           expiry heap
 *   key -> item                  head <-> item <-> ... <-> tail     (exptime, cas) min-heap
 *                                (most recent)       (evicted first)
 *
 * Invariants (the python backend, pycache_d/store/_pystore.py, keeps the same ones):
 *   - Every linked item is in assoc and in the LRU list; those with exptime != 0 are also in
 *     the expiry heap. curr_items counts them and bytes sums their charge
 *     (nkey + nbytes + STORE_ITEM_OVERHEAD).
 *   - After any store: bytes <= room_bytes and, if room_items != 0, curr_items <= room_items.
 *     The room is the limit (max_bytes, max_items) except while a lowered limit is being
 *     reached: store_set_limits() evicts at most STORE_SHRINK_SLICE items, the room stays at
 *     what is then held, and each store_reclaim() evicts another slice and lowers the room
 *     until it meets the limit (so a lower -m on SIGHUP never stalls the daemon).
 *   - An item is dead when expired (0 < exptime <= now) or flushed (cas < flush_cas; in the
 *     second a delayed flush_all takes effect flush_cas is STORE_FLUSH_ALL, above every CAS,
 *     see settle_flush() in store.c). Dead items are never returned: they are freed on
 *     lookup, when they reach the tail while room is made, or by store_reclaim(). Flushed
 *     items are never moved (a lookup frees them), so they all sit at the tail end of the LRU
 *     list.
 *   - A returned item pointer stays valid only until the next call that may modify the store.
 *   - Every item carries memcached's per-item state (item.h): its last access (atime) and the
 *     FETCHED, TOKEN_SENT, STALE and KEY_BINARY bits. A write makes a fresh item (accessed now,
 *     no bits but the ones the write sets); a fetch sets FETCHED, or atime if already set.
 *   - Items are slab chunks (slabs.c) named by 32-bit handles; see item.h for the layout.
 *
 * Pins: a get's large value is sent from the item itself (scatter-gather sendmsg), so the item
 * must outlive the send and its bytes must not change:
 *
 *   pins[0..npins)   { it, ref, count, detached }     one entry per pinned item
 *        |                                             (item->iflags has ITEM_PINNED)
 *        +--> item (a large chunk: malloc()ed alone, so compaction never moves it)
 *
 *   - Only items whose chunk is large (item_size > SLAB_MAX_SMALL) are pinned; their address
 *     never changes (compact() moves small chunks only) and their handle is not reused while
 *     their chunk is allocated.
 *   - count > 0 for every entry: each pin (store_pin) is undone by one store_unpin.
 *   - An item unlinked while pinned (delete, overwrite, eviction, expiry, flush) leaves assoc,
 *     the LRU list and the heap and stops being charged to `bytes` as usual, but its chunk is
 *     freed by the last store_unpin, not then (`detached`); nothing writes to a pinned item's
 *     value (incr/decr write a new item instead of rewriting it in place, as memcached does
 *     for an item another connection holds).
 *   - pin_slots (pin_slots_cap, a power of two, at least twice pins_cap) finds an item's
 *     entry: open addressing with linear probing on the item's address, each slot 0 (empty) or
 *     1 + the index of an entry, and exactly one slot per entry. So a pin, an unpin and the
 *     unlink of a pinned item cost O(1), not a scan of every pin (a slow reader of thousands of
 *     large values would make each one cost thousands).
 *   - pinned_bytes sums the chunk sizes of the pinned items (linked or detached) and never
 *     passes pin_limit: store_pin refuses past it, and the caller copies the value instead.
 *     So at most pin_limit bytes of detached items sit beyond the memory limit.
 *
 * Eviction log (memcached's `watch evictions`): NULL unless someone watches; then
 *
 *   evlog[0..evlog_n)   what the last evictions freed, oldest first (a copy, not the item)
 *
 *   - evlog_n <= STORE_EVLOG_SIZE: an eviction past it is only counted in evlog_dropped, so a
 *     burst of evictions costs at most STORE_EVLOG_SIZE entries until the log is taken.
 */
#ifndef PYCACHE_STORE_H
#define PYCACHE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "assoc.h"
#include "expiry.h"
#include "item.h"
#include "slabs.h"

#define STORE_ITEM_OVERHEAD 48 /* charged per item on top of key and value; see semantics.py */
#define STORE_MAX_KEY 250
#define STORE_REALTIME_MAXDELTA (60 * 60 * 24 * 30)
#define STORE_FLUSH_ALL UINT64_MAX /* flush_cas that makes every item dead */
#define STORE_SHRINK_SLICE 1000     /* see semantics.py's SHRINK_SLICE */
/* Values at least this long are sent from the item (pinned) rather than copied; below it a
 * copy into the reply buffer costs less than the pin and the extra iovec. */
#define STORE_PIN_MIN (16u * 1024u)
/* Default bound on pinned_bytes (see the invariants): 64 MiB, or the memory limit if lower. */
#define STORE_PIN_LIMIT (64u * 1024u * 1024u)

/* Outcomes: the non-negative values are pycache_d.store.errors.Result. */
enum store_result {
    STORE_STORED = 0,
    STORE_NOT_STORED = 1,
    STORE_EXISTS = 2,
    STORE_NOT_FOUND = 3,
    STORE_DELETED = 4,
    STORE_TOUCHED = 5,
    STORE_TOO_LARGE = -1,   /* SERVER_ERROR object too large for cache */
    STORE_NO_MEMORY = -2,   /* SERVER_ERROR out of memory storing object */
    STORE_NON_NUMERIC = -3, /* CLIENT_ERROR cannot increment or decrement non-numeric value */
};

enum store_mode { STORE_SET, STORE_ADD, STORE_REPLACE, STORE_APPEND, STORE_PREPEND, STORE_CAS };

typedef struct store_stats {
    uint64_t total_items, evictions, expired_unfetched, evicted_unfetched, reclaimed;
    uint64_t get_hits, get_misses, get_expired, get_flushed, cmd_get, cmd_set, cmd_touch, cmd_flush;
    uint64_t delete_hits, delete_misses, incr_hits, incr_misses, decr_hits, decr_misses;
    uint64_t cas_hits, cas_misses, cas_badval, touch_hits, touch_misses;
    /* What freed items, by reported size class (slabs.h; index 0 unused), for `stats items`:
     * each sums to the total above (cls_evicted to evictions, ...); cls_evicted_time is the
     * idle age (now - atime) of the class's last evicted item, as memcached's evicted_time. */
    uint64_t cls_evicted[SLAB_REPORT_CLASSES + 1], cls_evicted_nonzero[SLAB_REPORT_CLASSES + 1];
    uint64_t cls_evicted_unfetched[SLAB_REPORT_CLASSES + 1];
    uint64_t cls_reclaimed[SLAB_REPORT_CLASSES + 1], cls_expired_unfetched[SLAB_REPORT_CLASSES + 1];
    uint32_t cls_evicted_time[SLAB_REPORT_CLASSES + 1];
} store_stats;

typedef struct pin_entry {
    item *it;
    item_ref ref;      /* set when detached */
    uint32_t count;    /* pins not yet undone */
    uint32_t detached; /* unlinked while pinned: the last unpin frees the chunk */
} pin_entry;

#define STORE_EVLOG_SIZE 1024
typedef struct store_evicted {
    uint32_t nbytes, flags, exptime, atime; /* the item's, exptime/atime on the store clock */
    uint32_t at;                            /* the store clock when it was evicted */
    uint8_t nkey, fetched;
    char key[STORE_MAX_KEY];
} store_evicted;

typedef struct store {
    slabs mem; /* every item lives here; assoc and expiry resolve handles through it */
    assoc table;
    expiry_heap expiry;
    item_ref head, tail; /* SLAB_NIL when empty */
    uint64_t bytes, max_bytes;
    uint64_t curr_items, max_items; /* max_items 0 = no limit */
    uint64_t room_bytes, room_items; /* what writes make room within; see the invariants */
    uint32_t max_item_size;
    uint32_t now;      /* store clock, whole seconds; set by store_set_time() */
    uint32_t flush_at; /* pending delayed flush_all: its second (oldest_live), 0 = none */
    uint64_t cas;      /* last CAS handed out */
    uint64_t flush_cas;
    uint64_t pages_compacted; /* slab pages emptied by moving their items (slabs.h) */
    int64_t wall_skew; /* wall clock minus store clock (s): absolute exptimes follow the wall */
    store_stats stats;
    pin_entry *pins; /* see "Pins" above; grows to the high-water count, never shrinks */
    uint32_t npins, pins_cap;
    uint32_t *pin_slots; /* the index of pins by item address (see "Pins") */
    uint32_t pin_slots_cap;
    uint64_t pinned_bytes, pin_limit;
    uint64_t pin_refused; /* store_pin calls refused at pin_limit (the value was copied) */
    store_evicted *evlog; /* see "Eviction log" above */
    uint32_t evlog_n;
    uint64_t evlog_dropped;
} store;

int store_init(store *s, uint64_t max_bytes, uint64_t max_items, uint32_t max_item_size,
               const uint8_t seed[16]);
void store_destroy(store *s);
/* Start (on != 0) or stop keeping the eviction log; -1 if its memory cannot be had. Stopping
 * drops what it holds. */
int store_evlog_enable(store *s, int on);
void store_set_time(store *s, uint32_t now);
void store_set_limits(store *s, uint64_t max_bytes, uint64_t max_items);
uint32_t store_absolute_expiry(const store *s, int64_t exptime);

/* Reads: a live item (valid until the next modifying call) or NULL. */
item *store_get(store *s, const char *key, size_t nkey);
item *store_gat(store *s, const char *key, size_t nkey, int64_t exptime);
int store_touch(store *s, const char *key, size_t nkey, int64_t exptime);

/* Writes. *cas_out (may be NULL) receives the new item's CAS on STORE_STORED. */
int store_update(store *s, int mode, const char *key, size_t nkey, const char *value,
                 size_t nbytes, uint32_t flags, int64_t exptime, uint64_t cas_in,
                 uint64_t *cas_out);
int store_delete(store *s, const char *key, size_t nkey);
/* incr/decr: STORE_STORED with *result set, STORE_NOT_FOUND, STORE_NON_NUMERIC or an error. */
int store_delta(store *s, const char *key, size_t nkey, int incr, uint64_t delta,
                uint64_t *result);
void store_flush_all(store *s, int64_t delay);

/* Free up to `limit` dead items, then live ones while a lowered limit is being reached;
 * returns how many. */
uint64_t store_reclaim(store *s, uint64_t limit);
/* Insert an item read back from a snapshot as the most recent: 1 kept, 0 skipped (dead or
 * too large), STORE_NO_MEMORY. atime 0 (unknown) or later than now means accessed now. */
int store_load(store *s, const char *key, size_t nkey, const char *value, size_t nbytes,
               uint32_t flags, uint32_t exptime, uint64_t cas, uint32_t atime, uint8_t state);

/* Meta commands (twins of the python backend's methods of the same names; see there). */
typedef struct item_state {
    uint32_t exptime, atime;
    uint8_t state; /* ITEM_STATE_BITS */
    uint8_t created;
} item_state;
/* A live item, found without a fetch (no counter, no bump, no mark), or NULL. */
item *store_peek(store *s, const char *key, size_t nkey);
/* mg: count a get (a hit with `touch` counts a touch), give a found item the new expiry if
 * `touch`, fetch it if `bump`; on a miss with vivify_on_miss, link an empty item marked
 * TOKEN_SENT instead (a hit).
 * *before receives the state the command saw. */
item *store_meta_get(store *s, const char *key, size_t nkey, int touch, int64_t exptime, int bump,
                     int vivify_on_miss, int64_t vivify_exptime, item_state *before);
/* Set and clear state bits of a live item, and give it a new expiry if `touch`, in place:
 * STORE_TOUCHED or STORE_NOT_FOUND. */
int store_mark(store *s, const char *key, size_t nkey, uint8_t set, uint8_t clear, int touch,
               int64_t exptime);
/* ms: store_update with a base64 key (`binary`) and ms I's stale CAS writes (`stale`). */
int store_meta_update(store *s, int mode, const char *key, size_t nkey, const char *value,
                      size_t nbytes, uint32_t flags, int64_t exptime, uint64_t cas_in,
                      int binary, int stale, uint64_t *cas_out);
/* md: STORE_DELETED (deleted, or with `stale` marked stale under a new CAS), STORE_NOT_FOUND or
 * STORE_EXISTS (has_cas and cas_in differs). */
int store_meta_delete(store *s, const char *key, size_t nkey, int has_cas, uint64_t cas_in,
                      int stale, int touch, int64_t exptime);
/* ma: store_delta comparing a nonzero cas_in (STORE_EXISTS), a miss counted if count_miss,
 * and with `touch` a new expiry if the number is rewritten in place; on STORE_STORED the
 * item's CAS and its expiry before this call. */
int store_meta_delta(store *s, const char *key, size_t nkey, int incr, uint64_t by,
                     uint64_t cas_in, int count_miss, int touch, int64_t exptime,
                     uint64_t *result, uint64_t *cas_out, uint32_t *exptime_out);
/* mg N, ma N: link a new item (client flags 0) if the key holds none, counting no set:
 * STORE_STORED, STORE_NOT_STORED (a live item is there), or an allocation error. */
int store_vivify(store *s, const char *key, size_t nkey, const char *value, size_t nbytes,
                 int64_t exptime, uint8_t state, uint64_t *cas_out);
/* Walk the LRU list from the tail (least recent) towards the head; NULL at the end. */
item *store_oldest(store *s);
item *store_newer(store *s, const item *it);
/* 0 alive, 1 expired, 2 flushed. */
int store_item_dead(const store *s, const item *it);
void store_reset_stats(store *s);

/* Pin a live item whose value is about to be sent from its memory: 0, or -1 when it cannot be
 * pinned (a small chunk, or pin_limit reached: copy the value instead). */
int store_pin(store *s, item *it);
/* Undo one store_pin; the last frees the chunk of an item unlinked meanwhile. */
void store_unpin(store *s, item *it);

/* Parse a counter as memcached's safe_strtoull() does; 0 on success. */
int store_parse_counter(const char *p, size_t n, uint64_t *out);

#endif
