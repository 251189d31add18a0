"""Intensities to amplitudes by French & Wilson (1978), Acta Cryst. A34, 517.

The true intensity J ≥ 0 has the Wilson prior of its resolution bin,
acentric p(J) = exp(-J/Σ)/Σ, centric p(J) = (2πJΣ)^(-1/2) exp(-J/(2Σ)),
with Σ = ε ⟨I/ε⟩ (the bin mean, interpolated in s²), and the measurement
I ~ N(J, σ²).  Written in F = √J and scaled by x = F/√σ the posterior is

    acentric  p(x) ∝ x exp(-(x² - h)²/2),   h = (I - σ²/Σ)/σ
    centric   p(x) ∝ exp(-(x² - h)²/2),     h = (I - σ²/(2Σ))/σ

so E[F] = √σ E[x] and σ_F = √σ sd(x) depend on h alone: they are tabulated
once by quadrature and interpolated.  Reflections with h < -4 are rejected
(the measurement is improbable under the prior), as cctbx does; for h beyond
the table F = √(σh) and σ_F = σ/(2F).
"""

import dataclasses
import functools

import numpy as np

from .binning import bin_means, equal_count_bins, interpolate_in_s_sq
from .errors import DataError

H_REJECT = -4.0
_H_MAX = 40.0


@dataclasses.dataclass
class FrenchWilsonResult:
    """f, sigma_f : float64 (m,) (NaN where rejected); accepted : bool (m,)."""
    f: np.ndarray
    sigma_f: np.ndarray
    accepted: np.ndarray


@functools.lru_cache(maxsize=None)
def _table():
    h = np.linspace(H_REJECT, _H_MAX, 881)
    out = {}
    for name, power in (("acentric", 1.0), ("centric", 0.0)):
        ex = np.empty_like(h)
        sd = np.empty_like(h)
        for i, hi in enumerate(h):
            x = np.linspace(0.0, np.sqrt(max(hi, 0.0) + 14.0), 6001)[1:]
            logp = power * np.log(x) - 0.5 * (x * x - hi) ** 2
            p = np.exp(logp - logp.max())
            z = p.sum()
            m1 = (x * p).sum() / z
            m2 = (x * x * p).sum() / z
            ex[i] = m1
            sd[i] = np.sqrt(max(m2 - m1 * m1, 0.0))
        out[name] = (ex, sd)
    return h, out


def _posterior(h, centric):
    table_h, moments = _table()
    ex = np.empty_like(h)
    sd = np.empty_like(h)
    for name, sel in (("acentric", ~centric), ("centric", centric)):
        m1, s1 = moments[name]
        ex[sel] = np.interp(h[sel], table_h, m1)
        sd[sel] = np.interp(h[sel], table_h, s1)
    big = h > _H_MAX
    ex[big] = np.sqrt(h[big])
    sd[big] = 0.5 / np.sqrt(h[big])
    return ex, sd


def french_wilson(unit_cell, space_group, hkl, i_obs, sigma_i_obs, n_per_bin=300):
    """French–Wilson amplitudes from merged intensities.

    Parameters
    ----------
    unit_cell : sgtbx.UnitCell
    space_group : sgtbx.SpaceGroup
    hkl : int32 (m, 3)  unique indices
    i_obs, sigma_i_obs : float64 (m,)  sigma > 0
    n_per_bin : int  reflections per bin for the Wilson prior

    Returns
    -------
    FrenchWilsonResult
    """
    i_obs = np.asarray(i_obs, dtype=np.float64)
    sig = np.asarray(sigma_i_obs, dtype=np.float64)
    if i_obs.shape != (len(hkl),) or sig.shape != (len(hkl),):
        raise DataError(f"French–Wilson: intensities and sigmas must have shape ({len(hkl)},)")
    if np.any(~(sig > 0)):
        raise DataError("French–Wilson: every sigma(I) must be positive")
    eps = space_group.epsilons(hkl).astype(np.float64)
    centric = space_group.centric_flags(hkl)
    d = unit_cell.d_spacings(hkl)
    n_bins = max(1, len(hkl) // n_per_bin)
    bins, _ = equal_count_bins(d, n_bins)
    mean = bin_means(i_obs / eps, bins, n_bins)
    floor = bin_means(sig / eps, bins, n_bins)
    mean = np.maximum(mean, 0.1 * floor)
    wilson = eps * interpolate_in_s_sq(mean, bins, 1.0 / d ** 2)
    h = np.where(centric, i_obs - sig ** 2 / (2.0 * wilson), i_obs - sig ** 2 / wilson) / sig
    accepted = h >= H_REJECT
    ex, sd = _posterior(np.where(accepted, h, 0.0), centric)
    root = np.sqrt(sig)
    f = np.where(accepted, root * ex, np.nan)
    sigma_f = np.where(accepted, root * sd, np.nan)
    return FrenchWilsonResult(f, sigma_f, accepted)
