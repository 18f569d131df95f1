/* test_write_atomic.c — tests of fm_write_file_atomic, fm_write_file_atomic_open
 * and fm_check_output (include/fewmul.h; src/core/bytes.c), the one
 * write-whole-or-not-at-all that the library's files and the command's
 * outputs share: new content appears whole, an existing file survives every
 * failure (of the fill function, of the stream, of the create and of the
 * rename), each reported with its step, its errno and a message naming the
 * file, and no temporary file is left behind. In a folder others may write
 * to: the temporary file's name cannot be planted (a symbolic or hard link
 * at the old PATH.tmp is never written through), and nothing but a regular
 * file is ever replaced (a FIFO, a folder, a link to either). */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fewmul.h"

#define SUPPORT_NAME "write-atomic"
#include "support.h"

static const char old_text[] = "the file as it was\n";

/* What a fill function writes: `pieces` times the text, then fails with
 * fail_errno when that is not 0 (after writing, as a real failure would). */
typedef struct fill_plan {
    const char *text;
    int pieces;
    int fail_errno;
    int calls;
} fill_plan;

static int fill_pieces(FILE *f, void *user)
{
    fill_plan *plan = user;
    plan->calls++;
    for (int i = 0; i < plan->pieces; i++)
        fputs(plan->text, f);
    return plan->fail_errno;
}

static const char *tmp_of(const char *path)
{
    static char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    return tmp;
}

/* The names in path's folder that start with path's base name + ".tmp.":
 * the temporary files of a write to path (how many; the first in *first). */
static int tmp_files(const char *path, char *first, size_t cap)
{
    const char *base = strrchr(path, '/') + 1;
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && found++ == 0 && first)
            snprintf(first, cap, "%s", e->d_name);
    closedir(d);
    return found;
}

