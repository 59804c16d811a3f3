"""The check runner: verdict lines, not attempted, learner errors, references, grading output.

A toy lesson 99 is registered here, so these tests do not depend on any lesson's content.
"""

from __future__ import annotations

import json
import linecache
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.course import check
from minillm.course.checks import (
    GRADING_ENV,
    NBGRADER_ENV,
    RESULT_MIME,
    CheckFailure,
    CheckNotPassed,
    expect_close,
    get_task,
    register,
    run_check,
    shorten,
    tasks,
)

pytestmark = pytest.mark.foundation


def _reference_double(x):
    return 2 * x


@register("99.double", points=2, references=("tests_course_ref.double",))
def _check_double(fn):
    """double(x) = 2x."""
    for n in (1, 5):
        x = torch.arange(float(n))
        expect_close(fn(x), 2 * x, atol=0, rtol=0, what=f"output for n={n}", hint="multiply by two")


@register("99.shape", points=1)
def _check_shape(fn):
    """Keeps [2, 5, 16]."""
    got = fn(torch.zeros(2, 5, 16))
    if tuple(got.shape) != (2, 5, 16):
        raise CheckFailure("output shape", got=tuple(got.shape), expected=(2, 5, 16), hint="keep the last dimension")


@register("99.sqrt", points=1, references=("math.sqrt", "torch.sqrt"))
def _check_sqrt(fn):
    """Square root."""
    expect_close(fn(torch.tensor([4.0])), torch.tensor([2.0]), atol=1e-6, rtol=0)


def _learner(source: str, name: str):
    """Define a learner function in a fake cell file that linecache knows, as IPython does."""
    filename = "/tmp/ipykernel_0/learner_cell.py"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    ns: dict = {"torch": torch, "math": math}
    exec(compile(source, filename, "exec"), ns)
    return ns[name]


def test_pass_prints_one_line_and_returns_a_result(capsys):
    res = check("99.double", lambda x: x + x)
    assert capsys.readouterr().out == "✔ 99.double  2/2\n"
    assert (res.points, res.max_points, res.status, res.passed) == (2, 2, "passed", True)
    assert res.to_dict() == {"task": "99.double", "points": 2, "max_points": 2, "status": "passed", "message": ""}
    # As the value of a one-line check cell it is not displayed a second time; later it is.
    res._ipython_display_()
    assert capsys.readouterr().out == ""
    res._ipython_display_()
    assert capsys.readouterr().out == "✔ 99.double  2/2\n"


def test_failure_reads_got_expected_and_hint():
    res = run_check("99.shape", lambda x: x[..., :8])
    assert res.line == "✘ 99.shape  0/1 — output shape (2, 5, 8), expected (2, 5, 16); hint: keep the last dimension"
    res = run_check("99.double", lambda x: x * 3)
    assert res.status == "failed" and res.points == 0
    assert "output for n=5 at index (4,) is 12, expected 8" in res.message and res.message.endswith("hint: multiply by two")


def test_not_implemented_reads_not_attempted():
    stub = _learner("def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n", "f")
    res = run_check("99.double", stub)
    assert res.status == "not attempted" and res.points == 0
    assert res.line.startswith("○ 99.double  0/2 — not attempted yet")


def test_learner_exception_names_the_learners_line_not_minillm():
    bad = _learner("def f(x):\n    y = x.reshape(3, 7)\n    return y\n", "f")
    res = run_check("99.double", bad)
    assert res.status == "error"
    assert res.message.startswith("your function raised RuntimeError: shape '[3, 7]' is invalid")
    assert "(in f, line 2: `y = x.reshape(3, 7)`)" in res.message
    assert "minillm" not in res.message and "Traceback" not in res.message
    # a NotImplementedError with a message is a real error, not "not attempted"
    res = run_check("99.double", _learner("def g(x):\n    raise NotImplementedError('int4')\n", "g"))
    assert res.status == "error" and "NotImplementedError: int4" in res.message


def test_learner_prints_are_hidden_and_rng_state_is_kept(capsys):
    torch.manual_seed(123)
    before = torch.get_rng_state()

    def noisy(x):
        print("debugging...")
        torch.rand(3)
        return 2 * x

    check("99.double", noisy)
    assert capsys.readouterr().out == "✔ 99.double  2/2\n"
    assert torch.equal(torch.get_rng_state(), before)


def test_references_score_zero():
    res = run_check("99.sqrt", math.sqrt)
    assert res.points == 0 and "this is the reference math.sqrt" in res.message
    res = run_check("99.sqrt", torch.sqrt)
    assert res.points == 0 and "reference torch.sqrt" in res.message
    res = run_check("99.sqrt", lambda x: torch.sqrt(x))  # a wrapper that calls it
    assert res.points == 0 and "calls the reference torch.sqrt" in res.message
    res = run_check("99.sqrt", lambda x: x**0.5)
    assert res.passed


def test_minillm_reference_detected_by_identity_code_and_call():
    from minillm.model import causal_attention

    clone = type(causal_attention)(causal_attention.__code__, {"math": math, "softmax": None, "torch": torch})
    for fn, word in [
        (causal_attention, "this is the reference minillm.model.causal_attention"),
        (clone, "this is the reference minillm.model.causal_attention"),  # same __code__
        (lambda q, k, v: causal_attention(q, k, v), "calls the reference minillm.model.causal_attention"),
    ]:
        res = run_check("01.causal_attention", fn)
        assert res.points == 0 and word in res.message, res.line


