"""Riding hydrogen atoms: SHELXL's X–H lengths and the idealised geometries.

The geometry of each riding group (SHELXL AFIX mn; the class names of
:mod:`smtbx.model` say which geometry, the AFIX table lives in the reader)
is a small function of the Cartesian sites of the pivot X, its bonded
non-hydrogen neighbours and, for terminal groups, the reference atom S
bonded to X's neighbour Y, plus a torsion and an X–H length:

* ``TertiaryXH``: H along the normal of the plane through the unit vectors
  from X's three neighbours, pointing away from them (all Y–X–H equal);
* ``SecondaryXH2``: both H in the plane bisecting Y–X–Z, symmetric about it,
  with the H–X–H angle SHELXL uses, θ/2 = 0.9678 + 0.0698 cos(Y–X–Z) (rad);
* ``SecondaryPlanarXH``: H on the external bisector of Y–X–Z (the two
  nearest neighbours when X has three);
* terminal tetrahedral XHn (``StaggeredTerminalTetrahedralXH3``,
  ``TerminalTetrahedralXH3``, ``StaggeredTerminalTetrahedralXH``,
  ``TerminalTetrahedralXH``, ``DisorderedTerminalTetrahedralXH3``):
  tetrahedral angles at X, the H atoms at torsions φ, φ ± 120° (six at
  60° steps for the disordered methyl) about Y→X, φ measured from the
  Y–S bond (S the nearest non-hydrogen neighbour of Y other than X), or,
  when Y has no such neighbour, from a fixed Cartesian direction;
* ``TerminalPlanarXH2``: =XH2 in the plane S–Y–X at 120°;
* ``LinearXH``: H on the continuation of Y→X;
* ``PolyhedralBH``: H opposite the sum of the unit vectors to X's 4 or 5
  neighbours.

Staggered methyls (AFIX 33, 123) take φ = 180° from S (SHELXL: staggered
with respect to the shortest other bond to the neighbour; this reproduces
the 24 AFIX 33 groups of cc_invtwin to 1e-4 Å).  The torsion of the
rotating groups (AFIX m7, m8) and of AFIX 83 (whose torsion SHELXL picks by
a hydrogen-bond search that is not reproduced here) is the one of the
file's hydrogen positions, refined for n = 7, 8 and held for n = 3.  A
substituent S within 30° of the X–Y line (X–Y–S > 150°, e.g. the N of a
nitrile carrying a methyl) orients a torsion badly and is not used: the
group then measures its torsion from a fixed Cartesian direction and keeps
the file's torsion (ni_i43d's acetonitrile methyl, where SHELXL's choice is
not documented).  Which label takes which of the three (six) positions,
φ + 120° or φ − 120°, and which of the two CH2 hydrogens is which, is read
from the file's positions once, when the graph is built; the set of
positions does not depend on it.  A hydroxyl H (AFIX 83) on a pivot with no
bonded non-hydrogen atom rides along the file's X→H direction.

Derivatives are exact: the geometry functions are evaluated once with
complex-step perturbations of every input (f(x + ih e_k) = f(x) +
ih ∂f/∂x_k + O(h²) with h = 1e-30, so Im f / h is the derivative to
rounding, with no subtractive cancellation).  The functions are therefore
written with analytic operations only (no abs, no conjugates); branch
decisions look at real parts.
"""

import numpy as np

from . import model as m

#: SHELXL's X–H distances (Å) at room temperature, by geometry and pivot
#: element (SHELXL manual, AFIX; the same table as cctbx's
#: smtbx/refinement/constraints/geometrical/hydrogens.py).
ROOM_TEMPERATURE_XH = {
    m.TertiaryXH: {"C": 0.98, "N": 0.91, "B": 0.98},
    m.SecondaryXH2: {"C": 0.97, "N": 0.90},
    m.StaggeredTerminalTetrahedralXH3: {"C": 0.96, "N": 0.89},
    m.TerminalTetrahedralXH3: {"C": 0.96, "N": 0.89},
    m.DisorderedTerminalTetrahedralXH3: {"C": 0.96, "N": 0.89},
    m.SecondaryPlanarXH: {"C": 0.93, "N": 0.86},
    m.TerminalPlanarXH2: {"C": 0.93, "N": 0.86},
    m.StaggeredTerminalTetrahedralXH: {"O": 0.82, "S": 1.20},
    m.TerminalTetrahedralXH: {"O": 0.82, "S": 1.20},
    m.PolyhedralBH: {"B": 1.10, "C": 1.10},
    m.LinearXH: {"C": 0.93},
}

