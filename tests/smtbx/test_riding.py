"""Riding-hydrogen geometries that the shared data do not hold (AFIX 93,
163, 153, 123), exact derivatives of every geometry, SHELXL's X–H table,
connectivity rules, and constraint errors (file, line and problem)."""

import numpy as np
import pytest

import smtbx
from smtbx import model as m
from smtbx import riding
from smtbx.connectivity import Connectivity
from smtbx.reparametrisation import InvalidConstraint, Reparametrisation

A = 20.0   # cubic P1 cell edge, so that fractional = Cartesian / A


def ins(atoms, extra="", temp=None, latt=-1, cell=A):
    lines = ["TITL synthetic", f"CELL 0.71073 {cell} {cell} {cell} 90 90 90", "ZERR 1 0 0 0 0 0 0",
             f"LATT {latt}", "SFAC C H B N O", "UNIT 1 1 1 1 1"]
    if temp is not None:
        lines.append(f"TEMP {temp}")
    lines += ["L.S. 4", "FVAR 1.0"]
    lines += extra.splitlines() if extra else []
    for item in atoms:
        if item[0] in ("AFIX", "PART"):
            lines.append(f"{item[0]} {item[1]}")
            continue
        label, sfac, xyz, *rest = item
        f = np.asarray(xyz) / cell
        u = rest[0] if rest else 0.05
        lines.append(f"{label} {sfac} {f[0]:.6f} {f[1]:.6f} {f[2]:.6f} 11.0 {u}")
    lines += ["HKLF 4", "END"]
    return "\n".join(lines) + "\n"


def build(tmp_path, text):
    path = tmp_path / "s.ins"
    path.write_text(text)
    model = smtbx.read_ins(path)
    return model, Reparametrisation(model)


def cart(model, graph, label):
    return model.cell.orthogonalisation @ graph.y[graph.site_index[model.index(label)]]


def angle(a, b, c):
    u, v = a - b, c - b
    return np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))


O = np.array([10.0, 10.0, 10.0])


def test_terminal_planar_xh2(tmp_path):
    """AFIX 93: =CH2 in the plane of the neighbour's substituent, 120° angles."""
    atoms = [("C3", 1, O + [-0.75, 1.3, 0.0]), ("C1", 1, O), ("C2", 1, O + [1.34, 0.0, 0.0]),
             ("AFIX", 93), ("H2A", 2, O + [1.9, 0.9, 0.0], -1.2), ("H2B", 2, O + [1.9, -0.9, 0.0], -1.2),
             ("AFIX", 0)]
    model, graph = build(tmp_path, ins(atoms))
    c1, c2, c3 = (cart(model, graph, k) for k in ("C1", "C2", "C3"))
    h = [cart(model, graph, k) for k in ("H2A", "H2B")]
    for x in h:
        assert np.linalg.norm(x - c2) == pytest.approx(0.93)
        assert angle(c1, c2, x) == pytest.approx(120.0)
        assert np.cross(c1 - c3, c2 - c1) @ (x - c2) == pytest.approx(0.0, abs=1e-12)
    assert angle(h[0], c2, h[1]) == pytest.approx(120.0)
    # H2A (the first) is cis to C3
    assert np.linalg.norm(h[0] - c3) < np.linalg.norm(h[1] - c3)


def test_linear_xh(tmp_path):
    """AFIX 163: acetylenic C–H on the line, 0.95 Å below −70 °C."""
    atoms = [("C1", 1, O), ("C2", 1, O + [1.2, 0.1, -0.1]), ("AFIX", 163), ("H2", 2, O + [2.1, 0, 0], -1.2),
             ("AFIX", 0)]
    model, graph = build(tmp_path, ins(atoms, temp=-100))
    c1, c2, h = (cart(model, graph, k) for k in ("C1", "C2", "H2"))
    assert np.linalg.norm(h - c2) == pytest.approx(0.95)
    assert angle(c1, c2, h) == pytest.approx(180.0)


