"""Full-matrix least squares of a small-molecule model against its data.

One cycle (:meth:`LeastSquares.cycle`):

1. the reparametrisation graph gives y(x) and J = ∂y/∂x (riding hydrogens
   re-idealised, special positions and shared parameters imposed); with
   SHELXL's riding model (the default, ``riding="shelxl"``) the riding
   groups are then frozen for the cycle and ride on their pivots
   (:meth:`smtbx.reparametrisation.Reparametrisation.ride`), so that the
   cycles converge to SHELXL's model; ``riding="exact"`` differentiates
   the riding geometry and converges to the least-squares minimum of the
   exact graph instead;
2. sftbx computes Fc² (or |Fc|; for twins the twin sum of
   :class:`smtbx.twinning.TwinnedIntensities`) and the design rows ∂Y/∂y for blocks of
   ``block_rows`` reflections, over the y that J connects to x only; each
   block is turned into rows in x (``rows J``) and added to lstbx's normal
   equations with the overall scale separable (K = osf², Fo² ≈ K Fc²), so
   that no design matrix is ever stored;
3. SHELXL's weights are computed inside that pass from the Fc² of the
   current model and the K of the previous cycle, and frozen for the cycle;
4. restraints (by default those of the file, with SHELXL's σ's, and the
   floating origin of polar groups: :mod:`smtbx.restraints`) add their rows;
5. the shifts solve (B + λ diag B) δ = g: λ is SHELXL's DAMP damping
   (default 0.7/10000: the diagonal multiplied by 1 + damp/10000), raised
   tenfold Levenberg–Marquardt style whenever a step makes Σ w r² (with the
   weights of the cycle that proposed it) + restraints larger, or gives a
   model the structure factors cannot use (NaN, U not positive definite);
   the step is then taken back and solved again.  An atom whose U the step
   makes non-positive definite first keeps all its parameters for the
   cycle (the others move) before the damping is raised.  The shifts are
   scaled down together so that max |shift/s.u.| ≤ ``shift_limit`` (DAMP's
   limse, default 15);
6. the length of the step is checked against the objective itself: B
   leaves out the second derivatives of Fc², so along the shifts δ the
   objective is only roughly the parabola the normal equations predict.
   The parabola through the objective before the step, its slope there
   (−2 gᵀδ, exact) and the objective after the full step has its minimum at
   a fraction t of the step (:func:`step_length`); when 1/4 ≤ t < 1 the
   shifts are scaled by t, and the lower of the two objectives is kept.
   A t below 1/4 means the objective rose by more than the whole decrease
   the slope promised: the direction itself is then doubtful and the step
   is taken back and damped as in 5.  This is the backtracking line search
   with a quadratic model of Dennis & Schnabel (1983), the same idea as
   Hartley's (1961) modified Gauss–Newton method.

Why step 6: where the objective curves more than twice as steeply as B says
along some combination of parameters, the full step lands farther beyond
the minimum than it started before it, and the damping of step 5 (which
shrinks the weakly determined combinations, not the overshooting one, and
accepts any step that lowers the objective) only makes the refinement
bounce across the minimum.  ni_i43d's PART −1 toluene is such a case (its
methyl C26 lies 0.23 Å from a symmetry image of C31 of the other
orientation, whose U it shares): at SHELXL's model the objective's
curvature (finite differences of the exact gradient) exceeds B's 2.3-fold
along a shift of C20, C21, C25 and C26, mostly along z, with their U's, and
2.1-fold along C26 x against C31 x.  The excess comes from the data
(Σ w r ∂²Fc²); the restraints are quadratic there.  Without the line search
C26 z went back and forth by 0.08 s.u. every cycle for 30 cycles (one
step taken back each cycle); with it the refinement converges in 7.
The line search changes neither the s.u.'s nor the convergence test.

Convergence: max |shift/s.u.| < ``convergence`` (0.05) for the undamped,
full-length shifts of an accepted cycle, s.u.'s from the inverse normal
matrix (x block with K refined) scaled as the published ones,
:func:`smtbx.figures.su_variance_factor` (SHELXL's shift/esd uses its own
esd's), so that the shifts are judged against the s.u.'s the CIF reports.
A model whose undamped step would make an atom unusable (U not
positive definite) has settled when the damped shifts that remain are
below ``convergence`` and no longer lower the objective by 10⁻⁶ of itself
(:attr:`Refinement.blocked_atom` names the atom).

Figures after each cycle describe the model the cycle started from (as
SHELXL prints them); :attr:`Refinement.figures` is computed again at the
final parameters.  The parameter count is SHELXL's: independent parameters
+ the scale + free variables no parameter uses.

Suggested weights (:func:`suggest_weighting`): SHELXL's search for the
a, b that make the goodness of fit flat over the reflections sorted by Fc²
and split into ten batches of equal count; see there.
"""

import contextlib
import ctypes
from dataclasses import dataclass, field
import math
import time

import numpy as np

import lstbx
import sftbx
from sgtbx.errors import CrystallographyError

