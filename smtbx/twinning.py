"""Twinned intensities and their design rows (SHELXL's TWIN, BASF, HKLF 5).

For a measured reflection with component indices h_1 .. h_n (the TWIN law's
images h R^(j-1), or the lines of an HKLF 5 group with their component
numbers k):

    Fc²(twin) = Σ_lines α_k |F(h_line)|²,   α_1 = 1 − Σ_{k≥2} BASF_(k−1),
    α_k = BASF_(k−1) (k ≥ 2),

so that the fractions sum to one by construction (the sum constraint).
The measured line of an HKLF 5 group may carry any component number: each
line is weighted by the fraction of its own component.  SHELXL's EXTI then
applies to the twin sum (Y = S (1 + x ε S)^(-1/2), ε = 0.001 λ³/sin 2θ of
the measured reflection).

Design rows: ∂Y/∂y_atom = dY/dS Σ α_k ∂|F(h_line)|²/∂y (sftbx's rows at the
component indices, which may break the centring condition: sftbx evaluates
the centring factor), ∂Y/∂BASF_(k−1) = dY/dS Σ_lines (δ_{k,line} − δ_{1,line})
|F(h_line)|², ∂Y/∂x_ext from sftbx.y_calc's formula.  Columns are the
caller's (the graph's y indices); ``Reparametrisation.chain`` turns them
into rows in x.
"""

import numpy as np

import sftbx

from .errors import TwinError

__all__ = ["TwinError", "check_twin_law", "twin_law_components", "hklf5_components",
           "twin_fractions", "twin_fractions_su", "TwinnedIntensities"]


def check_twin_law(matrix, unit_cell, source="TWIN", tolerance=0.02):
    """The twin matrix as int (3, 3), checked.

    A twin law must be integral (it maps Miller indices onto Miller indices)
    and a symmetry of the lattice, at least approximately (pseudo-merohedry):
    R^T G* R = G* within ``tolerance`` relative to the largest element of G*,
    with det R = ±1.

    Raises
    ------
    TwinError
    """
    r = np.asarray(matrix, dtype=np.float64)
    if r.shape != (3, 3) or not np.isfinite(r).all():
        raise TwinError(f"{source}: the twin matrix must be 3 x 3 finite numbers, got {r.tolist()}")
    rounded = np.round(r)
    if np.abs(r - rounded).max() > 1e-3:
        raise TwinError(f"{source}: the twin matrix {r.tolist()} is not integral; a twin law "
                        "must map Miller indices onto Miller indices")
    rounded = rounded.astype(np.int64)
    det = round(np.linalg.det(rounded))
    if abs(det) != 1:
        raise TwinError(f"{source}: the twin matrix {rounded.tolist()} has determinant {det}, "
                        "expected +1 or -1")
    gstar = np.asarray(unit_cell.reciprocal_metric, dtype=np.float64)
    mapped = rounded.T @ gstar @ rounded
    misfit = np.abs(mapped - gstar).max() / np.abs(gstar).max()
    if misfit > tolerance:
        raise TwinError(f"{source}: the twin matrix {rounded.tolist()} is not a symmetry of the "
                        f"lattice (it changes the reciprocal metric by {misfit:.3g} of its "
                        f"largest element; at most {tolerance} is accepted)")
    return rounded.astype(np.int32)


def twin_law_components(hkl, matrix, n_components):
    """Component lines of TWIN R N on HKLF 4 data.

    Components j = 1..|N| have indices h R^(j-1); for negative N (SHELXL:
    racemic twinning on top of the law) components |N|/2 + 1 .. |N| are the
    inverses −h R^(j-1).  With the checked integral law every index is
    integral.

    Parameters
    ----------
    hkl : int (m, 3)
    matrix : int (3, 3)
        From :func:`check_twin_law`; applied as h' = R h (h a column), as
        SHELXL's TWIN r11..r33 are read.
    n_components : int
        N of TWIN (±2, ±3, ...).

    Returns
    -------
    component_hkl : int32 (m |N|, 3)
    group : int32 (m |N|,)
        The measured reflection of each line (sorted).
    component : int32 (m |N|,)
        1..|N|.
    """
    n = int(n_components)
    if abs(n) < 2 or (n < 0 and n % 2):
        raise TwinError(f"TWIN N = {n_components}: expected |N| >= 2 (and even when negative)")
    hkl = np.asarray(hkl, dtype=np.int64)
    r = np.asarray(matrix, dtype=np.int64)
    proper = abs(n) // 2 if n < 0 else n
    images, current = [], hkl
    for _ in range(proper):
        images.append(current)
        current = current @ r.T
    if n < 0:
        images += [-h for h in images]
    stacked = np.stack(images, axis=1)                      # (m, |N|, 3)
    m = len(hkl)
    group = np.repeat(np.arange(m), abs(n))
    component = np.tile(np.arange(1, abs(n) + 1), m)
    return (np.ascontiguousarray(stacked.reshape(-1, 3), dtype=np.int32),
            group.astype(np.int32), component.astype(np.int32))


