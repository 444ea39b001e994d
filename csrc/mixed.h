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
 * Every step has the arguments of its float32 step in fastopt.h, with:
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

void fastopt_sgd_mixed(int64_t n, float *master, const void *grad, int grad_fmt,
                       void *momentum_buffer, int state_fmt, uint16_t *model, int model_fmt,
                       float lr, float weight_decay, float momentum, float dampening,
                       int nesterov, int maximize, int first_step, float grad_scale,
                       int stochastic, int64_t key);

void fastopt_adagrad_mixed(int64_t n, float *master, const void *grad, int grad_fmt,
                           void *state_sum, int state_fmt, uint16_t *model, int model_fmt,
                           float weight_decay, float eps, int maximize, float clr,
                           float grad_scale, int stochastic, int64_t key);

void fastopt_rmsprop_mixed(int64_t n, float *master, const void *grad, int grad_fmt,
                           void *square_avg, void *grad_avg, void *momentum_buffer, int state_fmt,
                           uint16_t *model, int model_fmt, float lr, float alpha, float eps,
                           float weight_decay, float momentum, int centered, int maximize,
                           float grad_scale, int stochastic, int64_t key);

void fastopt_adam_mixed(int64_t n, float *master, const void *grad, int grad_fmt, void *exp_avg,
                        void *exp_avg_sq, void *max_exp_avg_sq, int state_fmt, uint16_t *model,
                        int model_fmt, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int amsgrad, int maximize, int decoupled,
                        float step_size, float bias_correction2_sqrt, float grad_scale,
                        int stochastic, int64_t key);

void fastopt_adamax_mixed(int64_t n, float *master, const void *grad, int grad_fmt,
                          void *exp_avg, void *exp_inf, int state_fmt, uint16_t *model,
                          int model_fmt, float beta1, float beta2, float eps, float weight_decay,
                          int maximize, float clr, float grad_scale, int stochastic, int64_t key);

void fastopt_nadam_mixed(int64_t n, float *master, const void *grad, int grad_fmt, void *exp_avg,
                         void *exp_avg_sq, int state_fmt, uint16_t *model, int model_fmt,
                         float lr, float beta1, float beta2, float eps, float weight_decay,
                         int maximize, int decoupled, float grad_coef, float exp_avg_coef,
                         float bias_correction2, float grad_scale, int stochastic, int64_t key);

void fastopt_radam_mixed(int64_t n, float *master, const void *grad, int grad_fmt, void *exp_avg,
                         void *exp_avg_sq, int state_fmt, uint16_t *model, int model_fmt,
                         float lr, float beta1, float beta2, float eps, float weight_decay,
                         int maximize, int decoupled, int rectify, float step_size,
                         float bias_correction2_sqrt, float grad_scale, int stochastic,
                         int64_t key);

void fastopt_adadelta_mixed(int64_t n, float *master, const void *grad, int grad_fmt,
                            void *square_avg, void *acc_delta, int state_fmt, uint16_t *model,
                            int model_fmt, float lr, float rho, float eps, float weight_decay,
                            int maximize, float grad_scale, int stochastic, int64_t key);

void fastopt_lion_mixed(int64_t n, float *master, const void *grad, int grad_fmt, void *exp_avg,
                        int state_fmt, uint16_t *model, int model_fmt, float lr, float beta1,
                        float beta2, float weight_decay, int maximize, float grad_scale,
                        int stochastic, int64_t key);

/* The sum of squares, in double, of n gradient values stored as bits in format grad_fmt (0, 1 or
 * 2): the reduction pass of a fused mixed-precision step. Fixed chunks are summed in order, so the
 * result does not depend on the number of threads. */
double fastopt_sum_of_squares_mixed(int64_t n, const void *grad, int grad_fmt);

#endif
