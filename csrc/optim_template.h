/* optim_template.h: the optimizer steps of fastopt.h, written once for both precisions.
 *
 * optim.c includes this file once per precision with REAL (float or double), SQRT (sqrtf or sqrt),
 * FABS (fabsf or fabs) and NAME(base) (base with the _f32 or _f64 suffix) defined. No include
 * guard, on purpose.
 *
 * Each elementwise algorithm is an element update, NAME(<algo>_element), and a line of the table
 * FASTOPT_ELEMENTWISE (optim_table.h); the last line of this file expands the table into the
 * steps (DEFINE_STEPS, optim.c): an inline NAME(<algo>_step) taking a norm_out pointer, which
 * computes the mode mask once and runs one loop per mask with the element inlined and the mask a
 * constant, so that every loop is branch-free and vectorizes, and the public fastopt_<algo> (which
 * calls it with NULL: the fused loops then fold away) and fastopt_<algo>_with_norm (with the
 * caller's, so that its loops, STEP_LOOP in optim.c, also leave the gradient's sum of squares
 * there). LAMB, which needs per-tensor norms before it can update, is written out in full.
 */

/* ---- Reduction ------------------------------------------------------------------------------- */

/* sums[(i - lo) % FASTOPT_REDUCTION_LANES] += grad[i]^2 in double, for i in [lo, hi). Many running
 * sums let the additions run in vector registers at memory speed without reordering any of them:
 * the result is set by this order alone, so a fused step that adds the blocks of a chunk one after
 * the other (FOR_EACH_ELEMENT_WITH_NORM, blocks a multiple of the lanes) and the cpu backend get
 * the same bits. */
FASTOPT_INLINE void NAME(add_squares)(const REAL *restrict grad, int64_t lo, int64_t hi,
                                      double *restrict sums)
{
    const int64_t stop = lo + (hi - lo) / FASTOPT_REDUCTION_LANES * FASTOPT_REDUCTION_LANES;
    for (int64_t row = lo; row < stop; row += FASTOPT_REDUCTION_LANES) {
        SIMD
        for (int j = 0; j < FASTOPT_REDUCTION_LANES; j++) {
            const double x = grad[row + j];
            sums[j] += x * x;
        }
    }
    for (int64_t j = 0; j < hi - stop; j++) {
        const double x = grad[stop + j];
        sums[j] += x * x;
    }
}

VARIANT_API double NAME(fastopt_sum_of_squares)(int64_t n, const REAL *restrict grad)
{
    const int64_t chunks = (n + FASTOPT_REDUCTION_CHUNK - 1) / FASTOPT_REDUCTION_CHUNK;
    double total = 0;
    /* Chunk sums in a fixed order; each chunk's own sum is the same whichever thread runs it, so
     * the result does not depend on the thread count. */
    for (int64_t first = 0; first < chunks; first += FASTOPT_REDUCTION_BATCH) {
        double partial[FASTOPT_REDUCTION_BATCH];
        const int64_t count = chunks - first < FASTOPT_REDUCTION_BATCH ? chunks - first
                                                                      : FASTOPT_REDUCTION_BATCH;
        ALONE_OR_PARALLEL(REDUCTION_PARALLEL,
        for (int64_t c = 0; c < count; c++) {
            const int64_t lo = (first + c) * FASTOPT_REDUCTION_CHUNK;
            const int64_t hi = lo + FASTOPT_REDUCTION_CHUNK < n ? lo + FASTOPT_REDUCTION_CHUNK : n;
            double sums[FASTOPT_REDUCTION_LANES] = {0};
            NAME(add_squares)(grad, lo, hi, sums);
            partial[c] = sum_of_lanes(sums);
        });
        for (int64_t c = 0; c < count; c++)
            total += partial[c];
    }
    return total;
}

/* ---- The elementwise optimizers ---------------------------------------------------------------
 *
 * One element function per line of FASTOPT_ELEMENTWISE (optim_table.h): it updates element i and
 * takes (i, mode, param, grad, <the line's state arrays>, <its scalars>, grad_scale), the mode
 * bits <name>_<mode> being a constant at every call site. The steps that run it come from the
 * table (DEFINE_STEPS, optim.c, at the end of this file). Two modes need no bit because an exact
 * multiplication does them: maximize (g = sign * grad, sign = -grad_scale or grad_scale) and the
 * decoupled weight decay of Adam and NAdam (param * decay, decay = 1 otherwise). Constants such
 * as 1 - beta1 are computed in REAL exactly as the reference computes them; they do not depend
 * on i, so the compiler computes them once per loop. */

