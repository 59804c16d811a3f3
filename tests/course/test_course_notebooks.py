"""Exercise generation and the grader's cell merge, on small synthetic notebooks (no kernel)."""

from __future__ import annotations

import copy

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from minillm.course.grade import merge
from minillm.course.notebooks import (
    NotebookError,
    annotate,
    dumps,
    make_exercise,
    release_cells,
    strip_solution,
)

pytestmark = pytest.mark.foundation

POINTS = {"99.double": 2, "99.triple": 1}.__getitem__


def _solution():
    return new_notebook(
        cells=[
            new_markdown_cell("# Title", id="title"),
            new_code_cell("import math", id="setup"),
            new_code_cell(
                "def double(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    y = 2 * x\n    return y\n    ### END SOLUTION",
                id="a1",
            ),
            new_code_cell('check("99.double", double)', id="c1"),
            new_code_cell("def helper():\n    ### BEGIN SOLUTION\n    return 3\n    ### END SOLUTION", id="a2a"),
            new_code_cell("### BEGIN SOLUTION\ntriple = lambda x: helper() * x\n### END SOLUTION", id="a2b"),
            new_code_cell("check('99.triple', triple)", id="c2"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}, "custom": {"x": 1}},
    )


def test_strip_solution_keeps_indentation_and_code_around():
    src = "def f(x):\n    a = 1\n    ### BEGIN SOLUTION\n    return a + x\n    ### END SOLUTION\n\nprint(f)"
    assert strip_solution(src) == "def f(x):\n    a = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(f)"
    two = "### BEGIN SOLUTION\na = 1\n### END SOLUTION\nif True:\n        ### BEGIN SOLUTION\n        b = 2\n        ### END SOLUTION"
    assert strip_solution(two).split("\n") == [
        "# YOUR CODE HERE",
        "raise NotImplementedError()",
        "if True:",
        "        # YOUR CODE HERE",
        "        raise NotImplementedError()",
    ]


@pytest.mark.parametrize(
    "src, word",
    [
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n### END SOLUTION", "without"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "nested"),
    ],
)
def test_strip_solution_rejects_broken_markers(src, word):
    with pytest.raises(NotebookError, match=word):
        strip_solution(src)


def test_exercise_metadata_follows_nbgrader():
    ex = make_exercise(_solution(), "99_toy", POINTS)
    meta = {c.id: c.metadata for c in ex.cells}
    nbg = {k: m["nbgrader"] for k, m in meta.items()}
    assert nbg["a1"] == {
        "grade": False, "grade_id": "answer-99_double", "locked": False,
        "schema_version": 3, "solution": True, "task": False,
    }
    assert nbg["c1"] == {
        "grade": True, "grade_id": "check-99_double", "locked": True, "points": 2,
        "schema_version": 3, "solution": False, "task": False,
    }
    assert meta["c1"]["tags"] == ["nbval-check-output"] and meta["c1"]["editable"] is False
    # nbgrader's LockCells: answers may be edited but not deleted; every other cell neither
    locks = {k: (m.get("editable"), m.get("deletable")) for k, m in meta.items()}
    assert locks == {
        "title": (False, False), "setup": (False, False), "a1": (None, False), "c1": (False, False),
        "a2a": (None, False), "a2b": (None, False), "c2": (False, False),
    }
    # two answer cells before one check both belong to its task
    assert (nbg["a2a"]["grade_id"], nbg["a2b"]["grade_id"]) == ("answer-99_triple", "answer-99_triple-2")
    assert nbg["setup"] == {
        "grade": False, "grade_id": "cell-setup", "locked": True, "schema_version": 3, "solution": False, "task": False,
    }
    assert ex.metadata == {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "minillm": {"exercise": "99_toy"},
    }
    assert [r[:2] for r in release_cells(ex)] == [
        ("readonly", None), ("readonly", None), ("answer", "99.double"), ("check", "99.double"),
        ("answer", "99.triple"), ("answer", "99.triple"), ("check", "99.triple"),
    ]


