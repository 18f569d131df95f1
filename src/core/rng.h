/* rng.h — explicit-state random numbers. Two kinds:
 *  - fm_rng: a sequential splitmix64 stream (initialization, shuffling);
 *  - counter-based draws fmi_rand_u32(key, i): the i-th number of stream `key`
 *    depends on (key, i) alone, so sampling is reproducible whatever the thread
 *    count or SIMD width, and loops over i vectorize. */
#ifndef FEWMUL_RNG_H
#define FEWMUL_RNG_H

#include <stdint.h>

typedef struct fm_rng {
    uint64_t state;
} fm_rng;

/* The splitmix64 finalizer: a bijective 64-bit mix with full avalanche. */
static inline uint64_t fmi_mix64(uint64_t z)
{
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ULL;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z;
}

static inline void fmi_rng_seed(fm_rng *rng, uint64_t seed) { rng->state = fmi_mix64(seed ^ 0x6a09e667f3bcc909ULL); }

static inline uint64_t fmi_rng_next(fm_rng *rng)
{
    rng->state += 0x9e3779b97f4a7c15ULL;
    return fmi_mix64(rng->state);
}

/* Uniform in [0,1) with 24 random bits (exact in float). */
static inline float fmi_rng_uniform(fm_rng *rng) { return (float)(fmi_rng_next(rng) >> 40) * 0x1p-24f; }

/* Uniform integer in [0, n), n > 0, without modulo bias worth noting (n < 2^32). */
static inline uint32_t fmi_rng_below(fm_rng *rng, uint32_t n) { return (uint32_t)(((fmi_rng_next(rng) >> 32) * (uint64_t)n) >> 32); }

/* A stream key from a seed and up to three identifiers (layer, step, purpose). */
static inline uint64_t fmi_rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t k = fmi_mix64(seed + 0x9e3779b97f4a7c15ULL);
    k = fmi_mix64(k ^ (a * 0xd1b54a32d192ed03ULL));
    k = fmi_mix64(k ^ (b * 0x8cb92ba72f3d8dd7ULL));
    return fmi_mix64(k ^ (c * 0xa0761d6478bd642fULL));
}

/* The i-th 32-bit draw of stream `key`. */
static inline uint32_t fmi_rand_u32(uint64_t key, uint64_t i) { return (uint32_t)(fmi_mix64(key + i * 0x9e3779b97f4a7c15ULL) >> 32); }

/* The i-th uniform in [0,1) of stream `key`, 24 bits. */
static inline float fmi_rand_uniform(uint64_t key, uint64_t i) { return (float)(fmi_rand_u32(key, i) >> 8) * 0x1p-24f; }

#endif
