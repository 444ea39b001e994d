/* loop_template.h: the element loop shared by the C kernels (optim.c, roofline.c).
 *
 * Included by sources, never fed to cffi (a *_template.h file). Keeping one definition makes a
 * same-traffic kernel differ from an optimizer step only in its arithmetic.
 */
#ifndef FASTOPT_LOOP_TEMPLATE_H
#define FASTOPT_LOOP_TEMPLATE_H

#include <stdint.h>

/* Steps with fewer elements than this run on the calling thread: below it, starting the OpenMP
 * team costs more than the update itself. */
#define PARALLEL_THRESHOLD 32768

/* The reduction sums chunks of this many elements, FASTOPT_REDUCTION_BATCH chunks per parallel
 * region (a fixed-size array of partial sums on the stack). */
#define FASTOPT_REDUCTION_CHUNK 16384
#define FASTOPT_REDUCTION_BATCH 1024

/* FOR_EACH_ELEMENT(i, update): runs the statement update for i in [0, n) of the enclosing step,
 * vectorized, and split statically over the OpenMP threads when n >= PARALLEL_THRESHOLD. The small
 * case is a loop of its own rather than an if clause on the parallel loop: an OpenMP region run on
 * one thread still costs about half a microsecond (as much as a 500-element Adam step), and a bare
 * if clause on "parallel for simd" also turns off the simd part (OpenMP 5.0). */
#ifdef _OPENMP
#define FOR_EACH_ELEMENT(i, update)                                                               \
    do {                                                                                          \
        if (n < PARALLEL_THRESHOLD) {                                                             \
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
