"""``mmtbx-fmodel MODEL DATA [--json FILE] [--mtz-out FILE] [--twin-law h,-k,-l]``

Reads a model and reflection data, fits bulk solvent and scales, and prints
the data statistics, R-work and R-free (overall and per shell), k_sol/B_sol,
the bin-wise k_mask and, for twins, the twin fraction.  Optionally writes the
figures as JSON and map coefficients (2mFo−DFc, mFo−DFc) as MTZ.
"""

import argparse
import importlib.metadata
import json
import os
import sys
import warnings

import gemmi
import numpy as np
import scipy

from sgtbx import CrystallographyError

from .fmodel import fmodel_from_files
from .io import residues_missing_from_monomer_library
from .maps import write_map_coefficients
from .statistics import data_statistics


def _version_text():
    try:
        ours = importlib.metadata.version("refinetbx")
    except importlib.metadata.PackageNotFoundError:
        ours = "unknown"
    return (f"mmtbx-fmodel (refinetbx {ours}); numpy {np.__version__}, scipy {scipy.__version__}, "
            f"gemmi {gemmi.__version__}")


def add_arguments(parser):
    parser.add_argument("model", help="model file (mmCIF or PDB)")
    parser.add_argument("data", help="reflection file (MTZ or mmCIF structure factors)")
    parser.add_argument("--version", action="version", version=_version_text())
    cols = parser.add_argument_group("data columns (chosen automatically when omitted)")
    cols.add_argument("--labels", metavar="F,SIGF",
                      help="amplitude or intensity column and its sigma, e.g. FP,SIGFP or IMEAN,SIGIMEAN")
    cols.add_argument("--free-label", metavar="LABEL",
                      help="free-flag column (MTZ) or _refln item (mmCIF, e.g. status)")
    cols.add_argument("--free-value", metavar="VALUE",
                      help="the flag value of the free set (detected from the values when omitted)")
    model = parser.add_argument_group("F_model")
    model.add_argument("--twin-law", metavar="h,-k,-l", help="merohedral twin law")
    model.add_argument("--twin-fraction", type=float, metavar="TAU",
                       help="fixed twin fraction (refined when omitted)")
    model.add_argument("--bulk-solvent", choices=("bins", "flat"), default="bins",
                       help="k_mask per resolution bin (default) or k_sol exp(-B_sol s²/4)")
    model.add_argument("--no-outlier-rejection", action="store_true",
                       help="keep every reflection (default: reject as Read 1999)")
    model.add_argument("--monomer-library", metavar="DIR",
                       help="warn about residues without a dictionary in this CCP4-layout library")
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    out.add_argument("--mtz-out", metavar="FILE", help="write map coefficients (FWT, DELFWT) to MTZ")


def _labels(text):
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) not in (2, 4):
        raise CrystallographyError(f"--labels {text!r}: give a value and its sigma (or F+,SIGF+,F-,SIGF-)")
    return parts


def _free_value(text):
    if text is None:
        return None
    return int(text) if text.strip().lstrip("-").isdigit() else text.strip()


def _check_outputs(args):
    inputs = [args.model, args.data]
    for option, path in (("--json", args.json), ("--mtz-out", args.mtz_out)):
        if path is None:
            continue
        for other in inputs:
            if os.path.exists(path) and os.path.samefile(path, other):
                raise CrystallographyError(f"{option} {path} would overwrite an input file")


def _fmt(value):
    return "     -" if value is None else f"{value:.4f}"


