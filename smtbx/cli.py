"""smtbx-refine NAME: refine NAME.ins (or NAME.res) against NAME.hkl as SHELXL does.

The number of cycles is L.S. of the file unless ``--cycles N`` says
otherwise.  Each cycle is printed as it ends; at the end come SHELXL's
figures, the suggested weights and PREFIX.res, PREFIX.lst, PREFIX.cif and
PREFIX.fcf (PREFIX from ``--out``), all replaced atomically.  ``--cycles 0``
evaluates the model as read and writes nothing but ``--json``.

The publication outputs (:func:`publication`):

* PREFIX.cif: s.u.'s from the final Var(x) through the constraints, the
  bond, angle and torsion tables (always: the CIF check requires them;
  measurements involving H only with ``BOND $H``, as SHELXL's BOND),
  Flack x for non-centrosymmetric structures (Parsons' quotients; the
  BASF of an inversion twin, TWIN −1 0 0 0 −1 0 0 0 −1 2; none for other
  twins), EXTI with its s.u., the residual density of the difference map, the
  final .res and the .hkl; it passes :func:`smtbx.cif.check_cif`;
* PREFIX.fcf: LIST 6 when the file says LIST 6, LIST 4 otherwise;
* the .res gets SHELXL's tail after END: the suggested WGHT, the
  residual-density REM line and the Q peaks (PLAN n, default 20), each
  moved to its symmetry image nearest to an atom.

For twinned data and EXTI the difference map and LIST 6 use Fo² detwinned
and corrected for extinction as SHELXL does it: Fo² |F(h)|² / Fc²(model).

``smtbx-refine --demo`` refines a model shipped with the package against
data simulated from it.

Every error in the input ends the command with one line on stderr,
``file:line: problem``, and exit code 2; a refinement that diverges ends it
with a message naming the atom and exit code 1.  Nothing is written then.
"""

import argparse
from dataclasses import dataclass
import json
import math
import os
import sys
from importlib import metadata

import gemmi
import numpy as np
import scipy

from sgtbx.errors import CrystallographyError

import sftbx

from .absolute import FlackEstimate, parsons_flack
from .cif import (RefinementSummary, atom_sites, check_cif, cif_document, format_su,
                  y_covariance)
from .connectivity import Connectivity
from .errors import OutputError, ShelxSyntaxError
from .fcf import fcf_document
from .figures import starting_figures
from .geometry import DerivedGeometry, angle_table, bond_table, torsion_table
from .lst import cycle_header, cycle_line, format_lst
from .output import stage_text
from .refine import RIDING, RIDING_MODELS, LeastSquares, RefinementDiverged
from .restraints import WEIGHT_RULE
from .shelx import format_res, read_shelx
from .structure import dispersion, structure_factors
from .twinning import twin_fractions_su

PROG = "smtbx-refine"


def _version():
    try:
        toolkit = metadata.version("refinetbx")
    except metadata.PackageNotFoundError:
        toolkit = "unknown"
    return (f"{PROG} (refinetbx {toolkit}) with numpy {np.__version__}, scipy {scipy.__version__}, "
            f"gemmi {gemmi.__version__}")


def add_arguments(parser):
    """The command's options, in argument groups."""
    parser.add_argument("name", metavar="NAME", nargs="?",
                        help="reads NAME.ins (or NAME.res when there is no .ins) and NAME.hkl")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--demo", action="store_true",
                        help="refine a model shipped with the package against data simulated "
                             "from it (fixed seed), from a perturbed start")
    refine = parser.add_argument_group("refinement")
    refine.add_argument("--cycles", type=int, default=None, metavar="N",
                        help="least-squares cycles (default: L.S. of the file); 0 evaluates "
                             "the model as read and writes only --json")
    refine.add_argument("--target", choices=("F2", "F"), default="F2",
                        help="refine on F^2 with SHELXL's weights (default) or on F with "
                             "weights 1/sigma(F)^2")
    refine.add_argument("--riding", choices=RIDING, default="shelxl",
                        help="riding hydrogen atoms: SHELXL's riding model (default; they "
                             "move with their pivots within a cycle and the cycles converge "
                             "to SHELXL's model) or exact derivatives through their geometry")
    compute = parser.add_argument_group("computation")
    compute.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), metavar="N",
                         help="threads for the structure factors (default 2)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", metavar="PREFIX",
                        help="write PREFIX.res, PREFIX.lst, PREFIX.cif and PREFIX.fcf (default: "
                             "NAME for NAME.ins, NAME_refined for NAME.res)")
    output.add_argument("--json", metavar="FILE",
                        help="write the figures and counts to FILE (JSON), replacing it atomically")
    output.add_argument("--quiet", action="store_true",
                        help="print nothing on success (warnings and the figures are not shown)")


