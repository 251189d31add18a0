"""The sgtbx tour on the command line."""

import subprocess
import sys

from sgtbx.__main__ import main_cli


def test_tour_prints_operations_site_and_statistics(capsys):
    assert main_cli(["P 1 21/c 1", "--cell", "7.1", "9.3", "11.2", "90", "104.5", "90",
                     "--site", "0", "0.5", "0.5", "--d-min", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "P 1 21/c 1" in out and "-x,y+1/2,-z+1/2" in out
    assert "site symmetry -1, order 2, multiplicity 2" in out
    assert "Reflections to d_min 1.5" in out


def test_tour_with_hall_symbol_and_number(capsys):
    assert main_cli(["-R 3", "--hall"]) == 0
    assert "R -3:H" in capsys.readouterr().out
    assert main_cli(["225", "--site", "0.25", "0.25", "0.25"]) == 0
    assert "site symmetry -43m, order 24, multiplicity 8" in capsys.readouterr().out


def test_tour_errors_are_one_line(capsys):
    assert main_cli(["P 7"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown space-group symbol 'P 7'"
    assert main_cli(["P 63/m m c", "--cell", "7", "8", "9", "90", "90", "120"]) == 2
    assert "does not agree with the hexagonal lattice" in capsys.readouterr().err


def test_python_dash_m_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sgtbx", "F d -3 m :2", "--d-min", "2"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "order_z 192" in done.stdout
