"""The result CIF, written with gemmi.cif, and the check of its items.

The writer composes a data block from explicit inputs: the cell (with its
s.u.'s), the space group, the atom sites with s.u.'s (:func:`atom_sites`
propagates them from Var(x) through the graph's Jacobian, Var(y) = J Var(x)
Jᵀ; :meth:`smtbx.refine.LeastSquares.su_covariance` gives Var(x) scaled as
SHELXL scales it), the geometry tables (:mod:`smtbx.geometry`), the
refinement figures, the residual density, the reflection counts and the
.res/.hkl texts.

Values with an s.u. follow the CIF convention: the s.u. in parentheses in
units of the last digit, with two digits when they start with 1 and one
digit otherwise ("rule of 19": 0.0123(14), 1.5432(3)); the value is rounded
to the same decimal.  A zero s.u. (fixed or constrained) prints the value
alone.

:func:`check_cif` is the item check written as code: every CIF this module
writes passes it (tests/smtbx/test_cif.py).
"""

from dataclasses import dataclass, field
import math
import re

import gemmi
import numpy as np

from .errors import OutputError
from .output import write_text_atomically
from .geometry import symmetry_code

__all__ = ["AtomSites", "RefinementSummary", "REQUIRED_ITEMS", "atom_sites", "check_cif",
           "cif_document", "format_su", "parse_su", "write_cif", "y_covariance"]


def format_su(value, su, decimals=None):
    """``value(su)`` as CIF writes it.

    Parameters
    ----------
    value : float
    su : float or None
        None or 0: the value alone, with ``decimals`` decimals (default 4).
    decimals : int, optional
        Used only without an s.u.
    """
    value = float(value)
    if not math.isfinite(value):
        raise OutputError(f"value {value} cannot be written to a CIF")
    if su is None or not su > 0 or not math.isfinite(su):
        return f"{value:.{4 if decimals is None else decimals}f}"
    exponent = math.floor(math.log10(su))
    leading = su / 10 ** exponent
    places = -exponent + (1 if leading < 1.95 else 0)
    if places < 0:
        scale = 10 ** (-places)
        return f"{round(value / scale) * scale:.0f}({round(su / scale) * scale:.0f})"
    digits = round(su * 10 ** places)
    return f"{value:.{places}f}({digits})"


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?(\((\d+)\))?$")


def parse_su(text):
    """(value, s.u. or None) from a CIF number like 1.234(5); None for '.'
    or '?'; raises OutputError for anything else."""
    if text in (".", "?"):
        return None
    text = gemmi.cif.as_string(text)
    match = _NUMBER.match(text)
    if not match:
        raise OutputError(f"{text!r} is not a CIF number")
    number = text.split("(")[0]
    value = float(number)
    if match.group(4) is None:
        return value, None
    mantissa = number.split("e")[0].split("E")[0]
    places = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return value, int(match.group(4)) * 10.0 ** -places


@dataclass
class AtomSites:
    """The atom-site table of a CIF.

    Attributes
    ----------
    labels, type_symbols : list of str (n)
    sites_frac, sites_su : float64 (n, 3)
    u_iso, u_iso_su : float64 (n,)
        U_iso, or U_eq for anisotropic atoms (Å²).
    aniso : bool (n,)
    u_cif, u_cif_su : float64 (n, 6)
        U11 U22 U33 U12 U13 U23 (Å², on a*, b*, c*), used where aniso.
    occupancy, occupancy_su : float64 (n,)
        Chemical occupancy.
    site_symmetry_order : int (n,)
    riding : bool (n,)
        calc_flag R.
    disorder_group : int (n,)
        PART (0: none).
    """

    labels: list
    type_symbols: list
    sites_frac: np.ndarray
    sites_su: np.ndarray
    u_iso: np.ndarray
    u_iso_su: np.ndarray
    aniso: np.ndarray
    u_cif: np.ndarray
    u_cif_su: np.ndarray
    occupancy: np.ndarray
    occupancy_su: np.ndarray
    site_symmetry_order: np.ndarray
    riding: np.ndarray
    disorder_group: np.ndarray