def _format(value, digits=4):
    return "–" if value is None else f"{value:.{digits}f}"


def _report(model, figures, data, out):
    ins = model.instructions
    counts = data.counts
    _, _, sources = dispersion(model)
    print(f"{model.source}: {model.title}".rstrip(), file=out)
    print(f"  space group {model.space_group.xhm or model.space_group.hall}, "
          f"{len(model.scatterers)} atoms, wavelength {model.wavelength} Å", file=out)
    print("  f', f'': " + ", ".join(f"{t.label} {source}"
                                    for t, source in zip(model.scattering_types, sources)), file=out)
    if data.hklf == 5:
        print(f"  HKLF 5: {counts['lines']} lines, {counts['absent']} absent component lines, "
              f"{counts['absent_groups']} groups with all components absent dropped, "
              f"{counts['unique']} measured reflections", file=out)
    else:
        merged = ("not merged (MERG 0)" if ins.merg == 0 else
                  f"merged, R_int {data.r_int:.4f}, Friedel pairs "
                  f"{'kept apart' if data.anomalous else 'merged'}")
        print(f"  HKLF 4: {counts['lines']} lines, {counts['outside_resolution']} outside the "
              f"resolution limits, {counts['absent']} systematically absent, {merged}, "
              f"{counts['omitted']} omitted (OMIT h k l): {counts['unique']} reflections, "
              f"{counts['raised']} with Fo^2 < -sigma raised to -sigma", file=out)
    extras = []
    if ins.exti:
        extras.append(f"EXTI {ins.exti}")
    if ins.twin is not None or data.hklf == 5:
        extras.append("BASF " + " ".join(f"{b}" for b in ins.basf))
    w = ins.weighting
    print(f"  least-squares scale K = {figures.scale:.6g}, osf = {figures.scale ** 0.5:.5f} "
          f"(FVAR 1 = {model.scale}), WGHT {w.a} {w.b}"
          + "".join(", " + e for e in extras), file=out)
    print(f"R1 = {_format(figures.r1_gt)} for {figures.n_gt} Fo > 4sig(Fo) and "
          f"{_format(figures.r1_all)} for all {figures.n_reflections} data", file=out)
    print(f"wR2 = {_format(figures.wr2)}, GooF = S = {_format(figures.gof, 3)}, "
          f"Restrained GooF = {_format(figures.restrained_gof, 3)} for all data", file=out)
    n_par = "–" if figures.n_parameters is None else figures.n_parameters
    n_res = "–" if figures.n_restraints is None else figures.n_restraints
    print(f"{n_par} parameters, {n_res} restraints"
          + (" (parameters not counted: the constraint graph is not connected yet)"
             if figures.n_parameters is None else ""), file=out)


def _result(args, model, figures, data):
    result = figures.as_dict()
    result.update(
        cycles=args.cycles, model=model.source, r_int=data.r_int, counts=dict(data.counts),
        hklf=data.hklf, friedel_pairs_merged=not data.anomalous,
        warnings=[str(w) for w in model.warnings])
    return result


def _check_output(path, inputs):
    target = os.path.abspath(path)
    if os.path.exists(target) and any(os.path.exists(p) and os.path.samefile(p, target)
                                       for p in inputs):
        raise OutputError(f"{path}: would overwrite an input file")
    return target


def _stage(path, text, inputs):
    """Write ``text`` to a temporary file beside ``path``; returns (tmp, target)."""
    target = _check_output(path, inputs)
    return stage_text(target, text), target


def _write_all(outputs, inputs):
    """Write every (path, text) atomically: all are staged first, then
    renamed; on an error nothing is replaced."""
    staged = []
    try:
        for path, text in outputs:
            staged.append(_stage(path, text, inputs))
    except BaseException:
        for tmp, _ in staged:
            os.unlink(tmp)
        raise
    for tmp, target in staged:
        os.replace(tmp, target)


def _json_text(result):
    return json.dumps(result, indent=2) + "\n"


def _default_prefix(source):
    stem, ext = os.path.splitext(source)
    return stem + "_refined" if ext.lower() == ".res" else stem


