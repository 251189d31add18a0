"""The listing (PREFIX.lst) of a refinement: what was refined against what,
each cycle, the final figures, the parameters with their s.u.'s, SHELXL's
analysis of variance and the suggested weights."""

import math

import numpy as np

from .refine import RIDING_MODELS
from .restraints import WEIGHT_RULE


def cycle_header():
    """The column heads of the per-cycle lines (:func:`cycle_line`)."""
    return (" cycle   R1(gt)  R1(all)     wR2    GooF  R.GooF      osf  max s/su  parameter"
            "             mean s/su   damping    time")


def _number(value, spec):
    return f"{'-':>{int(spec.split('.')[0])}}" if value is None or (
        isinstance(value, float) and math.isnan(value)) else format(value, spec)


def cycle_line(cycle):
    """One line per cycle, the figures of the model the cycle started from
    and the shifts it applied (smtbx.refine.Cycle)."""
    notes = []
    if cycle.step_scale < 1:
        notes.append(f"shifts x {cycle.step_scale:.3g} (limit)")
    if cycle.step_length < 1:
        notes.append(f"shifts x {cycle.step_length:.3g} (line search)")
    if cycle.rejected_steps:
        notes.append(f"{cycle.rejected_steps} step(s) taken back")
    return (f"{cycle.number:6d}  {cycle.r1_gt:7.4f}  {cycle.r1_all:7.4f}  {cycle.wr2:6.4f}  "
            f"{_number(cycle.gof, '6.3f')}  {_number(cycle.restrained_gof, '6.3f')}  "
            f"{cycle.osf:7.5g}  {cycle.max_shift_su:8.3f}  {cycle.max_shift_parameter:<20.20s}  "
            f"{cycle.mean_shift_su:8.3f}  {cycle.damping:8.2g}  {cycle.seconds:5.2f}s"
            + ("  " + "; ".join(notes) if notes else ""))


def analysis_of_variance(fo_sq, fc_sq, scale, weights, n_parameters, s_sq, n_batches=10):
    """SHELXL's analysis of variance: goodness of fit and K = <Fo²>/<K Fc²>
    in batches of equal count ordered by Fc/Fc(max), and in resolution
    batches.

    Parameters
    ----------
    fo_sq, fc_sq : float64 (m,)
        File scale and absolute scale.
    scale : float
        K.
    weights : float64 (m,)
    n_parameters : int
    s_sq : float64 (m,)
        1/d².
    n_batches : int

    Returns
    -------
    by_fc, by_resolution : list of (label, count, gof, k)
    """
    m = len(fo_sq)
    factor = m / (m - n_parameters) if m > n_parameters else 1.0
    residual_sq = weights * (fo_sq - scale * fc_sq) ** 2

    def table(order, labels):
        rows = []
        edges = [int(math.ceil(i * m / n_batches)) for i in range(n_batches + 1)]
        for i in range(n_batches):
            batch = order[edges[i]:edges[i + 1]]
            if batch.size == 0:
                continue
            gof = math.sqrt(factor * residual_sq[batch].mean())
            k = float(np.mean(fo_sq[batch]) / np.mean(scale * fc_sq[batch]))
            rows.append((labels(batch), int(batch.size), gof, k))
        return rows

    fc = np.sqrt(np.maximum(fc_sq, 0.0))
    fc_max = fc.max() if fc.size and fc.max() > 0 else 1.0
    by_fc = table(np.argsort(fc, kind="stable"),
                  lambda b: f"Fc/Fc(max) {fc[b].min() / fc_max:.3f}-{fc[b].max() / fc_max:.3f}")
    d = 1 / np.sqrt(np.maximum(s_sq, 1e-300))
    by_d = table(np.argsort(-d, kind="stable"),
                 lambda b: f"d {d[b].max():6.2f}-{d[b].min():.2f} A")
    return by_fc, by_d


