"""R-work and R-free of the deposited models against cctbx (REFERENCE.md).

cctbx's figures come from mmtbx.f_model with update_all_scales and its
outlier rejection.  Where our method differs (each is a modelling choice,
not a bug):
- form factors: IT92 four Gaussians (gemmi) vs cctbx's n_gaussian table;
- F_calc and F_mask from gemmi (DensityCalculatorX; SolventMasker with
  cctbx's radii, probe 1.1 Å, shrink 0.9 Å) until sftbx's FFT lands;
- bins: logarithmic in s, ≥ 50 reflections, k_mask per bin by the cubic
  plus a grid, k_iso with ln k piecewise linear in s²; cctbx smooths
  differently;
- outliers: Read (1999) tail probability < 1e-6 given α, β;
- R-work and R-free each with the LS scale of its own set, as cctbx's
  ``r_work()``/``r_free()`` (our ``r_free_unscaled`` omits it).
Tolerance 0.01 (0.02 for 5e5z and 3hqb, which have 18 and 118 free
reflections), as the issue says.
"""

import numpy as np
import pytest

from mmtbx import fmodel_from_files

#            model, data, twin law, (R-work, R-free), tolerance
CASES = {
    "5e5z": ("5e5z/5e5z.pdb", "5e5z/5e5z.mtz", None, (0.1713, 0.2019), 0.02),
    "1byz": ("1byz/1byz.pdb", "1byz/1byz.mtz", None, (0.0843, 0.0862), 0.01),
    "1l2h": ("1l2h/1l2h.cif", "1l2h/1l2h.mtz", "h,-k,-l", (0.1526, 0.1930), 0.01),
    "1l2h-untwinned": ("1l2h/1l2h.cif", "1l2h/1l2h.mtz", None, (0.2532, 0.2751), 0.01),
    "4hg7": ("4hg7/4hg7.cif", "4hg7/4hg7-sf.cif", None, (0.1772, 0.2136), 0.01),
    "rnasa": ("rnasa/tutorial-modern.pdb", "rnasa/rnasa-1.8-all_refmac1.mtz", None, (0.2575, 0.2909), 0.01),
    "3hqb": ("3hqb/3hqb.pdb", "3hqb/3hqb.mtz", None, (0.2151, 0.3200), 0.02),
    "4iid": ("4iid/4iid.pdb", "4iid/4iid.mtz", None, (0.1575, 0.2049), 0.01),
}
# cctbx's reflection counts (work + free) and free counts
COUNTS = {"5e5z": (403, 18), "1byz": (23681, 1213), "1l2h": (31780, 1519), "4hg7": (21135, 1065),
          "rnasa": (17024, 873), "3hqb": (2289, 118), "4iid": (99146, 4949)}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, macro_data):
    model, data, twin, reference, tol = CASES[request.param]
    fmodel, refl, _ = fmodel_from_files(macro_data / model, macro_data / data, twin_law=twin)
    return request.param, fmodel, refl, reference, tol


def test_r_factors_match_cctbx(case):
    name, fmodel, _, (r_work, r_free), tol = case
    assert abs(fmodel.r_work - r_work) <= tol, (name, fmodel.r_work)
    assert abs(fmodel.r_free - r_free) <= tol, (name, fmodel.r_free)


def test_reflection_counts_match_cctbx(case):
    name, _, refl, _, _ = case
    key = name.split("-")[0]
    assert (len(refl.hkl), int(refl.free.sum())) == COUNTS[key]


def test_k_sol_b_sol_reported_and_shells(case):
    name, fmodel, _, _, _ = case
    summary = fmodel.summary()
    assert 0.0 <= summary["k_sol"] <= 1.0 and summary["b_sol"] >= 0.0
    shells = fmodel.r_factor_shells()
    assert sum(row["n_work"] for row in shells) == summary["n_work"]
    assert sum(row["n_free"] for row in shells) == summary["n_free"]
    if name == "1l2h":
        # cctbx: 0.36
        assert summary["twin_fraction"] == pytest.approx(0.36, abs=0.03)


def test_solvent_is_found_where_cctbx_finds_it(case):
    """cctbx's k_sol (REFERENCE.md): ~0.3-0.4 e/Å³ for the proteins with
    low-resolution data, ~0 for 1byz (few low-resolution reflections)."""
    name, fmodel, _, _, _ = case
    k_sol = fmodel.summary()["k_sol"]
    if name in ("1l2h", "4hg7", "rnasa", "3hqb", "4iid"):
        assert 0.25 <= k_sol <= 0.45
    if name == "1byz":
        assert k_sol < 0.1


def test_ml_figures_on_real_data(case):
    name, fmodel, _, _, _ = case
    if fmodel.twin_law is not None:
        pytest.skip("ML is for untwinned data")
    ab = fmodel.alpha_beta()
    assert np.all(ab.alpha_bins > 0.3) and np.all(ab.alpha_bins < 1.5)
    assert np.all((ab.sigma_a_bins > 0) & (ab.sigma_a_bins < 1))
    fom = fmodel.figures_of_merit()
    assert 0.5 < fom[fmodel.work].mean() < 1.0
    # the free set is used wherever it has >= 50 reflections per bin
    assert ab.from_free.all() == (fmodel.free_active.sum() >= 50 * len(ab.alpha_bins))


def test_1l2h_with_a_given_twin_fraction(macro_data):
    """The twin fraction fixed at cctbx's 0.36 gives cctbx's R within 0.01."""
    fmodel, _, _ = fmodel_from_files(macro_data / "1l2h" / "1l2h.cif", macro_data / "1l2h" / "1l2h.mtz",
                                     twin_law="h,-k,-l", twin_fraction=0.36)
    assert fmodel.scales.twin_fraction == 0.36
    assert abs(fmodel.r_work - 0.1526) <= 0.01 and abs(fmodel.r_free - 0.1930) <= 0.01
