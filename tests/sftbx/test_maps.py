"""Fourier synthesis against a plain NumPy sum, symmetry of the map on its
grid, peaks at the atoms, a difference map that finds a missing atom, and
bad input."""

import numpy as np
import pytest

import sftbx
import sgtbx
from sftbx.maps import (Peak, difference_map, fourier_synthesis, grid_size, move_near_atoms,
                        q_peak_lines)


def _structure(symbol, cell, sites, elements):
    uc = sgtbx.UnitCell(*cell)
    sg = sgtbx.SpaceGroup(symbol)
    n = len(sites)
    sc = sftbx.Scatterers(elements, np.array(sites), np.ones(n), np.full(n, 0.02))
    hkl = sgtbx.complete_set(uc, sg, 0.8)
    hkl = hkl[np.abs(hkl).sum(axis=1) > 0]
    return uc, sg, sc, hkl


SITES = [[0.11, 0.23, 0.37], [0.31, 0.12, 0.08], [0.42, 0.36, 0.21]]


@pytest.mark.parametrize("symbol, cell", [
    ("P 1 21/c 1", (7.0, 8.0, 9.0, 90, 103, 90)),
    ("P 21 21 21", (7.0, 8.0, 9.0, 90, 90, 90)),
    ("C 1 2/c 1", (12.0, 8.0, 9.0, 90, 110, 90)),
    ("P 43 21 2", (8.0, 8.0, 11.0, 90, 90, 90)),
    ("R -3", (10.0, 10.0, 12.0, 90, 90, 120)),
])
def test_synthesis_equals_direct_sum_and_has_the_symmetry(symbol, cell):
    uc, sg, sc, hkl = _structure(symbol, cell, SITES, ["S", "O", "C"])
    f = sftbx.structure_factors(uc, sg, sc, hkl)
    fmap = fourier_synthesis(uc, sg, hkl, f, d_min=0.8)
    grid = np.array(fmap.values.shape)
    # direct sum over all h (every symmetry mate and Friedel mate once)
    rot = np.asarray(sg.rotations)
    full = np.unique(np.concatenate([hkl @ r for r in rot] + [-(hkl @ r) for r in rot]), axis=0)
    f_full = sftbx.structure_factors(uc, sg, sc, full)
    rng = np.random.default_rng(0)
    for n in rng.integers(0, grid, (5, 3)):
        x = n / grid
        rho = (f_full * np.exp(-2j * np.pi * full @ x)).sum().real / uc.volume
        assert fmap.values[tuple(n)] == pytest.approx(rho, abs=1e-9 * np.abs(fmap.values).max())
    # every operation maps grid points onto grid points with equal values
    for r, t in zip(rot, np.asarray(sg.translations)):
        for n in rng.integers(0, grid, (5, 3)):
            image = (r @ n + t * grid).round().astype(int) % grid
            assert fmap.values[tuple(image)] == pytest.approx(fmap.values[tuple(n)], abs=1e-9 * np.abs(fmap.values).max())
    # peaks at the atoms, heaviest first
    peaks = fmap.peaks(n_max=3)
    for peak, site in zip(peaks, SITES):
        images = (rot @ np.array(site) + np.asarray(sg.translations)) - peak.site_frac
        images -= np.round(images)
        assert np.sqrt(np.einsum("ki,ij,kj->k", images, uc.metric, images).min()) < 0.05


