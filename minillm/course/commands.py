"""The course's command-line commands; ``minillm.cli`` calls :func:`register`.

- ``minillm course build [NN] [--check] [--no-execute]``  regenerate exercises and mirrors, re-execute lessons and solutions
- ``minillm grade PATH... [--json OUT] [--csv OUT] [--timeout SECONDS] [--jobs N] [--sandbox]``  grade submissions
- ``minillm start [DIR]``  copy the exercises into your workspace (default my-work/)
- ``minillm progress [DIR]``  your score per task

Each handler takes the parsed namespace and returns an exit code (0 fine, 1 the
work found a problem, 2 a bad argument). Handlers are set as ``handler`` defaults.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _seconds(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number of seconds") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{s} must be a positive number of seconds, e.g. --timeout 60")
    return v


def _filter(s: str) -> str:
    import re

    if not re.fullmatch(r"\d\d(_[\w\-]+)?", s):
        raise argparse.ArgumentTypeError(f"{s!r} is not a notebook filter; use a lesson number like 01 or a stem like 01_transformer")
    return s


def _error(prog: str, e: BaseException) -> int:
    print(f"minillm {prog}: error: {e}", file=sys.stderr)
    return 2


def _build(a: argparse.Namespace) -> int:
    from minillm.course.build import build
    from minillm.course.grade import GradeError

    try:
        return build(only=a.notebooks, check=a.check, execute=not a.no_execute)
    except GradeError as e:
        return _error("course build", e)


def _gib(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = 0.0
    if not 0.5 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"--memory {text!r} must be a number of GiB >= 0.5, e.g. --memory 8")
    return v


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--jobs {text!r} must be a whole number >= 1, e.g. --jobs 2")
    return n


def _grade(a: argparse.Namespace) -> int:
    from pathlib import Path

    from minillm.course.worker import grade_hidden

    missing = [p for p in a.paths if not Path(p).exists()]
    if missing:
        return _error("grade", f"no such file or folder: {missing[0]}")
    for flag, out, example in (("--json", a.json, "grades.json"), ("--csv", a.csv, "gradebook.csv")):
        if out is not None and Path(out).is_dir():
            return _error("grade", f"{flag} {out} is a folder; give a file name such as {example}")
    options = {"paths": [str(p) for p in a.paths], "timeout": a.timeout, "json_out": a.json, "csv_out": a.csv,
               "jobs": a.jobs, "sandbox": a.sandbox, "memory": int(a.memory * 2**30)}
    return grade_hidden(options)  # the process's command line no longer names the output files


def _start(a: argparse.Namespace) -> int:
    from minillm.course.workspace import start

    try:
        start(a.dir)
    except (ValueError, OSError) as e:
        return _error("start", e)
    return 0


def _progress(a: argparse.Namespace) -> int:
    from minillm.course.workspace import progress

    try:
        progress(a.dir, timeout=a.timeout)
    except (ValueError, OSError) as e:
        return _error("progress", e)
    return 0


def register(subparsers) -> None:
    """Add ``course build``, ``grade``, ``start`` and ``progress`` to an argparse subparsers object."""
    from minillm.course.grade import DEFAULT_TIMEOUT
    from minillm.course.workspace import DEFAULT_DIR

    course = subparsers.add_parser("course", help="instructor tools: build the course notebooks")
    course_sub = course.add_subparsers(dest="course_command", metavar="COMMAND", required=True)
    b = course_sub.add_parser(
        "build", help="regenerate exercises from solutions and re-execute lessons and solutions in place"
    )
    b.add_argument("notebooks", nargs="?", type=_filter, help="only notebooks whose stem starts with this (e.g. 01)")
    b.add_argument("--check", action="store_true", help="only verify that the committed exercises and mirrors are up to date")
    b.add_argument(
        "--no-execute", action="store_true",
        help="regenerate exercises and the .mirror/ text files only; run no notebook",
    )
    b.set_defaults(handler=_build)

    g = subparsers.add_parser("grade", help="grade submissions (files or folders of .ipynb), each in a fresh kernel")
    g.add_argument("paths", nargs="+", metavar="PATH", help="a submission notebook or a folder of them")
    g.add_argument("--json", metavar="OUT", help="also write the scores as JSON rows to OUT")
    g.add_argument("--csv", metavar="OUT", help="also write a gradebook to OUT: one row per student (folder), one column per lesson, the total")
    g.add_argument(
        "--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=f"per-cell time limit for the learner's code (default: {DEFAULT_TIMEOUT})",
    )
    g.add_argument("--jobs", type=_jobs, default=1, metavar="N", help="grade N submissions at once, each in its own worker (default: 1)")
    g.add_argument("--memory", type=_gib, default=8, metavar="GB",
                   help="address space each learner kernel may use, in GiB (default: 8)")
    g.add_argument("--sandbox", action="store_true",
                   help="run each submission under bubblewrap: read-only files without solutions/, no network, own PID namespace")
    g.set_defaults(handler=_grade)

    s = subparsers.add_parser("start", help=f"copy the exercises into your workspace (default: {DEFAULT_DIR}/)")
    s.add_argument("dir", nargs="?", default=DEFAULT_DIR, metavar="DIR")
    s.set_defaults(handler=_start)

    p = subparsers.add_parser("progress", help="grade your workspace: one line per task")
    p.add_argument("dir", nargs="?", default=DEFAULT_DIR, metavar="DIR")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS", help=argparse.SUPPRESS)
    p.set_defaults(handler=_progress)
