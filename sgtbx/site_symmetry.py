"""Site symmetry: the operations that fix a site, the exact special
position, and the constraint matrices of special positions.

A site x on a special position may move only within the fixed space of its
site group: x = Z u + z, Z (3 x k) and z (3,), u the k free coordinates.
An ADP there obeys R U* R^T = U* for every site rotation: U* = P v, P
(6 x m), v the m free components (U* order 11, 22, 33, 12, 13, 23).  Z and P
are computed exactly (integer rotations, rational elimination); their free
parameters are the earliest coordinates or components, so that e.g. a site
on (x, x, z) is parametrised by x and z, and an ADP with U22 = U11 by U11.
"""

import functools
from fractions import Fraction

import numpy as np

from . import _site
from .errors import SiteError
from .point_group import point_group_symbol

_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _null_space(rows, n):
    """Basis (n x k, Fractions) of the null space of an integer matrix, with
    an identity on the free columns, chosen as the earliest ones."""
    # Eliminate on the columns in reverse order, so that pivots fall on the
    # latest columns and the earliest stay free.
    matrix = [[Fraction(int(v)) for v in reversed(row)] for row in rows]
    pivots = []
    r = 0
    for c in range(n):
        pivot = next((i for i in range(r, len(matrix)) if matrix[i][c] != 0), None)
        if pivot is None:
            continue
        matrix[r], matrix[pivot] = matrix[pivot], matrix[r]
        lead = matrix[r][c]
        matrix[r] = [v / lead for v in matrix[r]]
        for i in range(len(matrix)):
            if i != r and matrix[i][c] != 0:
                factor = matrix[i][c]
                matrix[i] = [a - factor * b for a, b in zip(matrix[i], matrix[r])]
        pivots.append(c)
        r += 1
        if r == len(matrix):
            break
    free = [c for c in range(n) if c not in pivots]
    basis = []
    for f in free:
        v = [Fraction(0)] * n
        v[f] = Fraction(1)
        for row, p in enumerate(pivots):
            v[p] = -matrix[row][f]
        basis.append(v)
    # back to the original column order; free columns ascending
    columns = [[vec[n - 1 - i] for i in range(n)] for vec in reversed(basis)]
    return [[columns[k][i] for k in range(len(columns))] for i in range(n)]


def _adp_operator(rot):
    """The integer 6x6 matrix M with (R U R^T) = M U on 6-vectors."""
    m = np.zeros((6, 6), dtype=np.int64)
    for p, (i, j) in enumerate(_PAIRS):
        for q, (k, l) in enumerate(_PAIRS):
            if k == l:
                m[p, q] = rot[i, k] * rot[j, k]
            else:
                m[p, q] = rot[i, k] * rot[j, l] + rot[i, l] * rot[j, k]
    return m


@functools.lru_cache(maxsize=4096)
def _constraint_matrices(rotations_bytes, n):
    rotations = np.frombuffer(rotations_bytes, dtype=np.int32).reshape(n, 3, 3)
    eye3 = np.eye(3, dtype=np.int64)
    site_rows = np.concatenate([r.astype(np.int64) - eye3 for r in rotations])
    eye6 = np.eye(6, dtype=np.int64)
    adp_rows = np.concatenate([_adp_operator(r.astype(np.int64)) - eye6 for r in rotations])
    z = _null_space(site_rows, 3)
    p = _null_space(adp_rows, 6)
    as_float = lambda m, rows: np.array([[float(v) for v in row] for row in m],
                                        dtype=np.float64).reshape(rows, -1)
    return as_float(z, 3), as_float(p, 6), point_group_symbol(rotations)


def _check_sites(sites_frac):
    sites = np.asarray(sites_frac, dtype=np.float64)
    if sites.ndim == 1:
        sites = sites[None, :]
    if sites.ndim != 2 or sites.shape[1] != 3:
        raise SiteError(f"sites must have shape (n, 3), got {np.shape(sites_frac)}")
    bad = np.flatnonzero(~np.all(np.isfinite(sites), axis=1))
    if len(bad):
        raise SiteError(f"site {bad[0]} {sites[bad[0]].tolist()} is not finite")
    return np.ascontiguousarray(sites)


def _analyse(unit_cell, space_group, sites, min_distance, n_threads):
    if not min_distance > 0:
        raise SiteError(f"min_distance must be positive, got {min_distance}")
    n = len(sites)
    exact = np.empty((n, 3))
    mask = np.empty(n, dtype=np.uint64)
    order = np.empty(n, dtype=np.int32)
    converged = np.empty(n, dtype=np.uint8)
    rot_index = (np.arange(space_group.order_z) % space_group.order_p).astype(np.int32)
    _site.analyse_sites(sites, space_group.rotations, space_group.translations, rot_index,
                        np.ascontiguousarray(unit_cell.metric), float(min_distance),
                        exact, mask, order, converged, n_threads)
    failed = np.flatnonzero(converged == 0)
    if len(failed):
        i = failed[0]
        raise SiteError(f"site {i} {sites[i].tolist()}: the symmetry operations within "
                        f"{min_distance} Å do not settle on a special position; "
                        f"use a smaller min_distance")
    return exact, mask, order


def _mask_rotations(space_group, mask):
    bits = [k for k in range(space_group.order_p) if (int(mask) >> k) & 1]
    return np.ascontiguousarray(space_group.symmetry_rotations[bits])