from .data import reduce_observations
from .errors import TwinError, TwinInputError, UnsupportedInstruction
from .figures import (agreement, independent_reflections, ls_scale, separable_scale,
                      shelxl_weights, su_variance_factor)
from .model import Weighting
from .reparametrisation import Reparametrisation
from .restraints import ShelxRestraints
from .structure import _explicit_form_factors, scatterer_table, scatterers as model_scatterers
from .twinning import TwinnedIntensities

TARGETS = ("fc_sq", "fc")

#: Riding models for riding hydrogen atoms (module notes, step 1), with
#: the line that states them in the log.
RIDING_MODELS = {
    "shelxl": "riding hydrogen atoms: SHELXL's riding model (they move with their pivots "
              "within a cycle and are rebuilt between cycles)",
    "exact": "riding hydrogen atoms: exact derivatives through their geometry (the "
             "least-squares minimum, not SHELXL's fixed point)",
}
RIDING = tuple(RIDING_MODELS)

# Relative decrease of the objective over a cycle below which damped steps
# held back by an unusable full step count as settled.
SETTLED = 1e-6

# Shortest fraction of the shifts the line search takes (module notes, step
# 6); a parabola whose minimum lies nearer says the direction is doubtful.
SHORTEST_STEP = 0.25


class RefinementDiverged(CrystallographyError):
    """The refinement produced a model that cannot be used (NaN, a U that it
    made non-positive definite) and no damping brings it back.

    Parameters
    ----------
    message : str
        What went wrong, naming the atom.
    atom : str or None
        The atom's label, when one is to blame.
    """

    def __init__(self, message, atom=None):
        self.atom = atom
        super().__init__(message)


@dataclass(frozen=True)
class Cycle:
    """What one least-squares cycle found and did.

    The figures (``r1_gt`` … ``osf``) are those of the model the cycle
    started from, with the weights of that cycle.

    Attributes
    ----------
    number : int
    r1_gt, r1_all, wr2 : float
    gof, restrained_gof : float or None
    osf : float
        √K (SHELXL's FVAR 1) for F², K for F.
    max_shift_su, mean_shift_su : float
        max and mean |shift/s.u.| of the shifts applied.
    max_shift_parameter : str
    damping : float
        Marquardt λ of the shifts applied.
    step_scale : float
        Factor the shift limit applied to the shifts (1: none).
    step_length : float
        Factor the line search applied to the shifts after the limit (1:
        the full step).
    rejected_steps : int
        Steps taken back within the cycle (each a pass over the data).
    seconds : float
        Wall time of the cycle.
    message : str
        The solver's note about undetermined combinations, or "".
    """

    number: int
    r1_gt: float
    r1_all: float
    wr2: float
    gof: float | None
    restrained_gof: float | None
    osf: float
    max_shift_su: float
    mean_shift_su: float
    max_shift_parameter: str
    damping: float
    step_scale: float
    step_length: float
    rejected_steps: int
    seconds: float
    message: str


@dataclass
class Refinement:
    """The outcome of :meth:`LeastSquares.run`.

    Attributes
    ----------
    cycles : list of Cycle
    converged : bool
    reason : str
    figures : smtbx.figures.Figures
        At the final parameters, with the weights they give.
    osf : float
        Final √K (FVAR 1).
    suggested_weighting : (float, float)
        SHELXL's suggested a, b (:func:`suggest_weighting`).
    max_shift_su : float
        Of the last cycle.
    equations : lstbx.NormalEquations
        Of the last accepted cycle (covariance of x).
    fc_sq : float64 (m,)
        Final Fc² on the absolute scale (|Fc| when refining on F).
    weights : float64 (m,)
    blocked_atom : str or None
        When the refinement settled with damped shifts because the undamped
        ones would make this atom unusable (its U not positive definite).
    """

    cycles: list = field(default_factory=list)
    converged: bool = False
    reason: str = ""
    figures: object = None
    osf: float = math.nan
    suggested_weighting: tuple = (math.nan, math.nan)
    max_shift_su: float = math.nan
    equations: object = None
    fc_sq: np.ndarray = None
    weights: np.ndarray = None
    blocked_atom: str | None = None


def _damp_instruction(model):
    """(damp, limse) from a DAMP instruction, SHELXL's defaults (0.7, 15) otherwise."""
    damp, limse = 0.7, 15.0
    for raw in model.instructions.other:
        if raw.name.upper() == "DAMP":
            values = []
            for word in raw.args:
                try:
                    values.append(float(word))
                except (TypeError, ValueError):
                    break
            if values:
                damp = values[0]
            if len(values) > 1:
                limse = values[1]
    return damp, limse


def f_from_f_sq(fo_sq, sig_fo_sq):
    """Fo and σ(Fo) from Fo² and σ(Fo²): Fo = √max(Fo², 0),
    σ(Fo) = σ / (√(max(Fo², 0) + σ) + Fo), which is σ/(2Fo) for strong data
    and stays finite for weak and negative Fo²."""
    fo = np.sqrt(np.maximum(fo_sq, 0.0))
    return fo, sig_fo_sq / (np.sqrt(np.maximum(fo_sq, 0.0) + sig_fo_sq) + fo)


