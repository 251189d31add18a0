"""Accumulating the normal equations with a separable scale factor.

m = 17 849 observations, n = 900 parameters (a 100-atom anisotropic
structure), design rows arriving in blocks of 256.  Timed on one thread:

* lstbx.NormalEquations: add_block for every block, then finalise();
* one dsyrk over the whole (m, n) design matrix (no weights, no scale
  factor): the floor for any accumulation of A = J^T W J;
* cctbx: scitbx.lstbx.normal_eqns.non_linear_ls_with_separable_scale_factor_BLAS_2,
  add_equations for every block, then finalise(), in its own venv.

Both sides generate the same data from the same seed (numpy's PCG64), and
the normal matrices are compared.  Also timed: the solution of the
900 x 900 system (ours: Cholesky with condition estimate; cctbx:
step_equations().solve()).
"""

import json
import math
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import best_time, parser, pin_threads, ratio_table, run_reference  # noqa: E402

M, N, BLOCK, SEED = 17849, 900, 256, 20251130

MAKE_DATA = """
def make_data(m, n, seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((m, n))
    y_calc = rng.random(m) + 0.5
    y_obs = 2.5 * y_calc * (1 + 0.05 * rng.standard_normal(m))
    weights = 1.0 / (0.01 + 0.05 * y_obs ** 2)
    return y_obs, weights, y_calc, rows
"""

REFERENCE = MAKE_DATA + """
import json, sys, time
import cctbx  # before anything else that might pull in gemmi
from scitbx.array_family import flex
from scitbx.lstbx import normal_eqns
payload = json.loads(sys.stdin.read())
m, n, block = payload["m"], payload["n"], payload["block"]
y_obs, weights, y_calc, rows = make_data(m, n, payload["seed"])
blocks = []
for s in range(0, m, block):
    jac = flex.double(rows[s:s + block].ravel())
    jac.reshape(flex.grid(jac.size() // n, n))
    blocks.append((flex.double(y_calc[s:s + block]), jac, flex.double(y_obs[s:s + block]),
                   flex.double(weights[s:s + block])))
best, best_solve = float("inf"), float("inf")
for _ in range(payload["repeats"]):
    ls = normal_eqns.non_linear_ls_with_separable_scale_factor_BLAS_2(n, False)
    start = time.perf_counter()
    for yc, jac, yo, w in blocks:
        ls.add_equations(yc, jac, yo, w)
    ls.finalise()
    best = min(best, time.perf_counter() - start)
    # solve() overwrites the matrix with its Cholesky factor
    first_row = list(ls.step_equations().normal_matrix_packed_u()[:n])
    start = time.perf_counter()
    ls.step_equations().solve()
    best_solve = min(best_solve, time.perf_counter() - start)
print(json.dumps({"accumulate": best, "solve": best_solve,
                  "scale": ls.optimal_scale_factor(), "first_row": first_row}))
"""


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    pin_threads(1)
    import numpy as np
    from scipy.linalg import blas
    import lstbx

    namespace = {}
    exec(MAKE_DATA, namespace)
    y_obs, weights, y_calc, rows = namespace["make_data"](M, N, SEED)

    def ours():
        ne = lstbx.NormalEquations(N)
        for s in range(0, M, BLOCK):
            ne.add_block(y_obs[s:s + BLOCK], weights[s:s + BLOCK], y_calc[s:s + BLOCK],
                         rows[s:s + BLOCK])
        ne.finalise()
        return ne

    def one_dsyrk():
        # rows.T is the Fortran-ordered (n, m) matrix: no copy
        return blas.dsyrk(1.0, rows.T, trans=0, lower=1)

    t_ours, ne = best_time(ours, args.repeats)
    t_dsyrk, _ = best_time(one_dsyrk, args.repeats)
    # the first solve() of fresh equations factorises (later ones reuse it)
    t_solve = math.inf
    for _ in range(args.repeats):
        fresh = ours()
        start = time.perf_counter()
        fresh.solve()
        t_solve = min(t_solve, time.perf_counter() - start)

    reference = run_reference(args.reference_python, REFERENCE,
                              {"m": M, "n": N, "block": BLOCK, "seed": SEED,
                               "repeats": args.repeats})
    rows_out = [
        ["accumulate + finalise vs one dsyrk over J (the floor)", f"{t_ours:.3f}",
         f"{t_dsyrk:.3f}", f"{t_dsyrk / t_ours:.2f}"],
    ]
    if reference is not None:
        first_row = np.array(reference["first_row"])
        difference = np.abs(first_row - ne.normal_matrix()[0]).max() / np.abs(first_row).max()
        print(f"agreement with cctbx: K* {ne.scale_factor():.15g} vs "
              f"{reference['scale']:.15g}; first row of B to {difference:.1e} relative")
        rows_out += [
            ["accumulate + finalise vs cctbx BLAS_2", f"{t_ours:.3f}",
             f"{reference['accumulate']:.3f}", f"{reference['accumulate'] / t_ours:.2f}"],
            ["solve, n = 900 (Cholesky + condition) vs cctbx", f"{t_solve:.3f}",
             f"{reference['solve']:.3f}",
             f"{reference['solve'] / t_solve:.2f}"],
        ]
    print(f"m = {M}, n = {N}, blocks of {BLOCK} rows, one thread, best of {args.repeats}")
    print(ratio_table(rows_out, ["task", "lstbx (s)", "reference (s)",
                                 "ratio (reference / lstbx)"]))
    print(json.dumps({"lstbx": t_ours, "dsyrk": t_dsyrk, "solve": t_solve,
                      "reference": reference and {k: reference[k] for k in ("accumulate", "solve")}}))


if __name__ == "__main__":
    main()