class SiteSymmetry:
    """The site symmetry of one site.

    Parameters
    ----------
    unit_cell : UnitCell
    space_group : SpaceGroup
    site_frac : float (3,)
    min_distance : float
        Images closer than this (Å) count as the same position, so that a
        site this close to a special position is moved onto it.

    Attributes
    ----------
    original_site, exact_site : float64 (3,)
    rotations : int32 (order, 3, 3); translations : float64 (order, 3)
        The site group: (R, t), t including the lattice shift, with
        R exact_site + t = exact_site.
    order : int
        |site group|.
    multiplicity : int
        order_z / order, the number of positions in the unit cell.
    point_group : str
        The site point-group symbol (orientation-free, e.g. "2", "-3m").
    site_matrix, site_offset : float64 (3, k), (3,)
        x = Z u + z.
    adp_matrix : float64 (6, m)
        U* = P v.
    """

    def __init__(self, unit_cell, space_group, site_frac, min_distance=0.5):
        site = _check_sites(site_frac)
        if site.shape[0] != 1:
            raise SiteError(f"one site expected, got shape {np.shape(site_frac)}")
        exact, mask, order = _analyse(unit_cell, space_group, site, min_distance, 1)
        self.unit_cell = unit_cell
        self.space_group = space_group
        self.original_site = site[0]
        self.exact_site = exact[0]
        self.order = int(order[0])
        self.multiplicity = space_group.order_z // self.order
        site_rotations = _mask_rotations(space_group, mask[0])
        self.site_matrix, self.adp_matrix, self.point_group = _constraint_matrices(
            site_rotations.tobytes(), len(site_rotations))
        free = self._free_coordinates()
        self.site_offset = self.exact_site - self.site_matrix @ self.exact_site[free]
        self._select_operations()

    def _free_coordinates(self):
        """Indices of the coordinates that are the free parameters u."""
        return [int(np.flatnonzero(col)[0]) for col in self.site_matrix.T]

    def _select_operations(self):
        x = self.exact_site
        rots, trans = [], []
        for r, t in zip(self.space_group.rotations, self.space_group.translations):
            image = r @ x + t
            shift = np.round(x - image)
            delta = image + shift - x
            if np.sqrt(delta @ self.unit_cell.metric @ delta) < 1e-6:
                rots.append(r)
                trans.append(t + shift)
        self.rotations = np.array(rots, dtype=np.int32).reshape(-1, 3, 3)
        self.translations = np.array(trans, dtype=np.float64).reshape(-1, 3)

    @property
    def is_special(self):
        return self.order > 1

    @property
    def distance_moved(self):
        """How far (Å) the site was moved onto the special position."""
        delta = self.exact_site - self.original_site
        return float(np.sqrt(delta @ self.unit_cell.metric @ delta))

    def independent_site_parameters(self, site_frac=None):
        """u for a site (default the exact one): its free coordinates."""
        x = self.exact_site if site_frac is None else np.asarray(site_frac, dtype=np.float64)
        return x[self._free_coordinates()]

    def project_site(self, site_frac):
        """The nearest point to ``site_frac`` on the special position: the
        average of its images under the site group."""
        x = np.asarray(site_frac, dtype=np.float64)
        images = np.einsum("kij,j->ki", self.rotations, x) + self.translations
        return images.mean(axis=0)

    def project_u_star(self, u_star):
        """The symmetric part of U* (6,): the average of R U* R^T over the
        site group, which satisfies the special-position constraints."""
        u = np.asarray(u_star, dtype=np.float64)
        if u.shape != (6,):
            raise SiteError(f"u_star must have shape (6,), got {u.shape}")
        return np.mean([_adp_operator(r.astype(np.int64)) @ u for r in self.rotations], axis=0)

    def independent_adp_parameters(self, u_star):
        """v with P v the projection of u_star."""
        v, *_ = np.linalg.lstsq(self.adp_matrix, self.project_u_star(u_star), rcond=None)
        return v

    def __repr__(self):
        return (f"SiteSymmetry(site={self.exact_site.round(6).tolist()}, "
                f"point_group={self.point_group!r}, multiplicity={self.multiplicity})")


class SiteSymmetryTable:
    """Site symmetry of many sites at once (one parallel pass in Cython).

    Attributes
    ----------
    exact_sites : float64 (n, 3)
    orders : int32 (n,)
    multiplicities : int32 (n,)
    special_indices : int64 (k,)
        The sites on special positions.
    """

    def __init__(self, unit_cell, space_group, sites_frac, min_distance=0.5, n_threads=1):
        sites = _check_sites(sites_frac)
        self.unit_cell = unit_cell
        self.space_group = space_group
        self.original_sites = sites
        self.exact_sites, self._masks, self.orders = _analyse(
            unit_cell, space_group, sites, min_distance, n_threads)
        self.multiplicities = (space_group.order_z // self.orders).astype(np.int32)
        self.special_indices = np.flatnonzero(self.orders > 1)

    def __len__(self):
        return len(self.orders)

    def _matrices(self, i):
        rotations = _mask_rotations(self.space_group, self._masks[i])
        return _constraint_matrices(rotations.tobytes(), len(rotations))

    def site_matrix(self, i):
        """Z (3 x k) of site i."""
        return self._matrices(i)[0]

    def adp_matrix(self, i):
        """P (6 x m) of site i."""
        return self._matrices(i)[1]

    def point_group(self, i):
        return self._matrices(i)[2]
