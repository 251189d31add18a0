"""Every Python example in the README runs."""

import contextlib
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    assert out.getvalue()


def test_readme_sgtbx_example_prints_what_it_says():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(BLOCKS[0], {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "8 2/m True"
    assert lines[1].endswith("2 4") and "0.31" in lines[1]
    assert lines[2] == "(3, 1) (6, 4)"
    assert lines[4] == "2 0.0"
