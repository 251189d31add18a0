"""The sftbx tests import their shared helpers (sftbx_testlib) from this
folder; only this folder goes on sys.path, never the repository root."""

import pathlib
import sys

_HERE = str(pathlib.Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
