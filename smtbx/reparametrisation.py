"""The reparametrisation graph: crystallographic parameters y as functions
of the independent parameters x, with the sparse Jacobian J = ∂y/∂x.

y, per atom in model order: the fractional site (3), then u_iso (1) or U*
(6, order 11, 22, 33, 12, 13, 23, Å⁻² units as sftbx uses them), the
chemical occupancy, f' and f''; then the extinction parameter (EXTI) and
the twin fractions (BASF), when the model has them.

x: the free atomic parameters (site coordinates; U_iso or U_cif
components, in Å², so that their s.u.'s read as the ones SHELXL prints;
occupancies), the free variables fv(2), fv(3), ... that some parameter
uses (fv(1), the overall scale, is separable and belongs to lstbx), the
torsions and X–H lengths of rotating and stretching riding groups, the
rigid-group translations, rotations and scales, EXTI and BASF.

Constraints, each the only reparametrisation of the parameters it sets
(a second one, or a cycle, raises :class:`InvalidConstraint`):

* special positions, found by ``sgtbx.SiteSymmetry`` for the atoms the
  reader put on one (``Scatterer.site_order`` > 1, i.e. within the reader's
  special-position tolerance, 0.1 Å by default, and not in a negative
  PART): x = Z u + z, U* = P v (the free components are the earliest
  coordinates/components, their codes decide whether they are refined);
* free-variable codes c·fv(m) and c·(1 − fv(m)), fixed codes (10 + value);
* riding hydrogen sites (:mod:`smtbx.riding`), rebuilt at every evaluation
  from the current sites of the pivot and its neighbours, with exact
  derivatives with respect to all of them;
* U_iso(H) = k·U_eq(parent), U_eq = (1/3) Σ_ij G_ij U*_ij (G the metric
  tensor), or k·U_iso(parent);
* or, after :meth:`Reparametrisation.ride`, SHELXL's riding model: within
  a least-squares cycle the riding groups keep the shape they had at its
  start and move with their pivots ("the coordinate shifts are the same
  for both ... both C and H contribute to the derivative calculations",
  SHELXL's manual), and U_iso(H) keeps its value; both are rebuilt at the
  start of the next cycle.  The fixed point of these cycles is SHELXL's
  converged model, which is not the least-squares minimum of the exact
  graph: at SHELXL's deposited models one Gauss–Newton step of the exact
  graph still predicts a decrease of 4.1 (bjk_p21212), 4.6 (p31c_sad),
  2.1 (sucrose_p21) in Σ w r², that of the riding model 0.4, 0.9, 1.1;
  refinement with it ends 0.003 Å (rms) from p31c_sad's deposited model,
  with the exact graph 0.007 Å.  The exact graph is the one DESIGN.md
  describes; tests check both Jacobians against finite differences;
* EXYZ and EADP: the later atoms take the first atom's site or U;
* rigid groups (AFIX m6, m9; :mod:`smtbx.rigid`): translation, rotation
  and, for n = 9, a common scale.

The graph is evaluated in two stages: the parameters that depend on x
alone form one constant sparse affine map y = M x + b; the others (shared,
riding) are nodes computed in dependency order from the y values they read,
with their Jacobian rows composed by the chain rule.
"""

from dataclasses import dataclass

import gemmi
import numpy as np
import scipy.sparse

from sftbx import SLOTS
from sgtbx import SiteSymmetry
from sgtbx.errors import CrystallographyError

from . import model as m
from . import riding, rigid
from .connectivity import Connectivity

_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
_U_NAMES = ("U11", "U22", "U33", "U12", "U13", "U23")


class InvalidConstraint(CrystallographyError):
    """A constraint that cannot be built: a second reparametrisation of one
    parameter, a cycle, or a geometry the atoms do not allow.

    Parameters
    ----------
    message : str
        What is wrong, naming the atoms.
    file : str or None
        The model's source file.
    line : int or None
        1-based line of the instruction (AFIX, EXYZ, EADP) concerned.
    """

    def __init__(self, message, file=None, line=None):
        self.file = file
        self.line = line
        self.message = message
        where = "" if file is None else (f"{file}:{line}: " if line else f"{file}: ")
        super().__init__(where + message)


@dataclass
class _Affine:
    """q = const + Σ coef·x[col]."""

    const: float
    terms: list


class _Node:
    """y[y_out] = f(y[y_in], x[x_in]) with local Jacobians."""

    def __init__(self, y_out, y_in, x_in, atoms, what):
        self.y_out = np.asarray(y_out, dtype=np.int64)
        self.y_in = np.asarray(y_in, dtype=np.int64)
        self.x_in = np.asarray(x_in, dtype=np.int64)
        self.atoms = atoms
        self.what = what


class _CopyNode(_Node):
    def compute(self, y_in, x_in):
        n = len(self.y_out)
        return y_in.copy(), np.eye(n), np.zeros((n, 0))


class _LinearNode(_Node):
    def __init__(self, y_out, y_in, matrix, atoms, what):
        super().__init__(y_out, y_in, [], atoms, what)
        self.matrix = np.atleast_2d(matrix)

    def compute(self, y_in, x_in):
        return self.matrix @ y_in, self.matrix, np.zeros((len(self.y_out), 0))


