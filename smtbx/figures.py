"""SHELXL's weights and agreement figures (DESIGN.md §5, §7).

With Fo² and σ(Fo²) on the scale of the file, Fc² on the absolute scale and
K the overall scale (Fo² ≈ K Fc², K = osf² from FVAR 1):

* weights, SHELXL's WGHT a b c d e f on the absolute scale, rewritten for
  residuals Fo² − K Fc² on the file's scale:
  w = q / [σ² + (aP)² + K b P + K² (d + e sinθ/λ)],
  P = f max(Fo², 0) + (1 − f) K Fc², q = 1 (c = 0),
  exp(c (sinθ/λ)²) (c > 0) or 1 − exp(c (sinθ/λ)²) (c < 0);
* K for a given model: the least-squares scale, min over K of
  Σ w(K) (Fo² − K Fc²)², the weights taken at K (:func:`separable_scale`),
  as the refinement's separable scale has it; FVAR 1 only starts it;
* R1 = Σ|Fo − √K |Fc|| / Σ Fo, Fo = √max(Fo², 0), over Fo² > 2σ(Fo²)
  ("gt") and over all reflections;
* wR2 = [Σ w (Fo² − K Fc²)² / Σ w Fo⁴]^½;
* GoF = [Σ w (Fo² − K Fc²)² / (n − p)]^½ with p the independent parameters
  plus the scale; restrained GoF = [(Σ w r² + Σ w_r Δ²) / (n + n_r − p)]^½.
  Both need p; without it they are None.
* the factor on the inverse normal matrix behind the published s.u.'s
  (:func:`su_variance_factor`): Σ w r² / (N − p), N the reflections with each
  Friedel pair counted once (:func:`independent_reflections`), restraints in
  neither sum.  This is SHELXL's: it reproduces the s.u.'s of eight
  published SHELXL refinements (tests/smtbx/test_cif.py).
"""

from dataclasses import asdict, dataclass

import numpy as np

from .absolute import friedel_pairs
from .data import reduce_observations
from .reparametrisation import Reparametrisation
from .restraints import ShelxRestraints
from .structure import calculated_intensities


def shelxl_weights(fo_sq, sig_fo_sq, fc_sq, scale, weighting, sin_theta_over_lambda):
    """SHELXL weights for residuals Fo² − K Fc² on the scale of Fo².

    Parameters
    ----------
    fo_sq, sig_fo_sq : float64 (m,)
        On the file's scale.
    fc_sq : float64 (m,)
        Absolute scale.
    scale : float
        K, with Fo² ≈ K Fc² (SHELXL's osf²).
    weighting : model.Weighting
        a, b, c, d, e, f of WGHT.
    sin_theta_over_lambda : float64 (m,)

    Returns
    -------
    float64 (m,)
    """
    wt = weighting
    p = wt.f * np.maximum(fo_sq, 0.0) + (1.0 - wt.f) * scale * fc_sq
    denominator = (sig_fo_sq ** 2 + (wt.a * p) ** 2 + scale * wt.b * p
                   + scale ** 2 * (wt.d + wt.e * sin_theta_over_lambda))
    q = np.ones_like(fo_sq)
    if wt.c > 0:
        q = np.exp(wt.c * sin_theta_over_lambda ** 2)
    elif wt.c < 0:
        q = 1.0 - np.exp(wt.c * sin_theta_over_lambda ** 2)
    return q / denominator


def ls_scale(y_obs, y_calc, weights=None):
    """K minimising Σ w (y_obs − K y_calc)² (1 when y_calc is all zero)."""
    w = np.ones_like(y_obs) if weights is None else weights
    denominator = float(np.sum(w * y_calc * y_calc))
    return float(np.sum(w * y_obs * y_calc)) / denominator if denominator > 0 else 1.0


def separable_scale(y_obs, y_calc, weights_at, k=None, iterations=4):
    """The least-squares scale K of y_obs ≈ K y_calc when the weights
    depend on K (SHELXL's P and b terms), by fixed-point steps from k
    (default: the unweighted K).

    Parameters
    ----------
    y_obs, y_calc : float64 (m,)
    weights_at : callable
        K -> weights float64 (m,).
    k : float, optional
        Starting K (FVAR 1's, for instance).
    iterations : int

    Returns
    -------
    k : float
    weights : float64 (m,)
        At the returned K.
    """
    if k is None or not (np.isfinite(k) and k > 0):
        k = ls_scale(y_obs, y_calc)
    for _ in range(iterations):
        k = ls_scale(y_obs, y_calc, weights_at(k))
    return k, weights_at(k)


