"""The tests exercise the installed, compiled packages, and CI runs the
README's test command."""

import importlib
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
TOOLBOXES = ["sgtbx", "sftbx", "lstbx", "restraintstbx", "smtbx", "mmtbx"]


def test_repository_root_is_not_on_sys_path():
    # --import-mode=importlib and no root conftest keep the source folders
    # from shadowing the installed packages.
    roots = {pathlib.Path(p or ".").resolve() for p in sys.path}
    assert REPO not in roots


@pytest.mark.parametrize("name", TOOLBOXES)
def test_toolbox_imports(name):
    module = importlib.import_module(name)
    assert module.__doc__


def test_compiled_cores_are_loaded():
    # A source folder without its extension modules would fail here.
    for name in ["sgtbx._reciprocal", "sgtbx._site"]:
        module = importlib.import_module(name)
        assert pathlib.Path(module.__file__).suffix in {".so", ".pyd"}


def _readme_commands():
    text = (REPO / "README.md").read_text()
    block = text.split("```", 2)[1]
    lines = [line for line in block.splitlines() if line.strip()]
    return lines


def test_readme_opens_with_two_commands():
    lines = _readme_commands()
    assert len(lines) == 2
    assert lines[0] == "pip install . && smtbx-refine --demo"
    assert lines[1] == 'pip install ".[test]" && pytest'


def test_ci_runs_the_readme_test_command():
    done = subprocess.run(["bash", str(REPO / ".ci" / "run"), "--print"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == _readme_commands()[1]
