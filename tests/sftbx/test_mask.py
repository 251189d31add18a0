"""The bulk-solvent mask and F_mask: against gemmi's SolventMasker with the
same (cctbx) radii on the shared models, symmetry, and bad input."""

import gemmi
import numpy as np
import pytest

from sgtbx import CrystallographyError, SpaceGroup, UnitCell, complete_set
from sftbx import MaskError, Scatterers, SolventMask, f_mask, vdw_radii
from test_fft_data import load


@pytest.mark.parametrize("name, d_min", [("5e5z", None), ("3hqb", None), ("4hg7", 2.5),
                                         ("rnasa", None)])
def test_against_gemmi_solvent_masker(macro_data, name, d_min):
    st, uc, sg, sc, hkl, d_min, _ = load(macro_data, name, n_hkl=500, d_min=d_min)
    mask = SolventMask(uc, sg, sc, d_min=d_min)
    grid = gemmi.FloatGrid(*mask.shape)
    grid.set_unit_cell(st.cell)
    grid.spacegroup = st.find_spacegroup()
    masker = gemmi.SolventMasker(gemmi.AtomicRadiiSet.Cctbx)
    assert (masker.rprobe, masker.rshrink) == (1.1, 0.9)
    masker.put_mask_on_float_grid(grid, st[0])
    theirs = np.array(grid, copy=False)
    assert (theirs == mask.data).mean() > 0.999
    f_theirs = gemmi.transform_map_to_f_phi(grid, half_l=False)
    ref = np.array([f_theirs.get_value(*(int(x) for x in h)) for h in hkl])
    f = mask.f_mask(hkl)
    corr = np.vdot(ref, f).real / np.sqrt(np.vdot(ref, ref).real * np.vdot(f, f).real)
    assert corr > 0.99
    assert np.abs(f - ref).sum() / np.abs(ref).sum() < 1e-3
    assert 0 < mask.solvent_fraction < 1


def test_symmetry_and_f000(macro_data):
    """P 65 2 2 (4hg7): |F_mask| equal over symmetry-equivalent reflections,
    zero at systematic absences, F(000) = V * solvent fraction."""
    _, uc, sg, sc, hkl, d_min, _ = load(macro_data, "4hg7", n_hkl=200, d_min=3.0)
    mask = SolventMask(uc, sg, sc, d_min=d_min)
    f = mask.f_mask(hkl)
    for rot in sg.rotations[1:4]:
        g = mask.f_mask(np.ascontiguousarray(hkl @ rot, dtype=np.int32))
        assert np.allclose(np.abs(g), np.abs(f), rtol=1e-8, atol=1e-8 * np.abs(f).max())
    absent = np.array([[0, 0, l] for l in range(1, 30) if l % 6], dtype=np.int32)
    assert np.abs(mask.f_mask(absent)).max() < 1e-8 * np.abs(f).max()
    f000 = mask.f_mask(np.zeros((1, 3), dtype=np.int32))[0]
    assert f000.real == pytest.approx(uc.volume * mask.solvent_fraction, rel=1e-12)


def _tiny():
    uc, sg = UnitCell(15, 16, 17, 90, 90, 90), SpaceGroup("P 21 21 21")
    rng = np.random.default_rng(0)
    sc = Scatterers(["C", "N", "O", "S", "H"], rng.random((5, 3)), np.ones(5), np.full(5, 0.2))
    return uc, sg, sc


def test_hydrogens_and_empty_atoms_are_left_out():
    uc, sg, sc = _tiny()
    full = SolventMask(uc, sg, sc, d_min=2.0).data
    sc.occupancies[0] = 0
    without_c = SolventMask(uc, sg, sc, d_min=2.0).data
    assert (without_c >= full).all() and (without_c > full).any()
    heavy = Scatterers(sc.elements[:4], sc.sites_frac[:4], sc.occupancies[:4], sc.u_iso[:4])
    assert (SolventMask(uc, sg, heavy, d_min=2.0).data == without_c).all()


def test_radii_and_probe():
    assert vdw_radii(["C", "N", "O", "S", "Fe3+"]).tolist() == [1.775, 1.5, 1.45, 1.8, 1.26]
    uc, sg, sc = _tiny()
    small = SolventMask(uc, sg, sc, d_min=2.0, r_probe=0.5).solvent_fraction
    large = SolventMask(uc, sg, sc, d_min=2.0, r_probe=1.5).solvent_fraction
    assert small > large


def test_bad_input():
    assert issubclass(MaskError, CrystallographyError)
    uc, sg, sc = _tiny()
    with pytest.raises(MaskError, match="d_min or shape"):
        SolventMask(uc, sg, sc)
    with pytest.raises(MaskError, match="r_probe"):
        SolventMask(uc, sg, sc, d_min=2.0, r_probe=-1)
    with pytest.raises(MaskError, match="radii"):
        SolventMask(uc, sg, sc, d_min=2.0, radii=np.ones(2))
    sc.sites_frac[2, 0] = np.nan
    with pytest.raises(MaskError, match="atom 2.*not finite"):
        SolventMask(uc, sg, sc, d_min=2.0)
    uc, sg, sc = _tiny()
    with pytest.raises(MaskError, match="outside the mask grid"):
        f_mask(uc, sg, sc, [[40, 0, 0]], d_min=3.0)
    with pytest.raises(MaskError, match="no van der Waals radius"):
        vdw_radii(["Og"])


@pytest.mark.parametrize("symbol, cell", [
    ("R -3 :H", (20.0, 20.0, 17.0, 90.0, 90.0, 120.0)),
    ("F d -3 m :1", (19.0, 19.0, 19.0, 90.0, 90.0, 90.0)),
    ("P 43", (15.0, 15.0, 17.0, 90.0, 90.0, 90.0)),
    ("C 1 2/c 1", (21.0, 12.0, 15.0, 90.0, 105.0, 90.0)),
])
def test_grid_maps_onto_itself(symbol, cell):
    """On the mask grid every operation maps points onto points, so the mask
    is exactly symmetric and |F_mask| equal over equivalent reflections."""
    uc, sg = UnitCell(*cell), SpaceGroup(symbol)
    rng = np.random.default_rng(3)
    sc = Scatterers(["C"] * 4, rng.random((4, 3)), np.ones(4), np.full(4, 0.2))
    mask = SolventMask(uc, sg, sc, d_min=2.5)
    n = np.asarray(mask.shape)
    points = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3)
    for rot, tra in zip(sg.rotations, sg.translations):
        image = (points @ np.asarray(rot).T + np.asarray(tra) * n)
        assert np.allclose(image, np.round(image))
        image = np.mod(np.round(image).astype(int), n)
        assert (mask.data[tuple(image.T)] == mask.data.ravel()).all()
    hkl = np.asarray(complete_set(uc, sg, 4.0))
    f = np.abs(mask.f_mask(hkl))
    assert f.min() > 0
    for rot in sg.rotations:
        g = np.abs(mask.f_mask(np.ascontiguousarray(hkl @ rot, dtype=np.int32)))
        assert np.allclose(g, f, rtol=1e-9, atol=1e-9 * f.max())
