"""Block accumulation against the whole design matrix and the formulae of
DESIGN.md section 5 computed directly."""

import numpy as np
import pytest
import scipy.sparse

import lstbx


def random_data(m=601, n=23, seed=7, k=2.5):
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((m, n))
    y_calc = rng.random(m) + 0.2
    y_obs = k * y_calc * (1 + 0.05 * rng.standard_normal(m))
    weights = rng.random(m) + 0.1
    weights[::17] = 0.0
    return y_obs, weights, y_calc, rows


def direct(y_obs, weights, y_calc, rows, scale, k=None):
    """Normal matrix, right-hand side and K from the whole design matrix."""
    w = weights
    if scale == "separable":
        sum_w_yc_sq = w @ y_calc ** 2
        k = (w @ (y_obs * y_calc)) / sum_w_yc_sq
        dk = (rows.T @ (w * y_obs) - 2 * k * rows.T @ (w * y_calc)) / sum_w_yc_sq
        a = k * rows + y_calc[:, None] * dk[None, :]
    elif scale == "parameter":
        a = np.column_stack([k * rows, y_calc])
    else:
        a = k * rows
    r = y_obs - k * y_calc
    return a.T @ (w[:, None] * a), a.T @ (w * r), k, r


def accumulate(data, block, scale, **kwargs):
    y_obs, weights, y_calc, rows = data
    ne = lstbx.NormalEquations(rows.shape[1], scale=scale, **kwargs)
    for s in range(0, rows.shape[0], block):
        ne.add_block(y_obs[s:s + block], weights[s:s + block], y_calc[s:s + block],
                     rows[s:s + block])
    ne.finalise()
    return ne


