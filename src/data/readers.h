/* readers.h — the appending forms of the CIFAR-10 and SVHN readers, which
 * data.c uses to join several files into one training set without holding
 * two copies of it. Internal. */
#ifndef FEWMUL_READERS_H
#define FEWMUL_READERS_H

#include "fewmul.h"

/* Both read the 32x32x3 images of one file and append them to *acc, which is
 * either all zero or holds 32x32x3 images from an earlier call. The buffers
 * grow in place; on failure acc->count is unchanged (the buffers may have
 * grown) and the caller frees *acc as usual. */
int fmi_cifar10_read_append(const char *path, fm_images *acc);
int fmi_svhn_read_append(const char *path, fm_images *acc);

/* Side of the images both data sets hold. */
#define FM_DATA_SIDE 32
#define FM_DATA_RGB 3
#define FM_DATA_IMAGE_BYTES (FM_DATA_SIDE * FM_DATA_SIDE * FM_DATA_RGB)

/* Sets a buffer's size to exactly `bytes` (NULL grows from nothing). */
int fmi_data_resize(uint8_t **buf, size_t bytes);

#endif
