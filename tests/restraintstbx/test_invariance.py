"""Rotating and translating a molecule (its sites and U's) leaves every
restraint without symmetry mates unchanged (hypothesis)."""

import numpy as np
from hypothesis import given, settings, strategies as st

from restraintstbx.symmetry import u_transform

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


def rotation(q):
    q = np.asarray(q, dtype=float)
    norm = np.linalg.norm(q)
    if norm < 1e-3:
        return np.eye(3)
    w, x, y, z = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@settings(max_examples=25, deadline=None)
@given(q=st.tuples(finite, finite, finite, finite), t=st.tuples(finite, finite, finite),
       seed=st.integers(0, 2 ** 16))
def test_rigid_motion_leaves_every_restraint_unchanged(cases, q, t, seed):
    r = rotation(q)
    sites, u_cart, u_iso = cases.structure(seed=seed)
    moved = sites @ r.T + np.asarray(t)
    u_moved = u_cart @ u_transform(r).T
    for name in cases.TYPES:
        proxies, adp = cases.build(name)
        if adp is None:
            before, after = proxies.residual_sum(sites), proxies.residual_sum(moved)
        else:
            u0 = cases.adp_values(adp, u_cart, u_iso)
            u1 = cases.adp_values(adp, u_moved, u_iso)
            before, after = proxies.residual_sum(sites, u0), proxies.residual_sum(moved, u1)
        assert abs(after - before) <= 1e-9 * max(abs(before), 1e-12), name
