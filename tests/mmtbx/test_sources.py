"""The F_calc/F_mask source (sftbx's FFT path and solvent mask), checked
against gemmi."""

import gemmi
import numpy as np

import sgtbx
from mmtbx import compute_f_calc_and_mask


def test_f_calc_matches_gemmi_direct_summation(set_5e5z):
    structure, data, f_calc, _ = set_5e5z
    calc = gemmi.StructureFactorCalculatorX(structure.cell)
    sample = np.arange(0, len(data.hkl), 7)
    direct = np.array([calc.calculate_sf_from_model(structure[0], [int(x) for x in data.hkl[i]])
                       for i in sample])
    assert np.sum(np.abs(f_calc[sample] - direct)) / np.sum(np.abs(direct)) < 2e-3


def test_f_mask_obeys_the_space_group(set_5e5z):
    """F(hR) = F(h) exp(-2πi h·t) for (R, t) in P 1 21 1 (phase convention
    F = Σ exp(+2πi h·x))."""
    structure, data, _, _ = set_5e5z
    sg = data.space_group
    rot, tran = sg.rotations[1], sg.translations[1]
    hkl = data.hkl[:60]
    mates = np.ascontiguousarray(hkl @ rot, dtype=np.int32)
    f_calc, f_mask = compute_f_calc_and_mask(structure, data.unit_cell, sg, hkl, data.d_min)
    f_calc2, f_mask2 = compute_f_calc_and_mask(structure, data.unit_cell, sg, mates, data.d_min)
    shift = np.exp(-2j * np.pi * (hkl @ tran))
    assert np.allclose(f_mask2, f_mask * shift, atol=1e-3 * np.abs(f_mask).max())
    assert np.allclose(f_calc2, f_calc * shift, atol=1e-4 * np.abs(f_calc).max())
    # a solvent mask: F_mask(000) is the solvent volume, between 0 and V
    f000 = compute_f_calc_and_mask(structure, data.unit_cell, sg, np.zeros((1, 3), np.int32), data.d_min)[1]
    assert 0 < f000[0].real < data.unit_cell.volume


def test_atom_on_a_special_position_counts_once():
    """One carbon on the 2-fold of P 1 2 1 with chemical occupancy 1:
    |F| = f0(s) exp(-B s²/4), as cctbx counts it (DESIGN.md §2)."""
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(10, 11, 12, 90, 100, 90)
    st.spacegroup_hm = "P 1 2 1"
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    res = gemmi.Residue()
    res.name = "XX"
    res.seqid = gemmi.SeqId(1, " ")
    atom = gemmi.Atom()
    atom.name, atom.element, atom.occ, atom.b_iso = "C1", gemmi.Element("C"), 1.0, 10.0
    atom.pos = st.cell.orthogonalize(gemmi.Fractional(0.0, 0.3, 0.0))
    res.add_atom(atom)
    chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    cell = sgtbx.UnitCell(10, 11, 12, 90, 100, 90)
    sg = sgtbx.SpaceGroup("P 1 2 1")
    hkl = sgtbx.complete_set(cell, sg, 2.0)
    f_calc, _ = compute_f_calc_and_mask(st, cell, sg, hkl, 2.0)
    s_sq = cell.s_squared(hkl)
    coef = gemmi.Element("C").it92
    f0 = np.array([coef.calculate_sf(x / 4) for x in s_sq]) * np.exp(-10.0 * s_sq / 4)
    # the FFT's contract is an amplitude R <= 1e-3 against direct summation;
    # an atom counted twice would give R = 1
    assert np.sum(np.abs(np.abs(f_calc) - f0)) / np.sum(f0) < 1e-3
