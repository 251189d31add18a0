"""Write a :class:`smtbx.model.Model` as a SHELX .res file.

The writer restores SHELX's conventions (site occupation factors with the
special-position factor, Uij in the order 11 22 33 23 13 12, free-variable
codes 10m + p, negative U for riding atoms, AFIX codes) and writes every
restraint explicitly, with its σ's and residue-qualified atom names, so that
reading the file back gives the same model.  The file is written to a
temporary name beside the target and renamed, and never over the file the
model was read from.
"""

import os

import numpy as np

from .. import model as m
from ..errors import OutputError
from ..output import write_text_atomically
from . import codes

#: SHELX order of the six Uij from the model order 11 22 33 12 13 23.
_SHELX_U = (0, 1, 2, 5, 4, 3)


def _wrap(words, indent="    ", width=78):
    """Join words into SHELX lines of at most ``width`` characters, with '=' continuations."""
    lines, current = [], words[0]
    for w in words[1:]:
        if len(current) + 1 + len(w) > width - 2:
            lines.append(current + " =")
            current = indent + w
        else:
            current += " " + w
    lines.append(current)
    return lines


class _Writer:
    def __init__(self, model):
        self.model = model
        self.out = []
        self.eqiv_names = {op: name for name, op in model.instructions.eqiv.items()}

    def name(self, ref, residue=0):
        """An atom name as seen from an instruction standing in ``residue``."""
        s = self.model.scatterers[ref.index]
        label = s.label if s.residue_number == residue else f"{s.label}_{s.residue_number}"
        if ref.symop is not None:
            if s.residue_number != residue:
                raise OutputError(f"atom {s.label} in residue {s.residue_number} with a symmetry "
                                  "operation cannot be named in SHELX syntax")
            name = self.eqiv_names.get(ref.symop)
            if name is None:
                raise OutputError(f"atom {s.label}: its symmetry operation has no EQIV name")
            label += "_" + name
        return label

    def names(self, refs, residue=0):
        return [self.name(r, residue) for r in refs]

    # -- header ---------------------------------------------------------------
    def header(self):
        mdl, ins = self.model, self.model.instructions
        out = self.out
        out.append(f"TITL {mdl.title}".rstrip())
        a, b, c, al, be, ga = mdl.cell.parameters
        out.append(f"CELL {mdl.wavelength:.5f} {a:.5f} {b:.5f} {c:.5f} {al:.4f} {be:.4f} {ga:.4f}")
        e = mdl.cell_esd
        out.append(f"ZERR {mdl.z:g} " + " ".join(f"{x:.5f}" for x in e[:3]) + " " +
                   " ".join(f"{x:.4f}" for x in e[3:]))
        out.append(f"LATT {mdl.symmetry.latt}")
        for op in mdl.symmetry.operations:
            out.append("SYMM " + codes.format_symop(op.rotation, op.translation))
        plain = [st for st in mdl.scattering_types if st.gaussians is None]
        if plain:
            # SFAC numbers are positions: keep the order, one line per run.
            run = []
            for st in mdl.scattering_types:
                if st.gaussians is None:
                    run.append(st.label)
                    continue
                if run:
                    out.append("SFAC " + " ".join(run))
                    run = []
                out.append(self.sfac_coefficients(st))
            if run:
                out.append("SFAC " + " ".join(run))
        else:
            out.extend(self.sfac_coefficients(st) for st in mdl.scattering_types)
        for st in mdl.scattering_types:
            if st.dispersion_source == "DISP":
                values = [st.fp, st.fdp] + ([st.mu] if st.mu is not None else [])
                out.append(f"DISP ${st.label} " + " ".join(f"{v:.5f}" for v in values))
        out.append("UNIT " + " ".join(f"{u:g}" for u in mdl.unit))
        if ins.temperature is not None:
            out.append(f"TEMP {ins.temperature:.3f}")
        out.append(f"{ins.method} {ins.cycles}" + "".join(f" {a}" for a in ins.ls_args))
        for hkl in ins.omit_hkl:
            out.append("OMIT {} {} {}".format(*hkl))
        if ins.omit_s is not None:
            out.append(f"OMIT {ins.omit_s:g}" + (f" {ins.omit_two_theta:g}" if ins.omit_two_theta is not None else ""))
        if ins.shel is not None:
            out.append("SHEL " + " ".join(f"{v:g}" for v in ins.shel))
        if ins.merg != 2:
            out.append(f"MERG {ins.merg}")
        if ins.twin is not None:
            out.append("TWIN " + " ".join(f"{v:g}" for v in ins.twin.matrix.ravel()) +
                       f" {ins.twin.n_components}")
        for name, op in ins.eqiv.items():
            out.append(f"EQIV {op.name or name} " + codes.format_symop(op.rotation, op.translation))
        for raw in ins.other:
            out.extend(_wrap([raw.name] + [str(a) for a in raw.args]))
        if ins.defs is not None:
            out.append("DEFS " + " ".join(f"{v:g}" for v in ins.defs))

    @staticmethod
    def sfac_coefficients(st):
        a, b, c = st.gaussians
        values = [v for pair in zip(a, b) for v in pair] + [c]
        extra = [st.fp, st.fdp, st.mu, st.radius, st.weight]
        while extra and extra[-1] is None:
            extra.pop()
        values += [0.0 if v is None else v for v in extra]
        return f"SFAC {st.label} " + " ".join(f"{v:g}" for v in values)

    # -- restraints and constraints -----------------------------------------
    def restraint_words(self, r, residue=0):
        kind = r.kind
        if kind in ("DFIX", "DANG", "CHIV"):
            target = codes.encode(r.target, r.target_code) if r.target_code.kind == "free_variable" else r.target
            params = [target, r.sigmas[0]]
        elif kind == "SIMU":
            params = [*r.sigmas, r.dmax]
        elif kind == "NCSY":
            params = [r.target, *r.sigmas]
        else:
            params = list(r.sigmas)
        words = [kind] + [f"{p:g}" for p in params]
        if not r.all_atoms:
            for group in (r.groups if kind != "SAME" else r.groups[:1]):
                words += self.names(group, residue)
        return words

    def restraints(self):
        for r in self.model.restraints:
            if r.kind != "SAME":
                self.out.extend(_wrap(self.restraint_words(r)))
        for c in self.model.constraints:
            if isinstance(c, (m.SharedSite, m.SharedAdp)):
                name = "EXYZ" if isinstance(c, m.SharedSite) else "EADP"
                self.out.extend(_wrap([name] + self.names([m.AtomRef(i) for i in c.atoms])))
            elif isinstance(c, m.FreeVariableSum):
                words = ["SUMP", f"{c.target:g}", f"{c.sigma:g}"]
                for coef, k in c.terms:
                    words += [f"{coef:g}", str(k)]
                self.out.extend(_wrap(words))

    def scale_and_weights(self):
        mdl, ins = self.model, self.model.instructions
        w = ins.weighting
        values = [w.a, w.b, w.c, w.d, w.e, w.f]
        defaults = [None, None, 0.0, 0.0, 0.0, 1.0 / 3.0]
        while len(values) > 2 and abs(values[-1] - defaults[len(values) - 1]) < 1e-12:
            values.pop()
        self.out.append("WGHT " + " ".join(f"{v:.6f}" for v in values))
        if ins.exti is not None:
            self.out.append(f"EXTI {ins.exti:.6f}")
        if ins.swat is not None:
            self.out.append("SWAT " + " ".join(f"{v:.6f}" for v in ins.swat))
        if ins.basf:
            self.out.extend(_wrap(["BASF"] + [f"{v:.5f}" for v in ins.basf]))
        fv = mdl.free_variables
        for k in range(0, len(fv), 7):
            self.out.append("FVAR " + " ".join(f"{v:.5f}" for v in fv[k:k + 7]))

    # -- atoms --------------------------------------------------------------
    def afix_plan(self):
        """AFIX lines to write before atoms, and the atoms an 'AFIX 0' follows.

        A riding group's hydrogens must be consecutive.  A rigid group's
        atoms may be interleaved with riding hydrogens; the group is then
        resumed with AFIX m5, as SHELXL writes it.
        """
        before, after = {}, set()
        riding = set()
        for c in self.model.constraints:
            if isinstance(c, m.RidingGroup):
                riding.update(c.hydrogens)
        for c in self.model.constraints:
            if not isinstance(c, (m.RidingGroup, m.RigidGroup)):
                continue
            atoms = list(c.hydrogens) if isinstance(c, m.RidingGroup) else list(c.atoms)
            mm, n = codes.afix_code(c)
            before[atoms[0]] = f"AFIX {mm}{n}" + (f" {c.distance:.5f}" if c.distance is not None else "")
            after.add(atoms[-1])
            for prev, cur in zip(atoms, atoms[1:]):
                if cur == prev + 1:
                    continue
                gap = set(range(prev + 1, cur))
                if isinstance(c, m.RidingGroup) or not gap <= riding:
                    labels = " ".join(self.model.scatterers[i].label for i in atoms)
                    raise OutputError(f"AFIX {mm}{n} group {labels} is not consecutive in the atom list")
                before[cur] = f"AFIX {mm}5"
        return before, after

    def same_before(self):
        """Map first target atom → SAME restraints to write just before it."""
        result = {}
        scat = self.model.scatterers
        non_h = [i for i in range(len(scat)) if not self.model.is_hydrogen(i)]
        for r in self.model.restraints:
            if r.kind != "SAME":
                continue
            reference, target = r.groups
            first = target[0].index
            start = non_h.index(first) if first in non_h else -1
            if start < 0 or [a.index for a in target] != non_h[start:start + len(target)]:
                raise OutputError("SAME target atoms " + " ".join(scat[a.index].label for a in target) +
                                  " are not consecutive non-hydrogen atoms: cannot be written as SAME")
            result.setdefault(first, []).append(r)
        return result

    def atoms(self):
        mdl = self.model
        afix_before, afix_after = self.afix_plan()
        same = self.same_before()
        residue, part = 0, 0
        last_u_parent = None
        for i, s in enumerate(mdl.scatterers):
            if s.residue_number != residue:
                cls = mdl.residues.get(s.residue_number, "")
                self.out.append(f"RESI {s.residue_number} {cls}".rstrip() if s.residue_number else "RESI 0")
                residue = s.residue_number
            if s.part != part:
                self.out.append(f"PART {s.part}")
                part = s.part
            for r in same.get(i, []):
                self.out.extend(_wrap(self.restraint_words(r, residue)))
            if i in afix_before:
                self.out.append(afix_before[i])
            if s.u_parent is not None and s.u_parent != last_u_parent:
                raise OutputError(f"atom {s.label}: its U rides on {mdl.scatterers[s.u_parent].label}, "
                                  "which is not the previous atom with its own U")
            if s.u_parent is None:
                last_u_parent = i
            self.out.extend(self.atom_lines(s))
            if i in afix_after:
                self.out.append("AFIX 0")
        if part:
            self.out.append("PART 0")
        if residue:
            self.out.append("RESI 0")

    def atom_lines(self, s):
        xyz = [codes.encode(v, c) for v, c in zip(s.site_frac, s.site_codes)]
        sof = codes.encode(s.occupancy, s.occupancy_code, 1.0 / s.site_order)
        # SHELXL's own layout: at most 79 columns for labels of up to 4 characters
        head = f"{s.label:<4s} {s.type_index + 1:2d}" + "".join(f"{v:12.6f}" for v in xyz) + f"{sof:12.5f}"
        if s.u_cif is not None:
            u = [codes.encode(s.u_cif[k], s.u_codes[k]) for k in _SHELX_U]
            return [head + "".join(f"{v:11.5f}" for v in u[:2]) + " =",
                    "     " + "".join(f"{v:11.5f}" for v in u[2:])]
        u = codes.encode(s.u_iso, s.u_codes[0])
        return [head + f"{u:11.5f}"]

    def footer(self):
        h = self.model.instructions.hklf
        words = ["HKLF", str(h.n)]
        nondefault = (h.scale != 1.0, not np.array_equal(h.matrix, np.eye(3)), h.weight != 1.0, h.offset != 0)
        if any(nondefault):
            words += [f"{h.scale:g}"] + [f"{v:g}" for v in np.asarray(h.matrix).ravel()]
            if h.weight != 1.0 or h.offset != 0:
                words += [f"{h.weight:g}", str(h.offset)]
        self.out.append(" ".join(words))
        self.out.append("END")

    def text(self):
        self.header()
        self.restraints()
        self.scale_and_weights()
        self.atoms()
        self.footer()
        return "\n".join(self.out) + "\n"


def format_res(model):
    """The .res text of a model (see :func:`write_res`)."""
    return _Writer(model).text()


def write_res(model, path):
    """Write a model as a SHELX .res file, atomically.

    Parameters
    ----------
    model : Model
    path : str or os.PathLike

    Raises
    ------
    OutputError
        When ``path`` is the file the model was read from, or when part of
        the model cannot be expressed in SHELX syntax; nothing is written.
    """
    path = os.fspath(path)
    if model.source and os.path.exists(path) and os.path.exists(model.source) \
            and os.path.samefile(path, model.source):
        raise OutputError(f"{path}: refusing to overwrite the file the model was read from")
    text = format_res(model)
    write_text_atomically(path, text)
