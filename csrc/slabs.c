/*
 * slabs.c - size-class page allocator with 32-bit handles (see slabs.h for the picture).
 *
 * Under AddressSanitizer every free chunk and unused page tail is poisoned, so a read of a
 * freed item is reported even though its page is still allocated.
 */
#include "slabs.h"

#include <stdlib.h>
#include <string.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLABS_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SLABS_ASAN 1
#endif

#ifdef SLABS_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define UNIT_MASK ((1u << SLAB_UNIT_BITS) - 1)
#define SCRATCH_REFS (SLAB_PAGE_SIZE / SLAB_UNIT) /* most chunks a page can hold */

static int wasteful(const slabs *a, uint32_t cls);
static void mark(slabs *a, uint32_t cls);

static inline uint32_t chunk_size(uint32_t cls) { return (cls + 1) * SLAB_UNIT; }
static inline uint32_t capacity(uint32_t cls) { return SLAB_PAGE_SIZE / chunk_size(cls); }
static inline slab_ref make_ref(uint32_t page, uint32_t unit) {
    return (page << SLAB_UNIT_BITS) | unit;
}

int slabs_init(slabs *a) {
    memset(a, 0, sizeof(*a));
    a->pages_cap = 64;
    a->pages = calloc(a->pages_cap, sizeof(slab_page));
    if (!a->pages)
        return -1;
    a->npages = 1; /* id 0 is reserved so that no handle is 0 */
    return 0;
}

void slabs_destroy(slabs *a) {
    for (uint32_t i = 1; i < a->npages; i++) {
        if (a->pages[i].mem) {
            UNPOISON(a->pages[i].mem, SLAB_PAGE_SIZE);
            free(a->pages[i].mem);
        }
    }
    for (uint32_t i = 0; i < a->nlarge; i++) {
        uintptr_t v = (uintptr_t)a->large[i];
        if (!(v & 1)) /* free slots hold odd values (see large_alloc) */
            free(a->large[i]);
    }
    free(a->pages);
    free(a->large);
    free(a->scratch);
    memset(a, 0, sizeof(*a));
}

/* ---- partial lists ----------------------------------------------------------------------- */

static void partial_push(slabs *a, uint32_t id) {
    slab_page *p = &a->pages[id];
    uint32_t head = a->partial[p->cls];
    p->prev = 0;
    p->next = head;
    if (head)
        a->pages[head].prev = id;
    a->partial[p->cls] = id;
    p->on_partial = 1;
}

static void partial_remove(slabs *a, uint32_t id) {
    slab_page *p = &a->pages[id];
    if (p->prev)
        a->pages[p->prev].next = p->next;
    else
        a->partial[p->cls] = p->next;
    if (p->next)
        a->pages[p->next].prev = p->prev;
    p->next = p->prev = 0;
    p->on_partial = 0;
}

/* ---- pages ------------------------------------------------------------------------------- */

static uint32_t page_new(slabs *a, uint32_t cls) {
    uint32_t id = a->free_page_ids;
    if (id) {
        a->free_page_ids = a->pages[id].next;
    } else {
        if (a->npages >= SLAB_MAX_PAGES)
            return 0;
        if (a->npages == a->pages_cap) {
            uint32_t cap = a->pages_cap * 2;
            slab_page *grown = realloc(a->pages, (size_t)cap * sizeof(slab_page));
            if (!grown)
                return 0;
            memset(grown + a->pages_cap, 0, (size_t)(cap - a->pages_cap) * sizeof(slab_page));
            a->pages = grown;
            a->pages_cap = cap;
        }
        id = a->npages++;
    }
    slab_page *p = &a->pages[id];
    p->mem = malloc(SLAB_PAGE_SIZE);
    if (!p->mem) {
        p->next = a->free_page_ids;
        a->free_page_ids = id;
        return 0;
    }
    POISON(p->mem, SLAB_PAGE_SIZE);
    p->free_head = SLAB_NIL;
    p->bump = 0;
    p->live = 0;
    p->cls = (uint16_t)cls;
    p->evacuating = 0;
    a->bytes_held += SLAB_PAGE_SIZE;
    a->cls_pages[cls]++;
    partial_push(a, id);
    return id;
}

