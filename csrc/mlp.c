/* mlp.c: the C backend of fastopt's MLP kernels (declared and documented in mlp.h).
 *
 * Every matrix product of a dense layer is one routine, gemm(): C = op(A) op(B) with op(A) read
 * through row and column strides (so x, x^T, dZ and w^T need no transposed copies), and a fused
 * epilogue (bias, pre-activation, activation) applied to each tile as it is stored:
 *
 *   1. op(B) is taken in panels of NR columns, read in place or packed p-major (bp[p][NR],
 *      zero-padded at the edge) right before the tiles that read it; op(A) is read in place;
 *   2. for every (panel, block of MR rows) tile: an MR x NR micro-kernel keeps the tile in
 *      registers for the whole reduction (AVX2+FMA: 12 accumulators of 8 floats or 4 doubles, per
 *      step two loads of the panel and MR broadcasts of the block), then stores it through the
 *      epilogue.
 *
 * In parallel, tasks (a panel and a run of its row blocks, so a thread's panel stays in its L2
 * cache while it sweeps the rows) are handed to the OpenMP threads dynamically. Each element of C
 * is summed by one thread in one order: results do not depend on the thread count. The AVX2+FMA
 * micro-kernel is compiled with a target attribute and chosen at run time (the rest of the file
 * keeps the portable flags of fastopt/backends/c/build.py); the portable micro-kernel is plain C.
 *
 * The file includes itself once per element type (float, double) for the typed bodies, after the
 * shared definitions.
 */
#ifndef MLP_TYPED_PASS

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fastopt.h"
#include "mlp.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define MLP_X86 1
#include <immintrin.h>
#define MLP_AVX2 __attribute__((target("avx2,fma")))
#else
#define MLP_X86 0
#endif

#if defined(__GNUC__)
#define THREAD_LOCAL __thread
#else
#define THREAD_LOCAL _Thread_local
#endif

enum { IDENTITY = 0, RELU = 1, TANH = 2, SIGMOID = 3, GELU = 4 };
/* The optimizer functions of fastopt.h that an epoch runs, numbered: every line of
 * FASTOPT_ELEMENTWISE (optim_table.h) in its order, then LAMB (EPOCH_OPTIMIZERS of
 * fastopt/nn/reference.py, which fastopt_mlp_epoch_optimizers lets the tests compare). */
#define EPOCH_CODE(name, states, scalars, modes) OPT_##name,
enum { FASTOPT_ELEMENTWISE(EPOCH_CODE) OPT_lamb };
#undef EPOCH_CODE

#define EPOCH_NAME(name, states, scalars, modes) #name " "
const char *fastopt_mlp_epoch_optimizers(void)
{
    return FASTOPT_ELEMENTWISE(EPOCH_NAME) "lamb";
}
#undef EPOCH_NAME

/* The tunables, fastopt/_core/config.py's FASTOPT_MLP_* passed with -D by
 * fastopt/backends/c/build.py, under short names. */
#if !defined(FASTOPT_MLP_MR) || !defined(FASTOPT_MLP_PARALLEL_MACS)                               \
    || !defined(FASTOPT_MLP_PANEL_IN_PLACE_BYTES) || !defined(FASTOPT_MLP_PARALLEL_ELEMENTS)      \
    || !defined(FASTOPT_MLP_TASKS_PER_THREAD)
#error "tunables missing: build with fastopt/backends/c/build.py (-D from fastopt/_core/config.py)"
#endif
/* Rows of a micro-kernel tile (its columns, NR, are two vectors of the element type). */
#if FASTOPT_MLP_MR != 6
#error "FASTOPT_MLP_MR: the micro-kernels (A_ROWS, micro_avx2) are written for 6 rows"
#endif
#define MR FASTOPT_MLP_MR
/* Products with fewer multiply-adds run on the calling thread. */
#define PARALLEL_MACS FASTOPT_MLP_PARALLEL_MACS
/* A panel of B (depth x NR) up to this size is read in place, a larger one packed. */
#define PANEL_IN_PLACE_BYTES FASTOPT_MLP_PANEL_IN_PLACE_BYTES
/* Elementwise passes (dZ) with fewer elements run on the calling thread. */
#define PARALLEL_ELEMENTS FASTOPT_MLP_PARALLEL_ELEMENTS
/* A parallel product hands out at least this many tasks per thread (see gemm). */
#define TASKS_PER_THREAD FASTOPT_MLP_TASKS_PER_THREAD

