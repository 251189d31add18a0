"""Reflections as SHELXL uses them (DESIGN.md §7).

HKLF 4, in SHELXL's order:

1. reflections beyond the 2θ limit of ``OMIT s 2θ`` or outside the ``SHEL``
   resolution range are dropped on reading (SHELXL: "rejected immediately
   on reading in");
2. systematically absent reflections are removed;
3. equivalents are merged with SHELXL's rule (``sgtbx.merge_equivalents``
   with ``rule="shelxl"``), with
   Friedel pairs kept apart in non-centrosymmetric groups (``MERG 2``, the
   default; ``MERG 3`` and ``4`` merge them, ``MERG 0`` merges nothing);
4. ``OMIT h k l`` removes the merged reflection h k l (mapped into the
   asymmetric unit as the data are, so that a Friedel mate kept apart is
   not removed with it);
5. a merged Fo² below −σ(Fo²) is raised to −σ(Fo²).  SHELXL's manual does
   not say so; its printed figures do.  At the deposited models wR2 and
   GoF come out as SHELXL printed them only this way: ni_i43d 0.0860 /
   1.095 (23 raised; 0.0867 / 1.104 as read), alga_p21c 0.1005 / 1.016
   (240; 0.1026 / 1.037), gabipy_c2c 0.2063 / 1.017 (142; 0.2091 / 1.031)
   and cc_invtwin's GoF 1.035 (1.039).  Other rules miss on at least one
   set by 0.0001 to 0.0004 in wR2 or 0.001 to 0.004 in GoF: leaving out
   the reflections below −1.5σ (the old OMIT −3 threshold, halved for
   Fo²), or raising them to 0, to −0.5σ or to −σ.  R1 and the counts are
   unchanged: a negative Fo² counts as |Fo| = 0 either way.  With the rule
   all twelve sets with printed figures reproduce SHELXL's wR2 and GoF to
   their last digit (tests/smtbx/test_figures.py).

HKLF 5 data are not merged: each measured reflection is a group of lines
(one per contributing twin component, the last with a positive component
number).  Absent components contribute nothing and are dropped; a group
whose components are all absent is dropped, as SHELXL does.  Step 5 is not
applied to them: no twinned set with such reflections has a published wR2
to tell whether SHELXL raises them too.

The threshold s of ``OMIT s 2θ`` (older SHELXL: Fo² < sσ flagged as
unobserved) is not applied: every reflection enters the counts and the
figures.  The counts of every shared data set equal SHELXL's that way (alga
keeps its three merged reflections below −3σ).
"""

from dataclasses import dataclass, field

import numpy as np

import sgtbx

from .errors import ShelxSyntaxError, UnsupportedInstruction


@dataclass
class ReflectionData:
    """Reflections ready for refinement.

    Attributes
    ----------
    hkl : int32 (m, 3)
        The measured reflections (merged for HKLF 4, in the asymmetric unit;
        for HKLF 5 the index of the group's last line).
    fo_sq, sig_fo_sq : float64 (m,)
        Fo² and σ(Fo²) on the scale of the file.
    hklf : int
        4 or 5.
    anomalous : bool
        Friedel pairs kept apart.
    twin_hkl : int32 (k, 3) or None
        HKLF 5: every contributing (present) component line.
    twin_component : int32 (k,) or None
        HKLF 5: the component (1, 2, ...) of each line.
    twin_group : int32 (k,) or None
        HKLF 5: the measured reflection (index into ``fo_sq``) of each line.
    counts : dict
        What happened to the lines of the file: ``lines`` read,
        ``outside_resolution`` (2θ limit, SHEL), ``absent`` (observations,
        or for HKLF 5 component lines, that are systematically absent),
        ``absent_groups`` (HKLF 5 groups dropped), ``omitted`` (OMIT h k l),
        ``unique`` (reflections kept), ``raised`` (HKLF 4: merged Fo²
        raised to −σ, step 5 of the module notes).
    r_int : float or None
        Σ|I − <I>| / Σ I over the groups of two or more (None for HKLF 5 or
        MERG 0).
    """

    hkl: np.ndarray
    fo_sq: np.ndarray
    sig_fo_sq: np.ndarray
    hklf: int = 4
    anomalous: bool = False
    twin_hkl: np.ndarray | None = None
    twin_component: np.ndarray | None = None
    twin_group: np.ndarray | None = None
    counts: dict = field(default_factory=dict)
    r_int: float | None = None

    def __len__(self):
        return len(self.fo_sq)

    @property
    def n_gt(self):
        """Reflections with Fo² > 2σ(Fo²) (SHELXL's "Fo > 4sig(Fo)")."""
        return int(np.count_nonzero(self.fo_sq > 2 * self.sig_fo_sq))


def resolution_mask(model, hkl):
    """bool (n,): reflections inside the 2θ limit of OMIT and the SHEL range.

    Parameters
    ----------
    model : Model
    hkl : int (n, 3)
    """
    ins = model.instructions
    s_sq = model.cell.s_squared(hkl)
    keep = np.ones(len(s_sq), dtype=bool)
    if ins.omit_two_theta is not None and ins.omit_two_theta < 180.0:
        sin_max = np.sin(np.radians(ins.omit_two_theta) / 2)
        keep &= s_sq <= (2 * sin_max / model.wavelength) ** 2
    if ins.shel is not None:
        d_max, d_min = ins.shel
        if d_min > 0:
            keep &= s_sq <= 1.0 / d_min ** 2
        if d_max > 0:
            keep &= s_sq >= 1.0 / d_max ** 2
    return keep


