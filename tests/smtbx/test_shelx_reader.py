"""The SHELX reader on every real data set, and on the files' hazards."""

import gemmi
import numpy as np
import pytest

import smtbx
from smtbx import model as m

# name: (model file, atoms, H atoms, FVAR values, atoms on special positions,
#        space-group number, restraints by kind after residue expansion)
# Atom counts are README.md's.  Restraint counts are instructions after
# expansion: SADI_class makes one set from all residues of the class, any
# other class restraint one restraint per residue, SAME_class one per
# residue matched to the first of the class.
DATASETS = {
    "alga_p21c": ("p21c.res", 128, 24, 3, 0, 14,
                  {"DELU": 1, "DFIX": 3, "RIGU": 5, "SADI": 6, "SAME": 2, "SIMU": 3}),
    "bjk_p21212": ("bjk.res", 94, 42, 1, 0, 18, {"BUMP": 1, "RIGU": 1}),
    "caf2_fm3m": ("caf2.res", 2, 0, 1, 2, 225, {}),
    "cc_invtwin": ("disorder.res", 179, 105, 3, 0, 9,
                   {"FLAT": 2, "RIGU": 1, "SADI": 8, "SAME": 9, "SIMU": 1}),
    "ed_cinch_p21": ("shelxl.res", 22, 0, 1, 0, 4, {}),
    "exti_c2m": ("exti.res", 6, 0, 2, 6, 12, {}),
    "fecl_r3c": ("2240189.res", 12, 3, 2, 4, 167, {}),
    "gabipy_c2c": ("C2c_a.res", 168, 18, 2, 1, 15, {"FLAT": 2, "RIGU": 10, "SADI": 13, "SIMU": 10}),
    "hmamg_p21c": ("hma_mg.res", 21, 9, 1, 1, 14, {}),
    "musc_c2c": ("muscovite.res", 13, 1, 6, 2, 15, {"RIGU": 1}),
    "nacl_fm3m": ("NaCl.res", 2, 0, 1, 2, 225, {}),
    # REFERENCE.md counts 6 special positions: its harness also put C20
    # (PART -1, 0.1 Å from a 2-fold axis) on the axis; SHELXL does not for
    # negative PARTs, and neither do we.
    "ni_i43d": ("i43d.res", 65, 33, 4, 5, 220,
                {"DELU": 3, "DFIX": 3, "FLAT": 2, "SADI": 1, "SAME": 4, "SIMU": 3}),
    "p31c_sad": ("sad.res", 88, 49, 3, 11, 159,
                 {"DELU": 2, "DFIX": 4, "FLAT": 4, "RIGU": 2, "SADI": 6, "SAME": 2, "SIMU": 2}),
    "ru_p21c": ("05srv085.ins", 86, 43, 1, 0, 14, {}),
    "sh2185_p212121": ("sh2185.res", 59, 30, 2, 0, 19, {"DELU": 1, "FLAT": 2, "RIGU": 2, "SIMU": 1}),
    "sucrose_p21": ("zucker2.res", 45, 22, 1, 0, 4, {}),
    "thpp_p21n": ("thpp.ins", 18, 0, 3, 0, 14, {}),
    "twin5_p21n": ("NO_PF-F-PF_twin4_XPREP_a.res", 131, 0, 4, 0, 14, {"RIGU": 25, "SADI": 24, "SIMU": 25}),
    "twin5_p4": ("P-4_NotDetwinned_12.res", 18, 0, 2, 2, 81, {"RIGU": 1}),
}

