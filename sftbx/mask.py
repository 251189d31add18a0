"""The flat bulk-solvent mask and its structure factors F_mask.

The mask is built as cctbx's mmtbx.masks and gemmi's SolventMasker build it
(Jiang & Brunger 1994): on a grid of the whole cell that the space group maps
onto itself, every point within r_vdW + r_probe of an atom or of one of its
symmetry images is macromolecule (0), the rest solvent (1); then the
macromolecular region is shrunk: a point of value 0 with a solvent point
within r_shrink becomes solvent.  Defaults r_probe = 1.1 A, r_shrink = 0.9 A;
hydrogen atoms and atoms of zero occupancy are left out, as both programs do.

Atom radii: the van der Waals radii of cctbx (cctbx.eltbx.van_der_waals_radii,
the table mmtbx.masks uses; gemmi's AtomicRadiiSet.Cctbx is the same table),
in ``VDW_RADII_CCTBX``.

Grid: spacing d_min / 4, held within 0.15-0.8 A (mmtbx.masks' grid_step_factor
4 and its limits), or a ``shape`` given by the caller.

F_mask(h) = (V/N) sum_p mask(p) exp(2 pi i h p / N), from one real FFT.
"""

import numpy as np
import scipy.fft

from . import _fft
from .errors import ScatteringError
from .fft import _hkl, _index_metric, grid_shape
from .scatterers import Scatterers
from .scattering import parse_scattering_type

# cctbx.eltbx.van_der_waals_radii.vdw.table (Angstrom).
VDW_RADII_CCTBX = {
    "Ac": 2.12, "Ag": 1.72, "Al": 1.5, "Am": 1.66, "Ar": 1.88, "As": 0.83, "At": 1.12,
    "Au": 1.66, "B": 1.75, "Ba": 2.41, "Be": 0.63, "Bi": 1.73, "Bk": 1.64, "Br": 1.85,
    "C": 1.775, "Ca": 1.95, "Cd": 1.58, "Ce": 1.86, "Cf": 1.63, "Cl": 1.75, "Cm": 1.65,
    "Co": 1.13, "Cr": 1.13, "Cs": 3.01, "Cu": 1.4, "D": 1.2, "Dy": 1.63, "Er": 1.59,
    "Es": 1.62, "Eu": 1.96, "F": 1.47, "Fe": 1.26, "Fm": 1.61, "Fr": 3.24, "Ga": 1.87,
    "Gd": 1.69, "Ge": 1.48, "H": 1.2, "He": 1.4, "Hf": 1.4, "Hg": 1.55, "Ho": 1.61,
    "I": 1.98, "In": 1.93, "Ir": 1.22, "K": 2.75, "Kr": 2.02, "La": 1.83, "Li": 1.82,
    "Lr": 1.58, "Lu": 1.53, "Md": 1.6, "Mg": 1.73, "Mn": 1.19, "Mo": 1.75, "N": 1.5,
    "Na": 2.27, "Nb": 1.33, "Nd": 1.79, "Ne": 1.54, "Ni": 1.63, "No": 1.59, "Np": 1.71,
    "O": 1.45, "Os": 1.58, "P": 1.9, "Pa": 1.6, "Pb": 2.02, "Pd": 1.63, "Pm": 1.76,
    "Po": 1.21, "Pr": 1.62, "Pt": 1.72, "Pu": 1.67, "Ra": 2.57, "Rb": 2.65, "Re": 1.3,
    "Rh": 1.22, "Rn": 2.3, "Ru": 1.2, "S": 1.8, "Sb": 1.12, "Sc": 1.32, "Se": 1.9,
    "Si": 2.1, "Sm": 1.74, "Sn": 2.17, "Sr": 2.02, "Ta": 1.22, "Tb": 1.66, "Tc": 2.0,
    "Te": 1.26, "Th": 1.84, "Ti": 1.95, "Tl": 1.96, "Tm": 1.57, "U": 1.75, "V": 1.06,
    "W": 1.26, "Xe": 2.16, "Y": 1.61, "Yb": 1.54, "Zn": 1.39, "Zr": 1.42,
}


class MaskError(ScatteringError):
    """Bad input for the solvent mask: unknown element, non-finite site, bad
    radii or grid."""


def vdw_radii(elements):
    """The cctbx van der Waals radius of each element (ions as their
    element), float64 (n,)."""
    names, index = np.unique(np.asarray(elements, dtype=str), return_inverse=True)
    radii = np.empty(len(names))
    for i, name in enumerate(names):
        symbol = _symbol(name)
        if symbol not in VDW_RADII_CCTBX:
            raise MaskError(f"element {name!r}: no van der Waals radius in the cctbx table")
        radii[i] = VDW_RADII_CCTBX[symbol]
    return radii[index].reshape(len(elements))


def _symbol(name):
    try:
        return parse_scattering_type(name)[0]
    except ScatteringError as exc:
        raise MaskError(str(exc)) from None


def mask_grid_shape(unit_cell, space_group, d_min):
    """The mask grid: spacing d_min/4 within 0.15-0.8 A, mapped onto itself
    by the space group."""
    step = min(max(float(d_min) / 4, 0.15), 0.8)
    return grid_shape(unit_cell, space_group, 2 * step, rate=1.0, symmetry=True)


