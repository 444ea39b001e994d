/* mixed.c: mixed-precision optimizer steps; declared and documented in mixed.h.
 *
 * No optimizer math here: each step decodes a block of elements into float32 buffers, runs the
 * float32 step of optim_template.h (through its public fastopt_<algo>_f32 function) on the block,
 * and encodes the state and the model copy back. The steps are made from the table of
 * optim_table.h (DEFINE_MIXED), one per line. The rounding and random-stream functions are
 * those of fastopt/backends/elements/bits.py, in uint32 arithmetic (wrapping multiplication is
 * exactly the int64-safe mul32 there).
 */
#include <string.h>

#include "fastopt.h"
#include "loop_template.h"
#include "mixed.h"
#include "bits_inline.h"

/* FASTOPT_MIXED_BLOCK (fastopt/_core/config.py, passed with -D): elements per block. The decoded
 * buffers (up to four of a block's floats) live on the stack and in L1; a block is below
 * FASTOPT_PARALLEL_THRESHOLD, so the float32 step runs it on the calling thread. */
#ifndef FASTOPT_MIXED_BLOCK
#error "tunables missing: build with fastopt/backends/c/build.py (-D from fastopt/_core/config.py)"
#endif
#if FASTOPT_MIXED_BLOCK >= FASTOPT_PARALLEL_THRESHOLD
#error "FASTOPT_MIXED_BLOCK must be below FASTOPT_PARALLEL_THRESHOLD"
#endif
#define MIXED_BLOCK FASTOPT_MIXED_BLOCK


static inline uint32_t fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static inline uint32_t random32(uint32_t key, int64_t index)
{
    const uint64_t i = (uint64_t)index;
    return fmix32(key ^ fmix32((uint32_t)i) ^ (uint32_t)(i >> 32));
}

/* bfloat16 bits of u, rounded up in magnitude when the dropped bits plus increment carry: ties to
 * even with 0x7FFF + lsb, stochastic with 16 random bits. A select, so loops of it vectorize. */
static inline uint32_t bf16_round(uint32_t u, uint32_t increment)
{
    const uint32_t nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
    return nan ? (u >> 16) | 0x40u : (u + increment) >> 16;   /* NaN stays NaN, made quiet */
}

static inline uint32_t bf16_nearest(uint32_t u)
{
    return bf16_round(u, 0x7FFFu + ((u >> 16) & 1u));
}

/* float16 bits of u, rounded to nearest, ties to even (as numpy), branch-free so that loops of it
 * vectorize: a normal by integer rounding of the 13 dropped bits, a subnormal by the float32
 * addition x + 0.5, whose spacing there is float16's subnormal unit (2^-24) and which rounds the
 * same way; a NaN keeps its top payload bits as numpy keeps them. */
static inline uint32_t f16_nearest(uint32_t u)
{
    const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    const uint32_t normal = (a - 0x38000000u + 0xFFFu + ((a >> 13) & 1u)) >> 13;
    const uint32_t subnormal = bits_of(float_of(a) + 0.5f) - 0x3F000000u;
    uint32_t h = a >= 0x38800000u ? normal : subnormal;
    h = a >= 0x477FF000u ? 0x7C00u : h;                       /* 65520 and up, and inf */
    const uint32_t payload = (a & 0x7FFFFFu) >> 13;
    const uint32_t nan = 0x7C00u + (payload ? payload : 1u);
    return sign | (a > 0x7F800000u ? nan : h);
}

static inline uint32_t f16_stochastic(uint32_t u, uint32_t rnd)
{
    const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u)
        return f16_nearest(u);
    if (a >= 0x47800000u)                                     /* 65536 and up */
        return sign | 0x7C00u;
    if (a >= 0x38800000u)
        return sign | (((a - 0x38000000u) + (rnd >> 19)) >> 13);
    const uint32_t shift = 126 - (a >> 23);
    if (shift > 32)
        return sign;
    const uint64_t m = (a & 0x7FFFFFu) | 0x800000u;
    const uint64_t r = shift == 32 ? rnd : rnd >> (32 - shift);
    return sign | (uint32_t)((m + r) >> shift);
}

