/* fastopt.h: the C backend of fastopt, optimizer steps that update arrays in place.
 *
 * Every step follows the kernel contract of fastopt/backends/__init__.py and the formulas of
 * fastopt/optim/reference.py (torch.optim, single-tensor semantics), computed in the arrays'
 * precision: _f32 functions take float arrays and float hyperparameters, _f64 ones double.
 * Arguments come in contract order: the element count n, the arrays (param, grad, then state),
 * the hyperparameters, then the values the host computes for this step (first_step, clr,
 * step_size, bias_correction2_sqrt, grad_scale), so kernels never call pow. Mode flags are ints
 * (0 or not 0). Every step first multiplies the gradient by grad_scale, the factor that unscales
 * a mixed-precision loss scale and clips by the global norm (1 when neither is used):
 * grad = grad_scale * grad. Steps return nothing, except LAMB's, which allocates scratch and
 * returns whether it could.
 *
 * The kernels trust their inputs: every array used holds n elements and the written arrays
 * (param and the state the mode uses) overlap neither each other nor grad. A state array that the
 * mode does not use (momentum_buffer when momentum == 0, grad_avg when not centered,
 * max_exp_avg_sq without amsgrad) may be NULL and is never read or written.
 *
 * Each step reads every array it uses once and writes every array it updates once (LAMB, which
 * needs per-tensor norms before it can update, makes two passes). Steps of at least
 * FASTOPT_PARALLEL_THRESHOLD elements (fastopt/_core/config.py) run on all OpenMP threads, smaller
 * ones on the calling thread; results are bit-identical for any thread count.
 *
 * Values are not checked: a NaN or an infinity in grad, param or state goes through the IEEE
 * arithmetic of the formulas, as in fastopt/optim/reference.py (sqrt of a negative is NaN,
 * inf - inf is NaN, x / inf is 0). The few places that compare values say what a NaN does there:
 * the maxima of AMSGrad and Adamax (a NaN on either side wins, as torch.maximum), Lion's sign (a
 * NaN stays NaN) and LAMB's trust ratio (a NaN norm counts as 0: the ratio is 1). One known
 * difference from torch.optim: torch interpolates the first moment (exp_avg, and RMSprop's
 * grad_avg) as m + (1 - beta) * (g - m), so an infinite m meeting a finite g becomes NaN there
 * (inf - inf), where beta * m + (1 - beta) * g here keeps it infinite.
 *
 * The elementwise steps (all but LAMB) are declared from the table FASTOPT_ELEMENTWISE of
 * optim_table.h, one line per algorithm, which gives their arguments: see "The elementwise steps"
 * below. fastopt/backends/c/build.py gives cffi's cdef this file as the C preprocessor expands it
 * (without the system headers): what it expands to must be plain declarations.
 */
#ifndef FASTOPT_H
#define FASTOPT_H

#include <stdint.h>

#include "optim_table.h"

/* ---- The library ------------------------------------------------------------------------------
 *
 * libfastopt (fastopt.get_library(), this header under fastopt.get_include()) exports the
 * functions of this header and of mixed.h, mlp.h, landscape.h and roofline.h, the same code the
 * Python package runs. Element counts and offsets are int64_t everywhere. FASTOPT_ABI_VERSION
 * changes whenever a declared function changes its arguments or meaning; a program checks that
 * fastopt_abi_version() returns the value it was compiled with. Any options struct added to this
 * interface will begin with a size_t struct_size member (the caller's sizeof), so that later
 * members can be added without breaking compiled programs; there is none yet.
 *
 * The kernels' vector code is chosen at run time, at the first call: the widest variant the CPU
 * and operating system support among "generic" (the compiler's baseline, e.g. SSE2 on x86-64),
 * "avx2" and "avx512" (F, VL, BW, DQ); the variants exist in builds by GCC for x86-64, only
 * "generic" in others. Every variant gives the same bits.
 */
#define FASTOPT_ABI_VERSION 1

