/*
 * item.h - one cached item: a single slab chunk holding header, key and value.
 *
 *   0        4      8      12         16    24        28      32       36     37       38
 *   +--------+------+------+----------+-----+---------+-------+--------+------+--------+-----+-------+
 *   | h_next | prev | next | heap_idx | cas | exptime | flags | nbytes | nkey | iflags | key | value |
 *   +--------+------+------+----------+-----+---------+-------+--------+------+--------+-----+-------+
 *     assoc    LRU list      expiry                                                     data[]
 *
 * Links are 32-bit slab handles (slabs.h), not pointers: that is 12 bytes per item saved.
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

#include "slabs.h"

#define ITEM_FETCHED 1u /* read by a get/touch/incr since it was written */
#define EXPIRY_NONE UINT32_MAX

typedef slab_ref item_ref;

typedef struct item {
    item_ref h_next; /* next item in the same hash bucket */
    item_ref prev;   /* LRU neighbour towards the head (more recently used) */
    item_ref next;   /* LRU neighbour towards the tail (less recently used) */
    uint32_t heap_idx;
    uint64_t cas;
    uint32_t exptime; /* absolute time on the store clock, 0 = never */
    uint32_t flags;   /* client flags, opaque to us */
    uint32_t nbytes;  /* value length */
    uint8_t nkey;
    uint8_t iflags;
    char data[]; /* key, then value */
} item;

#define ITEM_HEADER offsetof(item, data)

static inline const char *item_key(const item *it) { return it->data; }
static inline char *item_value(item *it) { return it->data + it->nkey; }
static inline size_t item_size(const item *it) { return ITEM_HEADER + it->nkey + it->nbytes; }

#endif
