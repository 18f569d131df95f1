/* infer_ref.c — the scalar reference of the inference kernels: the formulas of
 * infer.h written out one output and one addition at a time. It is the
 * specification the SIMD variants must equal bit for bit, and the variant that
 * runs everywhere. Products are stored in tables before they are added, so no
 * compiler may fuse a multiply and an add (that would round differently). */
#include "infer.h"
#include "ledger.h"

#include <string.h>

/* The 4-bit pattern of output j in group g: bit k for input 4g + k. Binary
 * layers: the +1 weights (sign = 0); ternary: the +1 (sign = 0) or -1 (sign = 1). */
static unsigned group_pattern(const fm_kernel_weights *w, int j, int g, int sign)
{
    const int groups_per_chunk = FM_KERNEL_CHUNK / FM_KERNEL_GROUP;
    size_t words_per_chunk = w->weights == FM_DW_TERNARY ? 2 : 1;
    size_t block = (size_t)(j / FM_KERNEL_BLOCK), lane = (size_t)(j % FM_KERNEL_BLOCK);
    size_t chunk = (size_t)(g / groups_per_chunk);
    uint32_t word = w->words[((block * w->chunks + chunk) * words_per_chunk + (size_t)sign) *
                                 FM_KERNEL_BLOCK + lane];
    return (word >> (4 * (g % groups_per_chunk))) & 15u;
}

/* The four inputs of group g; the last group is padded with zeros. */
static void group_inputs(const float *x, int in, int g, float v[4])
{
    for (int k = 0; k < 4; k++) {
        int i = 4 * g + k;
        v[k] = i < in ? x[i] : 0.0f;
    }
}

/* T[b] = p01[b & 3] + p23[b >> 2], the sum of the four inputs each signed by
 * its bit of b (1: +x, 0: -x). */
void fmi_binary_table(const float v[4], float T[16])
{
    float p01[4], p23[4];
    for (int c = 0; c < 4; c++) {
        p01[c] = (c & 1 ? v[0] : -v[0]) + (c & 2 ? v[1] : -v[1]);
        p23[c] = (c & 1 ? v[2] : -v[2]) + (c & 2 ? v[3] : -v[3]);
    }
    for (int b = 0; b < 16; b++)
        T[b] = p01[b & 3] + p23[b >> 2];
}

/* S[b] = q01[b & 3] + q23[b >> 2], the sum of the inputs whose bit of b is set. */
void fmi_subset_table(const float v[4], float S[16])
{
    float q01[4], q23[4];
    for (int c = 0; c < 4; c++) {
        q01[c] = (c & 1 ? v[0] : 0.0f) + (c & 2 ? v[1] : 0.0f);
        q23[c] = (c & 1 ? v[2] : 0.0f) + (c & 2 ? v[3] : 0.0f);
    }
    for (int b = 0; b < 16; b++)
        S[b] = q01[b & 3] + q23[b >> 2];
}

/* Counting builds: what one call of real_binary (1 lookup) or real_ternary
 * (2) executes. Per group, the table: 8 pair sums of two selected (signed or
 * zeroed) inputs and 16 sums of two pairs; per group and output, each lookup
 * among 16 entries (counted as the 15 two-way selects of a select tree) and
 * its add. The ledger declares the same (fmi_mulfree_cost_product). */
static void tally_group_lookups(const fm_kernel_weights *w, int lookups)
{
    uint64_t groups = (uint64_t)w->groups, outputs = (uint64_t)w->out;
    FM_TALLY(FM_OP_SIGN, groups * 16 + groups * outputs * lookups * 15);
    FM_TALLY(FM_OP_FADD, groups * 24 + groups * outputs * lookups);
    (void)groups;
    (void)outputs;
    (void)lookups;
}

/* Each loop below runs over the groups (or inputs) outside and the outputs
 * inside: every output still adds its terms in index order, and the adds of
 * different outputs do not wait for one another. */
static void real_binary(const fm_kernel_weights *w, const float *x, float *acc, float *tables)
{
    for (int g = 0; g < w->groups; g++) {
        float v[4];
        group_inputs(x, w->in, g, v);
        fmi_binary_table(v, tables + 16 * (size_t)g);
    }
    for (int j = 0; j < w->out; j++)
        acc[j] = 0.0f;
    for (int g = 0; g < w->groups; g++) {
        const float *T = tables + 16 * (size_t)g;
        for (int j = 0; j < w->out; j++)
            acc[j] += T[group_pattern(w, j, g, 0)];
    }
    tally_group_lookups(w, 1);
}

static void real_ternary(const fm_kernel_weights *w, const float *x, float *acc, float *tables)
{
    for (int g = 0; g < w->groups; g++) {
        float v[4];
        group_inputs(x, w->in, g, v);
        fmi_subset_table(v, tables + 16 * (size_t)g);
    }
    for (int j = 0; j < w->out; j++)
        acc[j] = 0.0f;
    for (int g = 0; g < w->groups; g++) {
        const float *S = tables + 16 * (size_t)g;
        for (int j = 0; j < w->out; j++) {
            acc[j] += S[group_pattern(w, j, g, 0)];
            acc[j] -= S[group_pattern(w, j, g, 1)];
        }
    }
    tally_group_lookups(w, 2);
}

/* v negated when `negative` (1): its sign bit flipped, exactly what -v is,
 * without a branch on random signs. */
