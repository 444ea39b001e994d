/* quant8.c: optimizer steps with 8-bit blockwise state; declared and documented in quant8.h.
 *
 * No optimizer math here: per block, the used state is decoded into float32 buffers on the
 * stack, the float32 step of optim_template.h (through its public fastopt_<algo>_f32) runs on the
 * block, and the state is encoded back. The steps are made from the table of optim_table.h
 * (DEFINE_QUANT8), one per line.
 */
#include <stddef.h>
#include <string.h>

#include "fastopt.h"
#include "quant8.h"
#include "bits_inline.h"

#ifndef FASTOPT_QUANT8_BLOCK
#error "tunables missing: build with fastopt/backends/c/build.py (-D from fastopt/_core/config.py)"
#endif
#if FASTOPT_QUANT8_BLOCK >= FASTOPT_PARALLEL_THRESHOLD
#error "FASTOPT_QUANT8_BLOCK must be below FASTOPT_PARALLEL_THRESHOLD"
#endif
#define QUANT8_BLOCK FASTOPT_QUANT8_BLOCK

/* Buckets of the lookup tables (fastopt/backends/numpy/quant8.py: LUT_SHIFT, LUT_SIDE). */
#define LUT_SHIFT 17
#define LUT_SIDE ((0x3F800000u >> LUT_SHIFT) + 2)


/* numpy.maximum of the elements (fastopt/backends/elements/optim.py): a NaN a wins. */
static inline float maximum(float a, float b) { return (a >= b || a != a) ? a : b; }

/* #{k : t_k < y} over the midpoints t = map + 256: the nearest code (0 for NaN), from the lookup
 * table's entry of y's bucket and two midpoints. A y a rounding above 1 falls in the bucket of 1,
 * as clamping it to 1 would. */
static inline uint8_t code_of(float y, const float *map, const int32_t *lut)
{
    const float *t = map + 256;
    const uint32_t u = bits_of(y), bucket = (u & 0x7FFFFFFFu) >> LUT_SHIFT;
    const int base = lut[(bucket < LUT_SIDE - 1 ? bucket : LUT_SIDE - 1) + (u >> 31) * LUT_SIDE];
    return (uint8_t)(base + (t[base] < y) + (t[base + 1] < y));
}

/* The used state of block [lo, lo + len) as float32 in buf; NULL stays NULL. */
static float *decode_block(float *buf, const uint8_t *codes, const float *absmax,
                           const float *map, int64_t block, int64_t lo, int64_t len)
{
    if (codes == NULL)
        return NULL;
    const float a = absmax[block];
#ifdef _OPENMP
#pragma omp simd
#endif
    for (int64_t j = 0; j < len; j++)
        buf[j] = map[codes[lo + j]] * a;
    return buf;
}

static void encode_block(const float *buf, uint8_t *codes, float *absmax, const float *map,
                         const int32_t *lut, int64_t block, int64_t lo, int64_t len)
{
    if (codes == NULL)
        return;
    uint32_t m = 0;
    for (int64_t j = 0; j < len; j++) {
        const uint32_t u = bits_of(buf[j]) & 0x7FFFFFFFu;
        m = u > m ? u : m;
    }
    const float a = float_of(m);
    absmax[block] = a;
    const float r = 1.0f / maximum(a, 1e-38f);
#ifdef _OPENMP
#pragma omp simd
#endif
    for (int64_t j = 0; j < len; j++)
        codes[lo + j] = code_of(buf[j] * r, map, lut);
}

#ifdef _OPENMP
#define PARALLEL_BLOCKS \
    _Pragma("omp parallel for schedule(static) if (n >= FASTOPT_PARALLEL_THRESHOLD)")
#else
#define PARALLEL_BLOCKS
#endif

/* DEFINE_QUANT8(name, states, scalars, modes): fastopt_<name>_quant8, from its line of
 * FASTOPT_ELEMENTWISE: per block, the used state decoded (the rest NULL), fastopt_<name>_f32 on
 * the block, the state encoded back. */
#define DEFINE_QUANT8(name, states, scalars, modes)                                                \
    void fastopt_##name##_quant8(FASTOPT_QUANT8_PARAMS(states, scalars))                           \
    {                                                                                              \
        FASTOPT_PP_EACH(USED_CODES, ~, states)                                                     \
        const int64_t blocks = (n + QUANT8_BLOCK - 1) / QUANT8_BLOCK;                              \
        PARALLEL_BLOCKS                                                                            \
        for (int64_t block = 0; block < blocks; block++) {                                         \
            const int64_t lo = block * QUANT8_BLOCK;                                               \
            const int64_t len = n - lo < QUANT8_BLOCK ? n - lo : QUANT8_BLOCK;                     \
            FASTOPT_PP_EACH(DECODE_STATE, ~, states)                                               \
            fastopt_##name##_f32(len, param + lo, grad + lo                                        \
                                 FASTOPT_PP_EACH(STATE_BLOCK, ~, states)                           \
                                 FASTOPT_PP_EACH(FASTOPT_SCALAR_ARG, ~, scalars), grad_scale);     \
            FASTOPT_PP_EACH(ENCODE_STATE, ~, states)                                               \
        }                                                                                          \
    }
/* <array>_used: the codes, or NULL when the step does not use the state */
#define USED_CODES(ctx, index, array, ...)                                                         \
    uint8_t *const array##_used = (__VA_ARGS__) ? array : NULL;
#define DECODE_STATE(ctx, index, array, ...)                                                       \
    float array##_block[QUANT8_BLOCK];                                                             \
    float *const array##_f32 = decode_block(array##_block, array##_used, array##_absmax,           \
                                            array##_map, block, lo, len);
#define STATE_BLOCK(ctx, index, array, ...) , array##_f32
#define ENCODE_STATE(ctx, index, array, ...)                                                       \
    encode_block(array##_f32, array##_used, array##_absmax, array##_map, array##_lut, block, lo,  \
                 len);

FASTOPT_ELEMENTWISE(DEFINE_QUANT8)