class LeastSquares:
    """Full-matrix least-squares refinement of a model (module docstring).

    Parameters
    ----------
    model : smtbx.model.Model
        With its observations; refined in place (its atoms, free variables
        and FVAR 1 hold the current values after each cycle).
    data : smtbx.data.ReflectionData, optional
        Default: ``reduce_observations(model)``.
    target : {"fc_sq", "fc"}
        Refine on F² (SHELXL's weights) or on F (weights 1/σ(F)²).
    n_threads : int
        Threads for the structure factors and design rows.
    block_rows : int
        Reflections per block of design rows.
    restraints : "file", callable or None
        ``"file"`` (default): the model's restraints, SUMP and the floating
        origin of polar space groups through
        :class:`smtbx.restraints.ShelxRestraints`; a callable
        ``restraints(graph) -> (design, deltas, weights)``: the restraint
        rows in x (CSR, (n_r, n_x)), target − value and 1/σ² at the graph's
        current parameters; None: no restraints at all.
    n_restraints : int, optional
        The restraint count as SHELXL gives it (default: the
        ShelxRestraints' count; the rows of a callable; 0 for None).
    convergence : float
        max |shift/s.u.| below which the refinement has converged.
    damping, shift_limit : float, optional
        Marquardt λ and max |shift/s.u.|; default from DAMP (0.7/10000, 15).
    riding : {"shelxl", "exact"}
        SHELXL's riding model for riding hydrogen atoms and riding U_iso
        (module notes, step 1), or exact derivatives through them.

    Twinned data (TWIN/BASF on HKLF 4, HKLF 5 with BASF) are refined on F²
    through :class:`smtbx.twinning.TwinnedIntensities`: the BASF of the graph
    are parameters like any other, the first component's fraction is
    1 − Σ BASF (the sum constraint), EXTI applies to the twin sum.

    Raises
    ------
    UnsupportedInstruction
        SWAT, which this driver does not refine; twinned data on F or with
        SWAT.
    smtbx.errors.TwinInputError
        (a TwinError naming the file) A twin law that is not integral or
        not a lattice symmetry, HKLF 5 component numbers out of range, a
        BASF count that does not match.
    """

    def __init__(self, model, data=None, target="fc_sq", n_threads=2, block_rows=256,
                 restraints="file", n_restraints=None, convergence=0.05, damping=None,
                 shift_limit=None, riding="shelxl"):
        if target not in TARGETS:
            raise ValueError(f"target {target!r}: expected one of {TARGETS}")
        if riding not in RIDING:
            raise ValueError(f"riding {riding!r}: expected one of {RIDING}")
        self.riding = riding
        ins = model.instructions
        self.model = model
        self.data = reduce_observations(model) if data is None else data
        self.twin = None
        if ins.twin is not None or self.data.hklf == 5:
            if target != "fc_sq":
                raise UnsupportedInstruction(model.source, None, "twinned data (TWIN, HKLF 5) "
                                             "are refined on F² only")
            if ins.swat is not None:
                raise UnsupportedInstruction(model.source, None, "SWAT with twinned data (TWIN, "
                                             "HKLF 5) is not available")
            try:
                self.twin = TwinnedIntensities.for_model(model, self.data, n_threads)
            except TwinError as err:
                raise TwinInputError(model.source, None, str(err)) from None
        if ins.swat is not None:
            raise UnsupportedInstruction(model.source, None, "SWAT: refinement with the solvent "
                                         "correction is not available")
        self.target = target
        self.n_threads = int(n_threads)
        self.block_rows = int(block_rows)
        self.convergence = float(convergence)
        damp, limse = _damp_instruction(model)
        self.base_damping = damp / 1e4 if damping is None else float(damping)
        self.shift_limit = limse if shift_limit is None else float(shift_limit)
        self.graph = Reparametrisation(model)
        self.n_parameters = len(self.graph.x) + 1 + len(self.graph.unused_free_variables)
        self.n_independent = None          # reflections, a Friedel pair once (su_factor)
        self.shelx_restraints = None
        if isinstance(restraints, str):
            if restraints != "file":
                raise ValueError(f"restraints {restraints!r}: expected 'file', a callable or None")
            self.shelx_restraints = ShelxRestraints(model, self.graph)
            restraints = self.shelx_restraints
            if n_restraints is None:
                n_restraints = self.shelx_restraints.n_restraints
        self.restraints = restraints
        if n_restraints is None:
            n_restraints = 0 if restraints is None else len(restraints(self.graph)[1])
        self.n_restraints = n_restraints
        table, _ = model_scatterers(model)
        self._elements = table.elements
        self._labels = table.labels
        # atoms NPD as read (SHELXL refines them, flagging them): only a
        # refinement that makes an atom NPD has diverged
        self._npd_as_read = table.non_positive_definite()
        if self.twin is not None:
            # the twin's structure factors are at the component indices
            self.sf = self.twin.sf
        else:
            self.sf = sftbx.StructureFactors(model.cell, model.space_group, table,
                                             self.data.hkl, table="it92",
                                             multiplicities=self._multiplicities(),
                                             n_threads=self.n_threads)
            _explicit_form_factors(model, self.sf)
        self.stol = 0.5 * np.sqrt(model.cell.s_squared(self.data.hkl))
        fo_sq, sig = self.data.fo_sq, self.data.sig_fo_sq
        if target == "fc":
            self.y_obs, self.sigma = f_from_f_sq(fo_sq, sig)
        else:
            self.y_obs, self.sigma = fo_sq, sig
        osf = model.scale
        self.k = osf * osf if target == "fc_sq" else osf
        if not (math.isfinite(self.k) and self.k > 0):
            self.k = None

    def _multiplicities(self):
        model = self.model
        return model.space_group.order_z / model.site_orders.astype(np.float64)

    # ------------------------------------------------------------------
    def _set_scatterers(self):
        """Put the graph's current y into the structure factors; a model
        they cannot use (values not finite, or an ADP that the refinement
        made non-positive definite) raises RefinementDiverged naming the
        atom."""
        arrays = self.graph.arrays()
        try:
            table = scatterer_table(self._elements, self._labels, arrays)
        except sftbx.ScatteringError as err:
            atom = next((a for a in self._labels if f"'{a}'" in str(err) or f" {a}:" in str(err)),
                        None)
            raise RefinementDiverged(str(err), atom) from None
        became_npd = np.flatnonzero(table.non_positive_definite() & ~self._npd_as_read)
        if became_npd.size:
            i = int(became_npd[0])
            u = (f"U* (11,22,33,12,13,23) = {table.u_star[i]}" if table.aniso[i]
                 else f"u_iso = {table.u_iso[i]}")
            raise RefinementDiverged(f"atom {self._labels[i]!r}: the shifts made its ADP "
                                     f"non-positive definite ({u})", self._labels[i])
        self.sf.scatterers = table
        self._extinction = None
        if arrays["extinction"] is not None and arrays["extinction"] != 0 \
                or self.graph.extinction_index >= 0 and self._extinction_refined():
            x = arrays["extinction"]
            if not math.isfinite(x):
                raise RefinementDiverged(f"EXTI became {x}")
            self._extinction = sftbx.ShelxExtinction(x, self.model.wavelength)

    def _extinction_refined(self):
        jac = self.graph.jacobian
        e = self.graph.extinction_index
        return jac.indptr[e + 1] > jac.indptr[e]

    def _parameter_map(self):
        """Design-row columns for the y that depend on x, and the matching
        rows of J (CSR)."""
        jac = self.graph.jacobian
        active = np.flatnonzero(np.diff(jac.indptr) > 0)
        compact = np.full(len(self.graph.y), -1, dtype=np.int64)
        compact[active] = np.arange(len(active))
        columns = self.graph.y_columns()
        columns = np.where(columns >= 0, compact[np.maximum(columns, 0)], -1)
        e = self.graph.extinction_index
        ext_col = int(compact[e]) if e >= 0 and self._extinction is not None else -1
        pmap = sftbx.ParameterMap(columns, len(active), ext_col)
        self._basf_columns = compact[self.graph.basf_index]
        return pmap, jac[active].tocsr()

    def _design_rows(self, pmap, start, stop, rows, y):
        """Model values and design rows in the compact y of
        :meth:`_parameter_map` for reflections start:stop."""
        if self.twin is None:
            return self.sf.design_rows(pmap, start, stop, kind=self.target,
                                       extinction=self._extinction, rows=rows, y=y)
        y_twin, rows_twin = self.twin.design_rows(pmap, self.basf, self._basf_columns,
                                                  self._extinction, start, stop)
        y[:] = y_twin
        rows[:] = rows_twin
        return y, rows

    @property
    def basf(self):
        """The current BASF values, float64 (n_basf,)."""
        return self.graph.y[self.graph.basf_index]

    def weights(self, y_calc, k, start=0, stop=None):
        """Weights for reflections start:stop with model values y_calc
        (Fc² or |Fc|, absolute scale) and scale K."""
        sl = slice(start, stop)
        if self.target == "fc":
            return 1.0 / self.sigma[sl] ** 2
        return shelxl_weights(self.data.fo_sq[sl], self.data.sig_fo_sq[sl], y_calc, k,
                              self.model.instructions.weighting, self.stol[sl])

    def build(self):
        """The normal equations at the graph's current parameters.

        Sets ``timings``: seconds spent in sftbx's design rows
        (``structure_factors``) and in everything else of the pass
        (``accumulation``: weights, rows J, lstbx, restraints, finalise).

        Returns
        -------
        equations : lstbx.NormalEquations (finalised)
        y_calc, weights : float64 (m,)
        """
        self._set_scatterers()
        pmap, jac = self._parameter_map()
        n_x = len(self.graph.x)
        m = len(self.y_obs)
        equations = lstbx.NormalEquations(n_x, scale="separable", scale_factor=self.k,
                                          parameter_names=self.graph.x_names)
        y_calc = np.empty(m)
        weights = np.empty(m)
        block = max(1, self.block_rows)
        rows = np.empty((block, pmap.n_params))
        jac_t = jac.T.tocsr()
        clock = time.perf_counter
        sf_time = 0.0
        started = clock()
        try:
            for start in range(0, m, block):
                stop = min(start + block, m)
                b = stop - start
                tick = clock()
                y, rows_y = self._design_rows(pmap, start, stop, rows[:b], y_calc[start:stop])
                sf_time += clock() - tick
                k = self.k if self.k is not None else ls_scale(self.y_obs, y)
                w = self.weights(y, k, start, stop)
                weights[start:stop] = w
                rows_x = np.ascontiguousarray((jac_t @ rows_y.T).T)
                equations.add_block(self.y_obs[start:stop], w, y, rows_x)
            if self.restraints is not None:
                design, deltas, rweights = self.restraints(self.graph)
                equations.add_restraints(design, deltas, rweights)
            equations.finalise()
        except lstbx.NonFiniteError as err:
            raise RefinementDiverged(f"the model gives non-finite structure factors or "
                                     f"derivatives: {err}") from None
        self.timings = dict(structure_factors=sf_time,
                            accumulation=clock() - started - sf_time)
        return equations, y_calc, weights

    def evaluate(self):
        """Model values (Fc² or |Fc|, absolute scale) at the current parameters."""
        self._set_scatterers()
        if self.twin is not None:
            return self.twin.intensities(self.basf, self._extinction)
        f = self.sf.f_calc()
        eps = None
        if self._extinction is not None:
            eps = self._extinction.eps(self.sf.s_sq())
        y, *_ = sftbx.y_calc(f, self.target, eps,
                             0.0 if self._extinction is None else self._extinction.x)
        return y

    def _restraint_chi2(self):
        if self.restraints is None:
            return 0.0
        _, deltas, rweights = self.restraints(self.graph)
        return float(np.sum(rweights * deltas ** 2))

    def figures(self, y_calc, k, weights):
        """SHELXL's figures (smtbx.figures.Figures) for model values y_calc."""
        if self.target == "fc":
            fc_sq = y_calc ** 2
            k_sq = k * k
        else:
            fc_sq, k_sq = y_calc, k
        chi2 = self._restraint_chi2()
        n_r = self.n_restraints
        result = agreement(self.data.fo_sq, self.data.sig_fo_sq, fc_sq, k_sq, weights,
                           self.n_parameters, n_r, chi2)
        if self.target == "fc":
            residual = self.y_obs - k * y_calc
            result.sum_w_r2 = float(np.sum(weights * residual ** 2))
            result.wr2 = float(np.sqrt(result.sum_w_r2 / np.sum(weights * self.y_obs ** 2)))
            n = len(self.y_obs)
            if n > self.n_parameters:
                result.gof = float(np.sqrt(result.sum_w_r2 / (n - self.n_parameters)))
                if n_r is not None and chi2 is not None:
                    result.restrained_gof = float(np.sqrt(
                        (result.sum_w_r2 + chi2) / (n + n_r - self.n_parameters)))
        return result

    def osf(self, k):
        """SHELXL's FVAR 1 for a scale K."""
        return math.sqrt(k) if self.target == "fc_sq" else k

    # ------------------------------------------------------------------
    def _move_to(self, x):
        """Set the graph's x and evaluate y(x), J."""
        graph = self.graph
        graph.x = np.array(x, dtype=np.float64)
        try:
            graph.y, graph.jacobian = graph.evaluate()
        except CrystallographyError as err:
            raise RefinementDiverged(f"the constraints cannot be built: {err}") from None
        if not np.all(np.isfinite(graph.y)):
            bad = int(np.flatnonzero(~np.isfinite(graph.y))[0])
            name = graph.y_names[bad]
            raise RefinementDiverged(f"{name} became {graph.y[bad]}", name.split()[0])

    def _ride(self, on):
        """Freeze the riding groups at the current x (on) or release them
        (Reparametrisation.ride)."""
        try:
            self.graph.ride(on)
        except CrystallographyError as err:
            raise RefinementDiverged(f"the constraints cannot be built: {err}") from None

    def _u_columns(self, atom):
        """x columns of an atom's own parameters (site, U), int (k,)."""
        if atom is None:
            return np.zeros(0, dtype=np.int64)
        prefix = atom + " "
        return np.array([j for j, name in enumerate(self.graph.x_names)
                         if name.startswith(prefix)], dtype=np.int64)

    def su_factor(self, equations):
        """The factor on the inverse normal matrix of ``equations`` that gives
        the published s.u.'s: Σ w r² / (N − p), N counting a Friedel pair
        once (:func:`smtbx.figures.su_variance_factor`); NaN without degrees
        of freedom."""
        if self.n_independent is None:
            self.n_independent = independent_reflections(self.model.space_group, self.data.hkl)
        return su_variance_factor(equations.figures.sum_w_r_sq, self.n_independent,
                                  self.n_parameters)

    def su_covariance(self, equations):
        """Var(x) behind the published s.u.'s: the inverse normal matrix of
        ``equations`` (restraints included) times :meth:`su_factor`."""
        return equations.covariance(scaled=False) * self.su_factor(equations)

    def shift_over_su(self, equations, shifts):
        """shift / s.u. with the published s.u.'s (:meth:`su_factor`); the
        unscaled inverse where there are no degrees of freedom."""
        ratio = equations.shift_over_su(shifts, scaled=False)
        factor = self.su_factor(equations)
        return ratio / math.sqrt(factor) if factor > 0 else ratio

    def _solve(self, equations, damping, held):
        """Shifts (limited, zero where ``held``), |shift/s.u.| of the
        applied shifts, the scale the limit applied, and max |shift/s.u.|
        undamped (held ones included)."""
        shifts = equations.solve(damping=damping)
        shifts[held] = 0.0
        ratio = np.abs(self.shift_over_su(equations, shifts))
        scale = 1.0
        if ratio.size and ratio.max() > self.shift_limit:
            scale = self.shift_limit / ratio.max()
        undamped = ratio
        if damping > self.base_damping:
            undamped = np.abs(self.shift_over_su(equations,
                equations.solve(damping=self.base_damping)))
        return shifts * scale, ratio * scale, scale, float(undamped.max(initial=0.0))

    def run(self, max_cycles, progress=None):
        """Refine for up to ``max_cycles`` cycles, stopping at convergence.

        Parameters
        ----------
        max_cycles : int
            0 evaluates the model as read.
        progress : callable, optional
            ``progress(cycle)`` after every cycle (a :class:`Cycle`).

        Returns
        -------
        Refinement

        Raises
        ------
        RefinementDiverged
            When no damping gives a usable step; the model then holds the
            last usable parameters.
        """
        with single_threaded_blas():
            return self._run(max_cycles, progress)

    def _run(self, max_cycles, progress):
        result = Refinement()
        damping = self.base_damping
        accepted = None         # (x, equations, objective, weights) of the last accepted point
        self._move_to(self.graph.x)
        started = time.perf_counter()
        for number in range(1, max_cycles + 1):
            if self.riding == "shelxl":
                self._ride(True)
            equations, y_calc, weights = self.build()
            self.k = equations.scale_factor()
            accepted = (self.graph.x.copy(), equations, equations.figures.objective, weights)
            result.equations = equations
            rejected = 0
            blocked = None      # why a larger step was not usable
            held = np.zeros(len(self.graph.x), dtype=bool)
            rhs = equations.right_hand_side()
            while True:
                shifts, ratio, scale, undamped = self._solve(equations, damping, held)
                objective, failure = self._trial(accepted[0] + shifts, accepted[3])
                length = 1.0
                if failure is None and undamped >= self.convergence:
                    # the objective along the step (module notes, step 6)
                    t = step_length(accepted[2], float(rhs @ shifts), objective)
                    if SHORTEST_STEP <= t < 1.0:
                        shorter, _ = self._trial(accepted[0] + t * shifts, accepted[3])
                        if shorter < objective:
                            shifts, ratio, objective, length = t * shifts, t * ratio, shorter, t
                        else:
                            self._move_to(accepted[0] + shifts)
                if objective <= accepted[2] * (1 + 1e-12) or undamped < self.convergence:
                    break
                # the step made things worse: take it back, damp more
                rejected += 1
                if failure is not None:
                    blocked = failure
                    # an atom whose U the step makes unusable keeps its
                    # parameters this cycle; the others move
                    columns = self._u_columns(failure.atom)
                    if columns.size and not held[columns].all():
                        held[columns] = True
                        continue
                damping = max(10 * damping, 1e-3)
                if damping > 1e8:
                    self._move_to(accepted[0])
                    self.graph.update_model()
                    reason = failure or "the objective rises even for vanishing shifts"
                    raise RefinementDiverged(f"refinement diverged in cycle {number}: {reason}",
                                             getattr(failure, "atom", None))
            worst = int(np.argmax(ratio)) if ratio.size else 0
            figures = self.figures(y_calc, equations.scale_factor(), weights)
            cycle = Cycle(number=number, r1_gt=figures.r1_gt, r1_all=figures.r1_all,
                          wr2=figures.wr2, gof=figures.gof,
                          restrained_gof=figures.restrained_gof,
                          osf=self.osf(equations.scale_factor()),
                          max_shift_su=float(ratio[worst]), mean_shift_su=float(ratio.mean()),
                          max_shift_parameter=equations.parameter_names[worst], damping=damping,
                          step_scale=scale, step_length=length, rejected_steps=rejected,
                          seconds=time.perf_counter() - started,
                          message=equations.diagnosis.message)
            started = time.perf_counter()
            result.cycles.append(cycle)
            result.max_shift_su = cycle.max_shift_su
            if progress is not None:
                progress(cycle)
            if failure is not None:
                # converged, but the last (tiny) step was not usable
                self._move_to(accepted[0])
            if scale == 1.0 and undamped < self.convergence:
                result.converged = True
                result.reason = f"max |shift/s.u.| {undamped:.3g} < {self.convergence}"
                break
            decrease = (accepted[2] - objective) / accepted[2] if accepted[2] > 0 else 0.0
            if blocked is not None and cycle.max_shift_su < self.convergence \
                    and decrease < SETTLED:
                # settled against the edge of the usable models: the full
                # step would make an atom unusable (U not positive definite)
                # and the damped steps no longer lower the objective
                result.converged = True
                result.reason = (f"max |shift/s.u.| {cycle.max_shift_su:.3g} < "
                                 f"{self.convergence} with damping {damping:.2g}; the undamped "
                                 f"shifts (max |shift/s.u.| {undamped:.3g}) would give: "
                                 f"{blocked}")
                result.blocked_atom = blocked.atom
                break
            damping = max(self.base_damping, damping / 10)
        else:
            if max_cycles > 0:
                result.reason = f"{max_cycles} cycles without convergence"
        self._finish(result)
        return result

    def _trial(self, x, weights):
        """Move the graph to x: (objective, None), or (inf, the
        RefinementDiverged) when the model there cannot be used."""
        try:
            self._move_to(x)
            return self._trial_objective(weights), None
        except RefinementDiverged as err:
            return math.inf, err

    def _trial_objective(self, weights):
        """Σ w r² (weights of the cycle that proposed the step, best K) +
        restraints at the graph's current parameters; RefinementDiverged when
        the model cannot be used."""
        y_calc = self.evaluate()
        if not np.all(np.isfinite(y_calc)):
            raise RefinementDiverged("the model gives non-finite structure factors")
        objective = _objective(self.y_obs, y_calc, weights)
        if self.restraints is not None:
            _, deltas, rweights = self.restraints(self.graph)
            objective += float(np.sum(rweights * deltas ** 2))
        return objective

    def _finish(self, result):
        """Figures at the final parameters (riding groups rebuilt); the
        model, FVAR 1 and the suggested weights."""
        self._ride(False)
        y_calc = self.evaluate()
        if not np.all(np.isfinite(y_calc)):
            raise RefinementDiverged("the final model gives non-finite structure factors")
        self.graph.update_model()
        k, weights = separable_scale(self.y_obs, y_calc, lambda k: self.weights(y_calc, k), self.k)
        self.k = k
        result.figures = self.figures(y_calc, k, weights)
        result.osf = self.osf(k)
        result.fc_sq = y_calc
        result.weights = weights
        self.model.free_variables[0] = result.osf
        if self.target == "fc_sq":
            result.suggested_weighting = suggest_weighting(
                self.data.fo_sq, self.data.sig_fo_sq, y_calc, k, self.n_parameters,
                self.model.instructions.weighting)


