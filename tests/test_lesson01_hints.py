"""Lesson 01's checks name the mistake: each mutant in HINTS gets the hint written for it.

tests/course/test_course_mutants.py proves every mutant scores 0; this proves the verdict
points at the right bug (issue 11: a reversed mask got a hint about softmax stability,
and decay after the Adam step passed).
"""

import importlib.util
from pathlib import Path

import pytest

from minillm.course.checks import run_check

pytestmark = pytest.mark.lesson01

_spec = importlib.util.spec_from_file_location("lesson01_mutants", Path(__file__).parent / "course" / "mutants" / "lesson01.py")
MUTANTS = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(MUTANTS)
_BY_NAME = {fn.__name__: (task, fn) for task, fns in MUTANTS.MUTANTS.items() for fn in fns}


@pytest.mark.parametrize("name", sorted(MUTANTS.HINTS))
def test_mutant_gets_its_own_hint(name):
    task, fn = _BY_NAME[name]
    res = run_check(task, fn)
    assert res.points == 0
    assert MUTANTS.HINTS[name] in res.message, res.line


def test_decay_order_is_visible_in_the_check():
    # lr²·wd·|update| must clear the 1e-6 tolerance in at least one case, or the
    # after-update order passes (it did, at lr·wd = 1e-5).
    task, fn = _BY_NAME["adamw_decay_after"]
    assert run_check(task, fn).status == "failed"
