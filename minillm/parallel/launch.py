"""Run rank code: ``run(fn, world_size, backend="sim"|"gloo")``, the real backend, and the torchrun entry point.

The same ``fn(comm, *args)`` runs three ways:

- ``run(fn, 4)``: four simulated ranks in this process (:mod:`minillm.parallel.sim`);
- ``run(fn, 2, backend="gloo")``: two real processes talking through
  ``torch.distributed`` with the gloo backend over localhost;
- ``torchrun --nproc_per_node N script.py`` with ``torchrun_main(fn)`` in the
  script: one process per GPU (NCCL) or CPU slot (gloo), on one machine or many.

:class:`DistComm` adapts ``torch.distributed`` to the :class:`~minillm.parallel.comm.Comm`
interface. Before every collective it exchanges a small header (which collective,
dtype, shape, op, root), so a mismatch raises a clear error on every rank instead
of hanging or silently mixing data. gloo has no reduce-scatter on every torch
version, so ``reduce_scatter`` is built from ``all_reduce`` and a slice.

:class:`~minillm.parallel.distcomm.DistComm` (its own module) adapts ``torch.distributed``
to the :class:`~minillm.parallel.comm.Comm` interface. The gloo launcher owns the rendezvous: it opens a ``TCPStore`` on port 0, so the OS
picks a free port (never a fixed one), forks the ranks, and watches them. A rank that
raises stops the run (the error names the rank); a rank stuck waiting longer than
``timeout`` seconds stops it with a diagnostic of who arrived where.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import multiprocessing as mp
import os
import queue
import re
import sys
import time
import traceback
import warnings
from typing import Any, Callable

import torch
import torch.distributed as dist

from minillm.validate import check_int, check_number

from .cluster import ClusterSpec
from .comm import CollectiveMismatchError, CommTimeoutError, MemoryLedger, RankError, RunResult
# DistComm lives in .distcomm; importable from here as before.
from .distcomm import DistComm, _Status
from .sim import run_sim

__all__ = ["run", "DistComm", "init_torchrun", "torchrun_main", "BACKENDS"]

BACKENDS = ("sim", "gloo")


# --------------------------------------------------------------------------- the gloo launcher


def _gloo_child(rank, world_size, port, fn, args, kwargs, q, status, timeout, check, threads) -> None:
    torch.set_num_threads(threads)
    try:
        td = datetime.timedelta(seconds=timeout + 5)
        store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=td)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=td)
        comm = DistComm(None, check=check, status=status)
        status.leave(rank, "none")
        result = fn(comm, *args, **kwargs)
        buf = io.BytesIO()
        torch.save({"result": result, "memory": comm.memory}, buf)
        q.put((rank, "ok", buf.getvalue()))
    except BaseException as e:  # noqa: BLE001 - report everything, then exit
        kind = "mismatch" if isinstance(e, CollectiveMismatchError) else "timeout" if isinstance(e, CommTimeoutError) else "error"
        q.put((rank, kind, (type(e).__name__, str(e), traceback.format_exc())))
        return
    with contextlib.suppress(Exception):
        dist.destroy_process_group()


_SECONDARY = re.compile(r"Connection (reset|closed) by peer|gloo/transport|Broken pipe|Socket Timeout", re.I)


def _as_error(rank: int, kind: str, payload) -> BaseException:
    name, msg, tb = payload
    if kind == "mismatch":
        return CollectiveMismatchError(msg)
    if kind == "timeout":
        return CommTimeoutError(msg)
    return RankError(rank, name, msg, tb)


def _root_cause(rank, kind, payload, q, procs, results) -> BaseException:
    """The error to report: prefer the rank that failed first over peers that lost their connection to it."""
    if kind != "error" or not _SECONDARY.search(payload[1]):
        return _as_error(rank, kind, payload)
    # A peer's socket error is a symptom; give the cause half a second to show up:
    # another rank's own error, or a process that died without a word.
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        try:
            r2, k2, p2 = q.get(timeout=0.05)
        except queue.Empty:
            continue
        if k2 != "ok" and (k2 != "error" or not _SECONDARY.search(p2[1])):
            return _as_error(r2, k2, p2)
        if k2 == "ok":
            results[r2] = None
    for r, p in enumerate(procs):
        if p.exitcode not in (None, 0) and r not in results and r != rank:
            return RankError(r, "ProcessExit", f"exited with code {p.exitcode} without returning a result")
    return _as_error(rank, kind, payload)


def _run_gloo(fn, world_size, args, kwargs, timeout, start_method, check) -> RunResult:
    method = start_method or ("fork" if sys.platform.startswith("linux") else "spawn")
    ctx = mp.get_context(method)
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=timeout + 5))  # port 0: the OS picks a free one
    q = ctx.Queue()
    status = _Status(ctx, world_size)
    # One intra-op thread per rank: a forked child must not use the parent's OpenMP
    # thread pool (libgomp is not fork-safe: a second thread would hang forever).
    threads = 1
    t0 = time.perf_counter()
    procs = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        for r in range(world_size):
            p = ctx.Process(target=_gloo_child, name=f"gloo-rank-{r}", daemon=True,
                            args=(r, world_size, store.port, fn, args, kwargs, q, status, timeout, check, threads))
            p.start()
            procs.append(p)
    results: dict[int, Any] = {}
    ledgers: dict[int, MemoryLedger] = {}
    try:
        while len(results) < world_size:
            try:
                rank, kind, payload = q.get(timeout=0.05)
            except queue.Empty:
                dead = [r for r, p in enumerate(procs) if p.exitcode is not None and r not in results]
                if dead:
                    try:  # its last message may still be in flight
                        rank, kind, payload = q.get(timeout=0.5)
                    except queue.Empty:
                        r = dead[0]
                        raise RankError(r, "ProcessExit", f"exited with code {procs[r].exitcode} without returning a result") from None
                else:
                    r = status.stuck(timeout)
                    if r is not None:
                        raise CommTimeoutError(
                            f"timed out after {timeout:g} s: rank {r} is {status._get(status.now, r)}.\n"
                            f"{status.diagnose(set(results))}\n"
                            f"A rank that never arrives is either slow (raise timeout=) or skipped the call."
                        )
                    continue
            if kind == "ok":
                got = torch.load(io.BytesIO(payload), weights_only=False)
                results[rank], ledgers[rank] = got["result"], got["memory"]
                continue
            raise _root_cause(rank, kind, payload, q, procs, results)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)
        q.close()
        del store
    return RunResult(
        results=[results[r] for r in range(world_size)],
        backend="gloo",
        world_size=world_size,
        memory=[ledgers[r] for r in range(world_size)],
        wall_time=time.perf_counter() - t0,
    )


def run(
    fn: Callable,
    world_size: int,
    *args: Any,
    backend: str = "sim",
    timeout: float = 60.0,
    cluster: ClusterSpec | None = None,
    start_method: str | None = None,
    check: bool = True,
    **kwargs: Any,
) -> RunResult:
    """Run ``fn(comm, *args, **kwargs)`` on every rank of a ``world_size`` group.

    backend: 'sim' (threads, logical clocks; ``cluster`` sets the devices and links)
    or 'gloo' (real processes through torch.distributed; ``start_method`` defaults to
    'fork' on Linux, so ``fn`` may be a closure; with 'spawn' it must be importable).
    timeout: seconds a rank may wait in one communication call before the run stops.
    check: (gloo) exchange a header before each collective to catch mismatches.
    The names ``backend``, ``timeout``, ``cluster``, ``start_method`` and ``check``
    are taken by ``run``; other keyword arguments go to ``fn``.

    Returns a :class:`RunResult`. Raises :class:`RankError` if a rank raised,
    :class:`CollectiveMismatchError` if ranks disagreed in a collective, and
    :class:`CommTimeoutError` if a rank never arrived.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function fn(comm, *args), got {type(fn).__name__}")
    check_int("world_size", world_size)
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; use one of {BACKENDS} (or torchrun_main under torchrun)")
    check_number("timeout", timeout, strict=True)
    if backend == "sim":
        return run_sim(fn, world_size, args, kwargs, cluster, timeout)
    if cluster is not None:
        raise ValueError("cluster= only applies to backend='sim'; real backends run at the machine's own speed")
    if not dist.is_available() or not dist.is_gloo_available():
        raise RuntimeError("this torch build has no gloo backend; use backend='sim'")
    if world_size > 64:
        raise ValueError(f"world_size={world_size} processes is too many for one machine; use backend='sim'")
    return _run_gloo(fn, world_size, args, kwargs, timeout, start_method, check)


