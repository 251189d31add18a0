"""Absolute structure: Parsons' quotients on the published sets (value within
the published s.u., s.u. and quotient counts close to SHELXL's), a
synthetic inversion twin recovered both ways, cc_invtwin's BASF."""

import gemmi
import numpy as np
import pytest

import sftbx
import sgtbx
import smtbx
from smtbx.absolute import friedel_pairs, parsons_flack, refine_inversion_fraction
from smtbx.data import reduce_observations
from smtbx.figures import shelxl_weights
from smtbx.structure import structure_factors
from smtbx.twinning import TwinnedIntensities

# folder, stem, published CIF, published number of quotients
SETS = [
    ("sucrose_p21", "zucker2", "DK_Zucker2_0m.cif", 8470),
    ("sh2185_p212121", "sh2185", "SH2185_Cu.cif", 1457),
    ("bjk_p21212", "bjk", "1979688.cif", 2955),
    ("p31c_sad", "sad", "sad-final.cif", 2316),
    ("ni_i43d", "i43d", "I-43d.cif", 1084),
]


def _value_su(text):
    number, _, su = text.partition("(")
    digits = len(number.split(".")[1]) if "." in number else 0
    return float(number), int(su.rstrip(")")) * 10.0 ** -digits


@pytest.mark.parametrize("folder, stem, cif, n_quotients", SETS)
def test_parsons_flack_matches_the_published_value(small_data, folder, stem, cif, n_quotients):
    model = smtbx.shelx.read_shelx(str(small_data / folder / f"{stem}.res"))
    data = reduce_observations(model)
    sf = structure_factors(model, data.hkl)
    flack = parsons_flack(model.space_group, data.hkl, data.fo_sq, data.sig_fo_sq,
                          np.abs(sf.f_calc()) ** 2, np.abs(sf.f_calc_friedel()) ** 2)
    x, su = _value_su(gemmi.cif.read(str(small_data / folder / cif)).sole_block()
                      .find_value("_refine_ls_abs_structure_Flack"))
    assert abs(flack.x - x) <= su
    assert 0.8 < flack.su / su < 1.25
    assert abs(flack.n_used - n_quotients) <= 0.02 * n_quotients
    assert f"{flack.n_used} quotients" in flack.cif_details()


def _synthetic(x_true, seed=11):
    uc = sgtbx.UnitCell(7.0, 8.0, 9.0, 90, 90, 90)
    sg = sgtbx.SpaceGroup("P 21 21 21")
    rng = np.random.default_rng(seed)
    n = 6
    sc = sftbx.Scatterers(["Br", "O", "C", "C", "N", "C"], rng.uniform(0, 1, (n, 3)), np.ones(n),
                          np.full(n, 0.02), fp=np.full(n, -0.3), fdp=[2.0, 0.03, 0.01, 0.01, 0.02, 0.01])
    hkl = sgtbx.complete_set(uc, sg, 0.9, anomalous=True)
    hkl = hkl[np.abs(hkl).sum(axis=1) > 0]
    sf = sftbx.StructureFactors(uc, sg, sc, hkl)
    ip, im = np.abs(sf.f_calc()) ** 2, np.abs(sf.f_calc_friedel()) ** 2
    truth = 3.0 * ((1 - x_true) * ip + x_true * im)
    sigma = 0.01 * truth + 0.5
    fo_sq = truth + sigma * rng.standard_normal(len(truth))
    return uc, sg, sc, hkl, fo_sq, sigma, ip, im


def test_synthetic_inversion_twin_recovered_both_ways():
    uc, sg, sc, hkl, fo_sq, sigma, ip, im = _synthetic(0.3)
    p, q = friedel_pairs(sg, hkl)
    assert len(p) > 100
    np.testing.assert_allclose(ip[q], im[p], rtol=1e-10)
    flack = parsons_flack(sg, hkl, fo_sq, sigma, ip, im)
    assert abs(flack.x - 0.3) < 3 * flack.su and flack.su < 0.05
    calc = TwinnedIntensities.from_twin_law(lambda h: sftbx.StructureFactors(uc, sg, sc, h), uc,
                                            hkl, -np.eye(3, dtype=int), 2)
    refined = refine_inversion_fraction(calc, fo_sq, 1 / sigma ** 2)
    assert abs(refined.x - 0.3) < 3 * refined.su and refined.su < 0.05
    assert refined.cif_details() == "Refined as an inversion twin."


def test_cc_invtwin_basf_with_the_model_fixed(small_data):
    model = smtbx.shelx.read_shelx(str(small_data / "cc_invtwin" / "disorder.res"))
    data = reduce_observations(model)
    calc = TwinnedIntensities.for_model(model, data)
    fc_sq = calc.intensities(model.instructions.basf)
    stol = 0.5 * np.sqrt(model.cell.s_squared(data.hkl))
    w = shelxl_weights(data.fo_sq, data.sig_fo_sq, fc_sq, model.scale ** 2,
                       model.instructions.weighting, stol)
    refined = refine_inversion_fraction(calc, data.fo_sq, w, x0=0.0)
    # SHELXL: BASF 0.157, Flack 0.16(10) with every parameter refined; the
    # s.u. with the model fixed is smaller
    assert abs(refined.x - 0.157) < 0.01
    assert 0.03 < refined.su < 0.10
    assert refined.n_used == 11096


def test_centric_group_and_too_few_pairs_are_rejected():
    sg = sgtbx.SpaceGroup("P -1")
    hkl = np.array([[1, 0, 0], [-1, 0, 0]])
    with pytest.raises(sgtbx.errors.CrystallographyError, match="centrosymmetric"):
        parsons_flack(sg, hkl, np.ones(2), np.ones(2), np.ones(2), np.ones(2))
    pairs = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]])
    with pytest.raises(sgtbx.errors.CrystallographyError, match="1 of 2 Friedel pairs"):
        parsons_flack(sgtbx.SpaceGroup("P 1"), pairs, np.array([10.0, 9.0, 1.0, 5.0]),
                      np.ones(4), np.ones(4), np.ones(4))
    with pytest.raises(sgtbx.errors.CrystallographyError, match="0 Friedel pairs"):
        parsons_flack(sgtbx.SpaceGroup("P 1"), hkl[:1], np.ones(1), np.ones(1), np.ones(1), np.ones(1))
