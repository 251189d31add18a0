"""SHELXL's figures before refinement on the real data, and the pieces
behind them (weights, extinction, twins, dispersion, explicit SFAC
coefficients) against independent formulae."""

import gemmi
import numpy as np
import pytest

import sgtbx
import smtbx
from smtbx.data import reduce_observations
from smtbx.figures import (agreement, floating_origin_directions, restraint_count, shelxl_weights,
                           starting_figures)
from smtbx.model import Weighting
from smtbx.structure import calculated_intensities, dispersion, structure_factors


# name: (R1(gt) "smtbx start" of REFERENCE.md, tolerance, wR2, where that wR2 comes from)
# REFERENCE's start column reproduces SHELXL.  wR2 is SHELXL's published
# value where there is one, otherwise REFERENCE's smtbx start.  alga, gabipy,
# ni_i43d and cc_invtwin reach SHELXL's wR2 and GoF only with merged Fo²
# below -σ raised to -σ (smtbx.data, step 5).
START = {
    "alga_p21c": (0.0400, 0.0005, 0.1005, "SHELXL"),
    "p31c_sad": (0.0308, 0.0005, 0.0727, "SHELXL"),
    "ni_i43d": (0.0322, 0.0005, 0.0860, "SHELXL"),
    "sucrose_p21": (0.0226, 0.0005, 0.0630, "SHELXL"),
    "sh2185_p212121": (0.0291, 0.0005, 0.0728, "SHELXL"),
    "bjk_p21212": (0.0364, 0.0005, 0.0919, "SHELXL"),
    "fecl_r3c": (0.0412, 0.0005, 0.0916, "SHELXL"),
    "nacl_fm3m": (0.0099, 0.0005, 0.0268, "smtbx start: none published"),
    "ru_p21c": (0.0486, 0.0005, 0.1155, "smtbx start: none published"),
    # thpp is unfinished: its FVAR 1 is not the least-squares scale of the
    # model as read (0.0739 at FVAR 1's K, 0.0747 at the least-squares K).
    "thpp_p21n": (0.0747, 0.0005, 0.2769, "smtbx start"),
    "gabipy_c2c": (0.0752, 0.0005, 0.2063, "SHELXL"),
    "musc_c2c": (0.0781, 0.0005, 0.2220, "SHELXL"),
    "exti_c2m": (0.0268, 0.0005, 0.0531, "SHELXL"),
    "caf2_fm3m": (0.0128, 0.0005, 0.0335, "SHELXL"),
    "hmamg_p21c": (0.0242, 0.0005, 0.0687, "SHELXL"),
    # SHELXL's wR2 is 0.4429 over the 1285 reflections of its own hkl, which
    # is not the shipped one (see test_data); the shipped 1287 give 0.4426.
    "ed_cinch_p21": (0.1765, 0.001, 0.4429, "SHELXL, other data"),
    "cc_invtwin": (0.0340, 0.0005, 0.0927, "SHELXL"),
}

# SHELXL's parameter counts (CIF or REM) and its goodness of fit; the GoF
# is a property of the model as deposited, so it is reproduced before any
# cycle once p is known.
SHELXL_GOF = {
    "sucrose_p21": (224, 1.080), "bjk_p21212": (479, 1.198), "fecl_r3c": (60, 1.113),
    "caf2_fm3m": (3, 1.440), "hmamg_p21c": (133, 6.027), "musc_c2c": (97, 1.140),
    "exti_c2m": (37, 0.956), "p31c_sad": (287, 1.044), "sh2185_p212121": (319, 1.061),
    "cc_invtwin": (652, 1.035), "ni_i43d": (247, 1.095), "alga_p21c": (945, 1.016),
    "gabipy_c2c": (1101, 1.017),
}

@pytest.mark.parametrize("name", sorted(START))
def test_starting_figures(reduced_set, name):
    r1, tol, wr2, _ = START[name]
    model, data = reduced_set(name)
    figures, *_ = starting_figures(model, data, n_threads=2)
    assert abs(figures.r1_gt - r1) <= tol
    assert abs(figures.wr2 - wr2) <= 0.001
    assert figures.n_reflections == len(data) and figures.n_gt == data.n_gt
    # the parameter count comes from the reparametrisation graph
    if name in SHELXL_GOF:
        assert figures.n_parameters == SHELXL_GOF[name][0]
        assert figures.gof == pytest.approx(SHELXL_GOF[name][1], abs=0.002)
    else:
        assert figures.gof is not None


