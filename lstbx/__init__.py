"""lstbx: weighted least squares with a separable overall scale factor.

Normal equations accumulated blockwise through BLAS (`NormalEquations`),
Cholesky solution with Levenberg-Marquardt damping or eigenvalue filtering,
covariance and its propagation, a Gauss-Newton/LM iteration driver
(`gauss_newton`) and an L-BFGS driver (`lbfgs`).  Depends on numpy and scipy
only.  The formulae are those of DESIGN.md section 5.

Fitting y_o = K exp(-b t) for b with the scale K separable:

>>> import numpy as np
>>> import lstbx
>>> t = np.linspace(0.0, 4.0, 50)
>>> y_obs = 3.0 * np.exp(-0.7 * t) + 0.01 * np.cos(7 * t)
>>> def build(x):
...     y_calc = np.exp(-x[0] * t)
...     equations = lstbx.NormalEquations(1, parameter_names=["b"])
...     equations.add_block(y_obs, np.ones_like(t), y_calc, (-t * y_calc)[:, None])
...     return equations
>>> result = lstbx.gauss_newton(build, [0.3])
>>> result.converged
True
>>> b, k = result.x[0], result.equations.scale_factor()
>>> su_b = np.sqrt(result.equations.covariance()[0, 0])
>>> print(f"b = {b:.4f}({su_b * 1e4:.0f}), K = {k:.3f}")
b = 0.7005(12), K = 3.002
"""

from .errors import (EquationsStateError, LeastSquaresError, NoDegreesOfFreedomError,
                     NonFiniteError)
from .normal_equations import Diagnosis, Figures, NormalEquations, Undetermined
from .drivers import Cycle, Minimisation, Refinement, gauss_newton, lbfgs

__all__ = [
    "Cycle", "Diagnosis", "EquationsStateError", "Figures", "LeastSquaresError",
    "Minimisation", "NoDegreesOfFreedomError", "NonFiniteError", "NormalEquations", "Refinement",
    "Undetermined", "gauss_newton", "lbfgs",
]
