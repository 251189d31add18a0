"""From the model to sftbx's arrays, and Fc² as SHELXL computes it.

* f', f'' of a scattering type come from its SFAC or DISP values, else
  from gemmi's Cromer–Liberman code at the CELL wavelength;
* each atom is weighted by chemical occupancy × multiplicity / order_z
  (DESIGN.md §2), the multiplicity being order_z / |G_site| of the site as
  the reader found it (atoms in a negative PART count as general);
* explicit SFAC coefficients (a1 b1 … a4 b4 c) replace the tabulated
  form factor of their type (electron diffraction data give them);
* Fc² is on the absolute scale; extinction (EXTI), the solvent correction
  (SWAT) and the twin sums (TWIN/BASF on HKLF 4, HKLF 5 components) are
  applied as SHELXL applies them.
"""

import warnings

import numpy as np

import sftbx

from .errors import ShelxSyntaxError, UnsupportedInstruction


def dispersion(model):
    """f' and f'' per scattering type.

    Returns
    -------
    fp, fdp : float64 (n_types,)
    source : list of str
        'SFAC', 'DISP' or 'Cromer-Liberman' per type.
    """
    types = model.scattering_types
    fp = np.zeros(len(types))
    fdp = np.zeros(len(types))
    source = []
    computed = [i for i, t in enumerate(types) if t.fp is None or t.fdp is None]
    if computed:
        elements = [types[i].element for i in computed]
        try:
            cl_fp, cl_fdp = sftbx.cromer_liberman(elements, model.wavelength)
        except sftbx.ScatteringError as err:
            raise ShelxSyntaxError(model.source, None, f"f', f'' for SFAC types "
                                   f"{' '.join(types[i].label for i in computed)}: {err}") from None
        fp[computed], fdp[computed] = cl_fp, cl_fdp
    for i, t in enumerate(types):
        if i in computed:
            source.append("Cromer-Liberman")
        else:
            fp[i], fdp[i] = t.fp, t.fdp
            source.append(t.dispersion_source or "SFAC")
    return fp, fdp, source


def _name(atom):
    """The atom's name as SHELXL writes it in listings (``F4_2`` in residue 2)."""
    return f"{atom.label}_{atom.residue_number}" if atom.residue_number else atom.label