def y_covariance(jacobian, covariance, rows):
    """Covariance (k, k) of the y entries ``rows``: J[rows] Var(x) J[rows]ᵀ
    (e.g. EXTI's s.u. for _refine_ls_extinction_coef, or the BASF block for
    ``smtbx.twinning.twin_fractions_su``).

    Parameters
    ----------
    jacobian : scipy.sparse matrix or array (n_y, n_x)
    covariance : float64 (n_x, n_x)
    rows : int sequence (k,)
    """
    j = jacobian[rows]
    if hasattr(j, "toarray"):
        # sparse rows: (J Var) J^T without making J dense
        return np.asarray((j @ covariance) @ j.T.toarray())
    j = np.asarray(j)
    return j @ covariance @ j.T


def atom_sites(model, graph, covariance_x):
    """AtomSites of a model from its graph and Var(x).

    Parameters
    ----------
    model : smtbx.model.Model
    graph : smtbx.reparametrisation.Reparametrisation
        At the final x (``graph.y``, ``graph.jacobian``).
    covariance_x : float64 (n_x, n_x)
        Var(x), the x block (:meth:`smtbx.refine.LeastSquares.su_covariance`).
    """
    from .model import RidingGroup

    cov = np.asarray(covariance_x, dtype=np.float64)
    n_x = len(graph.x)
    if cov.shape != (n_x, n_x):
        raise OutputError(f"covariance_x: expected shape ({n_x}, {n_x}), got {cov.shape}")
    jac = graph.jacobian
    arrays = graph.arrays()
    cell = model.cell
    n = len(model.scatterers)
    aniso = np.asarray(model.anisotropic, dtype=bool)
    sites_su = np.zeros((n, 3))
    u_iso = np.zeros(n)
    u_iso_su = np.zeros(n)
    u_cif = np.zeros((n, 6))
    u_cif_su = np.zeros((n, 6))
    occ_su = np.zeros(n)
    a_star = np.array(cell.reciprocal_parameters[:3])
    pairs = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
    to_cif = np.array([1 / (a_star[i] * a_star[j]) for i, j in pairs])
    g = cell.metric
    ueq_row = np.array([g[i, j] * (1 if i == j else 2) for i, j in pairs]) / 3
    for i in range(n):
        site_cov = y_covariance(jac, cov, graph.site_index[i])
        sites_su[i] = np.sqrt(np.maximum(np.diag(site_cov), 0))
        occ_su[i] = np.sqrt(max(y_covariance(jac, cov, [graph.occupancy_index[i]])[0, 0], 0))
        if aniso[i]:
            u_cov = y_covariance(jac, cov, graph.u_index[i])
            u_star = arrays["u_star"][i]
            u_cif[i] = u_star * to_cif
            u_cif_su[i] = np.sqrt(np.maximum(np.diag(u_cov), 0)) * to_cif
            u_iso[i] = float(ueq_row @ u_star)
            u_iso_su[i] = float(np.sqrt(max(ueq_row @ u_cov @ ueq_row, 0)))
        else:
            u_iso[i] = arrays["u_iso"][i]
            u_iso_su[i] = np.sqrt(max(y_covariance(jac, cov, [graph.u_index[i, 0]])[0, 0], 0))
    riding = np.zeros(n, dtype=bool)
    for group in model.constraints_of_type(RidingGroup):
        riding[list(group.hydrogens)] = True
    types = [model.scattering_types[s.type_index].element for s in model.scatterers]
    return AtomSites(labels=list(graph.labels), type_symbols=types,
                     sites_frac=arrays["sites_frac"].copy(), sites_su=sites_su, u_iso=u_iso,
                     u_iso_su=u_iso_su, aniso=aniso, u_cif=u_cif, u_cif_su=u_cif_su,
                     occupancy=arrays["occupancies"].copy(), occupancy_su=occ_su,
                     site_symmetry_order=np.asarray(model.site_orders, dtype=int), riding=riding,
                     disorder_group=np.array([s.part for s in model.scatterers], dtype=int))


