"""French–Wilson against direct quadrature of the posterior in J."""

import numpy as np
import pytest
from scipy import integrate

from mmtbx.french_wilson import _posterior


def _direct(i_obs, sigma, wilson, centric):
    """E[√J] and sd(√J) with J ≥ 0, Wilson prior (mean Σ = wilson), I ~ N(J, σ²),
    integrated in J by scipy.integrate.quad."""
    if centric:
        prior = lambda j: np.exp(-j / (2 * wilson)) / np.sqrt(j)
    else:
        prior = lambda j: np.exp(-j / wilson)
    like = lambda j: np.exp(-0.5 * ((i_obs - j) / sigma) ** 2)
    top = max(i_obs, 0) + 12 * sigma
    pts = [max(i_obs, 0)]
    z = integrate.quad(lambda j: prior(j) * like(j), 0, top, points=pts, limit=200)[0]
    m1 = integrate.quad(lambda j: np.sqrt(j) * prior(j) * like(j), 0, top, points=pts, limit=200)[0] / z
    m2 = integrate.quad(lambda j: j * prior(j) * like(j), 0, top, points=pts, limit=200)[0] / z
    return m1, np.sqrt(m2 - m1 ** 2)


@pytest.mark.parametrize("centric", [False, True])
@pytest.mark.parametrize("i_obs", [-20.0, -5.0, 0.0, 3.0, 15.0, 60.0, 400.0])
def test_posterior_moments_match_quadrature(centric, i_obs):
    sigma, wilson = 10.0, 50.0
    h = (i_obs - sigma ** 2 / ((2 if centric else 1) * wilson)) / sigma
    ex, sd = _posterior(np.array([h]), np.array([centric]))
    f, sigma_f = np.sqrt(sigma) * ex[0], np.sqrt(sigma) * sd[0]
    f_ref, sigma_f_ref = _direct(i_obs, sigma, wilson, centric)
    assert f == pytest.approx(f_ref, rel=2e-3)
    assert sigma_f == pytest.approx(sigma_f_ref, rel=1e-2)


def test_strong_reflections_tend_to_root_i():
    h = np.array([1000.0])
    ex, sd = _posterior(h, np.array([False]))
    assert ex[0] == pytest.approx(np.sqrt(1000.0), rel=1e-6)
    assert sd[0] == pytest.approx(0.5 / np.sqrt(1000.0), rel=1e-6)


def test_rejects_very_negative_intensities():
    import sgtbx
    from mmtbx import french_wilson
    cell = sgtbx.UnitCell(30, 40, 50, 90, 90, 90)
    sg = sgtbx.SpaceGroup("P 21 21 21")
    hkl = sgtbx.complete_set(cell, sg, 3.0)
    rng = np.random.default_rng(3)
    i_obs = rng.exponential(100.0, len(hkl))
    i_obs[0] = -500.0
    res = french_wilson(cell, sg, hkl, i_obs, np.full(len(hkl), 10.0))
    assert not res.accepted[0] and res.accepted[1:].all()
    assert np.isnan(res.f[0]) and np.all(res.f[1:] > 0)
