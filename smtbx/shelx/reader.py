"""Read SHELX .ins/.res files into a :class:`smtbx.model.Model`.

The reader follows SHELXL's rules: an instruction starts in column 1, a line
ending in ``=`` continues on the next line (which starts with a blank),
other lines starting with a blank are comments, ``!`` starts a comment, and
reading stops at END.  A line whose first word is not an instruction is an
atom.  Restraints and constraints may name atoms before they appear, so
atom references are resolved once every atom is known, in the residue the
instruction stands in (or in every residue of the class its suffix names).

Everything the reader does not use as written is reported in
``Model.warnings`` with its line number; what it cannot read raises
:class:`~smtbx.errors.ShelxSyntaxError` naming the file and line.

Rules taken where the SHELXL manual is terse (each covered by a test on the
shared data):

* ``>``/``<`` ranges run through the atom list in file order and skip
  hydrogen atoms between their ends;
* SAME matches its atoms with the non-hydrogen atoms that follow it;
  SAME_class restrains every residue of the class to the first one;
* SADI_class and SADI_* form one set from the distances of all residues
  (``SADI_CCF3 O1 C1`` makes the O1–C1 distances of all CCF3 residues
  equal); other class restraints are applied residue by residue;
* DEFS changes the defaults of the restraints that follow it; a missing
  second σ is the first (DELU, RIGU) or twice the first (SAME, SIMU, ISOR);
  SIMU's dmax defaults to 2.0 Å;
* PART n sof overrides the sof of the atoms that follow until the next PART;
* a negative U_iso between −0.5 and −5 rides on the last atom read whose U
  is not riding; AFIX groups for hydrogens end after their number of atoms
  (or at the next AFIX).
"""

import os
import re
from dataclasses import dataclass

import gemmi
import numpy as np

import sftbx
from sgtbx import SiteSymmetryTable, SpaceGroup, UnitCell
from sgtbx.errors import CrystallographyError

from .. import model as m
from ..errors import ShelxSyntaxError, ShelxWarning, UnsupportedInstruction
from . import codes
from .hkl import read_hkl

RESTRAINTS = frozenset(codes.RESTRAINT_PARAMETERS)

#: Restraints that apply to every non-hydrogen atom when they name none.
ALL_ATOM_RESTRAINTS = frozenset({"DELU", "SIMU", "RIGU", "ISOR", "BUMP"})

#: Passed-through instructions that would change the model or the data if
#: applied: kept as written, with a warning.
NOT_APPLIED = {
    "HFIX": "hydrogen atoms are not generated",
    "ANIS": "atoms are not made anisotropic",
    "MOVE": "the atoms are not moved",
    "NEUT": "neutron scattering is not used",
    "SPEC": "the special-position tolerance is read_ins's special_position_tolerance",
    "LAUE": "Laue wavelengths are not used",
    "ABIN": "Babinet solvent correction is not applied",
    "ANSC": "anisotropic scaling is not applied",
    "ANSR": "anisotropic scaling is not applied",
    "XNPD": "the ADP limit is not applied",
}

#: Instructions kept verbatim (those in NOT_APPLIED with a warning).
PASSTHROUGH = frozenset("""
ACTA BOND CONF FMAP PLAN LIST MORE SIZE HTAB RTAB MPLA FREE BIND CONN
MOLE DAMP STIR WPDB GRID PRIG TWST WIGL TIME HOPE
""".split()) | frozenset(NOT_APPLIED)

#: Every instruction name the reader knows; any other first word is an atom.
INSTRUCTIONS = PASSTHROUGH | RESTRAINTS | frozenset("""
TITL CELL ZERR LATT SYMM SFAC DISP UNIT L.S. CGLS BLOC FVAR WGHT EXTI SWAT
TWIN BASF HKLF OMIT SHEL MERG TEMP REM END AFIX PART RESI DEFS SUMP EADP
EXYZ EQIV FRAG FEND
""".split())

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _is_number(token):
    return bool(_NUMBER.match(token))


@dataclass
class _Line:
    number: int            # 1-based line of the instruction's first line
    name: str              # upper-case instruction name without suffix
    suffix: str            # text after '_' in the instruction name ('' if none)
    args: list             # remaining tokens
    text: str              # the logical line, continuations joined


@dataclass
class _Pending:
    """An instruction naming atoms, resolved once all atoms are read."""

    line: _Line
    residue: int           # residue in force at the instruction
    n_atoms_before: int    # atoms read before it (SAME matches the following ones)
    defs: tuple            # DEFS in force


@dataclass
class _AtomRecord:
    label: str
    line: int
    sfac: int
    values: list           # the numbers after the sfac number


