/* mixed.c: mixed-precision optimizer steps; declared and documented in mixed.h.
 *
 * The rounding and random-stream functions are those of fastopt/backends/_bits.py, in uint32
 * arithmetic (wrapping multiplication is exactly the int64-safe mul32 there).
 */
#include <math.h>
#include <string.h>

#include "loop_template.h"
#include "mixed.h"

static inline uint32_t bits_of(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float float_of(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

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

static inline uint32_t bf16_round(uint32_t u, int stochastic, uint32_t rnd)
{
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return (u >> 16) | 0x40u;                             /* NaN stays NaN, made quiet */
    const uint32_t increment = stochastic ? rnd >> 16 : 0x7FFFu + ((u >> 16) & 1u);
    return (u + increment) >> 16;
}

static inline uint32_t f16_nearest(uint32_t u)
{
    const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) {                                   /* inf, or NaN as numpy keeps it */
        if (a == 0x7F800000u)
            return sign | 0x7C00u;
        const uint32_t h = 0x7C00u + ((a & 0x7FFFFFu) >> 13);
        return sign | (h == 0x7C00u ? 0x7C01u : h);
    }
    if (a >= 0x477FF000u)                                     /* 65520 and up: inf */
        return sign | 0x7C00u;
    if (a >= 0x38800000u) {                                   /* normal */
        uint32_t h = (a - 0x38000000u) >> 13;
        const uint32_t rest = a & 0x1FFFu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
            h += 1;
        return sign | h;
    }
    if (a < 0x33000000u)                                      /* below 2^-25: zero */
        return sign;
    const uint32_t shift = 126 - (a >> 23), m = (a & 0x7FFFFFu) | 0x800000u;
    uint32_t h = m >> shift;
    const uint32_t rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1u)))
        h += 1;
    return sign | h;
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

static inline uint32_t f16_to_f32(uint32_t h)
{
    const uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu;
    uint32_t m = h & 0x3FFu;
    if (e == 0x1F)
        return sign | 0x7F800000u | (m << 13);
    if (e != 0)
        return sign | ((e + 112) << 23) | (m << 13);
    if (m == 0)
        return sign;
    uint32_t exponent = 113;                                  /* subnormal: normalize */
    while ((m & 0x400u) == 0) {
        m <<= 1;
        exponent -= 1;
    }
    return sign | (exponent << 23) | ((m & 0x3FFu) << 13);
}

static inline float load(const void *array, int fmt, int64_t i)
{
    if (fmt == 0)
        return ((const float *)array)[i];
    const uint32_t h = ((const uint16_t *)array)[i];
    return float_of(fmt == 1 ? f16_to_f32(h) : h << 16);
}

static inline void store(void *array, int fmt, int64_t i, float x, int stochastic, uint32_t rnd)
{
    if (fmt == 0) {
        ((float *)array)[i] = x;
        return;
    }
    const uint32_t u = bits_of(x);
    ((uint16_t *)array)[i] = (uint16_t)(fmt == 1 ? (stochastic ? f16_stochastic(u, rnd)
                                                               : f16_nearest(u))
                                                 : bf16_round(u, stochastic, rnd));
}

void fastopt_adam_mixed(int64_t n, float *master, const void *grad, int grad_fmt, void *exp_avg,
                        void *exp_avg_sq, void *max_exp_avg_sq, int state_fmt, uint16_t *model,
                        int model_fmt, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int amsgrad, int maximize, int decoupled,
                        float step_size, float bias_correction2_sqrt, float grad_scale,
                        int stochastic, int64_t key)
{
    const float scale = maximize ? -grad_scale : grad_scale;
    const float decay = decoupled ? 1 - lr * weight_decay : 1;
    const float l2 = decoupled ? 0 : weight_decay;
    const float one_minus_beta1 = 1 - beta1, one_minus_beta2 = 1 - beta2;
    const uint32_t key32 = (uint32_t)key;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n >= PARALLEL_THRESHOLD)
#endif
    for (int64_t i = 0; i < n; i++) {
        float g = load(grad, grad_fmt, i) * scale;
        const float x = master[i] * decay;
        if (l2 != 0)
            g = g + l2 * x;
        const float m = beta1 * load(exp_avg, state_fmt, i) + one_minus_beta1 * g;
        float v = beta2 * load(exp_avg_sq, state_fmt, i) + one_minus_beta2 * g * g;
        store(exp_avg, state_fmt, i, m, 0, 0);
        store(exp_avg_sq, state_fmt, i, v, 0, 0);
        if (amsgrad) {
            const float stored = load(max_exp_avg_sq, state_fmt, i);
            v = stored > v ? stored : v;
            store(max_exp_avg_sq, state_fmt, i, v, 0, 0);
        }
        const float p = x - step_size * m / (sqrtf(v) / bias_correction2_sqrt + eps);
        master[i] = p;
        store(model, model_fmt, i, p, stochastic, stochastic ? random32(key32, i) : 0);
    }
}

#define REDUCTION_CHUNK 16384

double fastopt_sum_of_squares_mixed(int64_t n, const void *grad, int grad_fmt)
{
    const int64_t chunks = (n + REDUCTION_CHUNK - 1) / REDUCTION_CHUNK;
    double total = 0;
    for (int64_t first = 0; first < chunks; first += 1024) {
        double partial[1024];
        const int64_t count = chunks - first < 1024 ? chunks - first : 1024;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n >= PARALLEL_THRESHOLD)
#endif
        for (int64_t c = 0; c < count; c++) {
            const int64_t lo = (first + c) * REDUCTION_CHUNK;
            const int64_t hi = lo + REDUCTION_CHUNK < n ? lo + REDUCTION_CHUNK : n;
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
