/*
 * assoc.c - chained hash table with incremental expansion (see assoc.h for the picture).
 */
#include "assoc.h"

#include <stdlib.h>
#include <string.h>

#include "siphash.h"

#define NBUCKETS(power) ((uint64_t)1 << (power))
#define ITEM(t, ref) ((item *)slabs_ptr((t)->mem, (ref)))

int assoc_init(assoc *t, const slabs *mem, const uint8_t seed[16]) {
    memset(t, 0, sizeof(*t));
    memcpy(t->seed, seed, 16);
    t->mem = mem;
    t->hashpower = ASSOC_INITIAL_POWER;
    t->primary = calloc(NBUCKETS(t->hashpower), sizeof(item_ref));
    return t->primary ? 0 : -1;
}

void assoc_destroy(assoc *t) {
    free(t->primary);
    free(t->old);
    t->primary = t->old = NULL;
}

uint64_t assoc_hash(const assoc *t, const char *key, size_t nkey) {
    return siphash13(t->seed, key, nkey);
}

/* The chain head an item with hash hv belongs to right now. */
static item_ref *bucket_of(const assoc *t, uint64_t hv) {
    if (t->old) {
        uint64_t ob = hv & (NBUCKETS(t->hashpower - 1) - 1);
        if (ob >= t->migrate_next)
            return &t->old[ob];
    }
    return &t->primary[hv & (NBUCKETS(t->hashpower) - 1)];
}

item_ref assoc_find(const assoc *t, const char *key, size_t nkey, uint64_t hv) {
    for (item_ref ref = *bucket_of(t, hv); ref != SLAB_NIL;) {
        const item *it = ITEM(t, ref);
        /* PERF: the compare and, on a hit, the value copy read the next cache lines of the
         * item; fetch them now so the misses overlap instead of queueing. */
        __builtin_prefetch((const char *)it + 64);
        __builtin_prefetch((const char *)it + 128);
        if (it->nkey == nkey && memcmp(item_key(it), key, nkey) == 0)
            return ref;
        ref = it->h_next;
    }
    return SLAB_NIL;
}

static void start_expanding(assoc *t) {
    if (t->hashpower >= ASSOC_MAX_POWER)
        return;
    item_ref *bigger = calloc(NBUCKETS(t->hashpower + 1), sizeof(item_ref));
    if (!bigger)
        return; /* keep serving with longer chains; we retry on a later insert */
    t->old = t->primary;
    t->primary = bigger;
    t->hashpower++;
    t->migrate_next = 0;
}

int assoc_reserve(assoc *t, uint64_t n) {
    unsigned power = t->hashpower;
    while (power < ASSOC_MAX_POWER && n > NBUCKETS(power))
        power++;
    if (t->count || t->old || power == t->hashpower)
        return 0;
    item_ref *bigger = calloc(NBUCKETS(power), sizeof(item_ref));
    if (!bigger)
        return -1;
    free(t->primary);
    t->primary = bigger;
    t->hashpower = power;
    return 0;
}

int assoc_step(assoc *t, uint64_t buckets) {
    if (!t->old)
        return 0;
    uint64_t old_n = NBUCKETS(t->hashpower - 1);
    uint64_t mask = NBUCKETS(t->hashpower) - 1;
    while (buckets-- && t->migrate_next < old_n) {
        item_ref ref = t->old[t->migrate_next];
        while (ref != SLAB_NIL) {
            item *it = ITEM(t, ref);
            item_ref next = it->h_next;
            item_ref *head = &t->primary[assoc_hash(t, item_key(it), it->nkey) & mask];
            it->h_next = *head;
            *head = ref;
            ref = next;
        }
        t->old[t->migrate_next++] = SLAB_NIL;
    }
    if (t->migrate_next >= old_n) {
        free(t->old);
        t->old = NULL;
        t->migrate_next = 0;
        return 0;
    }
    return 1;
}

void assoc_insert(assoc *t, item_ref ref, uint64_t hv) {
    item_ref *head = bucket_of(t, hv);
    ITEM(t, ref)->h_next = *head;
    *head = ref;
    t->count++;
    if (t->old)
        assoc_step(t, ASSOC_MIGRATE_PER_INSERT);
    else if (t->count > NBUCKETS(t->hashpower))
        start_expanding(t);
}

void assoc_remove(assoc *t, item_ref ref, uint64_t hv) {
    item_ref *pp = bucket_of(t, hv);
    while (*pp != SLAB_NIL && *pp != ref)
        pp = &ITEM(t, *pp)->h_next;
    if (*pp != SLAB_NIL) {
        item *it = ITEM(t, ref);
        *pp = it->h_next;
        it->h_next = SLAB_NIL;
        t->count--;
    }
}

void assoc_replace(assoc *t, item_ref old, item_ref ref, uint64_t hv) {
    item_ref *pp = bucket_of(t, hv);
    while (*pp != SLAB_NIL && *pp != old)
        pp = &ITEM(t, *pp)->h_next;
    if (*pp != SLAB_NIL)
        *pp = ref;
}

uint64_t assoc_bytes(const assoc *t) {
    uint64_t n = NBUCKETS(t->hashpower);
    if (t->old)
        n += NBUCKETS(t->hashpower - 1);
    return n * sizeof(item_ref);
}
