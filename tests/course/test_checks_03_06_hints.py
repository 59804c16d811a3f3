"""The verdicts of lessons 03 and 06's checks name the mistake (the learner's review of both lessons).

``tests/course/test_course_mutants.py`` proves that every mutant scores 0; here each mutant
listed in a lesson's ``HINTS`` must also get the verdict that names its mistake (a substring of
the message), so that a generic hint never stands in for a specific one and a coincidence never
blames the wrong mistake.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from minillm.course.checks import run_check

MUTANTS = Path(__file__).resolve().parent / "mutants"


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


@pytest.mark.parametrize("task, mutant, text", _cases("03") + _cases("06"))
def test_mutant_gets_the_hint_that_names_its_mistake(task, mutant, text):
    res = run_check(task, mutant)
    assert res.points == 0 and res.status == "failed", res.line
    assert text in res.message, res.line