@dataclass
class Figures:
    """Agreement figures and the counts behind them.

    Attributes
    ----------
    r1_gt, r1_all, wr2 : float
    gof, restrained_gof : float or None
        None while the parameter count is unknown.
    n_reflections, n_gt : int
    n_parameters : int or None
        Independent parameters + the scale, as SHELXL counts them.
    n_restraints : int or None
    scale : float
        K (Fo² ≈ K Fc²).
    sum_w_r2 : float
        Σ w (Fo² − K Fc²)².
    """

    r1_gt: float
    r1_all: float
    wr2: float
    gof: float | None
    restrained_gof: float | None
    n_reflections: int
    n_gt: int
    n_parameters: int | None
    n_restraints: int | None
    scale: float
    sum_w_r2: float

    def as_dict(self):
        return asdict(self)


def agreement(fo_sq, sig_fo_sq, fc_sq, scale, weights, n_parameters=None, n_restraints=None,
              restraint_chi2=None):
    """R1(gt), R1(all), wR2, GoF and restrained GoF.

    Parameters
    ----------
    fo_sq, sig_fo_sq : float64 (m,)
    fc_sq : float64 (m,)
        Absolute scale.
    scale : float
        K.
    weights : float64 (m,)
        For residuals Fo² − K Fc².
    n_parameters : int, optional
        p, the scale included.
    n_restraints : int, optional
    restraint_chi2 : float, optional
        Σ w_r Δ² of the restraints (0 when there are none).

    Returns
    -------
    Figures
    """
    fo = np.sqrt(np.maximum(fo_sq, 0.0))
    fc = np.sqrt(scale * fc_sq)
    gt = fo_sq > 2 * sig_fo_sq
    diff = np.abs(fo - fc)
    r1_all = diff.sum() / fo.sum()
    r1_gt = diff[gt].sum() / fo[gt].sum() if gt.any() else float("nan")
    residual = fo_sq - scale * fc_sq
    sum_w_r2 = float(np.sum(weights * residual ** 2))
    wr2 = np.sqrt(sum_w_r2 / np.sum(weights * fo_sq ** 2))
    n = len(fo_sq)
    gof = restrained = None
    if n_parameters is not None and n > n_parameters:
        gof = float(np.sqrt(sum_w_r2 / (n - n_parameters)))
        if n_restraints is not None and restraint_chi2 is not None:
            restrained = float(np.sqrt((sum_w_r2 + restraint_chi2) / (n + n_restraints - n_parameters)))
    return Figures(r1_gt=float(r1_gt), r1_all=float(r1_all), wr2=float(wr2), gof=gof,
                   restrained_gof=restrained, n_reflections=n, n_gt=int(gt.sum()),
                   n_parameters=n_parameters, n_restraints=n_restraints, scale=float(scale),
                   sum_w_r2=sum_w_r2)


def independent_reflections(space_group, hkl):
    """The reflections of ``hkl`` with each Friedel pair counted once: m minus
    the pairs (h and −h, or an equivalent of −h) both present.  m itself in
    a centrosymmetric group, or when Friedel pairs were merged.

    Parameters
    ----------
    space_group : sgtbx.SpaceGroup
    hkl : int (m, 3)
        Unique reflections (equivalents merged).
    """
    return len(hkl) - len(friedel_pairs(space_group, hkl)[0])


