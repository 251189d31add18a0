"""F_model: the scaled model structure factors against the observed data.

:class:`FModel` takes arrays (F_obs, free flags, F_calc, F_mask and, for a
twin, the same at the twin mates) and fits the scales; R factors, targets
with gradients with respect to F_calc, α/β, figures of merit and map
coefficients follow from it.  :func:`fmodel_from_files` reads a model and
data and computes F_calc and F_mask through :mod:`mmtbx.sources`.
"""

import re

import numpy as np

from .errors import DataError, ScalingError
from .scaling import bulk_solvent_and_scale
from .statistics import r_factor, r_factor_shells
from .targets import (estimate_alpha_beta, figure_of_merit, least_squares_target, ml_target,
                      outlier_probabilities)

#: Read (1999) outlier test: reflections whose tail probability is below this are rejected.
OUTLIER_PROBABILITY = 1e-6


def parse_twin_law(text):
    """A twin law such as "h,-k,-l" or "-h,-k,h+l" → int32 (3, 3) M with
    h' = M h for column indices."""
    parts = [p.strip().lower().replace(" ", "") for p in str(text).split(",")]
    if len(parts) != 3:
        raise DataError(f"twin law {text!r}: expected three comma-separated terms in h, k, l")
    matrix = np.zeros((3, 3), dtype=np.int32)
    for row, part in enumerate(parts):
        if not part or not re.fullmatch(r"([+-]?\d*[hkl])+", part):
            raise DataError(f"twin law {text!r}: cannot read term {part!r}")
        for sign, digits, axis in re.findall(r"([+-]?)(\d*)([hkl])", part):
            value = int(digits) if digits else 1
            matrix[row, "hkl".index(axis)] += -value if sign == "-" else value
    if round(abs(np.linalg.det(matrix))) != 1:
        raise DataError(f"twin law {text!r} is not a unimodular operation")
    return matrix


def check_twin_law(matrix, unit_cell, space_group, text="twin law"):
    """Raise DataError unless the twin law keeps every d-spacing (merohedral
    twinning) and is not already an operation of the point group."""
    g_star = unit_cell.reciprocal_metric
    if not np.allclose(matrix.T @ g_star @ matrix, g_star, rtol=1e-3, atol=1e-6):
        raise DataError(f"{text} does not preserve the lattice metric of the cell "
                        f"{unit_cell.parameters}")
    for rot in space_group.rotations:
        if np.array_equal(rot.T, matrix) or np.array_equal(-rot.T, matrix):
            raise DataError(f"{text} is a symmetry operation of {space_group.xhm}, not a twin law")


