/*
 * assoc.c - chained hash table with incremental expansion (see assoc.h for the picture).
 */
#include "assoc.h"

#include <stdlib.h>
#include <string.h>

#include "siphash.h"

#define NBUCKETS(power) ((uint64_t)1 << (power))

int assoc_init(assoc *t, const uint8_t seed[16]) {
    memset(t, 0, sizeof(*t));
    memcpy(t->seed, seed, 16);
    t->hashpower = ASSOC_INITIAL_POWER;
    t->primary = calloc(NBUCKETS(t->hashpower), sizeof(item *));
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
static item **bucket_of(const assoc *t, uint64_t hv) {
    if (t->old) {
        uint64_t ob = hv & (NBUCKETS(t->hashpower - 1) - 1);
        if (ob >= t->migrate_next)
            return &t->old[ob];
    }
    return &t->primary[hv & (NBUCKETS(t->hashpower) - 1)];
}

item *assoc_find(const assoc *t, const char *key, size_t nkey, uint64_t hv) {
    for (item *it = *bucket_of(t, hv); it; it = it->h_next) {
        if (it->nkey == nkey && memcmp(item_key(it), key, nkey) == 0)
            return it;
    }
    return NULL;
}

static void start_expanding(assoc *t) {
    if (t->hashpower >= ASSOC_MAX_POWER)
        return;
    item **bigger = calloc(NBUCKETS(t->hashpower + 1), sizeof(item *));
    if (!bigger)
        return; /* keep serving with longer chains; we retry on a later insert */
    t->old = t->primary;
    t->primary = bigger;
    t->hashpower++;
    t->migrate_next = 0;
}

int assoc_step(assoc *t, uint64_t buckets) {
    if (!t->old)
        return 0;
    uint64_t old_n = NBUCKETS(t->hashpower - 1);
    uint64_t mask = NBUCKETS(t->hashpower) - 1;
    while (buckets-- && t->migrate_next < old_n) {
        item *it = t->old[t->migrate_next];
        while (it) {
            item *next = it->h_next;
            uint64_t hv = assoc_hash(t, item_key(it), it->nkey);
            item **head = &t->primary[hv & mask];
            it->h_next = *head;
            *head = it;
            it = next;
        }
        t->old[t->migrate_next++] = NULL;
    }
    if (t->migrate_next >= old_n) {
        free(t->old);
        t->old = NULL;
        t->migrate_next = 0;
        return 0;
    }
    return 1;
}

void assoc_insert(assoc *t, item *it, uint64_t hv) {
    item **head = bucket_of(t, hv);
    it->h_next = *head;
    *head = it;
    t->count++;
    if (t->old)
        assoc_step(t, ASSOC_MIGRATE_PER_INSERT);
    else if (t->count > NBUCKETS(t->hashpower) + NBUCKETS(t->hashpower) / 2)
        start_expanding(t);
}

void assoc_remove(assoc *t, item *it, uint64_t hv) {
    item **pp = bucket_of(t, hv);
    while (*pp && *pp != it)
        pp = &(*pp)->h_next;
    if (*pp) {
        *pp = it->h_next;
        it->h_next = NULL;
        t->count--;
    }
}

uint64_t assoc_bytes(const assoc *t) {
    uint64_t n = NBUCKETS(t->hashpower);
    if (t->old)
        n += NBUCKETS(t->hashpower - 1);
    return n * sizeof(item *);
}
