/* mlp.h: the C backend of fastopt's MLP kernels: dense layers and losses, in place.
 *
 * The kernel family "mlp" of fastopt/nn/reference.py, where the formulas are: a dense layer maps
 * x (batch x fan_in) with w (fan_in x fan_out, row-major: the forward pass is x @ w) and b
 * (fan_out) to out = act(x @ w + b). All matrices are row-major and contiguous; _f32 functions
 * take float arrays and float scalars, _f64 ones double. activation: 0 identity, 1 relu, 2 tanh,
 * 3 sigmoid, 4 gelu (exact, erf).
 *
 * The kernels trust their inputs (fastopt/nn/mlp.py checks them): sizes >= 1, arrays of the stated
 * sizes, written arrays not overlapping the others. Matrix products are cache-blocked (6-row
 * tiles against 16-column panels, float; 8 columns, double) with an AVX2+FMA micro-kernel chosen
 * at run time when the CPU has it, a portable C one otherwise; products of at least 2^20
 * multiply-adds run on all OpenMP threads, which take their tasks dynamically. Every output
 * element is summed by one thread in a fixed order: results do not depend on the thread count.
 *
 * This file is fed to cffi's cdef by fastopt/backends/c/build.py, which drops the preprocessor
 * lines: keep the rest plain declarations.
 */
#ifndef FASTOPT_MLP_H
#define FASTOPT_MLP_H

#include <stdint.h>

/* Fused dense forward: out = act(x @ w + b), and pre = x @ w + b when pre is not NULL (gelu's
 * backward needs it; relu, tanh and sigmoid take their derivative from out). The dense functions
 * return 0, or -1 if the packing space could not be allocated (then nothing was written). */
int fastopt_dense_forward_f32(int64_t batch, int64_t fan_in, int64_t fan_out, const float *x,
                              const float *w, const float *b, float *out, float *pre,
                              int activation);
int fastopt_dense_forward_f64(int64_t batch, int64_t fan_in, int64_t fan_out, const double *x,
                              const double *w, const double *b, double *out, double *pre,
                              int activation);

/* Dense backward. dout (batch x fan_out) is overwritten with dZ = dout * act'(.), act' taken from
 * out, or from pre for gelu; then dw = x^T dZ (fan_in x fan_out), db = column sums of dZ, and
 * dx = dZ @ w^T (batch x fan_in) unless dx is NULL. */
int fastopt_dense_backward_f32(int64_t batch, int64_t fan_in, int64_t fan_out, const float *x,
                               const float *w, const float *out, const float *pre, float *dout,
                               float *dw, float *db, float *dx, int activation);
int fastopt_dense_backward_f64(int64_t batch, int64_t fan_in, int64_t fan_out, const double *x,
                               const double *w, const double *out, const double *pre,
                               double *dout, double *dw, double *db, double *dx, int activation);

/* Softmax cross-entropy with integer labels, fused forward and backward, stable for large logits:
 *   l_i = m_i + log sum_c exp(z_ic - m_i) - z_iy,  m_i = max_c z_ic
 *   dlogits = scale * (softmax(z) - onehot(y))
 *   stats[0] = sum_i l_i (double), stats[1] = rows whose argmax (first maximum) is not y_i */
void fastopt_softmax_xent_f32(int64_t batch, int64_t classes, const float *logits,
                              const int64_t *labels, float *dlogits, double *stats, float scale);
void fastopt_softmax_xent_f64(int64_t batch, int64_t classes, const double *logits,
                              const int64_t *labels, double *dlogits, double *stats,
                              double scale);

/* Squared error: dout = 2 * scale * (out - target); stats[0] = sum (out - target)^2 (double),
 * stats[1] = rows whose argmax differs from the target's. */
void fastopt_mse_f32(int64_t batch, int64_t outputs, const float *out, const float *target,
                     float *dout, double *stats, float scale);
void fastopt_mse_f64(int64_t batch, int64_t outputs, const double *out, const double *target,
                     double *dout, double *stats, double scale);

