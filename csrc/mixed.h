/* mixed.h: mixed-precision optimizer steps of fastopt's C backend.
 *
 * Each step updates float32 master weights and their optimizer state in place, exactly as the
 * float32 step of fastopt.h of the same name would, and writes the low-precision model copy in the
 * same pass. Stored values are bit patterns with a format code: 0 float32 (arrays of uint32, the
 * float32 bits), 1 float16 (IEEE binary16, uint16), 2 bfloat16 (uint16). Rounding to a 16-bit
 * format is to nearest, ties to even, or stochastic: element i of a step draws its random bits
 * from a counter-based hash of (key, i), where key = stream_key(seed, step) is computed on the
 * host, so results are reproducible and identical on every backend (see
 * fastopt/backends/elements/bits.py, whose integer algorithms these are).
 *
 * There is one step, fastopt_<name>_mixed, per line of the table FASTOPT_ELEMENTWISE
 * (optim_table.h), declared from it:
 *
 *   void fastopt_<name>_mixed(int64_t n, float *master, const void *grad, int grad_fmt,
 *                             void *<state>..., int state_fmt, uint16_t *model, int model_fmt,
 *                             <scalar>..., float grad_scale, int stochastic, int64_t key);
 *
 * e.g. fastopt_sgd_mixed(n, master, grad, grad_fmt, momentum_buffer, state_fmt, model, model_fmt,
 * lr, weight_decay, momentum, dampening, nesterov, maximize, first_step, grad_scale, stochastic,
 * key). Every step has the arguments of its float32 step in fastopt.h (real scalars as float),
 * with:
 *   master             float32 master weights (the float32 step's param), updated
 *   grad, grad_fmt     gradient bits and format (0, 1 or 2)
 *   <state...>, state_fmt
 *                      the state arrays (0 float32 or 2 bfloat16, one format for all), updated;
 *                      a state array the mode does not use may be NULL, as in fastopt.h
 *   model, model_fmt   the low-precision model copy (uint16 bits; 1 float16, 2 bfloat16), written:
 *                      model[i] = round(master[i]) after the update
 *   stochastic, key    stochastic rounding of the model copy, and this step's random-stream key
 * The state is stored rounded to nearest; the step itself computes in float32.
 *
 * Memory is passed once: blocks of elements are decoded into float32 buffers on the stack (16-bit
 * gradients and state; float32 ones are used in place), the float32 step of fastopt.h runs on the
 * block, and the state and the model copy are encoded back. Large steps split the blocks over the
 * OpenMP threads; results do not depend on the number of threads.
 *
 * LAMB has no mixed-precision step: its second pass recomputes the update from the stored moments,
 * which in bfloat16 would no longer be the float32 step's.
 */
#ifndef FASTOPT_MIXED_H
#define FASTOPT_MIXED_H

#include <stdint.h>

#include "optim_table.h"

/* The parameters of a mixed-precision step, from its line of FASTOPT_ELEMENTWISE. */
#define FASTOPT_MIXED_PARAMS(states, scalars)                                                      \
    int64_t n, float *master, const void *grad, int grad_fmt                                       \
    FASTOPT_PP_EACH(FASTOPT_STATE_PARAM, void *, states), int state_fmt, uint16_t *model,          \
    int model_fmt FASTOPT_PP_EACH(FASTOPT_SCALAR_PARAM, float, scalars), float grad_scale,         \
    int stochastic, int64_t key

#define FASTOPT_DECLARE_MIXED(name, states, scalars, modes)                                        \
    void fastopt_##name##_mixed(FASTOPT_MIXED_PARAMS(states, scalars));
FASTOPT_ELEMENTWISE(FASTOPT_DECLARE_MIXED)

/* The sum of squares, in double, of n gradient values stored as bits in format grad_fmt (0, 1 or
 * 2): the reduction pass of a fused mixed-precision step. Fixed chunks are summed in order, so the
 * result does not depend on the number of threads. */
double fastopt_sum_of_squares_mixed(int64_t n, const void *grad, int grad_fmt);

#endif
