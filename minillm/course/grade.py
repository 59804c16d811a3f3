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
4. **Scan** the learner's cells (:mod:`minillm.course.static`): a task's references in its answer
   cell score that task 0; tampering anywhere (``exec``, ``sys.setprofile``, ``os.kill``, patching a
   library, ...) scores every task 0, and then nothing runs.
5. **Run cell by cell** in one kernel started on this Python, with a per-cell timeout (``--timeout``)
   for every cell but the release's read-only set-up cells before the first answer (imports,
   data), which get at least 300 s; read-only demo cells further down may call the learner's code,
   so a loop there costs only ``--timeout``. Each cell keeps at most
   :data:`~minillm.course.kernel.OUTPUT_CAP` characters of output. An exception is just an output.
   **Check cells are not run**: at a check cell the registered check runs *here*, in the grader,
   on a :class:`~minillm.course.remote.RemoteFunction` that calls the learner's function in the
   kernel and gets plain data back (:mod:`minillm.course.protocol`), with its seeds mixed with a
   secret per-run salt (tolerances are derived from float32 rounding, so an honest answer passes
   every salt; :data:`SALTED_TRIES` is 1: a failure is not retried, which would give a nearly
   right answer more chances). After a **timeout** or a **kernel death** (``os._exit``, ``exit()``, a
   segfault) the task owning that cell is marked ``timeout``/``crashed``, a fresh kernel is
   started, and the non-check cells that had already run are replayed (the failed one left out)
   before grading goes on. So one task's infinite loop or crash costs that task alone.
6. **Score.** Each task's row is the grader's own verdict: ``passed``, ``failed``, ``not attempted``
   or ``error``; or ``timeout``, ``crashed``, ``missing`` from steps 3 to 5. ``max`` is the check
   cell's nbgrader ``points``.

:func:`grade_paths` hands each submission to a worker process (:mod:`minillm.course.isolate`),
which kills every process the submission started before it reports; see the threat model in
``minillm/course/README.md``.

