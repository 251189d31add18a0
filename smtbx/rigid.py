"""Rigid groups (SHELXL AFIX m6, m9): atoms that move as one body.

The sites are x_k = F [c + t + s R(ω) r_k], with F the fractionalisation
matrix, c the centroid of the group when the graph is built, r_k the
Cartesian positions relative to it (as given for m = 0, an ideal regular
pentagon or hexagon fitted to the atoms for m = 5, 6, 7), and the
parameters: the translation t (Å, 3), the rotation ω (rad, 3; R =
Rz(ω3) Ry(ω2) Rx(ω1), all zero at the start) and, for n = 9, the common
scale s (1 at the start).  Derivatives by complex step, as for the riding
hydrogens (:mod:`smtbx.riding`).
"""

import numpy as np

from .riding import COMPLEX_STEP

#: Default side lengths (Å) of SHELXL's ideal rigid shapes.
IDEAL_SIDE = {"pentagon": 1.42, "hexagon": 1.39}
IDEAL_COUNT = {"pentagon": 5, "hexagon": 6}


def ideal_polygon(n, side):
    """Regular n-gon with the given side, in the xy plane, centred (n, 3)."""
    radius = side / (2.0 * np.sin(np.pi / n))
    t = 2.0 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(t), radius * np.sin(t), np.zeros(n)], axis=1)


def fit(reference, target):
    """The proper rotation R minimising Σ |R reference_k − target_k|² (both
    centred, (n, 3)) (Kabsch)."""
    u, _, vt = np.linalg.svd(target.T @ reference)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _rotation(omega):
    """Rz(ω3) Ry(ω2) Rx(ω1) for ω (..., 3), (..., 3, 3); complex-safe."""
    c, s = np.cos(omega), np.sin(omega)
    one, zero = np.ones_like(c[..., 0]), np.zeros_like(c[..., 0])
    rx = np.stack([one, zero, zero, zero, c[..., 0], -s[..., 0], zero, s[..., 0], c[..., 0]], -1)
    ry = np.stack([c[..., 1], zero, s[..., 1], zero, one, zero, -s[..., 1], zero, c[..., 1]], -1)
    rz = np.stack([c[..., 2], -s[..., 2], zero, s[..., 2], c[..., 2], zero, zero, zero, one], -1)
    shape = omega.shape[:-1] + (3, 3)
    return rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)


class RigidBody:
    """One rigid group ready to evaluate.

    Parameters
    ----------
    group : smtbx.model.RigidGroup
    sites_frac : float64 (n, 3)
        The group's atoms' sites when the graph is built.
    orthogonalisation, fractionalisation : float64 (3, 3)

    Attributes
    ----------
    centroid : float64 (3,)
        Cartesian.
    reference : float64 (n, 3)
        Cartesian positions relative to the centroid.
    n_parameters : int
        6, or 7 with a variable size.
    """

    def __init__(self, group, sites_frac, orthogonalisation, fractionalisation):
        self.group = group
        self.f = fractionalisation
        cart = sites_frac @ orthogonalisation.T
        self.centroid = cart.mean(axis=0)
        centred = cart - self.centroid
        if group.shape == "as_given":
            self.reference = centred
        else:
            side = group.distance if group.distance is not None else IDEAL_SIDE[group.shape]
            ideal = ideal_polygon(len(cart), side)
            self.reference = ideal @ fit(ideal, centred).T
        self.n_parameters = 7 if group.variable_size else 6

    def start(self):
        """The parameters at which the group sits where the graph put it."""
        return np.array([0.0] * 6 + ([1.0] if self.group.variable_size else []))

    def sites(self, params):
        """Fractional sites (..., n, 3) for parameters (..., n_parameters)."""
        t, omega = params[..., 0:3], params[..., 3:6]
        scale = params[..., 6] if self.group.variable_size else np.ones_like(params[..., 0])
        body = np.einsum("...ab,kb->...ka", _rotation(omega), self.reference) * scale[..., None, None]
        cart = self.centroid + t[..., None, :] + body
        return np.einsum("ab,...kb->...ka", self.f, cart)

    def evaluate(self, params):
        """Sites (n, 3) and their Jacobian (3n, n_parameters), exact (complex step)."""
        k = self.n_parameters
        batch = np.tile(np.asarray(params, dtype=np.complex128), (k, 1))
        batch[np.arange(k), np.arange(k)] += 1j * COMPLEX_STEP
        out = self.sites(batch)
        return np.real(out[0]), (np.imag(out) / COMPLEX_STEP).reshape(k, -1).T
