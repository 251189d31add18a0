"""Every gradient and design row against central finite differences, for
every restraint type, with and without symmetry mates (across cell edges),
in Cartesian and fractional (U*) frames."""

import numpy as np
import pytest

import restraintstbx as rt

TOL = 1e-6


def numeric_jacobian(fun, x0, h):
    x0 = np.asarray(x0, dtype=np.float64)
    f0 = np.atleast_1d(fun(x0))
    jac = np.empty((f0.size, x0.size))
    for k in range(x0.size):
        xp = x0.copy().reshape(-1)
        xm = xp.copy()
        xp[k] += h
        xm[k] -= h
        jac[:, k] = (np.atleast_1d(fun(xp.reshape(x0.shape)))
                     - np.atleast_1d(fun(xm.reshape(x0.shape)))) / (2 * h)
    return jac


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def test_finite_differences(restraint_case, cases):
    name, with_symmetry, frame = restraint_case
    symmetry = cases.symmetry_p21c() if with_symmetry else None
    sites, u_cart, u_iso = cases.structure(seed=3, symmetry=symmetry)
    proxies, adp = cases.build(name, symmetry, sites, np.random.default_rng(7))
    u = cases.adp_values(adp, u_cart, u_iso)
    if with_symmetry:
        # mates, some of them across a cell face
        assert np.any(proxies.atom_op >= 0) and np.any(proxies.atom_shift != 0)

    # parameters in the requested frame, and the map back to Cartesian
    if frame == "frac":
        a = symmetry.orthogonalisation
        t_a = rt.u_transform(a)
        params_sites = sites @ symmetry.fractionalisation.T
        to_sites = lambda p: p @ a.T  # noqa: E731
        params_u = (u @ np.linalg.inv(t_a).T) if adp == "u_cart" else u
        to_u = (lambda p: p @ t_a.T) if adp == "u_cart" else (lambda p: p)
        h_sites = 1e-7
    else:
        params_sites, to_sites = sites, (lambda p: p)
        params_u, to_u = u, (lambda p: p)
        h_sites = 1e-6

    def total(ps, pu):
        if adp is None:
            return proxies.residual_sum(to_sites(ps))
        return proxies.residual_sum(to_sites(ps), to_u(pu))

    def deltas(ps, pu):
        if adp is None:
            return proxies.deltas(to_sites(ps))
        return proxies.deltas(to_sites(ps), to_u(pu))

    g_sites = np.zeros_like(sites)
    if adp is None:
        value = proxies.residual_sum(sites, g_sites, frame=frame)
        rows = proxies.design_rows(sites, frame=frame)
    else:
        g_u = np.zeros_like(u)
        value = proxies.residual_sum(sites, u, g_sites, g_u, frame=frame)
        rows = proxies.design_rows(sites, u, frame=frame)
    assert value > 0
    np.testing.assert_allclose(rows.deltas, deltas(params_sites, params_u), rtol=1e-12)
    np.testing.assert_allclose(value, np.sum(rows.weights * rows.deltas ** 2), rtol=1e-12)

    if proxies.has_sites:
        fd = numeric_jacobian(lambda p: total(p, params_u), params_sites, h_sites)
        assert rel(g_sites.reshape(-1), fd[0]) < TOL
        fd_rows = -numeric_jacobian(lambda p: deltas(p, params_u), params_sites, h_sites)
        assert rel(rows.sites.toarray(), fd_rows) < TOL
    else:
        assert rows.sites.nnz == 0 and not np.any(g_sites)
    if adp is not None:
        h_u = 1e-8
        fd = numeric_jacobian(lambda p: total(params_sites, p), params_u, h_u)
        assert rel(g_u.reshape(-1), fd[0]) < TOL
        fd_rows = -numeric_jacobian(lambda p: deltas(params_sites, p), params_u, h_u)
        assert rel(getattr(rows, adp).toarray(), fd_rows) < TOL


