/* optim.c: the C backend of fastopt; the steps are declared and documented in fastopt.h.
 *
 * The bodies live in optim_template.h, included once for float (_f32) and once for double (_f64).
 * Plain C99 plus optional OpenMP. Build without -ffast-math: every step is elementwise, so the
 * results match the numpy reference bit for bit and do not depend on the thread count; gcc still
 * vectorizes every loop at -O3 given -fno-math-errno (sqrt becomes one instruction). Keep
 * floating-point contraction off (-ffp-contract=off, the ISO C default) so no FMA changes the
 * rounding.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "fastopt.h"
#include "loop_template.h"

#ifdef _OPENMP
#include <omp.h>
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

#define NAME_(base, suffix) base##_##suffix
#define NAME_WITH(base, suffix) NAME_(base, suffix)
#define NAME(base) NAME_WITH(base, SUFFIX)

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

/* ---- Build information and threads ----------------------------------------------------------- */

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

#if defined(__clang__)
#define COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define COMPILER "gcc " __VERSION__
#else
#define COMPILER "unknown compiler"
#endif

#ifdef _OPENMP
#define OPENMP "OpenMP " STRINGIFY(_OPENMP) ", parallel from " STRINGIFY(PARALLEL_THRESHOLD) " elements"
#else
#define OPENMP "OpenMP off"
#endif

/* FASTOPT_CFLAGS is defined by fastopt/_c_build.py as a string literal. */
#ifndef FASTOPT_CFLAGS
#define FASTOPT_CFLAGS "unknown"
#endif

const char *fastopt_build_info(void)
{
    return COMPILER "; " OPENMP "; flags: " FASTOPT_CFLAGS;
}

int fastopt_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void fastopt_set_num_threads(int num_threads)
{
#ifdef _OPENMP
    if (num_threads >= 1)
        omp_set_num_threads(num_threads);
#else
    (void)num_threads;
#endif
}
