/* library.c: the library's public entry points for the kernels of optim.c, which is compiled once
 * per vector variant (generic, avx2, avx512): each entry point calls the variant chosen at the
 * first call (the widest the CPU runs) or by fastopt_set_vector_isa; also the ABI version, build
 * information and threads (fastopt.h documents them).
 *
 * The variants exist where GCC targets x86-64 (FASTOPT_VARIANTS); elsewhere only the generic
 * one, compiled for the compiler's baseline or FASTOPT_MARCH (fastopt/backends/c/build.py).
 * __builtin_cpu_supports also checks that the operating system saves the vector registers.
 */
#include <stdint.h>
#include <string.h>

#include "fastopt.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FASTOPT_VARIANTS 1
#else
#define FASTOPT_VARIANTS 0
#endif

int fastopt_abi_version(void)
{
    return FASTOPT_ABI_VERSION;
}

/* ---- The variants' declarations ------------------------------------------------------------ */

#define DECLARE_VARIANT(variant, name, states, scalars)                                            \
    void fastopt_##name##_f32_##variant(FASTOPT_STEP_PARAMS(float *, float, states, scalars));     \
    void fastopt_##name##_f64_##variant(FASTOPT_STEP_PARAMS(double *, double, states, scalars));   \
    void fastopt_##name##_with_norm_f32_##variant(                                                 \
        FASTOPT_STEP_PARAMS(float *, float, states, scalars), double *norm_out);                   \
    void fastopt_##name##_with_norm_f64_##variant(                                                 \
        FASTOPT_STEP_PARAMS(double *, double, states, scalars), double *norm_out);
#define DECLARE_REDUCTIONS(variant)                                                                \
    double fastopt_sum_of_squares_f32_##variant(int64_t n, const float *grad);                     \
    double fastopt_sum_of_squares_f64_##variant(int64_t n, const double *grad);                    \
    int64_t fastopt_max_magnitude_bits_f32_##variant(int64_t n, const void *grad);                 \
    int64_t fastopt_max_magnitude_bits_f64_##variant(int64_t n, const void *grad);                 \
    int64_t fastopt_max_magnitude_bits_u16_##variant(int64_t n, const void *grad);                 \
    int fastopt_lamb_f32_##variant(int64_t n, float *param, const float *grad, float *exp_avg,     \
                                   float *exp_avg_sq, int64_t num_segments,                       \
                                   const int64_t *segment_offsets, float lr, float beta1,         \
                                   float beta2, float eps, float weight_decay, int maximize,      \
                                   float bias_correction1, float bias_correction2,                \
                                   float grad_scale);                                             \
    int fastopt_lamb_f64_##variant(int64_t n, double *param, const double *grad,                   \
                                   double *exp_avg, double *exp_avg_sq, int64_t num_segments,     \
                                   const int64_t *segment_offsets, double lr, double beta1,       \
                                   double beta2, double eps, double weight_decay, int maximize,   \
                                   double bias_correction1, double bias_correction2,              \
                                   double grad_scale);

#define DECLARE_GENERIC(name, states, scalars, modes)                                              \
    DECLARE_VARIANT(generic, name, states, scalars)
FASTOPT_ELEMENTWISE(DECLARE_GENERIC)
DECLARE_REDUCTIONS(generic)
#if FASTOPT_VARIANTS
#define DECLARE_AVX2(name, states, scalars, modes) DECLARE_VARIANT(avx2, name, states, scalars)
#define DECLARE_AVX512(name, states, scalars, modes) DECLARE_VARIANT(avx512, name, states, scalars)
FASTOPT_ELEMENTWISE(DECLARE_AVX2)
FASTOPT_ELEMENTWISE(DECLARE_AVX512)
DECLARE_REDUCTIONS(avx2)
DECLARE_REDUCTIONS(avx512)
#endif

/* ---- The choice ------------------------------------------------------------------------------ */

enum { ISA_GENERIC, ISA_AVX2, ISA_AVX512, ISA_COUNT };
static const char *const isa_names[ISA_COUNT] = {"generic", "avx2", "avx512"};