def res_text(model, refinement, publication=None):
    """The .res text: the refined model (FVAR 1 = osf), SHELXL's REM lines
    with the figures before END, the suggested WGHT after it, then (with a
    :class:`Publication`) the residual density and the Q peaks, laid out as
    SHELXL's .res files have them."""
    text = format_res(model)
    f = refinement.figures
    rem = [f"REM R1 = {f.r1_gt:7.4f} for {f.n_gt:7d} Fo > 4sig(Fo) and {f.r1_all:7.4f} for all "
           f"{f.n_reflections:7d} data",
           f"REM {f.n_parameters:6d} parameters refined using "
           f"{'-' if f.n_restraints is None else f.n_restraints} restraints"]
    head, end, _ = text.rpartition("END\n")
    if not end:
        raise OutputError(f"{model.source}: the .res text has no END line")
    text = head + "\n".join(rem) + "\n\nEND\n"
    a, b = refinement.suggested_weighting
    if np.isfinite(a):
        text += f"\nWGHT {a:11.4f} {b:11.4f}\n"
    if publication is not None:
        d = publication.density
        text += (f"\nREM Highest difference peak {d['max']:6.3f},  deepest hole {d['min']:6.3f},"
                 f"  1-sigma level {d['rms']:6.3f}\n")
        text += "".join(line + "\n" for line in publication.q_peaks)
    return text


@dataclass
class Publication:
    """What the command writes besides the .res and .lst (:func:`publication`).

    Attributes
    ----------
    summary : smtbx.cif.RefinementSummary
    sites : smtbx.cif.AtomSites
    bonds, angles, torsions : lists of smtbx.geometry.Measurement
    density : dict
        max, min, rms (e Å⁻³) of the difference map, max_site, min_site.
    q_peaks : list of str
        The .res lines.
    twin_fractions : list of (float, float)
        Each component's fraction and s.u. (empty for untwinned data).
    extinction : (float, float) or None
    flack : smtbx.absolute.FlackEstimate or None
    list_code : int
        4 or 6.
    fcf_text : str
    """

    summary: object
    sites: object
    bonds: list
    angles: list
    torsions: list
    density: dict
    q_peaks: list
    twin_fractions: list
    extinction: tuple | None
    flack: object
    list_code: int
    fcf_text: str = ""


def _instruction(model, name):
    """The numeric arguments of the last ``name`` instruction, or None when
    the file has none."""
    found = None
    for raw in model.instructions.other:
        if raw.name.upper() == name:
            found = []
            for word in raw.args:
                try:
                    found.append(float(word))
                except (TypeError, ValueError):
                    break
    return found


def _geometry_filter(model, hydrogen):
    """SHELXL's BOND: measurements involving hydrogen atoms only with
    ``BOND $H``.  The tables are always written (ACTA implies BOND, and the
    CIF check requires the bond, angle and torsion loops)."""
    with_h = any(raw.name.upper() == "BOND" and any(str(w).upper() == "$H" for w in raw.args)
                 for raw in model.instructions.other)

    def keep(measurements):
        if with_h:
            return measurements
        return [m for m in measurements if not any(hydrogen[r.index] for r in m.atoms)]

    return keep


def _is_inversion_twin(model, data):
    twin = model.instructions.twin
    return (twin is not None and data.hklf == 4 and twin.n_components == 2
            and np.array_equal(np.asarray(twin.matrix, dtype=np.float64), -np.eye(3)))


