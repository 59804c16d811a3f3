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

The gloo launcher owns the rendezvous: it opens a ``TCPStore`` on port 0, so the OS
picks a free port (never a fixed one), forks the ranks, and watches them. A rank that
raises stops the run (the error names the rank); a rank stuck waiting longer than
``timeout`` seconds stops it with a diagnostic of who arrived where.
"""

from __future__ import annotations

import contextlib
import ctypes
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
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from .comm import (
    Comm,
    CollectiveMismatchError,
    CommTimeoutError,
    MemoryLedger,
    RankError,
    RunResult,
    Work,
    check_peer,
    check_tensor,
    normalize_op,
)
from .sim import ClusterSpec, _check_group_ranks, _check_list, run_sim

__all__ = ["run", "DistComm", "init_torchrun", "torchrun_main", "BACKENDS"]

BACKENDS = ("sim", "gloo")

_KINDS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "barrier", "new_group")
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
           torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64, torch.complex128)
_OPS = ("sum", "avg", "max", "min")
_MAX_DIMS = 6
_HEADER = 5 + _MAX_DIMS  # kind, dtype, ndim, numel, op-or-src, dims...


# --------------------------------------------------------------------------- shared status (for diagnostics)


class _Status:
    """What each rank is doing, in shared memory, so the launcher can explain a hang."""

    WIDTH = 120

    def __init__(self, ctx, world_size: int) -> None:
        self.world_size = world_size
        self.now = ctx.Array(ctypes.c_char, world_size * self.WIDTH, lock=False)
        self.last = ctx.Array(ctypes.c_char, world_size * self.WIDTH, lock=False)
        self.since = ctx.Array(ctypes.c_double, world_size, lock=False)
        for r in range(world_size):
            self.since[r] = -1.0
            self._put(self.now, r, "starting")
            self._put(self.last, r, "none")

    def _put(self, arr, r: int, text: str) -> None:
        b = text.encode()[: self.WIDTH - 1].ljust(self.WIDTH, b"\0")
        arr[r * self.WIDTH : (r + 1) * self.WIDTH] = b

    def _get(self, arr, r: int) -> str:
        return bytes(arr[r * self.WIDTH : (r + 1) * self.WIDTH]).split(b"\0", 1)[0].decode(errors="replace")

    def enter(self, r: int, what: str) -> None:
        self._put(self.now, r, what)
        self.since[r] = time.monotonic()

    def leave(self, r: int, done: str) -> None:
        self.since[r] = -1.0
        self._put(self.now, r, "running its own code")
        self._put(self.last, r, done)

    def stuck(self, timeout: float) -> int | None:
        now = time.monotonic()  # system-wide on Linux and macOS, and immune to wall-clock jumps
        for r in range(self.world_size):
            since = self.since[r]  # read once: the rank may leave (set -1) between two reads
            if since >= 0 and now - since > timeout:
                return r
        return None

    def diagnose(self, finished: set[int]) -> str:
        lines, waits = [], {}
        for r in range(self.world_size):
            w = self._get(self.now, r)
            if w.startswith("waiting in ") and r not in finished:
                waits.setdefault(w[len("waiting in "):], []).append(r)
        for op, arrived in waits.items():
            missing = [r for r in range(self.world_size) if r not in arrived]
            if " to rank " not in op and " from rank " not in op:
                lines.append(f"  {op}: ranks {arrived} arrived, ranks {missing} never arrived")
        for r in range(self.world_size):
            what = "finished (its function returned)" if r in finished else self._get(self.now, r)
            lines.append(f"  rank {r}: {what}; last completed comm op: {self._get(self.last, r)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- the communicator


class DistComm(Comm):
    """The :class:`Comm` interface over ``torch.distributed`` (gloo, or NCCL under torchrun).

    ``group`` is a torch process group (None for the default one) and ``ranks`` its
    members' global ranks. ``check`` exchanges a header before each collective to
    catch mismatches (one extra tiny collective; turn it off for speed).
    """

    def __init__(
        self,
        group: Any = None,
        ranks: Sequence[int] | None = None,
        check: bool = True,
        device: torch.device | str = "cpu",
        status: _Status | None = None,
        t0: float | None = None,
    ) -> None:
        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialized; use run(..., backend='gloo') or init_torchrun()")
        self._group = group
        self.ranks = tuple(ranks) if ranks is not None else tuple(range(dist.get_world_size()))
        self.rank = self.ranks.index(dist.get_rank())
        self.world_size = len(self.ranks)
        self.backend = dist.get_backend(group)
        self.device = torch.device(device)
        self._check = check
        self._status = status
        self._t0 = time.perf_counter() if t0 is None else t0
        self._seq = 0
        self.memory = MemoryLedger(clock=lambda: self.clock)
        self.group_name = "world" if group is None else f"group{list(self.ranks)}"

    @property
    def clock(self) -> float:
        return time.perf_counter() - self._t0

    @contextlib.contextmanager
    def _op(self, what: str):
        g = self.ranks[self.rank]
        if self._status is not None:
            self._status.enter(g, f"waiting in {what}")
        yield
        if self._status is not None:
            self._status.leave(g, what)

    # ------------------------------------------------------------------ the header check

    def _header(self, kind: str, t: Tensor | None, extra: int = 0) -> None:
        """All-gather a small int64 header and raise if any rank disagrees."""
        seq = self._seq
        self._seq += 1
        if not self._check or self.world_size == 1:
            return
        h = torch.full((_HEADER,), -1, dtype=torch.int64, device=self.device)
        h[0] = _KINDS.index(kind)
        h[4] = extra
        if t is not None:
            h[1] = _DTYPES.index(t.dtype) if t.dtype in _DTYPES else 99
            h[2] = t.dim()
            h[3] = t.numel()
            dims = list(t.shape)[:_MAX_DIMS]
            if dims:
                h[5 : 5 + len(dims)] = torch.tensor(dims, dtype=torch.int64)
        got = [torch.empty_like(h) for _ in range(self.world_size)]
        with self._op(f"{kind} #{seq} on {self.group_name}"):
            dist.all_gather(got, h, group=self._group)
        rows = [g.tolist() for g in got]
        if all(r == rows[0] for r in rows):
            return
        g = self.ranks
        where = f"collective #{seq} on {self.group_name}"
        if len({r[0] for r in rows}) > 1:
            who = ", ".join(f"rank {g[i]} called {_KINDS[r[0]]}" for i, r in enumerate(rows))
            raise CollectiveMismatchError(f"{where}: {who}; every rank of a group must call the same collectives in the same order")

        def shape(r):
            return str(r[5 : 5 + min(r[2], _MAX_DIMS)]) if r[2] >= 0 else "-"

        fields = [
            ("dtype", lambda r: str(_DTYPES[r[1]]) if 0 <= r[1] < len(_DTYPES) else "?"),
            ("shape", lambda r: f"{shape(r)} ({r[3]} elements)"),
            ("op" if kind in ("all_reduce", "reduce_scatter") else "src" if kind == "broadcast" else "ranks", lambda r: str(r[4])),
        ]
        for name, f in fields:
            vals = [f(r) for r in rows]
            if len(set(vals)) > 1:
                if name == "op":
                    vals = [_OPS[r[4]] for r in rows]
                who = ", ".join(f"rank {g[i]} has {v}" for i, v in enumerate(vals))
                raise CollectiveMismatchError(
                    f"{kind} ({where}): the {name} differs across ranks: {who}; every rank must pass the same {name}"
                )
        raise CollectiveMismatchError(f"{kind} ({where}): the ranks' arguments differ: {rows}")

    # ------------------------------------------------------------------ collectives

    def all_reduce(self, tensor: Tensor, op: str = "sum") -> Tensor:
        check_tensor("tensor", tensor)
        op = normalize_op(op)
        if op == "avg" and not tensor.is_floating_point():
            raise ValueError(f"op='avg' needs a floating-point tensor, got {tensor.dtype}; use op='sum' and divide")
        self._header("all_reduce", tensor, _OPS.index(op))
        red = {"sum": dist.ReduceOp.SUM, "avg": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
        with torch.no_grad(), self._op(f"all_reduce #{self._seq - 1} on {self.group_name}"):
            buf = tensor if tensor.is_contiguous() else tensor.contiguous()
            dist.all_reduce(buf, op=red, group=self._group)  # gloo has no AVG: sum, then divide
            if op == "avg":
                buf /= self.world_size
            if buf is not tensor:
                tensor.copy_(buf)
        return tensor

    def all_gather(self, tensor_list: list[Tensor], tensor: Tensor) -> list[Tensor]:
        check_tensor("tensor", tensor)
        _check_list("tensor_list", tensor_list, self.world_size, tensor)
        self._header("all_gather", tensor)
        with torch.no_grad(), self._op(f"all_gather #{self._seq - 1} on {self.group_name}"):
            outs = [t if t.is_contiguous() else torch.empty_like(t, memory_format=torch.contiguous_format) for t in tensor_list]
            dist.all_gather(outs, tensor.contiguous(), group=self._group)
            for dst, src in zip(tensor_list, outs):
                if dst is not src:
                    dst.copy_(src)
        return tensor_list

    def reduce_scatter(self, output: Tensor, input_list: list[Tensor], op: str = "sum") -> Tensor:
        check_tensor("output", output)
        _check_list("input_list", input_list, self.world_size, output)
        op = normalize_op(op)
        self._header("reduce_scatter", output, _OPS.index(op))
        # Built from all_reduce + slice: gloo's native reduce_scatter varies across
        # torch versions. It moves twice the data of a ring reduce-scatter.
        red = {"sum": dist.ReduceOp.SUM, "avg": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
        with torch.no_grad(), self._op(f"reduce_scatter #{self._seq - 1} on {self.group_name}"):
            flat = torch.cat([t.reshape(-1) for t in input_list])
            dist.all_reduce(flat, op=red, group=self._group)
            n = output.numel()
            mine = flat[self.rank * n : (self.rank + 1) * n].view(output.shape)
            if op == "avg":
                mine = mine / self.world_size
            output.copy_(mine)
        return output

    def broadcast(self, tensor: Tensor, src: int = 0) -> Tensor:
        check_tensor("tensor", tensor)
        check_peer("src", src, self.rank, self.world_size, allow_self=True)
        self._header("broadcast", tensor, src)
        with torch.no_grad(), self._op(f"broadcast #{self._seq - 1} on {self.group_name}"):
            buf = tensor if tensor.is_contiguous() else tensor.contiguous()
            dist.broadcast(buf, src=self.ranks[src], group=self._group)
            if buf is not tensor:
                tensor.copy_(buf)
        return tensor

    def barrier(self) -> None:
        self._header("barrier", None)
        with self._op(f"barrier #{self._seq - 1} on {self.group_name}"):
            dist.barrier(group=self._group)

    def new_group(self, ranks: Sequence[int]) -> "DistComm | None":
        ranks = _check_group_ranks(ranks, self.world_size)
        digest = 0
        for r in ranks:  # a polynomial hash of the list, so the header catches disagreement
            digest = (digest * 1_000_003 + r + 1) % (2**61 - 1)
        self._header("new_group", None, digest)
        if self.rank not in ranks:
            return None
        global_ranks = [self.ranks[r] for r in ranks]
        # Only members call: use_local_synchronization lets non-members stay out (torch >= 2.1).
        group = dist.new_group(global_ranks, use_local_synchronization=True)
        return DistComm(group, global_ranks, self._check, self.device, self._status, self._t0)

    # ------------------------------------------------------------------ point-to-point

    def isend(self, tensor: Tensor, dst: int) -> Work:
        check_tensor("tensor", tensor)
        check_peer("dst", dst, self.rank, self.world_size)
        buf = tensor.detach().contiguous()
        return _DistWork(self, dist.isend(buf, dst=self.ranks[dst], group=self._group), f"send to rank {self.ranks[dst]}")

    def irecv(self, tensor: Tensor, src: int) -> Work:
        check_tensor("tensor", tensor)
        check_peer("src", src, self.rank, self.world_size)
        if tensor.is_contiguous():
            return _DistWork(self, dist.irecv(tensor.data, src=self.ranks[src], group=self._group), f"recv from rank {self.ranks[src]}")
        buf = torch.empty_like(tensor, memory_format=torch.contiguous_format)
        return _DistWork(self, dist.irecv(buf, src=self.ranks[src], group=self._group), f"recv from rank {self.ranks[src]}", (buf, tensor))


class _DistWork(Work):
    def __init__(self, comm: DistComm, work: Any, what: str, copy_back: tuple | None = None) -> None:
        self.comm, self.work, self.what, self.copy_back = comm, work, what, copy_back
        self.done = False

    def wait(self) -> None:
        if self.done:
            return
        with self.comm._op(f"{self.what} on {self.comm.group_name}"):
            self.work.wait()
        if self.copy_back is not None:
            with torch.no_grad():
                self.copy_back[1].copy_(self.copy_back[0])
        self.done = True


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
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be a positive int, e.g. world_size=4")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; use one of {BACKENDS} (or torchrun_main under torchrun)")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout={timeout!r} must be a positive number of seconds, e.g. timeout=60")
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
