"""R factors and data statistics."""

import gemmi
import numpy as np

from sgtbx import completeness

from .binning import equal_count_bins


def ls_scale(f_obs, f_model_abs, selection):
    """k = Σ Fo |F_model| / Σ |F_model|² over ``selection`` (1 when empty)."""
    fo, fm = f_obs[selection], f_model_abs[selection]
    den = np.sum(fm * fm)
    return float(np.sum(fo * fm) / den) if den > 0 else 1.0


def r_factor(f_obs, f_model_abs, selection=None, rescale=True, scale=None):
    """R = Σ |Fo - k|F_model|| / Σ Fo over ``selection`` (NaN when empty).

    With ``rescale`` (the default, as cctbx's ``fmodel.r_work()`` and
    ``r_free()`` do) k = Σ Fo |F_model| / Σ |F_model|² is the least-squares
    scale over the selection itself; otherwise k = ``scale`` (default 1).  F_model already
    carries the fitted scales, so k is close to 1 except for a small set
    (5e5z's 18 free reflections: k = 0.92).
    """
    sel = np.ones(len(f_obs), dtype=bool) if selection is None else selection
    fo, fm = f_obs[sel], f_model_abs[sel]
    den = np.sum(fo)
    if den <= 0:
        return float("nan")
    if scale is not None:
        k = scale
    else:
        k = ls_scale(f_obs, f_model_abs, sel) if rescale else 1.0
    return float(np.sum(np.abs(fo - k * fm)) / den)


def r_factor_shells(f_obs, f_model_abs, d_spacings, work, free, n_shells=10):
    """R-work and R-free in resolution shells of equal counts, each set
    scaled by its overall least-squares scale (as cctbx's shell R factors).

    Returns a list of dicts: d_max, d_min, n_work, n_free, r_work, r_free
    (None for a shell without reflections of that set).
    """
    bins, edges = equal_count_bins(d_spacings, n_shells)
    k_work = ls_scale(f_obs, f_model_abs, work)
    k_free = ls_scale(f_obs, f_model_abs, free)

    def r(sel, k):
        value = r_factor(f_obs, f_model_abs, sel, scale=k)
        return None if np.isnan(value) else value

    rows = []
    for j in range(len(edges) - 1):
        in_bin = bins == j
        rows.append(dict(d_max=float(edges[j]), d_min=float(edges[j + 1]),
                         n_work=int(np.sum(in_bin & work)), n_free=int(np.sum(in_bin & free)),
                         r_work=r(in_bin & work, k_work), r_free=r(in_bin & free, k_free)))
    return rows


def sum_f0_squared(structure, order_z, s_sq):
    """Σ over the unit cell of occupancy × f0(s)² (IT92), float64 (m,): the
    expected ⟨I/ε⟩ of atoms at rest."""
    counts = {}
    for cra in structure[0].all():
        name = cra.atom.element.name
        counts[name] = counts.get(name, 0.0) + cra.atom.occ
    total = np.zeros(len(s_sq))
    stol2 = s_sq / 4.0
    for name, occ in counts.items():
        coef = gemmi.Element(name).it92
        if coef is None:
            continue
        a, b, c = coef.a, coef.b, coef.c
        f0 = c + sum(ak * np.exp(-bk * stol2) for ak, bk in zip(a, b))
        total += occ * f0 ** 2
    return order_z * total


def wilson_b(f_obs, d_spacings, eps, sum_f_sq, d_max_fit=4.5, n_bins=20):
    """Wilson B (Å²) from the slope of ln(⟨Fo²/ε⟩/Σf²) against s²: the fit
    uses bins with d ≤ ``d_max_fit`` (all bins when fewer than three are
    that fine).  Returns NaN when the data are too few."""
    s_sq = 1.0 / d_spacings ** 2
    sel = d_spacings <= d_max_fit
    if np.sum(sel) < 3 * 50:
        sel = np.ones(len(f_obs), dtype=bool)
    n = int(np.clip(np.sum(sel) // 50, 2, n_bins)) if np.sum(sel) >= 100 else 0
    if n < 2:
        return float("nan")
    bins, _ = equal_count_bins(d_spacings[sel], n)
    ratio = f_obs[sel] ** 2 / eps[sel] / sum_f_sq[sel]
    x = np.bincount(bins, weights=s_sq[sel]) / np.bincount(bins)
    y = np.bincount(bins, weights=ratio) / np.bincount(bins)
    ok = y > 0
    if np.sum(ok) < 2:
        return float("nan")
    slope = np.polyfit(x[ok], np.log(y[ok]), 1)[0]
    return float(-2.0 * slope)


def data_statistics(data, structure=None):
    """Completeness, ⟨I/σ(I)⟩ (from F when only amplitudes were read:
    I/σ(I) = F/(2σ(F))), resolution range and Wilson B (needs the model's
    composition).  Returns a dict."""
    d = data.d_spacings
    if data.i_obs is not None:
        i_over_sigma = float(np.mean(data.i_obs / data.sigma_i_obs))
    else:
        i_over_sigma = float(np.mean(data.f_obs / (2.0 * data.sigma_f_obs)))
    out = dict(n_reflections=int(len(d)), d_min=float(d.min()), d_max=float(d.max()),
               completeness=float(completeness(data.unit_cell, data.space_group, data.hkl,
                                               d_min=float(d.min()), d_max=float(d.max()))),
               mean_i_over_sigma=i_over_sigma, wilson_b=None)
    if structure is not None:
        eps = data.space_group.epsilons(data.hkl, include_centring=True).astype(np.float64)
        sum_f_sq = sum_f0_squared(structure, data.space_group.order_z, 1.0 / d ** 2)
        if np.all(sum_f_sq > 0):
            out["wilson_b"] = wilson_b(data.f_obs, d, eps, sum_f_sq)
    return out
