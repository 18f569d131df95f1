/* data_id.h — what identifies the data of a training run: counts, shape and
 * CRC-32s of the training and test sets. A checkpoint records it so that a
 * resumed run continues on the same data, and the ranks of a data-parallel
 * run compare theirs before they start. */
#ifndef FEWMUL_DATA_ID_H
#define FEWMUL_DATA_ID_H

#include "fewmul.h"

#include <stdint.h>

typedef struct fm_data_id {
    int32_t train_count, test_count; /* test_count -1: no test set */
    int32_t height, width, channels;
    uint32_t train_crc, test_crc;    /* of the labels, then the pixels, in the order given */
} fm_data_id;

/* The identity of a training set and a test set (may be NULL). */
void fmi_data_identify(const fm_images *train, const fm_images *test, fm_data_id *id);

#endif
