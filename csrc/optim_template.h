/* optim_template.h: the optimizer steps of fastopt.h, written once for both precisions.
 *
 * optim.c includes this file once per precision with REAL (float or double), SQRT (sqrtf or sqrt)
 * and NAME(base) (base with the _f32 or _f64 suffix) defined. No include guard, on purpose.
 *
 * Each algorithm is an element update, NAME(<algo>_element), whose mode arguments are constants
 * at every call site, and a public step that picks the mode once and runs one loop per mode, so
 * that after inlining every loop is branch-free and vectorizes. Two modes need no loop of their
 * own because an exact multiplication does them: maximize (g = sign * grad, sign = -1 or 1) and
 * Adam's decoupled weight decay (param * decay, decay = 1 for plain Adam). Constants such as
 * 1 - beta1 are computed once per step, in REAL, exactly as the reference computes them.
 */

/* ---- SGD ------------------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(sgd_element)(int64_t i, REAL *restrict param, const REAL *restrict grad,
                                      REAL *restrict momentum_buffer, REAL lr, REAL weight_decay,
                                      REAL momentum, REAL one_minus_dampening, REAL sign,
                                      int l2, int use_momentum, int first_step, int nesterov)
{
    REAL g = sign * grad[i];                                    /* unscaled and clipped, negated if maximize */
    if (l2)
        g = g + weight_decay * param[i];                        /* L2 weight decay */
    if (use_momentum) {
        const REAL b = first_step ? g                           /* b = g on the first step */
                                  : momentum * momentum_buffer[i] + one_minus_dampening * g;
        momentum_buffer[i] = b;
        g = nesterov ? g + momentum * b : b;                    /* Nesterov or heavy ball */
    }
    param[i] = param[i] - lr * g;
}

void NAME(fastopt_sgd)(int64_t n, REAL *restrict param, const REAL *restrict grad,
                       REAL *restrict momentum_buffer, REAL lr, REAL weight_decay, REAL momentum,
                       REAL dampening, int nesterov, int maximize, int first_step,
                       REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;  /* -(g*s) == (-s)*g exactly */
    const REAL one_minus_dampening = 1 - dampening;
    const int l2 = weight_decay != 0;

#define SGD_LOOP(L2, MOMENTUM, FIRST_STEP, NESTEROV)                                              \
    FOR_EACH_ELEMENT(i, NAME(sgd_element)(i, param, grad, momentum_buffer, lr, weight_decay,      \
                                          momentum, one_minus_dampening, sign,                    \
                                          L2, MOMENTUM, FIRST_STEP, NESTEROV))
    if (momentum == 0) {
        if (l2) SGD_LOOP(1, 0, 0, 0); else SGD_LOOP(0, 0, 0, 0);
    } else if (first_step && nesterov) {
        if (l2) SGD_LOOP(1, 1, 1, 1); else SGD_LOOP(0, 1, 1, 1);
    } else if (first_step) {
        if (l2) SGD_LOOP(1, 1, 1, 0); else SGD_LOOP(0, 1, 1, 0);
    } else if (nesterov) {
        if (l2) SGD_LOOP(1, 1, 0, 1); else SGD_LOOP(0, 1, 0, 1);
    } else {
        if (l2) SGD_LOOP(1, 1, 0, 0); else SGD_LOOP(0, 1, 0, 0);
    }
#undef SGD_LOOP
}

/* ---- Adagrad --------------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(adagrad_element)(int64_t i, REAL *restrict param,
                                          const REAL *restrict grad, REAL *restrict state_sum,
                                          REAL weight_decay, REAL eps, REAL clr, REAL sign, int l2)
{
    REAL g = sign * grad[i];                                    /* unscaled and clipped, negated if maximize */
    if (l2)
        g = g + weight_decay * param[i];                        /* L2 weight decay */
    const REAL s = state_sum[i] + g * g;
    state_sum[i] = s;
    param[i] = param[i] - clr * g / (SQRT(s) + eps);
}