static void page_release(slabs *a, uint32_t id) {
    slab_page *p = &a->pages[id];
    if (p->on_partial)
        partial_remove(a, id);
    a->cls_pages[p->cls]--; /* its last chunk was just freed: nothing live to uncount */
    UNPOISON(p->mem, SLAB_PAGE_SIZE);
    free(p->mem);
    p->mem = NULL;
    a->bytes_held -= SLAB_PAGE_SIZE;
    p->next = a->free_page_ids;
    a->free_page_ids = id;
}

/* ---- large chunks ------------------------------------------------------------------------ */

static slab_ref large_alloc(slabs *a, size_t size) {
    void *mem = malloc(size);
    if (!mem)
        return SLAB_NIL;
    uint32_t idx;
    if (a->free_large) {
        /* Free slots hold (next free index + 1) * 2 + 1: odd, so never a real pointer. */
        idx = a->free_large - 1;
        a->free_large = (uint32_t)(((uintptr_t)a->large[idx] - 1) / 2);
    } else {
        if (a->nlarge >= SLAB_LARGE_BIT - 1) {
            free(mem);
            return SLAB_NIL;
        }
        if (a->nlarge == a->large_cap) {
            uint32_t cap = a->large_cap ? a->large_cap * 2 : 64;
            void **grown = realloc(a->large, (size_t)cap * sizeof(void *));
            if (!grown) {
                free(mem);
                return SLAB_NIL;
            }
            a->large = grown;
            a->large_cap = cap;
        }
        idx = a->nlarge++;
    }
    a->large[idx] = mem;
    a->bytes_held += size;
    uint32_t r = slabs_report_class(size);
    a->large_live[r]++;
    a->large_bytes[r] += size;
    return SLAB_LARGE_BIT | idx;
}

static void large_free(slabs *a, slab_ref ref, size_t size) {
    uint32_t idx = ref & ~SLAB_LARGE_BIT;
    uint32_t r = slabs_report_class(size);
    a->large_live[r]--;
    a->large_bytes[r] -= size;
    free(a->large[idx]);
    a->large[idx] = (void *)((uintptr_t)a->free_large * 2 + 1);
    a->free_large = idx + 1;
    a->bytes_held -= size;
}

/* ---- reported classes (slabs.h) ---------------------------------------------------------- */

/* memcached's slabs_init() with its defaults (-n 48 plus its 48-byte header, -f 1.25, 8-byte
 * alignment, slab_chunk_max 512 KiB), written out; semantics.py's SLAB_SIZES runs that loop and
 * a test holds the two equal. */
static const uint32_t report_sizes[SLAB_REPORT_CLASSES + 1] = {
    0,      96,     120,    152,    192,    240,    304,    384,    480,    600,
    752,    944,    1184,   1480,   1856,   2320,   2904,   3632,   4544,   5680,
    7104,   8880,   11104,  13880,  17352,  21696,  27120,  33904,  42384,  52984,
    66232,  82792,  103496, 129376, 161720, 202152, 252696, 315872, 394840, 524288,
};

uint32_t slabs_report_size(uint32_t cls) {
    return cls >= 1 && cls <= SLAB_REPORT_CLASSES ? report_sizes[cls] : 0;
}

