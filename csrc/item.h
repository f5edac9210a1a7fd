/*
 * item.h - one cached item: a single slab chunk holding header, key and value.
 *
 *   0        4      8      12         16    24        28      32       36     37       38
 *   +--------+------+------+----------+-----+---------+-------+--------+------+--------+---------+-----+-------+
 *   | h_next | prev | next | heap_idx | cas | exptime | atime | nbytes | nkey | iflags | [flags] | key | value |
 *   +--------+------+------+----------+-----+---------+-------+--------+------+--------+---------+-----+-------+
 *     assoc    LRU list      expiry                                                     data[]
 *
 * Links are 32-bit slab handles (slabs.h), not pointers: that is 12 bytes per item saved.
 * The client flags take 4 bytes at the start of data[] only when they are not 0 (ITEM_CFLAGS),
 * as memcached lays out its items: the 4 bytes that atime (memcached's it->time) needs come
 * from there, so an item without flags is as small as before atime was kept (the common
 * 14-byte key, 100-byte value item stays in a 152-byte chunk; 4 more bytes would take it to
 * the next 8-byte chunk size).
 *
 * Invariants:
 *   - A linked item is in exactly one hash chain (assoc.c) and in the LRU list (store.c).
 *   - heap_idx is the item's slot in the expiry heap when exptime != 0, EXPIRY_NONE otherwise.
 *   - nkey is 1..250; the key is not NUL-terminated; the value follows it directly.
 *   - ITEM_CFLAGS is set iff the client flags are not 0; it never changes while the item lives
 *     (no command rewrites flags in place), so the key never moves within its chunk.
 *   - atime <= the store clock; only the bits of ITEM_STATE_BITS, ITEM_CFLAGS and ITEM_PINNED
 *     are ever set. ITEM_PINNED is set iff the store's pin table has an entry for the item
 *     (store.h); only a large chunk (slabs.h: malloc()ed, never moved) is ever pinned.
 */
#ifndef PYCACHE_ITEM_H
#define PYCACHE_ITEM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "slabs.h"

/* The item state of pycache_d/store/semantics.py (memcached's it_flags of the same names). */
#define ITEM_FETCHED 0x01u    /* fetched since it was written */
#define ITEM_TOKEN_SENT 0x02u /* a win token (mg W) went out for it */
#define ITEM_STALE 0x04u      /* invalidated (md I, ms I) */
#define ITEM_KEY_BINARY 0x08u /* written by ms under a base64 key */
#define ITEM_STATE_BITS 0x0Fu
#define ITEM_CFLAGS 0x80u /* layout, not state: data[] starts with the 4 bytes of client flags */
#define ITEM_PINNED 0x40u /* a reply being sent points into its value (store.h, pins) */
#define EXPIRY_NONE UINT32_MAX

typedef slab_ref item_ref;

typedef struct item {
    item_ref h_next; /* next item in the same hash bucket */
    item_ref prev;   /* LRU neighbour towards the head (more recently used) */
    item_ref next;   /* LRU neighbour towards the tail (less recently used) */
    uint32_t heap_idx;
    uint64_t cas;
    uint32_t exptime; /* absolute time on the store clock, 0 = never */
    uint32_t atime;   /* last access on the store clock (see store.c, fetch()) */
    uint32_t nbytes;  /* value length */
    uint8_t nkey;
    uint8_t iflags;
    char data[]; /* [client flags if ITEM_CFLAGS], key, then value */
} item;

#define ITEM_HEADER offsetof(item, data)

static inline size_t item_flags_size(const item *it) { return (it->iflags & ITEM_CFLAGS) ? 4 : 0; }
static inline uint32_t item_flags(const item *it) {
    uint32_t flags = 0;
    if (it->iflags & ITEM_CFLAGS)
        memcpy(&flags, it->data, sizeof(flags));
    return flags;
}
static inline const char *item_key(const item *it) { return it->data + item_flags_size(it); }
static inline char *item_value(item *it) { return it->data + item_flags_size(it) + it->nkey; }
static inline size_t item_size(const item *it) {
    return ITEM_HEADER + item_flags_size(it) + it->nkey + it->nbytes;
}
/* The chunk size of an item with these key and value lengths and client flags. */
static inline size_t item_size_for(size_t nkey, size_t nbytes, uint32_t flags) {
    return ITEM_HEADER + (flags ? 4 : 0) + nkey + nbytes;
}

#endif
