"""Bad input: one clear error naming file, line and problem; unusual input read correctly."""

import numpy as np
import pytest

import smtbx
from smtbx import model as m

HEADER = """TITL test in P2(1)/c
CELL 0.71073 5.0 6.0 7.0 90 100 90
ZERR 4 0.001 0.001 0.001 0 0.01 0
LATT 1
SYMM -X, 1/2+Y, 1/2-Z
SFAC C H O
UNIT 8 8 4
L.S. 4
"""


def write(tmp_path, text, name="t.ins", mode="w"):
    path = tmp_path / name
    if mode == "w":
        path.write_text(text)
    else:
        path.write_bytes(text)
    return path


def read(tmp_path, body):
    return smtbx.read_ins(write(tmp_path, HEADER + body))


def error(tmp_path, body, line=None, match=None, cls=smtbx.ShelxSyntaxError):
    with pytest.raises(cls, match=match) as info:
        read(tmp_path, body)
    assert info.value.file.endswith("t.ins")
    if line is not None:
        assert info.value.line == line
        assert f"t.ins:{line}:" in str(info.value)
    return info.value


def test_minimal_file_defaults(tmp_path):
    mdl = read(tmp_path, "FVAR 1.0\nC1 1 0.1 0.2 0.3\nHKLF 4\nEND\n")
    c1 = mdl.scatterers[0]
    assert c1.occupancy == 1.0 and c1.occupancy_code == m.FIXED and c1.u_iso == 0.05
    assert mdl.space_group.number == 14 and mdl.wavelength == 0.71073
    assert mdl.instructions.cycles == 4 and mdl.warnings == []


def test_undefined_sfac_element(tmp_path):
    error(tmp_path, "SFAC Xq\n", line=9, match="not an element symbol")


def test_sfac_number_out_of_range(tmp_path):
    error(tmp_path, "FVAR 1.0\nC1 4 0.1 0.2 0.3 11 0.05\n", line=10, match="SFAC number 4 is not defined")


def test_impossible_free_variable_code(tmp_path):
    error(tmp_path, "FVAR 1.0 0.5\nC1 1 0.1 0.2 0.3 31.0 0.05\n", line=10,
          match="free variable 3, but FVAR defines only 2")
    error(tmp_path, "FVAR 1.0 0.5\nC1 1 0.1 0.2 0.3 25.0 0.05\n", line=10, match="not a valid code")


def test_not_an_instruction_nor_an_atom(tmp_path):
    error(tmp_path, "FVAR 1.0\nFOOBAR something\n", line=10, match="neither a SHELX instruction nor an atom")
    error(tmp_path, "FVAR 1.0\nC1 1 0.1 zero 0.3\n", line=10, match="atom C1: expected")
    error(tmp_path, "FVAR 1.0\nC1 1 0.1 0.2 0.3 11 0.1 0.1\n", line=10, match="got 6 numbers")


def test_bad_symmetry_and_cell(tmp_path):
    with pytest.raises(smtbx.ShelxSyntaxError, match=r"t.ins:5: SYMM"):
        smtbx.read_ins(write(tmp_path, HEADER.replace("1/2-Z", "1/2-Q")))
    with pytest.raises(smtbx.ShelxSyntaxError, match=r"t.ins:2: CELL: expected 7 numbers"):
        smtbx.read_ins(write(tmp_path, HEADER.replace(" 90 100 90", " 90 100")))
    with pytest.raises(smtbx.ShelxSyntaxError, match=r"t.ins:2: CELL: .*angle"):
        smtbx.read_ins(write(tmp_path, HEADER.replace(" 90 100 90", " 90 190 90")))


def test_unsupported_instructions(tmp_path):
    error(tmp_path, "BLOC 1\n", line=9, match="BLOC", cls=smtbx.UnsupportedInstruction)
    error(tmp_path, "HKLF 3\n", line=9, match="only HKLF 4 and HKLF 5", cls=smtbx.UnsupportedInstruction)
    mdl = read(tmp_path, "CGLS 10\nFVAR 1\nC1 1 0.1 0.2 0.3\n")
    assert mdl.instructions.method == "CGLS"
    assert "CGLS" in mdl.warnings[0].message and mdl.warnings[0].line == 9