def format_lst(model, data, refinement, least_squares, header, warnings=(),
               worst_restraints=()):
    """The listing's text.

    Parameters
    ----------
    model : smtbx.model.Model
        After refinement.
    data : smtbx.data.ReflectionData
    refinement : smtbx.refine.Refinement
    least_squares : smtbx.refine.LeastSquares
    header : str
        First line (program and version).
    warnings : sequence of str
    worst_restraints : sequence of str
        Lines describing the restraints furthest from their targets.

    Returns
    -------
    str
    """
    ls = least_squares
    r = refinement
    f = r.figures
    out = [header, "", f"{model.source}: {model.title}".rstrip(), ""]
    sg = model.space_group
    cell = model.cell
    params = getattr(cell, "parameters", None)
    out.append(f"Space group {sg.xhm or sg.hall}, wavelength {model.wavelength} A"
               + ("" if params is None else ", cell " + " ".join(f"{v:.4f}" for v in params)))
    counts = data.counts
    out.append(f"{counts.get('lines', '?')} reflection lines, {len(data)} unique reflections "
               f"used ({data.n_gt} with Fo > 4sig(Fo))"
               + ("" if data.r_int is None else f", R_int {data.r_int:.4f}"))
    w = model.instructions.weighting
    target = "F^2" if ls.target == "fc_sq" else "F"
    out.append(f"Full-matrix least squares on {target}, overall scale separable; "
               f"WGHT {w.a:.4f} {w.b:.4f}; Marquardt damping {ls.base_damping:.2g} "
               f"(DAMP {ls.base_damping * 1e4:.3g}), shift limit {ls.shift_limit:g} s.u., "
               f"line search along the shifts")
    out.append(f"{ls.n_parameters} parameters, "
               f"{'-' if ls.n_restraints is None else ls.n_restraints} restraints")
    if ls.shelx_restraints is not None and ls.n_restraints:
        out.append(WEIGHT_RULE)
    if ls.graph.has_riding:
        out.append(RIDING_MODELS[ls.riding])
    for warning in warnings:
        out.append(f"warning: {warning}")
    out += ["", cycle_header()]
    out += [cycle_line(c) for c in r.cycles]
    for c in r.cycles:
        if c.message:
            out.append(f"cycle {c.number}: {c.message}")
    out += ["", ("Converged: " if r.converged else "Not converged: ") + (r.reason or "no cycles"), ""]
    out.append(f"R1 = {f.r1_gt:.4f} for {f.n_gt} Fo > 4sig(Fo) and {f.r1_all:.4f} for all "
               f"{f.n_reflections} data")
    out.append(f"wR2 = {f.wr2:.4f}, GooF = S = {_number(f.gof, '.3f')}, "
               f"Restrained GooF = {_number(f.restrained_gof, '.3f')} for all data")
    osf_su = _osf_su(r, ls)
    out.append(f"osf (FVAR 1) = {r.osf:.5f}" + ("" if osf_su is None else f" ({osf_su:.5f})"))
    out.append(f"Max |shift/s.u.| of the last cycle {r.max_shift_su:.3f}")
    out += ["", "Parameters (value, s.u. from the last cycle's inverse normal matrix x "
                "sum w r^2 / (N - p), N counting a Friedel pair once)"]
    su = parameter_sus(r, ls)
    for name, value, s in zip(ls.graph.x_names, ls.graph.x, su):
        out.append(f"  {name:<24s} {value:14.6f} {_number(s, '12.6f')}")
    if f.n_parameters is not None and r.fc_sq is not None and ls.target == "fc_sq":
        by_fc, by_d = analysis_of_variance(data.fo_sq, r.fc_sq, r.osf ** 2, r.weights,
                                           ls.n_parameters, model.cell.s_squared(data.hkl))
        for title, rows in (("Fc/Fc(max)", by_fc), ("resolution", by_d)):
            out += ["", f"Analysis of variance by {title}: K = mean(Fo^2) / mean(Fc^2)"]
            out.append(f"  {'batch':<28s} {'N':>6s} {'GooF':>7s} {'K':>7s}")
            for label, n, gof, k in rows:
                out.append(f"  {label:<28s} {n:6d} {gof:7.3f} {k:7.3f}")
    if worst_restraints:
        out += ["", "Restraints furthest from their targets"] + [f"  {line}" for line in worst_restraints]
    if ls.target == "fc_sq":
        a, b = r.suggested_weighting
        out += ["", f"Recommended weighting scheme: WGHT {a:8.4f} {b:8.4f}"]
    return "\n".join(out) + "\n"


def parameter_sus(refinement, least_squares):
    """s.u.'s of x from the last accepted cycle's equations, scaled as the
    CIF's (:meth:`smtbx.refine.LeastSquares.su_factor`; NaN without degrees
    of freedom)."""
    equations = refinement.equations
    if equations is None:
        return []
    variances = np.diag(equations.covariance(scaled=False)) * least_squares.su_factor(equations)
    return list(np.sqrt(np.maximum(variances, 0.0)))


def _osf_su(refinement, least_squares):
    """s.u. of FVAR 1 (√K for F²: σ(K)/(2√K))."""
    equations = refinement.equations
    if equations is None:
        return None
    variance = equations.scale_factor_variance(scaled=False) * least_squares.su_factor(equations)
    if not math.isfinite(variance):
        return None
    sigma = math.sqrt(max(variance, 0.0))
    return sigma / (2 * math.sqrt(equations.scale_factor())) if least_squares.target == "fc_sq" \
        else sigma
