"""Symmetry operations in the form the restraint kernels use.

A proxy atom may be a symmetry mate: x' = R x_frac + t + L (R, t a space-group
operation, L an integer lattice shift).  In Cartesian coordinates that is
x'_cart = R_cart x_cart + A (t + L) with R_cart = A R A^-1, and
U'_cart = R_cart U_cart R_cart^T.  Gradients on a mate map back to its atom
through R_cart^T (sites) and T(R_cart)^T (the six U_cart parameters).
"""

import numpy as np

from .errors import RestraintError

# The six independent U components in the order 11, 22, 33, 12, 13, 23.
U_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def u_transform(m):
    """The 6x6 matrix T(M) with u' = T(M) u for U' = M U M^T.

    Parameters
    ----------
    m : array_like, float64 (..., 3, 3)

    Returns
    -------
    ndarray, float64 (..., 6, 6)
        u and u' are the six parameters 11, 22, 33, 12, 13, 23; an
        off-diagonal parameter stands for both U_ij and U_ji, so the
        column of U_cd (c != d) holds M_ac M_bd + M_ad M_bc.  Derivatives
        therefore transform with T^T: dE/du = T^T dE/du'.
    """
    m = np.asarray(m, dtype=np.float64)
    t = np.empty(m.shape[:-2] + (6, 6))
    for i, (a, b) in enumerate(U_PAIRS):
        for j, (c, d) in enumerate(U_PAIRS):
            if c == d:
                t[..., i, j] = m[..., a, c] * m[..., b, c]
            else:
                t[..., i, j] = m[..., a, c] * m[..., b, d] + m[..., a, d] * m[..., b, c]
    return t


class Symmetry:
    """A unit cell's orthogonalisation and a list of space-group operations.

    Parameters
    ----------
    orthogonalisation : array_like, float64 (3, 3)
        A with x_cart = A x_frac.
    rotations : array_like, int32 (k, 3, 3)
    translations : array_like, float64 (k, 3)
        Fractional translations.

    Attributes
    ----------
    rot_cart : float64 (k, 3, 3), R_cart = A R A^-1.
    u_rot : float64 (k, 6, 6), T(R_cart) acting on U_cart parameters.
    """

    def __init__(self, orthogonalisation, rotations, translations):
        a = np.ascontiguousarray(orthogonalisation, dtype=np.float64)
        if a.shape != (3, 3) or not np.all(np.isfinite(a)) or np.linalg.det(a) <= 0:
            raise RestraintError("Symmetry: the orthogonalisation matrix must be a "
                                 "finite 3x3 matrix with a positive determinant")
        r = np.asarray(rotations)
        t = np.asarray(translations, dtype=np.float64)
        if r.ndim != 3 or r.shape[1:] != (3, 3) or t.shape != (r.shape[0], 3):
            raise RestraintError("Symmetry: rotations must be (k, 3, 3) and "
                                 "translations (k, 3); got "
                                 f"{r.shape} and {t.shape}")
        if not np.array_equal(r, np.round(r)) or np.any(np.abs(np.round(np.linalg.det(r))) != 1):
            raise RestraintError("Symmetry: rotations must be integer matrices with "
                                 "determinant +1 or -1")
        self.orthogonalisation = a
        self.fractionalisation = np.linalg.inv(a)
        self.rotations = np.ascontiguousarray(r, dtype=np.int32)
        self.translations = np.ascontiguousarray(t)
        self.rot_cart = np.ascontiguousarray(a @ self.rotations @ self.fractionalisation)
        self.u_rot = np.ascontiguousarray(u_transform(self.rot_cart))

    @classmethod
    def from_sgtbx(cls, unit_cell, space_group):
        """From an ``sgtbx.UnitCell`` and an ``sgtbx.SpaceGroup``."""
        return cls(unit_cell.orthogonalisation, space_group.rotations,
                   space_group.translations)

    @property
    def n_operations(self):
        return self.rotations.shape[0]

    def translations_cart(self, ops, shifts):
        """A (t_op + L) for each (op, L); an op of -1 means no operation.

        Parameters
        ----------
        ops : int (N,)
        shifts : int (N, 3)

        Returns
        -------
        float64 (N, 3)
        """
        t = np.where((ops >= 0)[:, None], self.translations[np.maximum(ops, 0)], 0.0)
        return (t + shifts) @ self.orthogonalisation.T

    def inverse_operations(self):
        """For each operation k, the index m of its inverse (R_m = R_k^-1 and
        t_m = -R_k^-1 t_k modulo lattice translations), or -1 if absent."""
        k = self.n_operations
        inverse = np.full(k, -1, dtype=np.int64)
        for i in range(k):
            r_inv = np.round(np.linalg.inv(self.rotations[i])).astype(np.int32)
            t_inv = -r_inv @ self.translations[i]
            for j in range(k):
                dt = self.translations[j] - t_inv
                if (np.array_equal(self.rotations[j], r_inv)
                        and np.allclose(dt, np.round(dt), atol=1e-9)):
                    inverse[i] = j
                    break
        return inverse
