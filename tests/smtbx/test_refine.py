"""Refinement to convergence (smtbx.refine): SHELXL's figures on real data,
shaken starts, synthetic round trips, the suggested weights and divergence.

The full refinements of the larger sets take a few seconds each; they run
when SMTBX_SLOW=1 (``SMTBX_SLOW=1 pytest tests/smtbx/test_refine.py``).
"""

import copy
import os

import numpy as np
import pytest

import sftbx
import smtbx
from smtbx.data import ReflectionData
from smtbx.figures import starting_figures
from smtbx.demo import DEMO_MODEL, perturb, simulate, site_errors_angstrom, site_parameters
from smtbx.lst import parameter_sus
from smtbx.refine import (LeastSquares, RefinementDiverged, f_from_f_sq, step_length,
                          suggest_weighting)

slow = pytest.mark.skipif(os.environ.get("SMTBX_SLOW") != "1",
                          reason="full refinement of a larger set: set SMTBX_SLOW=1")


# name: (SHELXL's R1(gt), tolerance, wR2 or None, tolerance) from issue 7.
# nacl's and ru's wR2 have no SHELXL figure; the issue gives 0.0268, 0.1155.
TARGETS = {
    "fecl_r3c": (0.0413, 0.002, 0.0916, 0.002),
    "nacl_fm3m": (0.0096, 0.002, 0.0268, 0.002),
    "caf2_fm3m": (0.0128, 0.002, None, None),
    "exti_c2m": (0.0268, 0.002, None, None),
    "musc_c2c": (0.0781, 0.003, None, None),
    "sucrose_p21": (0.0226, 0.002, 0.0630, 0.002),
    "hmamg_p21c": (0.0242, 0.003, None, None),
    "bjk_p21212": (0.0364, 0.002, 0.0919, 0.002),
    "ru_p21c": (0.0486, 0.002, 0.1155, 0.002),
    "thpp_p21n": (0.0736, 0.003, 0.2665, 0.003),
    # restrained in the file (smtbx.restraints); alga's wR2 from its REM
    "alga_p21c": (0.0400, 0.002, 0.1005, 0.002),
    "p31c_sad": (0.0308, 0.002, 0.0727, 0.002),
    "sh2185_p212121": (0.0291, 0.002, 0.0728, 0.002),
    "ni_i43d": (0.0321, 0.002, 0.0860, 0.002),
}
FAST = ("fecl_r3c", "nacl_fm3m", "caf2_fm3m", "exti_c2m", "musc_c2c", "sucrose_p21")


def check_figures(name, refinement):
    r1, tol, wr2, wtol = TARGETS[name]
    f = refinement.figures
    assert refinement.converged, refinement.reason
    assert refinement.cycles[-1].max_shift_su < 0.05
    assert abs(f.r1_gt - r1) <= tol, (f.r1_gt, r1)
    if wr2 is not None:
        assert abs(f.wr2 - wr2) <= wtol, (f.wr2, wr2)


@pytest.mark.parametrize("name", FAST)
def test_converges_to_shelxl_figures(shelx_stem, name):
    model = smtbx.read_shelx(shelx_stem(name))
    refinement = LeastSquares(model, n_threads=2).run(30)
    check_figures(name, refinement)
    # the model holds the refined values, FVAR 1 the final osf
    assert model.free_variables[0] == pytest.approx(refinement.osf)


# ni_i43d: along the PART -1 toluene's z shift (methyl C26 0.23 A from an
# image of C31, EADP with it) the objective curves up to 2.3 times as
# steeply as the normal matrix says; before the line search (smtbx.refine,
# step 6) C26 z went back and forth by 0.08 s.u. every cycle, still after 30
# cycles.
@slow
@pytest.mark.parametrize("name", sorted(set(TARGETS) - set(FAST)))
def test_converges_to_shelxl_figures_slow(shelx_stem, name):
    check_figures(name, LeastSquares(smtbx.read_shelx(shelx_stem(name)), n_threads=2).run(30))


