"""Derived geometry: gradients against central finite differences (sites
and cell), s.u.'s against sgtbx's independent-atom formulae, correlations
through a Jacobian (an atom and its own image), torsions against gemmi, and
the BOND/CONF tables on a real structure against the published CIF."""

import gemmi
import numpy as np
import pytest

import sgtbx
import smtbx
from smtbx.connectivity import Connectivity
from smtbx.geometry import (AtomRef, DerivedGeometry, GeometryError, angle_table, bond_table,
                            symmetry_code, torsion_table)

CELL = (7.1, 8.3, 9.7, 84.0, 101.0, 113.0)
ESDS = (0.002, 0.003, 0.001, 0.02, 0.03, 0.01)
SITES = np.array([[0.10, 0.20, 0.30], [0.25, 0.31, 0.38], [0.33, 0.47, 0.35], [0.51, 0.52, 0.41]])
OP = AtomRef(3, np.array([[-1, 0, 0], [0, -1, 0], [0, 0, -1]]), np.array([1.0, 1.0, 1.0]))


def _geometry(cell=CELL, sites=SITES, esds=ESDS, **kw):
    return DerivedGeometry(sgtbx.UnitCell(*cell, esds=esds), sites, **kw)


@pytest.mark.parametrize("refs", [(0, 1), (0, 1, 2), (0, 1, 2, 3), (0, 1, 2, OP), (1, OP)])
def test_gradients_match_finite_differences(refs):
    geo = _geometry()
    refs = tuple(r if isinstance(r, AtomRef) else AtomRef(r) for r in refs)
    value, g_sites, g_cell = geo.gradients(refs)
    h = 1e-6
    for k in range(SITES.size):
        plus, minus = SITES.copy(), SITES.copy()
        plus.flat[k] += h
        minus.flat[k] -= h
        fd = (_geometry(sites=plus).gradients(refs)[0] - _geometry(sites=minus).gradients(refs)[0]) / (2 * h)
        assert g_sites[k] == pytest.approx(fd, rel=1e-6, abs=1e-6)
    for p in range(6):
        plus, minus = list(CELL), list(CELL)
        plus[p] += h
        minus[p] -= h
        fd = (_geometry(cell=plus).gradients(refs)[0] - _geometry(cell=minus).gradients(refs)[0]) / (2 * h)
        assert g_cell[p] == pytest.approx(fd, rel=1e-6, abs=1e-7)


def test_sus_of_independent_atoms_equal_sgtbx():
    su = np.array([[0.001, 0.002, 0.0015], [0.0005, 0.0007, 0.0009], [0.002, 0.001, 0.001],
                   [0.001, 0.001, 0.001]])
    cov = np.diag(su.ravel() ** 2)
    geo = _geometry(site_jacobian=np.eye(12), covariance_x=cov)
    uc = sgtbx.UnitCell(*CELL, esds=ESDS)
    d = geo.measure((0, 1))
    ref = uc.distance_su(SITES[0], SITES[1], su[0], su[1])
    assert d.value == pytest.approx(ref[0], rel=1e-12)
    assert d.su == pytest.approx(ref[1], rel=1e-9)
    a = geo.measure((0, 1, 2))
    ref = uc.angle_su(SITES[0], SITES[1], SITES[2], su[0], su[1], su[2])
    assert a.value == pytest.approx(ref[0], rel=1e-12)
    assert a.su == pytest.approx(ref[1], rel=1e-9)


def test_torsion_value_and_sign_equal_gemmi():
    geo = _geometry()
    uc = gemmi.UnitCell(*CELL)
    pos = [uc.orthogonalize(gemmi.Fractional(*s)) for s in SITES]
    t = geo.measure((0, 1, 2, 3))
    assert t.value == pytest.approx(np.degrees(gemmi.calculate_dihedral(*pos)), abs=1e-9)


def test_distance_to_own_image_counts_the_correlation():
    # d(x, -x + 1) = |2 A (x - 1/2)|: the two ends move together, s.u. doubles
    sites = SITES[[3]]
    cov = np.diag([1e-6, 4e-6, 9e-6])
    geo = DerivedGeometry(sgtbx.UnitCell(*CELL), sites, np.eye(3), cov)
    inv = AtomRef(0, -np.eye(3, dtype=int), np.ones(3))
    d = geo.measure((0, inv))
    a = geo.orthogonalisation
    v = a @ (2 * sites[0] - 1)
    grad = 2 * a.T @ v / np.linalg.norm(v)
    assert d.su == pytest.approx(np.sqrt(grad @ cov @ grad), rel=1e-12)
    # a riding-like constraint: atom 1 follows atom 0 rigidly, so the distance is exact
    two = np.array([SITES[0], SITES[1]])
    jac = np.vstack([np.eye(3), np.eye(3)])
    geo = DerivedGeometry(sgtbx.UnitCell(*CELL), two, jac, cov)
    assert geo.measure((0, 1)).su == pytest.approx(0.0, abs=1e-12)