static void assert_no_tmp(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(tmp_of(path), &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(tmp_files(path, NULL, 0), 0);
}

static void assert_file_text(const char *path, const char *want)
{
    size_t n;
    uint8_t *have = read_whole_file(path, &n);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(have, want, n);
    free(have);
}

static void test_new_content_appears_whole(void **state)
{
    (void)state;
    const char *path = tpath("whole.txt");
    write_whole_file(path, old_text, strlen(old_text));
    /* more than any stdio buffer: the stream writes in several pieces */
    fill_plan plan = {"0123456789abcdef", 20000, 0, 0};
    fm_write_failure failed = {FM_WRITE_STEP_RENAME, -1};
    assert_int_equal(fm_write_file_atomic(path, fill_pieces, &plan, &failed), FM_OK);
    assert_int_equal(plan.calls, 1);
    assert_int_equal(failed.step, FM_WRITE_STEP_NONE);
    assert_int_equal(failed.sys_errno, 0);
    size_t n;
    uint8_t *have = read_whole_file(path, &n);
    assert_int_equal(n, 16u * 20000u);
    for (size_t i = 0; i < n; i += 16)
        assert_memory_equal(have + i, "0123456789abcdef", 16);
    free(have);
    assert_no_tmp(path);

    /* a file that did not exist, and no failure record asked for */
    const char *fresh = tpath("fresh.txt");
    fill_plan once = {"new\n", 1, 0, 0};
    assert_int_equal(fm_write_file_atomic(fresh, fill_pieces, &once, NULL), FM_OK);
    assert_file_text(fresh, "new\n");
    assert_no_tmp(fresh);
}

static void test_failing_fill_keeps_the_file(void **state)
{
    (void)state;
    const char *path = tpath("keep.txt");
    write_whole_file(path, old_text, strlen(old_text));
    fill_plan plan = {"half of the new content\n", 3, ENOSPC, 0};
    fm_write_failure failed;
    assert_int_equal(fm_write_file_atomic(path, fill_pieces, &plan, &failed), FM_EIO);
    assert_int_equal(failed.step, FM_WRITE_STEP_WRITE);
    assert_int_equal(failed.sys_errno, ENOSPC);
    char want[700];
    snprintf(want, sizeof want, "%s: write failed: %s", path, strerror(ENOSPC));
    assert_string_equal(fm_last_error(), want);
    assert_int_equal(fm_last_error_code(), FM_EIO);
    assert_file_text(path, old_text);
    assert_no_tmp(path);

    /* where there was no file, there is none after */
    const char *none = tpath("none.txt");
    assert_int_equal(fm_write_file_atomic(none, fill_pieces, &plan, NULL), FM_EIO);
    assert_int_equal(access(none, F_OK), -1);
    assert_no_tmp(none);
}

static void test_failing_stream_keeps_the_file(void **state)
{
    (void)state;
    const char *path = tpath("full.txt");
    write_whole_file(path, old_text, strlen(old_text));
    /* a file size limit makes the writes fail part-way (EFBIG), as a full
     * disk would: the fill does not see it, the flush does */
    fill_plan plan = {"0123456789abcdef", 2000, 0, 0};
    fm_write_failure failed;
    limit_file_size(4096);
    int rc = fm_write_file_atomic(path, fill_pieces, &plan, &failed);
    limit_file_size(0);
    assert_int_equal(rc, FM_EIO);
    assert_int_equal(failed.step, FM_WRITE_STEP_WRITE);
    assert_int_equal(failed.sys_errno, EFBIG);
    char want[700];
    snprintf(want, sizeof want, "%s: write failed: %s", path, strerror(EFBIG));
    assert_string_equal(fm_last_error(), want);
    assert_file_text(path, old_text);
    assert_no_tmp(path);
}

static void test_failing_create_keeps_the_file(void **state)
{
    (void)state;
    /* a base name of 250 characters: the file may have it, but not the
     * temporary file, 15 characters longer (NAME_MAX 255) */
    char name[251];
    memset(name, 'n', 250);
    name[250] = '\0';
    const char *path = tpath(name);
    write_whole_file(path, old_text, strlen(old_text));
    fill_plan plan = {"new\n", 1, 0, 0};
    fm_write_failure failed;
    assert_int_equal(fm_write_file_atomic(path, fill_pieces, &plan, &failed), FM_EIO);
    assert_int_equal(plan.calls, 0);
    assert_int_equal(failed.step, FM_WRITE_STEP_CREATE);
    assert_int_equal(failed.sys_errno, ENAMETOOLONG);
    char want[700];
    snprintf(want, sizeof want, "%s: cannot create a temporary file beside it: %s", path,
             strerror(ENAMETOOLONG));
    assert_string_equal(fm_last_error(), want);
    assert_file_text(path, old_text);
    assert_int_equal(unlink(path), 0);

    /* a missing folder */
    assert_int_equal(fm_write_file_atomic(tpath("no-dir/x.txt"), fill_pieces, &plan, &failed),
                     FM_EIO);
    assert_int_equal(failed.step, FM_WRITE_STEP_CREATE);
    assert_int_equal(failed.sys_errno, ENOENT);
}

/* A fill that makes a folder with a file in it where the file goes: the
 * rename over it fails once the content is written. */
static int fill_then_block(FILE *f, void *user)
{
    const char *path = user;
    fputs("new\n", f);
    char child[600];
    snprintf(child, sizeof child, "%s/child", path);
    assert_int_equal(mkdir(path, 0700), 0);
    write_whole_file(child, "x", 1);
    return 0;
}

static void test_failing_rename_removes_the_tmp(void **state)
{
    (void)state;
    const char *path = tpath("busy");
    fm_write_failure failed;
    assert_int_equal(fm_write_file_atomic(path, fill_then_block, (void *)path, &failed), FM_EIO);
    assert_int_equal(failed.step, FM_WRITE_STEP_RENAME);
    assert_true(failed.sys_errno != 0);
    char want[700];
    snprintf(want, sizeof want, "%s: cannot rename into place: %s", path,
             strerror(failed.sys_errno));
    assert_string_equal(fm_last_error(), want);
    assert_no_tmp(path);
    char child[600];
    snprintf(child, sizeof child, "%s/child", path);
    assert_file_text(child, "x");
}

static void test_out_of_memory_and_bad_arguments(void **state)
{
    (void)state;
    const char *path = tpath("oom.txt");
    write_whole_file(path, old_text, strlen(old_text));
    fill_plan plan = {"new\n", 1, 0, 0};
    fm_write_failure failed = {FM_WRITE_STEP_WRITE, 5};
    track.fail_at = 1; /* the name PATH.tmp */
    assert_int_equal(fm_write_file_atomic(path, fill_pieces, &plan, &failed), FM_ENOMEM);
    track.fail_at = 0;
    assert_int_equal(plan.calls, 0);
    assert_int_equal(failed.step, FM_WRITE_STEP_NONE);
    assert_int_equal(failed.sys_errno, 0);
    assert_file_text(path, old_text);
    assert_no_tmp(path);

    assert_int_equal(fm_write_file_atomic(path, NULL, &plan, &failed), FM_EINVAL);
    assert_int_equal(fm_write_file_atomic(NULL, fill_pieces, &plan, &failed), FM_EINVAL);
    assert_int_equal(failed.step, FM_WRITE_STEP_NONE);
    assert_file_text(path, old_text);
}

/* ---- in a folder others may write to ---------------------------------------- */

static const char victim_text[] = "another file, which must not change\n";

/* Writes "new" to path with something planted at PATH.tmp that leads to
 * other: path gets the content, other keeps its own. */
static void write_past_plant(const char *path, const char *other)
{
    fill_plan plan = {"new\n", 1, 0, 0};
    assert_int_equal(fm_write_file_atomic(path, fill_pieces, &plan, NULL), FM_OK);
    assert_file_text(other, victim_text);
    assert_file_text(path, "new\n");
}

/* A symbolic link planted at PATH.tmp (the name fewmul once wrote through)
 * leads nowhere: the file it points to keeps its content, and PATH becomes a
 * regular file with the new content, not the link. */
static void test_planted_symlink_is_not_followed(void **state)
{
    (void)state;
    const char *victim = tpath("victim.txt"), *path = tpath("out-link.txt");
    write_whole_file(victim, victim_text, strlen(victim_text));
    write_whole_file(path, old_text, strlen(old_text));
    assert_int_equal(symlink(victim, tmp_of(path)), 0);
    write_past_plant(path, victim);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(lstat(tmp_of(path), &st), 0); /* the planted link, left alone */
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(unlink(tmp_of(path)), 0);
}

/* A hard link to another file planted at PATH.tmp: that file is not
 * truncated, nor written. */
static void test_planted_hard_link_is_not_written(void **state)
{
    (void)state;
    const char *other = tpath("other.txt"), *path = tpath("out-hard.txt");
    write_whole_file(other, victim_text, strlen(victim_text));
    assert_int_equal(link(other, tmp_of(path)), 0);
    write_past_plant(path, other);
    assert_int_equal(unlink(tmp_of(path)), 0);
}

/* What the fill sees of its folder: the one temporary file's name. */
static int fill_noting_tmp(FILE *f, void *user)
{
    char *seen = user;
    fputs("noted\n", f);
    assert_int_equal(tmp_files(tpath("noted.txt"), seen, 300), 1);
    return 0;
}

/* The temporary file is PATH.tmp. and ten random letters or digits, another
 * each time, and the file written has the mode fopen would give it. */
static void test_tmp_name_is_unpredictable(void **state)
{
    (void)state;
    const char *path = tpath("noted.txt");
    char first[300] = "", second[300] = "";
    mode_t was = umask(027);
    int rc = fm_write_file_atomic(path, fill_noting_tmp, first, NULL);
    umask(was);
    assert_int_equal(rc, FM_OK);
    assert_int_equal(fm_write_file_atomic(path, fill_noting_tmp, second, NULL), FM_OK);
    assert_int_equal(strlen(first), strlen("noted.txt.tmp.") + 10);
    assert_string_not_equal(first, second);
    for (size_t i = strlen("noted.txt.tmp."); first[i]; i++)
        assert_non_null(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                               first[i]));
    assert_no_tmp(path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0666 & ~was);
}

