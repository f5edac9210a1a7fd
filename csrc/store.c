/*
 * store.c - LRU cache operations with memcached's semantics (see store.h for the picture).
 *
 * Every operation here has a twin in pycache_d/store/_pystore.py; the differential tests run both
 * with the same operations and require identical results, counters and LRU order.
 */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#define ITEM(s, ref) ((item *)slabs_ptr(&(s)->mem, (ref)))

static inline uint64_t charge(const item *it) {
    return (uint64_t)it->nkey + it->nbytes + STORE_ITEM_OVERHEAD;
}

/* ---- LRU list --------------------------------------------------------------------------- */

static void lru_link_head(store *s, item_ref ref, item *it) {
    it->prev = SLAB_NIL;
    it->next = s->head;
    if (s->head != SLAB_NIL)
        ITEM(s, s->head)->prev = ref;
    s->head = ref;
    if (s->tail == SLAB_NIL)
        s->tail = ref;
}

static void lru_unlink(store *s, item *it) {
    if (it->prev != SLAB_NIL)
        ITEM(s, it->prev)->next = it->next;
    else
        s->head = it->next;
    if (it->next != SLAB_NIL)
        ITEM(s, it->next)->prev = it->prev;
    else
        s->tail = it->prev;
    it->prev = it->next = SLAB_NIL;
}

static void lru_bump(store *s, item_ref ref, item *it) {
    if (s->head != ref) {
        lru_unlink(s, it);
        lru_link_head(s, ref, it);
    }
}

/* ---- compaction (see slabs.h) ----------------------------------------------------------- */

/* Move a linked item to a new chunk of its class and repoint everything that links to it. */
static int relocate(store *s, item_ref old_ref) {
    size_t size = item_size(ITEM(s, old_ref));
    item_ref ref = slabs_alloc(&s->mem, size);
    if (ref == SLAB_NIL)
        return -1;
    item *it = ITEM(s, ref);
    memcpy(it, ITEM(s, old_ref), size);
    assoc_replace(&s->table, old_ref, ref, assoc_hash(&s->table, item_key(it), it->nkey));
    if (it->prev != SLAB_NIL)
        ITEM(s, it->prev)->next = ref;
    else
        s->head = ref;
    if (it->next != SLAB_NIL)
        ITEM(s, it->next)->prev = ref;
    else
        s->tail = ref;
    if (it->exptime)
        expiry_moved(&s->expiry, it, ref);
    slabs_free(&s->mem, old_ref, size);
    return 0;
}

/* Empty a few pages of the classes that hold too many free chunks. Runs only where every
 * allocated chunk is a linked item and no caller holds an item pointer: at the end of the
 * operations that free items (see settle()), never inside one. */
static void compact(store *s) {
    int cls;
    for (int pages = 0; pages < 4 && (cls = slabs_compact_next(&s->mem)) >= 0; pages++) {
        uint32_t n = 0;
        uint32_t id = slabs_evacuate_begin(&s->mem, (uint32_t)cls, &n);
        if (!id)
            continue;
        for (uint32_t i = 0; i < n; i++) {
            if (relocate(s, s->mem.scratch[i]) != 0) {
                slabs_compact_unmark(&s->mem, (uint32_t)cls); /* out of memory: try later */
                break;
            }
        }
        slabs_evacuate_end(&s->mem, id);
        s->pages_compacted++;
    }
}

static inline void settle(store *s) {
    if (s->mem.compact_pending)
        compact(s);
}

/* ---- item life cycle -------------------------------------------------------------------- */

/* A new item, accessed now, with the state bits `state` (none for a plain write). */
static item_ref item_alloc(store *s, const char *key, size_t nkey, size_t nbytes, uint32_t flags,
                           uint32_t exptime, uint8_t state) {
    item_ref ref = slabs_alloc(&s->mem, item_size_for(nkey, nbytes, flags));
    if (ref == SLAB_NIL)
        return SLAB_NIL;
    item *it = ITEM(s, ref);
    it->h_next = it->prev = it->next = SLAB_NIL;
    it->heap_idx = EXPIRY_NONE;
    it->cas = 0;
    it->exptime = exptime;
    it->atime = s->now;
    it->nbytes = (uint32_t)nbytes;
    it->nkey = (uint8_t)nkey;
    it->iflags = (uint8_t)(state & ITEM_STATE_BITS);
    if (flags) {
        it->iflags |= ITEM_CFLAGS;
        memcpy(it->data, &flags, sizeof(flags));
    }
    memcpy((char *)item_key(it), key, nkey);
    return ref;
}

static void item_free(store *s, item_ref ref) {
    slabs_free(&s->mem, ref, item_size(ITEM(s, ref)));
}

/* ---- pins (see store.h) ------------------------------------------------------------------ */