# --------------------------------------------------------------------------- torchrun


def init_torchrun(backend: str | None = None, timeout: float = 1800.0, check: bool = True) -> DistComm:
    """Join the job that ``torchrun`` started (it sets RANK, WORLD_SIZE, MASTER_ADDR, ...); returns a Comm.

    backend defaults to 'nccl' when CUDA is available (one GPU per process, chosen by
    LOCAL_RANK) and 'gloo' otherwise. Run as a plain script (no RANK in the
    environment), it makes a world of one process, so the same script still works.
    """
    if dist.is_initialized():
        raise RuntimeError("torch.distributed is already initialized in this process; reuse DistComm() instead")
    td = datetime.timedelta(seconds=timeout)
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device("cpu")
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        dist.init_process_group(backend, timeout=td)
    else:  # a plain `python script.py`: a world of one, on a free port
        store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=td)
        dist.init_process_group(backend, store=store, rank=0, world_size=1, timeout=td)
    return DistComm(None, check=check, device=device)


def torchrun_main(fn: Callable, *args: Any, backend: str | None = None, check: bool = True, **kwargs: Any) -> Any:
    """``fn(comm, *args, **kwargs)`` on this process of a torchrun job; cleans up the process group after.

    In a script: ``if __name__ == "__main__": torchrun_main(train)``, then launch with
    ``torchrun --nproc_per_node 2 script.py`` (or plain ``python script.py`` for one process).
    """
    comm = init_torchrun(backend, check=check)
    try:
        return fn(comm, *args, **kwargs)
    finally:
        dist.destroy_process_group()