class FModel:
    """F_model = k_total (F_calc + k_mask F_mask) against F_obs.

    Parameters
    ----------
    hkl : int32 (m, 3)
    f_obs, sigma_f_obs : float64 (m,)
    free : bool (m,)  True for the free set
    unit_cell : sgtbx.UnitCell; space_group : sgtbx.SpaceGroup
    f_calc, f_mask : complex128 (m,)
    twin_law : int (3, 3), optional  M with twin mate hT = M h
    f_calc_twin, f_mask_twin : complex128 (m,), optional  at the twin mates
    twin_fraction : float, optional  fixed; refined when None
    bulk_solvent : {"bins", "flat"}
    remove_outliers : bool  Read (1999) outlier rejection

    After :meth:`update_all_scales`, ``active`` (bool (m,)) marks the
    reflections that were not rejected; R factors and targets use them.
    """

    def __init__(self, hkl, f_obs, sigma_f_obs, free, unit_cell, space_group, f_calc, f_mask,
                 twin_law=None, f_calc_twin=None, f_mask_twin=None, twin_fraction=None,
                 bulk_solvent="bins", remove_outliers=True):
        self.hkl = np.ascontiguousarray(hkl, dtype=np.int32)
        m = len(self.hkl)
        self.f_obs = np.ascontiguousarray(f_obs, dtype=np.float64)
        self.sigma_f_obs = np.ascontiguousarray(sigma_f_obs, dtype=np.float64)
        self.free = np.ascontiguousarray(free, dtype=bool)
        self.f_calc = np.ascontiguousarray(f_calc, dtype=np.complex128)
        self.f_mask = np.ascontiguousarray(f_mask, dtype=np.complex128)
        for name in ("f_obs", "sigma_f_obs", "free", "f_calc", "f_mask"):
            if getattr(self, name).shape != (m,):
                raise ScalingError(f"{name} must have shape ({m},), got {getattr(self, name).shape}")
        if np.any(~np.isfinite(self.f_obs)) or np.any(self.f_obs < 0):
            raise ScalingError("f_obs must be finite and non-negative")
        self.unit_cell = unit_cell
        self.space_group = space_group
        self.twin_law = None if twin_law is None else np.asarray(twin_law, dtype=np.int32)
        if (self.twin_law is None) != (f_calc_twin is None) or (f_calc_twin is None) != (f_mask_twin is None):
            raise ScalingError("a twin law needs f_calc_twin and f_mask_twin, and they need a twin law")
        self.f_calc_twin = None if f_calc_twin is None else np.asarray(f_calc_twin, np.complex128)
        self.f_mask_twin = None if f_mask_twin is None else np.asarray(f_mask_twin, np.complex128)
        for name in ("f_calc_twin", "f_mask_twin"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (m,):
                raise ScalingError(f"{name} must have shape ({m},), got {arr.shape}")
        if self.twin_law is not None and self.twin_law.shape != (3, 3):
            raise ScalingError(f"twin_law must be a (3, 3) integer matrix, got shape {self.twin_law.shape}")
        self.fixed_twin_fraction = twin_fraction
        self.bulk_solvent = bulk_solvent
        self.remove_outliers = remove_outliers
        self.d_spacings = unit_cell.d_spacings(self.hkl)
        self._s_sq = 1.0 / self.d_spacings ** 2
        self.eps = space_group.epsilons(self.hkl).astype(np.float64)
        self.centric = space_group.centric_flags(self.hkl)
        self.active = np.ones(m, dtype=bool)
        self.scales = None
        self._alpha_beta = None

    # -- scaling ----------------------------------------------------------------------

    @property
    def work(self):
        return self.active & ~self.free

    @property
    def free_active(self):
        return self.active & self.free

    def _rotations_hkl(self):
        rots = [r.T for r in self.space_group.rotations]
        if self.twin_law is not None:
            rots += [self.twin_law @ r for r in rots]
        return np.array(rots)

    def _fit(self, selection):
        twin = self.twin_law is not None
        return bulk_solvent_and_scale(
            self.f_obs[selection], self.f_calc[selection], self.f_mask[selection],
            self.hkl[selection], self.unit_cell, ~self.free[selection],
            self._rotations_hkl(),
            f_calc_twin=self.f_calc_twin[selection] if twin else None,
            f_mask_twin=self.f_mask_twin[selection] if twin else None,
            twin_fraction=self.fixed_twin_fraction, mode=self.bulk_solvent)

    def update_all_scales(self):
        """Fit the scales; with outlier rejection, fit, reject (Read 1999),
        and fit again on the remaining reflections."""
        self.active = np.ones(len(self.f_obs), dtype=bool)
        self._set_scales(self._fit(self.active))
        if self.remove_outliers:
            ab = self.alpha_beta()
            p = outlier_probabilities(self.f_obs, self._f_model_for_ml(), ab.alpha, ab.beta,
                                      self.eps, self.centric)
            self.active = p >= OUTLIER_PROBABILITY
            self._set_scales(self._fit(self.active))
        return self

    def _set_scales(self, scales):
        """Keep the scales fitted on the active set; they are functions of
        s² and h, so they cover the rejected reflections too."""
        self.scales = scales
        self._alpha_beta = None

    def _require_scales(self):
        if self.scales is None:
            raise ScalingError("call update_all_scales() first")

    @property
    def k_total(self):
        """k_iso(s) · exp(ln k - 2π² h U* hᵀ), float64 (m,)."""
        self._require_scales()
        return self.scales.k_total(self.hkl, self._s_sq)

    @property
    def f_model(self):
        """k_total (F_calc + k_mask F_mask), complex128 (m,) (the untwinned model)."""
        return self.k_total * (self.f_calc + self.k_mask * self.f_mask)

    @property
    def k_mask(self):
        """k_mask of each reflection, float64 (m,)."""
        self._require_scales()
        return self.scales.k_mask(self._s_sq)

    @property
    def f_model_abs(self):
        """|F_model|, for twinned data k_total √((1-τ)|F(h)|² + τ|F(hT)|²)."""
        if self.twin_law is None:
            return np.abs(self.f_model)
        k = self.k_mask
        tau = self.scales.twin_fraction
        i1 = np.abs(self.f_calc + k * self.f_mask) ** 2
        i2 = np.abs(self.f_calc_twin + k * self.f_mask_twin) ** 2
        return self.k_total * np.sqrt((1 - tau) * i1 + tau * i2)

    def _f_model_for_ml(self):
        """F_model with the twinned amplitude and the untwinned phase."""
        fm = self.f_model
        if self.twin_law is None:
            return fm
        return self.f_model_abs * np.exp(1j * np.angle(fm))

    # -- figures ------------------------------------------------------------------------

    @property
    def r_work(self):
        return r_factor(self.f_obs, self.f_model_abs, self.work)

    @property
    def r_free(self):
        return r_factor(self.f_obs, self.f_model_abs, self.free_active)

    @property
    def r_free_unscaled(self):
        """R-free with F_model as fitted to the work set (no rescaling of the free set)."""
        return r_factor(self.f_obs, self.f_model_abs, self.free_active, rescale=False)

    def r_factor_shells(self, n_shells=10):
        sel = self.active
        return r_factor_shells(self.f_obs[sel], self.f_model_abs[sel], self.d_spacings[sel],
                               ~self.free[sel], self.free[sel], n_shells)

    def alpha_beta(self):
        """α and β per bin from the free set (:func:`mmtbx.targets.estimate_alpha_beta`)
        for the active reflections; the arrays cover every reflection."""
        self._require_scales()
        if self._alpha_beta is None:
            sel = self.active
            ab = estimate_alpha_beta(self.f_obs[sel], self._f_model_for_ml()[sel],
                                     self.d_spacings[sel], self.eps[sel], self.centric[sel],
                                     self.free[sel])
            # every reflection gets the values of its bin by d-spacing
            edges = ab.d_bins[:, 1]
            bins = np.clip(np.searchsorted(-edges, -self.d_spacings, side="left"), 0, len(edges) - 1)
            ab.alpha = ab.alpha_bins[bins]
            ab.beta = ab.beta_bins[bins]
            ab.bins = bins
            self._alpha_beta = ab
        return self._alpha_beta

    # -- targets with gradients with respect to F_calc -------------------------------------

    def _untwinned_only(self, what):
        if self.twin_law is not None:
            raise ScalingError(f"{what} is not available for twinned data")

    def target_and_gradient(self, kind="ml"):
        """The target over the work set and ∂T/∂A_calc + i ∂T/∂B_calc per reflection.

        Parameters
        ----------
        kind : {"ml", "ls"}

        Returns
        -------
        value : float
        gradient : complex128 (m,)  zero for free and rejected reflections
        """
        self._require_scales()
        self._untwinned_only("the target gradient")
        if kind == "ls":
            value, grad = least_squares_target(self.f_obs, self.f_model, self.work)
        elif kind == "ml":
            ab = self.alpha_beta()
            value, grad = ml_target(self.f_obs, self.f_model, ab.alpha, ab.beta, self.eps,
                                    self.centric, self.work)
        else:
            raise ScalingError(f"target must be 'ml' or 'ls', not {kind!r}")
        return value, grad * self.k_total

    def figures_of_merit(self):
        ab = self.alpha_beta()
        return figure_of_merit(self.f_obs, self.f_model, ab.alpha, ab.beta, self.eps, self.centric)

    def map_coefficients(self):
        """Read (1986) map coefficients for the active work reflections.

        Returns (hkl, two_fo_fc, fo_fc, fom): acentric 2mFo − DF_model, centric
        mFo, and mFo − DF_model for all, with the phase of F_model; free and
        rejected reflections are left out.
        """
        self._untwinned_only("map coefficients")
        ab = self.alpha_beta()
        sel = self.work
        fm = self.f_model[sel]
        phase = np.exp(1j * np.angle(fm))
        m = self.figures_of_merit()[sel]
        d_fc = ab.alpha[sel] * np.abs(fm)
        fo = self.f_obs[sel]
        two = np.where(self.centric[sel], m * fo, 2.0 * m * fo - d_fc) * phase
        diff = (m * fo - d_fc) * phase
        return self.hkl[sel], two, diff, m

    def summary(self):
        """The figures as a dict (for printing and JSON)."""
        self._require_scales()
        s = self.scales
        b_cart = None
        if np.any(s.u_star):
            u_cart = self.unit_cell.u_star_as_u_cart(s.u_star[None, :])[0]
            b_cart = (8 * np.pi ** 2 * u_cart).tolist()
        return dict(r_work=self.r_work, r_free=self.r_free,
                    r_free_unscaled=self.r_free_unscaled, n_work=int(np.sum(self.work)),
                    n_free=int(np.sum(self.free_active)),
                    n_outliers=int(np.sum(~self.active)),
                    d_min=float(self.d_spacings.min()), d_max=float(self.d_spacings.max()),
                    k_sol=s.k_sol, b_sol=s.b_sol, bulk_solvent=s.mode,
                    k_mask_bins=[dict(d_max=float(a), d_min=float(b), k_mask=float(k), k_iso=float(ki))
                                 for (a, b), k, ki in zip(s.d_bins, s.k_mask_bins, s.k_iso_bins)],
                    b_cart=b_cart,
                    twin_fraction=(s.twin_fraction if self.twin_law is not None else None))


def twin_mates(hkl, twin_law):
    """h T for each row: int32 (m, 3)."""
    return np.ascontiguousarray(hkl @ np.asarray(twin_law).T, dtype=np.int32)


def fmodel_from_arrays(data, f_calc, f_mask, **kwargs):
    """An FModel over :class:`mmtbx.io.ReflectionData`."""
    return FModel(data.hkl, data.f_obs, data.sigma_f_obs, data.free, data.unit_cell,
                  data.space_group, f_calc, f_mask, **kwargs)


def fmodel_from_files(model_path, data_path, labels=None, free_label=None, free_value=None,
                      twin_law=None, twin_fraction=None, bulk_solvent="bins",
                      remove_outliers=True, source=None):
    """Read a model and reflection data, compute F_calc and F_mask, fit the scales.

    Parameters
    ----------
    model_path, data_path : str
    labels, free_label, free_value : see :func:`mmtbx.io.read_reflections`
    twin_law : str, optional  e.g. "h,-k,-l"
    twin_fraction : float, optional  fixed; refined when None
    bulk_solvent : {"bins", "flat"}
    remove_outliers : bool
    source : callable, optional  (structure, unit_cell, space_group, hkl, d_min) →
        (f_calc, f_mask); :func:`mmtbx.sources.compute_f_calc_and_mask` by default

    Returns
    -------
    fmodel : FModel (scaled), data : ReflectionData, structure : gemmi.Structure
    """
    from .io import check_cells_agree, read_model, read_reflections
    from .sources import compute_f_calc_and_mask

    source = compute_f_calc_and_mask if source is None else source
    structure = read_model(model_path)
    data = read_reflections(data_path, labels=labels, free_label=free_label,
                            free_value=free_value)
    check_cells_agree(structure.cell.parameters, data.unit_cell.parameters, model_path, data_path)
    f_calc, f_mask = source(structure, data.unit_cell, data.space_group, data.hkl, data.d_min)
    kwargs = {}
    if twin_law is not None:
        matrix = parse_twin_law(twin_law)
        check_twin_law(matrix, data.unit_cell, data.space_group, f"twin law {twin_law!r}")
        f_calc_t, f_mask_t = source(structure, data.unit_cell, data.space_group,
                                    twin_mates(data.hkl, matrix), data.d_min)
        kwargs = dict(twin_law=matrix, f_calc_twin=f_calc_t, f_mask_twin=f_mask_t,
                      twin_fraction=twin_fraction)
    fmodel = fmodel_from_arrays(data, f_calc, f_mask, bulk_solvent=bulk_solvent,
                                remove_outliers=remove_outliers, **kwargs)
    return fmodel.update_all_scales(), data, structure
