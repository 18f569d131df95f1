/* test_error.c — messages that keep their reason: fm_fit_text elides the
 * middle of a long word (an echoed path or architecture), or of the whole
 * text, never splits a UTF-8 character and leaves a text that fits alone;
 * fmi_error fits a long message into fm_last_error()'s buffer the same way,
 * also when an argument is fm_last_error() itself. */
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

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

/* n copies of c, NUL-terminated, malloc'ed. */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static int valid_utf8(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c;) {
        int n = *c < 0x80 ? 1 : (*c & 0xe0) == 0xc0 ? 2 : (*c & 0xf0) == 0xe0 ? 3 : 0;
        if (n == 0)
            return 0;
        for (int i = 1; i < n; i++)
            if ((c[i] & 0xc0) != 0x80)
                return 0;
        c += n;
    }
    return 1;
}

static void test_short_text_unchanged(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(fm_fit_text(buf, sizeof buf, "data: No such file"), 18);
    assert_string_equal(buf, "data: No such file");
    assert_int_equal(fm_fit_text(buf, sizeof buf, NULL), 0);
    assert_string_equal(buf, "");
}

/* "cannot create log file '/x/aaa...a.jsonl': No such file or directory" in
 * 512 bytes: the path keeps its first and last 60 bytes, the reason all of it. */
static void test_long_path_elided(void **state)
{
    (void)state;
    char *name = repeat('a', 1200);
    char text[1400], buf[512];
    snprintf(text, sizeof text, "cannot create log file '/x/%s.jsonl': No such file or directory",
             name);
    size_t n = fm_fit_text(buf, sizeof buf, text);
    assert_int_equal(n, strlen(buf));
    assert_true(n < sizeof buf);
    assert_true(ends_with(buf, "aaaa.jsonl': No such file or directory"));
    assert_true(strncmp(buf, "cannot create log file '/x/aaaa", 31) == 0);
    assert_non_null(strstr(buf, "a...a"));
    /* the word became 60 + 3 + 60 bytes */
    assert_int_equal(n, strlen("cannot create log file ") + 123 + strlen(" No such file or directory"));
    free(name);
}

/* Every long word is elided; a text of many short words that still does not
 * fit keeps its beginning and its end. */
static void test_many_words_keep_both_ends(void **state)
{
    (void)state;
    char text[4000] = "start";
    for (int i = 0; i < 600; i++)
        strcat(text, " word");
    strcat(text, " the-reason");
    char buf[200];
    size_t n = fm_fit_text(buf, sizeof buf, text);
    assert_true(n <= sizeof buf - 1);
    assert_true(strncmp(buf, "start word", 10) == 0);
    assert_true(ends_with(buf, "word the-reason"));
    assert_non_null(strstr(buf, "..."));
}

static void test_utf8_never_split(void **state)
{
    (void)state;
    char text[3000] = "bad path '";
    for (int i = 0; i < 900; i++)
        strcat(text, "\xc3\xa9"); /* é, two bytes */
    strcat(text, "': reason");
    for (size_t cap = 20; cap < 300; cap += 7) {
        char buf[300];
        fm_fit_text(buf, cap, text);
        assert_true(strlen(buf) < cap);
        if (!valid_utf8(buf))
            fail_msg("cap %zu: invalid UTF-8: %s", cap, buf);
    }
}

static void test_tiny_buffers(void **state)
{
    (void)state;
    char buf[4];
    assert_int_equal(fm_fit_text(buf, 1, "abcdef"), 0);
    assert_string_equal(buf, "");
    assert_int_equal(fm_fit_text(buf, 3, "abcdef"), 2);
    assert_string_equal(buf, "ab");
    assert_int_equal(fm_fit_text(NULL, 3, "x"), 0);
}

/* A 5,000-item architecture in a library message: the reason survives. */
static void test_library_message_keeps_reason(void **state)
{
    (void)state;
    char *arch = malloc(3 * 5000 + 16), *end = arch;
    assert_non_null(arch);
    end += sprintf(end, "mlp:16,x");
    for (int i = 0; i < 4998; i++)
        end += sprintf(end, ",16");
    fm_config c;
    fm_config_default(&c);
    c.arch = arch;
    assert_int_equal(fm_config_check(&c), FM_EINVAL);
    const char *m = fm_last_error();
    assert_true(strlen(m) < 512);
    if (!ends_with(m, "is not a hidden width 1..65536 (widths are separated by commas)"))
        fail_msg("the reason is lost: %s", m);
    assert_non_null(strstr(m, "bad architecture 'mlp:16,x,16,16"));
    assert_non_null(strstr(m, "16..."));
    assert_non_null(strstr(m, ",16,16': item 'x' is not"));
    free(arch);
}

/* fmi_error with fm_last_error() among its arguments: formatted apart. */
static void test_message_of_a_message(void **state)
{
    (void)state;
    char *path = repeat('p', 900);
    fmi_error(FM_EIO, "%s: disk full", path);
    assert_int_equal(fm_last_error_code(), FM_EIO);
    fmi_error(FM_EINVAL, "while saving: %s", fm_last_error());
    assert_int_equal(fm_last_error_code(), FM_EINVAL);
    assert_true(strncmp(fm_last_error(), "while saving: ppp", 17) == 0);
    assert_true(ends_with(fm_last_error(), "ppp: disk full"));
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_text_unchanged),
        cmocka_unit_test(test_long_path_elided),
        cmocka_unit_test(test_many_words_keep_both_ends),
        cmocka_unit_test(test_utf8_never_split),
        cmocka_unit_test(test_tiny_buffers),
        cmocka_unit_test(test_library_message_keeps_reason),
        cmocka_unit_test(test_message_of_a_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