/* ---- SGD ------------------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(sgd_element)(int64_t i, unsigned mode, REAL *restrict param,
                                      const REAL *restrict grad, REAL *restrict momentum_buffer,
                                      REAL lr, REAL weight_decay, REAL momentum, REAL dampening,
                                      int nesterov, int maximize, int first_step, REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;      /* -(g*s) == (-s)*g exactly */
    const REAL one_minus_dampening = 1 - dampening;
    REAL g = sign * grad[i];                                    /* scaled; negated if maximize */
    if (mode & sgd_l2)
        g = g + weight_decay * param[i];                        /* L2 weight decay */
    if (mode & sgd_momentum) {
        const REAL b = mode & sgd_first_step ? g                /* b = g on the first step */
                       : momentum * momentum_buffer[i] + one_minus_dampening * g;
        momentum_buffer[i] = b;
        g = mode & sgd_nesterov ? g + momentum * b : b;         /* Nesterov or heavy ball */
    }
    param[i] = param[i] - lr * g;
}

/* ---- Adagrad --------------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(adagrad_element)(int64_t i, unsigned mode, REAL *restrict param,
                                          const REAL *restrict grad, REAL *restrict state_sum,
                                          REAL weight_decay, REAL eps, int maximize, REAL clr,
                                          REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;      /* -(g*s) == (-s)*g exactly */
    REAL g = sign * grad[i];                                    /* scaled; negated if maximize */
    if (mode & adagrad_l2)
        g = g + weight_decay * param[i];                        /* L2 weight decay */
    const REAL s = state_sum[i] + g * g;
    state_sum[i] = s;
    param[i] = param[i] - clr * g / (SQRT(s) + eps);
}

/* ---- RMSprop --------------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(rmsprop_element)(int64_t i, unsigned mode, REAL *restrict param,
                                          const REAL *restrict grad, REAL *restrict square_avg,
                                          REAL *restrict grad_avg, REAL *restrict momentum_buffer,
                                          REAL lr, REAL alpha, REAL eps, REAL weight_decay,
                                          REAL momentum, int centered, int maximize,
                                          REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;      /* -(g*s) == (-s)*g exactly */
    const REAL one_minus_alpha = 1 - alpha;
    REAL g = sign * grad[i];                                    /* scaled; negated if maximize */
    if (mode & rmsprop_l2)
        g = g + weight_decay * param[i];                        /* L2 weight decay */
    const REAL v = alpha * square_avg[i] + one_minus_alpha * g * g;
    square_avg[i] = v;
    REAL denom;
    if (mode & rmsprop_centered) {
        const REAL a = alpha * grad_avg[i] + one_minus_alpha * g;
        grad_avg[i] = a;
        denom = SQRT(v - a * a) + eps;                          /* variance, not 2nd moment */
    } else {
        denom = SQRT(v) + eps;
    }
    if (mode & rmsprop_momentum) {
        const REAL b = momentum * momentum_buffer[i] + g / denom;
        momentum_buffer[i] = b;
        param[i] = param[i] - lr * b;
    } else {
        param[i] = param[i] - lr * g / denom;
    }
}

