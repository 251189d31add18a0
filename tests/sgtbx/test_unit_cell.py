"""UnitCell: against gemmi, round trips, and s.u.'s against finite
differences propagated from the cell and site s.u.'s."""

import gemmi
import numpy as np
import pytest

from sgtbx import SiteError, SpaceGroup, UnitCell, UnitCellError

CELL = (7.12, 8.34, 9.56, 81.3, 95.7, 102.4)
ESDS = np.array([0.002, 0.003, 0.004, 0.02, 0.03, 0.015])


def test_against_gemmi():
    ours = UnitCell(*CELL)
    theirs = gemmi.UnitCell(*CELL)
    assert ours.volume == pytest.approx(theirs.volume, rel=1e-12)
    np.testing.assert_allclose(ours.orthogonalisation, np.array(theirs.orth.mat), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.fractionalisation, np.array(theirs.frac.mat), rtol=1e-12, atol=1e-14)
    rec = theirs.reciprocal()
    np.testing.assert_allclose(ours.reciprocal_parameters,
                               [rec.a, rec.b, rec.c, rec.alpha, rec.beta, rec.gamma], rtol=1e-12)
    hkl = np.array([[1, 0, 0], [1, 2, 3], [-3, 4, -5], [0, 0, 7]])
    np.testing.assert_allclose(ours.d_spacings(hkl), [theirs.calculate_d(list(h)) for h in hkl], rtol=1e-12)
    np.testing.assert_allclose(ours.metric, ours.orthogonalisation.T @ ours.orthogonalisation, rtol=1e-12)
    np.testing.assert_allclose(ours.reciprocal_metric @ ours.metric, np.eye(3), atol=1e-12)
    assert np.isinf(ours.d_spacings([[0, 0, 0]])[0])


def test_adp_round_trips():
    cell = UnitCell(*CELL)
    rng = np.random.default_rng(5)
    m = rng.normal(size=(4, 3, 3))
    u_cart_mats = m @ m.transpose(0, 2, 1) * 0.01
    u_cart = np.stack([u_cart_mats[:, i, j] for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))], axis=1)
    u_star = cell.u_cart_as_u_star(u_cart)
    np.testing.assert_allclose(cell.u_star_as_u_cart(u_star), u_cart, rtol=1e-12, atol=1e-15)
    u_cif = cell.u_star_as_u_cif(u_star)
    np.testing.assert_allclose(cell.u_cif_as_u_star(u_cif), u_star, rtol=1e-12)
    np.testing.assert_allclose(cell.u_cif_as_u_cart(u_cif), u_cart, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cell.u_cart_as_u_cif(u_cart), u_cif, rtol=1e-12, atol=1e-15)
    # U_cart = A N U_cif N A^T, N = diag(a*, b*, c*), written out for one ADP
    uc = u_cif[0]
    mat = np.array([[uc[0], uc[3], uc[4]], [uc[3], uc[1], uc[5]], [uc[4], uc[5], uc[2]]])
    n = np.diag(cell.reciprocal_parameters[:3])
    expected = cell.orthogonalisation @ n @ mat @ n @ cell.orthogonalisation.T
    np.testing.assert_allclose(cell.u_cif_as_u_cart(uc),
                               [expected[0, 0], expected[1, 1], expected[2, 2],
                                expected[0, 1], expected[0, 2], expected[1, 2]], rtol=1e-10, atol=1e-15)
    # isotropic: U* = U G*, U_eq back, B = 8 pi^2 U
    u_iso = np.array([0.01, 0.05])
    np.testing.assert_allclose(cell.u_star_as_u_iso(cell.u_iso_as_u_star(u_iso)), u_iso, rtol=1e-12)
    np.testing.assert_allclose(cell.u_iso_as_b_iso(u_iso), 8 * np.pi ** 2 * u_iso)
    np.testing.assert_allclose(cell.b_iso_as_u_iso(cell.u_iso_as_b_iso(u_iso)), u_iso)
    np.testing.assert_allclose(cell.u_eq(u_star), np.trace(u_cart_mats, axis1=1, axis2=2) / 3, rtol=1e-12)
    # coordinates
    x = rng.random((5, 3))
    np.testing.assert_allclose(cell.fractionalise(cell.orthogonalise(x)), x, atol=1e-14)


def _numeric_su(function, cell_params, sites, site_sus, same_atom_pairs=()):
    """sqrt(sum (df/dp sigma_p)^2) by central differences over the cell and
    every site coordinate."""
    variance = 0.0
    h = 1e-6
    for k in range(6):
        up, down = list(cell_params), list(cell_params)
        up[k] += h
        down[k] -= h
        variance += ((function(UnitCell(*up), sites) - function(UnitCell(*down), sites)) / (2 * h) * ESDS[k]) ** 2
    for i in range(len(sites)):
        for j in range(3):
            up = [s.copy() for s in sites]
            down = [s.copy() for s in sites]
            for target in (i,) + tuple(b for a, b in same_atom_pairs if a == i):
                up[target][j] += h
                down[target][j] -= h
            derivative = (function(UnitCell(*cell_params), up) - function(UnitCell(*cell_params), down)) / (2 * h)
            variance += (derivative * site_sus[i][j]) ** 2
    return np.sqrt(variance)