def test_exercise_is_clean_and_deterministic():
    sol = _solution()
    sol.cells[2].outputs = [nbformat.v4.new_output("stream", text="hi")]
    sol.cells[2].execution_count = 7
    sol.cells[2].metadata["scrolled"] = True
    a, b = make_exercise(sol, "99_toy", POINTS), make_exercise(copy.deepcopy(sol), "99_toy", POINTS)
    assert dumps(a) == dumps(b)
    for c in a.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None
            assert "BEGIN SOLUTION" not in c.source and "return y" not in c.source
        assert set(c.metadata) <= {"nbgrader", "tags", "editable", "deletable"}
    assert "raise NotImplementedError()" in a.cells[2].source
    nbformat.validate(a)


@pytest.mark.parametrize(
    "mutate, word",
    [
        (lambda nb: nb.cells.pop(), "no check cell after it"),
        (lambda nb: nb.cells.insert(4, new_code_cell('check("99.double", double)')), "checked twice"),
        (lambda nb: setattr(nb.cells[3], "source", 'check("99.double", double)\nprint(1)'), "exactly one line"),
        (lambda nb: nb.cells.insert(1, new_code_cell('check("99.triple", triple)')), "no answer cell before it"),
    ],
)
def test_authoring_mistakes_are_reported(mutate, word):
    nb = _solution()
    mutate(nb)
    with pytest.raises(NotebookError, match=word):
        annotate(nb, POINTS)


# --------------------------------------------------------------------------- the grader's merge


def _roles(run):
    return [(r.role, r.task, r.cell.source.split("\n")[0][:25], r.missing, r.restored) for r in run]


def test_merge_restores_locked_cells_and_keeps_answers():
    release = make_exercise(_solution(), "99_toy", POINTS)
    sub = copy.deepcopy(release)
    sub.cells[2].source = "def double(x):\n    return x + x"
    sub.cells[1].source = "import os; os._exit(1)"  # edited read-only cell: restored
    del sub.cells[3]  # deleted check cell: restored
    sub.cells[-1].source = 'print("✔ 99.triple  1/1")'  # edited check cell: restored
    sub.cells.insert(2, new_code_cell("scratch = 1"))  # added by the learner, after setup
    run = merge(release, sub)
    assert _roles(run) == [
        ("readonly", None, "# Title", False, False),
        ("readonly", None, "import math", False, False),
        ("extra", None, "scratch = 1", False, False),
        ("answer", "99.double", "def double(x):", False, False),
        ("check", "99.double", 'check("99.double", double', False, True),
        ("answer", "99.triple", "def helper():", False, False),
        ("answer", "99.triple", "# YOUR CODE HERE", False, False),
        ("check", "99.triple", "check('99.triple', triple", False, True),
    ]
    assert run[3].cell.source == "def double(x):\n    return x + x"


def test_merge_missing_answer_runs_the_stub_and_ids_match_without_metadata():
    release = make_exercise(_solution(), "99_toy", POINTS)
    sub = copy.deepcopy(release)
    del sub.cells[2]  # the answer of 99.double
    for c in sub.cells:  # a tool stripped the nbgrader metadata: cell ids still match
        c.metadata = {}
    sub.cells[3].source = "def helper():\n    return 3"
    run = merge(release, sub)
    answer = next(r for r in run if r.task == "99.double" and r.role == "answer")
    assert answer.missing and "raise NotImplementedError()" in answer.cell.source
    helper = next(r for r in run if r.role == "answer" and r.cell.source.startswith("def helper"))
    assert not helper.missing and helper.cell.source == "def helper():\n    return 3"
    # a duplicated answer cell runs as the learner's own cell, after the original
    sub2 = copy.deepcopy(release)
    sub2.cells.insert(3, copy.deepcopy(sub2.cells[2]))
    sub2.cells[3].source = "def double(x):\n    return 2 * x"
    roles = _roles(merge(release, sub2))
    assert roles[2][0] == "answer" and roles[3][:3] == ("extra", None, "def double(x):")


