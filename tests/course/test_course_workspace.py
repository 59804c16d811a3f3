"""``minillm start`` never overwrites; ``course build`` writes only the course folders;
``progress`` tables; the CLI wiring. All on temporary course roots, no kernel."""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import pytest

from _course_helpers import ROOT
from minillm.course.build import build, expected_exercise, stale
from minillm.course.commands import register
from minillm.course.grade import TaskGrade, format_table
from minillm.course.workspace import MANIFEST, format_progress, progress, start

pytestmark = pytest.mark.foundation


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def course(tmp_path):
    """A copy of the course's notebooks (lesson 01) in a temporary root."""
    for folder in ("solutions", "exercises"):
        (tmp_path / folder).mkdir()
        for p in (ROOT / folder).glob("01_*.ipynb"):
            shutil.copy(p, tmp_path / folder / p.name)
    return tmp_path


def test_start_twice_never_overwrites_an_edit(course, tmp_path):
    work = tmp_path / "my-work"
    first = start(work, root=course, echo=lambda s: None)
    assert first.copied == ["01_transformer.ipynb"]
    nb = work / "01_transformer.ipynb"
    nb.write_text(nb.read_text(encoding="utf-8").replace("# YOUR CODE HERE", "# my edit"), encoding="utf-8")
    edited = nb.read_bytes()
    lines: list[str] = []
    second = start(work, root=course, echo=lines.append)
    assert second.copied == [] and second.updated_upstream == [] and nb.read_bytes() == edited
    # the edited notebook is named (issue 11), the summary says how many were edited
    assert second.edited == ["01_transformer.ipynb"]
    assert f"edited   {nb}: your work, kept as it is" in lines
    assert any("nothing copied" in line and "1 edited by you" in line for line in lines)
    # the course gains an exercise: it is copied in; the edited one is still untouched
    shutil.copy(course / "exercises" / "01_transformer.ipynb", course / "exercises" / "02_new.ipynb")
    third = start(work, root=course, echo=lambda s: None)
    assert third.copied == ["02_new.ipynb"] and nb.read_bytes() == edited and third.edited == ["01_transformer.ipynb"]
    assert start(work, root=course, echo=lambda s: None).edited == ["01_transformer.ipynb"]  # 02 untouched: not named
    # the release of 01 changes: reported, not replaced
    ex = course / "exercises" / "01_transformer.ipynb"
    ex.write_text(ex.read_text(encoding="utf-8").replace("Task 1", "Task one"), encoding="utf-8")
    lines.clear()
    fourth = start(work, root=course, echo=lines.append)
    assert fourth.updated_upstream == ["01_transformer.ipynb"] and nb.read_bytes() == edited
    assert any("newer version" in line and "was kept" in line for line in lines)
    assert (work / MANIFEST).is_file()


