/* latent.c — the learning state kept in bfloat16 (fm_config.latent): each
 * value rounded stochastically to its top 16 bits, so that an update smaller
 * than half a unit in the last place (bop's momentum decays by a factor of
 * 1 - gamma = 0.999 a step, far below bf16's 2^-8) still moves the value by
 * the right amount on average instead of never. */
#include "optim.h"
#include "rng.h"

#include <string.h>

float fmi_round_bf16(float v, uint32_t draw)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    /* adding a uniform 16-bit draw to the bits below the kept ones carries
     * into them with probability (those bits) / 2^16: round up the magnitude
     * that often, truncate otherwise (sign-magnitude: the same for either
     * sign). A value of bf16's largest exponent could carry into infinity;
     * the momenta and clipped latent weights are nowhere near it. */
    bits = (bits + (draw >> 16)) & 0xffff0000u;
    memcpy(&v, &bits, sizeof v);
    return v;
}

void fmi_round_bf16_all(float *p, size_t n, const fm_latent_round *round)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        p[i] = fmi_round_bf16(p[i], fmi_rand_u32(round->key, round->first + i));
    FM_TALLY(FM_OP_RAND, n);
    FM_TALLY(FM_OP_IADD, n);
}

void fmi_round_bf16_cost(const fm_cost *c, uint64_t n)
{
    fmi_cost_ops(c, FM_OP_RAND, n);
    fmi_cost_ops(c, FM_OP_IADD, n);
}
