/* test_alloc.c — the allocation hook's buffers (src/core/alloc.c): each starts
 * on an FM_ALLOC_ALIGN-byte boundary whatever alignment the hook's blocks
 * have, asks the hook for FM_ALLOC_ALIGN bytes more than the buffer, hands
 * the hook back its own block, keeps its contents through a realloc that
 * moves it to a block aligned differently, and survives a failed realloc or
 * an impossible size as it was. On Linux, the default allocator's large
 * blocks are advised to the kernel for transparent huge pages; a hook's are
 * left alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fewmul.h"
#include "internal.h"

/* A hook whose blocks start `shift` bytes into a malloc'ed one (1 to 63:
 * never a cache line's alignment, and not even a word's), and whose realloc
 * always moves to a block of the next shift. It keeps its live blocks to
 * find their malloc'ed starts and sizes. */
enum { LIVE = 64 };
static struct {
    unsigned char *block[LIVE], *base[LIVE];
    size_t size[LIVE];
    size_t last_request, largest_request;
    int shift, calls, frees, fail_realloc;
} hook;

static int slot_of(void *block)
{
    for (int i = 0; i < LIVE; i++)
        if (hook.block[i] && hook.block[i] == block)
            return i;
    fail_msg("the library handed back %p, which the hook never gave out", block);
    return -1;
}

static void *shifted_malloc(size_t size, void *user)
{
    (void)user;
    hook.calls++;
    hook.last_request = size;
    if (size > hook.largest_request)
        hook.largest_request = size;
    hook.shift = hook.shift % 63 + 1;
    for (int i = 0; i < LIVE; i++)
        if (!hook.block[i]) {
            hook.base[i] = malloc(size + 64);
            assert_non_null(hook.base[i]);
            hook.block[i] = hook.base[i] + hook.shift;
            hook.size[i] = size;
            return hook.block[i];
        }
    fail_msg("more than %d live blocks", LIVE);
    return NULL;
}

static void shifted_free(void *block, void *user)
{
    (void)user;
    if (!block)
        return;
    const int i = slot_of(block);
    hook.frees++;
    free(hook.base[i]);
    hook.block[i] = hook.base[i] = NULL;
}

static void *moving_realloc(void *block, size_t size, void *user)
{
    if (hook.fail_realloc)
        return NULL;
    const size_t old = hook.size[slot_of(block)];
    unsigned char *moved = shifted_malloc(size, user);
    memcpy(moved, block, old < size ? old : size);
    shifted_free(block, user);
    return moved;
}

static const fm_allocator shifted = {shifted_malloc, moving_realloc, shifted_free, NULL};

static int with_hook(void **state)
{
    (void)state;
    memset(&hook, 0, sizeof hook);
    fm_set_allocator(&shifted);
    return 0;
}

static int without_hook(void **state)
{
    (void)state;
    fm_set_allocator(NULL);
    for (int i = 0; i < LIVE; i++)
        if (hook.block[i])
            fail_msg("a block of %zu bytes was never freed", hook.size[i]);
    return 0;
}

static int aligned(const void *p) { return (uintptr_t)p % FM_ALLOC_ALIGN == 0; }

static void test_buffers_aligned_and_zeroed(void **state)
{
    (void)state;
    const size_t counts[] = {0, 1, 3, 63, 64, 65, 1000, 4096, 1 << 20};
    for (int round = 0; round < 70; round++) /* every shift the hook takes, and more */
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            unsigned char *p = fmi_alloc(counts[c], 1);
            assert_non_null(p);
            assert_true(aligned(p));
            assert_int_equal(hook.last_request, counts[c] + FM_ALLOC_ALIGN);
            for (size_t i = 0; i < counts[c]; i++)
                assert_int_equal(p[i], 0);
            memset(p, 0x5a, counts[c]); /* the whole buffer is inside the block (ASan) */
            fmi_free(p);
            char *raw = fmi_alloc_raw(counts[c]);
            assert_non_null(raw);
            assert_true(aligned(raw));
            fmi_free(raw);
        }
    assert_int_equal(hook.frees, hook.calls);
    fmi_free(NULL);
    assert_int_equal(hook.frees, hook.calls);
}