class SolventMask:
    """A flat bulk-solvent mask of the whole cell.

    Parameters
    ----------
    unit_cell : sgtbx.UnitCell
    space_group : sgtbx.SpaceGroup
    scatterers : Scatterers
        Atoms (hydrogens and zero-occupancy atoms are left out).
    d_min : float, optional
        Resolution that fixes the grid (``mask_grid_shape``).
    shape : tuple of 3 int, optional
        The grid instead (it should map onto itself under the group).
    radii : float64 (n,), optional
        Atom radii (A) instead of ``vdw_radii(scatterers.elements)``.
    r_probe, r_shrink : float
        Angstrom.
    n_threads : int

    Attributes
    ----------
    data : int8 (N0, N1, N2)
        1 solvent, 0 macromolecule.
    shape : tuple of 3 int
    solvent_fraction : float
    """

    def __init__(self, unit_cell, space_group, scatterers, d_min=None, shape=None, radii=None,
                 r_probe=1.1, r_shrink=0.9, n_threads=1):
        if not isinstance(scatterers, Scatterers):
            raise MaskError("scatterers: expected an sftbx.Scatterers table")
        r_probe, r_shrink = float(r_probe), float(r_shrink)
        if not (np.isfinite(r_probe) and r_probe >= 0 and np.isfinite(r_shrink)
                and r_shrink >= 0):
            raise MaskError(f"r_probe, r_shrink: expected distances >= 0, got {r_probe!r}, "
                            f"{r_shrink!r}")
        if shape is None:
            if d_min is None:
                raise MaskError("give d_min or shape for the mask grid")
            if not (np.isfinite(d_min) and d_min > 0):
                raise MaskError(f"d_min: expected a positive resolution, got {d_min!r}")
            shape = mask_grid_shape(unit_cell, space_group, d_min)
        shape = tuple(int(n) for n in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise MaskError(f"shape: expected three positive grid sizes, got {shape}")
        self.unit_cell, self.space_group, self.shape = unit_cell, space_group, shape
        sites = scatterers.sites_frac
        bad = ~np.isfinite(sites).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise MaskError(f"atom {scatterers.labels[i]!r}: site is not finite: {sites[i]}")
        if radii is None:
            radii = vdw_radii(scatterers.elements)
        radii = np.asarray(radii, dtype=np.float64)
        if radii.shape != (len(scatterers),) or not (np.isfinite(radii) & (radii >= 0)).all():
            raise MaskError(f"radii: expected {len(scatterers)} finite values >= 0")
        names, index = np.unique(np.asarray(scatterers.elements, dtype=str), return_inverse=True)
        heavy = np.array([_symbol(e) not in ("H", "D") for e in names], dtype=bool)[index]
        used = heavy & (scatterers.occupancies > 0)
        rot = np.asarray(space_group.rotations, dtype=np.float64)
        tra = np.asarray(space_group.translations, dtype=np.float64)
        images = np.einsum("kij,nj->kni", rot, sites[used]) + tra[:, None, :]
        centres = np.mod(images.reshape(-1, 3), 1.0) * np.asarray(shape)
        r_sq = np.tile((radii[used] + r_probe)**2, len(rot))
        core = np.maximum(np.tile(radii[used] + r_probe - r_shrink, len(rot)), 0)**2
        metric = _index_metric(unit_cell, shape)
        grid = np.ones(shape, dtype=np.int8)
        _fft.mark_spheres(np.ascontiguousarray(centres), np.ascontiguousarray(r_sq),
                          np.ascontiguousarray(core), metric, grid)
        out = np.empty_like(grid)
        _fft.shrink(grid, self._stencil(metric, r_shrink), out, n_threads=int(n_threads))
        grid = out
        self.data = grid
        self.n_threads = int(n_threads)
        self.solvent_fraction = float(grid.mean())

    @staticmethod
    def _stencil(metric, radius):
        """Grid offsets within ``radius`` (A) of a point, excluding 0."""
        m = np.array([[metric[0], metric[3], metric[4]], [metric[3], metric[1], metric[5]],
                      [metric[4], metric[5], metric[2]]])
        half = np.ceil(radius * np.sqrt(np.diag(np.linalg.inv(m)))).astype(int)
        axes = [np.arange(-h, h + 1) for h in half]
        d = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        r_sq = np.einsum("ni,ij,nj->n", d, m, d)
        keep = (r_sq <= radius**2) & (r_sq > 0)
        return np.ascontiguousarray(d[keep], dtype=np.int32)

    def f_mask(self, hkl):
        """Structure factors of the mask, complex128 (m,)."""
        hkl = _hkl(hkl)
        spectrum = scipy.fft.rfftn(self.data.astype(np.float64), workers=self.n_threads)
        n = float(np.prod(self.shape))
        scale = np.full(len(hkl), self.unit_cell.volume / n)
        out = np.empty(len(hkl), dtype=np.complex128)
        bad = _fft.pick(spectrum, self.shape[2], hkl, np.eye(3, dtype=np.int32)[None],
                        np.zeros((1, 3)), scale, out, n_threads=self.n_threads)
        if bad:
            raise MaskError(f"{bad} reflections lie outside the mask grid {self.shape}: "
                            f"give a finer d_min or shape")
        return out


def f_mask(unit_cell, space_group, scatterers, hkl, d_min=None, **options):
    """F_mask for the reflections ``hkl`` (mask grid from ``d_min``, default
    the resolution of ``hkl``); options as for ``SolventMask``."""
    hkl = _hkl(hkl)
    if d_min is None and "shape" not in options:
        s_sq = unit_cell.s_squared(hkl) if len(hkl) else np.zeros(0)
        if s_sq.max(initial=0) <= 0:
            raise MaskError("hkl: no reflection other than (0,0,0); give d_min")
        d_min = 1 / np.sqrt(s_sq.max())
    return SolventMask(unit_cell, space_group, scatterers, d_min=d_min, **options).f_mask(hkl)