void NAME(fastopt_adagrad)(int64_t n, REAL *restrict param, const REAL *restrict grad,
                           REAL *restrict state_sum, REAL weight_decay, REAL eps, int maximize,
                           REAL clr, REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;  /* -(g*s) == (-s)*g exactly */

#define ADAGRAD_LOOP(L2)                                                                          \
    FOR_EACH_ELEMENT(i, NAME(adagrad_element)(i, param, grad, state_sum, weight_decay, eps, clr,  \
                                              sign, L2))
    if (weight_decay != 0) ADAGRAD_LOOP(1); else ADAGRAD_LOOP(0);
#undef ADAGRAD_LOOP
}

/* ---- RMSprop --------------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(rmsprop_element)(int64_t i, REAL *restrict param,
                                          const REAL *restrict grad, REAL *restrict square_avg,
                                          REAL *restrict grad_avg, REAL *restrict momentum_buffer,
                                          REAL lr, REAL alpha, REAL one_minus_alpha, REAL eps,
                                          REAL weight_decay, REAL momentum, REAL sign,
                                          int l2, int centered, int use_momentum)
{
    REAL g = sign * grad[i];                                    /* unscaled and clipped, negated if maximize */
    if (l2)
        g = g + weight_decay * param[i];                        /* L2 weight decay */
    const REAL v = alpha * square_avg[i] + one_minus_alpha * g * g;
    square_avg[i] = v;
    REAL denom;
    if (centered) {
        const REAL a = alpha * grad_avg[i] + one_minus_alpha * g;
        grad_avg[i] = a;
        denom = SQRT(v - a * a) + eps;                          /* variance, not 2nd moment */
    } else {
        denom = SQRT(v) + eps;
    }
    if (use_momentum) {
        const REAL b = momentum * momentum_buffer[i] + g / denom;
        momentum_buffer[i] = b;
        param[i] = param[i] - lr * b;
    } else {
        param[i] = param[i] - lr * g / denom;
    }
}

void NAME(fastopt_rmsprop)(int64_t n, REAL *restrict param, const REAL *restrict grad,
                           REAL *restrict square_avg, REAL *restrict grad_avg,
                           REAL *restrict momentum_buffer, REAL lr, REAL alpha, REAL eps,
                           REAL weight_decay, REAL momentum, int centered, int maximize,
                           REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;  /* -(g*s) == (-s)*g exactly */
    const REAL one_minus_alpha = 1 - alpha;
    const int l2 = weight_decay != 0;

#define RMSPROP_LOOP(L2, CENTERED, MOMENTUM)                                                      \
    FOR_EACH_ELEMENT(i, NAME(rmsprop_element)(i, param, grad, square_avg, grad_avg,               \
                                              momentum_buffer, lr, alpha, one_minus_alpha, eps,   \
                                              weight_decay, momentum, sign,                       \
                                              L2, CENTERED, MOMENTUM))
    if (centered && momentum > 0) {
        if (l2) RMSPROP_LOOP(1, 1, 1); else RMSPROP_LOOP(0, 1, 1);
    } else if (centered) {
        if (l2) RMSPROP_LOOP(1, 1, 0); else RMSPROP_LOOP(0, 1, 0);
    } else if (momentum > 0) {
        if (l2) RMSPROP_LOOP(1, 0, 1); else RMSPROP_LOOP(0, 0, 1);
    } else {
        if (l2) RMSPROP_LOOP(1, 0, 0); else RMSPROP_LOOP(0, 0, 0);
    }
#undef RMSPROP_LOOP
}

