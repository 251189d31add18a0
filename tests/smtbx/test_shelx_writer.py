"""The .res writer: read → write → read gives the same model, on every data set."""

import os

import numpy as np
import pytest

import smtbx
from smtbx import model as m

from .test_shelx_reader import DATASETS


def codes_equal(a, b, rel=1e-5):
    return (a.kind == b.kind and a.free_variable == b.free_variable and a.complement == b.complement
            and a.coefficient == pytest.approx(b.coefficient, rel=rel, abs=1e-5))


def restraint_key(r):
    return r.kind, tuple(tuple(x.index for x in g) for g in r.groups), r.line


def assert_same_model(a, b):
    """Equal to the precision SHELX prints: xyz 1e-6, sof 1e-5, U 1e-5, FVAR 1e-5."""
    assert a.title == b.title
    assert a.wavelength == pytest.approx(b.wavelength)
    np.testing.assert_allclose(a.cell.parameters, b.cell.parameters, atol=1e-5)
    np.testing.assert_allclose(a.cell_esd, b.cell_esd, atol=1e-5)
    assert a.symmetry.latt == b.symmetry.latt
    assert a.symmetry.operations == b.symmetry.operations
    assert a.space_group == b.space_group
    assert [(t.label, t.element, t.fp, t.fdp, t.dispersion_source) for t in a.scattering_types] == \
        [(t.label, t.element, t.fp, t.fdp, t.dispersion_source) for t in b.scattering_types]
    for ta, tb in zip(a.scattering_types, b.scattering_types):
        assert (ta.gaussians is None) == (tb.gaussians is None)
        if ta.gaussians is not None:
            for x, y in zip(ta.gaussians, tb.gaussians):
                np.testing.assert_allclose(x, y)
    assert a.unit == pytest.approx(b.unit)
    np.testing.assert_allclose(a.free_variables, b.free_variables, atol=1e-5)
    assert len(a.scatterers) == len(b.scatterers)
    for sa, sb in zip(a.scatterers, b.scatterers):
        assert (sa.label, sa.type_index, sa.part, sa.residue_number, sa.residue_class, sa.afix,
                sa.site_order, sa.u_parent) == \
            (sb.label, sb.type_index, sb.part, sb.residue_number, sb.residue_class, sb.afix,
             sb.site_order, sb.u_parent), sa.label
        np.testing.assert_allclose(sa.site_frac, sb.site_frac, atol=1.5e-6)
        assert all(codes_equal(x, y) for x, y in zip(sa.site_codes, sb.site_codes))
        assert sa.occupancy == pytest.approx(sb.occupancy, abs=1e-4)
        assert codes_equal(sa.occupancy_code, sb.occupancy_code)
        assert (sa.u_cif is None) == (sb.u_cif is None)
        if sa.u_cif is not None:
            np.testing.assert_allclose(sa.u_cif, sb.u_cif, atol=1.5e-5)
        else:
            assert sa.u_iso == pytest.approx(sb.u_iso, abs=2e-5)
        assert all(codes_equal(x, y) for x, y in zip(sa.u_codes, sb.u_codes))
    assert len(a.restraints) == len(b.restraints)
    # SAME is written before the atoms it matches, so the order may change
    for ra, rb in zip(sorted(a.restraints, key=restraint_key), sorted(b.restraints, key=restraint_key)):
        assert (ra.kind, ra.groups, ra.all_atoms, ra.dmax) == (rb.kind, rb.groups, rb.all_atoms, rb.dmax)
        assert ra.sigmas == pytest.approx(rb.sigmas)
        assert ra.target == pytest.approx(rb.target)
        assert codes_equal(ra.target_code, rb.target_code)
    assert [type(c) for c in a.constraints] == [type(c) for c in b.constraints]
    for ca, cb in zip(a.constraints, b.constraints):
        fields = {k: v for k, v in vars(ca).items() if k != "line"}
        other = {k: v for k, v in vars(cb).items() if k != "line"}
        if isinstance(ca, m.RidingU):
            assert fields.pop("factor") == pytest.approx(other.pop("factor"))
        assert fields == other
    ia, ib = a.instructions, b.instructions
    for name in ("method", "cycles", "ls_args", "exti", "swat", "basf", "omit_hkl", "omit_s",
                 "omit_two_theta", "shel", "merg", "temperature", "defs", "eqiv"):
        assert getattr(ia, name) == getattr(ib, name), name
    assert vars(ia.weighting) == pytest.approx(vars(ib.weighting))
    assert (ia.hklf.n, ia.hklf.scale, ia.hklf.weight, ia.hklf.offset) == \
        (ib.hklf.n, ib.hklf.scale, ib.hklf.weight, ib.hklf.offset)
    np.testing.assert_array_equal(ia.hklf.matrix, ib.hklf.matrix)
    assert (ia.twin is None) == (ib.twin is None)
    if ia.twin is not None:
        np.testing.assert_array_equal(ia.twin.matrix, ib.twin.matrix)
        assert ia.twin.n_components == ib.twin.n_components
    assert [(r.name, r.args) for r in ia.other] == [(r.name, r.args) for r in ib.other]
    assert a.residues == b.residues


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_round_trip(small_data, tmp_path, name):
    first = smtbx.read_ins(small_data / name / DATASETS[name][0])
    out = tmp_path / "model.res"
    smtbx.write_res(first, out)
    second = smtbx.read_ins(out)
    assert_same_model(first, second)
    # the same notes, except for instructions that had no effect (a bare SADI)
    assert {w.message for w in second.warnings} <= {w.message for w in first.warnings}
    # and once more: the written file is a fixed point of read → write
    smtbx.write_res(second, tmp_path / "again.res")
    assert (tmp_path / "again.res").read_text() == out.read_text()
    assert sorted(os.listdir(tmp_path)) == ["again.res", "model.res"]   # no temporary files left
    assert max(len(line) for line in out.read_text().splitlines()) <= 79   # SHELX line length