def test_step_length_is_the_minimum_of_the_parabola():
    # L(t) = 10 - 2 g.d t + c t^2 with g.d = 3: minimum at t = 3 / c
    for curvature, minimum in ((3.0, 1.0), (6.0, 0.5), (12.0, 0.25), (30.0, 0.1)):
        assert step_length(10.0, 3.0, 10 - 6 + curvature) == pytest.approx(minimum)
    # flatter than the normal matrix says: the full step; so when the
    # shifts do not go downhill or the model there is unusable
    assert step_length(10.0, 3.0, 10 - 6 + 1.0) == 1.0
    assert step_length(10.0, -3.0, 20.0) == 1.0
    assert step_length(10.0, 3.0, float("inf")) == 1.0


def test_line_search_shortens_the_overshooting_steps(reduced_set):
    # ni_i43d's first cycles: the full steps overshoot along the toluene's z
    # shift; shortened, every step lowers the objective (none is taken back)
    # and max shift/s.u. falls from 0.71 to 0.13 in four cycles (before the
    # line search: from 0.76 to 0.49, with steps taken back in cycles 3, 4)
    model, data = reduced_set("ni_i43d")
    cycles = LeastSquares(copy.deepcopy(model), data=data, n_threads=2).run(4).cycles
    assert len(cycles) == 4 and not any(c.rejected_steps for c in cycles)
    assert any(c.step_length < 1 for c in cycles)
    assert cycles[-1].max_shift_su < cycles[0].max_shift_su / 4


@slow
def test_ed_cinch_refines_without_error(shelx_stem):
    refinement = LeastSquares(smtbx.read_shelx(shelx_stem("ed_cinch_p21")), n_threads=2).run(30)
    assert refinement.converged and np.isfinite(refinement.figures.r1_gt)


def test_parameter_count_is_shelxl_and_cycle_report(shelx_stem):
    model = smtbx.read_shelx(shelx_stem("fecl_r3c"))
    least_squares = LeastSquares(model, n_threads=2)
    assert least_squares.n_parameters == 60         # SHELXL's count
    seen = []
    refinement = least_squares.run(5, seen.append)
    assert seen == refinement.cycles and refinement.cycles[0].number == 1
    first = refinement.cycles[0]
    # the first cycle's figures are those of the deposited model (SHELXL's)
    assert first.r1_gt == pytest.approx(0.0413, abs=2e-4)
    assert first.gof == pytest.approx(1.113, abs=2e-3) and first.restrained_gof == first.gof
    assert first.max_shift_parameter in least_squares.graph.x_names
    assert first.seconds > 0 and 0 < first.mean_shift_su <= first.max_shift_su


def shaken(model, seed=5):
    start = copy.deepcopy(model)
    perturb(start, seed=seed, site_rms=0.1, u_factor=1.2)
    return start


@pytest.mark.parametrize("name", ["fecl_r3c", "nacl_fm3m"])
def test_shaken_start_returns(shelx_stem, name):
    check_shaken(shelx_stem, name)


@slow
@pytest.mark.parametrize("name", ["sucrose_p21", "bjk_p21212", "ru_p21c"])
def test_shaken_start_returns_slow(shelx_stem, name):
    check_shaken(shelx_stem, name)


# fecl: Cl1 and Cl1' (PART 1 and 2 of the perchlorate, EADP, 0.002 A apart
# on the same 2-fold axis) lie in a flat valley: from every shaken start
# tried (seeds 1, 2, 3, 5) they settle 0.023 and 0.081 A from the deposited
# model's refined positions with wR2 lower by 1e-5; every other atom returns.
# The data do not tell the two y apart: their s.u.'s are 1.2 and 4.1 (in
# fractions of b), so those differences are 0.001 s.u. (measured, seed 5).
VALLEY = {"fecl_r3c": {"CL1", "CL1'"}}