class _RidingNode(_Node):
    def __init__(self, y_out, y_in, x_in, geometry, phi, d, phi_col, d_col, atoms, what):
        super().__init__(y_out, y_in, x_in, atoms, what)
        self.geometry = geometry
        self.phi, self.d = phi, d
        self.phi_col, self.d_col = phi_col, d_col
        self.frozen = None      # the input images (n_in, 3) the group rides with
        self._back = None       # and the inverses of their operations' rotations

    def _images(self, sites):
        return np.stack([r @ s + t for s, (_, r, t) in zip(sites, self.geometry.inputs)])

    def freeze(self, y_in):
        """From now on the group keeps the shape its inputs give it here and
        moves with its pivot (SHELXL's riding model; module notes)."""
        self.frozen = self._images(y_in.reshape(-1, 3))
        self._back = [np.linalg.inv(r) for _, r, _ in self.geometry.inputs]

    def compute(self, y_in, x_in):
        k = 0
        phi, d = self.phi, self.d
        if self.phi_col is not None:
            phi, k = x_in[k], k + 1
        if self.d_col is not None:
            d = x_in[k]
        sites = y_in.reshape(-1, 3)
        n_site = sites.size
        if self.frozen is None:
            value, jac = self.geometry.evaluate(sites, phi, d)
            d_sites = jac[:, :n_site]
        else:
            # every input image moves with the pivot's: site k is read where
            # its operation puts the frozen image shifted by the pivot's move
            shift = self._images(sites[:1])[0] - self.frozen[0]
            back = self._back
            moved = np.stack([b @ (f + shift - t) for b, f, (_, _, t)
                              in zip(back, self.frozen, self.geometry.inputs)])
            value, jac = self.geometry.evaluate(moved, phi, d)
            r0 = self.geometry.inputs[0][1]
            d_sites = np.zeros((jac.shape[0], n_site))
            d_sites[:, :3] = sum(jac[:, 3 * k:3 * k + 3] @ b @ r0 for k, b in enumerate(back))
        dx = []
        if self.phi_col is not None:
            dx.append(jac[:, n_site])
        if self.d_col is not None:
            dx.append(jac[:, n_site + 1])
        dx = np.stack(dx, axis=1) if dx else np.zeros((len(self.y_out), 0))
        return value.ravel(), d_sites, dx


class _RidingUNode(_LinearNode):
    """U_iso(H) = k U_eq(parent) (or k U_iso(parent))."""

    def __init__(self, y_out, y_in, matrix, atoms, what):
        super().__init__(y_out, y_in, matrix, atoms, what)
        self.frozen = None      # the value held, without derivatives (SHELXL's riding U)

    def freeze(self, y_in):
        self.frozen = self.matrix @ y_in

    def compute(self, y_in, x_in):
        if self.frozen is None:
            return super().compute(y_in, x_in)
        return self.frozen.copy(), np.zeros_like(self.matrix), np.zeros((len(self.y_out), 0))


class _RigidNode(_Node):
    def __init__(self, y_out, y_in, x_in, body, atoms, what):
        super().__init__(y_out, y_in, x_in, atoms, what)
        self.body = body

    def compute(self, y_in, x_in):
        value, jac = self.body.evaluate(x_in)
        return value.ravel(), np.zeros((len(self.y_out), 0)), jac


