"""LIST 4 and LIST 6 .fcf files read back with gemmi, values to printed
precision, symmetry operations, bad input."""

import gemmi
import numpy as np
import pytest

import sgtbx
from smtbx.errors import OutputError
from smtbx.fcf import write_fcf


def _data():
    rng = np.random.default_rng(3)
    hkl = rng.integers(-5, 6, (20, 3))
    f_calc = rng.normal(size=20) * 30 + 1j * rng.normal(size=20) * 30
    fo_sq = np.abs(f_calc) ** 2 * 2.0 + rng.normal(size=20)
    return hkl, fo_sq, np.sqrt(np.abs(fo_sq)) + 1, f_calc


@pytest.mark.parametrize("code", [4, 6])
def test_fcf_round_trips_through_gemmi(tmp_path, code):
    uc = sgtbx.UnitCell(7.1, 8.2, 9.3, 90, 101.5, 90)
    sg = sgtbx.SpaceGroup("P 1 21/c 1")
    hkl, fo_sq, sig, f_calc = _data()
    path = tmp_path / "x.fcf"
    write_fcf(path, code, "x", uc, sg, hkl, fo_sq, sig, f_calc, 2.0)
    block = gemmi.cif.read(str(path)).sole_block()
    assert block.find_value("_shelx_refln_list_code") == str(code)
    assert float(block.find_value("_cell_angle_beta")) == pytest.approx(101.5)
    ops = list(block.find_loop("_space_group_symop_operation_xyz"))
    assert {gemmi.Op(gemmi.cif.as_string(o)).triplet() for o in ops} == \
        {op.triplet() for op in gemmi.SpaceGroup("P 1 21/c 1").operations()}
    h = np.array([[int(v) for v in block.find_loop(f"_refln_index_{c}")] for c in "hkl"]).T
    np.testing.assert_array_equal(h, hkl)
    num = lambda tag: np.array([float(v) for v in block.find_loop(tag)])
    if code == 4:
        np.testing.assert_allclose(num("_refln_F_squared_calc"), 2.0 * np.abs(f_calc) ** 2, atol=0.005)
        np.testing.assert_allclose(num("_refln_F_squared_meas"), fo_sq, atol=0.005)
        np.testing.assert_allclose(num("_refln_F_squared_sigma"), sig, atol=0.005)
    else:
        np.testing.assert_allclose(num("_refln_F_squared_meas"), fo_sq / 2.0, atol=0.005)
        np.testing.assert_allclose(num("_refln_F_calc"), np.abs(f_calc), atol=0.005)
        phase = num("_refln_phase_calc")
        back = num("_refln_F_calc") * np.exp(1j * np.radians(phase))
        np.testing.assert_allclose(back, f_calc, atol=0.01 + 0.001 * np.abs(f_calc).max())


def test_fcf_bad_input(tmp_path):
    uc = sgtbx.UnitCell(7.1, 8.2, 9.3, 90, 101.5, 90)
    sg = sgtbx.SpaceGroup("P 1 21/c 1")
    hkl, fo_sq, sig, f_calc = _data()
    with pytest.raises(OutputError, match="LIST 5"):
        write_fcf(tmp_path / "x.fcf", 5, "x", uc, sg, hkl, fo_sq, sig, f_calc, 1.0)
    with pytest.raises(OutputError, match="fo_sq must hold 20"):
        write_fcf(tmp_path / "x.fcf", 4, "x", uc, sg, hkl, fo_sq[:3], sig, f_calc, 1.0)
    with pytest.raises(OutputError, match="cannot write"):
        write_fcf(tmp_path / "missing" / "x.fcf", 4, "x", uc, sg, hkl, fo_sq, sig, f_calc, 1.0)
