"""Rigid groups (AFIX m6, m9).  No shared data set has one (README.md, "Not
found"), so they are checked on synthetic models: shape, parameters,
exact derivatives, rigidity under shifts, riding hydrogens on a rigid ring."""

import numpy as np
import pytest

import smtbx
from smtbx.reparametrisation import InvalidConstraint, Reparametrisation

CELL = (9.0, 10.0, 11.0, 80.0, 95.0, 100.0)


def write(tmp_path, body):
    text = "\n".join(["TITL rigid", "CELL 0.71073 " + " ".join(map(str, CELL)), "ZERR 1 0 0 0 0 0 0",
                      "LATT -1", "SFAC C H", "UNIT 6 6", "FVAR 1.0", *body, "HKLF 4", "END"]) + "\n"
    path = tmp_path / "r.ins"
    path.write_text(text)
    model = smtbx.read_ins(path)
    return model, Reparametrisation(model)


def ring_lines(model_cell, afix_first="AFIX 66", with_h=False, distort=0.03):
    """A slightly irregular benzene ring, fractional coordinates."""
    rng = np.random.default_rng(5)
    cart = np.array([[1.39 * np.cos(t), 1.39 * np.sin(t), 0.1 * np.sin(3 * t)]
                     for t in np.arange(6) * np.pi / 3]) + [4.0, 4.0, 4.0]
    cart += rng.normal(scale=distort, size=cart.shape)
    frac = cart @ np.linalg.inv(model_cell.orthogonalisation).T
    lines = [afix_first]
    for k, f in enumerate(frac):
        if k == 1 and with_h:
            h = cart[1] + 0.95 * (cart[1] - cart.mean(axis=0)) / np.linalg.norm(cart[1] - cart.mean(axis=0))
            hf = np.linalg.solve(model_cell.orthogonalisation, h)
            lines += ["AFIX 43", f"H2 2 {hf[0]:.6f} {hf[1]:.6f} {hf[2]:.6f} 11.0 -1.2",
                      afix_first[:-1].rstrip() + "5" if afix_first != "AFIX 9" else "AFIX 5"]
        lines.append(f"C{k + 1} 1 {f[0]:.6f} {f[1]:.6f} {f[2]:.6f} 11.0 0.04")
    return lines + ["AFIX 0"]


@pytest.fixture()
def cell():
    from sgtbx import UnitCell
    return UnitCell(*CELL)


def distances(model, graph, y=None):
    y = graph.y if y is None else y
    a = model.cell.orthogonalisation
    sites = [a @ y[graph.site_index[model.index(f"C{k + 1}")]] for k in range(6)]
    return np.array([np.linalg.norm(sites[k] - sites[(k + 1) % 6]) for k in range(6)]), sites


def test_ideal_hexagon(tmp_path, cell):
    model, graph = write(tmp_path, ring_lines(cell))
    assert len(graph.x) == 6 + 6 * 1      # 6 rigid parameters and the six U_iso
    sides, sites = distances(model, graph)
    np.testing.assert_allclose(sides, 1.39, atol=1e-12)
    centre = np.mean(sites, axis=0)
    np.testing.assert_allclose(centre, model.cell.orthogonalisation @ model.sites_frac[:6].mean(axis=0),
                               atol=1e-12)
    # planar
    normal = np.cross(sites[1] - sites[0], sites[2] - sites[0])
    assert max(abs((s - centre) @ normal) for s in sites) < 1e-12


def test_rigid_motion_and_scale(tmp_path, cell):
    model, graph = write(tmp_path, ring_lines(cell, afix_first="AFIX 9"))
    assert [n.split()[-1] for n in graph.x_names[:7]] == ["tx", "ty", "tz", "rx", "ry", "rz", "scale"]
    start, _ = distances(model, graph)
    shifts = np.zeros(len(graph.x))
    shifts[:6] = [0.1, -0.2, 0.05, 0.3, -0.2, 0.4]
    graph.apply_shifts(shifts)
    moved, _ = distances(model, graph)
    np.testing.assert_allclose(moved, start, atol=1e-12)       # rigid
    shifts = np.zeros(len(graph.x))
    shifts[6] = 0.1
    graph.apply_shifts(shifts)
    scaled, _ = distances(model, graph)
    np.testing.assert_allclose(scaled, 1.1 * start, atol=1e-12)
    # the model follows
    np.testing.assert_allclose(model.sites_frac[model.index("C3")], graph.y[graph.site_index[model.index("C3")]])


@pytest.mark.parametrize("afix", ["AFIX 66", "AFIX 69", "AFIX 9"])
def test_rigid_jacobian_and_riding_hydrogen(tmp_path, cell, afix):
    """Exact derivatives of the rigid sites and of a riding H on the ring
    (rigid node → riding node) against central differences."""
    model, graph = write(tmp_path, ring_lines(cell, afix_first=afix, with_h=True))
    assert len(graph.riding_geometries) == 1 and len(graph.rigid_bodies) == 1
    jac = graph.jacobian.toarray()
    h_rows = graph.site_index[model.index("H2")]
    assert np.count_nonzero(jac[h_rows][:, :graph.rigid_bodies[0].n_parameters]) > 6
    for c in range(len(graph.x)):
        h = 1e-6
        xp, xm = graph.x.copy(), graph.x.copy()
        xp[c] += h
        xm[c] -= h
        fd = (graph.evaluate(xp)[0] - graph.evaluate(xm)[0]) / (2 * h)
        np.testing.assert_allclose(jac[:, c], fd, atol=1e-8, err_msg=graph.x_names[c])


def test_rigid_atom_cannot_ride(tmp_path, cell):
    lines = ring_lines(cell, afix_first="AFIX 9")
    lines.insert(-1, "EXYZ C1 C2")
    with pytest.raises(InvalidConstraint, match="C2 x is constrained twice: by rigid group C1 C2"):
        write(tmp_path, lines)
