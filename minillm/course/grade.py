"""The grader: ``minillm grade PATH...`` runs each submission in a fresh kernel and scores its tasks.

How a submission is graded
--------------------------
1. **Read, never write.** The file is read once into memory; everything below
   works on that copy, in a temporary working directory, so the submission's
   bytes (and hash) never change. A file that cannot be read as a notebook but
   bears a release's name scores 0 of that release's points, task by task.
2. **Find the release.** The released exercise is ``exercises/<stem>.ipynb``, named by
   the file name, else by its ``NN_`` prefix (the file name decides, as in nbgrader), else
   by the notebook's ``metadata.minillm.exercise``. Metadata that names another release is
   flagged in the first task's message.
3. **Merge.** The cells to run follow the *release's* order. Locked cells (check
   cells and read-only cells) always come from the release, matched by nbgrader
   ``grade_id`` (or, when a tool stripped the metadata, by cell id): an edited or
   deleted check cell changes nothing. Answer cells come from the submission by
   ``grade_id``; a missing one is replaced by the blank stub and scores 0. Cells
   the learner added stay after the cell they followed.
4. **Run cell by cell** in one kernel started on this Python (``MINILLM_GRADING=1``
   makes ``check()`` publish its result as JSON next to its verdict line), with a
   per-cell timeout (``--timeout``) for every cell but the release's read-only set-up
   cells before the first answer (imports, data), which get at least 300 s; read-only
   demo cells further down may call the learner's code, so a loop there costs only
   ``--timeout``. An exception is just an output. After a **timeout** or a
   **kernel death** (``os._exit``, a segfault) the task owning that cell is marked
   ``timeout``/``crashed``, a fresh kernel is started, and the non-check cells that
   had already run are replayed (the failed one left out) before grading goes on.
   So one task's infinite loop or crash costs that task alone.
5. **Score.** Each task's row comes from its check cell's JSON: ``passed``,
   ``failed``, ``not attempted`` or ``error``; or ``timeout``, ``crashed``,
   ``missing`` from step 3 or 4. ``max`` is the check cell's nbgrader ``points``.

Cost: one kernel start (about a second) plus the notebook's imports per
submission, and one more per timeout or crash.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import secrets
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import nbformat
from nbformat import NotebookNode

from minillm.course.checks import GRADING_ENV, get_task, grade_check, shorten
from minillm.course.remote import REPLY_MIME, KernelLost, RemoteFunction
from minillm.course.notebooks import current_env_kernel_manager, kernel_env, notebook_client, release_cells

__all__ = ["TaskGrade", "GradeError", "course_root", "find_release", "merge", "grade_notebook", "grade_paths", "format_table", "gradebook"]

#: Static analysis of the learner's cells (minillm.course.static); tests switch it off to try the
#: run-time defences on their own.
STATIC_ANALYSIS = True
DEFAULT_TIMEOUT = 60
#: Characters of output kept per cell; the rest is dropped with a note (a 100 MB print must not cost the grader).
OUTPUT_CAP = 100_000
READONLY_TIMEOUT = 300


class GradeError(ValueError):
    """A submission cannot be graded (not a notebook, no matching exercise)."""


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


def course_root(root: str | Path | None = None) -> Path:
    """The folder holding ``exercises/`` and ``solutions/``: ``root``, else the repo around minillm, else cwd."""
    if root is not None:
        return Path(root).resolve()
    here = Path(__file__).resolve().parents[2]
    for cand in (here, Path.cwd()):
        if (cand / "exercises").is_dir():
            return cand
    raise GradeError(
        "cannot find the course's exercises/ folder; run minillm from the course repository "
        "(the folder with lessons/, exercises/ and solutions/)"
    )


def _metadata_release(nb: NotebookNode) -> str | None:
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    name = meta["minillm"].get("exercise") if isinstance(meta.get("minillm"), dict) else None
    return name if isinstance(name, str) and re.fullmatch(r"[\w\-]+", name) else None


def find_release(nb: NotebookNode, path: Path, root: Path) -> Path:
    """The released exercise a submission answers (see the module docstring, step 2).

    The file name decides, as in nbgrader: its exact name, then its ``NN_`` prefix. The
    notebook's metadata is used only when the name matches no release (metadata is easier to
    forge than a file name an instructor collected).
    """
    exercises = root / "exercises"
    if (exercises / path.name).is_file():
        return exercises / path.name
    m = re.match(r"(\d\d)_", path.name)
    if m:
        found = sorted(exercises.glob(f"{m.group(1)}_*.ipynb"))
        if len(found) == 1:
            return found[0]
    name = _metadata_release(nb)
    if name is not None and (exercises / f"{name}.ipynb").is_file():
        return exercises / f"{name}.ipynb"
    known = ", ".join(p.name for p in sorted(exercises.glob("*.ipynb"))) or "none"
    raise GradeError(f"{path}: no released exercise matches it (known: {known}); keep the exercise's file name")


# --------------------------------------------------------------------------- merging


@dataclass
class RunCell:
    role: str  # "answer", "check", "readonly" or "extra" (added by the learner)
    task: str | None
    cell: NotebookNode
    missing: bool = False  # an answer cell absent from the submission (the stub runs)
    restored: bool = False  # a check cell that was edited or deleted in the submission


def _grade_id(cell: NotebookNode) -> str | None:
    """The cell's nbgrader ``grade_id`` when it is a string (a damaged one, a list say, is None)."""
    meta = cell.get("metadata")
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    gid = meta.get("grade_id") if isinstance(meta, dict) else None
    return gid if isinstance(gid, str) else None