static inline uint32_t pin_home(const store *s, const item *it) {
    /* Fibonacci hashing of the address: chunks are malloc()ed, so the low bits carry little. */
    uint64_t h = (uint64_t)(uintptr_t)it * UINT64_C(0x9E3779B97F4A7C15);
    return (uint32_t)(h >> 32) & (s->pin_slots_cap - 1);
}

/* The slot holding `it`'s entry, or the empty slot where it would go. */
static uint32_t pin_slot(const store *s, const item *it) {
    uint32_t mask = s->pin_slots_cap - 1, i = pin_home(s, it);
    while (s->pin_slots[i] && s->pins[s->pin_slots[i] - 1].it != it)
        i = (i + 1) & mask;
    return i;
}

static pin_entry *pin_find(store *s, const item *it) {
    uint32_t at = s->pin_slots[pin_slot(s, it)];
    return at ? &s->pins[at - 1] : NULL; /* NULL is not reached for an item with ITEM_PINNED */
}

/* Room for one more entry: pins and pin_slots grow together, the slots rehashed. */
static int pin_reserve(store *s) {
    if (s->npins < s->pins_cap)
        return 0;
    uint32_t cap = s->pins_cap ? s->pins_cap * 2 : 16;
    pin_entry *grown = realloc(s->pins, (size_t)cap * sizeof(pin_entry));
    if (!grown)
        return -1;
    s->pins = grown;
    uint32_t *slots = calloc((size_t)cap * 2, sizeof(uint32_t));
    if (!slots)
        return -1; /* pins grew, which is harmless; pins_cap stays */
    free(s->pin_slots);
    s->pin_slots = slots;
    s->pin_slots_cap = cap * 2;
    s->pins_cap = cap;
    for (uint32_t i = 0; i < s->npins; i++)
        s->pin_slots[pin_slot(s, s->pins[i].it)] = i + 1;
    return 0;
}

/* Remove the slot at `i`, shifting back the entries after it that probed past it (linear
 * probing's deletion: no tombstones, so lookups never slow down with churn). */
static void pin_slot_clear(store *s, uint32_t i) {
    uint32_t mask = s->pin_slots_cap - 1, j = i;
    s->pin_slots[i] = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (!s->pin_slots[j])
            return;
        uint32_t home = pin_home(s, s->pins[s->pin_slots[j] - 1].it);
        /* The entry at j may move to the hole at i unless its home lies in (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            s->pin_slots[i] = s->pin_slots[j];
            s->pin_slots[j] = 0;
            i = j;
        }
    }
}

int store_pin(store *s, item *it) {
    size_t size = item_size(it);
    if (size <= SLAB_MAX_SMALL)
        return -1; /* a small chunk may be moved by compaction */
    if (it->iflags & ITEM_PINNED) {
        pin_find(s, it)->count++;
        return 0;
    }
    if (s->pinned_bytes + size > s->pin_limit) {
        s->pin_refused++;
        return -1;
    }
    if (pin_reserve(s) != 0)
        return -1;
    pin_entry *pin = &s->pins[s->npins++];
    pin->it = it;
    pin->ref = SLAB_NIL;
    pin->count = 1;
    pin->detached = 0;
    s->pin_slots[pin_slot(s, it)] = s->npins;
    it->iflags |= ITEM_PINNED;
    s->pinned_bytes += size;
    return 0;
}

void store_unpin(store *s, item *it) {
    uint32_t slot = pin_slot(s, it), at = s->pin_slots[slot];
    if (!at)
        return;
    pin_entry *pin = &s->pins[at - 1];
    if (--pin->count)
        return;
    size_t size = item_size(it);
    s->pinned_bytes -= size;
    if (pin->detached)
        slabs_free(&s->mem, pin->ref, size);
    else
        it->iflags &= (uint8_t)~ITEM_PINNED;
    pin_slot_clear(s, slot);
    /* The last entry fills the hole; its slot now names the new index. */
    if (at != s->npins) {
        *pin = s->pins[s->npins - 1];
        s->pin_slots[pin_slot(s, pin->it)] = at;
    }
    s->npins--;
}

enum unlink_reason { UNLINK_PLAIN, UNLINK_DEAD, UNLINK_EVICTED };

static void log_eviction(store *s, const item *it) {
    if (s->evlog_n == STORE_EVLOG_SIZE) {
        s->evlog_dropped++;
        return;
    }
    store_evicted *e = &s->evlog[s->evlog_n++];
    e->nbytes = it->nbytes;
    e->flags = item_flags(it);
    e->exptime = it->exptime;
    e->atime = it->atime;
    e->at = s->now;
    e->nkey = it->nkey;
    e->fetched = (it->iflags & ITEM_FETCHED) != 0;
    memcpy(e->key, item_key(it), it->nkey);
}