def _json_ready(value):
    """NaN → None, NumPy scalars → Python, recursively."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _report(summary, data, stats, missing, out):
    for name in missing:
        print(f"warning: residue {name} has no dictionary in the monomer library", file=out)
    print(f"Data: {data.source}  columns {data.columns}", file=out)
    ff = data.free_flags
    print(f"  free flags: {ff.column or 'none'} ({ff.convention}, free = {ff.free_value!r}), "
          f"{ff.n_free} free", file=out)
    print(f"  {stats['n_reflections']} reflections, {stats['d_max']:.2f}-{stats['d_min']:.2f} Å, "
          f"completeness {stats['completeness']:.3f}, <I/sigma(I)> {stats['mean_i_over_sigma']:.1f}, "
          f"Wilson B {stats['wilson_b'] if stats['wilson_b'] is None else round(stats['wilson_b'], 1)} Å²",
          file=out)
    if data.n_rejected or data.n_merged:
        print(f"  {data.n_rejected} rows without data or rejected by French-Wilson, "
              f"{data.n_merged} merged (Friedel mates, anomalous pairs)", file=out)
    print(f"F_model: k_sol {summary['k_sol']:.3f} e/Å³, B_sol {summary['b_sol']:.1f} Å² "
          f"({summary['bulk_solvent']}), {summary['n_outliers']} outliers rejected", file=out)
    if summary["b_cart"] is not None:
        print("  overall anisotropic B_cart (11,22,33,12,13,23): "
              + " ".join(f"{b:.2f}" for b in summary["b_cart"]), file=out)
    if summary["twin_fraction"] is not None:
        print(f"  twin fraction {summary['twin_fraction']:.3f}", file=out)
    print("   d_max   d_min  k_mask   k_iso", file=out)
    for row in summary["k_mask_bins"]:
        print(f"  {row['d_max']:6.2f}  {row['d_min']:6.2f}  {row['k_mask']:6.3f}  {row['k_iso']:6.3f}",
              file=out)
    print(f"R-work {summary['r_work']:.4f}  R-free {summary['r_free']:.4f}  "
          f"(n_work {summary['n_work']}, n_free {summary['n_free']}, d_min {summary['d_min']:.2f} Å)",
          file=out)
    print("   d_max   d_min  n_work n_free  R-work  R-free", file=out)
    for row in summary["shells"]:
        print(f"  {row['d_max']:6.2f}  {row['d_min']:6.2f}  {row['n_work']:6d} {row['n_free']:6d}  "
              f"{_fmt(row['r_work'])}  {_fmt(row['r_free'])}", file=out)
    if "sigma_a_bins" in summary:
        print(f"ML: mean figure of merit (work) {summary['mean_fom']:.3f}; sigmaA per bin "
              + " ".join(f"{row['sigma_a']:.2f}" for row in summary["sigma_a_bins"]), file=out)


def main(args):
    """Run the command; returns the exit code (0, or 2 after a one-line error)."""
    try:
        _check_outputs(args)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fmodel, data, structure = fmodel_from_files(
                args.model, args.data, labels=_labels(args.labels), free_label=args.free_label,
                free_value=_free_value(args.free_value), twin_law=args.twin_law,
                twin_fraction=args.twin_fraction, bulk_solvent=args.bulk_solvent,
                remove_outliers=not args.no_outlier_rejection)
            stats = data_statistics(data, structure)
            summary = fmodel.summary()
            summary["shells"] = fmodel.r_factor_shells()
            summary["data"] = stats
            summary["free_flags"] = dict(column=data.free_flags.column,
                                         convention=data.free_flags.convention,
                                         free_value=data.free_flags.free_value)
            summary["columns"] = {k: list(v) for k, v in data.columns.items()}
            if fmodel.twin_law is None:
                ab = fmodel.alpha_beta()
                summary["sigma_a_bins"] = [dict(d_max=float(a), d_min=float(b), alpha=float(al),
                                                beta=float(be), sigma_a=float(sa),
                                                from_free=bool(ff))
                                           for (a, b), al, be, sa, ff in zip(
                                               ab.d_bins, ab.alpha_bins, ab.beta_bins,
                                               ab.sigma_a_bins, ab.from_free)]
                summary["mean_fom"] = float(np.mean(fmodel.figures_of_merit()[fmodel.work]))
        missing = []
        if args.monomer_library:
            missing = residues_missing_from_monomer_library(structure, args.monomer_library)
            summary["residues_without_dictionary"] = missing
        _report(summary, data, stats, missing, sys.stdout)
        if args.mtz_out:
            if fmodel.twin_law is not None:
                print("note: map coefficients are not written for twinned data", file=sys.stdout)
            else:
                hkl, two, diff, fom = fmodel.map_coefficients()
                write_map_coefficients(args.mtz_out, data.unit_cell, data.space_group, hkl, two,
                                       diff, fom, protect=(args.model, args.data))
                print(f"map coefficients written to {args.mtz_out}")
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(_json_ready(summary), handle, indent=1)
        return 0
    except (CrystallographyError, OSError) as exc:
        print(f"mmtbx-fmodel: error: {exc}", file=sys.stderr)
        return 2


def main_cli(argv=None):
    parser = argparse.ArgumentParser(prog="mmtbx-fmodel", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args(argv)))


if __name__ == "__main__":
    main_cli()
