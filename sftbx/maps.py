"""Fourier syntheses by FFT and a peak search with symmetry.

With F(h) = Σ f exp(+2πi h·x) (DESIGN.md §2) the density is

    ρ(x) = (1/V) Σ_h F(h) exp(−2πi h·x),

the sum over all h.  The given coefficients (one per reflection, any
asymmetric unit) are expanded over the space group, F(h R) = F(h)
exp(−2πi h·t) for each operation (R, t), and over Friedel mates, F(−h) =
conj F(h), so that ρ is real; where several given coefficients land on one
index (e.g. both members of a Friedel pair, or equivalents) they are
averaged.  ρ on an N1 × N2 × N3 grid (x = n/N) is then the forward FFT of
the coefficients placed at h mod N, divided by V (e Å⁻³ when F is in
electrons).

The grid has a spacing of at most d_min × ``sampling`` (d_min/3 by
default), sizes with small prime factors that are multiples of the
translations' denominators, and equal sizes on axes that a rotation
exchanges, so that every operation maps grid points onto grid points.

Peaks: grid points higher than their 26 neighbours, positioned by a
quadratic fit through the 3 × 3 × 3 neighbourhood, then merged with their
symmetry images (a peak within ``merge_distance`` of an image of a higher
one is the same peak).  Holes are the peaks of −ρ.
"""

from dataclasses import dataclass
from math import gcd

import numpy as np

import sgtbx

from .errors import ScatteringError

__all__ = ["FourierMap", "Peak", "difference_map", "fourier_synthesis", "grid_size",
           "move_near_atoms", "peak_search", "q_peak_lines"]


def _good_size(n):
    """The smallest m >= n with no prime factor above 5."""
    m = max(int(n), 1)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def grid_size(unit_cell, space_group, d_min, sampling=1.0 / 3.0, hkl=None):
    """Grid sizes (3,) for a synthesis to ``d_min`` Å.

    Parameters
    ----------
    unit_cell, space_group : sgtbx objects
    d_min : float
    sampling : float
        Largest grid spacing as a fraction of d_min.
    hkl : int (m, 3), optional
        The indices to be placed: each size is also at least 2 max|h_i| + 1.
    """
    if not (np.isfinite(d_min) and d_min > 0):
        raise ScatteringError(f"d_min must be a positive number of Angstrom, got {d_min}")
    if not (0 < sampling <= 0.5):
        raise ScatteringError(f"sampling must lie in (0, 0.5], got {sampling}")
    lengths = np.array(unit_cell.parameters[:3])
    need = np.ceil(lengths / (d_min * sampling)).astype(int)
    if hkl is not None and len(hkl):
        need = np.maximum(need, 2 * np.abs(np.asarray(hkl)).max(axis=0) + 1)
    step = np.ones(3, dtype=int)
    for t in np.asarray(space_group.translations, dtype=np.float64):
        for i in range(3):
            den = 1
            while abs(t[i] * den - round(t[i] * den)) > 1e-6 and den < 48:
                den += 1
            step[i] = step[i] * den // gcd(step[i], den)
    linked = np.eye(3, dtype=bool)
    for r in np.asarray(space_group.rotations):
        linked |= r != 0
    for _ in range(3):
        linked = (linked.astype(int) @ linked.astype(int)) > 0
    sizes = need.copy()
    for i in range(3):
        group = np.flatnonzero(linked[i])
        lcm = 1
        for j in group:
            lcm = lcm * step[j] // gcd(lcm, step[j])
        m = max(int(sizes[group].max()), 1)
        n = _good_size(m)
        while n % lcm:
            n = _good_size(n + 1)
        sizes[group] = n
    return tuple(int(s) for s in sizes)


