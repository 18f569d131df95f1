/* xent.c — softmax cross-entropy, averaged over the batch, computed with the
 * row maximum subtracted so exp never overflows. */
#include "loss.h"

#include <math.h>

double fmi_loss_xent_part(const float *y, const uint8_t *labels, int batch, int norm, int classes,
                         float *dy, int *errors)
{
    double total = 0.0;
    const float inv_b = 1.0f / (float)norm;
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
        if (dy) {
            double inv_sum = 1.0 / sum;
            for (int c = 0; c < classes; c++) {
                double p = exp((double)(row[c] - top)) * inv_sum;
                double d = c == labels[b] ? p - 1.0 : p;
                dy[(long)b * classes + c] = (float)d * inv_b;
            }
        }
    }
    uint64_t n = (uint64_t)batch * classes;
    FM_TALLY(FM_OP_CMP, (uint64_t)batch * (classes - 1));
    FM_TALLY(FM_OP_SIGN, (uint64_t)batch * (classes - 1));
    FM_TALLY(FM_OP_FADD, 2 * n + 3 * (uint64_t)batch);
    FM_TALLY(FM_OP_FSPECIAL, n + (uint64_t)batch);
    if (dy) {
        FM_TALLY(FM_OP_FSPECIAL, (uint64_t)batch + n);
        FM_TALLY(FM_OP_FADD, 2 * n);
        FM_TALLY(FM_OP_FMUL, 2 * n);
        FM_TALLY(FM_OP_CMP, n);
        FM_TALLY(FM_OP_SIGN, n);
    }
    (void)n;
    if (errors)
        *errors = fmi_count_errors(y, labels, batch, classes);
    return total / norm;
}

double fmi_loss_xent(const float *y, const uint8_t *labels, int batch, int classes, float *dy,
                    int *errors)
{
    return fmi_loss_xent_part(y, labels, batch, batch, classes, dy, errors);
}

void fmi_loss_xent_cost(const fm_cost *forward, const fm_cost *backward, int batch, int classes)
{
    uint64_t n = (uint64_t)batch * classes;
    fmi_cost_ops(forward, FM_OP_CMP, (uint64_t)batch * (classes - 1));  /* row maximum */
    fmi_cost_ops(forward, FM_OP_SIGN, (uint64_t)batch * (classes - 1));
    fmi_cost_ops(forward, FM_OP_FADD, 2 * n + 3 * (uint64_t)batch);    /* y - top, sum; loss */
    fmi_cost_ops(forward, FM_OP_FSPECIAL, n + (uint64_t)batch);         /* exp; log */
    fmi_count_errors_cost(forward, batch, classes);
    fmi_cost_ops(backward, FM_OP_FSPECIAL, (uint64_t)batch + n);        /* 1/sum; exp */
    fmi_cost_ops(backward, FM_OP_FADD, 2 * n);                          /* y - top; p - 1 */
    fmi_cost_ops(backward, FM_OP_FMUL, 2 * n);                          /* * 1/sum; * 1/B */
    fmi_cost_ops(backward, FM_OP_CMP, n);
    fmi_cost_ops(backward, FM_OP_SIGN, n);
}
