"""The whole chain x → y (graph) → F (sftbx) → |F|²: design rows in y times
J equal central finite differences of |F|² in x, for every constraint type
present in the data."""

import numpy as np
import pytest

import sftbx
from smtbx import read_ins
from smtbx.reparametrisation import Reparametrisation, _RidingNode

CASES = {
    # riding 13, 23 and 148 (rotating, refined X–H), riding U
    "sucrose_p21": "zucker2.res",
    # riding 137 and 147, 43, 13, 23
    "bjk_p21212": "bjk.res",
    # 33 on a PART -3 solvent, special positions in I-43d, EADP
    "ni_i43d": "i43d.res",
    # special positions in R-3c, fv and 1 - fv occupancies, EADP; f' and
    # f'' of Fe and Cl refined
    "fecl_r3c": "2240189.res",
    # EXYZ and EADP on a mixed site, fv on a special position's occupancy
    "musc_c2c": "muscovite.res",
    # EXTI, fv occupancy, all atoms on mirror planes
    "exti_c2m": "exti.res",
    # AFIX 83 on an O with no other neighbour (fixed X–H vector)
    "ru_p21c": "05srv085.ins",
}

REFINE_DISPERSION = {"fecl_r3c": ("Fe", "Cl")}


def _structure(model, graph, y):
    arrays = graph.arrays(y)
    elements = [model.scattering_types[s.type_index].element for s in model.scatterers]
    scatterers = sftbx.Scatterers(elements, arrays["sites_frac"], arrays["occupancies"], arrays["u_iso"],
                                  arrays["u_star"], arrays["aniso"], arrays["fp"], arrays["fdp"],
                                  labels=graph.labels)
    return scatterers, arrays["extinction"]


def _hkl(model, n=40):
    rng = np.random.default_rng(7)
    grid = np.array([(h, k, l) for h in range(-4, 5) for k in range(-4, 5) for l in range(-4, 5)
                     if (h, k, l) != (0, 0, 0)], dtype=np.int32)
    grid = grid[~model.space_group.absent_flags(grid)]
    return grid[rng.choice(len(grid), size=min(n, len(grid)), replace=False)]


def _intensities(model, graph, hkl, x, pmap, multiplicities):
    y, _ = graph.evaluate(x)
    scatterers, exti = _structure(model, graph, y)
    sf = sftbx.StructureFactors(model.cell, model.space_group, scatterers, hkl,
                                multiplicities=multiplicities)
    ext = None if exti is None else sftbx.ShelxExtinction(exti, model.wavelength)
    return sf.design_rows(pmap, extinction=ext)


@pytest.mark.parametrize("name", sorted(CASES))
def test_design_rows_through_the_graph(small_data, name):
    model = read_ins(small_data / name / CASES[name])
    graph = Reparametrisation(model, refine_dispersion=REFINE_DISPERSION.get(name, ()))
    hkl = _hkl(model)
    columns = graph.y_columns()
    pmap = sftbx.ParameterMap(columns, len(graph.y), extinction_column=graph.extinction_index)
    multiplicities = model.space_group.order_z / model.site_orders
    y_calc, rows = _intensities(model, graph, hkl, graph.x, pmap, multiplicities)
    design = graph.chain(rows)                       # (m, n_x)
    np.testing.assert_allclose(design, rows @ graph.jacobian.toarray(), rtol=1e-12, atol=1e-9 * np.abs(design).max())
    # the columns of the first node of each kind (copy, linear, each riding
    # geometry and mode), plus the first two columns of each kind of x
    jac = graph.jacobian.tocsr()
    wanted, seen = set(), set()
    for node in graph.nodes:
        kind = (type(node).__name__,) + ((type(node.geometry.group).__name__, node.geometry.group.rotating,
                                          node.geometry.group.refined_distance)
                                         if isinstance(node, _RidingNode) else ())
        if kind in seen:
            continue
        seen.add(kind)
        for row in node.y_out:
            wanted.update(jac.indices[jac.indptr[row]:jac.indptr[row + 1]].tolist())
    kinds = {}
    for c, label in enumerate(graph.x_names):
        kinds.setdefault(label.split()[-1], []).append(c)
    for cols in kinds.values():
        wanted.update(cols[:2])
    scale = np.abs(y_calc).max()
    for c in sorted(wanted):
        h = 1e-5 if graph.x_names[c].endswith(("torsion", "distance")) else 1e-6
        xp, xm = graph.x.copy(), graph.x.copy()
        xp[c] += h
        xm[c] -= h
        fd = (_intensities(model, graph, hkl, xp, pmap, multiplicities)[0]
              - _intensities(model, graph, hkl, xm, pmap, multiplicities)[0]) / (2 * h)
        np.testing.assert_allclose(design[:, c], fd, rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=f"{name}: {graph.x_names[c]}")