def hklf5_components(data, n_basf):
    """Component lines of HKLF 5 data (``smtbx.data.ReflectionData``),
    sorted by measured reflection.

    Raises
    ------
    TwinError
        A component number outside 1..n_basf + 1, or BASF values for
        components no reflection uses.
    """
    if data.hklf != 5 or data.twin_hkl is None:
        raise TwinError("HKLF 5 components: the reflections were not read as HKLF 5")
    component = np.asarray(data.twin_component, dtype=np.int32)
    top = int(n_basf) + 1
    bad = (component < 1) | (component > top)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TwinError(f"HKLF 5: reflection {data.twin_hkl[i].tolist()} belongs to twin "
                        f"component {component[i]}, but BASF gives {n_basf} fraction(s), so "
                        f"components 1..{top} only ({int(bad.sum())} such lines)")
    if len(component) and component.max() < top:
        raise TwinError(f"HKLF 5: BASF gives {n_basf} fraction(s), for components 2..{top}, but "
                        f"the reflections use components 1..{int(component.max())} only")
    order = np.argsort(data.twin_group, kind="stable")
    return (np.ascontiguousarray(data.twin_hkl[order], dtype=np.int32),
            np.asarray(data.twin_group, dtype=np.int32)[order], component[order])


def twin_fractions(basf, n_components, source="BASF"):
    """α_1..α_n from the n − 1 BASF values (α_1 = 1 − Σ BASF).

    Raises
    ------
    TwinError
        When the number of BASF values is not n − 1.
    """
    basf = np.asarray(basf, dtype=np.float64).ravel()
    if len(basf) != n_components - 1:
        raise TwinError(f"{source}: {n_components} twin components need {n_components - 1} "
                        f"BASF value(s), got {len(basf)}")
    if not np.isfinite(basf).all():
        raise TwinError(f"{source}: BASF values must be finite, got {basf.tolist()}")
    return np.concatenate(([1.0 - basf.sum()], basf))


def twin_fractions_su(basf, basf_covariance):
    """All component fractions with their s.u.'s, the first (1 − Σ BASF)
    included: Var(α_1) = Σ_kl Cov(BASF_k, BASF_l).

    Parameters
    ----------
    basf : float (n − 1,)
    basf_covariance : float (n − 1, n − 1)
        E.g. ``J[basf rows] Var(x) J[basf rows]ᵀ`` from the graph.

    Returns
    -------
    fractions, sus : float64 (n,)
    """
    basf = np.asarray(basf, dtype=np.float64).ravel()
    cov = np.atleast_2d(np.asarray(basf_covariance, dtype=np.float64))
    if cov.shape != (len(basf), len(basf)):
        raise TwinError(f"BASF covariance: expected shape {(len(basf), len(basf))}, "
                        f"got {cov.shape}")
    fractions = twin_fractions(basf, len(basf) + 1)
    variances = np.concatenate(([cov.sum()], np.diag(cov)))
    return fractions, np.sqrt(np.maximum(variances, 0.0))


