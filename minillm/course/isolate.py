"""Keeping a submission away from the grader: worker processes, process-tree kills, the sandbox.

``minillm grade`` (the *main* process) never starts a learner's kernel itself. It starts
``--jobs`` **workers**, ``python -m minillm.course.worker`` with nothing on their command line,
and hands each submission to a free worker over a pipe. A worker:

* makes itself a **child subreaper** (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux): a process the
  kernel leaves behind, even a ``setsid`` daemon whose parent exited, is re-parented to the
  worker instead of to init;
* points its own stdin and stdout at ``/dev/null`` and keeps the pipes to the main process on
  private file descriptors that no child inherits, so a kernel cannot hold the main process's
  pipe open; every reply carries a secret token the main process sent before any kernel
  existed, so a line written into the pipe through ``/proc/<worker>/fd`` is refused;
* grades the submission (:func:`minillm.course.grade.grade_notebook`), then **kills every
  descendant** (:func:`kill_tree`: SIGKILL, reap, repeat until none is left) and only then
  sends the rows back.

The main process is a subreaper too: if a kernel kills its worker, the worker's orphans come
to the main process, which kills them, records an error row for that submission only, and
starts a new worker. The JSON and CSV are written after every worker has exited and
:func:`kill_tree` has found nothing left.

The main process and the workers make their ``/proc`` entries private
(:func:`hide_from_same_user`): a kernel cannot read their working directory, open files,
environment or memory there, and their command lines name no file.

What stays visible without ``--sandbox``: the kernel runs as the instructor's user, so it can
read the instructor's files by path (the ``solutions/`` folder, earlier gradebooks) and signal
the instructor's processes (a worker, the main process). ``--sandbox`` runs
each worker and its kernels under bubblewrap (:func:`sandbox_argv`): their own PID namespace
(the main process and the other workers are invisible and out of reach), no network, the whole
file system read-only with ``solutions/`` hidden and a private ``/tmp``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["become_subreaper", "hide_from_same_user", "descendants", "kill_tree", "Worker", "sandbox_argv",
           "sandbox_works", "SandboxError"]

_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36


class SandboxError(RuntimeError):
    """``--sandbox`` was asked for but bubblewrap cannot run here."""


def _prctl(option: int, value: int) -> bool:
    """Linux ``prctl(option, value)`` through libc; False where it fails or there is no prctl."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants (Linux); False where that is not possible."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def hide_from_same_user() -> bool:
    """Make this process's ``/proc`` entries private (Linux ``prctl(PR_SET_DUMPABLE, 0)``).

    Another process of the same user, such as a learner's kernel, can then no longer read this
    process's working directory, open files, environment or memory through ``/proc/<pid>/``
    (``cwd``, ``fd``, ``environ``, ``mem``: they need ptrace access, which a non-dumpable
    process refuses). The main process and the workers call it; a kernel is a new program
    (``execve``), which makes it dumpable again. Its own children and ``/proc/self`` are
    unaffected. False where it is not possible.
    """
    return _prctl(_PR_SET_DUMPABLE, 0)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process in ``/proc`` (empty where there is no ``/proc``)."""
    out = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ")"
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) >= 2:
            out[int(name)] = int(rest[1])
    return out


def descendants(pid: int | None = None) -> list[int]:
    """Every live descendant of ``pid`` (default: this process), from ``/proc``."""
    pid = os.getpid() if pid is None else pid
    parents = _parents()
    children: dict[int, list[int]] = {}
    for p, pp in parents.items():
        children.setdefault(pp, []).append(p)
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def kill_tree(pid: int | None = None, keep: set[int] | frozenset = frozenset(), rounds: int = 50) -> int:
    """SIGKILL every descendant of ``pid`` but ``keep`` and reap them; repeat until none is left.

    Returns how many were killed. Zombies of this process are reaped (``waitpid``); a process that
    forks faster than it is killed is caught by the next round.
    """
    pid = os.getpid() if pid is None else pid
    killed = 0
    for _ in range(rounds):
        found = [p for p in descendants(pid) if p not in keep]
        if not found:
            break
        for p in found:
            try:
                os.kill(p, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
        _reap(found)
    return killed


def _reap(pids) -> None:
    for p in pids:
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child (a grandchild killed above) or already reaped


# --------------------------------------------------------------------------- the sandbox


def sandbox_argv(root: Path, paths: list[Path]) -> list[str]:
    """The bubblewrap prefix for a worker: a read-only file system without ``root/solutions``, a private
    ``/tmp`` and ``/proc``, no network, its own PID namespace, killed with the main process.

    Raises :class:`SandboxError` when ``bwrap`` is not installed or cannot start here.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError(
            "--sandbox needs bubblewrap, which is not installed: install Debian's bubblewrap "
            "(apt-get install bubblewrap), or grade without --sandbox (see the threat model in minillm/course/README.md)"
        )
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--unshare-all", "--die-with-parent", "--new-session",
            "--setenv", "HOME", "/tmp", "--setenv", "IPYTHONDIR", "/tmp/.ipython",
            "--setenv", "JUPYTER_RUNTIME_DIR", "/tmp/.jupyter", "--setenv", "MPLCONFIGDIR", "/tmp/.mpl"]
    # The private /tmp would hide a course tree, a virtual environment or minillm itself that live
    # under /tmp (a CI checkout, say): those stay visible, read-only. Only minillm's own folder is
    # bound, never the checkout around it, so a checkout's solutions/ stays hidden.
    import minillm

    keep = [root, Path(sys.prefix), Path(sys.base_prefix), Path(minillm.__file__).parent]
    for d in dict.fromkeys(str(k.resolve()) for k in keep):
        if d.startswith("/tmp/"):
            argv += ["--ro-bind", d, d]
    solutions = (root / "solutions").resolve()
    if solutions.is_dir():
        argv += ["--tmpfs", str(solutions)]
    for p in paths:  # the submissions stay visible (read-only) under the private /tmp or the hidden solutions/
        p = p.resolve()
        argv += ["--ro-bind", str(p), str(p)]
    return argv + ["--"]


def sandbox_works(prefix: list[str]) -> str | None:
    """None if ``prefix + [python, -c, pass]`` runs; else what went wrong (user namespaces off, say)."""
    try:
        r = subprocess.run(prefix + [sys.executable, "-c", "pass"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if r.returncode == 0 else r.stderr.decode("utf-8", "replace").strip()[:300]


# --------------------------------------------------------------------------- workers (main side)


class Worker:
    """One worker process, graded submissions one at a time over private pipes."""

    def __init__(self, prefix: list[str] | None = None) -> None:
        self.prefix = prefix or []
        self.token = ""
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import secrets

        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "minillm.course.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1, start_new_session=True,
        )
        # A reply must carry this token: a kernel that opens the worker's pipe through /proc cannot know it.
        self.token = secrets.token_hex(16)
        self.proc.stdin.write(self.token + "\n")
        self.proc.stdin.flush()

    def grade(self, job: dict) -> dict:
        """Send ``job`` (path, root, timeout, label, static), return ``{"rows": [...]}`` or ``{"error": ...}``."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self.close(kill=True)
            return {"error": "the grader's worker process was killed while it graded this submission "
                             "(a signal from the submission's code?); 0 points, the other submissions are unaffected"}
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or reply.get("token") != self.token:
            self.close(kill=True)
            return {"error": "the grader's worker sent a reply it did not write (forged through /proc?); 0 points"}
        return reply

    def close(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        try:
            if kill:
                self.proc.kill()
            else:
                self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.proc = None