static void unlink_item(store *s, item_ref ref, int reason) {
    item *it = ITEM(s, ref);
    assoc_remove(&s->table, ref, assoc_hash(&s->table, item_key(it), it->nkey));
    lru_unlink(s, it);
    if (it->exptime)
        expiry_remove(&s->expiry, it);
    s->bytes -= charge(it);
    s->curr_items--;
    int unfetched = !(it->iflags & ITEM_FETCHED);
    if (reason == UNLINK_DEAD) {
        uint32_t rc = slabs_report_class(item_size(it));
        s->stats.reclaimed++;
        s->stats.expired_unfetched += unfetched;
        s->stats.cls_reclaimed[rc]++;
        s->stats.cls_expired_unfetched[rc] += unfetched;
    } else if (reason == UNLINK_EVICTED) {
        uint32_t rc = slabs_report_class(item_size(it));
        s->stats.evictions++;
        s->stats.evicted_unfetched += unfetched;
        s->stats.cls_evicted[rc]++;
        s->stats.cls_evicted_nonzero[rc] += it->exptime != 0;
        s->stats.cls_evicted_unfetched[rc] += unfetched;
        s->stats.cls_evicted_time[rc] = s->now - it->atime;
        if (s->evlog)
            log_eviction(s, it);
    }
    if (it->iflags & ITEM_PINNED) {
        pin_entry *pin = pin_find(s, it);
        pin->ref = ref;
        pin->detached = 1; /* the last store_unpin frees it */
        return;
    }
    item_free(s, ref);
}

int store_item_dead(const store *s, const item *it) {
    if (it->cas < s->flush_cas)
        return 2;
    if (it->exptime && it->exptime <= s->now)
        return 1;
    return 0;
}

/* Free tail items until need_bytes more bytes and need_items more items fit the room. */
static void shrink(store *s, uint64_t need_bytes, uint64_t need_items) {
    while (s->tail != SLAB_NIL && (s->bytes + need_bytes > s->room_bytes ||
                                   (s->room_items && s->curr_items + need_items > s->room_items))) {
        item_ref ref = s->tail;
        unlink_item(s, ref, store_item_dead(s, ITEM(s, ref)) ? UNLINK_DEAD : UNLINK_EVICTED);
    }
}

/* Evict up to limit tail items while more is held than the limits allow, then lower the room
 * to what is held (never below the limits); returns how many were freed. */
static uint64_t reduce(store *s, uint64_t limit) {
    uint64_t freed = 0;
    while (freed < limit && s->tail != SLAB_NIL &&
           (s->bytes > s->max_bytes || (s->max_items && s->curr_items > s->max_items))) {
        item_ref ref = s->tail;
        unlink_item(s, ref, store_item_dead(s, ITEM(s, ref)) ? UNLINK_DEAD : UNLINK_EVICTED);
        freed++;
    }
    s->room_bytes = s->bytes > s->max_bytes ? s->bytes : s->max_bytes;
    s->room_items = s->max_items && s->curr_items > s->max_items ? s->curr_items : s->max_items;
    return freed;
}

/* Link a fresh item (key and value filled in) at the head, making room first. */
static int link_item(store *s, item_ref ref) {
    item *it = ITEM(s, ref);
    if (it->exptime && expiry_reserve(&s->expiry) != 0) {
        item_free(s, ref);
        return STORE_NO_MEMORY;
    }
    shrink(s, charge(it), 1);
    it->cas = ++s->cas;
    assoc_insert(&s->table, ref, assoc_hash(&s->table, item_key(it), it->nkey));
    lru_link_head(s, ref, it);
    if (it->exptime)
        expiry_push(&s->expiry, ref);
    s->bytes += charge(it);
    s->curr_items++;
    return STORE_STORED;
}

/* The live item under key, freeing it if dead (counted as get_expired / get_flushed). */
static item_ref lookup(store *s, const char *key, size_t nkey) {
    item_ref ref = assoc_find(&s->table, key, nkey, assoc_hash(&s->table, key, nkey));
    if (ref == SLAB_NIL)
        return SLAB_NIL;
    int dead = store_item_dead(s, ITEM(s, ref));
    if (dead) {
        if (dead == 2)
            s->stats.get_flushed++;
        else
            s->stats.get_expired++;
        unlink_item(s, ref, UNLINK_DEAD);
        return SLAB_NIL;
    }
    return ref;
}

/* ---- public ----------------------------------------------------------------------------- */

int store_init(store *s, uint64_t max_bytes, uint64_t max_items, uint32_t max_item_size,
               const uint8_t seed[16]) {
    memset(s, 0, sizeof(*s));
    if (slabs_init(&s->mem) != 0)
        return -1;
    if (assoc_init(&s->table, &s->mem, seed) != 0) {
        slabs_destroy(&s->mem);
        return -1;
    }
    expiry_init(&s->expiry, &s->mem);
    s->max_bytes = s->room_bytes = max_bytes;
    s->max_items = s->room_items = max_items;
    s->max_item_size = max_item_size;
    s->pin_limit = max_bytes < STORE_PIN_LIMIT ? max_bytes : STORE_PIN_LIMIT;
    return 0;
}