# name: (hkl file, reflection lines (README.md), measured groups, terminated by 0 0 0, lines after it)
HKL = {
    "alga_p21c": ("p21c.hkl", 42975, 42975, True, 0),
    "bjk_p21212": ("bjk.hkl", 51774, 51774, True, 15),
    "caf2_fm3m": ("caf2.hkl", 5299, 5299, True, 0),
    "cc_invtwin": ("disorder.hkl", 86413, 86413, True, 2),
    "ed_cinch_p21": ("shelxl.hkl", 1950, 1950, True, 0),
    "exti_c2m": ("exti.hkl", 3381, 3381, True, 0),
    "fecl_r3c": ("2240189.hkl", 782, 782, False, 0),
    "gabipy_c2c": ("C2c_a.hkl", 102019, 102019, True, 1),
    "hmamg_p21c": ("hma_mg.hkl", 12589, 12589, False, 0),
    "musc_c2c": ("muscovite.hkl", 8422, 8422, True, 2),
    "nacl_fm3m": ("NaCl.hkl", 8578, 8578, True, 0),
    "ni_i43d": ("i43d.hkl", 116569, 116569, True, 0),
    "p31c_sad": ("sad.hkl", 35969, 35969, True, 0),
    "ru_p21c": ("05srv085.hkl", 27922, 27922, True, 0),
    "sh2185_p212121": ("sh2185.hkl", 17407, 17407, True, 14),
    "sucrose_p21": ("zucker2.hkl", 119065, 119065, True, 16),
    "thpp_p21n": ("thpp.hkl", 14205, 14205, True, 0),
    # 10707 groups, of which SHELXL drops the 289 whose components are all
    # systematically absent: 10418 used (README.md).
    "twin5_p21n": ("NO_PF-F-PF_twin4_XPREP_a.hkl", 19839, 10707, True, 0),
    "twin5_p4": ("P-4_NotDetwinned_12.hkl", 7197, 2399, False, 0),
}

# Warnings a data set is expected to produce, each one explained by the file.
EXPECTED_WARNINGS = {
    "musc_c2c": ["free variables 3, 4 are not used"],
    "ni_i43d": ["free variables 2, 3, 4 are not used"],
    # F4_2's U as SHELXL wrote it has a negative eigenvalue (NPD)
    "twin5_p21n": ["atom F4_2: its U is not positive definite (NPD)",
                   "EADP O1_5 O1_6: the file gives different U values"],
}

_cache = {}


def load(small_data, name):
    if name not in _cache:
        _cache[name] = smtbx.read_ins(small_data / name / DATASETS[name][0])
    return _cache[name]


def labels(mdl, refs):
    return [mdl.scatterers[r.index].label for r in refs]


def atom(mdl, label, residue=0):
    return mdl.scatterers[mdl.index(label, residue)]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_counts(small_data, name):
    _, n_atoms, n_h, n_fvar, n_special, sg_number, restraints = DATASETS[name]
    mdl = load(small_data, name)
    assert len(mdl.scatterers) == n_atoms
    assert sum(mdl.is_hydrogen(i) for i in range(n_atoms)) == n_h
    assert len(mdl.free_variables) == n_fvar
    assert sum(s.site_order > 1 for s in mdl.scatterers) == n_special
    assert mdl.space_group.number == sg_number
    assert mdl.restraint_counts() == restraints
    expected = EXPECTED_WARNINGS.get(name, [])
    assert len(mdl.warnings) == len(expected), [str(w) for w in mdl.warnings]
    for w, text in zip(mdl.warnings, expected):
        assert text in w.message