def publication(model, least_squares, refinement, name, n_threads=1):
    """s.u.'s, geometry, Flack, difference map, Q peaks and the .fcf of a
    finished refinement (the module docstring says what and how).

    Parameters
    ----------
    model : smtbx.model.Model
        Holding the refined values.
    least_squares : smtbx.refine.LeastSquares
    refinement : smtbx.refine.Refinement
    name : str
        CIF data block name.
    n_threads : int

    Returns
    -------
    Publication
    """
    graph, data = least_squares.graph, least_squares.data
    cov = least_squares.su_covariance(refinement.equations)
    sites = atom_sites(model, graph, cov)
    geometry = DerivedGeometry(model.cell, sites.sites_frac,
                               graph.jacobian[graph.site_index.ravel()], cov,
                               labels=sites.labels, space_group=model.space_group)
    connectivity = Connectivity(model)
    keep = _geometry_filter(model, connectivity.hydrogen)
    bonds = keep(bond_table(geometry, connectivity))
    angles = keep(angle_table(geometry, connectivity))
    torsions = keep(torsion_table(geometry, connectivity))

    k_sq = refinement.osf ** 2                   # Fo² ≈ K Fc²
    fc_sq_model = refinement.fc_sq if least_squares.target == "fc_sq" else refinement.fc_sq ** 2
    sf = structure_factors(model, data.hkl, n_threads)
    f_calc = sf.f_calc()
    plain = np.abs(f_calc) ** 2
    # detwinned and extinction-corrected Fo² (SHELXL's Fo² |F|² / Fc²)
    ratio = np.divide(plain, fc_sq_model, out=np.ones_like(plain), where=fc_sq_model > 0)
    fo_sq, sig_fo_sq = data.fo_sq * ratio, data.sig_fo_sq * ratio
    diff = sftbx.difference_map(model.cell, model.space_group, data.hkl, fo_sq, f_calc, k_sq)
    plan = _instruction(model, "PLAN")
    n_peaks = int(abs(plan[0])) if plan else 20
    peaks = diff.peaks(max(n_peaks, 1))
    holes = diff.holes(1)
    moved, _, _ = sftbx.move_near_atoms(peaks[:n_peaks], model.sites_frac, model.cell,
                                        model.space_group)
    density = dict(max=peaks[0].height if peaks else 0.0, min=holes[0].height if holes else 0.0,
                   rms=diff.rms,
                   max_site=peaks[0].site_frac.tolist() if peaks else None,
                   min_site=holes[0].site_frac.tolist() if holes else None)

    basf_index = graph.basf_index
    twin_fractions = []
    if least_squares.twin is not None:
        fractions, sus = twin_fractions_su(graph.y[basf_index],
                                           y_covariance(graph.jacobian, cov, basf_index))
        twin_fractions = [(float(f), float(u)) for f, u in zip(fractions, sus)]
    extinction = None
    e = graph.extinction_index
    if e >= 0:
        extinction = (float(graph.y[e]),
                      float(np.sqrt(max(y_covariance(graph.jacobian, cov, [e])[0, 0], 0.0))))
    flack = None
    if not model.space_group.is_centric:
        if _is_inversion_twin(model, data):
            flack = FlackEstimate(twin_fractions[1][0], twin_fractions[1][1], len(data.hkl),
                                  "inversion twin")
        elif least_squares.twin is None:
            try:
                flack = parsons_flack(model.space_group, data.hkl, data.fo_sq, data.sig_fo_sq,
                                      plain, np.abs(sf.f_calc_friedel()) ** 2)
            except CrystallographyError:
                flack = None        # Friedel pairs merged or too weak: no estimate

    gt = data.fo_sq > 2 * data.sig_fo_sq
    y_obs, w, k = least_squares.y_obs, refinement.weights, least_squares.k
    wr2_gt = float(np.sqrt(np.sum(w[gt] * (y_obs[gt] - k * refinement.fc_sq[gt]) ** 2)
                           / np.sum(w[gt] * y_obs[gt] ** 2))) if gt.any() else math.nan
    theta = np.degrees(np.arcsin(np.minimum(
        0.5 * model.wavelength * np.sqrt(model.cell.s_squared(data.hkl)), 1.0)))
    f = refinement.figures
    last = refinement.cycles[-1]
    weighting = model.instructions.weighting
    extra = {}
    if least_squares.target == "fc":
        extra["_refine_ls_structure_factor_coef"] = "Fobs"
        extra["_refine_ls_weighting_details"] = "w=1/[\\s^2^(Fo)]"
    summary = RefinementSummary(
        r1_gt=f.r1_gt, r1_all=f.r1_all, wr2_ref=f.wr2, wr2_gt=wr2_gt, gof=f.gof,
        restrained_gof=f.restrained_gof, n_reflections=f.n_reflections, n_gt=f.n_gt,
        n_parameters=least_squares.n_parameters, n_restraints=f.n_restraints or 0,
        weighting_a=weighting.a, weighting_b=weighting.b, shift_su_max=last.max_shift_su,
        shift_su_mean=last.mean_shift_su, diff_density_max=density["max"],
        diff_density_min=density["min"], diff_density_rms=density["rms"],
        wavelength=model.wavelength, theta_min=float(theta.min()), theta_max=float(theta.max()),
        extinction=extinction, flack=flack, twin_fractions=twin_fractions, extra=extra)
    list_code = 6 if (_instruction(model, "LIST") or [4])[0] == 6 else 4
    if list_code == 4:
        fcf = fcf_document(4, name, model.cell, model.space_group, data.hkl, data.fo_sq,
                           data.sig_fo_sq, np.sqrt(fc_sq_model).astype(np.complex128), k_sq)
    else:
        fcf = fcf_document(6, name, model.cell, model.space_group, data.hkl, fo_sq, sig_fo_sq,
                           f_calc, k_sq)
    return Publication(summary=summary, sites=sites, bonds=bonds, angles=angles,
                       torsions=torsions, density=density, q_peaks=sftbx.q_peak_lines(moved, model.cell, model.space_group),
                       twin_fractions=twin_fractions, extinction=extinction, flack=flack,
                       list_code=list_code, fcf_text=fcf.as_string())


