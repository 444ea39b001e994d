/* quant8.h: optimizer steps with 8-bit blockwise state, of fastopt's C backend.
 *
 * Dettmers et al. (2022), "8-bit Optimizers via Block-wise Quantization" (arXiv:2110.02861). A
 * state array of n float32 values is stored as n uint8 codes and one float32 absmax per block of
 * FASTOPT_QUANT8_BLOCK (256) elements, with a quantization map of 256 sorted values Q (the
 * signed or unsigned dynamic tree map, chosen per state array by fastopt.backends.numpy.quant8,
 * which defines both). A map is passed as 514 floats: Q, then the 255 midpoints
 * t_k = (Q[k] + Q[k+1]) / 2, then three +inf; with its lookup table (int32, 2 * LUT_SIDE), the
 * number of midpoints below each bucket of float32 values (lookup_table there). Per block b:
 *
 *   decode   x_i = Q[q_i] * a_b
 *   update   the float32 step of fastopt.h on the decoded block (param and grad in place)
 *   encode   a_b = max |x_i| (an integer maximum of the bits: a NaN propagates),
 *            r = 1 / max(a_b, 1e-38),
 *            q_i = #{k : t_k < clamp(x_i * r, -1, 1)} (nearest code, ties to the lower),
 *            found as base + (t[base] < y) + (t[base + 1] < y), base the lookup table's entry
 *            of y = x_i * r
 *
 * There is one step, fastopt_<name>_quant8, per line of the table FASTOPT_ELEMENTWISE
 * (optim_table.h), declared from it:
 *
 *   void fastopt_<name>_quant8(int64_t n, float *param, const float *grad,
 *                              uint8_t *<state>, float *<state>_absmax, const float *<state>_map,
 *                              const int32_t *<state>_lut ..., <scalar>..., float grad_scale);
 *
 * with the scalars of the float32 step (real scalars as float). A state array the mode does not
 * use may be NULL (codes and absmax), as in fastopt.h. Memory is passed once: a block's decoded
 * state lives on the stack. Large steps split the blocks over the OpenMP threads; results do not
 * depend on the number of threads, and equal the numpy reference's bit for bit.
 */
#ifndef FASTOPT_QUANT8_H
#define FASTOPT_QUANT8_H

#include <stdint.h>

#include "optim_table.h"

#define FASTOPT_QUANT8_STATE_PARAM(ctx, index, array, ...)                                         \
    , uint8_t *array, float *array##_absmax, const float *array##_map,                             \
    const int32_t *array##_lut

/* The parameters of an 8-bit step, from its line of FASTOPT_ELEMENTWISE. */
#define FASTOPT_QUANT8_PARAMS(states, scalars)                                                     \
    int64_t n, float *param, const float *grad                                                     \
    FASTOPT_PP_EACH(FASTOPT_QUANT8_STATE_PARAM, ~, states)                                         \
    FASTOPT_PP_EACH(FASTOPT_SCALAR_PARAM, float, scalars), float grad_scale

#define FASTOPT_DECLARE_QUANT8(name, states, scalars, modes)                                       \
    void fastopt_##name##_quant8(FASTOPT_QUANT8_PARAMS(states, scalars));
FASTOPT_ELEMENTWISE(FASTOPT_DECLARE_QUANT8)

#endif
