/*
 * assoc.h - the item hash table: chained buckets of 32-bit handles, grown incrementally.
 *
 *   primary  [0][1][2] ... [2^hashpower - 1]      items chain through item->h_next
 *   old      [0][1] ... [2^(hashpower-1) - 1]     only while expanding
 *                 ^ migrate_next: old buckets below it are already moved to primary
 *
 * Invariants:
 *   - Every linked item is in exactly one chain. While expanding, an item whose old-table
 *     bucket (hv & oldmask) is >= migrate_next is in the old table, otherwise in primary.
 *   - Growth starts when count exceeds one item per bucket (a hit walks 1.25 items on
 *     average at worst; 1M items still fit 2^20 buckets, 4 bytes each); each insert then moves
 *     ASSOC_MIGRATE_PER_INSERT old buckets, and assoc_step() moves more, so no call ever
 *     rehashes the whole table at once (the old table is gone long before the next doubling).
 */
#ifndef PYCACHE_ASSOC_H
#define PYCACHE_ASSOC_H

#include <stdint.h>

#include "item.h"

#define ASSOC_INITIAL_POWER 10
#define ASSOC_MAX_POWER 31
#define ASSOC_MIGRATE_PER_INSERT 4

typedef struct assoc {
    item_ref *primary;
    item_ref *old; /* non-NULL while expanding */
    uint64_t migrate_next;
    uint64_t count;
    unsigned hashpower;
    const slabs *mem; /* resolves item handles */
    uint8_t seed[16];
} assoc;

int assoc_init(assoc *t, const slabs *mem, const uint8_t seed[16]);
void assoc_destroy(assoc *t); /* frees the tables, not the items */
uint64_t assoc_hash(const assoc *t, const char *key, size_t nkey);
item_ref assoc_find(const assoc *t, const char *key, size_t nkey, uint64_t hv);
void assoc_insert(assoc *t, item_ref ref, uint64_t hv);
void assoc_remove(assoc *t, item_ref ref, uint64_t hv);
/* Repoint the chain link to `old` at `ref` (the item moved; ref's h_next is already old's). */
void assoc_replace(assoc *t, item_ref old, item_ref ref, uint64_t hv);
/* Size an empty table for n items up front (a snapshot load knows its count), so filling it
 * needs no growth at all; a no-op when items are present or it is big enough. 0, or -1. */
int assoc_reserve(assoc *t, uint64_t n);
/* Move up to `buckets` old buckets into the new table; returns 1 while still expanding. */
int assoc_step(assoc *t, uint64_t buckets);
uint64_t assoc_bytes(const assoc *t);

#endif