static int isa_supported(int isa)
{
#if FASTOPT_VARIANTS
    __builtin_cpu_init();
    if (isa == ISA_AVX2)
        return __builtin_cpu_supports("avx2");
    if (isa == ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
               && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
    return isa == ISA_GENERIC;
}

/* -1 until the first call; every thread that finds it unset computes the same value. */
static int chosen_isa = -1;

static int current_isa(void)
{
    int isa = __atomic_load_n(&chosen_isa, __ATOMIC_RELAXED);
    if (isa < 0) {
        isa = ISA_GENERIC;
        for (int k = ISA_COUNT - 1; k > ISA_GENERIC; k--)
            if (isa_supported(k)) {
                isa = k;
                break;
            }
        __atomic_store_n(&chosen_isa, isa, __ATOMIC_RELAXED);
    }
    return isa;
}

const char *fastopt_vector_isa(void)
{
    return isa_names[current_isa()];
}

int fastopt_set_vector_isa(const char *name)
{
    for (int k = 0; k < ISA_COUNT; k++)
        if (name != NULL && strcmp(name, isa_names[k]) == 0 && isa_supported(k)) {
            __atomic_store_n(&chosen_isa, k, __ATOMIC_RELAXED);
            return 0;
        }
    return -1;
}

/* ---- The public entry points ----------------------------------------------------------------- */

/* CALL_VARIANT(fn, args): fn_<variant> args for the current variant, as an expression. */
#if FASTOPT_VARIANTS
#define CALL_VARIANT(fn, args)                                                                     \
    (current_isa() == ISA_AVX512 ? fn##_avx512 args                                                \
     : current_isa() == ISA_AVX2 ? fn##_avx2 args : fn##_generic args)
#else
#define CALL_VARIANT(fn, args) fn##_generic args
#endif

#define DEFINE_ENTRY_POINTS(name, states, scalars, modes)                                          \
    void fastopt_##name##_f32(FASTOPT_STEP_PARAMS(float *, float, states, scalars))                \
    {                                                                                              \
        CALL_VARIANT(fastopt_##name##_f32, (FASTOPT_STEP_ARGS(states, scalars)));                  \
    }                                                                                              \
    void fastopt_##name##_f64(FASTOPT_STEP_PARAMS(double *, double, states, scalars))              \
    {                                                                                              \
        CALL_VARIANT(fastopt_##name##_f64, (FASTOPT_STEP_ARGS(states, scalars)));                  \
    }                                                                                              \
    void fastopt_##name##_with_norm_f32(FASTOPT_STEP_PARAMS(float *, float, states, scalars),      \
                                        double *norm_out)                                          \
    {                                                                                              \
        CALL_VARIANT(fastopt_##name##_with_norm_f32, (FASTOPT_STEP_ARGS(states, scalars),          \
                                                      norm_out));                                  \
    }                                                                                              \
    void fastopt_##name##_with_norm_f64(FASTOPT_STEP_PARAMS(double *, double, states, scalars),    \
                                        double *norm_out)                                          \
    {                                                                                              \
        CALL_VARIANT(fastopt_##name##_with_norm_f64, (FASTOPT_STEP_ARGS(states, scalars),          \
                                                      norm_out));                                  \
    }
FASTOPT_ELEMENTWISE(DEFINE_ENTRY_POINTS)

double fastopt_sum_of_squares_f32(int64_t n, const float *grad)
{
    return CALL_VARIANT(fastopt_sum_of_squares_f32, (n, grad));
}

double fastopt_sum_of_squares_f64(int64_t n, const double *grad)
{
    return CALL_VARIANT(fastopt_sum_of_squares_f64, (n, grad));
}

int64_t fastopt_max_magnitude_bits_f32(int64_t n, const void *grad)
{
    return CALL_VARIANT(fastopt_max_magnitude_bits_f32, (n, grad));
}

int64_t fastopt_max_magnitude_bits_f64(int64_t n, const void *grad)
{
    return CALL_VARIANT(fastopt_max_magnitude_bits_f64, (n, grad));
}

int64_t fastopt_max_magnitude_bits_u16(int64_t n, const void *grad)
{
    return CALL_VARIANT(fastopt_max_magnitude_bits_u16, (n, grad));
}

