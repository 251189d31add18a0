"""Twinned refinement through smtbx.refine (TWIN/BASF on HKLF 4, HKLF 5)
with TwinnedIntensities: the shared twins against SHELXL's figures, and a
synthetic merohedral twin with extinction whose fraction and x come back.

The real twins take a few seconds each; they run when SMTBX_SLOW=1.
"""

import copy
import os

import numpy as np
import pytest

import smtbx
from smtbx.cif import y_covariance
from smtbx.demo import DEMO_MODEL, perturb, simulate
from smtbx.refine import LeastSquares
from smtbx.twinning import twin_fractions_su

slow = pytest.mark.skipif(os.environ.get("SMTBX_SLOW") != "1",
                          reason="full refinement of a larger set: set SMTBX_SLOW=1")


def basf_and_sus(least_squares, refinement):
    graph = least_squares.graph
    cov = y_covariance(graph.jacobian, refinement.equations.covariance(), graph.basf_index)
    return graph.y[graph.basf_index], np.sqrt(np.diag(cov)), cov


@slow
def test_cc_invtwin_reaches_shelxl(small_data):
    """Inversion twin (bare TWIN, BASF 0.15695): SHELXL's R1 0.0340 and BASF
    0.157 within 2 s.u.'s (the CIF's Flack 0.16(10))."""
    model = smtbx.read_shelx(small_data / "cc_invtwin" / "disorder")
    least_squares = LeastSquares(model)
    refinement = least_squares.run(30)
    assert refinement.converged, refinement.reason
    assert abs(refinement.figures.r1_gt - 0.0340) <= 0.002
    basf, su, cov = basf_and_sus(least_squares, refinement)
    assert abs(basf[0] - 0.157) < 2 * su[0] and 0 < su[0] < 0.1
    assert model.instructions.basf == pytest.approx(basf.tolist())
    fractions, fraction_sus = twin_fractions_su(basf, cov)
    assert fractions.sum() == pytest.approx(1.0)
    assert fraction_sus[0] == pytest.approx(su[0])


@slow
def test_twin5_p4_reaches_shelxl(small_data):
    """HKLF 5, three components (two BASF), RIGU: SHELXL's R1 0.1203."""
    model = smtbx.read_shelx(small_data / "twin5_p4" / "P-4_NotDetwinned_12")
    least_squares = LeastSquares(model)
    refinement = least_squares.run(60)
    assert refinement.converged, refinement.reason
    assert abs(refinement.figures.r1_gt - 0.1203) <= 0.003
    basf, su, _ = basf_and_sus(least_squares, refinement)
    assert np.all(np.abs(basf - [0.30067, 0.28100]) < 3 * su) and np.all(su < 0.02)


@slow
@pytest.mark.xfail(strict=True, reason=(
    "measured: at convergence wR2 0.3214 (R1 0.1195, GoF 3.110, 152 parameters, 126 "
    "restraints); the 0.3266 of the issue is cctbx's smtbx after 30 unconverged cycles "
    "(REFERENCE.md), SHELXL's own wR2 is not recorded; unresolved"))
def test_twin5_p4_wr2_of_the_reference(small_data):
    model = smtbx.read_shelx(small_data / "twin5_p4" / "P-4_NotDetwinned_12")
    refinement = LeastSquares(model).run(60)
    assert abs(refinement.figures.wr2 - 0.3266) <= 0.005


@slow
def test_twin5_p21n_reaches_shelxl(shelx_stem):
    """HKLF 5, two components, every measured reflection in batch 2, 7497
    restraints, F4_2 not positive definite as read (SHELXL refines it,
    flagging it NPD; so does smtbx).  The end: SHELXL's R1 0.0885 within
    0.003 and wR2 within 0.005 of the start's 0.2263 (REFERENCE.md), BASF
    SHELXL's 0.94335 within 3 s.u.'s.  Measured: 3 cycles, R1 0.0885, wR2
    0.2263, BASF 0.945(3)."""
    model = smtbx.read_shelx(shelx_stem("twin5_p21n"))
    assert [w.line for w in model.warnings if "NPD" in w.message] == [186]
    least_squares = LeastSquares(model)
    refinement = least_squares.run(30)
    assert refinement.converged, refinement.reason
    assert abs(refinement.figures.r1_gt - 0.0885) <= 0.003
    assert abs(refinement.figures.wr2 - 0.2263) <= 0.005
    assert refinement.figures.n_reflections == 10418 and least_squares.n_restraints == 7497
    basf, su, cov = basf_and_sus(least_squares, refinement)
    assert abs(basf[0] - 0.94335) < 3 * su[0] and 0 < su[0] < 0.01
    fractions, fraction_sus = twin_fractions_su(basf, cov)
    assert fractions.tolist() == pytest.approx([1 - basf[0], basf[0]])
    assert fraction_sus.tolist() == pytest.approx([su[0], su[0]])


def twinned_demo(tmp_path, basf, exti):
    """The demo model with β = 90° (so that 2 along a, h -k -l, is a lattice
    symmetry outside 2/m), TWIN 1 0 0 0 -1 0 0 0 -1 and EXTI."""
    text = open(DEMO_MODEL).read()
    text = text.replace("90.000 103.500 90.000", "90.000 90.000 90.000")
    text = text.replace("FVAR", f"TWIN 1 0 0 0 -1 0 0 0 -1 2\nBASF {basf}\nEXTI {exti}\nFVAR", 1)
    path = tmp_path / "twin.ins"
    path.write_text(text)
    return smtbx.read_ins(path)


def test_synthetic_merohedral_twin_with_extinction(tmp_path):
    truth = twinned_demo(tmp_path, 0.3, 0.05)
    data = simulate(truth, seed=5)
    model = copy.deepcopy(truth)
    perturb(model, seed=6)
    model.instructions.basf = [0.1]
    model.instructions.exti = 0.0
    least_squares = LeastSquares(model, data=data)
    refinement = least_squares.run(20)
    assert refinement.converged, refinement.reason
    basf, su, _ = basf_and_sus(least_squares, refinement)
    assert abs(basf[0] - 0.3) < 3 * su[0] and su[0] < 0.02
    graph = least_squares.graph
    e = graph.extinction_index
    exti_su = float(np.sqrt(y_covariance(graph.jacobian, refinement.equations.covariance(),
                                         [e])[0, 0]))
    assert abs(graph.y[e] - 0.05) < 3 * exti_su and exti_su < 0.01
    assert model.instructions.exti == pytest.approx(graph.y[e])
    # the truth against the same data is no better than the refined model
    reference = LeastSquares(copy.deepcopy(truth), data=data).run(0)
    assert refinement.figures.wr2 <= reference.figures.wr2 * 1.001


def test_twinned_data_on_f_are_refused(tmp_path):
    model = twinned_demo(tmp_path, 0.3, 0.0)
    data = simulate(model)
    with pytest.raises(smtbx.UnsupportedInstruction, match="F²"):
        LeastSquares(model, data=data, target="fc")