int store_evlog_enable(store *s, int on) {
    if (on && !s->evlog) {
        s->evlog = malloc(STORE_EVLOG_SIZE * sizeof(*s->evlog));
        if (!s->evlog)
            return -1;
    } else if (!on) {
        free(s->evlog);
        s->evlog = NULL;
    }
    s->evlog_n = 0;
    s->evlog_dropped = 0;
    return 0;
}

void store_destroy(store *s) {
    store_evlog_enable(s, 0);
    assoc_destroy(&s->table);
    expiry_destroy(&s->expiry);
    slabs_destroy(&s->mem); /* frees every item with its page, detached ones too */
    free(s->pins);
    free(s->pin_slots);
    s->pins = NULL;
    s->pin_slots = NULL;
    s->npins = s->pins_cap = s->pin_slots_cap = 0;
    s->head = s->tail = SLAB_NIL;
}

/* Apply the pending flush_all whose second (flush_at, memcached's oldest_live) has come.
 * memcached flushes every item whose time is at or before oldest_live once its clock reaches
 * it, so what is stored during that second is flushed too: every item is dead until the clock
 * moves on, and then exactly those stored up to there. */
static void settle_flush(store *s) {
    if (s->now > s->flush_at) {
        s->flush_at = 0;
        s->flush_cas = s->cas + 1;
    } else {
        s->flush_cas = STORE_FLUSH_ALL;
    }
}

void store_set_time(store *s, uint32_t now) {
    s->now = now;
    if (s->flush_at && now >= s->flush_at)
        settle_flush(s);
}

void store_set_limits(store *s, uint64_t max_bytes, uint64_t max_items) {
    s->max_bytes = max_bytes;
    s->max_items = max_items;
    reduce(s, STORE_SHRINK_SLICE); /* store_reclaim() evicts the rest, a slice at a time */
    settle(s);
}

uint32_t store_absolute_expiry(const store *s, int64_t exptime) {
    if (exptime == 0)
        return 0;
    if (exptime < 0)
        return 1;
    if (exptime > STORE_REALTIME_MAXDELTA) {
        /* A Unix time on the wall clock, which may have been stepped since the store's clock
         * was set (see pycache_d/store/clock.py). */
        int64_t at = exptime - s->wall_skew;
        return at > 1 ? (uint32_t)at : 1;
    }
    return s->now + (uint32_t)exptime;
}

/* A fetch of a live item (memcached's do_item_bump): the first since it was written marks it
 * fetched and leaves its last access; a later one sets its last access. memcached's segmented
 * LRU sets it on the second fetch and then only once its LRU maintainer cleared the item's
 * ACTIVE mark; we keep no ACTIVE mark, so every fetch after the first counts. The python
 * backend's _bump() is the twin. */
static void fetch(store *s, item_ref ref, item *it) {
    if (it->iflags & ITEM_FETCHED)
        it->atime = s->now;
    else
        it->iflags |= ITEM_FETCHED;
    lru_bump(s, ref, it);
}

item *store_get(store *s, const char *key, size_t nkey) {
    s->stats.cmd_get++;
    item_ref ref = lookup(s, key, nkey);
    if (ref == SLAB_NIL) {
        s->stats.get_misses++;
        return NULL;
    }
    s->stats.get_hits++;
    item *it = ITEM(s, ref);
    fetch(s, ref, it);
    return it;
}

/* Give a live item a new expiry (absolute), in place: nothing else changes. */
static int set_exptime(store *s, item_ref ref, uint32_t exptime) {
    item *it = ITEM(s, ref);
    if (exptime && !it->exptime && expiry_reserve(&s->expiry) != 0)
        return STORE_NO_MEMORY;
    uint32_t old = it->exptime;
    it->exptime = exptime;
    if (old && exptime)
        expiry_fix(&s->expiry, it);
    else if (old)
        expiry_remove(&s->expiry, it);
    else if (exptime)
        expiry_push(&s->expiry, ref);
    return STORE_TOUCHED;
}

/* Give a live item a new expiry and fetch it (memcached's do_item_touch). */
static int retime(store *s, item_ref ref, uint32_t exptime) {
    int rc = set_exptime(s, ref, exptime);
    if (rc == STORE_TOUCHED)
        fetch(s, ref, ITEM(s, ref));
    return rc;
}

item *store_gat(store *s, const char *key, size_t nkey, int64_t exptime) {
    s->stats.cmd_touch++; /* memcached counts a gat as a touch only, hit or miss */
    item_ref ref = lookup(s, key, nkey);
    if (ref == SLAB_NIL) {
        s->stats.touch_misses++;
        return NULL;
    }
    s->stats.touch_hits++;
    if (retime(s, ref, store_absolute_expiry(s, exptime)) != STORE_TOUCHED)
        return NULL;
    return ITEM(s, ref);
}

static int touch(store *s, const char *key, size_t nkey, int64_t exptime) {
    s->stats.cmd_touch++;
    item_ref ref = lookup(s, key, nkey);
    if (ref == SLAB_NIL) {
        s->stats.touch_misses++;
        return STORE_NOT_FOUND;
    }
    s->stats.touch_hits++;
    return retime(s, ref, store_absolute_expiry(s, exptime));
}

