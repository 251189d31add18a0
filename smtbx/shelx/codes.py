"""SHELX conventions: free-variable codes, LATT, AFIX and restraint defaults.

This module is the only place that knows SHELXL's numeric codes; the model
(:mod:`smtbx.model`) names things by what they are.
"""

import re
from fractions import Fraction

import numpy as np

from .. import model as m

# ------------------------------------------------------------- parameter codes


def decode(c):
    """Split a SHELX parameter into (value, code) with c = 10 m + p, |p| < 5.

    |c| < 5: a free parameter of value c.  m = ±1: fixed at p.  |m| ≥ 2:
    p·fv(m) for c > 0, p·(fv(|m|) − 1) = |p|·(1 − fv) for c < 0.

    Returns
    -------
    value : float
        The free or fixed value; for free-variable codes the coefficient.
    code : ParameterCode
        For c < 0 the code has ``complement`` set and the coefficient taken
        from |c| = 10 m + p.

    Raises
    ------
    ValueError
        When |p| reaches 5 (no valid m exists).
    """
    c = float(c)
    if abs(c) < 5.0:
        return c, m.FREE
    sign = 1 if c > 0 else -1
    mm = int((abs(c) + 5.0) // 10.0)
    p = abs(c) - 10.0 * mm
    if abs(p) >= 5.0 - 1e-9:
        raise ValueError(f"{c} is not a valid code 10*m+p with |p| < 5")
    if mm == 1:
        return sign * p, m.FIXED
    # c = -(10 m + p) reads p (fv(m) - 1) with the signs of m and p flipped,
    # i.e. p (1 - fv(m)) in terms of |c| = 10 m + p.
    return p, m.ParameterCode("free_variable", mm, p, sign < 0)


def encode(value, code, scale=1.0):
    """The SHELX number for a parameter (inverse of :func:`decode`).

    Parameters
    ----------
    value : float
        The parameter value in model units.
    code : ParameterCode
    scale : float
        Factor from model units to SHELX units (1/|G_site| for occupancies).
    """
    if code.kind == "free":
        return value * scale
    if code.kind == "fixed":
        v = value * scale
        return v + 10.0 if v >= 0 else v - 10.0
    if code.kind == "free_variable":
        q = code.coefficient * scale
        return -(10.0 * code.free_variable + q) if code.complement else 10.0 * code.free_variable + q
    if code.kind == "riding":
        return -code.coefficient
    raise ValueError(f"unknown parameter code kind {code.kind!r}")


# ------------------------------------------------------------------- symmetry

#: Centring translations for |LATT| = 1..7.
CENTRING = {
    1: [(0, 0, 0)],
    2: [(0, 0, 0), (Fraction(1, 2),) * 3],
    3: [(0, 0, 0), (Fraction(2, 3), Fraction(1, 3), Fraction(1, 3)),
        (Fraction(1, 3), Fraction(2, 3), Fraction(2, 3))],
    4: [(0, 0, 0), (0, Fraction(1, 2), Fraction(1, 2)),
        (Fraction(1, 2), 0, Fraction(1, 2)), (Fraction(1, 2), Fraction(1, 2), 0)],
    5: [(0, 0, 0), (0, Fraction(1, 2), Fraction(1, 2))],
    6: [(0, 0, 0), (Fraction(1, 2), 0, Fraction(1, 2))],
    7: [(0, 0, 0), (Fraction(1, 2), Fraction(1, 2), 0)],
}

_TERM = re.compile(r"([+-]?)(\d*\.?\d*(?:/\d+)?)\*?([XYZ]?)")


def parse_symop(text):
    """Parse a SHELX/CIF operator such as ``0.5-X, 1/2+Y, -Z+ 0.50000``.

    Returns
    -------
    rotation : ndarray, int32 (3, 3)
    translation : ndarray, float64 (3,)
        Reduced exactly to a multiple of 1/24 when it is one within 1e-4.

    Raises
    ------
    ValueError
        With a message saying what is wrong.
    """
    parts = text.upper().replace(" ", "").split(",")
    if len(parts) != 3:
        raise ValueError(f"expected three comma-separated components, got {text!r}")
    rot = np.zeros((3, 3), dtype=np.int32)
    trans = np.zeros(3)
    for row, comp in enumerate(parts):
        if not comp:
            raise ValueError(f"empty component in {text!r}")
        pos = 0
        while pos < len(comp):
            mt = _TERM.match(comp, pos)
            if mt is None or mt.end() == pos:
                raise ValueError(f"cannot read {comp!r} in {text!r}")
            sign, number, axis = mt.groups()
            s = -1 if sign == "-" else 1
            if axis:
                coef = Fraction(number) if number else Fraction(1)
                if coef.denominator != 1:
                    raise ValueError(f"non-integer rotation coefficient in {text!r}")
                rot[row, "XYZ".index(axis)] += s * int(coef)
            elif number:
                trans[row] += s * float(Fraction(number))
            else:
                raise ValueError(f"cannot read {comp!r} in {text!r}")
            pos = mt.end()
    t24 = trans * 24.0
    if np.all(np.abs(t24 - np.round(t24)) < 24e-4):
        trans = np.round(t24) / 24.0
    return rot, trans


def format_symop(rotation, translation):
    """SHELX text for (R, t), e.g. ``1/2-X, 1/2+Y, -Z``."""
    out = []
    for row in range(3):
        s = ""
        f = Fraction(float(translation[row])).limit_denominator(24)
        if f != 0:
            s += str(f)
        for col, axis in enumerate("XYZ"):
            r = int(rotation[row, col])
            if r == 0:
                continue
            term = axis if abs(r) == 1 else f"{abs(r)}*{axis}"
            s += ("-" if r < 0 else ("+" if s else "")) + term
        out.append(s or "0")
    return ", ".join(out)


# ----------------------------------------------------------------------- AFIX

#: AFIX m for riding hydrogens → geometry class.
RIDING_GEOMETRY = {
    1: m.TertiaryXH,
    2: m.SecondaryXH2,
    3: m.StaggeredTerminalTetrahedralXH3,
    4: m.SecondaryPlanarXH,
    8: m.StaggeredTerminalTetrahedralXH,
    9: m.TerminalPlanarXH2,
    12: m.DisorderedTerminalTetrahedralXH3,
    13: m.TerminalTetrahedralXH3,
    14: m.TerminalTetrahedralXH,
    15: m.PolyhedralBH,
    16: m.LinearXH,
}

#: Number of hydrogens each riding geometry places.
RIDING_COUNT = {1: 1, 2: 2, 3: 3, 4: 1, 8: 1, 9: 2, 12: 6, 13: 3, 14: 1, 15: 1, 16: 1}

#: AFIX n for riding hydrogens → (rotating, refined_distance).
RIDING_MODE = {3: (False, False), 4: (False, True), 7: (True, False), 8: (True, True)}

#: AFIX m for rigid groups → shape.
RIGID_SHAPE = {0: "as_given", 5: "pentagon", 6: "hexagon", 7: "hexagon",
               10: "pentamethylcyclopentadienyl", 11: "naphthalene"}

#: Number of atoms in each ideal rigid shape (0: as many as follow).
RIGID_COUNT = {0: 0, 5: 5, 6: 6, 7: 6, 10: 10, 11: 10}


def afix_code(group):
    """The AFIX mn for a constraint object (inverse of the tables above)."""
    if isinstance(group, m.RigidGroup):
        mm = {v: k for k, v in RIGID_SHAPE.items() if k != 7}[group.shape]
        return mm, 9 if group.variable_size else 6
    n = {v: k for k, v in RIDING_MODE.items()}[(group.rotating, group.refined_distance)]
    mm = {cls: k for k, cls in RIDING_GEOMETRY.items()}[type(group)]
    return mm, n


# ------------------------------------------------------------------ restraints

#: DEFS defaults: sd, sf, su, ss, maxsof.
DEFS = (0.02, 0.1, 0.01, 0.04, 1.0)


def default_sigmas(kind, defs):
    """Default standard deviations of a restraint kind under DEFS values."""
    sd, sf, su, ss, _ = defs
    return {
        "DFIX": (sd,), "SADI": (sd,), "DANG": (2 * sd,), "BUMP": (sd,),
        "SAME": (sd, 2 * sd), "FLAT": (sf,), "CHIV": (sf,),
        "DELU": (su, su), "SIMU": (ss, 2 * ss), "RIGU": (0.004, 0.004),
        "ISOR": (0.1, 0.2), "NCSY": (0.1, 0.2),
    }[kind]


#: Number of leading numbers each restraint takes: names of the parameters.
RESTRAINT_PARAMETERS = {
    "DFIX": ("target", "s"), "DANG": ("target", "s"), "SADI": ("s",),
    "SAME": ("s", "s13"), "FLAT": ("s",), "CHIV": ("target", "s"),
    "DELU": ("s", "s13"), "RIGU": ("s", "s13"), "SIMU": ("s", "st", "dmax"),
    "ISOR": ("s", "st"), "BUMP": ("s",), "NCSY": ("dn", "s", "su"),
}

#: SIMU's default distance cut-off (SHELXL 2013 and later), Å.
SIMU_DMAX = 2.0
