/*
 * assoc.h - the item hash table: chained buckets, grown by incremental rehashing.
 *
 *   primary  [0][1][2] ... [2^hashpower - 1]      items chain through item->h_next
 *   old      [0][1] ... [2^(hashpower-1) - 1]     only while expanding
 *                 ^ migrate_next: old buckets below it are already moved to primary
 *
 * Invariants:
 *   - Every linked item is in exactly one chain. While expanding, an item whose old-table
 *     bucket (hv & oldmask) is >= migrate_next is in the old table, otherwise in primary.
 *   - Growth starts when count exceeds 1.5 buckets per slot; each insert then moves
 *     ASSOC_MIGRATE_PER_INSERT old buckets, and assoc_step() moves more, so no call ever
 *     rehashes the whole table at once.
 */
#ifndef PYCACHE_ASSOC_H
#define PYCACHE_ASSOC_H

#include <stdint.h>

#include "item.h"

#define ASSOC_INITIAL_POWER 10
#define ASSOC_MAX_POWER 32
#define ASSOC_MIGRATE_PER_INSERT 4

typedef struct assoc {
    item **primary;
    item **old; /* non-NULL while expanding */
    uint64_t migrate_next;
    uint64_t count;
    unsigned hashpower;
    uint8_t seed[16];
} assoc;

int assoc_init(assoc *t, const uint8_t seed[16]);
void assoc_destroy(assoc *t); /* frees the tables, not the items */
uint64_t assoc_hash(const assoc *t, const char *key, size_t nkey);
item *assoc_find(const assoc *t, const char *key, size_t nkey, uint64_t hv);
void assoc_insert(assoc *t, item *it, uint64_t hv);
void assoc_remove(assoc *t, item *it, uint64_t hv);
/* Move up to `buckets` old buckets into the new table; returns 1 while still expanding. */
int assoc_step(assoc *t, uint64_t buckets);
uint64_t assoc_bytes(const assoc *t);

#endif
