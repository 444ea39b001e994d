/* optim_table.h: the table of fastopt's elementwise optimizers, from which every C entry point of
 * an elementwise step is made.
 *
 * An elementwise optimizer is one line of FASTOPT_ELEMENTWISE below and one element function,
 * NAME(<name>_element) in optim_template.h. From the line come:
 *   - the public steps fastopt_<name>_f32/_f64 and fastopt_<name>_with_norm_f32/_f64, declared in
 *     fastopt.h and defined by optim_template.h (DEFINE_STEPS, optim.c);
 *   - the mixed-precision step fastopt_<name>_mixed, declared in mixed.h and defined by mixed.c
 *     (DEFINE_MIXED), which runs fastopt_<name>_f32 on decoded blocks;
 *   - the mode bits of the element, <name>_<mode> (DEFINE_MODES, optim.c);
 *   - the cffi declarations: fastopt/backends/c/build.py runs the headers through the C
 *     preprocessor and gives cffi the prototypes this table expands to.
 * LAMB (segmented, two passes) is written out by hand and is not in the table.
 *
 * A line reads X(name, (states), (scalars), (modes)), each list in parentheses:
 *   states   the state arrays after param and grad, in argument order, each (array, used): the
 *            array is read and written only when the expression used (of the scalars) is true,
 *            and may be NULL otherwise;
 *   scalars  the scalar arguments after the arrays, each (real, name) (float in _f32 and _mixed,
 *            double in _f64) or (int, name) (a flag), in the order of the algorithm's kernel_args
 *            in fastopt/optim/algorithms.py (real and int are tags, pasted onto FASTOPT_TYPE_);
 *            grad_scale, a real, follows them in every step;
 *   modes    up to 5 conditions, each (mode, condition), an expression of the scalars that is
 *            fixed during a step, or () for none.
 * The element sees the modes as one mask of bits <name>_<mode>, a compile-time constant: the
 * generated step computes the mask once from the conditions and switches over every one of its
 * 2^k values, each case a loop (STEP_LOOP, optim.c) of the element inlined with that constant,
 * so each loop is branch-free and vectorizes. A condition that varies per element, or one not
 * worth a loop of its own (maximize, a multiplication by -1 or 1), stays an ordinary expression
 * in the element.
 *
 * The signatures, in full:
 *   void fastopt_<name>_f32(int64_t n, float *param, const float *grad, float *<state>...,
 *                           <scalar>..., float grad_scale);
 *   void fastopt_<name>_with_norm_f32(<the same>, double *norm_out);
 *   the same with double for _f64;
 *   void fastopt_<name>_mixed(int64_t n, float *master, const void *grad, int grad_fmt,
 *                             void *<state>..., int state_fmt, uint16_t *model, int model_fmt,
 *                             <scalar, real as float>..., float grad_scale, int stochastic,
 *                             int64_t key);
 *
 * The list machinery (FASTOPT_PP_*) is plain C99 preprocessing: FASTOPT_PP_EACH(m, ctx, list)
 * expands m(ctx, index, <the item's elements>) for each item of a list of up to 12, index being
 * a constant expression (0, 0 + 1, ...); FASTOPT_PP_MASKS(m, k, ...) expands m(mask, ...) for
 * each mask of k bits. A macro given to them must not use them itself.
 */
#ifndef FASTOPT_OPTIM_TABLE_H
#define FASTOPT_OPTIM_TABLE_H

/* name       states
 *            scalars (kernel_args order; grad_scale follows)
 *            modes */
