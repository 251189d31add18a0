"""Reading models and reflection data through gemmi.

:func:`read_model` reads mmCIF or PDB; :func:`read_reflections` reads an MTZ
file or mmCIF structure factors and returns :class:`ReflectionData`:
amplitudes (intensities are converted by French & Wilson), their sigmas and
the free-set flags, merged into the asymmetric unit (Friedel mates and
anomalous pairs averaged).  Columns are chosen automatically; every choice
can be overridden, and an ambiguous or missing column is a
:class:`~mmtbx.errors.DataError` naming the file and the candidates.
"""

import dataclasses
import os

import gemmi
import numpy as np

from sgtbx import SpaceGroup, UnitCell

from .errors import DataError, ModelError
from .french_wilson import french_wilson

_FREE_NAMES = ("free", "rfree", "r-free", "freer", "test")


@dataclasses.dataclass
class FreeFlagInfo:
    """How the free set was recognised.

    ``convention`` is "ccp4" (0 = free, values 0..19), "phenix" (1 = free,
    values 0/1), "mmcif" (status 'f' free, 'o' work), "given" (value set by
    the caller) or "none" (no flags; every reflection is a work reflection).
    """
    column: str | None
    convention: str
    free_value: object
    n_free: int


@dataclasses.dataclass
class ReflectionData:
    """Reflections in the asymmetric unit, ready for F_model.

    Attributes
    ----------
    hkl : int32 (m, 3)
    f_obs, sigma_f_obs : float64 (m,)
    free : bool (m,)  True for the free (test) set
    i_obs, sigma_i_obs : float64 (m,) or None  intensities, when read
    unit_cell : sgtbx.UnitCell
    space_group : sgtbx.SpaceGroup
    source : str  the file name
    columns : dict  what was read: {"amplitudes" or "intensities": (label, sigma label)}
    free_flags : FreeFlagInfo
    n_merged : int  input rows merged into others (Friedel mates, anomalous pairs)
    n_rejected : int  rows dropped (missing values, unobserved, systematically absent,
        French–Wilson rejections)
    """
    hkl: np.ndarray
    f_obs: np.ndarray
    sigma_f_obs: np.ndarray
    free: np.ndarray
    unit_cell: UnitCell
    space_group: SpaceGroup
    source: str
    columns: dict
    free_flags: FreeFlagInfo
    i_obs: np.ndarray | None = None
    sigma_i_obs: np.ndarray | None = None
    n_merged: int = 0
    n_rejected: int = 0

    @property
    def d_spacings(self):
        return self.unit_cell.d_spacings(self.hkl)

    @property
    def d_min(self):
        return float(np.min(self.d_spacings))

    @property
    def d_max(self):
        return float(np.max(self.d_spacings))


# -- model ---------------------------------------------------------------------

