"""The publication pieces through the real driver (smtbx.refine): sucrose
refined to convergence, then atom sites with s.u.'s from the driver's
Var(x), BOND/angle/CONF tables, the difference map, Parsons' Flack and the
CIF; coordinates and Flack against the published CIF."""

import gemmi
import numpy as np
import pytest

import sftbx
import smtbx
from smtbx.absolute import parsons_flack
from smtbx.cif import (RefinementSummary, atom_sites, check_cif, cif_document, parse_su,
                        write_cif,
                        y_covariance)
from smtbx.connectivity import Connectivity
from smtbx.figures import agreement
from smtbx.geometry import DerivedGeometry, angle_table, bond_table, torsion_table
from smtbx.refine import LeastSquares
from smtbx.structure import structure_factors


def test_sucrose_refined_then_published(small_data, tmp_path):
    model = smtbx.shelx.read_shelx(str(small_data / "sucrose_p21" / "zucker2.res"))
    ls = LeastSquares(model)
    result = ls.run(10)
    assert result.converged
    graph, data = ls.graph, ls.data
    n_x = len(graph.x)
    cov = result.equations.covariance()[:n_x, :n_x]
    sites = atom_sites(model, graph, cov)
    # the site block of one atom equals lstbx's own propagation
    rows = graph.site_index[0]
    by_lstbx = result.equations.propagate(graph.jacobian[rows], blocks=[range(3)])[0]
    np.testing.assert_allclose(y_covariance(graph.jacobian, cov, rows), by_lstbx, rtol=1e-10)
    pub = gemmi.cif.read(str(small_data / "sucrose_p21" / "DK_Zucker2_0m.cif")).sole_block()
    published = {row[0]: [parse_su(v) for v in list(row)[1:]]
                 for row in pub.find("_atom_site_", ["label", "fract_x", "fract_y", "fract_z"])}
    off = [abs(sites.sites_frac[i, k] - published[label][k][0]) / published[label][k][1]
           for i, label in enumerate(sites.labels) if not sites.riding[i]
           for k in range(3) if published[label][k][1]]
    assert len(off) > 60 and max(off) < 3

    geo = DerivedGeometry(model.cell, sites.sites_frac, graph.jacobian[graph.site_index.ravel()],
                          cov, labels=sites.labels, space_group=model.space_group)
    conn = Connectivity(model)
    sf = structure_factors(model, data.hkl)
    f_calc = sf.f_calc()
    k = result.osf ** 2
    diff = sftbx.difference_map(model.cell, model.space_group, data.hkl, data.fo_sq, f_calc, k)
    flack = parsons_flack(model.space_group, data.hkl, data.fo_sq, data.sig_fo_sq,
                          np.abs(f_calc) ** 2, np.abs(sf.f_calc_friedel()) ** 2)
    x_pub, su_pub = parse_su(pub.find_value("_refine_ls_abs_structure_Flack"))
    assert abs(flack.x - x_pub) < su_pub
    fig = result.figures
    gt = data.fo_sq > 2 * data.sig_fo_sq
    wr2_gt = agreement(data.fo_sq[gt], data.sig_fo_sq[gt], result.fc_sq[gt], k,
                       result.weights[gt]).wr2
    last = result.cycles[-1]
    theta = np.degrees(np.arcsin(0.5 * model.wavelength * np.sqrt(model.cell.s_squared(data.hkl))))
    summary = RefinementSummary(
        r1_gt=fig.r1_gt, r1_all=fig.r1_all, wr2_ref=fig.wr2, wr2_gt=wr2_gt, gof=fig.gof,
        restrained_gof=fig.restrained_gof, n_reflections=fig.n_reflections, n_gt=fig.n_gt,
        n_parameters=fig.n_parameters, n_restraints=fig.n_restraints,
        weighting_a=model.instructions.weighting.a, weighting_b=model.instructions.weighting.b,
        shift_su_max=last.max_shift_su, shift_su_mean=last.mean_shift_su,
        diff_density_max=diff.peaks(1)[0].height, diff_density_min=diff.holes(1)[0].height,
        diff_density_rms=diff.rms, wavelength=model.wavelength, theta_min=theta.min(),
        theta_max=theta.max(), flack=flack)
    path = tmp_path / "zucker2.cif"
    write_cif(path, "zucker2", model.cell, model.space_group, sites, summary, bond_table(geo, conn),
              angle_table(geo, conn), torsion_table(geo, conn))
    block = gemmi.cif.read(str(path)).sole_block()
    assert check_cif(block) == []
    assert block.find_value("_refine_ls_number_parameters") == pub.find_value(
        "_refine_ls_number_parameters")
    for tag in ("_refine_ls_wR_factor_gt", "_refine_ls_R_factor_gt"):
        assert abs(float(block.find_value(tag)) - float(pub.find_value(tag))) < 0.0005
    for tag in ("_refine_diff_density_max", "_refine_diff_density_min"):
        assert abs(float(block.find_value(tag)) - float(pub.find_value(tag))) < 0.05


def test_exti_c2m_extinction_refined_with_its_su(small_data):
    """exti_c2m through smtbx.refine: R1 0.0267 ± 0.002 and EXTI near SHELXL's
    0.00155, its s.u. from J Var(x) Jᵀ, written as _refine_ls_extinction_coef."""
    model = smtbx.shelx.read_shelx(str(small_data / "exti_c2m" / "exti.res"))
    ls = LeastSquares(model)
    result = ls.run(20)
    assert result.converged
    assert abs(result.figures.r1_gt - 0.0267) < 0.002
    graph = ls.graph
    cov = result.equations.covariance()
    e = graph.extinction_index
    su = float(np.sqrt(y_covariance(graph.jacobian, cov, [e])[0, 0]))
    assert abs(graph.y[e] - 0.00155) < 2 * su and 0 < su < 0.0005
    sites = atom_sites(model, graph, cov)
    summary = RefinementSummary(
        r1_gt=result.figures.r1_gt, r1_all=result.figures.r1_all, wr2_ref=result.figures.wr2,
        wr2_gt=result.figures.wr2, gof=result.figures.gof,
        restrained_gof=result.figures.restrained_gof, n_reflections=result.figures.n_reflections,
        n_gt=result.figures.n_gt, n_parameters=result.figures.n_parameters,
        n_restraints=result.figures.n_restraints, weighting_a=model.instructions.weighting.a,
        weighting_b=model.instructions.weighting.b, shift_su_max=result.cycles[-1].max_shift_su,
        shift_su_mean=result.cycles[-1].mean_shift_su, diff_density_max=0.0,
        diff_density_min=0.0, diff_density_rms=0.0, wavelength=model.wavelength, theta_min=1.0,
        theta_max=30.0, extinction=(float(graph.y[e]), su))
    doc = cif_document("exti", model.cell, model.space_group, sites, summary)
    block = doc.sole_block()
    assert check_cif(block) == []
    value, written_su = parse_su(block.find_value("_refine_ls_extinction_coef"))
    assert value == pytest.approx(graph.y[e], abs=written_su)
    assert written_su == pytest.approx(su, rel=0.3)
