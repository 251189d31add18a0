"""Structure-factor values: gemmi's calculators, a plain NumPy sum over all
operations, the centric and centring shortcuts, F(000), Friedel pairs."""

import gemmi
import numpy as np
import pytest
import scipy.linalg

import sftbx
import sgtbx
from sftbx import _direct
from sftbx.scattering import form_factor_table

from sftbx_testlib import GROUPS, GemmiSymmetry, Cell, random_structure, random_hkl, \
    gemmi_small_structure, special_sites


def numpy_f_calc(group, cell, scat, mult, hkl, table="it92"):
    """F(h) summed over every operation of the group, in NumPy."""
    types, ti = scat.types()
    a, b, c = form_factor_table(types, table)
    s2 = np.einsum("mi,ij,mj->m", hkl, cell.reciprocal_metric, hkl)
    f0 = c[:, None] + (a[:, :, None] * np.exp(-b[:, :, None] * s2 / 4)).sum(1)
    out = np.zeros(len(hkl), complex)
    for i in range(len(scat)):
        f = f0[ti[i]] + scat.fp[i] + 1j * scat.fdp[i]
        w = scat.occupancies[i] * mult[i] / group.order_z
        u = scat.u_star[i]
        u_mat = np.array([[u[0], u[3], u[4]], [u[3], u[1], u[5]], [u[4], u[5], u[2]]])
        for r, t in zip(*group.all_operations()):
            hr = hkl @ r
            if scat.aniso[i]:
                dw = np.exp(-2 * np.pi**2 * np.einsum("mi,ij,mj->m", hr, u_mat, hr))
            else:
                dw = np.exp(-2 * np.pi**2 * scat.u_iso[i] * s2)
            out += w * f * dw * np.exp(2j * np.pi * (hr @ scat.sites_frac[i] + hkl @ t))
    return out


def gemmi_f_calc(group, cell, scat, mult, hkl, calculator=gemmi.StructureFactorCalculatorX):
    small = gemmi_small_structure(group, cell, scat, mult)
    calc = calculator(small.cell)
    return np.array([calc.calculate_sf_from_small_structure(small, [int(x) for x in h])
                     for h in hkl])


def rel(a, b):
    return np.abs(a - b).sum() / np.abs(b).sum()


@pytest.mark.parametrize("aniso", [False, True], ids=["iso", "aniso"])
@pytest.mark.parametrize("key", list(GROUPS))
def test_against_gemmi(key, aniso):
    """Through the public face with sgtbx objects: multiplicities from
    sgtbx's site symmetry, operations from sgtbx.SpaceGroup."""
    name, cell_parameters = GROUPS[key]
    group, cell = GemmiSymmetry(name), Cell(*cell_parameters)
    scat, mult = random_structure(group, cell, n_atoms=7, aniso=aniso, seed=11)
    scat.fp[:] = 0.0          # gemmi's SmallStructure sites carry no f'
    assert not special_sites(group) or (mult < group.order_z).any()
    hkl = random_hkl(cell, d_min=0.8, n=250, seed=2)
    f = sftbx.structure_factors(sgtbx.UnitCell(*cell_parameters), sgtbx.SpaceGroup(name), scat,
                                hkl)
    assert rel(f, gemmi_f_calc(group, cell, scat, mult, hkl)) <= 1e-5
    # the same from the plain arrays of gemmi's operations and our multiplicities
    f_arrays = sftbx.structure_factors(cell, group, scat, hkl, multiplicities=mult)
    assert rel(f_arrays, f) <= 1e-13


@pytest.mark.parametrize("table,calculator", [
    ("neutron", gemmi.StructureFactorCalculatorN),
    ("electron", gemmi.StructureFactorCalculatorE)])
@pytest.mark.parametrize("key", ["P21/c", "I41/amd", "Fd-3m:1"])
def test_neutron_and_electron_against_gemmi(key, table, calculator):
    name, cell_parameters = GROUPS[key]
    group, cell = GemmiSymmetry(name), Cell(*cell_parameters)
    scat, mult = random_structure(group, cell, n_atoms=6, seed=5)
    scat.fp[:] = 0.0
    hkl = random_hkl(cell, d_min=0.9, n=150, seed=4)
    f = sftbx.structure_factors(cell, group, scat, hkl, table=table, multiplicities=mult)
    assert rel(f, gemmi_f_calc(group, cell, scat, mult, hkl, calculator)) <= 1e-5


