/* optim_avx512.c: the kernels of optim.c compiled for AVX-512 (F, VL, BW, DQ; variant avx512),
 * chosen at run time by library.c on CPUs that have it. Empty where the variants are not built
 * (library.c's FASTOPT_VARIANTS: GCC on x86-64). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq")
#define FASTOPT_VARIANT avx512
#include "optim.c"
#else
typedef int fastopt_no_avx512_variant; /* ISO C wants a declaration in every translation unit */
#endif