@dataclass
class FourierMap:
    """A map on the unit-cell grid.

    Attributes
    ----------
    values : float64 (N1, N2, N3)
        ρ at x = (n1/N1, n2/N2, n3/N3).
    unit_cell, space_group : sgtbx objects
    """

    values: np.ndarray
    unit_cell: object
    space_group: object

    @property
    def rms(self):
        """Root-mean-square deviation from the mean (SHELXL's "rms")."""
        return float(np.std(self.values))

    def peaks(self, n_max=30, merge_distance=0.5):
        """The highest peaks, list of Peak (see :func:`peak_search`)."""
        return peak_search(self, n_max, merge_distance)

    def holes(self, n_max=30, merge_distance=0.5):
        """The deepest holes (heights negative)."""
        flipped = FourierMap(-self.values, self.unit_cell, self.space_group)
        return [Peak(p.site_frac, -p.height) for p in peak_search(flipped, n_max, merge_distance)]


@dataclass(frozen=True)
class Peak:
    """A map extremum.

    Attributes
    ----------
    site_frac : float64 (3,)
        In [0, 1).
    height : float
        ρ there (e Å⁻³).
    """

    site_frac: np.ndarray
    height: float


def fourier_synthesis(unit_cell, space_group, hkl, coefficients, d_min=None, sampling=1.0 / 3.0,
                      grid=None):
    """ρ from structure-factor coefficients.

    Parameters
    ----------
    unit_cell : sgtbx.UnitCell
    space_group : sgtbx.SpaceGroup
    hkl : int (m, 3)
    coefficients : complex128 (m,)
        E.g. Fo − Fc with the phases of Fc for a difference map.
    d_min : float, optional
        Default: the smallest d-spacing of ``hkl``.
    sampling : float
    grid : tuple of 3 ints, optional
        Grid sizes (default :func:`grid_size`).

    Returns
    -------
    FourierMap
    """
    hkl = np.asarray(hkl)
    if hkl.ndim != 2 or hkl.shape[1] != 3 or not np.issubdtype(hkl.dtype, np.integer):
        raise ScatteringError(f"hkl: expected integers of shape (m, 3), got {hkl.dtype} "
                              f"{hkl.shape}")
    coef = np.asarray(coefficients, dtype=np.complex128)
    if coef.shape != (len(hkl),) or not np.isfinite(coef).all():
        raise ScatteringError(f"coefficients: expected {len(hkl)} finite complex values")
    if len(hkl) == 0:
        raise ScatteringError("a Fourier synthesis needs at least one reflection")
    if d_min is None:
        nonzero = np.abs(hkl).sum(axis=1) > 0
        d_min = float(unit_cell.d_spacings(hkl[nonzero]).min()) if nonzero.any() else 1.0
    if grid is None:
        grid = grid_size(unit_cell, space_group, d_min, sampling, hkl)
    grid = tuple(int(g) for g in grid)
    if len(grid) != 3 or min(grid) < 1:
        raise ScatteringError(f"grid: expected three positive sizes, got {grid}")
    if np.any(2 * np.abs(hkl).max(axis=0) + 1 > np.array(grid)):
        raise ScatteringError(f"grid {grid} is too coarse for indices up to "
                              f"{np.abs(hkl).max(axis=0).tolist()}")
    rot = np.asarray(space_group.rotations, dtype=np.int64)
    tran = np.asarray(space_group.translations, dtype=np.float64)
    h_all = np.einsum("mi,kij->kmj", hkl.astype(np.int64), rot).reshape(-1, 3)
    phase = np.exp(-2j * np.pi * (hkl @ tran.T)).T.reshape(-1)         # (k*m,)
    f_all = np.tile(coef, len(rot)) * phase
    h_all = np.concatenate([h_all, -h_all])
    f_all = np.concatenate([f_all, np.conj(f_all)])
    n = np.array(grid)
    flat = np.ravel_multi_index(tuple((h_all % n).T), grid)
    # several operations give the same index for special reflections: the
    # values agree there, so average over the distinct (input, index) pairs
    origin = np.tile(np.arange(len(hkl)), 2 * len(rot))
    pairs, first = np.unique(np.stack([flat, origin]), axis=1, return_index=True)
    total = np.bincount(pairs[0], minlength=np.prod(grid)).astype(np.float64)
    re = np.bincount(pairs[0], f_all.real[first], minlength=np.prod(grid))
    im = np.bincount(pairs[0], f_all.imag[first], minlength=np.prod(grid))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total > 0, (re + 1j * im) / np.maximum(total, 1), 0.0)
    values = np.fft.fftn(mean.reshape(grid)).real / unit_cell.volume
    return FourierMap(values, unit_cell, space_group)


