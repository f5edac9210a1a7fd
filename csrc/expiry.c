/*
 * expiry.c - intrusive binary min-heap of expiring items (see expiry.h).
 */
#include "expiry.h"

#include <stdlib.h>

static inline int before(const item *a, const item *b) {
    return a->exptime < b->exptime || (a->exptime == b->exptime && a->cas < b->cas);
}

static inline void place(expiry_heap *h, uint32_t i, item *it) {
    h->slots[i] = it;
    it->heap_idx = i;
}

static void sift_up(expiry_heap *h, uint32_t i) {
    item *it = h->slots[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!before(it, h->slots[parent]))
            break;
        place(h, i, h->slots[parent]);
        i = parent;
    }
    place(h, i, it);
}

static void sift_down(expiry_heap *h, uint32_t i) {
    item *it = h->slots[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && before(h->slots[child + 1], h->slots[child]))
            child++;
        if (!before(h->slots[child], it))
            break;
        place(h, i, h->slots[child]);
        i = child;
    }
    place(h, i, it);
}

void expiry_init(expiry_heap *h) {
    h->slots = NULL;
    h->len = h->cap = 0;
}

void expiry_destroy(expiry_heap *h) {
    free(h->slots);
    expiry_init(h);
}

int expiry_reserve(expiry_heap *h) {
    if (h->len < h->cap)
        return 0;
    if (h->cap >= UINT32_MAX / 2)
        return -1;
    uint32_t cap = h->cap ? h->cap * 2 : 64;
    item **slots = realloc(h->slots, (size_t)cap * sizeof(item *));
    if (!slots)
        return -1;
    h->slots = slots;
    h->cap = cap;
    return 0;
}

void expiry_push(expiry_heap *h, item *it) {
    h->slots[h->len] = it;
    it->heap_idx = h->len++;
    sift_up(h, it->heap_idx);
}

void expiry_remove(expiry_heap *h, item *it) {
    uint32_t i = it->heap_idx;
    it->heap_idx = EXPIRY_NONE;
    item *last = h->slots[--h->len];
    if (i == h->len)
        return;
    place(h, i, last);
    expiry_fix(h, last);
}

void expiry_fix(expiry_heap *h, item *it) {
    uint32_t i = it->heap_idx;
    if (i > 0 && before(it, h->slots[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}