#define MLP_MIN(a, b) ((a) < (b) ? (a) : (b))

#ifdef _OPENMP
#include <omp.h>
static int64_t max_threads(void) { return omp_get_max_threads(); }
static int64_t thread_number(void) { return omp_get_thread_num(); }
#else
static int64_t max_threads(void) { return 1; }
static int64_t thread_number(void) { return 0; }
#endif

static int simd_setting = -1; /* -1: not decided yet */

static int cpu_has_avx2_fma(void)
{
#if MLP_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int fastopt_mlp_simd(void)
{
    if (simd_setting < 0)
        simd_setting = cpu_has_avx2_fma();
    return simd_setting;
}

int fastopt_mlp_set_simd(int enabled)
{
    simd_setting = enabled && cpu_has_avx2_fma();
    return simd_setting;
}

/* Packing space: grown, never shrunk, one buffer per calling thread (threads inside a product use
 * their caller's). 64-byte aligned. NULL if out of memory. */
static THREAD_LOCAL char *scratch_raw;
static THREAD_LOCAL size_t scratch_bytes;

static void *scratch(size_t bytes)
{
    if (bytes > scratch_bytes) {
        free(scratch_raw);
        scratch_raw = malloc(bytes + 64);
        scratch_bytes = scratch_raw ? bytes : 0;
        if (!scratch_raw)
            return NULL;
    }
    return (void *)(((uintptr_t)scratch_raw + 63) & ~(uintptr_t)63);
}

#define NAME_(base, suffix) base##_##suffix
#define NAME_WITH(base, suffix) NAME_(base, suffix)
#define NAME(base) NAME_WITH(base, SUFFIX)

#define MLP_TYPED_PASS
#define T float
#define SUFFIX f32
#define EXP expf
#define LOG logf
#define TANH_ tanhf
#define SQRT_ sqrtf
#if MLP_X86
#define VEC __m256
#define VW 8
#define VZERO _mm256_setzero_ps
#define VSET1 _mm256_set1_ps
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VFMA _mm256_fmadd_ps
#else
#define VW 8
#endif
#include "mlp.c"
#undef T
#undef SUFFIX
#undef EXP
#undef LOG
#undef TANH_
#undef SQRT_
#undef VEC
#undef VW
#undef VZERO
#undef VSET1
#undef VLOAD
#undef VSTORE
#undef VFMA

#define T double
#define SUFFIX f64
#define EXP exp
#define LOG log
#define TANH_ tanh
#define SQRT_ sqrt
#if MLP_X86
#define VEC __m256d
#define VW 4
#define VZERO _mm256_setzero_pd
#define VSET1 _mm256_set1_pd
#define VLOAD _mm256_loadu_pd
#define VSTORE _mm256_storeu_pd
#define VFMA _mm256_fmadd_pd
#else
#define VW 4
#endif
#include "mlp.c"

#else /* MLP_TYPED_PASS: the bodies for element type T ------------------------------------- */

#define NR (2 * VW)

/* v = act(v) in place; pre = v first when pre is not NULL */
static void NAME(activate)(T *v, T *pre, int64_t count, int activation)
{
    if (pre)
        memcpy(pre, v, (size_t)count * sizeof(T));
    switch (activation) {
    case RELU:
        for (int64_t j = 0; j < count; j++)
            v[j] = v[j] > 0 ? v[j] : 0;
        break;
    case TANH:
        for (int64_t j = 0; j < count; j++)
            v[j] = TANH_(v[j]);
        break;
    case SIGMOID:
        for (int64_t j = 0; j < count; j++)
            v[j] = (T)1 / ((T)1 + EXP(-v[j]));
        break;
    case GELU: /* z Phi(z), in double as the reference */
        for (int64_t j = 0; j < count; j++)
            v[j] = (T)(0.5 * (double)v[j] * (1.0 + erf((double)v[j] * 0.70710678118654752440)));
        break;
    default:
        break;
    }
}

/* d *= act'(.) from the output a, or from the pre-activation z for gelu */
static void NAME(derivative)(T *d, const T *a, const T *z, int64_t count, int activation)
{
    switch (activation) {
    case RELU:
        for (int64_t j = 0; j < count; j++)
            d[j] = a[j] > 0 ? d[j] : 0;
        break;
    case TANH:
        for (int64_t j = 0; j < count; j++)
            d[j] *= (T)1 - a[j] * a[j];
        break;
    case SIGMOID:
        for (int64_t j = 0; j < count; j++)
            d[j] *= a[j] * ((T)1 - a[j]);
        break;
    case GELU: /* Phi(z) + z phi(z) */
        for (int64_t j = 0; j < count; j++) {
            const double v = z[j];
            const double cdf = 0.5 * (1.0 + erf(v * 0.70710678118654752440));
            d[j] = (T)((double)d[j] * (cdf + v * exp(-0.5 * v * v) * 0.39894228040143267794));
        }
        break;
    default:
        break;
    }
}

/* bp[p][c] = B(p, j0 + c), with B(p, j) = b[p * ps + j * cs]; columns past n are zero */
static void NAME(pack_b)(int64_t n, int64_t depth, const T *b, int64_t ps, int64_t cs, int64_t j0,
                         T *bp)
{
    const int64_t cols = MLP_MIN(NR, n - j0);
    for (int64_t p = 0; p < depth; p++) {
        for (int64_t c = 0; c < cols; c++)
            bp[p * NR + c] = b[p * ps + (j0 + c) * cs];
        for (int64_t c = cols; c < NR; c++)
            bp[p * NR + c] = 0;
    }
}

/* The rows of a tile of op(A): row r at a + min(r, rows - 1) * rs (rows past the matrix repeat
 * its last row; the tile store drops them), element p of a row at p * ps. */
#define A_ROWS(a, rs, rows)                                                                       \
    const T *a0 = (a), *a1 = (a) + MLP_MIN(1, (rows) - 1) * (rs),                                 \
            *a2 = (a) + MLP_MIN(2, (rows) - 1) * (rs), *a3 = (a) + MLP_MIN(3, (rows) - 1) * (rs), \
            *a4 = (a) + MLP_MIN(4, (rows) - 1) * (rs), *a5 = (a) + MLP_MIN(5, (rows) - 1) * (rs)

/* tile[r][c] = sum_p A(r, p) B(p, c), B(p, c) = b[p * bs + c], portable C */
static void NAME(micro_c)(int64_t depth, const T *a, int64_t rs, int64_t ps, int64_t rows,
                          const T *b, int64_t bs, T *tile)
{
    A_ROWS(a, rs, rows);
    const T *arow[MR] = {a0, a1, a2, a3, a4, a5};
    T acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int64_t p = 0; p < depth; p++) {
        const T *bq = b + p * bs;
        for (int r = 0; r < MR; r++) {
            const T ar = arow[r][p * ps];
            for (int c = 0; c < NR; c++)
                acc[r][c] += ar * bq[c];
        }
    }
    memcpy(tile, acc, sizeof acc);
}

