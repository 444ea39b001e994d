/* landscape.c: the fused landscape kernel of landscape.h, written once for float and double.
 *
 * A point's rows run in blocks of RB: the block's hidden layer is built rows-last (z[j][r], one
 * vector of rows per hidden unit, from parts laid out the same way), so the output layer is a
 * register tile: RB x CB accumulators, each hidden unit's row vector multiplied by CB broadcast
 * output weights. Every output is a sum over j in order (no reassociation), fused multiply-adds
 * where the target has them. The softmax's exponentials run as a vectorized polynomial over the
 * block's rows (vexp), the logarithm once per row. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "landscape.h"

#if !defined(FASTOPT_LANDSCAPE_ROWS) || !defined(FASTOPT_LANDSCAPE_CLASSES)
#error "tunables missing: build with fastopt/backends/c/build.py (-D from fastopt/_core/config.py)"
#endif
#define RB FASTOPT_LANDSCAPE_ROWS
#define CB FASTOPT_LANDSCAPE_CLASSES

enum { IDENTITY, RELU, TANH, SIGMOID, GELU };
enum { CROSS_ENTROPY, MSE };
#define M_SQRT1_2_ 0.70710678118654752440

#ifdef __FMA__
#define MADD_f32(a, b, c) fmaf(a, b, c)
#define MADD_f64(a, b, c) fma(a, b, c)
#else
#define MADD_f32(a, b, c) ((a) * (b) + (c))
#define MADD_f64(a, b, c) ((a) * (b) + (c))
#endif

/* exp(x) for x <= 0 (a logit minus its row's maximum), vectorizable: x = n ln2 + r with
 * |r| <= ln2 / 2 (n rounded by adding and subtracting 1.5 * 2^52: floor does not vectorize
 * under -std=c99), e^r by its Taylor series to r^11 (truncation below 1e-14 relative), times 2^n
 * built in the exponent bits. Below -700 the result is e^-700 (~1e-304, next to the 1 that the
 * maximum contributes); NaN stays NaN. */
static inline double vexp(double x)
{
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double y = x < -700.0 ? -700.0 : x;
    const double shift = 6755399441055744.0;
    const double n = (y * 1.44269504088896340736 + shift) - shift;
    const double r = (y - n * ln2_hi) - n * ln2_lo;
    double p = 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const int64_t bits = ((int64_t)n + 1023) << 52;
    const union { int64_t i; double d; } scale = {bits};
    return x == x ? p * scale.d : x;
}