def su_variance_factor(sum_w_r2, n_independent, n_parameters):
    """The factor on the inverse normal matrix (restraints included) that
    gives the published variances: Σ w (Fo² − K Fc²)² / (N − p).

    N counts a Friedel pair once (:func:`independent_reflections`); p is the
    parameters with the scale.  Neither sum holds the restraints.  Without
    Friedel pairs and restraints this is GoF²; with complete Friedel pairs it
    is about 2 GoF², the s.u.'s √2 larger than GoF² would give.  The residuals
    of Friedel mates are far from independent (correlation 0.42-0.94 on the
    five acentric sets of the shared data: absorption, extinction and the
    model's own errors are nearly the same for h and −h), so the pair
    carries about one reflection's worth of degrees of freedom; SHELXL counts
    it so.  Measured against published SHELXL s.u.'s (median ratio of
    published to (B⁻¹)^½ squared, over coordinates and Uij): sucrose 2.30
    against 2.27 from this rule (GoF² 1.17), bjk 2.58 (2.58; 1.44), sh2185
    2.08 (2.06; 1.13), p31c_sad 2.28 (2.30; restrained GoF² 1.04), ni_i43d
    2.47 (2.48; 1.23), cc_invtwin 2.33 (2.30; 0.97); without Friedel pairs,
    gabipy_c2c 1.04 (1.06; restrained GoF² 0.60) and musc_c2c 1.21 (1.30).

    Parameters
    ----------
    sum_w_r2 : float
    n_independent : int
    n_parameters : int
        The scale included.

    Returns
    -------
    float
        NaN when N ≤ p.
    """
    dof = n_independent - n_parameters
    return float(sum_w_r2) / dof if dof > 0 else float("nan")


def floating_origin_directions(space_group):
    """Directions along which the origin is free (polar space groups): the
    dimension of the subspace every rotation leaves fixed.  SHELXL holds
    each with its floating-origin restraint."""
    if space_group.is_centric:
        return 0
    rotations = np.asarray(space_group.rotations, dtype=np.float64)
    stacked = (rotations - np.eye(3)).reshape(-1, 3)
    return 3 - int(np.linalg.matrix_rank(stacked))


def restraint_count(model, graph=None):
    """The number of restraints as SHELXL counts them: those of
    :class:`smtbx.restraints.ShelxRestraints` (one per generated equation,
    the floating-origin restraints of polar space groups included).

    Parameters
    ----------
    model : Model
    graph : Reparametrisation, optional
        The model's graph, when already built.
    """
    return ShelxRestraints(model, graph or Reparametrisation(model)).n_restraints


def parameter_count(model, graph=None):
    """Independent parameters + the scale, as SHELXL counts them.

    SHELXL counts the free variables that no parameter uses too (they are
    in its matrix, with nothing depending on them): the count is
    ``len(graph.x) + 1 + len(graph.unused_free_variables)`` for the
    model's reparametrisation graph.

    Parameters
    ----------
    model : Model
    graph : Reparametrisation, optional
        The model's graph, when already built.

    Raises
    ------
    InvalidConstraint
        When the model's constraints cannot be built.
    """
    if graph is None:
        graph = Reparametrisation(model)
    return len(graph.x) + 1 + len(graph.unused_free_variables)


def starting_figures(model, data=None, n_threads=1, n_parameters=None, n_restraints=None,
                     restraint_chi2=None):
    """SHELXL's figures for the model as read, before any cycle, at the
    least-squares scale (FVAR 1 starts it; :func:`separable_scale`).

    Parameters
    ----------
    model : Model
        With its observations.
    data : ReflectionData, optional
        Default: ``reduce_observations(model)``.
    n_threads : int
    n_parameters, n_restraints : int, optional
        Default :func:`parameter_count` and :func:`restraint_count`.
    restraint_chi2 : float, optional
        Σ w_r Δ² of the restraints; default from
        :class:`smtbx.restraints.ShelxRestraints` at the model as read.

    Returns
    -------
    figures : Figures
    data : ReflectionData
    fc_sq : float64 (m,)
        Absolute scale.
    weights : float64 (m,)
    """
    data = reduce_observations(model) if data is None else data
    fc_sq = calculated_intensities(model, data, n_threads)
    stol = 0.5 * np.sqrt(model.cell.s_squared(data.hkl))

    def weights_at(k):
        return shelxl_weights(data.fo_sq, data.sig_fo_sq, fc_sq, k, model.instructions.weighting,
                              stol)

    scale, weights = separable_scale(data.fo_sq, fc_sq, weights_at, model.scale ** 2)
    if n_parameters is None or n_restraints is None or restraint_chi2 is None:
        graph = Reparametrisation(model)
        restraints = ShelxRestraints(model, graph)
        if n_parameters is None:
            n_parameters = parameter_count(model, graph)
        if n_restraints is None:
            n_restraints = restraints.n_restraints
        if restraint_chi2 is None:
            restraint_chi2 = restraints.evaluate().chi2
    figures = agreement(data.fo_sq, data.sig_fo_sq, fc_sq, scale, weights, n_parameters,
                        n_restraints, restraint_chi2)
    return figures, data, fc_sq, weights
