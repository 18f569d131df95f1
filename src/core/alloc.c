/* alloc.c — the single allocation hook of the library (fm_set_allocator),
 * with overflow-checked zeroing allocation. Every buffer starts on an
 * FM_ALLOC_ALIGN-byte boundary inside the block the hook returns, the byte
 * before it holding how far in: the SIMD kernels' 64-byte loads of a map's
 * channels then never straddle two cache lines, which a malloc's 16-byte
 * alignment makes every one of them do (on paper-cnn, a tenth of a step).
 * The default allocator offers its large blocks transparent huge pages. */
#define _DEFAULT_SOURCE /* madvise's MADV_HUGEPAGE, outside ISO C and POSIX */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

/* Blocks of at least this many bytes are offered transparent huge pages. */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)

/* Asks the kernel to back the whole huge pages inside a large block of the
 * default allocator with transparent huge pages: a training workspace's maps
 * span hundreds of megabytes, which 4 KiB pages cover with a TLB miss every
 * few kilobytes of a streaming pass. Advice only: where the kernel declines
 * (THP "never", or no madvise), nothing changes. A hook's blocks are its own
 * business and are left as they come. */
static void *huge_pages_advised(void *block, size_t size)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (block && size >= HUGE_PAGE_BYTES) {
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        const uintptr_t first = ((uintptr_t)block + page - 1) & ~(page - 1);
        const uintptr_t end = ((uintptr_t)block + size) & ~(page - 1);
        if (end > first)
            (void)madvise((void *)first, end - first, MADV_HUGEPAGE);
    }
#else
    (void)size;
#endif
    return block;
}

static void *default_malloc(size_t size, void *user)
{
    (void)user;
    return huge_pages_advised(malloc(size), size);
}

static void *default_realloc(void *p, size_t size, void *user)
{
    (void)user;
    return huge_pages_advised(realloc(p, size), size);
}
static void default_free(void *p, void *user) { (void)user; free(p); }

static fm_allocator current = {default_malloc, default_realloc, default_free, NULL};

void fm_set_allocator(const fm_allocator *allocator)
{
    if (allocator && allocator->malloc_fn && allocator->realloc_fn && allocator->free_fn)
        current = *allocator;
    else
        current = (fm_allocator){default_malloc, default_realloc, default_free, NULL};
}

/* The aligned buffer in a block at `block`: 1 to FM_ALLOC_ALIGN bytes in,
 * always past the byte that records it. */
static uint8_t *aligned_start(void *block)
{
    return (uint8_t *)(((uintptr_t)block + FM_ALLOC_ALIGN) & ~(uintptr_t)(FM_ALLOC_ALIGN - 1));
}

static void *block_of(void *buffer)
{
    uint8_t *p = buffer;
    return p - p[-1];
}

static void *buffer_in(void *block)
{
    uint8_t *p = aligned_start(block);
    p[-1] = (uint8_t)(p - (uint8_t *)block);
    return p;
}

void *fmi_alloc_raw(size_t bytes)
{
    void *block = bytes <= SIZE_MAX - FM_ALLOC_ALIGN ? current.malloc_fn(bytes + FM_ALLOC_ALIGN, current.user)
                                                     : NULL;
    if (!block) {
        fmi_error(FM_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    return buffer_in(block);
}

void *fmi_alloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) {
        fmi_error(FM_ENOMEM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    void *p = fmi_alloc_raw(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *fmi_realloc(void *ptr, size_t bytes)
{
    if (!ptr)
        return fmi_alloc_raw(bytes);
    const size_t was_at = ((uint8_t *)ptr)[-1];
    void *block = bytes <= SIZE_MAX - FM_ALLOC_ALIGN
                      ? current.realloc_fn(block_of(ptr), bytes + FM_ALLOC_ALIGN, current.user)
                      : NULL;
    if (!block) { /* ptr is as it was */
        fmi_error(FM_ENOMEM, "out of memory reallocating %zu bytes", bytes);
        return NULL;
    }
    /* a moved block may align differently: the contents move with it (the
     * block holds bytes past either start) */
    uint8_t *p = aligned_start(block);
    if ((size_t)(p - (uint8_t *)block) != was_at)
        memmove(p, (uint8_t *)block + was_at, bytes);
    return buffer_in(block);
}

void fmi_free(void *ptr)
{
    if (ptr)
        current.free_fn(block_of(ptr), current.user);
}

char *fmi_strdup(const char *text)
{
    size_t n = strlen(text) + 1;
    char *copy = fmi_alloc_raw(n);
    if (copy)
        memcpy(copy, text, n);
    return copy;
}
