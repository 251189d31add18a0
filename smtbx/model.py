"""The small-molecule model as explicit Python objects.

Everything here is independent of the SHELX file format: the reader
(:mod:`smtbx.shelx`) decodes SHELX conventions into these objects and the
writer encodes them back.  Conventions (DESIGN.md §2, §7):

* sites are fractional, ``site_frac`` float64 (3,);
* anisotropic ADPs are U_cif in the project's order 11, 22, 33, 12, 13, 23
  (SHELX writes 11, 22, 33, 23, 13, 12: the reader permutes);
* occupancy is chemical occupancy: the SHELX special-position factor is
  divided out (``Scatterer.site_order`` is |G_site| used to do so);
* a refinable parameter carries a :class:`ParameterCode` saying whether it is
  free, fixed, tied to a free variable, or riding on another atom's U_eq.

Later stages (the reparametrisation graph, structure factors, refinement)
consume these objects; nothing here refines.
"""

from dataclasses import dataclass, field

import numpy as np

@dataclass(frozen=True)
class ParameterCode:
    """How one parameter is determined.

    Attributes
    ----------
    kind : {'free', 'fixed', 'free_variable', 'riding'}
        ``free``: refined on its own; ``fixed``: not refined;
        ``free_variable``: ``coefficient * fv`` or, when ``complement``,
        ``coefficient * (1 - fv)``; ``riding`` (isotropic U only):
        ``coefficient * U_eq`` of the atom named by ``Scatterer.u_parent``.
    free_variable : int
        The free-variable number m (2, 3, ...; 1 is the overall scale) for
        ``kind == 'free_variable'``, else 0.
    coefficient : float
        Multiplier (chemical units: for occupancies the special-position
        factor has been divided out).
    complement : bool
        Use ``1 - fv`` instead of ``fv``.
    """

    kind: str = "free"
    free_variable: int = 0
    coefficient: float = 1.0
    complement: bool = False

    def value(self, free_variables):
        """The parameter value implied by the free variables.

        Only meaningful for ``kind == 'free_variable'``.

        Parameters
        ----------
        free_variables : array_like of float
            ``free_variables[m - 1]`` is fv(m).
        """
        fv = free_variables[self.free_variable - 1]
        return self.coefficient * ((1.0 - fv) if self.complement else fv)


FREE = ParameterCode("free")
FIXED = ParameterCode("fixed")


@dataclass
class ScatteringType:
    """One SFAC entry.

    Attributes
    ----------
    label : str
        As written on the SFAC line (``C``, ``Ga``, ...).
    element : str
        Element symbol (capitalised), used for form factors and tables.
    gaussians : tuple or None
        ``(a (4,), b (4,), c)`` when the SFAC line gives explicit
        coefficients (f0(s) = Σ a_k exp(-b_k s²/4) + c), else None (use the
        element's tabulated form factor).
    fp, fdp : float or None
        Anomalous dispersion f', f'' from SFAC or DISP; None when the file
        gives none (compute for the wavelength).
    mu : float or None
        Mass absorption coefficient from SFAC/DISP.
    radius, weight : float or None
        Covalent radius and atomic weight (explicit SFAC form only).
    dispersion_source : {'SFAC', 'DISP', None}
    """

    label: str
    element: str
    gaussians: tuple | None = None
    fp: float | None = None
    fdp: float | None = None
    mu: float | None = None
    radius: float | None = None
    weight: float | None = None
    dispersion_source: str | None = None

    @property
    def is_hydrogen(self):
        return self.element in ("H", "D")