def test_difference_map_finds_the_missing_atom():
    sites = SITES + [[0.2, 0.4, 0.6]]
    uc, sg, sc, hkl = _structure("P 1 21/c 1", (7.0, 8.0, 9.0, 90, 103, 90), sites, ["S", "O", "C", "N"])
    f_obs = np.abs(sftbx.structure_factors(uc, sg, sc, hkl))
    partial = sftbx.Scatterers(["S", "O", "C"], np.array(SITES), np.ones(3), np.full(3, 0.02))
    f_calc = sftbx.structure_factors(uc, sg, partial, hkl)
    diff = fourier_synthesis(uc, sg, hkl, (f_obs - np.abs(f_calc)) * np.exp(1j * np.angle(f_calc)))
    # the same map from Fo^2 on another scale
    same = difference_map(uc, sg, hkl, 4.0 * f_obs ** 2, f_calc, scale=4.0)
    np.testing.assert_allclose(same.values, diff.values, atol=1e-12 * np.abs(diff.values).max())
    peaks, holes = diff.peaks(5), diff.holes(5)
    top = peaks[0]
    delta = (np.asarray(sg.rotations) @ np.array(sites[3]) + np.asarray(sg.translations)) - top.site_frac
    delta -= np.round(delta)
    assert np.sqrt(np.einsum("ki,ij,kj->k", delta, uc.metric, delta).min()) < 0.15
    assert top.height > 5 * diff.rms
    assert top.height > abs(holes[0].height) and holes[0].height < 0
    assert all(p.height >= q.height for p, q in zip(peaks, peaks[1:]))
    lines = q_peak_lines(peaks[:2])
    assert lines[0].split()[:2] == ["Q1", "1"]
    assert float(lines[0].split()[-1]) == pytest.approx(top.height, abs=0.006)
    assert [float(v) for v in lines[1].split()[2:5]] == pytest.approx(peaks[1].site_frac, abs=1e-5)
    assert lines[0].split()[5] == "11.00000"
    # a peak on the 2-fold axis of P2 is written with SHELXL's sof 10.5
    axis = Peak(np.array([0.0, 0.37, 0.0]), 1.0)
    on_axis = q_peak_lines([axis], sgtbx.UnitCell(6, 7, 8, 90, 100, 90), sgtbx.SpaceGroup("P 1 2 1"))
    assert on_axis[0].split()[5] == "10.50000"


def test_grid_respects_symmetry_and_resolution():
    uc = sgtbx.UnitCell(10.0, 10.0, 12.0, 90, 90, 120)
    sg = sgtbx.SpaceGroup("R -3")
    grid = grid_size(uc, sg, 0.8)
    assert grid[0] == grid[1] and all(g % 3 == 0 for g in grid)
    assert all(length / g <= 0.8 / 3 for length, g in zip((10.0, 10.0, 12.0), grid))


def test_bad_input():
    uc = sgtbx.UnitCell(7.0, 8.0, 9.0, 90, 103, 90)
    sg = sgtbx.SpaceGroup("P 1 21/c 1")
    hkl = np.array([[1, 0, 0], [9, 0, 0]])
    with pytest.raises(sftbx.ScatteringError, match="too coarse"):
        fourier_synthesis(uc, sg, hkl, np.ones(2), grid=(8, 8, 8))
    with pytest.raises(sftbx.ScatteringError, match="2 finite complex"):
        fourier_synthesis(uc, sg, hkl, np.array([1.0, np.nan]))
    with pytest.raises(sftbx.ScatteringError, match="d_min"):
        grid_size(uc, sg, -1.0)


def test_peaks_move_to_the_image_nearest_an_atom():
    uc = sgtbx.UnitCell(7.0, 8.0, 9.0, 90, 103, 90)
    sg = sgtbx.SpaceGroup("P 1 21/c 1")
    atoms = np.array([[0.1, 0.2, 0.3], [0.6, 0.1, 0.9]])
    near = np.array([0.12, 0.21, 0.33])
    r, t = np.asarray(sg.rotations[1]), np.asarray(sg.translations[1])
    far = (r @ near + t + [1, 0, -1]) % 1.0
    moved, nearest, distance = move_near_atoms([Peak(far, 1.5)], atoms, uc, sg)
    np.testing.assert_allclose(moved[0].site_frac, near, atol=1e-12)
    assert nearest[0] == 0 and moved[0].height == 1.5
    delta = near - atoms[0]
    assert distance[0] == pytest.approx(np.sqrt(delta @ uc.metric @ delta))
