"""Checks decided in the grader: the learner's function runs in the kernel, the verdict outside it.

While ``minillm grade`` grades a task, the registered check function runs **in the grader
process**. The learner's function reaches it as a :class:`RemoteFunction`: calling it sends the
arguments to the learner's kernel (grader → kernel is the trusted direction: ``torch.save``
bytes in a code string), :func:`serve` calls the learner's function there under the usual
:class:`~minillm.course.checks.learner._Learner` wrapper (quiet, watched for references) and
sends back the result, and the arguments as the call left them, as plain data
(:mod:`minillm.course.protocol`). The grader rebuilds fresh exact-type values, copies mutated
arguments back into its own, and the check's comparisons run on those. Only the display output
carrying this call's random ``nonce``, on the reply to this very request, is read; nothing else
the kernel prints or publishes counts.

Rank code (lessons 10-12): a check calls ``run_ranks(rank_fn, p, fn, ...)``; with a remote
``fn`` the whole simulated run (the check's module-level ``rank_fn``, the communicator, the
learner's function) happens in the kernel, and the RunResult and message logs come back as
plain data. ``rank_fn`` returns only what the learner's code produced (outputs, buffers filled in
place) and the simulator's record (message logs, traces, the simulated clock); every value the
check compares them with, it computes itself, here in the grader, from inputs it draws with the
same salted seeds. The record still comes from the kernel: a learner who patches the simulator
inside the kernel could forge a communication pattern or a time, never a value. Static analysis
(:mod:`minillm.course.static`) refuses the usual ways to patch; the residual risk is documented
in ``minillm/course/README.md``.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import secrets
import warnings
from typing import Any, Callable

from minillm.course.checks import CheckFailure, describe, get_task
from minillm.course.checks.learner import _LearnerError, _NotAttempted, _UsedReference, salted_seeds, shorten
from minillm.course.protocol import OPAQUE, PlainDataError, encode, loads

__all__ = ["REPLY_MIME", "KernelLost", "RemoteFunction", "serve", "call_code"]

#: The MIME type of :func:`serve`'s reply (a JSON string with the call's nonce).
REPLY_MIME = "application/vnd.minillm.reply.v1"


class KernelLost(BaseException):
    """The kernel timed out or died during a remote call: ``status`` is "timeout" or "dead".

    A BaseException, so that no check's ``except Exception`` swallows it.
    """

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


# --------------------------------------------------------------------------- in the kernel


def serve(nonce: str, task_id: str, get_fn: Callable[[], Any], payload: str) -> None:
    """Kernel side of one call: run the learner's function, publish the plain-data reply with ``nonce``."""
    try:
        reply = _serve(task_id, get_fn, payload)
    except BaseException as e:  # noqa: BLE001 - even a SystemExit of the learner becomes a reply
        reply = {"raise": "failed", "message": f"grading your function failed: {type(e).__name__}: {shorten(str(e), 120)}"}
    text = json.dumps({"nonce": nonce, "reply": reply})
    from IPython.display import publish_display_data

    publish_display_data({REPLY_MIME: text})


_REFS: dict[str, dict] = {}


def _serve(task_id: str, get_fn: Callable[[], Any], payload: str) -> dict:
    import torch

    from minillm.course.checks import _is_reference, _references
    from minillm.course.checks.learner import _Learner

    spec = torch.load(io.BytesIO(base64.b64decode(payload)), weights_only=False)
    try:
        fn = get_fn()
    except NameError as e:
        return {"raise": "failed", "message": f"{e}: run its answer cell (and keep the function's name)"}
    task = get_task(task_id)
    if not callable(fn):
        return {"raise": "failed", "message": f"expected your function, got {describe(fn)}; pass the function itself, without ()"}
    if task_id not in _REFS:  # resolved once per kernel: a check calls the function many times
        _REFS[task_id] = _references(task)
    refs = _REFS[task_id]
    ref = _is_reference(fn, refs)
    if ref:
        return {"raise": "failed", "message": f"this is the reference {ref}, not your own code: 0 points; pass the function you wrote"}
    learner = _Learner(fn, refs)
    args, kwargs = spec["args"], spec.get("kwargs", {})
    with salted_seeds(spec["salt"]), torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(spec.get("seed", 0))
        try:
            if spec["mode"] == "call":
                out = learner(*args, **kwargs)
            else:
                from minillm.course.checks.rankcode import run_ranks

                mod, name = spec["rank_fn"]
                if not mod.startswith("minillm.course.checks."):
                    raise ValueError(f"rank function {mod}.{name} is not a check's")
                rank_fn = getattr(importlib.import_module(mod), name)
                out = run_ranks(rank_fn, spec["world_size"], learner, *args, cluster=spec.get("cluster"))
        except _NotAttempted:
            return {"raise": "not_attempted"}
        except _UsedReference as e:
            return {"raise": "reference", "message": str(e)}
        except _LearnerError as e:
            return {"raise": "learner", "message": str(e)}
        except CheckFailure as e:
            unset = CheckFailure._UNSET
            return {"raise": "check", "what": e.what, "hint": e.hint, "stray": _stray_ranks(),
                    "got": None if e.got is unset else str(e.got), "expected": None if e.expected is unset else str(e.expected)}
        except Exception as e:
            return {"raise": "other", "message": f"{type(e).__name__}: {shorten(str(e), 120)}", "stray": _stray_ranks()}
    try:
        return {"out": encode(out), "args": encode([args, kwargs], lenient=True), "stray": _stray_ranks()}
    except PlainDataError as e:
        return {"raise": "failed", "message": f"your function returned {describe(out)}, which the grader cannot use: {e}"}


