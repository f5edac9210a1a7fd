/*
 * expiry.c - intrusive binary min-heap of expiring items (see expiry.h).
 */
#include "expiry.h"

#include <stdlib.h>

#define ITEM(h, ref) ((item *)slabs_ptr((h)->mem, (ref)))

static inline int before(const item *a, const item *b) {
    return a->exptime < b->exptime || (a->exptime == b->exptime && a->cas < b->cas);
}

static inline void place(expiry_heap *h, uint32_t i, item_ref ref, item *it) {
    h->slots[i] = ref;
    it->heap_idx = i;
}

static void sift_up(expiry_heap *h, uint32_t i) {
    item_ref ref = h->slots[i];
    item *it = ITEM(h, ref);
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        item *p = ITEM(h, h->slots[parent]);
        if (!before(it, p))
            break;
        place(h, i, h->slots[parent], p);
        i = parent;
    }
    place(h, i, ref, it);
}

static void sift_down(expiry_heap *h, uint32_t i) {
    item_ref ref = h->slots[i];
    item *it = ITEM(h, ref);
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        item *c = ITEM(h, h->slots[child]);
        if (child + 1 < h->len) {
            item *c2 = ITEM(h, h->slots[child + 1]);
            if (before(c2, c)) {
                child++;
                c = c2;
            }
        }
        if (!before(c, it))
            break;
        place(h, i, h->slots[child], c);
        i = child;
    }
    place(h, i, ref, it);
}

void expiry_init(expiry_heap *h, const slabs *mem) {
    h->slots = NULL;
    h->len = h->cap = 0;
    h->mem = mem;
}

void expiry_destroy(expiry_heap *h) {
    free(h->slots);
    h->slots = NULL;
    h->len = h->cap = 0;
}

int expiry_reserve(expiry_heap *h) {
    if (h->len < h->cap)
        return 0;
    if (h->cap >= UINT32_MAX / 2)
        return -1;
    uint32_t cap = h->cap ? h->cap * 2 : 64;
    item_ref *slots = realloc(h->slots, (size_t)cap * sizeof(item_ref));
    if (!slots)
        return -1;
    h->slots = slots;
    h->cap = cap;
    return 0;
}

void expiry_push(expiry_heap *h, item_ref ref) {
    uint32_t i = h->len++;
    h->slots[i] = ref;
    ITEM(h, ref)->heap_idx = i;
    sift_up(h, i);
}

void expiry_remove(expiry_heap *h, item *it) {
    uint32_t i = it->heap_idx;
    it->heap_idx = EXPIRY_NONE;
    item_ref last = h->slots[--h->len];
    if (i == h->len)
        return;
    item *l = ITEM(h, last);
    place(h, i, last, l);
    expiry_fix(h, l);
}

void expiry_fix(expiry_heap *h, item *it) {
    uint32_t i = it->heap_idx;
    if (i > 0 && before(it, ITEM(h, h->slots[(i - 1) / 2])))
        sift_up(h, i);
    else
        sift_down(h, i);
}
