"""SpaceGroup against gemmi's tables, for every setting gemmi lists."""

import itertools

import gemmi
import numpy as np
import pytest

from sgtbx import DEN, SpaceGroup, SymmetryError

SETTINGS = [entry.xhm() for entry in gemmi.spacegroup_table()]
HKL6 = np.array(list(itertools.product(range(-6, 7), repeat=3)), dtype=np.int32)


def _gemmi_ops(xhm):
    return gemmi.find_spacegroup_by_name(xhm).operations()


def _op_set(rotations, numerators):
    return {(tuple(r.ravel()), tuple(int(v) % DEN for v in t)) for r, t in zip(rotations, numerators)}


@pytest.mark.parametrize("xhm", SETTINGS)
def test_setting_matches_gemmi(xhm):
    sg = SpaceGroup(xhm)
    entry = gemmi.find_spacegroup_by_name(xhm)
    ops = entry.operations()
    expected = {(tuple((np.array(op.rot) // DEN).ravel()), tuple(v % DEN for v in op.tran))
                for op in ops}
    assert _op_set(sg.rotations, sg.translation_numerators) == expected
    assert sg.order_z == len(expected)
    assert sg.order_p == len(ops.sym_ops)
    assert {tuple(c) for c in sg.centring_numerators} == {tuple(v % DEN for v in c) for c in ops.cen_ops}
    assert sg.is_centric == ops.is_centrosymmetric()
    assert sg.point_group == entry.point_group_hm()
    assert sg.laue_class == entry.laue_str()
    assert sg.crystal_system == entry.crystal_system_str()
    assert sg.number == entry.number and sg.xhm == xhm
    assert sg.is_chiral == entry.is_sohncke()
    # reciprocal-space flags for every |h|,|k|,|l| <= 6
    np.testing.assert_array_equal(sg.absent_flags(HKL6), ops.systematic_absences(HKL6))
    np.testing.assert_array_equal(sg.centric_flags(HKL6), ops.centric_flag_array(HKL6))
    np.testing.assert_array_equal(sg.epsilons(HKL6), ops.epsilon_factor_without_centering_array(HKL6))
    np.testing.assert_array_equal(sg.epsilons(HKL6, include_centring=True), ops.epsilon_factor_array(HKL6))
    # the coset representatives sftbx loops over
    assert len(sg.primitive_rotations) * (2 if sg.is_centric else 1) == sg.order_p
    if sg.is_centric:
        t_inv = sg.inversion_translation
        for r, t in zip(sg.primitive_rotations, sg.primitive_translations):
            assert round(np.linalg.det(r)) == 1
            partner = (tuple((-r).ravel()), tuple(int(round(v)) % DEN for v in (-t + t_inv) * DEN))
            assert partner in _op_set(sg.symmetry_rotations, sg.symmetry_translation_numerators)


def test_symbols_numbers_and_equality():
    assert SpaceGroup("P21/c") == SpaceGroup("P 1 21/c 1") == SpaceGroup(14) == SpaceGroup("14")
    assert SpaceGroup("P 1 21/n 1") != SpaceGroup("P 1 21/c 1")
    assert SpaceGroup("R -3 :H").order_z == 18 and SpaceGroup("R -3 :R").order_z == 6
    fd1, fd2 = SpaceGroup("F d -3 m :1"), SpaceGroup("F d -3 m :2")
    assert fd1.order_z == fd2.order_z == 192
    np.testing.assert_allclose(fd1.inversion_translation, [0.25, 0.25, 0.25])
    np.testing.assert_allclose(fd2.inversion_translation, [0, 0, 0])
    assert SpaceGroup("P 63/m m c").point_group == "6/mmm"
    assert len({SpaceGroup("P 1"), SpaceGroup(1)}) == 1


def test_polar_and_chiral():
    p21 = SpaceGroup("P 1 21 1")
    assert p21.is_polar and p21.is_chiral
    assert len(p21.polar_directions) == 1
    np.testing.assert_allclose(np.abs(p21.polar_directions[0]), [0, 1, 0], atol=1e-12)
    pm = SpaceGroup("P 1 m 1")
    assert pm.is_polar and not pm.is_chiral and len(pm.polar_directions) == 2
    assert SpaceGroup("P 1").polar_directions.shape == (3, 3)
    assert not SpaceGroup("P 21 21 21").is_polar
    p6cc = SpaceGroup("P 6 c c")
    np.testing.assert_allclose(np.abs(p6cc.polar_directions[0]), [0, 0, 1], atol=1e-12)


def test_from_hall():
    sg = SpaceGroup.from_hall("  -P 2ybc  ")
    assert sg == SpaceGroup("P 1 21/c 1") and sg.number == 14
    shifted = SpaceGroup.from_hall(" C 2y (-x+z,x,y)")
    expected = gemmi.symops_from_hall("C 2y (-x+z,x,y)")
    assert shifted.order_z == len(list(expected))
    assert SpaceGroup.from_hall("-R 3").order_z == 18
    with pytest.raises(SymmetryError, match="Hall symbol"):
        SpaceGroup.from_hall("P 7q")
    with pytest.raises(SymmetryError, match="empty"):
        SpaceGroup.from_hall("   ")


def test_from_operations_closes_the_group():
    # SHELX-style: LATT 7 (C, centric) with SYMM -x, y, 1/2-z gives C2/c
    sg = SpaceGroup.from_operations(["x,y,z", "-x,y,-z+1/2", "-x,-y,-z", "x+1/2,y+1/2,z"])
    assert sg == SpaceGroup("C 1 2/c 1") and sg.number == 15
    pairs = SpaceGroup.from_operations([(np.eye(3), np.zeros(3)), (-np.eye(3), [0.5, 0.5, 0.5])])
    assert pairs.order_z == 2 and pairs.is_centric and pairs.number is None
    np.testing.assert_allclose(pairs.inversion_translation, [0.5, 0.5, 0.5])


def test_change_basis():
    # P 1 21/n 1 is P 1 21/c 1 with a' = a - c (gemmi's change of basis)
    p21n = SpaceGroup("P 1 21/n 1")
    cob = gemmi.find_spacegroup_by_name("P 1 21/n 1").basisop
    assert p21n.change_basis(cob.triplet()) == SpaceGroup("P 1 21/c 1")
    assert p21n.change_basis("x,y,z") == p21n


@pytest.mark.parametrize("bad", ["P 7", "X 1 2 1", "", "garbage"])
def test_unknown_symbols(bad):
    with pytest.raises(SymmetryError, match="unknown space-group symbol"):
        SpaceGroup(bad)


def test_bad_numbers_and_operations():
    with pytest.raises(SymmetryError, match="not in 1..230"):
        SpaceGroup(231)
    with pytest.raises(SymmetryError, match="cannot read the symmetry operation"):
        SpaceGroup.from_operations(["x,y,q"])
    with pytest.raises(SymmetryError, match="not crystallographic"):
        SpaceGroup.from_operations([(np.eye(3) * 0.5, np.zeros(3))])
    with pytest.raises(SymmetryError, match="shape"):
        SpaceGroup.from_operations([(np.eye(2), np.zeros(2))])
    with pytest.raises(SymmetryError):
        # a 5-fold rotation generates no crystallographic group
        SpaceGroup.from_operations(["y,-x+y,z", "x+1/5,y,z"])
