"""Bulk solvent and overall scaling of F_model.

    F_model(h) = k_total(h) · (F_calc(h) + k_mask(s) F_mask(h))
    k_total(h) = k_iso(s) · exp(-2π² h U* hᵀ)

k_mask and k_iso are constant in each resolution bin (logarithmic bins,
Afonine et al. 2013, Acta Cryst. D69, 625); U* is the overall anisotropic
scale, constrained by the point group (and a twin law).  For twinned data
the model intensity of h is (1-τ)|F(h)|² + τ|F(hT)|², and F_model is
k_total √ of it.

In each bin, with the anisotropic factor divided out of F_obs, |F_c + k F_m|²
= a + 2bk + ck² is quadratic in k, and the intensity least squares
Σ (F_obs² - K (a + 2bk + ck²))² has, for fixed K, a cubic as its derivative in
k (Afonine et al. 2013, eq. 7-8): its real roots in [0, 1] are candidates,
and K follows in closed form.  Because R is judged on amplitudes, the
candidates together with a coarse grid in k are compared on the amplitude
residual Σ (F_obs - K √(a + 2bk + ck²))² (K again in closed form), and the
best is polished by golden-section search.  The anisotropic scale is fitted
by linear least squares on ln(F_obs/F_model) followed by Gauss–Newton steps
on the amplitude residual.  k_sol and B_sol are reported from a fit of
k_sol exp(-B_sol s²/4) to the binned k_mask for d ≥ 4 Å (as cctbx's
``k_sol_b_sol_from_k_mask`` does), or fitted directly with the flat model.
"""

import dataclasses

import numpy as np
from scipy import optimize

from .errors import ScalingError

_K_MASK_GRID = np.linspace(0.0, 1.0, 21)


# -- bins ----------------------------------------------------------------------------

def log_bins(d_spacings, n_lowest=100, min_per_bin=50, max_bins=30):
    """Resolution bins equally spaced in ln(s), the lowest holding about
    ``n_lowest`` reflections, none fewer than ``min_per_bin`` (merged into
    the neighbour at lower resolution).  Returns (bins int64 (m,), n_bins)."""
    d = np.asarray(d_spacings, dtype=np.float64)
    m = len(d)
    s = np.sort(1.0 / d)
    if m < 2 * min_per_bin:
        return np.zeros(m, dtype=np.int64), 1
    s_first = s[min(n_lowest, m - 1)]
    s_max = s[-1] * (1 + 1e-9)
    n_log = int(np.clip(np.ceil(np.log(s_max / s_first) / np.log(1.15)), 1, max_bins - 1))
    edges = np.r_[0.0, np.exp(np.linspace(np.log(s_first), np.log(s_max), n_log + 1))]
    edges[-1] = np.inf
    bins = np.searchsorted(edges, 1.0 / d, side="right") - 1
    bins = np.clip(bins, 0, len(edges) - 2)
    # merge small bins into their neighbours until every bin is large enough
    labels = np.unique(bins)
    counts = np.array([np.sum(bins == b) for b in labels])
    groups = []
    current = []
    total = 0
    for b, c in zip(labels, counts):
        current.append(b)
        total += c
        if total >= min_per_bin:
            groups.append(current)
            current, total = [], 0
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    remap = np.empty(labels.max() + 1, dtype=np.int64)
    for g, members in enumerate(groups):
        remap[members] = g
    return remap[bins], len(groups)


# -- anisotropic scale -----------------------------------------------------------------

def _sym_index():
    return [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]


def anisotropic_basis(rotations_hkl):
    """Orthonormal basis (6, r) of the U* (order 11,22,33,12,13,23) with
    Qᵀ U* Q = U* for every Q of ``rotations_hkl`` (int (k,3,3), acting on
    column Miller indices)."""
    proj = np.zeros((6, 6))
    for j, (p, q) in enumerate(_sym_index()):
        e = np.zeros((3, 3))
        e[p, q] = e[q, p] = 1.0
        acc = np.zeros((3, 3))
        for rot in rotations_hkl:
            acc += rot.T @ e @ rot
        acc /= len(rotations_hkl)
        proj[:, j] = [acc[a, b] for a, b in _sym_index()]
    u, sv, _ = np.linalg.svd(proj)
    return u[:, sv > 0.5]


