/* list_template.h: the steps of optim_list.h, over a list of separate arrays in one call.
 *
 * Included at the end of optim_template.h, so once per precision (and vector variant) with its
 * REAL, NAME and element functions; library.c defines the public entry points, which call the
 * chosen variant. No include guard, on purpose.
 *
 * A list step walks a table of work items built once by the caller: item w is the elements
 * [item_start[w], min(item_start[w] + FASTOPT_REDUCTION_CHUNK, lengths[t])) of tensor
 * t = item_tensor[w], item_start[w] a multiple of FASTOPT_REDUCTION_CHUNK. The items are split
 * statically over the OpenMP threads; within an item the loop is the one-array step's, the
 * element inlined with the mode mask a constant, so every element gets the bits the one-array step
 * (fastopt_<name>_f32) gives it. The items of the reduction are the chunks of
 * fastopt_sum_of_squares, so each tensor's sum has its bits too.
 */

#ifdef _OPENMP
#define LIST_PARALLEL \
    _Pragma("omp parallel for schedule(static) if (n >= FASTOPT_PARALLEL_THRESHOLD)")
#define LIST_MAX_PARALLEL \
    _Pragma("omp parallel for schedule(static) reduction(max : top) \
             if (n >= FASTOPT_PARALLEL_THRESHOLD)")
#else
#define LIST_PARALLEL
#define LIST_MAX_PARALLEL
#endif

/* The bounds of work item w: t, lo, hi. */
#define LIST_ITEM(w)                                                                               \
    const int64_t t = item_tensor[w], lo = item_start[w];                                          \
    const int64_t hi = lo + FASTOPT_REDUCTION_CHUNK < lengths[t] ? lo + FASTOPT_REDUCTION_CHUNK    \
                                                                 : lengths[t]

/* REAL *restrict <state> = <state>_list ? <state>_list[t] : NULL (an unused state's table may be
 * NULL) */
#define LIST_STATE_LOCAL(ctx, index, array, ...)                                                   \
    REAL *restrict array = array##_list != NULL ? array##_list[t] : NULL;
/* the loop of one mask over every item */
#define LIST_MODE_CASE(mask, name, states, scalars)                                                \
    case mask:                                                                                     \
        LIST_PARALLEL                                                                              \
        for (int64_t w = 0; w < items; w++) {                                                      \
            LIST_ITEM(w);                                                                          \
            REAL *restrict param = param_list[t];                                                  \
            const REAL *restrict grad = grad_list[t];                                              \
            FASTOPT_PP_EACH(LIST_STATE_LOCAL, ~, states)                                           \
            SIMD                                                                                   \
            for (int64_t i = lo; i < hi; i++)                                                      \
                NAME(name##_element)(i, mask, param, grad                                          \
                                     FASTOPT_PP_EACH(FASTOPT_STATE_ARG, ~, states)                 \
                                     FASTOPT_PP_EACH(FASTOPT_SCALAR_ARG, ~, scalars),              \
                                     grad_scale);                                                  \
        }                                                                                          \
        break;

/* DEFINE_LIST_STEPS(name, states, scalars, modes): NAME(fastopt_<name>_list), the mask computed
 * once, then one parallel loop over the work items per mask. */
#define DEFINE_LIST_STEPS(name, states, scalars, modes)                                            \
    VARIANT_API void NAME(fastopt_##name##_list)(FASTOPT_LIST_PARAMS(REAL, states, scalars))       \
    {                                                                                              \
        const unsigned mask = 0 FASTOPT_PP_EACH(MODE_IF, ~, modes);                                \
        switch (mask) {                                                                            \
            FASTOPT_PP_MASKS(LIST_MODE_CASE, FASTOPT_PP_LENGTH(modes), name, states, scalars)      \
        }                                                                                          \
    }

FASTOPT_ELEMENTWISE(DEFINE_LIST_STEPS)

VARIANT_API void NAME(fastopt_sum_of_squares_list)(int64_t n, int64_t items,
                                                   const int64_t *item_tensor,
                                                   const int64_t *item_start,
                                                   const int64_t *lengths, int64_t count,
                                                   const REAL *const *grad_list, double *partial,
                                                   double *out)
{
    /* Each item is one chunk of fastopt_sum_of_squares: its lanes, added pairwise. */
    LIST_PARALLEL
    for (int64_t w = 0; w < items; w++) {
        LIST_ITEM(w);
        double sums[FASTOPT_REDUCTION_LANES] = {0};
        NAME(add_squares)(grad_list[t], lo, hi, sums);
        partial[w] = sum_of_lanes(sums);
    }
    /* Then each tensor's chunk sums in order (the items are in tensor order). */
    for (int64_t t = 0; t < count; t++)
        out[t] = 0;
    for (int64_t w = 0; w < items; w++)
        out[item_tensor[w]] += partial[w];
}

VARIANT_API int64_t NAME(fastopt_max_magnitude_bits_list)(int64_t n, int64_t items,
                                                          const int64_t *item_tensor,
                                                          const int64_t *item_start,
                                                          const int64_t *lengths,
                                                          const REAL *const *grad_list)
{
    /* The bits with the sign cleared, as unsigned integers of REAL's width (the branch on its
     * size is a constant); an integer maximum is exact in any order. */
    uint64_t top = 0;
    LIST_MAX_PARALLEL
    for (int64_t w = 0; w < items; w++) {
        LIST_ITEM(w);
        const unsigned char *bytes = (const unsigned char *)grad_list[t];
        uint64_t local = 0;
        if (sizeof(REAL) == 4) {
            uint32_t local32 = 0;  /* in the elements' width, so that the loop vectorizes */
            for (int64_t i = lo; i < hi; i++) {
                uint32_t bits;
                memcpy(&bits, bytes + i * 4, 4);
                bits &= UINT32_C(0x7FFFFFFF);
                local32 = bits > local32 ? bits : local32;
            }
            local = local32;
        } else {
            for (int64_t i = lo; i < hi; i++) {
                uint64_t bits;
                memcpy(&bits, bytes + i * 8, 8);
                bits &= UINT64_C(0x7FFFFFFFFFFFFFFF);
                local = bits > local ? bits : local;
            }
        }
        top = local > top ? local : top;
    }
    return (int64_t)top;
}

#undef LIST_PARALLEL
#undef LIST_MAX_PARALLEL
#undef LIST_ITEM
#undef LIST_STATE_LOCAL
#undef LIST_MODE_CASE
#undef DEFINE_LIST_STEPS
