"""The course engine: graded checks, exercise generation, the grader and the learner's workspace.

- :func:`check` (from :mod:`minillm.course.checks`) is what a check cell calls:
  ``check("01.causal_attention", causal_attention)``.
- :mod:`minillm.course.notebooks` turns a solution notebook into its exercise.
- :mod:`minillm.course.build` regenerates exercises and re-executes notebooks.
- :mod:`minillm.course.grade` grades submissions in fresh kernels.
- :mod:`minillm.course.workspace` is ``minillm start`` and ``minillm progress``.
- :mod:`minillm.course.commands` registers those commands with the CLI.

Importing this package is cheap: torch is only imported when a check runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check", "CheckResult", "CheckFailure", "CheckNotPassed", "register"]


def check(task_id: str, fn: Any):
    """Check your function ``fn`` for ``task_id``; prints one verdict line, returns a CheckResult.

    Under nbgrader's autograde or validate a task that did not pass also raises ``CheckNotPassed``.
    """
    __tracebackhide__ = True
    from minillm.course.checks import check as _check

    return _check(task_id, fn)


def __getattr__(name: str):
    if name in ("CheckResult", "CheckFailure", "CheckNotPassed", "register"):
        from minillm.course import checks

        return getattr(checks, name)
    raise AttributeError(f"module 'minillm.course' has no attribute {name!r}")