/* ---- Adam / AdamW ---------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(adam_element)(int64_t i, unsigned mode, REAL *restrict param,
                                       const REAL *restrict grad, REAL *restrict exp_avg,
                                       REAL *restrict exp_avg_sq, REAL *restrict max_exp_avg_sq,
                                       REAL lr, REAL beta1, REAL beta2, REAL eps, REAL weight_decay,
                                       int amsgrad, int maximize, int decoupled, REAL step_size,
                                       REAL bias_correction2_sqrt, REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;      /* -(g*s) == (-s)*g exactly */
    const REAL decoupled_decay = 1 - lr * weight_decay;
    const REAL decay = decoupled ? decoupled_decay : 1;         /* x * 1 == x exactly */
    const REAL one_minus_beta1 = 1 - beta1, one_minus_beta2 = 1 - beta2;
    REAL g = sign * grad[i];                                    /* scaled; negated if maximize */
    if (mode & adam_l2)
        g = g + weight_decay * param[i];                        /* Adam: L2 weight decay */
    const REAL p = param[i] * decay;                            /* AdamW: decoupled decay */
    const REAL m = beta1 * exp_avg[i] + one_minus_beta1 * g;
    const REAL v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    REAL v_hat = v;
    if (mode & adam_amsgrad) {
        /* max(vmax, v) as numpy.maximum: NaN on either side wins; a select, so it vectorizes */
        const REAL old = max_exp_avg_sq[i];
        const int keep = (old >= v) | (old != old);
        v_hat = keep ? old : v;
        max_exp_avg_sq[i] = v_hat;
    }
    param[i] = p - step_size * m / (SQRT(v_hat) / bias_correction2_sqrt + eps);
}

/* ---- Adamax ---------------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(adamax_element)(int64_t i, unsigned mode, REAL *restrict param,
                                         const REAL *restrict grad, REAL *restrict exp_avg,
                                         REAL *restrict exp_inf, REAL beta1, REAL beta2, REAL eps,
                                         REAL weight_decay, int maximize, REAL clr,
                                         REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;      /* -(g*s) == (-s)*g exactly */
    const REAL one_minus_beta1 = 1 - beta1;
    REAL g = sign * grad[i];                                    /* scaled; negated if maximize */
    if (mode & adamax_l2)
        g = g + weight_decay * param[i];                        /* L2 weight decay */
    const REAL m = beta1 * exp_avg[i] + one_minus_beta1 * g;
    /* u = max(beta2 * u, |g| + eps) as numpy.maximum: NaN on either side wins; a select */
    const REAL decayed = beta2 * exp_inf[i], fresh = FABS(g) + eps;
    const int keep = (decayed >= fresh) | (decayed != decayed);
    const REAL u = keep ? decayed : fresh;
    exp_avg[i] = m;
    exp_inf[i] = u;
    param[i] = param[i] - clr * m / u;
}

/* ---- NAdam ----------------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(nadam_element)(int64_t i, unsigned mode, REAL *restrict param,
                                        const REAL *restrict grad, REAL *restrict exp_avg,
                                        REAL *restrict exp_avg_sq, REAL lr, REAL beta1, REAL beta2,
                                        REAL eps, REAL weight_decay, int maximize, int decoupled,
                                        REAL grad_coef, REAL exp_avg_coef, REAL bias_correction2,
                                        REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;      /* -(g*s) == (-s)*g exactly */
    const REAL decoupled_decay = 1 - lr * weight_decay;
    const REAL decay = decoupled ? decoupled_decay : 1;         /* x * 1 == x exactly */
    const REAL one_minus_beta1 = 1 - beta1, one_minus_beta2 = 1 - beta2;
    REAL g = sign * grad[i];                                    /* scaled; negated if maximize */
    if (mode & nadam_l2)
        g = g + weight_decay * param[i];                        /* L2 weight decay */
    const REAL p = param[i] * decay;                            /* decoupled decay */
    const REAL m = beta1 * exp_avg[i] + one_minus_beta1 * g;
    const REAL v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    const REAL denom = SQRT(v / bias_correction2) + eps;
    /* Nesterov: this step's gradient and next step's momentum, each with its own coefficient */
    param[i] = p - grad_coef * g / denom - exp_avg_coef * m / denom;
}

/* ---- RAdam ----------------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(radam_element)(int64_t i, unsigned mode, REAL *restrict param,
                                        const REAL *restrict grad, REAL *restrict exp_avg,
                                        REAL *restrict exp_avg_sq, REAL lr, REAL beta1, REAL beta2,
                                        REAL eps, REAL weight_decay, int maximize, int decoupled,
                                        int rectify, REAL step_size, REAL bias_correction2_sqrt,
                                        REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;      /* -(g*s) == (-s)*g exactly */
    const REAL decoupled_decay = 1 - lr * weight_decay;
    const REAL decay = decoupled ? decoupled_decay : 1;         /* x * 1 == x exactly */
    const REAL one_minus_beta1 = 1 - beta1, one_minus_beta2 = 1 - beta2;
    REAL g = sign * grad[i];                                    /* scaled; negated if maximize */
    if (mode & radam_l2)
        g = g + weight_decay * param[i];                        /* L2 weight decay */
    const REAL p = param[i] * decay;                            /* decoupled decay */
    const REAL m = beta1 * exp_avg[i] + one_minus_beta1 * g;
    const REAL v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    if (mode & radam_rectify)                                   /* adaptive, rectified step */
        param[i] = p - step_size * m * (bias_correction2_sqrt / (SQRT(v) + eps));
    else                                                        /* momentum SGD step */
        param[i] = p - step_size * m;
}