@pytest.mark.parametrize("name", sorted(HKL))
def test_hkl_counts(small_data, name):
    filename, n_lines, n_groups, terminated, trailing = HKL[name]
    mdl = load(small_data, name)
    obs = smtbx.read_hkl(small_data / name / filename, mdl.instructions.hklf)
    assert obs.n_lines == n_lines == len(obs.fo_sq) == len(obs.hkl)
    assert obs.hkl.dtype == np.int32 and obs.hkl.shape == (n_lines, 3)
    assert obs.n_groups == n_groups
    assert obs.terminated is terminated
    assert obs.trailing_lines == trailing
    assert obs.hklf == mdl.instructions.hklf.n
    assert np.all(obs.sig_fo_sq >= 0)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_site_orders_match_gemmi(small_data, name):
    """|G_site| for each atom agrees with gemmi's count of coinciding images
    (negative PARTs are never special, as in SHELXL)."""
    mdl = load(small_data, name)
    ss = gemmi.SmallStructure()
    ss.cell = mdl.cell.as_gemmi()
    ss.spacegroup_hall = mdl.space_group.hall
    ss.determine_and_set_spacegroup("h")
    ss.setup_cell_images()
    for s in mdl.scatterers:
        images = ss.cell.is_special_position(gemmi.Fractional(*s.site_frac), 0.1)
        assert s.site_order == (1 if s.part < 0 else images + 1), s.label


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_symmetry_from_latt_symm(small_data, name):
    """The group built from LATT and SYMM is the one gemmi finds for the same operations."""
    mdl = load(small_data, name)
    sg = mdl.space_group
    ops = gemmi.find_spacegroup_by_ops(gemmi.GroupOps([gemmi.Op(t) for t in sg.operation_triplets()]))
    assert ops.number == sg.number
    n_symm = len(mdl.symmetry.operations) + 1
    centring = {1: 1, 2: 2, 3: 3, 4: 4, 5: 2, 6: 2, 7: 2}[abs(mdl.symmetry.latt)]
    assert sg.order_z == n_symm * centring * (2 if mdl.symmetry.latt > 0 else 1)
    assert sg.is_centric == (mdl.symmetry.latt > 0)


def u_eq_textbook(cell, u_cif):
    """U_eq = 1/3 Σ_ij U^ij a*_i a*_j (a_i·a_j), written out from the cell parameters."""
    a, b, c, al, be, ga = cell.parameters
    ca, cb, cg = np.cos(np.radians([al, be, ga]))
    g = np.array([[a * a, a * b * cg, a * c * cb], [a * b * cg, b * b, b * c * ca],
                  [a * c * cb, b * c * ca, c * c]])
    rec = np.sqrt(np.diag(np.linalg.inv(g)))
    u11, u22, u33, u12, u13, u23 = u_cif
    u = np.array([[u11, u12, u13], [u12, u22, u23], [u13, u23, u33]])
    return float(np.sum(u * np.outer(rec, rec) * g) / 3)


def test_riding_u_is_multiple_of_parent_u_eq(small_data):
    mdl = load(small_data, "sucrose_p21")
    h1, c1 = atom(mdl, "H1"), mdl.index("C1")
    assert h1.u_parent == c1 and h1.u_codes[0] == m.ParameterCode("riding", 0, 1.2)
    assert h1.u_iso == pytest.approx(1.2 * u_eq_textbook(mdl.cell, mdl.scatterers[c1].u_cif), rel=1e-12)
    # hmamg: an H with free xyz and a riding U follows the previous atom, O1
    mdl = load(small_data, "hmamg_p21c")
    assert atom(mdl, "H1").u_parent == mdl.index("O1")
    riding = mdl.constraints_of_type(m.RidingU)
    assert len(riding) == 3


def test_uij_order_and_codes(small_data):
    mdl = load(small_data, "thpp_p21n")
    f1 = atom(mdl, "F1")
    # file: U11 U22 U33 U23 U13 U12 = 0.03596 0.02944 0.01904 -0.00761 -0.00298 -0.00009
    np.testing.assert_allclose(f1.u_cif, [0.03596, 0.02944, 0.01904, -0.00009, -0.00298, -0.00761])
    assert f1.occupancy == 1.0 and f1.occupancy_code == m.FIXED
    fv = mdl.free_variables
    n3, c3 = atom(mdl, "N3"), atom(mdl, "C3")
    assert n3.occupancy_code == m.ParameterCode("free_variable", 3, 1.0, False)
    assert c3.occupancy_code == m.ParameterCode("free_variable", 3, 1.0, True)
    assert n3.occupancy + c3.occupancy == pytest.approx(1.0)
    assert atom(mdl, "C7a").occupancy == pytest.approx(fv[1])
    assert atom(mdl, "C7b").occupancy == pytest.approx(1 - fv[1])
    assert [type(c) for c in mdl.constraints] == [m.SharedSite]
    assert labels(mdl, [m.AtomRef(i) for i in mdl.constraints[0].atoms]) == ["N3", "C3"]


