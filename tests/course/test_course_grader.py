"""The grader end to end, in real kernels: the solution scores full marks, the blank exercise
scores 0 with "not attempted", and a tampered submission (an infinite loop, an os._exit, a
deleted check cell, a fake check cell, a deleted answer, an exception) is graded task by
task within the timeout, without its file changing. These tests start kernels (five in all)."""

from __future__ import annotations

import hashlib
import json
import time

import nbformat
import pytest

from _course_helpers import ROOT
from minillm.course.grade import grade_paths

pytestmark = [pytest.mark.lesson01, pytest.mark.slow]

STEM = "01_transformer"


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_solution_full_marks_and_exercise_not_attempted(tmp_path):
    sol, ex = ROOT / "solutions" / f"{STEM}.ipynb", ROOT / "exercises" / f"{STEM}.ipynb"
    before = (_sha(sol), _sha(ex))
    out = tmp_path / "grades.json"
    rows, code = grade_paths([sol, ex], json_out=out, echo=lambda s: None)
    assert code == 0 and (_sha(sol), _sha(ex)) == before
    by = {(r.submission, r.task): r for r in rows}
    for (sub, task), r in by.items():
        if sub == str(sol):
            assert (r.status, r.points) == ("passed", r.max), r
        else:
            assert (r.status, r.points) == ("not attempted", 0), r
    data = json.loads(out.read_text())
    assert {tuple(sorted(d)) for d in data} == {("max", "message", "points", "status", "submission", "task")}
    assert len(data) == 2 * len({t for _, t in by})


def _tamper(path):
    nb = nbformat.read(ROOT / "solutions" / f"{STEM}.ipynb", as_version=4)
    cells = []
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "answer-01_causal_attention":  # hangs when the check calls it
            c.source = c.source.replace("### BEGIN SOLUTION", "while True:\n        pass")
        elif gid == "check-01_layer_norm":  # deleted check cell: restored, still graded
            continue
        elif gid == "answer-01_cross_entropy":  # kills the kernel
            c.source = "import os\nos._exit(3)\n" + c.source
        elif gid == "answer-01_adamw_step":  # deleted answer cell
            continue
        elif gid == "check-01_count_params":  # a fake verdict instead of the check
            c.source = 'print("✔ 01.count_params  2/2")'
        elif gid == "answer-01_count_params":
            c.source = c.source.replace("C = n_embd", "C = n_embd\n    raise ValueError('oops')")
        cells.append(c)
    cells.insert(2, nbformat.v4.new_code_cell("helper = 41 + 1  # a cell the learner added"))
    nb.cells = cells
    nb.metadata.pop("minillm", None)  # matched by file name instead
    nbformat.write(nb, path)


def test_tampered_submission_costs_only_the_broken_tasks(tmp_path):
    sub = tmp_path / f"{STEM}.ipynb"
    _tamper(sub)
    before = _sha(sub)
    timeout = 3
    t0 = time.perf_counter()
    rows, code = grade_paths([tmp_path], timeout=timeout, echo=lambda s: None)
    elapsed = time.perf_counter() - t0
    assert code == 0 and _sha(sub) == before
    got = {r.task: (r.status, r.points, r.max) for r in rows}
    assert got == {
        "01.causal_attention": ("timeout", 0, 3),
        "01.layer_norm": ("passed", 2, 2),
        "01.cross_entropy": ("crashed", 0, 2),
        "01.adamw_step": ("missing", 0, 3),
        "01.count_params": ("error", 0, 2),
        "01.decode_positions": ("passed", 2, 2),  # untouched: graded as usual
    }
    msgs = {r.task: r.message for r in rows}
    assert "did not finish within 3 s" in msgs["01.causal_attention"]
    assert "kernel died" in msgs["01.cross_entropy"]
    assert "check cell restored" in msgs["01.layer_norm"]
    assert "ValueError: oops" in msgs["01.count_params"] and "check cell restored" in msgs["01.count_params"]
    # three kernels (start, after the timeout, after the crash): bounded by imports, not by the loop
    assert elapsed < 120, elapsed


def _ring_all_gather_starting_with(code: str, path) -> None:
    """Lesson 10's solution with ``code`` first in ring_all_gather's body, written to ``path`` (file name decides)."""
    nb = nbformat.read(ROOT / "solutions" / "10_collectives.ipynb", as_version=4)
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == "answer-10_ring_all_gather":
            c.source = c.source.replace("### BEGIN SOLUTION", code, 1)
    nb.metadata.pop("minillm", None)
    nbformat.write(nb, path)


