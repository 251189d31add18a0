"""F_model with bulk solvent and scaling, and R, on 4iid (14 782 atoms, 99 146 reflections).

Timed on one thread, after reading the files:

* scaling: mmtbx's FModel.update_all_scales (k_mask per bin, bin scales,
  anisotropic scale, Read outliers, refit) and R-work/R-free, against
  cctbx's ``fmodel.update_all_scales(update_f_part1=True)`` and its R;
* whole: F_calc and F_mask (mmtbx.sources: gemmi density + FFT, gemmi
  mask) plus the above, against cctbx's ``mmtbx.f_model.manager`` built
  from the xray structure (its FFT F_calc and mask) plus update_all_scales.

Both sides report R-work and R-free so the agreement is checked in the same run.
"""

import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import best_time, parser, pin_threads, ratio_table, run_reference  # noqa: E402

DATA = (pathlib.Path(os.environ["CRYSTAL_DATA"]) if os.environ.get("CRYSTAL_DATA")
        else pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data") / "macro" / "4iid"

REFERENCE = """
import json, sys, time
import cctbx  # before gemmi
import iotbx.pdb
import mmtbx.f_model
from iotbx import reflection_file_reader
payload = json.loads(sys.stdin.read())
xrs = iotbx.pdb.input(payload["model"]).xray_structure_simple()
xrs.scattering_type_registry(table="n_gaussian")
arrays = reflection_file_reader.any_reflection_file(payload["data"]).as_miller_arrays()
f_obs = [a for a in arrays if a.info().label_string().startswith("FP")][0]
flags = [a for a in arrays if a.info().label_string().startswith("FREE")][0]
f_obs, flags = f_obs.common_sets(flags)
flags = flags.customized_copy(data=flags.data() == 0)
best_whole, best_scale = float("inf"), float("inf")
for _ in range(payload["repeats"]):
    start = time.perf_counter()
    fm = mmtbx.f_model.manager(f_obs=f_obs, r_free_flags=flags, xray_structure=xrs)
    fm.update_all_scales(update_f_part1=True, remove_outliers=True)
    r_work, r_free = fm.r_work(), fm.r_free()
    best_whole = min(best_whole, time.perf_counter() - start)
    fm = mmtbx.f_model.manager(f_obs=f_obs, r_free_flags=flags, xray_structure=xrs)
    start = time.perf_counter()
    fm.update_all_scales(update_f_part1=True, remove_outliers=True)
    r_work, r_free = fm.r_work(), fm.r_free()
    best_scale = min(best_scale, time.perf_counter() - start)
print(json.dumps({"whole": best_whole, "scale": best_scale, "r_work": r_work, "r_free": r_free}))
"""


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA), help="folder with 4iid.pdb and 4iid.mtz")
    args = p.parse_args()
    pin_threads(1)
    from mmtbx import compute_f_calc_and_mask, fmodel_from_arrays, read_model, read_reflections

    model = str(pathlib.Path(args.data) / "4iid.pdb")
    data_path = str(pathlib.Path(args.data) / "4iid.mtz")
    structure = read_model(model)
    data = read_reflections(data_path)

    def scale_only(f_calc, f_mask):
        fmodel = fmodel_from_arrays(data, f_calc, f_mask).update_all_scales()
        return fmodel.r_work, fmodel.r_free

    def whole():
        f_calc, f_mask = compute_f_calc_and_mask(structure, data.unit_cell, data.space_group,
                                                 data.hkl, data.d_min)
        return scale_only(f_calc, f_mask)

    f_calc, f_mask = compute_f_calc_and_mask(structure, data.unit_cell, data.space_group,
                                             data.hkl, data.d_min)
    t_scale, (r_work, r_free) = best_time(lambda: scale_only(f_calc, f_mask), args.repeats)
    t_whole, _ = best_time(whole, args.repeats)
    reference = run_reference(args.reference_python, REFERENCE,
                              {"model": model, "data": data_path, "repeats": args.repeats})
    print(f"4iid: {len(data.hkl)} reflections, one thread, best of {args.repeats}; "
          f"ours R-work {r_work:.4f} R-free {r_free:.4f}")
    rows = [["bulk solvent + scaling + outliers + R", f"{t_scale:.2f}"],
            ["F_calc + F_mask + the above", f"{t_whole:.2f}"]]
    if reference is not None:
        print(f"cctbx R-work {reference['r_work']:.4f} R-free {reference['r_free']:.4f}")
        rows[0] += [f"{reference['scale']:.2f}", f"{reference['scale'] / t_scale:.2f}"]
        rows[1] += [f"{reference['whole']:.2f}", f"{reference['whole'] / t_whole:.2f}"]
        headers = ["task", "mmtbx (s)", "cctbx (s)", "cctbx / mmtbx"]
    else:
        headers = ["task", "mmtbx (s)"]
    print(ratio_table(rows, headers))
    print(json.dumps({"scale": t_scale, "whole": t_whole, "r_work": r_work, "r_free": r_free,
                      "reference": reference}))


if __name__ == "__main__":
    main()
