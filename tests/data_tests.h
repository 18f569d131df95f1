/* data_tests.h — how a test program treats data sets a machine may lack.
 * Tests that read such a set are named test_real_*: the program's CTest test
 * runs the others, and a second CTest test, NAME_real (the argument "real"),
 * runs those alone. A test that finds no data calls SKIP_NO_DATA, and the
 * program then exits 77, which CTest reports as skipped, never as passed.
 * Include after cmocka.h. */
#ifndef FEWMUL_TEST_DATA_TESTS_H
#define FEWMUL_TEST_DATA_TESTS_H

#include <stdio.h>
#include <string.h>

static int data_skips;

/* Skips the calling test, saying why (printf-style), and counts it. */
#define SKIP_NO_DATA(...)                                                         \
    do {                                                                          \
        printf("skipped: " __VA_ARGS__);                                          \
        printf("\n");                                                             \
        data_skips++;                                                             \
        skip();                                                                   \
    } while (0)

/* Runs the group (all of it, or with "real" only test_real_*, else all but
 * those) and returns the process's exit status: 1 if a test failed, 77 if one
 * had no data, else 0. Another argument is a pattern (cmocka's * and ?) that
 * names the tests to run: a slow machine, such as an emulator, runs a part. */
static int run_data_tests(int argc, char **argv, const struct CMUnitTest *tests, size_t count,
                          CMFixtureFunction setup, CMFixtureFunction teardown)
{
    if (argc > 1 && strcmp(argv[1], "real") == 0)
        cmocka_set_test_filter("test_real_*");
    else if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    else
        cmocka_set_skip_filter("test_real_*");
    int failures = _cmocka_run_group_tests(argv[0], tests, count, setup, teardown);
    return failures ? 1 : data_skips ? 77 : 0;
}

#define RUN_DATA_TESTS(argc, argv, tests, setup, teardown)                      \
    run_data_tests(argc, argv, tests, sizeof tests / sizeof *tests, setup, teardown)

#endif
