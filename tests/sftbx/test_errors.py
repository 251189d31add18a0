"""Bad input gives a ScatteringError naming the item, never a deep traceback,
a hang or a silent wrong answer."""

import numpy as np
import pytest

import sftbx
from sftbx import ScatteringError

from sftbx_testlib import GROUPS, GemmiSymmetry, Cell


def _atoms(**changes):
    args = dict(elements=["C", "O", "Fe"], sites_frac=[[0.1, 0.2, 0.3], [0.4, 0.1, 0.7],
                                                        [0.3, 0.3, 0.9]],
                occupancies=[1.0, 1.0, 0.5], u_iso=[0.02, 0.03, 0.01],
                u_star=[[0.001, 0.001, 0.001, 0, 0, 0]] * 3, aniso=[False, True, False],
                labels=["C1", "O1", "Fe1"])
    args.update(changes)
    return args


def _structure():
    name, cell_parameters = GROUPS["P21/c"]
    return GemmiSymmetry(name), Cell(*cell_parameters)


def test_error_is_a_value_error():
    assert issubclass(ScatteringError, ValueError)


@pytest.mark.parametrize("changes,message", [
    (dict(sites_frac=[[0.1, 0.2, 0.3], [0.4, np.nan, 0.7], [0.3, 0.3, 0.9]]), "'O1'.*site"),
    (dict(sites_frac=[[0.1, 0.2, np.inf], [0.4, 0.1, 0.7], [0.3, 0.3, 0.9]]), "'C1'.*site"),
    (dict(u_iso=[0.02, 0.03, np.nan]), "'Fe1'.*u_iso"),
    (dict(u_star=[[0.001] * 6, [0.001, 0.001, np.inf, 0, 0, 0], [0.001] * 6]), "'O1'.*not finite"),
    (dict(occupancies=[1.0, np.nan, 1.0]), "'O1'.*occupancy"),
    (dict(sites_frac=[[0.1, 0.2, 0.3], [0.4, 0.1, 0.7]]), "sites_frac.*shape"),
    (dict(occupancies=[1.0, 1.0]), "occupancies.*shape"),
    (dict(u_star=[[0.001] * 6] * 2), "u_star.*shape"),
    (dict(aniso=[True, False]), "aniso"),
    (dict(labels=["a"]), "labels"),
    (dict(fp=[0.1, 0.2, 0.3, 0.4]), "fp.*shape"),
    (dict(sites_frac="abc"), "sites_frac"),
])
def test_bad_scatterers(changes, message):
    with pytest.raises(ScatteringError, match=message):
        sftbx.Scatterers(**_atoms(**changes))


def test_values_changed_in_place_are_checked_again():
    group, cell = _structure()
    scat = sftbx.Scatterers(**_atoms())
    sf = sftbx.StructureFactors(cell, group, scat, [[1, 2, 3]], multiplicities=[4, 4, 4])
    scat.u_star[1] = [0.001, 0.001, np.nan, 0.0, 0, 0]
    with pytest.raises(ScatteringError, match="'O1'.*u_star is not finite"):
        sf.f_calc()


def test_adps_that_are_not_positive_definite_warn_and_are_used():
    """SHELXL refines atoms whose U is not positive definite (NPD), flagging
    them; sftbx warns once per such atom, naming it, and computes with it
    (tests/sftbx/test_values.py checks the values)."""
    with pytest.warns(sftbx.NonPositiveDefiniteWarning) as record:
        scat = sftbx.Scatterers(**_atoms(
            u_iso=[-0.01, 0.03, 0.01],
            u_star=[[0.001] * 6, [0.001, 0.001, 0.001, 0.002, 0, 0], [0.001] * 6]))
    assert [(w.message.atom, w.message.index) for w in record] == [("C1", 0), ("O1", 1)]
    assert "atom 'C1' (C): u_iso = -0.01 is negative (NPD)" in str(record[0].message)
    assert "atom 'O1' (O): u_star (11,22,33,12,13,23)" in str(record[1].message)
    assert "is not positive definite (NPD)" in str(record[1].message)
    assert scat.non_positive_definite().tolist() == [True, True, False]
    group, cell = _structure()
    f = sftbx.structure_factors(cell, group, scat, [[1, 2, 3], [4, 0, 2]],
                                multiplicities=[4, 4, 4])
    assert np.all(np.isfinite(f))