static void test_realloc_keeps_contents(void **state)
{
    (void)state;
    size_t n = 5;
    unsigned char *p = fmi_realloc(NULL, n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7 + 1);
    /* grow and shrink, each time into a block the hook aligned otherwise */
    const size_t sizes[] = {6, 100, 3000, 17, 64, 1, 70000, 9};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t kept = n < sizes[s] ? n : sizes[s];
        unsigned char *q = fmi_realloc(p, sizes[s]);
        assert_non_null(q);
        assert_true(aligned(q));
        assert_int_equal(hook.last_request, sizes[s] + FM_ALLOC_ALIGN);
        for (size_t i = 0; i < kept; i++)
            if (q[i] != (unsigned char)(i * 7 + 1))
                fail_msg("realloc %zu -> %zu bytes: byte %zu is %u", n, sizes[s], i, q[i]);
        for (size_t i = kept; i < sizes[s]; i++)
            q[i] = (unsigned char)(i * 7 + 1);
        p = q, n = sizes[s];
    }
    /* a failed realloc leaves the buffer as it was, and says so */
    hook.fail_realloc = 1;
    assert_null(fmi_realloc(p, 1 << 16));
    assert_int_equal(fm_last_error_code(), FM_ENOMEM);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(p[i], (unsigned char)(i * 7 + 1));
    hook.fail_realloc = 0;
    fmi_free(p);
}

static void test_impossible_sizes(void **state)
{
    (void)state;
    const int calls = hook.calls;
    /* sizes whose padded request would wrap: refused before the hook sees them */
    assert_null(fmi_alloc_raw(SIZE_MAX));
    assert_int_equal(fm_last_error_code(), FM_ENOMEM);
    assert_null(fmi_alloc_raw(SIZE_MAX - FM_ALLOC_ALIGN + 1));
    assert_null(fmi_alloc(SIZE_MAX / 2, 3));
    assert_int_equal(hook.calls, calls);
    unsigned char *p = fmi_alloc(10, 1);
    assert_non_null(p);
    p[9] = 42;
    assert_null(fmi_realloc(p, SIZE_MAX - 1));
    assert_int_equal(p[9], 42);
    assert_int_equal(hook.calls, calls + 1);
    fmi_free(p);
}

/* The flags /proc/self/smaps gives the mapping that holds `at` ("" when no
 * mapping does); 0 when the file cannot be read. */
static int mapping_flags(const void *at, char *flags, size_t size)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return 0;
    char line[512];
    int inside = 0;
    flags[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        unsigned long long lo, hi;
        char dash;
        if (sscanf(line, "%llx%c%llx", &lo, &dash, &hi) == 3 && dash == '-') {
            inside = (uintptr_t)at >= lo && (uintptr_t)at < hi;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(flags, size, "%s", line + 8);
            break;
        }
    }
    fclose(f);
    return 1;
}

static void test_large_blocks_advised(void **state)
{
    (void)state;
#if defined(__linux__)
    FILE *thp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!thp)
        skip(); /* a kernel without transparent huge pages */
    fclose(thp);
    char flags[512];
    const size_t big = (size_t)8 << 20;
    fm_set_allocator(NULL);
    unsigned char *p = fmi_alloc(big, 1);
    assert_non_null(p);
    const int readable = mapping_flags(p + big / 2, flags, sizeof flags);
    fmi_free(p);
    if (!readable)
        skip(); /* no /proc/self/smaps */
    if (!strstr(flags, " hg"))
        fail_msg("a %zu-byte buffer's mapping was not advised for huge pages: %s", big, flags);
    /* the same size through a hook: its blocks are the hook's business */
    assert_int_equal(with_hook(NULL), 0);
    p = fmi_alloc(big, 1);
    assert_non_null(p);
    assert_true(mapping_flags(p + big / 2, flags, sizeof flags));
    if (strstr(flags, " hg"))
        fail_msg("the library advised a hook's block for huge pages: %s", flags);
    fmi_free(p);
    assert_int_equal(without_hook(NULL), 0);
#else
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_buffers_aligned_and_zeroed, with_hook, without_hook),
        cmocka_unit_test_setup_teardown(test_realloc_keeps_contents, with_hook, without_hook),
        cmocka_unit_test_setup_teardown(test_impossible_sizes, with_hook, without_hook),
        cmocka_unit_test(test_large_blocks_advised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
