/* optim.c: the C backend's optimizer kernels; the steps are declared and documented in fastopt.h.
 *
 * The bodies live in optim_template.h, included once for float (_f32) and once for double (_f64);
 * the elementwise steps are made there from the table of optim_table.h (DEFINE_STEPS, below).
 * Plain C99 plus optional OpenMP. Build without -ffast-math: every step is elementwise, so the
 * results match the numpy reference bit for bit and do not depend on the thread count; gcc still
 * vectorizes every loop at -O3 given -fno-math-errno (sqrt becomes one instruction). Keep
 * floating-point contraction off (-ffp-contract=off, the ISO C default) so no FMA changes the
 * rounding.
 *
 * The vector code is chosen at run time: this file is compiled once per variant, FASTOPT_VARIANT
 * naming it (generic, the compiler's baseline, when compiled as it is; optim_avx2.c and
 * optim_avx512.c set a GCC target and include it), every entry point taking the variant's suffix
 * (fastopt_adam_f32_avx2) and hidden from the library's exports. dispatch.c defines the public
 * names, each calling the variant the CPU supports. Without contraction and fast-math, every
 * variant computes the same bits.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fastopt.h"
#include "loop_template.h"
#include "optim_list.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef FASTOPT_VARIANT
#define FASTOPT_VARIANT generic
#endif
/* The variants' entry points are internal to the library: only dispatch.c calls them. */
#if defined(__GNUC__)
#define VARIANT_API __attribute__((visibility("hidden")))
#else
#define VARIANT_API
#endif

/* The element updates must be inlined into their loops for the mode constants to fold away. */
#if defined(__GNUC__)
#define FASTOPT_INLINE static inline __attribute__((always_inline))
#else
#define FASTOPT_INLINE static inline
#endif

/* The segment holding position pos of LAMB's segment_offsets: the last s with offsets[s] <= pos
 * (empty segments before pos are skipped). */