@dataclass
class Scatterer:
    """One atom of the model.

    Attributes
    ----------
    label : str
    type_index : int
        0-based index into ``Model.scattering_types``.
    site_frac : ndarray, float64 (3,)
    site_codes : tuple of 3 ParameterCode
    occupancy : float
        Chemical occupancy (special-position factor divided out).
    occupancy_code : ParameterCode
        In chemical units.
    u_iso : float or None
        Isotropic U (Å²); for riding atoms the value implied by the parent.
    u_cif : ndarray, float64 (6,) or None
        Anisotropic U_cif, order 11, 22, 33, 12, 13, 23.
    u_codes : tuple of ParameterCode
        One code for u_iso, or six (order 11, 22, 33, 12, 13, 23).
    u_parent : int or None
        Index of the atom whose U_eq a riding U_iso follows.
    part : int
        PART number (negative: no special-position constraint).
    residue_number : int
        0 outside any residue.
    residue_class : str
        '' outside any residue or when the RESI line gives no class.
    afix : tuple of int
        (m, n) of the AFIX in force when the atom was read.
    site_order : int
        |G_site|, the order of the site-symmetry group (1 on a general
        position or in a negative PART).
    """

    label: str
    type_index: int
    site_frac: np.ndarray
    site_codes: tuple
    occupancy: float
    occupancy_code: ParameterCode
    u_iso: float | None
    u_cif: np.ndarray | None
    u_codes: tuple
    u_parent: int | None = None
    part: int = 0
    residue_number: int = 0
    residue_class: str = ""
    afix: tuple = (0, 0)
    site_order: int = 1

    @property
    def is_anisotropic(self):
        return self.u_cif is not None


@dataclass(frozen=True)
class SymmetryOperation:
    """x' = R x + t (fractional), with the name used in the file (``$1``)."""

    rotation: np.ndarray       # int32 (3, 3)
    translation: np.ndarray    # float64 (3,)
    name: str = ""

    def __eq__(self, other):
        return (isinstance(other, SymmetryOperation)
                and np.array_equal(self.rotation, other.rotation)
                and np.allclose(self.translation, other.translation))

    def __hash__(self):
        return hash((self.rotation.tobytes(), tuple(np.round(self.translation * 24).astype(int))))


@dataclass(frozen=True)
class AtomRef:
    """An atom in a restraint or constraint: index, optionally moved by a symmetry operation."""

    index: int
    symop: SymmetryOperation | None = None


# ---------------------------------------------------------------- constraints
@dataclass
class RidingGroup:
    """Hydrogen atoms whose positions follow a pivot atom (SHELXL AFIX mn).

    Subclasses name the geometry; the AFIX m codes live in the SHELX reader.

    Attributes
    ----------
    pivot : int
        The atom carrying the hydrogens.
    hydrogens : list of int
    rotating : bool
        The torsion about the pivot bond is refined (n = 7, 8).
    refined_distance : bool
        The X–H distance is refined (n = 4, 8).
    distance : float or None
        X–H distance given on the AFIX line, None for the default from
        SHELXL's table (which depends on TEMP).
    """

    pivot: int
    hydrogens: list
    rotating: bool = False
    refined_distance: bool = False
    distance: float | None = None


class TertiaryXH(RidingGroup):
    """X–H on a pivot with three other neighbours (AFIX 13)."""


class SecondaryXH2(RidingGroup):
    """XH2 on a pivot with two other neighbours (AFIX 23)."""


class StaggeredTerminalTetrahedralXH3(RidingGroup):
    """XH3 staggered with respect to the shortest bond of the neighbour (AFIX 33)."""


class SecondaryPlanarXH(RidingGroup):
    """Aromatic or amide X–H in the plane of the pivot's neighbours (AFIX 43)."""


class StaggeredTerminalTetrahedralXH(RidingGroup):
    """Hydroxyl-type X–H whose torsion the refinement program chooses (AFIX 83:
    the best hydrogen bond, else staggered)."""


class TerminalTetrahedralXH(RidingGroup):
    """Hydroxyl-type X–H with its torsion from the given position (AFIX 143, 147, 148)."""


class TerminalPlanarXH2(RidingGroup):
    """Terminal =XH2 (AFIX 93)."""


class DisorderedTerminalTetrahedralXH3(RidingGroup):
    """Two staggered XH3 sets of half occupancy (AFIX 123)."""


class TerminalTetrahedralXH3(RidingGroup):
    """Methyl-type XH3 with its torsion from the given positions (AFIX 137)."""


class PolyhedralBH(RidingGroup):
    """B–H in a borane cage (AFIX 153)."""


class LinearXH(RidingGroup):
    """Acetylenic X–H (AFIX 163)."""


