/* optim_list.h: the elementwise steps over a list of separate arrays, one call per list.
 *
 * Each line X(name, states, scalars, modes) of FASTOPT_ELEMENTWISE (optim_table.h) declares
 *
 *   void fastopt_<name>_list_f32(int64_t n, int64_t items, const int64_t *item_tensor,
 *                                const int64_t *item_start, const int64_t *lengths,
 *                                float *const *param_list, const float *const *grad_list,
 *                                float *const *<state>_list..., <scalar>..., float grad_scale);
 *
 * and the same with double for _f64: the step fastopt_<name>_f32 of every tensor t of a list,
 * the tensor's arrays at param_list[t], grad_list[t], <state>_list[t] (a state's table may be NULL
 * when the mode does not use it), lengths[t] elements each. n is the total of lengths (steps of
 * FASTOPT_PARALLEL_THRESHOLD elements or more run on OpenMP threads). The work is given as items:
 * item w covers the elements [item_start[w], min(item_start[w] + FASTOPT_REDUCTION_CHUNK,
 * lengths[item_tensor[w]])) of tensor item_tensor[w], every item_start a multiple of
 * FASTOPT_REDUCTION_CHUNK, the items in tensor order covering every element once (empty tensors
 * have none). Each element gets the bits of the one-array step, whatever the thread count.
 *
 *   void fastopt_sum_of_squares_list_f32(int64_t n, int64_t items, <item table>, int64_t count,
 *                                        const float *const *grad_list, double *partial,
 *                                        double *out);
 *
 * sets out[t] = fastopt_sum_of_squares_f32(lengths[t], grad_list[t]) (the same bits) for the count
 * tensors, partial being scratch of items doubles;
 *
 *   int64_t fastopt_max_magnitude_bits_list_f32(int64_t n, int64_t items, <item table>,
 *                                               const float *const *grad_list);
 *
 * is the largest fastopt_max_magnitude_bits_f32 of the tensors. Every count is 64-bit.
 */
#ifndef FASTOPT_OPTIM_LIST_H
#define FASTOPT_OPTIM_LIST_H

#include <stdint.h>

#include "optim_table.h"

/* FASTOPT_LIST_PARAMS(real, states, scalars): the parameters of a list step. */
#define FASTOPT_LIST_PARAMS(real, states, scalars)                                                 \
    int64_t n, int64_t items, const int64_t *item_tensor, const int64_t *item_start,               \
    const int64_t *lengths, real *const *param_list, const real *const *grad_list                  \
    FASTOPT_PP_EACH(FASTOPT_LIST_STATE_PARAM, real, states)                                        \
    FASTOPT_PP_EACH(FASTOPT_SCALAR_PARAM, real, scalars), real grad_scale
#define FASTOPT_LIST_STATE_PARAM(real, index, array, ...) , real *const *array##_list

#define FASTOPT_DECLARE_LIST_STEPS(name, states, scalars, modes)                                   \
    void fastopt_##name##_list_f32(FASTOPT_LIST_PARAMS(float, states, scalars));                   \
    void fastopt_##name##_list_f64(FASTOPT_LIST_PARAMS(double, states, scalars));
FASTOPT_ELEMENTWISE(FASTOPT_DECLARE_LIST_STEPS)

void fastopt_sum_of_squares_list_f32(int64_t n, int64_t items, const int64_t *item_tensor,
                                     const int64_t *item_start, const int64_t *lengths,
                                     int64_t count, const float *const *grad_list,
                                     double *partial, double *out);
void fastopt_sum_of_squares_list_f64(int64_t n, int64_t items, const int64_t *item_tensor,
                                     const int64_t *item_start, const int64_t *lengths,
                                     int64_t count, const double *const *grad_list,
                                     double *partial, double *out);
int64_t fastopt_max_magnitude_bits_list_f32(int64_t n, int64_t items, const int64_t *item_tensor,
                                            const int64_t *item_start, const int64_t *lengths,
                                            const float *const *grad_list);
int64_t fastopt_max_magnitude_bits_list_f64(int64_t n, int64_t items, const int64_t *item_tensor,
                                            const int64_t *item_start, const int64_t *lengths,
                                            const double *const *grad_list);

#endif
