/* fuzz_support.h — what fewmul's file-reader fuzz targets share (included by
 * tests/fuzz/fuzz_*.c, built by tests/fuzz/run.sh):
 *
 *  - a private directory per process on tmpfs (/dev/shm, else $TMPDIR, else
 *    /tmp), removed at exit (or, after a crash, by the next target that
 *    starts), where an input is written as a file for readers that take a
 *    path;
 *  - an allocation hook (fm_set_allocator) that counts the library's
 *    allocations, aborts on a single request far larger than the input could
 *    justify (a size declared in the file, trusted before it was checked
 *    against the bytes present), and can fail the k-th request;
 *  - fz_run_twice: runs a reader on an input, then again with one allocation
 *    failing (chosen from a hash of the input, so a crash file reproduces),
 *    which must give FM_ENOMEM and leak nothing; after each run no file
 *    descriptor may be left open;
 *  - fz_check_message: a failure's message must name the file it is about
 *    (docs/data.md, "Errors"), out-of-memory messages excepted.
 *
 * The hook's ceiling is FZ_ALLOC_BASE + FZ_ALLOC_FACTOR x the input's size:
 * fixed buffers (a 1 MiB first gzip chunk, room for 1024 SVHN images, a 256 KiB
 * read buffer) plus what deflate's 1032:1 ratio lets the bytes present expand
 * to. libFuzzer's -malloc_limit_mb stays on top of it. */
#ifndef FEWMUL_FUZZ_SUPPORT_H
#define FEWMUL_FUZZ_SUPPORT_H

#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fewmul.h"

#define FZ_ALLOC_BASE ((size_t)32 << 20)
#define FZ_ALLOC_FACTOR 1100u

static char fz_dir[512];

static void fz_cleanup(void)
{
    if (!fz_dir[0])
        return;
    DIR *d = opendir(fz_dir);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", fz_dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(fz_dir);
    fz_dir[0] = '\0';
}

/* Removes the directories of fuzz processes that are gone (a crash ends a
 * process without its atexit cleanup; -minimize_crash crashes many). */
static void fz_remove_stale(const char *base)
{
    DIR *d = opendir(base);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid;
        char rest[32];
        if (sscanf(e->d_name, "fewmul-fuzz-%ld-%31s", &pid, rest) != 2 || pid <= 0 ||
            pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char saved[sizeof fz_dir];
        memcpy(saved, fz_dir, sizeof fz_dir);
        snprintf(fz_dir, sizeof fz_dir, "%s/%s", base, e->d_name);
        fz_cleanup();
        memcpy(fz_dir, saved, sizeof fz_dir);
    }
    closedir(d);
}

/* A path in the process's directory, which is made on first use. */
static const char *fz_path(const char *name)
{
    static char buf[4][1024];
    static int next;
    if (!fz_dir[0]) {
        const char *env = getenv("TMPDIR");
        const char *bases[] = {"/dev/shm", env && *env ? env : "/tmp", "/tmp"};
        for (int i = 0; i < 3 && !fz_dir[0]; i++) {
            struct stat st;
            if (stat(bases[i], &st) != 0 || !S_ISDIR(st.st_mode) || access(bases[i], W_OK) != 0)
                continue;
            fz_remove_stale(bases[i]);
            snprintf(fz_dir, sizeof fz_dir, "%s/fewmul-fuzz-%ld-XXXXXX", bases[i], (long)getpid());
            if (!mkdtemp(fz_dir))
                fz_dir[0] = '\0';
        }
        if (!fz_dir[0]) {
            fprintf(stderr, "fuzz_support: no writable temporary directory\n");
            abort();
        }
        atexit(fz_cleanup);
    }
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", fz_dir, name);
    return p;
}

/* Writes n bytes as the whole file at path (a harness failure aborts). */
static void fz_write(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fuzz_support: %s: %s\n", path, strerror(errno));
        abort();
    }
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "fuzz_support: writing %s: %s\n", path, strerror(errno));
            abort();
        }
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

/* ---- the allocation hook -------------------------------------------------- */

static struct {
    long calls, fail_at, failed;
    size_t limit;
} fz_alloc;

