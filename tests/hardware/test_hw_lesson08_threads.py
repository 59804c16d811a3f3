"""Lesson 08 starts no background threads (issue 11's stall).

One ``jupyter nbconvert --execute`` of lesson 08 once hung with an idle kernel. A lesson can
make a hang like that likelier by leaving threads running after a cell ends (a tqdm monitor, a
progress bar, a timer): nbval and nbclient wait for a cell's output to settle. This runs every
code cell of the lesson in this process (without IPython: magics dropped, ``display`` a no-op)
and checks that no Python thread is left behind.
"""

import pathlib
import threading

import matplotlib

matplotlib.use("Agg")

import nbformat  # noqa: E402
import pytest  # noqa: E402

pytestmark = pytest.mark.lesson08

LESSON = pathlib.Path(__file__).resolve().parents[2] / "lessons" / "08_hardware.ipynb"


def test_lesson_08_leaves_no_thread_running():
    nb = nbformat.read(LESSON, as_version=4)
    env: dict = {}
    before = set(threading.enumerate())
    for cell in nb.cells:
        if cell.cell_type == "code":
            source = "\n".join(line for line in cell.source.split("\n") if not line.lstrip().startswith("%"))
            exec(compile(source, f"lesson 08, cell {cell.get('id')}", "exec"), env)
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left == [], f"lesson 08 left threads running: {left}"
    assert "show_costs" in env and "rows70" in env  # every cell ran, the last ones included
