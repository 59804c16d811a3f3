"""The verdicts of lessons 14 and 15's checks name the mistake, not a coincidence.

``tests/course/test_course_mutants.py`` proves that every mutant scores 0; here each mutant
listed in ``tests/course/mutants/lessonNN.py``'s ``HINTS`` must get the hint written for its
mistake (a substring of the verdict). One failing case can match several mistakes (two
sequences per micro-batch and two micro-batches in flight give the same bytes), so the checks
name the mistake that reproduces the learner's answer on every case.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from minillm.course.checks import run_check

MUTANTS = Path(__file__).resolve().parent / "course" / "mutants"


def _cases(lesson: str):
    spec = importlib.util.spec_from_file_location(f"_hint_mutants_{lesson}", MUTANTS / f"lesson{lesson}.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    by_name = {fn.__name__: (task, fn) for task, fns in m.MUTANTS.items() for fn in fns}
    assert set(m.HINTS) <= set(by_name), set(m.HINTS) - set(by_name)
    return [pytest.param(*by_name[name], text, marks=getattr(pytest.mark, f"lesson{lesson}"), id=name)
            for name, text in m.HINTS.items()]


@pytest.mark.parametrize("task, mutant, text", _cases("14") + _cases("15"))
def test_mutant_gets_the_hint_that_names_its_mistake(task, mutant, text):
    res = run_check(task, mutant)
    assert res.points == 0, res.line
    assert text in res.message, res.line
    assert "…" not in res.line, res.line  # verdicts are never cut off mid-sentence


@pytest.mark.lesson14
def test_a_coincidence_on_one_case_does_not_pick_the_hint():
    """Two sequences per micro-batch forgotten looks, on one case, like one micro-batch in flight."""
    def forgets_b(s, b, h, a, L, t, p, m):
        return min(p, m) * math.ceil(L / p) * s * h * (10 + 24 / t + 5 * a * s / (h * t))

    res = run_check("14.first_stage_activations", forgets_b)
    assert "the b in sbh" in res.message and "warm-up" not in res.message, res.line
