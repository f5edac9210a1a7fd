/*
 * expiry.h - the items that can expire, in a binary min-heap ordered by (exptime, cas).
 *
 *             slots[0]             the item to expire first
 *            /        \
 *      slots[1]      slots[2]      slots[i] <= slots[2i+1], slots[2i+2]
 *
 * Invariants:
 *   - An item is in the heap iff its exptime != 0, and slots[it->heap_idx] is its handle.
 *   - (exptime, cas) is a total order (CAS values are unique), so the order in which the
 *     reclaimer frees expired items is fully determined; the python backend uses the same key.
 */
#ifndef PYCACHE_EXPIRY_H
#define PYCACHE_EXPIRY_H

#include <stdint.h>

#include "item.h"

typedef struct expiry_heap {
    item_ref *slots;
    uint32_t len;
    uint32_t cap;
    const slabs *mem; /* resolves item handles */
} expiry_heap;

void expiry_init(expiry_heap *h, const slabs *mem);
void expiry_destroy(expiry_heap *h);
int expiry_reserve(expiry_heap *h); /* room for one more push; -1 if out of memory */
void expiry_push(expiry_heap *h, item_ref ref); /* after expiry_reserve */
void expiry_remove(expiry_heap *h, item *it);
/* The item `it` (in the heap) now lives at handle `ref`. */
static inline void expiry_moved(expiry_heap *h, const item *it, item_ref ref) {
    h->slots[it->heap_idx] = ref;
}
void expiry_fix(expiry_heap *h, item *it); /* after its exptime or cas changed */
static inline item_ref expiry_first(const expiry_heap *h) { return h->len ? h->slots[0] : SLAB_NIL; }

#endif
