"""X-ray targets with their gradients with respect to F_model, α/β estimation,
figures of merit and Read's (1999) outlier test.

F_model = A + iB is scaled (it includes k_total), so F_obs and F_model are on
one scale.  A target T returns its value and, per reflection, the complex
gradient ∂T/∂A + i ∂T/∂B; the chain rule to F_calc multiplies by k_total
(F_model = k_total (F_calc + k_mask F_mask)).

Amplitude maximum likelihood (Lunin & Skovoroda 1995; Afonine et al. 2005,
J. Appl. Cryst. 38, 707), with Fc = |F_model|, per reflection, up to terms
independent of the model:

    acentric  T = ln εβ + (Fo² + α²Fc²)/(εβ) - ln I0(X),   X = 2αFoFc/(εβ)
    centric   T = ½ ln εβ + (Fo² + α²Fc²)/(2εβ) - ln cosh(X/2)

    ∂T/∂Fc:  acentric 2α²Fc/(εβ) - (2αFo/(εβ)) m,  m = I1(X)/I0(X)
             centric  α²Fc/(εβ)  - (αFo/(εβ)) m,    m = tanh(X/2)

m is the figure of merit; D = α.  α and β are estimated per resolution bin
by minimising the same sum over the free reflections of the bin (over the
work reflections when the bin has fewer than ``min_free`` free ones).
"""

import dataclasses

import numpy as np
from scipy import optimize, special, stats

from .binning import equal_count_bins
from .errors import ScalingError


def _check(f_obs, f_model, *others):
    m = len(f_obs)
    if np.shape(f_model) != (m,):
        raise ScalingError(f"f_model must have shape ({m},), got {np.shape(f_model)}")
    for arr in others:
        if arr is not None and np.shape(arr) != (m,):
            raise ScalingError(f"per-reflection arrays must have shape ({m},), got {np.shape(arr)}")


