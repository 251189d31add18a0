"""Output files written atomically: the text goes to a temporary file in the
target's folder, which is then renamed over the target, so that a reader
never sees half a file and a failed write leaves the old file in place.  The
file gets the permissions a plainly created one would (0666 less the umask),
not the temporary file's private 0600."""

import os
import tempfile

from .errors import OutputError

__all__ = ["stage_text", "write_text_atomically"]


def _creation_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def stage_text(path, text):
    """Write ``text`` to a new temporary file beside ``path``.

    Returns
    -------
    str
        The temporary file's path; the caller renames it over ``path``
        (``os.replace``) or removes it.

    Raises
    ------
    OutputError
        Naming ``path`` when the folder cannot be written.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".smtbx-", suffix=os.path.splitext(path)[1], dir=folder)
    except OSError as err:
        raise OutputError(f"{path}: cannot write: {err.strerror}") from None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, _creation_mode())
    except BaseException as err:
        os.unlink(tmp)
        if isinstance(err, OSError):
            raise OutputError(f"{path}: cannot write: {err.strerror}") from None
        raise
    return tmp


def write_text_atomically(path, text):
    """Replace ``path`` by ``text`` atomically (:func:`stage_text`, then a
    rename)."""
    tmp = stage_text(path, text)
    try:
        os.replace(tmp, path)
    except OSError as err:
        os.unlink(tmp)
        raise OutputError(f"{os.fspath(path)}: cannot write: {err.strerror}") from None
