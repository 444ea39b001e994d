/* adam.c: AdamW steps from C through libfastopt, on the least-squares toy problem
 * f(w) = sum_i (w_i - t_i)^2 / 2, whose gradient is w - t.
 *
 *   INCLUDE=$(python -c "import fastopt; print(fastopt.get_include())")
 *   LIBRARY=$(python -c "import fastopt; print(fastopt.get_library())")
 *   cc -O2 examples/c/adam.c -I"$INCLUDE" "$LIBRARY" -Wl,-rpath,"$(dirname "$LIBRARY")" -lm \
 *      -o adam
 *   ./adam [n] [steps]          (defaults 1000 and 100)
 *
 * Prints the parameters after the last step, one per line, with 9 significant digits (a float's
 * exact value); the vector variant the kernels chose goes to standard error.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fastopt.h"

int main(int argc, char **argv)
{
    const int64_t n = argc > 1 ? strtoll(argv[1], NULL, 10) : 1000;
    const long steps = argc > 2 ? strtol(argv[2], NULL, 10) : 100;
    if (fastopt_abi_version() != FASTOPT_ABI_VERSION) {
        fprintf(stderr, "libfastopt ABI %d, this program was built for %d\n",
                fastopt_abi_version(), FASTOPT_ABI_VERSION);
        return 1;
    }
    if (n < 1 || steps < 1) {
        fprintf(stderr, "usage: %s [n >= 1] [steps >= 1]\n", argv[0]);
        return 2;
    }
    float *w = malloc(sizeof(float) * (size_t)n), *grad = malloc(sizeof(float) * (size_t)n);
    float *target = malloc(sizeof(float) * (size_t)n);
    float *exp_avg = calloc((size_t)n, sizeof(float));
    float *exp_avg_sq = calloc((size_t)n, sizeof(float));
    if (!w || !grad || !target || !exp_avg || !exp_avg_sq) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < n; i++) {
        w[i] = (float)(i % 13) * 0.25f - 1.5f;
        target[i] = (float)(i % 5) * 0.5f;
    }
    const double lr = 1e-2, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
    for (long t = 1; t <= steps; t++) {
        for (int64_t i = 0; i < n; i++)
            grad[i] = w[i] - target[i];
        /* the host's part of the step: the bias corrections, so that the kernel never calls pow */
        const double step_size = lr / (1 - pow(beta1, (double)t));
        const double bias_correction2_sqrt = sqrt(1 - pow(beta2, (double)t));
        fastopt_adam_f32(n, w, grad, exp_avg, exp_avg_sq, NULL, (float)lr, (float)beta1,
                         (float)beta2, (float)eps, (float)weight_decay, /* amsgrad */ 0,
                         /* maximize */ 0, /* decoupled (AdamW) */ 1, (float)step_size,
                         (float)bias_correction2_sqrt, /* grad_scale */ 1.0f);
    }
    fprintf(stderr, "libfastopt ABI %d, vector variant %s\n", fastopt_abi_version(),
            fastopt_vector_isa());
    for (int64_t i = 0; i < n; i++)
        printf("%.9g\n", w[i]);
    free(w);
    free(grad);
    free(target);
    free(exp_avg);
    free(exp_avg_sq);
    return 0;
}
