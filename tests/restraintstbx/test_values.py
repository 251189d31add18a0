"""Known values: values against gemmi and hand-worked numbers, zero at the
ideal, the SHELXL FLAT construction, rigid-bond zero, symmetry mates across
a cell edge, statistics and RestraintSet."""

import doctest

import gemmi
import numpy as np
import pytest

import restraintstbx as rt


def pos(v):
    return gemmi.Position(*v)


@pytest.fixture
def sites():
    return np.random.default_rng(11).normal(size=(8, 3)) * 1.5


def test_values_agree_with_gemmi(sites):
    p = [pos(v) for v in sites]
    bond = rt.BondProxies([[0, 1]], 0.0, 1.0)
    angle = rt.AngleProxies([[0, 1, 2]], 0.0, 1.0)
    dihedral = rt.DihedralProxies([[0, 1, 2, 3]], 0.0, 1.0, periodicity=1)
    chiral = rt.ChiralityProxies([[0, 1, 2, 3]], 0.0, 1.0)
    assert -bond.deltas(sites)[0] == pytest.approx(p[0].dist(p[1]), rel=1e-14)
    assert -angle.deltas(sites)[0] == pytest.approx(
        np.degrees(gemmi.calculate_angle(p[0], p[1], p[2])), rel=1e-13)
    phi = np.degrees(gemmi.calculate_dihedral(p[0], p[1], p[2], p[3]))
    assert -dihedral.deltas(sites)[0] == pytest.approx(phi, rel=1e-12)
    a, b, c = (sites[k] - sites[0] for k in (1, 2, 3))
    assert -chiral.deltas(sites)[0] == pytest.approx(np.linalg.det([a, b, c]), rel=1e-12)


def test_hand_worked_values():
    x = np.array([[0.0, 0, 0], [1.5, 0, 0], [1.5, 2.0, 0], [1.5, 2.0, 1.0]])
    # bond 1.5 against 1.6 with sigma 0.02: (0.1 / 0.02)^2
    assert rt.BondProxies([[0, 1]], 1.6, 0.02).residual_sum(x) == pytest.approx(25.0)
    # right angle at atom 1 against 100 deg, sigma 2: (10 / 2)^2
    assert rt.AngleProxies([[0, 1, 2]], 100.0, 2.0).residual_sum(x) == pytest.approx(25.0)
    # dihedral 0-1-2-3 is 90 deg (IUPAC: clockwise seen along 1->2 is positive)
    d = rt.DihedralProxies([[0, 1, 2, 3]], 0.0, 1.0)
    assert -d.deltas(x)[0] == pytest.approx(90.0)
    # periodicity 3: 120 - 90 = 30; -60 - 90 = -150, which is -30 modulo 120
    d3 = rt.DihedralProxies([[0, 1, 2, 3]] * 2, [120.0, -60.0], 1.0, periodicity=3)
    np.testing.assert_allclose(d3.deltas(x), [30.0, -30.0])
    d3 = rt.DihedralProxies([[0, 1, 2, 3]], 90.0 + 240.0, 1.0, periodicity=3)
    assert d3.residual_sum(x) == pytest.approx(0.0, abs=1e-20)
    # chiral volume: (x1-x0).((x2-x0)x(x3-x0)) = (1.5,0,0).((1.5,2,0)x(1.5,2,1)) = 3
    c = rt.ChiralityProxies([[0, 1, 2, 3]], -3.0, 0.5, both_signs=True)
    assert c.residual_sum(x) == pytest.approx(0.0, abs=1e-20)
    c = rt.ChiralityProxies([[0, 1, 2, 3]], -3.0, 0.5)
    assert c.residual_sum(x) == pytest.approx((6.0 / 0.5) ** 2)
    # prolsq: 16 (3.4 - 3.0)^4 below the vdw distance, nothing beyond it
    y = np.array([[0.0, 0, 0], [3.0, 0, 0], [0, 4.0, 0]])
    nb = rt.NonbondedProxies([[0, 1], [0, 2]], 3.4)
    np.testing.assert_allclose(nb.residual_sum(y), 16 * 0.4 ** 4, rtol=1e-12)
    # BUMP: one-sided
    bump = rt.BumpProxies([[0, 1], [0, 2]], 3.2, 0.1)
    np.testing.assert_allclose(bump.deltas(y), [0.2, 0.0], atol=1e-14)
    rows = bump.design_rows(y).sites.toarray()
    np.testing.assert_allclose(rows[0], [-1, 0, 0, 1, 0, 0, 0, 0, 0])   # d distance / d x
    assert not rows[1].any()                    # beyond d_min: no pull either way
    # SADI: distances 3 and 4, weighted mean with weights 1 and 3 is 3.75
    sadi = rt.BondSimilarityProxies([[[0, 1], [0, 2]]], [[1.0, 3 ** -0.5]])
    np.testing.assert_allclose(sadi.deltas(y), [0.75, -0.25])
    assert sadi.residual_sum(y) == pytest.approx(0.75 ** 2 + 3 * 0.25 ** 2)


