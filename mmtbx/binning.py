"""Resolution bins shared by the scaling, the targets and the statistics."""

import numpy as np

from .errors import ScalingError


def equal_count_bins(d_spacings, n_bins):
    """Assign reflections to ``n_bins`` resolution bins of (nearly) equal
    counts, bin 0 at low resolution.

    Parameters
    ----------
    d_spacings : float64 (m,)
    n_bins : int

    Returns
    -------
    bins : int64 (m,)  the bin of each reflection
    d_limits : float64 (n_bins + 1,)  d_max of bin 0 down to d_min of the last
    """
    d = np.asarray(d_spacings, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ScalingError("binning needs a non-empty 1-D array of d-spacings")
    n_bins = int(max(1, min(n_bins, len(d))))
    s_sq = 1.0 / d ** 2
    order = np.argsort(s_sq, kind="stable")
    bins = np.empty(len(d), dtype=np.int64)
    bins[order] = (np.arange(len(d)) * n_bins) // len(d)
    edges = np.empty(n_bins + 1)
    edges[0] = d.max()
    for b in range(n_bins):
        edges[b + 1] = d[bins == b].min()
    return bins, edges


def bin_means(values, bins, n_bins, weights=None):
    """Mean of ``values`` in each bin (NaN for an empty bin)."""
    w = np.ones(len(values)) if weights is None else weights
    num = np.bincount(bins, weights=w * values, minlength=n_bins)
    den = np.bincount(bins, weights=w, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def interpolate_in_s_sq(bin_values, bins, s_sq):
    """Per-reflection values linearly interpolated in s² = 1/d² between the
    bin centres (the mean s² of each bin), constant beyond the end centres."""
    n_bins = len(bin_values)
    centres = bin_means(s_sq, bins, n_bins)
    ok = np.isfinite(centres) & np.isfinite(bin_values)
    if ok.sum() == 1:
        return np.full(len(s_sq), bin_values[ok][0])
    return np.interp(s_sq, centres[ok], bin_values[ok])
