"""smtbx-refine --demo: a refinement against data simulated from a known model.

The model shipped with the package (``demo_model.ins``: 4-methylphenol with
riding aromatic, methyl and hydroxyl H, and a chloride on an inversion
centre in P2₁/c) gives F² to 0.8 Å with Gaussian noise (fixed seed); the
refinement starts from the model with its non-H sites moved 0.1 Å rms and
its U's × 1.2, and should return to the truth within the s.u.'s.

:func:`simulate` and :func:`perturb` serve the round-trip tests too.
"""

import copy
import math
import os
import sys
import time

import numpy as np

import sgtbx

from .data import ReflectionData
from .lst import cycle_header, cycle_line
from .refine import LeastSquares
from .reparametrisation import Reparametrisation
from .shelx import read_ins
from .structure import calculated_intensities

DEMO_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_model.ins")


def simulate(model, d_min=0.8, seed=7, relative_noise=0.03, n_threads=1):
    """Fo², σ(Fo²) simulated from a model.

    All unique reflections to ``d_min`` get I = osf² Fc² (FVAR 1 of the
    model), σ² = (relative_noise I)² + 0.01 <I> I + (0.005 <I>)² (counting
    statistics, a floor and a relative error; I/σ ≈ 10 at the mean
    intensity) and Fo² = I + σ ε with ε standard normal from
    ``numpy.random.default_rng(seed)``.

    Returns
    -------
    ReflectionData
    """
    hkl = sgtbx.complete_set(model.cell, model.space_group, d_min)
    m = len(hkl)
    blank = ReflectionData(hkl=hkl, fo_sq=np.zeros(m), sig_fo_sq=np.ones(m))
    intensity = model.scale ** 2 * calculated_intensities(model, blank, n_threads)
    mean = float(intensity.mean())
    sigma = np.sqrt((relative_noise * intensity) ** 2 + 0.01 * mean * intensity
                    + (0.005 * mean) ** 2)
    rng = np.random.default_rng(seed)
    fo_sq = intensity + sigma * rng.standard_normal(m)
    counts = dict(lines=m, outside_resolution=0, absent=0, omitted=0, unique=m)
    return ReflectionData(hkl=hkl, fo_sq=fo_sq, sig_fo_sq=sigma, counts=counts)


def site_parameters(graph, include_hydrogen=False):
    """Indices into ``graph.x`` of atomic coordinates (of non-H atoms unless
    ``include_hydrogen``), with the atom index and axis (0, 1, 2) of each."""
    model = graph.model
    atom_of = {label: i for i, label in enumerate(graph.labels)}
    found = []
    for j, name in enumerate(graph.x_names):
        label, _, component = name.rpartition(" ")
        if component in ("x", "y", "z") and label in atom_of:
            i = atom_of[label]
            if include_hydrogen or not model.is_hydrogen(i):
                found.append((j, i, "xyz".index(component)))
    return found


def perturb(model, seed=11, site_rms=0.1, u_factor=1.2):
    """Move the model's refinable non-H coordinates by Gaussian shifts of
    ``site_rms`` Å rms and multiply every refinable U (U_iso, U_ij) by
    ``u_factor``, through the reparametrisation graph (special positions,
    riding H and shared parameters follow).  In place.

    Returns
    -------
    Reparametrisation
        The graph of the perturbed model.
    """
    graph = Reparametrisation(model)
    rng = np.random.default_rng(seed)
    lengths = np.asarray(model.cell.parameters[:3], dtype=np.float64)
    x = graph.x.copy()
    for j, _, axis in site_parameters(graph):
        x[j] += rng.normal(0.0, site_rms / math.sqrt(3.0)) / lengths[axis]
    for j, name in enumerate(graph.x_names):
        component = name.rpartition(" ")[2]
        if component == "Uiso" or component in ("U11", "U22", "U33", "U12", "U13", "U23"):
            x[j] *= u_factor
    graph.x = x
    graph.y, graph.jacobian = graph.evaluate()
    graph.update_model()
    return graph


def site_errors_angstrom(model, reference):
    """Cartesian distances (Å) between the atoms of two models with the
    same atoms."""
    a = model.cell.orthogonalisation
    return np.linalg.norm((model.sites_frac - reference.sites_frac) @ np.asarray(a).T, axis=1)


def run_demo(n_threads=2, quiet=False, out=None, cycles=10):
    """Simulate, perturb, refine and print; returns the exit code (0)."""
    out = sys.stdout if out is None else out
    started = time.perf_counter()
    truth = read_ins(DEMO_MODEL)
    data = simulate(truth, n_threads=n_threads)
    model = copy.deepcopy(truth)
    perturb(model)
    heavy = np.array([not truth.is_hydrogen(i) for i in range(len(truth.scatterers))])
    start_rms = float(np.sqrt(np.mean(site_errors_angstrom(model, truth)[heavy] ** 2)))

    def say(text):
        if not quiet:
            print(text, file=out, flush=True)

    say(f"smtbx-refine --demo: {truth.title}")
    say(f"  {len(data)} reflections to 0.8 A simulated from the model (3 % noise, seed 7); "
        f"start: non-H sites moved {start_rms:.3f} A rms, U x 1.2")
    least_squares = LeastSquares(model, data=data, n_threads=n_threads)
    say(cycle_header())
    refinement = least_squares.run(cycles, lambda c: say(cycle_line(c)))
    f = refinement.figures
    rms = float(np.sqrt(np.mean(site_errors_angstrom(model, truth)[heavy] ** 2)))
    state = "converged" if refinement.converged else "not converged"
    say(f"{len(refinement.cycles)} cycles, {state}: {refinement.reason}")
    say(f"R1 = {f.r1_gt:.4f} for {f.n_gt} Fo > 4sig(Fo) and {f.r1_all:.4f} for all "
        f"{f.n_reflections} data, wR2 = {f.wr2:.4f}, GooF = {f.gof:.3f}, "
        f"{f.n_parameters} parameters")
    a, b = refinement.suggested_weighting
    say(f"non-H sites {rms:.4f} A rms from the truth (start {start_rms:.3f} A); "
        f"suggested WGHT {a:.4f} {b:.4f}; {time.perf_counter() - started:.1f} s")
    return 0