#define FASTOPT_ELEMENTWISE(X)                                                                     \
    X(sgd,      ((momentum_buffer, momentum != 0)),                                                \
                ((real, lr), (real, weight_decay), (real, momentum), (real, dampening),            \
                 (int, nesterov), (int, maximize), (int, first_step)),                             \
                ((l2, weight_decay != 0), (momentum, momentum != 0), (first_step, first_step),     \
                 (nesterov, nesterov)))                                                            \
    X(adagrad,  ((state_sum, 1)),                                                                  \
                ((real, weight_decay), (real, eps), (int, maximize), (real, clr)),                 \
                ((l2, weight_decay != 0)))                                                         \
    X(rmsprop,  ((square_avg, 1), (grad_avg, centered), (momentum_buffer, momentum > 0)),          \
                ((real, lr), (real, alpha), (real, eps), (real, weight_decay), (real, momentum),   \
                 (int, centered), (int, maximize)),                                                \
                ((l2, weight_decay != 0), (centered, centered), (momentum, momentum > 0)))         \
    X(adam,     ((exp_avg, 1), (exp_avg_sq, 1), (max_exp_avg_sq, amsgrad)),                        \
                ((real, lr), (real, beta1), (real, beta2), (real, eps), (real, weight_decay),      \
                 (int, amsgrad), (int, maximize), (int, decoupled), (real, step_size),             \
                 (real, bias_correction2_sqrt)),                                                   \
                ((l2, !decoupled && weight_decay != 0), (amsgrad, amsgrad)))                       \
    X(adamax,   ((exp_avg, 1), (exp_inf, 1)),                                                      \
                ((real, beta1), (real, beta2), (real, eps), (real, weight_decay), (int, maximize), \
                 (real, clr)),                                                                     \
                ((l2, weight_decay != 0)))                                                         \
    X(nadam,    ((exp_avg, 1), (exp_avg_sq, 1)),                                                   \
                ((real, lr), (real, beta1), (real, beta2), (real, eps), (real, weight_decay),      \
                 (int, maximize), (int, decoupled), (real, grad_coef), (real, exp_avg_coef),       \
                 (real, bias_correction2)),                                                        \
                ((l2, !decoupled && weight_decay != 0)))                                           \
    X(radam,    ((exp_avg, 1), (exp_avg_sq, 1)),                                                   \
                ((real, lr), (real, beta1), (real, beta2), (real, eps), (real, weight_decay),      \
                 (int, maximize), (int, decoupled), (int, rectify), (real, step_size),             \
                 (real, bias_correction2_sqrt)),                                                   \
                ((l2, !decoupled && weight_decay != 0), (rectify, rectify)))                       \
    X(adadelta, ((square_avg, 1), (acc_delta, 1)),                                                 \
                ((real, lr), (real, rho), (real, eps), (real, weight_decay), (int, maximize)),     \
                ((l2, weight_decay != 0)))                                                         \
    X(lion,     ((exp_avg, 1)),                                                                    \
                ((real, lr), (real, beta1), (real, beta2), (real, weight_decay), (int, maximize)), \
                ())                                                                                \
    X(rprop,    ((prev, 1), (step_size, 1)),                                                       \
                ((real, etaminus), (real, etaplus), (real, step_size_min), (real, step_size_max),  \
                 (int, maximize)),                                                                 \
                ())                                                                                \
    X(asgd,     ((ax, 1)),                                                                         \
                ((real, weight_decay), (int, maximize), (real, eta), (real, decay), (real, mu)),   \
                ((l2, weight_decay != 0), (average, mu != 1)))

/* ---- Parameter and argument lists of a line ------------------------------------------------ */

/* FASTOPT_STEP_PARAMS(pointer, real, states, scalars): the parameters of a float step, with
 * pointer the type of its written arrays (float *, or REAL *restrict) and real its scalars' type;
 * FASTOPT_STEP_ARGS(states, scalars): the arguments that pass them on. */
#define FASTOPT_STEP_PARAMS(pointer, real, states, scalars)                                        \
    int64_t n, pointer param, const pointer grad                                                   \
    FASTOPT_PP_EACH(FASTOPT_STATE_PARAM, pointer, states)                                          \
    FASTOPT_PP_EACH(FASTOPT_SCALAR_PARAM, real, scalars), real grad_scale