/* FASTOPT_ABI_VERSION as this library was built. */
int fastopt_abi_version(void);

/* The name of the vector variant the kernels run: "generic", "avx2" or "avx512". A static
 * string; do not free it. */
const char *fastopt_vector_isa(void);

/* Makes later calls, from any thread, run the variant named (as fastopt_vector_isa names them).
 * Returns 0, or -1 (changing nothing) when the name is unknown or this CPU cannot run it. */
int fastopt_set_vector_isa(const char *name);

/* ---- The elementwise steps ------------------------------------------------------------------
 *
 * Each line X(name, states, scalars, modes) of FASTOPT_ELEMENTWISE (optim_table.h) declares
 *
 *   void fastopt_<name>_f32(int64_t n, float *param, const float *grad, float *<state>...,
 *                           <scalar>..., float grad_scale);
 *   void fastopt_<name>_f64(int64_t n, double *param, const double *grad, double *<state>...,
 *                           <scalar>..., double grad_scale);
 *
 * with the line's state arrays and scalars in order, a (real, x) scalar being float or double and
 * an (int, x) one a flag: for SGD, fastopt_sgd_f32(n, param, grad, momentum_buffer, lr,
 * weight_decay, momentum, dampening, nesterov, maximize, first_step, grad_scale). The comments
 * below give each step's formula and its arguments in that order (grad_scale, common to all, is
 * described above); the _with_norm variants follow fastopt_sum_of_squares.
 */
#define FASTOPT_DECLARE_STEPS(name, states, scalars, modes)                                        \
    void fastopt_##name##_f32(FASTOPT_STEP_PARAMS(float *, float, states, scalars));               \
    void fastopt_##name##_f64(FASTOPT_STEP_PARAMS(double *, double, states, scalars));
#define FASTOPT_DECLARE_STEPS_WITH_NORM(name, states, scalars, modes)                              \
    void fastopt_##name##_with_norm_f32(FASTOPT_STEP_PARAMS(float *, float, states, scalars),      \
                                        double *norm_out);                                         \
    void fastopt_##name##_with_norm_f64(FASTOPT_STEP_PARAMS(double *, double, states, scalars),    \
                                        double *norm_out);

/* SGD with optional momentum, dampening, Nesterov and L2 weight decay, as torch.optim.SGD.
 *
 *   g = (maximize ? -grad : grad) + weight_decay * param      (the term only if weight_decay != 0)
 *   if momentum != 0:
 *       b = first_step ? g : momentum * b + (1 - dampening) * g;  momentum_buffer = b
 *       g = nesterov ? g + momentum * b : b
 *   param = param - lr * g
 *
 * n                element count of every array used
 * param            parameters, updated
 * grad             gradient
 * momentum_buffer  momentum buffer b, updated; unused (may be NULL) when momentum == 0
 * lr               learning rate
 * weight_decay     L2 penalty added to the gradient
 * momentum         momentum factor; 0 disables the buffer
 * dampening        dampening of the gradient in the buffer update
 * nesterov         use Nesterov momentum
 * maximize         ascend instead of descend
 * first_step       the buffer is initialized to g (torch's first step with this buffer)
 */

/* Adagrad, as torch.optim.Adagrad.
 *
 *   g = (maximize ? -grad : grad) + weight_decay * param      (the term only if weight_decay != 0)
 *   state_sum = state_sum + g * g
 *   param = param - clr * g / (sqrt(state_sum) + eps)
 *
 * n             element count of every array
 * param         parameters, updated
 * grad          gradient
 * state_sum     sum of squared gradients, updated
 * weight_decay  L2 penalty added to the gradient
 * eps           added to the denominator
 * maximize      ascend instead of descend
 * clr           lr / (1 + (step - 1) * lr_decay), computed on the host
 */