def test_special_position_occupancy_is_chemical(small_data):
    mdl = load(small_data, "p31c_sad")
    n3 = atom(mdl, "N3")           # 10.33333 on a 3-fold axis
    assert n3.site_order == 3 and n3.occupancy == pytest.approx(0.99999)
    c1 = atom(mdl, "C1")           # 30.33333: fv(3) on a 3-fold axis
    assert c1.occupancy_code == m.ParameterCode("free_variable", 3, pytest.approx(0.99999), False)
    mdl = load(small_data, "fecl_r3c")
    assert atom(mdl, "FE1").site_order == 6 and atom(mdl, "FE1").occupancy == pytest.approx(1.0, abs=1e-4)
    cl1 = atom(mdl, "CL1")          # 20.5 on a 2-fold axis: fv(2) itself
    assert cl1.site_order == 2 and cl1.occupancy == pytest.approx(mdl.free_variables[1])
    mdl = load(small_data, "musc_c2c")
    m1 = atom(mdl, "M1")            # 60.5 on an inversion centre
    assert m1.site_order == 2 and m1.occupancy == pytest.approx(mdl.free_variables[5])
    assert atom(mdl, "K001").occupancy == pytest.approx(mdl.free_variables[1])


def test_negative_part_is_not_special(small_data):
    mdl = load(small_data, "bjk_p21212")
    for label in ("O13", "C39", "H39A"):
        s = atom(mdl, label)
        assert s.part == -1 and s.site_order == 1 and s.occupancy == pytest.approx(0.5)


def test_part_line_occupancy_overrides_atoms(small_data):
    mdl = load(small_data, "gabipy_c2c")
    o1 = atom(mdl, "O1", 5)                       # PART 1 10.357
    assert o1.part == 1 and o1.occupancy == pytest.approx(0.357) and o1.occupancy_code == m.FIXED
    assert atom(mdl, "O1", 8).occupancy == pytest.approx(0.3138)
    c1 = atom(mdl, "C1", 3)                       # PART -1 with 20.5 on the atom
    assert c1.part == -1 and c1.residue_class == "DFB"
    assert c1.occupancy_code == m.ParameterCode("free_variable", 2, 0.5, False)
    mdl = load(small_data, "twin5_p4")                # PART 1 21, atoms 11.0
    assert atom(mdl, "O1").occupancy == pytest.approx(0.8)
    assert atom(mdl, "O1").occupancy_code.free_variable == 2


def test_residue_qualified_names_and_classes(small_data):
    mdl = load(small_data, "gabipy_c2c")
    assert mdl.residues[3] == "DFB" and mdl.residues[5] == "CCF3"
    shared = mdl.constraints_of_type(m.SharedAdp)
    assert len(shared) == 21
    first = shared[0]
    assert [(mdl.scatterers[i].label, mdl.scatterers[i].residue_number) for i in first.atoms] == \
        [("C4", 3), ("C3", 12)]
    three = [c for c in shared if len(c.atoms) == 3][0]
    assert [mdl.scatterers[i].residue_number for i in three.atoms] == [5, 8, 9]
    # SADI_CCF3 O1 C1: one set of the O1-C1 distances of all eight CCF3 residues
    sadi = [r for r in mdl.restraints if r.kind == "SADI"
            and {tuple(labels(mdl, p)) for p in r.groups} == {("O1", "C1")}]
    assert len(sadi) == 1 and len(sadi[0].groups) == 8
    assert sorted(mdl.scatterers[p[0].index].residue_number for p in sadi[0].groups) == [4, 5, 6, 7, 8, 9, 10, 11]
    # FLAT 0.01 C1_3 > F3_3: the range inside residue 3, no hydrogens
    flat = [r for r in mdl.restraints if r.kind == "FLAT"][0]
    assert labels(mdl, flat.groups[0]) == ["C1", "C2", "C3", "C4", "C5", "C6", "F1", "F2", "F3"]
    assert {mdl.scatterers[a.index].residue_number for a in flat.groups[0]} == {3}
    assert flat.sigmas == (0.01,)


