/* test_write_atomic.c — tests of fm_write_file_atomic (include/fewmul.h;
 * src/core/bytes.c), the one write-whole-or-not-at-all that the library's files
 * and the command's outputs share: new content appears whole, an existing
 * file survives every failure (of the fill function, of the stream, of the
 * create and of the rename), each reported with its step, its errno and a
 * message naming the file, and PATH.tmp is never left behind. */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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

static void assert_no_tmp(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(tmp_of(path), &st), -1);
    assert_int_equal(errno, ENOENT);
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
    snprintf(want, sizeof want, "%s: write failed: %s", tmp_of(path), strerror(ENOSPC));
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
    if (access("/dev/full", W_OK) != 0)
        skip();
    const char *path = tpath("full.txt");
    write_whole_file(path, old_text, strlen(old_text));
    /* PATH.tmp leads to a full device: the fill does not see it, the flush does */
    assert_int_equal(symlink("/dev/full", tmp_of(path)), 0);
    fill_plan plan = {"x", 10, 0, 0};
    fm_write_failure failed;
    assert_int_equal(fm_write_file_atomic(path, fill_pieces, &plan, &failed), FM_EIO);
    assert_int_equal(failed.step, FM_WRITE_STEP_WRITE);
    assert_int_equal(failed.sys_errno, ENOSPC);
    assert_non_null(strstr(fm_last_error(), "write failed"));
    assert_file_text(path, old_text);
    assert_no_tmp(path);
}

static void test_failing_create_keeps_the_file(void **state)
{
    (void)state;
    const char *path = tpath("blocked.txt");
    write_whole_file(path, old_text, strlen(old_text));
    /* a directory is where PATH.tmp would go: nothing is written, nor removed */
    assert_int_equal(mkdir(tmp_of(path), 0700), 0);
    fill_plan plan = {"new\n", 1, 0, 0};
    fm_write_failure failed;
    assert_int_equal(fm_write_file_atomic(path, fill_pieces, &plan, &failed), FM_EIO);
    assert_int_equal(plan.calls, 0);
    assert_int_equal(failed.step, FM_WRITE_STEP_CREATE);
    assert_int_equal(failed.sys_errno, EISDIR);
    char want[700];
    snprintf(want, sizeof want, "%s: cannot create: %s", tmp_of(path), strerror(EISDIR));
    assert_string_equal(fm_last_error(), want);
    assert_file_text(path, old_text);
    assert_int_equal(rmdir(tmp_of(path)), 0);

    /* a missing folder */
    assert_int_equal(fm_write_file_atomic(tpath("no-dir/x.txt"), fill_pieces, &plan, &failed),
                     FM_EIO);
    assert_int_equal(failed.step, FM_WRITE_STEP_CREATE);
    assert_int_equal(failed.sys_errno, ENOENT);
}

static void test_failing_rename_removes_the_tmp(void **state)
{
    (void)state;
    /* a non-empty directory has the name: the rename fails, it stays whole */
    const char *path = tpath("busy");
    char child[600];
    snprintf(child, sizeof child, "%s/child", path);
    assert_int_equal(mkdir(path, 0700), 0);
    write_whole_file(child, "x", 1);
    fill_plan plan = {"new\n", 1, 0, 0};
    fm_write_failure failed;
    assert_int_equal(fm_write_file_atomic(path, fill_pieces, &plan, &failed), FM_EIO);
    assert_int_equal(failed.step, FM_WRITE_STEP_RENAME);
    assert_true(failed.sys_errno != 0);
    assert_non_null(strstr(fm_last_error(), "cannot rename into place"));
    assert_non_null(strstr(fm_last_error(), path));
    assert_no_tmp(path);
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
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