#if MLP_X86
/* tile[r][c] = sum_p A(r, p) B(p, c), AVX2+FMA: the 6 x 2 vector tile stays in registers; per
 * step, two vector loads of B and six broadcasts of A feed twelve FMAs */
MLP_AVX2 static void NAME(micro_avx2)(int64_t depth, const T *a, int64_t rs, int64_t ps,
                                      int64_t rows, const T *b, int64_t bs, T *tile)
{
    A_ROWS(a, rs, rows);
    VEC c00 = VZERO(), c01 = VZERO(), c10 = VZERO(), c11 = VZERO(), c20 = VZERO(), c21 = VZERO();
    VEC c30 = VZERO(), c31 = VZERO(), c40 = VZERO(), c41 = VZERO(), c50 = VZERO(), c51 = VZERO();
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 4
#endif
    for (int64_t p = 0; p < depth; p++) {
        const int64_t q = p * ps;
        const VEC b0 = VLOAD(b + p * bs), b1 = VLOAD(b + p * bs + VW);
        VEC x;
        x = VSET1(a0[q]); c00 = VFMA(x, b0, c00); c01 = VFMA(x, b1, c01);
        x = VSET1(a1[q]); c10 = VFMA(x, b0, c10); c11 = VFMA(x, b1, c11);
        x = VSET1(a2[q]); c20 = VFMA(x, b0, c20); c21 = VFMA(x, b1, c21);
        x = VSET1(a3[q]); c30 = VFMA(x, b0, c30); c31 = VFMA(x, b1, c31);
        x = VSET1(a4[q]); c40 = VFMA(x, b0, c40); c41 = VFMA(x, b1, c41);
        x = VSET1(a5[q]); c50 = VFMA(x, b0, c50); c51 = VFMA(x, b1, c51);
    }
    VSTORE(tile + 0 * NR, c00); VSTORE(tile + 0 * NR + VW, c01);
    VSTORE(tile + 1 * NR, c10); VSTORE(tile + 1 * NR + VW, c11);
    VSTORE(tile + 2 * NR, c20); VSTORE(tile + 2 * NR + VW, c21);
    VSTORE(tile + 3 * NR, c30); VSTORE(tile + 3 * NR + VW, c31);
    VSTORE(tile + 4 * NR, c40); VSTORE(tile + 4 * NR + VW, c41);
    VSTORE(tile + 5 * NR, c50); VSTORE(tile + 5 * NR + VW, c51);
}
#endif