static int fits(const store *s, uint64_t size) {
    if (size > s->max_item_size)
        return STORE_TOO_LARGE;
    if (size > s->max_bytes)
        return STORE_NO_MEMORY;
    return 0;
}

/* A write of any mode. `state` (ITEM_KEY_BINARY) marks the new item unless it is an append or
 * prepend, whose new item memcached builds without it. With `stale` (ms I), a CAS write with an
 * older CAS than the item's stores anyway: a STALE item that keeps the old expiry and win-token
 * mark (memcached's CAS_STALE). Append and prepend compare a nonzero cas_in too (ms MA/MP C). */
static int update(store *s, int mode, const char *key, size_t nkey, const char *value,
                  size_t nbytes, uint32_t flags, int64_t exptime, uint64_t cas_in, uint8_t state,
                  int stale, uint64_t *cas_out) {
    int err = fits(s, (uint64_t)nkey + nbytes + STORE_ITEM_OVERHEAD);
    if (err) {
        if (mode == STORE_SET) {
            /* memcached drops the old value rather than keep serving stale data. */
            item_ref old = assoc_find(&s->table, key, nkey, assoc_hash(&s->table, key, nkey));
            if (old != SLAB_NIL)
                unlink_item(s, old, UNLINK_PLAIN);
        }
        return err;
    }
    s->stats.cmd_set++;
    item_ref old_ref = lookup(s, key, nkey);
    item *old = old_ref != SLAB_NIL ? ITEM(s, old_ref) : NULL;
    item_ref ref;
    uint32_t abs_exptime = store_absolute_expiry(s, exptime);
    switch (mode) {
    case STORE_ADD:
        if (old) {
            /* memcached bumps the item a failed add found (do_item_update): LRU, last access */
            old->atime = s->now;
            lru_bump(s, old_ref, old);
            return STORE_NOT_STORED;
        }
        break;
    case STORE_REPLACE:
        if (!old)
            return STORE_NOT_STORED;
        break;
    case STORE_CAS:
        if (!old) {
            s->stats.cas_misses++;
            return STORE_NOT_FOUND;
        }
        if (old->cas != cas_in) {
            if (!(stale && cas_in && cas_in < old->cas)) {
                s->stats.cas_badval++;
                return STORE_EXISTS;
            }
            abs_exptime = old->exptime;
            state |= ITEM_STALE | (old->iflags & ITEM_TOKEN_SENT);
        }
        s->stats.cas_hits++;
        break;
    case STORE_APPEND:
    case STORE_PREPEND: {
        if (!old)
            return STORE_NOT_STORED;
        if (cas_in && cas_in != old->cas)
            return STORE_EXISTS;
        uint64_t total = (uint64_t)old->nbytes + nbytes;
        if (fits(s, nkey + total + STORE_ITEM_OVERHEAD))
            return STORE_NOT_STORED;
        ref = item_alloc(s, key, nkey, (size_t)total, item_flags(old), old->exptime, 0);
        if (ref == SLAB_NIL)
            return STORE_NO_MEMORY;
        item *it = ITEM(s, ref);
        old = ITEM(s, old_ref); /* handles are stable, but re-resolve for clarity after alloc */
        if (mode == STORE_APPEND) {
            memcpy(item_value(it), item_value(old), old->nbytes);
            memcpy(item_value(it) + old->nbytes, value, nbytes);
        } else {
            memcpy(item_value(it), value, nbytes);
            memcpy(item_value(it) + nbytes, item_value(old), old->nbytes);
        }
        unlink_item(s, old_ref, UNLINK_PLAIN);
        goto link;
    }
    default: /* STORE_SET */
        break;
    }
    ref = item_alloc(s, key, nkey, nbytes, flags, abs_exptime, state);
    if (ref == SLAB_NIL)
        return STORE_NO_MEMORY;
    memcpy(item_value(ITEM(s, ref)), value, nbytes);
    if (old)
        unlink_item(s, old_ref, UNLINK_PLAIN);
link:
    err = link_item(s, ref);
    if (err != STORE_STORED)
        return err;
    s->stats.total_items++;
    if (cas_out)
        *cas_out = ITEM(s, ref)->cas;
    return STORE_STORED;
}

static int delete(store *s, const char *key, size_t nkey) {
    item_ref ref = lookup(s, key, nkey);
    if (ref == SLAB_NIL) {
        s->stats.delete_misses++;
        return STORE_NOT_FOUND;
    }
    s->stats.delete_hits++;
    unlink_item(s, ref, UNLINK_PLAIN);
    return STORE_DELETED;
}

static inline int c_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