def test_start_refuses_a_file_as_workspace(course, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        start(tmp_path / "file", root=course, echo=lambda s: None)


def test_build_regenerates_only_course_folders(course):
    work = course / "my-work"
    start(work, root=course, echo=lambda s: None)
    (work / "01_transformer.ipynb").write_text("{}", encoding="utf-8")  # a learner's broken file
    ex = course / "exercises" / "01_transformer.ipynb"
    good = expected_exercise(course, "01_transformer")  # what generation gives, committed or not
    ex.write_text(good.replace("YOUR CODE HERE", "stale"), encoding="utf-8")
    assert "exercises/01_transformer.ipynb differs from what generation gives" in stale(course)
    assert build(course, check=True, echo=lambda s: None) == 1
    before = _digest(work)
    assert build(course, execute=False, echo=lambda s: None) == 0
    assert ex.read_text(encoding="utf-8") == good
    assert stale(course) == [] and build(course, check=True, echo=lambda s: None) == 0
    assert _digest(work) == before


def test_progress_and_grade_tables():
    rows = [
        TaskGrade("01_t.ipynb", "01.a", 3, 3, "passed"),
        TaskGrade("01_t.ipynb", "01.b", 0, 2, "failed", "output shape (2,), expected (3,)"),
        TaskGrade("01_t.ipynb", "01.c", 0, 2, "not attempted", "not attempted yet"),
        TaskGrade("01_t.ipynb", "01.d", 0, 1, "missing", "gone"),
        TaskGrade("01_t.ipynb", "01.e", 0, 1, "timeout", "too slow"),
    ]
    text = format_progress(rows)
    assert [line.split()[2] for line in text.splitlines()[1:6]] == ["passed", "failing", "not", "not", "failing"]
    assert "01_t.ipynb: output shape (2,), expected (3,)" in text
    assert text.splitlines()[-1] == "total: 3/9 points, 1/5 tasks passed"
    table = format_table(rows)
    assert table.splitlines()[0] == "01_t.ipynb  3/9" and "timeout" in table


def test_progress_grades_workspace_notebooks_read_only(course, tmp_path):
    work = tmp_path / "ws"
    start(work, root=course, echo=lambda s: None)
    (work / "scratch.ipynb").write_text((course / "exercises" / "01_transformer.ipynb").read_text(), encoding="utf-8")
    seen = []

    def fake_grade(path, root, timeout, label):
        seen.append(Path(path).name)
        from minillm.course.grade import GradeError

        if Path(path).name == "scratch.ipynb":
            raise GradeError("not an exercise")
        return [TaskGrade(label, "01.x", 1, 1, "passed")]

    before = _digest(work)
    out: list[str] = []
    rows = progress(work, root=course, echo=out.append, grade=fake_grade)
    assert sorted(seen) == ["01_transformer.ipynb", "scratch.ipynb"] and len(rows) == 1
    assert "total: 1/1 points" in out[0] and _digest(work) == before
    with pytest.raises(FileNotFoundError, match="minillm start"):
        progress(tmp_path / "nowhere", root=course, echo=out.append, grade=fake_grade)


def test_progress_never_tracebacks_when_grading_a_notebook_fails(course, tmp_path):
    work = tmp_path / "ws"
    start(work, root=course, echo=lambda s: None)

    def broken_grade(path, root, timeout, label):
        raise TypeError("unhashable type: 'list'")

    out: list[str] = []
    rows = progress(work, root=course, echo=out.append, grade=broken_grade)
    assert [(r.task, r.status) for r in rows] == [("*", "error")]
    assert "01_transformer.ipynb: could not grade it: TypeError: unhashable type: 'list'" in out[0]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser():
    p = _Parser(prog="minillm")
    register(p.add_subparsers(dest="command", parser_class=_Parser))
    return p


@pytest.mark.parametrize(
    "argv",
    [
        ["grade"],
        ["grade", "x.ipynb", "--timeout", "-3"],
        ["grade", "x.ipynb", "--timeout", "soon"],
        ["grade", "x.ipynb", "--bogus"],
        ["course"],
        ["course", "build", "lesson1"],
        ["start", "a", "b"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err


def test_build_flags_reach_build(monkeypatch):
    seen = {}
    monkeypatch.setattr("minillm.course.build.build", lambda **kw: seen.update(kw) or 0)
    a = _parser().parse_args(["course", "build", "07", "--no-execute"])
    assert a.handler(a) == 0 and seen == {"only": "07", "check": False, "execute": False}
    a = _parser().parse_args(["course", "build", "--check"])
    assert a.handler(a) == 0 and seen == {"only": None, "check": True, "execute": True}


def test_handlers_return_exit_codes(tmp_path, capsys, monkeypatch):
    p = _parser()
    a = p.parse_args(["grade", str(tmp_path / "missing.ipynb")])
    assert a.handler(a) == 2 and "no such file" in capsys.readouterr().err
    a = p.parse_args(["course", "build", "--check"])
    assert a.handler(a) == 0
    a = p.parse_args(["start", str(tmp_path / "w")])
    assert a.handler(a) == 0 and (tmp_path / "w" / "01_transformer.ipynb").is_file()
    a = p.parse_args(["progress", str(tmp_path / "nope")])
    assert a.handler(a) == 2


def test_save_widget_state_merges_and_respects_the_users_choice(tmp_path):
    import json

    from minillm.course.workspace import WIDGET_PLUGIN, save_widget_state

    path = save_widget_state(tmp_path)
    assert json.loads(path.read_text())[WIDGET_PLUGIN] == {"saveState": True}
    path.write_text(json.dumps({"other": {"x": 1}, WIDGET_PLUGIN: {"saveState": False}}))
    save_widget_state(tmp_path)
    assert json.loads(path.read_text()) == {"other": {"x": 1}, WIDGET_PLUGIN: {"saveState": False}}  # kept
    path.write_text("not json")
    assert save_widget_state(tmp_path) is None and path.read_text() == "not json"  # a damaged file is left alone
