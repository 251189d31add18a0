"""Acceptance of the separable scale factor (DESIGN.md section 5): same
minimum as refining K, B - S = g_d g_d^T / sum w y_c^2, equal right-hand
sides, and the covariance against finite differences of L."""

import numpy as np
import pytest

import lstbx


def refine(problem, scale, x0=None, **kwargs):
    x0 = problem.x_start if x0 is None else x0
    if scale == "parameter":
        x0 = np.append(x0, 1.0)
    return lstbx.gauss_newton(lambda x: problem.equations(x, scale=scale), x0,
                              max_cycles=100, shift_tolerance=1e-7,
                              objective_tolerance=1e-15, **kwargs)


def test_separable_reaches_the_minimum_of_refining_k(problems):
    """Both routes converge to one minimum.  Cycles used (separable,
    K as a parameter started at 1), printed with pytest -s."""
    for problem in problems:
        separable = refine(problem, "separable")
        parameter = refine(problem, "parameter")
        assert separable.converged and parameter.converged, problem.name
        print(f"{problem.name}: {separable.n_cycles} cycles separable, "
              f"{parameter.n_cycles} with K as a parameter")
        ne = separable.equations
        su = np.sqrt(np.diag(ne.covariance()))
        assert np.all(np.abs(separable.x - parameter.x[:-1]) < 1e-5 * su), problem.name
        assert abs(ne.scale_factor() - parameter.x[-1]) < 1e-5 * np.sqrt(ne.scale_factor_variance())
        assert ne.figures.objective == pytest.approx(
            parameter.equations.figures.objective, rel=1e-10)
        # the fit is a real one: at the true parameters within a few s.u.
        assert np.all(np.abs(separable.x - problem.x_true) < 5 * su), problem.name
        # and it is the minimum of L computed directly
        assert ne.figures.objective == pytest.approx(problem.objective(separable.x), rel=1e-12)
        for i in range(problem.n):
            e = np.zeros(problem.n)
            e[i] = 0.1 * su[i]
            assert problem.objective(separable.x + e) > ne.figures.objective
            assert problem.objective(separable.x - e) > ne.figures.objective


def test_total_derivative_matrix_is_schur_plus_rank_one(problems):
    """B (separable) - S = g_d g_d^T / sum w y_c^2, with S the Schur
    complement of the matrix with K as an ordinary parameter at K = K*, and
    the right-hand sides equal; away from the minimum so that g_d != 0."""
    for problem in problems:
        x = problem.x_start
        separable = problem.equations(x)
        k = separable.scale_factor()
        full = problem.equations(np.append(x, k), scale="parameter")
        n = problem.n
        m = full.normal_matrix()
        schur = m[:n, :n] - np.outer(m[:n, n], m[n, :n]) / m[n, n]
        y_calc, rows = problem.model(x)
        w = problem.weights
        g_d = rows.T @ (w * (problem.y_obs - k * y_calc))
        b = separable.normal_matrix()
        expected = np.outer(g_d, g_d) / (w @ y_calc ** 2)
        assert np.abs(b - schur - expected).max() < 1e-10 * np.abs(expected).max()
        assert np.abs(expected).max() > 1e-4 * np.abs(b).max()
        assert np.allclose(separable.schur_matrix(), schur, rtol=1e-12, atol=0)
        rhs_full = full.right_hand_side()
        assert abs(rhs_full[n]) < 1e-10 * np.abs(rhs_full[:n]).max()
        assert np.abs(separable.right_hand_side() - rhs_full[:n]).max() < \
            1e-12 * np.abs(rhs_full[:n]).max()


def hessian_by_differences(f, x, steps):
    """Central second differences of f with Richardson extrapolation (h, h/2)."""
    def estimate(h):
        n = x.size
        hess = np.empty((n, n))
        for i in range(n):
            for j in range(i, n):
                ei = np.zeros(n)
                ej = np.zeros(n)
                ei[i] = h[i]
                ej[j] = h[j]
                hess[i, j] = hess[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej)
                                           + f(x - ei - ej)) / (4 * h[i] * h[j])
        return hess
    return (4 * estimate(steps / 2) - estimate(steps)) / 3


def test_unscaled_covariance_is_twice_inverse_hessian(problems):
    """On noise-free data, at the minimum: covariance(scaled=False) =
    2 (d2L/dx2)^-1, the Hessian of the separable L by finite differences."""
    for problem in problems:
        exact = problem.noise_free()
        ne = exact.equations(exact.x_true)
        assert ne.figures.sum_w_r_sq < 1e-20 * ne.figures.sum_w_yo_sq
        covariance = ne.covariance(scaled=False)
        su = np.sqrt(np.diag(covariance))
        hessian = hessian_by_differences(exact.objective, exact.x_true, 1e-2 * su)
        expected = 2 * np.linalg.inv(hessian)
        assert np.abs(covariance - expected).max() < 1e-6 * np.abs(expected).max(), problem.name


def test_covariance_is_the_x_block_of_refining_k(problems):
    """With noise, away from g_d = 0 too: the separable covariance is the x
    block of the inverse of the (x, K) normal matrix at K = K*, and the
    scale-factor variance its K-K element."""
    for problem in problems:
        x = problem.x_start
        separable = problem.equations(x)
        k = separable.scale_factor()
        full = problem.equations(np.append(x, k), scale="parameter")
        inverse = np.linalg.inv(full.normal_matrix())
        n = problem.n
        cov = separable.covariance(scaled=False)
        assert np.abs(cov - inverse[:n, :n]).max() < 1e-10 * np.abs(inverse[:n, :n]).max()
        assert separable.scale_factor_variance(scaled=False) == pytest.approx(
            inverse[n, n], rel=1e-10)
        gof_sq = separable.figures.restrained_gof ** 2
        assert separable.scale_factor_variance() == pytest.approx(gof_sq * inverse[n, n],
                                                                  rel=1e-10)
        assert np.allclose(full.covariance(scaled=False), inverse, rtol=1e-10,
                           atol=1e-10 * np.abs(inverse).max())
        # the same p and data give the same GoF in both modes
        assert separable.figures.gof == pytest.approx(full.figures.gof, rel=1e-10)
