/* landscape.c: the fused landscape kernel of landscape.h, written once for float and double.
 * The sums over j are "omp simd" reductions: vectorized, in an order fixed by the build, the same
 * for every thread count. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "landscape.h"

enum { IDENTITY, RELU, TANH, SIGMOID, GELU };
enum { CROSS_ENTROPY, MSE };
#define M_SQRT1_2_ 0.70710678118654752440

#define AFFINE_TWO_LAYER(T, SUFFIX, EXP, TANH_)                                                  \
    int fastopt_affine_two_layer_##SUFFIX(                                                      \
        int64_t points, int64_t M, int64_t n, int64_t h, int64_t C, const T *parts,            \
        const T *weights, const T *b1, const T *w2t, const T *b2, const int64_t *labels,       \
        const T *targets, int activation, int loss, double *out_loss, int64_t *out_wrong)      \
    {                                                                                           \
        int failed = 0;                                                                         \
        _Pragma("omp parallel for schedule(dynamic, 1) reduction(| : failed)")                  \
        for (int64_t k = 0; k < points; k++) {                                                  \
            T *z = malloc((size_t)(h + C) * sizeof(T));                                         \
            if (!z) {                                                                           \
                failed = 1;                                                                     \
                continue;                                                                       \
            }                                                                                   \
            T *o = z + h;                                                                       \
            const T *wk = weights + k * M;                                                      \
            double total = 0;                                                                   \
            int64_t wrong = 0;                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                   \
                /* the first layer: a combination of the shared products */                     \
                const T *p0 = parts + i * h;                                                    \
                _Pragma("omp simd")                                                             \
                for (int64_t j = 0; j < h; j++)                                                 \
                    z[j] = b1[k * h + j] + wk[0] * p0[j];                                       \
                for (int64_t q = 1; q < M; q++) {                                               \
                    const T *pq = parts + (q * n + i) * h;                                      \
                    const T a = wk[q];                                                          \
                    _Pragma("omp simd")                                                         \
                    for (int64_t j = 0; j < h; j++)                                             \
                        z[j] += a * pq[j];                                                      \
                }                                                                               \
                for (int64_t j = 0; j < h; j++) {                                               \
                    const T v = z[j];                                                           \
                    switch (activation) {                                                       \
                    case RELU: z[j] = v > 0 ? v : 0; break;                                     \
                    case TANH: z[j] = TANH_(v); break;                                          \
                    case SIGMOID: z[j] = (T)1 / ((T)1 + EXP(-v)); break;                        \
                    case GELU: /* z Phi(z), in double as the reference */                       \
                        z[j] = (T)(0.5 * (double)v * (1.0 + erf((double)v * M_SQRT1_2_)));     \
                        break;                                                                  \
                    default: break;                                                             \
                    }                                                                           \
                }                                                                               \
                /* the output layer: C dot products of length h */                              \
                int64_t best = 0;                                                               \
                for (int64_t c = 0; c < C; c++) {                                               \
                    const T *w = w2t + (k * C + c) * h;                                         \
                    T s = 0;                                                                    \
                    _Pragma("omp simd reduction(+ : s)")                                        \
                    for (int64_t j = 0; j < h; j++)                                             \
                        s += z[j] * w[j];                                                       \
                    o[c] = s + b2[k * C + c];                                                   \
                    if (o[c] > o[best])                                                         \
                        best = c;                                                               \
                }                                                                               \
                if (loss == CROSS_ENTROPY) {                                                    \
                    const double m = o[best];                                                   \
                    double e = 0;                                                               \
                    for (int64_t c = 0; c < C; c++)                                             \
                        e += exp((double)o[c] - m);                                             \
                    total += log(e) - ((double)o[labels[i]] - m);                               \
                    wrong += best != labels[i];                                                 \
                } else {                                                                        \
                    const T *t = targets + i * C;                                               \
                    int64_t target_best = 0;                                                    \
                    for (int64_t c = 0; c < C; c++) {                                           \
                        const double d = (double)o[c] - (double)t[c];                           \
                        total += d * d;                                                         \
                        if (t[c] > t[target_best])                                              \
                            target_best = c;                                                    \
                    }                                                                           \
                    wrong += best != target_best;                                               \
                }                                                                               \
            }                                                                                   \
            out_loss[k] = total;                                                                \
            out_wrong[k] = wrong;                                                               \
            free(z);                                                                            \
        }                                                                                       \
        return failed ? -1 : 0;                                                                 \
    }

AFFINE_TWO_LAYER(float, f32, expf, tanhf)
AFFINE_TWO_LAYER(double, f64, exp, tanh)
