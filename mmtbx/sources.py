"""Where F_calc and F_mask come from: the one place mmtbx calls a structure-factor engine.

Everything else in mmtbx takes complex arrays.  Until sftbx's FFT face lands
(issue 9: ``sftbx/fft.py`` and ``sftbx/mask.py``), :func:`compute_f_calc_and_mask`
uses gemmi: the atoms' densities sampled on a grid (``DensityCalculatorX``,
IT92 form factors, refmac-compatible blur, then a fast Fourier transform) and
the flat solvent mask (``SolventMasker``, cctbx's radii, probe 1.1 Å, shrink
0.9 Å) transformed the same way.  **This function is to be replaced by a
call to sftbx's FFT face**; its signature and its return values are the
contract.
"""

import gemmi
import numpy as np

from .errors import ModelError


def _symmetry_weighted_model(structure):
    """A copy of the first model whose occupancies are chemical occupancy
    divided by the order of the site-symmetry group (DESIGN.md §2: gemmi's
    calculators sum over all operations, so a special position must not be
    counted more than once)."""
    st = structure.clone()
    st.remove_empty_chains()
    st.setup_cell_images()
    model = st[0]
    cell = st.cell
    for chain in model:
        for residue in chain:
            for atom in residue:
                n_images = cell.is_special_position(atom.pos, 0.5)
                if n_images:
                    atom.occ /= n_images + 1
    return st, model


def compute_f_calc_and_mask(structure, unit_cell, space_group, hkl, d_min):
    """F_calc of the atoms and F_mask of the flat solvent mask at ``hkl``.

    To be replaced by sftbx's FFT face (sftbx/fft.py, sftbx/mask.py) when it
    lands; until then gemmi computes both.

    Parameters
    ----------
    structure : gemmi.Structure
        The model; its first model is used.  Its cell and space group are
        replaced by ``unit_cell`` and ``space_group`` (those of the data).
    unit_cell : sgtbx.UnitCell
    space_group : sgtbx.SpaceGroup
    hkl : int32 (m, 3)
        Miller indices (any indices; twin mates outside the asymmetric unit
        are fine).
    d_min : float
        Resolution limit (Å) of ``hkl``; sets the grid spacing.

    Returns
    -------
    f_calc : complex128 (m,)
        Structure factors of the atoms (electrons), phase convention
        F = Σ f exp(+2πi h·x).
    f_mask : complex128 (m,)
        Structure factors of the solvent mask (1 in the solvent, 0 in the
        protein), in Å³, so that k_mask is in e/Å³.
    """
    hkl = np.ascontiguousarray(hkl, dtype=np.int32)
    st = structure.clone()
    st.cell = unit_cell.as_gemmi()
    entry = space_group.gemmi_space_group
    if entry is None:
        raise ModelError(f"space group {space_group.hall!r} is not in gemmi's tables, which "
                         "the gemmi-based F_calc needs")
    st.spacegroup_hm = entry.xhm()
    st, model = _symmetry_weighted_model(st)
    if model.count_atom_sites() == 0:
        raise ModelError("the model has no atoms to compute F_calc from")

    calc = gemmi.DensityCalculatorX()
    calc.d_min = d_min
    calc.rate = 1.5
    calc.cutoff = 1e-5
    calc.set_refmac_compatible_blur(model)
    calc.grid.setup_from(st)
    calc.put_model_density_on_grid(model)
    f_calc_grid = gemmi.transform_map_to_f_phi(calc.grid, half_l=True)
    f_calc = f_calc_grid.get_value_by_hkl(hkl, unblur=calc.blur).astype(np.complex128)

    mask = gemmi.FloatGrid()
    mask.setup_from(st, spacing=min(0.6, d_min / 4.0))
    masker = gemmi.SolventMasker(gemmi.AtomicRadiiSet.Cctbx)
    masker.rprobe = 1.1
    masker.rshrink = 0.9
    masker.island_min_volume = 0.0
    masker.put_mask_on_float_grid(mask, model)
    f_mask_grid = gemmi.transform_map_to_f_phi(mask, half_l=True)
    f_mask = f_mask_grid.get_value_by_hkl(hkl).astype(np.complex128)
    return f_calc, f_mask
