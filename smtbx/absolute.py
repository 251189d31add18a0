"""Absolute structure: the Flack parameter by Parsons' quotients, and the
fraction of an inversion twin refined by least squares.

Parsons, Flack & Wagner (2013), Acta Cryst. B69, 249: for each Friedel
pair measured both ways,

    Q_o = (I⁺ − I⁻)/(I⁺ + I⁻),   Q_c = (Ic⁺ − Ic⁻)/(Ic⁺ + Ic⁻)

(scale-free), over the pairs with both I > 3σ(I) (this reproduces the
number of quotients SHELXL reports for p31c_sad and ni_i43d exactly, and
for sucrose, sh2185 and bjk within 2 %), and Q_o = (1 − 2x) Q_c for a crystal that is an inversion
twin with fraction x; the weighted least-squares fit over the pairs, w =
1/σ²(Q_o) with σ²(Q_o) = 4 [(I⁻ σ⁺)² + (I⁺ σ⁻)²]/(I⁺ + I⁻)⁴, gives x and its
s.u., scaled by the square root of the fit's reduced χ² when that exceeds
one.

The inversion twin: Fc² = (1 − x)|F(h)|² + x|F(−h)|², TWIN −1 0 0 0 −1 0 0 0
−1 2 with x as BASF (:mod:`smtbx.twinning` computes it and its derivative
row); :func:`refine_inversion_fraction` refines x alone, the model fixed.
"""

from dataclasses import dataclass

import numpy as np

import lstbx
import sftbx
import sgtbx

from .twinning import TwinError, TwinnedIntensities

__all__ = ["FlackEstimate", "friedel_pairs", "parsons_flack", "refine_inversion_fraction"]


@dataclass(frozen=True)
class FlackEstimate:
    """x, its s.u., the number of quotients (or reflections) used, and how."""

    x: float
    su: float
    n_used: int
    method: str

    def cif_details(self):
        """The text SHELXL puts in _refine_ls_abs_structure_details."""
        if self.method == "parsons":
            return (f"Flack x determined using {self.n_used} quotients "
                    "[(I+)-(I-)]/[(I+)+(I-)] (Parsons, Flack and Wagner, Acta Cryst. B69 "
                    "(2013) 249-259).")
        return "Refined as an inversion twin."


def friedel_pairs(space_group, hkl):
    """Indices (i, j) of the reflections whose Friedel mate (or an equivalent
    of it) is also in ``hkl`` (unique reflections, as merged data are), i
    the one listed first.

    Returns
    -------
    plus, minus : int64 (n_pairs,)
    """
    hkl = np.asarray(hkl, dtype=np.int32)
    if len(hkl) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    asu = sgtbx.map_to_asu(space_group, hkl, anomalous=True).hkl.astype(np.int64)
    flipped = sgtbx.map_to_asu(space_group, -hkl, anomalous=True).hkl.astype(np.int64)
    reach = int(max(np.abs(asu).max(), np.abs(flipped).max())) + 1
    base = 2 * reach + 1

    def keys(h):
        return ((h[:, 0] + reach) * base + h[:, 1] + reach) * base + h[:, 2] + reach

    own, mate = keys(asu), keys(flipped)
    order = np.argsort(own, kind="stable")
    j = order[np.minimum(np.searchsorted(own[order], mate), len(own) - 1)]
    i = np.arange(len(hkl))
    pair = (own[j] == mate) & (i < j)
    return i[pair].astype(np.int64), j[pair].astype(np.int64)