#: Number of bonded non-hydrogen neighbours the pivot must have.
NEIGHBOURS = {
    m.TertiaryXH: (3,), m.SecondaryXH2: (2,), m.SecondaryPlanarXH: (2, 3),
    m.StaggeredTerminalTetrahedralXH3: (1,), m.TerminalTetrahedralXH3: (1,),
    m.DisorderedTerminalTetrahedralXH3: (1,), m.StaggeredTerminalTetrahedralXH: (0, 1),
    m.TerminalTetrahedralXH: (1,), m.TerminalPlanarXH2: (1,), m.LinearXH: (1,),
    m.PolyhedralBH: (4, 5),
}

#: Number of hydrogen atoms per geometry.
HYDROGENS = {
    m.TertiaryXH: 1, m.SecondaryXH2: 2, m.SecondaryPlanarXH: 1,
    m.StaggeredTerminalTetrahedralXH3: 3, m.TerminalTetrahedralXH3: 3,
    m.DisorderedTerminalTetrahedralXH3: 6, m.StaggeredTerminalTetrahedralXH: 1,
    m.TerminalTetrahedralXH: 1, m.TerminalPlanarXH2: 2, m.LinearXH: 1, m.PolyhedralBH: 1,
}

TERMINAL_TETRAHEDRAL = (m.StaggeredTerminalTetrahedralXH3, m.TerminalTetrahedralXH3,
                        m.DisorderedTerminalTetrahedralXH3, m.StaggeredTerminalTetrahedralXH,
                        m.TerminalTetrahedralXH)

COS_TETRAHEDRAL = -1.0 / 3.0
SIN_TETRAHEDRAL = np.sqrt(8.0) / 3.0
COMPLEX_STEP = 1e-30


def xh_length(geometry, element, temperature):
    """SHELXL's default X–H length.

    Parameters
    ----------
    geometry : type
        A RidingGroup subclass.
    element : str
        Pivot element.
    temperature : float or None
        TEMP in °C (None: 20 °C, SHELXL's default).  The room-temperature
        length is increased by 0.01 Å below −20 °C and by 0.02 Å below
        −70 °C (libration).

    Returns
    -------
    float or None
        None when SHELXL's table has no entry for this pivot element.
    """
    d = ROOM_TEMPERATURE_XH[geometry].get(element)
    if d is None:
        return None
    t = 20.0 if temperature is None else temperature
    if t < -70.0:
        d += 0.02
    elif t < -20.0:
        d += 0.01
    return d


# ------------------------------------------------------------ vector algebra
# All along the last axis, for float or complex arrays with leading batch axes.

def _dot(a, b):
    return np.sum(a * b, axis=-1)


def _unit(a):
    return a / np.sqrt(_dot(a, a))[..., None]


def _cross(a, b):
    return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                     a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                     a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)


# ---------------------------------------------------------------- geometries
# Each takes Cartesian points (..., 3) and scalars (...,) and returns the
# hydrogen sites (..., n_h, 3).

def tertiary(x, neighbours, d):
    u = [_unit(x - y) for y in neighbours]
    e = _unit(_cross(u[0] - u[1], u[1] - u[2]))
    sign = np.where(np.real(_dot(e, u[0] + u[1] + u[2])) < 0, -1.0, 1.0)
    return (x + (d * sign)[..., None] * e)[..., None, :]


def secondary_xh2(x, neighbours, d):
    u0, u1 = _unit(x - neighbours[0]), _unit(x - neighbours[1])
    e0 = _unit(u0 + u1)
    e1 = _cross(_unit(u1 - u0), e0)
    half = 0.9678 + 0.0698 * _dot(u0, u1)
    c, s = np.cos(half)[..., None], np.sin(half)[..., None]
    dd = d[..., None]
    return np.stack([x + dd * (c * e0 + s * e1), x + dd * (c * e0 - s * e1)], axis=-2)


def secondary_planar(x, neighbours, d):
    e0 = _unit(_unit(x - neighbours[0]) + _unit(x - neighbours[1]))
    return (x + d[..., None] * e0)[..., None, :]


def terminal_tetrahedral(x, y, reference, phi, d, n, step):
    """H_k at torsion phi + k step about y→x, measured from ``reference``
    (a direction, (..., 3)), X–H length d, tetrahedral angles."""
    e0 = _unit(x - y)
    e1 = _unit(reference - _dot(reference, e0)[..., None] * e0)
    e2 = _cross(e0, e1)
    sites = []
    for k in range(n):
        a = phi + k * step
        u = -COS_TETRAHEDRAL * e0 + SIN_TETRAHEDRAL * (np.cos(a)[..., None] * e1 + np.sin(a)[..., None] * e2)
        sites.append(x + d[..., None] * u)
    return np.stack(sites, axis=-2)


def terminal_planar_xh2(x, y, s, d):
    e0 = _unit(x - y)
    r = s - y
    e1 = _unit(r - _dot(r, e0)[..., None] * e0)
    dd = d[..., None]
    half_sqrt3 = np.sqrt(3.0) / 2.0
    return np.stack([x + dd * (0.5 * e0 + half_sqrt3 * e1), x + dd * (0.5 * e0 - half_sqrt3 * e1)], axis=-2)