def scatterer_table(elements, labels, arrays):
    """An ``sftbx.Scatterers`` from arrays, without sftbx's warning about
    ADPs that are not positive definite (NPD): smtbx reports those itself,
    the reader among the model's warnings (naming the atom's line), the
    refinement by stopping when it makes an atom NPD (smtbx.refine).

    Parameters
    ----------
    elements, labels : sequences of str (n,)
    arrays : dict
        sites_frac (n, 3), occupancies, u_iso (n,), u_star (n, 6),
        aniso (n,), fp, fdp (n,).

    Raises
    ------
    sftbx.ScatteringError
        Values that are not finite, naming the atom.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sftbx.NonPositiveDefiniteWarning)
        return sftbx.Scatterers(elements, arrays["sites_frac"], arrays["occupancies"],
                                arrays["u_iso"], u_star=arrays["u_star"], aniso=arrays["aniso"],
                                fp=arrays["fp"], fdp=arrays["fdp"], labels=labels)


def scatterers(model):
    """The model's atoms as an ``sftbx.Scatterers`` table.

    Returns
    -------
    sftbx.Scatterers
        Elements are the SFAC types' elements; f', f'' from :func:`dispersion`
        (zero for all types under MERG 4, which SHELXL defines so).
    multiplicities : float64 (n,)
        order_z / |G_site|.
    """
    fp, fdp, _ = dispersion(model)
    if model.instructions.merg == 4:
        fdp = np.zeros_like(fdp)
    atoms = model.scatterers
    if not atoms:
        raise ShelxSyntaxError(model.source, None, "the model has no atoms")
    types = model.type_indices
    elements = [model.scattering_types[t].element for t in types]
    arrays = dict(sites_frac=model.sites_frac, occupancies=model.occupancies, u_iso=model.u_iso,
                  u_star=model.u_star, aniso=model.anisotropic, fp=fp[types], fdp=fdp[types])
    try:
        table = scatterer_table(elements, [_name(a) for a in atoms], arrays)
    except sftbx.ScatteringError as err:
        raise ShelxSyntaxError(model.source, None, " ".join(str(err).split())) from None
    multiplicities = model.space_group.order_z / model.site_orders.astype(np.float64)
    return table, multiplicities


def _explicit_form_factors(model, sf):
    """Put the SFAC lines' own Gaussian coefficients into ``sf``'s table.

    sftbx takes the form factors from a named table only; its per-type
    arrays (``ff_a``, ``ff_b``, ``ff_c``, one row per type of
    ``Scatterers.types()``) are replaced here for the types whose SFAC line
    gives coefficients.
    """
    types, _ = sf.scatterers.types()
    explicit = {}
    for t in model.scattering_types:
        if t.gaussians is None:
            continue
        previous = explicit.setdefault(t.element, t)
        if previous is not t and not all(np.array_equal(x, y) for x, y in zip(previous.gaussians, t.gaussians)):
            raise UnsupportedInstruction(model.source, None, f"SFAC {previous.label} and {t.label}: "
                                         "two sets of coefficients for one element")
    implicit = {t.element for t in model.scattering_types if t.gaussians is None}
    clash = sorted(implicit & set(explicit))
    if clash:
        raise UnsupportedInstruction(model.source, None, f"SFAC {clash[0]}: both tabulated and explicit "
                                     "coefficients for one element")
    if not explicit:
        return
    a, b, c = sf.ff_a.copy(), sf.ff_b.copy(), sf.ff_c.copy()
    for i, name in enumerate(types):
        if name in explicit:
            ga, gb, gc = explicit[name].gaussians
            a[i], b[i], c[i] = ga, gb, gc
    sf.ff_a, sf.ff_b, sf.ff_c = a, b, c


def structure_factors(model, hkl, n_threads=1):
    """An ``sftbx.StructureFactors`` for the model at ``hkl`` (int (m, 3)).

    Scatterers as :func:`scatterers`; IT92 X-ray form factors, replaced by
    the SFAC lines' coefficients where they are given.
    """
    table, multiplicities = scatterers(model)
    try:
        sf = sftbx.StructureFactors(model.cell, model.space_group, table, hkl, table="it92",
                                    multiplicities=multiplicities, n_threads=n_threads)
    except sftbx.ScatteringError as err:
        raise ShelxSyntaxError(model.source, None, str(err)) from None
    _explicit_form_factors(model, sf)
    return sf


def _intensities(model, hkl, n_threads):
    """|F|² (absolute scale, SWAT applied) at hkl (m, 3)."""
    sf = structure_factors(model, hkl, n_threads)
    f = sf.f_calc()
    if model.instructions.swat is not None:
        g, u = model.instructions.swat
        f = f * (1 - g * np.exp(-2 * np.pi ** 2 * u * sf.s_sq()))
    return f.real ** 2 + f.imag ** 2


def twin_fractions(model, n_components):
    """Component fractions k_1..k_n: BASF for components 2..n, the rest to 1.

    Raises
    ------
    UnsupportedInstruction
        When BASF gives fewer values than the components need.
    """
    basf = list(model.instructions.basf)
    if len(basf) < n_components - 1:
        raise UnsupportedInstruction(model.source, None, f"{n_components} twin components need "
                                     f"{n_components - 1} BASF values, the file gives {len(basf)}")
    k = np.array([0.0] + basf[:n_components - 1])
    k[0] = 1.0 - k[1:].sum()
    return k


def _twin_law_components(model, hkl):
    """HKLF 4 with TWIN: component indices h R^j (j = 0..N-1) with their
    fractions; non-integral indices contribute nothing."""
    twin = model.instructions.twin
    if twin.n_components < 2:
        raise UnsupportedInstruction(model.source, None, f"TWIN with N = {twin.n_components}: only "
                                     "N >= 2 (the law applied N - 1 times) is supported")
    k = twin_fractions(model, twin.n_components)
    rows, groups, fractions = [], [], []
    current = hkl.astype(np.float64)
    for j in range(twin.n_components):
        integral = np.all(np.abs(current - np.round(current)) < 1e-6, axis=1)
        rows.append(np.round(current[integral]).astype(np.int32))
        groups.append(np.flatnonzero(integral))
        fractions.append(np.full(int(integral.sum()), k[j]))
        current = current @ np.asarray(twin.matrix, dtype=np.float64).T
    return np.concatenate(rows), np.concatenate(groups), np.concatenate(fractions)


def calculated_intensities(model, data, n_threads=1):
    """Fc² for each reflection of ``data``, on the absolute scale, as SHELXL
    compares it with Fo²/osf².

    Twins: Fc² = Σ_j k_j |F(h_j)|² over the components (HKLF 5 lines, or
    the TWIN law's images h R^j); extinction then applies to that sum.

    Parameters
    ----------
    model : Model
    data : ReflectionData
    n_threads : int

    Returns
    -------
    float64 (m,)
    """
    m = len(data)
    if data.hklf == 5:
        n_components = int(data.twin_component.max()) if len(data.twin_component) else 1
        k = twin_fractions(model, n_components)
        i_sq = _intensities(model, data.twin_hkl, n_threads)
        fc_sq = np.bincount(data.twin_group, k[data.twin_component - 1] * i_sq, minlength=m)
    elif model.instructions.twin is not None:
        hkl, groups, fractions = _twin_law_components(model, data.hkl)
        fc_sq = np.bincount(groups, fractions * _intensities(model, hkl, n_threads), minlength=m)
    else:
        fc_sq = _intensities(model, data.hkl, n_threads)
    exti = model.instructions.exti
    if exti is not None and exti != 0:
        extinction = sftbx.ShelxExtinction(exti, model.wavelength)
        eps = extinction.eps(model.cell.s_squared(data.hkl))
        fc_sq, *_ = sftbx.extinction_correction(fc_sq, eps, exti)
    return fc_sq