def test_residue_class_same_and_defs(small_data):
    mdl = load(small_data, "alga_p21c")
    same = [r for r in mdl.restraints if r.kind == "SAME"]
    # SAME_CCF3 O1 > F9: residues 4, 1, 2 are CCF3 (3 is CF3); the first is the reference
    assert [(mdl.scatterers[r.groups[0][0].index].residue_number,
             mdl.scatterers[r.groups[1][0].index].residue_number) for r in same] == [(4, 1), (4, 2)]
    assert len(same[0].groups[0]) == 14
    assert same[0].sigmas == pytest.approx((0.0234, 0.0468))    # DEFS sd before it
    delu = [r for r in mdl.restraints if r.kind == "DELU"][0]    # before DEFS
    assert delu.all_atoms and delu.sigmas == (0.04, 0.04)
    simu = [r for r in mdl.restraints if r.kind == "SIMU"]
    assert simu[0].sigmas == pytest.approx((0.0456, 0.0912)) and simu[0].dmax == 2.0
    rigu = [r for r in mdl.restraints if r.kind == "RIGU"]           # RIGU_* O1 > F9
    assert sorted(mdl.scatterers[r.groups[0][0].index].residue_number for r in rigu) == [0, 1, 2, 3, 4]
    dfix = [r for r in mdl.restraints if r.kind == "DFIX"]
    assert all(r.target == 1.44 and r.sigmas == (0.02,) for r in dfix)


def test_ranges_and_same_following_atoms(small_data):
    mdl = load(small_data, "ni_i43d")
    same = [r for r in mdl.restraints if r.kind == "SAME"]
    # SAME C20 C25 < C21 C26, matched with the non-H atoms that follow it
    assert labels(mdl, same[1].groups[0]) == ["C20", "C25", "C24", "C23", "C22", "C21", "C26"]
    assert labels(mdl, same[1].groups[1]) == ["C20", "C21", "C22", "C23", "C24", "C25", "C26"]
    assert labels(mdl, same[0].groups[0]) == ["C21", "C22", "C23", "C24", "C25", "C20"]
    simu = [r for r in mdl.restraints if r.kind == "SIMU"][0]    # SIMU 0.03 C20 > C26
    assert labels(mdl, simu.groups[0]) == ["C20", "C21", "C22", "C23", "C24", "C25", "C26"]
    assert simu.sigmas == pytest.approx((0.03, 0.06))
    mdl = load(small_data, "p31c_sad")
    same = [r for r in mdl.restraints if r.kind == "SAME"][0]    # SAME N1 > C3 before N1'
    assert labels(mdl, same.groups[0]) == ["N1", "C1", "C2", "C3"]
    assert labels(mdl, same.groups[1]) == ["N1'", "C1'", "C2'", "C3'"]


def test_part_qualified_names(small_data):
    mdl = load(small_data, "cc_invtwin")
    sadi = [r for r in mdl.restraints if r.kind == "SADI"][0]    # SADI N4A^a Si2A^a N4A^a Si2B^b ...
    assert [[x.upper() for x in labels(mdl, p)] for p in sadi.groups] == \
        [["N4A", "SI2A"], ["N4A", "SI2B"], ["N4B", "SI2A"], ["N4B", "SI2B"]]
    assert sadi.sigmas == (0.02,)
    # the SADI listing SHELXL wrote after END is not read
    lines = (small_data / "cc_invtwin" / "disorder.res").read_text().splitlines()
    end = next(i for i, line in enumerate(lines, 1) if line.split()[:1] == ["END"])
    assert any(line.startswith("SADI") for line in lines[end:])
    assert max(r.line for r in mdl.restraints) < end