def check_shaken(shelx_stem, name):
    reference = smtbx.read_shelx(shelx_stem(name))
    data = LeastSquares(reference, n_threads=2).data
    before = LeastSquares(reference, data=data, n_threads=2).run(30)
    start = shaken(reference)
    refinement = LeastSquares(start, data=data, n_threads=2).run(30)
    assert refinement.converged, refinement.reason
    assert refinement.figures.r1_gt == pytest.approx(before.figures.r1_gt, abs=1e-4)
    assert refinement.figures.wr2 == pytest.approx(before.figures.wr2, abs=1e-4)
    skip = VALLEY.get(name, set())
    heavy = np.array([not reference.is_hydrogen(i) and s.label.upper() not in skip
                      for i, s in enumerate(reference.scatterers)])
    # in a polar space group the origin floats along the polar axes (no
    # restraint holds it yet): compare after removing the mean shift there
    difference = start.sites_frac - reference.sites_frac
    rotations = np.asarray(reference.space_group.rotations, dtype=np.float64)
    _, singular, vt = np.linalg.svd((rotations - np.eye(3)).reshape(-1, 3))
    polar = vt[np.sum(singular > 1e-9):]
    if polar.size:
        mean = difference[heavy].mean(axis=0)
        difference -= (mean @ polar.T) @ polar
    cartesian = difference @ np.asarray(reference.cell.orthogonalisation).T
    errors = np.linalg.norm(cartesian, axis=1)[heavy]
    assert np.sqrt(np.mean(errors ** 2)) < 0.005


# C2/c: the demo's molecule with a chloride on the 2-fold axis (0, y, 1/4)
C2C = open(DEMO_MODEL).read().replace("LATT 1\nSYMM -X, 1/2+Y, 1/2-Z", "LATT 7\nSYMM -X, Y, 1/2-Z") \
    .replace("CELL 0.71073 7.2000 9.1000 11.4000 90.000 103.500 90.000",
             "CELL 0.71073 14.4000 9.1000 11.4000 90.000 103.500 90.000") \
    .replace("UNIT 28 32 4 2", "UNIT 56 64 8 4") \
    .replace("CL1   4    0.00000    0.00000    0.00000    10.50000",
             "CL1   4    0.00000    0.61000    0.25000    10.50000")


def c2c_model(tmp_path):
    text = C2C
    # halve x of the molecule for the doubled a axis
    lines = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 5 and words[0][0] in "CHO" and words[0] not in ("CELL", "CL1") \
                and words[1] in "123" and not line.startswith(" "):
            x = float(words[2]) / 2
            line = line.replace(words[2], f"{x:.5f}", 1)
        lines.append(line)
    path = tmp_path / "c2c.ins"
    path.write_text("\n".join(lines) + "\n")
    return smtbx.read_ins(path)


@pytest.mark.parametrize("setting", ["P21/c", "C2/c"])
def test_synthetic_round_trip(tmp_path, setting):
    truth = smtbx.read_ins(DEMO_MODEL) if setting == "P21/c" else c2c_model(tmp_path)
    special = [s.label for s in truth.scatterers if s.site_order > 1]
    assert special == ["CL1"]
    data = simulate(truth, seed=3)
    model = copy.deepcopy(truth)
    perturb(model, seed=4)
    least_squares = LeastSquares(model, data=data, n_threads=2)
    refinement = least_squares.run(20)
    assert refinement.converged, refinement.reason
    # refined coordinates within 3 s.u. of the truth (>= 99 %)
    graph = least_squares.graph
    true_graph = LeastSquares(copy.deepcopy(truth), data=data).graph
    su = np.asarray(parameter_sus(refinement, least_squares))
    index = [j for j, _, _ in site_parameters(graph, include_hydrogen=True)]
    deviation = np.abs(graph.x[index] - true_graph.x[index]) / su[index]
    assert np.mean(deviation <= 3) >= 0.99, deviation
    # R1 no worse than 1.05 x that of the true model against the same data
    reference = LeastSquares(copy.deepcopy(truth), data=data).run(0)
    assert refinement.figures.r1_gt <= 1.05 * reference.figures.r1_gt
    assert refinement.figures.r1_gt < 0.08


def test_refinement_on_f(tmp_path):
    truth = smtbx.read_ins(DEMO_MODEL)
    data = simulate(truth, seed=3)
    model = copy.deepcopy(truth)
    perturb(model, seed=4)
    refinement = LeastSquares(model, data=data, target="fc", n_threads=2).run(20)
    assert refinement.converged
    heavy = np.array([not truth.is_hydrogen(i) for i in range(len(truth.scatterers))])
    assert np.sqrt(np.mean(site_errors_angstrom(model, truth)[heavy] ** 2)) < 0.01
    # F and sigma(F) from F^2: sigma/(2F) for strong data, finite for negative F^2
    fo, sig = f_from_f_sq(np.array([100.0, -4.0, 0.0]), np.array([2.0, 2.0, 2.0]))
    assert fo[0] == 10.0 and sig[0] == pytest.approx(0.1, rel=0.01)
    assert fo[1] == 0 and np.all(np.isfinite(sig)) and np.all(sig > 0)