/* RMSprop, optionally centered and with momentum, as torch.optim.RMSprop.
 *
 *   g = (maximize ? -grad : grad) + weight_decay * param      (the term only if weight_decay != 0)
 *   square_avg = alpha * square_avg + (1 - alpha) * g * g
 *   if centered:
 *       grad_avg = alpha * grad_avg + (1 - alpha) * g
 *       denom = sqrt(square_avg - grad_avg * grad_avg) + eps
 *   else:
 *       denom = sqrt(square_avg) + eps
 *   if momentum > 0:
 *       momentum_buffer = momentum * momentum_buffer + g / denom
 *       param = param - lr * momentum_buffer
 *   else:
 *       param = param - lr * g / denom
 *
 * n                element count of every array used
 * param            parameters, updated
 * grad             gradient
 * square_avg       running average of g * g, updated
 * grad_avg         running average of g, updated; unused (may be NULL) when not centered
 * momentum_buffer  momentum buffer, updated; unused (may be NULL) unless momentum > 0
 * lr               learning rate
 * alpha            smoothing constant of the running averages
 * eps              added to the denominator
 * weight_decay     L2 penalty added to the gradient
 * momentum         momentum factor; 0 disables the buffer
 * centered         normalize by the estimated variance instead of the second moment
 * maximize         ascend instead of descend
 */

/* Adam (L2 weight decay) or AdamW (decoupled), optionally AMSGrad, as torch.optim.Adam/AdamW.
 *
 *   g = maximize ? -grad : grad
 *   if decoupled:              param = param * (1 - lr * weight_decay)
 *   else if weight_decay != 0: g = g + weight_decay * param
 *   exp_avg = beta1 * exp_avg + (1 - beta1) * g
 *   exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
 *   if amsgrad: max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq)    (NaN on either side wins,
 *                                                                   as torch.maximum)
 *               v = max_exp_avg_sq
 *   else:       v = exp_avg_sq
 *   param = param - step_size * exp_avg / (sqrt(v) / bias_correction2_sqrt + eps)
 *
 * n                      element count of every array used
 * param                  parameters, updated
 * grad                   gradient
 * exp_avg                first moment m, updated
 * exp_avg_sq             second moment v, updated
 * max_exp_avg_sq         running maximum of v, updated; unused (may be NULL) without amsgrad
 * lr                     learning rate (used here only by the decoupled decay)
 * beta1, beta2           decay rates of the moments
 * eps                    added to the denominator
 * weight_decay           L2 penalty (Adam) or decoupled decay rate (AdamW)
 * amsgrad                normalize by the running maximum of v
 * maximize               ascend instead of descend
 * decoupled              AdamW's decoupled weight decay instead of the L2 penalty
 * step_size              lr / (1 - beta1^step), computed on the host
 * bias_correction2_sqrt  sqrt(1 - beta2^step), computed on the host
 */

/* Adamax, as torch.optim.Adamax (eps inside the maximum, as PyTorch places it).
 *
 *   g = (maximize ? -grad : grad) + weight_decay * param      (the term only if weight_decay != 0)
 *   exp_avg = beta1 * exp_avg + (1 - beta1) * g
 *   exp_inf = max(beta2 * exp_inf, |g| + eps)    (NaN on either side wins, as torch.maximum)
 *   param = param - clr * exp_avg / exp_inf
 *
 * n             element count of every array
 * param         parameters, updated
 * grad          gradient
 * exp_avg       first moment m, updated
 * exp_inf       exponentially weighted infinity norm u, updated
 * beta1, beta2  decay rates of m and u
 * eps           added to |g| before the maximum
 * weight_decay  L2 penalty added to the gradient
 * maximize      ascend instead of descend
 * clr           lr / (1 - beta1^step), computed on the host
 */