@dataclass
class RefinementSummary:
    """Figures of the final refinement (SHELXL's names in CIF).

    Attributes
    ----------
    r1_gt, r1_all, wr2_ref, wr2_gt, gof, restrained_gof : float
    n_reflections, n_gt, n_parameters, n_restraints : int
    weighting_a, weighting_b : float
        SHELXL's w = 1/[σ²(Fo²) + (aP)² + bP].
    shift_su_max, shift_su_mean : float
    diff_density_max, diff_density_min, diff_density_rms : float
        e Å⁻³.
    extinction : (float, float) or None
        EXTI and its s.u.
    flack : smtbx.absolute.FlackEstimate or None
    twin_fractions : list of (float, float)
        Each twin component's fraction and s.u. (empty: untwinned), written
        as the _twin_individual_ loop.
    wavelength : float
    theta_min, theta_max : float
        Degrees, of the reflections used.
    """

    r1_gt: float
    r1_all: float
    wr2_ref: float
    wr2_gt: float
    gof: float
    restrained_gof: float
    n_reflections: int
    n_gt: int
    n_parameters: int
    n_restraints: int
    weighting_a: float
    weighting_b: float
    shift_su_max: float
    shift_su_mean: float
    diff_density_max: float
    diff_density_min: float
    diff_density_rms: float
    wavelength: float
    theta_min: float
    theta_max: float
    extinction: tuple | None = None
    flack: object = None
    twin_fractions: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def _symop_strings(space_group):
    out = []
    for r, t in zip(space_group.rotations, space_group.translations):
        op = gemmi.Op()
        op.rot = [[int(v) * gemmi.Op.DEN for v in row] for row in r]
        op.tran = [int(round(v * gemmi.Op.DEN)) % gemmi.Op.DEN for v in t]
        out.append(op.triplet())
    return out


def _q(text):
    return gemmi.cif.quote(str(text))


def cif_document(name, unit_cell, space_group, sites, summary, bonds=(), angles=(), torsions=(),
                 res_text="", hkl_text=""):
    """The result CIF as a gemmi.cif.Document.

    Parameters
    ----------
    name : str
        Data block name.
    unit_cell : sgtbx.UnitCell
        With ``esds`` (ZERR); lengths and angles get their s.u.'s.
    space_group : sgtbx.SpaceGroup
    sites : AtomSites
    summary : RefinementSummary
    bonds, angles, torsions : sequences of smtbx.geometry.Measurement
        Atom indices refer to ``sites``.
    res_text, hkl_text : str
        The final .res and the .hkl, for _shelx_res_file and _shelx_hkl_file.
    """
    doc = gemmi.cif.Document()
    block = doc.add_new_block(re.sub(r"\s", "_", name) or "smtbx")
    block.set_pair("_audit_creation_method", _q("smtbx"))
    esds = unit_cell.esds if unit_cell.esds is not None else np.zeros(6)
    for tag, value, su in zip(("length_a", "length_b", "length_c", "angle_alpha", "angle_beta",
                               "angle_gamma"), unit_cell.parameters, esds):
        block.set_pair(f"_cell_{tag}", format_su(value, su, 4 if tag.startswith("l") else 3))
    block.set_pair("_cell_volume", format_su(unit_cell.volume, _volume_su(unit_cell), 2))
    block.set_pair("_space_group_crystal_system", _q(_crystal_system(space_group)))
    block.set_pair("_space_group_IT_number", str(space_group.number))
    block.set_pair("_space_group_name_H-M_alt", _q(space_group.xhm))
    block.set_pair("_space_group_name_Hall", _q(space_group.hall))
    loop = block.init_loop("_space_group_symop_", ["operation_xyz"])
    for s in _symop_strings(space_group):
        loop.add_row([_q(s)])
    _reflns(block, summary)
    _refine(block, summary)
    _atoms(block, sites)
    _geometry(block, space_group, sites.labels, sites.riding, bonds, angles, torsions)
    block.set_pair("_shelx_res_file", _q(res_text) if res_text else "?")
    block.set_pair("_shelx_hkl_file", _q(hkl_text) if hkl_text else "?")
    return doc


