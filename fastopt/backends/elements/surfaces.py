r"""Two-dimensional test functions with their gradients, one element function each.

Every function has one signature, ``f(x, y, a) -> (value, df/dx, df/dy)``, ``a`` a float64 array
of its parameters (unused by those with none), so that one kernel template steps any of them
(:mod:`fastopt.backends.cpu.zoo`). The arithmetic is written out (``x * x``, not ``x ** 2``) and
compiled without ``fastmath``: called from Python as compiled functions, they give the bits a
kernel gets. Their minima and plotting domains are in :mod:`fastopt.dynamics.surfaces`.
"""

import math

import numba

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
TWO_PI = 2.0 * math.pi


@_jit
def rosenbrock(x, y, a):
    r""":math:`(a_0 - x)^2 + a_1 (y - x^2)^2`; minimum 0 at :math:`(a_0, a_0^2)`."""
    u = a[0] - x
    v = y - x * x
    return u * u + a[1] * v * v, -2.0 * u - 4.0 * a[1] * x * v, 2.0 * a[1] * v


@_jit
def beale(x, y, a):
    r""":math:`(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2`; minimum 0 at
    :math:`(3, 0.5)`."""
    y2 = y * y
    y3 = y2 * y
    t1 = 1.5 - x + x * y
    t2 = 2.25 - x + x * y2
    t3 = 2.625 - x + x * y3
    value = t1 * t1 + t2 * t2 + t3 * t3
    dx = 2.0 * (t1 * (y - 1.0) + t2 * (y2 - 1.0) + t3 * (y3 - 1.0))
    dy = 2.0 * x * (t1 + 2.0 * t2 * y + 3.0 * t3 * y2)
    return value, dx, dy


@_jit
def booth(x, y, a):
    r""":math:`(x + 2y - 7)^2 + (2x + y - 5)^2`; minimum 0 at :math:`(1, 3)`."""
    u = x + 2.0 * y - 7.0
    v = 2.0 * x + y - 5.0
    return u * u + v * v, 2.0 * u + 4.0 * v, 4.0 * u + 2.0 * v


@_jit
def himmelblau(x, y, a):
    r""":math:`(x^2 + y - 11)^2 + (x + y^2 - 7)^2`; four minima of value 0."""
    u = x * x + y - 11.0
    v = x + y * y - 7.0
    return u * u + v * v, 4.0 * x * u + 2.0 * v, 2.0 * u + 4.0 * y * v


@_jit
def saddle(x, y, a):
    r""":math:`x^2 - y^2`: a saddle point at the origin, unbounded below."""
    return x * x - y * y, 2.0 * x, -2.0 * y


@_jit
def monkey_saddle(x, y, a):
    r""":math:`x^3 - 3xy^2`: a degenerate saddle (zero Hessian) at the origin."""
    return x * x * x - 3.0 * x * y * y, 3.0 * (x * x - y * y), -6.0 * x * y


@_jit
def ravine(x, y, a):
    r""":math:`\tfrac12 (x^2 + \kappa y^2)`, :math:`\kappa = a_0`: a quadratic of condition number
    :math:`\kappa` (smoothness :math:`L = \max(1, \kappa)`); minimum 0 at the origin."""
    return 0.5 * (x * x + a[0] * y * y), x, a[0] * y


@_jit
def rastrigin(x, y, a):
    r""":math:`2A + \sum_{z \in \{x, y\}} z^2 - A\cos(2\pi z)`, :math:`A = a_0`; global minimum 0
    at the origin among a lattice of local ones."""
    A = a[0]
    value = 2.0 * A + x * x - A * math.cos(TWO_PI * x) + y * y - A * math.cos(TWO_PI * y)
    return (value, 2.0 * x + TWO_PI * A * math.sin(TWO_PI * x),
            2.0 * y + TWO_PI * A * math.sin(TWO_PI * y))


@_jit
def ackley(x, y, a):
    r""":math:`-20 e^{-0.2 r} - e^{(\cos 2\pi x + \cos 2\pi y)/2} + e + 20`,
    :math:`r = \sqrt{(x^2 + y^2)/2}`; global minimum 0 at the origin, where the gradient is taken
    as 0 (the function is not differentiable there)."""
    r = math.sqrt(0.5 * (x * x + y * y))
    e1 = math.exp(-0.2 * r)
    e2 = math.exp(0.5 * (math.cos(TWO_PI * x) + math.cos(TWO_PI * y)))
    value = -20.0 * e1 - e2 + math.e + 20.0
    radial = 2.0 * e1 / r if r > 0.0 else 0.0
    return (value, radial * x + math.pi * math.sin(TWO_PI * x) * e2,
            radial * y + math.pi * math.sin(TWO_PI * y) * e2)


#: Name -> compiled element function.
SURFACES = {f.__name__: f for f in (rosenbrock, beale, booth, himmelblau, saddle, monkey_saddle,
                                    ravine, rastrigin, ackley)}