/* NAdam with PyTorch's momentum decay, L2 or decoupled weight decay, as torch.optim.NAdam.
 *
 *   g = maximize ? -grad : grad
 *   if decoupled:              param = param * (1 - lr * weight_decay)
 *   else if weight_decay != 0: g = g + weight_decay * param
 *   exp_avg = beta1 * exp_avg + (1 - beta1) * g
 *   exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
 *   denom = sqrt(exp_avg_sq / bias_correction2) + eps
 *   param = param - grad_coef * g / denom - exp_avg_coef * exp_avg / denom
 *
 * n                 element count of every array
 * param             parameters, updated
 * grad              gradient
 * exp_avg           first moment m, updated
 * exp_avg_sq        second moment v, updated
 * lr                learning rate (used here only by the decoupled decay)
 * beta1, beta2      decay rates of the moments
 * eps               added to the denominator
 * weight_decay      L2 penalty or decoupled decay rate
 * maximize          ascend instead of descend
 * decoupled         decoupled weight decay instead of the L2 penalty
 * grad_coef         lr * (1 - mu_t) / (1 - mu_product), computed on the host, where
 *                   mu_t = beta1 * (1 - 0.5 * 0.96^(step * momentum_decay)) and mu_product is the
 *                   product of mu_1 .. mu_t
 * exp_avg_coef      lr * mu_{t+1} / (1 - mu_product * mu_{t+1}), computed on the host
 * bias_correction2  1 - beta2^step, computed on the host
 */

/* RAdam, L2 or decoupled weight decay, as torch.optim.RAdam.
 *
 *   g = maximize ? -grad : grad
 *   if decoupled:              param = param * (1 - lr * weight_decay)
 *   else if weight_decay != 0: g = g + weight_decay * param
 *   exp_avg = beta1 * exp_avg + (1 - beta1) * g
 *   exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
 *   if rectify: param = param - step_size * exp_avg
 *                               * (bias_correction2_sqrt / (sqrt(exp_avg_sq) + eps))
 *   else:       param = param - step_size * exp_avg
 *
 * n                      element count of every array
 * param                  parameters, updated
 * grad                   gradient
 * exp_avg                first moment m, updated
 * exp_avg_sq             second moment v, updated
 * lr                     learning rate (used here only by the decoupled decay)
 * beta1, beta2           decay rates of the moments
 * eps                    added to the denominator
 * weight_decay           L2 penalty or decoupled decay rate
 * maximize               ascend instead of descend
 * decoupled              decoupled weight decay instead of the L2 penalty
 * rectify                rho_t > 5 this step (the variance is tractable), decided on the host
 * step_size              lr * r_t / (1 - beta1^step) when rectified (r_t the rectification
 *                        term), else lr / (1 - beta1^step); computed on the host
 * bias_correction2_sqrt  sqrt(1 - beta2^step), computed on the host
 */

/* Adadelta, as torch.optim.Adadelta.
 *
 *   g = (maximize ? -grad : grad) + weight_decay * param      (the term only if weight_decay != 0)
 *   square_avg = rho * square_avg + (1 - rho) * g * g
 *   delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g
 *   acc_delta = rho * acc_delta + (1 - rho) * delta * delta
 *   param = param - lr * delta
 *
 * n             element count of every array
 * param         parameters, updated
 * grad          gradient
 * square_avg    running average of g * g, updated
 * acc_delta     running average of delta * delta, updated
 * lr            learning rate (scales delta)
 * rho           smoothing constant of the running averages
 * eps           added inside both square roots
 * weight_decay  L2 penalty added to the gradient
 * maximize      ascend instead of descend
 */

/* Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", arXiv:2302.06675),
 * with decoupled weight decay.
 *
 *   g = maximize ? -grad : grad
 *   c = beta1 * exp_avg + (1 - beta1) * g
 *   param = param * (1 - lr * weight_decay) - lr * sign(c)    (sign(0) = 0, sign(NaN) = NaN)
 *   exp_avg = beta2 * exp_avg + (1 - beta2) * g
 *
 * n             element count of every array
 * param         parameters, updated
 * grad          gradient
 * exp_avg       momentum m, updated
 * lr            learning rate
 * beta1         interpolation weight of the update direction c
 * beta2         decay rate of the momentum
 * weight_decay  decoupled decay rate
 * maximize      ascend instead of descend
 */