int store_parse_counter(const char *p, size_t n, uint64_t *out) {
    size_t i = 0;
    while (i < n && c_space(p[i]))
        i++;
    int negative = 0;
    if (i < n && (p[i] == '+' || p[i] == '-'))
        negative = p[i++] == '-';
    size_t start = i;
    uint64_t v = 0;
    int overflow = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = 1;
        v = v * 10 + d;
    }
    if (i == start)
        return -1; /* nothing parsed: memcached 1.6 rejects a whitespace-only value too */
    if (i < n && !c_space(p[i]) && p[i] != '\0')
        return -1;
    if (overflow)
        return -1;
    if (negative && v) {
        v = (uint64_t)0 - v;
        if (v >= ((uint64_t)1 << 63))
            return -1;
    }
    *out = v;
    return 0;
}

/* incr/decr as memcached's do_add_delta: the lookup is no fetch (DONT_UPDATE); an empty value is
 * not a number before a nonzero cas_in is compared (STORE_EXISTS); *ref_out is the item. */
static int delta(store *s, const char *key, size_t nkey, int incr, uint64_t delta,
                 uint64_t cas_in, int count_miss, int touch, int64_t exptime, uint64_t *result,
                 item_ref *ref_out) {
    item_ref ref = lookup(s, key, nkey);
    if (ref == SLAB_NIL) {
        if (count_miss && incr)
            s->stats.incr_misses++;
        else if (count_miss)
            s->stats.decr_misses++;
        return STORE_NOT_FOUND;
    }
    item *it = ITEM(s, ref);
    uint64_t v;
    if (it->nbytes && cas_in && cas_in != it->cas)
        return STORE_EXISTS;
    if (store_parse_counter(item_value(it), it->nbytes, &v) != 0)
        return STORE_NON_NUMERIC;
    if (incr) {
        s->stats.incr_hits++;
        v += delta; /* wraps at 2^64, as memcached does */
    } else {
        s->stats.decr_hits++;
        v = delta > v ? 0 : v - delta;
    }
    char digits[24];
    size_t n = 0;
    uint64_t t = v;
    do {
        digits[n++] = (char)('0' + t % 10);
        t /= 10;
    } while (t);
    if (n <= it->nbytes && !(it->iflags & ITEM_PINNED)) {
        /* In place, as memcached does: digits padded with spaces to the old length (unless a
         * reply is being sent from it: memcached, too, writes a new item when another
         * connection holds a reference). */
        char *p = item_value(it);
        for (size_t i = 0; i < n; i++)
            p[i] = digits[n - 1 - i];
        memset(p + n, ' ', it->nbytes - n);
        /* its state stays; the access counts (do_item_update) but is no fetch */
        it->cas = ++s->cas;
        /* ma T: memcached sets the TTL of the item do_add_delta returns: this one, rewritten
         * in place (a longer number is a new item, and keeps the TTL it had) */
        if (!touch || set_exptime(s, ref, store_absolute_expiry(s, exptime)) != STORE_TOUCHED) {
            if (it->exptime)
                expiry_fix(&s->expiry, it); /* its new CAS orders it in the expiry heap */
        }
        it->atime = s->now;
        lru_bump(s, ref, it);
    } else {
        int err = fits(s, nkey + n + STORE_ITEM_OVERHEAD);
        if (err)
            return err;
        item_ref fresh_ref = item_alloc(s, key, nkey, n, item_flags(it), it->exptime, 0);
        if (fresh_ref == SLAB_NIL)
            return STORE_NO_MEMORY;
        item *fresh = ITEM(s, fresh_ref);
        for (size_t i = 0; i < n; i++)
            item_value(fresh)[i] = digits[n - 1 - i];
        unlink_item(s, ref, UNLINK_PLAIN);
        err = link_item(s, fresh_ref);
        if (err != STORE_STORED)
            return err;
        ref = fresh_ref;
    }
    *result = v;
    if (ref_out)
        *ref_out = ref;
    return STORE_STORED;
}

void store_flush_all(store *s, int64_t delay) {
    s->stats.cmd_flush++;
    /* Inside an earlier flush's second: what it flushed stays flushed (memcached would bring
     * those items back by moving oldest_live later; we never do). */
    if (s->flush_cas == STORE_FLUSH_ALL)
        s->flush_cas = s->cas + 1;
    if (delay > 0) {
        /* memcached's oldest_live is realtime(delay) - 1: the flush takes effect then
         * (settle_flush), at once for a delay of 1. */
        uint32_t at = store_absolute_expiry(s, delay);
        s->flush_at = at > 2 ? at - 1 : 1;
        if (s->flush_at <= s->now)
            settle_flush(s);
        return;
    }
    s->flush_at = 0;
    s->flush_cas = s->cas + 1;
}

uint64_t store_reclaim(store *s, uint64_t limit) {
    uint64_t freed = 0;
    while (freed < limit && s->tail != SLAB_NIL && ITEM(s, s->tail)->cas < s->flush_cas) {
        unlink_item(s, s->tail, UNLINK_DEAD);
        freed++;
    }
    item_ref ref;
    while (freed < limit && (ref = expiry_first(&s->expiry)) != SLAB_NIL &&
           ITEM(s, ref)->exptime <= s->now) {
        unlink_item(s, ref, UNLINK_DEAD);
        freed++;
    }
    freed += reduce(s, limit - freed);
    assoc_step(&s->table, 64);
    settle(s);
    return freed;
}