/* C[i0.., j0..] = tile (+ bias, pre, activation when bias is not NULL), inside m x n */
static void NAME(store_tile)(const T *tile, int64_t i0, int64_t j0, int64_t m, int64_t n, T *c,
                             const T *bias, T *pre, int activation)
{
    const int64_t rows = MLP_MIN(MR, m - i0), cols = MLP_MIN(NR, n - j0);
    for (int64_t r = 0; r < rows; r++) {
        T *out = c + (i0 + r) * n + j0;
        const T *t = tile + r * NR;
        if (bias) {
            for (int64_t k = 0; k < cols; k++)
                out[k] = t[k] + bias[j0 + k];
            NAME(activate)(out, pre ? pre + (i0 + r) * n + j0 : NULL, cols, activation);
        } else {
            memcpy(out, t, (size_t)cols * sizeof(T));
        }
    }
}

typedef void (*NAME(micro_t))(int64_t, const T *, int64_t, int64_t, int64_t, const T *, int64_t,
                               T *);

/* The tile (ib, jb): MR rows of C against NR columns of op(B), read from its packed copy
 * packed[p][NR], or in place (a row-major B) when packed is NULL. */
static void NAME(panel_tile)(NAME(micro_t) micro, int64_t ib, int64_t jb, int64_t m, int64_t n,
                             int64_t depth, const T *a, int64_t a_rs, int64_t a_ps, const T *b,
                             int64_t b_ps, const T *packed, T *c, const T *bias, T *pre,
                             int activation)
{
    const int64_t i0 = ib * MR, j0 = jb * NR;
    const int in_place = packed == NULL;
    T tile[MR * NR];
    micro(depth, a + i0 * a_rs, a_rs, a_ps, m - i0, in_place ? b + j0 : packed,
          in_place ? b_ps : NR, tile);
    NAME(store_tile)(tile, i0, j0, m, n, c, bias, pre, activation);
}

/* C (m x n, contiguous) = op(A) op(B), op(A)(i, p) = a[i * a_rs + p * a_ps] (m x depth),
 * op(B)(p, j) = b[p * b_ps + j * b_cs] (depth x n); with bias, the forward epilogue.
 *
 * op(A) is read in place, one tile of MR rows at a time. op(B) is read in place where a panel of
 * NR columns is contiguous in each row (b_cs == 1, a full panel) and small (PANEL_IN_PLACE_BYTES);
 * the others (a transposed or deep B, the last partial panel) are first packed, zero-padded, into
 * bp[p][NR], one panel at a time, right before the tiles that read it.
 *
 * In parallel the work is a list of tasks, each a panel and a run of its row blocks: the task
 * packs its panel into its thread's slot of the packing space and sweeps the rows, so a thread
 * needs no barrier between packing and computing. Tasks are handed out dynamically: on a machine
 * shared with other work, a thread that the OS preempts delays the product by one task, not by
 * half the product as with a static split. There are at least TASKS_PER_THREAD tasks per thread:
 * a product with few panels (a narrow C, say 10 columns) splits its rows instead, packing its
 * panel once per task (small next to the task's rows). Returns -1 when out of memory (nothing
 * written), else 0. */