def test_bad_input():
    geo = _geometry()
    with pytest.raises(GeometryError, match="coinciding"):
        geo.measure((0, 0))
    with pytest.raises(GeometryError, match="atom index 9"):
        geo.measure((0, 9))
    with pytest.raises(GeometryError, match="expected 2, 3 or 4"):
        geo.measure((0,))
    collinear = np.array([[0, 0, 0], [0.1, 0, 0], [0.2, 0, 0], [0.2, 0.1, 0]])
    with pytest.raises(GeometryError, match="non-collinear"):
        _geometry(sites=collinear).measure((0, 1, 2, 3))


def _published_bonds(path):
    block = gemmi.cif.read(str(path)).sole_block()
    table = block.find("_geom_bond_", ["atom_site_label_1", "atom_site_label_2", "distance",
                                        "site_symmetry_2"])
    out = {}
    for row in table:
        value = row[2]
        number, _, su = value.partition("(")
        digits = len(number.split(".")[1]) if "." in number else 0
        out[(row[0], row[1], row[3])] = (float(number), int(su.rstrip(")")) * 10 ** -digits if su else 0)
    return out


def test_bond_table_reproduces_published_distances_of_sucrose(small_data):
    """Values only: the published s.u.'s need the refined covariance (the
    driver's); the cell part of the s.u. alone must stay below them."""
    model = smtbx.shelx.read_shelx(str(small_data / "sucrose_p21" / "zucker2.res"))
    published = _published_bonds(small_data / "sucrose_p21" / "DK_Zucker2_0m.cif")
    labels = [s.label for s in model.scatterers]
    geo = DerivedGeometry(model.cell, model.sites_frac, labels=labels)
    bonds = bond_table(geo, Connectivity(model))
    sg = model.space_group
    found = 0
    for b in bonds:
        i, j = b.atoms
        code = symmetry_code(sg, j.rotation, j.translation)
        key = (labels[i.index], labels[j.index], code)
        rev = (labels[j.index], labels[i.index], code)
        ref = published.get(key) or (published.get(rev) if code == "." else None)
        if ref is None or ref[1] == 0:
            continue
        found += 1
        assert b.value == pytest.approx(ref[0], abs=0.6 * 10 ** -len(str(ref[0]).split(".")[1]) + 1e-9)
        assert b.su <= ref[1] + 1e-12
    assert found >= 0.8 * sum(1 for v in published.values() if v[1] > 0)
    angles = angle_table(geo, Connectivity(model))
    torsions = torsion_table(geo, Connectivity(model))
    assert len(angles) > len(bonds) and len(torsions) > 0


def test_symmetry_codes():
    sg = sgtbx.SpaceGroup("P 1 21/c 1")
    r = np.asarray(sg.rotations[1])
    assert symmetry_code(sg, None, None) == "."
    assert symmetry_code(sg, r, np.asarray(sg.translations[1]) + [1, 0, -1]) == "2_654"
    with pytest.raises(GeometryError, match="not in the space group"):
        symmetry_code(sg, r, np.array([0.3, 0, 0]))


def test_cell_parameters_tied_by_symmetry_move_together():
    """In a tetragonal cell a and b are one parameter: the s.u. from the cell
    is |dq/da + dq/db| sigma(a), checked by moving a and b together."""
    cell = (9.0, 9.0, 7.0, 90.0, 90.0, 90.0)
    esds = (0.002, 0.002, 0.003, 0.0, 0.0, 0.0)
    sg = sgtbx.SpaceGroup("P 4")
    sites = np.array([[0.1, 0.2, 0.3], [0.3, 0.25, 0.4]])
    tied = DerivedGeometry(sgtbx.UnitCell(*cell, esds=esds), sites, space_group=sg)
    free = DerivedGeometry(sgtbx.UnitCell(*cell, esds=esds), sites)
    d = tied.measure((0, 1))

    def dist(a, c):
        return DerivedGeometry(sgtbx.UnitCell(a, a, c, 90, 90, 90), sites).measure((0, 1)).value

    h = 1e-6
    d_da = (dist(9.0 + h, 7.0) - dist(9.0 - h, 7.0)) / (2 * h)
    d_dc = (dist(9.0, 7.0 + h) - dist(9.0, 7.0 - h)) / (2 * h)
    assert d.su == pytest.approx(np.hypot(d_da * 0.002, d_dc * 0.003), rel=1e-6)
    assert free.measure((0, 1)).su < d.su
    hexagonal = DerivedGeometry(sgtbx.UnitCell(8, 8, 12, 90, 90, 120), sites,
                                space_group=sgtbx.SpaceGroup("P 3 1 c"))
    assert hexagonal.cell_groups[:2] == [[0, 1], [2]]
    cubic = DerivedGeometry(sgtbx.UnitCell(8, 8, 8, 90, 90, 90), sites,
                            space_group=sgtbx.SpaceGroup("I -4 3 d"))
    assert cubic.cell_groups == [[0, 1, 2], [3, 4, 5]]
