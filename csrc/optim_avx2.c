/* optim_avx2.c: the kernels of optim.c compiled for AVX2 (variant avx2), chosen at run time by
 * library.c on CPUs that have it. Empty where the variants are not built (library.c's
 * FASTOPT_VARIANTS: GCC on x86-64). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC target("avx2")
#define FASTOPT_VARIANT avx2
#include "optim.c"
#else
typedef int fastopt_no_avx2_variant; /* ISO C wants a declaration in every translation unit */
#endif