def _openblas_libraries():
    """The OpenBLAS libraries loaded in this process (numpy's and scipy's
    each bundle one) with their get/set-threads functions."""
    found = []
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps
                            if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return found
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "scipy_openblas64_", "openblas"):
            get = getattr(lib, prefix + "_get_num_threads", None)
            put = getattr(lib, prefix + "_set_num_threads", None)
            if get is not None and put is not None:
                found.append((get, put))
                break
    return found


@contextlib.contextmanager
def single_threaded_blas():
    """Run BLAS/LAPACK on one thread inside the block.

    The structure factors use the cores (OpenMP); the normal-matrix updates
    are small dsyrk calls per block of rows, for which a second set of
    BLAS threads only competes with them (measured 10x slower per cycle on
    hmamg under load).  Where the OpenBLAS libraries cannot be found the
    block runs unchanged."""
    libraries = _openblas_libraries()
    saved = [get() for get, _ in libraries]
    for _, put in libraries:
        put(1)
    try:
        yield
    finally:
        for (_, put), n in zip(libraries, saved):
            put(n)


def step_length(objective, slope, objective_full):
    """The fraction t of the shifts δ at which the parabola through the
    objective L(0), its slope L'(0) = −2 gᵀδ and L(1) (the objective after
    the full shifts) has its minimum: t = gᵀδ / (L(1) − L(0) + 2 gᵀδ).

    The normal equations predict L(t) = L(0) − 2t gᵀδ + t² δᵀBδ, whose
    minimum for the undamped shifts (Bδ = g) is at t = 1; for those, t < 1
    says that the objective curves 1/t times as steeply along δ as B says.

    Parameters
    ----------
    objective : float
        L(0).
    slope : float
        gᵀδ (g the right-hand side of the normal equations, −½ ∇L).
    objective_full : float
        L(1).

    Returns
    -------
    float
        t in (0, 1]; 1 when the full shifts lowered the objective by at
        least gᵀδ (half the decrease the slope alone promises), or when
        δ does not go downhill.
    """
    curvature = objective_full - objective + 2 * slope
    if not (slope > 0 and curvature > slope and math.isfinite(curvature)):
        return 1.0
    return slope / curvature