def _cell_id(cell: NotebookNode) -> str | None:
    cid = cell.get("id")
    return cid if isinstance(cid, str) else None


def _fresh(cell: NotebookNode, source: str | None = None) -> NotebookNode:
    c = copy.deepcopy(cell)
    if source is not None:
        c.source = source
    if c.cell_type == "code":
        c.outputs, c.execution_count = [], None
    return c


def merge(release: NotebookNode, submission: NotebookNode) -> list[RunCell]:
    """The cells to run: the release's order and locked cells, the submission's answers and additions."""
    rel = release_cells(release)
    gid_of_id = {cid: _grade_id(c) for _, _, c in rel if (cid := _cell_id(c)) is not None}
    known = {_grade_id(c) for _, _, c in rel}
    matched: dict[str, NotebookNode] = {}
    extras: dict[str | None, list[NotebookNode]] = defaultdict(list)
    anchor: str | None = None
    for cell in submission.cells:
        if not isinstance(cell, dict) or not isinstance(cell.get("source"), str):
            continue  # damaged beyond use: a missing answer is graded as the stub
        gid = _grade_id(cell)
        if gid not in known:
            gid = gid_of_id.get(_cell_id(cell))
        if gid in known and gid not in matched:
            matched[gid] = cell
            anchor = gid
        elif cell.get("cell_type") == "code":  # added by the learner, or a duplicate of a released cell
            c = _fresh(cell)
            c.metadata = {}
            extras[anchor].append(c)
    run = [RunCell("extra", None, c) for c in extras[None]]
    for role, task, rcell in rel:
        gid = _grade_id(rcell)
        sub = matched.get(gid)
        if role == "answer":
            if sub is not None and sub.get("cell_type") == "code":
                run.append(RunCell("answer", task, _fresh(rcell, sub["source"])))
            else:
                run.append(RunCell("answer", task, _fresh(rcell), missing=True))
        else:
            restored = role == "check" and (sub is None or sub["source"].strip() != rcell.source.strip())
            run.append(RunCell(role, task, _fresh(rcell), restored=restored))
        run.extend(RunCell("extra", None, c) for c in extras[gid])
    return run


# --------------------------------------------------------------------------- the kernel


