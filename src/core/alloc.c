/* alloc.c — the single allocation hook of the library (fm_set_allocator),
 * with overflow-checked zeroing allocation. */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *default_malloc(size_t size, void *user) { (void)user; return malloc(size); }
static void *default_realloc(void *p, size_t size, void *user) { (void)user; return realloc(p, size); }
static void default_free(void *p, void *user) { (void)user; free(p); }

static fm_allocator current = {default_malloc, default_realloc, default_free, NULL};

void fm_set_allocator(const fm_allocator *allocator)
{
    if (allocator && allocator->malloc_fn && allocator->realloc_fn && allocator->free_fn)
        current = *allocator;
    else
        current = (fm_allocator){default_malloc, default_realloc, default_free, NULL};
}

void *fmi_alloc_raw(size_t bytes)
{
    void *p = current.malloc_fn(bytes ? bytes : 1, current.user);
    if (!p)
        fmi_error(FM_ENOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
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
    void *p = current.realloc_fn(ptr, bytes ? bytes : 1, current.user);
    if (!p)
        fmi_error(FM_ENOMEM, "out of memory reallocating %zu bytes", bytes);
    return p;
}

void fmi_free(void *ptr)
{
    if (ptr)
        current.free_fn(ptr, current.user);
}

char *fmi_strdup(const char *text)
{
    size_t n = strlen(text) + 1;
    char *copy = fmi_alloc_raw(n);
    if (copy)
        memcpy(copy, text, n);
    return copy;
}
