"""Site symmetry in every space-group type: special positions built by
averaging a random point over a finite cyclic subgroup that fixes a point."""

import numpy as np
import pytest

from sgtbx import SiteError, SiteSymmetry, SiteSymmetryTable, SpaceGroup, UnitCell

_CELLS = {
    "triclinic": (7.1, 8.3, 9.2, 81.0, 86.0, 77.0),
    "monoclinic": (7.1, 8.3, 9.2, 90.0, 104.0, 90.0),
    "orthorhombic": (7.1, 8.3, 9.2, 90.0, 90.0, 90.0),
    "tetragonal": (7.1, 7.1, 9.2, 90.0, 90.0, 90.0),
    "trigonal": (7.1, 7.1, 9.2, 90.0, 90.0, 120.0),
    "hexagonal": (7.1, 7.1, 9.2, 90.0, 90.0, 120.0),
    "cubic": (8.3, 8.3, 8.3, 90.0, 90.0, 90.0),
}


def _cell_for(sg):
    if sg.xhm and sg.xhm.endswith(":R"):
        return UnitCell(7.1, 7.1, 7.1, 71.0, 71.0, 71.0)
    if sg.crystal_system == "monoclinic":
        # the unique axis may be a, b or c: pick the angle that the lattice allows
        for angles in ((90, 104, 90), (90, 90, 104), (104, 90, 90)):
            cell = UnitCell(7.1, 8.3, 9.2, *angles)
            if cell.is_compatible(sg):
                return cell
    return UnitCell(*_CELLS[sg.crystal_system])


def _cyclic_special_points(sg, rng, n_points):
    """Points fixed by cyclic subgroups: for an operation g = (R, t + n) whose
    k-th power is the identity exactly, the average of the orbit of a random
    point is fixed by g."""
    points = []
    order = rng.permutation(sg.order_z)
    shifts = [np.array(s) for s in np.ndindex(3, 3, 3)]
    for s in order:
        r, t = sg.rotations[s].astype(float), sg.translations[s]
        if np.array_equal(r, np.eye(3)):
            continue
        for n in shifts:
            tt = t + (n - 1)
            x = rng.random(3)
            orbit = [x]
            m, v = np.eye(3), np.zeros(3)
            for _ in range(6):
                m, v = r @ m, r @ v + tt
                if np.allclose(m, np.eye(3)):
                    break
                orbit.append(m @ x + v)
            if np.allclose(m, np.eye(3)) and np.allclose(v, 0):
                points.append((np.mean(orbit, axis=0), len(orbit)))
                break
        if len(points) == n_points:
            break
    return points


def _check_site(cell, sg, site, rng):
    assert site.multiplicity * site.order == sg.order_z
    assert len(site.rotations) == site.order
    k = site.site_matrix.shape[1]
    m = site.adp_matrix.shape[1]
    for _ in range(3):
        x = site.site_matrix @ rng.normal(size=k) + site.site_offset
        for r, t in zip(site.rotations, site.translations):
            image = r @ x + t - x
            np.testing.assert_allclose(image, np.round(image), atol=1e-9)
        u = site.adp_matrix @ rng.normal(size=m)
        mat = np.array([[u[0], u[3], u[4]], [u[3], u[1], u[5]], [u[4], u[5], u[2]]])
        for r in site.rotations:
            np.testing.assert_allclose(r @ mat @ r.T, mat, atol=1e-12)
    # the constraint spaces are as large as they can be: the projections of
    # random sites and ADPs lie in them
    projected = site.project_u_star(rng.normal(size=6))
    coeffs, *_ = np.linalg.lstsq(site.adp_matrix, projected, rcond=None)
    np.testing.assert_allclose(site.adp_matrix @ coeffs, projected, atol=1e-12)


@pytest.mark.parametrize("number", range(1, 231))
def test_every_space_group_type(number):
    rng = np.random.default_rng(number)
    sg = SpaceGroup(number)
    cell = _cell_for(sg)
    general = SiteSymmetry(cell, sg, rng.random(3), min_distance=1e-4)
    if general.order == 1:
        assert general.multiplicity == sg.order_z
        assert general.site_matrix.shape == (3, 3) and general.adp_matrix.shape == (6, 6)
    points = _cyclic_special_points(sg, rng, 4)
    for point, cyclic_order in points:
        site = SiteSymmetry(cell, sg, point, min_distance=1e-4)
        assert site.order % cyclic_order == 0
        delta = site.exact_site - point
        np.testing.assert_allclose(delta, np.round(delta), atol=1e-9)
        _check_site(cell, sg, site, rng)
    table = SiteSymmetryTable(cell, sg, [p for p, _ in points] or rng.random((1, 3)), min_distance=1e-4)
    for i, (point, _) in enumerate(points):
        single = SiteSymmetry(cell, sg, point, min_distance=1e-4)
        assert table.orders[i] == single.order
        np.testing.assert_allclose(table.exact_sites[i], single.exact_site, atol=1e-12)
        np.testing.assert_array_equal(table.site_matrix(i), single.site_matrix)
        np.testing.assert_array_equal(table.adp_matrix(i), single.adp_matrix)


