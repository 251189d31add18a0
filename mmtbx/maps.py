"""Map coefficients written to MTZ with gemmi.

Columns: FWT/PHWT (2mFo − DFc; mFo for centric reflections, Read 1986),
DELFWT/PHDELWT (mFo − DFc) and FOM.  The file is written to a temporary
name in the target folder and renamed, so a reader never sees half a file;
the input reflection file is never overwritten.
"""

import os
import tempfile

import gemmi
import numpy as np

from .errors import DataError


def write_map_coefficients(path, unit_cell, space_group, hkl, two_fo_fc, fo_fc, fom,
                           protect=()):
    """Write map coefficients to MTZ atomically.

    Parameters
    ----------
    path : str  the MTZ to write
    unit_cell : sgtbx.UnitCell; space_group : sgtbx.SpaceGroup
    hkl : int32 (m, 3)
    two_fo_fc, fo_fc : complex128 (m,)
    fom : float64 (m,)
    protect : sequence of str  files that must not be overwritten (the inputs)
    """
    path = os.fspath(path)
    for other in protect:
        if os.path.exists(other) and os.path.exists(path) and os.path.samefile(path, other):
            raise DataError(f"{path}: refusing to overwrite the input file")
    entry = space_group.gemmi_space_group
    if entry is None:
        raise DataError(f"{path}: space group {space_group.hall!r} cannot be written to MTZ")
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = entry
    mtz.set_cell_for_all(unit_cell.as_gemmi())
    mtz.add_dataset("mmtbx")
    for label, kind in (("FWT", "F"), ("PHWT", "P"), ("DELFWT", "F"), ("PHDELWT", "P"),
                        ("FOM", "W")):
        mtz.add_column(label, kind)
    data = np.column_stack([
        np.asarray(hkl, dtype=np.float32),
        np.abs(two_fo_fc), np.degrees(np.angle(two_fo_fc)),
        np.abs(fo_fc), np.degrees(np.angle(fo_fc)), fom,
    ]).astype(np.float32)
    mtz.set_data(data)
    mtz.history = ["mmtbx map coefficients (Read 1986: 2mFo-DFc, centric mFo; mFo-DFc)"]
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".mmtbx-", suffix=".mtz", dir=folder)
    os.close(fd)
    try:
        mtz.write_to_file(tmp)
        mask = os.umask(0)          # a new file's permissions, not mkstemp's 0600
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise DataError(f"{path}: cannot write the MTZ file: {exc}") from None