def _quadratic_terms(hkl):
    """(m, 6) with h U* hᵀ = q · u*, u* in order 11,22,33,12,13,23."""
    h = hkl.astype(np.float64)
    return np.stack([h[:, 0] ** 2, h[:, 1] ** 2, h[:, 2] ** 2, 2 * h[:, 0] * h[:, 1],
                     2 * h[:, 0] * h[:, 2], 2 * h[:, 1] * h[:, 2]], axis=1)


def hat_matrix(s_sq, centres):
    """(m, n) weights w with ln k_iso(s) = w · ln K: linear in s² between the
    bin centres, extrapolated linearly beyond the end centres; one column of
    ones for a single bin."""
    m, n = len(s_sq), len(centres)
    if n == 1:
        return np.ones((m, 1))
    j = np.clip(np.searchsorted(centres, s_sq) - 1, 0, n - 2)
    t = (s_sq - centres[j]) / (centres[j + 1] - centres[j])
    hat = np.zeros((m, n))
    rows = np.arange(m)
    hat[rows, j] = 1.0 - t
    hat[rows, j + 1] = t
    return hat


def without_isotropic_part(basis, unit_cell_g_star):
    """The part of an anisotropic basis orthogonal to the isotropic U*
    (∝ G*), for when the bin scales carry the isotropic fall-off."""
    g = np.array([unit_cell_g_star[a, b] for a, b in _sym_index()])
    c = basis.T @ g
    if basis.shape[1] == 0 or np.linalg.norm(c) == 0:
        return basis
    _, _, vt = np.linalg.svd(c[None, :])
    return basis @ vt[1:].T


def _least_squares(a, y):
    """x minimising |a x - y|² through the (small) normal equations; the
    columns of ``a`` are already scaled to comparable size."""
    return np.linalg.lstsq(a.T @ a, a.T @ y, rcond=1e-12)[0]


def fit_scales(f_obs, f_model, hkl, hat, basis, selection, n_gauss_newton=3):
    """Fit k_iso(s) · exp(-2π² h U* hᵀ) so that it times ``f_model`` matches
    ``f_obs``: ln k_iso is piecewise linear in s² (``hat`` @ ln K), U* in the
    span of ``basis``.  Linear least squares on ln(F_obs/F_model) (rows
    weighted by F_obs), then Gauss–Newton steps on Σ (F_obs - k F_model)².

    Parameters
    ----------
    f_obs, f_model : float64 (m,)  amplitudes
    hkl : int32 (m, 3)
    hat : float64 (m, n_bins)  from :func:`hat_matrix`
    basis : float64 (6, r)
    selection : bool (m,)  reflections used (the work set)

    Returns
    -------
    ln_k_bins : float64 (n_bins,), u_star : float64 (6,)
    """
    n_bins = hat.shape[1]
    sel = selection & (f_obs > 0) & (f_model > 0)
    if np.sum(sel) < n_bins + basis.shape[1] + 2:
        raise ScalingError(f"too few reflections ({np.sum(sel)}) to fit {n_bins} bin scales "
                           "and the anisotropic scale")
    q = _quadratic_terms(hkl[sel]) @ basis * (-2.0 * np.pi ** 2)
    design = np.c_[hat[sel], q]
    fo, fm = f_obs[sel], f_model[sel]
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    params = _least_squares(design / scale * fo[:, None], np.log(fo / fm) * fo) / scale
    for _ in range(n_gauss_newton):
        model = np.exp(np.clip(design @ params, -50, 50)) * fm
        resid = fo - model
        step = _least_squares(design * model[:, None] / scale, resid)
        trial = params + step / scale
        new = np.exp(np.clip(design @ trial, -50, 50)) * fm
        if np.sum((fo - new) ** 2) > np.sum(resid ** 2):
            break
        params = trial
    return params[:n_bins], basis @ params[n_bins:]


