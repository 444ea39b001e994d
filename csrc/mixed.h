/* mixed.h: mixed-precision optimizer steps of fastopt's C backend.
 *
 * float32 master weights are updated in place and the low-precision model copy is written in the
 * same pass. Stored values are bit patterns with a format code: 0 float32 (arrays of uint32, the
 * float32 bits), 1 float16 (IEEE binary16, uint16), 2 bfloat16 (uint16). Rounding to a 16-bit
 * format is to nearest, ties to even, or stochastic: element i of a step draws its random bits
 * from a counter-based hash of (key, i), where key = stream_key(seed, step) is computed on the
 * host, so results are reproducible and identical on every backend (see
 * fastopt/backends/_bits.py, whose integer algorithms these are).
 *
 * Gradients and state are passed as void pointers with their format; state is stored rounded to
 * nearest. A max_exp_avg_sq that AMSGrad does not use may be NULL.
 */
#ifndef FASTOPT_MIXED_H
#define FASTOPT_MIXED_H

#include <stdint.h>

/* Adam (AdamW when decoupled) in float32 on the master weights, formula as fastopt_adam_f32, then
 *   model[i] = round(master[i]) to model_fmt (nearest even, or stochastic when stochastic != 0)
 *
 * n                  element count
 * master             float32 master weights, updated
 * grad, grad_fmt     gradient bits and format (0, 1 or 2)
 * exp_avg, exp_avg_sq, max_exp_avg_sq, state_fmt
 *                    state bits (0 float32 or 2 bfloat16), updated; max_exp_avg_sq only for amsgrad
 * model, model_fmt   the low-precision model copy (uint16 bits; 1 float16, 2 bfloat16), written
 * lr ... bias_correction2_sqrt, grad_scale   as fastopt_adam_f32
 * stochastic, key    stochastic rounding of the model copy, and this step's random-stream key
 */
void fastopt_adam_mixed(int64_t n, float *master, const void *grad, int grad_fmt, void *exp_avg,
                        void *exp_avg_sq, void *max_exp_avg_sq, int state_fmt, uint16_t *model,
                        int model_fmt, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int amsgrad, int maximize, int decoupled,
                        float step_size, float bias_correction2_sqrt, float grad_scale,
                        int stochastic, int64_t key);

/* The sum of squares, in double, of n gradient values stored as bits in format grad_fmt (0, 1 or
 * 2): the reduction pass of a fused mixed-precision step. Fixed chunks are summed in order, so the
 * result does not depend on the number of threads. */
double fastopt_sum_of_squares_mixed(int64_t n, const void *grad, int grad_fmt);

#endif