def _volume_su(cell):
    """s.u. of the volume from the cell s.u.'s (independent), by central
    differences of V(a, b, c, α, β, γ)."""
    if cell.esds is None:
        return None
    p = np.array(cell.parameters)

    def volume(q):
        c = np.cos(np.radians(q[3:]))
        return q[0] * q[1] * q[2] * np.sqrt(1 - np.sum(c ** 2) + 2 * np.prod(c))

    grads = []
    for k in range(6):
        h = np.zeros(6)
        h[k] = 1e-6
        grads.append((volume(p + h) - volume(p - h)) / 2e-6)
    return float(np.sqrt(np.sum((np.array(grads) * cell.esds) ** 2)))


def _crystal_system(space_group):
    n = space_group.number
    for top, system in ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"),
                        (142, "tetragonal"), (167, "trigonal"), (194, "hexagonal")):
        if n <= top:
            return system
    return "cubic"


def _reflns(block, s):
    block.set_pair("_diffrn_radiation_wavelength", f"{s.wavelength:.5f}")
    block.set_pair("_reflns_number_total", str(int(s.n_reflections)))
    block.set_pair("_reflns_number_gt", str(int(s.n_gt)))
    block.set_pair("_reflns_threshold_expression", _q("I > 2\\s(I)"))
    block.set_pair("_reflns_theta_min", f"{s.theta_min:.3f}")
    block.set_pair("_reflns_theta_max", f"{s.theta_max:.3f}")


def _refine(block, s):
    block.set_pair("_refine_ls_structure_factor_coef", "Fsqd")
    block.set_pair("_refine_ls_matrix_type", "full")
    block.set_pair("_refine_ls_weighting_scheme", "calc")
    block.set_pair("_refine_ls_weighting_details", _q(
        f"w=1/[\\s^2^(Fo^2^)+({s.weighting_a:.4f}P)^2^+{s.weighting_b:.4f}P] "
        "where P=(Fo^2^+2Fc^2^)/3"))
    block.set_pair("_refine_ls_hydrogen_treatment", "constr")
    if s.extinction is None:
        block.set_pair("_refine_ls_extinction_method", "none")
        block.set_pair("_refine_ls_extinction_coef", ".")
    else:
        block.set_pair("_refine_ls_extinction_method", _q("SHELXL"))
        block.set_pair("_refine_ls_extinction_coef", format_su(s.extinction[0], s.extinction[1], 5))
        block.set_pair("_refine_ls_extinction_expression",
                       _q("Fc^*^=kFc[1+0.001xFc^2^\\l^3^/sin(2\\q)]^-1/4^"))
    if s.flack is None:
        block.set_pair("_refine_ls_abs_structure_details", "?")
        block.set_pair("_refine_ls_abs_structure_Flack", "?")
    else:
        block.set_pair("_refine_ls_abs_structure_details", _q(s.flack.cif_details()))
        block.set_pair("_refine_ls_abs_structure_Flack", format_su(s.flack.x, s.flack.su))
    block.set_pair("_refine_ls_number_reflns", str(int(s.n_reflections)))
    block.set_pair("_refine_ls_number_parameters", str(int(s.n_parameters)))
    block.set_pair("_refine_ls_number_restraints", str(int(s.n_restraints)))
    for tag, value in (("R_factor_all", s.r1_all), ("R_factor_gt", s.r1_gt),
                       ("wR_factor_ref", s.wr2_ref), ("wR_factor_gt", s.wr2_gt),
                       ("goodness_of_fit_ref", s.gof), ("restrained_S_all", s.restrained_gof)):
        block.set_pair(f"_refine_ls_{tag}", f"{value:.4f}" if tag[0] in "Rw" else f"{value:.3f}")
    block.set_pair("_refine_ls_shift/su_max", f"{s.shift_su_max:.3f}")
    block.set_pair("_refine_ls_shift/su_mean", f"{s.shift_su_mean:.3f}")
    block.set_pair("_refine_diff_density_max", f"{s.diff_density_max:.3f}")
    block.set_pair("_refine_diff_density_min", f"{s.diff_density_min:.3f}")
    block.set_pair("_refine_diff_density_rms", f"{s.diff_density_rms:.3f}")
    for tag, value in s.extra.items():
        block.set_pair(tag, _q(value))
    if s.twin_fractions:
        loop = block.init_loop("_twin_individual_", ["id", "mass_fraction_refined"])
        for i, (fraction, su) in enumerate(s.twin_fractions, start=1):
            loop.add_row([str(i), format_su(fraction, su)])


