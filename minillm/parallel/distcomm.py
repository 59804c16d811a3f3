"""``DistComm``: the :class:`~minillm.parallel.comm.Comm` interface over real ``torch.distributed``.

Used by the gloo launcher (:func:`minillm.parallel.run` with ``backend="gloo"``) and
under ``torchrun`` (gloo on CPUs, NCCL on GPUs). Before every collective it exchanges
a small header (which collective, dtype, shape, op, root), so a mismatch raises a
clear error on every rank instead of hanging or silently mixing data. gloo has no
reduce-scatter on every torch version, so ``reduce_scatter`` is built from
``all_reduce`` and a slice. :class:`_Status` keeps, in shared memory, what each
rank is doing, so the launcher can explain a hang.
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from .comm import (
    REDUCE_OPS,
    Comm,
    CollectiveMismatchError,
    MemoryLedger,
    Work,
    check_group_ranks,
    check_peer,
    check_tensor,
    check_tensor_list,
    normalize_op,
    who_has,
)

__all__ = ["DistComm"]

_KINDS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "barrier", "new_group")
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
           torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64, torch.complex128)
_MAX_DIMS = 6
_HEADER = 5 + _MAX_DIMS  # kind, dtype, ndim, numel, op-or-src, dims...


def _torch_op(op: str):
    """The ``torch.distributed.ReduceOp`` for one of :data:`~minillm.parallel.comm.REDUCE_OPS`.

    gloo has no AVG: 'avg' sums, and the caller divides by the world size once.
    """
    return {"sum": dist.ReduceOp.SUM, "avg": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]


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
            who = who_has([_KINDS[r[0]] for r in rows], g, "called")
            raise CollectiveMismatchError(f"{where}: {who}. Every rank of a group must call the same collectives in the same order.")

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
                    vals = [REDUCE_OPS[r[4]] for r in rows]
                who = who_has(vals, g)
                raise CollectiveMismatchError(
                    f"{kind} ({where}): the {name} differs across ranks: {who}. Every rank must pass the same {name}."
                )
        raise CollectiveMismatchError(f"{kind} ({where}): the ranks' arguments differ: {rows}")

    # ------------------------------------------------------------------ collectives

    def all_reduce(self, tensor: Tensor, op: str = "sum") -> Tensor:
        check_tensor("tensor", tensor)
        op = normalize_op(op)
        if op == "avg" and not tensor.is_floating_point():
            raise ValueError(f"op='avg' needs a floating-point tensor, got {tensor.dtype}; use op='sum' and divide")
        self._header("all_reduce", tensor, REDUCE_OPS.index(op))
        red = _torch_op(op)
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
        check_tensor_list("tensor_list", tensor_list, self.world_size, tensor)
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
        check_tensor_list("input_list", input_list, self.world_size, output)
        op = normalize_op(op)
        self._header("reduce_scatter", output, REDUCE_OPS.index(op))
        # Built from all_reduce + slice: gloo's native reduce_scatter varies across
        # torch versions. It moves twice the data of a ring reduce-scatter.
        red = _torch_op(op)
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
        ranks = check_group_ranks(ranks, self.world_size)
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