/* ---- Adadelta -------------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(adadelta_element)(int64_t i, unsigned mode, REAL *restrict param,
                                           const REAL *restrict grad, REAL *restrict square_avg,
                                           REAL *restrict acc_delta, REAL lr, REAL rho, REAL eps,
                                           REAL weight_decay, int maximize, REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;      /* -(g*s) == (-s)*g exactly */
    const REAL one_minus_rho = 1 - rho;
    REAL g = sign * grad[i];                                    /* scaled; negated if maximize */
    if (mode & adadelta_l2)
        g = g + weight_decay * param[i];                        /* L2 weight decay */
    const REAL v = rho * square_avg[i] + one_minus_rho * g * g;
    const REAL a = acc_delta[i];
    const REAL delta = SQRT(a + eps) / SQRT(v + eps) * g;       /* RMS[delta] / RMS[g] * g */
    square_avg[i] = v;
    acc_delta[i] = rho * a + one_minus_rho * delta * delta;
    param[i] = param[i] - lr * delta;
}

/* ---- Lion ------------------------------------------------------------------------------------ */

FASTOPT_INLINE void NAME(lion_element)(int64_t i, unsigned mode, REAL *restrict param,
                                       const REAL *restrict grad, REAL *restrict exp_avg, REAL lr,
                                       REAL beta1, REAL beta2, REAL weight_decay, int maximize,
                                       REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;      /* -(g*s) == (-s)*g exactly */
    const REAL decay = 1 - lr * weight_decay;
    const REAL one_minus_beta1 = 1 - beta1, one_minus_beta2 = 1 - beta2;
    const REAL g = sign * grad[i];                              /* scaled; negated if maximize */
    const REAL m = exp_avg[i];
    const REAL c = beta1 * m + one_minus_beta1 * g;             /* the interpolated direction */
    const REAL direction = c > 0 ? (REAL)1 : c < 0 ? (REAL)-1 : c;  /* sign(c): 0 and NaN stay */
    param[i] = param[i] * decay - lr * direction;               /* decoupled decay, sign step */
    exp_avg[i] = beta2 * m + one_minus_beta2 * g;
    (void)mode;                                                 /* no modes */
}

/* ---- Rprop ----------------------------------------------------------------------------------- */

FASTOPT_INLINE void NAME(rprop_element)(int64_t i, unsigned mode, REAL *restrict param,
                                        const REAL *restrict grad, REAL *restrict prev,
                                        REAL *restrict step_size, REAL etaminus, REAL etaplus,
                                        REAL step_size_min, REAL step_size_max, int maximize,
                                        REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;      /* -(g*s) == (-s)*g exactly */
    const REAL g = sign * grad[i];                              /* scaled; negated if maximize */
    const REAL product = g * prev[i];
    /* torch.sign(product): +1 grows the step, -1 shrinks it, 0 (and NaN, as torch's) keeps it */
    const REAL factor = product > 0 ? etaplus : product < 0 ? etaminus : (REAL)1;
    REAL s = step_size[i] * factor;
    s = (s >= step_size_min) | (s != s) ? s : step_size_min;    /* clamp: NaN stays NaN */
    s = (s <= step_size_max) | (s != s) ? s : step_size_max;
    const REAL kept = product < 0 ? (REAL)0 : g;                /* a sign flip: no step */
    const REAL direction = kept > 0 ? (REAL)1 : kept < 0 ? (REAL)-1 : (REAL)0;  /* NaN: 0 */
    step_size[i] = s;
    prev[i] = kept;
    param[i] = param[i] - direction * s;
    (void)mode;                                                 /* no modes */
}

/* ---- ASGD ------------------------------------------------------------------------------------ */

