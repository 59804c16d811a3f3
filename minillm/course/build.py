"""``minillm course build``: regenerate every exercise and re-execute lessons and solutions.

- ``exercises/NN_topic.ipynb`` is generated from ``solutions/NN_topic.ipynb``
  (:func:`minillm.course.notebooks.make_exercise`); the solution's own metadata is
  normalised too (nbgrader metadata, the ``nbval-check-output`` tag on check cells).
- Then every lesson and solution is executed in place by nbclient, each in a fresh
  kernel on this Python with its folder as the working directory, and saved with
  its outputs (no timings, no widget state, so a rebuild is a clean diff).
- Last, each lesson and solution gets its plain-text mirror ``.mirror/NN_topic.md``
  (cell sources, no outputs; :mod:`minillm.course.mirror`), so a notebook change can
  be reviewed as a diff. Mirrors whose notebook is gone are deleted.
- ``--check`` only verifies that the committed exercises, solution metadata and
  mirrors are what generation gives; nothing is written. ``--no-execute`` (``execute=False``)
  regenerates exercises and mirrors without running any notebook. A notebook filter
  (``01`` or ``01_transformer``) restricts the build to matching stems.

Only ``lessons/``, ``solutions/`` and ``exercises/`` under the course root are
written: never the learner's workspace.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from minillm.course.checks import shorten
from minillm.course.grade import course_root
from minillm.course.mirror import MIRROR_DIR, MIRRORED, mirror_path, mirror_text
from minillm.course.notebooks import NotebookError, dumps, execute_notebook, make_exercise, normalize_lesson, normalize_solution, read

__all__ = ["stems", "expected_exercise", "expected_mirror", "stale", "write_mirrors", "build"]


def _match(stem: str, only: str | None) -> bool:
    return only is None or stem == only or stem.startswith(only if only.endswith("_") or not only.isdigit() else only + "_")


def stems(root: Path, folder: str, only: str | None = None) -> list[str]:
    """Stems of ``root/folder/NN_*.ipynb`` matching the filter, sorted."""
    return [p.stem for p in sorted((root / folder).glob("[0-9][0-9]_*.ipynb")) if _match(p.stem, only)]


def expected_exercise(root: Path, stem: str) -> str:
    """The exact text ``exercises/<stem>.ipynb`` must have."""
    return dumps(make_exercise(read(root / "solutions" / f"{stem}.ipynb"), stem))


def expected_mirror(root: Path, folder: str, stem: str) -> str:
    """The exact text ``<folder>/.mirror/<stem>.md`` must have (``folder`` is lessons or solutions)."""
    return mirror_text(read(root / folder / f"{stem}.ipynb"), f"{stem}.ipynb")


def _orphan_mirrors(root: Path, folder: str, only: str | None) -> list[Path]:
    """Mirrors in ``<folder>/.mirror`` whose notebook is gone."""
    return [
        m for m in sorted((root / folder / MIRROR_DIR).glob("*.md"))
        if _match(m.stem, only) and not (root / folder / f"{m.stem}.ipynb").is_file()
    ]


def _stale_mirrors(root: Path, only: str | None) -> list[str]:
    problems = []
    for folder in MIRRORED:
        for stem in stems(root, folder, only):
            mirror = mirror_path(root / folder / f"{stem}.ipynb")
            rel = mirror.relative_to(root)
            try:
                want = expected_mirror(root, folder, stem)
            except (OSError, ValueError) as e:  # an unreadable notebook
                problems.append(f"{folder}/{stem}.ipynb: cannot read it ({type(e).__name__}: {e})")
                continue
            if not mirror.is_file():
                problems.append(f"{rel} is missing")
            elif mirror.read_text(encoding="utf-8") != want:
                problems.append(f"{rel} differs from {folder}/{stem}.ipynb's cells")
        problems += [f"{m.relative_to(root)} has no notebook" for m in _orphan_mirrors(root, folder, only)]
    return problems


def write_mirrors(root: Path, only: str | None = None, echo: Callable[[str], None] = print) -> None:
    """Bring every mirror of ``lessons/`` and ``solutions/`` up to date; delete orphans."""
    for folder in MIRRORED:
        for stem in stems(root, folder, only):
            mirror = mirror_path(root / folder / f"{stem}.ipynb")
            text = expected_mirror(root, folder, stem)
            if not mirror.is_file() or mirror.read_text(encoding="utf-8") != text:
                mirror.parent.mkdir(exist_ok=True)
                mirror.write_text(text, encoding="utf-8")
                echo(f"mirrored {mirror.relative_to(root)}")
        for m in _orphan_mirrors(root, folder, only):
            m.unlink()
            echo(f"deleted {m.relative_to(root)} (its notebook is gone)")


def _normalized_solution_text(root: Path, stem: str, nb=None) -> str:
    return dumps(normalize_solution(nb if nb is not None else read(root / "solutions" / f"{stem}.ipynb"), stem))


def stale(root: str | Path | None = None, only: str | None = None) -> list[str]:
    """Problems that ``course build`` would fix: out-of-date exercises, unnormalised solutions,
    stale mirrors, orphans."""
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
    return problems + _stale_mirrors(root, only)


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
        echo(f"exercises and mirrors are up to date ({len(stems(root, 'solutions', only))} solutions checked)")
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
                    last = str(e).strip().splitlines()[-1] if str(e).strip() else ""
                    echo(f"✘ {folder}/{stem}.ipynb failed: {type(e).__name__}: {shorten(last, 200)}")
                    failed += 1
                    continue
                nb = normalize_solution(nb, stem) if folder == "solutions" else normalize_lesson(nb)
                path.write_text(dumps(nb), encoding="utf-8")
                echo(f"executed {folder}/{stem}.ipynb in {time.perf_counter() - t0:.1f} s")
    try:
        write_mirrors(root, only, echo)
    except (OSError, ValueError) as e:  # an unreadable notebook
        echo(f"✘ mirrors: {type(e).__name__}: {e}")
        failed += 1
    return 1 if failed else 0