def difference_map(unit_cell, space_group, hkl, fo_sq, f_calc, scale=1.0, **kwargs):
    """The difference synthesis (Fo − |Fc|) exp(iφc), Fo = √(max(Fo², 0)/K),
    as SHELXL's FMAP 2 (peaks and holes of the residual density).

    Parameters
    ----------
    unit_cell, space_group : sgtbx objects
    hkl : int (m, 3)
    fo_sq : float64 (m,)
        On the scale of the data (Fo² ≈ K |Fc|²).
    f_calc : complex128 (m,)
        Absolute scale.
    scale : float
        K.
    **kwargs
        Passed to :func:`fourier_synthesis` (d_min, sampling, grid).

    Returns
    -------
    FourierMap
    """
    fo_sq = np.asarray(fo_sq, dtype=np.float64)
    f_calc = np.asarray(f_calc, dtype=np.complex128)
    if not (np.isfinite(scale) and scale > 0):
        raise ScatteringError(f"scale must be positive, got {scale}")
    if fo_sq.shape != f_calc.shape:
        raise ScatteringError(f"fo_sq and f_calc: shapes {fo_sq.shape} and {f_calc.shape} differ")
    fo = np.sqrt(np.maximum(fo_sq, 0.0) / scale)
    coefficients = (fo - np.abs(f_calc)) * np.exp(1j * np.angle(f_calc))
    return fourier_synthesis(unit_cell, space_group, hkl, coefficients, **kwargs)


def _local_maxima(values):
    is_max = np.ones(values.shape, dtype=bool)
    for shift in np.ndindex(3, 3, 3):
        if shift == (1, 1, 1):
            continue
        neighbour = np.roll(values, tuple(1 - s for s in shift), axis=(0, 1, 2))
        is_max &= values > neighbour
    return np.argwhere(is_max)


def _refine(values, index):
    """Quadratic fit through the 27 points around ``index``: offset (3,) in
    grid units and the height there."""
    n = np.array(values.shape)
    offsets = np.array(list(np.ndindex(3, 3, 3))) - 1
    samples = values[tuple(((index + offsets) % n).T)]
    o = offsets.astype(np.float64)
    design = np.column_stack([np.ones(27), o, o ** 2, o[:, 0] * o[:, 1], o[:, 0] * o[:, 2],
                              o[:, 1] * o[:, 2]])
    c = np.linalg.lstsq(design, samples, rcond=None)[0]
    grad = c[1:4]
    hess = np.array([[2 * c[4], c[7], c[8]], [c[7], 2 * c[5], c[9]], [c[8], c[9], 2 * c[6]]])
    try:
        step = -np.linalg.solve(hess, grad)
    except np.linalg.LinAlgError:
        step = np.zeros(3)
    if not np.all(np.abs(step) <= 1.0):
        return np.zeros(3), float(values[tuple(index)])
    height = c[0] + grad @ step + 0.5 * step @ hess @ step
    return step, float(height)