FASTOPT_INLINE void NAME(asgd_element)(int64_t i, unsigned mode, REAL *restrict param,
                                       const REAL *restrict grad, REAL *restrict ax,
                                       REAL weight_decay, int maximize, REAL eta, REAL decay,
                                       REAL mu, REAL grad_scale)
{
    const REAL sign = maximize ? -grad_scale : grad_scale;      /* -(g*s) == (-s)*g exactly */
    REAL g = sign * grad[i];                                    /* scaled; negated if maximize */
    if (mode & asgd_l2)
        g = g + weight_decay * param[i];                        /* L2 weight decay */
    const REAL p = param[i] * decay - eta * g;                  /* decay = 1 - lambd * eta */
    param[i] = p;
    if (mode & asgd_average)
        ax[i] = ax[i] + (p - ax[i]) * mu;                       /* the running average */
    else
        ax[i] = p;                                              /* mu = 1: the parameter */
}

/* ---- LAMB ------------------------------------------------------------------------------------ */

/* u = m_hat / (sqrt(v_hat) + eps) + weight_decay * p: the Adam direction with decay */
FASTOPT_INLINE REAL NAME(lamb_direction)(REAL m, REAL v, REAL p, REAL eps, REAL weight_decay,
                                         REAL bias_correction1, REAL bias_correction2, int l2)
{
    REAL u = (m / bias_correction1) / (SQRT(v / bias_correction2) + eps);
    if (l2)
        u = u + weight_decay * p;
    return u;
}

/* The moments of [lo, hi) and, in double, sums[0] = sum p^2 and sums[1] = sum u^2 over it. */
FASTOPT_INLINE void NAME(lamb_moments_piece)(int64_t lo, int64_t hi, const REAL *restrict param,
                                             const REAL *restrict grad, REAL *restrict exp_avg,
                                             REAL *restrict exp_avg_sq, REAL beta1,
                                             REAL one_minus_beta1, REAL beta2,
                                             REAL one_minus_beta2, REAL eps, REAL weight_decay,
                                             REAL bias_correction1, REAL bias_correction2,
                                             REAL sign, int l2, double *restrict sums)
{
    double pp = 0, uu = 0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : pp, uu)
#endif
    for (int64_t i = lo; i < hi; i++) {
        const REAL g = sign * grad[i];                          /* scaled; negated if maximize */
        const REAL m = beta1 * exp_avg[i] + one_minus_beta1 * g;
        const REAL v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        const REAL p = param[i];
        const REAL u = NAME(lamb_direction)(m, v, p, eps, weight_decay, bias_correction1,
                                            bias_correction2, l2);
        pp += (double)p * (double)p;
        uu += (double)u * (double)u;
    }
    sums[0] = pp;
    sums[1] = uu;
}

/* param -= step * u over [lo, hi), u recomputed from the updated moments. */
FASTOPT_INLINE void NAME(lamb_update_piece)(int64_t lo, int64_t hi, REAL *restrict param,
                                            const REAL *restrict exp_avg,
                                            const REAL *restrict exp_avg_sq, REAL step, REAL eps,
                                            REAL weight_decay, REAL bias_correction1,
                                            REAL bias_correction2, int l2)
{
#ifdef _OPENMP
#pragma omp simd
#endif
    for (int64_t i = lo; i < hi; i++) {
        const REAL p = param[i];
        param[i] = p - step * NAME(lamb_direction)(exp_avg[i], exp_avg_sq[i], p, eps,
                                                   weight_decay, bias_correction1,
                                                   bias_correction2, l2);
    }
}

/* FOR_EACH_PIECE(c, lo, hi, body): runs body for every chunk c of FASTOPT_REDUCTION_CHUNK elements
 * (in parallel for large n) and every segment s that overlaps it, with [lo, hi) their overlap.
 * Walking the array, c + s grows at every chunk or segment boundary, so each (chunk, segment) piece
 * owns slot c + s of a buffer of chunks + num_segments entries. */
