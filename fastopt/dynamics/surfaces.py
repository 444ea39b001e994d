"""The 2-D test functions of the optimizer zoo: their elements, parameters, minima and domains.

A :class:`Surface` names one element of :mod:`fastopt.backends.elements.surfaces` with its
parameters; :func:`surface` builds one by name (``surface("ravine", condition=100)``).
"""

from dataclasses import dataclass

import numpy as np

from fastopt.backends.elements.surfaces import SURFACES


@dataclass(frozen=True)
class Surface:
    """A test function ``f(x, y)`` with its gradient.

    ``name`` selects the element; ``params`` its parameters; ``minima`` the global minimizers
    (``(k, 2)``, empty for the saddles); ``minimum`` the minimal value (``None`` when unbounded
    below); ``domain`` the plotting box ``(xmin, xmax, ymin, ymax)``; ``starts`` default starting
    points; ``bound`` the box ``|x|, |y| <= bound`` outside which a run counts as diverged."""

    name: str
    params: tuple
    minima: np.ndarray
    minimum: object
    domain: tuple
    starts: tuple
    bound: float = 1e6

    def __call__(self, x, y):
        """``(f, df/dx, df/dy)`` at the point: the compiled element a kernel calls (scalars),
        or elementwise over arrays."""
        a = np.asarray(self.params, np.float64)
        if np.ndim(x) == 0 and np.ndim(y) == 0:
            return SURFACES[self.name](float(x), float(y), a)
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        out = np.empty((3, *x.shape))
        for k in np.ndindex(x.shape):
            out[(slice(None), *k)] = SURFACES[self.name](x[k], y[k], a)
        return out[0], out[1], out[2]

    def grid(self, n=200):
        """``(X, Y, F)``: the function on an ``n × n`` grid of :attr:`domain` (for contours)."""
        x0, x1, y0, y1 = self.domain
        X, Y = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
        return X, Y, self(X, Y)[0]


_HIMMELBLAU = [(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)]


def surface(name, **params):
    """The test function ``name`` (see :data:`NAMES`) with its parameters:
    ``rosenbrock(a=1, b=100)``, ``ravine(condition=10)``, ``rastrigin(A=10)``; the others take
    none."""
    def take(**defaults):
        unknown = set(params) - set(defaults)
        if unknown:
            raise TypeError(f"{name}: unknown parameter(s) {', '.join(sorted(unknown))}; it "
                            f"takes {', '.join(defaults) or 'none'}")
        values = {**defaults, **params}
        for key, v in values.items():
            if not np.isfinite(v):
                raise ValueError(f"{key}: expected a finite number, got {v!r}")
        return tuple(float(v) for v in values.values())

    if name == "rosenbrock":
        a, b = take(a=1.0, b=100.0)
        return Surface(name, (a, b), np.array([[a, a * a]]), 0.0, (-2, 2, -1, 3),
                       ((-1.5, 2.5), (-1.0, 0.5), (1.5, 2.5), (0.0, -0.5)))
    if name == "beale":
        take()
        return Surface(name, (), np.array([[3.0, 0.5]]), 0.0, (-4.5, 4.5, -4.5, 4.5),
                       ((1.0, 1.5), (-1.0, 1.0), (2.0, -1.0), (0.5, -0.5)))
    if name == "booth":
        take()
        return Surface(name, (), np.array([[1.0, 3.0]]), 0.0, (-10, 10, -10, 10),
                       ((-8.0, -8.0), (8.0, -6.0), (-5.0, 8.0), (6.0, 8.0)))
    if name == "himmelblau":
        take()
        return Surface(name, (), np.array(_HIMMELBLAU), 0.0, (-5, 5, -5, 5),
                       ((0.0, 0.0), (-1.0, -1.0), (1.0, -4.0), (-4.5, 1.0)))
    if name == "saddle":
        take()
        return Surface(name, (), np.empty((0, 2)), None, (-2, 2, -2, 2),
                       ((1.5, 1e-3), (-1.5, -1e-3), (1.0, 0.1), (-1.0, 0.5)), bound=1e3)
    if name == "monkey_saddle":
        take()
        return Surface(name, (), np.empty((0, 2)), None, (-2, 2, -2, 2),
                       ((1.0, 1e-3), (-0.5, 0.5), (0.5, -1.0), (1.5, 1.0)), bound=1e3)
    if name == "ravine":
        (condition,) = take(condition=10.0)
        if condition <= 0:
            raise ValueError(f"condition: expected a number > 0, got {condition!r}")
        return Surface(name, (condition,), np.array([[0.0, 0.0]]), 0.0, (-10, 10, -3, 3),
                       ((-9.0, 2.0), (9.0, -2.0), (-5.0, -2.5), (6.0, 1.0)))
    if name == "rastrigin":
        (A,) = take(A=10.0)
        return Surface(name, (A,), np.array([[0.0, 0.0]]), 0.0, (-5.12, 5.12, -5.12, 5.12),
                       ((4.5, 4.5), (-3.2, 2.1), (1.1, -4.0), (-2.0, -2.0)))
    if name == "ackley":
        take()
        return Surface(name, (), np.array([[0.0, 0.0]]), 0.0, (-5, 5, -5, 5),
                       ((4.0, 3.0), (-3.5, 2.5), (2.0, -4.0), (-1.5, -1.5)))
    raise ValueError(f"function: expected one of {', '.join(NAMES)}, got {name!r}")


#: The test functions' names.
NAMES = tuple(SURFACES)
