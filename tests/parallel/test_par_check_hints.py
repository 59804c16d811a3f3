"""The verdicts of lessons 10 to 13's checks name the mistake (issue 11, and the review of lessons 12-13).

``tests/course/test_course_mutants.py`` proves that every mutant scores 0; here the
mutants listed in a lesson's ``HINTS`` must also get the verdict that names their
mistake (a substring of the message), so a correct function is never blamed for an
earlier task's bug and a generic hint never stands in for a specific one.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from minillm.course.checks import run_check

MUTANTS = Path(__file__).resolve().parents[1] / "course" / "mutants"


def _load(lesson: str):
    spec = importlib.util.spec_from_file_location(f"_hint_mutants_{lesson}", MUTANTS / f"lesson{lesson}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cases(lesson: str):
    m = _load(lesson)
    by_name = {fn.__name__: (task, fn) for task, fns in m.MUTANTS.items() for fn in fns}
    assert set(m.HINTS) <= set(by_name), set(m.HINTS) - set(by_name)
    return [pytest.param(*by_name[name], text, marks=getattr(pytest.mark, f"lesson{lesson}"), id=name)
            for name, text in m.HINTS.items()]


@pytest.mark.parametrize("task, mutant, text", _cases("10") + _cases("11") + _cases("12") + _cases("13"))
def test_mutant_gets_the_hint_that_names_its_mistake(task, mutant, text):
    res = run_check(task, mutant)
    assert res.points == 0, res.line
    assert text in res.message, res.line
    assert "…" not in res.message, res.line  # verdicts are never cut off mid-word
