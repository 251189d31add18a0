"""Every derivative against central finite differences: design rows for
Y = |F|^2 and |F| with and without extinction, and the target gradient, in
each space group of the acceptance list."""

import numpy as np
import pytest

import sftbx
from sftbx.scatterers import SLOTS

from sftbx_testlib import GROUPS, GemmiSymmetry, Cell, random_structure, random_hkl

WAVELENGTH = 0.71073
EXTINCTION_X = 0.02
# Central-difference steps per parameter kind (fractional sites, A^2, ...).
STEPS = {"x": 1e-6, "y": 1e-6, "z": 1e-6, "u_iso": 1e-6, "u11": 1e-8, "u22": 1e-8,
         "u33": 1e-8, "u12": 1e-8, "u13": 1e-8, "u23": 1e-8, "occupancy": 1e-6, "fp": 1e-5,
         "fdp": 1e-5}
BLOCKS = {"site": ("x", "y", "z"), "u_iso": ("u_iso",),
          "u_star": ("u11", "u22", "u33", "u12", "u13", "u23"), "occupancy": ("occupancy",),
          "fp": ("fp",), "fdp": ("fdp",)}


def _setup(key, n_atoms=7, n_hkl=120, seed=31):
    name, cell_parameters = GROUPS[key]
    group, cell = GemmiSymmetry(name), Cell(*cell_parameters)
    scat, mult = random_structure(group, cell, n_atoms=n_atoms, seed=seed)
    scat.fdp[:] = np.linspace(0.3, 1.5, len(scat))
    hkl = random_hkl(cell, d_min=0.8, n=n_hkl, seed=seed)
    sf = sftbx.StructureFactors(cell, group, scat, hkl, multiplicities=mult)
    pm = sftbx.ParameterMap.for_scatterers(scat, occupancy=True, fp=True, fdp=True,
                                           extinction=True)
    return sf, pm


def _parameter(scat, atom, slot):
    """(array, index) holding one parameter of one atom."""
    name = SLOTS[slot]
    if slot < 3:
        return scat.sites_frac, (atom, slot)
    if name == "u_iso":
        return scat.u_iso, atom
    if slot < 10:
        return scat.u_star, (atom, slot - 4)
    return {"occupancy": scat.occupancies, "fp": scat.fp, "fdp": scat.fdp}[name], atom


def _finite_difference_f(sf, pm):
    """dF/dp for every column of the map (extinction excluded): (n_params, m)."""
    out = np.zeros((pm.n_params, len(sf.hkl)), complex)
    for atom, slot in zip(*np.nonzero(pm.columns >= 0)):
        arr, index = _parameter(sf.scatterers, atom, slot)
        h = STEPS[SLOTS[slot]]
        keep = arr[index]
        arr[index] = keep + h
        f_plus = sf.f_calc()
        arr[index] = keep - h
        f_minus = sf.f_calc()
        arr[index] = keep
        out[pm.columns[atom, slot]] += (f_plus - f_minus) / (2 * h)
    return out


def _block_columns(pm):
    blocks = {}
    for name, slots in BLOCKS.items():
        cols = pm.columns[:, [SLOTS.index(s) for s in slots]].ravel()
        cols = cols[cols >= 0]
        if len(cols):
            blocks[name] = cols
    return blocks


def _assert_blocks(analytic, numeric, blocks, tol=1e-6):
    """Norm-wise relative error per parameter block (columns)."""
    for name, cols in blocks.items():
        ref = np.linalg.norm(numeric[:, cols])
        assert ref > 0, name
        err = np.linalg.norm(analytic[:, cols] - numeric[:, cols]) / ref
        assert err <= tol, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("key", list(GROUPS))
def test_design_rows_against_finite_differences(key):
    sf, pm = _setup(key)
    extinction = sftbx.ShelxExtinction(EXTINCTION_X, WAVELENGTH)
    eps = extinction.eps(sf.s_sq())
    f = sf.f_calc()
    df = _finite_difference_f(sf, pm)
    blocks = _block_columns(pm)
    for kind in ("fc_sq", "fc"):
        for ext in (None, extinction):
            y_ref, dy_da, dy_db, dy_dx = sftbx.y_calc(
                f, kind, None if ext is None else eps, EXTINCTION_X)
            # the chain dY/dp = dY/dA dA/dp + dY/dB dB/dp, dA/dp from finite differences
            numeric = (dy_da * df.real + dy_db * df.imag).T
            if ext is not None:
                h = 1e-6
                y_plus = sftbx.y_calc(f, kind, eps, EXTINCTION_X + h)[0]
                y_minus = sftbx.y_calc(f, kind, eps, EXTINCTION_X - h)[0]
                numeric[:, pm.extinction_column] = (y_plus - y_minus) / (2 * h)
                blocks["extinction"] = np.array([pm.extinction_column])
                map_ = pm
            else:
                blocks.pop("extinction", None)
                map_ = sftbx.ParameterMap(pm.columns, pm.n_params)
            y, rows = sf.design_rows(map_, kind=kind, extinction=ext)
            # (absent reflections are zero only to rounding: atol)
            assert np.allclose(y, y_ref, rtol=1e-12, atol=1e-13 * y_ref.max())
            if ext is not None:  # extinction actually matters in this test
                plain = sftbx.y_calc(f, kind)[0]
                assert np.abs(y[plain > 0] / plain[plain > 0] - 1).max() > 0.01
            _assert_blocks(rows, numeric, blocks)