def test_distance_su_by_finite_differences():
    cell = UnitCell(*CELL, esds=ESDS)
    x1, x2 = np.array([0.11, 0.23, 0.35]), np.array([0.21, 0.13, 0.44])
    su1, su2 = np.array([1e-4, 2e-4, 1.5e-4]), np.array([2e-4, 1e-4, 3e-4])
    d, su = cell.distance_su(x1, x2, su1, su2)
    assert d == pytest.approx(cell.distance(x1, x2), rel=1e-14)
    expected = _numeric_su(lambda c, s: c.distance(s[0], s[1]), CELL, [x1, x2], [su1, su2])
    assert su == pytest.approx(expected, rel=1e-6)
    # through a symmetry operation and a lattice shift
    rot = np.array([[-1, 0, 0], [0, 1, 0], [0, 0, -1]])
    tran = np.array([0.5, 0.5, 1.5])
    d, su = cell.distance_su(x1, x2, su1, su2, operation2=(rot, tran))
    direct = cell.distance(x1, rot @ x2 + tran)
    assert d == pytest.approx(direct, rel=1e-14)
    expected = _numeric_su(lambda c, s: c.distance(s[0], rot @ s[1] + tran), CELL, [x1, x2], [su1, su2])
    assert su == pytest.approx(expected, rel=1e-6)
    # an atom and its own symmetry image: the errors are correlated
    d, su = cell.distance_su(x1, x1, su1, su1, operation2=(rot, tran), same_atom=True)
    expected = _numeric_su(lambda c, s: c.distance(s[0], rot @ s[0] + tran), CELL, [x1], [su1])
    assert su == pytest.approx(expected, rel=1e-6)
    # against gemmi's distance
    gc = gemmi.UnitCell(*CELL)
    assert cell.distance(x1, x2) == pytest.approx(
        gc.orthogonalize(gemmi.Fractional(*x1)).dist(gc.orthogonalize(gemmi.Fractional(*x2))), rel=1e-12)


def test_angle_su_by_finite_differences():
    cell = UnitCell(*CELL, esds=ESDS)
    sites = [np.array([0.11, 0.23, 0.35]), np.array([0.21, 0.13, 0.44]), np.array([0.31, 0.25, 0.40])]
    sus = [np.array([1e-4, 2e-4, 1.5e-4]), np.array([2e-4, 1e-4, 3e-4]), np.array([1e-4, 1e-4, 1e-4])]
    theta, su = cell.angle_su(*sites, *sus)
    assert theta == pytest.approx(cell.angle(*sites), rel=1e-14)
    a, b, c = (cell.orthogonalise(s) for s in sites)
    u, v = a - b, c - b
    assert theta == pytest.approx(np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v))), rel=1e-12)
    expected = _numeric_su(lambda cl, s: cl.angle(*s), CELL, sites, sus)
    assert su == pytest.approx(expected, rel=1e-6)
    rot = np.array([[0, -1, 0], [1, -1, 0], [0, 0, 1]])
    ops = (None, None, (rot, np.array([1.0, 0.0, 0.0])))
    theta, su = cell.angle_su(*sites, *sus, operations=ops)
    expected = _numeric_su(lambda cl, s: cl.angle(s[0], s[1], rot @ s[2] + [1, 0, 0]), CELL, sites, sus)
    assert su == pytest.approx(expected, rel=1e-6)


def test_compatibility_with_space_groups():
    UnitCell(7, 7, 9, 90, 90, 120).check_compatible(SpaceGroup("P 63/m m c"))
    UnitCell(7, 8, 9, 90, 104, 90).check_compatible(SpaceGroup("P 1 21/c 1"))
    with pytest.raises(UnitCellError, match="does not agree with the hexagonal lattice"):
        UnitCell(7, 7.5, 9, 90, 90, 120).check_compatible(SpaceGroup("P 63/m m c"))
    with pytest.raises(UnitCellError, match="monoclinic"):
        UnitCell(7, 8, 9, 90, 90, 104).check_compatible(SpaceGroup("P 1 21/c 1"))
    with pytest.raises(UnitCellError, match="cubic"):
        UnitCell(7, 7, 7.01, 90, 90, 90).check_compatible(SpaceGroup("F m -3 m"))


@pytest.mark.parametrize("params,message", [
    ((0, 5, 5, 90, 90, 90), "edge a = 0.0 must be positive"),
    ((5, -1, 5, 90, 90, 90), "edge b"),
    ((5, 5, 5, 90, 180, 90), "angle beta"),
    ((5, 5, 5, 120, 120, 120), "do not form a cell"),
    ((5, 5, np.nan, 90, 90, 90), "finite"),
    ((5, 5, "x", 90, 90, 90), "must be numbers"),
])
def test_bad_cells(params, message):
    with pytest.raises(UnitCellError, match=message):
        UnitCell(*params)


def test_bad_esds_and_sites():
    with pytest.raises(UnitCellError, match="esds"):
        UnitCell(5, 5, 5, 90, 90, 90, esds=[0.1, 0.1])
    cell = UnitCell(5, 5, 5, 90, 90, 90)
    with pytest.raises(SiteError, match="not finite"):
        cell.distance([0, 0, np.nan], [0, 0, 0])
    with pytest.raises(SiteError, match="site2 must have shape"):
        cell.distance([0, 0, 0], [0, 0])
    with pytest.raises(SiteError, match="coincide"):
        cell.distance_su([0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [0, 0, 0], [0, 0, 0])
    with pytest.raises(SiteError, match=r"shape \(n, 6\)"):
        cell.u_cif_as_u_star([[0.1, 0.1, 0.1]])
