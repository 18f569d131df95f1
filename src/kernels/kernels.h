/* kernels.h — scalar reference kernels of the dense layer that execute the
 * method's arithmetic: binary and ternary weights by sign selects and adds,
 * quantized back-prop by exponent adds (shifts). They are the specification
 * the energy ledger counts (in a counting build they tally each operation),
 * and the yardstick for faster variants. Shapes as in layers.h: x is B x in,
 * w is in x out (the quantized weights of the pass), y is B x out. */
#ifndef FEWMUL_KERNELS_H
#define FEWMUL_KERNELS_H

#include "fewmul.h"

/* How a weight enters a product. */
typedef enum fm_weight_class {
    FM_WCLASS_REAL,   /* any float: multiply-add */
    FM_WCLASS_BINARY, /* +-h: select the input's sign, add; one multiply by h per sum */
    FM_WCLASS_TERNARY /* +-h or 0: select sign, select zero, add; one multiply by h per sum */
} fm_weight_class;

fm_weight_class fmi_weight_class_of(fm_weight_mode mode);

/* y = x · w */
void fmi_ref_dense_forward(fm_weight_class wc, const float *x, const float *w, float h, float *y,
                          int batch, int in, int out);
/* dx = e · wᵀ */
void fmi_ref_dense_backward_input(fm_weight_class wc, const float *e, const float *w, float h,
                                 float *dx, int batch, int in, int out);
/* dw = xᵀ · e; with pow2 set, every x is 0 or +-2^k (Q(x)) and each product
 * is an exponent add, a sign flip and a zero select instead of a multiply. */
void fmi_ref_dense_backward_weights(int pow2, const float *x, const float *e, float *dw, int batch,
                                   int in, int out);
/* Rows i0 .. i1-1 of the same, stored from dw_rows on (row i0 first), on the
 * calling thread: the same bits as those rows of the whole product. */
void fmi_ref_dense_backward_weights_rows(int pow2, const float *x, const float *e, float *dw_rows,
                                        int batch, int in, int out, int i0, int i1);

#endif
