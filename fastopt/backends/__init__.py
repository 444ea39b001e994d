"""Backends: one module per backend per kernel family, all with the same kernel signatures.

The optimizer family (``numpy.optim``, ``cpu.optim``, ``c.optim``, ``cuda.optim``) defines, in
place, for every algorithm of the table (:mod:`fastopt.optim.algorithms`; the scalars after the
arrays are its ``kernel_args``, then ``grad_scale``)::

    sgd(param, grad, momentum_buffer,
        lr, weight_decay, momentum, dampening, nesterov, maximize, first_step, grad_scale)
    adagrad(param, grad, state_sum,
            weight_decay, eps, maximize, clr, grad_scale)
    rmsprop(param, grad, square_avg, grad_avg, momentum_buffer,
            lr, alpha, eps, weight_decay, momentum, centered, maximize, grad_scale)
    adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq,
         lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled,
         step_size, bias_correction2_sqrt, grad_scale)
    adamax(param, grad, exp_avg, exp_inf,
           beta1, beta2, eps, weight_decay, maximize, clr, grad_scale)
    nadam(param, grad, exp_avg, exp_avg_sq,
          lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
          grad_coef, exp_avg_coef, bias_correction2, grad_scale)
    radam(param, grad, exp_avg, exp_avg_sq,
          lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
          rectify, step_size, bias_correction2_sqrt, grad_scale)
    adadelta(param, grad, square_avg, acc_delta,
             lr, rho, eps, weight_decay, maximize, grad_scale)
    lion(param, grad, exp_avg,
         lr, beta1, beta2, weight_decay, maximize, grad_scale)
    lamb(param, grad, exp_avg, exp_avg_sq, segment_offsets,
         lr, beta1, beta2, eps, weight_decay, maximize,
         bias_correction1, bias_correction2, grad_scale)
    sum_of_squares(grad) -> float

Arrays first, then hyperparameters, then values computed on the host for this step (``first_step``,
``clr``, ``step_size``, ``bias_correction2_sqrt``, NAdam's ``grad_coef`` and ``exp_avg_coef`` from
its ``mu_product``, RAdam's ``rectify`` decision, and ``grad_scale``, the factor that unscales and
clips the gradient), so kernels never call ``pow`` and never recompile when they change. The
formulas are those of :mod:`fastopt.optim.reference`. ``sum_of_squares`` is the reduction pass of a
fused step (global norm, clipping, non-finite detection): a float64 sum, deterministic for a given
backend and size whatever the thread count.

A step may have a ``bind`` attribute, ``<name>.bind(<its arrays>)``, returning ``run(<its
hyperparameters and host values>)`` that runs ``<name>`` on those arrays, bit for bit, with the work
that does not change between steps done once (``cpu.optim``: the flat views, the serial or parallel
kernel; ``c.optim``: the C function, the arrays' pointers); a bound step
(:mod:`fastopt.optim.bound`) uses it.

Every step also has ``<name>_with_norm(<the same arguments>, norm_out)``: the same update, which in
the same pass over memory sets ``norm_out[0]`` (a one-element float64 array on the arrays' side) to
``sum_of_squares(grad)``, bit for bit (``lamb_with_norm`` runs that sum as a pass of its own). The
optimizer classes use it when the norm is wanted but nothing needs it before the update.

``lamb`` is the one step with a per-tensor reduction: ``segment_offsets`` splits the flat ``param``
into tensors (one segment ``[0, n]`` for an array, an arena's offsets for many tensors), and the
step is two launches whatever the number of segments: a segmented reduction that updates the moments
and sums, per segment in float64, the squares of ``param`` and of the Adam direction ``u``, then
the update ``param -= lr * r * u`` with each segment's trust ratio ``r`` (``u`` recomputed from the
updated moments, never stored). The sums are taken over fixed chunks, then in order, so they are
deterministic for a given backend and layout whatever the thread count.

The list family (``cpu.lists``, ``c.lists``, ``cuda.lists``) steps a list of separate arrays in one
launch: ``bind(algorithm, params, grads, states, uses)`` (``states`` one list of arrays per state
array of the algorithm, anything where ``uses`` is false) builds the table of the arrays' addresses,
lengths and work items once and returns a step whose ``run(<kernel scalars>, grad_scale)`` gives
every array the bits of its own launch; on the host it also has ``sums_of_squares()`` (each
gradient's ``sum_of_squares``, a list) and ``max_magnitude_bits()`` (the largest of theirs).

The contract, established by :mod:`fastopt._core.validate` before any kernel runs, so kernels trust
it:

- every array is 1-D or N-D, C-contiguous, of one dtype (float32 or float64), and the same shape as
  ``param``, except a state array that the mode does not use (momentum buffer with ``momentum ==
  0``, ``grad_avg`` when not centered, ``max_exp_avg_sq`` without AMSGrad), which may be empty (1-D,
  as :func:`fastopt._core.memory.empty` makes it) and must not be touched;
- ``segment_offsets`` (``lamb`` only) is a 1-D int64 array on the same side as the others, not
  written: ``k + 1 >= 2`` nondecreasing offsets from ``0`` to ``param.size`` (empty segments
  allowed);
- float hyperparameters are scalars of the arrays' dtype (``numpy.float32`` or ``numpy.float64``),
  or, for a module that sets ``TAKES_PYTHON_FLOATS = True`` (every optimizer module says which),
  Python floats or numpy scalars of float dtypes up to float64, which it rounds to the arrays' dtype
  as ``dtype.type(x)`` does (``c.optim``: cffi rounds them to the C type as numpy's cast does;
  ``cpu.optim`` and ``cuda.optim``: the kernel, from a tuple of them as Python floats, LAMB's
  launcher on the host); mode flags (and RAdam's ``rectify``) are ``bool`` (``numpy.bool_`` too
  for ``cpu.optim``);
- the written arrays (param and used state) do not overlap each other or ``grad``;
- host backends get numpy arrays; ``cuda`` gets numba device arrays (zero-copy views of any
  ``__cuda_array_interface__`` object).

The landscape family (``cpu.landscape``, ``c.landscape``; the other backends run
:mod:`fastopt.landscape`'s general path on their ``mlp`` kernels) has one kernel,
``affine_two_layer(parts, weights, b1, w2t, b2, labels, targets, activation, loss, out_loss,
out_wrong)``: a one-hidden-layer MLP's summed loss and wrong rows at many parameter points
(contract in ``csrc/landscape.h``, whose ``parts`` ``c.landscape`` lays out in blocks of rows);
``cpu.landscape`` also has ``scaled_losses``. ``cpu.fullbatch.gradient_descent`` runs the
full-batch GD steps of several MLPs of one architecture in one call (:func:`fastopt.wide.sweep`).
"""

try:  # kernels' disk cache keyed on all of this package's kernel sources (see _numba.cache)
    from fastopt.backends._numba import cache as _numba_cache  # noqa: F401
except ImportError:  # no numba: the c and numpy backends still work
    pass