int fastopt_lamb_f32(int64_t n, float *param, const float *grad, float *exp_avg,
                     float *exp_avg_sq, int64_t num_segments, const int64_t *segment_offsets,
                     float lr, float beta1, float beta2, float eps, float weight_decay,
                     int maximize, float bias_correction1, float bias_correction2,
                     float grad_scale)
{
    return CALL_VARIANT(fastopt_lamb_f32, (n, param, grad, exp_avg, exp_avg_sq, num_segments,
                                           segment_offsets, lr, beta1, beta2, eps, weight_decay,
                                           maximize, bias_correction1, bias_correction2,
                                           grad_scale));
}

int fastopt_lamb_f64(int64_t n, double *param, const double *grad, double *exp_avg,
                     double *exp_avg_sq, int64_t num_segments, const int64_t *segment_offsets,
                     double lr, double beta1, double beta2, double eps, double weight_decay,
                     int maximize, double bias_correction1, double bias_correction2,
                     double grad_scale)
{
    return CALL_VARIANT(fastopt_lamb_f64, (n, param, grad, exp_avg, exp_avg_sq, num_segments,
                                           segment_offsets, lr, beta1, beta2, eps, weight_decay,
                                           maximize, bias_correction1, bias_correction2,
                                           grad_scale));
}

/* ---- Build information and threads ----------------------------------------------------------- */

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

#if defined(__clang__)
#define COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define COMPILER "gcc " __VERSION__
#else
#define COMPILER "unknown compiler"
#endif

#ifdef _OPENMP
#define OPENMP                                                                                     \
    "OpenMP " STRINGIFY(_OPENMP) ", parallel from " STRINGIFY(FASTOPT_PARALLEL_THRESHOLD)          \
    " elements"
#else
#define OPENMP "OpenMP off"
#endif

/* FASTOPT_CFLAGS is defined by fastopt/backends/c/build.py as a string literal. */
#ifndef FASTOPT_CFLAGS
#define FASTOPT_CFLAGS "unknown"
#endif

const char *fastopt_build_info(void)
{
    return COMPILER "; " OPENMP "; flags: " FASTOPT_CFLAGS;
}

/* Every tunable that build.py passes (C_DEFINES of fastopt/_core/config.py), as the compiler saw
 * it; each source checks that its own are defined. */
#define TUNABLE(name) #name "=" STRINGIFY(name)
const char *fastopt_build_config(void)
{
    return TUNABLE(FASTOPT_PARALLEL_THRESHOLD) " " TUNABLE(FASTOPT_REDUCTION_CHUNK) " "
           TUNABLE(FASTOPT_REDUCTION_LANES) " " TUNABLE(FASTOPT_REDUCTION_BATCH) " "
           TUNABLE(FASTOPT_NORM_BLOCK) " "
           TUNABLE(FASTOPT_MIXED_BLOCK) " " TUNABLE(FASTOPT_MLP_MR) " "
           TUNABLE(FASTOPT_MLP_PARALLEL_MACS) " " TUNABLE(FASTOPT_MLP_PANEL_IN_PLACE_BYTES) " "
           TUNABLE(FASTOPT_MLP_PARALLEL_ELEMENTS) " " TUNABLE(FASTOPT_MLP_TASKS_PER_THREAD) " "
           TUNABLE(FASTOPT_LANDSCAPE_ROWS) " " TUNABLE(FASTOPT_LANDSCAPE_CLASSES) " "
           TUNABLE(FASTOPT_QUANT8_BLOCK);
}
#undef TUNABLE

int fastopt_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void fastopt_set_num_threads(int num_threads)
{
#ifdef _OPENMP
    if (num_threads >= 1)
        omp_set_num_threads(num_threads);
#else
    (void)num_threads;
#endif
}

/* ---- The list steps (optim_list.h) ------------------------------------------------------------
 *
 * Each calls the chosen variant of list_template.h's step, as the entry points above do. */

#include "optim_list.h"

