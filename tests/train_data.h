/* train_data.h — the training and test sets of the tests that train (cmocka
 * group fixtures load_train_data / free_train_data): MNIST from
 * $FEWMUL_DATA/mnist when FEWMUL_DATA is set, else ../shared/data/mnist;
 * where that is absent, Debian's Fashion-MNIST ("fashion", which scripts/deps
 * installs), so the tests train on every machine scripts/test sets up. Each
 * limit is stated for both sets (LIMIT). With neither set, the tests skip and
 * the program exits 77 (data_tests.h). Include after cmocka.h. */
#ifndef FEWMUL_TEST_TRAIN_DATA_H
#define FEWMUL_TEST_TRAIN_DATA_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "data_tests.h"
#include "fewmul.h"

static fm_images train_set, test_set;
static int have_data, on_fashion;

static int load_train_data(void **state)
{
    (void)state;
    char dir[4096];
    const char *env = getenv("FEWMUL_DATA");
    snprintf(dir, sizeof dir, "%s/mnist", env ? env : FM_TEST_DATA_DIR);
    struct stat st;
    char spec[4200];
    if (stat(dir, &st) == 0) {
        snprintf(spec, sizeof spec, "mnist:%s", dir);
    } else {
        printf("MNIST not found at %s: the tests train on Debian's Fashion-MNIST\n", dir);
        snprintf(spec, sizeof spec, "fashion");
        on_fashion = 1;
        if (stat(FM_FASHION_DIR, &st) != 0) {
            printf("Fashion-MNIST not found at %s either (scripts/deps installs it)\n",
                   FM_FASHION_DIR);
            return 0;
        }
    }
    if (fm_data_load(spec, &train_set, &test_set) != FM_OK) {
        printf("cannot load %s: %s\n", spec, fm_last_error());
        return -1;
    }
    have_data = 1;
    return 0;
}

static int free_train_data(void **state)
{
    (void)state;
    fm_images_free(&train_set);
    fm_images_free(&test_set);
    return 0;
}

/* Skips the calling test when neither data set is there. */
#define REQUIRE_DATA()                                                            \
    do {                                                                          \
        if (!have_data)                                                           \
            SKIP_NO_DATA("neither MNIST nor Fashion-MNIST is on this machine");   \
    } while (0)

/* A limit on a measured error: the first on MNIST, the second on Fashion-MNIST. */
#define LIMIT(mnist, fashion) (on_fashion ? (fashion) : (mnist))

/* The set the tests train on, for their messages. */
#define DATA_NAME (on_fashion ? "Fashion-MNIST" : "MNIST")

#endif