def read_model(path):
    """Read a model (mmCIF or PDB, optionally gzipped) with gemmi.

    Returns a gemmi.Structure with hydrogens and alternative conformations
    as in the file.  Raises ModelError when the file cannot be read or has
    no atoms.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelError(f"{path}: model file not found")
    try:
        structure = gemmi.read_structure(path)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read the model: {exc}") from None
    structure.setup_entities()
    if len(structure) == 0 or structure[0].count_atom_sites() == 0:
        raise ModelError(f"{path}: the model has no atoms")
    return structure


def residues_missing_from_monomer_library(structure, monomer_dir):
    """Residue names of the model with no file ``<dir>/<x>/<NAME>.cif`` in a
    CCP4-layout monomer library (sorted).  F_model needs no restraints, so
    callers report these as a warning."""
    names = sorted({res.name for chain in structure[0] for res in chain})
    missing = []
    for name in names:
        sub = name[0].lower()
        if not (os.path.isfile(os.path.join(monomer_dir, sub, name + ".cif"))
                or os.path.isfile(os.path.join(monomer_dir, sub, name.upper() + ".cif"))):
            missing.append(name)
    return missing


def check_cells_agree(model_cell, data_cell, model_name, data_name, tolerance=0.01):
    """Raise DataError when a cell parameter of the model and of the data
    differ by more than ``tolerance`` (relative)."""
    a = np.asarray(model_cell, dtype=float)
    b = np.asarray(data_cell, dtype=float)
    if a[0] == 0:
        return
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
    if np.any(rel > tolerance):
        fmt = lambda p: " ".join(f"{x:.3f}" for x in p)
        raise DataError(f"the cells of {model_name} ({fmt(a)}) and {data_name} ({fmt(b)}) differ "
                        f"by more than {tolerance:.0%}")


# -- free flags ------------------------------------------------------------------

def detect_free_convention(values, column="free flags"):
    """Which value marks the free set, from the values of an integer column.

    Returns (convention, free_value).  Two distinct values: the rarer one is
    free ("phenix" when it is 1, "ccp4" when it is 0).  More values: CCP4
    (0 = free) when the values lie in 0..max with 0 among them.
    """
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    uniq, counts = np.unique(values.astype(np.int64), return_counts=True)
    if len(uniq) < 2:
        raise DataError(f"free-flag column {column} holds a single value "
                        f"({uniq[0] if len(uniq) else 'none'}): no free set")
    if len(uniq) == 2:
        rare = uniq[np.argmin(counts)]
        if counts.min() == counts.max():
            raise DataError(f"free-flag column {column}: values {uniq[0]} and {uniq[1]} are "
                            "equally frequent; give the free value")
        return ("phenix" if rare == 1 and set(uniq) == {0, 1} else "ccp4"), int(rare)
    if 0 in uniq and uniq.min() >= 0:
        return "ccp4", 0
    raise DataError(f"free-flag column {column}: cannot tell the free value from values "
                    f"{uniq[:10].tolist()}; give it")


# -- MTZ -----------------------------------------------------------------------------

def _mtz_pairs(mtz, value_type, sigma_type):
    """(value, sigma) label pairs where a column of ``value_type`` is followed
    by one of ``sigma_type``."""
    cols = list(mtz.columns)
    return [(c.label, cols[i + 1].label) for i, c in enumerate(cols[:-1])
            if c.type == value_type and cols[i + 1].type == sigma_type]


def _mtz_anomalous_sets(mtz, value_type, sigma_type):
    """(plus, sigma plus, minus, sigma minus) label quadruples."""
    cols = list(mtz.columns)
    out = []
    for i in range(len(cols) - 3):
        t = [c.type for c in cols[i:i + 4]]
        if t == [value_type, sigma_type, value_type, sigma_type]:
            out.append(tuple(c.label for c in cols[i:i + 4]))
    return out


def _names(candidates):
    return ", ".join("/".join(c) for c in candidates) or "none"


def _free_candidates(labels_types):
    return [label for label, typ in labels_types
            if typ == "I" and any(k in label.lower().replace("_", "") for k in _FREE_NAMES)]


def _read_mtz(path, labels, free_label):
    try:
        mtz = gemmi.read_mtz_file(path)
    except (RuntimeError, ValueError) as exc:
        raise DataError(f"{path}: cannot read MTZ: {exc}") from None
    if mtz.nreflections == 0:
        raise DataError(f"{path}: the MTZ file has no reflections")
    data = np.asarray(mtz.array, dtype=np.float64)
    index = {c.label: i for i, c in enumerate(mtz.columns)}
    hkl = data[:, :3].astype(np.int32)

    if labels is not None:
        kind, value, sigma, used = _mtz_given_columns(mtz, data, index, labels, path)
    else:
        kind, value, sigma, used = _mtz_automatic_columns(mtz, data, index, path)

    free_cands = _free_candidates([(c.label, c.type) for c in mtz.columns])
    if free_label is not None:
        if free_label not in index:
            raise DataError(f"{path}: no free-flag column {free_label!r}; candidates: "
                            f"{', '.join(free_cands) or 'none'}")
        free_cands = [free_label]
    if len(free_cands) > 1:
        raise DataError(f"{path}: {len(free_cands)} candidate free-flag columns "
                        f"({', '.join(free_cands)}); choose one")
    flags = data[:, index[free_cands[0]]] if free_cands else None
    cell = UnitCell(*mtz.cell.parameters)
    if mtz.spacegroup is None:
        raise DataError(f"{path}: the MTZ file has no space group")
    space_group = SpaceGroup(mtz.spacegroup.xhm())
    return dict(hkl=hkl, value=value, sigma=sigma, kind=kind, used=used, flags=flags,
                flag_column=free_cands[0] if free_cands else None, cell=cell,
                space_group=space_group)


_VALUE_TYPES = {"F": "amplitudes", "J": "intensities", "G": "amplitudes", "K": "intensities"}
_SIGMA_TYPES = {"F": "Q", "J": "Q", "G": "L", "K": "M"}


def _mtz_given_columns(mtz, data, index, labels, path):
    """The columns the caller named: value and sigma, or the four of an
    anomalous pair; types checked."""
    for label in labels:
        if label not in index:
            raise DataError(f"{path}: no column {label!r}; columns: "
                            f"{', '.join(c.label for c in mtz.columns)}")
    types = [mtz.column_with_label(label).type for label in labels]
    kind = _VALUE_TYPES.get(types[0])
    if kind is None:
        raise DataError(f"{path}: column {labels[0]!r} has type {types[0]}, not amplitudes (F, G) "
                        "or intensities (J, K)")
    anomalous = types[0] in "GK"
    expected = [types[0], _SIGMA_TYPES[types[0]]] * (2 if anomalous else 1)
    if types != expected:
        raise DataError(f"{path}: columns {', '.join(labels)} have types {''.join(types)}; "
                        f"expected {''.join(expected)}")
    columns = [data[:, index[label]] for label in labels]
    value, sigma = _average_pair(*columns) if anomalous else columns
    return kind, value, sigma, tuple(labels)


def _mtz_automatic_columns(mtz, data, index, path):
    """Mean amplitudes, else mean intensities, else anomalous amplitudes,
    else anomalous intensities, each a value column followed by its sigma;
    more than one candidate of the chosen kind is an error naming them."""
    candidates = (("amplitudes", _mtz_pairs(mtz, "F", "Q")), ("intensities", _mtz_pairs(mtz, "J", "Q")),
                  ("amplitudes", _mtz_anomalous_sets(mtz, "G", "L")),
                  ("intensities", _mtz_anomalous_sets(mtz, "K", "M")))
    for kind, found in candidates:
        if found:
            break
    else:
        raise DataError(f"{path}: no amplitudes (F with SIGF) or intensities (I with SIGI) "
                        f"found; columns: {', '.join(c.label + ':' + c.type for c in mtz.columns)}")
    if len(found) > 1:
        raise DataError(f"{path}: {len(found)} candidate {kind} columns ({_names(found)}); "
                        "choose one")
    used = found[0]
    columns = [data[:, index[label]] for label in used]
    value, sigma = _average_pair(*columns) if len(used) == 4 else columns
    return kind, value, sigma, used


def _average_pair(plus, sig_plus, minus, sig_minus):
    """Mean of F(+) and F(-) (or I), either alone when the other is missing;
    sigma of the mean."""
    has_p = np.isfinite(plus) & np.isfinite(sig_plus)
    has_m = np.isfinite(minus) & np.isfinite(sig_minus)
    both = has_p & has_m
    value = np.where(has_p, plus, minus)
    sigma = np.where(has_p, sig_plus, sig_minus)
    value = np.where(both, 0.5 * (plus + minus), value)
    sigma = np.where(both, 0.5 * np.sqrt(sig_plus ** 2 + sig_minus ** 2), sigma)
    value[~(has_p | has_m)] = np.nan
    return value, sigma


# -- mmCIF structure factors -----------------------------------------------------------

_CIF_AMPLITUDES = [("F_meas_au", "F_meas_sigma_au"), ("F_meas", "F_meas_sigma")]
_CIF_INTENSITIES = [("intensity_meas", "intensity_sigma"), ("I_meas", "I_meas_sigma")]
_CIF_ANOM_F = [("pdbx_F_plus", "pdbx_F_plus_sigma", "pdbx_F_minus", "pdbx_F_minus_sigma")]
_CIF_ANOM_I = [("pdbx_I_plus", "pdbx_I_plus_sigma", "pdbx_I_minus", "pdbx_I_minus_sigma")]


def _read_sf_cif(path, labels, free_label):
    try:
        blocks = gemmi.as_refln_blocks(gemmi.cif.read(path))
    except (RuntimeError, ValueError) as exc:
        raise DataError(f"{path}: cannot read mmCIF structure factors: {exc}") from None
    blocks = [b for b in blocks if b.default_loop is not None and b.is_merged()]
    if not blocks:
        raise DataError(f"{path}: no merged _refln loop found")
    block = blocks[0]
    present = set(block.column_labels())
    hkl = np.asarray(block.make_miller_array(), dtype=np.int32)

    def col(tag):
        return np.asarray(block.make_float_array(tag), dtype=np.float64)

    if labels is not None:
        tags = [t for t in labels if t not in present]
        if tags:
            raise DataError(f"{path}: no _refln.{tags[0]}; columns: {', '.join(sorted(present))}")
        kind = "intensities" if "intens" in labels[0].lower() or labels[0].startswith("I") else "amplitudes"
        if len(labels) == 4:
            value, sigma = _average_pair(*(col(t) for t in labels))
        else:
            value, sigma = col(labels[0]), col(labels[1])
        used = tuple(labels)
    else:
        for kind, sets in (("amplitudes", _CIF_AMPLITUDES), ("intensities", _CIF_INTENSITIES),
                           ("amplitudes", _CIF_ANOM_F), ("intensities", _CIF_ANOM_I)):
            found = [s for s in sets if all(t in present for t in s)]
            if found:
                used = found[0]
                break
        else:
            raise DataError(f"{path}: no amplitudes (F_meas_au) or intensities (intensity_meas) "
                            f"in the _refln loop; columns: {', '.join(sorted(present))}")
        if len(used) == 4:
            value, sigma = _average_pair(*(col(t) for t in used))
        else:
            value, sigma = col(used[0]), col(used[1])

    flags = None
    flag_column = None
    status_tag = free_label or ("status" if "status" in present else None)
    if status_tag is not None:
        if status_tag not in present:
            raise DataError(f"{path}: no _refln.{status_tag}")
        flag_column = status_tag
        flags = np.array([gemmi.cif.as_string(v) for v in
                          block.block.find_values('_refln.' + status_tag)], dtype=object)
    if block.cell.a == 0:
        raise DataError(f"{path}: the structure-factor file has no cell")
    cell = UnitCell(*block.cell.parameters)
    if block.spacegroup is None:
        raise DataError(f"{path}: the structure-factor file has no space group")
    return dict(hkl=hkl, value=value, sigma=sigma, kind=kind, used=used, flags=flags,
                flag_column=flag_column, cell=cell,
                space_group=SpaceGroup(block.spacegroup.xhm()))


def _merge_into_asu(space_group, hkl, value, sigma, free):
    """Map to the asymmetric unit (Friedel mates together) and average
    repeated indices with weights 1/sigma²; a merged reflection is free if
    any of its parts was."""
    mapped = np.ascontiguousarray(space_group.map_to_asu(hkl).hkl, dtype=np.int32)
    keys = (mapped[:, 0].astype(np.int64) * 4096 + mapped[:, 1]) * 4096 + mapped[:, 2]
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    n_merged = len(hkl) - len(uniq)
    if n_merged == 0:
        return mapped, value, sigma, free, 0
    w = 1.0 / sigma ** 2
    sw = np.bincount(inverse, weights=w)
    value_m = np.bincount(inverse, weights=w * value) / sw
    sigma_m = 1.0 / np.sqrt(sw)
    free_m = np.bincount(inverse, weights=free.astype(float)) > 0
    return mapped[first], value_m, sigma_m, free_m, n_merged


# -- the public reader ---------------------------------------------------------------

def read_reflections(path, labels=None, free_label=None, free_value=None):
    """Read reflection data from MTZ or mmCIF structure factors.

    Parameters
    ----------
    path : str
    labels : sequence of str, optional
        Value and sigma labels (or F(+), σ, F(-), σ), e.g. ("FP", "SIGFP")
        or ("IMEAN", "SIGIMEAN"); chosen automatically when omitted.
    free_label : str, optional
        The free-flag column (MTZ) or status item (mmCIF).
    free_value : int or str, optional
        The value marking the free set; detected from the values when omitted.

    Returns
    -------
    ReflectionData
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: reflection file not found")
    lower = path.lower()
    if lower.endswith((".mtz", ".mtz.gz")):
        raw = _read_mtz(path, labels, free_label)
    elif lower.endswith((".cif", ".cif.gz", ".ent", ".ent.gz", ".mmcif")):
        raw = _read_sf_cif(path, labels, free_label)
    else:
        raise DataError(f"{path}: unknown reflection format (expected .mtz or mmCIF .cif)")

    value, sigma, flags = raw["value"], raw["sigma"], raw["flags"]
    keep = np.isfinite(value) & np.isfinite(sigma) & np.any(raw["hkl"] != 0, axis=1)
    # free flags
    if flags is None:
        free = np.zeros(len(value), dtype=bool)
        info = FreeFlagInfo(None, "none", None, 0)
    elif flags.dtype == object:
        status = np.array([str(s).strip().lower() for s in flags])
        fv = "f" if free_value is None else str(free_value).lower()
        free = status == fv
        keep &= free | (status == "o")
        info = FreeFlagInfo(raw["flag_column"], "mmcif" if free_value is None else "given", fv, 0)
    else:
        finite = np.isfinite(flags)
        keep &= finite
        if free_value is None:
            convention, fv = detect_free_convention(flags[keep], f"{raw['flag_column']} in {path}")
        else:
            convention, fv = "given", int(free_value)
        free = finite & (np.where(finite, flags, -1).astype(np.int64) == fv)
        info = FreeFlagInfo(raw["flag_column"], convention, fv, 0)
    n_rejected = int(np.sum(~keep))
    hkl = raw["hkl"][keep]
    value, sigma, free = value[keep], sigma[keep], free[keep]
    if len(hkl) == 0:
        raise DataError(f"{path}: no reflection has a value and a sigma in {'/'.join(raw['used'])}")
    if np.any(sigma <= 0):
        sigma = np.where(sigma > 0, sigma, np.nan)
        good = np.isfinite(sigma)
        n_rejected += int(np.sum(~good))
        hkl, value, sigma, free = hkl[good], value[good], sigma[good], free[good]

    space_group, cell = raw["space_group"], raw["cell"]
    present = ~space_group.absent_flags(hkl)
    n_rejected += int(np.sum(~present))
    hkl, value, sigma, free = hkl[present], value[present], sigma[present], free[present]
    # into the asymmetric unit; Friedel mates and duplicates averaged
    hkl, value, sigma, free, n_merged = _merge_into_asu(space_group, hkl, value, sigma, free)
    info.n_free = int(np.sum(free))

    i_obs = sig_i = None
    if raw["kind"] == "intensities":
        i_obs, sig_i = value, sigma
        fw = french_wilson(cell, space_group, hkl, i_obs, sig_i)
        ok = fw.accepted
        n_rejected += int(np.sum(~ok))
        hkl, i_obs, sig_i, free = hkl[ok], i_obs[ok], sig_i[ok], free[ok]
        f_obs, sig_f = fw.f[ok], fw.sigma_f[ok]
    else:
        if np.any(value < 0):
            raise DataError(f"{path}: negative amplitudes in {raw['used'][0]}; are these intensities?")
        f_obs, sig_f = value, sigma
    return ReflectionData(hkl=np.ascontiguousarray(hkl, dtype=np.int32),
                          f_obs=np.ascontiguousarray(f_obs, dtype=np.float64),
                          sigma_f_obs=np.ascontiguousarray(sig_f, dtype=np.float64),
                          free=np.ascontiguousarray(free), unit_cell=cell,
                          space_group=space_group, source=path,
                          columns={raw["kind"]: tuple(raw["used"])}, free_flags=info,
                          i_obs=i_obs, sigma_i_obs=sig_i, n_merged=n_merged,
                          n_rejected=n_rejected)
