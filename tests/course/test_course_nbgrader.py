"""The nbgrader round trip, for instructors who grade with nbgrader (issue 17).

An nbgrader course is built in a temporary folder with ``solutions/`` as its ``source/``;
``nbgrader generate_assignment`` releases lesson 07, and ``nbgrader autograde`` grades three
submissions: the solution, the blank exercise and a half-solved exercise. nbgrader must give
full marks, 0 and exactly the points of the solved tasks; ``minillm grade`` must agree, and
``nbgrader validate`` must fail the blank exercise. The release must be the exercise that
``minillm course build`` generates, cell locks included.

Lesson 07 is the fastest lesson (no model, no data). The test runs nbgrader as a subprocess
on this Python, so it needs the ``instructor`` extra (``pip install -e ".[instructor]"``) and
is skipped without it. About 40 s on 2 cores: five nbgrader commands and three kernels.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _course_helpers import ROOT
from minillm.course.checks import tasks
from minillm.course.grade import grade_paths
from minillm.course.notebooks import dumps, make_exercise, read

pytestmark = [pytest.mark.nbgrader, pytest.mark.lesson07, pytest.mark.slow]

pytest.importorskip(
    "nbgrader",
    reason='nbgrader is not installed; `pip install -e ".[instructor]"` installs it for the nbgrader round trip',
)

STEM = "07_roofline"
LESSON = STEM[:2]
#: Every other task solved in the half-solved submission (the first, the third, ...).
HALF = [t.id for t in tasks(LESSON)][::2]
# nbgrader adds its own bookkeeping to the release's cell metadata, computed at release time
# and kept in its gradebook: a checksum of each graded or locked cell and the cell's type.
NBGRADER_BOOKKEEPING = ("checksum", "cell_type")


def _env(tmp: Path) -> dict:
    """This Python's tools first on PATH (nbgrader calls `alembic`), this checkout's minillm
    first on PYTHONPATH (the kernel imports it), and Jupyter's config, data and runtime folders
    in ``tmp`` so that no user-wide nbgrader config or kernelspec changes the result."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["MPLBACKEND"] = "Agg"
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime")):
        env[var] = str(tmp / "jupyter" / sub)
    env["JUPYTER_PATH"] = str(tmp / "jupyter" / "data")
    env.pop("NBGRADER_EXECUTION", None)
    env.pop("MINILLM_GRADING", None)
    return env


def _python3_kernelspec(data: Path) -> None:
    """A ``python3`` kernelspec on this very Python, found before any user-wide one."""
    spec = data / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )


def _nbgrader(course: Path, env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert r.returncode == 0, f"nbgrader {' '.join(args)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def _half_solved(exercise, solution):
    """The exercise with the answer cells of the tasks in HALF taken from the solution."""
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells if c.metadata["nbgrader"].get("solution")}
    nb = copy.deepcopy(exercise)
    slugs = {t.replace(".", "_") for t in HALF}
    for c in nb.cells:
        gid = c.metadata["nbgrader"]["grade_id"]
        if c.metadata["nbgrader"].get("solution") and gid.split("-")[1] in slugs:
            c.source = answers[gid]
    return nb


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """Build the nbgrader course, release lesson 07, autograde three submissions, export the scores."""
    tmp = tmp_path_factory.mktemp("nbgrader")
    course = tmp / "course"
    (course / "source" / STEM).mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / f"{STEM}.ipynb", course / "source" / STEM / f"{STEM}.ipynb")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'minillm'\n"
        "c.ExecutePreprocessor.timeout = 300  # per cell; lesson 07's cells take well under a second\n",
        encoding="utf-8",
    )
    env = _env(tmp)
    _python3_kernelspec(Path(env["JUPYTER_PATH"]))

    _nbgrader(course, env, "generate_assignment", STEM, "--force")
    solution = read(ROOT / "solutions" / f"{STEM}.ipynb")
    exercise = make_exercise(solution, STEM)
    submissions = {"solved": solution, "blank": exercise, "half": _half_solved(exercise, solution)}
    for student, nb in submissions.items():
        folder = course / "submitted" / student / STEM
        folder.mkdir(parents=True)
        (folder / f"{STEM}.ipynb").write_text(dumps(nb), encoding="utf-8")
    _nbgrader(course, env, "autograde", STEM, "--force")
    _nbgrader(course, env, "export", "--to", str(tmp / "grades.csv"))
    with open(tmp / "grades.csv", newline="", encoding="utf-8") as f:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}
    return {"tmp": tmp, "course": course, "env": env, "exercise": exercise, "scores": scores}


def test_autograde_gives_full_marks_zero_and_partial(round_trip):
    total = sum(t.points for t in tasks(LESSON))
    half = sum(t.points for t in tasks(LESSON) if t.id in HALF)
    assert 0 < half < total  # the half-solved submission is a real middle case
    # Scores are sums of whole task points: compared exactly.
    assert round_trip["scores"] == {"solved": (total, total), "blank": (0, total), "half": (half, total)}


def test_minillm_grade_agrees_with_nbgrader(round_trip):
    course = round_trip["course"]
    paths = [course / "submitted" / s / STEM / f"{STEM}.ipynb" for s in ("solved", "blank", "half")]
    rows, code = grade_paths(paths, root=ROOT, echo=lambda s: None)
    assert code == 0
    got = {s: sum(r.points for r in rows if r.submission == str(p)) for s, p in zip(("solved", "blank", "half"), paths)}
    assert got == {s: score for s, (score, _) in round_trip["scores"].items()}


def test_release_is_the_generated_exercise_with_nbgrader_locks(round_trip):
    release = read(round_trip["course"] / "release" / STEM / f"{STEM}.ipynb")
    exercise = round_trip["exercise"]
    assert [c.id for c in release.cells] == [c.id for c in exercise.cells]
    for r, e in zip(release.cells, exercise.cells):
        meta = copy.deepcopy(dict(r.metadata))
        for key in NBGRADER_BOOKKEEPING:
            meta["nbgrader"].pop(key, None)
        assert (r.cell_type, r.source, meta) == (e.cell_type, e.source, dict(e.metadata)), r.id
    locks = {(c.metadata["nbgrader"]["solution"], c.metadata.get("editable"), c.metadata.get("deletable")) for c in exercise.cells}
    # answer cells: editable, not deletable; every other cell: neither (nbgrader's LockCells)
    assert locks == {(True, None, False), (False, False, False)}


def test_validate_fails_the_blank_exercise(round_trip):
    blank = round_trip["course"] / "submitted" / "blank" / STEM / f"{STEM}.ipynb"
    r = _nbgrader(round_trip["course"], round_trip["env"], "validate", str(blank))
    n = len(tasks(LESSON))
    assert f"VALIDATION FAILED ON {n} CELL(S)" in r.stdout + r.stderr
    assert "CheckNotPassed" in r.stdout + r.stderr and "Success!" not in r.stdout + r.stderr
