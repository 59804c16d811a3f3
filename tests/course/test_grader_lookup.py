"""No graded check can be passed from a lookup table: its inputs change with the grader's secret salt.

``minillm grade`` mixes every seed a check sets with a secret per-run salt
(:func:`~minillm.course.checks.learner.salted_seeds`). A check whose inputs are a fixed list
(closed-form cases, hand-picked shapes) would give the learner's function the same inputs on
every run, and a table recorded from them would pass. Here, for every registered task, the
honest solution is wrapped to record a fingerprint of every call's inputs, the check is run by
the grader's own in-process runner (:func:`~minillm.course.checks.grade_check`) under two
salts, and the recorded inputs must differ: some call must see inputs that no call saw under
the other salt.
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import pytest
import torch

from _course_helpers import lesson_of
from minillm.course.checks import grade_check, tasks
from minillm.course.checks.learner import _Learner

ROOT = Path(__file__).resolve().parents[2]
SALTS = (1, 2**61 + 12345)
#: Tasks whose function takes no input at all, so there is nothing to vary: the answer to a
#: multiple-choice question is the same in every run by design (it is a conclusion, not a computation).
NO_INPUTS = {"06.order_answer"}


def fingerprint(x, depth: int = 0):
    """A hashable summary of an input: tensors by dtype, shape and bytes; numbers and strings by
    value; containers and simple objects (a communicator, a config) by their contents."""
    if depth > 6:
        return type(x).__name__
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        return ("tensor", str(t.dtype), tuple(t.shape), hashlib.sha1(t.numpy().tobytes() if t.dtype != torch.bfloat16
                                                                     else t.float().numpy().tobytes()).hexdigest())
    if isinstance(x, float):
        return ("float", "nan" if math.isnan(x) else repr(x))
    if isinstance(x, (bool, int, str, bytes, type(None))):
        return (type(x).__name__, x)
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(fingerprint(v, depth + 1) for v in x))
    if isinstance(x, dict):
        return ("dict", tuple(sorted((str(k), fingerprint(v, depth + 1)) for k, v in x.items())))
    if isinstance(x, torch.nn.Module):
        return ("module", type(x).__name__, tuple((k, fingerprint(v, depth + 1)) for k, v in x.state_dict().items()))
    if callable(x):
        return ("callable", getattr(x, "__qualname__", type(x).__name__))
    state = getattr(x, "__dict__", None)
    if isinstance(state, dict):
        return (type(x).__name__, tuple(sorted((k, fingerprint(v, depth + 1)) for k, v in state.items()
                                               if not k.startswith("_"))))
    return (type(x).__name__,)


def recorded_inputs(task_id: str, fn, salt: int) -> list:
    """Fingerprints of every call the check makes to ``fn`` under ``salt``, in order."""
    seen: list = []

    @functools.wraps(fn)
    def recorder(*args, **kwargs):
        seen.append(fingerprint((args, kwargs)))
        return fn(*args, **kwargs)

    res = grade_check(task_id, _Learner(recorder, {}), salt)
    assert res.passed, (salt, res.line)
    assert seen, f"{task_id}: the check never called the function"
    return seen


def _lessons():
    stems = sorted(p.stem for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    return [pytest.param(s, marks=getattr(pytest.mark, f"lesson{lesson_of(s)}"), id=s) for s in stems]


@pytest.mark.parametrize("stem", _lessons())
def test_every_check_draws_fresh_inputs_under_each_salt(stem):
    from minillm.course.notebooks import read, task_functions

    fns = task_functions(read(ROOT / "solutions" / f"{stem}.ipynb"), f"solutions/{stem}")
    assert {t.id for t in tasks(lesson_of(stem))} <= set(fns), "every registered task has a check cell"
    fixed = []
    for task_id, fn in sorted(fns.items()):
        a, b = (recorded_inputs(task_id, fn, s) for s in SALTS)
        if task_id in NO_INPUTS:
            assert set(a) == {fingerprint(((), {}))}, f"{task_id} now takes inputs: draw them from the salted seed"
            continue
        # A table answers a call whose inputs it has seen: under the second salt, some call must be new.
        if set(b) <= set(a):
            fixed.append(task_id)
    assert not fixed, f"these checks give the same inputs whatever the salt (a lookup table passes): {fixed}"


@pytest.mark.parametrize("stem", _lessons())
def test_a_table_of_the_notebook_s_answers_fails_under_a_salt(stem):
    # The attack itself: the learner records every (inputs -> output) pair their notebook's check
    # asks for (no salt, as in their own check()), then submits a function that only looks answers
    # up. It passes the notebook's check where the function is pure, and must fail the grader's.
    import copy

    from minillm.course.notebooks import read, task_functions

    fns = task_functions(read(ROOT / "solutions" / f"{stem}.ipynb"), f"solutions/{stem}")
    fooled, caught = [], []
    for task_id, fn in sorted(fns.items()):
        if task_id in NO_INPUTS:
            continue
        table: dict = {}

        def record(*args, _fn=fn, _table=table, **kwargs):
            key = fingerprint((args, kwargs))
            out = _fn(*args, **kwargs)
            _table[key] = copy.deepcopy(out)
            return out

        def lookup(*args, _table=table, **kwargs):
            return copy.deepcopy(_table.get(fingerprint((args, kwargs))))

        assert grade_check(task_id, _Learner(record, {}), None).passed
        if grade_check(task_id, _Learner(lookup, {}), None).passed:
            fooled.append(task_id)
        res = grade_check(task_id, _Learner(lookup, {}), SALTS[0])
        if not res.passed and res.points == 0:
            caught.append(task_id)
    assert set(fooled) <= set(caught), f"a table of the notebook's answers passes the grader: {sorted(set(fooled) - set(caught))}"
    assert len(caught) == len(fns) - len(NO_INPUTS & set(fns)), sorted(set(fns) - set(caught) - NO_INPUTS)
