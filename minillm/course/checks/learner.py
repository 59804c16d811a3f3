"""Calling the learner's function inside a check: quiet, watched for references, errors translated.

:class:`_Learner` wraps the function a check cell passes: its prints are dropped (per thread,
see :func:`_quiet`), a call of one of the task's references is caught with a profile hook, a
bare ``NotImplementedError`` means "not attempted", and any other exception becomes a
one-line message naming the learner's own line (:func:`_describe_exception`), shortened
without cutting a word (:func:`shorten`). The runner in :mod:`minillm.course.checks` turns
the private exceptions raised here into verdicts.
"""

from __future__ import annotations

import contextlib
import importlib
import linecache
import re
import sys
import sysconfig
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

__all__ = ["shorten", "salted_seeds"]


class _NotAttempted(Exception):
    pass


class _LearnerError(Exception):
    pass


class _UsedReference(Exception):
    pass


def _resolve(dotted: str) -> Any | None:
    """Import ``a.b.c.name`` (or an attribute chain such as ``a.b.Class.method``); None if absent."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _code_of(obj: Any):
    import inspect

    obj = inspect.unwrap(obj) if callable(obj) else obj
    if isinstance(obj, type):
        obj = getattr(obj, "forward", None) or getattr(obj, "__call__", None)
    obj = getattr(obj, "__func__", obj)
    return getattr(obj, "__code__", None)


_LIB_DIRS = tuple(
    str(Path(p).resolve())
    for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
) + (str(Path(__file__).resolve().parents[2]),)


def _is_learner_frame(filename: str) -> bool:
    if filename.startswith("<frozen") or filename.startswith("<string>"):
        return False
    try:
        resolved = str(Path(filename).resolve())
    except OSError:
        return True
    return not resolved.startswith(_LIB_DIRS)


_SENTENCE_END = re.compile(r"[.!?](?=\s)")


def shorten(text: str, n: int = 160, cap: int = 1000) -> str:
    """``text`` on one line, shortened for a verdict without ever cutting a word.

    Up to ``n`` characters it is kept whole. Longer, it ends at the last sentence end
    (``.``, ``!`` or ``?`` before a space) within ``n`` characters, followed by " …";
    with no sentence end there it is kept whole up to ``cap`` characters, and past ``cap``
    (a tensor printed into a message) it ends at the last space before ``cap`` with a note
    of how much was left out.
    """
    text = " ".join(str(text).split())
    if len(text) <= n:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, n)]
    if ends:
        return text[: ends[-1]] + " …"
    if len(text) <= cap:
        return text
    cut = text.rfind(" ", 0, cap)
    cut = cut if cut > 0 else cap
    return f"{text[:cut]} … ({len(text) - cut} more characters)"


def _describe_exception(exc: BaseException) -> str:
    """``ValueError: bad shape (your line 7: `x = q @ k`)``: the learner's innermost frame."""
    where = ""
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if _is_learner_frame(frame.f_code.co_filename):
            code = linecache.getline(frame.f_code.co_filename, lineno, frame.f_globals).strip()
            where = f" (in {frame.f_code.co_name}, line {lineno}" + (f": `{shorten(code, 70, cap=70)}`)" if code else ")")
    msg = shorten(str(exc))
    return f"{type(exc).__name__}" + (f": {msg}" if msg else "") + where


class _ThreadFilter:
    """Stands in for ``sys.stdout`` while learner code runs: drops what the silenced threads
    print and passes every other thread's output through to the real stream."""

    def __init__(self, target) -> None:
        self.target = target

    def write(self, s: str) -> int:
        if getattr(_quiet_local, "depth", 0):
            return len(s)
        return self.target.write(s)

    def flush(self) -> None:
        self.target.flush()

    def __getattr__(self, name: str):  # encoding, isatty, fileno, ... of the real stream
        return getattr(self.target, name)


_quiet_local = threading.local()
_quiet_lock = threading.Lock()
_quiet_users = 0
_quiet_saved = None


@contextlib.contextmanager
def _quiet():
    """Silence ``print`` in this thread only.

    ``contextlib.redirect_stdout`` swaps the process-wide ``sys.stdout``: when several
    simulated ranks (threads) call the learner's function at once, their swaps interleave
    and the wrong stream can be left behind. Here the first user installs one filter, each
    thread marks itself silent, and the last user puts the original stream back.
    """
    global _quiet_users, _quiet_saved
    with _quiet_lock:
        if _quiet_users == 0:
            _quiet_saved = sys.stdout
            sys.stdout = _ThreadFilter(sys.stdout)
        _quiet_users += 1
    _quiet_local.depth = getattr(_quiet_local, "depth", 0) + 1
    try:
        yield
    finally:
        _quiet_local.depth -= 1
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                if isinstance(sys.stdout, _ThreadFilter):  # unless someone replaced it meanwhile
                    sys.stdout = _quiet_saved
                _quiet_saved = None


_SIM_FILE = str(Path(__file__).resolve().parents[2] / "parallel" / "sim.py")
_watch_lock = threading.Lock()
_watchers: list[tuple] = []
_watch_saved: list = []


