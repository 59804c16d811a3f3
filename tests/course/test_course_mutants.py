"""Mutation tests of the checks: plausible-but-wrong implementations must score 0.

Each ``tests/course/mutants/lessonNN.py`` maps task ids to wrong functions; every
lesson needs at least three, and every mutant must fail its check (status failed or
error, 0 points) with a message, never crash the runner.
"""

from __future__ import annotations

import pytest

from _course_helpers import load_mutants
from minillm.course.checks import run_check, tasks

pytestmark = pytest.mark.foundation

MUTANTS = load_mutants()


def _params():
    return [
        pytest.param(task, fn, marks=getattr(pytest.mark, f"lesson{lesson}"), id=f"{task}-{fn.__name__}")
        for lesson, by_task in sorted(MUTANTS.items())
        for task, fns in sorted(by_task.items())
        for fn in fns
    ]


@pytest.mark.parametrize("task, mutant", _params())
def test_mutant_scores_zero(task, mutant):
    res = run_check(task, mutant)
    assert res.points == 0 and res.status in ("failed", "error"), f"{mutant.__name__} ({mutant.__doc__}): {res.line}"
    assert res.message and "check could not use" not in res.message, res.line


@pytest.mark.parametrize(
    "lesson", [pytest.param(n, marks=getattr(pytest.mark, f"lesson{n}")) for n in sorted(MUTANTS)]
)
def test_each_lesson_has_three_mutants_and_known_tasks(lesson):
    by_task = MUTANTS[lesson]
    assert sum(len(v) for v in by_task.values()) >= 3
    known = {t.id for t in tasks(lesson)}
    assert set(by_task) <= known, set(by_task) - known