def test_suggested_weights_flatten_the_variance():
    # data with known errors: sigma^2 + (a P)^2 + b P with a = 0.04, b = 2
    rng = np.random.default_rng(1)
    fc_sq = rng.exponential(200.0, 20000)
    sigma = np.sqrt(fc_sq + 1.0)
    p = fc_sq                       # P = (Fo^2 + 2Fc^2)/3 ~ Fc^2
    true = np.sqrt(sigma ** 2 + (0.04 * p) ** 2 + 2.0 * p)
    fo_sq = fc_sq + true * rng.standard_normal(fc_sq.size)
    a, b = suggest_weighting(fo_sq, sigma, fc_sq, 1.0, 10)
    assert a == pytest.approx(0.04, abs=0.006)
    assert b == pytest.approx(2.0, abs=1.0)
    # a scale K: the same answer with Fo^2 and sigma multiplied by K
    a2, b2 = suggest_weighting(4 * fo_sq, 4 * sigma, fc_sq, 4.0, 10)
    assert (a2, b2) == pytest.approx((a, b), rel=1e-6)


def break_c4_after_the_start(monkeypatch, least_squares, damage="npd"):
    """Make every step away from the current x unusable at C4: ``"npd"``
    gives it a U that is not positive definite (U12 = 10 U11), ``"nan"`` a
    NaN occupancy; returns that starting x."""
    start = least_squares.graph.x.copy()
    labels = [s.label for s in least_squares.model.scatterers]
    move = LeastSquares._move_to

    def broken(self, x):
        move(self, x)
        if not np.array_equal(x, start):
            c4 = labels.index("C4")
            if damage == "npd":
                u = self.graph.u_index[c4]
                self.graph.y[u[3]] = 10 * self.graph.y[u[0]]
            else:
                self.graph.y[self.graph.occupancy_index[c4]] = np.nan

    monkeypatch.setattr(LeastSquares, "_move_to", broken)
    return start


def test_divergence_names_the_atom(monkeypatch):
    truth = smtbx.read_ins(DEMO_MODEL)
    data = simulate(truth)
    model = copy.deepcopy(truth)
    perturb(model)
    least_squares = LeastSquares(model, data=data, n_threads=2)
    start = break_c4_after_the_start(monkeypatch, least_squares)
    with pytest.raises(RefinementDiverged, match="C4") as info:
        least_squares.run(5)
    assert info.value.atom == "C4"
    # the model keeps the last usable parameters
    assert np.all(np.isfinite(model.sites_frac))
    assert np.array_equal(least_squares.graph.x, start)


def test_a_nan_occupancy_stops_the_refinement_naming_the_atom(monkeypatch):
    truth = smtbx.read_ins(DEMO_MODEL)
    model = copy.deepcopy(truth)
    perturb(model)
    least_squares = LeastSquares(model, data=simulate(truth), n_threads=2)
    start = break_c4_after_the_start(monkeypatch, least_squares, damage="nan")
    with pytest.raises(RefinementDiverged, match=r"atom 'C4' \(C\): occupancy is not finite: nan") \
            as info:
        least_squares.run(5)
    assert info.value.atom == "C4"
    assert np.array_equal(least_squares.graph.x, start)