/* ---- Adam / AdamW ---------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(adam_element)(int64_t i, REAL *restrict param, const REAL *restrict grad,
                                       REAL *restrict exp_avg, REAL *restrict exp_avg_sq,
                                       REAL *restrict max_exp_avg_sq, REAL beta1,
                                       REAL one_minus_beta1, REAL beta2, REAL one_minus_beta2,
                                       REAL eps, REAL weight_decay, REAL step_size,
                                       REAL bias_correction2_sqrt, REAL sign, REAL decay,
                                       int l2, int amsgrad)
{
    REAL g = sign * grad[i];                                    /* unscaled and clipped, negated if maximize */
    if (l2)
        g = g + weight_decay * param[i];                        /* Adam: L2 weight decay */
    const REAL p = param[i] * decay;                            /* AdamW: decoupled decay */
    const REAL m = beta1 * exp_avg[i] + one_minus_beta1 * g;
    const REAL v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    REAL v_hat = v;
    if (amsgrad) {
        /* max(vmax, v) as numpy.maximum: NaN on either side wins; a select, so it vectorizes */
        const REAL old = max_exp_avg_sq[i];
        const int keep = (old >= v) | (old != old);
        v_hat = keep ? old : v;
        max_exp_avg_sq[i] = v_hat;
    }
    param[i] = p - step_size * m / (SQRT(v_hat) / bias_correction2_sqrt + eps);
}

void NAME(fastopt_adam)(int64_t n, REAL *restrict param, const REAL *restrict grad,
                        REAL *restrict exp_avg, REAL *restrict exp_avg_sq,
                        REAL *restrict max_exp_avg_sq, REAL lr, REAL beta1, REAL beta2, REAL eps,
                        REAL weight_decay, int amsgrad, int maximize, int decoupled,
                        REAL step_size, REAL bias_correction2_sqrt, REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;  /* -(g*s) == (-s)*g exactly */
    const REAL decay = decoupled ? 1 - lr * weight_decay : 1;  /* x * 1 == x exactly */
    const REAL one_minus_beta1 = 1 - beta1, one_minus_beta2 = 1 - beta2;
    const int l2 = !decoupled && weight_decay != 0;

#define ADAM_LOOP(L2, AMSGRAD)                                                                    \
    FOR_EACH_ELEMENT(i, NAME(adam_element)(i, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq,   \
                                           beta1, one_minus_beta1, beta2, one_minus_beta2, eps,   \
                                           weight_decay, step_size, bias_correction2_sqrt, sign,  \
                                           decay, L2, AMSGRAD))
    if (amsgrad) {
        if (l2) ADAM_LOOP(1, 1); else ADAM_LOOP(0, 1);
    } else {
        if (l2) ADAM_LOOP(1, 0); else ADAM_LOOP(0, 0);
    }
#undef ADAM_LOOP
}

/* ---- Reduction ------------------------------------------------------------------------------- */

double NAME(fastopt_sum_of_squares)(int64_t n, const REAL *restrict grad)
{
    const int64_t chunks = (n + FASTOPT_REDUCTION_CHUNK - 1) / FASTOPT_REDUCTION_CHUNK;
    double total = 0;
    /* Chunk sums in a fixed order; each chunk's own sum is one vectorized loop, the same whichever
     * thread runs it, so the result does not depend on the thread count. */
    for (int64_t first = 0; first < chunks; first += FASTOPT_REDUCTION_BATCH) {
        double partial[FASTOPT_REDUCTION_BATCH];
        const int64_t count = chunks - first < FASTOPT_REDUCTION_BATCH ? chunks - first
                                                                      : FASTOPT_REDUCTION_BATCH;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n >= PARALLEL_THRESHOLD)
#endif
        for (int64_t c = 0; c < count; c++) {
            const int64_t lo = (first + c) * FASTOPT_REDUCTION_CHUNK;
            const int64_t hi = lo + FASTOPT_REDUCTION_CHUNK < n ? lo + FASTOPT_REDUCTION_CHUNK : n;
            double s = 0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : s)
#endif
            for (int64_t i = lo; i < hi; i++)
                s += (double)grad[i] * (double)grad[i];
            partial[c] = s;
        }
        for (int64_t c = 0; c < count; c++)
            total += partial[c];
    }
    return total;
}