def test_binary_garbage(tmp_path):
    path = write(tmp_path, b"TITL x\n\x00\x01\x02\xff\xfe garbage", mode="b")
    with pytest.raises(smtbx.ShelxSyntaxError, match="not a text file") as info:
        smtbx.read_ins(path)
    assert info.value.line == 2
    with pytest.raises(smtbx.ShelxSyntaxError, match="not a text file"):
        smtbx.read_hkl(path)


def test_missing_files(tmp_path):
    with pytest.raises(smtbx.ShelxSyntaxError, match="file not found") as info:
        smtbx.read_ins(tmp_path / "none.ins")
    assert info.value.line is None and "none.ins" in str(info.value)
    with pytest.raises(smtbx.ShelxSyntaxError, match="reflection file not found"):
        smtbx.read_hkl(tmp_path / "none.hkl")


def test_truncated_hkl(tmp_path):
    path = write(tmp_path, "   1   0   0  323.11   10.61\n   2   0   0  31", name="t.hkl")
    with pytest.raises(smtbx.ShelxSyntaxError, match=r"t.hkl:2: line cut short"):
        smtbx.read_hkl(path)
    path = write(tmp_path, "   1   0   0  323.11   10.61\n   2   x   0  314.68   10.15\n", name="t.hkl")
    with pytest.raises(smtbx.ShelxSyntaxError, match=r"t.hkl:2: expected h k l"):
        smtbx.read_hkl(path)


def test_hklf_matrix_scale_and_weight(tmp_path):
    path = write(tmp_path, "   1   2   3  100.00    4.00\n  -1   0   2   50.00    2.00   3\n"
                           "   0   0   0    0.00    0.00\n", name="t.hkl")
    hklf = m.Hklf(4, 2.0, np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1.0]]), 4.0)
    obs = smtbx.read_hkl(path, hklf)
    np.testing.assert_array_equal(obs.hkl, [[2, 1, -3], [0, -1, -2]])   # h' = R h
    np.testing.assert_allclose(obs.fo_sq, [200.0, 100.0])
    np.testing.assert_allclose(obs.sig_fo_sq, [4.0, 2.0])          # × scale / √wt
    assert obs.batch.tolist() == [1, 3]
    half = m.Hklf(4, 1.0, np.diag([0.5, 1, 2]))
    with pytest.raises(smtbx.ShelxSyntaxError, match=r"t.hkl:1: HKLF matrix turns \[1, 2, 3\]"):
        smtbx.read_hkl(path, half)


def test_hklf_instruction(tmp_path):
    mdl = read(tmp_path, "FVAR 1\nC1 1 0.1 0.2 0.3\nHKLF 4 1.5 0 1 0 1 0 0 0 0 -1\nEND\n")
    np.testing.assert_array_equal(mdl.instructions.hklf.matrix, [[0, 1, 0], [1, 0, 0], [0, 0, -1]])
    assert mdl.instructions.hklf.scale == 1.5
    error(tmp_path, "HKLF 4 1 1 0 0 0 1 0 0 0 -1\n", line=9, match="positive determinant")


def test_hkl5_group_must_end(tmp_path):
    path = write(tmp_path, "   1   0   0  100.00    4.00  -2\n   1   0   0  100.00    4.00   1\n"
                           "   2   0   0  100.00    4.00  -2\n", name="t.hkl")
    with pytest.raises(smtbx.ShelxSyntaxError, match="t.hkl:3: HKLF 5"):
        smtbx.read_hkl(path, m.Hklf(n=5))


def test_continuations_comments_and_end(tmp_path):
    mdl = read(tmp_path, """FVAR 1.0 0.7
 this line starts with a blank: a comment
REM C9 1 0.1 0.2 0.3
C1 1 0.1 0.2 0.3 21.0 0.01 0.02 = ! a comment
  0.03 0.001 0.002 0.003
O1 3 0.2 0.2 0.3 -21.0 0.04 ! comment
AFIX 43
H1 2 0.3 0.2 0.3 11 -1.2
AFIX 0
DFIX 21 0.01 C1 O1
HKLF 4
END
C5 1 0.1 0.2 0.3
""")
    c1, o1, h1 = mdl.scatterers
    np.testing.assert_allclose(c1.u_cif, [0.01, 0.02, 0.03, 0.003, 0.002, 0.001])
    assert c1.occupancy == pytest.approx(0.7) and o1.occupancy == pytest.approx(0.3)
    assert h1.u_parent == 1 and h1.u_iso == pytest.approx(1.2 * 0.04)
    (group,) = mdl.constraints_of_type(m.SecondaryPlanarXH)
    assert group.pivot == 1 and group.hydrogens == [2]
    (dfix,) = mdl.restraints
    assert dfix.target == pytest.approx(0.7) and dfix.target_code.free_variable == 2