/* Rprop (resilient backpropagation, Riedmiller & Braun 1993), as torch.optim.Rprop.
 *
 *   g = maximize ? -grad : grad
 *   s = sign(g * prev)                       (torch.sign: -1, 0 or 1, and 0 for NaN)
 *   step_size = clamp(step_size * (s > 0 ? etaplus : s < 0 ? etaminus : 1),
 *                     step_size_min, step_size_max)
 *   g = s < 0 ? 0 : g
 *   param = param - sign(g) * step_size
 *   prev = g
 *
 * n              element count of every array
 * param          parameters, updated
 * grad           gradient
 * prev           the previous step's gradient (0 where its sign flipped), updated
 * step_size      each element's step size (lr before the first step), updated
 * etaminus       factor of a step size whose gradient flipped sign (0 < etaminus < 1)
 * etaplus        factor of a step size whose gradient kept its sign (etaplus > 1)
 * step_size_min  the smallest step size
 * step_size_max  the largest step size
 * maximize       ascend instead of descend
 */

/* ASGD (averaged SGD, Polyak & Juditsky 1992), as torch.optim.ASGD. The caller keeps eta and mu
 * per parameter (torch's state): after step t, eta = lr / (1 + lambd * lr * t)^alpha and
 * mu = 1 / max(1, t - t0).
 *
 *   g = (maximize ? -grad : grad) + weight_decay * param
 *   param = param * decay - eta * g
 *   ax = mu == 1 ? param : ax + (param - ax) * mu
 *
 * n             element count of every array
 * param         parameters, updated
 * grad          gradient
 * ax            the running average of the parameters, updated
 * weight_decay  L2 penalty added to the gradient
 * maximize      ascend instead of descend
 * eta           this step's learning rate
 * decay         1 - lambd * eta, computed by the caller
 * mu            this step's averaging weight
 */

FASTOPT_ELEMENTWISE(FASTOPT_DECLARE_STEPS)

/* ---- LAMB ------------------------------------------------------------------------------------ */

/* LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in 76
 * minutes", arXiv:1904.00962, Algorithm 2), with one trust ratio per tensor (segment).
 *
 *   g = maximize ? -grad : grad
 *   exp_avg = beta1 * exp_avg + (1 - beta1) * g
 *   exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
 *   u = (exp_avg / bias_correction1) / (sqrt(exp_avg_sq / bias_correction2) + eps)
 *       + weight_decay * param                                 (the term only if weight_decay != 0)
 *   for each segment s, [segment_offsets[s], segment_offsets[s + 1]):
 *       r = ||param_s|| / ||u_s||, or 1 when either norm is 0   (norms accumulated in double)
 *       param_s = param_s - (REAL)(lr * r) * u_s                 (lr * r in double)
 *
 * The test is "both norms > 0", so a NaN norm (a NaN in param_s or u_s) gives r = 1: the
 * segment's elements move by lr * u, its NaN ones stay NaN. An infinite ||u_s|| with a finite
 * ||param_s|| gives r = 0: the elements where u is finite do not move, those where it is infinite
 * become NaN (0 * inf). An infinite ||param_s|| gives r = inf, or NaN when ||u_s|| is infinite too.
 *
 * Two passes: a segmented reduction that updates the moments and sums param^2 and u^2 per
 * segment, then the update, with u recomputed from the updated moments (never stored). Both
 * passes split the array into fixed chunks of FASTOPT_REDUCTION_CHUNK elements, whatever the
 * segments; a segment's sums are its chunk pieces' sums taken in order, so the result does not
 * depend on the number of threads. Scratch of about 16 bytes per chunk and per segment is
 * allocated with malloc and freed before returning.
 *
 * Returns 0, or -1 (having written nothing) when the scratch cannot be allocated.
 *
 * n                  element count of every array
 * param              parameters, updated
 * grad               gradient
 * exp_avg            first moment m, updated
 * exp_avg_sq         second moment v, updated
 * num_segments       number of segments (tensors), at least 1
 * segment_offsets    num_segments + 1 nondecreasing offsets, from 0 to n
 * lr                 learning rate
 * beta1, beta2       decay rates of the moments
 * eps                added to the denominator, outside the square root
 * weight_decay       decoupled decay rate, part of u and so of the trust ratio
 * maximize           ascend instead of descend
 * bias_correction1   1 - beta1^step, computed on the host
 * bias_correction2   1 - beta2^step, computed on the host
 */
