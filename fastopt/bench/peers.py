"""The peers the steps are compared with, when installed: numpy written as a user would
(:func:`numpy_user_step`), and ``torch.optim`` on CPU in its default mode (a loop over tensors),
with ``foreach=True`` and with ``fused=True``. Peers run on as many threads as fastopt
(:func:`torch_threads`)."""

import contextlib
import itertools

import numpy as np

from fastopt.bench.cases import CLASS_NAMES, Unsupported, problem
from fastopt.optim import algorithms as _algorithms

#: Peers, in table order; each is skipped, with its reason, when not installed or not supported.
PEERS = ("numpy-user", "torch", "torch-foreach", "torch-fused")


def numpy_user_step(name, options, param, grad, state, step):
    """One step of ``name`` in numpy as a user would write it: in place where it is easy, plain
    expressions (with their temporaries) elsewhere, torch's defaults (only ``momentum`` may be
    changed). Mutates its arrays."""
    if set(options) - {"momentum"}:
        raise Unsupported(f"numpy-user: options {sorted(options)} not written")
    h = {**_algorithms.ALGORITHMS[name].defaults, **options}
    lr = h["lr"]
    if name == "sgd":
        if h["momentum"]:
            buf = state[0]
            buf *= h["momentum"]
            buf += grad
            param -= lr * buf
        else:
            param -= lr * grad
    elif name == "adagrad":
        s = state[0]
        s += grad * grad
        param -= lr * grad / (np.sqrt(s) + h["eps"])
    elif name == "rmsprop":
        v, alpha = state[0], h["alpha"]
        v *= alpha
        v += (1 - alpha) * grad * grad
        param -= lr * grad / (np.sqrt(v) + h["eps"])
    elif name in ("adam", "adamw"):
        (beta1, beta2), (m, v) = h["betas"], state[:2]
        if name == "adamw":
            param *= 1 - lr * h["weight_decay"]
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        m_hat = m / (1 - beta1 ** step)
        v_hat = v / (1 - beta2 ** step)
        param -= lr * m_hat / (np.sqrt(v_hat) + h["eps"])
    else:
        raise Unsupported(f"numpy-user: {name} not written")


#: The ``torch.optim`` constructor options of each torch peer.
_TORCH_MODES = {"torch": {}, "torch-foreach": {"foreach": True}, "torch-fused": {"fused": True}}


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise Unsupported(f"torch not installed ({exc})") from None
    return torch


def make_torch_step(peer, name, options, shapes, dtype=np.float32):
    """A closure running ``opt.step()`` of ``torch.optim`` (``peer`` names the mode) over new CPU
    tensors of the given shapes, gradients set. Raises :class:`Unsupported` with torch's reason."""
    torch = _torch()
    cls = getattr(torch.optim, CLASS_NAMES[name])
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(dtype)]
    gen = torch.Generator().manual_seed(0)
    params = []
    for s in shapes:
        p = torch.randn(s, generator=gen, dtype=tdtype)
        p.grad = torch.randn(s, generator=gen, dtype=tdtype) * 1e-3
        params.append(p)
    try:
        opt = cls(params, **options, **_TORCH_MODES[peer])
        with torch.no_grad():
            opt.step()
    except (RuntimeError, TypeError, ValueError) as exc:
        raise Unsupported(f"{peer}: {str(exc).splitlines()[0]}") from None

    def one_step():
        with torch.no_grad():
            opt.step()

    return one_step


def make_peer(peer, name, options, n, dtype=np.float32):
    """A closure running one step of ``peer`` (see :data:`PEERS`) over ``n`` parameters."""
    if peer == "numpy-user":
        param, grad, state = problem(name, options, n, dtype)
        counter = itertools.count(1)
        numpy_user_step(name, options, param.copy(), grad, [s.copy() for s in state], 1)
        return lambda: numpy_user_step(name, options, param, grad, state, next(counter))
    return make_torch_step(peer, name, options, [(n,)], dtype)


@contextlib.contextmanager
def torch_threads(n):
    """Runs torch on ``n`` threads (as many as fastopt's), then restores its setting."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
