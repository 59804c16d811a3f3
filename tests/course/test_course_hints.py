"""Every check names the mistake: each mutant listed in its lesson's ``HINTS`` gets the hint written for it.

``test_course_mutants.py`` proves that every mutant scores 0. Here each mutant named in
``tests/course/mutants/lessonNN.py``'s ``HINTS`` must also get a verdict containing the phrase
that names its mistake, so that a generic hint never stands in for a specific one, a coincidence
on one case never blames the wrong mistake, and a correct function is never blamed for an
earlier task's bug (issue 11, and the learners' reviews of every lesson). Verdicts are never cut
off mid-word.
"""

from __future__ import annotations

import math

import pytest

from _course_helpers import load_mutant_modules
from minillm.course.checks import run_check

MODULES = load_mutant_modules()
HINTED = {lesson: m for lesson, m in MODULES.items() if getattr(m, "HINTS", None)}


def _by_name(module) -> dict:
    return {fn.__name__: (task, fn) for task, fns in module.MUTANTS.items() for fn in fns}


def _params():
    return [
        pytest.param(*_by_name(m)[name], text, marks=getattr(pytest.mark, f"lesson{lesson}"), id=f"{lesson}-{name}")
        for lesson, m in sorted(HINTED.items())
        for name, text in m.HINTS.items()
        if name in _by_name(m)  # a name missing from MUTANTS fails test_every_hinted_mutant_exists
    ]


@pytest.mark.parametrize("task, mutant, text", _params())
def test_mutant_gets_the_hint_that_names_its_mistake(task, mutant, text):
    res = run_check(task, mutant)
    assert res.points == 0 and res.status in ("failed", "error"), res.line
    assert text in res.message, res.line
    assert "…" not in res.message, res.line


@pytest.mark.parametrize("lesson", [pytest.param(n, marks=getattr(pytest.mark, f"lesson{n}")) for n in sorted(HINTED)])
def test_every_hinted_mutant_exists(lesson):
    m = HINTED[lesson]
    assert set(m.HINTS) <= set(_by_name(m)), set(m.HINTS) - set(_by_name(m))


@pytest.mark.lesson01
def test_decay_order_is_visible_in_the_check():
    # lr²·wd·|update| must clear the 1e-6 tolerance in at least one case, or the
    # after-update order passes (it did, at lr·wd = 1e-5).
    task, fn = _by_name(MODULES["01"])["adamw_decay_after"]
    assert run_check(task, fn).status == "failed"


@pytest.mark.lesson14
def test_a_coincidence_on_one_case_does_not_pick_the_hint():
    """Two sequences per micro-batch forgotten looks, on one case, like one micro-batch in flight."""
    def forgets_b(s, b, h, a, L, t, p, m):
        return min(p, m) * math.ceil(L / p) * s * h * (10 + 24 / t + 5 * a * s / (h * t))

    res = run_check("14.first_stage_activations", forgets_b)
    assert "the b in sbh" in res.message and "warm-up" not in res.message, res.line