/* float32 bits of the float16 bits h (exact), branch-free so that loops of it vectorize: a
 * subnormal is its mantissa times 2^-24, exactly. */
static inline uint32_t f16_to_f32(uint32_t h)
{
    const uint32_t sign = (h & 0x8000u) << 16, e = h & 0x7C00u;
    const uint32_t big = ((h & 0x7FFFu) << 13) + (e == 0x7C00u ? 0xE0u << 23 : 0x70u << 23);
    const uint32_t small = bits_of((float)(h & 0x3FFu) * 0x1p-24f);
    return sign | (e == 0 ? small : big);
}

static inline float load(const void *array, int fmt, int64_t i)
{
    if (fmt == 0)
        return ((const float *)array)[i];
    const uint32_t h = ((const uint16_t *)array)[i];
    return float_of(fmt == 1 ? f16_to_f32(h) : h << 16);
}

/* The block helpers below run one loop per format, so that the bfloat16 ones vectorize. */

/* Elements [lo, lo + len) of a gradient or state array as float32: the array's own memory when it
 * is float32 (updated in place by the step), else decoded into buf. NULL stays NULL. */
static float *load_block(float *buf, const void *array, int fmt, int64_t lo, int64_t len)
{
    if (array == NULL || fmt == 0)
        return array == NULL ? NULL : (float *)array + lo;
    const uint16_t *h = (const uint16_t *)array + lo;
    if (fmt == 2)
        for (int64_t j = 0; j < len; j++)
            buf[j] = float_of((uint32_t)h[j] << 16);
    else
        for (int64_t j = 0; j < len; j++)
            buf[j] = float_of(f16_to_f32(h[j]));
    return buf;
}

/* Stores a block of updated state, rounded to nearest (nothing to do for float32: in place). */
static void store_block(void *array, int fmt, int64_t lo, int64_t len, const float *values)
{
    if (array == NULL || fmt == 0)
        return;
    uint16_t *out = (uint16_t *)array + lo;
    if (fmt == 2)
        for (int64_t j = 0; j < len; j++)
            out[j] = (uint16_t)bf16_nearest(bits_of(values[j]));
    else
        for (int64_t j = 0; j < len; j++)
            out[j] = (uint16_t)f16_nearest(bits_of(values[j]));
}

/* model[lo + j] = round(master[lo + j]); element i's random bits are random32(key, i). */
static void store_model(uint16_t *model, int fmt, int64_t lo, int64_t len, const float *master,
                        int stochastic, uint32_t key)
{
    uint16_t *out = model + lo;
    const float *x = master + lo;
    if (fmt == 2 && stochastic)
        for (int64_t j = 0; j < len; j++)
            out[j] = (uint16_t)bf16_round(bits_of(x[j]), random32(key, lo + j) >> 16);
    else if (fmt == 2)
        for (int64_t j = 0; j < len; j++)
            out[j] = (uint16_t)bf16_nearest(bits_of(x[j]));
    else if (stochastic)
        for (int64_t j = 0; j < len; j++)
            out[j] = (uint16_t)f16_stochastic(bits_of(x[j]), random32(key, lo + j));
    else
        for (int64_t j = 0; j < len; j++)
            out[j] = (uint16_t)f16_nearest(bits_of(x[j]));
}

/* FOR_EACH_BLOCK(lo, len, body): runs body for the blocks [lo, lo + len) of MIXED_BLOCK elements
 * (the last one shorter) that cover [0, n) in the enclosing step, split statically over the OpenMP
 * threads when n >= FASTOPT_PARALLEL_THRESHOLD. */
#ifdef _OPENMP
#define PARALLEL_BLOCKS \
    _Pragma("omp parallel for schedule(static) if (n >= FASTOPT_PARALLEL_THRESHOLD)")
