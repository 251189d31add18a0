"""SHELXL's .fcf reflection files (LIST 4 and LIST 6), CIF syntax, written
with gemmi.cif.

* LIST 4: h k l, Fc² (on the scale of Fo², K Fc²), Fo², σ(Fo²) and the
  status 'o' — SHELXL's refinement listing;
* LIST 6: h k l, Fo² and σ(Fo²) on the absolute scale (divided by K),
  |Fc| and the phase of Fc in degrees — the coefficients of Fourier maps.
"""

import gemmi
import numpy as np

from .errors import OutputError
from .output import write_text_atomically

__all__ = ["fcf_document", "write_fcf"]


def _cell_items(block, unit_cell, space_group):
    for name, value in zip(("length_a", "length_b", "length_c", "angle_alpha", "angle_beta",
                            "angle_gamma"), unit_cell.parameters):
        block.set_pair(f"_cell_{name}", f"{value:.4f}")
    block.set_pair("_space_group_name_H-M_alt", gemmi.cif.quote(space_group.xhm))
    ops = block.init_loop("_space_group_symop_", ["operation_xyz"])
    for r, t in zip(space_group.rotations, space_group.translations):
        op = gemmi.Op()
        op.rot = [[int(v) * 24 for v in row] for row in r]
        op.tran = [int(round(v * 24)) % 24 for v in t]
        ops.add_row([gemmi.cif.quote(op.triplet())])


def fcf_document(list_code, name, unit_cell, space_group, hkl, fo_sq, sig_fo_sq, f_calc, scale):
    """The .fcf as a gemmi.cif.Document.

    Parameters
    ----------
    list_code : {4, 6}
    name : str
        The data block name.
    unit_cell : sgtbx.UnitCell
    space_group : sgtbx.SpaceGroup
    hkl : int (m, 3)
    fo_sq, sig_fo_sq : float64 (m,)
        On the scale of the file.
    f_calc : complex128 (m,)
        Absolute scale (for twins, LIST 4 takes |f_calc|² as the twinned Fc²).
    scale : float
        K, Fo² ≈ K Fc².
    """
    if list_code not in (4, 6):
        raise OutputError(f"LIST {list_code}: only LIST 4 and LIST 6 .fcf files are written")
    hkl = np.asarray(hkl)
    m = len(hkl)
    for label, arr in (("fo_sq", fo_sq), ("sig_fo_sq", sig_fo_sq), ("f_calc", f_calc)):
        if np.shape(arr) != (m,) or not np.all(np.isfinite(arr)):
            raise OutputError(f".fcf: {label} must hold {m} finite values")
    if not (np.isfinite(scale) and scale > 0):
        raise OutputError(f".fcf: the scale must be positive, got {scale}")
    doc = gemmi.cif.Document()
    block = doc.add_new_block(name)
    block.set_pair("_shelx_refln_list_code", str(list_code))
    _cell_items(block, unit_cell, space_group)
    fc_sq = np.abs(f_calc) ** 2
    if list_code == 4:
        loop = block.init_loop("_refln_", ["index_h", "index_k", "index_l", "F_squared_calc",
                                           "F_squared_meas", "F_squared_sigma", "observed_status"])
        for h, c, o, s in zip(hkl, scale * fc_sq, fo_sq, sig_fo_sq):
            loop.add_row([str(int(h[0])), str(int(h[1])), str(int(h[2])), f"{c:.2f}", f"{o:.2f}",
                          f"{s:.2f}", "o"])
    else:
        loop = block.init_loop("_refln_", ["index_h", "index_k", "index_l", "F_squared_meas",
                                           "F_squared_sigma", "F_calc", "phase_calc"])
        phase = np.degrees(np.angle(f_calc)) % 360.0
        for h, o, s, f, p in zip(hkl, fo_sq / scale, sig_fo_sq / scale, np.abs(f_calc), phase):
            loop.add_row([str(int(h[0])), str(int(h[1])), str(int(h[2])), f"{o:.2f}", f"{s:.2f}",
                          f"{f:.2f}", f"{p:.1f}"])
    return doc


def write_fcf(path, list_code, name, unit_cell, space_group, hkl, fo_sq, sig_fo_sq, f_calc, scale):
    """Write the .fcf (see :func:`fcf_document`) atomically."""
    doc = fcf_document(list_code, name, unit_cell, space_group, hkl, fo_sq, sig_fo_sq, f_calc,
                       scale)
    write_text_atomically(path, doc.as_string())
