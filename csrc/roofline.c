/* roofline.c: same-traffic kernels and STREAM copy/triad; declared and documented in roofline.h.
 *
 * Built with the flags of optim.c (no -ffast-math, contraction off) and its loop structure, so
 * that a same-traffic kernel differs from an optimizer step only in its arithmetic: both use
 * FOR_EACH_ELEMENT from loop_template.h. Each precision is written out by one macro,
 * DEFINE_ROOFLINE(REAL, SUFFIX).
 */
#include <stdint.h>

#include "loop_template.h"
#include "roofline.h"

/* One multiply-add per written element: w[i] += scale * read[i], kept as in the steps (no FMA). */
#define BUMP(w) w[i] = w[i] + scale * read[i]

#define DEFINE_ROOFLINE(REAL, SUFFIX)                                                             \
    void fastopt_same_traffic_##SUFFIX(int64_t n, int n_written, REAL *w0_, REAL *w1_,            \
                                       REAL *w2_, REAL *w3_, const REAL *read_, REAL scale)       \
    {                                                                                             \
        REAL *restrict w0 = w0_, *restrict w1 = w1_, *restrict w2 = w2_, *restrict w3 = w3_;      \
        const REAL *restrict read = read_;                                                        \
        switch (n_written) {                                                                      \
        case 1: FOR_EACH_ELEMENT(i, { BUMP(w0); }); break;                                        \
        case 2: FOR_EACH_ELEMENT(i, { BUMP(w0); BUMP(w1); }); break;                              \
        case 3: FOR_EACH_ELEMENT(i, { BUMP(w0); BUMP(w1); BUMP(w2); }); break;                    \
        case 4: FOR_EACH_ELEMENT(i, { BUMP(w0); BUMP(w1); BUMP(w2); BUMP(w3); }); break;          \
        default: break;                                                                           \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    void fastopt_stream_copy_##SUFFIX(int64_t n, REAL *restrict dst, const REAL *restrict src)    \
    {                                                                                             \
        FOR_EACH_ELEMENT(i, dst[i] = src[i]);                                                     \
    }                                                                                             \
                                                                                                  \
    void fastopt_stream_triad_##SUFFIX(int64_t n, REAL *restrict a, const REAL *restrict b,       \
                                       const REAL *restrict c, REAL scalar)                       \
    {                                                                                             \
        FOR_EACH_ELEMENT(i, a[i] = b[i] + scalar * c[i]);                                         \
    }

/* The read kernels sum in REAL and in any order (omp simd reduction): a yardstick, not a result. */
#ifdef _OPENMP
#define READ_LOOP(REAL)                                                                           \
    if (n < FASTOPT_PARALLEL_THRESHOLD) {                                                         \
        _Pragma("omp simd reduction(+ : total)")                                                  \
        for (int64_t i = 0; i < n; i++)                                                           \
            total += src[i];                                                                      \
    } else {                                                                                      \
        _Pragma("omp parallel for simd schedule(static) reduction(+ : total)")                    \
        for (int64_t i = 0; i < n; i++)                                                           \
            total += src[i];                                                                      \
    }
#else
#define READ_LOOP(REAL)                                                                           \
    for (int64_t i = 0; i < n; i++)                                                               \
        total += src[i];
#endif

#define DEFINE_READ(REAL, SUFFIX)                                                                 \
    double fastopt_stream_read_##SUFFIX(int64_t n, const REAL *restrict src)                      \
    {                                                                                             \
        REAL total = 0;                                                                           \
        READ_LOOP(REAL)                                                                           \
        return total;                                                                             \
    }

DEFINE_READ(float, f32)
DEFINE_READ(double, f64)

DEFINE_ROOFLINE(float, f32)
DEFINE_ROOFLINE(double, f64)

/* The 8-bit step's traffic: its elementwise arrays in one loop, then the blocks' absmax. */
#define BUMP_CODE(c) c[i] = (uint8_t)(c[i] + 1)
#define BUMP_BLOCK(a) a[i] = a[i] + scale

void fastopt_same_traffic_quant8(int64_t n, int n_states, float *w_, const float *read_,
                                 uint8_t *c0_, uint8_t *c1_, uint8_t *c2_, float *a0_, float *a1_,
                                 float *a2_, float scale)
{
    float *restrict w = w_, *restrict a0 = a0_, *restrict a1 = a1_, *restrict a2 = a2_;
    const float *restrict read = read_;
    uint8_t *restrict c0 = c0_, *restrict c1 = c1_, *restrict c2 = c2_;
    switch (n_states) {
    case 1: FOR_EACH_ELEMENT(i, { BUMP(w); BUMP_CODE(c0); }); break;
    case 2: FOR_EACH_ELEMENT(i, { BUMP(w); BUMP_CODE(c0); BUMP_CODE(c1); }); break;
    case 3: FOR_EACH_ELEMENT(i, { BUMP(w); BUMP_CODE(c0); BUMP_CODE(c1); BUMP_CODE(c2); }); break;
    default: return;
    }
    const int64_t elements = n;
    n = (elements + FASTOPT_QUANT8_BLOCK - 1) / FASTOPT_QUANT8_BLOCK;   /* FOR_EACH_ELEMENT's n */
    switch (n_states) {
    case 1: FOR_EACH_ELEMENT(i, { BUMP_BLOCK(a0); }); break;
    case 2: FOR_EACH_ELEMENT(i, { BUMP_BLOCK(a0); BUMP_BLOCK(a1); }); break;
    case 3: FOR_EACH_ELEMENT(i, { BUMP_BLOCK(a0); BUMP_BLOCK(a1); BUMP_BLOCK(a2); }); break;
    default: break;
    }
}