def parsons_flack(space_group, hkl, fo_sq, sig_fo_sq, fc_sq_plus, fc_sq_minus):
    """Flack x by Parsons' quotients.

    Parameters
    ----------
    space_group : sgtbx.SpaceGroup
        Must be non-centrosymmetric.
    hkl : int (m, 3)
        Reflections with Friedel pairs kept apart.
    fo_sq, sig_fo_sq : float64 (m,)
    fc_sq_plus : float64 (m,)
        |F(h)|² of the model (x = 0) at ``hkl``.
    fc_sq_minus : float64 (m,)
        |F(−h)|² at ``hkl`` (sftbx ``f_calc_friedel``); checked against
        ``fc_sq_plus`` of the mates.

    Returns
    -------
    FlackEstimate
    """
    if space_group.is_centric:
        raise sgtbx.errors.CrystallographyError("the Flack parameter is undefined in a "
                                                "centrosymmetric space group")
    plus, minus = friedel_pairs(space_group, hkl)
    if len(plus) < 2:
        raise sgtbx.errors.CrystallographyError(f"{len(plus)} Friedel pairs: Parsons' quotients "
                                                "need at least two")
    ip, im = fo_sq[plus], fo_sq[minus]
    sp, sm = sig_fo_sq[plus], sig_fo_sq[minus]
    total = ip + im
    ok = (ip > 3 * sp) & (im > 3 * sm)
    if np.count_nonzero(ok) < 2:
        raise sgtbx.errors.CrystallographyError(
            f"{np.count_nonzero(ok)} of {len(plus)} Friedel pairs have both intensities above "
            "3 sigma: Parsons' quotients need at least two")
    ip, im, sp, sm, total = ip[ok], im[ok], sp[ok], sm[ok], total[ok]
    cp, cm = fc_sq_plus[plus][ok], fc_sq_plus[minus][ok]
    if not np.allclose(cm, fc_sq_minus[plus][ok], rtol=1e-6, atol=1e-9 * cp.max()):
        raise sgtbx.errors.CrystallographyError("fc_sq_minus does not match the Friedel mates "
                                                "in hkl")
    q_o = (ip - im) / total
    q_c = (cp - cm) / (cp + cm)
    var = 4 * ((im * sp) ** 2 + (ip * sm) ** 2) / total ** 4
    w = 1 / var
    slope = np.sum(w * q_o * q_c) / np.sum(w * q_c ** 2)
    x = 0.5 * (1 - slope)
    n = len(q_o)
    chi2 = np.sum(w * (q_o - slope * q_c) ** 2) / (n - 1)
    su = 0.5 / np.sqrt(np.sum(w * q_c ** 2)) * np.sqrt(max(chi2, 1.0))
    return FlackEstimate(float(x), float(su), int(n), "parsons")


def refine_inversion_fraction(calc, fo_sq, weights, x0=0.0, cycles=10):
    """The inversion-twin fraction x with the model fixed, by Gauss–Newton
    (lstbx, separable scale), and its s.u. (GoF²-scaled).

    Parameters
    ----------
    calc : TwinnedIntensities
        With the law −I and two components.
    fo_sq, weights : float64 (m,)
    x0 : float
    cycles : int

    Returns
    -------
    FlackEstimate
    """
    if not isinstance(calc, TwinnedIntensities) or calc.n_components != 2:
        raise TwinError("refine_inversion_fraction: expected a two-component TwinnedIntensities")
    n_atoms = len(calc.sf.scatterers)
    pmap = sftbx.ParameterMap(np.full((n_atoms, len(sftbx.SLOTS)), -1), 1)
    x = np.array([float(x0)])
    for _ in range(cycles):
        y, rows = calc.design_rows(pmap, x, [0])
        ne = lstbx.NormalEquations(1)
        ne.add_block(fo_sq, weights, y, rows)
        ne.finalise()
        shift = ne.solve()
        x = x + shift
        if abs(shift[0]) < 1e-6:
            break
    y, rows = calc.design_rows(pmap, x, [0])
    ne = lstbx.NormalEquations(1)
    ne.add_block(fo_sq, weights, y, rows)
    ne.finalise()
    return FlackEstimate(float(x[0]), float(np.sqrt(ne.covariance()[0, 0])), len(fo_sq),
                         "inversion twin")