# SHELXL's printed wR2 and GoF (CIF or REM) for the models as deposited.
# exti_c2m is left out: its REM figures precede SHELXL's last shifts.
PRINTED = {
    "ni_i43d": (0.0860, 1.095), "sucrose_p21": (0.0630, 1.080), "sh2185_p212121": (0.0728, 1.061),
    "p31c_sad": (0.0727, 1.044), "bjk_p21212": (0.0919, 1.198), "fecl_r3c": (0.0916, 1.113),
    "alga_p21c": (0.1005, 1.016), "gabipy_c2c": (0.2063, 1.017), "musc_c2c": (0.2220, 1.140),
    "hmamg_p21c": (0.0687, 6.027), "caf2_fm3m": (0.0335, 1.440), "cc_invtwin": (0.0927, 1.035),
}


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_wr2_and_gof_to_shelxl_s_last_digit(reduced_set, name):
    # one unit of the last printed digit: measured at most 0.00008 in wR2
    # and 0.0005 in GoF.  ni_i43d, alga and gabipy get there only with
    # merged Fo² below -σ raised to -σ (smtbx.data step 5; as read they were
    # 0.0007, 0.0021 and 0.0028 off in wR2).
    wr2, gof = PRINTED[name]
    model, data = reduced_set(name)
    figures, *_ = starting_figures(model, data, n_threads=2)
    assert figures.wr2 == pytest.approx(wr2, abs=0.0001)
    assert figures.gof == pytest.approx(gof, abs=0.001)


def test_fo_sq_below_minus_sigma_is_raised(reduced_set):
    model, data = reduced_set("alga_p21c")
    assert data.counts["raised"] == 240
    assert np.all(data.fo_sq >= -data.sig_fo_sq)
    assert np.count_nonzero(data.fo_sq == -data.sig_fo_sq) == 240 + 2     # two merged at -σ exactly


def test_r1_all_and_restrained_gof(reduced_set):
    # SHELXL: sucrose R1(all) 0.0234, restrained GoF 1.080 with its one
    # floating-origin restraint (P21 is polar); hmamg 0.0260 and 6.027 with none.
    model, data = reduced_set("sucrose_p21")
    figures, *_ = starting_figures(model, data, n_threads=2, n_parameters=224)
    assert figures.n_restraints == 1
    assert figures.r1_all == pytest.approx(0.0234, abs=0.0001)
    assert figures.restrained_gof == pytest.approx(1.080, abs=0.002)
    assert figures.restrained_gof < figures.gof      # one more observation, no χ²
    model, data = reduced_set("hmamg_p21c")
    figures, *_ = starting_figures(model, data, n_threads=2, n_parameters=133)
    assert figures.n_restraints == 0 and figures.restrained_gof == figures.gof
    assert figures.r1_all == pytest.approx(0.0260, abs=0.0001)
    # restraints counted by smtbx.restraints (its tests compare with SHELXL's counts)
    assert restraint_count(reduced_set("fecl_r3c")[0]) == 0


def test_weights_on_the_file_scale_are_shelxl_weights_on_the_absolute_scale():
    rng = np.random.default_rng(3)
    k = 37.5
    fc_sq = rng.uniform(0, 200, 50)
    fo_sq = k * fc_sq + rng.normal(0, 30, 50)
    sig = rng.uniform(5, 40, 50)
    stol = rng.uniform(0.05, 0.7, 50)
    for wt in (Weighting(0.05, 1.3), Weighting(0.0, 0.0), Weighting(0.1, 2.0, 0.0, 0.01, 0.02, 0.5),
               Weighting(0.03, 0.5, 1.5), Weighting(0.03, 0.5, -2.0)):
        w = shelxl_weights(fo_sq, sig, fc_sq, k, wt, stol)
        # SHELXL on the absolute scale: Fo²/K, σ/K against Fc²
        fo_abs, sig_abs = fo_sq / k, sig / k
        p = wt.f * np.maximum(fo_abs, 0) + (1 - wt.f) * fc_sq
        q = {0: 1.0, 1: np.exp(wt.c * stol**2), -1: 1 - np.exp(wt.c * stol**2)}[int(np.sign(wt.c))]
        w_abs = q / (sig_abs**2 + (wt.a * p)**2 + wt.b * p + wt.d + wt.e * stol)
        # w r² is the same quantity on either scale
        np.testing.assert_allclose(w * (fo_sq - k * fc_sq)**2, w_abs * (fo_abs - fc_sq)**2, rtol=1e-12)
    figures = agreement(fo_sq, sig, fc_sq, k, 1 / sig**2)
    np.testing.assert_allclose(figures.sum_w_r2, np.sum(((fo_sq - k * fc_sq) / sig) ** 2))


