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

DEFINE_ROOFLINE(float, f32)
DEFINE_ROOFLINE(double, f64)