#define AFFINE_TWO_LAYER(T, SUFFIX, TANH_, EXP_)                                                 \
    int fastopt_affine_two_layer_##SUFFIX(                                                      \
        int64_t points, int64_t M, int64_t n, int64_t h, int64_t C, const T *parts,            \
        const T *weights, const T *b1, const T *w2t, const T *b2, const int64_t *labels,       \
        const T *targets, int activation, int loss, double *out_loss, int64_t *out_wrong)      \
    {                                                                                           \
        const int64_t blocks = (n + RB - 1) / RB, Cp = (C + CB - 1) / CB * CB;                  \
        int failed = 0;                                                                         \
        _Pragma("omp parallel for schedule(dynamic, 1) reduction(| : failed)")                  \
        for (int64_t k = 0; k < points; k++) {                                                  \
            /* z: h x RB; w: the output weights Cp x h, zero-padded; bias: Cp; o: Cp x RB */    \
            T *z = malloc((size_t)(h * RB + Cp * h + Cp + Cp * RB) * sizeof(T));                \
            if (!z) {                                                                           \
                failed = 1;                                                                     \
                continue;                                                                       \
            }                                                                                   \
            T *w = z + h * RB, *bias = w + Cp * h, *o = bias + Cp;                              \
            memcpy(w, w2t + k * C * h, (size_t)(C * h) * sizeof(T));                            \
            memset(w + C * h, 0, (size_t)((Cp - C) * h) * sizeof(T));                           \
            memcpy(bias, b2 + k * C, (size_t)C * sizeof(T));                                    \
            memset(bias + C, 0, (size_t)(Cp - C) * sizeof(T));                                  \
            const T *wk = weights + k * M, *b1k = b1 + k * h;                                   \
            double total = 0;                                                                   \
            int64_t wrong = 0;                                                                  \
            for (int64_t blk = 0; blk < blocks; blk++) {                                        \
                const int64_t i0 = blk * RB, rows = n - i0 < RB ? n - i0 : RB;                  \
                /* the first layer: a combination of the shared products */                     \
                for (int64_t j = 0; j < h; j++) {                                               \
                    T *zj = z + j * RB;                                                         \
                    const T *p0 = parts + (blk * h + j) * RB;                                   \
                    _Pragma("omp simd")                                                         \
                    for (int r = 0; r < RB; r++)                                                \
                        zj[r] = b1k[j] + wk[0] * p0[r];                                         \
                    for (int64_t q = 1; q < M; q++) {                                           \
                        const T *pq = parts + ((q * blocks + blk) * h + j) * RB;                \
                        const T a = wk[q];                                                      \
                        _Pragma("omp simd")                                                     \
                        for (int r = 0; r < RB; r++)                                            \
                            zj[r] += a * pq[r];                                                 \
                    }                                                                           \
                }                                                                               \
                switch (activation) {                                                           \
                case RELU:                                                                      \
                    _Pragma("omp simd")                                                         \
                    for (int64_t e = 0; e < h * RB; e++)                                        \
                        z[e] = z[e] > 0 ? z[e] : 0;                                             \
                    break;                                                                      \
                case TANH:                                                                      \
                    for (int64_t e = 0; e < h * RB; e++)                                        \
                        z[e] = TANH_(z[e]);                                                     \
                    break;                                                                      \
                case SIGMOID:                                                                   \
                    for (int64_t e = 0; e < h * RB; e++)                                        \
                        z[e] = (T)1 / ((T)1 + EXP_(-z[e]));                                     \
                    break;                                                                      \
                case GELU: /* z Phi(z), in double as the reference */                           \
                    for (int64_t e = 0; e < h * RB; e++)                                        \
                        z[e] = (T)(0.5 * (double)z[e] * (1.0 + erf((double)z[e] * M_SQRT1_2_))); \
                    break;                                                                      \
                default: break;                                                                 \
                }                                                                               \
                /* the output layer: o[c][r] = bias[c] + sum_j z[j][r] w[c][j], a CB x RB tile */ \
                for (int64_t c0 = 0; c0 < Cp; c0 += CB) {                                       \
                    T acc[CB][RB];                                                              \
                    for (int c = 0; c < CB; c++)                                                \
                        for (int r = 0; r < RB; r++)                                            \
                            acc[c][r] = bias[c0 + c];                                           \
                    for (int64_t j = 0; j < h; j++) {                                           \
                        const T *zj = z + j * RB;                                               \
                        for (int c = 0; c < CB; c++) {                                          \
                            const T wc = w[(c0 + c) * h + j];                                   \
                            _Pragma("omp simd")                                                 \
                            for (int r = 0; r < RB; r++)                                        \
                                acc[c][r] = MADD_##SUFFIX(zj[r], wc, acc[c][r]);                \
                        }                                                                       \
                    }                                                                           \
                    for (int c = 0; c < CB; c++)                                                \
                        memcpy(o + (c0 + c) * RB, acc[c], sizeof acc[c]);                       \
                }                                                                               \
                if (loss == CROSS_ENTROPY) {                                                    \
                    double m[RB], e[RB];                                                        \
                    for (int r = 0; r < RB; r++) {                                              \
                        m[r] = o[r];                                                            \
                        e[r] = 0;                                                               \
                    }                                                                           \
                    for (int64_t c = 1; c < C; c++)                                             \
                        for (int r = 0; r < RB; r++)                                            \
                            m[r] = o[c * RB + r] > m[r] ? o[c * RB + r] : m[r];                 \
                    for (int64_t c = 0; c < C; c++) {                                           \
                        _Pragma("omp simd")                                                     \
                        for (int r = 0; r < RB; r++)                                            \
                            e[r] += vexp((double)o[c * RB + r] - m[r]);                         \
                    }                                                                           \
                    for (int r = 0; r < rows; r++) {                                            \
                        int64_t best = 0;                                                       \
                        for (int64_t c = 1; c < C; c++)                                         \
                            if (o[c * RB + r] > o[best * RB + r])                               \
                                best = c;                                                       \
                        const int64_t y = labels[i0 + r];                                       \
                        total += log(e[r]) - ((double)o[y * RB + r] - m[r]);                    \
                        wrong += best != y;                                                     \
                    }                                                                           \
                } else {                                                                        \
                    for (int r = 0; r < rows; r++) {                                            \
                        const T *t = targets + (i0 + r) * C;                                    \
                        int64_t best = 0, target_best = 0;                                      \
                        for (int64_t c = 0; c < C; c++) {                                       \
                            const double d = (double)o[c * RB + r] - (double)t[c];              \
                            total += d * d;                                                     \
                            if (o[c * RB + r] > o[best * RB + r])                               \
                                best = c;                                                       \
                            if (t[c] > t[target_best])                                          \
                                target_best = c;                                                \
                        }                                                                       \
                        wrong += best != target_best;                                           \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
            out_loss[k] = total;                                                                \
            out_wrong[k] = wrong;                                                               \
            free(z);                                                                            \
        }                                                                                       \
        return failed ? -1 : 0;                                                                 \
    }

AFFINE_TWO_LAYER(float, f32, tanhf, expf)
AFFINE_TWO_LAYER(double, f64, tanh, exp)