def peak_search(fourier_map, n_max=30, merge_distance=0.5):
    """The highest symmetry-unique maxima of a map, highest first.

    Parameters
    ----------
    fourier_map : FourierMap
    n_max : int
    merge_distance : float
        Å: a maximum this close to an image of a higher one is dropped.

    Returns
    -------
    list of Peak
    """
    values = fourier_map.values
    n = np.array(values.shape)
    candidates = _local_maxima(values)
    order = np.argsort(-values[tuple(candidates.T)])
    rot = np.asarray(fourier_map.space_group.rotations, dtype=np.float64)
    tran = np.asarray(fourier_map.space_group.translations, dtype=np.float64)
    metric = fourier_map.unit_cell.metric
    kept, kept_images = [], []
    for idx in candidates[order]:
        step, height = _refine(values, idx)
        site = ((idx + step) / n) % 1.0
        if kept_images:
            delta = np.concatenate(kept_images) - site
            delta -= np.round(delta)
            if np.min(np.einsum("ki,ij,kj->k", delta, metric, delta)) < merge_distance ** 2:
                continue
        kept.append(Peak(site, height))
        kept_images.append(rot @ site + tran)
        if len(kept) >= n_max:
            break
    kept.sort(key=lambda p: -p.height)
    return kept


def move_near_atoms(peaks, sites_frac, unit_cell, space_group):
    """Each peak moved to its symmetry image (operations and lattice
    translations −1..1) nearest to an atom, as SHELXL places Q peaks.

    Parameters
    ----------
    peaks : list of Peak
    sites_frac : float64 (n, 3)
        The atoms (asymmetric unit).
    unit_cell, space_group : sgtbx objects

    Returns
    -------
    moved : list of Peak
    nearest : int64 (len(peaks),)
        Index of the nearest atom.
    distance : float64 (len(peaks),)
        Å.
    """
    sites = np.asarray(sites_frac, dtype=np.float64)
    if sites.ndim != 2 or sites.shape[1] != 3 or len(sites) == 0:
        raise ScatteringError(f"sites_frac: expected shape (n, 3) with n >= 1, got {sites.shape}")
    rot = np.asarray(space_group.rotations, dtype=np.float64)
    tran = np.asarray(space_group.translations, dtype=np.float64)
    shifts = np.array(list(np.ndindex(3, 3, 3)), dtype=np.float64) - 1
    metric = unit_cell.metric
    moved, nearest, distance = [], [], []
    for peak in peaks:
        images = (rot @ peak.site_frac + tran) % 1.0                     # (k, 3)
        images = (images[:, None, :] + shifts[None, :, :]).reshape(-1, 3)
        delta = images[:, None, :] - sites[None, :, :]                     # (i, n, 3)
        d2 = np.einsum("ina,ab,inb->in", delta, metric, delta)
        best = np.unravel_index(np.argmin(d2), d2.shape)
        moved.append(Peak(images[best[0]], peak.height))
        nearest.append(best[1])
        distance.append(np.sqrt(d2[best]))
    return moved, np.array(nearest, dtype=np.int64), np.array(distance)


def q_peak_lines(peaks, unit_cell=None, space_group=None, min_distance=0.1):
    """SHELXL's Q-peak lines for a .res file:
    ``Qn 1 x y z sof 0.05 height``, highest first, heights in e Å⁻³
    (place the peaks with :func:`move_near_atoms` first).  The sof is
    11.00000 on a general position and, as SHELXL writes it, 10 + 1/|site
    group| on a special one (10.5 on a 2-fold axis) when the cell and the
    space group are given.

    Parameters
    ----------
    peaks : list of Peak
    unit_cell, space_group : sgtbx objects, optional
    min_distance : float
        Peaks this close (Å) to a special position count as on it.

    Returns
    -------
    list of str
    """
    if unit_cell is not None and space_group is not None and peaks:
        orders = sgtbx.SiteSymmetryTable(unit_cell, space_group, [p.site_frac for p in peaks],
                                         min_distance=min_distance).orders
    else:
        orders = np.ones(len(peaks), dtype=int)
    return [f"Q{k:<4d} 1 {p.site_frac[0]:9.5f} {p.site_frac[1]:9.5f} {p.site_frac[2]:9.5f} "
            f"{10 + 1 / order:8.5f}  0.05 {p.height:8.2f}"
            for k, (p, order) in enumerate(zip(peaks, orders), start=1)]
