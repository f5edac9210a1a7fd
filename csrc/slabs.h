/*
 * slabs.h - the item allocator: 32-bit handles into 64 KiB pages, one size class per page.
 *
 *   handle (uint32)
 *     0                           SLAB_NIL (page 0 is never used)
 *     0 | page:18 | unit:13       small chunk at pages[page].mem + unit * 8
 *     1 | index:31                large chunk: large[index], one malloc() each
 *
 *   page (64 KiB, class c, chunk size 8 * (c + 1))
 *     [chunk][chunk][chunk] ... [chunk][tail < one chunk]
 *      ^ free chunks are chained through their first 4 bytes (handle of the next, 0 = end);
 *        chunks past `bump` were never handed out
 *
 * Why: an item links to three others (hash chain, LRU prev and next) and buckets point at items;
 * 4-byte handles instead of 8-byte pointers, and 8-byte chunk granularity with no per-chunk
 * header, are what bring a small item under 160 bytes of RSS (malloc costs 8-24 bytes per item).
 *
 * Compaction: pages are per class, so chunks freed all over a class's pages pin memory that no
 * other size can use (a workload whose item sizes drift could hold many times -m). When a
 * class's free chunks pass 1.5 pages' worth (with 3+ pages), the class is marked; at its next
 * safe point the store moves the live chunks of one of its pages into the others and the page
 * is released (store.c, compact()). Each such move returns a whole page, so the work is at
 * most a page's chunks per page's worth of frees, and free chunks stay under about 1.5 pages
 * per class in use.
 *
 * Invariants:
 *   - A page with a free chunk (on its free list or past bump) is on its class's partial list,
 *     unless it is being evacuated; a full page is on no list; a page whose last chunk is freed
 *     is released to the system.
 *   - cls_pages[c] and cls_live[c] count the pages of class c and their live chunks.
 *   - live counts the chunks handed out and not freed; for a page, 0 < live <= capacity.
 *   - Chunks are 8-byte aligned, so an item's 64-bit CAS is aligned.
 *   - large_live[r] and large_bytes[r] count the large chunks whose size falls in reported
 *     class r (see below) and the bytes they take.
 *
 * Reported classes: `stats items` / `stats slabs` name memcached's default size classes
 * (factor 1.25 from 96 bytes, 8-byte aligned, the last one 512 KiB: ids 1..39), because the
 * tools that walk them (libmemcached's memcdump asks `stats cachedump` for ids 0..63) know no
 * more. Each 8-byte class here falls wholly inside one of them; large chunks are counted by
 * the reported class of their size. pycache_d/store/semantics.py computes the same table.
 */
#ifndef PYCACHE_SLABS_H
#define PYCACHE_SLABS_H

#include <stddef.h>
#include <stdint.h>

#define SLAB_NIL 0u
#define SLAB_PAGE_SIZE (64u * 1024u)
#define SLAB_UNIT 8u
#define SLAB_UNIT_BITS 13 /* 64 KiB / 8 */
#define SLAB_MAX_PAGES (1u << 18)
#define SLAB_MAX_SMALL 4096u /* larger chunks are malloc()ed one by one */
#define SLAB_CLASSES (SLAB_MAX_SMALL / SLAB_UNIT)
#define SLAB_LARGE_BIT 0x80000000u
#define SLAB_REPORT_CLASSES 39 /* memcached's default classes: 96 ... 524288 bytes */

typedef uint32_t slab_ref;

typedef struct slab_page {
    char *mem;          /* NULL when the page id is unused */
    uint32_t free_head; /* handle of the first free chunk, or SLAB_NIL */
    uint32_t next, prev; /* partial list of the class (page ids), or the free id list */
    uint16_t bump;      /* chunks below this index were handed out at least once */
    uint16_t live;
    uint16_t cls;
    uint8_t on_partial;
    uint8_t evacuating; /* its chunks are being moved out: allocate nothing from it */
} slab_page;

typedef struct slabs {
    slab_page *pages; /* indexed by page id; pages[0] is never used */
    uint32_t npages, pages_cap;
    uint32_t free_page_ids; /* chain of unused ids through slab_page.next */
    uint32_t partial[SLAB_CLASSES];
    void **large;
    uint32_t nlarge, large_cap;
    uint32_t free_large; /* chain of unused large indices, stored in large[] itself */
    uint64_t bytes_held; /* pages and large chunks currently allocated */
    uint32_t cls_pages[SLAB_CLASSES];
    uint32_t cls_live[SLAB_CLASSES];
    uint64_t compact_marks[SLAB_CLASSES / 64]; /* classes that may need compacting */
    uint32_t compact_pending;                  /* how many marks are set */
    slab_ref *scratch;                         /* live chunks of the page being evacuated */
    uint32_t large_live[SLAB_REPORT_CLASSES + 1];  /* by reported class (index 0 unused) */
    uint64_t large_bytes[SLAB_REPORT_CLASSES + 1];
} slabs;

int slabs_init(slabs *a);
void slabs_destroy(slabs *a);
slab_ref slabs_alloc(slabs *a, size_t size); /* SLAB_NIL when out of memory */
void slabs_free(slabs *a, slab_ref ref, size_t size); /* size as passed to slabs_alloc */

/* Compaction, driven by the store (which knows how to move an item): */
/* A marked class still past the threshold, unmarking the ones no longer past it; -1 if none. */
int slabs_compact_next(slabs *a);
/* Detach a page of `cls` to empty (nothing is allocated from it any more) and list its live
 * chunks in a->scratch; returns the page id and sets *n, or 0 (and unmarks cls) if none. Move
 * each chunk elsewhere (slabs_alloc, copy, slabs_free of the old one: the page is released
 * with its last chunk), then call slabs_evacuate_end. */
uint32_t slabs_evacuate_begin(slabs *a, uint32_t cls, uint32_t *n);
/* Give the page back to its class if it still holds chunks (a move failed). */
void slabs_evacuate_end(slabs *a, uint32_t id);
void slabs_compact_unmark(slabs *a, uint32_t cls);

/* Reported classes (see above): the chunk size of class 1..SLAB_REPORT_CLASSES, and the class
 * a chunk of `size` bytes is reported in (the last one for anything larger). */
uint32_t slabs_report_size(uint32_t cls);
uint32_t slabs_report_class(size_t size);

static inline void *slabs_ptr(const slabs *a, slab_ref ref) {
    if (ref & SLAB_LARGE_BIT)
        return a->large[ref & ~SLAB_LARGE_BIT];
    return a->pages[ref >> SLAB_UNIT_BITS].mem + (size_t)(ref & ((1u << SLAB_UNIT_BITS) - 1)) * SLAB_UNIT;
}

#endif