def _objective(y_obs, y_calc, weights):
    """min over K of Σ w (y_obs − K y_calc)²."""
    k = ls_scale(y_obs, y_calc, weights)
    return float(np.sum(weights * (y_obs - k * y_calc) ** 2))


def suggest_weighting(fo_sq, sig_fo_sq, fc_sq, scale, n_parameters, weighting=None,
                      n_batches=10):
    """SHELXL's suggested WGHT a, b for the current model.

    The reflections are sorted by Fc² and cut into ``n_batches`` batches of
    equal count; for trial a, b the goodness of fit of each batch is
    S_j² = [n/(n − p)] Σ_j w r² / n_j (w = 1/[σ² + (aP)² + bP] on the
    absolute scale, P = [max(Fo², 0) + 2Fc²]/3) and the a, b minimising
    Σ_j (S_j − 1)², i.e. a flat analysis of variance at GoF 1, are
    searched on a 9 × 9 grid (the points a + k·Δa, b + j·Δb, k, j = 1..9),
    whose origin then moves to one step below the best point (a += k_min·Δa)
    and whose step is quartered, until it is finer than 10⁻⁴ in a and
    5·10⁻³ in b; a grid whose best point lies on its upper edge is moved up
    with the step doubled.  The start and the rules are SHELXL's (as cctbx's
    smtbx documents them): a₀ = √max(10⁻⁴, 0.64 x / y) with
    x = Σ [(Fo² − Fc²)² − σ] P²/σ², y = Σ P⁴/σ², b₀ = a₀² ΣP / (2n);
    a > 0.2 is reported as a = 0.2, b = 0.  Moving the origin to the best
    point itself instead lets the search wander off the minimum (p31c_sad:
    a, b = 0.0286, 5.49, with Σ_j (S_j − 1)² = 0.86, against 0.0361, 0.86
    and 0.021 now; SHELXL suggested 0.0348, 0.63, where it is 0.045).  The
    resolution batches of the listing's analysis of variance are not part
    of the search.

    Parameters
    ----------
    fo_sq, sig_fo_sq : float64 (m,)
        File scale.
    fc_sq : float64 (m,)
        Absolute scale.
    scale : float
        K (Fo² ≈ K Fc²).
    n_parameters : int
    weighting : Weighting, optional
        Only its f (the weight of Fo² in P) is used (default 1/3).
    n_batches : int

    Returns
    -------
    (a, b) : floats
    """
    f = (weighting or Weighting()).f
    fo2 = np.maximum(fo_sq, 0.0) / scale
    sig = sig_fo_sq / scale
    sig_sq = np.maximum(sig * sig, 1e-300)
    fc2 = np.asarray(fc_sq, dtype=np.float64)
    n = len(fo2)
    p = f * fo2 + (1 - f) * fc2
    x = float(np.sum(((fo2 - fc2) ** 2 - sig) * p * p / sig_sq))
    y = float(np.sum(p ** 4 / sig_sq))
    a = math.sqrt(max(1e-4, 0.64 * x / max(1e-8, y)))
    b = 0.5 * float(np.sum(p)) * a * a / n
    a_step, b_step = 0.2 * a, 0.4 * b
    order = np.argsort(fc2, kind="stable")
    edges = [int(math.ceil(i * n / n_batches)) for i in range(n_batches + 1)]
    batches = [order[edges[i]:edges[i + 1]] for i in range(n_batches) if edges[i + 1] > edges[i]]
    factor = n / (n - n_parameters) if n > n_parameters else 1.0
    r_sq = [(fo2[j] - fc2[j]) ** 2 for j in batches]
    terms = [(sig_sq[j], p[j], p[j] ** 2) for j in batches]
    grid = np.arange(1, 10, dtype=np.float64)
    for _ in range(200):
        if not (a_step > 1e-4 and b_step > 5e-3):
            break
        a = max(a, 4 * a_step) - 4 * a_step
        b = max(b, 4 * b_step) - 4 * b_step
        a_values = a + a_step * grid            # (9,)
        b_values = b + b_step * grid
        variance = np.zeros((9, 9))
        for r2, (s2, pj, pj2) in zip(r_sq, terms):
            denominator = (s2[None, None, :] + (a_values[None, :, None] ** 2) * pj2[None, None, :]
                           + b_values[:, None, None] * pj[None, None, :])
            chi2 = np.sum(r2[None, None, :] / denominator, axis=2)
            variance += (np.sqrt(chi2 * factor / len(r2)) - 1) ** 2
        j_min, k_min = np.unravel_index(int(np.argmin(variance)), variance.shape)
        a += k_min * a_step
        b += j_min * b_step
        if k_min == 8:
            a_step *= 2
            continue
        if k_min != 0:
            a_step /= 4
        if j_min == 8:
            b_step *= 2
            continue
        if j_min != 0:
            b_step /= 4
        if a <= 1e-4:
            a_step /= 4
        if b <= 1e-3:
            b_step /= 4
    if a > 0.2:
        a, b = 0.2, 0.0
    return float(a), float(b)
