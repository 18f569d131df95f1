/* dense.c — the fully connected layer: three GEMMs (forward, input gradient,
 * weight gradient). Which weights enter (sampled binary, ternary, real) and
 * which input enters the weight gradient (x or Q(x)) is the caller's choice. */
#include "layers.h"
#include "gemm.h"

#include <math.h>

void fm_dense_forward(const float *x, const float *w, float *y, int batch, int in, int out)
{
    fm_sgemm(0, 0, batch, out, in, 1.0f, x, in, w, out, 0.0f, y, out);
}

void fm_dense_backward_input(const float *e, const float *w, float *dx, int batch, int in, int out)
{
    fm_sgemm(0, 1, batch, in, out, 1.0f, e, out, w, out, 0.0f, dx, in);
}

void fm_dense_backward_weights(const float *x, const float *e, float *dw, int batch, int in, int out)
{
    fm_sgemm(1, 0, in, out, batch, 1.0f, x, in, e, out, 0.0f, dw, out);
}

float fm_dense_w0(int in, int out)
{
    return (float)(sqrt(6.0 / (double)(in + out)) / 2.0);
}
