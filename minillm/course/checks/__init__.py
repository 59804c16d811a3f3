"""Graded checks: the task registry and the runner behind ``check(task, fn)``.

A learner's check cell is one line, ``check("01.causal_attention", causal_attention)``.
The runner looks the task up, calls the registered check with the learner's
function, prints one verdict line and returns a :class:`CheckResult`::

    ✔ 01.causal_attention  3/3
    ✘ 01.causal_attention  0/3 — output shape (2, 5, 8), expected (2, 5, 16); hint: ...
    ○ 01.causal_attention  0/3 — not attempted yet: replace `raise NotImplementedError()` with your code

Adding the checks of a new lesson NN
------------------------------------
1. Create ``minillm/course/checks/lessonNN.py``. It is imported lazily the first
   time a task ``"NN.<name>"`` is checked, so it may import whatever the lesson needs.
2. Write one function per task and decorate it with :func:`register`::

       from minillm.course.checks import CheckFailure, expect_close, register

       @register("04.quantize", points=3, references=("minillm.compress.quantize.quantize",))
       def quantize(fn):
           for x in cases():                        # several seeded random and edge cases
               expect_close(fn(x), reference(x), atol=0, rtol=0, what="codes")
           if bad_property:
               raise CheckFailure("scale", expected="> 0", got=scale, hint="divide absmax by 127")

   ``fn`` is the learner's callable, wrapped: a ``NotImplementedError`` becomes
   "not attempted yet", any other exception becomes a short message that names
   the learner's own line, and a call (direct or nested) to one of the
   ``references`` gives 0 points with a message saying so. The check returns
   normally for a pass, or raises :class:`CheckFailure` for a fail; everything else
   (the verdict line, points, hiding the learner's prints, seeding) is the runner's job.
3. Add the answer and check cells to ``solutions/NN_topic.ipynb`` and run
   ``minillm course build NN``; add at least three wrong implementations to
   ``tests/course/mutants/lessonNN.py``.

``references`` are dotted names resolved lazily (names that do not import are
skipped), so a check can forbid both minillm's reference and its torch twin.

A task built on the learner's answers to earlier tasks names them with ``depends_on``
(the learner's function name -> the task that writes it)::

    @register("10.ring_all_reduce", points=3, depends_on={"ring_reduce_scatter": "10.ring_reduce_scatter"})

When such a task fails and its answer calls one of those functions, the verdict blames the
earlier task if that one does not pass its own check, or if the error was raised inside it:
the learner's own check finds the functions through ``fn.__globals__``; while grading,
:func:`blame_dependencies` does it from the answer cell's source and the earlier tasks'
verdicts in the same submission, so both say "fix 10.ring_reduce_scatter first".
"""

from __future__ import annotations

import importlib
import json
import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from minillm.course.checks.learner import (  # shorten is also re-exported for the grader and the workspace
    _Learner,
    _LearnerError,
    _NotAttempted,
    _UsedReference,
    _code_of,
    _resolve,
    shorten,
)

__all__ = [
    "CheckFailure",
    "CheckResult",
    "Task",
    "register",
    "check",
    "run_check",
    "grade_check",
    "get_task",
    "tasks",
    "expect_tensor",
    "expect_close",
    "describe",
    "shorten",
    "GRADING_ENV",
    "RESULT_MIME",
    "NBGRADER_ENV",
    "CheckNotPassed",
    "case_rng",
    "blame_dependencies",
    "dependency_failure",
]

#: Set in the kernel's environment by the grader; check() then also publishes its result as JSON.
GRADING_ENV = "MINILLM_GRADING"
#: The MIME type under which check() publishes its result while grading.
RESULT_MIME = "application/vnd.minillm.check+json"
#: Set by nbgrader (to "autograde" or "validate") while it executes a notebook; check() then
#: raises :class:`CheckNotPassed` after its verdict, because nbgrader scores a test cell 0 only
#: when its output holds an error.
NBGRADER_ENV = "NBGRADER_EXECUTION"
_NBGRADER_RUNS = ("autograde", "validate")

TASK_RE = re.compile(r"^(?P<lesson>\d\d)\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")

PASSED = "passed"
FAILED = "failed"
NOT_ATTEMPTED = "not attempted"
ERROR = "error"


# --------------------------------------------------------------------------- results


class CheckNotPassed(AssertionError):
    """Raised by :func:`check` under nbgrader (``NBGRADER_EXECUTION`` set) when a task did not pass.

    Its message is the verdict line. In Jupyter and in ``minillm grade`` nothing raises.
    """