def test_fdp_against_numpy_in_p1():
    group, cell = GemmiSymmetry("P 1"), Cell(*GROUPS["P1"][1])
    scat, mult = random_structure(group, cell, n_atoms=9, seed=3)
    scat.fdp[:] = np.linspace(0.2, 3.0, len(scat))
    hkl = random_hkl(cell, d_min=0.7, n=400, seed=1)
    f = sftbx.structure_factors(cell, group, scat, hkl, multiplicities=mult)
    assert rel(f, numpy_f_calc(group, cell, scat, mult, hkl)) <= 1e-10


@pytest.mark.parametrize("key", list(GROUPS))
def test_against_numpy_with_dispersion(key):
    """f', f'' and all three summation paths against the sum over all
    operations, to rounding."""
    name, cell_parameters = GROUPS[key]
    group, cell = GemmiSymmetry(name), Cell(*cell_parameters)
    scat, mult = random_structure(group, cell, n_atoms=6, seed=8)
    scat.fdp[:] = np.linspace(0.5, 2.0, len(scat))
    hkl = random_hkl(cell, d_min=0.8, n=200, seed=9)
    f = sftbx.structure_factors(cell, group, scat, hkl, multiplicities=mult)
    assert rel(f, numpy_f_calc(group, cell, scat, mult, hkl)) <= 1e-12


@pytest.mark.parametrize("key", ["P1", "P21/c", "P212121", "R-3"])
def test_non_positive_definite_adps_against_numpy(key):
    """U* with a negative eigenvalue and a negative u_iso (NPD, as SHELXL
    refines them): the Debye-Waller factor exceeds 1 for some h, and the
    kernels' sums equal the plain sum over all operations."""
    name, cell_parameters = GROUPS[key]
    group, cell = GemmiSymmetry(name), Cell(*cell_parameters)
    scat, mult = random_structure(group, cell, n_atoms=6, seed=12)
    # U* - c G* keeps the site symmetry; c between the two smallest
    # eigenvalues of U_cart (U* v = lambda G* v) leaves one negative
    g = cell.reciprocal_metric
    u_star = scat.u_star.copy()
    lam = scipy.linalg.eigh(u_star[0][[0, 3, 4, 3, 1, 5, 4, 5, 2]].reshape(3, 3), g,
                            eigvals_only=True)
    u_star[0] -= 0.5 * (lam[0] + lam[1]) * g[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]
    u_iso = scat.u_iso.copy()
    u_iso[2] = -0.005
    assert scat.aniso[0] and not scat.aniso[2]
    with pytest.warns(sftbx.NonPositiveDefiniteWarning) as record:
        npd = sftbx.Scatterers(scat.elements, scat.sites_frac, scat.occupancies, u_iso,
                               u_star=u_star, aniso=scat.aniso, fp=scat.fp, labels=scat.labels)
    assert sorted(w.message.index for w in record) == [0, 2]
    hkl = random_hkl(cell, d_min=0.8, n=200, seed=9)
    u = u_star[0][[0, 3, 4, 3, 1, 5, 4, 5, 2]].reshape(3, 3)
    exponent = -2 * np.pi**2 * np.einsum("mi,ij,mj->m", hkl, u, hkl)
    assert exponent.max() > 0 > exponent.min()      # mixed: some h grow, some decay
    f = sftbx.structure_factors(cell, group, npd, hkl, multiplicities=mult)
    assert rel(f, numpy_f_calc(group, cell, npd, mult, hkl)) <= 1e-12