def test_polyhedral_bh(tmp_path):
    """AFIX 153: B–H opposite the mean direction of the five cage neighbours."""
    ring = [O + [1.5 * np.cos(t), 1.5 * np.sin(t), -0.9] for t in np.arange(5) * 2 * np.pi / 5]
    atoms = [(f"B{k + 2}", 3, p) for k, p in enumerate(ring)]
    atoms += [("B1", 3, O + [0.05, -0.03, 0.0]), ("AFIX", 153), ("H1", 2, O + [0, 0, 1.1], -1.2), ("AFIX", 0)]
    model, graph = build(tmp_path, ins(atoms))
    b1, h = cart(model, graph, "B1"), cart(model, graph, "H1")
    ring = [cart(model, graph, f"B{k + 2}") for k in range(5)]
    total = sum((p - b1) / np.linalg.norm(p - b1) for p in ring)
    assert np.linalg.norm(h - b1) == pytest.approx(1.10)
    np.testing.assert_allclose((h - b1) / 1.10, -total / np.linalg.norm(total), atol=1e-12)


def test_disordered_methyl(tmp_path):
    """AFIX 123: six half hydrogens, 60° apart about the C–C bond, tetrahedral."""
    atoms = [("C3", 1, O + [-0.8, 1.3, 0.0]), ("C1", 1, O), ("C2", 1, O + [1.52, 0.0, 0.0]), ("AFIX", 123)]
    atoms += [(f"H2{k}", 2, O + [2.0, 0.5 * np.cos(k), 0.5 * np.sin(k)], -1.5) for k in range(6)]
    atoms += [("AFIX", 0)]
    model, graph = build(tmp_path, ins(atoms))
    c1, c2, c3 = (cart(model, graph, k) for k in ("C1", "C2", "C3"))
    hs = [cart(model, graph, f"H2{k}") for k in range(6)]
    torsions = []
    for h in hs:
        assert np.linalg.norm(h - c2) == pytest.approx(0.96)
        assert angle(c1, c2, h) == pytest.approx(np.degrees(np.arccos(-1 / 3)))
        torsions.append(np.degrees(riding.torsion_of(c2, c1, c3 - c1, h)))
    steps = np.diff(np.unwrap(np.radians(torsions)))
    np.testing.assert_allclose(np.abs(np.degrees(steps)), 60.0)
    assert min(abs(abs(t) - 180.0) for t in torsions) < 1e-9   # staggered on C3


def _geometry_cases(tmp_path):
    """One model per geometry, pivots and neighbours placed irregularly."""
    rng = np.random.default_rng(3)

    def jitter(p):
        return p + rng.normal(scale=0.05, size=3)

    tetra = [np.array(v) / np.sqrt(3) * 1.5 for v in ([1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1])]
    cases = {
        "13": [(f"C{k + 2}", 1, jitter(O + tetra[k])) for k in range(3)] + [("C1", 1, O), ("AFIX", 13),
               ("H1", 2, O + tetra[3] * 0.65, -1.2)],
        "23": [("C2", 1, jitter(O + tetra[0])), ("C3", 1, jitter(O + tetra[1])), ("C1", 1, O), ("AFIX", 23),
               ("H1A", 2, O + tetra[2] * 0.65, -1.2), ("H1B", 2, O + tetra[3] * 0.65, -1.2)],
        "43": [("C2", 1, jitter(O + [1.4, 0, 0])), ("C3", 1, jitter(O + [-0.7, 1.2, 0])), ("C1", 1, O),
               ("AFIX", 43), ("H1", 2, O + [-0.5, -0.8, 0], -1.2)],
        "137": [("C3", 1, jitter(O + [-0.8, 1.3, 0.0])), ("C2", 1, jitter(O)), ("C1", 1, O + [1.5, 0, 0]),
                ("AFIX", 137)] + [(f"H1{c}", 2, O + [2.0, 0.6 * np.cos(k * 2.1 + 0.3), 0.6 * np.sin(k * 2.1 + 0.3)],
                                   -1.5) for k, c in enumerate("ABC")],
        "148": [("C3", 1, jitter(O + [-0.8, 1.3, 0.0])), ("C2", 1, jitter(O)), ("O1", 5, O + [1.4, 0, 0]),
                ("AFIX", 148), ("H1", 2, O + [1.7, 0.8, 0.1], -1.5)],
        "93": [("C3", 1, jitter(O + [-0.75, 1.3, 0.0])), ("C2", 1, O), ("C1", 1, jitter(O + [1.34, 0, 0])),
               ("AFIX", 93), ("H1A", 2, O + [1.9, 0.9, 0.0], -1.2), ("H1B", 2, O + [1.9, -0.9, 0.0], -1.2)],
        "163": [("C2", 1, O), ("C1", 1, jitter(O + [1.2, 0.1, 0])), ("AFIX", 164),
                ("H1", 2, O + [2.2, 0.1, 0], -1.2)],
        "153": [(f"B{k + 2}", 3, jitter(O + [1.5 * np.cos(t), 1.5 * np.sin(t), -0.9]))
                for k, t in enumerate(np.arange(4) * np.pi / 2)] + [("B1", 3, O), ("AFIX", 153),
                                                                    ("H1", 2, O + [0, 0, 1.1], -1.2)],
        "123": [("C3", 1, jitter(O + [-0.8, 1.3, 0.0])), ("C2", 1, jitter(O)), ("C1", 1, O + [1.52, 0, 0]),
                ("AFIX", 123)] + [(f"H1{k}", 2, O + [2.0, 0.5 * np.cos(k), 0.5 * np.sin(k)], -1.5)
                                  for k in range(6)],
    }
    for name, atoms in cases.items():
        path = tmp_path / f"g{name}.ins"
        path.write_text(ins(atoms + [("AFIX", 0)]))
        model = smtbx.read_ins(path)
        yield name, model, Reparametrisation(model)


