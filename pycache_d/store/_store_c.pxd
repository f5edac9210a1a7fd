# Declarations of the C store (csrc/store.h, csrc/item.h) for the Cython modules that drive it.
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t


cdef extern from "item.h":
    ctypedef uint32_t item_ref

    int ITEM_STATE_BITS
    int ITEM_TOKEN_SENT
    int ITEM_STALE
    int ITEM_KEY_BINARY

    ctypedef struct item:
        item_ref h_next
        uint64_t cas
        uint32_t exptime
        uint32_t atime
        uint32_t nbytes
        uint8_t nkey
        uint8_t iflags
    uint32_t item_flags(const item *it)
    const char *item_key(const item *it)
    char *item_value(item *it)
    size_t item_size(const item *it)


cdef extern from "slabs.h":
    int SLAB_CLASSES
    int SLAB_PAGE_SIZE
    int SLAB_UNIT
    int SLAB_REPORT_CLASSES
    ctypedef struct slabs:
        uint64_t bytes_held
        uint32_t *cls_pages
        uint32_t *cls_live
        uint32_t *large_live
        uint64_t *large_bytes
    void *slabs_ptr(const slabs *a, uint32_t ref)
    uint32_t slabs_report_size(uint32_t cls)
    uint32_t slabs_report_class(size_t size)


cdef extern from "assoc.h":
    ctypedef struct assoc:
        item_ref *primary
        item_ref *old
        uint64_t count
        unsigned hashpower
    uint64_t assoc_bytes(const assoc *t)
    int assoc_reserve(assoc *t, uint64_t n)
    int assoc_step(assoc *t, uint64_t buckets)


cdef extern from "store.h":
    int STORE_ITEM_OVERHEAD
    int STORE_MAX_KEY
    unsigned STORE_PIN_MIN

    cdef enum store_result:
        STORE_STORED
        STORE_NOT_STORED
        STORE_EXISTS
        STORE_NOT_FOUND
        STORE_DELETED
        STORE_TOUCHED
        STORE_TOO_LARGE
        STORE_NO_MEMORY
        STORE_NON_NUMERIC

    cdef enum store_mode:
        STORE_SET
        STORE_ADD
        STORE_REPLACE
        STORE_APPEND
        STORE_PREPEND
        STORE_CAS

    ctypedef struct store_stats:
        uint64_t total_items, evictions, expired_unfetched, evicted_unfetched, reclaimed
        uint64_t get_hits, get_misses, get_expired, get_flushed, cmd_get, cmd_set, cmd_touch, cmd_flush
        uint64_t delete_hits, delete_misses, incr_hits, incr_misses, decr_hits, decr_misses
        uint64_t cas_hits, cas_misses, cas_badval, touch_hits, touch_misses
        uint64_t cls_evicted[40]
        uint64_t cls_evicted_nonzero[40]
        uint64_t cls_evicted_unfetched[40]
        uint64_t cls_reclaimed[40]
        uint64_t cls_expired_unfetched[40]
        uint32_t cls_evicted_time[40]

    enum:
        STORE_EVLOG_SIZE

    ctypedef struct store_evicted:
        uint32_t nbytes, flags, exptime, atime, at
        uint8_t nkey, fetched
        char key[250]

    ctypedef struct store:
        slabs mem
        item_ref tail
        assoc table
        uint64_t pages_compacted
        int64_t wall_skew
        uint64_t bytes, max_bytes, curr_items, max_items
        uint32_t max_item_size
        uint32_t now
        uint64_t cas
        store_stats stats
        uint32_t npins
        uint64_t pinned_bytes, pin_limit, pin_refused
        store_evicted *evlog
        uint32_t evlog_n
        uint64_t evlog_dropped

    int store_init(store *s, uint64_t max_bytes, uint64_t max_items, uint32_t max_item_size,
                   const uint8_t *seed)
    void store_destroy(store *s)
    int store_evlog_enable(store *s, int on)
    void store_set_time(store *s, uint32_t now)
    void store_set_limits(store *s, uint64_t max_bytes, uint64_t max_items)
    item *store_get(store *s, const char *key, size_t nkey)
    item *store_gat(store *s, const char *key, size_t nkey, int64_t exptime)
    int store_touch(store *s, const char *key, size_t nkey, int64_t exptime)
    int store_update(store *s, int mode, const char *key, size_t nkey, const char *value,
                     size_t nbytes, uint32_t flags, int64_t exptime, uint64_t cas_in,
                     uint64_t *cas_out)
    int store_delete(store *s, const char *key, size_t nkey)
    int store_delta(store *s, const char *key, size_t nkey, int incr, uint64_t delta,
                    uint64_t *result)
    void store_flush_all(store *s, int64_t delay)
    uint64_t store_reclaim(store *s, uint64_t limit)
    int store_load(store *s, const char *key, size_t nkey, const char *value, size_t nbytes,
                   uint32_t flags, uint32_t exptime, uint64_t cas, uint32_t atime, uint8_t state)

    ctypedef struct item_state:
        uint32_t exptime, atime
        uint8_t state
        uint8_t created
    item *store_peek(store *s, const char *key, size_t nkey)
    item *store_meta_get(store *s, const char *key, size_t nkey, int touch, int64_t exptime,
                         int bump, int vivify_on_miss, int64_t vivify_exptime, item_state *before)
    int store_mark(store *s, const char *key, size_t nkey, uint8_t set, uint8_t clear, int touch,
                   int64_t exptime)
    int store_meta_update(store *s, int mode, const char *key, size_t nkey, const char *value,
                          size_t nbytes, uint32_t flags, int64_t exptime, uint64_t cas_in,
                          int binary, int stale, uint64_t *cas_out)
    int store_meta_delete(store *s, const char *key, size_t nkey, int has_cas, uint64_t cas_in,
                          int stale, int touch, int64_t exptime)
    int store_meta_delta(store *s, const char *key, size_t nkey, int incr, uint64_t by,
                         uint64_t cas_in, int count_miss, int touch, int64_t exptime,
                         uint64_t *result, uint64_t *cas_out, uint32_t *exptime_out)
    int store_vivify(store *s, const char *key, size_t nkey, const char *value, size_t nbytes,
                     int64_t exptime, uint8_t state, uint64_t *cas_out)
    int store_item_dead(const store *s, const item *it)
    item *store_oldest(store *s)
    item *store_newer(store *s, const item *it)
    void store_reset_stats(store *s)
    int store_pin(store *s, item *it)
    void store_unpin(store *s, item *it)