class TwinnedIntensities:
    """Fc² of twinned reflections and their design rows, in place of
    ``sftbx.StructureFactors.design_rows`` for untwinned data.

    Parameters
    ----------
    structure_factors : sftbx.StructureFactors
        Built at the component indices (``component_hkl``), e.g. by
        ``smtbx.structure.structure_factors(model, component_hkl)``.
    group : int (k,)
        Measured reflection (0..m−1) of each component line, sorted, every
        measured reflection having at least one line.
    component : int (k,)
        Twin component (1..n_components) of each line.
    hkl : int (m, 3)
        The measured reflections (their 2θ sets the extinction correction).
    n_components : int

    Notes
    -----
    Fc² is on the absolute scale, like ``smtbx.structure.calculated_intensities``.
    """

    def __init__(self, structure_factors, group, component, hkl, n_components):
        self.sf = structure_factors
        self.group = np.asarray(group, dtype=np.int64)
        self.component = np.asarray(component, dtype=np.int64)
        self.hkl = np.asarray(hkl, dtype=np.int32)
        self.n_components = int(n_components)
        k = len(self.sf.hkl)
        m = len(self.hkl)
        if self.group.shape != (k,) or self.component.shape != (k,):
            raise TwinError(f"twin components: {k} component indices but {len(self.group)} "
                            f"group and {len(self.component)} component numbers")
        if k and (np.any(np.diff(self.group) < 0) or self.group[0] != 0 or self.group[-1] != m - 1
                  or np.any(np.diff(self.group) > 1)):
            raise TwinError("twin components: the lines must be sorted by measured reflection, "
                            f"each of the {m} reflections having at least one")
        if k and (self.component.min() < 1 or self.component.max() > self.n_components):
            raise TwinError(f"twin components: component numbers must lie in "
                            f"1..{self.n_components}")
        self.starts = np.searchsorted(self.group, np.arange(m + 1))

    @classmethod
    def from_twin_law(cls, structure_factors_at, unit_cell, hkl, matrix, n_components):
        """For TWIN R N on HKLF 4 data; ``structure_factors_at(component_hkl)``
        returns an sftbx.StructureFactors."""
        law = check_twin_law(matrix, unit_cell)
        comp_hkl, group, component = twin_law_components(hkl, law, n_components)
        return cls(structure_factors_at(comp_hkl), group, component, hkl, abs(int(n_components)))

    @classmethod
    def from_hklf5(cls, structure_factors_at, data, n_basf):
        """For HKLF 5 data (``smtbx.data.ReflectionData``)."""
        comp_hkl, group, component = hklf5_components(data, n_basf)
        return cls(structure_factors_at(comp_hkl), group, component, data.hkl, int(n_basf) + 1)

    @classmethod
    def for_model(cls, model, data, n_threads=1):
        """From a SHELX model (TWIN/BASF, or HKLF 5 with BASF) and its data."""
        from .structure import structure_factors

        def at(comp_hkl):
            return structure_factors(model, comp_hkl, n_threads)

        n_basf = len(model.instructions.basf)
        if data.hklf == 5:
            return cls.from_hklf5(at, data, n_basf)
        twin = model.instructions.twin
        if twin is None:
            raise TwinError("the model has neither TWIN nor HKLF 5 data")
        calc = cls.from_twin_law(at, model.cell, data.hkl, twin.matrix, twin.n_components)
        twin_fractions(model.instructions.basf, calc.n_components,
                       source=f"TWIN N = {twin.n_components} with BASF")
        return calc

    def _block(self, start, stop):
        m = len(self.hkl)
        stop = m if stop is None else stop
        if not 0 <= start <= stop <= m:
            raise TwinError(f"reflection block {start}:{stop} is not within 0:{m}")
        return stop, int(self.starts[start]), int(self.starts[stop])

    def _extinction(self, s, start, stop, extinction):
        """Y, dY/dS, dY/dx from the twin sum S."""
        if extinction is None:
            return s, np.ones_like(s), np.zeros_like(s)
        eps = extinction.eps(self.sf.unit_cell.s_squared(self.hkl[start:stop]))
        x = float(extinction.x)
        q = 1 + x * eps * s
        return s / np.sqrt(q), q ** -1.5 * (1 + 0.5 * x * eps * s), -0.5 * eps * s ** 2 * q ** -1.5

    def intensities(self, basf, extinction=None):
        """Twinned (and extinction-corrected) Fc² of every measured
        reflection, float64 (m,).

        Parameters
        ----------
        basf : float (n_components − 1,)
        extinction : sftbx.ShelxExtinction, optional
        """
        alpha = twin_fractions(basf, self.n_components)
        i_sq = self.sf.intensities()
        s = np.bincount(self.group, alpha[self.component - 1] * i_sq, minlength=len(self.hkl))
        return self._extinction(s, 0, len(self.hkl), extinction)[0]

    def design_rows(self, parameter_map, basf, basf_columns, extinction=None, start=0, stop=None):
        """Y = twinned Fc² and dY/dp for the measured reflections start:stop.

        Parameters
        ----------
        parameter_map : sftbx.ParameterMap
            The atoms' columns (e.g. the graph's ``y_columns()``), its
            ``extinction_column`` the column of EXTI's x (needs
            ``extinction``) or -1.
        basf : float (n_components − 1,)
        basf_columns : int (n_components − 1,)
            Column of each BASF (-1: not refined).
        extinction : sftbx.ShelxExtinction, optional
        start, stop : int

        Returns
        -------
        y : float64 (stop − start,)
        rows : float64 (stop − start, parameter_map.n_params)
        """
        alpha = twin_fractions(basf, self.n_components)
        basf_columns = np.asarray(basf_columns, dtype=np.int64).ravel()
        if len(basf_columns) != self.n_components - 1:
            raise TwinError(f"{len(basf_columns)} BASF columns for {self.n_components} components")
        n_params = parameter_map.n_params
        if np.any(basf_columns >= n_params) or np.any(basf_columns < -1):
            raise TwinError(f"BASF columns must lie in -1..{n_params - 1}")
        if parameter_map.extinction_column >= 0 and extinction is None:
            raise TwinError("the parameter map has an extinction column but no extinction "
                            "was given")
        stop, lo, hi = self._block(start, stop)
        atoms_only = sftbx.ParameterMap(parameter_map.columns, n_params)
        i_sq, line_rows = self.sf.design_rows(atoms_only, start=lo, stop=hi, kind="fc_sq")
        comp = self.component[lo:hi] - 1
        local = self.group[lo:hi] - start
        weights = alpha[comp]
        n = stop - start
        s = np.bincount(local, weights * i_sq, minlength=n)
        line_rows *= weights[:, None]
        rows = np.add.reduceat(line_rows, self.starts[start:stop] - lo, axis=0) if n else \
            np.zeros((0, n_params))
        for k, col in enumerate(basf_columns, start=2):
            if col < 0:
                continue
            d = np.where(comp == k - 1, i_sq, 0.0) - np.where(comp == 0, i_sq, 0.0)
            rows[:, col] += np.bincount(local, d, minlength=n)
        y, dy_ds, dy_dx = self._extinction(s, start, stop, extinction)
        rows *= dy_ds[:, None]
        if parameter_map.extinction_column >= 0:
            rows[:, parameter_map.extinction_column] += dy_dx
        return y, rows