def _stray_ranks() -> int:
    """Simulated ranks still alive after a run (stuck in a C call, say): the grader then restarts the kernel."""
    import threading

    return sum(1 for t in threading.enumerate() if t.name.startswith("sim-rank-") and t.is_alive())


# --------------------------------------------------------------------------- in the grader


def call_code(nonce: str, task_id: str, expr: str, payload: str) -> str:
    """The code string the grader executes in the kernel for one call."""
    return (f"__import__('minillm.course.remote', fromlist=['serve']).serve("
            f"{nonce!r}, {task_id!r}, lambda: ({expr}), {payload!r})")


class RemoteFunction:
    """Stands in the grader for the learner's function, which runs in the kernel.

    ``execute(code) -> list of outputs`` runs code in the kernel (raising :class:`KernelLost`);
    ``expr`` names the learner's function there (the release's check cell's second argument);
    ``salt`` is the grader's secret per-run seed (see :func:`~minillm.course.checks.learner.salted_seeds`).
    """

    _minillm_remote = True

    def __init__(self, execute: Callable[[str], list], task_id: str, expr: str, salt: int) -> None:
        self.execute, self.task_id, self.expr, self.salt = execute, task_id, expr, salt
        self.calls = 0
        self.stray = False  # a rank of the learner's was left running: the kernel must be restarted

    def __repr__(self) -> str:
        return f"<your {self.expr}>"

    def __call__(self, *args, **kwargs):
        out, after = self._trip({"mode": "call", "args": args, "kwargs": kwargs, "seed": 0})
        _write_back([args, kwargs], after)
        return out

    def remote_ranks(self, rank_fn: Callable, world_size: int, args: tuple, cluster: Any = None):
        """``run_ranks(rank_fn, world_size, self, *args)`` in the kernel; returns the RunResult as plain data."""
        spec = {"mode": "ranks", "rank_fn": (rank_fn.__module__, rank_fn.__qualname__), "world_size": world_size,
                "args": args, "cluster": cluster, "seed": 0}
        out, after = self._trip(spec)
        _write_back([args, {}], after)
        return out

    def _trip(self, spec: dict):
        import torch

        spec["salt"] = self.salt
        buf = io.BytesIO()
        torch.save(spec, buf)
        payload = base64.b64encode(buf.getvalue()).decode("ascii")
        nonce = secrets.token_hex(16)
        self.calls += 1
        outputs = self.execute(call_code(nonce, self.task_id, self.expr, payload))
        reply = _find_reply(outputs, nonce)
        if reply is None:
            raise CheckFailure("your function gave the grader no answer",
                               hint="the kernel printed no reply for this call; do not replace the grader's functions")
        kind = reply.get("raise") if isinstance(reply, dict) else "bad"
        if isinstance(reply, dict) and reply.get("stray"):
            self.stray = True
        if kind is None:
            try:
                out = loads(json.dumps(reply.get("out")))
                after = loads(json.dumps(reply.get("args")))
            except PlainDataError as e:
                raise CheckFailure(f"your function's result could not be read: {e}") from None
            return out, after
        message = str(reply.get("message", "")) if isinstance(reply, dict) else ""
        if kind == "not_attempted":
            raise _NotAttempted()
        if kind == "reference":
            raise _UsedReference(message)
        if kind == "learner":
            raise _LearnerError(message)
        if kind == "check":
            kw = {k: str(reply[k]) for k in ("got", "expected") if reply.get(k) is not None}
            hint = reply.get("hint")
            raise CheckFailure(str(reply.get("what", "")), hint=str(hint) if hint else None, **kw)
        if kind == "other":
            raise RuntimeError(message)
        raise CheckFailure(message or "your function's reply could not be read")


def _find_reply(outputs: list, nonce: str) -> Any:
    """The reply that carries ``nonce``, from the outputs of this call only; the first one counts."""
    for o in outputs:
        if not isinstance(o, dict) or o.get("output_type") not in ("display_data", "execute_result"):
            continue
        text = o.get("data", {}).get(REPLY_MIME)
        if not isinstance(text, str):
            continue
        try:
            msg = json.loads(text)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("nonce") == nonce:
            return msg.get("reply")
    return None


def _write_back(orig: Any, new: Any) -> None:
    """Copy what the call did to its arguments (filled in place) into the grader's own objects."""
    import torch

    if new is OPAQUE:
        return
    if isinstance(orig, torch.Tensor) and isinstance(new, torch.Tensor):
        if new.shape == orig.shape and new.dtype == orig.dtype:
            with torch.no_grad():
                orig.copy_(new)
    elif isinstance(orig, list) and isinstance(new, list):
        if len(orig) == len(new):
            for i, (a, b) in enumerate(zip(orig, new)):
                if isinstance(a, (torch.Tensor, list, dict, tuple)):
                    _write_back(a, b)
                elif b is not OPAQUE:
                    orig[i] = b
        else:
            orig[:] = [v for v in new if v is not OPAQUE]
    elif isinstance(orig, tuple) and isinstance(new, tuple) and len(orig) == len(new):
        for a, b in zip(orig, new):
            _write_back(a, b)
    elif isinstance(orig, dict) and isinstance(new, dict):
        for k, v in new.items():
            if k in orig and isinstance(orig[k], (torch.Tensor, list, dict, tuple)):
                _write_back(orig[k], v)
            elif v is not OPAQUE:
                orig[k] = v