@dataclass
class RigidGroup:
    """Atoms moving as a rigid body (SHELXL AFIX m6, m9).

    Attributes
    ----------
    atoms : list of int
        The pivot first.
    shape : str
        'as_given', 'pentagon', 'hexagon', 'pentamethylcyclopentadienyl',
        'naphthalene'.
    variable_size : bool
        AFIX m9: one common scale factor is refined as well.
    distance : float or None
    """

    atoms: list
    shape: str = "as_given"
    variable_size: bool = False
    distance: float | None = None


@dataclass
class RidingU:
    """U_iso(atom) = factor × U_eq(parent) (a negative U_iso in SHELX)."""

    atom: int
    parent: int
    factor: float


@dataclass
class SharedSite:
    """Atoms sharing one refined site (EXYZ)."""

    atoms: list
    line: int = 0


@dataclass
class SharedAdp:
    """Atoms sharing one refined ADP (EADP)."""

    atoms: list
    line: int = 0


@dataclass
class FreeVariableSum:
    """Σ c_i fv(m_i) = target with standard deviation sigma (SUMP).

    Attributes
    ----------
    target, sigma : float
    terms : list of (float, int)
        (c_i, m_i) pairs.
    """

    target: float
    sigma: float
    terms: list
    line: int = 0


# ----------------------------------------------------------------- restraints
@dataclass
class Restraint:
    """One restraint instruction after residue and range expansion.

    Attributes
    ----------
    kind : str
        SHELXL name: DFIX, DANG, SADI, SAME, FLAT, CHIV, DELU, RIGU, SIMU,
        ISOR, BUMP, NCSY.
    groups : tuple of tuple of AtomRef
        DFIX/DANG/SADI: pairs; SAME: the reference atoms first, then each
        group of atoms made the same; FLAT/CHIV/DELU/RIGU/SIMU/ISOR/BUMP/NCSY:
        one group.
    sigmas : tuple of float
        The effective standard deviations, defaults (and DEFS) applied:
        DFIX/DANG/SADI/FLAT/CHIV/BUMP (s,), SAME (s12, s13), DELU/RIGU
        (s12, s13), SIMU (s, s_terminal), ISOR (s, s_terminal),
        NCSY (sd, su).
    target : float or None
        DFIX/DANG distance, CHIV volume; None otherwise.
    target_code : ParameterCode
        When the target is a free-variable expression.
    dmax : float or None
        SIMU's distance cut-off.
    all_atoms : bool
        The instruction named no atoms, so it applies to all non-H atoms.
    line : int
        Line of the instruction in the source file.
    """

    kind: str
    groups: tuple
    sigmas: tuple
    target: float | None = None
    target_code: ParameterCode = FIXED
    dmax: float | None = None
    all_atoms: bool = False
    line: int = 0


# --------------------------------------------------------------- instructions
@dataclass
class Weighting:
    """SHELXL weights w = 1/[σ²(Fo²) + (aP)² + bP + d + e sin θ/λ], P = f max(Fo²,0) + (1-f) Fc²."""

    a: float = 0.1
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0
    e: float = 0.0
    f: float = 1.0 / 3.0


@dataclass
class Hklf:
    """HKLF n s r11..r33 wt m: format, scale, index matrix (h' = R h), weight, offset."""

    n: int = 4
    scale: float = 1.0
    matrix: np.ndarray = field(default_factory=lambda: np.eye(3))
    weight: float = 1.0
    offset: int = 0


@dataclass
class Twin:
    """TWIN r11..r33 N: twin law and number of components."""

    matrix: np.ndarray = field(default_factory=lambda: -np.eye(3))
    n_components: int = 2


@dataclass
class RawInstruction:
    """An instruction kept as written (it does not change the model)."""

    name: str
    args: list
    line: int = 0


