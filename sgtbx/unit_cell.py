"""Unit cells: metric, orthogonalisation, ADP conversions, distances and
angles with their standard uncertainties.

Orthogonalisation follows the PDB/cctbx convention: a along x, b in the xy
plane.  ADP arrays are (n, 6) in the order 11, 22, 33, 12, 13, 23.
Standard uncertainties of cell angles are in degrees, as in CIF and SHELX.
"""

import numpy as np

from .errors import SiteError, UnitCellError

_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _sym6(u):
    """(n, 6) -> (n, 3, 3) symmetric matrices."""
    m = np.empty(u.shape[:-1] + (3, 3))
    for k, (i, j) in enumerate(_PAIRS):
        m[..., i, j] = u[..., k]
        m[..., j, i] = u[..., k]
    return m


def _vec6(m):
    """(n, 3, 3) -> (n, 6)."""
    return np.stack([m[..., i, j] for i, j in _PAIRS], axis=-1)


def _as_adp_array(u, name):
    array = np.asarray(u, dtype=np.float64)
    if array.shape[-1:] != (6,):
        raise SiteError(f"{name} must have shape (n, 6) (order 11, 22, 33, 12, 13, 23), got {array.shape}")
    return array


def _as_site(x, name="site"):
    site = np.asarray(x, dtype=np.float64)
    if site.shape != (3,):
        raise SiteError(f"{name} must have shape (3,), got {site.shape}")
    if not np.all(np.isfinite(site)):
        raise SiteError(f"{name} {site.tolist()} is not finite")
    return site


