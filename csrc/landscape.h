/* landscape.h: the C backend's landscape kernel (fastopt/landscape/evaluate.py): the loss of a
 * one-hidden-layer MLP at many parameter points of an affine family, fused, one point per task.
 *
 * For point k with coordinates w_k = (1, a_k1, ..., a_km) (weights, K x M, M = m + 1) and each
 * row i of the n rows:
 *   z = sum_q w_kq P_q[i] + b1[k]                (P_q: the first layer's products X W_c, X D_1,
 *   hid = act(z)                                  ... (n x h), computed by the caller)
 *   o_c = hid . w2t[k][c] + b2[k][c]             (w2t: K x C x h, the output weights transposed)
 * then the row's softmax cross-entropy (loss 0, integer labels) or squared error (loss 1,
 * targets n x C), summed over the rows in double into out_loss[k], and out_wrong[k] = rows whose
 * argmax output (first maximum) is not the label (the target's argmax). activation: 0 identity,
 * 1 relu, 2 tanh, 3 sigmoid, 4 gelu (exact, erf), as mlp.h. Points run on OpenMP threads.
 *
 * parts holds the P_q rows-last in blocks of FASTOPT_LANDSCAPE_ROWS (RB) rows: element
 * [q][b][j][r] = P_q[b RB + r][j], M x ceil(n / RB) x h x RB, the rows past n zero.
 *
 * Returns 0, or -1 if a scratch row could not be allocated (the outputs are then not valid).
 * This file is fed to cffi's cdef: keep the rest plain declarations.
 */
#ifndef FASTOPT_LANDSCAPE_H
#define FASTOPT_LANDSCAPE_H

#include <stdint.h>

int fastopt_affine_two_layer_f32(int64_t points, int64_t M, int64_t n, int64_t h, int64_t C,
                                 const float *parts, const float *weights, const float *b1,
                                 const float *w2t, const float *b2, const int64_t *labels,
                                 const float *targets, int activation, int loss,
                                 double *out_loss, int64_t *out_wrong);
int fastopt_affine_two_layer_f64(int64_t points, int64_t M, int64_t n, int64_t h, int64_t C,
                                 const double *parts, const double *weights, const double *b1,
                                 const double *w2t, const double *b2, const int64_t *labels,
                                 const double *targets, int activation, int loss,
                                 double *out_loss, int64_t *out_wrong);

#endif
