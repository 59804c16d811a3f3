"""``minillm course build``: regenerate every exercise and re-execute lessons and solutions.

- ``exercises/NN_topic.ipynb`` is generated from ``solutions/NN_topic.ipynb``
  (:func:`minillm.course.notebooks.make_exercise`); the solution's own metadata is
  normalised too (nbgrader metadata, the ``nbval-check-output`` tag on check cells).
- Then every lesson and solution is executed in place by nbclient, each in a fresh
  kernel on this Python with its folder as the working directory, and saved with
  its outputs (no timings, no widget state, so a rebuild is a clean diff).
- ``--check`` only verifies that the committed exercises (and solution metadata)
  are what generation gives; nothing is written. A notebook filter (``01`` or
  ``01_transformer``) restricts the build to matching stems.

Only ``lessons/``, ``solutions/`` and ``exercises/`` under the course root are
written: never the learner's workspace.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from minillm.course.grade import course_root
from minillm.course.notebooks import NotebookError, dumps, execute_notebook, make_exercise, normalize_lesson, normalize_solution, read

__all__ = ["stems", "expected_exercise", "stale", "build"]


def _match(stem: str, only: str | None) -> bool:
    return only is None or stem == only or stem.startswith(only if only.endswith("_") or not only.isdigit() else only + "_")


def stems(root: Path, folder: str, only: str | None = None) -> list[str]:
    """Stems of ``root/folder/NN_*.ipynb`` matching the filter, sorted."""
    return [p.stem for p in sorted((root / folder).glob("[0-9][0-9]_*.ipynb")) if _match(p.stem, only)]


def expected_exercise(root: Path, stem: str) -> str:
    """The exact text ``exercises/<stem>.ipynb`` must have."""
    return dumps(make_exercise(read(root / "solutions" / f"{stem}.ipynb"), stem))


def _normalized_solution_text(root: Path, stem: str, nb=None) -> str:
    return dumps(normalize_solution(nb if nb is not None else read(root / "solutions" / f"{stem}.ipynb"), stem))


def stale(root: str | Path | None = None, only: str | None = None) -> list[str]:
    """Problems that ``course build`` would fix: out-of-date exercises, unnormalised solutions, orphans."""
    root = course_root(root)
    problems = []
    for stem in stems(root, "solutions", only):
        ex = root / "exercises" / f"{stem}.ipynb"
        sol = root / "solutions" / f"{stem}.ipynb"
        try:
            want = expected_exercise(root, stem)
        except NotebookError as e:
            problems.append(f"{sol.relative_to(root)}: {e}")
            continue
        if not ex.is_file():
            problems.append(f"{ex.relative_to(root)} is missing")
        elif ex.read_text(encoding="utf-8") != want:
            problems.append(f"{ex.relative_to(root)} differs from what generation gives")
        if sol.read_text(encoding="utf-8") != _normalized_solution_text(root, stem):
            problems.append(f"{sol.relative_to(root)} has unnormalised metadata")
    for stem in stems(root, "exercises", only):
        if not (root / "solutions" / f"{stem}.ipynb").is_file():
            problems.append(f"exercises/{stem}.ipynb has no solution to be generated from")
    return problems


def build(
    root: str | Path | None = None,
    only: str | None = None,
    check: bool = False,
    execute: bool = True,
    echo: Callable[[str], None] = print,
) -> int:
    """Regenerate exercises and (with ``execute``) re-run lessons and solutions; return an exit code.

    With ``check``: report out-of-date notebooks and return 1 if any, writing nothing.
    """
    root = course_root(root)
    if check:
        problems = stale(root, only)
        for p in problems:
            echo(f"out of date: {p}")
        if problems:
            echo("run `minillm course build` and commit the result")
            return 1
        echo(f"exercises are up to date ({len(stems(root, 'solutions', only))} checked)")
        return 0
    sol_stems = stems(root, "solutions", only)
    lesson_stems = stems(root, "lessons", only)
    if not sol_stems and not lesson_stems:
        echo(f"no notebook matches {only!r}" if only else "no notebooks found")
        return 1 if only else 0
    failed = 0
    (root / "exercises").mkdir(exist_ok=True)
    for stem in sol_stems:
        sol = root / "solutions" / f"{stem}.ipynb"
        try:
            text = _normalized_solution_text(root, stem)
            exercise = expected_exercise(root, stem)
        except NotebookError as e:
            echo(f"✘ {e}")
            failed += 1
            continue
        if sol.read_text(encoding="utf-8") != text:
            sol.write_text(text, encoding="utf-8")
        ex = root / "exercises" / f"{stem}.ipynb"
        if not ex.is_file() or ex.read_text(encoding="utf-8") != exercise:
            ex.write_text(exercise, encoding="utf-8")
            echo(f"generated exercises/{stem}.ipynb")
    if execute:
        for folder, names in (("lessons", lesson_stems), ("solutions", sol_stems)):
            for stem in names:
                path = root / folder / f"{stem}.ipynb"
                t0 = time.perf_counter()
                try:
                    nb = execute_notebook(path)
                except Exception as e:  # CellExecutionError, DeadKernelError, a timeout
                    echo(f"✘ {folder}/{stem}.ipynb failed: {type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}")
                    failed += 1
                    continue
                nb = normalize_solution(nb, stem) if folder == "solutions" else normalize_lesson(nb)
                path.write_text(dumps(nb), encoding="utf-8")
                echo(f"executed {folder}/{stem}.ipynb in {time.perf_counter() - t0:.1f} s")
    return 1 if failed else 0
