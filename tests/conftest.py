"""Shared fixtures: where the real data lives.

The data sets are never copied into the repository.  They are found through
the environment variable CRYSTAL_DATA or, failing that, the folder
``../shared/data`` beside the checkout; tests that need them skip with a
reason when neither exists.
"""

import os
import pathlib

import pytest

_REPO = pathlib.Path(__file__).resolve().parent.parent


def crystal_data_root():
    """The real-data folder, or None when it is not available."""
    env = os.environ.get("CRYSTAL_DATA")
    candidates = [pathlib.Path(env)] if env else []
    candidates.append(_REPO.parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def crystal_data():
    """Path to the real data (small/, macro/, monomers/); skips when absent."""
    root = crystal_data_root()
    if root is None:
        pytest.skip("real data not found: set CRYSTAL_DATA or place it in ../shared/data")
    return root


def _subfolder(root, name, what):
    path = root / name
    if not path.is_dir():
        pytest.skip(f"{what} not found in {root}")
    return path


@pytest.fixture(scope="session")
def small_data(crystal_data):
    return _subfolder(crystal_data, "small", "small-molecule data")


@pytest.fixture(scope="session")
def macro_data(crystal_data):
    return _subfolder(crystal_data, "macro", "macromolecular data")


@pytest.fixture(scope="session")
def monomer_data(crystal_data):
    return _subfolder(crystal_data, "monomers", "monomer library")