def test_every_geometry_has_exact_derivatives(tmp_path):
    """Complex-step Jacobians of all geometries (13, 23, 43, 93, 123, 137,
    148, 153, 163, the last with a refined X–H length) against central
    differences of the whole graph."""
    seen = set()
    for name, model, graph in _geometry_cases(tmp_path):
        assert len(graph.riding_geometries) == 1
        seen.add(type(graph.riding_geometries[0].group))
        jac = graph.jacobian.toarray()
        for c in range(len(graph.x)):
            h = 1e-6
            xp, xm = graph.x.copy(), graph.x.copy()
            xp[c] += h
            xm[c] -= h
            fd = (graph.evaluate(xp)[0] - graph.evaluate(xm)[0]) / (2 * h)
            np.testing.assert_allclose(jac[:, c], fd, atol=1e-7, err_msg=f"AFIX {name}: {graph.x_names[c]}")
        # the hydrogen sites depend on the neighbours, not just the pivot
        rows = graph.site_index[list(graph.riding_geometries[0].group.hydrogens)].ravel()
        pivot_cols = [graph.x_names.index(f"{graph.labels[graph.riding_geometries[0].group.pivot]} {c}")
                      for c in "xyz"]
        others = np.setdiff1d(np.flatnonzero(np.any(jac[rows] != 0, axis=0)), pivot_cols)
        assert len(others) > 0
    assert seen == {m.TertiaryXH, m.SecondaryXH2, m.SecondaryPlanarXH, m.TerminalTetrahedralXH3,
                    m.TerminalTetrahedralXH, m.TerminalPlanarXH2, m.LinearXH, m.PolyhedralBH,
                    m.DisorderedTerminalTetrahedralXH3}


def test_rotating_group_parameters(tmp_path):
    cases = {name: (model, graph) for name, model, graph in _geometry_cases(tmp_path)}
    model, graph = cases["137"]
    assert "H1A torsion" in graph.x_names and not any("distance" in n for n in graph.x_names)
    model, graph = cases["148"]
    assert {"H1 torsion", "H1 distance"} <= set(graph.x_names)
    # the refined X–H length starts from the file's distance
    o1 = model.cell.orthogonalisation @ model.scatterers[model.index("O1")].site_frac
    h1 = model.cell.orthogonalisation @ model.scatterers[model.index("H1")].site_frac
    assert graph.x[graph.x_names.index("H1 distance")] == pytest.approx(np.linalg.norm(h1 - o1))
    # the torsion from the file is kept: the rebuilt H keeps its azimuth
    rebuilt = cart(model, graph, "H1")
    assert np.cross(rebuilt - o1, h1 - o1) @ (o1 - cart(model, graph, "C2")) == pytest.approx(0, abs=1e-9)


