/* deploy.h — the deployed network: what a packed model file (docs/format.md)
 * holds once read, and what the inference engine runs. A deployed network is a
 * chain of records: dense layers and convolutions, each with packed weight
 * codes (1-bit binary, 2-bit ternary, (1 + ceil(log2 N))-bit synapse, or fp32),
 * its batch norm folded into a per-output (per-channel) scale and offset and an
 * activation; max-pools, which pool the sums of the convolution before them;
 * and global average pooling. Everything is read-only after loading except the
 * kernel choice, so predictions may run concurrently. */
#ifndef FEWMUL_DEPLOY_H
#define FEWMUL_DEPLOY_H

#include "fewmul.h"

#include <stddef.h>
#include <stdint.h>

/* How a layer's weights are stored (the values are the file's codes). */
typedef enum fm_deploy_weights {
    FM_DW_FP32 = 0,    /* 32-bit floats */
    FM_DW_BINARY = 1,  /* 1 bit: 1 means +1, 0 means -1 */
    FM_DW_TERNARY = 2, /* 2 bits: 0 means 0, 1 means +1, 3 means -1; 2 is invalid */
    FM_DW_SYNAPSE = 3  /* 1 + ceil(log2 levels) bits: low bits the level index,
                          top bit the sign (1 negative) */
} fm_deploy_weights;

/* What follows a layer's scale and offset (the values are the file's codes). */
typedef enum fm_deploy_act {
    FM_ACT_NONE = 0, /* the last layer: class scores */
    FM_ACT_RELU = 1,
    FM_ACT_SIGN = 2  /* binary activations: +1 where scale*acc + offset >= 0, else -1 */
} fm_deploy_act;

/* What a record is (the values are the file's record types, docs/format.md). */
typedef enum fm_deploy_type {
    FM_DL_DENSE = 0,
    FM_DL_CONV = 1, /* a 2-D convolution of an NHWC map */
    FM_DL_POOL = 2, /* max-pool of the sums of the convolution before it, before
                       that convolution's scale, offset and activation */
    FM_DL_GAP = 3   /* global average pooling: each channel's mean */
} fm_deploy_type;

struct fm_kernel_weights; /* a layer's weights laid out for the kernels (infer.h) */
struct fm_conv_weights;   /* a convolution's weights laid out for its kernels */

typedef struct fm_deploy_layer {
    fm_deploy_type type;
    /* dense: the weight matrix's inputs and outputs; conv: the same for one
     * output position (in = k_h * k_w * in_c, the fan-in; out = out_c); pool
     * and gap: the values in and out per example */
    int32_t in, out;
    /* conv, pool, gap: the input map, and the output map (pool: pooled;
     * gap: 1 x 1 x in_c) */
    int32_t in_h, in_w, in_c, out_h, out_w, out_c;
    /* conv: kernel, stride and the zero rows and columns before the input
     * (bottom and right padding follow from the output size); pool: window
     * k_h x k_w (square) moved by stride */
    int32_t k_h, k_w, stride, pad_top, pad_left;
    fm_deploy_weights weights;
    int32_t bits;          /* bits per weight code: 32, 1, 2, or 1 + ceil(log2 levels) */
    int32_t levels;        /* synapse: number of magnitudes N (2 .. 32); else 0 */
    float *magnitudes;     /* synapse: the N level magnitudes, H included, ascending */
    float unit;            /* binary and ternary: the weight magnitude H (folded into
                              scale, kept to rebuild float weights); else 1 */
    fm_deploy_act act;
    int binary_input;      /* 1: the input is the +-1 output of a sign layer */
    size_t row_bytes;      /* bytes of one packed row: ceil(in * bits / 8) */
    uint8_t *packed;       /* out rows; row j holds the codes of the in weights of
                              output j, code i at bit i*bits of the row, least
                              significant bit first; fp32: little-endian floats */
    float *scale, *offset; /* out each: z = scale * acc + offset, where acc is the
                              sum over inputs of input times weight code value
                              (+-1, 0, or the synapse magnitude with its sign) */
    struct fm_kernel_weights *kernel; /* dense: prepared by the engine; NULL until then */
    struct fm_conv_weights *conv;     /* conv: prepared by the engine (every kind) */
    /* Sign convolutions: the folded batch norm as a range of the sum per
     * output, prepared by the engine (fmi_sign_range_int, _float): the output
     * is +1 exactly where ilo[j] <= acc <= ihi[j] (integer sums: binary
     * weights on binary input) or flo[j] <= acc <= fhi[j] (real sums), which
     * is exactly where scale*acc + offset >= 0. `above` (ceil(out / 64)
     * words): bit j set where z grows with the sum (scale >= 0), which tells
     * a max-pool on the bits to OR them, else to AND them. */
    int32_t *ilo, *ihi;
    float *flo, *fhi;
    uint64_t *above;
    float *unpacked;       /* fp32 yardstick: out x in row-major floats, the code
                              values (unit not applied, as acc above); NULL
                              until the "fp32" variant is chosen */
} fm_deploy_layer;