#define FOR_EACH_PIECE(c, s, lo, hi, body)                                                        \
    do {                                                                                          \
        ALONE_OR_PARALLEL(REDUCTION_PARALLEL,                                                     \
        for (int64_t c = 0; c < chunks; c++) {                                                    \
            const int64_t first = c * FASTOPT_REDUCTION_CHUNK;                                    \
            const int64_t stop = first + FASTOPT_REDUCTION_CHUNK < n                              \
                                     ? first + FASTOPT_REDUCTION_CHUNK : n;                       \
            for (int64_t s = segment_holding(segment_offsets, num_segments, first);               \
                 s < num_segments && segment_offsets[s] < stop; s++) {                            \
                const int64_t lo = segment_offsets[s] > first ? segment_offsets[s] : first;       \
                const int64_t hi = segment_offsets[s + 1] < stop ? segment_offsets[s + 1] : stop; \
                body;                                                                             \
            }                                                                                     \
        });                                                                                       \
    } while (0)

VARIANT_API int NAME(fastopt_lamb)(int64_t n, REAL *restrict param, const REAL *restrict grad,
                                   REAL *restrict exp_avg, REAL *restrict exp_avg_sq,
                                   int64_t num_segments, const int64_t *restrict segment_offsets,
                                   REAL lr, REAL beta1, REAL beta2, REAL eps, REAL weight_decay,
                                   int maximize, REAL bias_correction1, REAL bias_correction2,
                                   REAL grad_scale)
{
    if (n == 0)
        return 0;
    const int64_t chunks = (n + FASTOPT_REDUCTION_CHUNK - 1) / FASTOPT_REDUCTION_CHUNK;
    double *sums = malloc(sizeof(double) * 2 * (size_t)(chunks + num_segments));
    REAL *steps = malloc(sizeof(REAL) * (size_t)num_segments);
    if (sums == NULL || steps == NULL) {
        free(sums);
        free(steps);
        return -1;
    }
    const REAL sign = maximize ? -grad_scale : grad_scale;  /* -(g*s) == (-s)*g exactly */
    const REAL one_minus_beta1 = 1 - beta1, one_minus_beta2 = 1 - beta2;
    const int l2 = weight_decay != 0;

    /* Pass 1: the moments, and the squared norms of p and u per piece. */
#define LAMB_MOMENTS(L2)                                                                          \
    FOR_EACH_PIECE(c, s, lo, hi,                                                                  \
                   NAME(lamb_moments_piece)(lo, hi, param, grad, exp_avg, exp_avg_sq, beta1,      \
                                            one_minus_beta1, beta2, one_minus_beta2, eps,         \
                                            weight_decay, bias_correction1, bias_correction2,     \
                                            sign, L2, sums + 2 * (c + s)))
    if (l2) LAMB_MOMENTS(1); else LAMB_MOMENTS(0);
#undef LAMB_MOMENTS

    /* Per segment: its pieces' sums in order, then the step lr * ||p|| / ||u||
     * (lr if a norm is 0). */
    for (int64_t s = 0; s < num_segments; s++) {
        double pp = 0, uu = 0;
        if (segment_offsets[s + 1] > segment_offsets[s]) {
            const int64_t last = (segment_offsets[s + 1] - 1) / FASTOPT_REDUCTION_CHUNK;
            for (int64_t c = segment_offsets[s] / FASTOPT_REDUCTION_CHUNK; c <= last; c++) {
                pp += sums[2 * (c + s)];
                uu += sums[2 * (c + s) + 1];
            }
        }
        const double r = pp > 0 && uu > 0 ? sqrt(pp) / sqrt(uu) : 1.0;
        steps[s] = (REAL)((double)lr * r);
    }

    /* Pass 2: p -= step_s * u. */
#define LAMB_UPDATE(L2)                                                                           \
    FOR_EACH_PIECE(c, s, lo, hi,                                                                  \
                   NAME(lamb_update_piece)(lo, hi, param, exp_avg, exp_avg_sq, steps[s], eps,     \
                                           weight_decay, bias_correction1, bias_correction2, L2))
    if (l2) LAMB_UPDATE(1); else LAMB_UPDATE(0);
#undef LAMB_UPDATE

    free(sums);
    free(steps);
    return 0;
}

#undef FOR_EACH_PIECE

/* ---- The steps of the table ----------------------------------------------------------------- */

FASTOPT_ELEMENTWISE(DEFINE_STEPS)

/* ---- The same steps over a list of arrays (optim_list.h) ------------------------------------ */

#include "list_template.h"