def _kernel_args(group, cell, scat, mult, hkl, general):
    """Arguments of the compiled kernels; ``general`` turns a centric group
    into the non-centric path over all primitive operations."""
    types, ti = scat.types()
    a, b, c = form_factor_table(types)
    rot, tr = group.primitive_rotations, group.primitive_translations
    centric, t_inv = group.is_centric, group.inversion_translation
    if general and centric:
        rot = np.concatenate([rot, -rot]).astype(np.int32)
        tr = np.concatenate([tr, -tr + t_inv])
        centric, t_inv = False, None
    return (hkl, rot, tr, group.centring_vectors, centric, t_inv, cell.reciprocal_metric, ti,
            a, b, c, scat.sites_frac, scat.u_iso, scat.u_star, scat.aniso, scat.occupancies,
            mult / group.order_z, scat.fp, scat.fdp)


@pytest.mark.parametrize("key", ["P-1", "C2/c", "I41/amd", "Fd-3m:1", "Fd-3m:2", "R-3"])
def test_centric_paths_equal_general_path(key):
    name, cell_parameters = GROUPS[key]
    group, cell = GemmiSymmetry(name), Cell(*cell_parameters)
    scat, mult = random_structure(group, cell, n_atoms=6, seed=21)
    scat.fdp[:] = 0.7
    hkl = random_hkl(cell, d_min=0.8, n=300, seed=3)
    centric = _kernel_args(group, cell, scat, mult, hkl, general=False)
    general = _kernel_args(group, cell, scat, mult, hkl, general=True)
    f_c = _direct.f_calc(*centric)
    f_g = _direct.f_calc(*general)
    assert np.abs(f_c - f_g).max() <= 1e-12 * np.abs(f_g).max()
    columns = sftbx.ParameterMap.for_scatterers(scat, occupancy=True, fp=True, fdp=True)
    for kind in (_direct.KIND_FC_SQ, _direct.KIND_FC):
        out = []
        for args in (centric, general):
            rows = np.empty((len(hkl), columns.n_params))
            y = np.empty(len(hkl))
            _direct.design_rows(*args, columns.columns, kind, rows, y)
            out.append((y, rows))
        assert np.abs(out[0][0] - out[1][0]).max() <= 1e-12 * np.abs(out[1][0]).max()
        assert np.abs(out[0][1] - out[1][1]).max() <= 1e-11 * np.abs(out[1][1]).max()


@pytest.mark.parametrize("key,condition", [
    ("C2/c", lambda h: (h[:, 0] + h[:, 1]) % 2 == 0),
    ("I41/amd", lambda h: h.sum(axis=1) % 2 == 0),
    ("Fm-3m", lambda h: ((h[:, 0] + h[:, 1]) % 2 == 0) & ((h[:, 1] + h[:, 2]) % 2 == 0)),
    ("R-3", lambda h: (-h[:, 0] + h[:, 1] + h[:, 2]) % 3 == 0),
])
def test_centring_factor_is_evaluated(key, condition):
    """Indices that break the centring condition (as twin-related indices
    may) give exactly zero; the others the full sum."""
    name, cell_parameters = GROUPS[key]
    group, cell = GemmiSymmetry(name), Cell(*cell_parameters)
    scat, mult = random_structure(group, cell, n_atoms=5, seed=2)
    scat.fdp[:] = 0.4
    hkl = random_hkl(cell, d_min=1.0, seed=0)
    f = sftbx.structure_factors(cell, group, scat, hkl, multiplicities=mult)
    allowed = condition(hkl)
    assert (~allowed).sum() > 10 and allowed.sum() > 10
    assert (f[~allowed] == 0).all()
    assert (np.abs(f[allowed]) > 1e-3).sum() > 10
    assert rel(f, numpy_f_calc(group, cell, scat, mult, hkl)) <= 1e-12


def test_f000_is_the_scattering_power_of_the_cell():
    name, cell_parameters = GROUPS["C2/c"]
    group, cell = GemmiSymmetry(name), Cell(*cell_parameters)
    scat, mult = random_structure(group, cell, n_atoms=6, seed=4)
    scat.fdp[:] = 0.3
    f = sftbx.structure_factors(cell, group, scat, [[0, 0, 0]], multiplicities=mult)
    types, ti = scat.types()
    a, b, c = form_factor_table(types)
    f0 = a.sum(1) + c
    expected = (scat.occupancies * mult * (f0[ti] + scat.fp + 1j * scat.fdp)).sum()
    assert abs(f[0] - expected) <= 1e-12 * abs(expected)