def test_planes_and_flat():
    h = 0.1
    x = np.array([[1.0, 1, h], [-1, 1, -h], [-1, -1, h], [1, -1, -h], [0, 0, 0]])
    plane = rt.PlanarityProxies([[0, 1, 2, 3]], 0.02)
    # the least-squares plane is z = 0: four distances h
    np.testing.assert_allclose(np.abs(plane.deltas(x)), h)
    assert plane.residual_sum(x) == pytest.approx(4 * h ** 2 / 0.02 ** 2)
    # FLAT: p - 3 rows; tetrahedron (a1,a2,a3,a4) volume (a2-a1).((a3-a1)x(a4-a1))
    flat = rt.FlatProxies([[0, 1, 2, 3, 4]])
    assert flat.n_rows == 2
    a1, a2, a3 = x[0], x[1], x[2]
    volumes = [np.dot(a2 - a1, np.cross(a3 - a1, x[k] - a1)) for k in (3, 4)]
    np.testing.assert_allclose(flat.deltas(x), -np.array(volumes))
    rows = flat.design_rows(x)
    assert rows.sites.shape == (2, 15)
    # coplanar atoms: zero, and 3p coordinates keep 2p + 3 degrees of freedom
    rng = np.random.default_rng(4)
    for p in (4, 6, 9):
        xy = np.column_stack([rng.normal(size=(p, 2)) * 2, np.zeros(p)])
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        coplanar = xy @ q.T + rng.normal(size=3)
        flat = rt.FlatProxies([list(range(p))])
        assert flat.n_rows == p - 3
        assert flat.residual_sum(coplanar) == pytest.approx(0.0, abs=1e-20)
        assert rt.PlanarityProxies([list(range(p))], 0.1).residual_sum(coplanar) \
            == pytest.approx(0.0, abs=1e-18)
        assert np.linalg.matrix_rank(flat.design_rows(coplanar).sites.toarray()) == p - 3


def test_rigid_bond_zero_for_equal_components_along_the_bond():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 3))
    n = (x[1] - x[0]) / np.linalg.norm(x[1] - x[0])
    m = rng.normal(size=(3, 3))
    u1 = m @ m.T * 0.01 + 0.01 * np.eye(3)
    perp = np.cross(n, rng.normal(size=3))
    u2 = u1 + 0.02 * np.outer(perp, perp) / perp.dot(perp)
    six = lambda u: [u[0, 0], u[1, 1], u[2, 2], u[0, 1], u[0, 2], u[1, 2]]  # noqa: E731
    u = np.array([six(u1), six(u2)])
    assert rt.RigidBondProxies([[0, 1]]).residual_sum(x, u) == pytest.approx(0.0, abs=1e-22)
    assert rt.RiguProxies([[0, 1]]).residual_sum(x, u) == pytest.approx(0.0, abs=1e-22)
    # ... and not otherwise
    u[1, 0] += 0.01
    assert rt.RigidBondProxies([[0, 1]]).residual_sum(x, u) > 0