def test_not_positive_definite_against_eigenvalues():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(400, 3, 3))
    mats = a @ a.transpose(0, 2, 1) - rng.uniform(0, 1.5, (400, 1, 1)) * np.eye(3)
    mats[:20] = np.diag([0.3, 0.0, 0.2])       # semi-definite: not positive definite
    mats[20:40] = np.diag([0.3, 0.1, 0.2])
    u = mats[:, [0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]
    expected = np.linalg.eigvalsh(mats)[:, 0] <= 0
    assert 50 < expected.sum() < 350
    np.testing.assert_array_equal(sftbx.not_positive_definite(u), expected)
    u[0, 4] = np.nan                           # not finite: an error elsewhere, not NPD
    assert not sftbx.not_positive_definite(u)[0]


@pytest.mark.parametrize("element,message", [
    ("Xx", "unknown element 'Xx'"), ("Q", "unknown element"), ("C4", "element symbol"),
    ("Fe7+", "no IT92 coefficients"), ("", "element symbol")])
def test_unknown_scattering_types(element, message):
    group, cell = _structure()
    scat = sftbx.Scatterers(**_atoms(elements=["C", element, "O"]))
    with pytest.raises(ScatteringError, match=message):
        sftbx.StructureFactors(cell, group, scat, [[1, 2, 3]], multiplicities=[4, 4, 4])


def test_bad_table_and_ions_in_the_electron_table():
    group, cell = _structure()
    scat = sftbx.Scatterers(**_atoms(elements=["C", "O2-", "Fe"]))
    with pytest.raises(ScatteringError, match="scattering table 'xray'"):
        sftbx.structure_factors(cell, group, scat, [[1, 2, 3]], table="xray",
                                multiplicities=[4, 4, 4])
    with pytest.raises(ScatteringError, match="'O2-'.*neutral atoms only"):
        sftbx.structure_factors(cell, group, scat, [[1, 2, 3]], table="electron",
                                multiplicities=[4, 4, 4])
    # neutron scattering lengths do not depend on the charge
    f_ion = sftbx.structure_factors(cell, group, scat, [[1, 2, 3]], table="neutron",
                                    multiplicities=[4, 4, 4])
    scat_neutral = sftbx.Scatterers(**_atoms(elements=["C", "O", "Fe"]))
    f_neutral = sftbx.structure_factors(cell, group, scat_neutral, [[1, 2, 3]], table="neutron",
                                        multiplicities=[4, 4, 4])
    assert f_ion[0] == f_neutral[0]


@pytest.mark.parametrize("hkl,message", [
    ([[1, 2]], "hkl.*shape"), ([[1.5, 0, 0]], "integers"), ([[np.nan, 0, 0]], "integers"),
    ([[2**22, 0, 0]], "beyond")])
def test_bad_hkl(hkl, message):
    group, cell = _structure()
    scat = sftbx.Scatterers(**_atoms())
    with pytest.raises(ScatteringError, match=message):
        sftbx.structure_factors(cell, group, scat, hkl, multiplicities=[4, 4, 4])


def test_bad_multiplicities_and_threads():
    group, cell = _structure()
    scat = sftbx.Scatterers(**_atoms())
    with pytest.raises(ScatteringError, match="multiplicities"):
        sftbx.structure_factors(cell, group, scat, [[1, 2, 3]], multiplicities=[4, 4])
    with pytest.raises(ScatteringError, match="multiplicities"):
        sftbx.structure_factors(cell, group, scat, [[1, 2, 3]], multiplicities=[4, 0, 4])
    with pytest.raises(ScatteringError, match="n_threads"):
        sftbx.structure_factors(cell, group, scat, [[1, 2, 3]], multiplicities=[4, 4, 4],
                                n_threads=0)


def test_hkl_000_and_extinction():
    """F(000) is computed; its extinction correction is undefined and raises."""
    group, cell = _structure()
    scat = sftbx.Scatterers(**_atoms())
    sf = sftbx.StructureFactors(cell, group, scat, [[0, 0, 0], [1, 2, 3]],
                                multiplicities=[4, 4, 4])
    f = sf.f_calc()
    assert f[0].real > 0 and f[0].imag == 0
    pm = sftbx.ParameterMap.for_scatterers(scat, extinction=True)
    with pytest.raises(ScatteringError, match=r"reflection 0 .*\(0,0,0\)"):
        sf.design_rows(pm, extinction=sftbx.ShelxExtinction(0.01, 0.71))
    with pytest.raises(ScatteringError, match="extinction column but no extinction"):
        sf.design_rows(pm)
    y, rows = sf.design_rows(pm, start=1, extinction=sftbx.ShelxExtinction(0.01, 0.71))
    assert y.shape == (1,) and np.isfinite(rows).all()
    with pytest.raises(ScatteringError, match="beyond the limiting sphere"):
        sf.design_rows(pm, start=1, extinction=sftbx.ShelxExtinction(0.01, 5.0))
    with pytest.raises(ScatteringError, match="wavelength"):
        sf.design_rows(pm, start=1, extinction=sftbx.ShelxExtinction(0.01, -1.0))


def test_bad_design_row_requests():
    group, cell = _structure()
    scat = sftbx.Scatterers(**_atoms())
    sf = sftbx.StructureFactors(cell, group, scat, [[1, 0, 0], [1, 2, 3]],
                                multiplicities=[4, 4, 4])
    pm = sftbx.ParameterMap.for_scatterers(scat)
    with pytest.raises(ScatteringError, match="kind 'f'"):
        sf.design_rows(pm, kind="f")
    with pytest.raises(ScatteringError, match="block 1:3"):
        sf.design_rows(pm, start=1, stop=3)
    with pytest.raises(ScatteringError, match="rows: expected"):
        sf.design_rows(pm, rows=np.zeros((2, 3)))
    with pytest.raises(ScatteringError, match="rows: expected"):
        sf.design_rows(pm, rows=np.zeros((pm.n_params, 2)).T)
    with pytest.raises(ScatteringError, match="parameter map has 2 atoms"):
        sf.design_rows(sftbx.ParameterMap(pm.columns[:2], pm.n_params))
    with pytest.raises(ScatteringError, match="columns must lie"):
        sftbx.ParameterMap(pm.columns, 3)
    with pytest.raises(ScatteringError, match="dT_dA, dT_dB: expected shape"):
        sf.gradients(np.zeros(3), np.zeros(2), pm)
    with pytest.raises(ScatteringError, match="finite"):
        sf.gradients(np.array([0.0, np.nan]), np.zeros(2), pm)


def test_extinction_that_turns_negative():
    group, cell = _structure()
    scat = sftbx.Scatterers(**_atoms())
    sf = sftbx.StructureFactors(cell, group, scat, [[1, 0, 0], [1, 2, 3]],
                                multiplicities=[4, 4, 4])
    with pytest.raises(ScatteringError, match=r"1 \+ x eps"):
        sf.design_rows(extinction=sftbx.ShelxExtinction(-1e3, 0.71))
    with pytest.raises(ScatteringError, match="must stay positive"):
        sftbx.y_calc(sf.f_calc(), extinction_eps=np.ones(2), extinction_x=-1.0)
