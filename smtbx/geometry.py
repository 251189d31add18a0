"""Distances, angles and torsion angles with their s.u.'s (SHELXL's BOND and
CONF tables, CIF's _geom_* loops).

A quantity q depends on the fractional sites y_s of its atoms (each through
a symmetry operation, x' = R x + t) and on the six cell parameters p:

    Var(q) = g_yᵀ J Var(x) Jᵀ g_y + Σ_p (∂q/∂p σ_p)²,

with g_y = ∂q/∂y_s, J the reparametrisation graph's Jacobian of the sites
(so riding hydrogens, special positions, shared sites and rigid groups get
their correlations from the constraints) and σ_p the cell s.u.'s (ZERR),
taken as independent of each other and of x, as SHELXL takes them.

The quantity is computed from Cartesian positions X = A (R y + t); ∂q/∂y =
Rᵀ Aᵀ ∂q/∂X, and ∂q/∂p = Σ_atoms ∂q/∂X · (∂A/∂p)(R y + t) with ∂A/∂p by
the complex step (exact to rounding).  Distances, angles and torsions do not
depend on the orientation of the Cartesian frame (torsions only on its
handedness, which A keeps), so any A with AᵀA = G gives the same values.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse

from sgtbx.errors import CrystallographyError

__all__ = ["GeometryError", "AtomRef", "Measurement", "DerivedGeometry", "symmetry_code",
           "bond_table", "angle_table", "torsion_table"]


class GeometryError(CrystallographyError):
    """A geometric quantity that is undefined (coinciding atoms, collinear
    atoms for a torsion) or a reference to an atom that does not exist."""


def _orthogonalisation(params):
    """A for cell parameters (a, b, c in Å, angles in degrees); accepts
    complex parameters (for the complex step)."""
    a, b, c = params[:3]
    ca, cb, cg = (np.cos(v * np.pi / 180) for v in params[3:])
    sg = np.sin(params[5] * np.pi / 180)
    v = a * b * c * np.sqrt(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg)
    return np.array([[a, b * cg, c * cb],
                     [0 * a, b * sg, c * (ca - cb * cg) / sg],
                     [0 * a, 0 * a, v / (a * b * sg)]])


def _orthogonalisation_derivatives(params):
    """∂A/∂p, float64 (6, 3, 3), by the complex step."""
    h = 1e-30
    out = np.empty((6, 3, 3))
    for k in range(6):
        p = np.array(params, dtype=np.complex128)
        p[k] += 1j * h
        out[k] = _orthogonalisation(p).imag / h
    return out


@dataclass(frozen=True, eq=False)
class AtomRef:
    """An atom, or its image R x + t.

    Attributes
    ----------
    index : int
    rotation : int (3, 3) or None
    translation : float (3,) or None
    """

    index: int
    rotation: np.ndarray = None
    translation: np.ndarray = None

    def operation(self):
        r = np.eye(3) if self.rotation is None else np.asarray(self.rotation, dtype=np.float64)
        t = np.zeros(3) if self.translation is None else np.asarray(self.translation,
                                                                    dtype=np.float64)
        return r, t


@dataclass(frozen=True)
class Measurement:
    """A derived quantity: value and s.u. (Å or degrees), the atoms it is
    made of."""

    value: float
    su: float
    atoms: tuple


def _distance(xs):
    d = xs[1] - xs[0]
    r = np.linalg.norm(d)
    if r < 1e-8:
        raise GeometryError("a distance between coinciding atoms")
    g = d / r
    return r, [-g, g]


def _angle(xs):
    u, v = xs[0] - xs[1], xs[2] - xs[1]
    lu, lv = np.linalg.norm(u), np.linalg.norm(v)
    if lu < 1e-8 or lv < 1e-8:
        raise GeometryError("an angle with coinciding atoms")
    c = np.clip(u @ v / (lu * lv), -1.0, 1.0)
    theta = np.arccos(c)
    s = np.sin(theta)
    if s < 1e-10:
        return np.degrees(theta), [np.zeros(3)] * 3
    dc_du = v / (lu * lv) - c * u / lu ** 2
    dc_dv = u / (lu * lv) - c * v / lv ** 2
    g1, g3 = -dc_du / s, -dc_dv / s
    return np.degrees(theta), [np.degrees(g1), np.degrees(-g1 - g3), np.degrees(g3)]


def _torsion(xs):
    b1, b2, b3 = xs[1] - xs[0], xs[2] - xs[1], xs[3] - xs[2]
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    lb2 = np.linalg.norm(b2)
    n1sq, n2sq = n1 @ n1, n2 @ n2
    if lb2 < 1e-8 or n1sq < 1e-12 * lb2 ** 2 or n2sq < 1e-12 * lb2 ** 2:
        raise GeometryError("a torsion angle needs two non-collinear triples of atoms")
    phi = np.arctan2(lb2 * (b1 @ n2), n1 @ n2)
    g1 = -lb2 / n1sq * n1
    g4 = lb2 / n2sq * n2
    f1, f3 = (b1 @ b2) / lb2 ** 2, (b3 @ b2) / lb2 ** 2
    g2 = f3 * g4 - (1 + f1) * g1
    g3 = f1 * g1 - (1 + f3) * g4
    return np.degrees(phi), [np.degrees(g) for g in (g1, g2, g3, g4)]


_KINDS = {2: _distance, 3: _angle, 4: _torsion}


class DerivedGeometry:
    """Distances, angles and torsions with s.u.'s from the covariance of x.

    Parameters
    ----------
    unit_cell : sgtbx.UnitCell
        Its ``esds`` (None: the cell is taken as exact).
    sites_frac : float64 (n, 3)
    site_jacobian : scipy.sparse matrix or array, (3n, n_x), optional
        ∂(sites, flattened atom by atom)/∂x, e.g. ``graph.jacobian[graph.site_index.ravel()]``.
    covariance_x : float64 (n_x, n_x), optional
        Var(x) (:meth:`smtbx.refine.LeastSquares.su_covariance`); None: no contribution
        from the model (cell s.u.'s only).
    labels : sequence of str, optional
    space_group : sgtbx.SpaceGroup, optional
        Ties the cell parameters its symmetry makes equal (a = b in
        tetragonal, trigonal and hexagonal cells, a = b = c and, on
        rhombohedral axes, α = β = γ): a tied set is one parameter, with the
        s.u. of its first member, so its contributions add before squaring.
        Without it the six parameters are independent.
    """

    def __init__(self, unit_cell, sites_frac, site_jacobian=None, covariance_x=None, labels=None,
                 space_group=None):
        self.cell = unit_cell
        self.sites = np.asarray(sites_frac, dtype=np.float64)
        n = len(self.sites)
        if self.sites.shape != (n, 3):
            raise GeometryError(f"sites_frac: expected shape (n, 3), got {self.sites.shape}")
        self.labels = [str(i) for i in range(n)] if labels is None else list(labels)
        if (site_jacobian is None) != (covariance_x is None):
            raise GeometryError("site_jacobian and covariance_x go together")
        self.jacobian = None
        if site_jacobian is not None:
            self.jacobian = scipy.sparse.csr_matrix(site_jacobian, dtype=np.float64)
            self.covariance = np.asarray(covariance_x, dtype=np.float64)
            n_x = self.jacobian.shape[1]
            if self.jacobian.shape[0] != 3 * n or self.covariance.shape != (n_x, n_x):
                raise GeometryError(f"site_jacobian must be (3n = {3 * n}, n_x) and covariance_x "
                                    f"(n_x, n_x); got {self.jacobian.shape} and "
                                    f"{self.covariance.shape}")
        params = np.array(unit_cell.parameters)
        self.orthogonalisation = _orthogonalisation(params).real.astype(np.float64)
        self.d_orthogonalisation = _orthogonalisation_derivatives(params)
        self.cell_esds = (None if unit_cell.esds is None
                          else np.asarray(unit_cell.esds, dtype=np.float64))
        self.cell_groups = _tied_cell_parameters(space_group)

    def _positions(self, refs):
        frac, rots = [], []
        for ref in refs:
            if not 0 <= ref.index < len(self.sites):
                raise GeometryError(f"atom index {ref.index}: the model has "
                                    f"{len(self.sites)} atoms")
            r, t = ref.operation()
            frac.append(r @ self.sites[ref.index] + t)
            rots.append(r)
        return frac, rots

    def gradients(self, refs):
        """Value, ∂q/∂(sites of the model) float64 (3n,) and ∂q/∂(cell) (6,)."""
        frac, rots = self._positions(refs)
        a = self.orthogonalisation
        value, g_cart = _KINDS[len(refs)]([a @ f for f in frac])
        g_sites = np.zeros(3 * len(self.sites))
        g_cell = np.zeros(6)
        for ref, f, r, g in zip(refs, frac, rots, g_cart):
            g_sites[3 * ref.index:3 * ref.index + 3] += r.T @ a.T @ g
            g_cell += np.einsum("i,pij,j->p", g, self.d_orthogonalisation, f)
        return float(value), g_sites, g_cell

    def measure(self, refs):
        """Measurement of 2 (distance), 3 (angle at the middle atom) or 4
        (torsion) atoms, each an int or an AtomRef."""
        refs = tuple(r if isinstance(r, AtomRef) else AtomRef(int(r)) for r in refs)
        if len(refs) not in _KINDS:
            raise GeometryError(f"{len(refs)} atoms: expected 2, 3 or 4")
        for r in refs:
            if not 0 <= r.index < len(self.sites):
                raise GeometryError(f"atom index {r.index}: the model has {len(self.sites)} atoms")
        try:
            value, g_sites, g_cell = self.gradients(refs)
        except GeometryError as err:
            names = "-".join(self.labels[r.index] for r in refs)
            raise GeometryError(f"{names}: {err}") from None
        variance = 0.0
        if self.jacobian is not None:
            g_x = self.jacobian.T @ g_sites
            variance += float(g_x @ self.covariance @ g_x)
        if self.cell_esds is not None:
            for group in self.cell_groups:
                variance += float((g_cell[group].sum() * self.cell_esds[group[0]]) ** 2)
        return Measurement(value, float(np.sqrt(max(variance, 0.0))), refs)


def _tied_cell_parameters(space_group):
    """Groups of cell parameters (0..5 = a, b, c, α, β, γ) that the space
    group's rotations map onto each other: axis i and axis j are tied when a
    rotation sends the i-th basis vector to ± the j-th; the angles opposite
    tied axes are tied the same way."""
    parent = list(range(3))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    if space_group is not None:
        for r in np.asarray(space_group.rotations):
            for i in range(3):
                column = r[:, i]
                if np.count_nonzero(column) == 1:
                    j = int(np.flatnonzero(column)[0])
                    parent[root(i)] = root(j)
    axes = {}
    for i in range(3):
        axes.setdefault(root(i), []).append(i)
    groups = [members for members in axes.values()]
    return groups + [[3 + i for i in members] for members in groups]


def symmetry_code(space_group, rotation, translation):
    """CIF symmetry code 'n_klm' of R x + t (n the 1-based operation of
    ``space_group.rotations``, klm = 5 + lattice shift), '.' for the identity."""
    if rotation is None:
        return "."
    r = np.asarray(rotation)
    t = np.asarray(translation, dtype=np.float64)
    for n, (rn, tn) in enumerate(zip(space_group.rotations, space_group.translations)):
        shift = t - tn
        if np.array_equal(rn, r) and np.allclose(shift, np.round(shift), atol=1e-6):
            s = np.round(shift).astype(int)
            if n == 0 and not s.any():
                return "."
            if np.any(np.abs(s) > 4):
                raise GeometryError(f"lattice shift {s.tolist()} beyond the 'n_klm' code")
            return f"{n + 1}_{5 + s[0]}{5 + s[1]}{5 + s[2]}"
    raise GeometryError(f"operation {r.tolist()}, {t.tolist()} is not in the space group")


def _neighbour_lists(connectivity, n_atoms):
    """AtomRef neighbours of every atom, bonds to hydrogens both ways."""
    lists = [[] for _ in range(n_atoms)]
    for i in range(n_atoms):
        for nb in connectivity.neighbours(i):
            ref = None if nb.is_identity else (nb.rotation, nb.translation)
            lists[i].append(AtomRef(nb.index, *(ref or (None, None))))
            if connectivity.hydrogen[i]:
                r_inv = np.round(np.linalg.inv(nb.rotation)).astype(np.int32)
                back = AtomRef(i) if nb.is_identity else AtomRef(i, r_inv, -r_inv @ nb.translation)
                lists[nb.index].append(back)
    return lists


def _compose(outer, inner):
    """The image of ``inner`` (relative to an atom at ``outer``) in the frame
    where ``outer`` is given."""
    ro, to = outer.operation()
    ri, ti = inner.operation()
    r = ro @ ri
    t = ro @ ti + to
    if np.allclose(r, np.eye(3)) and not np.any(np.abs(t) > 1e-9):
        return AtomRef(inner.index)
    return AtomRef(inner.index, np.round(r).astype(np.int32), t)


def bond_table(geometry, connectivity):
    """Bonds (SHELXL BOND): each pair once, Measurement list."""
    lists = _neighbour_lists(connectivity, len(geometry.sites))
    out = []
    for i, nbs in enumerate(lists):
        for nb in nbs:
            if nb.index > i or (nb.index == i and nb.rotation is not None):
                out.append(geometry.measure((AtomRef(i), nb)))
    return out


def angle_table(geometry, connectivity):
    """Angles at every atom between pairs of its bonded neighbours."""
    lists = _neighbour_lists(connectivity, len(geometry.sites))
    out = []
    for j, nbs in enumerate(lists):
        for a in range(len(nbs)):
            for b in range(a + 1, len(nbs)):
                out.append(geometry.measure((nbs[a], AtomRef(j), nbs[b])))
    return out


def _coincide(geometry, a, b):
    fa, fb = geometry._positions([a, b])[0]
    return a.index == b.index and np.allclose(fa, fb, atol=1e-6)


def torsion_table(geometry, connectivity):
    """Torsions i-j-k-l (SHELXL CONF) over every bond j-k between non-hydrogen
    atoms, skipping collinear triples."""
    lists = _neighbour_lists(connectivity, len(geometry.sites))
    hydrogen = connectivity.hydrogen
    out = []
    for j, nbs in enumerate(lists):
        if hydrogen[j]:
            continue
        for k_ref in nbs:
            k = k_ref.index
            if hydrogen[k] or not (k > j or (k == j and k_ref.rotation is not None)):
                continue
            for i_ref in nbs:
                if _coincide(geometry, i_ref, k_ref):
                    continue
                for l_inner in lists[k]:
                    l_ref = _compose(k_ref, l_inner)
                    if _coincide(geometry, l_ref, AtomRef(j)) or _coincide(geometry, l_ref, i_ref):
                        continue
                    try:
                        out.append(geometry.measure((i_ref, AtomRef(j), k_ref, l_ref)))
                    except GeometryError:
                        continue
    return out