#define LIST_STATE_ARG(ctx, index, array, ...) , array##_list
#define LIST_ARGS(states, scalars)                                                                 \
    n, items, item_tensor, item_start, lengths, param_list, grad_list                              \
    FASTOPT_PP_EACH(LIST_STATE_ARG, ~, states) FASTOPT_PP_EACH(FASTOPT_SCALAR_ARG, ~, scalars),    \
    grad_scale
#define LIST_ITEMS                                                                                 \
    int64_t n, int64_t items, const int64_t *item_tensor, const int64_t *item_start,               \
    const int64_t *lengths
#define DECLARE_LIST_VARIANT(variant, name, states, scalars)                                       \
    void fastopt_##name##_list_f32_##variant(FASTOPT_LIST_PARAMS(float, states, scalars));         \
    void fastopt_##name##_list_f64_##variant(FASTOPT_LIST_PARAMS(double, states, scalars));
#define DECLARE_LIST_REDUCTIONS(variant, real, suffix)                                             \
    void fastopt_sum_of_squares_list_##suffix##_##variant(LIST_ITEMS, int64_t count,               \
                                                          const real *const *grad_list,            \
                                                          double *partial, double *out);           \
    int64_t fastopt_max_magnitude_bits_list_##suffix##_##variant(LIST_ITEMS,                       \
                                                                 const real *const *grad_list);
#define DECLARE_LIST_GENERIC(name, states, scalars, modes)                                         \
    DECLARE_LIST_VARIANT(generic, name, states, scalars)
FASTOPT_ELEMENTWISE(DECLARE_LIST_GENERIC)
DECLARE_LIST_REDUCTIONS(generic, float, f32)
DECLARE_LIST_REDUCTIONS(generic, double, f64)
#if FASTOPT_VARIANTS
#define DECLARE_LIST_AVX2(name, states, scalars, modes)                                            \
    DECLARE_LIST_VARIANT(avx2, name, states, scalars)
#define DECLARE_LIST_AVX512(name, states, scalars, modes)                                          \
    DECLARE_LIST_VARIANT(avx512, name, states, scalars)
FASTOPT_ELEMENTWISE(DECLARE_LIST_AVX2)
FASTOPT_ELEMENTWISE(DECLARE_LIST_AVX512)
DECLARE_LIST_REDUCTIONS(avx2, float, f32)
DECLARE_LIST_REDUCTIONS(avx2, double, f64)
DECLARE_LIST_REDUCTIONS(avx512, float, f32)
DECLARE_LIST_REDUCTIONS(avx512, double, f64)
#endif

#define DEFINE_LIST_ENTRY_POINTS(name, states, scalars, modes)                                     \
    void fastopt_##name##_list_f32(FASTOPT_LIST_PARAMS(float, states, scalars))                    \
    {                                                                                              \
        CALL_VARIANT(fastopt_##name##_list_f32, (LIST_ARGS(states, scalars)));                     \
    }                                                                                              \
    void fastopt_##name##_list_f64(FASTOPT_LIST_PARAMS(double, states, scalars))                   \
    {                                                                                              \
        CALL_VARIANT(fastopt_##name##_list_f64, (LIST_ARGS(states, scalars)));                     \
    }
FASTOPT_ELEMENTWISE(DEFINE_LIST_ENTRY_POINTS)

#define DEFINE_LIST_REDUCTIONS(real, suffix)                                                       \
    void fastopt_sum_of_squares_list_##suffix(LIST_ITEMS, int64_t count,                           \
                                              const real *const *grad_list, double *partial,       \
                                              double *out)                                         \
    {                                                                                              \
        CALL_VARIANT(fastopt_sum_of_squares_list_##suffix,                                         \
                     (n, items, item_tensor, item_start, lengths, count, grad_list, partial,       \
                      out));                                                                       \
    }                                                                                              \
    int64_t fastopt_max_magnitude_bits_list_##suffix(LIST_ITEMS, const real *const *grad_list)     \
    {                                                                                              \
        return CALL_VARIANT(fastopt_max_magnitude_bits_list_##suffix,                              \
                            (n, items, item_tensor, item_start, lengths, grad_list));              \
    }
DEFINE_LIST_REDUCTIONS(float, f32)
DEFINE_LIST_REDUCTIONS(double, f64)
