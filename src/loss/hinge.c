/* hinge.c — squared hinge loss summed over classes, averaged over the batch,
 * exactly as the authors' code: cost = sum_b sum_c max(0, 1 - t*y)^2 / B. */
#include "loss.h"

int fm_count_errors(const float *y, const uint8_t *labels, int batch, int classes)
{
    int errors = 0;
    for (int b = 0; b < batch; b++) {
        const float *row = y + (long)b * classes;
        int best = 0;
        for (int c = 1; c < classes; c++)
            if (row[c] > row[best])
                best = c;
        errors += best != labels[b];
    }
    return errors;
}

double fm_loss_hinge(const float *y, const uint8_t *labels, int batch, int classes, float *dy,
                     int *errors)
{
    double total = 0.0;
    const float inv_b = 1.0f / (float)batch;
    for (int b = 0; b < batch; b++) {
        for (int c = 0; c < classes; c++) {
            long i = (long)b * classes + c;
            float t = c == labels[b] ? 1.0f : -1.0f;
            float margin = 1.0f - t * y[i];
            float m = margin > 0.0f ? margin : 0.0f;
            total += (double)m * m;
            if (dy)
                dy[i] = -2.0f * t * m * inv_b;
        }
    }
    if (errors)
        *errors = fm_count_errors(y, labels, batch, classes);
    return total / batch;
}
