"""Reciprocal-space symmetry on arrays of Miller indices.

The kernels are in ``_reciprocal`` (Cython, parallel over reflections); this
module checks the input once and unpacks the space group into arrays.

The asymmetric unit is CCP4's (the one of CCP4 symlib, gemmi, MTZ files and
cctbx's reference settings), tested in the reference setting of the group,
so that data in a non-standard setting map as the reference setting does.
For a setting that gemmi does not tabulate (possible for groups built with
:meth:`SpaceGroup.from_operations`) the representative is instead the
lexicographically largest equivalent.
"""

import dataclasses

import gemmi
import numpy as np

from . import _reciprocal
from .errors import ReflectionError, SymmetryError

# The ten distinct CCP4 asymmetric-unit conditions, in the order the kernel
# numbers them; the choice for a space group is read from gemmi's table.
_CCP4_ASU_CONDITIONS = (
    "l>0 or (l=0 and (h>0 or (h=0 and k>=0)))",
    "k>=0 and (l>0 or (l=0 and h>=0))",
    "h>=0 and k>=0 and l>=0",
    "l>=0 and ((h>=0 and k>0) or (h=0 and k=0))",
    "h>=k and k>=0 and l>=0",
    "(h>=0 and k>0) or (h=0 and k=0 and l>=0)",
    "h>=k and k>=0 and (k>0 or l>=0)",
    "h>=k and k>=0 and (h>k or l>=0)",
    "h>=0 and ((l>=h and k>h) or (l=h and k=h))",
    "k>=l and l>=h and h>=0",
)