struct fm_deploy {
    int32_t height, width, channels; /* input image shape; product = input_dim */
    int32_t input_dim, classes;
    float input_scale;     /* x = pixel * input_scale - input_mean[i] */
    float *input_mean;     /* input_dim values */
    int32_t n_layers;
    fm_deploy_layer *layers;
    uint32_t source_mode;  /* the training weight mode (fm_weight_mode), informative */
    uint32_t export_how;   /* fm_export_weights used, informative */
    const struct fm_kernels *kernels; /* NULL: the fp32 yardstick path */
    char description[256];
};

/* The folded batch norm of an output: z = scale * acc + offset, the product
 * rounded before the add (two statements: never fused into one rounding), as
 * every variant and the thresholds compute it. */
static inline float fmi_deploy_z(float acc, float scale, float offset)
{
    float product = acc * scale;
    return product + offset;
}

/* Records with weights (dense, conv). */
static inline int fmi_deploy_weighted(const fm_deploy_layer *L)
{
    return L->type == FM_DL_DENSE || L->type == FM_DL_CONV;
}
/* Values per example a record takes and gives (conv: before its pool). */
int64_t fmi_deploy_values_in(const fm_deploy_layer *L);
int64_t fmi_deploy_values_out(const fm_deploy_layer *L);

/* A deployed network with n_layers zeroed layers (the caller fills them). */
int fmi_deploy_alloc(int n_layers, fm_deploy **out);
/* Allocates L->packed (out * row_bytes, zeroed), scale, offset, and magnitudes
 * when L->levels > 0, from L->in, out, bits, levels (dense and conv records;
 * pool and gap records have none of these: nothing is allocated). */
int fmi_deploy_layer_alloc(fm_deploy_layer *L);
/* The value of weight code `code` of layer L (+-1, 0, or +-magnitude); fp32
 * layers have no codes. */
float fmi_deploy_code_value(const fm_deploy_layer *L, uint32_t code);
/* Code i of packed row j. */
uint32_t fmi_deploy_code(const fm_deploy_layer *L, int j, int i);
void fmi_deploy_set_code(fm_deploy_layer *L, int j, int i, uint32_t code);
/* Checks shapes, codes and chaining of every layer: FM_EFORMAT with a message
 * naming `origin` on the first problem. Used by the reader and the exporter. */
int fmi_deploy_validate(const fm_deploy *d, const char *origin);
/* Completes a network that passed fmi_deploy_validate: its description and its
 * kernel variant (FEWMUL_KERNELS or the best supported). Called by the reader
 * and the exporter. */
int fmi_deploy_finish(fm_deploy *deploy);
/* The sums acc with scale * acc + offset >= 0 (fmi_deploy_z, as the float
 * path rounds it), as a range lo <= acc <= hi: integer sums in [-n, n]
 * (binary weights on binary inputs), or any non-NaN float sum. z is monotone
 * in acc (rounding is): non-decreasing for scale > 0, non-increasing for scale
 * < 0, so the passing sums are an upper or a lower range, whose end is found
 * by bisection on the formula itself; for scale = 0 they are all finite sums
 * or none. An empty range has lo > hi. */
void fmi_sign_range_int(float scale, float offset, int32_t n, int32_t *lo, int32_t *hi);
void fmi_sign_range_float(float scale, float offset, float *lo, float *hi);
/* Bytes of the file fm_deploy_save would write. */
uint64_t fmi_deploy_serialized_bytes(const fm_deploy *d);

#endif
