"""The learner's workspace: ``minillm start [DIR]`` and ``minillm progress [DIR]``.

``start`` copies every released exercise into DIR (default ``my-work/``, which
git ignores). It never overwrites a file: an exercise that is new in the release
is copied in; one whose release changed since it was copied is *reported* (with
the path of the new version) and left alone; one the learner has edited is *named*
as edited and left alone. What was copied is remembered in
``DIR/.minillm-start.json`` (file name -> sha256 of the release copied), which is
how an edit by the learner is told apart from an update of the course.

``progress`` grades each workspace notebook with the grader (in a fresh kernel,
on an in-memory copy: the notebooks are not modified) and prints one line per
task: passed, failing, or not attempted, with points.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from minillm.course.checks import shorten
from minillm.course.grade import GradeError, TaskGrade, course_root, grade_notebook

__all__ = ["DEFAULT_DIR", "MANIFEST", "StartReport", "start", "save_widget_state", "progress", "progress_rows", "format_progress"]

DEFAULT_DIR = "my-work"
MANIFEST = ".minillm-start.json"


@dataclass
class StartReport:
    """What one ``minillm start`` did, by file name."""

    copied: list[str]
    unchanged: list[str]  # already there: the learner's copy (edited or not) of the current release
    updated_upstream: list[str]  # the release changed since it was copied; the learner's file was kept
    edited: list[str] = field(default_factory=list)  # of ``unchanged``: the learner's file differs from the release


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: JupyterLab's setting that stores widget state when a notebook is saved, so a reopened lesson
#: shows its widgets' last state instead of "Error displaying widget: model not found".
WIDGET_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"


def save_widget_state(prefix: str | Path | None = None) -> Path | None:
    """Turn on JupyterLab's ``saveState`` for widgets in this environment's settings overrides.

    Writes (merging, never dropping other settings) ``PREFIX/share/jupyter/lab/settings/overrides.json``
    where PREFIX is this virtual environment (``sys.prefix``); outside a virtual environment it
    does nothing and returns None, so a system-wide Jupyter is never changed. Returns the file.
    """
    import sys

    if prefix is None:
        if sys.prefix == sys.base_prefix:
            return None
        prefix = sys.prefix
    path = Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    try:
        settings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return None  # a damaged file is the user's: leave it alone
    if not isinstance(settings, dict):
        return None
    plugin = settings.setdefault(WIDGET_PLUGIN, {})
    if not isinstance(plugin, dict) or plugin.get("saveState") is not None:
        return path  # already set (either way): the user's choice stands
    plugin["saveState"] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return path


def start(workdir: str | Path = DEFAULT_DIR, root: str | Path | None = None, echo: Callable[[str], None] = print) -> StartReport:
    """Copy new exercises into ``workdir``; never overwrite an existing file."""
    root = course_root(root)
    src = root / "exercises"
    exercises = sorted(src.glob("[0-9][0-9]_*.ipynb"))
    if not exercises:
        raise GradeError(f"no exercises in {src}; run `minillm course build` first")
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"workspace {workdir} exists and is not a folder; pick another DIR")
    workdir.mkdir(parents=True, exist_ok=True)
    manifest_path = workdir / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    except (OSError, ValueError):
        manifest = {}
    report = StartReport([], [], [])
    for ex in exercises:
        dest = workdir / ex.name
        release = _sha(ex)
        if not dest.exists():
            # "x" mode: fails rather than overwrite, even if the file appeared meanwhile
            with open(dest, "xb") as f:
                f.write(ex.read_bytes())
            manifest[ex.name] = release
            report.copied.append(ex.name)
        elif manifest.get(ex.name) in (None, release):
            same = _sha(dest) == release
            if manifest.get(ex.name) is None and same:
                manifest[ex.name] = release
            report.unchanged.append(ex.name)
            if not same:
                report.edited.append(ex.name)
        else:
            report.updated_upstream.append(ex.name)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    for name in report.copied:
        echo(f"copied   {workdir / name}")
    for name in report.edited:
        echo(f"edited   {workdir / name}: your work, kept as it is")
    for name in report.updated_upstream:
        echo(
            f"updated  {name}: the course has a newer version (exercises/{name}); your {workdir / name} "
            f"was kept. To take the new one, rename yours and run `minillm start` again."
        )
    if not report.copied and not report.updated_upstream:
        n_edited = len(report.edited)
        detail = f" ({n_edited} edited by you, named above)" if n_edited else ""
        echo(f"{workdir}: all {len(report.unchanged)} exercises already there{detail}; nothing copied")
    if save_widget_state() is not None:
        echo("JupyterLab will save widget state with each notebook, so a reopened lesson shows its widgets")
    echo(f"next: jupyter lab {workdir}  (then `minillm progress {workdir}`)")
    return report


_PROGRESS = {"passed": "passed", "not attempted": "not attempted", "missing": "not attempted"}


def progress_rows(
    workdir: str | Path = DEFAULT_DIR,
    root: str | Path | None = None,
    timeout: float = 60,
    grade: Callable[..., list[TaskGrade]] = grade_notebook,
) -> list[TaskGrade]:
    """Grade every exercise notebook in ``workdir`` (read-only); one row per task."""
    root = course_root(root)
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"no workspace at {workdir}; create it with `minillm start {workdir}`")
    rows: list[TaskGrade] = []
    for nb in sorted(workdir.glob("*.ipynb")):
        try:
            rows.extend(grade(nb, root=root, timeout=timeout, label=nb.name))
        except GradeError:
            continue  # the learner's own scratch notebook: not an exercise
        except Exception as e:  # never a traceback: this notebook gets one row saying what went wrong
            message = f"could not grade it: {type(e).__name__}: {shorten(str(e), 160)}"
            rows.append(TaskGrade(nb.name, "*", 0, 0, "error", message))
    return rows


def format_progress(rows: list[TaskGrade]) -> str:
    """``task  points  state  note`` per task, where state is passed, failing or not attempted."""
    if not rows:
        return "no exercises in the workspace yet; run `minillm start`\n"
    width = max(len(r.task) for r in rows)
    lines = [f"{'task':<{width}}  points  {'state':<13}  notebook / note"]
    for r in rows:
        state = _PROGRESS.get(r.status, "failing")
        note = r.submission if state != "failing" else f"{r.submission}: {r.message}"
        lines.append(f"{r.task:<{width}}  {f'{r.points}/{r.max}':<6}  {state:<13}  {note}")
    got, total = sum(r.points for r in rows), sum(r.max for r in rows)
    done = sum(r.status == "passed" for r in rows)
    lines.append(f"total: {got}/{total} points, {done}/{len(rows)} tasks passed")
    return "\n".join(lines) + "\n"


def progress(
    workdir: str | Path = DEFAULT_DIR,
    root: str | Path | None = None,
    timeout: float = 60,
    echo: Callable[[str], None] = print,
    grade: Callable[..., list[TaskGrade]] = grade_notebook,
) -> list[TaskGrade]:
    """Print the progress table of ``workdir`` and return its rows."""
    rows = progress_rows(workdir, root, timeout, grade)
    echo(format_progress(rows).rstrip())
    return rows