static int NAME(gemm)(int64_t m, int64_t n, int64_t depth, const T *a, int64_t a_rs,
                      int64_t a_ps, const T *b, int64_t b_ps, int64_t b_cs, T *c, const T *bias,
                      T *pre, int activation)
{
    const int64_t mblocks = (m + MR - 1) / MR, nblocks = (n + NR - 1) / NR;
    /* panels packed: all if B is transposed or a panel outgrows half the L1 cache (contiguous
     * panels then stream better than rows far apart), else only a last partial one */
    const int in_place = b_cs == 1 && depth * NR * (int64_t)sizeof(T) <= PANEL_IN_PLACE_BYTES;
    const int64_t first_packed = in_place ? n / NR : 0;
    const int parallel = (double)m * (double)n * (double)depth >= PARALLEL_MACS;
    const int64_t slots = parallel ? max_threads() : 1;
    T *bp = NULL;
    if (first_packed < nblocks) {
        bp = scratch((size_t)(slots * NR * depth) * sizeof(T));
        if (!bp)
            return -1;
    }
    NAME(micro_t) micro = NAME(micro_c);
#if MLP_X86
    if (fastopt_mlp_simd())
        micro = NAME(micro_avx2);
#endif
    if (!parallel) { /* no OpenMP region at all: even an inactive one costs about a microsecond */
        for (int64_t jb = 0; jb < nblocks; jb++) {
            const T *packed = NULL;
            if (jb >= first_packed) {
                NAME(pack_b)(n, depth, b, b_ps, b_cs, jb * NR, bp);
                packed = bp;
            }
            for (int64_t ib = 0; ib < mblocks; ib++)
                NAME(panel_tile)(micro, ib, jb, m, n, depth, a, a_rs, a_ps, b, b_ps, packed, c,
                                 bias, pre, activation);
        }
        return 0;
    }
    /* runs of row blocks per panel, so that there are TASKS_PER_THREAD tasks per thread */
    const int64_t runs = MLP_MIN(mblocks, (TASKS_PER_THREAD * slots + nblocks - 1) / nblocks);
    const int64_t run_blocks = (mblocks + runs - 1) / runs;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < nblocks * runs; task++) {
        const int64_t jb = task / runs, ib0 = task % runs * run_blocks;
        const T *packed = NULL;
        if (jb >= first_packed) {
            T *slot = bp + thread_number() * NR * depth;
            NAME(pack_b)(n, depth, b, b_ps, b_cs, jb * NR, slot);
            packed = slot;
        }
        for (int64_t ib = ib0; ib < MLP_MIN(mblocks, ib0 + run_blocks); ib++)
            NAME(panel_tile)(micro, ib, jb, m, n, depth, a, a_rs, a_ps, b, b_ps, packed, c, bias,
                             pre, activation);
    }
    return 0;
}

int NAME(fastopt_dense_forward)(int64_t batch, int64_t fan_in, int64_t fan_out, const T *x,
                                const T *w, const T *b, T *out, T *pre, int activation)
{
    /* out = x @ w: A = x (rows of fan_in), B = w (rows of fan_out) */
    return NAME(gemm)(batch, fan_out, fan_in, x, fan_in, 1, w, fan_out, 1, out, b, pre,
                      activation);
}

int NAME(fastopt_dense_backward)(int64_t batch, int64_t fan_in, int64_t fan_out, const T *x,
                                 const T *w, const T *out, const T *pre, T *dout, T *dw, T *db,
                                 T *dx, int activation)
{
    if (activation != IDENTITY && batch * fan_out < PARALLEL_ELEMENTS) {
        NAME(derivative)(dout, out, pre, batch * fan_out, activation);
    } else if (activation != IDENTITY) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < batch; i++)
            NAME(derivative)(dout + i * fan_out, out + i * fan_out,
                             pre ? pre + i * fan_out : NULL, fan_out, activation);
    }
    /* dx = dZ w^T: A = dZ, B(p = j, k) = w[k * fan_out + j] */
    if (dx && NAME(gemm)(batch, fan_in, fan_out, dout, fan_out, 1, w, 1, fan_out, dx, NULL, NULL,
                         IDENTITY))
        return -1;
    /* dw = x^T dZ: A(k, p = i) = x[i * fan_in + k], B = dZ */
    if (NAME(gemm)(fan_in, fan_out, batch, x, 1, fan_in, dout, fan_out, 1, dw, NULL, NULL,
                   IDENTITY))
        return -1;
    for (int64_t j = 0; j < fan_out; j++)
        db[j] = 0;
    for (int64_t i = 0; i < batch; i++)
        for (int64_t j = 0; j < fan_out; j++)
            db[j] += dout[i * fan_out + j];
    return 0;
}