class Reparametrisation:
    """The reparametrisation graph of a model.

    Parameters
    ----------
    model : smtbx.model.Model
    special_position_tolerance : float
        Å, passed to ``sgtbx.SiteSymmetry`` for the atoms the reader found on
        special positions (use the reader's value, 0.1 Å by default; on the
        shared data any value from 0.1 to 0.5 Å puts the same atoms outside
        negative PARTs on special positions).
    refine_dispersion : iterable of str
        SFAC labels whose f' and f'' are refined, one pair of x parameters
        per type shared by its atoms ("Fe fp", "Fe fdp"); the others are
        fixed (from DISP/SFAC, else Cromer–Liberman at the CELL wavelength
        from gemmi, zero for explicit-coefficient types).

    Attributes
    ----------
    x : float64 (n_x,)
        Current independent parameters.
    x_names, y_names : list of str
    site_index : int64 (n_atoms, 3)
        y index of each atom's site.
    u_index : int64 (n_atoms, 6)
        y indices of U* (anisotropic atoms) or, in column 0, of u_iso (-1 elsewhere).
    occupancy_index, fp_index, fdp_index : int64 (n_atoms,)
    extinction_index : int
        -1 when the model has no EXTI.
    basf_index : int64 (n_basf,)
    unused_free_variables : list of int
        Free variables (m ≥ 2) that no parameter uses: not in x (SHELXL
        counts them as parameters).
    riding_geometries : list of smtbx.riding.RidingGeometry
    rigid_bodies : list of smtbx.rigid.RigidBody

    Raises
    ------
    InvalidConstraint
        Naming the atoms (and the file and line where known).
    """

    def __init__(self, model, special_position_tolerance=0.1, refine_dispersion=()):
        self.model = model
        self.tolerance = special_position_tolerance
        self.refine_dispersion = {str(t).upper() for t in refine_dispersion}
        self.cell = model.cell
        self.labels = [f"{s.label}_{s.residue_number}" if s.residue_number else s.label
                       for s in model.scatterers]
        self._x_names, self._x_values = [], []
        self._fv_cols = {}
        self._dispersion_cols = {}
        self._y_names = []
        self._b = []
        self._triplets = []             # (row, col, value) of M
        self._owner = {}                # y index -> what sets it (derived parameters)
        self.nodes = []
        self.riding_geometries = []
        self.rigid_bodies = []
        self._layout()
        self._free_variables()
        self._constraints()
        self._base()
        self._order_nodes()
        self.x = np.array(self._x_values, dtype=np.float64)
        self.x_names = list(self._x_names)
        self.y_names = list(self._y_names)
        n_y, n_x = len(self._y_names), len(self._x_names)
        rows, cols, vals = (np.array(v) for v in zip(*self._triplets)) if self._triplets else \
            (np.zeros(0, int), np.zeros(0, int), np.zeros(0))
        self._base_matrix = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(n_y, n_x))
        self._base_offset = np.array(self._b, dtype=np.float64)
        self.y, self.jacobian = self.evaluate()

    # ------------------------------------------------------------- layout
    def _new_y(self, name, value=0.0):
        self._y_names.append(name)
        self._b.append(value)
        return len(self._y_names) - 1

    def _new_x(self, name, value):
        self._x_names.append(name)
        self._x_values.append(float(value))
        return len(self._x_names) - 1

    def _layout(self):
        model = self.model
        n = len(model.scatterers)
        self.site_index = np.full((n, 3), -1, dtype=np.int64)
        self.u_index = np.full((n, 6), -1, dtype=np.int64)
        self.occupancy_index = np.full(n, -1, dtype=np.int64)
        self.fp_index = np.full(n, -1, dtype=np.int64)
        self.fdp_index = np.full(n, -1, dtype=np.int64)
        for i, s in enumerate(model.scatterers):
            lab = self.labels[i]
            self.site_index[i] = [self._new_y(f"{lab} {c}") for c in "xyz"]
            if s.is_anisotropic:
                self.u_index[i] = [self._new_y(f"{lab} {c}") for c in _U_NAMES]
            else:
                self.u_index[i, 0] = self._new_y(f"{lab} Uiso")
            self.occupancy_index[i] = self._new_y(f"{lab} occ")
            fp, fdp = self._dispersion(s)
            self.fp_index[i] = self._new_y(f"{lab} fp", fp)
            self.fdp_index[i] = self._new_y(f"{lab} fdp", fdp)
        ins = model.instructions
        self.extinction_index = -1 if ins.exti is None else self._new_y("EXTI")
        self.basf_index = np.array([self._new_y(f"BASF {k + 1}") for k in range(len(ins.basf))],
                                   dtype=np.int64)

    def _dispersion(self, scatterer):
        st = self.model.scattering_types[scatterer.type_index]
        if st.fp is not None:
            return st.fp, st.fdp
        el = gemmi.Element(st.element)
        if st.gaussians is not None or el.atomic_number < 3:
            return 0.0, 0.0
        energy = gemmi.hc / self.model.wavelength
        fp, fdp = gemmi.cromer_liberman(z=el.atomic_number, energy=energy)
        return fp, fdp

    def _free_variables(self):
        model = self.model
        used = set()
        for s in model.scatterers:
            for c in (*s.site_codes, s.occupancy_code, *s.u_codes):
                if c.kind == "free_variable":
                    used.add(c.free_variable)
        for r in model.restraints:
            if r.target_code.kind == "free_variable":
                used.add(r.target_code.free_variable)
        for c in model.constraints:
            if isinstance(c, m.FreeVariableSum):
                used.update(k for _, k in c.terms)
        for k in sorted(used):
            if k >= 2:
                self._fv_cols[k] = self._new_x(f"fv {k}", model.free_variables[k - 1])
        self.unused_free_variables = [k for k in range(2, len(model.free_variables) + 1)
                                      if k not in used]

    def free_variable_column(self, k):
        """x column of fv(k), or None when no parameter uses it."""
        return self._fv_cols.get(k)

    def _quantity(self, code, value, name, scale=1.0):
        """An elementary parameter (site coordinate, U component, occupancy)
        as an affine function of x: scale × (what the code says)."""
        if code.kind == "free":
            return _Affine(0.0, [(self._new_x(name, value), scale)])
        if code.kind == "fixed":
            return _Affine(scale * value, [])
        if code.kind == "free_variable":
            col = self._fv_cols[code.free_variable]
            c = scale * code.coefficient
            return _Affine(c, [(col, -c)]) if code.complement else _Affine(0.0, [(col, c)])
        raise InvalidConstraint(f"{name}: parameter code {code.kind!r} cannot be used here")

    def _set_affine(self, rows, matrix, offset, quantities):
        """y[rows] = matrix @ q + offset with q affine in x."""
        for r, row in enumerate(rows):
            b = offset[r]
            for c, q in enumerate(quantities):
                coef = matrix[r, c]
                if coef == 0.0:
                    continue
                b += coef * q.const
                for col, v in q.terms:
                    self._triplets.append((row, col, coef * v))
            self._b[row] = b

    # -------------------------------------------------------- constraints
    def _claim(self, rows, what):
        """Mark y rows as set by a constraint; a second claim is an error."""
        for row in np.atleast_1d(rows):
            row = int(row)
            if row in self._owner:
                raise self._error(what,
                    f"{self._y_names[row]} is constrained twice: by "
                    f"{self._owner[row][0]} and by {what[0]}")
            self._owner[row] = what

    def _error(self, what, message):
        """InvalidConstraint naming the model's file and the line in ``what``."""
        return InvalidConstraint(message, self.model.source or None, what[1] or None)

    def _constraints(self):
        model = self.model
        conn = None
        for c in model.constraints:
            if isinstance(c, m.RidingGroup):
                conn = conn or Connectivity(model)
                self._riding_group(c, conn)
            elif isinstance(c, m.RigidGroup):
                self._rigid_group(c)
        for c in model.constraints:
            if isinstance(c, m.SharedSite):
                self._shared(c, "EXYZ", self.site_index)
            elif isinstance(c, m.SharedAdp):
                self._shared(c, "EADP", self.u_index)
            elif isinstance(c, m.RidingU):
                self._riding_u(c)

    def _rigid_group(self, group):
        labels = self.labels
        names = " ".join(labels[i] for i in group.atoms)
        what = (f"rigid group {names}", getattr(group, "line", 0) or _afix_line(self.model, group.atoms[0]))
        if group.shape not in ("as_given",) + tuple(rigid.IDEAL_SIDE):
            raise self._error(what,f"{what[0]}: the ideal shape {group.shape!r} is not supported "
                                    "(AFIX m6/m9 with m = 0, 5, 6 or 7 are)")
        need = rigid.IDEAL_COUNT.get(group.shape)
        if (need is not None and len(group.atoms) != need) or len(group.atoms) < 3:
            raise self._error(what,f"{what[0]}: {len(group.atoms)} atoms, "
                                    f"{need if need is not None else 'at least 3'} expected")
        body = rigid.RigidBody(group, self.model.sites_frac[list(group.atoms)],
                               self.cell.orthogonalisation, self.cell.fractionalisation)
        first = labels[group.atoms[0]]
        cols = [self._new_x(f"{first} rigid {p}", v)
                for p, v in zip(("tx", "ty", "tz", "rx", "ry", "rz", "scale"), body.start())]
        y_out = self.site_index[list(group.atoms)].ravel()
        for i in group.atoms:
            if any(c.kind == "free_variable" for c in self.model.scatterers[i].site_codes):
                raise self._error(what,f"{what[0]}: {labels[i]} has free-variable codes on "
                                        "its coordinates")
        self._claim(y_out, what)
        self.nodes.append(_RigidNode(y_out, [], cols, body, list(group.atoms), what))
        self.rigid_bodies.append(body)

    def _shared(self, c, kind, index):
        first = c.atoms[0]
        names = " ".join(self.labels[i] for i in c.atoms)
        what = (f"{kind} {names}", c.line)
        src = index[first][index[first] >= 0]
        for i in c.atoms[1:]:
            dst = index[i][index[i] >= 0]
            if len(dst) != len(src):
                raise self._error(what,f"{kind} {names}: {self.labels[i]} and "
                                        f"{self.labels[first]} differ in being isotropic or anisotropic")
            self._check_codes(i, kind, what)
            self._claim(dst, what)
            self.nodes.append(_CopyNode(dst, src, [], [first, i], what))

    def _check_codes(self, i, kind, what):
        s = self.model.scatterers[i]
        codes = s.site_codes if kind == "EXYZ" else s.u_codes
        if any(code.kind == "free_variable" for code in codes):
            raise self._error(what,f"{what[0]}: {self.labels[i]} also has "
                                    "free-variable codes on the parameters the constraint sets")

    def _riding_u(self, c):
        model = self.model
        s, parent = model.scatterers[c.atom], model.scatterers[c.parent]
        what = (f"riding U of {self.labels[c.atom]} on {self.labels[c.parent]}", 0)
        if s.is_anisotropic:
            raise self._error(what,f"{self.labels[c.atom]}: a riding U must be isotropic")
        dst = self.u_index[c.atom, :1]
        self._claim(dst, what)
        if parent.is_anisotropic:
            g = self.cell.metric
            coef = np.array([g[i, j] * (1.0 if i == j else 2.0) for i, j in _PAIRS]) / 3.0
            src = self.u_index[c.parent]
        else:
            coef = np.array([1.0])
            src = self.u_index[c.parent, :1]
        self.nodes.append(_RidingUNode(dst, src, c.factor * coef[None, :], [c.atom, c.parent],
                                       what))

    def _riding_group(self, group, conn):
        model = self.model
        kind = type(group)
        labels = self.labels
        h_labels = " ".join(labels[i] for i in group.hydrogens)
        pivot = group.pivot
        what = (f"{kind.__name__} {labels[pivot]} ({h_labels})",
                getattr(group, "line", 0) or _afix_line(model, group.hydrogens[0]))
        if kind not in riding.NEIGHBOURS:
            raise self._error(what,f"{what[0]}: no riding geometry for this group")
        if len(group.hydrogens) != riding.HYDROGENS[kind]:
            raise self._error(what,f"{what[0]}: {len(group.hydrogens)} hydrogen atoms, "
                                    f"{riding.HYDROGENS[kind]} expected")
        h_part = next((model.scatterers[i].part for i in group.hydrogens
                       if model.scatterers[i].part), model.scatterers[pivot].part)
        nbs = [nb for nb in conn.neighbours(pivot)
               if nb.index not in group.hydrogens
               and (h_part == 0 or model.scatterers[nb.index].part in (0, h_part))]
        allowed = riding.NEIGHBOURS[kind]
        if len(nbs) not in allowed:
            found = ", ".join(f"{labels[nb.index]} {nb.distance:.3f} Å" for nb in nbs) or "none"
            raise self._error(what,
                f"{what[0]}: pivot {labels[pivot]} has {len(nbs)} bonded non-hydrogen "
                f"neighbours ({found}), {' or '.join(map(str, allowed))} expected")
        if kind is m.SecondaryPlanarXH:
            nbs = nbs[:2]
        eye = np.eye(3, dtype=np.int32)
        inputs = [(pivot, eye, np.zeros(3))] + [(nb.index, nb.rotation, nb.translation) for nb in nbs]
        sites = model.sites_frac
        h_sites = sites[list(group.hydrogens)]
        a, f = self.cell.orthogonalisation, self.cell.fractionalisation
        reference = None
        terminal = kind in riding.TERMINAL_TETRAHEDRAL or kind is m.TerminalPlanarXH2
        oriented = False     # the torsion reference is a bond of the neighbour
        if terminal and nbs:
            y_nb = nbs[0]
            axis = a @ (sites[pivot] - y_nb.image(sites[y_nb.index]))
            for s in conn.neighbours(y_nb.index):
                rot = (y_nb.rotation @ s.rotation).astype(np.int32)
                t = y_nb.rotation @ s.translation + y_nb.translation
                image = rot @ sites[s.index] + t
                if s.index == pivot and self._same_site(image, sites[pivot]):
                    continue
                if h_part and model.scatterers[s.index].part not in (0, h_part):
                    continue
                bond = a @ (image - y_nb.image(sites[y_nb.index]))
                # a substituent near the X-Y line (X-Y-S > 150 deg, e.g. a nitrile's N)
                # orients the torsion badly: such a group keeps the file's torsion
                if np.linalg.norm(np.cross(bond, axis)) < 0.5 * np.linalg.norm(bond) * np.linalg.norm(axis):
                    continue
                inputs.append((s.index, rot, t))
                oriented = True
                break
            if not oriented:
                reference = _perpendicular(axis)
        if kind is m.TerminalPlanarXH2 and not oriented:
            raise self._error(what,
                f"{what[0]}: the pivot's neighbour {labels[nbs[0].index]} has no other "
                "non-hydrogen neighbour off the X-Y line to put the hydrogen atoms in plane with")
        n_h = riding.HYDROGENS[kind]
        step = 2.0 * np.pi / 3.0 if n_h != 6 else np.pi / 3.0
        geometry = riding.RidingGeometry(group, inputs, len(nbs), reference, step, a, f)
        in_sites = np.array([r @ sites[j] + t for j, r, t in inputs])
        x_p = a @ sites[pivot]
        file_d = np.sqrt(np.sum((np.einsum("ab,kb->ka", a, h_sites) - x_p) ** 2, axis=1))
        default_d = riding.xh_length(kind, model.scattering_types[model.scatterers[pivot].type_index].element,
                                     model.instructions.temperature)
        d = group.distance if group.distance is not None else default_d
        if group.refined_distance and np.all(file_d > 0.5):
            d = float(np.mean(file_d))
        if d is None:
            raise self._error(what,f"{what[0]}: SHELXL's table has no X–H length for a "
                                    f"{model.scattering_types[model.scatterers[pivot].type_index].element} pivot; "
                                    "give it on the AFIX line")
        phi = 0.0
        if not nbs:
            if not file_d[0] > 0.5:
                raise self._error(what,f"{what[0]}: pivot {labels[pivot]} has no bonded "
                                        "non-hydrogen neighbour and the file's hydrogen position "
                                        "gives no direction")
            geometry.fixed_direction = a @ (h_sites[0] - sites[pivot]) / file_d[0]
        elif kind in riding.TERMINAL_TETRAHEDRAL:
            y_cart = a @ in_sites[1]
            ref = a @ in_sites[2] - y_cart if reference is None else reference
            usable = bool(np.all(file_d > 0.5))
            staggered = kind in (m.StaggeredTerminalTetrahedralXH3, m.DisorderedTerminalTetrahedralXH3)
            if staggered and oriented:
                phi = np.pi
            elif usable:
                phi = riding.torsion_of(x_p, y_cart, ref, a @ h_sites[0])
            elif staggered:
                raise self._error(what,
                    f"{what[0]}: the pivot's neighbour {labels[nbs[0].index]} has no other "
                    "non-hydrogen neighbour off the X-Y line to stagger the hydrogen atoms on, and "
                    "the file's hydrogen positions cannot give the torsion")
            else:
                phi = np.pi
            if n_h > 1 and usable:
                second = riding.torsion_of(x_p, y_cart, ref, a @ h_sites[1])
                if abs(np.angle(np.exp(1j * (second - phi - step)))) > \
                        abs(np.angle(np.exp(1j * (second - phi + step)))):
                    geometry.step = -step
        if kind is m.SecondaryXH2 and np.all(file_d > 0.5):
            trial = geometry.sites(in_sites, np.array(phi), np.array(d))
            if np.sum((trial[0] - h_sites[0]) @ self.cell.metric * (trial[0] - h_sites[0])) > \
                    np.sum((trial[1] - h_sites[0]) @ self.cell.metric * (trial[1] - h_sites[0])):
                geometry.inputs = [inputs[0], inputs[2], inputs[1]]
        first = labels[group.hydrogens[0]]
        phi_col = self._new_x(f"{first} torsion", phi) if group.rotating and nbs else None
        d_col = self._new_x(f"{first} distance", d) if group.refined_distance else None
        if group.rotating and not nbs:
            raise self._error(what,f"{what[0]}: a rotating group needs a pivot with a "
                                    "bonded non-hydrogen neighbour")
        y_out = self.site_index[list(group.hydrogens)].ravel()
        for i in group.hydrogens:
            if any(c.kind == "free_variable" for c in model.scatterers[i].site_codes):
                raise self._error(what,f"{what[0]}: {labels[i]} has free-variable codes on "
                                        "its coordinates")
        self._claim(y_out, what)
        y_in = np.concatenate([self.site_index[j] for j, _, _ in geometry.inputs])
        x_in = [c for c in (phi_col, d_col) if c is not None]
        self.nodes.append(_RidingNode(y_out, y_in, x_in, geometry, phi, d, phi_col, d_col,
                                      [pivot, *group.hydrogens], what))
        self.riding_geometries.append(geometry)

    def _same_site(self, a, b):
        delta = a - b
        return delta @ self.cell.metric @ delta < 1e-4

    # ------------------------------------------------------------------ base
    def _base(self):
        """Every y row not set by a constraint, as an affine function of x."""
        model = self.model
        cell = self.cell
        n_star = np.sqrt(np.diag(cell.reciprocal_metric))
        u_scale = np.array([n_star[i] * n_star[j] for i, j in _PAIRS])
        for i, s in enumerate(model.scatterers):
            lab = self.labels[i]
            special = s.site_order > 1 and s.part >= 0
            sym = None
            if special:
                sym = SiteSymmetry(cell, model.space_group, s.site_frac, min_distance=self.tolerance)
                if sym.order != s.site_order:
                    raise InvalidConstraint(
                        f"{lab}: site-symmetry order {sym.order} within {self.tolerance} Å, "
                        f"the reader found {s.site_order}", model.source or None)
            rows = self.site_index[i]
            if int(rows[0]) not in self._owner:
                if sym is not None:
                    z, exact = sym.site_matrix, sym.exact_site
                    free = [int(np.flatnonzero(col)[0]) for col in z.T]
                    offset = exact - z @ exact[free]
                else:
                    z, exact, free, offset = np.eye(3), s.site_frac, [0, 1, 2], np.zeros(3)
                q = [self._quantity(s.site_codes[c], exact[c], f"{lab} {'xyz'[c]}") for c in free]
                self._set_affine(rows, z, offset, q)
            if s.is_anisotropic:
                rows = self.u_index[i]
                if int(rows[0]) not in self._owner:
                    p = sym.adp_matrix if sym is not None else np.eye(6)
                    free = [int(np.flatnonzero(col)[0]) for col in p.T]
                    q = [self._quantity(s.u_codes[c], s.u_cif[c], f"{lab} {_U_NAMES[c]}", u_scale[c])
                         for c in free]
                    self._set_affine(rows, p, np.zeros(6), q)
            else:
                row = int(self.u_index[i, 0])
                if row not in self._owner:
                    if s.u_codes[0].kind == "riding":
                        raise InvalidConstraint(f"{lab}: riding U without a RidingU constraint",
                                                model.source or None)
                    self._set_affine([row], np.eye(1), np.zeros(1),
                                     [self._quantity(s.u_codes[0], s.u_iso, f"{lab} Uiso")])
            self._set_affine([int(self.occupancy_index[i])], np.eye(1), np.zeros(1),
                             [self._quantity(s.occupancy_code, s.occupancy, f"{lab} occ")])
            st = model.scattering_types[s.type_index]
            if st.label.upper() in self.refine_dispersion:
                for index, part in ((self.fp_index, "fp"), (self.fdp_index, "fdp")):
                    key = (st.label, part)
                    if key not in self._dispersion_cols:
                        self._dispersion_cols[key] = self._new_x(f"{st.label} {part}",
                                                                 self._b[int(index[i])])
                    self._set_affine([int(index[i])], np.eye(1), np.zeros(1),
                                     [_Affine(0.0, [(self._dispersion_cols[key], 1.0)])])
        ins = model.instructions
        if self.extinction_index >= 0:
            self._set_affine([self.extinction_index], np.eye(1), np.zeros(1),
                             [self._quantity(m.FREE, ins.exti, "EXTI")])
        for k, row in enumerate(self.basf_index):
            self._set_affine([int(row)], np.eye(1), np.zeros(1),
                             [self._quantity(m.FREE, ins.basf[k], f"BASF {k + 1}")])

    def _order_nodes(self):
        producer = {}
        for k, node in enumerate(self.nodes):
            for row in node.y_out:
                producer[int(row)] = k
        deps = [{producer[int(r)] for r in node.y_in if int(r) in producer} for node in self.nodes]
        order, state = [], [0] * len(self.nodes)

        def visit(k, path):
            if state[k] == 2:
                return
            if state[k] == 1:
                cycle = path[path.index(k):]
                atoms = sorted({self.labels[a] for j in cycle for a in self.nodes[j].atoms})
                raise self._error(
                    self.nodes[k].what, "constraints form a cycle: "
                    + " -> ".join(self.nodes[j].what[0] for j in cycle + [k])
                    + f" (atoms {', '.join(atoms)})")
            state[k] = 1
            for j in sorted(deps[k]):
                visit(j, path + [k])
            state[k] = 2
            order.append(k)

        for k in range(len(self.nodes)):
            visit(k, [])
        self.nodes = [self.nodes[k] for k in order]

    # ------------------------------------------------------------ evaluation
    @property
    def n_independent(self):
        return len(self.x)

    def _riding_nodes(self):
        return [n for n in self.nodes if isinstance(n, (_RidingNode, _RidingUNode))]

    @property
    def has_riding(self):
        """Whether any site or U_iso rides (what :meth:`ride` acts on)."""
        return bool(self._riding_nodes())

    def ride(self, on=True):
        """Switch SHELXL's riding model on (freezing the riding groups at the
        current x) or off, and update y and J.

        On: each riding group keeps the shape it has at the current x, its
        hydrogen sites moving with the pivot (their derivatives add to the
        pivot's; the torsion and X–H length keep theirs), and each riding
        U_iso keeps its current value, without derivatives, until the next
        call; the least squares call it at the start of every cycle.  Off:
        every evaluation rebuilds them from the current sites with exact
        derivatives (the module notes say why both exist).
        """
        riding_nodes = self._riding_nodes()
        for node in riding_nodes:
            node.frozen = None
        self.y, self.jacobian = self.evaluate()
        if on:
            for node in riding_nodes:
                node.freeze(self.y[node.y_in])
            self.y, self.jacobian = self.evaluate()

    def evaluate(self, x=None):
        """y(x) and J = ∂y/∂x.

        Parameters
        ----------
        x : float64 (n_x,), optional
            Default: the current ``self.x``.

        Returns
        -------
        y : float64 (n_y,)
        jacobian : scipy.sparse.csr_matrix, float64 (n_y, n_x)
        """
        x = self.x if x is None else np.asarray(x, dtype=np.float64)
        base = self._base_matrix
        y = base @ x + self._base_offset
        indptr, indices, data = base.indptr, base.indices, base.data
        rows = {}
        for node in self.nodes:
            y_in = y[node.y_in]
            values, d_y, d_x = node.compute(y_in, x[node.x_in])
            y[node.y_out] = values
            parts = []
            for r in node.y_in:
                r = int(r)
                parts.append(rows[r][0] if r in rows else indices[indptr[r]:indptr[r + 1]])
            cols = np.unique(np.concatenate(parts + [node.x_in]).astype(np.int64))
            dep = np.zeros((len(node.y_in) + len(node.x_in), len(cols)))
            for k, r in enumerate(node.y_in):
                r = int(r)
                c, v = rows[r] if r in rows else (indices[indptr[r]:indptr[r + 1]],
                                                  data[indptr[r]:indptr[r + 1]])
                dep[k, np.searchsorted(cols, c)] += v
            for k, c in enumerate(node.x_in):
                dep[len(node.y_in) + k, np.searchsorted(cols, c)] = 1.0
            local = np.hstack([d_y, d_x]) @ dep
            for k, r in enumerate(node.y_out):
                rows[int(r)] = (cols, local[k])
        if rows:
            lil_rows = sorted(rows)
            counts = np.diff(indptr).copy()
            for r in lil_rows:
                counts[r] = len(rows[r][0])
            new_ptr = np.concatenate([[0], np.cumsum(counts)])
            new_ind = np.empty(new_ptr[-1], dtype=np.int64)
            new_dat = np.empty(new_ptr[-1])
            derived = np.zeros(len(y), dtype=bool)
            derived[lil_rows] = True
            keep = ~derived
            # base rows keep their entries
            src_rows = np.repeat(np.arange(len(y)), np.diff(indptr))
            sel = keep[src_rows]
            dst_pos = new_ptr[src_rows[sel]] + (np.arange(len(indices))[sel] - indptr[src_rows[sel]])
            new_ind[dst_pos] = indices[sel]
            new_dat[dst_pos] = data[sel]
            for r in lil_rows:
                c, v = rows[r]
                new_ind[new_ptr[r]:new_ptr[r + 1]] = c
                new_dat[new_ptr[r]:new_ptr[r + 1]] = v
            jac = scipy.sparse.csr_matrix((new_dat, new_ind, new_ptr), shape=base.shape)
            jac.eliminate_zeros()
        else:
            jac = base.copy()
        return y, jac

    # --------------------------------------------------------------- outputs
    def y_columns(self):
        """int64 (n_atoms, len(sftbx.SLOTS)): the y index of each atom's
        parameters in the order of sftbx's ParameterMap slots (x, y, z, u_iso,
        U*11..U*23, occupancy, f', f''), -1 where the atom has no such
        parameter: ``sftbx.ParameterMap(graph.y_columns(), len(graph.y),
        graph.extinction_index)`` gives design rows in y."""
        n = len(self.model.scatterers)
        slot = {name: k for k, name in enumerate(SLOTS)}
        cols = np.full((n, len(SLOTS)), -1, dtype=np.int64)
        for k, c in enumerate("xyz"):
            cols[:, slot[c]] = self.site_index[:, k]
        aniso = self.model.anisotropic
        cols[~aniso, slot["u_iso"]] = self.u_index[~aniso, 0]
        for k, c in enumerate(("u11", "u22", "u33", "u12", "u13", "u23")):
            cols[aniso, slot[c]] = self.u_index[aniso, k]
        cols[:, slot["occupancy"]] = self.occupancy_index
        cols[:, slot["fp"]] = self.fp_index
        cols[:, slot["fdp"]] = self.fdp_index
        return cols

    def chain(self, rows_y):
        """Design rows in x from design rows in y: rows_y J.

        Parameters
        ----------
        rows_y : float64 (m, n_y)
            E.g. sftbx's design rows for the map of :meth:`y_columns`.

        Returns
        -------
        float64 (m, n_x)
        """
        rows_y = np.asarray(rows_y, dtype=np.float64)
        if rows_y.ndim != 2 or rows_y.shape[1] != len(self.y):
            raise InvalidConstraint(f"rows: expected shape (m, {len(self.y)}), got {rows_y.shape}")
        return np.asarray((self.jacobian.T @ rows_y.T).T)

    def arrays(self, y=None):
        """The y vector as the arrays of a structure-factor calculation.

        Returns
        -------
        dict with sites_frac (n, 3), u_iso (n,), u_star (n, 6), aniso (n,),
        occupancies (n,), fp (n,), fdp (n,), extinction (float or None),
        basf (k,)
        """
        y = self.y if y is None else y
        aniso = self.model.anisotropic
        u_star = np.zeros((len(aniso), 6))
        u_star[aniso] = y[self.u_index[aniso]]
        u_iso = np.zeros(len(aniso))
        u_iso[~aniso] = y[self.u_index[~aniso, 0]]
        if aniso.any():
            u_iso[aniso] = self.cell.u_eq(u_star[aniso])
        return dict(sites_frac=y[self.site_index], u_iso=u_iso, u_star=u_star, aniso=aniso,
                    occupancies=y[self.occupancy_index], fp=y[self.fp_index], fdp=y[self.fdp_index],
                    extinction=None if self.extinction_index < 0 else float(y[self.extinction_index]),
                    basf=y[self.basf_index])

    def apply_shifts(self, shifts):
        """x ← x + shifts, then y(x) and J, written back into the model.

        Parameters
        ----------
        shifts : float64 (n_x,)

        Returns
        -------
        y : float64 (n_y,)
        jacobian : scipy.sparse.csr_matrix
        """
        shifts = np.asarray(shifts, dtype=np.float64)
        if shifts.shape != self.x.shape or not np.all(np.isfinite(shifts)):
            raise InvalidConstraint(f"shifts: expected {len(self.x)} finite values, got shape {shifts.shape}")
        self.x = self.x + shifts
        self.y, self.jacobian = self.evaluate()
        self.update_model()
        return self.y, self.jacobian

    def update_model(self):
        """Write the current y (and the free variables of x) into the model."""
        model = self.model
        arrays = self.arrays()
        u_cif = self.cell.u_star_as_u_cif(arrays["u_star"]) if len(arrays["u_star"]) else arrays["u_star"]
        for i, s in enumerate(model.scatterers):
            s.site_frac = arrays["sites_frac"][i].copy()
            s.occupancy = float(arrays["occupancies"][i])
            if s.is_anisotropic:
                s.u_cif = u_cif[i].copy()
            else:
                s.u_iso = float(arrays["u_iso"][i])
        for k, col in self._fv_cols.items():
            model.free_variables[k - 1] = self.x[col]
        if self.extinction_index >= 0:
            model.instructions.exti = arrays["extinction"]
        model.instructions.basf = [float(v) for v in arrays["basf"]]


def _perpendicular(axis):
    """A fixed unit vector perpendicular to ``axis`` (Cartesian)."""
    axis = axis / np.linalg.norm(axis)
    trial = np.eye(3)[int(np.argmin(np.abs(axis)))]
    v = trial - (trial @ axis) * axis
    return v / np.linalg.norm(v)


def _afix_line(model, atom):
    """1-based line of the AFIX instruction in force at an atom, found in the
    model's source file (the model does not record it), or None."""
    if not model.source:
        return None
    try:
        with open(model.source, "rb") as fh:
            lines = fh.read().decode("latin-1").splitlines()
    except OSError:
        return None
    target = model.scatterers[atom].label.upper()
    residue = model.scatterers[atom].residue_number
    current_residue, afix_line = 0, None
    for number, text in enumerate(lines, 1):
        words = text.split()
        if not words or text[0] in " \t":
            continue
        head = words[0].upper()
        if head == "RESI":
            numbers = [w for w in words[1:] if w.lstrip("+-").isdigit()]
            current_residue = int(numbers[0]) if numbers else 0
        elif head == "AFIX":
            afix_line = number
        elif head == target and current_residue == residue:
            return afix_line
        elif head in ("HKLF", "END"):
            break
    return None