static float with_sign(float v, unsigned negative)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    bits ^= (uint32_t)negative << 31;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* P_i[index] = x_i * m[index]: the only multiplies, `stride` per input, kept
 * in a function of their own (never inlined or cloned) so that a disassembly
 * shows none anywhere else (tests/no_float_mul.sh). */
#if defined(__clang__)
__attribute__((noinline))
#elif defined(__GNUC__)
__attribute__((noinline, noclone))
#endif
static void synapse_products(const fm_kernel_weights *w, const float *x, float *tables)
{
    const size_t stride = (size_t)w->table_stride;
    for (int i = 0; i < w->in; i++)
        for (size_t index = 0; index < stride; index++)
            tables[(size_t)i * stride + index] = x[i] * w->magnitudes[index];
}

static void real_synapse(const fm_kernel_weights *w, const float *x, float *acc, float *tables)
{
    const size_t stride = (size_t)w->table_stride;
    synapse_products(w, x, tables);
    for (int j = 0; j < w->out; j++)
        acc[j] = 0.0f;
    for (int i = 0; i < w->in; i++) {
        const float *P = tables + (size_t)i * stride;
        for (int j = 0; j < w->out; j++) {
            size_t block = (size_t)(j / FM_KERNEL_BLOCK), lane = (size_t)(j % FM_KERNEL_BLOCK);
            uint8_t code = w->codes[(block * (size_t)w->in + (size_t)i) * FM_KERNEL_BLOCK + lane];
            acc[j] += with_sign(P[code & 0x7fu], code >> 7);
        }
    }
    /* counting builds: the products; per weight a lookup among `stride`
     * entries (stride - 1 selects), the sign flip and the add */
    uint64_t terms = (uint64_t)w->in * (uint64_t)w->out;
    FM_TALLY(FM_OP_FMUL, (uint64_t)w->in * stride);
    FM_TALLY(FM_OP_SIGN, terms * stride);
    FM_TALLY(FM_OP_FADD, terms);
    (void)terms;
}

void fmi_infer_real_ref(const fm_kernel_weights *w, const float *x, float *acc, float *scratch)
{
    switch (w->weights) {
    case FM_DW_BINARY: real_binary(w, x, acc, scratch); break;
    case FM_DW_TERNARY: real_ternary(w, x, acc, scratch); break;
    case FM_DW_SYNAPSE: real_synapse(w, x, acc, scratch); break;
    case FM_DW_FP32:
    default: memset(acc, 0, (size_t)w->out * sizeof *acc); break;
    }
}

/* Set bits of v: the popcnt instruction where the build targets it, else
 * counted in parallel within v (pairs, nibbles, bytes) rather than per bit. */
static int popcount32(uint32_t v)
{
#if defined(__POPCNT__) && (defined(__GNUC__) || defined(__clang__))
    return __builtin_popcount(v);
#else
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0f0f0f0fu;
    return (int)((v + (v >> 8) + (v >> 16) + (v >> 24)) & 0x3fu);
#endif
}

void fmi_infer_bits_ref(const fm_kernel_weights *w, const uint64_t *a, int32_t *acc)
{
    if (w->weights != FM_DW_BINARY) {
        memset(acc, 0, (size_t)w->out * sizeof *acc);
        return;
    }
    for (int j = 0; j < w->out; j++) {
        size_t block = (size_t)(j / FM_KERNEL_BLOCK), lane = (size_t)(j % FM_KERNEL_BLOCK);
        int mismatches = 0; /* inputs where input and weight differ: each adds -1 */
        for (int c = 0; c < w->chunks; c++) {
            uint32_t input_bits = (uint32_t)(a[c / 2] >> (32 * (c % 2)));
            uint32_t weight_bits = w->words[(block * w->chunks + (size_t)c) * FM_KERNEL_BLOCK + lane];
            mismatches += popcount32(input_bits ^ weight_bits);
        }
        acc[j] = w->in - 2 * mismatches;
    }
}

/* ---- the weight gradient of quantized back-prop ---------------------------- */

/* q * e for q = +-0 or +-2^k, as infer.h specifies: e's bits plus k in the
 * exponent field plus q's sign bit (q's bits less those of 1.0f are exactly
 * (k << 23) plus the sign), or a zero when either factor is one. */
static inline float pow2_product(float q, float e)
{
    uint32_t qb, eb;
    memcpy(&qb, &q, sizeof qb);
    memcpy(&eb, &e, sizeof eb);
    if ((qb & 0x7fffffffu) == 0 || (eb & 0x7fffffffu) == 0)
        return 0.0f;
    uint32_t tb = eb + (qb - 0x3f800000u);
    float t;
    memcpy(&t, &tb, sizeof t);
    return t;
}

void fmi_pow2_grad_ref(const float *q, const float *e, float *dw, int batch, int in, int out, int i0,
                      int i1)
{
    for (int i = i0; i < i1; i++)
        for (int j = 0; j < out; j++) {
            float acc = 0.0f;
            for (int b = 0; b < batch; b++)
                acc += pow2_product(q[(size_t)b * in + i], e[(size_t)b * out + j]);
            dw[(size_t)(i - i0) * out + j] = acc;
        }
    /* per term: the exponent add (with the sign), the zero selects of q and e, the add */
    uint64_t terms = (uint64_t)(i1 > i0 ? i1 - i0 : 0) * (uint64_t)out * (uint64_t)batch;
    FM_TALLY(FM_OP_SHIFT, terms);
    FM_TALLY(FM_OP_SIGN, 2 * terms);
    FM_TALLY(FM_OP_FADD, terms);
    (void)terms;
}