#define FASTOPT_STEP_ARGS(states, scalars)                                                         \
    n, param, grad FASTOPT_PP_EACH(FASTOPT_STATE_ARG, ~, states)                                   \
    FASTOPT_PP_EACH(FASTOPT_SCALAR_ARG, ~, scalars), grad_scale

#define FASTOPT_STATE_PARAM(pointer, index, array, ...) , pointer array
#define FASTOPT_SCALAR_PARAM(real, index, type, scalar) , FASTOPT_TYPE_##type(real) scalar
#define FASTOPT_TYPE_real(real) real
#define FASTOPT_TYPE_int(real) int
#define FASTOPT_STATE_ARG(ctx, index, array, ...) , array
#define FASTOPT_SCALAR_ARG(ctx, index, type, scalar) , scalar

/* ---- The list machinery ---------------------------------------------------------------------- */

#define FASTOPT_PP_CAT(a, b) FASTOPT_PP_CAT_(a, b)
#define FASTOPT_PP_CAT_(a, b) a##b
#define FASTOPT_PP_UNPAREN(...) __VA_ARGS__

/* FASTOPT_PP_LENGTH(list): the number of items of a parenthesized list of parenthesized items;
 * 0 for (). */
#define FASTOPT_PP_LENGTH(list)                                                                    \
    FASTOPT_PP_CAT(FASTOPT_PP_LENGTH_, FASTOPT_PP_IS_PAREN(FASTOPT_PP_FIRST list))(list)
#define FASTOPT_PP_LENGTH_0(list) 0
#define FASTOPT_PP_LENGTH_1(list) FASTOPT_PP_COUNT list
#define FASTOPT_PP_COUNT(...)                                                                      \
    FASTOPT_PP_COUNT_(__VA_ARGS__, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, ~)
#define FASTOPT_PP_COUNT_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, count, ...) count
#define FASTOPT_PP_FIRST(...) FASTOPT_PP_FIRST_(__VA_ARGS__, ~)
#define FASTOPT_PP_FIRST_(first, ...) first
/* 1 if x starts with a parenthesis, else 0 (x empty included) */
#define FASTOPT_PP_IS_PAREN(x) FASTOPT_PP_IS_PAREN_(FASTOPT_PP_PROBE x)
#define FASTOPT_PP_IS_PAREN_(...) FASTOPT_PP_SECOND(__VA_ARGS__, 0, ~)
#define FASTOPT_PP_PROBE(...) ~, 1
#define FASTOPT_PP_SECOND(a, b, ...) b

/* FASTOPT_PP_EACH(m, ctx, list): m(ctx, index, <item's elements>) for each item of list. */
#define FASTOPT_PP_EACH(m, ctx, list)                                                              \
    FASTOPT_PP_CALL(FASTOPT_PP_CAT(FASTOPT_PP_EACH_, FASTOPT_PP_LENGTH(list)),                     \
                    (m, ctx, 0, FASTOPT_PP_UNPAREN list))
#define FASTOPT_PP_CALL(macro, args) macro args
#define FASTOPT_PP_ITEM(m, ctx, i, item) FASTOPT_PP_ITEM_(m, (ctx, i, FASTOPT_PP_UNPAREN item))
#define FASTOPT_PP_ITEM_(m, args) m args
#define FASTOPT_PP_EACH_0(m, c, i, ...)
#define FASTOPT_PP_EACH_1(m, c, i, x) FASTOPT_PP_ITEM(m, c, i, x)
#define FASTOPT_PP_EACH_2(m, c, i, x, ...)                                                         \
    FASTOPT_PP_ITEM(m, c, i, x) FASTOPT_PP_EACH_1(m, c, i + 1, __VA_ARGS__)
#define FASTOPT_PP_EACH_3(m, c, i, x, ...)                                                         \
    FASTOPT_PP_ITEM(m, c, i, x) FASTOPT_PP_EACH_2(m, c, i + 1, __VA_ARGS__)
