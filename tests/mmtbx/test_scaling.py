"""Bulk solvent and scaling on synthetic F_obs made from real F_calc/F_mask."""

import numpy as np
import pytest

import sgtbx
from mmtbx import FModel, bulk_solvent_and_scale
from mmtbx.scaling import anisotropic_basis, anisotropic_factor, fit_bin, log_bins


@pytest.mark.parametrize("symbol, rank", [("P 1", 6), ("P 1 21 1", 4), ("P 21 21 21", 3),
                                          ("P 43", 2), ("P 32 2 1", 2), ("P 65 2 2", 2),
                                          ("F d -3 m", 1)])
def test_anisotropic_basis_rank_per_crystal_system(symbol, rank):
    sg = sgtbx.SpaceGroup(symbol)
    basis = anisotropic_basis(np.array([r.T for r in sg.rotations]))
    assert basis.shape == (6, rank)


def test_twin_law_reduces_the_anisotropic_freedom():
    """P 1 21 1 with the twin law -h,-k,l (pseudo-orthorhombic β = 90°)
    forbids U13."""
    sg = sgtbx.SpaceGroup("P 1 21 1")
    rots = [r.T for r in sg.rotations]
    twin = np.diag([-1, -1, 1])
    basis = anisotropic_basis(np.array(rots + [twin @ r for r in rots]))
    assert basis.shape == (6, 3)
    assert np.allclose(basis[4], 0.0)


def test_fit_bin_finds_the_least_squares_k_mask():
    """The cubic + grid + golden section against brute force on a fine grid."""
    rng = np.random.default_rng(0)
    n = 300
    fc = rng.normal(0, 50, n) + 1j * rng.normal(0, 50, n)
    fm = rng.normal(0, 40, n) + 1j * rng.normal(0, 40, n)
    f_obs = 1.3 * np.abs(fc + 0.37 * fm) * (1 + 0.05 * rng.standard_normal(n))
    a, b, c = np.abs(fc) ** 2, (fc * np.conj(fm)).real, np.abs(fm) ** 2
    k_mask, k_iso = fit_bin(f_obs, a, b, c)
    grid = np.linspace(0, 1, 20001)
    resid = []
    for k in grid:
        fmod = np.abs(fc + k * fm)
        kk = np.sum(f_obs * fmod) / np.sum(fmod ** 2)
        resid.append(np.sum((f_obs - kk * fmod) ** 2))
    assert k_mask == pytest.approx(grid[int(np.argmin(resid))], abs=2e-4)
    assert k_mask == pytest.approx(0.37, abs=0.03) and k_iso == pytest.approx(1.3, rel=0.02)


def test_log_bins_have_enough_reflections():
    d = 1.0 / np.sqrt(np.random.default_rng(1).uniform(1 / 30 ** 2, 1 / 1.5 ** 2, 5000))
    bins, n = log_bins(d)
    counts = np.bincount(bins)
    assert len(counts) == n and counts.min() >= 50 and n > 5
    # bin 0 is the lowest resolution
    assert d[bins == 0].min() > d[bins == n - 1].max()


def _synthetic(set_5e5z, k_sol=0.35, b_sol=46.0, u_star=None, scale=2.5, b_overall=8.0):
    _, data, f_calc, f_mask = set_5e5z
    s_sq = 1.0 / data.d_spacings ** 2
    u_star = np.zeros(6) if u_star is None else np.asarray(u_star)
    k_total = scale * np.exp(-b_overall * s_sq / 4) * anisotropic_factor(data.hkl, u_star)
    f_obs = k_total * np.abs(f_calc + k_sol * np.exp(-b_sol * s_sq / 4) * f_mask)
    return data, f_calc, f_mask, f_obs, k_total


def test_recovers_a_known_flat_model_and_anisotropy(set_5e5z):
    u_star = np.array([4e-4, -2e-4, 1e-4, 0.0, 5e-5, 0.0])      # allowed in P 1 21 1
    data, f_calc, f_mask, f_obs, k_total = _synthetic(set_5e5z, u_star=u_star)
    fm = FModel(data.hkl, f_obs, np.ones(len(f_obs)), data.free, data.unit_cell,
                data.space_group, f_calc, f_mask, bulk_solvent="flat", remove_outliers=False)
    fm.update_all_scales()
    assert fm.r_work < 1e-3 and fm.r_free < 1e-3
    assert fm.scales.k_sol == pytest.approx(0.35, abs=0.005)
    assert fm.scales.b_sol == pytest.approx(46.0, abs=2.0)
    # the isotropic part lives in k_iso(s), the rest in U*: compare the product
    assert np.allclose(fm.k_total / k_total, 1.0, atol=2e-3)


def test_bin_mode_fits_synthetic_data(set_5e5z):
    data, f_calc, f_mask, f_obs, _ = _synthetic(set_5e5z)
    fm = FModel(data.hkl, f_obs, np.ones(len(f_obs)), data.free, data.unit_cell,
                data.space_group, f_calc, f_mask, remove_outliers=False).update_all_scales()
    assert fm.r_work < 0.02
    assert fm.scales.k_mask_bins[0] == pytest.approx(0.35 * np.exp(-46 / 4 / 18.0), abs=0.1)


def test_twin_fraction_is_refined(set_5e5z):
    """A synthetic twin: P 1 21 1 with β = 101° has no merohedral twin, so
    use the 'twin mates' h,-k,l... of P 1 (all indices are valid) made from
    the same F_calc: τ = 0.3 must come back."""
    data, f_calc, f_mask, _, _ = _synthetic(set_5e5z)
    rng = np.random.default_rng(2)
    perm = rng.permutation(len(f_calc))
    fc2, fm2 = f_calc[perm], f_mask[perm]
    s_sq = 1.0 / data.d_spacings ** 2
    k_mask = 0.3 * np.exp(-40 * s_sq / 4)
    f_obs = 3.0 * np.sqrt(0.7 * np.abs(f_calc + k_mask * f_mask) ** 2
                          + 0.3 * np.abs(fc2 + k_mask * fm2) ** 2)
    work = ~data.free
    rots = np.array([r.T for r in data.space_group.rotations])
    scales = bulk_solvent_and_scale(f_obs, f_calc, f_mask, data.hkl, data.unit_cell, work, rots,
                                    f_calc_twin=fc2, f_mask_twin=fm2)
    assert scales.twin_fraction == pytest.approx(0.3, abs=0.01)


def test_mismatched_arrays_are_an_error(set_5e5z):
    from mmtbx import ScalingError
    _, data, f_calc, f_mask = set_5e5z
    with pytest.raises(ScalingError, match="f_calc has"):
        bulk_solvent_and_scale(data.f_obs, f_calc[:-1], f_mask, data.hkl, data.unit_cell,
                               ~data.free, np.eye(3, dtype=int)[None])