static int load(store *s, const char *key, size_t nkey, const char *value, size_t nbytes,
                uint32_t flags, uint32_t exptime, uint64_t cas, uint32_t atime, uint8_t state) {
    if ((exptime && exptime <= s->now) || cas < s->flush_cas)
        return 0;
    uint64_t size = (uint64_t)nkey + nbytes + STORE_ITEM_OVERHEAD;
    if (fits(s, size))
        return 0;
    uint64_t hv = assoc_hash(&s->table, key, nkey);
    item_ref old = assoc_find(&s->table, key, nkey, hv);
    if (old != SLAB_NIL)
        unlink_item(s, old, UNLINK_PLAIN);
    if (exptime && expiry_reserve(&s->expiry) != 0)
        return STORE_NO_MEMORY;
    item_ref ref = item_alloc(s, key, nkey, nbytes, flags, exptime, state);
    if (ref == SLAB_NIL)
        return STORE_NO_MEMORY;
    item *it = ITEM(s, ref);
    memcpy(item_value(it), value, nbytes);
    if (atime && atime < s->now)
        it->atime = atime; /* 0 (unknown) or a time to come: accessed now */
    shrink(s, size, 1);
    it->cas = cas;
    assoc_insert(&s->table, ref, hv);
    lru_link_head(s, ref, it);
    if (exptime)
        expiry_push(&s->expiry, ref);
    s->bytes += size;
    s->curr_items++;
    if (cas > s->cas)
        s->cas = cas;
    s->stats.total_items++;
    return 1;
}

item *store_oldest(store *s) { return s->tail != SLAB_NIL ? ITEM(s, s->tail) : NULL; }

item *store_newer(store *s, const item *it) {
    return it->prev != SLAB_NIL ? ITEM(s, it->prev) : NULL;
}

void store_reset_stats(store *s) { memset(&s->stats, 0, sizeof(s->stats)); }

/* ---- the operations that free items end by settling (see compact()) ----------------------- */

int store_touch(store *s, const char *key, size_t nkey, int64_t exptime) {
    int rc = touch(s, key, nkey, exptime);
    settle(s);
    return rc;
}

int store_update(store *s, int mode, const char *key, size_t nkey, const char *value,
                 size_t nbytes, uint32_t flags, int64_t exptime, uint64_t cas_in,
                 uint64_t *cas_out) {
    int rc = update(s, mode, key, nkey, value, nbytes, flags, exptime, cas_in, 0, 0, cas_out);
    settle(s);
    return rc;
}

int store_delete(store *s, const char *key, size_t nkey) {
    int rc = delete(s, key, nkey);
    settle(s);
    return rc;
}

int store_delta(store *s, const char *key, size_t nkey, int incr, uint64_t by, uint64_t *result) {
    int rc = delta(s, key, nkey, incr, by, 0, 1, 0, 0, result, NULL);
    settle(s);
    return rc;
}

int store_load(store *s, const char *key, size_t nkey, const char *value, size_t nbytes,
               uint32_t flags, uint32_t exptime, uint64_t cas, uint32_t atime, uint8_t state) {
    int rc = load(s, key, nkey, value, nbytes, flags, exptime, cas, atime, state);
    settle(s);
    return rc;
}

/* ---- meta commands (proto_text.c's mg, ms, md, ma, me) ---------------------------------------
 * Twins of the python backend's peek, meta_get, mark, meta_update, meta_delete, meta_delta. */

/* Link a new item created by a meta command on a miss (mg N, ma N): memcached links it directly,
 * so it counts no set. */
static int vivify(store *s, const char *key, size_t nkey, const char *value, size_t nbytes,
                  uint32_t exptime, uint8_t state, item_ref *ref_out) {
    int err = fits(s, (uint64_t)nkey + nbytes + STORE_ITEM_OVERHEAD);
    if (err)
        return err;
    item_ref ref = item_alloc(s, key, nkey, nbytes, 0, exptime, state);
    if (ref == SLAB_NIL)
        return STORE_NO_MEMORY;
    memcpy(item_value(ITEM(s, ref)), value, nbytes);
    err = link_item(s, ref);
    if (err != STORE_STORED)
        return err;
    s->stats.total_items++;
    *ref_out = ref;
    return STORE_STORED;
}

item *store_peek(store *s, const char *key, size_t nkey) {
    item_ref ref = lookup(s, key, nkey);
    return ref != SLAB_NIL ? ITEM(s, ref) : NULL;
}