def _atoms(block, a):
    loop = block.init_loop("_atom_site_", [
        "label", "type_symbol", "fract_x", "fract_y", "fract_z", "U_iso_or_equiv", "adp_type",
        "occupancy", "site_symmetry_order", "calc_flag", "refinement_flags_posn",
        "disorder_assembly", "disorder_group"])
    for i, label in enumerate(a.labels):
        xyz = [format_su(v, 0, 6) if a.riding[i] else format_su(v, s)
               for v, s in zip(a.sites_frac[i], a.sites_su[i])]
        loop.add_row([
            _q(label), _q(a.type_symbols[i]), *xyz,
            format_su(a.u_iso[i], 0 if a.riding[i] else a.u_iso_su[i], 3),
            "Uani" if a.aniso[i] else "Uiso",
            format_su(a.occupancy[i], a.occupancy_su[i],
                      0 if float(a.occupancy[i]).is_integer() else 4),
            str(int(a.site_symmetry_order[i])), "R" if a.riding[i] else "d",
            "R" if a.riding[i] else ".",
            "." if a.disorder_group[i] == 0 else "A",
            "." if a.disorder_group[i] == 0 else str(int(a.disorder_group[i]))])
    aniso = np.flatnonzero(a.aniso)
    if len(aniso):
        loop = block.init_loop("_atom_site_aniso_", ["label", "U_11", "U_22", "U_33", "U_23",
                                                     "U_13", "U_12"])
        for i in aniso:
            u, s = a.u_cif[i], a.u_cif_su[i]
            loop.add_row([_q(a.labels[i])] + [format_su(u[k], s[k], 5) for k in (0, 1, 2, 5, 4, 3)])


def _codes(space_group, refs):
    return [symmetry_code(space_group, r.rotation, r.translation) for r in refs]


def _su_unless_riding(m, riding):
    """A quantity involving a riding atom is printed without s.u. (its
    geometry is constrained), as SHELXL prints it."""
    return 0 if any(riding[r.index] for r in m.atoms) else m.su


def _geometry(block, space_group, labels, riding, bonds, angles, torsions):
    loop = block.init_loop("_geom_bond_", ["atom_site_label_1", "atom_site_label_2", "distance",
                                           "site_symmetry_2", "publ_flag"])
    for m in bonds:
        i, j = m.atoms
        loop.add_row([_q(labels[i.index]), _q(labels[j.index]),
                      format_su(m.value, _su_unless_riding(m, riding), 4),
                      _codes(space_group, [j])[0], "?"])
    loop = block.init_loop("_geom_angle", ["_atom_site_label_1", "_atom_site_label_2",
                                           "_atom_site_label_3", "", "_site_symmetry_1",
                                           "_site_symmetry_3", "_publ_flag"])
    for m in angles:
        c1, c2, c3 = _codes(space_group, m.atoms)
        if c2 != ".":
            raise OutputError("an angle's middle atom must be in the asymmetric unit")
        loop.add_row([_q(labels[r.index]) for r in m.atoms]
                     + [format_su(m.value, _su_unless_riding(m, riding), 1), c1, c3, "?"])
    loop = block.init_loop("_geom_torsion", ["_atom_site_label_1", "_atom_site_label_2",
                                             "_atom_site_label_3", "_atom_site_label_4", "",
                                             "_site_symmetry_1", "_site_symmetry_2",
                                             "_site_symmetry_3", "_site_symmetry_4", "_publ_flag"])
    for m in torsions:
        loop.add_row([_q(labels[r.index]) for r in m.atoms]
                     + [format_su(m.value, _su_unless_riding(m, riding), 1)]
                     + _codes(space_group, m.atoms) + ["?"])