def least_squares_target(f_obs, f_model, selection=None):
    """T = Σ (Fo - |F_model|)² over ``selection``.

    Returns
    -------
    value : float
    gradient : complex128 (m,)  ∂T/∂A + i ∂T/∂B (zero outside the selection)
    """
    _check(f_obs, f_model, selection)
    sel = np.ones(len(f_obs), dtype=bool) if selection is None else selection
    fc = np.abs(f_model)
    diff = np.where(sel, f_obs - fc, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(fc > 0, f_model / np.where(fc > 0, fc, 1.0), 0.0)
    return float(np.sum(diff ** 2)), -2.0 * diff * unit


def _log_i0(x):
    return np.log(special.i0e(x)) + x


def _log_cosh(y):
    y = np.abs(y)
    return y + np.log1p(np.exp(-2.0 * y)) - np.log(2.0)


def _fom(x, centric):
    """m = I1(X)/I0(X) (acentric) or tanh(X/2) (centric)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        acentric = np.where(x > 0, special.i1e(x) / special.i0e(x), 0.0)
    return np.where(centric, np.tanh(0.5 * x), acentric)


def ml_terms(f_obs, fc, alpha, beta, eps, centric):
    """Per-reflection −log-likelihood, ∂/∂Fc, ∂/∂α, ∂/∂β and m (float64 (m,) each)."""
    eb = eps * beta
    x = 2.0 * alpha * f_obs * fc / eb
    m = _fom(x, centric)
    q = f_obs ** 2 + alpha ** 2 * fc ** 2
    t_a = np.log(eb) + q / eb - _log_i0(x)
    t_c = 0.5 * np.log(eb) + q / (2.0 * eb) - _log_cosh(0.5 * x)
    f = np.where(centric, 0.5, 1.0)      # centric terms are half the acentric ones
    value = np.where(centric, t_c, t_a)
    d_fc = f * (2.0 * alpha ** 2 * fc / eb - 2.0 * alpha * f_obs / eb * m)
    d_alpha = f * (2.0 * alpha * fc ** 2 / eb - 2.0 * f_obs * fc / eb * m)
    d_beta = f * (1.0 / beta - q / (eb * beta) + x / beta * m)
    return value, d_fc, d_alpha, d_beta, m


@dataclasses.dataclass
class AlphaBeta:
    """α and β per reflection and per bin.

    alpha, beta : float64 (m,); alpha_bins, beta_bins : (n_bins,);
    bins : int64 (m,); d_bins : (n_bins, 2) d_max, d_min;
    from_free : bool (n_bins,) whether the bin used the free set;
    sigma_a_bins : (n_bins,)  σA = α √(Σc / (α²Σc + β)) with Σc = ⟨Fc²/ε⟩
    """
    alpha: np.ndarray
    beta: np.ndarray
    alpha_bins: np.ndarray
    beta_bins: np.ndarray
    bins: np.ndarray
    d_bins: np.ndarray
    from_free: np.ndarray
    sigma_a_bins: np.ndarray


def _fit_alpha_beta(f_obs, fc, eps, centric):
    """Minimise Σ T over one bin in (α, ln β)."""
    alpha0 = max(np.sum(f_obs * fc) / max(np.sum(fc * fc), 1e-300), 1e-3)
    beta0 = max(np.mean((f_obs - alpha0 * fc) ** 2 / eps), 1e-6 * np.mean(f_obs ** 2 / eps) + 1e-12)

    def fun(p):
        alpha, beta = p[0], np.exp(p[1])
        value, _, d_alpha, d_beta, _ = ml_terms(f_obs, fc, alpha, beta, eps, centric)
        return np.sum(value), np.array([np.sum(d_alpha), np.sum(d_beta) * beta])

    res = optimize.minimize(fun, [alpha0, np.log(beta0)], jac=True, method="L-BFGS-B",
                            bounds=[(1e-4, None), (np.log(beta0) - 20, np.log(beta0) + 20)])
    return float(res.x[0]), float(np.exp(res.x[1]))


def estimate_alpha_beta(f_obs, f_model, d_spacings, eps, centric, free, min_free=50,
                        n_per_bin=1000, max_bins=20):
    """α and β per resolution bin from the free set (the work set in bins
    with fewer than ``min_free`` free reflections).

    Parameters
    ----------
    f_obs : float64 (m,); f_model : complex128 (m,)
    d_spacings : float64 (m,); eps : float64 (m,) epsilon; centric : bool (m,)
    free : bool (m,)

    Returns
    -------
    AlphaBeta
    """
    _check(f_obs, f_model, d_spacings, eps, centric, free)
    fc = np.abs(f_model)
    n_free = int(np.sum(free))
    if n_free >= min_free:
        # equal numbers of free reflections per bin, about 2 × min_free each
        n_bins = int(np.clip(min(len(f_obs) // n_per_bin, n_free // (2 * min_free)), 1, max_bins))
        reference = d_spacings[free]
    else:
        n_bins = int(np.clip(len(f_obs) // n_per_bin, 1, max_bins))
        reference = d_spacings
    _, ref_edges = equal_count_bins(reference, n_bins)
    inner = ref_edges[1:-1]
    bins = np.searchsorted(-inner, -d_spacings, side="left")
    edges = np.r_[d_spacings.max(), inner, d_spacings.min()]
    alpha_b = np.empty(n_bins)
    beta_b = np.empty(n_bins)
    from_free = np.zeros(n_bins, dtype=bool)
    sigma_a = np.empty(n_bins)
    for j in range(n_bins):
        in_bin = bins == j
        sel = in_bin & free
        from_free[j] = np.sum(sel) >= min_free
        if not from_free[j]:
            sel = in_bin & ~free
        alpha_b[j], beta_b[j] = _fit_alpha_beta(f_obs[sel], fc[sel], eps[sel], centric[sel])
        sig_c = np.mean(fc[sel] ** 2 / eps[sel])
        sigma_a[j] = alpha_b[j] * np.sqrt(sig_c / (alpha_b[j] ** 2 * sig_c + beta_b[j]))
    d_bins = np.c_[edges[:-1], edges[1:]]
    return AlphaBeta(alpha_b[bins], beta_b[bins], alpha_b, beta_b, bins, d_bins, from_free, sigma_a)


def ml_target(f_obs, f_model, alpha, beta, eps, centric, selection=None):
    """Amplitude ML target Σ T over ``selection`` and its gradient.

    Returns
    -------
    value : float
    gradient : complex128 (m,)  ∂T/∂A + i ∂T/∂B
    """
    _check(f_obs, f_model, alpha, beta, eps, centric, selection)
    sel = np.ones(len(f_obs), dtype=bool) if selection is None else selection
    fc = np.abs(f_model)
    value, d_fc, _, _, _ = ml_terms(f_obs, fc, alpha, beta, eps, centric)
    d_fc = np.where(sel, d_fc, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(fc > 0, f_model / np.where(fc > 0, fc, 1.0), 0.0)
    return float(np.sum(value[sel])), d_fc * unit


def figure_of_merit(f_obs, f_model, alpha, beta, eps, centric):
    """m per reflection, float64 (m,)."""
    x = 2.0 * alpha * f_obs * np.abs(f_model) / (eps * beta)
    return _fom(x, centric)


def outlier_probabilities(f_obs, f_model, alpha, beta, eps, centric):
    """Read (1999): the probability of an amplitude at least as far from the
    expected one as F_obs, given F_model, α and β (the smaller tail).

    Acentric F_obs follows the Rice distribution with ν = α|F_model| and
    σ² = εβ/2; centric F_obs the folded normal of N(α|F_model|, εβ)."""
    fc = np.abs(f_model) * alpha
    p = np.empty(len(f_obs))
    ac = ~centric
    s_a = np.sqrt(eps[ac] * beta[ac] / 2.0)
    p[ac] = np.minimum(stats.rice.sf(f_obs[ac] / s_a, fc[ac] / s_a),
                       stats.rice.cdf(f_obs[ac] / s_a, fc[ac] / s_a))
    s_c = np.sqrt(eps[centric] * beta[centric])
    p[centric] = np.minimum(stats.foldnorm.sf(f_obs[centric] / s_c, fc[centric] / s_c),
                            stats.foldnorm.cdf(f_obs[centric] / s_c, fc[centric] / s_c))
    return p