def test_an_atom_npd_as_read_is_refined_and_one_made_npd_stops(monkeypatch):
    """SHELXL refines a model with an atom whose U is not positive definite
    as read (flagging it); so does smtbx, and the data bring the U back.
    A refinement that makes another atom NPD still stops, naming it."""
    truth = smtbx.read_ins(DEMO_MODEL)
    data = simulate(truth)
    labels = [s.label for s in truth.scatterers]

    def npd_model():
        model = copy.deepcopy(truth)
        perturb(model)
        cl1 = model.scatterers[labels.index("CL1")]
        cl1.u_cif = cl1.u_cif.copy()
        cl1.u_cif[3] = 0.04                               # U12² > U11 U22
        assert sftbx.not_positive_definite([cl1.u_cif])[0]
        return model, cl1

    model, cl1 = npd_model()
    refinement = LeastSquares(model, data=data, n_threads=2).run(20)
    assert refinement.converged, refinement.reason
    assert not sftbx.not_positive_definite([cl1.u_cif])[0]
    np.testing.assert_allclose(cl1.u_cif, truth.scatterers[labels.index("CL1")].u_cif, atol=0.004)
    assert refinement.figures.r1_gt < 0.06

    model, _ = npd_model()
    least_squares = LeastSquares(model, data=data, n_threads=2)
    break_c4_after_the_start(monkeypatch, least_squares)
    with pytest.raises(RefinementDiverged, match="'C4'.*non-positive definite") as info:
        least_squares.run(5)
    assert info.value.atom == "C4"


def test_reflection_data_without_observations():
    # LeastSquares takes ready reflections (no .hkl needed)
    truth = smtbx.read_ins(DEMO_MODEL)
    data = simulate(truth)
    assert isinstance(data, ReflectionData) and truth.observations is None
    result = LeastSquares(truth, data=data).run(0)
    assert result.cycles == [] and result.figures.r1_gt < 0.06


def _gauss_newton_decrease(model, riding):
    """gᵀ N⁻¹ g at the model as read: the decrease of Σ w r² + restraints one
    Gauss–Newton step promises (zero at a fixed point of the cycles)."""
    ls = LeastSquares(copy.deepcopy(model), n_threads=2, riding=riding)
    ls._ride(riding == "shelxl")
    equations, _, _ = ls.build()
    n = len(ls.graph.x)
    g = equations.right_hand_side()[:n]
    return float(g @ np.linalg.solve(equations.normal_matrix()[:n, :n], g))


@pytest.mark.parametrize("name", ["bjk_p21212", "p31c_sad", "ru_p21c"])
def test_shelxl_models_are_fixed_points_of_shelxl_riding_model(reduced_set, name):
    # SHELXL's deposited models (converged, max shift/s.u. <= 0.001) are
    # near stationary for the cycles of its riding model, not for the exact
    # riding derivatives, whose step still moves p31c's amine N by 0.7 s.u.
    # Measured, exact against SHELXL's riding model: bjk 4.10 and 0.36,
    # p31c 4.55 and 0.87, ru 2.64 and 1.16 (what remains is the data's and
    # the restraints' own difference from SHELXL's).
    model, _ = reduced_set(name)
    assert _gauss_newton_decrease(model, "shelxl") < 0.5 * _gauss_newton_decrease(model, "exact")


# SHELXL's suggested WGHT a (after END in the deposited .res)
SHELXL_SUGGESTED = {
    "sucrose_p21": 0.0388, "sh2185_p212121": 0.0370, "p31c_sad": 0.0348, "bjk_p21212": 0.0294,
    "ni_i43d": 0.0416, "alga_p21c": 0.0491, "hmamg_p21c": 0.0418, "cc_invtwin": 0.0518,
}


@pytest.mark.parametrize("name", sorted(SHELXL_SUGGESTED))
def test_suggested_weights_on_shelxl_models(reduced_set, name):
    # at SHELXL's deposited models, a within 0.003 of the a SHELXL suggested
    # (measured 0.0005-0.0026 on these eight; elsewhere up to 0.029, musc_c2c).
    # b differs more (p31c_sad 0.86 against 0.63): SHELXL's search is known
    # only as far as cctbx's smtbx reproduces it.  Before the grid's origin
    # rule was cctbx's, p31c_sad got a, b = 0.0286, 5.49.
    model, data = reduced_set(name)
    figures, _, fc_sq, _ = starting_figures(model, data, n_threads=2)
    a, b = suggest_weighting(data.fo_sq, data.sig_fo_sq, fc_sq, figures.scale,
                             figures.n_parameters, model.instructions.weighting)
    assert abs(a - SHELXL_SUGGESTED[name]) < 0.003