def write_cif(path, *args, **kwargs):
    """Write :func:`cif_document` to ``path`` atomically; the document
    passes :func:`check_cif` first (OutputError naming the items if not)."""
    doc = cif_document(*args, **kwargs)
    problems = check_cif(doc.sole_block())
    if problems:
        raise OutputError(f"{path}: the CIF fails its check: " + "; ".join(problems))
    write_text_atomically(path, doc.as_string())


# ------------------------------------------------------------------- check
#: Single items: tag -> kind ("su" number that must carry an s.u., "num"
#: number with optional s.u., "int", "text", "num?" number or '?'/'.').
REQUIRED_ITEMS = {
    "_cell_length_a": "su", "_cell_length_b": "su", "_cell_length_c": "su",
    "_cell_angle_alpha": "num", "_cell_angle_beta": "num", "_cell_angle_gamma": "num",
    "_cell_volume": "num",
    "_space_group_name_H-M_alt": "text", "_space_group_name_Hall": "text",
    "_refine_ls_R_factor_gt": "num", "_refine_ls_R_factor_all": "num",
    "_refine_ls_wR_factor_ref": "num", "_refine_ls_wR_factor_gt": "num",
    "_refine_ls_goodness_of_fit_ref": "num", "_refine_ls_restrained_S_all": "num",
    "_refine_ls_number_reflns": "int", "_refine_ls_number_parameters": "int",
    "_refine_ls_number_restraints": "int", "_refine_ls_weighting_details": "text",
    "_refine_ls_shift/su_max": "num", "_refine_ls_shift/su_mean": "num",
    "_refine_ls_extinction_coef": "num?", "_refine_ls_abs_structure_Flack": "num?",
    "_refine_ls_abs_structure_details": "text?",
    "_refine_diff_density_max": "num", "_refine_diff_density_min": "num",
    "_refine_diff_density_rms": "num",
    "_reflns_number_total": "int", "_reflns_number_gt": "int",
    "_reflns_threshold_expression": "text",
    "_shelx_res_file": "text?", "_shelx_hkl_file": "text?",
}

#: Loops: first tag -> the columns that must be in the same loop.
REQUIRED_LOOPS = {
    "_space_group_symop_operation_xyz": ["_space_group_symop_operation_xyz"],
    "_atom_site_label": ["_atom_site_label", "_atom_site_type_symbol", "_atom_site_fract_x",
                         "_atom_site_fract_y", "_atom_site_fract_z", "_atom_site_U_iso_or_equiv",
                         "_atom_site_adp_type", "_atom_site_occupancy",
                         "_atom_site_site_symmetry_order", "_atom_site_calc_flag",
                         "_atom_site_disorder_assembly", "_atom_site_disorder_group"],
    "_geom_bond_atom_site_label_1": ["_geom_bond_atom_site_label_1", "_geom_bond_atom_site_label_2",
                                     "_geom_bond_distance", "_geom_bond_site_symmetry_2"],
    "_geom_angle_atom_site_label_1": ["_geom_angle_atom_site_label_1",
                                      "_geom_angle_atom_site_label_2",
                                      "_geom_angle_atom_site_label_3", "_geom_angle",
                                      "_geom_angle_site_symmetry_1", "_geom_angle_site_symmetry_3"],
    "_geom_torsion_atom_site_label_1": ["_geom_torsion_atom_site_label_1",
                                        "_geom_torsion_atom_site_label_4", "_geom_torsion",
                                        "_geom_torsion_site_symmetry_1",
                                        "_geom_torsion_site_symmetry_4"],
}

_NUMERIC_COLUMNS = {"_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z",
                    "_atom_site_U_iso_or_equiv", "_atom_site_occupancy", "_geom_bond_distance",
                    "_geom_angle", "_geom_torsion"}