@dataclass
class Instructions:
    """Refinement and data instructions.

    Attributes
    ----------
    method : {'L.S.', 'CGLS', 'BLOC'}
    cycles : int
    ls_args : list
        Remaining arguments of L.S./CGLS.
    weighting : Weighting
    exti : float or None
    swat : tuple or None
        (g, U).
    twin : Twin or None
    basf : list of float
    hklf : Hklf
    omit_hkl : list of (h, k, l)
    omit_s : float or None
        OMIT s 2θ(max): reject reflections with |Fo²−Fc²| > s σ (s < 0: none).
    omit_two_theta : float or None
    shel : tuple or None
        (d_max, d_min) in Å.
    merg : int
    temperature : float or None
        TEMP in °C.
    defs : tuple or None
    eqiv : dict
        Symmetry-operation name (``$1``) → SymmetryOperation (EQIV).
    other : list of RawInstruction
        FMAP, PLAN, LIST, ACTA, BOND, CONF, HTAB, EQIV, SIZE, MORE, FREE,
        BIND, CONN, HFIX, ... in file order.
    """

    method: str = "L.S."
    cycles: int = 0
    ls_args: list = field(default_factory=list)
    weighting: Weighting = field(default_factory=Weighting)
    exti: float | None = None
    swat: tuple | None = None
    twin: Twin | None = None
    basf: list = field(default_factory=list)
    hklf: Hklf = field(default_factory=Hklf)
    omit_hkl: list = field(default_factory=list)
    omit_s: float | None = None
    omit_two_theta: float | None = None
    shel: tuple | None = None
    merg: int = 2
    temperature: float | None = None
    defs: tuple | None = None
    eqiv: dict = field(default_factory=dict)
    other: list = field(default_factory=list)


# --------------------------------------------------------------- observations
@dataclass
class Observations:
    """Reflections as read (HKLF matrix, scale and weight applied; not merged).

    Attributes
    ----------
    hkl : ndarray, int32 (n, 3)
    fo_sq, sig_fo_sq : ndarray, float64 (n,)
    batch : ndarray, int32 (n,)
        Batch (HKLF 4) or signed twin component (HKLF 5: negative for
        all but the last line of a group); 0 or absent is stored as 1.
    hklf : int
        4 or 5.
    n_lines : int
        Reflection lines read (terminator excluded).
    terminated : bool
        A 0 0 0 line (or blank line) ended the data.
    trailing_lines : int
        Lines after the terminator (ignored, as SHELXL does).
    """

    hkl: np.ndarray
    fo_sq: np.ndarray
    sig_fo_sq: np.ndarray
    batch: np.ndarray
    hklf: int = 4
    n_lines: int = 0
    terminated: bool = True
    trailing_lines: int = 0

    @property
    def measured(self):
        """bool (n,): the lines that carry a measured intensity (HKLF 5: positive batch)."""
        if self.hklf == 5:
            return self.batch > 0
        return np.ones(len(self.batch), dtype=bool)

    @property
    def group_index(self):
        """int32 (n,): for HKLF 5, the group (measured reflection) each line belongs to."""
        ends = self.measured
        starts = np.concatenate(([0], np.cumsum(ends)[:-1]))
        return starts.astype(np.int32)

    @property
    def n_groups(self):
        return int(np.count_nonzero(self.measured))


# ---------------------------------------------------------------------- model
@dataclass
class Symmetry:
    """The space group as SHELX gives it.

    Attributes
    ----------
    latt : int
        SHELX LATT: |latt| is the centring (1 P, 2 I, 3 R obverse, 4 F,
        5 A, 6 B, 7 C); positive means centrosymmetric (inversion at the
        origin added).
    operations : list of SymmetryOperation
        The SYMM operations (identity excluded, as in SHELX).
    space_group : sgtbx.SpaceGroup
        The full group built from them.
    """

    latt: int
    operations: list
    space_group: object