def _thread_profile(frame, event, arg):
    """The profile hook of threads started while a learner's function runs: a reference call counts for every
    learner call in progress. The simulator's rank threads (``sim-rank-N``, started by minillm, which may start
    while another rank already runs the learner's code) switch it off for themselves: their check code calls
    the simulator's collectives on purpose, and their calls of the learner's code are watched by :class:`_Learner`."""
    me = threading.current_thread()
    target = getattr(me, "_target", None)
    code = getattr(target, "__code__", None)
    if me.name.startswith("sim-rank-") and code is not None and code.co_filename == _SIM_FILE:
        sys.setprofile(None)
        return
    for watcher in list(_watchers):
        _record(watcher, frame, event, arg)


def _record(watcher: tuple, frame, event: str, arg) -> None:
    """Note in ``watcher = (codes, builtins, hits)`` a call of one of its references."""
    codes, builtins, hits = watcher
    if event == "call":
        name = codes.get(frame.f_code)
        if name:
            hits.append(name)
    elif event == "c_call" and id(arg) in builtins:
        hits.append(builtins[id(arg)])


def _watch_threads(watcher: tuple, on: bool) -> None:
    """Add or remove a learner call's watcher; ``threading.setprofile`` is set while any is active."""
    with _watch_lock:
        if on:
            if not _watchers:
                _watch_saved[:] = [threading.getprofile() if hasattr(threading, "getprofile") else None]
                threading.setprofile(_thread_profile)
            _watchers.append(watcher)
        else:
            if watcher in _watchers:
                _watchers.remove(watcher)
            if not _watchers:
                threading.setprofile(_watch_saved[0] if _watch_saved else None)


#: What a verdict names when the learner's code replaced or removed the reference watch.
_SWITCHED_OFF = "(your code switched off the grader's watch for it with sys.setprofile)"


class _Learner:
    """Calls the learner's function the way checks need: quiet, watched, with exceptions translated."""

    def __init__(self, fn: Callable, references: dict) -> None:
        self.fn = fn
        self._codes = {c: name for name, obj in references.items() if (c := _code_of(obj)) is not None}
        self._builtins = {id(obj): name for name, obj in references.items() if _code_of(obj) is None}

    def __call__(self, *args, **kwargs):
        hits: list[str] = []
        watcher = (self._codes, self._builtins, hits)

        def profile(frame, event, arg):
            _record(watcher, frame, event, arg)

        old = sys.getprofile()
        if old is _thread_profile:  # a rank thread started during another rank's call: not a learner's thread
            old = None
        _watch_threads(watcher, True)  # threads the learner starts during the call are watched too
        sys.setprofile(profile)
        try:
            with _quiet():
                out = self.fn(*args, **kwargs)
        except NotImplementedError as e:
            if not str(e):
                raise _NotAttempted() from None
            raise _LearnerError(_describe_exception(e)) from None
        except Exception as e:  # the learner's bug: report it, never a traceback from here
            if hits:
                raise _UsedReference(hits[0]) from None
            if sys.getprofile() is not profile:
                raise _UsedReference(_SWITCHED_OFF) from None
            raise _LearnerError(_describe_exception(e)) from None
        finally:
            still = sys.getprofile() is profile
            sys.setprofile(old)
            _watch_threads(watcher, False)
        if not still:
            raise _UsedReference(_SWITCHED_OFF)
        if hits:
            raise _UsedReference(hits[0])
        return out


def _mix(seed: int, salt: int) -> int:
    """A seed derived from a check's fixed ``seed`` and the grader's secret ``salt`` (0 ≤ result < 2**63)."""
    return (int(seed) * 6364136223846793005 + int(salt) * 1442695040888963407 + 1) % (2**63)


@contextlib.contextmanager
def salted_seeds(salt: int | None):
    """While grading, every seed a check sets is mixed with the grader's secret ``salt``.

    ``torch.manual_seed(s)`` and ``torch.Generator().manual_seed(s)`` (the ways checks seed their
    inputs) then draw from ``_mix(s, salt)``: fresh inputs for every grading run, so answers
    looked up from a table of the fixed-seed cases do not pass. ``salt=None`` changes nothing
    (the learner's own ``check()``, the tests). Process-wide while it lasts: the grader runs one
    check at a time.
    """
    if salt is None:
        yield
        return
    import torch

    orig_gen, orig_seed, orig_rseed = torch.Generator, torch.manual_seed, torch.random.manual_seed

    class SaltedGenerator(orig_gen):
        def manual_seed(self, seed):
            return orig_gen.manual_seed(self, _mix(seed, salt))

    def manual_seed(seed):
        return orig_seed(_mix(seed, salt))

    torch.Generator, torch.manual_seed, torch.random.manual_seed = SaltedGenerator, manual_seed, manual_seed
    try:
        yield
    finally:
        torch.Generator, torch.manual_seed, torch.random.manual_seed = orig_gen, orig_seed, orig_rseed
