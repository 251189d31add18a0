"""Solution: damping, singular matrices named, no NaN; the drivers."""

import math

import numpy as np
import pytest

import lstbx


def linear_problem(m=120, n=6, seed=11, k=1.7):
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((m, n))
    x_true = rng.standard_normal(n)
    offset = 5.0 + rng.random(m)
    y_calc = offset + rows @ x_true
    y_obs = k * y_calc + 0.01 * rng.standard_normal(m)
    weights = 1.0 + rng.random(m)
    return y_obs, weights, offset, rows


def equations(y_obs, weights, y_calc, rows, **kwargs):
    ne = lstbx.NormalEquations(rows.shape[1], **kwargs)
    ne.add_block(y_obs, weights, y_calc, rows)
    ne.finalise()
    return ne


def assert_all_finite(ne, shifts):
    assert np.all(np.isfinite(shifts))
    assert np.all(np.isfinite(ne.covariance()))
    assert np.all(np.isfinite(ne.shift_over_su(shifts)))
    f = ne.figures
    for value in (f.wr, f.gof, f.restrained_gof, f.objective, f.scale_factor):
        assert math.isfinite(value)


@pytest.mark.parametrize("scale,k", [("none", 1.7), ("separable", None)])
def test_identical_columns_are_named(scale, k):
    y_obs, weights, y_calc, rows = linear_problem()
    rows[:, 4] = rows[:, 1]
    names = ["x", "y", "z", "u", "v", "w"]
    ne = equations(y_obs, weights, y_calc, rows, scale=scale, scale_factor=k,
                   parameter_names=names)
    shifts = ne.solve()
    diagnosis = ne.diagnosis
    assert diagnosis.singular and len(diagnosis.undetermined) == 1
    combination = diagnosis.undetermined[0]
    assert set(combination.parameters) == {1, 4}
    assert combination.coefficients[0] == pytest.approx(-combination.coefficients[1], rel=1e-8)
    assert combination.text in ("y - v", "v - y", "-y + v", "-v + y")
    assert "y" in diagnosis.message and "v" in diagnosis.message
    assert_all_finite(ne, shifts)
    # no shift along the undetermined direction, and the rest is the
    # minimum-norm least-squares solution (in the Jacobi-scaled metric)
    assert shifts[1] == pytest.approx(shifts[4], rel=1e-8)
    matrix, rhs = ne.normal_matrix(), ne.right_hand_side()
    s = 1 / np.sqrt(np.diag(matrix))
    expected = s * np.linalg.lstsq(matrix * s[:, None] * s[None, :], rhs * s, rcond=1e-10)[0]
    assert np.abs(shifts - expected).max() < 1e-8 * np.abs(expected).max()
    # damping keeps the filter
    damped = ne.solve(damping=0.1)
    assert damped[1] == pytest.approx(damped[4], rel=1e-8)
    assert np.all(np.isfinite(damped))
    # the covariance has no variance along y - v
    cov = ne.covariance(scaled=False)
    d = np.zeros(6)
    d[1], d[4] = 1, -1
    assert abs(d @ cov @ d) < 1e-10 * np.abs(cov).max()


def test_parameter_degenerate_with_the_scale_is_named():
    """A parameter that only rescales y_c is undetermined with a separable
    scale: its total derivative is zero."""
    y_obs, weights, y_calc, rows = linear_problem()
    rows[:, 2] = y_calc
    ne = equations(y_obs, weights, y_calc, rows, parameter_names=list("abcdef"))
    shifts = ne.solve()
    assert [u.parameters for u in ne.diagnosis.undetermined] == [(2,)]
    assert ne.diagnosis.undetermined[0].text == "c (it only rescales the model, like the scale factor)"
    assert shifts[2] == 0.0
    assert_all_finite(ne, shifts)


def test_parameter_nothing_depends_on_is_named():
    y_obs, weights, y_calc, rows = linear_problem()
    rows[:, 3] = 0.0
    ne = equations(y_obs, weights, y_calc, rows, scale="none", scale_factor=1.7)
    shifts = ne.solve()
    assert ne.diagnosis.undetermined[0].text == "x[3] (nothing depends on it)"
    assert shifts[3] == 0.0
    assert ne.covariance()[3, 3] == 0.0
    assert_all_finite(ne, shifts)