class _Kernel:
    """One kernel at a time, restartable; runs single cells with a timeout."""

    def __init__(self, workdir: Path, timeout: int, cells: list[NotebookNode]) -> None:
        self.workdir, self.timeout = workdir, timeout
        self.nb = nbformat.v4.new_notebook(cells=cells)  # nbclient stores each executed cell back here
        self.scratch = len(cells)  # the grader's own calls run as this extra cell
        self.nb.cells.append(nbformat.v4.new_code_cell(""))
        self.client = None
        self.starts = 0
        self.asked_exit = False
        self.output_used: dict[int, int] = {}
        self.capped: set[int] = set()  # cells whose output was cut at OUTPUT_CAP
        # The release's read-only cells before the first answer cell: imports and set-up.
        # Read-only cells further down (demos) may call the learner's functions, so they
        # keep the learner's timeout: a loop there must not cost READONLY_TIMEOUT.
        self._setup: set[int] = set()
        for cell in cells:
            if cell.cell_type != "code":
                continue
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") or meta.get("grade") or not meta.get("locked"):
                break
            self._setup.add(id(cell))

    def start(self) -> None:
        self.stop()
        ipc = Path(tempfile.mkdtemp(prefix="ipc-", dir=self.workdir))
        km = current_env_kernel_manager(ipc)
        self.client = notebook_client(
            self.nb,
            km,
            timeout=self.timeout,
            allow_errors=True,
            record_timing=False,
            store_widget_state=True,  # nbclient's Output-widget emulation needs it
            shutdown_kernel="immediate",
            timeout_func=self.timeout_of,
            resources={"metadata": {"path": str(self.workdir)}},
        )
        self.client.start_new_kernel(env=kernel_env({GRADING_ENV: "1"}))
        self.client.start_new_kernel_client()
        self.client.on_cell_executed = self._executed
        self._cap_output(self.client)
        self.starts += 1

    def _executed(self, cell=None, cell_index=None, execute_reply=None, **_) -> None:
        """Notes an ``exit()`` (IPython's ask_exit payload): the kernel stops 0.1 s after the cell, so the
        cell that asked is blamed, not the next one."""
        payload = (execute_reply or {}).get("content", {}).get("payload", []) or []
        if any(isinstance(p, dict) and p.get("source") == "ask_exit" for p in payload):
            self.asked_exit = True

    def _cap_output(self, client) -> None:
        """Keep at most :data:`OUTPUT_CAP` characters of each cell's output; note what was dropped."""
        original = client.output

        def output(outs, msg, display_id, cell_index):
            size = len(json.dumps(msg.get("content", {}), default=str)) if msg.get("msg_type") != "status" else 0
            used = self.output_used.get(cell_index, 0)
            self.output_used[cell_index] = used + size
            if used + size > OUTPUT_CAP and not (msg.get("content", {}).get("data", {}) or {}).get(REPLY_MIME):
                self.capped.add(cell_index)
                return None
            return original(outs, msg, display_id, cell_index)

        client.output = output

    def timeout_of(self, cell: NotebookNode) -> int:
        """The release's read-only set-up cells (imports, data, before the first answer cell) get at
        least ``READONLY_TIMEOUT``, so a slow import on a loaded machine is not blamed on a task;
        every other cell gets ``timeout``."""
        return max(self.timeout, READONLY_TIMEOUT) if id(cell) in self._setup else self.timeout

    def stop(self) -> None:
        if self.client is not None:
            try:
                self.client._cleanup_kernel()
            except Exception:  # the kernel may already be gone
                pass
            self.client = None

    def call(self, code: str) -> list:
        """Run the grader's ``code`` in the kernel; its outputs, or :class:`KernelLost` on a timeout or death."""
        cell = nbformat.v4.new_code_cell(code)
        self.nb.cells[self.scratch] = cell
        outcome = self.run(cell, self.scratch)
        if outcome in ("timeout", "dead"):
            raise KernelLost(outcome)
        return list(cell.get("outputs", []))

    def run(self, cell: NotebookNode, index: int) -> str:
        """Execute ``cell`` (outputs land in it): "ok", "error", "timeout" or "dead"."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        if self.client is None:
            self.start()
        self.asked_exit = False
        self.output_used[index] = 0
        try:
            self.client.execute_cell(cell, index)
        except CellTimeoutError:
            return "timeout"
        except DeadKernelError:
            return "dead"
        except RuntimeError as e:  # "Kernel died" variants from jupyter_client
            if "died" in str(e).lower() or "dead" in str(e).lower():
                return "dead"
            raise
        if self.asked_exit:
            return "dead"
        return "error" if any(o.get("output_type") == "error" for o in cell.get("outputs", [])) else "ok"


def _error_text(cell: NotebookNode) -> str:
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            text = f"{o.get('ename', 'Error')}: {o.get('evalue', '')}".strip().rstrip(":")
            text = re.sub(r"\x1b\[[0-9;]*m", "", text)
            return shorten(text, 200)
    return ""


def _check_call(source: str) -> tuple[str, str]:
    """``check("NN.task", expr)`` in a release's check cell: the task id and the source of ``expr``."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "check"
                and len(node.args) == 2 and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            return node.args[0].value, ast.unparse(node.args[1])
    raise GradeError(f"the release's check cell {source.strip()[:60]!r} is not check(\"NN.task\", function)")


# --------------------------------------------------------------------------- grading