Cost: one kernel start (about a second) plus the notebook's imports per submission, one more
per timeout or crash, and one worker start (torch's import) per ``--jobs`` slot and run.
"""

from __future__ import annotations

import copy
import json
import math
import re
import secrets
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import nbformat
from nbformat import NotebookNode

from minillm.course.checks import blame_dependencies, get_task, grade_check, shorten
from minillm.course.kernel import MEMORY_LIMIT, OUTPUT_CAP, GradingKernel, check_call, error_text
from minillm.course.remote import KernelLost, RemoteFunction
from minillm.course.static import names_used
from minillm.course.report import TaskGrade, format_table, gradebook
from minillm.course.report import write_atomically as _write_atomically
from minillm.course.notebooks import release_cells

__all__ = ["TaskGrade", "GradeError", "course_root", "find_release", "merge", "grade_notebook", "grade_paths", "format_table", "gradebook"]

#: Static analysis of the learner's cells (minillm.course.static); tests switch it off to try the
#: run-time defences on their own.
STATIC_ANALYSIS = True
DEFAULT_TIMEOUT = 60
#: How many fresh sets of inputs a task may be checked on before it counts as failed: 1, since
#: tolerances are derived from float32 rounding (more tries give a nearly right answer more chances).
SALTED_TRIES = 1


class GradeError(ValueError):
    """A submission cannot be graded (not a notebook, no matching exercise)."""


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


# --------------------------------------------------------------------------- grading


def grade_notebook(
    path: str | Path, root: str | Path | None = None, timeout: float = DEFAULT_TIMEOUT, label: str | None = None,
    releases: dict[str, str] | None = None, memory: int | None = MEMORY_LIMIT,
) -> list[TaskGrade]:
    """Grade one submission; returns one row per task of its released exercise.

    ``releases`` (exercise file name -> its text, read once before a class is graded) keeps a
    submission that overwrites a release on disk from changing how the next one is graded;
    ``memory`` caps the kernel's address space in bytes (RLIMIT_AS; None: no cap).
    """
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
    text = (releases or {}).get(release_path.name) or release_path.read_text(encoding="utf-8")
    release = nbformat.reads(text, as_version=4)
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
        kernel = GradingKernel(Path(workdir), per_cell, [rc.cell for rc in run], memory=memory)
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
                        task_id, expr = check_call(cell.source)
                        for attempt in range(SALTED_TRIES):  # a failure must hold for fresh inputs each time
                            salt_k = (salt + attempt * 0x9E3779B97F4A7C15) % 2**62
                            remote = RemoteFunction(kernel.call, task_id, expr, salt_k)
                            res = grade_check(task_id, remote, salt_k)
                            if remote.stray:  # a rank stuck in a C call must not stall the next check
                                _restart(kernel, run, done)
                            if res.status != "failed":
                                break
                        results[rc.task] = res.to_dict()
                        continue
                    except KernelLost as e:
                        outcome = e.status
                else:
                    outcome = kernel.run(cell, i)
                if outcome in ("ok", "error"):
                    done.append(i)
                    if rc.role == "answer" and outcome == "error":
                        answer_errors[rc.task] = error_text(cell)
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
                _restart(kernel, run, done)
        finally:
            kernel.stop()
        for i in sorted(kernel.capped):
            if i < len(run):
                who = "your answer cell" if run[i].role == "answer" else "a cell near this task's"
                notes[_near_task(run, i)].append(f"{who} printed more than {OUTPUT_CAP} characters; the rest was not kept")
            else:
                notes[tasks[0][0]].append(f"your function printed more than {OUTPUT_CAP} characters; the rest was not kept")

    rows = []
    verdicts: dict[str, tuple[str, str]] = {}  # the tasks graded so far: (status, message), for blame_dependencies
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
        answer = next((r.cell.source for r in run if r.role == "answer" and r.task == task and not r.missing), "")
        status, message = blame_dependencies(task, status, message, names_used(answer), verdicts) or (status, message)
        if missing:
            status, points = "missing", 0
            message = "the answer cell is missing from the submission (deleted or its metadata stripped); 0 points"
        elif rc.restored:
            message = (message + "; " if message else "") + "check cell restored from the release"
        if notes.get(task):
            message = (message + "; " if message else "") + "; ".join(notes[task])
        if notes_first and task == tasks[0][0]:
            message = "; ".join(notes_first) + ("; " + message if message else "")
        verdicts[task] = (status, message)
        rows.append(TaskGrade(label, task, points, max_points, status, message))
    return rows


def _restart(kernel: GradingKernel, run: list[RunCell], done: list[int]) -> None:
    """A fresh kernel with the non-check cells that had run replayed (one that now fails is dropped)."""
    kernel.start()
    for j in list(done):
        if kernel.run(run[j].cell, j) in ("timeout", "dead"):  # not reproducible: drop it and go on
            done.remove(j)
            kernel.start()


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


def grade_paths(
    paths: Iterable[str | Path],
    root: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    json_out: str | Path | None = None,
    echo: Callable[[str], None] = print,
    csv_out: str | Path | None = None,
    jobs: int = 1,
    sandbox: bool = False,
    progress: bool = False,
    memory: int | None = MEMORY_LIMIT,
) -> tuple[list[TaskGrade], int]:
    """Grade files and folders; print the table, write JSON rows; return (rows, exit code).

    Each submission is graded by a worker process (:mod:`minillm.course.isolate`): ``jobs`` of them
    in parallel, each killing every process of a submission before it reports; with ``sandbox``
    each worker runs under bubblewrap. ``progress`` shows a bar over submissions; ``memory`` caps
    each kernel's address space (bytes, RLIMIT_AS).

    The exit code is 0 when every submission was graded, 1 when one could not be
    (a file that is no notebook of a release then has a single row with task "*" and status
    "error"; a submission whose worker was killed scores 0 of its release's points).
    ``json_out`` and ``csv_out`` (the per-student :func:`gradebook`) are written atomically,
    after every submission is done and every process it started is gone.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from minillm.course import isolate
    from minillm.validate import check_int

    check_int("jobs", jobs, minimum=1)
    files = _expand(paths)
    root_path = course_root(root)
    prefix = isolate.sandbox_argv(root_path, files) if sandbox else []
    if sandbox:
        problem = isolate.sandbox_works(prefix)
        if problem:
            raise isolate.SandboxError(f"--sandbox: bubblewrap cannot start here ({problem})")
    isolate.become_subreaper()
    before = set(isolate.descendants())
    releases = {p.name: p.read_text(encoding="utf-8") for p in sorted((root_path / "exercises").glob("*.ipynb"))}
    free: list = []
    lock = threading.Lock()
    results: dict[int, list[TaskGrade]] = {}
    failed: set[int] = set()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="notebook", desc="grading")
    say = (lambda s: bar.write(s)) if bar is not None and echo is print else echo

    def one(i: int) -> None:
        path = files[i]
        with lock:
            worker = free.pop() if free else isolate.Worker(prefix)
        t0 = time.perf_counter()
        job = {"path": str(path.resolve()), "root": str(root_path), "timeout": timeout, "label": str(path),
               "static": STATIC_ANALYSIS, "releases": releases, "memory": memory}
        reply = worker.grade(job)
        if "rows" in reply:
            got = [TaskGrade(**d) for d in reply["rows"]]
        elif "grade_error" in reply:
            got = [TaskGrade(str(path), "*", 0, 0, "error", reply["grade_error"])]
            failed.add(i)
        else:
            try:
                got = _unreadable_rows(path, root_path, str(path), reply.get("error", "not graded"))
            except GradeError:
                got = [TaskGrade(str(path), "*", 0, 0, "error", reply.get("error", "not graded"))]
            failed.add(i)
        with lock:
            results[i] = got
            free.append(worker)
            say(format_table(got).rstrip() + f"\n  (graded in {time.perf_counter() - t0:.1f} s)\n")
            if bar is not None:
                bar.update(1)

    try:
        with ThreadPoolExecutor(max_workers=min(jobs, max(1, len(files)))) as pool:
            list(pool.map(one, range(len(files))))
    finally:
        for w in free:
            w.close()
        isolate.kill_tree(keep=before)  # anything a submission left behind, before the results are written
        if bar is not None:
            bar.close()
    rows = [r for i in range(len(files)) for r in results.get(i, [])]
    code = 1 if failed else 0
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