@pytest.mark.parametrize("key", ["P1", "P-1", "C2/c", "P212121", "I41/amd", "Fd-3m:1"])
def test_design_rows_of_the_intensity_by_direct_differences(key):
    """dY/dp with Y = |F|^2 differenced directly (no chain rule in the test)."""
    sf, pm = _setup(key, n_atoms=4, n_hkl=60, seed=3)
    pm = sftbx.ParameterMap(pm.columns, pm.n_params)
    y, rows = sf.design_rows(pm, kind="fc_sq")
    numeric = np.zeros_like(rows)
    for atom, slot in zip(*np.nonzero(pm.columns >= 0)):
        arr, index = _parameter(sf.scatterers, atom, slot)
        h = STEPS[SLOTS[slot]]
        keep = arr[index]
        arr[index] = keep + h
        y_plus = sf.intensities()
        arr[index] = keep - h
        y_minus = sf.intensities()
        arr[index] = keep
        numeric[:, pm.columns[atom, slot]] = (y_plus - y_minus) / (2 * h)
    _assert_blocks(rows, numeric, _block_columns(pm))


def test_design_rows_at_adps_that_are_not_positive_definite():
    """The derivatives do not depend on U being positive definite: atoms
    with U* - 0.02 G* (U_cif eigenvalues from 0.012 A^2 lowered by 0.02)
    and a negative u_iso."""
    sf, pm = _setup("P21/c", n_atoms=6, seed=5)
    scat = sf.scatterers
    g = sf.unit_cell.reciprocal_metric
    aniso = np.flatnonzero(scat.aniso)
    scat.u_star[aniso] -= 0.02 * g[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]
    scat.u_iso[~scat.aniso] = -0.004
    assert scat.non_positive_definite().all()
    pm = sftbx.ParameterMap(pm.columns, pm.n_params)
    _, dy_da, dy_db, _ = sftbx.y_calc(sf.f_calc(), "fc_sq")
    df = _finite_difference_f(sf, pm)
    numeric = (dy_da * df.real + dy_db * df.imag).T
    _, rows = sf.design_rows(pm, kind="fc_sq")
    _assert_blocks(rows, numeric, _block_columns(pm))


@pytest.mark.parametrize("key", list(GROUPS))
def test_gradients_of_a_least_squares_target(key):
    """T = sum w (y_o - Y)^2, Y extinction-corrected |F|^2 or |F|; the
    gradient from (dT/dA, dT/dB) against finite differences of T."""
    sf, pm = _setup(key, n_atoms=5, n_hkl=90, seed=17)
    extinction = sftbx.ShelxExtinction(EXTINCTION_X, WAVELENGTH)
    eps = extinction.eps(sf.s_sq())
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 2.0, len(sf.hkl))
    for kind in ("fc_sq", "fc"):
        y0 = sftbx.y_calc(sf.f_calc(), kind, eps, EXTINCTION_X)[0]
        y_obs = y0 * rng.uniform(0.8, 1.2, len(y0))

        def target(x=EXTINCTION_X):
            return (w * (y_obs - sftbx.y_calc(sf.f_calc(), kind, eps, x)[0])**2).sum()

        y, dy_da, dy_db, dy_dx = sftbx.y_calc(sf.f_calc(), kind, eps, EXTINCTION_X)
        d_t = -2 * w * (y_obs - y)
        grad = sf.gradients(d_t * dy_da, d_t * dy_db, pm)
        assert grad[pm.extinction_column] == 0.0
        grad[pm.extinction_column] = (d_t * dy_dx).sum()
        numeric = np.zeros(pm.n_params)
        for atom, slot in zip(*np.nonzero(pm.columns >= 0)):
            arr, index = _parameter(sf.scatterers, atom, slot)
            h = STEPS[SLOTS[slot]]
            keep = arr[index]
            arr[index] = keep + h
            t_plus = target()
            arr[index] = keep - h
            t_minus = target()
            arr[index] = keep
            numeric[pm.columns[atom, slot]] = (t_plus - t_minus) / (2 * h)
        h = 1e-6
        numeric[pm.extinction_column] = (target(EXTINCTION_X + h)
                                         - target(EXTINCTION_X - h)) / (2 * h)
        blocks = _block_columns(pm)
        blocks["extinction"] = np.array([pm.extinction_column])
        _assert_blocks(grad[None, :], numeric[None, :], blocks)


