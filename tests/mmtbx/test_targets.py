"""Targets: gradients by finite differences (through F_calc to xyz and B),
minima at the true model, α/β estimates, figures of merit, outlier test."""

import numpy as np
import pytest
from scipy import integrate, optimize

import sgtbx
from mmtbx import (FModel, estimate_alpha_beta, figure_of_merit, least_squares_target, ml_target,
                   outlier_probabilities)

CELL = sgtbx.UnitCell(20.0, 22.0, 25.0, 90.0, 95.0, 90.0)
P1 = sgtbx.SpaceGroup("P 1")


def _direct_f_calc(sites_frac, b_iso, hkl):
    """F = Σ f(s) exp(-B s²/4) exp(2πi h·x) in P1 with f = 6 exp(-2 s²), and
    dF/dx (m, n, 3), dF/dB (m, n).  Plain NumPy, independent of mmtbx."""
    s_sq = CELL.s_squared(hkl)
    f0 = 6.0 * np.exp(-2.0 * s_sq)
    phase = np.exp(2j * np.pi * hkl @ sites_frac.T)                    # (m, n)
    term = f0[:, None] * np.exp(-np.outer(s_sq, b_iso) / 4.0) * phase  # (m, n)
    d_x = 2j * np.pi * term[:, :, None] * hkl[:, None, :]
    d_b = -s_sq[:, None] / 4.0 * term
    return term.sum(axis=1), d_x, d_b


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(7)
    n = 12
    sites = rng.uniform(0, 1, (n, 3))
    b_iso = rng.uniform(8, 20, n)
    hkl = sgtbx.complete_set(CELL, P1, 2.2)
    f_true, _, _ = _direct_f_calc(sites, b_iso, hkl)
    f_mask = 0.5 * f_true.mean() * np.exp(-CELL.s_squared(hkl) * 40) * np.exp(2j * np.pi * rng.uniform(size=len(hkl)))
    f_obs = np.abs(1.7 * (f_true + 0.3 * f_mask))
    f_obs = f_obs * (1 + 0.02 * rng.standard_normal(len(hkl)))
    free = rng.uniform(size=len(hkl)) < 0.1
    return dict(sites=sites, b_iso=b_iso, hkl=hkl, f_true=f_true, f_mask=f_mask,
                f_obs=np.abs(f_obs), free=free)


def _fmodel(sim, sites, b_iso):
    f_calc, _, _ = _direct_f_calc(sites, b_iso, sim["hkl"])
    fm = FModel(sim["hkl"], sim["f_obs"], np.ones(len(f_calc)), sim["free"], CELL, P1,
                f_calc, sim["f_mask"], remove_outliers=False)
    return fm.update_all_scales()


def _target_of_model(fm, sites, b_iso, hkl, kind):
    """T and dT/dsites, dT/dB with the scales and α, β of ``fm`` frozen."""
    f_calc, d_x, d_b = _direct_f_calc(sites, b_iso, hkl)
    fm.f_calc = f_calc
    value, grad = fm.target_and_gradient(kind)
    g_x = np.einsum("m,mnk->nk", np.conj(grad), d_x).real
    g_b = np.einsum("m,mn->n", np.conj(grad), d_b).real
    return value, g_x, g_b


@pytest.mark.parametrize("kind", ["ml", "ls"])
def test_gradient_through_f_calc_to_xyz_and_b(simulated, kind):
    rng = np.random.default_rng(11)
    sites = simulated["sites"] + rng.normal(0, 0.01, simulated["sites"].shape)
    b_iso = simulated["b_iso"] + rng.normal(0, 2, len(simulated["b_iso"]))
    fm = _fmodel(simulated, sites, b_iso)
    fm.alpha_beta()                      # frozen from here on
    hkl = simulated["hkl"]
    _, g_x, g_b = _target_of_model(fm, sites, b_iso, hkl, kind)
    step = 1e-6
    for atom in (0, 5, 11):
        for axis in range(3):
            plus, minus = sites.copy(), sites.copy()
            plus[atom, axis] += step
            minus[atom, axis] -= step
            fd = (_target_of_model(fm, plus, b_iso, hkl, kind)[0]
                  - _target_of_model(fm, minus, b_iso, hkl, kind)[0]) / (2 * step)
            assert g_x[atom, axis] == pytest.approx(fd, rel=1e-5, abs=1e-6 * abs(g_x).max())
        plus, minus = b_iso.copy(), b_iso.copy()
        plus[atom] += 1e-4
        minus[atom] -= 1e-4
        fd = (_target_of_model(fm, sites, plus, hkl, kind)[0]
              - _target_of_model(fm, sites, minus, hkl, kind)[0]) / 2e-4
        assert g_b[atom] == pytest.approx(fd, rel=1e-5, abs=1e-6 * abs(g_b).max())


@pytest.mark.parametrize("target", ["ls", "ml"])
def test_gradient_with_respect_to_a_and_b_centric_and_acentric(target):
    rng = np.random.default_rng(5)
    m = 60
    f_model = rng.normal(0, 10, m) + 1j * rng.normal(0, 10, m)
    f_obs = np.abs(f_model) * rng.uniform(0.7, 1.3, m)
    centric = np.arange(m) % 3 == 0
    alpha, beta = rng.uniform(0.7, 1.0, m), rng.uniform(5, 30, m)
    eps = np.where(np.arange(m) % 4 == 0, 2.0, 1.0)

    def value(f):
        if target == "ls":
            return least_squares_target(f_obs, f)[0]
        return ml_target(f_obs, f, alpha, beta, eps, centric)[0]

    grad = (least_squares_target(f_obs, f_model)[1] if target == "ls"
            else ml_target(f_obs, f_model, alpha, beta, eps, centric)[1])
    for i in range(0, m, 7):
        for unit in (1.0, 1j):
            plus, minus = f_model.copy(), f_model.copy()
            plus[i] += 1e-4 * unit
            minus[i] -= 1e-4 * unit
            fd = (value(plus) - value(minus)) / 2e-4
            analytic = grad[i].real if unit == 1.0 else grad[i].imag
            assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("kind", ["ls", "ml"])
