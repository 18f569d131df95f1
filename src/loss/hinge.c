/* hinge.c — squared hinge loss summed over classes, averaged over the batch,
 * exactly as the authors' code: cost = sum_b sum_c max(0, 1 - t*y)^2 / B,
 * with targets t = +1 for the label and -1 elsewhere; and the error count.
 * t*y and the gradient's t are sign selects, as in the method's arithmetic. */
#include "loss.h"

int fmi_count_errors(const float *y, const uint8_t *labels, int batch, int classes)
{
    int errors = 0;
    for (int b = 0; b < batch; b++) {
        const float *row = y + (long)b * classes;
        int best = 0;
        for (int c = 1; c < classes; c++)
            best = row[c] > row[best] ? c : best;
        errors += best != labels[b];
    }
    FM_TALLY(FM_OP_CMP, (uint64_t)batch * classes); /* (classes-1) maxima and the label test */
    FM_TALLY(FM_OP_SIGN, (uint64_t)batch * (classes - 1));
    FM_TALLY(FM_OP_IADD, (uint64_t)batch);
    return errors;
}

void fmi_count_errors_cost(const fm_cost *c, int batch, int classes)
{
    fmi_cost_ops(c, FM_OP_CMP, (uint64_t)batch * classes);
    fmi_cost_ops(c, FM_OP_SIGN, (uint64_t)batch * (classes - 1));
    fmi_cost_ops(c, FM_OP_IADD, (uint64_t)batch);
}

double fmi_loss_hinge_part(const float *y, const uint8_t *labels, int batch, int norm, int classes,
                          float *dy, int *errors)
{
    double total = 0.0;
    const float k = -2.0f / (float)norm; /* d(m^2)/dy = -2 t m, averaged over the batch */
    for (int b = 0; b < batch; b++) {
        for (int c = 0; c < classes; c++) {
            long i = (long)b * classes + c;
            int is_label = c == labels[b];
            float ty = is_label ? y[i] : -y[i];
            float margin = 1.0f - ty;
            /* max(0, margin) that keeps a NaN: a diverged network's loss
             * is NaN, never the 0 of a perfect fit */
            float m = margin <= 0.0f ? 0.0f : margin;
            total += (double)m * m;
            if (dy) {
                float g = m * k;
                dy[i] = is_label ? g : -g;
            }
        }
    }
    uint64_t n = (uint64_t)batch * classes;
    FM_TALLY(FM_OP_CMP, 2 * n);
    FM_TALLY(FM_OP_SIGN, 2 * n);
    FM_TALLY(FM_OP_FADD, n);
    FM_TALLY(FM_OP_FMA, n);
    if (dy) {
        FM_TALLY(FM_OP_FMUL, n);
        FM_TALLY(FM_OP_SIGN, n);
    }
    (void)n;
    if (errors)
        *errors = fmi_count_errors(y, labels, batch, classes);
    return total / norm;
}

double fmi_loss_hinge(const float *y, const uint8_t *labels, int batch, int classes, float *dy,
                     int *errors)
{
    return fmi_loss_hinge_part(y, labels, batch, batch, classes, dy, errors);
}

void fmi_loss_hinge_cost(const fm_cost *forward, const fm_cost *backward, int batch, int classes)
{
    uint64_t n = (uint64_t)batch * classes;
    fmi_cost_ops(forward, FM_OP_CMP, 2 * n);  /* label test, margin > 0 */
    fmi_cost_ops(forward, FM_OP_SIGN, 2 * n); /* t*y, max */
    fmi_cost_ops(forward, FM_OP_FADD, n);     /* 1 - t*y */
    fmi_cost_ops(forward, FM_OP_FMA, n);      /* total += m*m */
    fmi_count_errors_cost(forward, batch, classes);
    fmi_cost_ops(backward, FM_OP_FMUL, n);    /* m * (-2/B) */
    fmi_cost_ops(backward, FM_OP_SIGN, n);    /* times t */
}
