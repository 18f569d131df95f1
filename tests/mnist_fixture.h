/* mnist_fixture.h — the MNIST training and test sets for tests that train
 * (cmocka group fixtures load_mnist / free_mnist), read from
 * ../shared/data/mnist or $FEWMUL_DATA/mnist. When the folder is absent the
 * fixture says so and have_data stays 0: tests then skip. Include after
 * cmocka.h. */
#ifndef FEWMUL_TEST_MNIST_FIXTURE_H
#define FEWMUL_TEST_MNIST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "fewmul.h"

static fm_images train_set, test_set;
static int have_data;

static int load_mnist(void **state)
{
    (void)state;
    char spec[4096];
    const char *env = getenv("FEWMUL_DATA");
    snprintf(spec, sizeof spec, "mnist:%s/mnist", env ? env : FM_TEST_DATA_DIR);
    struct stat st;
    if (stat(spec + 6, &st) != 0) {
        printf("skipped: MNIST not found at %s (set FEWMUL_DATA to the folder holding mnist/)\n",
               spec + 6);
        return 0;
    }
    if (fm_data_load(spec, &train_set, &test_set) != FM_OK) {
        printf("cannot load %s: %s\n", spec, fm_last_error());
        return -1;
    }
    have_data = 1;
    return 0;
}

static int free_mnist(void **state)
{
    (void)state;
    fm_images_free(&train_set);
    fm_images_free(&test_set);
    return 0;
}

/* Skips the calling test when MNIST is absent. */
#define REQUIRE_MNIST()                                                           \
    do {                                                                          \
        if (!have_data)                                                           \
            skip();                                                               \
    } while (0)

#endif
