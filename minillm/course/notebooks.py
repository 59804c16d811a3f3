"""Notebook sources: cell roles, nbgrader metadata, exercise generation and execution.

Authoring rules (a solution notebook ``solutions/NN_topic.ipynb`` is the source):

- An **answer cell** is a code cell containing ``### BEGIN SOLUTION`` ...
  ``### END SOLUTION``. In the exercise the lines between the markers (markers
  included) become ``# YOUR CODE HERE`` and ``raise NotImplementedError()`` at the
  indentation of the BEGIN line.
- A **check cell** is a code cell whose whole source is one line
  ``check("NN.task", function_name)``; the task must be registered in
  ``minillm/course/checks/lessonNN.py``, which gives its points.
- Each answer cell belongs to the first check cell after it. Every other cell is
  **read-only**.

Generation (:func:`make_exercise`) writes nbgrader-compatible metadata
(``nbgrader: {grade, grade_id, locked, points, schema_version: 3, solution, task}``):
answer cells ``solution=true, grade=false``; check cells ``grade=true, locked=true``
with ``points``, the tag ``nbval-check-output`` (so nbval compares the verdict) and
``editable/deletable=false``; read-only cells ``locked=true``. The exercise also gets
nbgrader's cell locks (:func:`lock_cells`): answer cells ``deletable=false``, read-only
cells ``editable/deletable=false``; the solution keeps its read-only cells editable for
the author. ``grade_id``\\ s are
``answer-NN_task`` (``-2``, ``-3`` for a task's further answer cells),
``check-NN_task`` and ``cell-<cell id>``. The exercise has no outputs and only
normalised metadata, so generation is deterministic: same solution, same bytes.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Callable

import nbformat
from nbformat import NotebookNode

__all__ = [
    "BEGIN",
    "END",
    "STUB",
    "strip_solution",
    "check_task",
    "annotate",
    "make_exercise",
    "lock_cells",
    "dumps",
    "read",
    "release_cells",
    "current_env_kernel_manager",
    "execute_notebook",
    "freeze_widget_views",
    "NotebookError",
    "normalize_solution",
    "normalize_lesson",
    "task_functions",
]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
CHECK_RE = re.compile(
    r"""^check\(\s*(["'])(?P<task>\d\d\.[A-Za-z_][A-Za-z0-9_]*)\1\s*,\s*(?P<fn>[A-Za-z_][A-Za-z0-9_.]*)\s*\)\s*;?\s*$"""
)
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
SCHEMA_VERSION = 3
KEEP_CELL_METADATA = ("tags", "nbgrader", "editable", "deletable")


class NotebookError(ValueError):
    """A notebook breaks an authoring rule; the message names the file, the cell and the fix."""


# --------------------------------------------------------------------------- cell roles


def strip_solution(source: str, where: str = "cell") -> str:
    """Replace every BEGIN/END SOLUTION region with the stub, at the BEGIN line's indentation."""
    out: list[str] = []
    inside = False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise NotebookError(f"{where}: nested '{BEGIN}'; close the first region with '{END}'")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + s for s in STUB)
        elif stripped == END:
            if not inside:
                raise NotebookError(f"{where}: '{END}' without a '{BEGIN}' before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise NotebookError(f"{where}: '{BEGIN}' is never closed; add '{END}'")
    return "\n".join(out)


def check_task(cell: NotebookNode) -> tuple[str, str] | None:
    """(task id, function name) if ``cell`` is a one-line check cell, else None."""
    if cell.cell_type != "code":
        return None
    m = CHECK_RE.match(cell.source.strip())
    return (m.group("task"), m.group("fn")) if m else None


def _is_answer(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and any(line.strip() == BEGIN for line in cell.source.split("\n"))


def _slug(task: str) -> str:
    return task.replace(".", "_")


def _meta(grade_id: str, *, grade: bool = False, solution: bool = False, locked: bool = False, points: int | None = None) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": SCHEMA_VERSION,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = points
    return meta


def _ensure_ids(nb: NotebookNode) -> None:
    """Give cells without an id a deterministic one (nbformat 4.5 cell ids)."""
    seen = {c.get("id") for c in nb.cells if c.get("id")}
    for i, cell in enumerate(nb.cells):
        if not cell.get("id"):
            n, cid = i, f"cell-{i:03d}"
            while cid in seen:
                n += 1000
                cid = f"cell-{n:03d}"
            cell["id"] = cid
            seen.add(cid)


def annotate(nb: NotebookNode, points_of: Callable[[str], int], name: str = "notebook") -> NotebookNode:
    """Return a copy of solution ``nb`` with normalised nbgrader metadata and tags on every cell.

    ``points_of(task)`` gives a task's points (the check registry). Outputs are kept.
    Raises :class:`NotebookError` for an answer cell with no check after it, a
    duplicate check or a malformed solution region.
    """
    nb = copy.deepcopy(nb)
    nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    _ensure_ids(nb)
    pending: list[NotebookNode] = []  # answer cells waiting for their check
    seen_tasks: set[str] = set()
    for i, cell in enumerate(nb.cells):
        where = f"{name}, cell {i}"
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in ("tags",)}
        tags = [t for t in cell.metadata.get("tags", []) if t != "nbval-check-output"]
        ct = check_task(cell)
        if cell.cell_type == "code" and ct is None and "check(" in cell.source and re.search(r"^\s*check\(", cell.source, re.M):
            raise NotebookError(f"{where}: a check cell must be exactly one line `check(\"NN.task\", function)`")
        if _is_answer(cell):
            strip_solution(cell.source, where)  # validates the markers
            pending.append(cell)
        elif ct is not None:
            task = ct[0]
            if task in seen_tasks:
                raise NotebookError(f"{where}: task {task} is checked twice; each task has one check cell")
            if not pending:
                raise NotebookError(f"{where}: check of {task} has no answer cell before it; add one with '{BEGIN}'")
            seen_tasks.add(task)
            for k, answer in enumerate(pending):
                gid = f"answer-{_slug(task)}" + (f"-{k + 1}" if k else "")
                answer.metadata["nbgrader"] = _meta(gid, solution=True)
            pending = []
            cell.metadata["nbgrader"] = _meta(f"check-{_slug(task)}", grade=True, locked=True, points=points_of(task))
            cell.metadata["editable"] = False
            cell.metadata["deletable"] = False
            tags.append("nbval-check-output")
        else:
            cell.metadata["nbgrader"] = _meta(f"cell-{cell.id}", locked=True)
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
    if pending:
        raise NotebookError(
            f"{name}: an answer cell (id {pending[0].id}) has no check cell after it; add `check(\"NN.task\", fn)`"
        )
    return nb


def _registry_points(task: str) -> int:
    from minillm.course.checks import get_task

    return get_task(task).points


def lock_cells(cell: NotebookNode) -> None:
    """Set ``editable``/``deletable`` on an annotated cell as nbgrader's LockCells preprocessor does
    (its defaults, nbgrader 0.9): an answer cell may be edited but not deleted; a check cell and
    every read-only cell (markdown too) may be neither edited nor deleted."""
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("solution"):
        cell.metadata["deletable"] = False
        cell.metadata.pop("editable", None)
    elif meta.get("grade") or meta.get("locked"):
        cell.metadata["deletable"] = False
        cell.metadata["editable"] = False


def make_exercise(solution: NotebookNode, stem: str, points_of: Callable[[str], int] | None = None) -> NotebookNode:
    """The exercise generated from ``solution``: stubs, no outputs, normalised metadata, and the
    cell locks nbgrader's ``generate_assignment`` would set (:func:`lock_cells`)."""
    nb = annotate(solution, points_of or _registry_points, name=f"solutions/{stem}.ipynb")
    for i, cell in enumerate(nb.cells):
        lock_cells(cell)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            if cell.metadata["nbgrader"]["solution"]:
                cell.source = strip_solution(cell.source, f"solutions/{stem}.ipynb, cell {i}")
    nb.metadata = {
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
        "minillm": {"exercise": stem},
    }
    return nb


def normalize_solution(solution: NotebookNode, stem: str, points_of: Callable[[str], int] | None = None) -> NotebookNode:
    """``solution`` with normalised cell metadata and notebook metadata (outputs kept)."""
    nb = annotate(solution, points_of or _registry_points, name=f"solutions/{stem}.ipynb")
    _normalize_nb_metadata(nb)
    _drop_widget_views(nb)
    return nb


def _normalize_nb_metadata(nb: NotebookNode) -> None:
    lang = nb.metadata.get("language_info", {})
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {k: lang[k] for k in sorted(lang)} or {"name": "python"}}


def normalize_lesson(nb: NotebookNode) -> NotebookNode:
    """A lesson with only ``tags`` kept in cell metadata and normalised notebook metadata."""
    nb = copy.deepcopy(nb)
    nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    _ensure_ids(nb)
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
    _normalize_nb_metadata(nb)
    _drop_widget_views(nb)
    return nb


def dumps(nb: NotebookNode) -> str:
    """The canonical text of a notebook (sorted keys, one-space indent, trailing newline)."""
    return nbformat.writes(nb, version=4) + "\n"


def read(path: str | Path) -> NotebookNode:
    return nbformat.reads(Path(path).read_text(encoding="utf-8"), as_version=4)


def release_cells(nb: NotebookNode) -> list[tuple[str, str | None, NotebookNode]]:
    """(role, task, cell) for each cell of an annotated notebook; role is answer/check/readonly."""
    out = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id", "")
        if meta.get("solution"):
            out.append(("answer", gid.split("-")[1].replace("_", ".", 1), cell))
        elif meta.get("grade"):
            out.append(("check", check_task(cell)[0], cell))
        else:
            out.append(("readonly", None, cell))
    return out


# --------------------------------------------------------------------------- execution


def current_env_kernel_manager(ipc_dir: str | Path, **kwargs):
    """An AsyncKernelManager whose kernel runs on this very Python (like nbval's --nbval-current-env).

    The kernel talks over IPC sockets in ``ipc_dir`` (absolute): no TCP ports to
    find, nothing written elsewhere, and no "running over TCP without encryption" warning.
    """
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class _CurrentEnv(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):  # noqa: D401 - jupyter_client API
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict()
            )

    ipc_dir = Path(ipc_dir).resolve()
    return AsyncKernelManager(
        kernel_name="python3",
        kernel_spec_manager=_CurrentEnv(),
        transport="ipc",
        ip=str(ipc_dir / "kernel"),
        connection_file=str(ipc_dir / "kernel.json"),
        **kwargs,
    )


