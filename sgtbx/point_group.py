"""Point-group symbols from a set of rotation matrices.

A crystallographic point group is fixed, up to its orientation, by how many
of its elements are of each rotation type (1, 2, 3, 4, 6, -1, m, -3, -4, -6).
The symbols are the orientation-free Hermann-Mauguin ones that gemmi prints
(e.g. ``-42m`` for both -42m and -4m2).
"""

import numpy as np

# The rotation type of an integer matrix from its determinant and trace.
_PROPER_TYPE = {3: "1", -1: "2", 0: "3", 1: "4", 2: "6"}
_IMPROPER_TYPE = {-3: "-1", 1: "m", 0: "-3", -1: "-4", -2: "-6"}
_TYPES = ("2", "3", "4", "6", "-1", "m", "-3", "-4", "-6")

# point group: counts of the non-identity element types, in the order of _TYPES
_POINT_GROUPS = {
    "1": (0, 0, 0, 0, 0, 0, 0, 0, 0),
    "-1": (0, 0, 0, 0, 1, 0, 0, 0, 0),
    "2": (1, 0, 0, 0, 0, 0, 0, 0, 0),
    "m": (0, 0, 0, 0, 0, 1, 0, 0, 0),
    "2/m": (1, 0, 0, 0, 1, 1, 0, 0, 0),
    "222": (3, 0, 0, 0, 0, 0, 0, 0, 0),
    "mm2": (1, 0, 0, 0, 0, 2, 0, 0, 0),
    "mmm": (3, 0, 0, 0, 1, 3, 0, 0, 0),
    "4": (1, 0, 2, 0, 0, 0, 0, 0, 0),
    "-4": (1, 0, 0, 0, 0, 0, 0, 2, 0),
    "4/m": (1, 0, 2, 0, 1, 1, 0, 2, 0),
    "422": (5, 0, 2, 0, 0, 0, 0, 0, 0),
    "4mm": (1, 0, 2, 0, 0, 4, 0, 0, 0),
    "-42m": (3, 0, 0, 0, 0, 2, 0, 2, 0),
    "4/mmm": (5, 0, 2, 0, 1, 5, 0, 2, 0),
    "3": (0, 2, 0, 0, 0, 0, 0, 0, 0),
    "-3": (0, 2, 0, 0, 1, 0, 2, 0, 0),
    "32": (3, 2, 0, 0, 0, 0, 0, 0, 0),
    "3m": (0, 2, 0, 0, 0, 3, 0, 0, 0),
    "-3m": (3, 2, 0, 0, 1, 3, 2, 0, 0),
    "6": (1, 2, 0, 2, 0, 0, 0, 0, 0),
    "-6": (0, 2, 0, 0, 0, 1, 0, 0, 2),
    "6/m": (1, 2, 0, 2, 1, 1, 2, 0, 2),
    "622": (7, 2, 0, 2, 0, 0, 0, 0, 0),
    "6mm": (1, 2, 0, 2, 0, 6, 0, 0, 0),
    "-62m": (3, 2, 0, 0, 0, 4, 0, 0, 2),
    "6/mmm": (7, 2, 0, 2, 1, 7, 2, 0, 2),
    "23": (3, 8, 0, 0, 0, 0, 0, 0, 0),
    "m-3": (3, 8, 0, 0, 1, 3, 8, 0, 0),
    "432": (9, 8, 6, 0, 0, 0, 0, 0, 0),
    "-43m": (3, 8, 0, 0, 0, 6, 0, 6, 0),
    "m-3m": (9, 8, 6, 0, 1, 9, 8, 6, 0),
}
_BY_COUNTS = {counts: symbol for symbol, counts in _POINT_GROUPS.items()}

_LAUE = {
    "1": "-1", "-1": "-1", "2": "2/m", "m": "2/m", "2/m": "2/m",
    "222": "mmm", "mm2": "mmm", "mmm": "mmm",
    "4": "4/m", "-4": "4/m", "4/m": "4/m",
    "422": "4/mmm", "4mm": "4/mmm", "-42m": "4/mmm", "4/mmm": "4/mmm",
    "3": "-3", "-3": "-3", "32": "-3m", "3m": "-3m", "-3m": "-3m",
    "6": "6/m", "-6": "6/m", "6/m": "6/m",
    "622": "6/mmm", "6mm": "6/mmm", "-62m": "6/mmm", "6/mmm": "6/mmm",
    "23": "m-3", "m-3": "m-3", "432": "m-3m", "-43m": "m-3m", "m-3m": "m-3m",
}

_CRYSTAL_SYSTEM = {
    "-1": "triclinic", "2/m": "monoclinic", "mmm": "orthorhombic",
    "4/m": "tetragonal", "4/mmm": "tetragonal", "-3": "trigonal", "-3m": "trigonal",
    "6/m": "hexagonal", "6/mmm": "hexagonal", "m-3": "cubic", "m-3m": "cubic",
}


def rotation_type(rotation):
    """The type of an integer rotation matrix: '1', '2', '3', '4', '6',
    '-1', 'm', '-3', '-4' or '-6'."""
    r = np.asarray(rotation)
    det = int(round(np.linalg.det(r)))
    trace = int(np.trace(r))
    table = _PROPER_TYPE if det == 1 else _IMPROPER_TYPE
    if det not in (1, -1) or trace not in table:
        raise ValueError(f"not a crystallographic rotation: {r.tolist()}")
    return table[trace]


def point_group_symbol(rotations):
    """The point-group symbol of a set of distinct rotations (k, 3, 3)."""
    counts = dict.fromkeys(_TYPES, 0)
    for r in rotations:
        kind = rotation_type(r)
        if kind != "1":
            counts[kind] += 1
    key = tuple(counts[t] for t in _TYPES)
    try:
        return _BY_COUNTS[key]
    except KeyError:
        raise ValueError("the rotations do not form a crystallographic point group") from None


def laue_class(point_group):
    """The Laue class (the point group with the inversion added)."""
    return _LAUE[point_group]


def crystal_system(point_group):
    """The crystal system of a point group."""
    return _CRYSTAL_SYSTEM[_LAUE[point_group]]
