/*
 * item.h - one cached item: a single allocation holding header, key and value.
 *
 *   +---------+------+------+-----+---------+-------+--------+----------+------+--------+----------------+
 *   | h_next  | prev | next | cas | exptime | flags | nbytes | heap_idx | nkey | iflags | key | value    |
 *   +---------+------+------+-----+---------+-------+--------+----------+------+--------+----------------+
 *     assoc     LRU list      expiry heap fields                                 data[]
 *
 * Invariants:
 *   - A linked item is in exactly one hash chain (assoc.c) and in the LRU list (store.c).
 *   - heap_idx is the item's slot in the expiry heap when exptime != 0, EXPIRY_NONE otherwise.
 *   - nkey is 1..250; the key is not NUL-terminated; the value follows it directly.
 */
#ifndef PYCACHE_ITEM_H
#define PYCACHE_ITEM_H

#include <stddef.h>
#include <stdint.h>

#define ITEM_FETCHED 1u /* read by a get/touch/incr since it was written */
#define EXPIRY_NONE UINT32_MAX

typedef struct item {
    struct item *h_next; /* next item in the same hash bucket */
    struct item *prev;   /* LRU neighbour towards the head (more recently used) */
    struct item *next;   /* LRU neighbour towards the tail (less recently used) */
    uint64_t cas;
    uint32_t exptime; /* absolute time on the store clock, 0 = never */
    uint32_t flags;   /* client flags, opaque to us */
    uint32_t nbytes;  /* value length */
    uint32_t heap_idx;
    uint8_t nkey;
    uint8_t iflags;
    char data[]; /* key, then value */
} item;

static inline const char *item_key(const item *it) { return it->data; }
static inline char *item_value(item *it) { return it->data + it->nkey; }

#endif