_SYMCODE = re.compile(r"^(\.|\d+_\d\d\d)$")


def _check_value(tag, raw, kind):
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if raw in ("?", "."):
        return [] if optional else [f"{tag}: no value"]
    text = gemmi.cif.as_string(raw)
    if kind == "text":
        return [] if text.strip() else [f"{tag}: empty"]
    if kind == "int":
        return [] if re.fullmatch(r"[+-]?\d+", text) else [f"{tag}: {text!r} is not an integer"]
    try:
        _, su = parse_su(raw)
    except OutputError as err:
        return [f"{tag}: {err}"]
    if kind == "su" and su is None:
        return [f"{tag}: {text!r} has no s.u."]
    digits = re.search(r"\((\d+)\)$", text)
    if digits and not _su_digits_conventional(text.split("(")[0], digits.group(1)):
        return [f"{tag}: {text!r} breaks the s.u. digit convention"]
    return []


def _su_digits_conventional(number, su_digits):
    """At most two significant s.u. digits, two only when they start with 1.
    An s.u. of 20 or more on a whole number is written with the zeros that
    both end with (``1230(20)``, ``-130(50)``): those are places, not
    significant digits."""
    if not re.search(r"[.eE]", number):
        zeros = min(len(number) - len(number.rstrip("0")), len(su_digits) - len(su_digits.rstrip("0")))
        su_digits = su_digits[:len(su_digits) - zeros]
    return len(su_digits) == 1 or (len(su_digits) == 2 and su_digits[0] == "1")


def check_cif(block):
    """The problems of a CIF block (empty list: it passes).

    Checks the presence and the format of every item of REQUIRED_ITEMS and
    REQUIRED_LOOPS: numbers (with s.u. in parentheses where required),
    symmetry operations that gemmi parses, symmetry codes 'n_klm' or '.',
    calc_flag and adp_type values, the aniso loop's labels among the atom
    sites, and the s.u. digits convention (at most two digits, two only
    when they start with 1).
    """
    problems = []
    for tag, kind in REQUIRED_ITEMS.items():
        raw = block.find_value(tag)
        if raw is None:
            problems.append(f"{tag}: missing")
            continue
        problems += _check_value(tag, raw, kind)
    for first, columns in REQUIRED_LOOPS.items():
        table = block.find(columns)
        if table.width() != len(columns) or not block.find_loop(first):
            missing = [c for c in columns if not block.find_values(c)]
            problems.append(f"loop {first}: missing columns {missing or columns}")
            continue
        for row in table:
            for tag, raw in zip(columns, row):
                if tag in _NUMERIC_COLUMNS:
                    problems += _check_value(tag, raw, "num")
                elif "site_symmetry_" in tag and not tag.endswith("order"):
                    if not _SYMCODE.match(raw):
                        problems.append(f"{tag}: {raw!r} is not a symmetry code")
                elif tag == "_space_group_symop_operation_xyz":
                    try:
                        gemmi.Op(gemmi.cif.as_string(raw))
                    except (RuntimeError, ValueError):
                        problems.append(f"{tag}: {raw!r} is not an operation")
                elif tag == "_atom_site_calc_flag" and raw not in ("d", "R", "calc", "c", "dum"):
                    problems.append(f"{tag}: {raw!r} is not a calc flag")
                elif tag == "_atom_site_adp_type" and raw not in ("Uani", "Uiso", "Uovl", "Umpe",
                                                                  "Bani", "Biso", "Bovl"):
                    problems.append(f"{tag}: {raw!r} is not an ADP type")
    labels = set(block.find_values("_atom_site_label"))
    for raw in block.find_values("_atom_site_aniso_label"):
        if raw not in labels:
            problems.append(f"_atom_site_aniso_label: {raw!r} is not an atom site")
    for raw in block.find_values("_atom_site_aniso_U_11"):
        problems += _check_value("_atom_site_aniso_U_11", raw, "num")
    return problems