@pytest.mark.lesson10
def test_a_loop_reached_from_a_release_demo_cell_costs_only_the_learner_timeout(tmp_path):
    # Lesson 10's closing demo (a read-only release cell) calls the learner's ring functions.
    # With a loop in ring_all_gather, the demo must time out at --timeout like the learner's own
    # cells; only the set-up cells before the first answer get the long READONLY_TIMEOUT.
    _ring_all_gather_starting_with("while True:\n        pass", tmp_path / "10_collectives.ipynb")
    t0 = time.perf_counter()
    rows, code = grade_paths([tmp_path], timeout=5, echo=lambda s: None)
    elapsed = time.perf_counter() - t0
    got = {r.task: r.status for r in rows}
    assert got["10.ring_all_gather"] == "timeout" and got["10.ring_reduce_scatter"] == "passed"
    assert any("ran past the time limit; it was skipped" in r.message for r in rows)  # the demo cell
    assert elapsed < 150, elapsed  # a few kernel starts and 5 s timeouts, not 300 s for the demo


@pytest.mark.lesson07
def test_progress_never_tracebacks_on_a_damaged_notebook_or_an_unhashable_grade_id(tmp_path):
    # issue 12: an unhashable grade_id crashed `minillm progress`; a damaged notebook bearing a
    # release's name counted 0/0. Now: a table, the damaged notebook 0 of its release's points.
    from minillm.course.checks import tasks
    from minillm.course.workspace import progress

    nb = nbformat.read(ROOT / "solutions" / "07_roofline.ipynb", as_version=4)
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == "answer-07_gemm_intensity":
            c.metadata["nbgrader"]["grade_id"] = ["answer-07_gemm_intensity"]  # matched by cell id instead
    work = tmp_path / "ws"
    work.mkdir()
    (work / "07_roofline.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    (work / "01_transformer.ipynb").write_text('{"cells": [{"cell_type": "code", ', encoding="utf-8")
    out: list[str] = []
    rows = progress(work, root=ROOT, echo=out.append)
    by = {r.task: r for r in rows}
    assert all(by[t.id].status == "passed" for t in tasks("07"))
    assert all((by[t.id].points, by[t.id].max, by[t.id].status) == (0, t.points, "error") for t in tasks("01"))
    total = sum(t.points for t in tasks("07")) + sum(t.points for t in tasks("01"))
    assert out[0].splitlines()[-1].startswith(f"total: {sum(t.points for t in tasks('07'))}/{total} points")


@pytest.mark.lesson07
def test_the_file_name_decides_the_release_and_contrary_metadata_is_flagged(tmp_path):
    nb = nbformat.read(ROOT / "solutions" / "07_roofline.ipynb", as_version=4)
    nb.metadata["minillm"] = {"exercise": "10_collectives"}  # claims to answer another lesson
    sub = tmp_path / "07_roofline.ipynb"
    nbformat.write(nb, sub)
    rows, _ = grade_paths([sub], echo=lambda s: None)
    assert rows and all(r.task.startswith("07.") for r in rows)  # graded as its file name says
    assert all(r.status == "passed" for r in rows)
    assert "its metadata names '10_collectives', its file name '07_roofline'" in rows[0].message


def test_gradebook_has_one_row_per_student_and_a_column_per_lesson(tmp_path):
    import csv

    from minillm.course.grade import TaskGrade, _write_atomically, gradebook

    rows = [
        TaskGrade("class/ann/07_roofline.ipynb", "07.gemm_intensity", 2, 2, "passed"),
        TaskGrade("class/ann/07_roofline.ipynb", "07.attainable_flops", 0, 3, "failed"),
        TaskGrade("class/ann/13_pipeline_parallel.ipynb", "13.bubble_fraction", 2, 2, "passed"),
        TaskGrade("class/bo/07_roofline.ipynb", "07.gemm_intensity", 2, 2, "passed"),
        TaskGrade("class/bo/07_roofline.ipynb", "07.attainable_flops", 3, 3, "passed"),
        TaskGrade("class/bo/13_pipeline_parallel.ipynb", "*", 0, 0, "error", "unreadable"),
    ]
    header, table = gradebook(rows)
    assert header == ["student", "lesson 07", "lesson 13", "total"]
    assert table == [["(max)", 5, 2, 7], ["ann", 2, 2, 4], ["bo", 5, 0, 5]]
    out = tmp_path / "book.csv"
    _write_atomically(out, "a,b\n1,2\n")
    assert list(csv.reader(out.open())) == [["a", "b"], ["1", "2"]] and not list(tmp_path.glob(".*tmp"))


@pytest.mark.lesson07
def test_grading_a_class_folder_writes_the_gradebook(tmp_path):
    import csv
    import shutil

    student = tmp_path / "class" / "ann"
    student.mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / "07_roofline.ipynb", student / "07_roofline.ipynb")
    out = tmp_path / "book.csv"
    rows, code = grade_paths([tmp_path / "class"], csv_out=out, echo=lambda s: None)
    total = sum(r.max for r in rows)
    assert code == 0 and list(csv.reader(out.open())) == [
        ["student", "lesson 07", "total"], ["(max)", str(total), str(total)], ["ann", str(total), str(total)]]


