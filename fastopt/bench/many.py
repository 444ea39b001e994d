"""Many small tensors: ``count`` tensors of ``size`` parameters through the optimizer classes, as
a list of arrays and as one flat arena (:class:`fastopt.optim.arena.FlatParams`), against one
tensor of all their parameters and against ``torch.optim`` on the same tensors."""

import functools
import gc
import statistics

import numpy as np

from fastopt._core.dispatch import available_backends
from fastopt._core.threads import get_num_threads
from fastopt.bench.cases import (CLASS_NAMES, Result, Unsupported, bytes_per_step,
                                 make_class_step, written_arrays)
from fastopt.bench.overhead import launches
from fastopt.bench.peers import make_torch_step, torch_threads
from fastopt.bench.timing import ROOFLINE_BACKENDS, paired_ratio, time_cases
from fastopt.optim import algorithms as _algorithms


def _count_launches(backend, algorithm, call):
    """How many kernel launches ``call()`` makes (counted at the backend module's kernel)."""
    return len(launches(backend, algorithm, call)[2])


def make_arena_step(name, options, count, size, backend=None, dtype=np.float32,
                    **class_options):
    """A closure stepping an optimizer class built on a :class:`fastopt.optim.arena.FlatParams` of
    ``count`` tensors of ``size``, with gradients in an arena of the same layout. Raises
    :class:`Unsupported` until the classes step an arena as one flat parameter (checked by
    counting kernel launches on a 3-tensor arena)."""
    import fastopt
    from fastopt.optim.arena import FlatParams

    cls = getattr(fastopt, CLASS_NAMES[name])
    algorithm = _algorithms.ALGORITHMS[name]

    def build(count_, size_):
        params = FlatParams.empty([(size_,)] * count_, dtype)
        params.data[...] = np.random.default_rng(0).standard_normal(params.size)
        grads = params.zeros_like()
        grads.data[...] = 1e-3
        try:
            opt = cls(params, backend=backend, **options, **class_options)
        except (TypeError, ValueError) as exc:
            raise Unsupported(f"fastopt.{cls.__name__} does not accept a FlatParams yet: "
                              f"{exc}") from None
        return opt, grads

    opt, grads = build(3, 5)
    backend_used = opt.backend
    errors = []
    for form in (lambda g: g, lambda g: list(g)):  # step(arena), then step(list of views)
        try:
            launches = _count_launches(backend_used, algorithm, lambda: opt.step(form(grads)))
            break
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    else:
        raise Unsupported(f"fastopt.{cls.__name__}.step does not take the gradients of an arena: "
                          + "; ".join(errors))
    if launches != 1:
        raise Unsupported(f"fastopt.{cls.__name__} does not step a FlatParams as one flat "
                          f"parameter yet ({launches} kernel launches for a 3-tensor arena; the "
                          "arena-aware optimizer classes are not in yet)")
    opt, grads = build(count, size)
    return lambda: opt.step(form(grads))


def many_tensors(count=10_000, size=1_000, name="adam", backends=None, dtype=np.float32,
                 repeat=5, peers=("torch", "torch-foreach", "torch-fused"), skipped=None,
                 max_s=10.0, arenas=True):
    """``count`` tensors of ``size`` parameters through the optimizer classes (a list of arrays,
    which the classes step in one launch, and, with ``arenas``, a flat arena) against one tensor
    of ``count * size`` and against torch. Results have ``kind="many"`` and describe the case in
    ``backend``; ``paired`` holds each case's ratios to one tensor and to torch fused on the same
    tensors (their time / its time), round by round."""
    skipped = [] if skipped is None else skipped
    options = {}
    total = count * size
    nbytes = bytes_per_step(name, options, total, dtype)
    label = f"{name} {count:,}x{size:,}"
    no_check = {"skip_nonfinite": False}
    makers = {}
    for backend in [b for b in (backends or ROOFLINE_BACKENDS) if b in available_backends()]:
        makers[f"{backend} 1 tensor"] = functools.partial(make_class_step, name, options, backend,
                                                          [(total,)], dtype)
        makers[f"{backend} arrays"] = functools.partial(make_class_step, name, options, backend,
                                                        [(size,)] * count, dtype)
        if not arenas:
            continue
        makers[f"{backend} 1 tensor, no check"] = functools.partial(
            make_class_step, name, options, backend, [(total,)], dtype, **no_check)
        makers[f"{backend} arena"] = functools.partial(make_arena_step, name, options, count,
                                                       size, backend, dtype)
        makers[f"{backend} arena, no check"] = functools.partial(
            make_arena_step, name, options, count, size, backend, dtype, **no_check)
    for peer in peers:
        makers[f"{peer} 1 tensor"] = functools.partial(make_torch_step, peer, name, options,
                                                       [(total,)], dtype)
        makers[f"{peer} tensors"] = functools.partial(make_torch_step, peer, name, options,
                                                      [(size,)] * count, dtype)
    with torch_threads(get_num_threads()):
        samples, together = time_cases(makers, nbytes, repeat, max_s, skipped, f"{label} {{}}")
    gc.collect()
    out = []
    for case, own in samples.items():
        # Each case against one tensor of all the parameters and against torch fused on the
        # same tensors, round by round.
        backend = case.split()[0]
        paired = {other: paired_ratio(samples[other], own) for other in
                  (f"{backend} 1 tensor", "torch-fused tensors")
                  if together and backend not in peers and other in samples and other != case}
        out.append(Result(label, case, np.dtype(dtype).name, total, statistics.median(own),
                          nbytes, kind="many", written=written_arrays(name, options),
                          min_s=min(own), paired=paired))
    return out