static void fz_check_size(size_t n)
{
    if (n > fz_alloc.limit) {
        fprintf(stderr,
                "fuzz_support: the library asked for %zu bytes in one allocation, more than "
                "%zu for this input: a declared size trusted before it was checked\n",
                n, fz_alloc.limit);
        abort();
    }
}

static int fz_should_fail(void)
{
    if (++fz_alloc.calls == fz_alloc.fail_at) {
        fz_alloc.failed = 1;
        return 1;
    }
    return 0;
}

static void *fz_malloc(size_t n, void *user)
{
    (void)user;
    fz_check_size(n);
    return fz_should_fail() ? NULL : malloc(n);
}

static void *fz_realloc(void *p, size_t n, void *user)
{
    (void)user;
    fz_check_size(n);
    return fz_should_fail() ? NULL : realloc(p, n);
}

static void fz_free(void *p, void *user)
{
    (void)user;
    free(p);
}

static const fm_allocator fz_allocator = {fz_malloc, fz_realloc, fz_free, NULL};

/* Installs the hook for one input of `size` bytes; fail_at 0 fails nothing. */
static void fz_alloc_begin(size_t size, long fail_at)
{
    fz_alloc.calls = 0;
    fz_alloc.fail_at = fail_at;
    fz_alloc.failed = 0;
    fz_alloc.limit = FZ_ALLOC_BASE + (size_t)FZ_ALLOC_FACTOR * size;
    fm_set_allocator(&fz_allocator);
}

/* FNV-1a: picks the allocation to fail from the input itself. */
static uint64_t fz_hash(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    return h;
}

/* The lowest free file descriptor. A descriptor the reader leaves open is the
 * lowest free one when it opens it, so the lowest free one is then higher
 * after the run than before. (Compared around each run only: libFuzzer keeps
 * pipes to its symbolizer open from between runs.) */
static int fz_lowest_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "fuzz_support: /dev/null: %s (descriptors leaked?)\n", strerror(errno));
        abort();
    }
    close(fd);
    return fd;
}

static void fz_check_fds(int before)
{
    if (fz_lowest_fd() != before) {
        char link[64], target[512] = "?";
        snprintf(link, sizeof link, "/proc/self/fd/%d", before);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n > 0 ? n : 1] = '\0';
        fprintf(stderr, "fuzz_support: the reader left file descriptor %d open (%s)\n", before,
                target);
        abort();
    }
}

/* A failure (rc < 0) other than FM_ENOMEM must have a message that starts
 * with `prefix` (or, with anywhere set, holds it). */
static void fz_check_message(int rc, const char *prefix, int anywhere)
{
    if (rc >= 0 || rc == FM_ENOMEM)
        return;
    const char *msg = fm_last_error();
    if (anywhere ? !strstr(msg, prefix) : strncmp(msg, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "fuzz_support: error %d, message \"%s\" does not name %s\n", rc, msg,
                prefix);
        abort();
    }
}

/* Runs `read_once` (which returns the reader's code and checks its own
 * invariants) on the input, then once more with one of the allocations that
 * run made failing: the reader must then report FM_ENOMEM. */
static int fz_run_twice(const uint8_t *data, size_t size, int (*read_once)(void *ctx), void *ctx)
{
    fz_alloc_begin(size, 0);
    int fd = fz_lowest_fd();
    int rc = read_once(ctx);
    fz_check_fds(fd);
    long calls = fz_alloc.calls;
    if (calls > 0) {
        long k = 1 + (long)(fz_hash(data, size) % (uint64_t)calls);
        fz_alloc_begin(size, k);
        int rc2 = read_once(ctx);
        fz_check_fds(fd);
        if (!fz_alloc.failed) {
            fprintf(stderr, "fuzz_support: the second run made fewer than %ld allocations\n", k);
            abort();
        }
        if (rc2 != FM_ENOMEM) {
            fprintf(stderr,
                    "fuzz_support: allocation %ld of %ld failed, but the reader returned %d "
                    "(%s), not FM_ENOMEM\n",
                    k, calls, rc2, fm_last_error());
            abort();
        }
    }
    fm_set_allocator(NULL);
    return rc;
}

#endif
