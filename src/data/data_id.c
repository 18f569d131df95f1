/* data_id.c — the identity of a run's data (data_id.h). */
#include "bytes.h"
#include "data_id.h"

#include <string.h>

static uint32_t images_crc(const fm_images *im)
{
    size_t pixels = (size_t)im->count * im->height * im->width * im->channels;
    return fmi_crc32_update(fmi_crc32(im->labels, (size_t)im->count), im->pixels, pixels);
}

void fmi_data_identify(const fm_images *train, const fm_images *test, fm_data_id *id)
{
    memset(id, 0, sizeof *id);
    id->train_count = train->count;
    id->height = train->height;
    id->width = train->width;
    id->channels = train->channels;
    id->train_crc = images_crc(train);
    id->test_count = test ? test->count : -1;
    id->test_crc = test ? images_crc(test) : 0;
}