@pytest.mark.parametrize("xhm,site,point_group,multiplicity,n_site,n_adp", [
    ("F m -3 m", (0, 0, 0), "m-3m", 4, 0, 1),
    ("F m -3 m", (0.25, 0.25, 0.25), "-43m", 8, 0, 1),
    ("P 63/m m c", (1 / 3, 2 / 3, 0.25), "-62m", 2, 0, 2),
    ("P 63/m m c", (1 / 3, 2 / 3, 0.0625), "3m", 4, 1, 2),
    ("R -3 c :H", (0, 0, 0), "-3", 6, 0, 2),
    ("I -4 3 d", (0.375, 0, 0.25), "-4", 12, 0, 2),
    ("P 1 21/c 1", (0.5, 0, 0.5), "-1", 2, 0, 6),
    ("C 1 2/c 1", (0, 0.3, 0.25), "2", 4, 1, 4),
    ("P 4/m m m", (0.2, 0.2, 0.5), "mm2", 4, 1, 3),
])
def test_known_wyckoff_positions(xhm, site, point_group, multiplicity, n_site, n_adp):
    sg = SpaceGroup(xhm)
    cell = _cell_for(sg)
    s = SiteSymmetry(cell, sg, site)
    assert s.point_group == point_group and s.multiplicity == multiplicity
    assert s.site_matrix.shape == (3, n_site)
    assert s.adp_matrix.shape == (6, n_adp)


def test_snapping_onto_a_two_fold_axis():
    sg = SpaceGroup("P 1 2 1")
    cell = UnitCell(10, 11, 12, 90, 100, 90)
    near = np.array([0.05 / 10, 0.3, 0.0])
    site = SiteSymmetry(cell, sg, near)
    assert site.order == 2 and site.point_group == "2"
    np.testing.assert_allclose(site.exact_site, [0, 0.3, 0], atol=1e-12)
    assert site.distance_moved == pytest.approx(0.05, rel=1e-6)
    far = SiteSymmetry(cell, sg, [1.0 / 10, 0.3, 0.0])
    assert far.order == 1 and far.multiplicity == 2
    # x = Z u + z with the free coordinate y on the axis
    np.testing.assert_allclose(site.site_matrix, [[0], [1], [0]])
    np.testing.assert_allclose(site.site_offset, [0, 0, 0])
    # U* on a b-axis 2-fold: U12 = U23 = 0
    np.testing.assert_allclose(site.adp_matrix @ np.arange(1, 5), [1, 2, 3, 0, 4, 0])


def test_oblique_cell_minimum_image():
    # a strongly oblique triclinic cell, and a tolerance so large that the
    # nearest image may need a neighbouring lattice translation
    sg = SpaceGroup("P -1")
    cell = UnitCell(5.0, 5.0, 12.0, 90, 90, 30)
    site = SiteSymmetry(cell, sg, [0.5, 0.5, 0.0])
    assert site.order == 2
    table = SiteSymmetryTable(cell, sg, [[0.5, 0.5, 0.0], [0.5 + 0.004, 0.5 - 0.004, 0.0]])
    np.testing.assert_array_equal(table.orders, [2, 2])
    # With a tolerance of more than half an axis (0.7 Å against a/|a*| of
    # 3 sin 20 Å) rounding the difference is not enough: the inversion image
    # of (0.775, 0.775, 0) is 2.7 Å away after rounding, 0.6 Å through the
    # translation (-1, 0, 0).
    narrow = UnitCell(3.0, 3.0, 12.0, 90, 90, 20)
    x = np.array([0.775, 0.775, 0.0])
    rounded = -2 * x - np.round(-2 * x)
    assert narrow.distance(np.zeros(3), rounded) > 2.5
    assert narrow.distance(np.zeros(3), rounded + [-1, 0, 0]) < 0.7
    assert SiteSymmetry(narrow, sg, x, min_distance=0.7).order == 2
    assert SiteSymmetry(narrow, sg, x, min_distance=0.5).order == 1


def test_projections():
    sg = SpaceGroup("P 4/m m m")
    cell = UnitCell(7, 7, 9, 90, 90, 90)
    site = SiteSymmetry(cell, sg, [0.0, 0.0, 0.3])
    np.testing.assert_allclose(site.project_site([0.001, -0.002, 0.31]), [0, 0, 0.31], atol=1e-12)
    u = site.project_u_star([0.01, 0.02, 0.03, 0.004, 0.005, 0.006])
    np.testing.assert_allclose(u, [0.015, 0.015, 0.03, 0, 0, 0], atol=1e-15)
    v = site.independent_adp_parameters([0.01, 0.02, 0.03, 0.004, 0.005, 0.006])
    np.testing.assert_allclose(site.adp_matrix @ v, u, atol=1e-15)


def test_bad_sites():
    sg = SpaceGroup("P 1")
    cell = UnitCell(5, 6, 7, 90, 90, 90)
    with pytest.raises(SiteError, match="not finite"):
        SiteSymmetry(cell, sg, [0.1, np.nan, 0.2])
    with pytest.raises(SiteError, match=r"shape \(n, 3\)"):
        SiteSymmetry(cell, sg, [0.1, 0.2])
    with pytest.raises(SiteError, match="site 1 "):
        SiteSymmetryTable(cell, sg, [[0.1, 0.2, 0.3], [np.inf, 0, 0]])
    with pytest.raises(SiteError, match="min_distance"):
        SiteSymmetry(cell, sg, [0.1, 0.2, 0.3], min_distance=0)
    with pytest.raises(SiteError, match=r"shape \(6,\)"):
        SiteSymmetry(cell, sg, [0.1, 0.2, 0.3]).project_u_star([1, 2, 3])