# How long one wait on a kernel socket may last before it looks again. zmq's sockets
# signal "readable" on an edge; now and then (about one run in twenty of a widget
# lesson, here) that edge is missed and an asyncio wait for the cell's reply sleeps
# to its full timeout although the reply has long arrived (jupyter/nbclient#312 is the
# same symptom). Waiting in short slices looks at the socket again each time.
POLL_SLICE_S = 0.25


def _poll_in_slices(channel, slice_s: float = POLL_SLICE_S) -> None:
    """Make ``channel.get_msg(timeout)`` wait in slices of ``slice_s`` seconds, same total timeout."""
    import time
    from queue import Empty

    get_msg = channel.get_msg

    async def sliced_get_msg(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = slice_s if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await get_msg(timeout=min(slice_s, left))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = sliced_get_msg


def notebook_client(nb: NotebookNode, km, **kwargs):
    """An nbclient ``NotebookClient`` for ``nb`` on kernel manager ``km`` whose waits on the
    kernel's shell and IOPub sockets are sliced (see ``POLL_SLICE_S``). Used by the build and the grader."""
    return _client_class()(nb, km=km, **kwargs)


@functools.lru_cache(maxsize=1)
def _client_class():
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    class SlicedPollClient(NotebookClient):
        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            _poll_in_slices(kc.shell_channel)
            _poll_in_slices(kc.iopub_channel)
            return kc

        # nbclient binds its sync wrapper to the base coroutine; bind it to ours.
        start_new_kernel_client = run_sync(async_start_new_kernel_client)

    return SlicedPollClient


def kernel_env(extra: dict | None = None) -> dict:
    import os

    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    env.update(extra or {})
    return env


def execute_notebook(path: str | Path, timeout: int = 600) -> NotebookNode:
    """Run ``path`` top to bottom in a fresh kernel, cwd = its folder; return it with outputs.

    Raises nbclient's ``CellExecutionError`` when a cell fails (unless tagged
    ``raises-exception``). Timings and widget state are not stored, so re-running
    gives the same file: an ``interactive`` widget's view becomes a static picture of its
    first state (``freeze_widget_views``), other widget views (random model ids) are dropped.
    """
    import tempfile

    path = Path(path).resolve()
    nb = read(path)
    with tempfile.TemporaryDirectory(prefix="minillm-kernel-") as ipc_dir:
        km = current_env_kernel_manager(ipc_dir)
        client = notebook_client(
            nb,
            km,
            timeout=timeout,
            record_timing=False,
            store_widget_state=True,  # Output-widget emulation and freeze_widget_views need it; dropped below
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute(cleanup_kc=True, env=kernel_env())
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    freeze_widget_views(nb)
    _drop_widget_views(nb)
    return nb


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
RUN_TO_INTERACT = "Run the cell to make it interactive."


def _control_text(state: dict) -> str | None:
    """``"description = value"`` for a control's widget state; None for boxes and outputs."""
    if "_options_labels" in state and isinstance(state.get("index"), int):
        value = state["_options_labels"][state["index"]]
    elif "value" in state:
        value = state["value"]
    else:
        return None
    return f"{state['description']} = {value}" if state.get("description") else str(value)


def freeze_widget_views(nb: NotebookNode) -> None:
    """Replace each ``interactive`` widget's view by a static picture of its first state.

    Reads the widget state that nbclient stores with ``store_widget_state=True``
    (``nb.metadata.widgets``). The view's output becomes one Markdown line, "*Run the cell to
    make it interactive.* Shown: `temperature = 0.8`, …", then what the widget's Output held
    (its plot as image/png, its printed text). No model ids remain, so a rebuild gives the same
    file, and a learner who opens the lesson sees the picture instead of
    ``interactive(children=…)``. A tqdm progress bar's view becomes the text of its final state,
    without its timings (``_progress_text``), instead of the "0%" it was first drawn with. Other
    widget views are left to ``_drop_widget_views``.
    """
    states = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def state(ref: str) -> dict:
        return states.get(ref.removeprefix("IPY_MODEL_"), {}).get("state", {})

    for cell in nb.cells:
        if "outputs" not in cell:
            continue
        frozen: list = []
        for out in cell.outputs:
            view = out.get("data", {}).get(WIDGET_VIEW)
            box = state(view["model_id"]) if view else {}
            bar = _progress_text(box.get("children", []), states) if view else None
            if bar is not None:  # a tqdm bar: its last state, not the "0%" it was first shown with
                frozen.append(nbformat.v4.new_output("display_data", data={"text/plain": bar}))
                continue
            if "widget-interact" not in box.get("_dom_classes", []):
                frozen.append(out)
                continue
            children = [state(ref) for ref in box.get("children", [])]
            shown = [t for c in children if c.get("_model_name") != "OutputModel" and (t := _control_text(c))]
            line = f"*{RUN_TO_INTERACT}* Shown: " + ", ".join(f"`{t}`" for t in shown) + "."
            plain = f"{RUN_TO_INTERACT} Shown: " + ", ".join(shown) + "."
            frozen.append(nbformat.v4.new_output("display_data", data={"text/markdown": line, "text/plain": plain}))
            for c in children:
                if c.get("_model_name") == "OutputModel":
                    frozen.extend(nbformat.from_dict(o) for o in c.get("outputs", []))
        cell.outputs = frozen


def _progress_text(children: list, states: dict) -> str | None:
    """The final text of a tqdm.auto bar (an HBox of HTML, progress bar, HTML), without its timings
    ("compress: 100%|██████████| 12/12"), or None if the widgets are not such a bar."""
    import html

    models = [states.get(ref.removeprefix("IPY_MODEL_"), {}) for ref in children]
    names = [m.get("model_name") for m in models]
    if len(models) != 3 or names[0] != "HTMLModel" or names[1] not in ("FloatProgressModel", "IntProgressModel"):
        return None
    bar = models[1].get("state", {})
    n, total = bar.get("value", 0), bar.get("max", 0)
    left = html.unescape(str(models[0].get("state", {}).get("value", ""))).replace("\u2007", " ")
    filled = round(10 * n / total) if total else 0
    return f"{left}|{'█' * filled}{' ' * (10 - filled)}| {int(n)}/{int(total)}"


def _drop_widget_views(nb: NotebookNode) -> None:
    """Stable outputs: drop widget views (random model ids, useless without the widget state) and
    join consecutive stream outputs (how a kernel splits its flushes varies from run to run)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        merged: list = []
        for out in cell.get("outputs", []):
            out.get("data", {}).pop(WIDGET_VIEW, None)
            if out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream" and merged[-1].get("name") == out.get("name"):
                merged[-1]["text"] = "".join(merged[-1]["text"]) + "".join(out["text"])
            else:
                merged.append(out)
        if "outputs" in cell:
            cell["outputs"] = merged


# --------------------------------------------------------------------------- in-process use (tests)


def task_functions(nb: NotebookNode, name: str = "notebook") -> dict[str, Callable]:
    """Run a solution's or exercise's code cells in this process, check cells left out, and
    return ``{task: the function its check cell names}``.

    For self-tests: it avoids a kernel. Lines starting with ``%`` or ``!`` (IPython
    magics and shell escapes) are dropped; a notebook's read-only cells should be light.
    """
    ns: dict = {"__name__": "__course_notebook__"}
    wanted: dict[str, str] = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        ct = check_task(cell)
        if ct is not None:
            wanted[ct[0]] = ct[1]
            continue
        source = "\n".join(l for l in cell.source.split("\n") if not l.lstrip().startswith(("%", "!")))
        exec(compile(source, f"<{name} cell {i}>", "exec"), ns)
    missing = [f for f in wanted.values() if f not in ns]
    if missing:
        raise NotebookError(f"{name}: the check cells name {missing}, which no cell defines")
    return {task: ns[fn] for task, fn in wanted.items()}