def friedel_kept_apart(model):
    """Whether Friedel pairs stay separate reflections (SHELXL's MERG rule)."""
    return (not model.space_group.is_centric) and model.instructions.merg in (0, 2)


def _check_sigmas(model, obs, keep):
    bad = np.flatnonzero(keep & ~(obs.sig_fo_sq > 0))
    if len(bad):
        i = int(bad[0])
        raise ShelxSyntaxError(_hkl_path(model), i + 1,
                               f"reflection {obs.hkl[i].tolist()}: σ(Fo²) = {obs.sig_fo_sq[i]} "
                               f"must be positive ({len(bad)} such reflections)")


def _hkl_path(model):
    stem = model.source.rsplit(".", 1)[0] if model.source else "reflections"
    return stem + ".hkl"


def reduce_observations(model, observations=None):
    """The reflections SHELXL would refine against.

    Parameters
    ----------
    model : Model
        Its instructions (OMIT, SHEL, MERG, HKLF) and space group are used.
    observations : Observations, optional
        Default ``model.observations``.

    Returns
    -------
    ReflectionData

    Raises
    ------
    ShelxSyntaxError
        No reflections, or a σ(Fo²) that is not positive (naming the line of
        the .hkl file).
    UnsupportedInstruction
        MERG values SHELXL does not define.
    """
    obs = observations if observations is not None else model.observations
    if obs is None or len(obs.fo_sq) == 0:
        raise ShelxSyntaxError(_hkl_path(model), None, "no reflections")
    if obs.hklf == 5:
        return _reduce_hklf5(model, obs)
    merg = model.instructions.merg
    if merg not in (0, 2, 3, 4):
        raise UnsupportedInstruction(model.source, None, f"MERG {merg}: expected 0, 2, 3 or 4")
    sg = model.space_group
    keep = resolution_mask(model, obs.hkl)
    _check_sigmas(model, obs, keep)
    counts = {"lines": int(obs.n_lines), "outside_resolution": int(np.count_nonzero(~keep))}
    hkl, fo_sq, sig = obs.hkl[keep], obs.fo_sq[keep], obs.sig_fo_sq[keep]
    anomalous = friedel_kept_apart(model)
    absent = sg.absent_flags(hkl)
    counts["absent"] = int(np.count_nonzero(absent))
    hkl, fo_sq, sig = hkl[~absent], fo_sq[~absent], sig[~absent]
    r_int = None
    if merg != 0 and len(hkl):
        merged = sgtbx.merge_equivalents(sg, hkl, fo_sq, sig, anomalous=anomalous, rule="shelxl")
        hkl, fo_sq, sig, r_int = merged.hkl, merged.values, merged.sigmas, merged.r_int
    omitted = np.zeros(len(hkl), dtype=bool)
    if model.instructions.omit_hkl and len(hkl):
        targets = sgtbx.map_to_asu(sg, np.array(model.instructions.omit_hkl), anomalous).hkl
        mapped = hkl if merg != 0 else sgtbx.map_to_asu(sg, hkl, anomalous).hkl
        keys = {tuple(t) for t in targets.tolist()}
        omitted = np.array([tuple(h) in keys for h in mapped.tolist()], dtype=bool)
    counts["omitted"] = int(np.count_nonzero(omitted))
    hkl, fo_sq, sig = hkl[~omitted], fo_sq[~omitted], sig[~omitted]
    counts["unique"] = len(fo_sq)
    fo_sq, counts["raised"] = raise_to_minus_sigma(fo_sq, sig)
    return ReflectionData(np.ascontiguousarray(hkl, dtype=np.int32), fo_sq, sig, hklf=4,
                          anomalous=anomalous, counts=counts, r_int=r_int)


def raise_to_minus_sigma(fo_sq, sig_fo_sq):
    """Fo² below −σ(Fo²) raised to −σ(Fo²), as SHELXL uses them (step 5 of
    the module notes); returns the new Fo² and how many were raised."""
    low = fo_sq < -sig_fo_sq
    return np.where(low, -sig_fo_sq, fo_sq), int(np.count_nonzero(low))


def _reduce_hklf5(model, obs):
    sg = model.space_group
    group = obs.group_index
    measured = obs.measured
    n_groups = obs.n_groups
    last = np.flatnonzero(measured)                 # the line carrying each group's Fo²
    in_range = resolution_mask(model, obs.hkl[last])
    _check_sigmas(model, obs, measured & in_range[group])
    absent = sg.absent_flags(obs.hkl)
    present_lines = ~absent & in_range[group]
    has_present = np.zeros(n_groups, dtype=bool)
    has_present[group[present_lines]] = True
    keep_group = in_range & has_present
    new_index = np.cumsum(keep_group) - 1
    lines = present_lines & keep_group[group]
    counts = {"lines": int(obs.n_lines), "outside_resolution": int(np.count_nonzero(~in_range)),
              "absent": int(np.count_nonzero(absent)),
              "absent_groups": int(np.count_nonzero(in_range & ~has_present)),
              "omitted": 0, "unique": int(np.count_nonzero(keep_group))}
    return ReflectionData(
        hkl=np.ascontiguousarray(obs.hkl[last][keep_group], dtype=np.int32),
        fo_sq=obs.fo_sq[last][keep_group], sig_fo_sq=obs.sig_fo_sq[last][keep_group], hklf=5,
        anomalous=True,
        twin_hkl=np.ascontiguousarray(obs.hkl[lines], dtype=np.int32),
        twin_component=np.abs(obs.batch[lines]).astype(np.int32),
        twin_group=new_index[group[lines]].astype(np.int32), counts=counts)
