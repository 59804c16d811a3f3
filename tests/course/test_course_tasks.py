"""Every graded task: its check passes on the solution and reads "not attempted" on the blank
exercise; the notebooks check exactly the registered tasks; the committed exercise and the
text mirrors of lessons and solutions are up to date.

Parametrised over ``solutions/NN_*.ipynb`` (each case marked with its lesson), so a new
lesson is covered as soon as its solution exists. The solution's and exercise's code
cells run in this process (no kernel).
"""

from __future__ import annotations

import pytest

from _course_helpers import ROOT, lesson_of, solution_params
from minillm.course.build import expected_exercise, expected_mirror, stale, stems
from minillm.course.checks import run_check, tasks
from minillm.course.mirror import MIRRORED, mirror_path
from minillm.course.notebooks import read, task_functions

pytestmark = pytest.mark.foundation


@pytest.mark.parametrize("stem", solution_params())
def test_solution_passes_every_check(stem):
    fns = task_functions(read(ROOT / "solutions" / f"{stem}.ipynb"), f"solutions/{stem}")
    for task, fn in fns.items():
        res = run_check(task, fn)
        assert res.passed and res.points == res.max_points, res.line


@pytest.mark.parametrize("stem", solution_params())
def test_blank_exercise_is_not_attempted(stem):
    fns = task_functions(read(ROOT / "exercises" / f"{stem}.ipynb"), f"exercises/{stem}")
    for task, fn in fns.items():
        res = run_check(task, fn)
        assert res.status == "not attempted" and res.points == 0, res.line
        assert "not attempted yet" in res.line


@pytest.mark.parametrize("stem", solution_params())
def test_notebook_checks_exactly_the_registered_tasks(stem):
    lesson = lesson_of(stem)
    fns = task_functions(read(ROOT / "solutions" / f"{stem}.ipynb"), f"solutions/{stem}")
    assert sorted(fns) == [t.id for t in tasks(lesson)]


@pytest.mark.parametrize("stem", solution_params())
def test_committed_exercise_is_up_to_date(stem):
    path = ROOT / "exercises" / f"{stem}.ipynb"
    assert path.read_text(encoding="utf-8") == expected_exercise(ROOT, stem), (
        f"exercises/{stem}.ipynb is stale: run `minillm course build {lesson_of(stem)}` and commit it"
    )
    assert stale(ROOT, stem) == []


def _notebook_params():
    return [
        pytest.param(folder, stem, marks=getattr(pytest.mark, f"lesson{lesson_of(stem)}"), id=f"{folder}/{stem}")
        for folder in MIRRORED
        for stem in stems(ROOT, folder)
    ]


@pytest.mark.parametrize("folder, stem", _notebook_params())
def test_committed_mirror_is_up_to_date(folder, stem):
    mirror = mirror_path(ROOT / folder / f"{stem}.ipynb")
    assert mirror.is_file() and mirror.read_text(encoding="utf-8") == expected_mirror(ROOT, folder, stem), (
        f"{mirror.relative_to(ROOT)} is missing or stale: run `minillm course build {lesson_of(stem)} --no-execute` "
        "(or a full build) and commit it with the notebook"
    )


def test_lesson01_has_at_least_four_tasks():
    assert len(tasks("01")) >= 4
