"""Training dynamics experiments on fastopt's kernels: the optimizer zoo on 2-D test functions
(:mod:`.zoo`), the Hessian's top eigenvalue against 2/lr (:mod:`.curvature`), the gradient noise
scale (:mod:`.noise`), wide networks and the neural tangent kernel (:mod:`.wide`), and their
plots (:mod:`.plots`). Each module is also an attribute of ``fastopt`` under its short name,
imported on first use: ``fastopt.zoo``, ``fastopt.curvature``, ``fastopt.noise``, ``fastopt.wide``."""
