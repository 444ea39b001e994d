/* fastopt.h: the C backend of fastopt, optimizer steps that update arrays in place.
 *
 * Every step follows the kernel contract of fastopt/backends/__init__.py and the formulas of
 * fastopt/reference.py (torch.optim, single-tensor semantics), computed in the arrays' precision:
 * _f32 functions take float arrays and float hyperparameters, _f64 ones double. Arguments come in
 * contract order: the element count n, the arrays (param, grad, then state), the hyperparameters,
 * then the values the host computes for this step (first_step, clr, step_size,
 * bias_correction2_sqrt, grad_scale), so kernels never call pow. Mode flags are ints (0 or not 0).
 * Every step first multiplies the gradient by grad_scale, the factor that unscales a mixed-precision
 * loss scale and clips by the global norm (1 when neither is used): grad = grad_scale * grad.
 *
 * The kernels trust their inputs: every array used holds n elements and the written arrays
 * (param and the state the mode uses) overlap neither each other nor grad. A state array that the
 * mode does not use (momentum_buffer when momentum == 0, grad_avg when not centered,
 * max_exp_avg_sq without amsgrad) may be NULL and is never read or written.
 *
 * Each step reads every array it uses once and writes every array it updates once. Steps of at
 * least 32768 elements run on all OpenMP threads, smaller ones on the calling thread; results are
 * bit-identical for any thread count.
 *
 * This file is also fed to cffi's cdef by fastopt/_c_build.py, which drops the preprocessor
 * lines: keep the rest plain declarations.
 */
#ifndef FASTOPT_H
#define FASTOPT_H

#include <stdint.h>

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
void fastopt_sgd_f32(int64_t n, float *param, const float *grad, float *momentum_buffer,
                     float lr, float weight_decay, float momentum, float dampening,
                     int nesterov, int maximize, int first_step, float grad_scale);
void fastopt_sgd_f64(int64_t n, double *param, const double *grad, double *momentum_buffer,
                     double lr, double weight_decay, double momentum, double dampening,
                     int nesterov, int maximize, int first_step, double grad_scale);

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
void fastopt_adagrad_f32(int64_t n, float *param, const float *grad, float *state_sum,
                         float weight_decay, float eps, int maximize, float clr,
                         float grad_scale);
void fastopt_adagrad_f64(int64_t n, double *param, const double *grad, double *state_sum,
                         double weight_decay, double eps, int maximize, double clr,
                         double grad_scale);

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
void fastopt_rmsprop_f32(int64_t n, float *param, const float *grad, float *square_avg,
                         float *grad_avg, float *momentum_buffer,
                         float lr, float alpha, float eps, float weight_decay, float momentum,
                         int centered, int maximize, float grad_scale);
void fastopt_rmsprop_f64(int64_t n, double *param, const double *grad, double *square_avg,
                         double *grad_avg, double *momentum_buffer,
                         double lr, double alpha, double eps, double weight_decay,
                         double momentum, int centered, int maximize, double grad_scale);

/* Adam (L2 weight decay) or AdamW (decoupled), optionally AMSGrad, as torch.optim.Adam/AdamW.
 *
 *   g = maximize ? -grad : grad
 *   if decoupled:              param = param * (1 - lr * weight_decay)
 *   else if weight_decay != 0: g = g + weight_decay * param
 *   exp_avg = beta1 * exp_avg + (1 - beta1) * g
 *   exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
 *   if amsgrad: max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq)    (NaN wins, as numpy.maximum)
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
void fastopt_adam_f32(int64_t n, float *param, const float *grad, float *exp_avg,
                      float *exp_avg_sq, float *max_exp_avg_sq,
                      float lr, float beta1, float beta2, float eps, float weight_decay,
                      int amsgrad, int maximize, int decoupled,
                      float step_size, float bias_correction2_sqrt, float grad_scale);
void fastopt_adam_f64(int64_t n, double *param, const double *grad, double *exp_avg,
                      double *exp_avg_sq, double *max_exp_avg_sq,
                      double lr, double beta1, double beta2, double eps, double weight_decay,
                      int amsgrad, int maximize, int decoupled,
                      double step_size, double bias_correction2_sqrt, double grad_scale);

/* How this library was built: compiler, OpenMP version or "off", the parallel threshold and the
 * compile flags. A static string; do not free it. */
const char *fastopt_build_info(void);

/* The number of threads a parallel step uses (omp_get_max_threads); 1 without OpenMP. */
int fastopt_max_threads(void);

/* Sets the number of threads of later parallel steps started from the calling thread
 * (omp_set_num_threads); values below 1 are ignored; a no-op without OpenMP. */
void fastopt_set_num_threads(int num_threads);

/* The sum of the squared elements of grad, accumulated in double: the squared global gradient norm
 * of a fused step's reduction pass (clipping, non-finite detection). Fixed chunks of
 * FASTOPT_REDUCTION_CHUNK elements are summed in parallel, then the chunk sums in order, so the
 * result does not depend on the number of threads.
 */
double fastopt_sum_of_squares_f32(int64_t n, const float *grad);
double fastopt_sum_of_squares_f64(int64_t n, const double *grad);

#endif /* FASTOPT_H */