def test_merge_survives_damaged_cells_and_unhashable_ids():
    # issue 12: an unhashable grade_id made `minillm progress` crash with a traceback
    release = make_exercise(_solution(), "99_toy", POINTS)
    sub = copy.deepcopy(release)
    sub.cells[2].metadata["nbgrader"]["grade_id"] = ["answer-99_double"]  # a list: unhashable
    sub.cells[2]["id"] = {"not": "a string"}
    sub.cells[4].metadata = ["not", "a", "dict"]
    sub.cells[5]["source"] = None
    run = merge(release, sub)
    roles = {(r.role, r.task): r for r in run if r.role == "answer"}
    # cells matched by neither grade_id nor id: their answers count as missing (the stub runs)
    assert roles[("answer", "99.double")].missing
    assert [r.role for r in run].count("check") == 2


def test_a_damaged_notebook_named_like_a_release_scores_zero_of_its_points(tmp_path):
    # issue 12: it was graded 0/0, so a gradebook's totals went wrong; no kernel is started
    from _course_helpers import ROOT
    from minillm.course.checks import tasks
    from minillm.course.grade import GradeError, grade_notebook

    bad = tmp_path / "07_roofline.ipynb"
    bad.write_text('{"cells": [', encoding="utf-8")
    rows = grade_notebook(bad, root=ROOT)
    got = sorted((r.task, r.points, r.max, r.status) for r in rows)
    assert got == [(t.id, 0, t.points, "error") for t in tasks("07")]
    assert all("cannot read it as a notebook" in r.message for r in rows)
    other = tmp_path / "scratch.ipynb"
    other.write_text("not json", encoding="utf-8")
    with pytest.raises(GradeError, match="cannot read it as a notebook"):
        grade_notebook(other, root=ROOT)


def test_freeze_widget_views_turns_an_interactive_into_a_static_first_state():
    import nbformat

    from minillm.course.notebooks import WIDGET_VIEW, freeze_widget_views

    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
        "box": {"state": {"_dom_classes": ["widget-interact"], "children": ["IPY_MODEL_s", "IPY_MODEL_o"]}},
        "s": {"state": {"description": "bits", "value": 4, "_model_name": "IntSliderModel"}},
        "o": {"state": {"_model_name": "OutputModel", "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "error 0.1\n"}]}},
    }}}
    cell = nbformat.v4.new_code_cell("widget()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "box"}, "text/plain": "interactive(...)"})]
    nb.cells.append(cell)
    freeze_widget_views(nb)
    first, second = cell.outputs
    assert "Run the cell to make it interactive." in first.data["text/plain"] and "bits = 4" in first.data["text/plain"]
    assert second.output_type == "stream" and second.text == "error 0.1\n"


def test_a_progress_bar_is_stored_in_its_final_state_without_timings():
    # tqdm.auto in a notebook is an HBox (HTML, progress bar, HTML); its stored text/plain is the
    # "0%" it was first drawn with. The build stores where it ended instead, without the timings
    # (so a rebuild gives the same file).
    import nbformat

    from minillm.course.notebooks import WIDGET_VIEW, freeze_widget_views

    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]}},
        "l": {"model_name": "HTMLModel", "state": {"value": "compress:\u2007100%"}},
        "p": {"model_name": "FloatProgressModel", "state": {"value": 12.0, "max": 12.0}},
        "r": {"model_name": "HTMLModel", "state": {"value": "\u200712/12\u2007[00:31&lt;00:00,\u20072.6s/it]"}},
    }}}
    cell = nbformat.v4.new_code_cell("compress(...)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        WIDGET_VIEW: {"model_id": "box"}, "text/plain": "compress:   0%|          | 0/12 [00:00<?, ?it/s]"})]
    nb.cells.append(cell)
    freeze_widget_views(nb)
    assert [o.data for o in cell.outputs] == [{"text/plain": "compress: 100%|██████████| 12/12"}]
