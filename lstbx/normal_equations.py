"""Normal equations for weighted least squares with an overall scale factor.

The observations y_o with weights w are fitted by K y_c(x).  Three ways of
handling K (``scale=``):

``"separable"``
    K is eliminated: for fixed x, K*(x) = sum w y_o y_c / sum w y_c^2, and
    L(x) = sum w (y_o - K* y_c)^2 is minimised over x alone (Nielsen 2000;
    Bourhis et al. 2015, appendix B).  The design rows are the total
    derivatives a = K* dy_c/dx + y_c dK*/dx, so that

        B = sum w a a^T = S + g_d g_d^T / sum w y_c^2,
        g = sum w r a   = K* g_d,

    with r = y_o - K* y_c, g_d = sum w r dy_c and S = K*^2 (A - c c^T / sum
    w y_c^2) the Schur complement of the normal matrix with K as an ordinary
    parameter (A = sum w dy_c dy_c^T, c = sum w y_c dy_c).  S is what the
    covariance is built from (it is the x block of the inverse with K
    refined, what SHELXL reports); B and S agree where g_d = 0.

    Derivation: with Y = sum w y_c^2 and v = sum w y_o dy_c, g_d = v - K* c
    and dK*/dx = (v - 2 K* c) / Y = (g_d - K* c) / Y.  Then
    B = K*^2 A + K* (c dK*^T + dK* c^T) + Y dK* dK*^T; substituting dK*,
    the cross terms in g_d c^T cancel and B = K*^2 (A - c c^T / Y) +
    g_d g_d^T / Y.  Also sum w r y_c = 0 at K*, so g = K* g_d.  This form
    adds two positive semi-definite matrices rather than cancelling terms.
``"parameter"``
    K is an ordinary last parameter with the current value ``scale_factor``;
    the unknowns are (x, K).
``"none"``
    K is held at ``scale_factor`` (default 1) and not counted as a parameter.

A, c and the other sums are accumulated blockwise (``add_block``) with one
BLAS dsyrk and one dgemm per few hundred rows; the design matrix is never
stored.  Residual sums are accumulated around a reference scale k0 (the
``scale_factor`` passed in, or the least-squares scale of the first block)
so that g_d and sum w r^2 do not lose digits to cancellation near
convergence.

Restraints (rows D, residuals Delta = target - value, weights w_r) add
D^T W D to the matrix and D^T W Delta to the right-hand side; they do not
depend on K.

Figures (DESIGN.md section 5): wR = [sum w r^2 / sum w y_o^2]^1/2,
GoF^2 = sum w r^2 / (m - p), restrained GoF^2 = [sum w r^2 + sum w_r
Delta^2] / (m + n_r - p), where p counts the scale factor unless
``scale="none"``.  The covariance is the inverse of the (Schur-complement)
normal matrix plus restraints, times the restrained GoF^2 (as cctbx's
smtbx does).
"""

from dataclasses import dataclass
import math

import numpy as np
import scipy.linalg
import scipy.sparse

from . import _kernels
from .errors import (EquationsStateError, LeastSquaresError, NoDegreesOfFreedomError,
                     NonFiniteError)

SCALE_MODES = ("separable", "parameter", "none")

# Rows buffered per dsyrk: enough for the rank-k update to run at the speed
# of one dsyrk over the whole design matrix, few enough for the buffer to stay
# in cache (1 MiB: 145 rows at n = 900; of 64 to 2048 rows timed at m =
# 17 849, n = 900 with one thread, 64-145 were fastest, all within 1.15x of
# a single dsyrk).
DEFAULT_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class Figures:
    """Agreement figures of one set of normal equations.

    Attributes
    ----------
    scale_factor : float
        K (K* for the separable scale).
    sum_w_r_sq : float
        sum w (y_o - K y_c)^2 over the observations.
    sum_w_yo_sq : float
        sum w y_o^2.
    sum_w_restraints_sq : float
        sum w_r Delta^2 over the restraints.
    objective : float
        The minimised function L = sum_w_r_sq + sum_w_restraints_sq.
    wr : float
        [sum w r^2 / sum w y_o^2]^1/2 (wR2 when y is Fo^2).
    gof, restrained_gof : float
        Goodness of fit without and with the restraints; NaN when there are
        no degrees of freedom.
    n_observations, n_restraints : int
    n_parameters : int
        p, the refined parameters counting the scale factor unless the
        scale is fixed (``scale="none"``).
    """

    scale_factor: float
    sum_w_r_sq: float
    sum_w_yo_sq: float
    sum_w_restraints_sq: float
    objective: float
    wr: float
    gof: float
    restrained_gof: float
    n_observations: int
    n_restraints: int
    n_parameters: int