item *store_meta_get(store *s, const char *key, size_t nkey, int touch, int64_t exptime, int bump,
                     int vivify_on_miss, int64_t vivify_exptime, item_state *before) {
    item_ref ref = lookup(s, key, nkey);
    int created = 0;
    if (ref == SLAB_NIL && vivify_on_miss) {
        /* a failed allocation leaves the miss standing, as in memcached */
        created = vivify(s, key, nkey, "", 0, store_absolute_expiry(s, vivify_exptime),
                         ITEM_TOKEN_SENT, &ref) == STORE_STORED;
        if (!created)
            ref = SLAB_NIL;
    }
    if (ref == SLAB_NIL) {
        s->stats.cmd_get++; /* memcached counts a miss as a get, T or not */
        s->stats.get_misses++;
        settle(s);
        return NULL;
    }
    if (touch) {
        s->stats.cmd_touch++;
        s->stats.touch_hits++;
    } else {
        s->stats.cmd_get++;
        s->stats.get_hits++;
    }
    item *it = ITEM(s, ref);
    before->exptime = it->exptime;
    before->atime = it->atime;
    before->state = created ? 0 : (uint8_t)(it->iflags & ITEM_STATE_BITS); /* W is its own */
    before->created = (uint8_t)created;
    if (touch && !created)
        set_exptime(s, ref, store_absolute_expiry(s, exptime)); /* heap out of memory: TTL kept */
    if (bump)
        fetch(s, ref, it);
    /* NOTE: no settle() here: the item pointer must stay valid for the caller, and a hit frees
     * nothing (a vivified item may have evicted others: the next freeing call compacts). */
    return it;
}

int store_mark(store *s, const char *key, size_t nkey, uint8_t set, uint8_t clear, int touch,
               int64_t exptime) {
    item_ref ref = lookup(s, key, nkey);
    if (ref == SLAB_NIL) {
        settle(s);
        return STORE_NOT_FOUND;
    }
    item *it = ITEM(s, ref);
    it->iflags = (uint8_t)((it->iflags | (set & ITEM_STATE_BITS)) & ~(clear & ITEM_STATE_BITS));
    if (touch)
        return set_exptime(s, ref, store_absolute_expiry(s, exptime));
    return STORE_TOUCHED;
}

int store_meta_update(store *s, int mode, const char *key, size_t nkey, const char *value,
                      size_t nbytes, uint32_t flags, int64_t exptime, uint64_t cas_in,
                      int binary, int stale, uint64_t *cas_out) {
    int rc = update(s, mode, key, nkey, value, nbytes, flags, exptime, cas_in,
                    binary ? ITEM_KEY_BINARY : 0, stale, cas_out);
    settle(s);
    return rc;
}

int store_meta_delete(store *s, const char *key, size_t nkey, int has_cas, uint64_t cas_in,
                      int stale, int touch, int64_t exptime) {
    item_ref ref = lookup(s, key, nkey);
    if (ref == SLAB_NIL || (has_cas && ITEM(s, ref)->cas != cas_in)) {
        s->stats.delete_misses++;
        settle(s);
        return ref == SLAB_NIL ? STORE_NOT_FOUND : STORE_EXISTS;
    }
    item *it = ITEM(s, ref);
    if (stale) {
        /* md I: stale under a new CAS, and the next reader may win again */
        it->iflags = (uint8_t)((it->iflags | ITEM_STALE) & ~ITEM_TOKEN_SENT);
        it->cas = ++s->cas;
        if (touch)
            set_exptime(s, ref, store_absolute_expiry(s, exptime));
        else if (it->exptime)
            expiry_fix(&s->expiry, it);
        return STORE_DELETED;
    }
    s->stats.delete_hits++;
    unlink_item(s, ref, UNLINK_PLAIN);
    settle(s);
    return STORE_DELETED;
}

int store_meta_delta(store *s, const char *key, size_t nkey, int incr, uint64_t by,
                     uint64_t cas_in, int count_miss, int touch, int64_t exptime,
                     uint64_t *result, uint64_t *cas_out, uint32_t *exptime_out) {
    item_ref ref = assoc_find(&s->table, key, nkey, assoc_hash(&s->table, key, nkey));
    uint32_t before = ref != SLAB_NIL ? ITEM(s, ref)->exptime : 0;
    int rc = delta(s, key, nkey, incr, by, cas_in, count_miss, touch, exptime, result, &ref);
    if (rc == STORE_STORED) {
        *cas_out = ITEM(s, ref)->cas;
        *exptime_out = before;
    }
    settle(s);
    return rc;
}

int store_vivify(store *s, const char *key, size_t nkey, const char *value, size_t nbytes,
                 int64_t exptime, uint8_t state, uint64_t *cas_out) {
    item_ref ref = lookup(s, key, nkey);
    int rc = STORE_NOT_STORED;
    if (ref == SLAB_NIL) {
        rc = vivify(s, key, nkey, value, nbytes, store_absolute_expiry(s, exptime), state, &ref);
        if (rc == STORE_STORED)
            *cas_out = ITEM(s, ref)->cas;
    }
    settle(s);
    return rc;
}
