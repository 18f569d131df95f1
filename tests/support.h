/* support.h — what the file-reading tests share: an allocation hook that
 * tracks live blocks and can fail the n-th request, a temporary directory per
 * test program (cmocka group fixtures), per-test leak checks, paths in the
 * directory, whole-file reads and writes, a full disk (a file size limit),
 * and a synthetic image set. Include after cmocka.h with SUPPORT_NAME
 * defined ("idx"). */
#ifndef FEWMUL_TEST_SUPPORT_H
#define FEWMUL_TEST_SUPPORT_H

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fewmul.h"

#ifndef SUPPORT_NAME
#error "define SUPPORT_NAME before including support.h"
#endif

static char tmpdir[256];

/* Every allocation goes through this hook, so each test can check that the
 * library (zlib's buffers included) freed all it took, how big its largest
 * single request was, and fail a chosen request. */
static struct {
    long live;
    size_t largest;
    long calls, fail_at; /* fail_at > 0: the fail_at-th request returns NULL */
} track;

static int t_should_fail(void) { return ++track.calls == track.fail_at; }

static void *t_malloc(size_t n, void *user)
{
    (void)user;
    if (t_should_fail())
        return NULL;
    track.live++;
    if (n > track.largest)
        track.largest = n;
    return malloc(n);
}

static void *t_realloc(void *p, size_t n, void *user)
{
    (void)user;
    if (t_should_fail())
        return NULL;
    if (!p)
        track.live++;
    if (n > track.largest)
        track.largest = n;
    return realloc(p, n);
}

static void t_free(void *p, void *user)
{
    (void)user;
    if (p)
        track.live--;
    free(p);
}

static const fm_allocator tracking = {t_malloc, t_realloc, t_free, NULL};

/* ---- fixtures ------------------------------------------------------------ */

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int group_setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/fewmul-test-" SUPPORT_NAME "-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    fm_set_allocator(&tracking);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    fm_set_allocator(NULL);
    rm_tree(tmpdir);
    return 0;
}

static int test_setup(void **state)
{
    (void)state;
    memset(&track, 0, sizeof track);
    return 0;
}

static int test_teardown(void **state)
{
    (void)state;
    assert_int_equal(track.live, 0); /* nothing leaked */
    return 0;
}

/* A path in tmpdir; a ring of buffers keeps a test's paths valid together. */
static inline const char *tpath(const char *name)
{
    static char buf[64][512];
    static int next;
    char *p = buf[next++ % 64];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

/* ---- synthetic data ---------------------------------------------------------- */

/* count 8x8 images in 4 classes, the class being the bright quadrant: a set a
 * tiny network learns in a few epochs (the training tests). Free the two
 * arrays with free(). */
static inline void make_quadrant_set(fm_images *set, int count, uint32_t seed)
{
    set->count = count;
    set->height = set->width = 8;
    set->channels = 1;
    set->pixels = malloc((size_t)count * 64);
    set->labels = malloc((size_t)count);
    uint32_t x = seed;
    for (int i = 0; i < count; i++) {
        int label = i % 4;
        set->labels[i] = (uint8_t)label;
        for (int p = 0; p < 64; p++) {
            x = x * 1664525u + 1013904223u;
            int quadrant = (p / 8 >= 4) * 2 + (p % 8 >= 4);
            set->pixels[(size_t)i * 64 + p] = (uint8_t)((x >> 24) / 2 + (quadrant == label ? 100 : 0));
        }
    }
}

/* ---- files ----------------------------------------------------------------- */

/* The whole of a file, malloc'ed (one byte more, for a terminator). */
static inline uint8_t *read_whole_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

/* A full disk: limit_file_size(N) makes a write past N bytes fail with EFBIG
 * (SIGXFSZ ignored) as ENOSPC would; limit_file_size(0) restores the limit
 * and the signal. Restore before any assert can fail. */
static inline void limit_file_size(rlim_t bytes)
{
    static struct rlimit was;
    static void (*was_handler)(int);
    if (bytes) {
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &was), 0);
        struct rlimit small = {bytes, was.rlim_max};
        was_handler = signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    } else {
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &was), 0);
        signal(SIGXFSZ, was_handler);
    }
}

/* A failed write leaves what was there as it was (the exports' tests):
 * attempt(user) runs under a file size limit doubling from 64 bytes until it
 * succeeds, then, after restore(user) has written the earlier files again,
 * once with each allocation failing in turn until it succeeds. Every failure
 * must return FM_EIO (the disk) or FM_ENOMEM and leave snapshot(user), the
 * bytes of the files, as they were. Gives the number of each kind of failure. */
typedef struct keep_check {
    int (*attempt)(void *user);
    void (*restore)(void *user);
    uint8_t *(*snapshot)(void *user, size_t *n);
    void *user;
} keep_check;

static inline void expect_kept(const keep_check *k, const uint8_t *before, size_t n)
{
    size_t m;
    uint8_t *after = k->snapshot(k->user, &m);
    assert_int_equal(m, n);
    assert_memory_equal(after, before, n);
    free(after);
}

static inline void failures_keep(const keep_check *k, int *disk_failures, int *alloc_failures)
{
    k->restore(k->user);
    size_t n;
    uint8_t *before = k->snapshot(k->user, &n);
    *disk_failures = *alloc_failures = 0;
    for (rlim_t limit = 64;; limit *= 2) { /* until the files fit */
        limit_file_size(limit);
        int rc = k->attempt(k->user);
        limit_file_size(0);
        if (rc == FM_OK)
            break;
        assert_int_equal(rc, FM_EIO);
        expect_kept(k, before, n);
        (*disk_failures)++;
    }
    k->restore(k->user);
    for (long at = 1;; at++) {
        track.calls = 0;
        track.fail_at = at;
        int rc = k->attempt(k->user);
        track.fail_at = 0;
        if (rc == FM_OK)
            break;
        assert_int_equal(rc, FM_ENOMEM);
        expect_kept(k, before, n);
        (*alloc_failures)++;
    }
    free(before);
}

static inline void write_whole_file(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* tmpdir/name of the n bytes at data, then a hole up to `size` bytes: a file
 * that claims gigabytes of zeros and takes no disk (the sparse-file attack on
 * a reader). load(path) must refuse it with `code` and a message holding
 * `says`, without a single allocation of 1 MiB: it is refused from its head,
 * never read whole. */
static inline void expect_sparse_refused(int (*load)(const char *path), const char *name,
                                         const void *data, size_t n, off_t size, int code,
                                         const char *says)
{
    const char *path = tpath(name);
    write_whole_file(path, data, n);
    assert_int_equal(truncate(path, size), 0);
    track.largest = 0;
    int rc = load(path);
    if (rc != code || !strstr(fm_last_error(), says))
        fail_msg("%s: %s (%s), expected %s with \"%s\"", name, fm_strerror(rc), fm_last_error(),
                 fm_strerror(code), says);
    assert_true(track.largest < 1u << 20);
    unlink(path);
}

#endif
