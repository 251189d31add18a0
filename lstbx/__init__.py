"""lstbx: weighted least squares with a separable overall scale factor.

Normal equations accumulated blockwise through BLAS (`NormalEquations`),
Cholesky solution with Levenberg-Marquardt damping or eigenvalue filtering,
covariance and its propagation, a Gauss-Newton/LM iteration driver
(`gauss_newton`) and an L-BFGS driver (`lbfgs`).  Depends on numpy and scipy
only.  The formulae are those of DESIGN.md section 5.
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