def _read_text(path):
    """The file as text, with a clear error for missing or binary files."""
    try:
        data = open(path, "rb").read()
    except FileNotFoundError:
        raise ShelxSyntaxError(path, None, "file not found") from None
    except OSError as err:
        raise ShelxSyntaxError(path, None, f"cannot be read: {err.strerror}") from None
    bad = re.search(rb"[\x00-\x08\x0b\x0e-\x19\x1b-\x1f\x7f]", data)
    if bad is not None:
        line = data.count(b"\n", 0, bad.start()) + 1
        raise ShelxSyntaxError(path, line, f"not a text file (byte 0x{data[bad.start()]:02x} "
                                           f"at offset {bad.start()})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _logical_lines(text):
    """Yield instructions as :class:`_Line`, stopping at END."""
    lines = re.split(r"\r\n|\r|\n", text)
    i = 0
    while i < len(lines):
        raw = lines[i]
        number = i + 1
        i += 1
        if not raw.strip() or raw[0] in " \t":
            continue
        first = raw.split()[0].upper()
        if first.startswith("+"):
            yield _Line(number, "+", "", [raw[1:].strip()], raw)
            continue
        if first == "TITL" or re.match(r"REM(\W|$)", first):
            name = "TITL" if first == "TITL" else "REM"
            yield _Line(number, name, "", [], raw.rstrip())
            continue
        body = raw.split("!", 1)[0]
        while body.rstrip().endswith("=") or re.search(r"\s=\s", body):
            body = body.split("=", 1)[0]
            if i < len(lines) and lines[i][:1] in (" ", "\t") and lines[i].strip():
                body += " " + lines[i].split("!", 1)[0]
                i += 1
            else:
                break
        tokens = body.split()
        if not tokens:
            continue
        head = tokens[0].upper()
        name, _, suffix = head.partition("_")
        if name == "END":
            return
        yield _Line(number, name, suffix, tokens[1:], body)


class _Reader:
    def __init__(self, path, special_position_tolerance):
        self.path = str(path)
        self.tolerance = special_position_tolerance
        self.warnings = []
        self.title = ""
        self.cell_line = None
        self.zerr = None
        self.latt = 1
        self.symm = []
        self.sfac = []
        self.unit = []
        self.fvar = []
        self.instructions = m.Instructions()
        self.eqiv = {}
        self.atoms = []            # _AtomRecord in file order
        self.atom_state = []       # (part, part_sof, residue, afix, u_riding_parent)
        self.residues = {}         # number -> class
        self.pending = []
        self.sump = []
        self.defs = codes.DEFS
        self.residue = 0
        self.part = 0
        self.part_sof = None
        self.afix_stack = []       # list of dict(m, n, d, pivot, atoms, expected, line)
        self.groups = []           # finished AFIX groups
        self.after_hklf = False
        self.last_u_parent = None  # last atom whose U is not riding

    # -- reporting ---------------------------------------------------------------
    def error(self, line, message, cls=ShelxSyntaxError):
        return cls(self.path, line, message)

    def warn(self, line, message):
        self.warnings.append(ShelxWarning(self.path, line, message))

    def numbers(self, line, tokens, what):
        try:
            return [float(t) for t in tokens]
        except ValueError:
            raise self.error(line.number, f"{line.name}: expected {what}, got {' '.join(tokens)!r}") from None

    # -- pass 1: instructions and atoms --------------------------------------------
    def read(self, text):
        for line in _logical_lines(text):
            if self.after_hklf and line.name not in ("REM", "TITL"):
                self.warn(line.number, f"{line.name} after HKLF is ignored (SHELXL stops reading at HKLF)")
                continue
            if line.name == "+":
                self.include(line)
            elif line.name in INSTRUCTIONS:
                getattr(self, "do_" + line.name.replace(".", "_"), self.do_passthrough)(line)
            else:
                self.do_atom(line)
        self.close_afix()

    def do_passthrough(self, line):
        if line.name in RESTRAINTS:
            self.pending.append(_Pending(line, self.residue, len(self.atoms), self.defs))
        else:
            if line.name in NOT_APPLIED:
                self.warn(line.number, f"{line.name} kept as written: {NOT_APPLIED[line.name]}")
            self.instructions.other.append(m.RawInstruction(
                line.name + ("_" + line.suffix if line.suffix else ""), line.args, line.number))

    def do_REM(self, line):
        pass

    def include(self, line):
        raise self.error(line.number, f"include file {line.args[0]!r}: '+filename' includes are not "
                                      "supported (copy the file's instructions in)", UnsupportedInstruction)

    def do_TITL(self, line):
        self.title = line.text[4:].strip()

    def do_CELL(self, line):
        values = self.numbers(line, line.args, "wavelength a b c alpha beta gamma")
        if len(values) != 7:
            raise self.error(line.number, f"CELL: expected 7 numbers (wavelength a b c alpha beta gamma), got {len(values)}")
        self.cell_line = (line.number, values)

    def do_ZERR(self, line):
        values = self.numbers(line, line.args, "Z and six s.u.'s")
        if len(values) != 7:
            raise self.error(line.number, f"ZERR: expected 7 numbers (Z and six s.u.'s), got {len(values)}")
        self.zerr = values

    def do_LATT(self, line):
        values = self.numbers(line, line.args[:1], "an integer")
        latt = int(values[0]) if values else 1
        if abs(latt) not in codes.CENTRING or (values and latt != values[0]):
            raise self.error(line.number, f"LATT: expected ±1..7, got {' '.join(line.args)}")
        self.latt = latt

    def do_SYMM(self, line):
        text = line.text.split(None, 1)[1] if len(line.text.split(None, 1)) > 1 else ""
        try:
            rot, trans = codes.parse_symop(text)
        except ValueError as err:
            raise self.error(line.number, f"SYMM: {err}") from None
        self.symm.append(m.SymmetryOperation(rot, trans))

    def do_SFAC(self, line):
        args = line.args
        if len(args) >= 2 and _is_number(args[1]):
            values = self.numbers(line, args[1:], "scattering-factor coefficients")
            if len(values) < 9:
                raise self.error(line.number, f"SFAC {args[0]}: expected a1 b1 a2 b2 a3 b3 a4 b4 c "
                                              f"[f' f'' mu r wt], got {len(values)} numbers")
            extra = values[9:] + [None] * (14 - len(values))
            # explicit coefficients: the label need not be an element
            element = self.element_symbol(args[0]) or args[0]
            gauss = (np.array(values[0:8:2]), np.array(values[1:8:2]), values[8])
            has_disp = len(values) >= 11
            self.sfac.append(m.ScatteringType(
                args[0], element, gauss, fp=extra[0], fdp=extra[1], mu=extra[2],
                radius=extra[3], weight=extra[4], dispersion_source="SFAC" if has_disp else None))
        else:
            for token in args:
                self.sfac.append(m.ScatteringType(token, self.element(line, token)))

    @staticmethod
    def element_symbol(label):
        """The element a SFAC label names (``Ga``, ``GA``, ``$C``), or None."""
        name = label.lstrip("$")
        if not re.fullmatch(r"[A-Za-z]{1,2}", name):
            return None
        el = gemmi.Element(name.capitalize())
        return el.name if el.atomic_number > 0 and el.name.upper() == name.upper() else None

    def element(self, line, label):
        symbol = self.element_symbol(label)
        if symbol is None:
            raise self.error(line.number, f"SFAC: {label!r} is not an element symbol")
        return symbol

    def do_DISP(self, line):
        if not line.args:
            raise self.error(line.number, "DISP: expected an element and f' f''")
        label = line.args[0].lstrip("$").upper()
        values = self.numbers(line, line.args[1:4], "f' f'' [mu]")
        if len(values) < 2:
            raise self.error(line.number, f"DISP {line.args[0]}: expected f' and f''")
        for st in self.sfac:
            if st.label.lstrip("$").upper() == label:
                st.fp, st.fdp = values[0], values[1]
                st.mu = values[2] if len(values) > 2 else st.mu
                st.dispersion_source = "DISP"
                return
        raise self.error(line.number, f"DISP: {line.args[0]} is not one of the SFAC types "
                                      f"({' '.join(s.label for s in self.sfac)})")

    def do_UNIT(self, line):
        self.unit = self.numbers(line, line.args, "one number per SFAC type")
        if len(self.unit) != len(self.sfac):
            self.warn(line.number, f"UNIT gives {len(self.unit)} numbers for {len(self.sfac)} SFAC types")

    def do_L_S_(self, line):
        self.ls("L.S.", line)

    def do_CGLS(self, line):
        self.ls("CGLS", line)
        self.warn(line.number, "CGLS: conjugate-gradient refinement is not supported; "
                               "refinement will use full-matrix least squares")

    def do_BLOC(self, line):
        raise self.error(line.number, "BLOC: blocked least squares is not supported "
                                      "(use L.S. for full-matrix refinement)", UnsupportedInstruction)

    def ls(self, method, line):
        values = self.numbers(line, line.args, "integers")
        self.instructions.method = method
        self.instructions.cycles = int(values[0]) if values else 0
        self.instructions.ls_args = [int(v) for v in values[1:]]

    def do_FVAR(self, line):
        self.fvar.extend(self.numbers(line, line.args, "free-variable values"))

    def do_WGHT(self, line):
        values = self.numbers(line, line.args, "a [b c d e f]")
        if len(values) > 6:
            raise self.error(line.number, f"WGHT: expected at most 6 numbers, got {len(values)}")
        w = m.Weighting()
        for name, v in zip("abcdef", values):
            setattr(w, name, v)
        self.instructions.weighting = w

    def do_EXTI(self, line):
        values = self.numbers(line, line.args, "x")
        self.instructions.exti = values[0] if values else 0.0

    def do_SWAT(self, line):
        values = self.numbers(line, line.args, "g U")
        self.instructions.swat = tuple((values + [0.0, 2.0][len(values):])[:2])

    def do_TWIN(self, line):
        values = self.numbers(line, line.args, "r11..r33 [N]")
        if len(values) not in (0, 9, 10):
            raise self.error(line.number, f"TWIN: expected 9 matrix elements and optionally N, got {len(values)} numbers")
        twin = m.Twin()
        if len(values) >= 9:
            twin.matrix = np.array(values[:9]).reshape(3, 3)
        if len(values) == 10:
            twin.n_components = int(values[9])
        self.instructions.twin = twin

    def do_BASF(self, line):
        self.instructions.basf.extend(self.numbers(line, line.args, "twin or batch scale factors"))

    def do_HKLF(self, line):
        values = self.numbers(line, line.args, "n [s r11..r33 wt m]")
        if not values:
            raise self.error(line.number, "HKLF: expected the format number")
        n = int(values[0])
        if abs(n) not in (4, 5) or n != values[0]:
            raise self.error(line.number, f"HKLF {line.args[0]}: only HKLF 4 and HKLF 5 are supported",
                             UnsupportedInstruction)
        if n < 0:
            raise self.error(line.number, "HKLF with a negative n (reflections inside the .ins) is not supported",
                             UnsupportedInstruction)
        hklf = m.Hklf(n=n)
        if len(values) > 1:
            hklf.scale = values[1]
        if len(values) > 2:
            if len(values) < 11:
                raise self.error(line.number, f"HKLF: expected 9 matrix elements after the scale, got {len(values) - 2}")
            hklf.matrix = np.array(values[2:11]).reshape(3, 3)
            if np.linalg.det(hklf.matrix) <= 0:
                raise self.error(line.number, "HKLF: the index matrix must have a positive determinant")
        if len(values) > 11:
            hklf.weight = values[11]
        if len(values) > 12:
            hklf.offset = int(values[12])
        self.instructions.hklf = hklf
        self.after_hklf = True

    def do_OMIT(self, line):
        args = line.args
        if not all(_is_number(t) for t in args) or not args:
            raise self.error(line.number, "OMIT with atom names (excluding atoms) is not supported",
                             UnsupportedInstruction)
        values = self.numbers(line, args, "h k l, or s 2theta")
        if len(values) == 3 and all(v == int(v) for v in values) and "." not in "".join(args):
            self.instructions.omit_hkl.append(tuple(int(v) for v in values))
        elif len(values) in (1, 2):
            self.instructions.omit_s = values[0]
            if len(values) == 2:
                self.instructions.omit_two_theta = values[1]
        else:
            raise self.error(line.number, f"OMIT: expected h k l (integers) or s 2theta, got {' '.join(args)!r}")

    def do_SHEL(self, line):
        values = self.numbers(line, line.args, "lowres highres")
        self.instructions.shel = tuple(values[:2]) if len(values) >= 2 else (values[0], 0.0) if values else None

    def do_MERG(self, line):
        values = self.numbers(line, line.args, "n")
        self.instructions.merg = int(values[0]) if values else 2

    def do_TEMP(self, line):
        values = self.numbers(line, line.args, "T (deg C)")
        self.instructions.temperature = values[0] if values else 20.0

    def do_DEFS(self, line):
        values = self.numbers(line, line.args, "sd sf su ss maxsof")
        self.defs = tuple(values + list(codes.DEFS[len(values):]))[:5]
        self.instructions.defs = self.defs

    def do_EQIV(self, line):
        if len(line.args) < 2:
            raise self.error(line.number, "EQIV: expected $n and a symmetry operation")
        name = line.args[0]
        try:
            rot, trans = codes.parse_symop(" ".join(line.args[1:]))
        except ValueError as err:
            raise self.error(line.number, f"EQIV {name}: {err}") from None
        self.eqiv[name.upper()] = m.SymmetryOperation(rot, trans, name)

    def do_FRAG(self, line):
        raise self.error(line.number, "FRAG/FEND fragments are not supported", UnsupportedInstruction)

    do_FEND = do_FRAG

    def do_SUMP(self, line):
        values = self.numbers(line, line.args, "c sigma c1 m1 ...")
        if len(values) < 4 or len(values) % 2:
            raise self.error(line.number, "SUMP: expected c sigma followed by pairs c_i m_i")
        terms = [(values[k], int(values[k + 1])) for k in range(2, len(values), 2)]
        self.sump.append(m.FreeVariableSum(values[0], values[1], terms, line.number))

    def do_EADP(self, line):
        self.pending.append(_Pending(line, self.residue, len(self.atoms), self.defs))

    do_EXYZ = do_EADP

    def do_RESI(self, line):
        numbers = [t for t in line.args if re.fullmatch(r"[+-]?\d+", t)]
        names = [t for t in line.args if not re.fullmatch(r"[+-]?\d+", t)]
        if not numbers:
            raise self.error(line.number, "RESI: expected a residue number")
        number = int(numbers[0])
        cls = names[0].upper() if names else ""
        if number != 0:
            previous = self.residues.get(number)
            if previous is not None and previous != cls and cls:
                self.warn(line.number, f"RESI {number}: class {cls} differs from the earlier {previous}")
            if previous is None or cls:
                self.residues[number] = cls
        self.residue = number

    def do_PART(self, line):
        values = self.numbers(line, line.args, "n [sof]")
        self.part = int(values[0]) if values else 0
        self.part_sof = values[1] if len(values) > 1 else None

    def do_AFIX(self, line):
        values = self.numbers(line, line.args, "mn [d sof U]")
        mn = int(values[0]) if values else 0
        mm, n = divmod(mn, 10)
        self.close_afix()
        if mn == 0:
            return
        if len(values) > 2:
            self.warn(line.number, f"AFIX {mn}: the sof/U given on the AFIX line are not applied "
                                   "(the atom lines' values are used)")
        d = values[1] if len(values) > 1 and values[1] > 0 else None
        if n in codes.RIDING_MODE and mm in codes.RIDING_GEOMETRY:
            pivot = self.last_pivot()
            if pivot is None:
                raise self.error(line.number, f"AFIX {mn}: no atom before it to carry the hydrogens")
            kind, expected = "riding", codes.RIDING_COUNT[mm]
        elif n in (6, 9) and mm in codes.RIGID_SHAPE:
            pivot, kind, expected = None, "rigid", codes.RIGID_COUNT[mm]
        elif n == 5 and mm in codes.RIGID_SHAPE:
            # AFIX m5: the atoms that follow belong to the last rigid group
            # (after riding hydrogens on its atoms).
            rigid = [k for k, g in enumerate(self.groups) if g["kind"] == "rigid"]
            if not rigid or self.groups[rigid[-1]]["m"] != mm:
                raise self.error(line.number, f"AFIX {mn}: no rigid group AFIX {mm}6 or {mm}9 to continue")
            self.afix_stack.append(self.groups.pop(rigid[-1]))
            return
        else:
            raise self.error(line.number, f"AFIX {mn}: m = {mm}, n = {n} is not supported "
                                          "(riding n = 3, 4, 7, 8; rigid n = 6, 9)", UnsupportedInstruction)
        self.afix_stack.append(dict(m=mm, n=n, d=d, pivot=pivot, atoms=[], expected=expected,
                                    kind=kind, line=line.number))

    def last_pivot(self):
        for i in range(len(self.atoms) - 1, -1, -1):
            if self.atom_state[i][3][0] == 0 or self.atom_state[i][3][1] in (6, 9, 5):
                return i
        return None

    def close_afix(self):
        while self.afix_stack:
            group = self.afix_stack.pop()
            if group["expected"] and len(group["atoms"]) != group["expected"] and group["kind"] == "riding":
                self.warn(group["line"], f"AFIX {group['m']}{group['n']}: {len(group['atoms'])} atoms "
                                         f"follow, {group['expected']} expected")
            if group["atoms"]:
                self.groups.append(group)

    def do_atom(self, line):
        label = line.text.split()[0]
        tokens = line.args
        if len(tokens) < 4:
            raise self.error(line.number, f"{label!r} is neither a SHELX instruction nor an atom "
                                          "(an atom needs: name sfac x y z [sof [U | U11 U22 U33 U23 U13 U12]])")
        try:
            sfac = int(tokens[0])
            values = [float(t) for t in tokens[1:]]
        except ValueError:
            raise self.error(line.number, f"atom {label}: expected an SFAC number and numbers "
                                          f"x y z [sof U...], got {' '.join(tokens)!r}") from None
        if len(values) not in (3, 4, 5, 10):
            raise self.error(line.number, f"atom {label}: expected x y z [sof [U | six Uij]], got {len(values)} numbers")
        if not 1 <= sfac <= len(self.sfac):
            raise self.error(line.number, f"atom {label}: SFAC number {sfac} is not defined "
                                          f"({len(self.sfac)} SFAC types)")
        if len(values) == 3:
            values.append(11.0)
        if len(values) == 4:
            values.append(0.05)
        afix = (0, 0)
        if self.afix_stack:
            group = self.afix_stack[-1]
            group["atoms"].append(len(self.atoms))
            afix = (group["m"], group["n"])
        riding_parent = None
        if len(values) == 5 and -5.0 < values[4] <= -0.5:
            if self.last_u_parent is None:
                raise self.error(line.number, f"atom {label}: riding U {values[4]} but no earlier atom to ride on")
            riding_parent = self.last_u_parent
        else:
            self.last_u_parent = len(self.atoms)
        self.atoms.append(_AtomRecord(label, line.number, sfac - 1, values))
        self.atom_state.append((self.part, self.part_sof, self.residue, afix, riding_parent))
        if self.afix_stack:
            group = self.afix_stack[-1]
            if group["kind"] == "riding" and len(group["atoms"]) == group["expected"]:
                self.close_afix()


def read_ins(path, *, special_position_tolerance=0.1):
    """Read a SHELX .ins or .res file.

    Parameters
    ----------
    path : str or os.PathLike
    special_position_tolerance : float
        Distance (Å) within which an atom counts as lying on a symmetry
        element; its SHELX site occupation factor is then divided by the
        site-symmetry factor to give the chemical occupancy.  Atoms in a
        negative PART are never treated as special.

    Returns
    -------
    Model
        With ``Model.warnings`` listing what was not used as written.

    Raises
    ------
    ShelxSyntaxError
        For what cannot be read, naming the file and line.
    """
    reader = _Reader(path, special_position_tolerance)
    reader.read(_read_text(path))
    return _Builder(reader).build()


def read_shelx(name, *, special_position_tolerance=0.1):
    """Read NAME.ins (or NAME.res when there is no .ins) and NAME.hkl.

    Parameters
    ----------
    name : str or os.PathLike
        The stem, with or without one of the extensions .ins, .res, .hkl.

    Returns
    -------
    Model
        With ``Model.observations`` read according to its HKLF instruction.

    Raises
    ------
    ShelxSyntaxError
        When a file is missing or cannot be read.
    """
    stem = os.fspath(name)
    root, ext = os.path.splitext(stem)
    if ext.lower() in (".ins", ".res", ".hkl"):
        stem = root
    for ext in (".ins", ".res"):
        if os.path.exists(stem + ext):
            model = read_ins(stem + ext, special_position_tolerance=special_position_tolerance)
            break
    else:
        raise ShelxSyntaxError(stem + ".ins", None, "file not found (nor " + os.path.basename(stem) + ".res)")
    model.observations = read_hkl(stem + ".hkl", model.instructions.hklf)
    return model


class _Builder:
    """Pass 2: symmetry, scatterers, atom references."""

    def __init__(self, reader):
        self.r = reader
        self.path = reader.path

    def error(self, line, message):
        return ShelxSyntaxError(self.path, line, message)

    def build(self):
        r = self.r
        if r.cell_line is None:
            raise self.error(None, "no CELL instruction")
        if not r.sfac:
            raise self.error(None, "no SFAC instruction")
        line, (wavelength, *params) = r.cell_line
        zerr = r.zerr if r.zerr is not None else [1.0] + [0.0] * 6
        try:
            cell = UnitCell(*params, esds=zerr[1:])
        except CrystallographyError as err:
            raise self.error(line, f"CELL: {err}") from None
        space_group = self.space_group()
        fvar = np.array(r.fvar if r.fvar else [1.0], dtype=np.float64)
        self.fvar = fvar
        scatterers = self.scatterers(cell, space_group)
        self.model = m.Model(
            title=r.title, wavelength=wavelength, cell=cell, cell_esd=np.array(zerr[1:]), z=zerr[0],
            symmetry=m.Symmetry(r.latt, r.symm, space_group), scattering_types=r.sfac,
            unit=r.unit, scatterers=scatterers, free_variables=fvar,
            instructions=r.instructions, residues=dict(r.residues), source=self.path)
        self.model.instructions.eqiv = r.eqiv
        self.model.warnings = r.warnings
        self.model.constraints = self.afix_constraints() + self.riding_u()
        self.resolve_pending()
        self.check_free_variables()
        return self.model

    # -- symmetry -------------------------------------------------------------------
    def space_group(self):
        r = self.r
        ops = [(np.eye(3, dtype=int), np.zeros(3))]
        ops += [(op.rotation, op.translation) for op in r.symm]
        if r.latt > 0:
            ops += [(-rot, -t) for rot, t in ops]
        ops += [(np.eye(3, dtype=int), np.array([float(x) for x in c]))
                for c in codes.CENTRING[abs(r.latt)][1:]]
        try:
            sg = SpaceGroup.from_operations(ops)
        except CrystallographyError as err:
            raise self.error(None, f"LATT {r.latt} and the SYMM operations: {err}") from None
        expected = (1 + len(r.symm)) * (2 if r.latt > 0 else 1) * len(codes.CENTRING[abs(r.latt)])
        if sg.order_z != expected:
            raise self.error(None, f"LATT {r.latt} and {len(r.symm)} SYMM operations generate "
                                   f"{sg.order_z} operations, {expected} expected: an operation is "
                                   "missing or duplicated")
        return sg

    # -- scatterers ---------------------------------------------------------------
    def code(self, record, value):
        try:
            v, code = codes.decode(value)
        except ValueError as err:
            raise self.error(record.line, f"atom {record.label}: {err}") from None
        if code.kind == "free_variable" and code.free_variable > len(self.fvar):
            raise self.error(record.line, f"atom {record.label}: {value} refers to free variable "
                                          f"{code.free_variable}, but FVAR defines only {len(self.fvar)}")
        return v, code

    def value(self, v, code):
        return code.value(self.fvar) if code.kind == "free_variable" else v

    def scatterers(self, cell, space_group):
        r = self.r
        sites = np.zeros((len(r.atoms), 3))
        site_codes = []
        for i, rec in enumerate(r.atoms):
            decoded = [self.code(rec, x) for x in rec.values[:3]]
            sites[i] = [self.value(v, c) for v, c in decoded]
            site_codes.append(tuple(c for _, c in decoded))
        if len(sites):
            orders = SiteSymmetryTable(cell, space_group, sites, min_distance=r.tolerance).orders
        else:
            orders = np.zeros(0, dtype=int)
        result = []
        for i, rec in enumerate(r.atoms):
            part, part_sof, residue, afix, riding_parent = r.atom_state[i]
            order = 1 if part < 0 else int(orders[i])
            sof_value = part_sof if part_sof is not None else rec.values[3]
            v, code = self.code(rec, sof_value)
            if code.kind == "free_variable":
                code = m.ParameterCode(code.kind, code.free_variable, code.coefficient * order, code.complement)
                occupancy = code.value(self.fvar)
            else:
                occupancy = v * order
                code = m.ParameterCode(code.kind)
            if occupancy > 1.0 + 1e-3 or occupancy < -1e-6:
                r.warn(rec.line, f"atom {rec.label}: occupancy {occupancy:.5f} (site-symmetry order "
                                 f"{order} divided out of the sof) is outside [0, 1]")
            u_values = rec.values[4:]
            u_parent = None
            if riding_parent is not None:
                u_iso, u_cif = None, None
                u_codes = (m.ParameterCode("riding", 0, -u_values[0]),)
                u_parent = riding_parent
            elif len(u_values) == 1:
                v, c = self.code(rec, u_values[0])
                u_iso, u_cif, u_codes = self.value(v, c), None, (c,)
            else:
                decoded = [self.code(rec, x) for x in u_values]
                shelx = [self.value(v, c) for v, c in decoded]
                # SHELX order 11 22 33 23 13 12 -> model order 11 22 33 12 13 23
                perm = (0, 1, 2, 5, 4, 3)
                u_cif = np.array([shelx[k] for k in perm])
                u_codes = tuple(decoded[k][1] for k in perm)
                u_iso = None
            result.append(m.Scatterer(
                label=rec.label, type_index=rec.sfac, site_frac=sites[i].copy(), site_codes=site_codes[i],
                occupancy=occupancy, occupancy_code=code, u_iso=u_iso, u_cif=u_cif, u_codes=u_codes,
                u_parent=u_parent, part=part, residue_number=residue,
                residue_class=r.residues.get(residue, ""), afix=afix, site_order=order))
        for s in result:
            if s.u_parent is not None:
                parent = result[s.u_parent]
                if parent.u_cif is not None:
                    u_eq = float(cell.u_eq(cell.u_cif_as_u_star(parent.u_cif)))
                else:
                    u_eq = parent.u_iso
                s.u_iso = s.u_codes[0].coefficient * u_eq
        self.warn_non_positive_definite(result)
        return result

    def warn_non_positive_definite(self, atoms):
        """A warning on the line of each atom whose U is not positive
        definite (NPD), as SHELXL flags them; they are used as written."""
        aniso = [i for i, s in enumerate(atoms) if s.u_cif is not None]
        npd = dict(zip(aniso, sftbx.not_positive_definite([atoms[i].u_cif for i in aniso])))
        for i, s in enumerate(atoms):
            if npd.get(i, False):
                what = "its U is not positive definite (NPD)"
            elif s.u_cif is None and s.u_iso is not None and s.u_iso < 0:
                what = f"its U_iso {s.u_iso:.5f} is negative (NPD)"
            else:
                continue
            self.r.warn(self.r.atoms[i].line, f"atom {self.name(s)}: {what}; its structure "
                                              "factors are computed as written (SHELXL does too)")

    def riding_u(self):
        return [m.RidingU(i, s.u_parent, s.u_codes[0].coefficient)
                for i, s in enumerate(self.model.scatterers) if s.u_parent is not None]

    def afix_constraints(self):
        result = []
        for g in self.r.groups:
            if g["kind"] == "riding":
                rotating, refined = codes.RIDING_MODE[g["n"]]
                cls = codes.RIDING_GEOMETRY[g["m"]]
                result.append(cls(g["pivot"], list(g["atoms"]), rotating, refined, g["d"]))
            else:
                result.append(m.RigidGroup(list(g["atoms"]), codes.RIGID_SHAPE[g["m"]], g["n"] == 9, g["d"]))
        return result

    def check_free_variables(self):
        used = set()
        for s in self.model.scatterers:
            for c in (*s.site_codes, s.occupancy_code, *s.u_codes):
                if c.kind == "free_variable":
                    used.add(c.free_variable)
        for rst in self.model.restraints:
            if rst.target_code.kind == "free_variable":
                used.add(rst.target_code.free_variable)
        for c in self.model.constraints:
            if isinstance(c, m.FreeVariableSum):
                used.update(mm for _, mm in c.terms)
        unused = [k for k in range(2, len(self.fvar) + 1) if k not in used]
        if unused:
            self.r.warn(None, "free variables " + ", ".join(map(str, unused)) +
                        " are not used by any parameter (SHELXL still counts them as parameters)")

    # -- atom references ----------------------------------------------------------
    def resolve_pending(self):
        atoms = self.model.scatterers
        self.by_name = {}
        for i, s in enumerate(atoms):
            key = (s.label.upper(), s.residue_number)
            if key in self.by_name:
                self.r.warn(self.r.atoms[i].line, f"atom {s.label} appears twice in residue "
                                                  f"{s.residue_number}; references use the first")
                continue
            self.by_name[key] = i
        self.class_residues = {}
        for s in atoms:
            if s.residue_number and s.residue_class:
                lst = self.class_residues.setdefault(s.residue_class, [])
                if s.residue_number not in lst:
                    lst.append(s.residue_number)
        self.all_residues = sorted({s.residue_number for s in atoms}, key=lambda n: (n != 0, n))
        for sm in self.r.sump:
            for _, k in sm.terms:
                if not 1 <= k <= len(self.fvar):
                    raise self.error(sm.line, f"SUMP: free variable {k} is not defined by FVAR")
            self.model.constraints.append(sm)
        for p in self.r.pending:
            if p.line.name in ("EADP", "EXYZ"):
                self.shared(p)
            else:
                self.restraint(p)

    def residues_for(self, p):
        """The residues an instruction applies to, from its suffix."""
        suffix = p.line.suffix
        if not suffix:
            return [p.residue]
        if suffix == "*":
            return self.all_residues
        if re.fullmatch(r"\d+", suffix):
            return [int(suffix)]
        residues = self.class_residues.get(suffix.upper())
        if not residues:
            self.r.warn(p.line.number, f"{p.line.name}_{suffix}: no residue of class {suffix} "
                                       "(the instruction is ignored)")
            return []
        return residues

    def lookup(self, p, token, residue):
        """(index, symop) pairs for one atom token seen from a residue.

        ``C1`` (in that residue), ``C1_3`` (residue 3), ``C1_+``/``C1_-``
        (next/previous residue), ``C1_*`` (every residue), ``C1_$2`` (the
        residue's C1 moved by EQIV $2), ``N4A^a`` (checked to be in PART 1),
        ``$C`` (every atom of element C), ``LAST`` (the last atom).
        """
        atoms = self.model.scatterers
        if token.upper() == "LAST":
            return [(len(atoms) - 1, None)]
        if token.startswith("$"):
            element = token[1:].upper()
            found = [(i, None) for i, s in enumerate(atoms)
                     if self.model.scattering_types[s.type_index].element.upper() == element]
            if not found:
                raise LookupError(f"no atoms of type {token}")
            return found
        label, _, suffix = token.partition("_")
        label, _, part = label.partition("^")
        symop = None
        res = residue
        if suffix:
            suffix, _, part2 = suffix.partition("^")
            part = part or part2
            if suffix.startswith("$"):
                symop = self.r.eqiv.get(suffix.upper())
                if symop is None:
                    raise LookupError(f"{token}: {suffix} is not defined by an EQIV instruction")
            elif re.fullmatch(r"[+-]?\d+", suffix):
                res = int(suffix)
            elif suffix in ("+", "-"):
                res = residue + (1 if suffix == "+" else -1)
            elif suffix == "*":
                found = [(i, None) for i, s in enumerate(atoms) if s.label.upper() == label.upper()]
                if not found:
                    raise LookupError(f"no atom {label} in any residue")
                return found
            else:
                raise LookupError(f"{token}: cannot read the suffix _{suffix}")
        index = self.by_name.get((label.upper(), res))
        if index is None:
            raise LookupError(f"no atom {label} in residue {res}" if res else f"no atom {label}")
        if part:
            wanted = ord(part.lower()) - ord("a") + 1
            if abs(atoms[index].part) != wanted:
                raise LookupError(f"{token}: atom {label} is in PART {atoms[index].part}, not {wanted}")
        return [(index, symop)]

    def expand(self, p, tokens, residue):
        """Atom references for a list of tokens with '>' and '<' ranges (hydrogens skipped inside)."""
        # ranges may be glued to a name: "O1>F9", "C11 >C15"
        tokens = [t for tok in tokens for t in re.split(r"([<>])", tok) if t]
        refs = []
        k = 0
        while k < len(tokens):
            tok = tokens[k]
            if tok in (">", "<"):
                if not refs or k + 1 >= len(tokens):
                    raise LookupError(f"'{tok}' needs an atom on each side")
                start = refs[-1][0]
                end = self.lookup(p, tokens[k + 1], residue)[0][0]
                step = 1 if tok == ">" else -1
                if (end - start) * step < 0:
                    raise LookupError(f"range {self.model.scatterers[start].label} {tok} "
                                      f"{self.model.scatterers[end].label} runs the wrong way in the atom list")
                for i in range(start + step, end, step):
                    if not self.model.is_hydrogen(i):
                        refs.append((i, None))
                refs.append((end, None))
                k += 2
                continue
            refs.extend(self.lookup(p, tok, residue))
            k += 1
        return [m.AtomRef(i, s) for i, s in refs]

    def shared(self, p):
        cls = m.SharedAdp if p.line.name == "EADP" else m.SharedSite
        for residue in self.residues_for(p):
            try:
                refs = self.expand(p, p.line.args, residue)
            except LookupError as err:
                self.r.warn(p.line.number, f"{p.line.name} ignored: {err}")
                continue
            if len(refs) < 2:
                self.r.warn(p.line.number, f"{p.line.name} names fewer than two atoms: ignored")
                continue
            atoms = [a.index for a in refs]
            self.model.constraints.append(cls(atoms, p.line.number))
            if cls is m.SharedAdp:
                self.check_equal_adp(p, atoms)

    def check_equal_adp(self, p, atoms):
        s = self.model.scatterers
        first = s[atoms[0]]
        for i in atoms[1:]:
            other = s[i]
            same_kind = (first.u_cif is None) == (other.u_cif is None)
            values_a = first.u_cif if first.u_cif is not None else np.array([first.u_iso or 0.0])
            values_b = other.u_cif if other.u_cif is not None else np.array([other.u_iso or 0.0])
            if not same_kind or not np.allclose(values_a, values_b, atol=1.5e-5):
                self.r.warn(p.line.number, f"EADP {self.name(first)} {self.name(other)}: the file gives different "
                                           "U values (SHELXL did not apply this EADP)")

    @staticmethod
    def name(s):
        return f"{s.label}_{s.residue_number}" if s.residue_number else s.label

    def restraint(self, p):
        kind = p.line.name
        args = list(p.line.args)
        params = []
        while args and _is_number(args[0]):
            params.append(float(args.pop(0)))
        names = codes.RESTRAINT_PARAMETERS[kind]
        if len(params) > len(names):
            raise self.error(p.line.number, f"{kind}: expected at most {len(names)} numbers "
                                            f"({' '.join(names)}) before the atoms, got {len(params)}")
        given = dict(zip(names, params))
        sig = codes.default_sigmas(kind, p.defs)
        target, target_code, dmax = None, m.FIXED, None
        if "target" in names:
            t = given.get("target", 0.0 if kind == "CHIV" else None)
            if t is None:
                raise self.error(p.line.number, f"{kind}: expected the target value before the atoms")
            if abs(t) >= 15:
                v, target_code = codes.decode(t)
                if target_code.free_variable > len(self.fvar):
                    raise self.error(p.line.number, f"{kind}: {t} refers to free variable "
                                                    f"{target_code.free_variable}, but FVAR defines only {len(self.fvar)}")
                t = target_code.value(self.fvar)
            target = t
        if kind in ("SAME", "DELU", "RIGU"):
            s1 = given.get("s", sig[0])
            s2 = given.get("s13", 2 * s1 if kind == "SAME" and "s" in given else (s1 if "s" in given else sig[1]))
            sigmas = (s1, s2)
        elif kind in ("SIMU", "ISOR"):
            s1 = given.get("s", sig[0])
            sigmas = (s1, given.get("st", 2 * s1))
            if kind == "SIMU":
                dmax = given.get("dmax", codes.SIMU_DMAX)
        elif kind == "NCSY":
            sigmas = (given.get("s", sig[0]), given.get("su", sig[1]))
            target = given.get("dn")
        else:
            sigmas = (given.get("s", sig[0]),)
        if not args:
            if kind == "SADI":
                # a bare SADI asks SHELXL to list the SAME-derived SADIs after END
                self.model.instructions.other.append(m.RawInstruction("SADI", [], p.line.number))
                return
            if kind not in ALL_ATOM_RESTRAINTS:
                self.r.warn(p.line.number, f"{kind} names no atoms: nothing to restrain")
                return
            refs = tuple(m.AtomRef(i) for i in range(len(self.model.scatterers)) if not self.model.is_hydrogen(i))
            self.model.restraints.append(m.Restraint(kind, (refs,), sigmas, target, target_code, dmax,
                                                     True, p.line.number))
            return
        instances, n_warnings = 0, len(self.r.warnings)
        residues = self.residues_for(p)
        if kind == "SADI" and p.line.suffix and not p.line.suffix.isdigit():
            # SADI_class and SADI_*: the distances of all residues form one set.
            pairs = []
            for residue in residues:
                try:
                    pairs.extend(self.groups_for(p, kind, args, self.expand(p, args, residue),
                                                 residue, residues, pooled=True)[0])
                except LookupError as err:
                    if p.line.suffix != "*":
                        self.r.warn(p.line.number, f"SADI_{p.line.suffix} ignored in residue {residue}: {err}")
            if len(pairs) < 2:
                self.r.warn(p.line.number, f"SADI_{p.line.suffix}: fewer than two distances; ignored")
                return
            self.model.restraints.append(m.Restraint(kind, tuple(pairs), sigmas, line=p.line.number))
            return
        for residue in residues:
            try:
                refs = self.expand(p, args, residue)
                groups = self.groups_for(p, kind, args, refs, residue, residues)
            except LookupError as err:
                if p.line.suffix == "*":
                    continue
                self.r.warn(p.line.number, f"{kind} ignored" +
                            (f" in residue {residue}" if residue else "") + f": {err}")
                continue
            for g in groups:
                self.model.restraints.append(m.Restraint(kind, g, sigmas, target, target_code, dmax,
                                                         False, p.line.number))
                instances += 1
        if residues and not instances and len(self.r.warnings) == n_warnings:
            self.r.warn(p.line.number, f"{kind}{'_' + p.line.suffix if p.line.suffix else ''}: "
                                       "no restraint generated")

    def groups_for(self, p, kind, args, refs, residue, residues, pooled=False):
        if kind in ("DFIX", "DANG", "SADI"):
            if len(refs) % 2:
                raise LookupError(f"odd number of atoms ({len(refs)}): atoms are taken in pairs")
            pairs = tuple(tuple(refs[k:k + 2]) for k in range(0, len(refs), 2))
            if kind == "SADI" and len(pairs) < 2 and not pooled:
                raise LookupError("a single pair: SADI needs at least two distances")
            return [pairs] if kind == "SADI" else [(pair,) for pair in pairs]
        if kind != "SAME":
            return [(tuple(refs),)]
        if p.line.suffix and not re.fullmatch(r"\d+", p.line.suffix):
            # SAME_class: the first residue of the class is the reference.
            if residue == residues[0]:
                return []
            reference = [a for a in self.expand(p, args, residues[0]) if not self.model.is_hydrogen(a.index)]
            target = [a for a in refs if not self.model.is_hydrogen(a.index)]
            if len(reference) != len(target):
                raise LookupError(f"SAME_{p.line.suffix}: residue {residue} has {len(target)} of the atoms, "
                                  f"residue {residues[0]} {len(reference)}")
            return [(tuple(reference), tuple(target))]
        # hydrogen atoms are ignored by SAME, in its list and in the atoms that follow
        refs = [a for a in refs if not self.model.is_hydrogen(a.index)]
        following = [i for i in range(p.n_atoms_before, len(self.model.scatterers))
                     if not self.model.is_hydrogen(i)][:len(refs)]
        if len(following) < len(refs):
            raise LookupError(f"SAME names {len(refs)} atoms but only {len(following)} "
                              "non-hydrogen atoms follow it")
        return [(tuple(refs), tuple(m.AtomRef(i) for i in following))]