def test_targets_reach_their_minimum_at_the_true_model(simulated, kind):
    """From sites shifted by ~0.15 Å, minimising the target over the sites
    (scales and α, β frozen at the true model) returns to the true sites."""
    hkl = simulated["hkl"]
    fm = _fmodel(simulated, simulated["sites"], simulated["b_iso"])
    fm.alpha_beta()
    rng = np.random.default_rng(2)
    start = simulated["sites"] + rng.normal(0, 0.15, simulated["sites"].shape) / np.array(CELL.parameters[:3])
    # the origin floats in P1: hold atom 0
    free_atoms = slice(1, None)

    def fun(x):
        sites = simulated["sites"].copy()
        sites[free_atoms] = x.reshape(-1, 3)
        value, g_x, _ = _target_of_model(fm, sites, simulated["b_iso"], hkl, kind)
        return value, g_x[free_atoms].ravel()

    x0 = start[free_atoms].ravel()
    res = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", options=dict(maxiter=500, gtol=1e-10))
    moved = res.x.reshape(-1, 3)
    shift_cart = (moved - simulated["sites"][free_atoms]) * np.array(CELL.parameters[:3])
    assert np.sqrt(np.mean(np.sum(shift_cart ** 2, axis=1))) < 0.01
    true_value = fun(simulated["sites"][free_atoms].ravel())[0]
    assert res.fun <= true_value + 1e-6 * abs(true_value)


def _simulate_sigma_a(rng, m, d_true, beta_true, centric):
    f_c = rng.normal(0, 30, m) + 1j * rng.normal(0, 30, m)
    f_c = np.where(centric, f_c.real, f_c)
    err = np.where(centric, rng.normal(0, np.sqrt(beta_true), m),
                   rng.normal(0, np.sqrt(beta_true / 2), m) + 1j * rng.normal(0, np.sqrt(beta_true / 2), m))
    return np.abs(d_true * f_c + err), f_c


def test_alpha_beta_recovered_on_simulated_data():
    rng = np.random.default_rng(4)
    m = 6000
    centric = rng.uniform(size=m) < 0.2
    f_obs, f_c = _simulate_sigma_a(rng, m, 0.8, 300.0, centric)
    d = np.sort(rng.uniform(2.0, 10.0, m))
    free = rng.uniform(size=m) < 0.5
    ab = estimate_alpha_beta(f_obs, f_c, d, np.ones(m), centric, free)
    assert ab.from_free.all()
    assert np.allclose(ab.alpha_bins, 0.8, atol=0.05)
    assert np.allclose(ab.beta_bins, 300.0, rtol=0.15)


def test_work_set_used_when_free_set_is_small():
    rng = np.random.default_rng(6)
    m = 600
    centric = np.zeros(m, dtype=bool)
    f_obs, f_c = _simulate_sigma_a(rng, m, 0.9, 200.0, centric)
    free = np.zeros(m, dtype=bool)
    free[:20] = True
    ab = estimate_alpha_beta(f_obs, f_c, np.linspace(2, 8, m), np.ones(m), centric, free)
    assert not ab.from_free.any()
    assert ab.alpha_bins[0] == pytest.approx(0.9, abs=0.05)


@pytest.mark.parametrize("centric", [False, True])
def test_figure_of_merit_is_the_mean_cosine_of_the_phase_error(centric):
    """m = ∫ cos φ P(φ) dφ with P(φ) ∝ exp(X cos φ) (acentric, φ on the circle)
    or the two-point distribution on 0, π (centric)."""
    f_obs, f_c, alpha, beta = np.array([40.0]), np.array([35.0 + 0j]), np.array([0.9]), np.array([400.0])
    m = figure_of_merit(f_obs, f_c, alpha, beta, np.ones(1), np.array([centric]))[0]
    x = 2 * 0.9 * 40 * 35 / 400.0
    if centric:
        expected = (np.exp(x / 2) - np.exp(-x / 2)) / (np.exp(x / 2) + np.exp(-x / 2))
    else:
        num = integrate.quad(lambda p: np.cos(p) * np.exp(x * np.cos(p)), 0, 2 * np.pi)[0]
        den = integrate.quad(lambda p: np.exp(x * np.cos(p)), 0, 2 * np.pi)[0]
        expected = num / den
    assert m == pytest.approx(expected, rel=1e-10)


def test_outlier_tail_probabilities_are_calibrated():
    """Under the model, min(cdf, sf) < 0.05 for about 10 % of reflections."""
    rng = np.random.default_rng(8)
    m = 40000
    centric = rng.uniform(size=m) < 0.3
    f_obs, f_c = _simulate_sigma_a(rng, m, 0.85, 250.0, centric)
    p = outlier_probabilities(f_obs, f_c, np.full(m, 0.85), np.full(m, 250.0), np.ones(m), centric)
    for sel in (centric, ~centric):
        assert np.mean(p[sel] < 0.05) == pytest.approx(0.10, abs=0.01)
    f_obs[:10] *= 8.0
    p = outlier_probabilities(f_obs, f_c, np.full(m, 0.85), np.full(m, 250.0), np.ones(m), centric)
    assert np.all(p[:10][np.abs(f_c[:10]) > 20] < 1e-6)