def cif_text(model, publication, name, res, hkl):
    """The CIF of a :class:`Publication`, checked (OutputError naming the
    items that fail :func:`smtbx.cif.check_cif`)."""
    doc = cif_document(name, model.cell, model.space_group, publication.sites,
                       publication.summary, publication.bonds, publication.angles,
                       publication.torsions, res_text=res, hkl_text=hkl)
    problems = check_cif(doc.sole_block())
    if problems:
        raise OutputError(f"{name}.cif: the CIF fails its check: " + "; ".join(problems))
    return doc.as_string()


def _publication_result(publication):
    def pair(value):
        return None if value is None else dict(value=value[0], su=value[1])

    flack = publication.flack
    return dict(
        twin_fractions=[pair(v) for v in publication.twin_fractions],
        extinction=pair(publication.extinction),
        flack=None if flack is None else dict(value=flack.x, su=flack.su, method=flack.method,
                                              n_used=flack.n_used),
        residual_density=dict(publication.density), fcf_list_code=publication.list_code)


def _refinement_result(args, model, data, least_squares, refinement):
    f = refinement.figures
    return dict(
        r1_gt=f.r1_gt, r1_all=f.r1_all, wr2=f.wr2, gof=f.gof, restrained_gof=f.restrained_gof,
        n_reflections=f.n_reflections, n_gt=f.n_gt, n_parameters=least_squares.n_parameters,
        n_restraints=f.n_restraints, cycles=len(refinement.cycles),
        converged=refinement.converged, max_shift_su=refinement.max_shift_su,
        osf=refinement.osf, suggested_wght=list(refinement.suggested_weighting),
        target=least_squares.target, reason=refinement.reason, model=model.source,
        r_int=data.r_int, counts=dict(data.counts), hklf=data.hklf,
        friedel_pairs_merged=not data.anomalous,
        warnings=[str(w) for w in model.warnings] + _refined_npd(least_squares))


def _refined_npd(least_squares):
    """Warnings for the atoms whose refined U is not positive definite, as
    SHELXL flags them in its listing."""
    final = least_squares.sf.scatterers
    return [f"atom {final.labels[i]}: its refined U is not positive definite (NPD)"
            for i in np.flatnonzero(final.non_positive_definite())]


def _final_report(model, refinement, out, prefix=None, publication=None):
    f = refinement.figures
    state = "converged" if refinement.converged else "not converged"
    print(f"{len(refinement.cycles)} cycles, {state}: {refinement.reason}", file=out)
    print(f"R1 = {_format(f.r1_gt)} for {f.n_gt} Fo > 4sig(Fo) and {_format(f.r1_all)} for all "
          f"{f.n_reflections} data", file=out)
    print(f"wR2 = {_format(f.wr2)}, GooF = S = {_format(f.gof, 3)}, "
          f"Restrained GooF = {_format(f.restrained_gof, 3)} for all data", file=out)
    n_res = "–" if f.n_restraints is None else f.n_restraints
    print(f"{f.n_parameters} parameters, {n_res} restraints, osf {refinement.osf:.5f}, "
          f"max |shift/s.u.| {refinement.max_shift_su:.3f}", file=out)
    a, b = refinement.suggested_weighting
    if np.isfinite(a):
        print(f"Suggested weights: WGHT {a:.4f} {b:.4f}", file=out)
    if publication is not None:
        p = publication
        if p.twin_fractions:
            print("Twin fractions: " + ", ".join(format_su(v, u) for v, u in p.twin_fractions),
                  file=out)
        if p.extinction is not None:
            print(f"EXTI {format_su(*p.extinction)}", file=out)
        if p.flack is not None:
            print(f"Flack x = {format_su(p.flack.x, p.flack.su)} ({p.flack.method})", file=out)
        d = p.density
        print(f"Highest difference peak {d['max']:.3f}, deepest hole {d['min']:.3f}, "
              f"1-sigma level {d['rms']:.3f} e/A^3", file=out)
    if prefix is not None:
        print(f"wrote {prefix}.res, {prefix}.lst, {prefix}.cif and {prefix}.fcf", file=out)


