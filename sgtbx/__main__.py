"""A tour of sgtbx: ``python -m sgtbx SYMBOL [--cell ...] [--site ...] [--d-min D]``.

Prints the operations of a space group, the special-position analysis of a
site and reflection statistics to a resolution limit.
"""

import argparse
import sys

import numpy as np

from . import CrystallographyError, SiteSymmetry, SpaceGroup, UnitCell, complete_set

_DEFAULT_CELLS = {
    "triclinic": (7.0, 8.0, 9.0, 80.0, 85.0, 75.0),
    "monoclinic": (7.0, 8.0, 9.0, 90.0, 105.0, 90.0),
    "orthorhombic": (7.0, 8.0, 9.0, 90.0, 90.0, 90.0),
    "tetragonal": (7.0, 7.0, 9.0, 90.0, 90.0, 90.0),
    "trigonal": (7.0, 7.0, 9.0, 90.0, 90.0, 120.0),
    "hexagonal": (7.0, 7.0, 9.0, 90.0, 90.0, 120.0),
    "cubic": (8.0, 8.0, 8.0, 90.0, 90.0, 90.0),
}


def add_arguments(parser):
    parser.add_argument("symbol", help='space-group symbol or number, e.g. "P 1 21/n 1", "R -3 :H", 62')
    parser.add_argument("--hall", action="store_true", help="SYMBOL is a Hall symbol")
    parser.add_argument("--cell", nargs=6, type=float, metavar=("A", "B", "C", "AL", "BE", "GA"),
                        help="unit cell (Å, degrees); a cell of the right lattice is made up if omitted")
    parser.add_argument("--site", nargs=3, type=float, metavar=("X", "Y", "Z"),
                        help="fractional site to analyse")
    parser.add_argument("--d-min", type=float, default=1.0, help="resolution limit (Å) for the statistics")


def _space_group(args):
    if args.hall:
        return SpaceGroup.from_hall(args.symbol)
    symbol = int(args.symbol) if args.symbol.strip().isdigit() else args.symbol
    return SpaceGroup(symbol)


def _default_cell(space_group):
    params = _DEFAULT_CELLS[space_group.crystal_system]
    if space_group.crystal_system == "trigonal" and space_group.xhm and space_group.xhm.endswith(":R"):
        params = (7.0, 7.0, 7.0, 80.0, 80.0, 80.0)
    return UnitCell(*params)


def main(args):
    space_group = _space_group(args)
    cell = UnitCell(*args.cell) if args.cell else _default_cell(space_group)
    cell.check_compatible(space_group)
    out = sys.stdout
    print(f"Space group {space_group.xhm or space_group.hall}  (No. {space_group.number}, "
          f"Hall '{space_group.hall}')", file=out)
    print(f"  crystal system {space_group.crystal_system}, point group {space_group.point_group}, "
          f"Laue class {space_group.laue_class}", file=out)
    print(f"  order_z {space_group.order_z}, order_p {space_group.order_p}, "
          f"centring {space_group.centring_type}, "
          f"{'centric' if space_group.is_centric else 'non-centric'}"
          f"{', chiral' if space_group.is_chiral else ''}"
          f"{', polar' if space_group.is_polar else ''}", file=out)
    if space_group.is_centric:
        print(f"  inversion at t = {space_group.inversion_translation.tolist()}", file=out)
    print("  operations:", file=out)
    for k, triplet in enumerate(space_group.operation_triplets(), 1):
        print(f"    {k:3d}  {triplet}", file=out)
    print(f"\nUnit cell {cell.parameters}, volume {cell.volume:.3f} Å^3", file=out)
    if args.site:
        site = SiteSymmetry(cell, space_group, args.site)
        print(f"\nSite {args.site}", file=out)
        print(f"  exact position {np.round(site.exact_site, 6).tolist()} "
              f"(moved {site.distance_moved:.4f} Å)", file=out)
        print(f"  site symmetry {site.point_group}, order {site.order}, "
              f"multiplicity {site.multiplicity}", file=out)
        print(f"  site constraints x = Z u + z: {site.site_matrix.shape[1]} free coordinates", file=out)
        for row, z in zip(site.site_matrix, site.site_offset):
            print(f"    {np.round(row, 6).tolist()}  + {z:.6f}", file=out)
        print(f"  ADP constraints U* = P v: {site.adp_matrix.shape[1]} free components", file=out)
        for name, row in zip(("U11", "U22", "U33", "U12", "U13", "U23"), site.adp_matrix):
            print(f"    {name}  {np.round(row, 6).tolist()}", file=out)
    hkl = complete_set(cell, space_group, args.d_min)
    centric = space_group.centric_flags(hkl)
    eps = space_group.epsilons(hkl)
    anomalous = complete_set(cell, space_group, args.d_min, anomalous=True)
    print(f"\nReflections to d_min {args.d_min} Å", file=out)
    print(f"  unique {len(hkl)} ({len(anomalous)} with Friedel mates apart), "
          f"centric {int(centric.sum())}, with epsilon > 1 {int((eps > 1).sum())}", file=out)
    print(f"  first in the asymmetric unit: {[tuple(map(int, h)) for h in hkl[:5]]}", file=out)
    return 0


def main_cli(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sgtbx", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return main(args)
    except CrystallographyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main_cli())
