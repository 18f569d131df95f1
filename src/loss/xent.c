/* xent.c — softmax cross-entropy, averaged over the batch, computed with the
 * row maximum subtracted so exp never overflows. */
#include "loss.h"

#include <math.h>

double fm_loss_xent(const float *y, const uint8_t *labels, int batch, int classes, float *dy,
                    int *errors)
{
    double total = 0.0;
    const float inv_b = 1.0f / (float)batch;
    for (int b = 0; b < batch; b++) {
        const float *row = y + (long)b * classes;
        float top = row[0];
        for (int c = 1; c < classes; c++)
            top = row[c] > top ? row[c] : top;
        double sum = 0.0;
        for (int c = 0; c < classes; c++)
            sum += exp((double)(row[c] - top));
        double log_sum = log(sum);
        total += log_sum - (double)(row[labels[b]] - top);
        if (dy)
            for (int c = 0; c < classes; c++) {
                double p = exp((double)(row[c] - top) - log_sum);
                dy[(long)b * classes + c] = (float)(p - (c == labels[b] ? 1.0 : 0.0)) * inv_b;
            }
    }
    if (errors)
        *errors = fm_count_errors(y, labels, batch, classes);
    return total / batch;
}