#else
#define PARALLEL_BLOCKS
#endif
#define FOR_EACH_BLOCK(lo, len, ...)                                                              \
    do {                                                                                          \
        const int64_t blocks = (n + MIXED_BLOCK - 1) / MIXED_BLOCK;                               \
        PARALLEL_BLOCKS                                                                           \
        for (int64_t block = 0; block < blocks; block++) {                                        \
            const int64_t lo = block * MIXED_BLOCK;                                               \
            const int64_t len = n - lo < MIXED_BLOCK ? n - lo : MIXED_BLOCK;                      \
            __VA_ARGS__                                                                           \
        }                                                                                         \
    } while (0)

/* DEFINE_MIXED(name, states, scalars, modes): fastopt_<name>_mixed, from its line of
 * FASTOPT_ELEMENTWISE: per block, the gradient and the state arrays the step uses decoded (the
 * others NULL), fastopt_<name>_f32 on them, the state and the model copy stored back. */
#define DEFINE_MIXED(name, states, scalars, modes)                                                 \
    void fastopt_##name##_mixed(FASTOPT_MIXED_PARAMS(states, scalars))                             \
    {                                                                                              \
        FASTOPT_PP_EACH(USED_STATE, ~, states)                                                     \
        FOR_EACH_BLOCK(lo, len, {                                                                  \
            float grad_block[MIXED_BLOCK];                                                         \
            const float *g = load_block(grad_block, grad, grad_fmt, lo, len);                      \
            FASTOPT_PP_EACH(LOAD_STATE, ~, states)                                                 \
            fastopt_##name##_f32(len, master + lo, g FASTOPT_PP_EACH(STATE_BLOCK, ~, states)       \
                                 FASTOPT_PP_EACH(FASTOPT_SCALAR_ARG, ~, scalars), grad_scale);     \
            FASTOPT_PP_EACH(STORE_STATE, ~, states)                                                \
            store_model(model, model_fmt, lo, len, master, stochastic, (uint32_t)key);             \
        });                                                                                        \
    }
/* <array>_used: the state array, or NULL when the step does not use it */
#define USED_STATE(ctx, index, array, ...) void *const array##_used = (__VA_ARGS__) ? array : NULL;
#define LOAD_STATE(ctx, index, array, ...)                                                         \
    float array##_block[MIXED_BLOCK];                                                              \
    float *const array##_f32 = load_block(array##_block, array##_used, state_fmt, lo, len);
#define STATE_BLOCK(ctx, index, array, ...) , array##_f32
#define STORE_STATE(ctx, index, array, ...)                                                        \
    store_block(array##_used, state_fmt, lo, len, array##_f32);

FASTOPT_ELEMENTWISE(DEFINE_MIXED)

#undef FOR_EACH_BLOCK
#undef PARALLEL_BLOCKS

double fastopt_sum_of_squares_mixed(int64_t n, const void *grad, int grad_fmt)
{
    const int64_t chunks = (n + FASTOPT_REDUCTION_CHUNK - 1) / FASTOPT_REDUCTION_CHUNK;
    double total = 0;
    for (int64_t first = 0; first < chunks; first += FASTOPT_REDUCTION_BATCH) {
        double partial[FASTOPT_REDUCTION_BATCH];
        const int64_t count = chunks - first < FASTOPT_REDUCTION_BATCH ? chunks - first
                                                                      : FASTOPT_REDUCTION_BATCH;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n >= FASTOPT_PARALLEL_THRESHOLD)
#endif
        for (int64_t c = 0; c < count; c++) {
            const int64_t lo = (first + c) * FASTOPT_REDUCTION_CHUNK;
            const int64_t hi = lo + FASTOPT_REDUCTION_CHUNK < n ? lo + FASTOPT_REDUCTION_CHUNK : n;
            double s = 0;
            for (int64_t i = lo; i < hi; i++) {
                const double x = load(grad, grad_fmt, i);
                s += x * x;
            }
            partial[c] = s;
        }
        for (int64_t c = 0; c < count; c++)
            total += partial[c];
    }
    return total;
}