def linear(x, y, d):
    return (x + d[..., None] * _unit(x - y))[..., None, :]


def polyhedral(x, neighbours, d):
    total = sum(_unit(y - x) for y in neighbours)
    return (x - d[..., None] * _unit(total))[..., None, :]


def torsion_of(x, y, reference, h):
    """The torsion φ (rad) of a hydrogen site h about y→x from ``reference``
    (float arrays (3,)), as :func:`terminal_tetrahedral` measures it."""
    e0 = _unit(x - y)
    e1 = _unit(reference - _dot(reference, e0) * e0)
    e2 = _cross(e0, e1)
    v = h - x
    return float(np.arctan2(_dot(v, e2), _dot(v, e1)))


class RidingGeometry:
    """One riding group ready to evaluate: which sites it reads and how.

    Parameters
    ----------
    group : smtbx.model.RidingGroup
    inputs : list of (int, ndarray (3, 3), ndarray (3,))
        The atoms whose sites the geometry reads, with the symmetry
        operation giving the image used: (atom, R, t).  Order: pivot,
        neighbours, then the reference atom S when there is one.
    n_neighbours : int
    reference : ndarray (3,) or None
        Fixed Cartesian reference direction for terminal groups whose
        neighbour has no other neighbour (None otherwise).
    step : float
        Torsion step between successive hydrogens (terminal groups).
    orthogonalisation, fractionalisation : ndarray (3, 3)
    """

    def __init__(self, group, inputs, n_neighbours, reference, step, orthogonalisation,
                 fractionalisation):
        self.group = group
        self.kind = type(group)
        self.inputs = inputs
        self.n_neighbours = n_neighbours
        self.reference = reference
        self.step = step
        self.a = orthogonalisation
        self.f = fractionalisation
        self.fixed_direction = None   # Cartesian unit X->H for a pivot with no neighbour

    def sites(self, sites_frac, phi, d):
        """Hydrogen sites (..., n_h, 3), fractional, from the fractional
        input sites (..., n_in, 3) (float or complex) and scalars phi, d (...)."""
        images = np.stack([np.einsum("ab,...b->...a", r, sites_frac[..., k, :]) + t
                           for k, (_, r, t) in enumerate(self.inputs)], axis=-2)
        cart = np.einsum("ab,...kb->...ka", self.a, images)
        x = cart[..., 0, :]
        nb = [cart[..., 1 + k, :] for k in range(self.n_neighbours)]
        kind = self.kind
        if self.fixed_direction is not None:
            h = (x + d[..., None] * self.fixed_direction)[..., None, :]
        elif kind is m.TertiaryXH:
            h = tertiary(x, nb, d)
        elif kind is m.SecondaryXH2:
            h = secondary_xh2(x, nb, d)
        elif kind is m.SecondaryPlanarXH:
            h = secondary_planar(x, nb[:2], d)
        elif kind in TERMINAL_TETRAHEDRAL:
            ref = cart[..., 2, :] - nb[0] if self.reference is None else self.reference
            h = terminal_tetrahedral(x, nb[0], ref, phi, d, HYDROGENS[kind], self.step)
        elif kind is m.TerminalPlanarXH2:
            h = terminal_planar_xh2(x, nb[0], cart[..., 2, :], d)
        elif kind is m.LinearXH:
            h = linear(x, nb[0], d)
        elif kind is m.PolyhedralBH:
            h = polyhedral(x, nb, d)
        else:
            raise TypeError(f"no geometry for {kind.__name__}")
        return np.einsum("ab,...kb->...ka", self.f, h)

    def evaluate(self, sites_frac, phi, d):
        """Sites and their exact Jacobian by complex step.

        Parameters
        ----------
        sites_frac : float64 (n_in, 3)
        phi, d : float

        Returns
        -------
        sites : float64 (n_h, 3)
        d_sites : float64 (n_h * 3, n_in * 3 + 2)
            Derivatives of the flattened sites with respect to the
            flattened input sites, then phi, then d.
        """
        n_in = sites_frac.shape[0]
        n_var = 3 * n_in + 2
        base = np.concatenate([sites_frac.ravel(), [phi, d]]).astype(np.complex128)
        batch = np.tile(base, (n_var, 1))
        batch[np.arange(n_var), np.arange(n_var)] += 1j * COMPLEX_STEP
        out = self.sites(batch[:, :3 * n_in].reshape(n_var, n_in, 3), batch[:, -2], batch[:, -1])
        value = np.real(out[0])
        jac = (np.imag(out) / COMPLEX_STEP).reshape(n_var, -1).T
        return value, jac
