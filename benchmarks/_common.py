"""What every benchmark shares: the command line, thread pinning, timing,
and running the reference (cctbx) side in its own virtual environment.

cctbx-base installs top-level ``smtbx`` and ``mmtbx`` packages of its own, so
it never shares an environment with this project: a benchmark passes it the
python of a separate venv (``--reference-python``) and times the cctbx side
there, on the same input, in the same run.  In that environment cctbx must be
imported before gemmi.
"""

import argparse
import json
import os
import subprocess
import sys
import time

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_threads(n):
    """Pin the BLAS and OpenMP thread counts of this process (call before
    numpy is first used) and return the environment for a child process."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n)
    return dict(os.environ)


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--reference-python", metavar="PYTHON",
                   help="python of a venv with cctbx-base installed "
                        "(python3 -m venv ref && ref/bin/pip install cctbx-base==2025.11)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timings are the best of this many runs (default 3)")
    return p


def best_time(function, repeats):
    """Best wall time of ``repeats`` calls of ``function()``, in seconds,
    and the value of the last call."""
    best = float("inf")
    value = None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
    return best, value


def run_reference(python, script, payload, threads=1, timeout=3600):
    """Run ``script`` (Python source) under the reference interpreter.

    ``payload`` is passed as JSON on standard input; the script must print
    one JSON object as its last line of standard output, which is returned.
    Returns None when no reference interpreter was given.
    """
    if not python:
        return None
    env = dict(os.environ)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    env.pop("PYTHONPATH", None)
    done = subprocess.run([python, "-c", script], input=json.dumps(payload),
                          capture_output=True, text=True, env=env, timeout=timeout,
                          cwd="/")
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"reference run failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio_table(rows, headers):
    """Format rows (lists of cells) as a Markdown table."""
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)