def grade_notebook(
    path: str | Path, root: str | Path | None = None, timeout: float = DEFAULT_TIMEOUT, label: str | None = None
) -> list[TaskGrade]:
    """Grade one submission; returns one row per task of its released exercise."""
    path = Path(path)
    label = label or str(path)
    root = course_root(root)
    try:
        data = path.read_bytes()
        submission = nbformat.reads(data.decode("utf-8"), as_version=4)
        if not isinstance(submission.get("cells"), list):
            raise ValueError("it has no list of cells")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        problem = f"cannot read it as a notebook ({type(e).__name__}: {shorten(str(e), 120)})"
        return _unreadable_rows(path, root, label, problem)
    release_path = find_release(submission, path, root)
    claimed = _metadata_release(submission)
    if claimed is not None and claimed != release_path.stem:
        notes_first = [f"its metadata names {claimed!r}, its file name {release_path.stem!r}: graded as the file name says"]
    else:
        notes_first = []
    release = nbformat.reads(release_path.read_text(encoding="utf-8"), as_version=4)
    run = merge(release, submission)
    tasks = [(rc.task, int(rc.cell.metadata["nbgrader"].get("points", 0))) for rc in run if rc.role == "check"]
    state: dict[str, tuple[str, str]] = {}  # task -> (status, message) when decided without a check
    answer_errors: dict[str, str] = {}
    results: dict[str, dict] = {}
    notes: dict[str, list[str]] = defaultdict(list)  # task -> notes on cells near its answer
    per_cell = max(1, int(math.ceil(timeout)))
    forbidden = _static_findings(run, [t for t, _ in tasks]) if STATIC_ANALYSIS else {}
    for task, _ in tasks:
        if task in forbidden:
            state[task] = ("failed", forbidden[task])
    salt = secrets.randbits(62)  # fresh inputs for every run: the check's seeds are mixed with it

    with tempfile.TemporaryDirectory(prefix="minillm-grade-") as workdir:
        kernel = _Kernel(Path(workdir), per_cell, [rc.cell for rc in run])
        done: list[int] = []  # indices of non-check code cells that ran (replayed after a restart)
        try:
            for i, rc in enumerate(run):
                cell = rc.cell
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                if len(state) == len(tasks):
                    break  # every task is decided (static findings): the learner's code never runs
                if rc.role == "check" and rc.task in state:
                    continue  # its answer cell already timed out or crashed, or the task is forbidden
                if rc.role == "check":  # decided here, in the grader; the kernel only runs the learner's function
                    try:
                        task_id, expr = _check_call(cell.source)
                        res = grade_check(task_id, RemoteFunction(kernel.call, task_id, expr, salt), salt)
                        results[rc.task] = res.to_dict()
                        continue
                    except KernelLost as e:
                        outcome = e.status
                else:
                    outcome = kernel.run(cell, i)
                if outcome in ("ok", "error"):
                    done.append(i)
                    if rc.role == "answer" and outcome == "error":
                        answer_errors[rc.task] = _error_text(cell)
                    continue
                # timeout or dead kernel: blame the owning task, restart, replay what ran before
                where = "your answer cell" if rc.role in ("answer", "extra") else "your function during its check"
                if outcome == "timeout":
                    limit = kernel.timeout_of(cell)
                    msg = f"{where} did not finish within {limit} s (an infinite loop?); the other tasks were graded in a fresh kernel"
                    status = "timeout"
                else:
                    msg = f"the kernel died in {where} (os._exit, exit() or a native crash); the other tasks were graded in a fresh kernel"
                    status = "crashed"
                if rc.task is not None and rc.role in ("answer", "check"):
                    state[rc.task] = (status, msg)
                else:
                    first = shorten(cell.source.strip().splitlines()[0], 40, cap=40)
                    what = "ran past the time limit" if status == "timeout" else "crashed the kernel"
                    notes[_near_task(run, i)].append(f"a cell you added ({first!r}) {what}; it was skipped")
                kernel.start()
                for j in list(done):
                    if kernel.run(run[j].cell, j) in ("timeout", "dead"):  # not reproducible: drop it and go on
                        done.remove(j)
                        kernel.start()
        finally:
            kernel.stop()
        for i in sorted(kernel.capped):
            if i < len(run):
                who = "your answer cell" if run[i].role == "answer" else "a cell near this task's"
                notes[_near_task(run, i)].append(f"{who} printed more than {OUTPUT_CAP} characters; the rest was not kept")
            else:
                notes[tasks[0][0]].append(f"your function printed more than {OUTPUT_CAP} characters; the rest was not kept")

    rows = []
    for task, max_points in tasks:
        rc = next(r for r in run if r.role == "check" and r.task == task)
        missing = any(r.missing for r in run if r.role == "answer" and r.task == task)
        if task in state:
            status, message = state[task]
            points = 0
        elif task in results:
            res = results[task]
            status, message = res.get("status", "error"), res.get("message", "")
            points = min(int(res.get("points", 0)), max_points)
            if status != "passed" and task in answer_errors:
                message += f" (your answer cell raised {answer_errors[task]})"
        else:
            status, message, points = "error", "the check did not run", 0
        if missing:
            status, points = "missing", 0
            message = "the answer cell is missing from the submission (deleted or its metadata stripped); 0 points"
        elif rc.restored:
            message = (message + "; " if message else "") + "check cell restored from the release"
        if notes.get(task):
            message = (message + "; " if message else "") + "; ".join(notes[task])
        if notes_first and task == tasks[0][0]:
            message = "; ".join(notes_first) + ("; " + message if message else "")
        rows.append(TaskGrade(label, task, points, max_points, status, message))
    return rows