def test_extinction_as_shelxl(reduced_set):
    model, data = reduced_set("exti_c2m")
    x = model.instructions.exti
    fc_sq = calculated_intensities(model, data, n_threads=2)
    raw = structure_factors(model, data.hkl, n_threads=2).intensities()
    sin_theta = model.wavelength / 2 * np.sqrt(model.cell.s_squared(data.hkl))
    sin_2theta = np.sin(2 * np.arcsin(sin_theta))
    expected = raw * (1 + 0.001 * x * raw * model.wavelength**3 / sin_2theta) ** -0.5
    np.testing.assert_allclose(fc_sq, expected, rtol=1e-10)
    assert np.max(raw / fc_sq) > 1.1            # strong low-angle reflections are corrected


def _model(tmp_path, extra, atoms, hkl_lines, hklf=4):
    header = ("TITL t\nCELL 0.71073 7.0 8.0 9.0 90 105 90\nZERR 2 0.001 0.001 0.001 0 0.01 0\n"
              "LATT -1\nSYMM -X, 1/2+Y, -Z\nSFAC C Fe\nUNIT 8 2\n")
    (tmp_path / "t.ins").write_text(header + extra + "FVAR 1.0\n" + atoms + f"HKLF {hklf}\nEND\n")
    (tmp_path / "t.hkl").write_text("".join(hkl_lines) + "   0   0   0    0.00    0.00\n")
    return smtbx.read_shelx(tmp_path / "t")


ATOMS = "FE1 2 0.1 0.2 0.3 11 0.02\nC1 1 0.31 0.05 0.62 11 0.03\nC2 1 0.7 0.41 0.13 11 0.025\n"


def test_twin_law_and_hklf5_sums(tmp_path):
    hkl = [(1, 2, 3), (2, 1, -1), (0, 2, 4), (3, 1, 1)]
    lines = [f"{h:4d}{k:4d}{l:4d}  100.00    1.00\n" for h, k, l in hkl]
    untwinned = _model(tmp_path, "", ATOMS, lines)
    data = reduce_observations(untwinned)
    sf = structure_factors(untwinned, data.hkl)
    f_plus, f_minus = sf.f_calc(), sf.f_calc_friedel()
    assert np.max(np.abs(np.abs(f_plus) - np.abs(f_minus))) > 0.05     # Fe f'' at Mo
    np.testing.assert_allclose(calculated_intensities(untwinned, data), np.abs(f_plus) ** 2, rtol=1e-12)
    # inversion twin (bare TWIN: matrix -1, 2 components)
    twinned = _model(tmp_path, "TWIN\nBASF 0.3\n", ATOMS, lines)
    expected = 0.7 * np.abs(f_plus) ** 2 + 0.3 * np.abs(f_minus) ** 2
    np.testing.assert_allclose(calculated_intensities(twinned, reduce_observations(twinned)), expected,
                               rtol=1e-12)
    # HKLF 5: the same sum written as groups of component lines
    groups = []
    for h, k, l in hkl:
        groups += [f"{-h:4d}{-k:4d}{-l:4d}  100.00    1.00  -2\n", f"{h:4d}{k:4d}{l:4d}  100.00    1.00   1\n"]
    hklf5 = _model(tmp_path, "BASF 0.3\n", ATOMS, groups, hklf=5)
    data5 = reduce_observations(hklf5)
    sf5 = structure_factors(untwinned, data5.hkl)
    expected5 = 0.7 * np.abs(sf5.f_calc()) ** 2 + 0.3 * np.abs(sf5.f_calc_friedel()) ** 2
    np.testing.assert_allclose(calculated_intensities(hklf5, data5), expected5, rtol=1e-12)
    np.testing.assert_allclose(np.sort(expected5), np.sort(expected), rtol=1e-12)


