"""Scattering factors: X-ray (IT92), neutron and electron (C4322) tables from
gemmi, and f', f'' from gemmi's Cromer-Liberman code.

A table is a set of Gaussian coefficients per scattering type,

    f0(s) = sum_g a_g exp(-b_g s^2 / 4) + c,   s = 1/d in 1/Angstrom,

which the compiled core evaluates once per (type, reflection): IT92 has four
Gaussians and a constant, C4322 five Gaussians (electron scattering factors
in Angstrom), and a neutron scattering length is the constant alone (fm).
"""

import re

import gemmi
import numpy as np

from .errors import ScatteringError

TABLES = ("it92", "neutron", "electron")

# Angstrom * eV: E = h c / lambda
HC_EV_ANGSTROM = 12398.419843320026

_TYPE_RE = re.compile(r"^([A-Za-z]{1,2})(?:(\d*)([+-])|([+-])(\d*))?$")


def parse_scattering_type(name):
    """Split a scattering type such as "C", "Fe3+", "Fe+3", "O2-", "Cl-" into
    (element symbol, charge).

    Raises
    ------
    ScatteringError
        When the name is not an element symbol with an optional charge, or
        gemmi does not know the element.
    """
    match = _TYPE_RE.match(str(name).strip())
    if match is None:
        raise ScatteringError(f"scattering type {name!r}: expected an element symbol with an "
                              f"optional charge such as 'Fe3+' or 'O1-'")
    symbol, digits, sign = match.group(1), match.group(2), match.group(3)
    if sign is None and match.group(4) is not None:
        sign, digits = match.group(4), match.group(5)
    charge = 0
    if sign is not None:
        charge = int(digits) if digits else 1
        if sign == "-":
            charge = -charge
    element = gemmi.Element(symbol)
    if element.atomic_number == 0 or element.name.lower() != symbol.lower():
        raise ScatteringError(f"scattering type {name!r}: unknown element {symbol!r}")
    return element.name, charge


def _it92_coefficients(name, element, charge):
    if charge == 0:
        coef = element.it92
    else:
        previous = gemmi.IT92_get_ignore_charge()
        gemmi.IT92_set_ignore_charge(False)
        try:
            coef = gemmi.IT92_get_exact(element, charge)
        finally:
            gemmi.IT92_set_ignore_charge(previous)
    if coef is None:
        raise ScatteringError(f"scattering type {name!r}: no IT92 coefficients for this "
                              f"{'ion' if charge else 'element'} in gemmi")
    return list(coef.a), list(coef.b), float(coef.c)


def form_factor_table(types, table="it92"):
    """Gaussian coefficients of each scattering type.

    Parameters
    ----------
    types : sequence of str
        Scattering types ("C", "Fe3+", ...).
    table : {"it92", "neutron", "electron"}
        X-ray IT92 (ions as gemmi has them), neutron coherent scattering
        lengths (fm; the charge is irrelevant and ignored) or electron
        scattering factors from the C4322 coefficients (neutral atoms only).

    Returns
    -------
    a, b : float64 (n_types, n_gauss)
    c : float64 (n_types,)
    """
    if table not in TABLES:
        raise ScatteringError(f"scattering table {table!r}: expected one of {', '.join(TABLES)}")
    n_gauss = {"it92": 4, "neutron": 0, "electron": 5}[table]
    a = np.zeros((len(types), n_gauss))
    b = np.zeros((len(types), n_gauss))
    c = np.zeros(len(types))
    for i, name in enumerate(types):
        symbol, charge = parse_scattering_type(name)
        element = gemmi.Element(symbol)
        if table == "it92":
            ai, bi, c[i] = _it92_coefficients(name, element, charge)
        elif table == "neutron":
            ai, bi = [], []
            c[i] = element.neutron92.get_coefs()[0]
        else:
            if charge != 0:
                raise ScatteringError(f"scattering type {name!r}: the C4322 electron table has "
                                      f"neutral atoms only")
            coef = element.c4322
            if coef is None:
                raise ScatteringError(f"scattering type {name!r}: no C4322 coefficients in gemmi")
            ai, bi = list(coef.a), list(coef.b)
        a[i, :len(ai)] = ai
        b[i, :len(bi)] = bi
    return a, b, c


def cromer_liberman(types, wavelength):
    """f' and f'' of each scattering type at a wavelength (Angstrom), from
    gemmi's Cromer-Liberman implementation.

    Returns
    -------
    fp, fdp : float64 (n,)
    """
    wavelength = float(wavelength)
    if not np.isfinite(wavelength) or wavelength <= 0:
        raise ScatteringError(f"wavelength {wavelength!r}: expected a positive number of Angstrom")
    energy = HC_EV_ANGSTROM / wavelength
    fp = np.empty(len(types))
    fdp = np.empty(len(types))
    for i, name in enumerate(types):
        symbol, _ = parse_scattering_type(name)
        fp[i], fdp[i] = gemmi.cromer_liberman(z=gemmi.Element(symbol).atomic_number, energy=energy)
    return fp, fdp