def test_wrong_kinds_of_answers():
    assert "pass the function itself" in run_check("99.double", 3).message
    assert "is a tuple of 2, expected a torch.Tensor" in run_check("99.double", lambda x: (x, x)).message
    assert "contains NaN" in run_check("99.double", lambda x: x * float("nan")).message
    with pytest.raises(ValueError, match="unknown task '99.nope'; lesson 99 has: 99.double"):
        run_check("99.nope", abs)
    with pytest.raises(ValueError, match="must look like"):
        get_task("1.double")


def test_registration_rejects_bad_ids_and_points():
    with pytest.raises(ValueError, match="must look like"):
        register("quantize", points=1)
    with pytest.raises(ValueError, match="positive int"):
        register("99.zero", points=0)
    with pytest.raises(ValueError, match="dotted name"):
        register("99.bad_ref", points=1, references=("sqrt",))


def test_grading_mode_publishes_json(monkeypatch, capsys):
    monkeypatch.setenv(GRADING_ENV, "1")
    check("99.double", lambda x: x + x)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "✔ 99.double  2/2"
    # outside a kernel IPython's publish goes nowhere visible or the JSON is printed
    if len(lines) > 1:
        assert json.loads(lines[1])[RESULT_MIME]["points"] == 2


@pytest.mark.parametrize("run", ["autograde", "validate"])
def test_under_nbgrader_a_task_that_did_not_pass_raises_after_its_verdict(monkeypatch, capsys, run):
    # nbgrader scores a test cell 0 only when its output holds an error (issue 17).
    monkeypatch.setenv(NBGRADER_ENV, run)
    monkeypatch.delenv(GRADING_ENV, raising=False)
    stub = _learner("def f(x):\n    raise NotImplementedError()\n", "f")
    for fn, line in [
        (stub, "○ 99.double  0/2 — not attempted yet"),
        (lambda x: x * 3, "✘ 99.double  0/2 — output for n=5"),
    ]:
        with pytest.raises(CheckNotPassed) as e:
            check("99.double", fn)
        assert str(e.value).startswith(line) and isinstance(e.value, AssertionError)
        assert capsys.readouterr().out.startswith(line)  # the verdict is printed first
    res = check("99.double", lambda x: x + x)  # a pass does not raise
    assert res.passed and capsys.readouterr().out == "✔ 99.double  2/2\n"


@pytest.mark.parametrize("env", [{}, {NBGRADER_ENV: ""}, {NBGRADER_ENV: "autograde", GRADING_ENV: "1"}])
def test_jupyter_and_minillm_grade_never_raise(monkeypatch, capsys, env):
    # A learner in Jupyter (no NBGRADER_EXECUTION) and `minillm grade` (MINILLM_GRADING, which
    # reads the published result) keep a non-raising verdict.
    for var in (NBGRADER_ENV, GRADING_ENV):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    res = check("99.double", lambda x: x * 3)
    assert res.status == "failed" and capsys.readouterr().out.startswith("✘ 99.double  0/2")


def test_shorten_cuts_at_a_sentence_end_or_not_at_all():
    # issue 11: a verdict ended "recv into a tensor of the sender's sh…"
    msg = (
        "rank 1 posted recv from rank 0 with shape (4,), but rank 0 sent shape (2, 2). "
        "recv into a tensor of the sender's shape and dtype; check the chunk sizes of every step of the ring."
    )
    assert shorten(msg, 160) == "rank 1 posted recv from rank 0 with shape (4,), but rank 0 sent shape (2, 2). …"
    no_end = "x" * 50 + " and a long clause without any sentence end " * 4
    assert shorten(no_end, 60) == " ".join(no_end.split())  # kept whole, not cut mid-word
    huge = "tensor([" + ", ".join(["0.1234"] * 2000) + "])"
    short = shorten(huge, 160, cap=1000)
    assert len(short) < 1100 and short.endswith("more characters)") and huge.startswith(short.split(" … ")[0])
    assert short.split(" … ")[0].endswith("0.1234,")  # at a space: the last number is whole
    assert shorten("a  b\n c") == "a b c"


@given(st.lists(st.sampled_from(["word", "two.", "x;", "a?", "tensor(2,", "sh"]), max_size=80), st.integers(5, 200))
@settings(deadline=None, max_examples=200)
def test_shorten_never_cuts_a_word(words, n):
    text = " ".join(words)
    out = shorten(text, n, cap=4 * n)
    kept = out.replace(" …", "").split(" (")[0].split()
    # every word shown is a whole word of the text, in order, from its start
    assert kept == text.split()[: len(kept)]


def test_every_registered_task_is_well_formed():
    all_tasks = tasks()
    assert any(t.id.startswith("01.") for t in all_tasks)
    for t in all_tasks:
        assert t.points > 0 and t.doc, t.id


def test_learner_prints_are_hidden_per_thread_when_ranks_call_at_once(monkeypatch):
    # Simulated ranks are threads that call the learner's function concurrently. Each one's
    # prints are dropped, the main thread's are not, and sys.stdout is the original afterwards.
    import io
    import threading

    from minillm.course.checks import _Learner

    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    start = threading.Barrier(5)

    def chatty(i):
        start.wait()
        for k in range(200):
            print(f"rank {i} line {k}")
        return i

    learner = _Learner(chatty, {})
    results = [None] * 4
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, learner(i))) for i in range(4)]
    for t in threads:
        t.start()
    start.wait()
    print("main thread output")
    for t in threads:
        t.join()
    import sys

    assert results == [0, 1, 2, 3]
    assert sys.stdout is out
    assert out.getvalue() == "main thread output\n"
