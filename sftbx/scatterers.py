"""Scatterers as a table of arrays, and the parameter map of design rows."""

import warnings

import numpy as np

from .errors import NonPositiveDefiniteWarning, ScatteringError
from .scattering import cromer_liberman

# Per-atom parameter slots of a ParameterMap, in the order of its columns array.
SLOTS = ("x", "y", "z", "u_iso", "u11", "u22", "u33", "u12", "u13", "u23",
         "occupancy", "fp", "fdp")
SLOT_INDEX = {name: i for i, name in enumerate(SLOTS)}


def not_positive_definite(u):
    """Which symmetric 3x3 matrices are not positive definite.

    Parameters
    ----------
    u : float64 (n, 6)
        U*, U_cif or U_cart in the order 11, 22, 33, 12, 13, 23 (one is
        positive definite exactly when the others are: they differ by a
        congruence with a non-singular matrix).

    Returns
    -------
    bool (n,)
        True where a leading principal minor is <= 0 (an eigenvalue <= 0);
        False for rows that are not finite.
    """
    u = np.asarray(u, dtype=np.float64).reshape(-1, 6)
    m1 = u[:, 0]
    m2 = u[:, 0] * u[:, 1] - u[:, 3] ** 2
    m3 = (u[:, 0] * (u[:, 1] * u[:, 2] - u[:, 5] ** 2)
          - u[:, 3] * (u[:, 3] * u[:, 2] - u[:, 5] * u[:, 4])
          + u[:, 4] * (u[:, 3] * u[:, 5] - u[:, 1] * u[:, 4]))
    finite = np.isfinite(u).all(axis=1)
    return finite & ~((m1 > 0) & (m2 > 0) & (m3 > 0))