class CheckFailure(Exception):
    """Raised by a check to fail a task.

    The verdict reads ``{what} {got}, expected {expected}; hint: {hint}``; leave
    ``got``/``expected`` out for a plain statement such as "output contains NaN".
    """

    _UNSET = object()

    def __init__(self, what: str, *, expected: Any = _UNSET, got: Any = _UNSET, hint: str | None = None) -> None:
        self.what, self.expected, self.got, self.hint = what, expected, got, hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.what
        if self.got is not self._UNSET:
            text += f" {self.got}"
        if self.expected is not self._UNSET:
            text += f", expected {self.expected}"
        if self.hint:
            text += f"; hint: {self.hint}"
        return text


@dataclass
class CheckResult:
    """What a check found: the grader reads it, ``check()`` prints :attr:`line`."""

    task: str
    points: int
    max_points: int
    status: str  # "passed", "failed", "not attempted" or "error"
    message: str = ""
    _echoed: bool = field(default=False, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def line(self) -> str:
        mark = {PASSED: "✔", NOT_ATTEMPTED: "○"}.get(self.status, "✘")
        text = f"{mark} {self.task}  {self.points}/{self.max_points}"
        return text + (f" — {self.message}" if self.message else "")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_echoed")
        return d

    def __str__(self) -> str:
        return self.line

    def _ipython_display_(self) -> None:
        # check() already printed the line; as the value of a one-line check cell the
        # result would be shown a second time, so the first display is swallowed.
        if self._echoed:
            self._echoed = False
            return
        print(self.line)


# --------------------------------------------------------------------------- registry


@dataclass
class Task:
    """One graded task: its id ("NN.name"), points, check function and forbidden references."""

    id: str
    points: int
    func: Callable[[Callable], None]
    references: tuple[str, ...] = ()
    doc: str = ""
    #: The learner's functions from earlier tasks that this task's answer may call: name -> task id.
    depends_on: dict[str, str] = field(default_factory=dict)


_REGISTRY: dict[str, Task] = {}


def register(task_id: str, *, points: int, references: Iterable[str] = (),
             depends_on: dict[str, str] | None = None) -> Callable:
    """Decorator: register ``func(fn)`` as the check of ``task_id`` ("NN.name") worth ``points``.

    ``depends_on`` maps the names of the learner's functions from earlier tasks that this task's
    answer calls to those tasks' ids (see the module docstring).
    """
    m = TASK_RE.match(task_id)
    if not m:
        raise ValueError(f"task id {task_id!r} must look like '04.quantize' (two-digit lesson, a dot, a name)")
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise ValueError(f"points={points!r} for {task_id} must be a positive int, e.g. points=2")
    refs = tuple(references)
    for r in refs:
        if not isinstance(r, str) or "." not in r:
            raise ValueError(f"reference {r!r} of {task_id} must be a dotted name like 'minillm.model.softmax'")
    deps = dict(depends_on or {})
    for name, dep in deps.items():
        if not isinstance(name, str) or not name.isidentifier() or not isinstance(dep, str) or not TASK_RE.match(dep) \
                or dep == task_id:
            raise ValueError(f"depends_on of {task_id} must map a function name to another task's id, "
                             f"e.g. {{'ring_reduce_scatter': '10.ring_reduce_scatter'}}; got {name!r}: {dep!r}")

    def deco(func: Callable) -> Callable:
        if task_id in _REGISTRY and _REGISTRY[task_id].func.__qualname__ != func.__qualname__:
            raise ValueError(f"task {task_id} is registered twice; give each check its own id")
        _REGISTRY[task_id] = Task(task_id, points, func, refs, (func.__doc__ or "").strip(), deps)
        return func

    return deco


def _load_lesson(lesson: str) -> None:
    try:
        importlib.import_module(f"{__name__}.lesson{lesson}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.lesson{lesson}":
            raise


def get_task(task_id: str) -> Task:
    """The registered task ``task_id``; raises ValueError naming the known tasks if there is none."""
    if not isinstance(task_id, str) or not TASK_RE.match(task_id):
        raise ValueError(f"task id {task_id!r} must look like '01.causal_attention'")
    lesson = task_id[:2]
    _load_lesson(lesson)
    if task_id not in _REGISTRY:
        known = ", ".join(sorted(t for t in _REGISTRY if t.startswith(lesson + "."))) or "none"
        raise ValueError(f"unknown task {task_id!r}; lesson {lesson} has: {known}")
    return _REGISTRY[task_id]


def tasks(lesson: str | None = None) -> list[Task]:
    """Registered tasks, sorted by id; ``lesson="01"`` loads and lists one lesson's."""
    if lesson is not None:
        _load_lesson(lesson)
    else:
        for p in sorted(Path(__file__).parent.glob("lesson[0-9][0-9].py")):
            _load_lesson(p.stem[-2:])
    return [t for k, t in sorted(_REGISTRY.items()) if lesson is None or k.startswith(lesson + ".")]


# --------------------------------------------------------------------------- the learner's function
# (in minillm/course/checks/learner.py)


# --------------------------------------------------------------------------- helpers for check authors


def describe(x: Any) -> str:
    """A short description of a value for a verdict: a shape for tensors, a type otherwise."""
    import torch

    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} ({str(x.dtype).replace('torch.', '')})"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}"
    name = type(x).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def expect_tensor(got: Any, *, shape: tuple | None = None, what: str = "output", hint: str | None = None):
    """Fail unless ``got`` is a floating tensor (of ``shape`` when given) with no NaN or inf."""
    import torch

    if not isinstance(got, torch.Tensor):
        raise CheckFailure(f"{what} is", got=describe(got), expected="a torch.Tensor", hint=hint)
    if shape is not None and tuple(got.shape) != tuple(shape):
        raise CheckFailure(f"{what} shape", got=tuple(got.shape), expected=tuple(shape), hint=hint)
    if got.is_floating_point() and not bool(torch.isfinite(got).all()):
        bad = "NaN" if bool(torch.isnan(got).any()) else "inf"
        raise CheckFailure(f"{what} contains {bad}", hint=hint or "look for exp() of large numbers or a 0/0")
    return got


def expect_close(
    got: Any,
    expected,
    *,
    atol: float,
    rtol: float,
    what: str = "output",
    hint: str | None = None,
    diagnose: dict[str, Any] | None = None,
) -> None:
    """Fail unless tensor ``got`` matches ``expected`` within ``atol + rtol·|expected|``.

    ``diagnose`` maps a hint to the output a typical mistake gives: when ``got``
    matches one of those instead, that hint is shown.
    """
    import torch

    expected = torch.as_tensor(expected)
    diag_hint = None
    if diagnose and isinstance(got, torch.Tensor) and got.shape == expected.shape:
        for h, wrong in diagnose.items():
            wrong = torch.as_tensor(wrong)
            if wrong.shape == got.shape and torch.allclose(got.double(), wrong.double(), atol=atol, rtol=rtol, equal_nan=True):
                if not torch.allclose(wrong.double(), expected.double(), atol=atol, rtol=rtol):
                    diag_hint = h
                    break
    expect_tensor(got, shape=tuple(expected.shape), what=what, hint=diag_hint or hint)
    g, e = got.detach().double(), expected.detach().double()
    err = (g - e).abs()
    bound = atol + rtol * e.abs()
    if bool((err > bound).any()):
        i = int(torch.argmax(err - bound))
        idx = tuple(int(v) for v in torch.unravel_index(torch.tensor(i), e.shape)) if e.dim() else ()
        at = f" at index {idx}" if idx else ""
        raise CheckFailure(
            f"{what}{at} is",
            got=f"{float(g.reshape(-1)[i]):.6g}",
            expected=f"{float(e.reshape(-1)[i]):.6g} (max abs error {float(err.max()):.2g}, tolerance {atol:g} + {rtol:g}·|expected|)",
            hint=diag_hint or hint,
        )


def case_rng(seed: int):
    """A ``random.Random`` for a check's drawn cases: seeded with ``seed``, mixed with the grader's salt.

    In the learner's own ``check()`` (no salt) it is exactly ``random.Random(seed)``, so the
    notebook's verdicts stay the same run after run. While grading, :func:`salted_seeds`
    mixes every torch seed with the secret salt; the seed is passed through a
    ``torch.Generator`` so that the same mixing reaches the Python cases, and a lookup table
    recorded from the notebook's cases does not pass.
    """
    import random

    import torch

    return random.Random(torch.Generator().manual_seed(int(seed)).initial_seed())


# --------------------------------------------------------------------------- the runner


def dependency_failure(me: str, name: str, dep: str, status: str, message: str) -> CheckFailure:
    """The verdict on task ``me`` (its function name) whose answer calls ``name``, the learner's
    function of task ``dep``, when that task did not pass (``status``, ``message``). One wording
    for the learner's own check and for the grader (:func:`blame_dependencies`)."""
    state = "is not written yet" if status == NOT_ATTEMPTED else f"fails its own check ({message})"
    return CheckFailure(f"your {me} calls your {name}, which {state}", hint=f"fix {dep} first, then run this check again")


def blame_dependencies(task_id: str, status: str, message: str, uses: Iterable[str],
                       earlier: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """While grading: a verdict ``(status, message)`` that blames an earlier task, or None to keep the task's own.

    ``status``/``message``: the grader's verdict on ``task_id``; ``uses``: the names its answer
    cell uses (:func:`minillm.course.static.names_used`); ``earlier``: task id -> (status, message)
    of the tasks graded before it in the same submission. For each ``depends_on`` function the
    answer uses: if its task did not pass, the verdict says so (as the learner's own check does);
    else, if the error was raised inside it (the kernel names the learner's innermost function,
    "(in ring_reduce_scatter, line 7: ...)"), the verdict names that function's task.
    """
    try:
        task = get_task(task_id)
    except ValueError:  # a release's task this version of the checks does not know
        return None
    if status == PASSED or not task.depends_on:
        return None
    me, uses = task_id.split(".", 1)[1], set(uses)
    deps = [(name, dep) for name, dep in task.depends_on.items() if name in uses]
    for name, dep in deps:
        if dep in earlier and earlier[dep][0] != PASSED:
            return FAILED, dependency_failure(me, name, dep, *earlier[dep]).message
    raised = "your function raised "
    for name, dep in deps:
        if message.startswith(raised) and f"(in {name}, line " in message:
            return FAILED, (f"your {name} (task {dep}) raised {message[len(raised):]} when your {me} called it; hint: {name} "
                            f"passes its own check, so look at what your {me} hands it")
    return None


def _references(task: Task) -> dict[str, Any]:
    out = {}
    for name in task.references:
        obj = _resolve(name)
        if obj is not None:
            out[name] = obj
    return out


def _is_reference(fn: Callable, refs: dict[str, Any]) -> str | None:
    import functools

    inner = fn.func if isinstance(fn, functools.partial) else fn
    code = _code_of(inner)
    for name, obj in refs.items():
        if inner is obj or (code is not None and code is _code_of(obj)):
            return name
    return None


def run_check(task_id: str, fn: Any) -> CheckResult:
    """Run the check of ``task_id`` on ``fn`` and return the verdict, printing nothing."""
    task = get_task(task_id)
    if not callable(fn):
        return CheckResult(task.id, 0, task.points, FAILED,
                           f"expected your function, got {describe(fn)}; pass the function itself, without ()")
    refs = _references(task)
    ref = _is_reference(fn, refs)
    if ref:
        return CheckResult(task.id, 0, task.points, FAILED,
                           f"this is the reference {ref}, not your own code: 0 points; pass the function you wrote")
    return _run_task(task, _Learner(fn, refs), None)


def grade_check(task_id: str, remote: Callable, salt: int) -> CheckResult:
    """The grader's verdict on ``task_id``: the check runs here, ``remote`` calls the learner's
    function in the kernel (see :mod:`minillm.course.remote`), and every seed the check sets is
    mixed with the grader's secret ``salt`` (:func:`~minillm.course.checks.learner.salted_seeds`)."""
    return _run_task(get_task(task_id), remote, salt)


def _run_task(task: Task, learner: Callable, salt: int | None) -> CheckResult:
    import torch

    from minillm.course.checks.learner import salted_seeds

    def result(points: int, status: str, message: str = "") -> CheckResult:
        return CheckResult(task.id, points, task.points, status, message)

    # Seeded, without disturbing the learner's random state; warnings are kept out
    # of the verdict so that a check cell prints exactly one line.
    with salted_seeds(salt), torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        try:
            task.func(learner)
        except _NotAttempted:
            return result(0, NOT_ATTEMPTED, "not attempted yet: replace `raise NotImplementedError()` with your code")
        except _UsedReference as e:
            return result(0, FAILED, f"your function calls the reference {e}: 0 points; write it from tensor operations")
        except _LearnerError as e:
            return result(0, ERROR, f"your function raised {e}")
        except CheckFailure as e:
            return result(0, FAILED, e.message)
        except Exception as e:  # the result could not be used (e.g. a wrong type the check did not foresee)
            return result(0, FAILED, f"the check could not use your result: {type(e).__name__}: {shorten(str(e), 120)}")
    return result(task.points, PASSED)


def under_nbgrader(environ: dict | None = None) -> bool:
    """True while nbgrader's ``autograde`` or ``validate`` executes the notebook."""
    return (os.environ if environ is None else environ).get(NBGRADER_ENV, "") in _NBGRADER_RUNS


def check(task_id: str, fn: Any) -> CheckResult:
    """Check the learner's ``fn`` for ``task_id``: print one verdict line and return the result.

    Under nbgrader (see :func:`under_nbgrader`) a task that did not pass also raises
    :class:`CheckNotPassed` after the verdict, so that nbgrader gives the cell 0 points.
    """
    __tracebackhide__ = True  # IPython leaves this frame out of the traceback
    res = run_check(task_id, fn)
    print(res.line, flush=True)
    res._echoed = True
    if os.environ.get(GRADING_ENV):
        try:
            from IPython.display import publish_display_data

            publish_display_data({RESULT_MIME: res.to_dict()})
        except ImportError:  # graded outside a kernel: the JSON goes to stdout
            print(json.dumps({RESULT_MIME: res.to_dict()}), flush=True)
    elif not res.passed and under_nbgrader():
        raise CheckNotPassed(res.line)
    return res