static int64_t segment_holding(const int64_t *offsets, int64_t num_segments, int64_t pos)
{
    int64_t lo = 0, hi = num_segments + 1;  /* first offset > pos lies in [lo, hi] */
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (offsets[mid] <= pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

/* The sum of a chunk's running sums (see add_squares in optim_template.h), added pairwise level by
 * level: (s0 + s1) + (s2 + s3), ...; sums is overwritten. */
static inline double sum_of_lanes(double *sums)
{
    for (int width = FASTOPT_REDUCTION_LANES / 2; width >= 1; width /= 2)
        for (int j = 0; j < width; j++)
            sums[j] = sums[2 * j] + sums[2 * j + 1];
    return sums[0];
}

/* ALONE_OR_PARALLEL(pragma, loop): the loop under the parallel pragma when the enclosing
 * function's n >= FASTOPT_PARALLEL_THRESHOLD, else on the calling thread. Not an if clause: an
 * OpenMP region run on one thread still costs about half a microsecond, more than checking a
 * 1,000-element gradient (see FOR_EACH_ELEMENT in loop_template.h). */
#ifdef _OPENMP
#define REDUCTION_PARALLEL _Pragma("omp parallel for schedule(static)")
#define SIMD _Pragma("omp simd")
#define MAX_PARALLEL _Pragma("omp parallel for schedule(static) reduction(max : top)")
#define ALONE_OR_PARALLEL(pragma, ...)                                                             \
    do {                                                                                           \
        if (n < FASTOPT_PARALLEL_THRESHOLD) {                                                      \
            __VA_ARGS__                                                                            \
        } else {                                                                                   \
            pragma __VA_ARGS__                                                                     \
        }                                                                                          \
    } while (0)
#else
#define REDUCTION_PARALLEL
#define SIMD
#define MAX_PARALLEL
#define ALONE_OR_PARALLEL(pragma, ...)                                                             \
    do {                                                                                           \
        __VA_ARGS__                                                                                \
    } while (0)
#endif

/* FASTOPT_NORM_BLOCK (fastopt/_core/config.py, passed with -D): a fused step updates blocks of
 * this many elements, each followed by the sum of its gradient's squares while the block is in
 * cache; a multiple of the reduction's lanes, so that only a chunk's last block can end off their
 * cycle. */
#if !defined(FASTOPT_NORM_BLOCK) || !defined(FASTOPT_REDUCTION_LANES)
#error "tunables missing: build with fastopt/backends/c/build.py (-D from fastopt/_core/config.py)"
#endif
#if FASTOPT_NORM_BLOCK % FASTOPT_REDUCTION_LANES != 0
#error "FASTOPT_NORM_BLOCK must be a multiple of FASTOPT_REDUCTION_LANES"
#endif

/* FOR_EACH_ELEMENT_WITH_NORM(i, update): runs update for i in [0, n) of the enclosing step and sets
 * *norm_out to the sum of the squares of grad[0, n), in the pass over memory of the update and with
 * the bits of fastopt_sum_of_squares: the same chunks, each summed by add_squares in blocks of
 * FASTOPT_NORM_BLOCK elements (the running sums do not care where a block ends, since a block is a
 * multiple of the lanes long), the chunk sums taken in order. */
#define FOR_EACH_ELEMENT_WITH_NORM(i, update)                                                      \
    do {                                                                                           \
        const int64_t chunks_ = (n + FASTOPT_REDUCTION_CHUNK - 1) / FASTOPT_REDUCTION_CHUNK;       \
        double total_ = 0;                                                                         \
        for (int64_t first_ = 0; first_ < chunks_; first_ += FASTOPT_REDUCTION_BATCH) {            \
            double partial_[FASTOPT_REDUCTION_BATCH];                                              \
            const int64_t count_ = chunks_ - first_ < FASTOPT_REDUCTION_BATCH                      \
                                       ? chunks_ - first_ : FASTOPT_REDUCTION_BATCH;               \
            ALONE_OR_PARALLEL(REDUCTION_PARALLEL,                                                  \
            for (int64_t c_ = 0; c_ < count_; c_++) {                                              \
                const int64_t lo_ = (first_ + c_) * FASTOPT_REDUCTION_CHUNK;                       \
                const int64_t hi_ = lo_ + FASTOPT_REDUCTION_CHUNK < n                              \
                                        ? lo_ + FASTOPT_REDUCTION_CHUNK : n;                       \
                double sums_[FASTOPT_REDUCTION_LANES] = {0};                                       \
                for (int64_t a_ = lo_; a_ < hi_; a_ += FASTOPT_NORM_BLOCK) {                       \
                    const int64_t b_ = a_ + FASTOPT_NORM_BLOCK < hi_ ? a_ + FASTOPT_NORM_BLOCK     \
                                                                     : hi_;                        \
                    SIMD                                                                           \
                    for (int64_t i = a_; i < b_; i++)                                              \
                        update;                                                                    \
                    NAME(add_squares)(grad, a_, b_, sums_);                                        \
                }                                                                                  \
                partial_[c_] = sum_of_lanes(sums_);                                                \
            });                                                                                    \
            for (int64_t c_ = 0; c_ < count_; c_++)                                                \
                total_ += partial_[c_];                                                            \
        }                                                                                          \
        *norm_out = total_;                                                                        \
    } while (0)

/* STEP_LOOP(i, update): a step's loop: FOR_EACH_ELEMENT, or the fused one given a norm_out. */
#define STEP_LOOP(i, update)                                                                       \
    do {                                                                                           \
        if (norm_out != NULL)                                                                      \
            FOR_EACH_ELEMENT_WITH_NORM(i, update);                                                 \
        else                                                                                       \
            FOR_EACH_ELEMENT(i, update);                                                           \
    } while (0)

/* DEFINE_MODES(name, states, scalars, modes): the mode bits of a line of FASTOPT_ELEMENTWISE,
 * <name>_<mode> = 1 << (its position), and <name>_masks, the number of masks. */
#define MODE_BIT(name, index, mode, ...) name##_##mode = 1 << (index),
#define DEFINE_MODES(name, states, scalars, modes)                                                 \
    enum { FASTOPT_PP_EACH(MODE_BIT, name, modes) name##_masks = 1 << FASTOPT_PP_LENGTH(modes) };
FASTOPT_ELEMENTWISE(DEFINE_MODES)

/* DEFINE_STEPS(name, states, scalars, modes): the steps of a line of FASTOPT_ELEMENTWISE in the
 * precision of REAL (optim_template.h): NAME(<name>_step), which switches once over the mask of
 * the modes' conditions to a loop of the element with that mask as a constant, and the public
 * NAME(fastopt_<name>) and NAME(fastopt_<name>_with_norm) that run it. */
#define DEFINE_STEPS(name, states, scalars, modes)                                                 \
    FASTOPT_INLINE void NAME(name##_step)(FASTOPT_STEP_PARAMS(REAL *restrict, REAL, states,        \
                                                              scalars), double *norm_out)          \
    {                                                                                              \
        const unsigned mask = 0 FASTOPT_PP_EACH(MODE_IF, ~, modes);                                \
        switch (mask) {                                                                            \
            FASTOPT_PP_MASKS(MODE_CASE, FASTOPT_PP_LENGTH(modes), name, states, scalars)           \
        }                                                                                          \
    }                                                                                              \
    VARIANT_API void NAME(fastopt_##name)(FASTOPT_STEP_PARAMS(REAL *restrict, REAL, states,        \
                                                              scalars))                            \
    {                                                                                              \
        NAME(name##_step)(FASTOPT_STEP_ARGS(states, scalars), NULL);                               \
    }                                                                                              \
    VARIANT_API void NAME(fastopt_##name##_with_norm)(FASTOPT_STEP_PARAMS(REAL *restrict, REAL,    \
                                                                          states, scalars),        \
                                                      double *norm_out)                            \
    {                                                                                              \
        NAME(name##_step)(FASTOPT_STEP_ARGS(states, scalars), norm_out);                           \
    }
/* | the mode's bit if its condition holds */
#define MODE_IF(ctx, index, mode, ...) | ((__VA_ARGS__) ? 1u << (index) : 0u)
/* the loop of one mask */
#define MODE_CASE(mask, name, states, scalars)                                                     \
    case mask:                                                                                     \
        STEP_LOOP(i, NAME(name##_element)(i, mask, param, grad                                     \
                                          FASTOPT_PP_EACH(FASTOPT_STATE_ARG, ~, states)            \
                                          FASTOPT_PP_EACH(FASTOPT_SCALAR_ARG, ~, scalars),         \
                                          grad_scale));                                            \
        break;

/* NAME(base): base_<precision>_<variant> */
#define NAME_(base, suffix, variant) base##_##suffix##_##variant
#define NAME_WITH(base, suffix, variant) NAME_(base, suffix, variant)
#define NAME(base) NAME_WITH(base, SUFFIX, FASTOPT_VARIANT)

#define REAL float
#define SQRT sqrtf
#define FABS fabsf
#define SUFFIX f32
#include "optim_template.h"
#undef REAL
#undef SQRT
#undef FABS
#undef SUFFIX

#define REAL double
#define SQRT sqrt
#define FABS fabs
#define SUFFIX f64
#include "optim_template.h"
#undef REAL
#undef SQRT
#undef FABS
#undef SUFFIX

/* ---- The non-finite check ------------------------------------------------------------------ */

/* DEFINE_MAX_MAGNITUDE(suffix, UINT, MASK): fastopt_max_magnitude_bits_<suffix>, the largest of
 * bits & MASK over the n elements of an array of UINT, the float bits with the sign cleared. An
 * integer maximum is exact in any order, so any thread count gives the same result. A pass that
 * only reads is bound by the reads each core has in flight: each thread reads four places at once
 * (the array in four parts, chunk c of each part in one loop), as the cpu backend does. memcpy
 * reads the bits without breaking strict aliasing; it compiles to the load. */
#define DEFINE_MAGNITUDE(suffix, UINT, MASK)                                                       \
    static inline UINT magnitude_##suffix(const unsigned char *bytes, int64_t i)                   \
    {                                                                                              \
        UINT bits;                                                                                 \
        memcpy(&bits, bytes + i * (int64_t)sizeof(UINT), sizeof(UINT));                           \
        return (UINT)(bits & (MASK));                                                              \
    }
#define DEFINE_MAX_MAGNITUDE(suffix, UINT, MASK)                                                   \
    VARIANT_API int64_t NAME_WITH(fastopt_max_magnitude_bits, suffix, FASTOPT_VARIANT)(           \
        int64_t n, const void *grad)                                                               \
    {                                                                                              \
        const unsigned char *bytes = grad;                                                         \
        const int64_t part = n / 4;                                                                \
        const int64_t chunks = (part + FASTOPT_REDUCTION_CHUNK - 1) / FASTOPT_REDUCTION_CHUNK;     \
        UINT top = 0;                                                                              \
        ALONE_OR_PARALLEL(MAX_PARALLEL,                                                            \
        for (int64_t c = 0; c < chunks; c++) {                                                     \
            const int64_t lo = c * FASTOPT_REDUCTION_CHUNK;                                        \
            const int64_t hi = lo + FASTOPT_REDUCTION_CHUNK < part ? lo + FASTOPT_REDUCTION_CHUNK  \
                                                                   : part;                         \
            UINT t0 = 0, t1 = 0, t2 = 0, t3 = 0;                                                   \
            for (int64_t i = lo; i < hi; i++) {                                                    \
                const UINT x0 = magnitude_##suffix(bytes, i);                                   \
                const UINT x1 = magnitude_##suffix(bytes, i + part);                            \
                const UINT x2 = magnitude_##suffix(bytes, i + 2 * part);                        \
                const UINT x3 = magnitude_##suffix(bytes, i + 3 * part);                        \
                t0 = x0 > t0 ? x0 : t0;                                                            \
                t1 = x1 > t1 ? x1 : t1;                                                            \
                t2 = x2 > t2 ? x2 : t2;                                                            \
                t3 = x3 > t3 ? x3 : t3;                                                            \
            }                                                                                      \
            t0 = t1 > t0 ? t1 : t0;                                                                \
            t2 = t3 > t2 ? t3 : t2;                                                                \
            t0 = t2 > t0 ? t2 : t0;                                                                \
            top = t0 > top ? t0 : top;                                                             \
        });                                                                                        \
        for (int64_t i = 4 * part; i < n; i++) { /* the last n % 4 */                              \
            const UINT x = magnitude_##suffix(bytes, i);                                        \
            top = x > top ? x : top;                                                               \
        }                                                                                          \
        return (int64_t)top;                                                                       \
    }
DEFINE_MAGNITUDE(f32, uint32_t, UINT32_C(0x7FFFFFFF))
DEFINE_MAGNITUDE(f64, uint64_t, UINT64_C(0x7FFFFFFFFFFFFFFF))
DEFINE_MAGNITUDE(u16, uint16_t, UINT16_C(0x7FFF))
DEFINE_MAX_MAGNITUDE(f32, uint32_t, UINT32_C(0x7FFFFFFF))
DEFINE_MAX_MAGNITUDE(f64, uint64_t, UINT64_C(0x7FFFFFFFFFFFFFFF))
DEFINE_MAX_MAGNITUDE(u16, uint16_t, UINT16_C(0x7FFF))
#undef DEFINE_MAX_MAGNITUDE
#undef DEFINE_MAGNITUDE