int fastopt_lamb_f32(int64_t n, float *param, const float *grad, float *exp_avg,
                     float *exp_avg_sq, int64_t num_segments, const int64_t *segment_offsets,
                     float lr, float beta1, float beta2, float eps, float weight_decay,
                     int maximize, float bias_correction1, float bias_correction2,
                     float grad_scale);
int fastopt_lamb_f64(int64_t n, double *param, const double *grad, double *exp_avg,
                     double *exp_avg_sq, int64_t num_segments, const int64_t *segment_offsets,
                     double lr, double beta1, double beta2, double eps, double weight_decay,
                     int maximize, double bias_correction1, double bias_correction2,
                     double grad_scale);

/* How this library was built: compiler, OpenMP version or "off", the parallel threshold and the
 * compile flags. A static string; do not free it. */
const char *fastopt_build_info(void);

/* The tunables this library was built with, "NAME=value" separated by spaces: the C_DEFINES of
 * fastopt/_core/config.py that build.py passed. A static string; do not free it. */
const char *fastopt_build_config(void);

/* The number of threads a parallel step uses (omp_get_max_threads); 1 without OpenMP. */
int fastopt_max_threads(void);

/* Sets the number of threads of later parallel steps started from the calling thread
 * (omp_set_num_threads); values below 1 are ignored; a no-op without OpenMP. */
void fastopt_set_num_threads(int num_threads);

/* The sum of the squared elements of grad, accumulated in double: the squared global gradient norm
 * of a fused step's reduction pass (clipping, non-finite detection). Fixed chunks of
 * FASTOPT_REDUCTION_CHUNK elements are summed in parallel, then the chunk sums in order, so the
 * result does not depend on the number of threads. Within a chunk starting at lo, element i is
 * added to running sum (i - lo) % FASTOPT_REDUCTION_LANES, and the sums pairwise, level by level:
 * (s0 + s1) + (s2 + s3), ..., as the cpu backend does.
 */
double fastopt_sum_of_squares_f32(int64_t n, const float *grad);
double fastopt_sum_of_squares_f64(int64_t n, const double *grad);

/* The largest magnitude of the n elements of grad, as its bits: the maximum of each element's bits
 * with the sign cleared, an int64 holding a float32's (f32), float64's (f64) or 16-bit float's
 * (u16: float16 or bfloat16) bits; 0 when n is 0. Bits above those of infinity are a NaN. Exact, and the
 * same for any thread count: the non-finite check of a step, one read of the gradient. */
int64_t fastopt_max_magnitude_bits_f32(int64_t n, const void *grad);
int64_t fastopt_max_magnitude_bits_f64(int64_t n, const void *grad);
int64_t fastopt_max_magnitude_bits_u16(int64_t n, const void *grad);

/* The steps above, each also leaving in *norm_out the sum of the squares of grad (the raw
 * gradient, before grad_scale) with the bits of fastopt_sum_of_squares (same chunks, same order,
 * whatever the number of threads), computed in the same pass over memory as the update: each
 * chunk is updated in blocks, and a block's gradient is summed right after its update, while it
 * is in cache. The arguments before norm_out are those of the plain step. LAMB has no such variant.
 */
FASTOPT_ELEMENTWISE(FASTOPT_DECLARE_STEPS_WITH_NORM)

#endif /* FASTOPT_H */