def test_regular_matrix_solve_and_damping():
    y_obs, weights, y_calc, rows = linear_problem()
    ne = equations(y_obs, weights, y_calc, rows, scale="none", scale_factor=1.7)
    matrix, rhs = ne.normal_matrix(), ne.right_hand_side()
    assert np.allclose(ne.solve(), np.linalg.solve(matrix, rhs), rtol=1e-12, atol=0)
    assert not ne.diagnosis.singular and ne.diagnosis.message == ""
    assert ne.diagnosis.condition_number == pytest.approx(
        np.linalg.cond(matrix / np.sqrt(np.outer(np.diag(matrix), np.diag(matrix))), 1), rel=0.5)
    damped = ne.solve(damping=0.5)
    expected = np.linalg.solve(matrix + 0.5 * np.diag(np.diag(matrix)), rhs)
    assert np.allclose(damped, expected, rtol=1e-12, atol=0)
    # linear model, K fixed: one Gauss-Newton step lands on the solution
    assert np.allclose(ne.covariance(scaled=False), np.linalg.inv(matrix), rtol=1e-10)
    with pytest.raises(lstbx.LeastSquaresError, match="damping"):
        ne.solve(damping=-1.0)
    ratio = ne.shift_over_su(np.ones(6))
    assert np.allclose(ratio, 1 / np.sqrt(np.diag(ne.covariance())))


def test_gauss_newton_switches_to_damping_when_a_step_fails(problems):
    """From far away the undamped step overshoots; the driver rejects it,
    damps, and still reaches the minimum; L never goes up."""
    problem = problems[0]
    start = np.array([0.05, 0.6, 1.7])
    result = lstbx.gauss_newton(lambda x: problem.equations(x), start, max_cycles=60, shift_tolerance=1e-6)
    assert result.converged
    rejected = [c for c in result.cycles if not c.accepted]
    assert rejected and any(c.damping > 0 for c in result.cycles)
    reference = lstbx.gauss_newton(lambda x: problem.equations(x), problem.x_start,
                                   shift_tolerance=1e-6)
    su = np.sqrt(np.diag(result.equations.covariance()))
    assert np.all(np.abs(result.x - reference.x) < 1e-3 * su)
    objectives = [c.objective for c in result.cycles]
    assert all(b <= a for a, b in zip(objectives, objectives[1:]))
    for cycle in result.cycles:
        assert cycle.max_shift_parameter.startswith("x[")
        assert cycle.gof > 0 and cycle.wr > 0 and math.isfinite(cycle.condition_number)


def test_gauss_newton_rejects_a_trial_where_the_model_blows_up():
    """y = K exp(-sqrt(p) t) from p = 2: the first steps overshoot to p < 0,
    where the model is NaN and add_block raises NonFiniteError; those trials
    count as failed steps and the damping brings the shifts back."""
    t = np.linspace(0, 10, 60)
    y_obs = 2.0 * np.exp(-0.5 * t)
    blown_up = []

    def build(x):
        with np.errstate(invalid="ignore"):
            y = np.exp(-np.sqrt(x[0]) * t)
            rows = (-t / (2 * np.sqrt(x[0])) * y)[:, None]
        ne = lstbx.NormalEquations(1)
        try:
            ne.add_block(y_obs, np.ones_like(t), y, rows)
        except lstbx.NonFiniteError:
            blown_up.append(x[0])
            raise
        return ne

    result = lstbx.gauss_newton(build, [2.0], max_cycles=100, shift_tolerance=1e-8)
    assert result.converged
    assert blown_up and max(blown_up) < 0
    assert sum(not c.accepted for c in result.cycles) >= len(blown_up)
    assert result.x[0] == pytest.approx(0.25, rel=1e-10)
    assert result.equations.scale_factor() == pytest.approx(2.0, rel=1e-10)


def test_overflow_is_a_typed_error():
    ne = lstbx.NormalEquations(1)
    ne.add_block([1.0], [1.0], [1e200], [[1e200]])
    with pytest.raises(lstbx.NonFiniteError, match="overflowed"):
        ne.finalise()
    with pytest.raises(lstbx.EquationsStateError, match="finalise\\(\\) failed"):
        ne.add_block([1.0], [1.0], [1.0], [[1.0]])


def test_gauss_newton_gives_up_with_a_reason():
    def build(x):
        ne = lstbx.NormalEquations(1, scale="none")
        # the 'derivative' has the wrong sign: every step increases L
        ne.add_block([0.0, 0.0], [1.0, 1.0], [x[0], x[0]], [[-1.0], [-1.0]])
        return ne

    result = lstbx.gauss_newton(build, [1.0], max_cycles=50, max_damping=1e3)
    assert not result.converged
    assert not any(c.accepted for c in result.cycles)
    assert "damping" in result.reason
    assert result.x[0] == 1.0