def test_riding_groups_named_by_geometry(small_data):
    mdl = load(small_data, "bjk_p21212")
    kinds = {type(c).__name__ for c in mdl.constraints if isinstance(c, m.RidingGroup)}
    assert kinds == {"TertiaryXH", "SecondaryXH2", "SecondaryPlanarXH", "TerminalTetrahedralXH3",
                     "TerminalTetrahedralXH"}
    methyl = [c for c in mdl.constraints if isinstance(c, m.TerminalTetrahedralXH3)][0]
    assert methyl.rotating and not methyl.refined_distance and len(methyl.hydrogens) == 3
    oh = mdl.constraints_of_type(m.TerminalTetrahedralXH)[0]      # AFIX 147 on O13
    assert mdl.scatterers[oh.pivot].label == "O13" and oh.rotating
    mdl = load(small_data, "sucrose_p21")
    oh = mdl.constraints_of_type(m.TerminalTetrahedralXH)          # AFIX 148
    assert len(oh) == 8 and all(g.rotating and g.refined_distance for g in oh)
    mdl = load(small_data, "ni_i43d")                                  # AFIX 33
    staggered = mdl.constraints_of_type(m.StaggeredTerminalTetrahedralXH3)
    assert len(staggered) == 1 and mdl.scatterers[staggered[0].pivot].label == "C41"
    mdl = load(small_data, "ru_p21c")                                  # AFIX 83 on O1
    oh = mdl.constraints_of_type(m.StaggeredTerminalTetrahedralXH)
    assert len(oh) == 1 and not oh[0].rotating


def test_data_instructions(small_data):
    ins = load(small_data, "p31c_sad").instructions
    assert ins.omit_hkl == [(0, 0, 2)] and ins.temperature == -173.0
    assert ins.weighting.a == 0.0346 and ins.weighting.b == 0.6436
    ins = load(small_data, "musc_c2c").instructions
    assert len(ins.omit_hkl) == 21 and ins.omit_hkl[-1] == (1, 1, 13)
    np.testing.assert_array_equal(ins.hklf.matrix, np.eye(3))
    ins = load(small_data, "fecl_r3c").instructions
    assert (ins.omit_s, ins.omit_two_theta) == (-3.0, 55.0) and ins.cycles == 0
    ins = load(small_data, "cc_invtwin").instructions
    np.testing.assert_array_equal(ins.twin.matrix, -np.eye(3))
    assert ins.twin.n_components == 2 and ins.basf == [0.15695]
    ins = load(small_data, "twin5_p4").instructions
    assert ins.basf == [0.30067, 0.281] and ins.hklf.n == 5
    assert load(small_data, "exti_c2m").instructions.exti == 0.00155
    assert load(small_data, "exti_c2m").instructions.cycles == 4
    w = load(small_data, "hmamg_p21c").instructions.weighting        # WGHT 0.000000
    assert (w.a, w.b) == (0.0, 0.0)
    w = load(small_data, "thpp_p21n").instructions.weighting         # WGHT 0.1
    assert (w.a, w.b, w.f) == (0.1, 0.0, pytest.approx(1 / 3))
    other = [r.name for r in load(small_data, "cc_invtwin").instructions.other]
    assert other.count("FREE") == 2 and other.count("BIND") == 4


def test_scattering_types(small_data):
    mdl = load(small_data, "hmamg_p21c")                # DISP $C ... !source kissel
    c = mdl.scattering_types[0]
    assert (c.element, c.fp, c.fdp, c.mu, c.dispersion_source) == ("C", -0.00054, 0.00034, 4.56231, "DISP")
    assert mdl.scattering_types[2].element == "Mg" and mdl.scattering_types[2].fp == 0.0085
    mdl = load(small_data, "ed_cinch_p21")              # explicit electron coefficients, CRLF
    c = mdl.scattering_types[0]
    a, b, c0 = c.gaussians
    np.testing.assert_allclose(a, [0.136, 0.548, 1.227, 0.597])
    np.testing.assert_allclose(b, [0.373, 3.281, 13.046, 41.02])
    assert c0 == 0 and (c.fp, c.fdp, c.weight) == (0, 0, 12.011) and c.element == "C"
    assert mdl.wavelength == 0.02508 and len(mdl.scatterers) == 22
    mdl = load(small_data, "musc_c2c")
    assert [st.element for st in mdl.scattering_types] == ["H", "O", "Al", "Si", "K", "Ti"]
    assert mdl.unit == [8, 48, 7.8, 16, 4, 0.2]