def as_hkl(hkl, name="hkl"):
    """Miller indices as a C-contiguous int32 (m, 3) array."""
    array = np.asarray(hkl)
    if array.ndim == 1 and array.shape[0] == 3:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 3:
        raise ReflectionError(f"{name} must have shape (m, 3), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        rounded = np.round(array)
        if not np.all(np.isfinite(array)) or np.any(rounded != array):
            raise ReflectionError(f"{name} must hold integers")
        array = rounded
    return np.ascontiguousarray(array, dtype=np.int32)


def _asu_parameters(space_group):
    """(asu index, basis rotation (3,3) int32, whether to transform)."""
    entry = space_group.gemmi_space_group
    if entry is None:
        return -1, np.eye(3, dtype=np.int32), False
    condition = gemmi.ReciprocalAsu(entry).condition_str()
    asu = _CCP4_ASU_CONDITIONS.index(condition)
    if entry.is_reference_setting():
        return asu, np.eye(3, dtype=np.int32), False
    return asu, np.ascontiguousarray(entry.basisop.rot, dtype=np.int32), True


def absent_flags(space_group, hkl, n_threads=1):
    """bool (m,): systematically absent (including indices that break the
    centring condition)."""
    hkl = as_hkl(hkl)
    rot, tran, cen = space_group._reciprocal_arrays()
    out = np.empty(len(hkl), dtype=np.uint8)
    _reciprocal.absent_flags(hkl, rot, tran, cen, out, n_threads)
    return out.view(bool)


def _stabilisers(space_group, hkl, n_threads):
    hkl = as_hkl(hkl)
    n_plus = np.empty(len(hkl), dtype=np.int32)
    n_minus = np.empty(len(hkl), dtype=np.int32)
    _reciprocal.stabiliser_counts(hkl, space_group.symmetry_rotations, n_plus, n_minus, n_threads)
    return n_plus, n_minus


def centric_flags(space_group, hkl, n_threads=1):
    """bool (m,): some rotation maps h onto -h."""
    return _stabilisers(space_group, hkl, n_threads)[1] > 0


def epsilons(space_group, hkl, include_centring=False, n_threads=1):
    """int32 (m,): the number of point-group rotations with h R = h (the
    epsilon of Wilson statistics and the ML targets); times the number of
    centring vectors if ``include_centring``."""
    n_plus = _stabilisers(space_group, hkl, n_threads)[0]
    if include_centring:
        n_plus *= len(space_group.centring_vectors)
    return n_plus


def multiplicities(space_group, hkl, anomalous=False, n_threads=1):
    """int32 (m,): the number of distinct equivalents of h.  Friedel mates
    count as equivalent unless ``anomalous`` (then h and -h are distinct in
    a non-centric group)."""
    n_plus, n_minus = _stabilisers(space_group, hkl, n_threads)
    order = space_group.order_p
    if anomalous or space_group.is_centric:
        return (order // n_plus).astype(np.int32)
    return (2 * order // (n_plus + n_minus)).astype(np.int32)


def restricted_phases(space_group, hkl, n_threads=1):
    """float64 (m,): the phase (radians, in [0, pi)) to which a centric
    reflection is restricted modulo pi; NaN for acentric reflections."""
    hkl = as_hkl(hkl)
    rot, tran, _ = space_group._reciprocal_arrays()
    out = np.empty(len(hkl), dtype=np.float64)
    _reciprocal.restricted_phases(hkl, rot, tran, out, n_threads)
    return out


@dataclasses.dataclass
class AsuMapping:
    """The result of :func:`map_to_asu`.

    Attributes
    ----------
    hkl : int32 (m, 3)
        The representative of each index.
    isym : int32 (m,)
        MTZ convention: 2s+1 if the representative is h R_s, 2s+2 if it is
        -h R_s (s counts the primitive operations from 0).
    phase_shift : float64 (m,)
        2 pi h.t_s mod 2 pi (radians).  With F(h R) = F(h) exp(-i 2 pi h.t),
        phase(h_asu) = phase(h) - phase_shift for odd isym, and
        -(phase(h) - phase_shift) for even isym.
    """
    hkl: np.ndarray
    isym: np.ndarray
    phase_shift: np.ndarray

    @property
    def friedel_flipped(self):
        """bool (m,): the representative is a Friedel mate (even isym)."""
        return self.isym % 2 == 0


def map_to_asu(space_group, hkl, anomalous=False, n_threads=1):
    """Map Miller indices into the reciprocal asymmetric unit.

    Without ``anomalous`` the asymmetric unit is that of the Laue class
    (Friedel mates equivalent).  With ``anomalous``, an index whose
    representative is a Friedel mate keeps its sign: it maps to -h_asu, so
    that I(+) and I(-) stay apart (centric indices always map to +).
    """
    hkl = as_hkl(hkl)
    rot, tran, _ = space_group._reciprocal_arrays()
    asu, basis, transform = _asu_parameters(space_group)
    hkl_out = np.empty_like(hkl)
    isym = np.empty(len(hkl), dtype=np.int32)
    shift = np.empty(len(hkl), dtype=np.float64)
    failures = _reciprocal.map_to_asu(hkl, rot, tran, asu, basis, transform, anomalous,
                                      hkl_out, isym, shift, n_threads)
    if failures:
        raise SymmetryError(f"{failures} indices have no equivalent in the asymmetric unit "
                            f"of {space_group!r}: inconsistent operations")
    return AsuMapping(hkl_out, isym, shift)


@dataclasses.dataclass
class MergedData:
    """Equivalent observations merged.

    Attributes
    ----------
    hkl : int32 (n, 3)
        Unique indices in the asymmetric unit, sorted.
    values, sigmas : float64 (n,)
        Merged values and their s.u.'s.
    multiplicity : int32 (n,)
        Observations merged into each.
    r_int : float
        sum |I - <I>| / sum I over the groups of two or more.
    r_sigma : float
        sum sigma(<I>) / sum <I>.
    """
    hkl: np.ndarray
    values: np.ndarray
    sigmas: np.ndarray
    multiplicity: np.ndarray
    r_int: float
    r_sigma: float


def _hkl_keys(hkl):
    """One int64 per index, ordered as the indices are lexicographically."""
    h = hkl.astype(np.int64) + 1024
    if np.any(h < 0) or np.any(h >= 2048):
        raise ReflectionError("Miller indices must lie within -1024..1023")
    return (h[:, 0] << 22) | (h[:, 1] << 11) | h[:, 2]


def _group(hkl):
    """Indices of equal rows of hkl, grouped in lexicographic order:
    (order, starts), group g being order[starts[g]:starts[g+1]]."""
    order = np.empty(len(hkl), dtype=np.int64)
    starts = np.empty(len(hkl) + 1, dtype=np.int64)
    groups = _reciprocal.group_hkl(hkl, max(4 * len(hkl), 1 << 20), order, starts)
    if groups >= 0:
        return order, starts[:groups + 1]
    keys = _hkl_keys(hkl)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1], True])
    return order.astype(np.int64), starts.astype(np.int64)