def anisotropic_factor(hkl, u_star):
    """exp(-2π² h U* hᵀ), float64 (m,)."""
    return np.exp(-2.0 * np.pi ** 2 * (_quadratic_terms(hkl) @ u_star))


# -- k_mask and K in one bin -----------------------------------------------------------

def _cubic_k_mask(i_obs, a, b, c, scale):
    """Real roots in [0, 1] of d/dk Σ (I - K(a + 2bk + ck²))² = 0 for fixed K."""
    # residual r = I/K - a - 2bk - ck²; Σ r (2b + 2ck) = 0
    y = i_obs / scale - a
    coeffs = [np.sum(c * c), 3.0 * np.sum(b * c), np.sum(2.0 * b * b - c * y), -np.sum(b * y)]
    if coeffs[0] <= 0:
        return []
    roots = np.roots(np.array(coeffs) / coeffs[0])
    real = roots[np.abs(roots.imag) < 1e-8].real
    return [float(r) for r in real if 0.0 <= r <= 1.0]


def _amplitude_residual(f_obs, a, b, c, k):
    """min over K of Σ (F_obs - K √(a + 2bk + ck²))², and that K."""
    fm = np.sqrt(np.maximum(a + 2.0 * b * k + c * k * k, 0.0))
    den = np.sum(fm * fm)
    if den <= 0:
        return np.inf, 0.0
    scale = np.sum(f_obs * fm) / den
    return float(np.sum((f_obs - scale * fm) ** 2)), float(scale)