@dataclass(frozen=True)
class Undetermined:
    """One combination of parameters that the equations do not determine:
    L does not change along the shift direction with components
    ``coefficients[k]`` on parameter ``parameters[k]``.  The coefficients
    are those of the null vector, normalised so the largest is 1 in
    magnitude; terms below 5 % of the largest are left out.  ``text`` reads
    e.g. ``"x[1] - x[4]"``."""

    parameters: tuple
    coefficients: tuple
    text: str


@dataclass(frozen=True)
class Diagnosis:
    """Conditioning of the (Jacobi-scaled, undamped) matrix being solved.

    ``condition_number`` is LAPACK's 1-norm estimate from the Cholesky
    factor, or the eigenvalue ratio when the matrix was found singular;
    ``undetermined`` lists the combinations that get no shift; ``message``
    is empty when the matrix is regular."""

    condition_number: float
    undetermined: tuple
    message: str

    @property
    def singular(self):
        return bool(self.undetermined)


def _as_vector(name, value, length):
    array = np.ascontiguousarray(value, dtype=np.float64)
    if array.ndim != 1 or array.shape[0] != length:
        raise LeastSquaresError(f"{name} must be a vector of length {length}, "
                                f"got shape {np.shape(value)}")
    return array


class NormalEquations:
    """Accumulate, finalise and solve the normal equations of one cycle.

    Parameters
    ----------
    n_parameters : int
        Number of model parameters x (the columns of the design rows; the
        scale factor is not among them).
    scale : {"separable", "parameter", "none"}
        How the overall scale factor K is treated (module docstring).
    scale_factor : float, optional
        ``"separable"``: a reference value near K* (for example the previous
        cycle's), used only to keep the residual sums accurate; by default
        the least-squares scale of the first block.  ``"parameter"``: the
        current value of K (required).  ``"none"``: the fixed K (default 1).
    parameter_names : sequence of str, optional
        Names of the n_parameters parameters, used in messages about
        undetermined combinations and bad rows (default ``x[i]``).
    buffer_rows : int, optional
        Rows buffered per BLAS call (default: about 1 MiB of rows).

    Notes
    -----
    Use: ``add_block`` (and ``add_restraints``) any number of times,
    ``finalise()`` once, then ``normal_matrix()``, ``right_hand_side()``,
    ``figures``, ``solve()``, ``covariance()``, ``propagate()``.
    With ``scale="parameter"`` the unknowns, shifts and covariance have
    n_parameters + 1 entries, K last.
    """

    def __init__(self, n_parameters, scale="separable", scale_factor=None,
                 parameter_names=None, buffer_rows=None):
        n = int(n_parameters)
        if n < 1 or n != n_parameters:
            raise LeastSquaresError(f"n_parameters must be a positive integer, got {n_parameters!r}")
        if scale not in SCALE_MODES:
            raise LeastSquaresError(f"scale must be one of {SCALE_MODES}, got {scale!r}")
        if scale == "parameter" and scale_factor is None:
            raise LeastSquaresError('scale="parameter" needs the current scale_factor')
        if scale == "none" and scale_factor is None:
            scale_factor = 1.0
        if scale_factor is not None and not math.isfinite(scale_factor):
            raise LeastSquaresError(f"scale_factor must be finite, got {scale_factor!r}")
        if parameter_names is None:
            names = [f"x[{i}]" for i in range(n)]
        else:
            names = [str(name) for name in parameter_names]
            if len(names) != n:
                raise LeastSquaresError(f"{len(names)} parameter names for {n} parameters")
        if scale == "parameter":
            names.append("scale")
        if buffer_rows is None:
            buffer_rows = max(64, DEFAULT_BUFFER_BYTES // (8 * n))
        self.n_parameters = n
        self.scale = scale
        self.parameter_names = tuple(names)
        self._k0 = None if scale_factor is None else float(scale_factor)
        self._accumulator = _kernels.BlockAccumulator(n, int(buffer_rows))
        self.n_observations = 0
        self.n_restraints = 0
        self._restraint_matrix = None
        self._restraint_rhs = np.zeros(n)
        self._sum_w_restraints_sq = 0.0
        self._finalised = False
        self._diagnosis = None
        self._solver = None
        self._covariance = None

    # ------------------------------------------------------------------
    # accumulation

    @property
    def n_unknowns(self):
        """Size of the linear system: n_parameters, plus 1 with scale="parameter"."""
        return self.n_parameters + (self.scale == "parameter")

    @property
    def finalised(self):
        return self._finalised

    def add_block(self, y_obs, weights, y_calc, rows):
        """Add a block of observations with their design rows.

        Parameters
        ----------
        y_obs, weights, y_calc : array_like, float64, shape (b,)
            Observations, weights (>= 0) and unscaled model values.
        rows : array_like, float64, shape (b, n_parameters)
            dy_c/dx for each observation; C-contiguous float64 avoids a copy.
        """
        self._require_open("add_block")
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_parameters:
            raise LeastSquaresError(f"rows must have shape (b, {self.n_parameters}), "
                                    f"got {rows.shape}")
        b = rows.shape[0]
        y_obs = _as_vector("y_obs", y_obs, b)
        weights = _as_vector("weights", weights, b)
        y_calc = _as_vector("y_calc", y_calc, b)
        if b == 0:
            return
        if self._k0 is None:
            with np.errstate(over="ignore", invalid="ignore"):
                wyc = weights * y_calc
                denominator = float(np.dot(wyc, y_calc))
                numerator = float(np.dot(wyc, y_obs))
            if denominator > 0 and math.isfinite(denominator) and math.isfinite(numerator):
                self._k0 = numerator / denominator
        k0 = 0.0 if self._k0 is None else self._k0
        bad = self._accumulator.add(y_obs, weights, y_calc, rows, k0)
        if bad >= 0:
            self._raise_bad_row(bad, y_obs[bad], weights[bad], y_calc[bad], rows[bad])
        self.n_observations += b

    def _raise_bad_row(self, i, y_obs, weight, y_calc, row):
        where = f"observation {self.n_observations + i} (row {i} of this block)"
        if not math.isfinite(weight):
            raise NonFiniteError(f"{where}: weight is {weight}; expected a finite value >= 0")
        if weight < 0:
            raise LeastSquaresError(f"{where}: weight must be >= 0, got {weight}")
        if not (math.isfinite(y_obs) and math.isfinite(y_calc)):
            raise NonFiniteError(f"{where}: y_obs={y_obs}, y_calc={y_calc}; expected finite values")
        j = int(np.flatnonzero(~np.isfinite(row))[0])
        raise NonFiniteError(f"{where}: derivative with respect to "
                             f"{self.parameter_names[j]} is {row[j]}; expected a finite value")

    def add_restraints(self, design, deltas, weights):
        """Add restraint equations (may be called before or after ``finalise``).

        Parameters
        ----------
        design : scipy.sparse matrix or array_like, shape (n_r, n_parameters)
            d(value)/dx for each restraint (converted to CSR).
        deltas : array_like, float64, shape (n_r,)
            Residuals target - value.
        weights : array_like, float64, shape (n_r,)
            Weights 1/sigma^2 (>= 0).
        """
        d = scipy.sparse.csr_matrix(design, dtype=np.float64)
        n_r = d.shape[0]
        if d.shape[1] != self.n_parameters:
            raise LeastSquaresError(f"restraint design matrix must have {self.n_parameters} "
                                    f"columns, got {d.shape[1]}")
        deltas = _as_vector("restraint deltas", deltas, n_r)
        weights = _as_vector("restraint weights", weights, n_r)
        for name, values in (("delta", deltas), ("weight", weights)):
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise NonFiniteError(f"restraint {bad[0]}: {name} is {values[bad[0]]}; "
                                     "expected a finite value")
        coo = d.tocoo()
        bad = np.flatnonzero(~np.isfinite(coo.data))
        if bad.size:
            i, j, value = coo.row[bad[0]], coo.col[bad[0]], coo.data[bad[0]]
            raise NonFiniteError(f"restraint {i}: derivative with respect to "
                                 f"{self.parameter_names[j]} is {value}; expected a finite value")
        negative = np.flatnonzero(weights < 0)
        if negative.size:
            raise LeastSquaresError(f"restraint {negative[0]}: weight {weights[negative[0]]} "
                                    f"must be >= 0")
        if n_r == 0:
            return
        wd = scipy.sparse.diags(weights) @ d
        product = (d.T @ wd).toarray()
        if self._restraint_matrix is None:
            self._restraint_matrix = product
        else:
            self._restraint_matrix += product
        self._restraint_rhs += d.T @ (weights * deltas)
        self._sum_w_restraints_sq += float(np.dot(weights * deltas, deltas))
        self.n_restraints += n_r
        self._diagnosis = self._solver = self._covariance = None

    # ------------------------------------------------------------------
    # finalise

    def finalise(self):
        """Combine the accumulated sums into the normal equations.

        Raises `NonFiniteError` when the sums or the equations overflow."""
        self._require_open("finalise")
        with np.errstate(over="ignore", invalid="ignore"):
            self._finalise()

    def _finalise(self):
        if self.n_observations == 0:
            raise LeastSquaresError("no observations were added")
        a, c, u, sums = self._accumulator.results()
        self._accumulator = None
        if not (np.all(np.isfinite(sums)) and np.all(np.isfinite(a))
                and np.all(np.isfinite(c)) and np.all(np.isfinite(u))):
            raise NonFiniteError("the sums over the observations overflowed")
        sum_w_yc_sq, sum_w_r0_yc, sum_w_r0_sq, sum_w_yo_sq = (float(v) for v in sums)
        k0 = 0.0 if self._k0 is None else self._k0
        if self.scale == "separable":
            if not sum_w_yc_sq > 0:
                raise LeastSquaresError("sum w y_calc^2 is zero: the separable scale "
                                        "factor is undefined")
            shift = sum_w_r0_yc / sum_w_yc_sq
            k = k0 + shift
            # residuals r = r0 - shift y_c
            g_d = u - shift * c
            sum_w_r_sq = max(sum_w_r0_sq - shift * sum_w_r0_yc, 0.0)
            k_sq = k * k
            self._a_diagonal = np.diag(a).copy()
            schur = a - np.outer(c, c / sum_w_yc_sq)
            schur *= k_sq
            matrix = schur + np.outer(g_d, g_d / sum_w_yc_sq)
            rhs = k * g_d
        else:
            k = k0
            g_d = u
            sum_w_r_sq = sum_w_r0_sq
            a *= k * k
            if self.scale == "none":
                matrix = schur = a
                rhs = k * g_d
            else:
                n = self.n_parameters
                matrix = np.empty((n + 1, n + 1))
                matrix[:n, :n] = a
                matrix[:n, n] = matrix[n, :n] = k * c
                matrix[n, n] = sum_w_yc_sq
                schur = matrix
                rhs = np.append(k * g_d, sum_w_r0_yc)
        if not (math.isfinite(k) and np.all(np.isfinite(matrix)) and np.all(np.isfinite(rhs))):
            raise NonFiniteError(f"the normal equations overflowed (scale factor {k:g})")
        self._k = float(k)
        self._c = c
        self._sum_w_yc_sq = sum_w_yc_sq
        self._sum_w_r_sq = float(sum_w_r_sq)
        self._sum_w_yo_sq = sum_w_yo_sq
        self._data_matrix = matrix
        self._data_schur = schur
        self._data_rhs = rhs
        self._finalised = True

    def _require_open(self, what):
        if self._finalised:
            raise EquationsStateError(f"{what}() called after finalise()")
        if self._accumulator is None:
            raise EquationsStateError(f"{what}() called after finalise() failed; "
                                      "start new equations")

    def _require_finalised(self, what):
        if not self._finalised:
            raise EquationsStateError(f"{what}() needs finalise() first")

    def _with_restraints(self, matrix):
        matrix = matrix.copy()
        if self._restraint_matrix is not None:
            n = self.n_parameters
            matrix[:n, :n] += self._restraint_matrix
        return matrix

    # ------------------------------------------------------------------
    # results

    def normal_matrix(self):
        """The normal matrix B (+ D^T W D), float64 (n_unknowns, n_unknowns), a copy.

        For the separable scale this is the total-derivative form
        S + g_d g_d^T / sum w y_c^2."""
        self._require_finalised("normal_matrix")
        return self._with_restraints(self._data_matrix)

    def schur_matrix(self):
        """The matrix the covariance is built from, float64 (n_unknowns,
        n_unknowns): S (+ D^T W D) for the separable scale, the normal matrix
        otherwise."""
        self._require_finalised("schur_matrix")
        return self._with_restraints(self._data_schur)

    def right_hand_side(self):
        """g = sum w r a (+ D^T W Delta), float64 (n_unknowns,): minus half
        the gradient of L.  The Gauss-Newton shift solves B shift = g."""
        self._require_finalised("right_hand_side")
        rhs = self._data_rhs.copy()
        rhs[:self.n_parameters] += self._restraint_rhs
        return rhs

    def scale_factor(self):
        """K: K* for the separable scale, the given value otherwise."""
        self._require_finalised("scale_factor")
        return self._k

    @property
    def figures(self):
        """The agreement figures (`Figures`)."""
        self._require_finalised("figures")
        p = self.n_parameters + (self.scale != "none")
        m, n_r = self.n_observations, self.n_restraints
        objective = self._sum_w_r_sq + self._sum_w_restraints_sq
        wr = math.sqrt(self._sum_w_r_sq / self._sum_w_yo_sq) if self._sum_w_yo_sq > 0 else math.nan
        gof = math.sqrt(self._sum_w_r_sq / (m - p)) if m > p else math.nan
        restrained = math.sqrt(objective / (m + n_r - p)) if m + n_r > p else math.nan
        return Figures(scale_factor=self._k, sum_w_r_sq=self._sum_w_r_sq,
                       sum_w_yo_sq=self._sum_w_yo_sq,
                       sum_w_restraints_sq=self._sum_w_restraints_sq,
                       objective=objective, wr=wr, gof=gof, restrained_gof=restrained,
                       n_observations=m, n_restraints=n_r, n_parameters=p)

    # ------------------------------------------------------------------
    # solution

    def diagnose(self, relative_tolerance=1e-11):
        """Conditioning of the undamped normal matrix (`Diagnosis`).

        The matrix is scaled to unit diagonal (Jacobi) first.  It counts as
        singular when a parameter has a zero diagonal, when the Cholesky
        factorisation fails, or when the reciprocal condition estimate falls
        below ``relative_tolerance``; eigenvectors whose eigenvalues are below
        ``relative_tolerance`` times the largest are then the undetermined
        combinations, and solve() gives them no shift.
        """
        self._require_finalised("diagnose")
        if self._diagnosis is None or self._diagnosis[0] != relative_tolerance:
            self._factorise(relative_tolerance)
        return self._diagnosis[1]

    def _jacobi_scaling(self, matrix, tolerance):
        """1/sqrt(diagonal) for the parameters that something determines,
        0 for the others, and the indices of those others.

        A parameter is left out when its diagonal is zero, or, with the
        separable scale, when it has lost all but ``tolerance`` of K^2 A_ii
        (+ restraints) to the Schur complement: its derivative is then
        proportional to y_c and it only rescales the model."""
        diagonal = np.diag(matrix).copy()
        reference = diagonal
        if self.scale == "separable":
            reference = self._k ** 2 * self._a_diagonal
            if self._restraint_matrix is not None:
                reference = reference + np.diag(self._restraint_matrix)
        active = (diagonal > 0) & (diagonal > tolerance * reference)
        scaling = np.zeros_like(diagonal)
        scaling[active] = 1.0 / np.sqrt(diagonal[active])
        return scaling, np.flatnonzero(active), np.flatnonzero(~active)

    def _factorise(self, tolerance):
        matrix = self.normal_matrix()
        scaling, idx, inactive = self._jacobi_scaling(matrix, tolerance)
        scaled = matrix * scaling[:, None] * scaling[None, :]
        undetermined = [self._undetermined_text(
            {i: 1.0}, " (it only rescales the model, like the scale factor)"
            if self.scale == "separable" and self._a_diagonal[i] > 0
            else " (nothing depends on it)") for i in inactive]
        sub = np.ascontiguousarray(scaled[np.ix_(idx, idx)])
        factor = sub.copy()
        info = _kernels.cholesky_factor(factor) if idx.size else 0
        rcond = 1.0
        if info == 0 and idx.size:
            rcond = _kernels.cholesky_rcond(factor, float(np.abs(sub).sum(axis=0).max()))
        if info == 0 and rcond >= tolerance:
            solver = ("cholesky", scaling, idx, sub, factor)
            condition = 1.0 / rcond
        else:
            values, vectors = scipy.linalg.eigh(sub)
            largest = max(values[-1], 0.0)
            keep = values > tolerance * largest
            for k in np.flatnonzero(~keep):
                v = vectors[:, k] * scaling[idx]
                big = np.abs(v).max()
                terms = {int(idx[j]): v[j] / big for j in np.flatnonzero(np.abs(v) >= 0.05 * big)}
                undetermined.append(self._undetermined_text(terms, ""))
            solver = ("eigen", scaling, idx, values, vectors, keep)
            smallest = values[keep].min() if keep.any() else 0.0
            condition = largest / smallest if smallest > 0 else math.inf
        message = ""
        if undetermined:
            message = (f"normal matrix is singular: {len(undetermined)} undetermined "
                       "parameter combination(s), given no shift: "
                       + "; ".join(u.text for u in undetermined))
        self._solver = solver
        self._diagnosis = (tolerance, Diagnosis(condition, tuple(undetermined), message))

    def _undetermined_text(self, terms, suffix):
        order = sorted(terms, key=lambda j: -abs(terms[j]))
        parts = []
        for j in order:
            coefficient = terms[j]
            sign = "-" if coefficient < 0 else "+"
            magnitude = abs(coefficient)
            factor = "" if math.isclose(magnitude, 1.0, rel_tol=1e-6) else f"{magnitude:.3g}*"
            parts.append(f"{sign} {factor}{self.parameter_names[j]}")
        text = " ".join(parts)
        text = text[2:] if text.startswith("+ ") else "-" + text[2:]
        return Undetermined(parameters=tuple(order),
                            coefficients=tuple(float(terms[j]) for j in order),
                            text=text + suffix)

    @property
    def diagnosis(self):
        """The `Diagnosis` of the last solve() or diagnose() (None before)."""
        return None if self._diagnosis is None else self._diagnosis[1]

    def solve(self, damping=0.0, relative_tolerance=1e-11):
        """Shifts from the (damped) normal equations.

        Solves (B + damping * diag(B)) shift = g (Marquardt's damping, which is
        damping times the unit matrix after Jacobi scaling) by Cholesky
        (LAPACK dpotrf/dpotrs).  When the undamped matrix is singular (see
        ``diagnose``) the solution is eigenvalue-filtered instead and the
        undetermined combinations get no shift; ``diagnosis.message`` names
        them.

        Returns
        -------
        shifts : ndarray, float64, shape (n_unknowns,)
        """
        if not (damping >= 0 and math.isfinite(damping)):
            raise LeastSquaresError(f"damping must be finite and >= 0, got {damping!r}")
        self.diagnose(relative_tolerance)
        kind, scaling, idx = self._solver[:3]
        rhs = (self.right_hand_side() * scaling)[idx]
        if kind == "cholesky":
            sub, factor = self._solver[3:]
            if damping > 0:
                factor = sub + damping * np.eye(idx.size)
                if _kernels.cholesky_factor(factor) != 0:
                    raise LeastSquaresError("damped normal matrix is not positive definite")
            _kernels.cholesky_solve(factor, rhs)
            solution = rhs
        else:
            values, vectors, keep = self._solver[3:]
            coefficients = np.zeros_like(values)
            coefficients[keep] = (vectors[:, keep].T @ rhs) / (values[keep] + damping)
            solution = vectors @ coefficients
        shifts = np.zeros(self.n_unknowns)
        shifts[idx] = solution * scaling[idx]
        return shifts

    # ------------------------------------------------------------------
    # covariance

    def covariance(self, scaled=True, relative_tolerance=1e-11):
        """Covariance of the unknowns, float64 (n_unknowns, n_unknowns).

        The inverse of ``schur_matrix()`` (for the separable scale this is
        the x block of the inverse with K refined), times the restrained
        GoF^2 when ``scaled``.  A singular matrix gets the eigenvalue-filtered
        pseudo-inverse (zero variance along undetermined combinations,
        see ``diagnose``).
        """
        self._require_finalised("covariance")
        if self._covariance is None or self._covariance[0] != relative_tolerance:
            self._covariance = (relative_tolerance, self._inverse(relative_tolerance))
        result = self._covariance[1].copy()
        if scaled:
            result *= self._gof_sq()
        return result

    def _gof_sq(self):
        figures = self.figures
        if math.isnan(figures.restrained_gof):
            raise NoDegreesOfFreedomError(
                f"{figures.n_observations} observations + {figures.n_restraints} restraints "
                f"for {figures.n_parameters} parameters: the GoF is undefined")
        return figures.restrained_gof ** 2

    def _inverse(self, tolerance):
        matrix = self.schur_matrix()
        scaling, active, _ = self._jacobi_scaling(matrix, tolerance)
        sub = np.ascontiguousarray(matrix[np.ix_(active, active)]
                                   * scaling[active, None] * scaling[None, active])
        factor = sub.copy()
        info = _kernels.cholesky_factor(factor) if active.size else 0
        if info == 0 and active.size:
            norm = float(np.abs(sub).sum(axis=0).max())
            if _kernels.cholesky_rcond(factor, norm) < tolerance:
                info = -1
        if info == 0:
            if active.size:
                _kernels.cholesky_inverse(factor)
            inverse = factor
        else:
            values, vectors = scipy.linalg.eigh(sub)
            keep = values > tolerance * max(values[-1], 0.0)
            inverse = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
        result = np.zeros_like(matrix)
        s = scaling[active]
        result[np.ix_(active, active)] = inverse * s[:, None] * s[None, :]
        return result

    def scale_factor_variance(self, scaled=True):
        """Variance of the separable scale factor K*: the K-K element of the
        inverse with K refined, 1/sum w y_c^2 + q^T S^-1 q with q = K* c /
        sum w y_c^2 (times the restrained GoF^2 when ``scaled``)."""
        if self.scale != "separable":
            raise LeastSquaresError(f'scale_factor_variance() is for scale="separable"; '
                                    f'with scale="{self.scale}" see covariance()')
        q = self._k * self._c / self._sum_w_yc_sq
        variance = 1.0 / self._sum_w_yc_sq + float(q @ self.covariance(scaled=False) @ q)
        return variance * self._gof_sq() if scaled else variance

    def shift_over_su(self, shifts, scaled=True):
        """shift / s.u. for each unknown (0 where the s.u. is 0).  Without
        degrees of freedom the unscaled covariance is used."""
        shifts = _as_vector("shifts", shifts, self.n_unknowns)
        try:
            variances = np.diag(self.covariance(scaled=scaled))
        except NoDegreesOfFreedomError:
            variances = np.diag(self.covariance(scaled=False))
        su = np.sqrt(np.maximum(variances, 0.0))
        ratio = np.zeros_like(shifts)
        nonzero = su > 0
        ratio[nonzero] = shifts[nonzero] / su[nonzero]
        return ratio

    def propagate(self, jacobian, blocks=None, scaled=True, chunk_rows=1024):
        """Propagate the covariance to derived quantities y = f(x):
        Var(y) = J Var(x) J^T.

        Parameters
        ----------
        jacobian : scipy.sparse matrix or array_like, shape (q, n_unknowns)
            J = dy/dx.
        blocks : sequence of index sequences, optional
            Rows of J whose joint covariance is wanted (e.g. the 3 sites of
            one atom, the 6 U of another).  When omitted, only the variances
            of all q quantities are computed.
        scaled : bool
            Use the GoF^2-scaled covariance (default).

        Returns
        -------
        ndarray, float64, shape (q,)
            The variances, when ``blocks`` is None; otherwise
        list of ndarray, float64, shape (len(block), len(block))
            One covariance matrix per block.
        """
        j = scipy.sparse.csr_matrix(jacobian, dtype=np.float64)
        if j.shape[1] != self.n_unknowns:
            raise LeastSquaresError(f"jacobian must have {self.n_unknowns} columns, "
                                    f"got {j.shape[1]}")
        v = self.covariance(scaled=scaled)
        if blocks is None:
            variances = np.empty(j.shape[0])
            for start in range(0, j.shape[0], chunk_rows):
                part = j[start:start + chunk_rows]
                jv = part @ v
                variances[start:start + part.shape[0]] = np.asarray(
                    part.multiply(jv).sum(axis=1)).ravel()
            return variances
        result = []
        for number, block in enumerate(blocks):
            index = np.asarray(block, dtype=np.intp).ravel()
            if index.size and (index.min() < 0 or index.max() >= j.shape[0]):
                raise LeastSquaresError(f"block {number}: row indices must lie in "
                                        f"[0, {j.shape[0]}), got {index.tolist()}")
            part = j[index]
            result.append(np.asarray(part @ (part @ v).T))
        return result