def test_shared_columns_add_up():
    """Two atoms sharing a u_iso column (as a constraint would) get the sum."""
    sf, pm = _setup("P21/c", n_atoms=4, seed=2)
    scat = sf.scatterers
    scat.aniso[:] = False
    cols = np.full((len(scat), len(SLOTS)), -1)
    cols[:, SLOTS.index("u_iso")] = [0, 0, 1, 1]
    shared = sftbx.ParameterMap(cols, 2)
    own = sftbx.ParameterMap.for_scatterers(scat, sites=False)
    _, rows_shared = sf.design_rows(shared)
    _, rows_own = sf.design_rows(own)
    assert np.allclose(rows_shared[:, 0], rows_own[:, 0] + rows_own[:, 1], rtol=1e-13, atol=0)
    assert np.allclose(rows_shared[:, 1], rows_own[:, 2] + rows_own[:, 3], rtol=1e-13, atol=0)
    assert own.names(scat.labels)[0].endswith(".u_iso")


def test_design_rows_in_blocks_fill_the_callers_array():
    sf, pm = _setup("C2/c", n_atoms=5, n_hkl=200, seed=4)
    pm = sftbx.ParameterMap(pm.columns, pm.n_params)
    y_all, rows_all = sf.design_rows(pm, kind="fc")
    rows = np.full((70, pm.n_params), np.nan)
    y = np.full(70, np.nan)
    for start in range(0, 200, 70):
        stop = min(start + 70, 200)
        sf.design_rows(pm, start, stop, kind="fc", rows=rows[:stop - start], y=y[:stop - start])
        assert np.array_equal(rows[:stop - start], rows_all[start:stop])
        assert np.array_equal(y[:stop - start], y_all[start:stop])


def test_columns_of_slots_that_do_not_apply_are_zero():
    """A u_iso column for an anisotropic atom (or U* for an isotropic one)
    gets no derivative: the row is zeroed, not left as it was."""
    sf, pm = _setup("P-1", n_atoms=4, seed=5)
    scat = sf.scatterers
    cols = sftbx.ParameterMap.for_scatterers(scat, sites=False).columns.copy()
    n = int(cols.max()) + 1
    i_aniso = int(np.flatnonzero(scat.aniso)[0])
    cols[i_aniso, SLOTS.index("u_iso")] = n
    pm = sftbx.ParameterMap(cols, n + 1)
    assert not pm.is_one_to_one(scat.aniso, False)
    rows = np.full((len(sf.hkl), n + 1), np.nan)
    sf.design_rows(pm, rows=rows)
    assert (rows[:, n] == 0).all() and np.isfinite(rows).all()
    assert sftbx.ParameterMap.for_scatterers(scat).is_one_to_one(scat.aniso, False)


def test_extinction_correction_of_a_twin_sum():
    """The EXTI helper on a given Fc^2 (a twin-weighted sum): derivatives
    against central differences."""
    rng = np.random.default_rng(3)
    fc_sq = rng.uniform(10, 5000, 50)
    eps = rng.uniform(1e-4, 1e-3, 50)
    y, dy_dfc, dy_dx = sftbx.extinction_correction(fc_sq, eps, 0.05)
    h = 1e-3
    num_fc = (sftbx.extinction_correction(fc_sq + h, eps, 0.05)[0]
              - sftbx.extinction_correction(fc_sq - h, eps, 0.05)[0]) / (2 * h)
    num_x = (sftbx.extinction_correction(fc_sq, eps, 0.05 + 1e-6)[0]
             - sftbx.extinction_correction(fc_sq, eps, 0.05 - 1e-6)[0]) / 2e-6
    assert np.abs(dy_dfc - num_fc).max() <= 1e-7 * np.abs(num_fc).max()
    assert np.abs(dy_dx - num_x).max() <= 1e-7 * np.abs(num_x).max()
    assert np.allclose(y, fc_sq * (1 + 0.05 * eps * fc_sq) ** -0.5, rtol=1e-15)