void NAME(fastopt_softmax_xent)(int64_t batch, int64_t classes, const T *logits,
                                const int64_t *labels, T *dlogits, double *stats, T scale)
{
    double total = 0.0;
    int64_t wrong = 0;
    for (int64_t i = 0; i < batch; i++) {
        const T *z = logits + i * classes;
        T *g = dlogits + i * classes;
        int64_t best = 0;
        for (int64_t c = 1; c < classes; c++)
            if (z[c] > z[best])
                best = c;
        const T m = z[best];
        T s = 0;
        for (int64_t c = 0; c < classes; c++) {
            g[c] = EXP(z[c] - m);
            s += g[c];
        }
        const int64_t y = labels[i];
        total += (double)LOG(s) - (double)(z[y] - m);
        wrong += best != y;
        const T inv = scale / s;
        for (int64_t c = 0; c < classes; c++)
            g[c] *= inv;
        g[y] -= scale;
    }
    stats[0] = total;
    stats[1] = (double)wrong;
}

void NAME(fastopt_mse)(int64_t batch, int64_t outputs, const T *out, const T *target, T *dout,
                       double *stats, T scale)
{
    double total = 0.0;
    int64_t wrong = 0;
    const T two_scale = scale + scale;
    for (int64_t i = 0; i < batch; i++) {
        const T *o = out + i * outputs, *t = target + i * outputs;
        int64_t best_o = 0, best_t = 0;
        for (int64_t c = 0; c < outputs; c++) {
            const T diff = o[c] - t[c];
            dout[i * outputs + c] = two_scale * diff;
            total += (double)diff * (double)diff;
            if (o[c] > o[best_o])
                best_o = c;
            if (t[c] > t[best_t])
                best_t = c;
        }
        wrong += best_o != best_t;
    }
    stats[0] = total;
    stats[1] = (double)wrong;
}

double NAME(fastopt_sum_squares)(int64_t n, const T *x)
{
    double total = 0.0;
#pragma omp simd reduction(+ : total)
    for (int64_t i = 0; i < n; i++)
        total += (double)x[i] * (double)x[i];
    return total;
}

void NAME(fastopt_scale)(int64_t n, T *x, T s)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        x[i] *= s;
}

/* EPOCH_CASE(name, states, scalars, modes): the case of optimizer_step for a line of
 * FASTOPT_ELEMENTWISE: its function with the line's state arrays from states[] and its scalars
 * from r in order (flags as r[i] != 0). Defined in each typed pass; the definitions are the
 * same. */
#define EPOCH_STATE(ctx, index, array, ...) , state_arrays[index]
#define EPOCH_SCALAR(ctx, index, type, scalar) , EPOCH_SCALAR_##type(r[index])
#define EPOCH_SCALAR_real(x) (x)
#define EPOCH_SCALAR_int(x) ((x) != 0)
#define EPOCH_CASE(name, states, scalars, modes)                                                   \
    case OPT_##name:                                                                               \
        NAME(fastopt_##name)(n, p, g FASTOPT_PP_EACH(EPOCH_STATE, ~, states)                       \
                             FASTOPT_PP_EACH(EPOCH_SCALAR, ~, scalars), one);                     \
        return 0;

/* One step of the optimizer function of fastopt.h numbered `optimizer` (mlp.h) over the n
 * parameters, grad_scale 1, its scalar arguments read from r (flags as 0 or 1). Returns 0, or -1
 * when LAMB could not allocate its scratch. */
static int NAME(optimizer_step)(int optimizer, int64_t n, T *p, const T *g, T *s1, T *s2, T *s3,
                                const T *r)
{
    const T one = 1;
    T *const state_arrays[3] = {s1, s2, s3};
    switch (optimizer) {
        FASTOPT_ELEMENTWISE(EPOCH_CASE)
    default: { /* LAMB, one segment: lr, beta1, beta2, eps, weight_decay, maximize,
                  bias_correction1, bias_correction2 */
        const int64_t segment_offsets[2] = {0, n};
        return NAME(fastopt_lamb)(n, p, g, s1, s2, 1, segment_offsets, r[0], r[1], r[2], r[3],
                                  r[4], r[5] != 0, r[6], r[7], one);
    }
    }
}