def relative(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("scale,k", [("separable", None), ("parameter", 2.4), ("none", 2.4)])
@pytest.mark.parametrize("block", [1, 7, 256, 601])
def test_blocks_equal_whole_matrix(scale, k, block):
    data = random_data()
    ne = accumulate(data, block, scale, scale_factor=k, buffer_rows=100)
    matrix, rhs, k_direct, r = direct(*data, scale, k)
    assert ne.scale_factor() == pytest.approx(k_direct, rel=1e-14)
    assert relative(ne.normal_matrix(), matrix) < 1e-12
    assert relative(ne.right_hand_side(), rhs) < 1e-12
    figures = ne.figures
    w = data[1]
    assert figures.sum_w_r_sq == pytest.approx(w @ r ** 2, rel=1e-12)
    assert figures.sum_w_yo_sq == pytest.approx(w @ data[0] ** 2, rel=1e-14)
    assert figures.n_observations == 601


def test_buffer_size_does_not_matter():
    data = random_data()
    reference = accumulate(data, 64, "separable", buffer_rows=601)
    for buffer_rows in (1, 5, 64, 1000):
        ne = accumulate(data, 64, "separable", buffer_rows=buffer_rows)
        assert relative(ne.normal_matrix(), reference.normal_matrix()) < 1e-13
        assert relative(ne.right_hand_side(), reference.right_hand_side()) < 1e-12


def test_residual_sums_keep_their_digits_near_a_perfect_fit():
    """The residual sums are accumulated around a reference scale k0 (the
    first block's least-squares scale, or the one passed in), so that a
    near-perfect fit keeps its sum of squares; the cctbx form
    sum w y_o^2 - K^2 sum w y_c^2 (k0 = 0) loses it to cancellation."""
    rng = np.random.default_rng(3)
    m, n = 400, 6
    rows = rng.standard_normal((m, n))
    y_calc = rng.random(m) + 1.0
    y_obs = 7.0 * y_calc * (1 + 1e-9 * rng.standard_normal(m))
    weights = np.ones(m)
    data = (y_obs, weights, y_calc, rows)
    _, rhs, k, r = direct(*data, "separable")
    exact = weights @ r ** 2
    for k0 in (None, 7.0, 6.9999):
        ne = accumulate(data, 50, "separable", scale_factor=k0)
        assert ne.figures.sum_w_r_sq == pytest.approx(exact, rel=1e-6, abs=0)
        # the direct right-hand side itself carries relative rounding of
        # about eps * |y_o| / |r| = 1e-7
        assert relative(ne.right_hand_side(), rhs) < 1e-6
    cancelled = weights @ y_obs ** 2 - k ** 2 * (weights @ y_calc ** 2)
    assert abs(cancelled - exact) > 10 * exact


def test_figures_by_hand():
    data = random_data(m=200, n=5)
    y_obs, w, y_calc, rows = data
    ne = accumulate(data, 30, "separable")
    d = scipy.sparse.random(4, 5, density=0.5, random_state=1, format="csr")
    deltas = np.array([0.1, -0.2, 0.05, 0.3])
    restraint_weights = np.array([4.0, 1.0, 9.0, 0.5])
    ne.add_restraints(d, deltas, restraint_weights)
    k = (w @ (y_obs * y_calc)) / (w @ y_calc ** 2)
    sum_w_r_sq = w @ (y_obs - k * y_calc) ** 2
    sum_restraints = restraint_weights @ deltas ** 2
    f = ne.figures
    assert f.n_parameters == 6 and f.n_restraints == 4 and f.n_observations == 200
    assert f.wr == pytest.approx(np.sqrt(sum_w_r_sq / (w @ y_obs ** 2)), rel=1e-12)
    assert f.gof == pytest.approx(np.sqrt(sum_w_r_sq / (200 - 6)), rel=1e-12)
    assert f.restrained_gof == pytest.approx(
        np.sqrt((sum_w_r_sq + sum_restraints) / (200 + 4 - 6)), rel=1e-12)
    assert f.objective == pytest.approx(sum_w_r_sq + sum_restraints, rel=1e-12)
    none = accumulate(data, 30, "none", scale_factor=k)
    assert none.figures.n_parameters == 5


@pytest.mark.parametrize("scale,k", [("separable", None), ("parameter", 2.4), ("none", 2.4)])
def test_restraints_add_their_normal_equations(scale, k):
    data = random_data(m=150, n=8)
    d = scipy.sparse.random(5, 8, density=0.4, random_state=2, format="csr")
    deltas = np.linspace(-0.3, 0.4, 5)
    weights = np.linspace(1.0, 3.0, 5)
    ne = accumulate(data, 40, scale, scale_factor=k)
    ne.add_restraints(d[:2], deltas[:2], weights[:2])
    ne.add_restraints(d[2:].toarray(), deltas[2:], weights[2:])
    matrix, rhs, _, _ = direct(*data, scale, k)
    dd = d.toarray()
    if scale == "parameter":
        dd = np.column_stack([dd, np.zeros(5)])
    assert relative(ne.normal_matrix(), matrix + dd.T @ (weights[:, None] * dd)) < 1e-12
    assert relative(ne.right_hand_side(), rhs + dd.T @ (weights * deltas)) < 1e-12
    assert ne.n_restraints == 5


def test_right_hand_side_is_minus_half_the_gradient(problems):
    """g = -dL/dx / 2 by central differences, for all three scale modes."""
    for problem in problems:
        x = problem.x_start
        for scale in ("separable", "parameter"):
            xs = np.append(x, 0.9 * problem.k_true) if scale == "parameter" else x
            g = problem.equations(xs, scale=scale).right_hand_side()
            fd = np.empty_like(xs)
            for i in range(xs.size):
                h = 1e-6 * max(abs(xs[i]), 1.0)
                e = np.zeros_like(xs)
                e[i] = h
                fd[i] = (problem.objective(xs + e, scale) - problem.objective(xs - e, scale)) / (2 * h)
            assert relative(-2 * g, fd) < 1e-6, (problem.name, scale)


def test_problem_design_rows_match_finite_differences(problems):
    for problem in problems:
        x = problem.x_start
        _, rows = problem.model(x)
        for i in range(problem.n):
            h = 1e-6 * max(abs(x[i]), 1.0)
            e = np.zeros_like(x)
            e[i] = h
            fd = (problem.model(x + e)[0] - problem.model(x - e)[0]) / (2 * h)
            assert relative(rows[:, i], fd) < 1e-7, (problem.name, i)


def test_propagation_matches_dense_product():
    data = random_data(m=300, n=10)
    ne = accumulate(data, 64, "separable")
    v = ne.covariance()
    rng = np.random.default_rng(5)
    j = scipy.sparse.random(12, 10, density=0.3, random_state=4, format="csr")
    j = j + scipy.sparse.eye(12, 10)
    dense = j.toarray()
    full = dense @ v @ dense.T
    assert relative(ne.propagate(j), np.diag(full)) < 1e-13
    assert relative(ne.propagate(j, chunk_rows=5), np.diag(full)) < 1e-13
    blocks = [[0, 1, 2], [7], rng.permutation(12)[:4]]
    for block, cov in zip(blocks, ne.propagate(dense, blocks=blocks)):
        assert relative(cov, full[np.ix_(block, block)]) < 1e-13
    unscaled = ne.propagate(j, scaled=False)
    assert relative(unscaled * ne.figures.restrained_gof ** 2, np.diag(full)) < 1e-13


def test_errors_name_the_item():
    data = random_data(m=20, n=4)
    y_obs, w, y_calc, rows = data
    ne = lstbx.NormalEquations(4, parameter_names=["a", "b", "c", "d"])
    ne.add_block(y_obs[:10], w[:10], y_calc[:10], rows[:10])
    bad = rows[10:].copy()
    bad[3, 2] = np.nan
    with pytest.raises(lstbx.LeastSquaresError, match=r"observation 13 .*respect to c"):
        ne.add_block(y_obs[10:], w[10:], y_calc[10:], bad)
    negative = w[10:].copy()
    negative[1] = -1.0
    with pytest.raises(lstbx.LeastSquaresError, match=r"observation 11 .*weight must be >= 0"):
        ne.add_block(y_obs[10:], negative, y_calc[10:], rows[10:])
    y_bad = y_calc[10:].copy()
    y_bad[0] = np.inf
    with pytest.raises(lstbx.LeastSquaresError, match=r"observation 10 .*y_calc=inf"):
        ne.add_block(y_obs[10:], w[10:], y_bad, rows[10:])
    with pytest.raises(lstbx.LeastSquaresError, match=r"shape \(b, 4\)"):
        ne.add_block(y_obs[10:], w[10:], y_calc[10:], rows[10:, :3])
    with pytest.raises(lstbx.LeastSquaresError, match="weights must be a vector of length 10"):
        ne.add_block(y_obs[10:], w[11:], y_calc[10:], rows[10:])
    with pytest.raises(lstbx.EquationsStateError, match="finalise"):
        ne.normal_matrix()
    # the failed blocks accumulated nothing
    ne.add_block(y_obs[10:], w[10:], y_calc[10:], rows[10:])
    ne.finalise()
    assert relative(ne.normal_matrix(), direct(*data, "separable")[0]) < 1e-12
    with pytest.raises(lstbx.EquationsStateError, match="after finalise"):
        ne.add_block(y_obs, w, y_calc, rows)
    with pytest.raises(lstbx.LeastSquaresError, match="4 columns"):
        ne.add_restraints(scipy.sparse.eye(2, 3), [0, 0], [1, 1])
    with pytest.raises(lstbx.LeastSquaresError, match="restraint 1: weight"):
        ne.add_restraints(scipy.sparse.eye(2, 4), [0, 0], [1, -1])
    with pytest.raises(lstbx.NonFiniteError, match="restraint 0: delta is nan"):
        ne.add_restraints(scipy.sparse.eye(2, 4), [np.nan, 0], [1, 1])
    d = np.eye(2, 4)
    d[1, 3] = np.inf
    with pytest.raises(lstbx.NonFiniteError, match="restraint 1: derivative with respect to d is inf"):
        ne.add_restraints(d, [0, 0], [1, 1])


def test_construction_errors():
    with pytest.raises(lstbx.LeastSquaresError, match="scale must be one of"):
        lstbx.NormalEquations(3, scale="free")
    with pytest.raises(lstbx.LeastSquaresError, match="needs the current scale_factor"):
        lstbx.NormalEquations(3, scale="parameter")
    with pytest.raises(lstbx.LeastSquaresError, match="positive integer"):
        lstbx.NormalEquations(0)
    with pytest.raises(lstbx.LeastSquaresError, match="2 parameter names for 3"):
        lstbx.NormalEquations(3, parameter_names=["a", "b"])
    with pytest.raises(lstbx.LeastSquaresError, match="no observations"):
        lstbx.NormalEquations(3).finalise()
    ne = lstbx.NormalEquations(2)
    ne.add_block([1.0], [1.0], [0.0], [[1.0, 2.0]])
    with pytest.raises(lstbx.LeastSquaresError, match="separable scale factor is undefined"):
        ne.finalise()
    ne = lstbx.NormalEquations(2)
    ne.add_block([1.0, 2.0], [1.0, 1.0], [1.0, 1.0], [[1.0, 2.0], [0.0, 1.0]])
    ne.finalise()
    with pytest.raises(lstbx.NoDegreesOfFreedomError, match="2 observations"):
        ne.covariance()
    assert np.all(np.isfinite(ne.covariance(scaled=False)))