def test_friedel_pairs_and_anomalous_differences():
    name, cell_parameters = GROUPS["P212121"]
    group, cell = GemmiSymmetry(name), Cell(*cell_parameters)
    scat, mult = random_structure(group, cell, n_atoms=6, seed=6)
    hkl = random_hkl(cell, d_min=1.0, n=100, seed=6)
    sf = sftbx.StructureFactors(cell, group, scat, hkl, multiplicities=mult)
    f, f_minus = sf.f_calc(), sf.f_calc_friedel()
    assert np.abs(f_minus - np.conj(f)).max() <= 1e-12 * np.abs(f).max()
    assert np.abs(sf.anomalous_differences()).max() <= 1e-11 * np.abs(f).max()
    scat.fdp[:] = 2.0
    f, f_minus = sf.f_calc(), sf.f_calc_friedel()
    assert rel(f_minus, numpy_f_calc(group, cell, scat, mult, -hkl)) <= 1e-12
    diff = sf.anomalous_differences()
    assert np.abs(diff - (np.abs(f) - np.abs(f_minus))).max() == 0
    assert np.abs(diff).max() > 0.1
    assert np.allclose(sf.amplitudes(), np.abs(f), rtol=0, atol=0)
    assert np.allclose(sf.intensities(), np.abs(f)**2, rtol=1e-14)
    assert np.allclose(sf.phases(), np.degrees(np.angle(f)), rtol=0, atol=1e-12)


def test_thread_count_does_not_change_results():
    name, cell_parameters = GROUPS["P21/c"]
    group, cell = GemmiSymmetry(name), Cell(*cell_parameters)
    scat, mult = random_structure(group, cell, n_atoms=8, seed=12)
    hkl = random_hkl(cell, d_min=0.8, n=700, seed=12)
    pm = None  # the default map: sites, ADPs, occupancies
    results = []
    for n_threads in (1, 2, 3):
        sf = sftbx.StructureFactors(cell, group, scat, hkl, multiplicities=mult,
                                    n_threads=n_threads)
        y, rows = sf.design_rows(pm, kind="fc")
        g = sf.gradients(np.linspace(-1, 1, len(hkl)), np.linspace(2, -1, len(hkl)), pm)
        results.append((sf.f_calc(), y, rows, g))
    for other in results[1:]:
        assert np.array_equal(other[0], results[0][0])
        assert np.array_equal(other[1], results[0][1])
        assert np.array_equal(other[2], results[0][2])
        assert np.allclose(other[3], results[0][3], rtol=1e-13, atol=1e-13 * np.abs(
            results[0][3]).max())


def test_ions_and_dispersion_from_gemmi():
    a, b, c = form_factor_table(["Fe3+", "Fe+3", "O2-", "Cl-", "Fe"])
    fe3 = gemmi.IT92_get_exact  # the table must give gemmi's ion coefficients
    gemmi.IT92_set_ignore_charge(False)
    try:
        ref = fe3(gemmi.Element("Fe"), 3)
        assert np.allclose(a[0], ref.a) and np.allclose(b[0], ref.b) and np.isclose(c[0], ref.c)
    finally:
        gemmi.IT92_set_ignore_charge(True)
    assert np.array_equal(a[0], a[1]) and not np.array_equal(a[0], a[4])
    assert np.isclose(c[3], -16.378)
    fp, fdp = sftbx.cromer_liberman(["Fe", "Cu"], 1.5406)
    energy = 12398.419843320026 / 1.5406
    assert (fp[0], fdp[0]) == gemmi.cromer_liberman(z=26, energy=energy)
    assert (fp[1], fdp[1]) == gemmi.cromer_liberman(z=29, energy=energy)
    scat = sftbx.Scatterers(["Fe3+", "Cu", "C"], np.zeros((3, 3)), np.ones(3), np.full(3, 0.02))
    scat.set_anomalous_from_wavelength(1.5406)
    assert scat.fp[0] == fp[0] and scat.fdp[1] == fdp[1] and 0 < scat.fdp[2] < 0.1
    with pytest.raises(sftbx.ScatteringError, match="wavelength"):
        scat.set_anomalous_from_wavelength(0.0)