def merge_equivalents(space_group, hkl, values, sigmas, anomalous=False, rule="weighted"):
    """Merge symmetry-equivalent observations.

    Parameters
    ----------
    hkl : int (m, 3)
    values, sigmas : float (m,)
        Observations (intensities, say) and their s.u.'s (> 0).
    anomalous : bool
        Keep Friedel mates apart (for non-centric reflections).
    rule : {"weighted", "shelxl"}
        "weighted": the mean weighted by 1/sigma^2, with s.u.
        (sum 1/sigma^2)^-1/2.  "shelxl": SHELXL's rule, weights I/sigma^2
        when I > 3 sigma and 3/sigma otherwise, and the s.u. the larger of
        (sum 1/sigma^2)^-1/2 and the spread sum |I - <I>| / (n sqrt(n - 1))
        (the estimate of SHELXL and of cctbx's merge_equivalents_shelx).

    Returns
    -------
    MergedData
    """
    if rule not in ("weighted", "shelxl"):
        raise ReflectionError(f"merging rule must be 'weighted' or 'shelxl', not {rule!r}")
    hkl = as_hkl(hkl)
    values = np.ascontiguousarray(values, dtype=np.float64)
    sigmas = np.ascontiguousarray(sigmas, dtype=np.float64)
    if values.shape != (len(hkl),) or sigmas.shape != (len(hkl),):
        raise ReflectionError(f"values and sigmas must have shape ({len(hkl)},), "
                              f"got {values.shape} and {sigmas.shape}")
    bad = np.flatnonzero(~np.isfinite(values) | ~np.isfinite(sigmas) | (sigmas <= 0))
    if len(bad):
        i = bad[0]
        raise ReflectionError(f"observation {i} (hkl {tuple(hkl[i])}): value {values[i]} and "
                              f"sigma {sigmas[i]} must be finite with sigma > 0 "
                              f"({len(bad)} such observations)")
    mapped = map_to_asu(space_group, hkl, anomalous).hkl
    order, starts = _group(mapped)
    n = len(starts) - 1
    mean = np.empty(n)
    sigma = np.empty(n)
    count = np.empty(n, dtype=np.int32)
    sums = np.zeros(4)
    _reciprocal.merge_sorted(order, starts, values, sigmas, rule == "shelxl",
                             mean, sigma, count, sums)
    unique = mapped[order[starts[:-1]]]
    r_int = sums[0] / sums[1] if sums[1] > 0 else 0.0
    r_sigma = sums[2] / sums[3] if sums[3] > 0 else 0.0
    return MergedData(np.ascontiguousarray(unique), mean, sigma, count, float(r_int), float(r_sigma))


def complete_set(unit_cell, space_group, d_min, d_max=None, anomalous=False):
    """All unique, systematically present indices with d_min <= d <= d_max.

    Returns int32 (m, 3) in the asymmetric unit (both Friedel mates of
    non-centric reflections when ``anomalous``), sorted, without (0, 0, 0).
    """
    if not d_min > 0:
        raise ReflectionError(f"d_min must be positive, got {d_min}")
    if d_max is not None and not d_max > d_min:
        raise ReflectionError(f"d_max ({d_max}) must exceed d_min ({d_min})")
    limits = [int(np.floor(length / d_min)) for length in unit_cell.parameters[:3]]
    axes = [np.arange(-n, n + 1, dtype=np.int32) for n in limits]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    s_sq = unit_cell.s_squared(grid)
    keep = (s_sq <= 1.0 / d_min ** 2 * (1 + 1e-12)) & (s_sq > 0)
    if d_max is not None:
        keep &= s_sq >= 1.0 / d_max ** 2 * (1 - 1e-12)
    grid = np.ascontiguousarray(grid[keep])
    grid = grid[~absent_flags(space_group, grid)]
    mapping = map_to_asu(space_group, grid, anomalous)
    in_asu = np.all(mapping.hkl == grid, axis=1)
    result = grid[in_asu]
    return np.ascontiguousarray(result[np.argsort(_hkl_keys(result), kind="stable")])


def completeness(unit_cell, space_group, hkl, d_min=None, d_max=None, anomalous=False):
    """Fraction of the unique, present reflections in [d_min, d_max] that
    ``hkl`` covers (d_min defaults to that of the data)."""
    hkl = as_hkl(hkl)
    if len(hkl) == 0:
        return 0.0
    d = unit_cell.d_spacings(hkl)
    d_min = float(np.min(d)) if d_min is None else d_min
    expected = complete_set(unit_cell, space_group, d_min, d_max, anomalous)
    inside = (d >= d_min * (1 - 1e-12)) & ((d <= d_max) if d_max is not None else True)
    present = hkl[inside & ~absent_flags(space_group, hkl)]
    mapped = map_to_asu(space_group, present, anomalous).hkl
    found = np.intersect1d(_hkl_keys(mapped), _hkl_keys(expected))
    return len(found) / len(expected) if len(expected) else 0.0