/* sum of x^2 in double (the gradient norm); x *= s in place (gradient clipping). */
double fastopt_sum_squares_f32(int64_t n, const float *x);
double fastopt_sum_squares_f64(int64_t n, const double *x);
void fastopt_scale_f32(int64_t n, float *x, float s);
void fastopt_scale_f64(int64_t n, double *x, double s);

/* The optimizer functions an epoch runs, by number: their names separated by spaces (every
 * elementwise optimizer of fastopt.h in its table's order, then lamb). A static string. */
const char *fastopt_mlp_epoch_optimizers(void);

/* A whole epoch of minibatch training in one call (the contract of train_epoch in
 * fastopt/nn/reference.py): for each batch of batch_size rows of X (n_rows x features) taken in
 * the given order (the last batch may be smaller): gather, forward, the loss, backward, gradient
 * norm, clipping to max_norm (if > 0: the gradient is scaled by max_norm / (norm + 1e-6) when its
 * norm exceeds max_norm), then one step of an optimizer function of fastopt.h over all n_params
 * parameters, with grad_scale 1.
 *
 * loss: 0 softmax cross-entropy against labels (targets unused, may be NULL), 1 MSE against the
 * rows of targets (n_rows x classes; labels unused, may be NULL). losses[step] is the loss sum
 * times 1.0 / rows (cross-entropy) or 1.0 / (rows * classes) (MSE).
 * layout: layers x 4 int64 (weight offset, fan_in, fan_out, bias offset into params and grads);
 * codes: the activation of each layer. work: 3 * batch_size * (sum of fan_outs) + batch_size *
 * (features + classes) scratch elements; yb: batch_size int64.
 * optimizer: the position of the optimizer function in fastopt_mlp_epoch_optimizers() (lamb: one
 * segment); s1, s2, s3 its state arrays in fastopt.h's order
 * (unused ones may be NULL). scalars: steps x n_scalars, each row the function's scalar
 * arguments in fastopt.h's order from lr (or its first) to the last before grad_scale, flags as
 * 0 or 1.
 * skip_nonfinite: a step whose gradient norm is not finite updates nothing and ends the call.
 * Writes per step run: losses (mean), wrongs (0-1 error count), norms (before clipping), and
 * unless squares is NULL the rows' mean squared per-example gradient norm, sum over the layers
 * of (1/B) sum_i (|x_i|^2 + 1) |B delta_i|^2 (fastopt/dynamics/noise.py), in double. Returns
 * the number of steps run, or -1 when out of memory. */
int fastopt_mlp_train_epoch_f32(int64_t n_rows, int64_t features, const float *X, int loss,
                                const int64_t *labels, const float *targets, const int64_t *order,
                                int64_t batch_size, int64_t layers, const int64_t *layout,
                                const int64_t *codes, int64_t n_params, float *params,
                                float *grads, float *work, int64_t *yb, int optimizer, float *s1,
                                float *s2, float *s3, int64_t n_scalars, const float *scalars,
                                double max_norm, int skip_nonfinite, double *losses,
                                double *wrongs, double *norms, double *squares);
int fastopt_mlp_train_epoch_f64(int64_t n_rows, int64_t features, const double *X, int loss,
                                const int64_t *labels, const double *targets,
                                const int64_t *order, int64_t batch_size, int64_t layers,
                                const int64_t *layout, const int64_t *codes, int64_t n_params,
                                double *params, double *grads, double *work, int64_t *yb,
                                int optimizer, double *s1, double *s2, double *s3,
                                int64_t n_scalars, const double *scalars, double max_norm,
                                int skip_nonfinite, double *losses, double *wrongs,
                                double *norms, double *squares);

/* Whether matrix products use the AVX2+FMA micro-kernel (1), the portable one (0); setting 1 on a
 * CPU without AVX2+FMA keeps the portable one. Returns the setting in effect. */
int fastopt_mlp_simd(void);
int fastopt_mlp_set_simd(int enabled);

#endif