def test_xh_lengths_depend_on_temp():
    assert riding.xh_length(m.SecondaryPlanarXH, "C", None) == 0.93
    assert riding.xh_length(m.SecondaryPlanarXH, "C", 20.0) == 0.93
    assert riding.xh_length(m.SecondaryPlanarXH, "C", -20.0) == 0.93
    assert riding.xh_length(m.SecondaryPlanarXH, "C", -21.0) == pytest.approx(0.94)
    assert riding.xh_length(m.SecondaryPlanarXH, "C", -71.0) == pytest.approx(0.95)
    assert riding.xh_length(m.SecondaryPlanarXH, "N", -173.0) == pytest.approx(0.88)
    assert riding.xh_length(m.TerminalTetrahedralXH, "O", 20.0) == 0.82
    assert riding.xh_length(m.TertiaryXH, "C", 20.0) == 0.98
    assert riding.xh_length(m.SecondaryXH2, "C", 20.0) == 0.97
    assert riding.xh_length(m.TerminalTetrahedralXH3, "C", 20.0) == 0.96
    assert riding.xh_length(m.TertiaryXH, "Fe", 20.0) is None


def test_wrong_number_of_neighbours_names_file_and_line(tmp_path):
    atoms = [("C2", 1, O + [1.5, 0, 0]), ("C3", 1, O + [-0.5, 1.4, 0]), ("C1", 1, O), ("AFIX", 13),
             ("H1", 2, O + [-0.5, -0.5, 0.8], -1.2), ("AFIX", 0)]
    text = ins(atoms)
    with pytest.raises(InvalidConstraint) as info:
        build(tmp_path, text)
    line = text.splitlines().index("AFIX 13") + 1
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 's.ins'}:{line}: ")
    assert "pivot C1 has 2 bonded non-hydrogen neighbours" in message and "3 expected" in message
    assert "\n" not in message
    assert info.value.file == str(tmp_path / "s.ins") and info.value.line == line


def test_no_table_length_is_an_error(tmp_path):
    atoms = [("C2", 1, O + [1.5, 0, 0]), ("N1", 4, O), ("AFIX", 163), ("H1", 2, O + [-1, 0, 0], -1.2),
             ("AFIX", 0)]
    with pytest.raises(InvalidConstraint, match="no X–H length for a N pivot"):
        build(tmp_path, ins(atoms))


def test_second_reparametrisation_is_an_error(tmp_path):
    atoms = [("C1", 1, O), ("C2", 1, O + [3, 0, 0]), ("C3", 1, O + [0, 3, 0])]
    text = ins(atoms, extra="EXYZ C1 C2\nEXYZ C3 C2")
    with pytest.raises(InvalidConstraint, match="C2 x is constrained twice: by EXYZ C1 C2 and by EXYZ C3 C2") as info:
        build(tmp_path, text)
    assert info.value.line == text.splitlines().index("EXYZ C3 C2") + 1


def test_cycle_is_an_error(tmp_path):
    atoms = [("C1", 1, O), ("C2", 1, O + [3, 0, 0])]
    with pytest.raises(InvalidConstraint, match="cycle.*atoms C1, C2"):
        build(tmp_path, ins(atoms, extra="EXYZ C1 C2\nEXYZ C2 C1"))


def test_connectivity_part_rules(tmp_path):
    """Different non-zero PARTs are not bonded; a negative PART is not bonded
    to its own symmetry image; symmetry images count otherwise."""
    atoms = [("C1", 1, [0.7, 0.0, 0.0]), ("PART", 1), ("C2", 1, [3.0, 3.0, 3.0]), ("PART", 2),
             ("C3", 1, [3.0, 4.4, 3.0]), ("PART", 0), ("C4", 1, [3.0, 3.7, 4.3]), ("PART", -1),
             ("C5", 1, [5.0, 0.7, 5.0]), ("PART", 0)]
    path = tmp_path / "c.ins"
    path.write_text(ins(atoms, latt=1, cell=10.0))
    model = smtbx.read_ins(path)
    conn = Connectivity(model)
    names = lambda i: sorted(model.scatterers[n.index].label for n in conn.neighbours(i))
    # C1 at x = 0.07 is bonded to its inversion image at -0.07 (1.4 Å)
    c1 = conn.neighbours(model.index("C1"))
    assert [model.scatterers[n.index].label for n in c1] == ["C1"] and not c1[0].is_identity
    assert c1[0].distance == pytest.approx(1.4)
    assert names(model.index("C2")) == ["C4"]
    assert names(model.index("C3")) == ["C4"]
    assert names(model.index("C4")) == ["C2", "C3"]
    # C5 at (0.5, 0.07, 0.5) would be bonded to its image, but it is in PART -1
    assert names(model.index("C5")) == []
