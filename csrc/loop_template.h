/* loop_template.h: the element loop shared by the C kernels (optim.c, roofline.c).
 *
 * Included by sources, never fed to cffi (a *_template.h file). Keeping one definition makes a
 * same-traffic kernel differ from an optimizer step only in its arithmetic.
 */
#ifndef FASTOPT_LOOP_TEMPLATE_H
#define FASTOPT_LOOP_TEMPLATE_H

#include <stdint.h>

/* The tunables are fastopt/_core/config.py's (C_DEFINES), passed with -D by
 * fastopt/backends/c/build.py; none is defined here, so that they have one definition.
 *
 * FASTOPT_PARALLEL_THRESHOLD: steps with fewer elements run on the calling thread (below it,
 * starting the OpenMP team costs more than the update itself).
 * FASTOPT_REDUCTION_CHUNK: the reduction sums chunks of this many elements, FASTOPT_REDUCTION_BATCH
 * chunks per parallel region (a fixed-size array of partial sums on the stack). */
#if !defined(FASTOPT_PARALLEL_THRESHOLD) || !defined(FASTOPT_REDUCTION_CHUNK) \
    || !defined(FASTOPT_REDUCTION_BATCH)
#error "tunables missing: build with fastopt/backends/c/build.py (-D from fastopt/_core/config.py)"
#endif

/* FOR_EACH_ELEMENT(i, update): runs the statement update for i in [0, n) of the enclosing step,
 * vectorized, and split statically over the OpenMP threads when n >= FASTOPT_PARALLEL_THRESHOLD.
 * The small case is a loop of its own rather than an if clause on the parallel loop: an OpenMP
 * region run on one thread still costs about half a microsecond (as much as a 500-element Adam
 * step), and a bare if clause on "parallel for simd" also turns off the simd part (OpenMP 5.0). */
#ifdef _OPENMP
#define FOR_EACH_ELEMENT(i, update)                                                               \
    do {                                                                                          \
        if (n < FASTOPT_PARALLEL_THRESHOLD) {                                                     \
            _Pragma("omp simd")                                                                   \
            for (int64_t i = 0; i < n; i++)                                                       \
                update;                                                                           \
        } else {                                                                                  \
            _Pragma("omp parallel for simd schedule(static)")                                     \
            for (int64_t i = 0; i < n; i++)                                                       \
                update;                                                                           \
        }                                                                                         \
    } while (0)
#else
#define FOR_EACH_ELEMENT(i, update)                                                               \
    do {                                                                                          \
        for (int64_t i = 0; i < n; i++)                                                           \
            update;                                                                               \
    } while (0)
#endif

#endif
