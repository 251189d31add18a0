"""R factors, shells, completeness, Wilson B."""

import gemmi
import numpy as np
import pytest

import sgtbx
from mmtbx import data_statistics, read_reflections, r_factor
from mmtbx.statistics import r_factor_shells, sum_f0_squared, wilson_b


def test_r_factor_by_hand():
    fo = np.array([10.0, 20.0, 30.0])
    fm = np.array([11.0, 18.0, 30.0])
    assert r_factor(fo, fm, rescale=False) == pytest.approx(3.0 / 60.0)
    k = np.sum(fo * fm) / np.sum(fm * fm)
    assert r_factor(fo, fm) == pytest.approx(np.sum(np.abs(fo - k * fm)) / 60.0)
    # a model off by a constant factor has R = 0 with the set's own scale
    assert r_factor(fo, 0.5 * fo) == pytest.approx(0.0, abs=1e-15)


def test_shells_use_the_overall_scale_of_each_set():
    rng = np.random.default_rng(0)
    fo = rng.uniform(10, 100, 1000)
    fm = fo * rng.uniform(0.9, 1.1, 1000)
    d = np.linspace(10, 2, 1000)
    free = np.arange(1000) % 10 == 0
    rows = r_factor_shells(fo, fm, d, ~free, free, n_shells=5)
    k = np.sum(fo[free] * fm[free]) / np.sum(fm[free] ** 2)
    sel = free & (d >= rows[0]["d_min"])
    assert rows[0]["r_free"] == pytest.approx(np.sum(np.abs(fo[sel] - k * fm[sel])) / np.sum(fo[sel]))
    assert sum(r["n_work"] + r["n_free"] for r in rows) == 1000


def test_wilson_b_of_a_simulated_crystal():
    """Random carbon atoms with B = 25 Å² in P1: the Wilson plot gives 25."""
    rng = np.random.default_rng(1)
    cell = sgtbx.UnitCell(30, 32, 34, 90, 90, 90)
    hkl = sgtbx.complete_set(cell, sgtbx.SpaceGroup("P 1"), 1.8)
    s_sq = cell.s_squared(hkl)
    sites = rng.uniform(0, 1, (300, 3))
    coef = gemmi.Element("C").it92
    f0 = coef.c + sum(a * np.exp(-b * s_sq / 4) for a, b in zip(coef.a, coef.b))
    f = f0 * np.exp(-25.0 * s_sq / 4) * np.exp(2j * np.pi * hkl @ sites.T).sum(axis=1)
    st = gemmi.Structure()
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    res = gemmi.Residue()
    res.name = "C"
    for _ in range(300):
        atom = gemmi.Atom()
        atom.element, atom.occ = gemmi.Element("C"), 1.0
        res.add_atom(atom)
    chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    b = wilson_b(np.abs(f), cell.d_spacings(hkl), np.ones(len(hkl)), sum_f0_squared(st, 1, s_sq))
    assert b == pytest.approx(25.0, abs=2.0)


def test_data_statistics_5e5z(macro_data, set_5e5z):
    structure, data, _, _ = set_5e5z
    stats = data_statistics(data, structure)
    # completeness: observed unique reflections over the complete set to the same limits
    complete = sgtbx.complete_set(data.unit_cell, data.space_group, stats["d_min"], stats["d_max"])
    assert stats["completeness"] == pytest.approx(len(data.hkl) / len(complete))
    assert stats["mean_i_over_sigma"] == pytest.approx(np.mean(data.f_obs / (2 * data.sigma_f_obs)))
    assert 0 < stats["wilson_b"] < 30
    i_data = read_reflections(macro_data / "5e5z" / "5e5z.mtz", labels=("I", "SIGI"))
    i_stats = data_statistics(i_data)
    assert i_stats["mean_i_over_sigma"] == pytest.approx(np.mean(i_data.i_obs / i_data.sigma_i_obs))