def test_unresolved_restraint_atoms_are_reported(tmp_path):
    mdl = read(tmp_path, "FVAR 1\nC1 1 0.1 0.2 0.3\nC2 1 0.2 0.2 0.3\nDFIX 1.5 C1 C3\n"
                         "SADI C1 C2_$4\nDFIX 1.5 C1\nRESI 1 ABC\nC3 1 0.3 0.2 0.3\n")
    assert mdl.restraints == []
    assert [(w.line, w.message.split(":")[0]) for w in mdl.warnings] == \
        [(12, "DFIX ignored"), (13, "SADI ignored"), (14, "DFIX ignored")]
    assert "no atom C3" in mdl.warnings[0].message
    assert "$4 is not defined by an EQIV" in mdl.warnings[1].message
    assert "odd number of atoms" in mdl.warnings[2].message


def test_symmetry_equivalent_in_restraint(tmp_path):
    mdl = read(tmp_path, "EQIV $1 -x+1, -y, -z\nFVAR 1\nC1 1 0.1 0.2 0.3\nDFIX 1.5 C1 C1_$1\n")
    (ref_a, ref_b), = mdl.restraints[0].groups
    assert ref_a.symop is None
    np.testing.assert_array_equal(ref_b.symop.rotation, -np.eye(3))
    np.testing.assert_allclose(ref_b.symop.translation, [1, 0, 0])
    out = smtbx.format_res(mdl)
    assert "EQIV $1 1-X, -Y, -Z" in out and "DFIX 1.5 0.02 C1 C1_$1" in out


def test_missing_cell_or_sfac(tmp_path):
    path = write(tmp_path, "TITL x\nSFAC C\nUNIT 1\nC1 1 0.1 0.2 0.3\n")
    with pytest.raises(smtbx.ShelxSyntaxError, match="no CELL instruction"):
        smtbx.read_ins(path)


def test_include_files_are_refused(tmp_path):
    error(tmp_path, "+restraints.inc\n", line=9, match="includes are not supported",
          cls=smtbx.UnsupportedInstruction)


def test_line_ends(tmp_path):
    body = "FVAR 1\nC1 1 0.1 0.2 0.3 11 0.01 0.02 =\n 0.03 0 0 0\nHKLF 4\nEND\n"
    for sep in ("\r\n", "\r"):
        mdl = smtbx.read_ins(write(tmp_path, (HEADER + body).replace("\n", sep)))
        assert mdl.scatterers[0].u_cif.tolist() == [0.01, 0.02, 0.03, 0, 0, 0]
    path = write(tmp_path, b"   1   0   0  323.11   10.61\r   2   0   0  314.68   10.15\r\x1a", "t.hkl", "b")
    obs = smtbx.read_hkl(path)
    assert obs.n_lines == 2 and obs.fo_sq.tolist() == [323.11, 314.68]


def test_instructions_not_applied_are_reported(tmp_path):
    mdl = read(tmp_path, "ANIS\nHFIX 43 C1\nFMAP 2\nFVAR 1\nC1 1 0.1 0.2 0.3\n")
    assert [(w.line, w.message) for w in mdl.warnings] == [
        (9, "ANIS kept as written: atoms are not made anisotropic"),
        (10, "HFIX kept as written: hydrogen atoms are not generated")]
    assert [(r.name, r.args) for r in mdl.instructions.other] == [("ANIS", []), ("HFIX", ["43", "C1"]),
                                                                  ("FMAP", ["2"])]


