"""Iteration drivers: Gauss-Newton / Levenberg-Marquardt over normal
equations, and a thin L-BFGS wrapper of scipy.optimize for gradient-only
targets."""

from dataclasses import dataclass, field
import math

import numpy as np
import scipy.optimize

from .errors import LeastSquaresError, NonFiniteError
from .normal_equations import NormalEquations


@dataclass(frozen=True)
class Cycle:
    """One cycle of `gauss_newton`: the figures of the equations built at
    the current x, the shifts solved from them and what became of them.

    Attributes
    ----------
    number : int
        1, 2, ...
    objective, wr, gof, restrained_gof, scale_factor : float
        From the equations at the start of the cycle (``Figures``).
    max_shift_over_su : float
        max |shift / s.u.| of the shifts of this cycle.
    max_shift_parameter : str
        Name of the parameter where that maximum is.
    mean_shift_over_su : float
        mean |shift / s.u.|.
    damping : float
        The Marquardt damping the shifts were solved with.
    accepted : bool
        Whether the shifts lowered the objective and were kept.
    condition_number : float
    message : str
        The solver's message (undetermined combinations), or "".
    """

    number: int
    objective: float
    wr: float
    gof: float
    restrained_gof: float
    scale_factor: float
    max_shift_over_su: float
    max_shift_parameter: str
    mean_shift_over_su: float
    damping: float
    accepted: bool
    condition_number: float
    message: str


@dataclass
class Refinement:
    """Outcome of `gauss_newton`.

    Attributes
    ----------
    x : ndarray, float64
        The final parameters.
    equations : NormalEquations
        Finalised equations built at ``x`` (for the covariance and figures).
    cycles : list of Cycle
    converged : bool
    reason : str
        Why the iteration stopped.
    """

    x: np.ndarray
    equations: NormalEquations
    cycles: list = field(default_factory=list)
    converged: bool = False
    reason: str = ""

    @property
    def n_cycles(self):
        return len(self.cycles)


def _build(build, x):
    equations = build(x)
    if not isinstance(equations, NormalEquations):
        raise LeastSquaresError(f"build(x) must return NormalEquations, got {type(equations).__name__}")
    if not equations.finalised:
        equations.finalise()
    if equations.n_unknowns != x.shape[0]:
        raise LeastSquaresError(f"build(x) returned equations for {equations.n_unknowns} "
                                f"unknowns, but x has {x.shape[0]} entries")
    return equations


def gauss_newton(build, x0, *, max_cycles=20, shift_tolerance=0.01,
                 objective_tolerance=1e-10, damping=0.0, initial_damping=1e-3,
                 max_damping=1e10, apply_shifts=None):
    """Minimise L(x) by Gauss-Newton, switching to Levenberg-Marquardt
    damping when a step fails to lower L.

    Parameters
    ----------
    build : callable
        ``build(x) -> NormalEquations`` with the equations at x (finalised
        or not); the unknowns of the equations must match x (with
        ``scale="parameter"`` the scale factor is the last entry of x).
        A `NonFiniteError` raised at a trial point counts as a failed step.
    x0 : array_like, float64, shape (n,)
        Starting parameters.
    max_cycles : int
        Maximum number of builds after the first (each tried step is one).
    shift_tolerance : float
        Converged when max |shift / s.u.| of the undamped shifts falls below
        this.
    objective_tolerance : float
        Converged when an accepted undamped step changes L by less than this
        fraction of L.
    damping : float
        Marquardt damping of the first cycle (0: plain Gauss-Newton).
    initial_damping : float
        Damping switched on when an undamped step fails.
    max_damping : float
        Stop (not converged) when the damping needed exceeds this.
    apply_shifts : callable, optional
        ``apply_shifts(x, shifts) -> new x``; default x + shifts.

    Returns
    -------
    Refinement
    """
    x = np.array(x0, dtype=np.float64)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise LeastSquaresError("x0 must be a finite vector")
    step = apply_shifts if apply_shifts is not None else (lambda x, s: x + s)
    equations = _build(build, x)
    result = Refinement(x=x, equations=equations)
    objective = equations.figures.objective
    for number in range(1, max_cycles + 1):
        figures = equations.figures
        shifts = equations.solve(damping=damping)
        ratio = np.abs(equations.shift_over_su(shifts))
        worst = int(np.argmax(ratio))
        # damped shifts shrink with the damping: judge convergence undamped
        undamped = ratio if damping == 0 else np.abs(
            equations.shift_over_su(equations.solve(damping=0.0)))
        small = undamped.max() < shift_tolerance
        trial_x = np.asarray(step(x, shifts), dtype=np.float64)
        try:
            trial = _build(build, trial_x)
            trial_objective = trial.figures.objective
        except NonFiniteError:
            # the model blew up at the trial point: a failed step
            trial_objective = math.inf
        accepted = trial_objective <= objective
        diagnosis = equations.diagnosis
        caveat = f"; but {diagnosis.message}" if diagnosis.singular else ""
        result.cycles.append(Cycle(
            number=number, objective=figures.objective, wr=figures.wr, gof=figures.gof,
            restrained_gof=figures.restrained_gof, scale_factor=figures.scale_factor,
            max_shift_over_su=float(ratio[worst]),
            max_shift_parameter=equations.parameter_names[worst],
            mean_shift_over_su=float(ratio.mean()), damping=damping, accepted=accepted,
            condition_number=diagnosis.condition_number, message=diagnosis.message))
        if accepted:
            change = objective - trial_objective
            x, equations, objective = trial_x, trial, trial_objective
            result.x, result.equations = x, equations
            if small:
                result.converged, result.reason = True, (
                    f"max |shift/s.u.| {undamped.max():.3g} < {shift_tolerance}{caveat}")
                break
            # (a heavily damped step changes L little without being near the end)
            if damping == 0 and change <= objective_tolerance * objective:
                result.converged, result.reason = True, (
                    f"relative change of L {change / objective if objective else 0.0:.3g} "
                    f"<= {objective_tolerance}")
                break
            damping /= 10
            if damping < 1e-3 * initial_damping:
                damping = 0.0
        else:
            if small:
                result.converged, result.reason = True, (
                    f"max |shift/s.u.| {undamped.max():.3g} < {shift_tolerance} "
                    f"(last shifts not applied: L did not decrease){caveat}")
                break
            damping = max(10 * damping, initial_damping)
            if damping > max_damping:
                result.reason = f"L does not decrease even with damping {max_damping:g}"
                break
    else:
        result.reason = f"{max_cycles} cycles without convergence"
    return result