def fit_bin(f_obs, a, b, c):
    """k_mask and K for one bin (see the module docstring).

    Parameters
    ----------
    f_obs : float64 (n,)  F_obs with the anisotropic scale divided out
    a, b, c : float64 (n,)  |F_c|², Re(F_c F_m*), |F_m|² (twin-averaged)

    Returns
    -------
    k_mask, k_iso : float
    """
    i_obs = f_obs ** 2
    candidates = list(_K_MASK_GRID)
    k = 0.3
    for _ in range(4):
        u = a + 2.0 * b * k + c * k * k
        scale = np.sum(i_obs * u) / max(np.sum(u * u), 1e-300)
        roots = _cubic_k_mask(i_obs, a, b, c, scale)
        if not roots:
            break
        k = min(roots, key=lambda r: np.sum((i_obs - scale * (a + 2 * b * r + c * r * r)) ** 2))
        candidates.append(k)
    values = [_amplitude_residual(f_obs, a, b, c, kk)[0] for kk in candidates]
    best = candidates[int(np.argmin(values))]
    lo, hi = max(0.0, best - 0.05), min(1.0, best + 0.05)
    g = (np.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1 = _amplitude_residual(f_obs, a, b, c, x1)[0]
    f2 = _amplitude_residual(f_obs, a, b, c, x2)[0]
    for _ in range(16):
        if f1 < f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - g * (hi - lo)
            f1 = _amplitude_residual(f_obs, a, b, c, x1)[0]
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + g * (hi - lo)
            f2 = _amplitude_residual(f_obs, a, b, c, x2)[0]
    k = 0.5 * (lo + hi)
    if _amplitude_residual(f_obs, a, b, c, k)[0] > min(values):
        k = best
    return k, _amplitude_residual(f_obs, a, b, c, k)[1]


# -- the whole model -------------------------------------------------------------------

@dataclasses.dataclass
class Scales:
    """The fitted scales.

    bins : int64 (m,)  bin of each reflection
    s_sq_centres : float64 (n_bins,)  mean s² = 1/d² of each bin
    k_mask_bins : (n_bins,)  k_mask per bin (for the flat model, its bin mean)
    k_iso_bins : (n_bins,)  k_iso at the bin centres
    d_bins : float64 (n_bins, 2)  d_max, d_min of each bin (Å)
    u_star : float64 (6,)  overall anisotropic U* (11,22,33,12,13,23)
    twin_fraction : float  (0 without a twin law)
    k_sol, b_sol : float  flat-model values (fitted, or derived from the bins)
    mode : "bins" or "flat"
    """
    bins: np.ndarray
    s_sq_centres: np.ndarray
    k_mask_bins: np.ndarray
    k_iso_bins: np.ndarray
    d_bins: np.ndarray
    u_star: np.ndarray
    twin_fraction: float
    k_sol: float
    b_sol: float
    mode: str

    def k_iso(self, s_sq):
        """k_iso at s² = 1/d², float64 (m,): ln k_iso piecewise linear in s²
        through the bin centres (:func:`hat_matrix`)."""
        return np.exp(hat_matrix(s_sq, self.s_sq_centres) @ np.log(self.k_iso_bins))

    def k_mask(self, s_sq):
        """k_mask at s², float64 (m,): the flat model, or the bin values
        linearly interpolated in s² (constant beyond the end centres)."""
        if self.mode == "flat":
            return self.k_sol * np.exp(-self.b_sol * s_sq / 4.0)
        return np.interp(s_sq, self.s_sq_centres, self.k_mask_bins)

    def k_total(self, hkl, s_sq):
        """k_iso(s) exp(-2π² h U* hᵀ), float64 (m,)."""
        return self.k_iso(s_sq) * anisotropic_factor(hkl, self.u_star)


def quadratic_coefficients(f_calc, f_mask):
    """a = |F_c|², b = Re(F_c conj(F_m)), c = |F_m|², each (m,)."""
    return (np.abs(f_calc) ** 2, (f_calc * np.conj(f_mask)).real, np.abs(f_mask) ** 2)


def model_intensity(coeffs, coeffs_twin, twin_fraction, k_mask):
    """(1-τ)|F_c + k F_m|²(h) + τ|F_c + k F_m|²(hT), float64 (m,)."""
    a, b, c = coeffs
    u = a + 2.0 * b * k_mask + c * k_mask ** 2
    if coeffs_twin is None or twin_fraction == 0:
        return u
    a2, b2, c2 = coeffs_twin
    return (1.0 - twin_fraction) * u + twin_fraction * (a2 + 2.0 * b2 * k_mask + c2 * k_mask ** 2)


def _mix(coeffs, coeffs_twin, tau):
    if coeffs_twin is None or tau == 0:
        return coeffs
    return tuple((1.0 - tau) * x + tau * y for x, y in zip(coeffs, coeffs_twin))


def _k_iso_given_k_mask(f_obs_aniso, coeffs, k_mask_refl, bins, n_bins, work):
    """K per bin in closed form for a given k_mask of each reflection."""
    a, b, c = coeffs
    fm = np.sqrt(np.maximum(a + 2.0 * b * k_mask_refl + c * k_mask_refl ** 2, 0.0))
    num = np.bincount(bins[work], weights=f_obs_aniso[work] * fm[work], minlength=n_bins)
    den = np.bincount(bins[work], weights=fm[work] ** 2, minlength=n_bins)
    return num / np.maximum(den, 1e-300)


def _fit_bins(f_obs_aniso, coeffs, bins, n_bins, work):
    k_mask = np.zeros(n_bins)
    k_iso = np.ones(n_bins)
    for j in range(n_bins):
        sel = work & (bins == j)
        if not np.any(sel):
            sel = bins == j
        k_mask[j], k_iso[j] = fit_bin(f_obs_aniso[sel], *(x[sel] for x in coeffs))
    return k_mask, k_iso


def k_sol_b_sol_from_bins(k_mask_bins, d_bins, d_limit=4.0):
    """Fit k_sol exp(-B_sol s²/4) to the binned k_mask for d ≥ d_limit
    (B_sol ≥ 0); (0, 0) when no bin has k_mask > 0."""
    d_mid = np.sqrt(d_bins[:, 0] * d_bins[:, 1])
    use = (d_bins[:, 1] >= d_limit) & (k_mask_bins > 1e-3)
    if not np.any(use):
        use = (d_mid >= d_limit) & (k_mask_bins > 1e-3)
    if not np.any(use):
        return 0.0, 0.0
    s_sq = 1.0 / d_mid[use] ** 2
    y = np.log(k_mask_bins[use])
    if np.sum(use) == 1 or np.ptp(s_sq) == 0:
        return float(np.exp(y.mean())), 0.0
    slope, intercept = np.polyfit(s_sq, y, 1)
    b_sol = -4.0 * slope
    if b_sol < 0:
        return float(np.exp(y.mean())), 0.0
    return float(np.exp(intercept)), float(b_sol)


def _flat_k_mask(f_obs_aniso, coeffs, s_sq, bins, n_bins, work):
    """k_sol and B_sol of k_mask = k_sol exp(-B_sol s²/4) with K per bin: a
    grid search (B_sol 0..160 Å² by 10, k_sol 0..0.6 by 0.025), then a
    Nelder–Mead polish inside k_sol ∈ [0, 1], B_sol ∈ [0, 300]."""
    a, b, c = coeffs

    def residual(k_sol, b_sol):
        k_mask = k_sol * np.exp(-b_sol * s_sq / 4.0)
        k_iso = _k_iso_given_k_mask(f_obs_aniso, coeffs, k_mask, bins, n_bins, work)
        fm = k_iso[bins] * np.sqrt(np.maximum(a + 2 * b * k_mask + c * k_mask ** 2, 0.0))
        return np.sum((f_obs_aniso[work] - fm[work]) ** 2)

    grid = [(residual(k, bs), k, bs) for bs in np.arange(0.0, 161.0, 10.0)
            for k in np.linspace(0.0, 0.6, 25)]
    _, k_sol, b_sol = min(grid)
    res = optimize.minimize(lambda p: residual(*p), [k_sol, b_sol], method="Nelder-Mead",
                            bounds=[(0.0, 1.0), (0.0, 300.0)],
                            options=dict(xatol=1e-3, fatol=1e-10, maxiter=200))
    if res.fun <= residual(k_sol, b_sol):
        k_sol, b_sol = float(res.x[0]), float(res.x[1])
    return k_sol, b_sol


def bulk_solvent_and_scale(f_obs, f_calc, f_mask, hkl, unit_cell, work, rotations_hkl,
                           f_calc_twin=None, f_mask_twin=None, twin_fraction=None,
                           mode="bins", n_cycles=3):
    """Fit k_mask (per bin, or k_sol and B_sol), k_iso(s), the anisotropic
    scale and, for twinned data, the twin fraction.

    Each cycle fits k_mask in every bin with the current total scale divided
    out of F_obs (:func:`fit_bin`), then the bin scales and U* together
    (:func:`fit_scales`) with k_mask fixed.

    Parameters
    ----------
    f_obs : float64 (m,)
    f_calc, f_mask : complex128 (m,)
    hkl : int32 (m, 3)
    unit_cell : sgtbx.UnitCell
    work : bool (m,)  reflections the scales are fitted to
    rotations_hkl : int (k, 3, 3)  operations on column Miller indices that
        the anisotropic scale must be invariant under (point group, twin law)
    f_calc_twin, f_mask_twin : complex128 (m,), optional  at the twin mates hT
    twin_fraction : float, optional  fixed τ; refined in [0, 0.5] when None
        and twin arrays are given
    mode : {"bins", "flat"}  per-bin k_mask or k_sol exp(-B_sol s²/4)

    Returns
    -------
    Scales
    """
    m = len(f_obs)
    for name, arr in (("f_calc", f_calc), ("f_mask", f_mask), ("hkl", hkl), ("work", work)):
        if len(arr) != m:
            raise ScalingError(f"{name} has {len(arr)} rows, f_obs has {m}")
    if mode not in ("bins", "flat"):
        raise ScalingError(f"bulk-solvent mode must be 'bins' or 'flat', not {mode!r}")
    if np.sum(work) == 0:
        raise ScalingError("no work reflections to fit the scales to")
    twinned = f_calc_twin is not None
    d_spacings = unit_cell.d_spacings(hkl)
    bins, n_bins = log_bins(d_spacings)
    d_bins = np.array([[d_spacings[bins == j].max(), d_spacings[bins == j].min()]
                       for j in range(n_bins)])
    s_sq = 1.0 / d_spacings ** 2
    centres = np.bincount(bins, weights=s_sq, minlength=n_bins) / np.bincount(bins, minlength=n_bins)
    hat = hat_matrix(s_sq, centres)
    basis = anisotropic_basis(rotations_hkl)
    if n_bins > 1:
        basis = without_isotropic_part(basis, unit_cell.reciprocal_metric)
    coeffs = quadratic_coefficients(f_calc, f_mask)
    coeffs_twin = quadratic_coefficients(f_calc_twin, f_mask_twin) if twinned else None
    tau = 0.0 if not twinned else (0.25 if twin_fraction is None else float(twin_fraction))

    # start: scales of F_calc alone
    k_mask_refl = np.zeros(m)
    ln_k_bins, u_star = fit_scales(
        f_obs, np.sqrt(model_intensity(coeffs, coeffs_twin, tau, k_mask_refl)), hkl, hat, basis, work)
    k_sol = b_sol = 0.0
    k_mask_bins = np.zeros(n_bins)
    for _ in range(n_cycles):
        f_obs_scaled = f_obs / (np.exp(hat @ ln_k_bins) * anisotropic_factor(hkl, u_star))
        if twinned and twin_fraction is None:
            tau = _refine_twin_fraction(f_obs_scaled, coeffs, coeffs_twin, bins, n_bins, work)
        mixed = _mix(coeffs, coeffs_twin, tau)
        if mode == "flat":
            k_sol, b_sol = _flat_k_mask(f_obs_scaled, mixed, s_sq, bins, n_bins, work)
            k_mask_refl = k_sol * np.exp(-b_sol * s_sq / 4.0)
            k_mask_bins = np.bincount(bins, weights=k_mask_refl, minlength=n_bins) / np.bincount(
                bins, minlength=n_bins)
        else:
            k_mask_bins, _ = _fit_bins(f_obs_scaled, mixed, bins, n_bins, work)
            k_mask_refl = np.interp(s_sq, centres, k_mask_bins)
        f_model_unscaled = np.sqrt(np.maximum(
            model_intensity(coeffs, coeffs_twin, tau, k_mask_refl), 0.0))
        ln_k_bins, u_star = fit_scales(f_obs, f_model_unscaled, hkl, hat, basis, work)
    if mode == "bins":
        k_sol, b_sol = k_sol_b_sol_from_bins(k_mask_bins, d_bins)
    return Scales(bins=bins, s_sq_centres=centres, k_mask_bins=k_mask_bins,
                  k_iso_bins=np.exp(ln_k_bins), d_bins=d_bins, u_star=u_star,
                  twin_fraction=tau, k_sol=k_sol, b_sol=b_sol, mode=mode)


def _refine_twin_fraction(f_obs_scaled, coeffs, coeffs_twin, bins, n_bins, work):
    """τ in [0, 0.5] minimising the amplitude residual with k_mask and K refitted
    per bin (golden-section search)."""
    def residual(tau):
        mixed = _mix(coeffs, coeffs_twin, tau)
        k_mask, k_iso = _fit_bins(f_obs_scaled, mixed, bins, n_bins, work)
        u = mixed[0] + 2 * mixed[1] * k_mask[bins] + mixed[2] * k_mask[bins] ** 2
        fm = k_iso[bins] * np.sqrt(np.maximum(u, 0.0))
        return np.sum((f_obs_scaled[work] - fm[work]) ** 2)

    lo, hi = 0.0, 0.5
    g = (np.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = residual(x1), residual(x2)
    while hi - lo > 0.005:
        if f1 < f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - g * (hi - lo)
            f1 = residual(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + g * (hi - lo)
            f2 = residual(x2)
    return 0.5 * (lo + hi)