class Scatterers:
    """Atoms of a structure as arrays (struct of arrays).

    Parameters
    ----------
    elements : sequence of str (n,)
        Scattering types, e.g. "C", "Fe3+", "O2-".
    sites_frac : float64 (n, 3)
    occupancies : float64 (n,)
        Chemical occupancies (a full atom on a special position has 1).
    u_iso : float64 (n,)
        Isotropic U (Angstrom^2), used where ``aniso`` is False.
    u_star : float64 (n, 6), optional
        U* in the order 11, 22, 33, 12, 13, 23, used where ``aniso`` is True.
    aniso : bool (n,), optional
        Which atoms are anisotropic; default: none, or all when ``u_star`` is
        given without it.
    fp, fdp : float64 (n,), optional
        f' and f'' (default 0).
    labels : sequence of str (n,), optional
        Atom names used in messages (default "atom 0", "atom 1", ...).

    Raises
    ------
    ScatteringError
        Arrays of mismatched length, or NaN or inf in any value used (naming
        the atom).

    Warns
    -----
    NonPositiveDefiniteWarning
        One per atom whose ADP is not positive definite (a negative u_iso,
        or a U* with an eigenvalue <= 0), naming it.  Its structure factors
        are computed as for any other atom: the Debye-Waller factor is
        defined, it only exceeds 1 for some reflections.  SHELXL does the
        same (it flags such atoms NPD and refines on).  Filter the warning
        (``warnings.simplefilter("ignore", NonPositiveDefiniteWarning)``)
        where the caller reports these atoms itself.
    """

    def __init__(self, elements, sites_frac, occupancies, u_iso, u_star=None, aniso=None,
                 fp=None, fdp=None, labels=None):
        self.elements = [str(e) for e in elements]
        n = len(self.elements)
        self.labels = [f"atom {i}" for i in range(n)] if labels is None else [str(x) for x in labels]
        self.sites_frac = self._array("sites_frac", sites_frac, (n, 3))
        self.occupancies = self._array("occupancies", occupancies, (n,))
        self.u_iso = self._array("u_iso", u_iso, (n,))
        self.u_star = self._array("u_star", np.zeros((n, 6)) if u_star is None else u_star, (n, 6))
        if aniso is None:
            aniso = np.zeros(n, bool) if u_star is None else np.ones(n, bool)
        aniso_arr = np.asarray(aniso)
        if aniso_arr.shape != (n,):
            raise ScatteringError(f"aniso: expected {n} flags (one per atom), got shape "
                                  f"{aniso_arr.shape}")
        self.aniso = aniso_arr.astype(bool)
        self.fp = self._array("fp", np.zeros(n) if fp is None else fp, (n,))
        self.fdp = self._array("fdp", np.zeros(n) if fdp is None else fdp, (n,))
        if len(self.labels) != n:
            raise ScatteringError(f"labels: expected {n} (one per atom), got {len(self.labels)}")
        self.validate()

    def __len__(self):
        return len(self.elements)

    @staticmethod
    def _array(name, values, shape):
        try:
            arr = np.array(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ScatteringError(f"{name}: expected numbers of shape {shape}: {exc}") from None
        if arr.shape != shape:
            raise ScatteringError(f"{name}: expected shape {shape} (one row per atom), got "
                                  f"{arr.shape}")
        return arr

    def _fail(self, i, what):
        raise ScatteringError(f"atom {self.labels[i]!r} ({self.elements[i]}): {what}")

    def validate(self):
        """Check the values (call again after changing the arrays in place):
        raise for values that are not finite, warn for ADPs that are not
        positive definite."""
        for name, arr in (("site", self.sites_frac), ("occupancy", self.occupancies),
                          ("f'", self.fp), ("f''", self.fdp)):
            bad = ~np.isfinite(arr.reshape(len(self), -1)).all(axis=1)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                self._fail(i, f"{name} is not finite: {arr[i]}")
        bad = ~self.aniso & ~np.isfinite(self.u_iso)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            self._fail(i, f"u_iso is not finite: {self.u_iso[i]}")
        bad = self.aniso & ~np.isfinite(self.u_star).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            self._fail(i, f"u_star is not finite: {self.u_star[i]}")
        for i in np.flatnonzero(self.non_positive_definite()):
            what = (f"u_star (11,22,33,12,13,23) = {self.u_star[i]} is not positive definite"
                    if self.aniso[i] else f"u_iso = {self.u_iso[i]} is negative")
            warnings.warn(NonPositiveDefiniteWarning(
                f"atom {self.labels[i]!r} ({self.elements[i]}): {what} (NPD); its "
                f"Debye-Waller factor exceeds 1 for some reflections", self.labels[i], int(i)),
                stacklevel=3)

    def non_positive_definite(self):
        """bool (n,): the atoms whose ADP is not positive definite (NPD): a
        negative u_iso, or a U* with an eigenvalue <= 0
        (:func:`not_positive_definite`).  Atoms with values that are not
        finite are not flagged."""
        with np.errstate(invalid="ignore"):
            return np.where(self.aniso, not_positive_definite(self.u_star), self.u_iso < 0)

    def types(self):
        """The distinct scattering types and the index of each atom's type.

        Returns
        -------
        types : list of str
        type_index : int32 (n,)
        """
        types = sorted(set(self.elements))
        index = {t: i for i, t in enumerate(types)}
        return types, np.array([index[e] for e in self.elements], dtype=np.int32)

    def set_anomalous_from_wavelength(self, wavelength):
        """Set f' and f'' from gemmi's Cromer-Liberman values at ``wavelength``
        (Angstrom)."""
        self.fp, self.fdp = cromer_liberman(self.elements, wavelength)


class ParameterMap:
    """Which parameters of which atom have a column in the design rows.

    Parameters
    ----------
    columns : int (n_atoms, 13)
        Column of each atom's x, y, z, u_iso, U*11, U*22, U*33, U*12, U*13,
        U*23, occupancy, f', f'' (the order of ``SLOTS``), -1 where the
        parameter has no column.  Columns may repeat: their derivatives add.
        Copied and kept read-only.
    n_params : int
        Number of columns of a row.
    extinction_column : int
        Column of the extinction parameter x (-1: none).
    """

    def __init__(self, columns, n_params, extinction_column=-1):
        self.columns = np.array(columns, dtype=np.int32, order="C")
        self.columns.flags.writeable = False   # read-only: is_one_to_one is cached
        self._one_to_one = {}
        self.n_params = int(n_params)
        self.extinction_column = int(extinction_column)
        if self.columns.ndim != 2 or self.columns.shape[1] != len(SLOTS):
            raise ScatteringError(f"parameter map: expected columns of shape (n_atoms, "
                                  f"{len(SLOTS)}), got {self.columns.shape}")
        top = max(int(self.columns.max(initial=-1)), self.extinction_column)
        if top >= self.n_params or self.columns.min(initial=-1) < -1:
            raise ScatteringError(f"parameter map: columns must lie in -1..{self.n_params - 1}")

    @classmethod
    def for_scatterers(cls, scatterers, sites=True, adp=True, occupancy=False, fp=False,
                       fdp=False, extinction=False):
        """Contiguous columns atom after atom: x, y, z (``sites``), then u_iso
        or the six U* (``adp``), occupancy, f', f'' when asked; the extinction
        parameter last."""
        columns = np.full((len(scatterers), len(SLOTS)), -1, dtype=np.int32)
        k = 0
        for i, aniso in enumerate(scatterers.aniso):
            wanted = []
            if sites:
                wanted += ["x", "y", "z"]
            if adp:
                wanted += ["u11", "u22", "u33", "u12", "u13", "u23"] if aniso else ["u_iso"]
            if occupancy:
                wanted.append("occupancy")
            if fp:
                wanted.append("fp")
            if fdp:
                wanted.append("fdp")
            for name in wanted:
                columns[i, SLOT_INDEX[name]] = k
                k += 1
        ext = -1
        if extinction:
            ext, k = k, k + 1
        return cls(columns, k, ext)

    def is_one_to_one(self, aniso, with_extinction):
        """Whether every column holds exactly one derivative: the slots that
        apply (U* of anisotropic atoms, u_iso of isotropic ones, the others)
        and the extinction column (when ``with_extinction``) cover
        0..n_params-1 once each.  Design rows are then written without
        zeroing them first."""
        aniso = np.asarray(aniso, dtype=bool)
        key = (aniso.tobytes(), bool(with_extinction))
        if key not in self._one_to_one:
            self._one_to_one[key] = self._check_one_to_one(aniso, with_extinction)
        return self._one_to_one[key]

    def _check_one_to_one(self, aniso, with_extinction):
        cols = self.columns.copy()
        cols[aniso, SLOT_INDEX["u_iso"]] = -1
        cols[~aniso, SLOT_INDEX["u11"]:SLOT_INDEX["u23"] + 1] = -1
        used = cols[cols >= 0]
        if with_extinction and self.extinction_column >= 0:
            used = np.append(used, self.extinction_column)
        return len(used) == self.n_params and np.array_equal(np.sort(used),
                                                             np.arange(self.n_params))

    def names(self, labels):
        """Names of the columns, "label.slot" (or "extinction")."""
        names = [""] * self.n_params
        for i, label in enumerate(labels):
            for s, col in enumerate(self.columns[i]):
                if col >= 0:
                    names[col] = names[col] + ("+" if names[col] else "") + f"{label}.{SLOTS[s]}"
        if self.extinction_column >= 0:
            names[self.extinction_column] = "extinction"
        return names
