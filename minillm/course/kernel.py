"""The learner's kernel while grading: one at a time, restartable, one cell (or one grader call) at a time.

Used by :mod:`minillm.course.grade`. Each cell gets a timeout (the release's set-up cells before the
first answer at least :data:`READONLY_TIMEOUT`), at most :data:`OUTPUT_CAP` characters of output are
kept per cell, and an ``exit()`` is reported as the death of the cell that asked for it.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from minillm.course.checks import GRADING_ENV, shorten
from minillm.course.notebooks import current_env_kernel_manager, kernel_env, notebook_client
from minillm.course.remote import REPLY_MIME, KernelLost

__all__ = ["GradingKernel", "OUTPUT_CAP", "MEMORY_LIMIT", "READONLY_TIMEOUT", "error_text", "check_call"]

#: Characters of output kept per cell; the rest is dropped with a note (a 100 MB print must not cost the grader).
OUTPUT_CAP = 100_000
#: Address space a learner's kernel may use (RLIMIT_AS, bytes); a kernel with torch and a lesson loaded
#: maps under 1 GB, so 8 GiB leaves room for honest work and stops a runaway allocation.
MEMORY_LIMIT = 8 * 2**30
#: Seconds the release's set-up cells (imports, data) get at least, on a loaded machine.
READONLY_TIMEOUT = 300


class GradingKernel:
    """One kernel at a time, restartable; runs single cells with a timeout."""

    def __init__(self, workdir: Path, timeout: int, cells: list[NotebookNode], memory: int | None = MEMORY_LIMIT) -> None:
        self.workdir, self.timeout, self.memory = workdir, timeout, memory
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
        self.client.start_new_kernel(env=kernel_env({GRADING_ENV: "1"}), preexec_fn=_limit_memory(self.memory))
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


def _limit_memory(limit: int | None):
    """A ``preexec_fn`` that caps the kernel's address space at ``limit`` bytes (None: no cap; not on Windows)."""
    def apply() -> None:
        try:
            import resource

            if limit:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass  # no RLIMIT_AS here: the per-cell timeout and output cap still hold

    return apply


def error_text(cell: NotebookNode) -> str:
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            text = f"{o.get('ename', 'Error')}: {o.get('evalue', '')}".strip().rstrip(":")
            text = re.sub(r"\x1b\[[0-9;]*m", "", text)
            return shorten(text, 200)
    return ""


def check_call(source: str) -> tuple[str, str]:
    """``check("NN.task", expr)`` in a release's check cell: the task id and the source of ``expr``."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "check"
                and len(node.args) == 2 and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            return node.args[0].value, ast.unparse(node.args[1])
    raise ValueError(f"the release's check cell {source.strip()[:60]!r} is not check(\"NN.task\", function)")
