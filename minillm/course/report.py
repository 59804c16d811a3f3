"""What a grading run reports: the rows, the score table, the per-student gradebook, atomic writes.

Used by :mod:`minillm.course.grade` (which re-exports these names).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["TaskGrade", "format_table", "gradebook", "write_atomically"]


@dataclass
class TaskGrade:
    """One row of the score table and of the JSON report."""

    submission: str
    task: str
    points: int
    max: int
    status: str
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def format_table(rows: list[TaskGrade]) -> str:
    """A score table: one block per submission, one line per task, with totals."""
    lines: list[str] = []
    by_sub: dict[str, list[TaskGrade]] = defaultdict(list)
    for r in rows:
        by_sub[r.submission].append(r)
    width = max([len(r.task) for r in rows] + [4])
    for sub, rs in by_sub.items():
        got, total = sum(r.points for r in rs), sum(r.max for r in rs)
        lines.append(f"{sub}  {got}/{total}")
        lines.append(f"  {'task':<{width}}  points  {'status':<13}  message")
        for r in rs:
            pts = f"{r.points}/{r.max}"
            lines.append(f"  {r.task:<{width}}  {pts:<6}  {r.status:<13}  {r.message}".rstrip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def gradebook(rows: list[TaskGrade]) -> tuple[list[str], list[list]]:
    """Per student, points per lesson and the total: (header, rows), the way a gradebook imports it.

    A student is the folder that holds the notebook (``submitted/<student>/NN_topic.ipynb``, as
    nbgrader lays a class out); a lesson is the ``NN`` of the task (or of the file name, for a
    notebook that could not be graded). The first row after the header holds the maximum points.
    """
    points: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    maxima: dict[str, int] = defaultdict(int)
    seen_max: set[tuple[str, str]] = set()
    for r in rows:
        sub = Path(r.submission)
        m = re.match(r"(\d\d)", r.task) or re.match(r"(\d\d)_", sub.name)
        lesson = m.group(1) if m else "?"
        student = sub.parent.name or sub.stem
        points[student][lesson] += r.points
        if (r.task, lesson) not in seen_max:
            seen_max.add((r.task, lesson))
            maxima[lesson] += r.max
    lessons = sorted(maxima)
    header = ["student", *[f"lesson {n}" for n in lessons], "total"]
    table = [["(max)", *[maxima[n] for n in lessons], sum(maxima.values())]]
    for student in sorted(points):
        got = [points[student].get(n, 0) for n in lessons]
        table.append([student, *got, sum(got)])
    return header, table