def test_hkl_fixed_columns(small_data):
    obs = smtbx.read_hkl(small_data / "caf2_fm3m" / "caf2.hkl")      # l and Fo² touch
    np.testing.assert_array_equal(obs.hkl[:2], [[1, 1, -1], [-1, -1, 1]])
    np.testing.assert_allclose(obs.fo_sq[:2], [38976.97, 38778.02])
    assert obs.batch[0] == 22
    obs = smtbx.read_hkl(small_data / "sh2185_p212121" / "sh2185.hkl")
    assert obs.hkl[1].tolist() == [0, 0, 3] and obs.fo_sq[1] == -5.76448
    obs = smtbx.read_hkl(small_data / "exti_c2m" / "exti.hkl")       # CRLF
    assert obs.hkl[0].tolist() == [4, -2, -10] and obs.sig_fo_sq[0] == 31.4


def test_hkl_integer_fields_and_twin_groups(small_data):
    mdl = load(small_data, "twin5_p4")
    obs = smtbx.read_hkl(small_data / "twin5_p4" / "P-4_NotDetwinned_12.hkl", mdl.instructions.hklf)
    # "  268870" without a decimal point is read as written (the FVAR scale,
    # Fo^2 = 23.43^2 Fc^2, confirms it; Fortran's implied decimals would not)
    assert obs.fo_sq[0] == 268870.0 and obs.sig_fo_sq[0] == 3060.0
    assert obs.batch[:3].tolist() == [-2, -3, 1]
    assert obs.group_index[:4].tolist() == [0, 0, 0, 1]
    mdl = load(small_data, "twin5_p21n")
    obs = smtbx.read_hkl(small_data / "twin5_p21n" / "NO_PF-F-PF_twin4_XPREP_a.hkl", mdl.instructions.hklf)
    assert set(obs.batch[obs.measured].tolist()) == {2}


def test_read_shelx_pairs_model_and_reflections(small_data, tmp_path):
    mdl = smtbx.read_shelx(small_data / "ru_p21c" / "05srv085")          # only an .ins
    assert mdl.source.endswith("05srv085.ins") and mdl.observations.n_lines == 27922
    mdl = smtbx.read_shelx(small_data / "twin5_p4" / "P-4_NotDetwinned_12.res")   # .res, HKLF 5
    assert mdl.observations.hklf == 5 and mdl.observations.n_groups == 2399
    (tmp_path / "x.res").write_bytes((small_data / "fecl_r3c" / "2240189.res").read_bytes())
    with pytest.raises(smtbx.ShelxSyntaxError, match=r"x.hkl: reflection file not found"):
        smtbx.read_shelx(tmp_path / "x")
    with pytest.raises(smtbx.ShelxSyntaxError, match=r"y.ins: file not found \(nor y.res\)"):
        smtbx.read_shelx(tmp_path / "y")


def test_model_arrays(small_data):
    mdl = load(small_data, "sucrose_p21")
    n = len(mdl.scatterers)
    assert mdl.sites_frac.shape == (n, 3) and mdl.u_star.shape == (n, 6)
    assert mdl.type_indices.dtype == np.int32 and mdl.site_orders.tolist() == [1] * n
    c1, h1 = mdl.index("C1"), mdl.index("H1")
    assert mdl.anisotropic[c1] and not mdl.anisotropic[h1]
    assert mdl.u_iso[c1] == pytest.approx(u_eq_textbook(mdl.cell, mdl.scatterers[c1].u_cif), rel=1e-12)
    assert mdl.u_iso[h1] == mdl.scatterers[h1].u_iso
    # an isotropic atom's U* is U_iso G*, whose U_eq is U_iso again
    assert mdl.cell.u_eq(mdl.u_star[h1]) == pytest.approx(mdl.scatterers[h1].u_iso, rel=1e-12)
    np.testing.assert_allclose(mdl.u_star[c1], mdl.cell.u_cif_as_u_star(mdl.scatterers[c1].u_cif))
    np.testing.assert_allclose(mdl.occupancies, 1.0)