def test_gauss_newton_input_errors():
    with pytest.raises(lstbx.LeastSquaresError, match="must return NormalEquations"):
        lstbx.gauss_newton(lambda x: None, [1.0])
    with pytest.raises(lstbx.LeastSquaresError, match="finite vector"):
        lstbx.gauss_newton(lambda x: None, [np.nan])

    def wrong_size(x):
        ne = lstbx.NormalEquations(2)
        ne.add_block([1.0, 2.0, 3.0], [1.0] * 3, [1.0, 2.0, 2.5], np.eye(3, 2))
        return ne

    with pytest.raises(lstbx.LeastSquaresError, match="2 unknowns, but x has 1"):
        lstbx.gauss_newton(wrong_size, [1.0])


def test_lbfgs_reaches_the_gauss_newton_minimum(problems):
    """The gradient of L is -2 g; L-BFGS on (L, -2 g) finds the minimum
    Gauss-Newton finds."""
    problem = problems[1]

    def target(x):
        ne = problem.equations(x)
        return ne.figures.objective, -2 * ne.right_hand_side()

    found = lstbx.lbfgs(target, problem.x_start, max_iterations=500,
                        gradient_tolerance=1e-9, objective_tolerance=1e-15)
    reference = lstbx.gauss_newton(lambda x: problem.equations(x), problem.x_start,
                                   shift_tolerance=1e-8)
    su = np.sqrt(np.diag(reference.equations.covariance()))
    assert np.all(np.abs(found.x - reference.x) < 1e-3 * su)
    assert found.value == pytest.approx(reference.equations.figures.objective, rel=1e-9)
    assert found.history and found.history[-1] == pytest.approx(found.value)
    assert found.n_evaluations >= found.n_iterations > 0


def test_lbfgs_bounds_and_errors():
    found = lstbx.lbfgs(lambda x: ((x[0] - 3) ** 2, 2 * (x - 3)), [0.0], bounds=[(None, 1.0)])
    assert found.converged and found.x[0] == pytest.approx(1.0)
    with pytest.raises(lstbx.LeastSquaresError, match="non-finite"):
        lstbx.lbfgs(lambda x: (np.nan, x), [0.0])
    with pytest.raises(lstbx.LeastSquaresError, match=r"gradient has shape \(2,\)"):
        lstbx.lbfgs(lambda x: (1.0, np.zeros(2)), [0.0])


def test_docstring_examples():
    """The package example (its figures agree with scipy.optimize.curve_fit:
    b = 0.70054(118), K = 3.0018)."""
    import doctest
    failures, tried = doctest.testmod(lstbx, verbose=False)
    assert tried > 0 and failures == 0


def test_standard_uncertainties_agree_with_curve_fit():
    """s.u.'s of x and of the separable K against scipy.optimize.curve_fit
    refining (K, x) together (its covariance is scaled by the residual
    variance with m - p degrees of freedom, as ours)."""
    from scipy.optimize import curve_fit

    rng = np.random.default_rng(4)
    t = np.linspace(0.0, 6.0, 80)
    sigma = 0.02 + 0.01 * t
    y_obs = 2.2 * (np.exp(-0.4 * t) + 0.5 * np.exp(-1.9 * t)) + sigma * rng.standard_normal(t.size)

    def model(t, k, b1, a2, b2):
        return k * (np.exp(-b1 * t) + a2 * np.exp(-b2 * t))

    p, pcov = curve_fit(model, t, y_obs, p0=[1.0, 0.5, 0.4, 2.0], sigma=sigma,
                        xtol=1e-15, ftol=1e-15, gtol=1e-15)

    def build(x):
        b1, a2, b2 = x
        e1, e2 = np.exp(-b1 * t), np.exp(-b2 * t)
        ne = lstbx.NormalEquations(3)
        ne.add_block(y_obs, 1 / sigma ** 2, e1 + a2 * e2,
                     np.column_stack([-t * e1, e2, -a2 * t * e2]))
        return ne

    result = lstbx.gauss_newton(build, [0.5, 0.4, 2.0], shift_tolerance=1e-9,
                                objective_tolerance=1e-15)
    ne = result.equations
    su = np.sqrt(np.diag(pcov))
    assert np.all(np.abs(result.x - p[1:]) < 1e-5 * su[1:])
    assert abs(ne.scale_factor() - p[0]) < 1e-5 * su[0]
    assert np.allclose(ne.covariance(), pcov[1:, 1:], rtol=1e-5)
    assert ne.scale_factor_variance() == pytest.approx(pcov[0, 0], rel=1e-5)