class UnitCell:
    """A unit cell (lengths in Å, angles in degrees).

    Parameters
    ----------
    a, b, c, alpha, beta, gamma : float
    esds : sequence of 6 floats, optional
        Standard uncertainties of the six parameters (angles in degrees).

    Attributes
    ----------
    parameters : tuple of 6 floats
    esds : float64 (6,) or None
    metric : float64 (3, 3)
        G, with d^2 = dx^T G dx for a fractional difference dx.
    reciprocal_metric : float64 (3, 3)
        G* = G^-1; s^2 = 1/d^2 = h G* h^T.
    orthogonalisation : float64 (3, 3)
        A, with x_cart = A x_frac.
    fractionalisation : float64 (3, 3)
        A^-1.
    volume : float
    reciprocal_parameters : tuple of 6 floats
        a*, b*, c* (1/Å) and alpha*, beta*, gamma* (degrees).
    """

    def __init__(self, a, b, c, alpha, beta, gamma, esds=None):
        try:
            params = np.array([a, b, c, alpha, beta, gamma], dtype=np.float64)
        except (TypeError, ValueError):
            raise UnitCellError(f"cell parameters must be numbers, got {(a, b, c, alpha, beta, gamma)}") from None
        if not np.all(np.isfinite(params)):
            raise UnitCellError(f"cell parameters must be finite, got {params.tolist()}")
        for name, value in zip(("a", "b", "c"), params[:3]):
            if value <= 0:
                raise UnitCellError(f"cell edge {name} = {value} must be positive")
        for name, value in zip(("alpha", "beta", "gamma"), params[3:]):
            if not 0 < value < 180:
                raise UnitCellError(f"cell angle {name} = {value} must lie strictly between 0 and 180 degrees")
        self.parameters = tuple(float(p) for p in params)
        if esds is not None:
            esds = np.asarray(esds, dtype=np.float64)
            if esds.shape != (6,) or not np.all(np.isfinite(esds)) or np.any(esds < 0):
                raise UnitCellError(f"cell esds must be 6 non-negative numbers, got {esds.tolist()}")
        self.esds = esds
        cos = np.cos(np.radians(params[3:]))
        volume_sq = 1 - np.sum(cos ** 2) + 2 * np.prod(cos)
        if volume_sq <= 1e-12:
            raise UnitCellError(f"the angles {params[3:].tolist()} do not form a cell (zero or negative volume)")
        self.metric = self._metric(params)
        self.reciprocal_metric = np.linalg.inv(self.metric)
        self.volume = float(np.prod(params[:3]) * np.sqrt(volume_sq))
        g = self.reciprocal_metric
        rs = np.sqrt(np.diag(g))
        self.reciprocal_parameters = (
            float(rs[0]), float(rs[1]), float(rs[2]),
            float(np.degrees(np.arccos(g[1, 2] / (rs[1] * rs[2])))),
            float(np.degrees(np.arccos(g[0, 2] / (rs[0] * rs[2])))),
            float(np.degrees(np.arccos(g[0, 1] / (rs[0] * rs[1])))),
        )
        a_, b_, c_ = params[:3]
        cos_a, cos_b, cos_g = cos
        sin_g = np.sin(np.radians(params[5]))
        self.orthogonalisation = np.array([
            [a_, b_ * cos_g, c_ * cos_b],
            [0.0, b_ * sin_g, c_ * (cos_a - cos_b * cos_g) / sin_g],
            [0.0, 0.0, self.volume / (a_ * b_ * sin_g)],
        ])
        self.fractionalisation = np.linalg.inv(self.orthogonalisation)
        self._n = np.array(rs)

    @staticmethod
    def _metric(params):
        a, b, c = params[:3]
        ca, cb, cg = np.cos(np.radians(params[3:]))
        return np.array([[a * a, a * b * cg, a * c * cb],
                         [a * b * cg, b * b, b * c * ca],
                         [a * c * cb, b * c * ca, c * c]])

    def _metric_derivatives(self):
        """dG/dp for the six parameters (angles per degree), (6, 3, 3)."""
        a, b, c = self.parameters[:3]
        angles = np.radians(self.parameters[3:])
        ca, cb, cg = np.cos(angles)
        sa, sb, sg = np.sin(angles)
        d = np.zeros((6, 3, 3))
        d[0] = [[2 * a, b * cg, c * cb], [b * cg, 0, 0], [c * cb, 0, 0]]
        d[1] = [[0, a * cg, 0], [a * cg, 2 * b, c * ca], [0, c * ca, 0]]
        d[2] = [[0, 0, a * cb], [0, 0, b * ca], [a * cb, b * ca, 2 * c]]
        d[3][1, 2] = d[3][2, 1] = -b * c * sa
        d[4][0, 2] = d[4][2, 0] = -a * c * sb
        d[5][0, 1] = d[5][1, 0] = -a * b * sg
        d[3:] *= np.pi / 180
        return d

    def __repr__(self):
        return "UnitCell({:.5g}, {:.5g}, {:.5g}, {:.5g}, {:.5g}, {:.5g})".format(*self.parameters)

    def __eq__(self, other):
        return isinstance(other, UnitCell) and np.allclose(self.parameters, other.parameters, rtol=1e-10, atol=0)

    def as_gemmi(self):
        import gemmi
        return gemmi.UnitCell(*self.parameters)

    # -- compatibility with a space group -----------------------------------------

    def is_compatible(self, space_group, tolerance=1e-3):
        """Whether the metric is invariant under every rotation of the group
        (relative tolerance on the metric tensor)."""
        g = self.metric
        scale = np.max(np.abs(g))
        return all(np.max(np.abs(r.T @ g @ r - g)) <= tolerance * scale
                   for r in space_group.symmetry_rotations)

    def check_compatible(self, space_group, tolerance=1e-3):
        """Raise :class:`UnitCellError` unless the cell fits the lattice of
        ``space_group``."""
        if not self.is_compatible(space_group, tolerance):
            raise UnitCellError(
                f"cell {self.parameters} does not agree with the {space_group.crystal_system} lattice "
                f"of {space_group!r}: its metric is not invariant under the rotations")

    # -- coordinates and reciprocal space --------------------------------------

    def orthogonalise(self, sites_frac):
        """Cartesian coordinates (Å) of fractional sites (..., 3)."""
        return np.asarray(sites_frac, dtype=np.float64) @ self.orthogonalisation.T

    def fractionalise(self, sites_cart):
        """Fractional coordinates of Cartesian sites (..., 3)."""
        return np.asarray(sites_cart, dtype=np.float64) @ self.fractionalisation.T

    def s_squared(self, hkl):
        """s^2 = 1/d^2 = h G* h^T for hkl (m, 3)."""
        h = np.asarray(hkl, dtype=np.float64)
        return np.einsum("mi,ij,mj->m", h, self.reciprocal_metric, h)

    def d_spacings(self, hkl):
        """d (Å) for hkl (m, 3); inf for (0, 0, 0)."""
        s_sq = self.s_squared(hkl)
        with np.errstate(divide="ignore"):
            return 1.0 / np.sqrt(s_sq)

    def two_theta(self, hkl, wavelength):
        """Bragg angle 2 theta (degrees) for a wavelength in Å."""
        sin_theta = 0.5 * wavelength * np.sqrt(self.s_squared(hkl))
        if np.any(sin_theta > 1):
            raise UnitCellError("some reflections lie beyond the limiting sphere of this wavelength")
        return np.degrees(2 * np.arcsin(sin_theta))

    # -- ADP conversions ---------------------------------------------------------

    def u_cif_as_u_star(self, u_cif):
        """U* = N U_cif N, N = diag(a*, b*, c*)."""
        u = _as_adp_array(u_cif, "u_cif")
        n = self._n
        return u * np.array([n[i] * n[j] for i, j in _PAIRS])

    def u_star_as_u_cif(self, u_star):
        u = _as_adp_array(u_star, "u_star")
        n = self._n
        return u / np.array([n[i] * n[j] for i, j in _PAIRS])

    def u_star_as_u_cart(self, u_star):
        """U_cart = A U* A^T."""
        m = _sym6(_as_adp_array(u_star, "u_star"))
        a = self.orthogonalisation
        return _vec6(a @ m @ a.T)

    def u_cart_as_u_star(self, u_cart):
        m = _sym6(_as_adp_array(u_cart, "u_cart"))
        f = self.fractionalisation
        return _vec6(f @ m @ f.T)

    def u_cif_as_u_cart(self, u_cif):
        return self.u_star_as_u_cart(self.u_cif_as_u_star(u_cif))

    def u_cart_as_u_cif(self, u_cart):
        return self.u_star_as_u_cif(self.u_cart_as_u_star(u_cart))

    def u_iso_as_u_star(self, u_iso):
        """The U* of an isotropic U: U_iso G*."""
        g = self.reciprocal_metric
        return np.multiply.outer(np.asarray(u_iso, dtype=np.float64), _vec6(g))

    def u_star_as_u_iso(self, u_star):
        """U_eq = trace(U_cart) / 3."""
        u_cart = self.u_star_as_u_cart(u_star)
        return (u_cart[..., 0] + u_cart[..., 1] + u_cart[..., 2]) / 3.0

    u_eq = u_star_as_u_iso

    @staticmethod
    def u_iso_as_b_iso(u_iso):
        """B = 8 pi^2 U."""
        return 8 * np.pi ** 2 * np.asarray(u_iso, dtype=np.float64)

    @staticmethod
    def b_iso_as_u_iso(b_iso):
        return np.asarray(b_iso, dtype=np.float64) / (8 * np.pi ** 2)

    # -- distances and angles ----------------------------------------------------------

    @staticmethod
    def _apply(site, operation):
        if operation is None:
            return site, np.eye(3)
        rot, tran = operation
        rot = np.asarray(rot, dtype=np.float64)
        return rot @ site + np.asarray(tran, dtype=np.float64), rot

    def distance(self, site1, site2, operation2=None):
        """Distance (Å) from fractional ``site1`` to ``R site2 + t`` where
        ``operation2`` = (R, t) (t may include a lattice shift)."""
        x1 = _as_site(site1, "site1")
        x2, _ = self._apply(_as_site(site2, "site2"), operation2)
        delta = x2 - x1
        return float(np.sqrt(delta @ self.metric @ delta))

    def distance_su(self, site1, site2, su1, su2, operation2=None, same_atom=False):
        """Distance and its s.u. from the fractional s.u.'s of the two sites
        (independent unless ``same_atom``) and the cell s.u.'s.

        Returns (d, su_d) in Å.
        """
        x1 = _as_site(site1, "site1")
        x2, rot = self._apply(_as_site(site2, "site2"), operation2)
        delta = x2 - x1
        d = float(np.sqrt(delta @ self.metric @ delta))
        if d == 0:
            raise SiteError("the two sites coincide: the distance has no s.u.")
        g_delta = self.metric @ delta / d
        grad1 = -g_delta
        grad2 = rot.T @ g_delta
        grad_cell = np.einsum("i,pij,j->p", delta, self._metric_derivatives(), delta) / (2 * d)
        return d, self._propagate([(grad1, su1), (grad2, su2)], grad_cell, same_atom)

    def angle(self, site1, site2, site3, operations=(None, None, None)):
        """Angle (degrees) at ``site2`` between ``site1`` and ``site3``, each
        through its optional operation (R, t)."""
        return self._angle(site1, site2, site3, operations)[0]

    def angle_su(self, site1, site2, site3, su1, su2, su3, operations=(None, None, None)):
        """Angle at site2 and its s.u. (degrees), the three sites independent."""
        theta, grads, grad_cell = self._angle(site1, site2, site3, operations)
        sigma = self._propagate(list(zip(grads, (su1, su2, su3))), grad_cell, False)
        return theta, float(np.degrees(sigma))

    def _angle(self, site1, site2, site3, operations):
        xs, rots = [], []
        for k, (site, op) in enumerate(zip((site1, site2, site3), operations)):
            x, rot = self._apply(_as_site(site, f"site{k + 1}"), op)
            xs.append(x)
            rots.append(rot)
        u = xs[0] - xs[1]
        v = xs[2] - xs[1]
        g = self.metric
        lu = np.sqrt(u @ g @ u)
        lv = np.sqrt(v @ g @ v)
        if lu == 0 or lv == 0:
            raise SiteError("an angle needs three distinct sites")
        c = float(np.clip(u @ g @ v / (lu * lv), -1.0, 1.0))
        theta = float(np.degrees(np.arccos(c)))
        sin_t = np.sqrt(max(1 - c * c, 0.0))
        if sin_t < 1e-12:
            return theta, [np.zeros(3)] * 3, np.zeros(6)
        dc_du = g @ v / (lu * lv) - c * (g @ u) / lu ** 2
        dc_dv = g @ u / (lu * lv) - c * (g @ v) / lv ** 2
        dc_dg = np.outer(u, v) / (lu * lv) - 0.5 * c * (np.outer(u, u) / lu ** 2 + np.outer(v, v) / lv ** 2)
        scale = -1.0 / sin_t  # d theta / d cos(theta), theta in radians
        grads = [scale * rots[0].T @ dc_du, -scale * rots[1].T @ (dc_du + dc_dv), scale * rots[2].T @ dc_dv]
        grad_cell = scale * np.einsum("ij,pij->p", dc_dg, self._metric_derivatives())
        return theta, grads, grad_cell

    def _propagate(self, site_terms, grad_cell, same_atom):
        variance = 0.0
        if same_atom:
            su = np.asarray(site_terms[0][1], dtype=np.float64)
            grad = sum(term[0] for term in site_terms)
            variance += float(np.sum((grad * su) ** 2))
        else:
            for grad, su in site_terms:
                variance += float(np.sum((grad * np.asarray(su, dtype=np.float64)) ** 2))
        if self.esds is not None:
            variance += float(np.sum((grad_cell * self.esds) ** 2))
        return float(np.sqrt(variance))
