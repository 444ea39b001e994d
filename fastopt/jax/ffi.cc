// ffi.cc: the XLA FFI handler that runs fastopt's Adam/AdamW kernel (libfastopt, fastopt.h) on
// CPU buffers, for fastopt.jax (built and registered by fastopt/jax/_ffi.py).
//
// Arguments: param, grad, exp_avg, exp_avg_sq (one dtype, float32 or float64, one element count)
// and the step's scalars in that dtype: lr, beta1, beta2, eps, weight_decay, step_size (lr / (1
// - beta1^t)), bias_correction2_sqrt (sqrt(1 - beta2^t)) and apply (0: the step is skipped, its
// gradients not being finite; the outputs keep the inputs' values), computed by the caller;
// attributes decoupled (AdamW) and maximize. Results: param, exp_avg, exp_avg_sq, which
// fastopt.jax aliases to the inputs (input_output_aliases): XLA then passes the input buffers as
// the outputs and the kernel updates them in place. An output that XLA placed elsewhere gets its
// input copied first, so the result is right either way.
#include <cstdint>
#include <cstring>

#include "xla/ffi/api/ffi.h"

extern "C" {
#include "fastopt.h"
}

namespace ffi = xla::ffi;

namespace {

// The output's memory, holding the input's values.
void *in_place(const ffi::AnyBuffer &input, ffi::Result<ffi::AnyBuffer> &output)
{
    void *out = output->untyped_data();
    if (out != input.untyped_data())
        std::memcpy(out, input.untyped_data(), input.size_bytes());
    return out;
}

template <typename Real>
void run_adam(int64_t n, Real *param, const Real *grad, Real *exp_avg, Real *exp_avg_sq,
              const Real *s, int decoupled, int maximize);

template <>
void run_adam<float>(int64_t n, float *param, const float *grad, float *exp_avg,
                     float *exp_avg_sq, const float *s, int decoupled, int maximize)
{
    fastopt_adam_f32(n, param, grad, exp_avg, exp_avg_sq, nullptr, s[0], s[1], s[2], s[3], s[4],
                     0, maximize, decoupled, s[5], s[6], 1.0f);
}

template <>
void run_adam<double>(int64_t n, double *param, const double *grad, double *exp_avg,
                      double *exp_avg_sq, const double *s, int decoupled, int maximize)
{
    fastopt_adam_f64(n, param, grad, exp_avg, exp_avg_sq, nullptr, s[0], s[1], s[2], s[3], s[4],
                     0, maximize, decoupled, s[5], s[6], 1.0);
}

template <typename Real>
void adam(ffi::AnyBuffer param, ffi::AnyBuffer grad, ffi::AnyBuffer exp_avg,
          ffi::AnyBuffer exp_avg_sq, ffi::AnyBuffer scalars, ffi::Result<ffi::AnyBuffer> &p,
          ffi::Result<ffi::AnyBuffer> &m, ffi::Result<ffi::AnyBuffer> &v, int decoupled,
          int maximize)
{
    if (static_cast<const Real *>(scalars.untyped_data())[7] == 0) {
        in_place(param, p);
        in_place(exp_avg, m);
        in_place(exp_avg_sq, v);
        return;
    }
    run_adam<Real>(static_cast<int64_t>(param.element_count()),
                   static_cast<Real *>(in_place(param, p)),
                   static_cast<const Real *>(grad.untyped_data()),
                   static_cast<Real *>(in_place(exp_avg, m)),
                   static_cast<Real *>(in_place(exp_avg_sq, v)),
                   static_cast<const Real *>(scalars.untyped_data()), decoupled, maximize);
}

ffi::Error adam_step(ffi::AnyBuffer param, ffi::AnyBuffer grad, ffi::AnyBuffer exp_avg,
                     ffi::AnyBuffer exp_avg_sq, ffi::AnyBuffer scalars,
                     ffi::Result<ffi::AnyBuffer> p, ffi::Result<ffi::AnyBuffer> m,
                     ffi::Result<ffi::AnyBuffer> v, int32_t decoupled, int32_t maximize)
{
    const ffi::DataType type = param.element_type();
    const size_t n = param.element_count();
    for (const ffi::AnyBuffer *b : {&grad, &exp_avg, &exp_avg_sq, &scalars})
        if (b->element_type() != type)
            return ffi::Error::InvalidArgument("fastopt adam: arrays of different dtypes");
    if (grad.element_count() != n || exp_avg.element_count() != n
        || exp_avg_sq.element_count() != n || scalars.element_count() != 8)
        return ffi::Error::InvalidArgument("fastopt adam: arrays of different sizes");
    if (type == ffi::DataType::F32)
        adam<float>(param, grad, exp_avg, exp_avg_sq, scalars, p, m, v, decoupled, maximize);
    else if (type == ffi::DataType::F64)
        adam<double>(param, grad, exp_avg, exp_avg_sq, scalars, p, m, v, decoupled, maximize);
    else
        return ffi::Error::InvalidArgument("fastopt adam: float32 or float64 arrays expected");
    return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FastoptAdam, adam_step,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()   // param
                                  .Arg<ffi::AnyBuffer>()   // grad
                                  .Arg<ffi::AnyBuffer>()   // exp_avg
                                  .Arg<ffi::AnyBuffer>()   // exp_avg_sq
                                  .Arg<ffi::AnyBuffer>()   // scalars
                                  .Ret<ffi::AnyBuffer>()   // param
                                  .Ret<ffi::AnyBuffer>()   // exp_avg
                                  .Ret<ffi::AnyBuffer>()   // exp_avg_sq
                                  .Attr<int32_t>("decoupled")
                                  .Attr<int32_t>("maximize"));