int NAME(fastopt_mlp_train_epoch)(int64_t n_rows, int64_t features, const T *X, int loss,
                                  const int64_t *labels, const T *targets, const int64_t *order,
                                  int64_t batch_size, int64_t layers, const int64_t *layout,
                                  const int64_t *codes, int64_t n_params, T *params, T *grads,
                                  T *work, int64_t *yb, int optimizer, T *s1, T *s2, T *s3,
                                  int64_t n_scalars, const T *scalars, double max_norm,
                                  int skip_nonfinite, double *losses, double *wrongs,
                                  double *norms, double *squares)
{
    int64_t total = 0;
    for (int64_t l = 0; l < layers; l++)
        total += batch_size * layout[4 * l + 2];
    const int64_t classes = layout[4 * (layers - 1) + 2];
    T *outs = work, *deltas = work + total, *pres = work + 2 * total, *xb = work + 3 * total;
    T *tb = xb + batch_size * features;
    const int64_t steps = (n_rows + batch_size - 1) / batch_size;
    double stats[2];
    for (int64_t step = 0; step < steps; step++) {
        const int64_t start = step * batch_size, rows = MLP_MIN(batch_size, n_rows - start);
        for (int64_t r = 0; r < rows; r++) { /* gather the shuffled batch */
            const int64_t row = order[start + r];
            memcpy(xb + r * features, X + row * features, (size_t)features * sizeof(T));
            if (loss == 0)
                yb[r] = labels[row];
            else
                memcpy(tb + r * classes, targets + row * classes, (size_t)classes * sizeof(T));
        }
        int64_t offset = 0;
        const T *x = xb;
        for (int64_t l = 0; l < layers; l++) { /* forward */
            const int64_t *at = layout + 4 * l;
            T *out = outs + offset;
            if (NAME(fastopt_dense_forward)(rows, at[1], at[2], x, params + at[0], params + at[3],
                                            out, codes[l] == GELU ? pres + offset : NULL,
                                            (int)codes[l]))
                return -1;
            x = out;
            offset += batch_size * at[2];
        }
        offset -= batch_size * classes;
        if (loss == 0) { /* the mean as fastopt.MLP takes it: the sum times 1 / count */
            NAME(fastopt_softmax_xent)(rows, classes, outs + offset, yb, deltas + offset, stats,
                                       (T)(1.0 / (double)rows));
            losses[step] = stats[0] * (1.0 / (double)rows);
        } else {
            NAME(fastopt_mse)(rows, classes, outs + offset, tb, deltas + offset, stats,
                              (T)(1.0 / (double)(rows * classes)));
            losses[step] = stats[0] * (1.0 / (double)(rows * classes));
        }
        wrongs[step] = stats[1];
        for (int64_t l = layers - 1; l >= 0; l--) { /* backward */
            const int64_t *at = layout + 4 * l;
            const int64_t below = l > 0 ? offset - batch_size * at[1] : 0;
            if (NAME(fastopt_dense_backward)(rows, at[1], at[2], l > 0 ? outs + below : xb,
                                             params + at[0], outs + offset,
                                             codes[l] == GELU ? pres + offset : NULL,
                                             deltas + offset, grads + at[0], grads + at[3],
                                             l > 0 ? deltas + below : NULL, (int)codes[l]))
                return -1;
            if (squares) { /* each row's |x_i|^2 + 1 times |B delta_i|^2, averaged */
                const T *xl = l > 0 ? outs + below : xb, *dl = deltas + offset;
                double sum = 0;
                for (int64_t r = 0; r < rows; r++) {
                    double a = 0, d = 0;
                    _Pragma("omp simd reduction(+ : a)")
                    for (int64_t f = 0; f < at[1]; f++)
                        a += (double)xl[r * at[1] + f] * (double)xl[r * at[1] + f];
                    _Pragma("omp simd reduction(+ : d)")
                    for (int64_t f = 0; f < at[2]; f++)
                        d += (double)dl[r * at[2] + f] * (double)dl[r * at[2] + f];
                    sum += (a + 1) * d;
                }
                squares[step] = (l == layers - 1 ? 0 : squares[step]) + sum * (double)rows;
            }
            offset = below;
        }
        const double norm = sqrt(NAME(fastopt_sum_squares)(n_params, grads));
        norms[step] = norm;
        if (skip_nonfinite && !isfinite(norm))
            return (int)(step + 1);
        if (max_norm > 0 && norm > max_norm)
            NAME(fastopt_scale)(n_params, grads, (T)(max_norm / (norm + 1e-6)));
        if (NAME(optimizer_step)(optimizer, n_params, params, grads, s1, s2, s3,
                                 scalars + step * n_scalars))
            return -1;
    }
    return (int)steps;
}

#undef NR

#endif /* MLP_TYPED_PASS */
