"""Structure factors by direct summation, their derivatives, and SHELXL's
extinction correction.  See DESIGN.md section 4 and the notes at the top of
_direct.pyx for the formulae."""

from dataclasses import dataclass

import numpy as np
from sgtbx import SiteSymmetryTable

from . import _direct
from .errors import ScatteringError
from .scatterers import ParameterMap, Scatterers
from .scattering import form_factor_table

KINDS = {"fc_sq": _direct.KIND_FC_SQ, "fc": _direct.KIND_FC}


@dataclass(frozen=True)
class ShelxExtinction:
    """SHELXL's EXTI correction: Fc'^2 = Fc^2 (1 + 0.001 x Fc^2 lambda^3 /
    sin 2 theta)^(-1/2), Fc on the absolute scale.

    Attributes
    ----------
    x : float
        The extinction parameter.
    wavelength : float
        Angstrom.
    """

    x: float
    wavelength: float

    def eps(self, s_sq):
        """0.001 lambda^3 / sin(2 theta) for reflections with s^2 = 1/d^2 (m,)."""
        lam = float(self.wavelength)
        if not np.isfinite(lam) or lam <= 0:
            raise ScatteringError(f"extinction: wavelength must be a positive number of "
                                  f"Angstrom, got {self.wavelength!r}")
        if not np.isfinite(self.x):
            raise ScatteringError(f"extinction: x must be finite, got {self.x!r}")
        sin_theta = 0.5 * lam * np.sqrt(s_sq)
        bad = (sin_theta <= 0) | (sin_theta >= 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ScatteringError(f"extinction: reflection {i} has sin(theta) = {sin_theta[i]:.4g} "
                                  f"at wavelength {lam}; (0,0,0) and reflections beyond the "
                                  f"limiting sphere have no sin(2 theta)")
        sin_2theta = 2 * sin_theta * np.sqrt(1 - sin_theta**2)
        return 1e-3 * lam**3 / sin_2theta


def extinction_correction(fc_sq, eps, x):
    """SHELXL's EXTI applied to Fc^2: y = Fc^2 (1 + x eps Fc^2)^(-1/2).

    For twins pass the twin-weighted sum of the components' Fc^2 (SHELXL
    manual, EXTI); the derivatives then chain into each component.

    Parameters
    ----------
    fc_sq : float64 (m,)
        Fc^2 on the absolute scale.
    eps : float64 (m,)
        From ``ShelxExtinction.eps``.
    x : float

    Returns
    -------
    y, dy_dfc_sq, dy_dx : float64 (m,)
    """
    fc_sq = np.asarray(fc_sq, dtype=np.float64)
    eps = np.asarray(eps, dtype=np.float64)
    q = 1 + x * eps * fc_sq
    if not (q > 0).all():
        raise ScatteringError(f"extinction: 1 + x eps Fc^2 must stay positive (x = {x})")
    return (fc_sq / np.sqrt(q), q**-1.5 * (1 + 0.5 * x * eps * fc_sq),
            -0.5 * eps * fc_sq**2 * q**-1.5)


def y_calc(f_calc, kind="fc_sq", extinction_eps=None, extinction_x=0.0):
    """Y = |F|^2 or |F| (extinction-corrected when ``extinction_eps`` is given)
    and its partial derivatives, for composing a target in gradient mode.

    Parameters
    ----------
    f_calc : complex128 (m,)
    kind : {"fc_sq", "fc"}
    extinction_eps : float64 (m,), optional
        From ``ShelxExtinction.eps``.
    extinction_x : float

    Returns
    -------
    y, dy_da, dy_db, dy_dx : float64 (m,)
        dy_dx is zero without extinction; derivatives of |F| at F = 0 are 0.
    """
    if kind not in KINDS:
        raise ScatteringError(f"kind {kind!r}: expected 'fc_sq' or 'fc'")
    a, b = f_calc.real, f_calc.imag
    i_sq = a * a + b * b
    if extinction_eps is None:
        y, d_i, d_x = i_sq, np.ones_like(i_sq), np.zeros_like(i_sq)
    else:
        y, d_i, d_x = extinction_correction(i_sq, extinction_eps, extinction_x)
    if kind == "fc":
        y = np.sqrt(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            half = np.where(y > 0, 0.5 / y, 0.0)
        d_i, d_x = d_i * half, d_x * half
    return y, 2 * a * d_i, 2 * b * d_i, d_x


def _space_group_arrays(space_group):
    """The arrays the kernels take, from an sgtbx.SpaceGroup (or any object
    with the same attributes)."""
    t_inv = space_group.inversion_translation
    return dict(
        rotations=np.ascontiguousarray(space_group.primitive_rotations, dtype=np.int32),
        translations=np.ascontiguousarray(space_group.primitive_translations, dtype=np.float64),
        centring=np.ascontiguousarray(space_group.centring_vectors, dtype=np.float64),
        centric=bool(space_group.is_centric),
        t_inv=None if t_inv is None else np.asarray(t_inv, dtype=np.float64),
    )


def _site_multiplicities(unit_cell, space_group, sites_frac):
    return SiteSymmetryTable(unit_cell, space_group, sites_frac).multiplicities.astype(np.float64)


def _hkl_array(hkl, error=ScatteringError):
    """Miller indices as C-contiguous int32 (m, 3); bad input raises ``error``."""
    arr = np.asarray(hkl)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise error(f"hkl: expected an integer array of shape (m, 3), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise error("hkl: Miller indices must be integers")
    if arr.size and np.abs(arr).max() > 2**20:
        raise error("hkl: Miller index beyond 2^20")
    return np.ascontiguousarray(arr, dtype=np.int32)


class StructureFactors:
    """Structure factors of one structure for a set of reflections, with their
    derivatives.

    Parameters
    ----------
    unit_cell : sgtbx.UnitCell
        (uses ``reciprocal_metric``)
    space_group : sgtbx.SpaceGroup
        (uses the primitive operations, centring vectors, ``is_centric``,
        ``inversion_translation`` and ``order_z``)
    scatterers : Scatterers
    hkl : int (m, 3)
    table : {"it92", "neutron", "electron"}
    multiplicities : float64 (n,), optional
        Site multiplicities; by default from ``sgtbx.SiteSymmetryTable``
        (its default tolerance: images closer than 0.5 Angstrom make a site
        special).
    n_threads : int

    Notes
    -----
    Atoms are weighted by occupancy * multiplicity / order_z (DESIGN.md 2).
    F(0,0,0) is defined and returned: the sum over the cell of occupancy
    times (f0(0) + f' + i f''), e.g. the number of electrons for X-rays without
    dispersion.  Its extinction correction is undefined (sin 2 theta = 0) and
    raises ScatteringError.
    """

    def __init__(self, unit_cell, space_group, scatterers, hkl, table="it92",
                 multiplicities=None, n_threads=1):
        if not isinstance(scatterers, Scatterers):
            raise ScatteringError("scatterers: expected an sftbx.Scatterers table")
        self.unit_cell = unit_cell
        self.space_group = space_group
        self.scatterers = scatterers
        self.hkl = _hkl_array(hkl)
        self.table = table
        self.n_threads = int(n_threads)
        if self.n_threads < 1:
            raise ScatteringError(f"n_threads must be >= 1, got {n_threads}")
        if len(scatterers) == 0:
            raise ScatteringError("scatterers: the structure has no atoms")
        self.gstar = np.ascontiguousarray(unit_cell.reciprocal_metric, dtype=np.float64)
        self.symmetry = _space_group_arrays(space_group)
        if multiplicities is None:
            multiplicities = _site_multiplicities(unit_cell, space_group, scatterers.sites_frac)
        mult = np.asarray(multiplicities, dtype=np.float64)
        if mult.shape != (len(scatterers),) or not (mult >= 1).all():
            raise ScatteringError(f"multiplicities: expected {len(scatterers)} values >= 1, got "
                                  f"{mult}")
        self.site_weights = mult / float(space_group.order_z)
        types, self.type_index = scatterers.types()
        self.ff_a, self.ff_b, self.ff_c = form_factor_table(types, table)

    def _call(self, kernel, *args, hkl=None, **kwargs):
        """Run a compiled kernel on the current scatterer values; the kernel
        checks them, and a bad atom is reported by Scatterers.validate()."""
        try:
            return kernel(*self._args(hkl), *args, **kwargs)
        except _direct.BadAtom as exc:
            self.scatterers.validate()
            i = exc.args[0]
            raise ScatteringError(f"atom {self.scatterers.labels[i]!r}: values the structure "
                                  f"factors cannot use") from None

    def _args(self, hkl=None):
        sc = self.scatterers
        s = self.symmetry
        return (self.hkl if hkl is None else hkl, s["rotations"], s["translations"],
                s["centring"], s["centric"], s["t_inv"], self.gstar, self.type_index, self.ff_a,
                self.ff_b, self.ff_c, sc.sites_frac, sc.u_iso, sc.u_star, sc.aniso,
                sc.occupancies, self.site_weights, sc.fp, sc.fdp)

    def s_sq(self):
        """1/d^2 of each reflection, float64 (m,)."""
        h = self.hkl.astype(np.float64)
        return np.einsum("mi,ij,mj->m", h, self.gstar, h)

    def f_calc(self):
        """F(h), complex128 (m,)."""
        return self._call(_direct.f_calc, n_threads=self.n_threads)

    def f_calc_friedel(self):
        """F(-h), complex128 (m,): the Friedel mates (different from conj F(h)
        only through f'')."""
        return self._call(_direct.f_calc, hkl=np.ascontiguousarray(-self.hkl),
                          n_threads=self.n_threads)

    def amplitudes(self):
        """|F(h)|, float64 (m,)."""
        return np.abs(self.f_calc())

    def intensities(self):
        """|F(h)|^2, float64 (m,)."""
        f = self.f_calc()
        return f.real**2 + f.imag**2

    def phases(self, deg=True):
        """Phases of F(h), in degrees (or radians), float64 (m,)."""
        return np.angle(self.f_calc(), deg=deg)

    def anomalous_differences(self):
        """|F(h)| - |F(-h)|, float64 (m,)."""
        return np.abs(self.f_calc()) - np.abs(self.f_calc_friedel())

    def default_parameter_map(self):
        """Sites, ADPs (u_iso or the six U*) and occupancies of every atom,
        atom after atom."""
        return ParameterMap.for_scatterers(self.scatterers, occupancy=True)

    def design_rows(self, parameter_map=None, start=0, stop=None, kind="fc_sq", extinction=None,
                    rows=None, y=None):
        """Design-matrix rows dY/dp for the reflections start:stop.

        Parameters
        ----------
        parameter_map : ParameterMap, optional
            Default: ``default_parameter_map()``.
        start, stop : int
            The block of reflections (``stop`` None: to the end).
        kind : {"fc_sq", "fc"}
            Y = |F|^2 or |F|.
        extinction : ShelxExtinction, optional
            Apply SHELXL's correction to Y; its x gets a column when the map
            has an extinction column.
        rows : float64 (stop - start, n_params), optional
            Written in place when given (C-contiguous).
        y : float64 (stop - start,), optional
            Written in place when given.

        Returns
        -------
        y : float64 (stop - start,)
        rows : float64 (stop - start, n_params)
        """
        if parameter_map is None:
            parameter_map = self.default_parameter_map()
        if not isinstance(parameter_map, ParameterMap):
            raise ScatteringError("parameter_map: expected an sftbx.ParameterMap")
        if kind not in KINDS:
            raise ScatteringError(f"kind {kind!r}: expected 'fc_sq' or 'fc'")
        if parameter_map.columns.shape[0] != len(self.scatterers):
            raise ScatteringError(f"parameter map has {parameter_map.columns.shape[0]} atoms, "
                                  f"the structure {len(self.scatterers)}")
        m = len(self.hkl)
        stop = m if stop is None else stop
        if not 0 <= start <= stop <= m:
            raise ScatteringError(f"reflection block {start}:{stop} is not within 0:{m}")
        n = stop - start
        if rows is None:
            rows = np.empty((n, parameter_map.n_params))
        if y is None:
            y = np.empty(n)
        if rows.shape != (n, parameter_map.n_params) or rows.dtype != np.float64 \
                or not rows.flags.c_contiguous:
            raise ScatteringError(f"rows: expected a C-contiguous float64 array of shape "
                                  f"{(n, parameter_map.n_params)}")
        if y.shape != (n,) or y.dtype != np.float64:
            raise ScatteringError(f"y: expected a float64 array of shape ({n},)")
        hkl = self.hkl[start:stop]
        eps, x = None, 0.0
        if extinction is not None:
            eps = extinction.eps(self.s_sq()[start:stop])
            x = float(extinction.x)
        elif parameter_map.extinction_column >= 0:
            raise ScatteringError("the parameter map has an extinction column but no "
                                  "extinction was given")
        try:
            self._call(_direct.design_rows, parameter_map.columns, KINDS[kind], rows, y,
                       hkl=hkl, extinction_eps=eps, extinction_x=x,
                       extinction_column=parameter_map.extinction_column,
                       assign=parameter_map.is_one_to_one(self.scatterers.aniso,
                                                          extinction is not None),
                       n_threads=self.n_threads)
        except ValueError as exc:
            if isinstance(exc, ScatteringError) or not str(exc).startswith("extinction"):
                raise
            raise ScatteringError(str(exc)) from None
        return y, rows

    def gradients(self, dT_dA, dT_dB, parameter_map=None):
        """Gradient of a target T(A, B), F = A + iB, summed over reflections.

        Parameters
        ----------
        dT_dA, dT_dB : float64 (m,)
        parameter_map : ParameterMap, optional
            Default: ``default_parameter_map()``.  Its extinction column, if
            any, is left zero (T's dependence on x
            is the caller's; see ``y_calc``).

        Returns
        -------
        float64 (n_params,)
        """
        if parameter_map is None:
            parameter_map = self.default_parameter_map()
        if not isinstance(parameter_map, ParameterMap):
            raise ScatteringError("parameter_map: expected an sftbx.ParameterMap")
        if parameter_map.columns.shape[0] != len(self.scatterers):
            raise ScatteringError(f"parameter map has {parameter_map.columns.shape[0]} atoms, "
                                  f"the structure {len(self.scatterers)}")
        da = np.asarray(dT_dA, dtype=np.float64)
        db = np.asarray(dT_dB, dtype=np.float64)
        if da.shape != (len(self.hkl),) or db.shape != (len(self.hkl),):
            raise ScatteringError(f"dT_dA, dT_dB: expected shape ({len(self.hkl)},), got "
                                  f"{da.shape} and {db.shape}")
        if not (np.isfinite(da).all() and np.isfinite(db).all()):
            raise ScatteringError("dT_dA, dT_dB: values must be finite")
        return self._call(_direct.gradients, parameter_map.columns, da, db,
                          parameter_map.n_params, n_threads=self.n_threads)


def structure_factors(unit_cell, space_group, scatterers, hkl, table="it92", n_threads=1,
                      multiplicities=None):
    """F(h) by direct summation, complex128 (m,); see StructureFactors."""
    return StructureFactors(unit_cell, space_group, scatterers, hkl, table=table,
                            multiplicities=multiplicities, n_threads=n_threads).f_calc()