def test_dispersion_sources(reduced_set, tmp_path):
    model, _ = reduced_set("caf2_fm3m")
    fp, fdp, source = dispersion(model)
    assert source == ["DISP", "DISP"] and fp.tolist() == [0.1378, 0.006] and fdp.tolist() == [0.1937, 0.0061]
    model, _ = reduced_set("bjk_p21212")
    fp, fdp, source = dispersion(model)
    energy = 12398.419843320026 / model.wavelength
    for t, a, b, s in zip(model.scattering_types, fp, fdp, source):
        z = gemmi.Element(t.element).atomic_number
        assert s == "Cromer-Liberman" and (a, b) == pytest.approx(gemmi.cromer_liberman(z=z, energy=energy))
    # MERG 4: f'' = 0 and Friedel pairs merged
    lines = [f"{h:4d}{k:4d}{l:4d}  100.00    1.00\n" for h, k, l in [(1, 2, 3), (-1, -2, -3)]]
    merg4 = _model(tmp_path, "MERG 4\n", ATOMS, lines)
    data = reduce_observations(merg4)
    assert len(data) == 1
    table, _ = smtbx.structure.scatterers(merg4)
    assert np.all(table.fdp == 0) and np.any(table.fp != 0)


def test_explicit_sfac_coefficients(reduced_set):
    model, data = reduced_set("ed_cinch_p21")
    sf = structure_factors(model, data.hkl[:5])
    types, _ = sf.scatterers.types()
    assert types == ["C", "N", "O"]          # SFAC H is given but no atom uses it
    for t in model.scattering_types[:1] + model.scattering_types[2:]:
        i = types.index(t.element)
        np.testing.assert_array_equal(sf.ff_a[i], t.gaussians[0])
        np.testing.assert_array_equal(sf.ff_b[i], t.gaussians[1])
        assert sf.ff_c[i] == t.gaussians[2]
    assert np.all(sf.scatterers.fp == 0) and np.all(sf.scatterers.fdp == 0)


@pytest.mark.parametrize("symbol, n", [("P 1", 3), ("P 1 21 1", 1), ("C 1 c 1", 2), ("P 21 21 21", 0),
                                       ("P 31 c", 1), ("P -1", 0), ("I -4 3 d", 0), ("P 4 m m", 1)])
def test_floating_origin_directions(symbol, n):
    assert floating_origin_directions(sgtbx.SpaceGroup(symbol)) == n


def test_swat_solvent_correction(tmp_path):
    # SHELXL: Fc is multiplied by 1 - g exp(-8 pi^2 U sin^2(theta)/lambda^2)
    lines = [f"{h:4d}{k:4d}{l:4d}  100.00    1.00\n" for h, k, l in [(1, 0, 0), (1, 2, 3), (3, 1, 4)]]
    plain = _model(tmp_path, "", ATOMS, lines)
    data = reduce_observations(plain)
    raw = calculated_intensities(plain, data)
    swat = _model(tmp_path, "SWAT 0.8 2.5\n", ATOMS, lines)
    stol_sq = swat.cell.s_squared(data.hkl) / 4
    expected = raw * (1 - 0.8 * np.exp(-8 * np.pi**2 * 2.5 * stol_sq)) ** 2
    np.testing.assert_allclose(calculated_intensities(swat, data), expected, rtol=1e-12)
    assert np.all(expected < raw)


@pytest.mark.parametrize("name, n", [
    ("sucrose_p21", 1), ("ed_cinch_p21", 1),        # polar P21: the floating-origin restraint
    ("caf2_fm3m", 0), ("hmamg_p21c", 0), ("exti_c2m", 0), ("fecl_r3c", 0), ("nacl_fm3m", 0),
    ("ru_p21c", 0),
    ("bjk_p21212", 5), ("musc_c2c", 0),     # SHELXL's REM lines (RIGU, BUMP; a one-atom RIGU)
])
def test_restraint_counts_equal_shelxl_where_known(reduced_set, name, n):
    assert restraint_count(reduced_set(name)[0]) == n