def test_adp_restraints_at_their_ideal():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 3))
    m = rng.normal(size=(3, 3))
    u0 = m @ m.T * 0.01 + 0.01 * np.eye(3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    six = lambda u: [u[0, 0], u[1, 1], u[2, 2], u[0, 1], u[0, 2], u[1, 2]]  # noqa: E731
    same = np.array([six(u0)] * 3)
    rotated = np.array([six(u0), six(q @ u0 @ q.T), six(u0)])
    iso = np.array([[0.03, 0.03, 0.03, 0, 0, 0]] * 3)
    assert rt.AdpSimilarityProxies([[0, 1]]).residual_sum(x, same) == 0.0
    assert rt.IsotropicAdpProxies([0]).residual_sum(x, iso) == pytest.approx(0, abs=1e-30)
    assert rt.UeqSimilarityProxies([[0, 1, 2]], 0.01).residual_sum(x, rotated) \
        == pytest.approx(0, abs=1e-25)
    assert rt.AdpVolumeSimilarityProxies([[0, 1, 2]], 0.01).residual_sum(x, rotated) \
        == pytest.approx(0, abs=1e-20)
    assert rt.FixedUeqProxies([0], np.trace(u0) / 3, 0.01).residual_sum(x, same) \
        == pytest.approx(0, abs=1e-25)
    assert rt.BSimilarityProxies([[0, 1]], 0.01).residual_sum(x, [0.02, 0.02, 0.05]) == 0
    # hand-worked: ISOR on diag(0.01, 0.02, 0.03): deviations -0.01, 0, 0.01
    aniso = np.array([[0.01, 0.02, 0.03, 0, 0, 0]] * 3)
    assert rt.IsotropicAdpProxies([0], 0.01).residual_sum(x, aniso) == pytest.approx(2.0)
    # volume (4 pi / 3) sqrt(det U)
    vol = rt.AdpVolumeSimilarityProxies([[0, 1]], 1.0)
    uu = np.array([[0.01, 0.02, 0.03, 0, 0, 0], [0.02, 0.02, 0.02, 0, 0, 0]] + [[0.01] * 3 + [0] * 3])
    v = 4 * np.pi / 3 * np.sqrt([6e-6, 8e-6])
    np.testing.assert_allclose(vol.deltas(x, uu), v.mean() - v)


def test_bond_across_a_cell_edge():
    # orthorhombic P 21 21 21; atom 1 at x = 0.02 is 0.04 a from atom 0 at
    # x = 0.98 when shifted by +1 along a
    cell = gemmi.UnitCell(10, 12, 14, 90, 90, 90)
    ops = list(gemmi.SpaceGroup("P 21 21 21").operations())
    symmetry = rt.Symmetry(np.array(cell.orth.mat),
                           [np.array(o.rot) // 24 for o in ops],
                           [np.array(o.tran) / 24 for o in ops])
    frac = np.array([[0.98, 0.3, 0.4], [0.02, 0.3, 0.4]])
    x = frac @ symmetry.orthogonalisation.T
    bond = rt.BondProxies([[0, 1]], 0.0, 1.0, sym_ops=[[-1, 0]], shifts=[[[0, 0, 0], [1, 0, 0]]],
                          symmetry=symmetry)
    assert -bond.deltas(x)[0] == pytest.approx(0.4)
    # a mate under the 2-fold screw (x+1/2, -y+1/2, -z): compare with gemmi
    op = ops[1]
    mate = np.array(op.apply_to_xyz(list(frac[1]))) + [0, 1, 0]
    expect = cell.orthogonalize(gemmi.Fractional(*frac[0])).dist(
        cell.orthogonalize(gemmi.Fractional(*mate)))
    bond = rt.BondProxies([[0, 1]], 0.0, 1.0, sym_ops=[[-1, 1]],
                          shifts=[[[0, 0, 0], [0, 1, 0]]], symmetry=symmetry)
    assert -bond.deltas(x)[0] == pytest.approx(expect, rel=1e-12)


def test_statistics_and_restraint_set():
    x = np.array([[0.0, 0, 0], [1.5, 0, 0], [1.5, 2.0, 0], [1.5, 2.0, 1.0]])
    bonds = rt.BondProxies([[0, 1], [1, 2], [2, 3]], [1.6, 2.0, 1.3], 0.1)
    stats = bonds.statistics(x, labels=["C1", "C2", "C3", "C4"], n_worst=2)
    assert stats.n_proxies == 3
    assert stats.rmsd == pytest.approx(np.sqrt((0.1 ** 2 + 0 + 0.3 ** 2) / 3))
    assert stats.rms_z == pytest.approx(np.sqrt((1 + 0 + 9) / 3))
    assert [w.atoms for w in stats.worst] == [("C3", "C4"), ("C1", "C2")]
    assert stats.worst[0].z == pytest.approx(3.0)
    assert "C3 C4" in stats.format()

    angles = rt.AngleProxies([[0, 1, 2]], 100.0, 2.0)
    u_iso = np.array([0.01, 0.02, 0.03, 0.04])
    bsim = rt.BSimilarityProxies([[0, 1]], 0.01)
    rset = rt.RestraintSet([bonds, angles, bsim])
    g = np.zeros_like(x)
    gu = np.zeros(4)
    total = rset.residual_sum(x, u_iso=u_iso, gradients_out=g, u_iso_gradients_out=gu)
    g_parts = np.zeros_like(x)
    gu_parts = np.zeros(4)
    parts = (bonds.residual_sum(x, g_parts) + angles.residual_sum(x, g_parts)
             + bsim.residual_sum(x, u_iso, None, gu_parts))
    assert total == pytest.approx(parts)
    np.testing.assert_allclose(g, g_parts)
    np.testing.assert_allclose(gu, gu_parts)
    rows = rset.design_rows(x, u_iso=u_iso)
    assert rows.sites.shape == (5, 12) and rows.u_iso.shape == (5, 4) and rows.u_cart is None
    assert np.sum(rows.weights * rows.deltas ** 2) == pytest.approx(total)
    # the gradient is -2 D^T W Delta
    np.testing.assert_allclose(-2 * rows.sites.T @ (rows.weights * rows.deltas),
                               g.reshape(-1), rtol=1e-12)
    assert len(rset.statistics(x, u_iso=u_iso)) == 3


def test_symmetry_from_sgtbx_matches_gemmi_operations(cases):
    from sgtbx import SpaceGroup, UnitCell

    ours = rt.Symmetry.from_sgtbx(UnitCell(7.1, 9.3, 11.2, 90, 104.5, 90),
                                  SpaceGroup("P 1 21/c 1"))
    ref = cases.symmetry_p21c()
    np.testing.assert_allclose(ours.orthogonalisation, ref.orthogonalisation, atol=1e-12)

    def ops(s):
        return sorted((tuple(r.reshape(-1)), tuple(np.round(t % 1, 9)))
                      for r, t in zip(s.rotations, s.translations))
    assert ops(ours) == ops(ref)


def test_empty_proxies_and_sets():
    x = np.zeros((3, 3))
    g = np.zeros_like(x)
    bonds = rt.BondProxies(np.zeros((0, 2), dtype=int), [], 0.02)
    assert len(bonds) == 0 and bonds.residual_sum(x, g) == 0.0 and not g.any()
    assert bonds.design_rows(x).sites.shape == (0, 9)
    assert rt.PlanarityProxies([], 0.1).residual_sum(x) == 0.0
    rows = rt.RestraintSet().design_rows(x)
    assert rows.sites.shape == (0, 9) and rows.deltas.size == 0


def test_package_example_runs():
    failures, tried = doctest.testmod(rt, raise_on_error=False)
    assert tried > 0 and failures == 0


def test_gauss_newton_with_the_design_rows_restores_the_ideal_geometry():
    # a tetrahedral centre with four arms: bonds, angles, one chirality; the
    # rows and deltas enter least squares as lstbx takes them
    tet = np.degrees(np.arccos(-1 / 3))
    pairs = [(0, k) for k in range(1, 5)]
    triples = [(i, 0, j) for i in range(1, 5) for j in range(i + 1, 5)]
    ideal = np.array([[0, 0, 0], [1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) \
        * 1.5 / np.sqrt(3)
    volume = np.linalg.det(ideal[1:4] - ideal[0])
    rset = rt.RestraintSet([rt.BondProxies(pairs, 1.5, 0.01),
                            rt.AngleProxies(triples, tet, 1.0),
                            rt.ChiralityProxies([[0, 1, 2, 3]], volume, 0.1)])
    x = ideal + np.random.default_rng(9).normal(scale=0.1, size=ideal.shape)
    start = rset.residual_sum(x)
    for _ in range(8):
        rows = rset.design_rows(x)
        sw = np.sqrt(rows.weights)
        step = np.linalg.lstsq(rows.sites.toarray() * sw[:, None], rows.deltas * sw,
                               rcond=None)[0]
        x = x + step.reshape(-1, 3)
    assert start > 100 and rset.residual_sum(x) < 1e-16