def test_writer_restores_shelx_conventions(small_data, tmp_path):
    mdl = smtbx.read_ins(small_data / "p31c_sad" / "sad.res")
    text = smtbx.format_res(mdl).splitlines()
    n3 = [line for line in text if line.startswith("N3 ")][0].split()
    assert n3[5] == "10.33333"                                    # sof with the 1/3 site factor
    c1 = [line for line in text if line.startswith("C1 ")][0].split()
    assert c1[5] == "30.33333"                                    # fv(3) on the 3-fold axis
    h1 = [line for line in text if line.startswith("H1 ")][0].split()
    assert h1[5:] == ["31.00000", "-1.30000"]                     # riding U
    c1p = [line for line in text if line.startswith("C1' ")][0].split()
    assert c1p[5] == "-30.33333"
    i = text.index([line for line in text if line.startswith("CL1 ")][0])
    # U11 U22 = / U33 U23 U13 U12 in SHELX order
    assert text[i].split()[6:] == ["0.01547", "0.01791", "="]
    assert text[i + 1].split() == ["0.02428", "-0.00077", "-0.00018", "0.00586"]
    assert "AFIX 137" in text and "AFIX 23" in text and "AFIX 43" in text


def test_writer_never_overwrites_the_input(small_data, tmp_path):
    source = tmp_path / "in.res"
    source.write_bytes((small_data / "fecl_r3c" / "2240189.res").read_bytes())
    mdl = smtbx.read_ins(source)
    before = source.read_bytes()
    with pytest.raises(smtbx.OutputError, match="refusing to overwrite"):
        smtbx.write_res(mdl, source)
    assert source.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["in.res"]


def test_writer_refuses_what_shelx_cannot_express(small_data, tmp_path):
    mdl = smtbx.read_ins(small_data / "sucrose_p21" / "zucker2.res")
    group = mdl.constraints_of_type(m.TertiaryXH)[0]
    group.hydrogens = [group.hydrogens[0], group.hydrogens[0] + 2]
    with pytest.raises(smtbx.OutputError, match="not consecutive"):
        smtbx.write_res(mdl, tmp_path / "out.res")
    assert os.listdir(tmp_path) == []