@dataclass
class Model:
    """A small-molecule model.

    Attributes
    ----------
    title : str
    wavelength : float
        Å, from CELL.
    cell : sgtbx.UnitCell
    cell_esd : ndarray, float64 (6,)
        s.u.'s of a, b, c, α, β, γ (ZERR).
    z : float
        Formula units per cell (ZERR).
    symmetry : Symmetry
    scattering_types : list of ScatteringType
    unit : list of float
        UNIT, one per scattering type.
    scatterers : list of Scatterer
    free_variables : ndarray, float64 (k,)
        ``free_variables[0]`` is the overall scale (FVAR 1), ``[m-1]`` is fv(m).
    restraints : list of Restraint
    constraints : list
        RidingGroup subclasses, RigidGroup, RidingU, SharedSite,
        SharedAdp, FreeVariableSum.
    instructions : Instructions
    residues : dict
        residue number → class.
    observations : Observations or None
        The reflections, when read with the model.
    source : str
        File the model was read from.
    warnings : list of ShelxWarning
        What the reader did not use as written.
    """

    title: str
    wavelength: float
    cell: object
    cell_esd: np.ndarray
    z: float
    symmetry: Symmetry
    scattering_types: list
    unit: list
    scatterers: list
    free_variables: np.ndarray
    restraints: list = field(default_factory=list)
    constraints: list = field(default_factory=list)
    instructions: Instructions = field(default_factory=Instructions)
    residues: dict = field(default_factory=dict)
    observations: Observations | None = None
    source: str = ""
    warnings: list = field(default_factory=list)

    @property
    def space_group(self):
        return self.symmetry.space_group

    @property
    def scale(self):
        """The overall scale factor (FVAR 1): Fo² ≈ scale² |Fc|² (SHELXL's osf)."""
        return float(self.free_variables[0])

    # -- arrays for the numerical cores -------------------------------------
    @property
    def sites_frac(self):
        """float64 (n, 3)."""
        return np.array([s.site_frac for s in self.scatterers], dtype=np.float64).reshape(-1, 3)

    @property
    def occupancies(self):
        """float64 (n,): chemical occupancies."""
        return np.array([s.occupancy for s in self.scatterers], dtype=np.float64)

    @property
    def anisotropic(self):
        """bool (n,)."""
        return np.array([s.u_cif is not None for s in self.scatterers], dtype=bool)

    @property
    def u_iso(self):
        """float64 (n,): U_iso, or U_eq for anisotropic atoms."""
        u_star = self.cell.u_cif_as_u_star(self._u_cif_rows())
        u_eq = self.cell.u_eq(u_star)
        return np.array([s.u_iso if s.u_cif is None else u_eq[i] for i, s in enumerate(self.scatterers)],
                        dtype=np.float64)

    @property
    def u_star(self):
        """float64 (n, 6): U* of every atom (U_iso G* for isotropic ones), order 11 22 33 12 13 23."""
        u_star = self.cell.u_cif_as_u_star(self._u_cif_rows())
        iso = ~self.anisotropic
        if np.any(iso):
            u_star[iso] = self.cell.u_iso_as_u_star(np.array([s.u_iso for s in self.scatterers])[iso])
        return u_star

    def _u_cif_rows(self):
        return np.array([s.u_cif if s.u_cif is not None else np.zeros(6) for s in self.scatterers],
                        dtype=np.float64).reshape(-1, 6)

    @property
    def type_indices(self):
        """int32 (n,): index into ``scattering_types``."""
        return np.array([s.type_index for s in self.scatterers], dtype=np.int32)

    @property
    def site_orders(self):
        """int32 (n,): |G_site| (a structure-factor sum over all operations weights
        each atom by occupancy / |G_site|)."""
        return np.array([s.site_order for s in self.scatterers], dtype=np.int32)

    def index(self, label, residue_number=0):
        """Index of the atom with this label (case-insensitive) in a residue; raises KeyError."""
        key = (label.upper(), residue_number)
        for i, s in enumerate(self.scatterers):
            if (s.label.upper(), s.residue_number) == key:
                return i
        raise KeyError(f"no atom {label!r} in residue {residue_number}")

    def is_hydrogen(self, i):
        return self.scattering_types[self.scatterers[i].type_index].is_hydrogen

    def constraints_of_type(self, cls):
        return [c for c in self.constraints if isinstance(c, cls)]

    def restraint_counts(self):
        """dict kind → number of restraint instructions after expansion."""
        counts = {}
        for r in self.restraints:
            counts[r.kind] = counts.get(r.kind, 0) + 1
        return counts
