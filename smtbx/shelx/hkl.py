"""Read SHELX .hkl files (HKLF 4 and HKLF 5).

The format is Fortran's (3I4, 2F8.2, I4): h, k and l in columns 1-12, Fo²
in 13-20, σ(Fo²) in 21-28, the batch in 29-32.  Fields may touch
(``   0   0   3-5.76448``), so the line is cut in fixed columns, never split
on blanks.  Blanks inside a field are ignored.  A field without a decimal
point is read as the integer it shows (``  268870`` is 268870, not the
2688.70 of Fortran's implied decimals): twin5_p4's file is written so, and
its FVAR scale (23.43, Fo² ≈ 549 Fc²) fits only the integer reading.  The
data end at a line with h = k = l = 0 (a blank line counts)
or at the end of the file; whatever follows the terminator is ignored.
"""

import re

import numpy as np

from .. import model as m
from ..errors import ShelxSyntaxError


def _int_field(text):
    text = text.replace(" ", "")
    return int(text) if text else 0


def _real_field(text):
    text = text.replace(" ", "")
    if not text:
        return None
    return float(text)


def read_hkl(path, hklf=None):
    """Read reflections from a SHELX .hkl file.

    Parameters
    ----------
    path : str or os.PathLike
    hklf : Hklf, optional
        The HKLF instruction of the model (format, scale, index matrix,
        weight); default HKLF 4 with no transformation.

    Returns
    -------
    Observations
        hkl int32 (n, 3) after h' = R h; fo_sq and sig_fo_sq float64 (n,)
        multiplied by the HKLF scale (σ also divided by √wt); batch int32.

    Raises
    ------
    ShelxSyntaxError
        Missing or binary file, a line that is cut short or not numbers,
        indices that the HKLF matrix makes non-integral, HKLF 5 groups
        that do not end with a positive component number.
    """
    hklf = hklf or m.Hklf()
    path = str(path)
    try:
        data = open(path, "rb").read()
    except FileNotFoundError:
        raise ShelxSyntaxError(path, None, "reflection file not found") from None
    except OSError as err:
        raise ShelxSyntaxError(path, None, f"cannot be read: {err.strerror}") from None
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise ShelxSyntaxError(path, line, "not a text file (NUL byte)")
    lines = re.split(r"\r\n|\r|\n", data.decode("latin-1"))
    if lines and lines[-1] == "":
        lines.pop()
    hkl, fo, sig, batch = [], [], [], []
    terminated = False
    number = 0
    for number, line in enumerate(lines, start=1):
        line = line.rstrip().rstrip("\x1a")      # DOS end-of-file mark
        if not line.strip():
            terminated = True
            break
        try:
            h, k, l = (_int_field(line[c:c + 4]) for c in (0, 4, 8))
        except ValueError:
            raise ShelxSyntaxError(path, number, f"expected h k l in columns 1-12 (3I4), got {line[:12]!r}") from None
        if h == 0 and k == 0 and l == 0:
            terminated = True
            break
        try:
            f, s = _real_field(line[12:20]), _real_field(line[20:28])
            b = _int_field(line[28:32])
        except ValueError:
            raise ShelxSyntaxError(path, number, "expected Fo² and σ(Fo²) in columns 13-28 (2F8) and a batch "
                                                 f"number in 29-32 (I4), got {line[12:32]!r}") from None
        if f is None or s is None:
            raise ShelxSyntaxError(path, number, f"line cut short: Fo² and σ(Fo²) expected in columns 13-28, "
                                                 f"got {line!r} (truncated file?)")
        hkl.append((h, k, l))
        fo.append(f)
        sig.append(s)
        batch.append(b if b != 0 else 1)
    trailing = len(lines) - number if terminated else 0
    hkl = np.array(hkl, dtype=np.float64).reshape(-1, 3)
    if not np.array_equal(hklf.matrix, np.eye(3)):
        transformed = hkl @ np.asarray(hklf.matrix, dtype=np.float64).T
        bad = np.flatnonzero(np.any(np.abs(transformed - np.round(transformed)) > 1e-6, axis=1))
        if len(bad):
            raise ShelxSyntaxError(path, int(bad[0]) + 1, f"HKLF matrix turns {hkl[bad[0]].astype(int).tolist()} "
                                                          "into non-integral indices")
        hkl = np.round(transformed)
    batch = np.array(batch, dtype=np.int32)
    if hklf.n == 5 and len(batch) and batch[-1] < 0:
        raise ShelxSyntaxError(path, len(batch), "HKLF 5: the last group does not end with a positive "
                                                 "component number")
    fo_sq = np.array(fo, dtype=np.float64) * hklf.scale
    sig_fo_sq = np.array(sig, dtype=np.float64) * hklf.scale / np.sqrt(hklf.weight)
    return m.Observations(hkl=hkl.astype(np.int32), fo_sq=fo_sq, sig_fo_sq=sig_fo_sq, batch=batch,
                          hklf=hklf.n, n_lines=len(fo_sq), terminated=terminated,
                          trailing_lines=trailing)