@pytest.mark.parametrize("name", ["planarity", "rigu", "nonbonded"])
def test_thread_count_does_not_change_results(name, cases):
    symmetry = cases.symmetry_p21c()
    sites, u_cart, u_iso = cases.structure(seed=5, symmetry=symmetry)
    proxies, adp = cases.build(name, symmetry, sites, np.random.default_rng(2))
    u = cases.adp_values(adp, u_cart, u_iso)
    args = (sites,) if adp is None else (sites, u)
    results = []
    for n_threads in (1, 2):
        g = np.zeros_like(sites)
        e = proxies.residual_sum(*args, g, n_threads=n_threads)
        rows = proxies.design_rows(*args, n_threads=n_threads)
        results.append((e, g, rows.sites.toarray(), rows.deltas))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-13)
    for a, b in zip(results[0][1:], results[1][1:]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_restraints_between_an_atom_and_its_own_mate(cases):
    # both ends map back to the same atom: gradients add, CSR columns merge
    symmetry = cases.symmetry_p21c()
    sites, u_cart, _ = cases.structure(seed=8, n=3, symmetry=symmetry)
    ops, shifts = [[-1, 1]], [[[0, 0, 0], [0, -1, 1]]]
    for proxies, u in [
            (rt.BondProxies([[0, 0]], 3.0, 0.1, ops, shifts, symmetry), None),
            (rt.RiguProxies([[0, 0]], 0.01, ops, shifts, symmetry), u_cart)]:
        args = (sites,) if u is None else (sites, u)
        g = np.zeros_like(sites)
        proxies.residual_sum(*args, g)
        rows = proxies.design_rows(*args)
        assert rows.sites.indices.size == 3 * proxies.n_rows  # one atom per row
        fd = numeric_jacobian(lambda p: proxies.residual_sum(p, *args[1:]), sites, 1e-6)
        assert rel(g.reshape(-1), fd[0]) < TOL
        fd_rows = -numeric_jacobian(lambda p: proxies.deltas(p, *args[1:]), sites, 1e-6)
        assert rel(rows.sites.toarray(), fd_rows) < TOL


def test_proxies_with_and_without_mates_in_one_object(cases):
    # the residual sum runs the two groups apart; results and error indices
    # refer to the proxies as given
    symmetry = cases.symmetry_p21c()
    sites, _, _ = cases.structure(seed=12, n=6, symmetry=symmetry)
    ops = [[-1, -1], [-1, 2], [-1, -1], [-1, 1]]
    shifts = [[[0, 0, 0]] * 2, [[0, 0, 0], [1, 0, 0]], [[0, 0, 0]] * 2, [[0, 0, 0], [0, 1, 0]]]
    angles = rt.AngleProxies([[0, 1, 2], [3, 4, 5], [1, 2, 3], [2, 3, 4]], 109.5, 2.0,
                             sym_ops=[o + [-1] for o in ops],
                             shifts=[s + [[0, 0, 0]] for s in shifts], symmetry=symmetry)
    g = np.zeros_like(sites)
    value = angles.residual_sum(sites, g)
    rows = angles.design_rows(sites)
    assert value == pytest.approx(np.sum(rows.weights * rows.deltas ** 2), rel=1e-12)
    fd = numeric_jacobian(lambda p: angles.residual_sum(p), sites, 1e-6)
    assert rel(g.reshape(-1), fd[0]) < TOL
    bonds = rt.BondProxies([[0, 1], [2, 3], [4, 4], [5, 5]], 1.5, 0.1,
                           sym_ops=[[-1, -1], [-1, 0], [-1, -1], [-1, -1]],
                           shifts=[[[0, 0, 0]] * 2, [[0, 0, 0], [0, 0, 1]],
                                   [[0, 0, 0]] * 2, [[0, 0, 0]] * 2],
                           symmetry=symmetry)
    with pytest.raises(rt.RestraintError, match=r"bond proxy 2 \(atoms 4 4\): degenerate"):
        bonds.residual_sum(sites)