@dataclass
class Minimisation:
    """Outcome of `lbfgs`.

    Attributes
    ----------
    x : ndarray, float64
    value : float
    gradient : ndarray, float64
    n_iterations, n_evaluations : int
    converged : bool
    message : str
        scipy's message.
    history : list of float
        The target value after each iteration.
    """

    x: np.ndarray
    value: float
    gradient: np.ndarray
    n_iterations: int
    n_evaluations: int
    converged: bool
    message: str
    history: list


def lbfgs(target, x0, *, bounds=None, max_iterations=100, gradient_tolerance=1e-5,
          objective_tolerance=1e-10, history_size=10):
    """Minimise ``target`` with scipy's L-BFGS-B.

    Parameters
    ----------
    target : callable
        ``target(x) -> (value, gradient)`` with gradient float64 (n,).
    x0 : array_like, float64, shape (n,)
    bounds : sequence of (low, high), optional
        Per-parameter bounds (None for unbounded sides).
    max_iterations : int
    gradient_tolerance : float
        scipy's ``gtol`` (largest projected gradient component).
    objective_tolerance : float
        scipy's ``ftol`` (relative reduction of the value).
    history_size : int
        Number of correction pairs kept (scipy's ``maxcor``).

    Returns
    -------
    Minimisation
    """
    x = np.array(x0, dtype=np.float64)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise LeastSquaresError("x0 must be a finite vector")

    def checked(x):
        value, gradient = target(x)
        value = float(value)
        gradient = np.asarray(gradient, dtype=np.float64)
        if gradient.shape != x.shape:
            raise LeastSquaresError(f"target gradient has shape {gradient.shape}, "
                                    f"expected {x.shape}")
        if not (math.isfinite(value) and np.all(np.isfinite(gradient))):
            raise LeastSquaresError("target returned a non-finite value or gradient")
        return value, gradient

    history = []

    def record(intermediate_result):
        history.append(float(intermediate_result.fun))

    found = scipy.optimize.minimize(
        checked, x, jac=True, method="L-BFGS-B", bounds=bounds, callback=record,
        options=dict(maxiter=max_iterations, gtol=gradient_tolerance,
                     ftol=objective_tolerance, maxcor=history_size))
    return Minimisation(x=found.x, value=float(found.fun), gradient=np.asarray(found.jac),
                        n_iterations=int(found.nit), n_evaluations=int(found.nfev),
                        converged=bool(found.success), message=str(found.message),
                        history=history)
