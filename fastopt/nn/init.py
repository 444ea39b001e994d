r"""Weight initializers for dense layers, seeded and reproducible.

Each takes the weight's shape ``(fan_in, fan_out)`` (fastopt's layout: ``X @ W``) and returns a new
array. Values are drawn in float64 from ``numpy.random.default_rng(seed)`` (or a ``Generator`` you
pass) and then rounded to ``dtype``, so a seed gives the same network in float32 and float64.

=================  ===============================================================
``xavier_uniform`` :math:`U(-a, a)`, :math:`a = g\sqrt{6 / (n_{in} + n_{out})}`
``xavier_normal``  :math:`N(0, s^2)`, :math:`s = g\sqrt{2 / (n_{in} + n_{out})}`
``he_uniform``     :math:`U(-a, a)`, :math:`a = \sqrt{6 / n_{in}}`
``he_normal``      :math:`N(0, s^2)`, :math:`s = \sqrt{2 / n_{in}}`
=================  ===============================================================

(:math:`n_{in}`, :math:`n_{out}`: fan-in and fan-out; :math:`g`: the ``gain``, 1 by default.)

Xavier (Glorot & Bengio, 2010, "normalized initialization") keeps activation and gradient variance
equal across layers of a linear network; He (He et al., 2015) doubles the variance to make up for
ReLU zeroing half its inputs, and uses the fan-in only. These are ``torch.nn.init``'s
``xavier_*_`` and ``kaiming_*_(nonlinearity="relu", mode="fan_in")``, with fan-in and fan-out read
from the shape in fastopt's ``(fan_in, fan_out)`` order rather than torch's ``(out, in)``.
"""

import math

import numpy as np

__all__ = ["xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "INITIALIZERS", "get"]


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _fans(shape):
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape: expected (fan_in, fan_out) with both >= 1, got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def xavier_uniform(shape, seed=None, dtype=np.float32, gain=1.0):
    """Glorot uniform: :math:`U(\\pm g\\sqrt{6/(n_{in}+n_{out})})`."""
    fan_in, fan_out = _fans(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _rng(seed).uniform(-bound, bound, size=shape).astype(dtype)


def xavier_normal(shape, seed=None, dtype=np.float32, gain=1.0):
    """Glorot normal: :math:`N(0, g^2 \\cdot 2/(n_{in}+n_{out}))`."""
    fan_in, fan_out = _fans(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return (std * _rng(seed).standard_normal(size=shape)).astype(dtype)


def he_uniform(shape, seed=None, dtype=np.float32):
    """He (Kaiming) uniform for ReLU: :math:`U(\\pm\\sqrt{6/n_{in}})`."""
    fan_in, _ = _fans(shape)
    bound = math.sqrt(6.0 / fan_in)
    return _rng(seed).uniform(-bound, bound, size=shape).astype(dtype)


def he_normal(shape, seed=None, dtype=np.float32):
    """He (Kaiming) normal for ReLU: :math:`N(0, 2/n_{in})`."""
    fan_in, _ = _fans(shape)
    return (math.sqrt(2.0 / fan_in) * _rng(seed).standard_normal(size=shape)).astype(dtype)


INITIALIZERS = {
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
}
#: Short names: Glorot's normalized initialization was uniform; He et al. drew from a normal.
ALIASES = {"xavier": "xavier_uniform", "glorot": "xavier_uniform", "he": "he_normal",
           "kaiming": "he_normal"}


def get(name):
    """The initializer called ``name``: one of :data:`INITIALIZERS` or an alias (``"he"``)."""
    key = ALIASES.get(name, name)
    if key not in INITIALIZERS:
        names = ", ".join([*INITIALIZERS, *ALIASES])
        raise ValueError(f"init: expected one of {names}, got {name!r}")
    return INITIALIZERS[key]