uint32_t slabs_report_class(size_t size) {
    uint32_t lo = 1, hi = SLAB_REPORT_CLASSES;
    while (lo < hi) { /* the first class whose chunk holds `size` */
        uint32_t mid = (lo + hi) / 2;
        if (report_sizes[mid] >= size)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* ---- public ------------------------------------------------------------------------------ */

slab_ref slabs_alloc(slabs *a, size_t size) {
    if (size == 0)
        size = 1;
    if (size > SLAB_MAX_SMALL)
        return large_alloc(a, size);
    uint32_t cls = (uint32_t)((size + SLAB_UNIT - 1) / SLAB_UNIT) - 1;
    uint32_t id = a->partial[cls];
    if (!id && !(id = page_new(a, cls)))
        return SLAB_NIL;
    slab_page *p = &a->pages[id];
    slab_ref ref;
    if (p->free_head) {
        ref = p->free_head;
        char *mem = p->mem + (size_t)(ref & UNIT_MASK) * SLAB_UNIT;
        UNPOISON(mem, chunk_size(cls));
        memcpy(&p->free_head, mem, sizeof(uint32_t));
    } else {
        uint32_t unit = p->bump * (chunk_size(cls) / SLAB_UNIT);
        p->bump++;
        ref = make_ref(id, unit);
        UNPOISON(p->mem + (size_t)unit * SLAB_UNIT, chunk_size(cls));
    }
    p->live++;
    a->cls_live[cls]++;
    if (!p->free_head && p->bump == capacity(cls))
        partial_remove(a, id); /* full */
    return ref;
}

void slabs_free(slabs *a, slab_ref ref, size_t size) {
    if (ref & SLAB_LARGE_BIT) {
        large_free(a, ref, size);
        return;
    }
    uint32_t id = ref >> SLAB_UNIT_BITS;
    slab_page *p = &a->pages[id];
    char *mem = p->mem + (size_t)(ref & UNIT_MASK) * SLAB_UNIT;
    a->cls_live[p->cls]--;
    if (--p->live == 0) {
        page_release(a, id);
        return;
    }
    memcpy(mem, &p->free_head, sizeof(uint32_t));
    POISON(mem, chunk_size(p->cls));
    p->free_head = ref;
    if (p->evacuating)
        return;
    if (!p->on_partial)
        partial_push(a, id);
    if (wasteful(a, p->cls))
        mark(a, p->cls);
}

/* ---- compaction -------------------------------------------------------------------------- */

/* More than 1.5 pages' worth of free chunks in a class of 3+ pages. */
static int wasteful(const slabs *a, uint32_t cls) {
    uint64_t cap = capacity(cls);
    uint64_t free_chunks = (uint64_t)a->cls_pages[cls] * cap - a->cls_live[cls];
    return a->cls_pages[cls] >= 3 && 2 * free_chunks > 3 * cap;
}

static void mark(slabs *a, uint32_t cls) {
    uint64_t bit = (uint64_t)1 << (cls % 64);
    if (!(a->compact_marks[cls / 64] & bit)) {
        a->compact_marks[cls / 64] |= bit;
        a->compact_pending++;
    }
}

void slabs_compact_unmark(slabs *a, uint32_t cls) {
    uint64_t bit = (uint64_t)1 << (cls % 64);
    if (a->compact_marks[cls / 64] & bit) {
        a->compact_marks[cls / 64] &= ~bit;
        a->compact_pending--;
    }
}

int slabs_compact_next(slabs *a) {
    for (uint32_t w = 0; a->compact_pending && w < SLAB_CLASSES / 64; w++) {
        while (a->compact_marks[w]) {
            uint32_t cls = w * 64 + (uint32_t)__builtin_ctzll(a->compact_marks[w]);
            if (wasteful(a, cls))
                return (int)cls;
            slabs_compact_unmark(a, cls);
        }
    }
    return -1;
}

uint32_t slabs_evacuate_begin(slabs *a, uint32_t cls, uint32_t *n) {
    if (!a->scratch && !(a->scratch = malloc(SCRATCH_REFS * sizeof(slab_ref) + SCRATCH_REFS))) {
        slabs_compact_unmark(a, cls);
        return 0;
    }
    /* The emptiest of the first few partial pages: fewest chunks to move. */
    uint32_t best = 0;
    int looked = 0;
    for (uint32_t id = a->partial[cls]; id && looked < 8; id = a->pages[id].next, looked++)
        if (!best || a->pages[id].live < a->pages[best].live)
            best = id;
    if (!best) {
        slabs_compact_unmark(a, cls);
        return 0;
    }
    slab_page *p = &a->pages[best];
    partial_remove(a, best);
    p->evacuating = 1;
    /* Live chunks are those handed out (below bump) and not on the free list. */
    uint32_t units = chunk_size(cls) / SLAB_UNIT;
    uint8_t *flags = (uint8_t *)(a->scratch + SCRATCH_REFS); /* 1 = free, per chunk */
    memset(flags, 0, capacity(cls));
    for (slab_ref r = p->free_head; r != SLAB_NIL;) {
        char *mem = p->mem + (size_t)(r & UNIT_MASK) * SLAB_UNIT;
        flags[(r & UNIT_MASK) / units] = 1;
        UNPOISON(mem, sizeof(uint32_t));
        slab_ref next;
        memcpy(&next, mem, sizeof(uint32_t));
        POISON(mem, sizeof(uint32_t));
        r = next;
    }
    uint32_t count = 0;
    for (uint32_t i = 0; i < p->bump; i++)
        if (!flags[i])
            a->scratch[count++] = make_ref(best, i * units);
    *n = count;
    return best;
}

void slabs_evacuate_end(slabs *a, uint32_t id) {
    slab_page *p = &a->pages[id];
    if (!p->mem || !p->evacuating)
        return; /* released with its last chunk (and maybe reused since) */
    p->evacuating = 0;
    partial_push(a, id);
}