def _worst_restraints(least_squares, n_worst=3):
    """Lines with the rmsd and the worst restraints of each kind."""
    restraints = least_squares.shelx_restraints
    if restraints is None or not restraints.terms:
        return []
    return restraints.format_statistics(n_worst).splitlines()[1:]


def _warn(warnings):
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def main(args):
    """Run the command for parsed arguments; errors propagate as exceptions.

    Returns
    -------
    int
        The exit code (0).
    """
    if args.threads < 1:
        raise OutputError(f"--threads {args.threads}: expected at least 1")
    if args.demo:
        from .demo import run_demo
        return run_demo(n_threads=args.threads, quiet=args.quiet)
    if args.name is None:
        raise OutputError("NAME is required (or --demo)")
    if args.cycles is not None and args.cycles < 0:
        raise OutputError(f"--cycles {args.cycles}: expected 0 or more")
    model = read_shelx(args.name)
    stem = os.path.splitext(model.source)[0]
    inputs = [model.source, stem + ".hkl"]
    cycles = model.instructions.cycles if args.cycles is None else args.cycles
    if cycles == 0:
        figures, data, _, _ = starting_figures(model, n_threads=args.threads)
        result = _result(args, model, figures, data)
        result.update(cycles=0, converged=None, max_shift_su=None, osf=figures.scale ** 0.5)
        if args.json:
            _write_all([(args.json, _json_text(result))], inputs)
        if not args.quiet:
            _warn(model.warnings)
            _report(model, figures, data, sys.stdout)
        return 0
    prefix = args.out if args.out else _default_prefix(model.source)
    suffixes = (".res", ".lst", ".cif", ".fcf")
    for path in tuple(prefix + x for x in suffixes) + ((args.json,) if args.json else ()):
        _check_output(path, inputs)
    target = "fc_sq" if args.target == "F2" else "fc"
    least_squares = LeastSquares(model, target=target, n_threads=args.threads,
                                 riding=args.riding)
    if not args.quiet:
        _warn(model.warnings)
        if least_squares.shelx_restraints is not None and least_squares.n_restraints:
            print(f"{least_squares.n_restraints} restraints; {WEIGHT_RULE}")
        if least_squares.graph.has_riding:
            print(RIDING_MODELS[args.riding])
        print(cycle_header(), flush=True)

    def progress(cycle):
        if not args.quiet:
            print(cycle_line(cycle), flush=True)

    refinement = least_squares.run(cycles, progress)
    data = least_squares.data
    result = _refinement_result(args, model, data, least_squares, refinement)
    name = os.path.basename(prefix)
    published = publication(model, least_squares, refinement, name, args.threads)
    result.update(_publication_result(published))
    worst = _worst_restraints(least_squares)
    npd = _refined_npd(least_squares)
    res = res_text(model, refinement, published)
    with open(inputs[1], encoding="latin-1", newline=None) as handle:
        hkl = handle.read()
    outputs = [(prefix + ".res", res),
               (prefix + ".lst", format_lst(model, data, refinement, least_squares, _version(),
                                            [str(w) for w in model.warnings] + npd, worst)),
               (prefix + ".cif", cif_text(model, published, name, res, hkl)),
               (prefix + ".fcf", published.fcf_text)]
    if args.json:
        outputs.append((args.json, _json_text(result)))
    _write_all(outputs, inputs)
    if not args.quiet:
        _warn(npd)
        if refinement.blocked_atom:
            _warn([f"{refinement.blocked_atom}: the undamped shifts would make its U "
                   "non-positive definite; the refinement settled with damped shifts"])
        _final_report(model, refinement, sys.stdout, prefix, published)
        if worst:
            print("Restraints furthest from their targets:")
            for line in worst:
                print(f"  {line}")
    return 0


def main_cli(argv=None):
    """Entry point: parse ``argv``, run, and turn every input error into one
    line on stderr and exit code 2."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return main(args)
    except RefinementDiverged as err:
        print(f"{args.name or 'demo'}: {err}".replace("\n", " "), file=sys.stderr)
        return 1
    except ShelxSyntaxError as err:
        message = str(err)
    except CrystallographyError as err:
        message = f"{args.name}: {err}"
    except OSError as err:
        message = f"{err.filename or args.name}: {err.strerror or err}"
    print(message.replace("\n", " "), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main_cli())