def _near_task(run: list[RunCell], i: int) -> str | None:
    """The task a note on cell ``i`` belongs to: the task of the nearest answer or check cell before it, else after."""
    for j in list(range(i, -1, -1)) + list(range(i + 1, len(run))):
        if run[j].task is not None:
            return run[j].task
    return None


def _static_findings(run: list[RunCell], task_ids: list[str]) -> dict[str, str]:
    """Task -> the message of its first static finding (:mod:`minillm.course.static`) in the learner's cells."""
    from minillm.course.static import scan

    learner = [(rc.task if rc.role == "answer" else None, rc.cell.source)
               for rc in run if rc.cell.cell_type == "code" and (rc.role == "extra" or (rc.role == "answer" and not rc.missing))]
    setup = [rc.cell.source for rc in run if rc.role == "readonly" and rc.cell.cell_type == "code"]
    refs = {}
    for t in task_ids:
        try:
            refs[t] = get_task(t).references
        except ValueError:
            refs[t] = ()
    out: dict[str, str] = {}
    for f in scan(learner, setup, refs):
        for t in ([f.task] if f.task else task_ids):
            out.setdefault(t, f.message)
    return out


def _unreadable_rows(path: Path, root: Path, label: str, problem: str) -> list[TaskGrade]:
    """A damaged file that bears a release's name scores 0 of that release's points, task by task
    (so a gradebook's totals stay right); any other unreadable file raises :class:`GradeError`."""
    empty = nbformat.v4.new_notebook()
    try:
        release_path = find_release(empty, path, root)
    except GradeError:
        raise GradeError(f"{path}: {problem}") from None
    release = nbformat.reads(release_path.read_text(encoding="utf-8"), as_version=4)
    return [
        TaskGrade(label, task, 0, int(cell.metadata["nbgrader"].get("points", 0)), "error", f"{problem}; 0 points")
        for role, task, cell in release_cells(release)
        if role == "check"
    ]


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(q for q in sorted(p.rglob("*.ipynb")) if ".ipynb_checkpoints" not in q.parts)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return out


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


def _write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
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


def grade_paths(
    paths: Iterable[str | Path],
    root: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    json_out: str | Path | None = None,
    echo: Callable[[str], None] = print,
    csv_out: str | Path | None = None,
) -> tuple[list[TaskGrade], int]:
    """Grade files and folders; print the table, write JSON rows; return (rows, exit code).

    The exit code is 0 when every submission was graded, 1 when one could not be
    (it then has a single row with task "*" and status "error"). ``json_out`` and ``csv_out``
    (the per-student :func:`gradebook`) are written atomically, after every submission is done.
    """
    rows: list[TaskGrade] = []
    code = 0
    for path in _expand(paths):
        t0 = time.perf_counter()
        try:
            got = grade_notebook(path, root=root, timeout=timeout)
        except GradeError as e:
            got, code = [TaskGrade(str(path), "*", 0, 0, "error", str(e))], 1
        except Exception as e:  # e.g. no kernel could start: report it and grade the others
            msg = f"the grader failed on this submission: {type(e).__name__}: {shorten(str(e), 200)}"
            got, code = [TaskGrade(str(path), "*", 0, 0, "error", msg)], 1
        rows.extend(got)
        echo(format_table(got).rstrip() + f"\n  (graded in {time.perf_counter() - t0:.1f} s)\n")
    if json_out is not None:
        _write_atomically(json_out, json.dumps([r.to_dict() for r in rows], indent=1, ensure_ascii=False) + "\n")
    if csv_out is not None:
        import csv
        import io

        buf = io.StringIO()
        header, table = gradebook(rows)
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(table)
        _write_atomically(csv_out, buf.getvalue())
    return rows, code