def test_atom_list_syntax(tmp_path):
    mdl = read(tmp_path, """FVAR 1
SIMU C1>C3
RIGU C2 < C1 LAST
FLAT C1_*
SAME C1 H1 > C3
C1 1 0.1 0.2 0.3
H1 2 0.1 0.3 0.3
C2 1 0.2 0.2 0.3
C3 1 0.3 0.2 0.3
RESI 1 ABC
C1 1 0.5 0.2 0.3
C4 1 0.6 0.2 0.3
C5 1 0.7 0.2 0.3
O1 3 0.8 0.2 0.3
""")
    simu, rigu, flat, same = mdl.restraints
    name = lambda refs: [(mdl.scatterers[a.index].label, mdl.scatterers[a.index].residue_number) for a in refs]
    assert name(simu.groups[0]) == [("C1", 0), ("C2", 0), ("C3", 0)]          # glued '>' and no H inside
    assert name(rigu.groups[0]) == [("C2", 0), ("C1", 0), ("O1", 1)]          # '<' backwards, LAST
    assert name(flat.groups[0]) == [("C1", 0), ("C1", 1)]                      # C1 in every residue
    assert name(same.groups[0]) == [("C1", 0), ("C2", 0), ("C3", 0)]           # H ignored by SAME
    assert name(same.groups[1]) == [("C1", 0), ("C2", 0), ("C3", 0)]


def test_bare_sadi_is_a_listing_request(tmp_path):
    mdl = read(tmp_path, "SADI\nFVAR 1\nC1 1 0.1 0.2 0.3\n")
    assert mdl.restraints == [] and mdl.warnings == []
    assert [(r.name, r.args) for r in mdl.instructions.other] == [("SADI", [])]


def test_every_afix_geometry_reads_and_writes_back(tmp_path):
    """Riding groups of every m in DESIGN.md §7 and a rigid hexagon with riding H inside."""
    lines = ["FVAR 1", "C0 1 0.1 0.1 0.1 11 0.02"]
    expected = []
    for mn, count, cls in [(13, 1, m.TertiaryXH), (23, 2, m.SecondaryXH2),
                           (33, 3, m.StaggeredTerminalTetrahedralXH3), (43, 1, m.SecondaryPlanarXH),
                           (83, 1, m.StaggeredTerminalTetrahedralXH), (93, 2, m.TerminalPlanarXH2),
                           (123, 6, m.DisorderedTerminalTetrahedralXH3), (137, 3, m.TerminalTetrahedralXH3),
                           (147, 1, m.TerminalTetrahedralXH), (148, 1, m.TerminalTetrahedralXH),
                           (153, 1, m.PolyhedralBH), (163, 1, m.LinearXH), (134, 3, m.TerminalTetrahedralXH3)]:
        lines.append(f"AFIX {mn}")
        lines += [f"H{mn}{k} 2 0.2 0.1 0.1 11 -1.2" for k in range(count)]
        lines.append("AFIX 0")
        expected.append((cls, mn % 10 in (7, 8), mn % 10 in (4, 8), count))
    lines += ["AFIX 66", "C1 1 0.3 0.3 0.3 11 0.02", "AFIX 43", "H1 2 0.35 0.3 0.3 11 -1.2", "AFIX 65",
              "C2 1 0.4 0.3 0.3 11 0.02", "C3 1 0.5 0.3 0.3 11 0.02", "C4 1 0.5 0.4 0.3 11 0.02",
              "C5 1 0.4 0.4 0.3 11 0.02", "C6 1 0.3 0.4 0.3 11 0.02", "AFIX 0"]
    mdl = read(tmp_path, "\n".join(lines) + "\n")
    riding = [c for c in mdl.constraints if isinstance(c, m.RidingGroup)]
    assert [(type(c), c.rotating, c.refined_distance, len(c.hydrogens)) for c in riding[:-1]] == expected
    assert all(c.pivot == 0 for c in riding[:-1])
    (rigid,) = mdl.constraints_of_type(m.RigidGroup)
    assert [mdl.scatterers[i].label for i in rigid.atoms] == ["C1", "C2", "C3", "C4", "C5", "C6"]
    assert rigid.shape == "hexagon" and not rigid.variable_size
    assert mdl.scatterers[riding[-1].pivot].label == "C1"
    assert mdl.warnings == []
    text = smtbx.format_res(mdl)
    assert "AFIX 65" in text and "AFIX 123" in text and "AFIX 134" in text
    again = smtbx.read_ins(write(tmp_path, text, "again.res"))
    assert [(type(c), vars(c)) for c in again.constraints] == [(type(c), vars(c)) for c in mdl.constraints]