#define FASTOPT_PP_EACH_4(m, c, i, x, ...)                                                         \
    FASTOPT_PP_ITEM(m, c, i, x) FASTOPT_PP_EACH_3(m, c, i + 1, __VA_ARGS__)
#define FASTOPT_PP_EACH_5(m, c, i, x, ...)                                                         \
    FASTOPT_PP_ITEM(m, c, i, x) FASTOPT_PP_EACH_4(m, c, i + 1, __VA_ARGS__)
#define FASTOPT_PP_EACH_6(m, c, i, x, ...)                                                         \
    FASTOPT_PP_ITEM(m, c, i, x) FASTOPT_PP_EACH_5(m, c, i + 1, __VA_ARGS__)
#define FASTOPT_PP_EACH_7(m, c, i, x, ...)                                                         \
    FASTOPT_PP_ITEM(m, c, i, x) FASTOPT_PP_EACH_6(m, c, i + 1, __VA_ARGS__)
#define FASTOPT_PP_EACH_8(m, c, i, x, ...)                                                         \
    FASTOPT_PP_ITEM(m, c, i, x) FASTOPT_PP_EACH_7(m, c, i + 1, __VA_ARGS__)
#define FASTOPT_PP_EACH_9(m, c, i, x, ...)                                                         \
    FASTOPT_PP_ITEM(m, c, i, x) FASTOPT_PP_EACH_8(m, c, i + 1, __VA_ARGS__)
#define FASTOPT_PP_EACH_10(m, c, i, x, ...)                                                        \
    FASTOPT_PP_ITEM(m, c, i, x) FASTOPT_PP_EACH_9(m, c, i + 1, __VA_ARGS__)
#define FASTOPT_PP_EACH_11(m, c, i, x, ...)                                                        \
    FASTOPT_PP_ITEM(m, c, i, x) FASTOPT_PP_EACH_10(m, c, i + 1, __VA_ARGS__)
#define FASTOPT_PP_EACH_12(m, c, i, x, ...)                                                        \
    FASTOPT_PP_ITEM(m, c, i, x) FASTOPT_PP_EACH_11(m, c, i + 1, __VA_ARGS__)

/* FASTOPT_PP_MASKS(m, k, ...): m(mask, ...) for mask = 0 .. 2^k - 1, k <= 5, each mask a
 * constant expression (0 + 1 + 4, ...). */
#define FASTOPT_PP_MASKS(m, k, ...) FASTOPT_PP_CAT(FASTOPT_PP_MASKS_, k)(m, 0, __VA_ARGS__)
#define FASTOPT_PP_MASKS_0(m, mask, ...) m(mask, __VA_ARGS__)
#define FASTOPT_PP_MASKS_1(m, mask, ...)                                                           \
    FASTOPT_PP_MASKS_0(m, mask, __VA_ARGS__) FASTOPT_PP_MASKS_0(m, mask + 1, __VA_ARGS__)
#define FASTOPT_PP_MASKS_2(m, mask, ...)                                                           \
    FASTOPT_PP_MASKS_1(m, mask, __VA_ARGS__) FASTOPT_PP_MASKS_1(m, mask + 2, __VA_ARGS__)
#define FASTOPT_PP_MASKS_3(m, mask, ...)                                                           \
    FASTOPT_PP_MASKS_2(m, mask, __VA_ARGS__) FASTOPT_PP_MASKS_2(m, mask + 4, __VA_ARGS__)
#define FASTOPT_PP_MASKS_4(m, mask, ...)                                                           \
    FASTOPT_PP_MASKS_3(m, mask, __VA_ARGS__) FASTOPT_PP_MASKS_3(m, mask + 8, __VA_ARGS__)
#define FASTOPT_PP_MASKS_5(m, mask, ...)                                                           \
    FASTOPT_PP_MASKS_4(m, mask, __VA_ARGS__) FASTOPT_PP_MASKS_4(m, mask + 16, __VA_ARGS__)

#endif
