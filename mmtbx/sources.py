"""Where F_calc and F_mask come from: the one place mmtbx calls a structure-factor engine.

Everything else in mmtbx takes complex arrays.  :func:`compute_f_calc_and_mask`
uses sftbx's FFT path (atoms' densities sampled on a grid, IT92 form
factors, occupancies weighted by 1/|site group| as DESIGN.md §2 says) and
sftbx's flat solvent mask (cctbx's van der Waals radii, probe 1.1 Å, shrink
0.9 Å).
"""

import numpy as np

import sftbx

from .errors import ModelError


def compute_f_calc_and_mask(structure, unit_cell, space_group, hkl, d_min, n_threads=1):
    """F_calc of the atoms and F_mask of the flat solvent mask at ``hkl``.

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
    st.remove_empty_chains()
    st.cell = unit_cell.as_gemmi()
    entry = space_group.gemmi_space_group
    if entry is None:
        raise ModelError(f"space group {space_group.hall!r} is not in gemmi's tables")
    st.spacegroup_hm = entry.xhm()
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise ModelError("the model has no atoms to compute F_calc from")
    _, _, scatterers = sftbx.fft.scatterers_from_gemmi(st)
    f_calc = sftbx.FFTStructureFactors(unit_cell, space_group, scatterers, hkl, d_min=d_min,
                                       n_threads=n_threads).f_calc()
    f_mask = sftbx.f_mask(unit_cell, space_group, scatterers, hkl, d_min=d_min,
                          n_threads=n_threads)
    return f_calc, np.asarray(f_mask, dtype=np.complex128)
