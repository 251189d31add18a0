"""smtbx-refine NAME: SHELXL's figures for NAME.ins (or NAME.res) against NAME.hkl.

With ``--cycles 0`` (the only mode until the refinement lands) the model is
evaluated as read: the data are reduced as SHELXL reduces them and R1, wR2
and the goodness of fit are printed with the counts of reflections,
parameters and restraints; ``--json FILE`` writes them too.

Every error in the input ends the command with one line on stderr,
``file:line: problem``, and exit code 2; nothing is written then.
"""

import argparse
import json
import os
import sys
import tempfile
from importlib import metadata

import gemmi
import numpy as np
import scipy

from sgtbx.errors import CrystallographyError

from .errors import OutputError, ShelxSyntaxError
from .figures import starting_figures
from .shelx import read_shelx
from .structure import dispersion

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
    parser.add_argument("name", metavar="NAME",
                        help="reads NAME.ins (or NAME.res when there is no .ins) and NAME.hkl")
    parser.add_argument("--version", action="version", version=_version())
    refine = parser.add_argument_group("refinement")
    refine.add_argument("--cycles", type=int, default=0, metavar="N",
                        help="least-squares cycles; only 0 (evaluate the model as read) is "
                             "available yet (default 0)")
    compute = parser.add_argument_group("computation")
    compute.add_argument("--threads", type=int, default=os.cpu_count() or 1, metavar="N",
                         help="threads for the structure factors (default: all cores)")
    output = parser.add_argument_group("output")
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
              f"{counts['omitted']} omitted (OMIT h k l): {counts['unique']} reflections", file=out)
    extras = []
    if ins.exti:
        extras.append(f"EXTI {ins.exti}")
    if ins.twin is not None or data.hklf == 5:
        extras.append("BASF " + " ".join(f"{b}" for b in ins.basf))
    w = ins.weighting
    print(f"  scale K = osf² = {figures.scale:.6g} (FVAR 1 = {model.scale}), WGHT {w.a} {w.b}"
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


def _write_json(path, result, inputs):
    target = os.path.abspath(path)
    if os.path.exists(target) and any(os.path.exists(p) and os.path.samefile(p, target) for p in inputs):
        raise OutputError(f"{path}: would overwrite an input file")
    directory = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".smtbx-", suffix=".json", dir=directory)
    except OSError as err:
        raise OutputError(f"{path}: cannot write: {err.strerror}") from None
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(result, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def main(args):
    """Run the command for parsed arguments; errors propagate as exceptions.

    Returns
    -------
    int
        The exit code (0).
    """
    if args.cycles != 0:
        raise OutputError(f"--cycles {args.cycles}: refinement is not available yet; "
                          "use --cycles 0 to evaluate the model as read")
    if args.threads < 1:
        raise OutputError(f"--threads {args.threads}: expected at least 1")
    model = read_shelx(args.name)
    figures, data, _, _ = starting_figures(model, n_threads=args.threads)
    result = _result(args, model, figures, data)
    if args.json:
        stem = os.path.splitext(model.source)[0]
        _write_json(args.json, result, [model.source, stem + ".hkl"])
    if not args.quiet:
        for warning in model.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        _report(model, figures, data, sys.stdout)
    return 0


def main_cli(argv=None):
    """Entry point: parse ``argv``, run, and turn every input error into one
    line on stderr and exit code 2."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return main(args)
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