/* Refused without writing anything: FM_EIO, step TARGET, the message naming
 * the path and what it is; the fill is never called. */
static void assert_refused(const char *path, const char *want)
{
    fill_plan plan = {"new\n", 1, 0, 0};
    fm_write_failure failed;
    assert_int_equal(fm_write_file_atomic(path, fill_pieces, &plan, &failed), FM_EIO);
    assert_int_equal(plan.calls, 0);
    assert_int_equal(failed.step, FM_WRITE_STEP_TARGET);
    assert_int_equal(failed.sys_errno, 0);
    assert_string_equal(fm_last_error(), want);
    assert_int_equal(fm_last_error_code(), FM_EIO);
    assert_no_tmp(path);
}

static void test_only_regular_files_are_replaced(void **state)
{
    (void)state;
    char want[700];
    const char *fifo = tpath("fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(want, sizeof want,
             "'%s' is a FIFO, not a regular file; fewmul replaces only regular files", fifo);
    assert_refused(fifo, want);
    struct stat st;
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));

    const char *to_fifo = tpath("to-fifo");
    assert_int_equal(symlink(fifo, to_fifo), 0);
    snprintf(want, sizeof want, "'%s' is a symbolic link to a FIFO, not to a regular file; "
                                "fewmul replaces only regular files", to_fifo);
    assert_refused(to_fifo, want);
    assert_int_equal(lstat(to_fifo, &st), 0);
    assert_true(S_ISLNK(st.st_mode));

    const char *dir = tpath("a-folder");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(want, sizeof want,
             "'%s' is a directory, not a regular file; fewmul replaces only regular files", dir);
    assert_refused(dir, want);

    /* a device is only asked about: this test never writes near /dev */
    if (access("/dev/null", F_OK) == 0) {
        assert_int_equal(fm_check_output("/dev/null"), FM_EIO);
        assert_string_equal(fm_last_error(), "'/dev/null' is a character device, not a regular "
                                             "file; fewmul replaces only regular files");
    }
    assert_int_equal(fm_check_output(tpath("none-yet")), FM_OK);
    assert_int_equal(fm_check_output(NULL), FM_EINVAL);

    /* a link to a regular file, or to nothing, is replaced: what it leads to
     * is never written */
    const char *target = tpath("linked.txt"), *link_path = tpath("link.txt");
    write_whole_file(target, victim_text, strlen(victim_text));
    assert_int_equal(symlink(target, link_path), 0);
    assert_int_equal(fm_check_output(link_path), FM_OK);
    fill_plan plan = {"new\n", 1, 0, 0};
    assert_int_equal(fm_write_file_atomic(link_path, fill_pieces, &plan, NULL), FM_OK);
    assert_file_text(target, victim_text);
    assert_file_text(link_path, "new\n");
    assert_int_equal(lstat(link_path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    const char *dangling = tpath("dangling");
    assert_int_equal(symlink(tpath("nowhere"), dangling), 0);
    assert_int_equal(fm_write_file_atomic(dangling, fill_pieces, &plan, NULL), FM_OK);
    assert_file_text(dangling, "new\n");
    assert_int_equal(access(tpath("nowhere"), F_OK), -1);
}

/* fm_write_file_atomic_open: the new file in place, still open for appending;
 * a hard link that was at the name before keeps its other name's content. */
static void test_write_open_appends_to_the_new_file(void **state)
{
    (void)state;
    const char *other = tpath("log-other.txt"), *path = tpath("log.txt");
    write_whole_file(other, victim_text, strlen(victim_text));
    assert_int_equal(link(other, path), 0);
    fill_plan plan = {"kept\n", 2, 0, 0};
    FILE *f = NULL;
    fm_write_failure failed;
    assert_int_equal(fm_write_file_atomic_open(path, fill_pieces, &plan, &failed, &f), FM_OK);
    assert_non_null(f);
    assert_int_equal(failed.step, FM_WRITE_STEP_NONE);
    assert_file_text(path, "kept\nkept\n");
    fputs("appended\n", f);
    assert_int_equal(fclose(f), 0);
    assert_file_text(path, "kept\nkept\nappended\n");
    assert_file_text(other, victim_text);
    assert_no_tmp(path);

    /* a failure leaves no stream */
    const char *fifo = tpath("log-fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    f = stdout;
    assert_int_equal(fm_write_file_atomic_open(fifo, fill_pieces, &plan, &failed, &f), FM_EIO);
    assert_null(f);
    assert_int_equal(failed.step, FM_WRITE_STEP_TARGET);
    plan.fail_errno = EIO;
    f = stdout;
    assert_int_equal(fm_write_file_atomic_open(path, fill_pieces, &plan, &failed, &f), FM_EIO);
    assert_null(f);
    assert_int_equal(failed.step, FM_WRITE_STEP_WRITE);
    assert_file_text(path, "kept\nkept\nappended\n");
    assert_no_tmp(path);
    assert_int_equal(fm_write_file_atomic_open(path, fill_pieces, &plan, &failed, NULL),
                     FM_EINVAL);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_new_content_appears_whole),
        T(test_failing_fill_keeps_the_file),
        T(test_failing_stream_keeps_the_file),
        T(test_failing_create_keeps_the_file),
        T(test_failing_rename_removes_the_tmp),
        T(test_out_of_memory_and_bad_arguments),
        T(test_planted_symlink_is_not_followed),
        T(test_planted_hard_link_is_not_written),
        T(test_tmp_name_is_unpredictable),
        T(test_only_regular_files_are_replaced),
        T(test_write_open_appends_to_the_new_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