@pytest.mark.lesson10
def test_the_lesson_10_solution_scores_full_marks_through_the_grader(tmp_path):
    # Rank code: the whole simulated run happens in the kernel and comes back as plain data.
    rows, code = grade_paths([ROOT / "solutions" / "10_collectives.ipynb"], echo=lambda s: None)
    assert code == 0 and rows and all((r.status, r.points) == ("passed", r.max) for r in rows), rows


@pytest.mark.lesson10
def test_a_rank_stuck_in_a_c_call_does_not_stall_the_next_check(tmp_path):
    _ring_all_gather_starting_with("import time\n    if comm.rank == 1:\n        time.sleep(40)", tmp_path / "10_collectives.ipynb")
    t0 = time.perf_counter()
    rows, code = grade_paths([tmp_path], timeout=30, echo=lambda s: None)
    got = {r.task: r.status for r in rows}
    assert got["10.ring_all_gather"] in ("failed", "timeout") and got["10.ring_reduce_scatter"] == "passed", got
    assert got["10.tree_all_reduce"] == "passed" and got["10.ring_time"] == "passed", got
    assert time.perf_counter() - t0 < 120


def test_exit_an_added_crash_and_a_huge_print_are_blamed_on_their_own_tasks(tmp_path):
    # issue 12: exit() in one answer cell cost the *next* task; the note on an added cell that
    # crashed went to an unrelated task; a 100 MB print had no cap.
    nb = nbformat.read(ROOT / "solutions" / f"{STEM}.ipynb", as_version=4)
    at = None
    for i, c in enumerate(nb.cells):
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "answer-01_layer_norm":
            c.source += "\nexit()\n"
        elif gid == "answer-01_adamw_step":
            c.source += "\nprint('x' * 20_000_000)\n"
        elif gid == "answer-01_count_params":
            at = i + 1
    nb.cells.insert(at, nbformat.v4.new_code_cell("import os\nos._exit(1)  # added after count_params"))
    nbformat.write(nb, tmp_path / f"{STEM}.ipynb")
    rows, code = grade_paths([tmp_path], timeout=30, echo=lambda s: None)
    got = {r.task: (r.status, r.points) for r in rows}
    msgs = {r.task: r.message for r in rows}
    assert got["01.layer_norm"] == ("crashed", 0) and "your answer cell" in msgs["01.layer_norm"]
    assert got["01.cross_entropy"] == ("passed", 2), got  # the next task is not blamed
    assert got["01.adamw_step"] == ("passed", 3) and "printed more than" in msgs["01.adamw_step"]
    assert "crashed the kernel" in msgs["01.count_params"], msgs  # the note sits by its own task
    assert not any("crashed the kernel" in m for t, m in msgs.items() if t != "01.count_params")
    assert got["01.decode_positions"] == ("passed", 2)


def test_a_failure_on_one_set_of_inputs_counts(tmp_path):
    # Tolerances are derived from float32 rounding (tests/course/test_grader_lookup.py runs every
    # solution under many salts), so a failure is not retried: an answer that is wrong on one set
    # of fresh inputs fails, however right it is on the next.
    from minillm.course.grade import SALTED_TRIES

    nb = nbformat.read(ROOT / "solutions" / f"{STEM}.ipynb", as_version=4)
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == "answer-01_count_params":
            c.source = "_calls = []\n" + c.source.replace(
                "### BEGIN SOLUTION", "_calls.append(1)\n    if len(_calls) == 1:\n        return -1", 1)
    nbformat.write(nb, tmp_path / f"{STEM}.ipynb")
    rows, _ = grade_paths([tmp_path], echo=lambda s: None)
    assert SALTED_TRIES == 1
    assert {r.task: r.status for r in rows}["01.count_params"] == "failed"
