"""The ``Comm`` interface: what rank code may call, on any backend.

Rank code is written once, as ``fn(comm, *args)``, against this small interface,
which mirrors ``torch.distributed`` (PyTorch docs, "Distributed communication
package"): point-to-point ``send``/``recv`` (and ``isend``/``irecv``), the
collectives ``all_reduce``, ``all_gather``, ``reduce_scatter``, ``broadcast`` and
``barrier``, and sub-groups through ``new_group``. Two backends implement it:

- :mod:`minillm.parallel.sim`: every rank is a thread of one process, with a
  logical clock, a trace of events and a memory ledger;
- :mod:`minillm.parallel.launch`: real processes through ``torch.distributed``
  (gloo on the CPU, NCCL on GPUs under ``torchrun``).

Semantics follow ``torch.distributed``: collectives work *in place* on the
tensors you pass, every rank of a group must call the same collectives in the same
order with tensors of the same shape and dtype, and ranks inside a group are
numbered ``0..group.world_size-1``. Unlike ``torch.distributed``, mistakes raise
at once: a shape mismatch names the ranks that disagree, and a rank that never
arrives produces a diagnostic instead of a hang.

This file also holds what both backends share: the error types, the memory
ledger, trace events and :class:`RunResult`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from minillm.validate import check_int, is_int, is_number

__all__ = [
    "Comm",
    "Work",
    "RunResult",
    "Event",
    "MemoryLedger",
    "CATEGORIES",
    "REDUCE_OPS",
    "normalize_op",
    "reduce_into_",
    "reduce_tensors",
    "RankError",
    "CollectiveMismatchError",
    "CommTimeoutError",
    "chunk_sizes",
]

# The model-state categories of the ZeRO paper (Rajbhandari et al. 2020, Sec. 3),
# plus the residual states it discusses (activations, temporary buffers).
CATEGORIES = ("parameters", "gradients", "optimizer", "activations", "comm")

REDUCE_OPS = ("sum", "avg", "max", "min")


# --------------------------------------------------------------------------- errors


class RankError(RuntimeError):
    """A rank raised an exception; the run was stopped.

    ``rank`` is the global rank that failed first, ``exc_type`` the name of its
    exception and ``rank_traceback`` its traceback as text (it may come from
    another process).
    """

    def __init__(self, rank: int, exc_type: str, message: str, rank_traceback: str = "") -> None:
        self.rank = rank
        self.exc_type = exc_type
        self.message = message
        self.rank_traceback = rank_traceback
        text = f"rank {rank} raised {exc_type}: {message}"
        if rank_traceback:
            text += f"\n--- traceback of rank {rank} ---\n{rank_traceback.rstrip()}"
        super().__init__(text)

    def __reduce__(self):  # keep it picklable with its fields
        return (type(self), (self.rank, self.exc_type, self.message, self.rank_traceback))


class CollectiveMismatchError(ValueError):
    """Ranks called a collective with different shapes, dtypes, ops or roots, or called different collectives."""


class CommTimeoutError(TimeoutError):
    """A collective or point-to-point call could not complete: some rank never arrived.

    The message says which ranks arrived and what every other rank was doing.
    """


# --------------------------------------------------------------------------- helpers


def chunk_sizes(n: int, world_size: int) -> list[int]:
    """Split ``n`` elements into ``world_size`` contiguous chunks, as ``torch.tensor_split``.

    The first ``n % world_size`` chunks get one extra element, so sizes differ by at
    most one (``np.array_split`` does the same). Example: ``chunk_sizes(10, 4) == [3, 3, 2, 2]``.
    """
    n = check_int("n", n, minimum=0)
    world_size = check_int("world_size", world_size)
    q, r = divmod(n, world_size)
    return [q + (1 if i < r else 0) for i in range(world_size)]


# --------------------------------------------------------------------------- reductions (the one dispatch)


def normalize_op(op: Any) -> str:
    """'sum' | 'avg' | 'max' | 'min' from a string or a ``torch.distributed.ReduceOp``."""
    name = str(op).rsplit(".", 1)[-1].lower()
    name = {"average": "avg", "mean": "avg"}.get(name, name)
    if name not in REDUCE_OPS:
        raise ValueError(f"op={op!r} is not a reduction this course supports; use one of {REDUCE_OPS}")
    return name


def reduce_into_(acc: Tensor, incoming: Tensor, op: str) -> Tensor:
    """``acc <- acc (op) incoming`` in place; returns ``acc``.

    'avg' *adds* here: whoever combines all p contributions divides once at the end
    (:func:`reduce_tensors` does; a ring reduce-scatter does after its last step).
    """
    if op in ("sum", "avg"):
        acc += incoming
    elif op == "max":
        torch.maximum(acc, incoming, out=acc)
    elif op == "min":
        torch.minimum(acc, incoming, out=acc)
    else:
        raise ValueError(f"op={op!r} is not one of {REDUCE_OPS}; pass it through normalize_op first")
    return acc


def reduce_tensors(tensors: Sequence[Tensor], op: str) -> Tensor:
    """The reduction of p same-shaped tensors, added in list (rank) order, so every run gives the same bits."""
    if op == "avg" and not (tensors[0].is_floating_point() or tensors[0].is_complex()):
        raise ValueError(f"op='avg' needs a floating-point tensor, got {tensors[0].dtype}; use op='sum' and divide")
    acc = tensors[0].clone()
    for t in tensors[1:]:
        reduce_into_(acc, t, op)
    if op == "avg":
        acc /= len(tensors)
    return acc


# --------------------------------------------------------------------------- argument checks shared by the backends


def check_tensor(name: str, t: Any) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}; wrap data with torch.tensor(...)")
    return t


def check_peer(name: str, peer: Any, rank: int, world_size: int, allow_self: bool = False) -> int:
    if not is_int(peer) or not 0 <= peer < world_size:
        raise ValueError(f"{name}={peer!r} is not a rank of this group; use an int in 0..{world_size - 1}")
    if peer == rank and not allow_self:
        raise ValueError(f"{name}={peer} is this rank itself; a rank cannot send to or receive from itself")
    return peer


def _spec(t: Tensor) -> str:
    return f"{list(t.shape)} {str(t.dtype).replace('torch.', '')}"


def mismatched_message(src: int, dst: int, sent: Tensor, into: Tensor, group: str = "world") -> str:
    """The error for a send whose receiver posted a buffer of another shape or dtype.

    Short enough (about 130 characters) that a one-line verdict never cuts it off.
    """
    return (f"rank {src} sent {_spec(sent)} to rank {dst}, which receives into {_spec(into)} ({group}). "
            f"Receive into a tensor of the sender's shape and dtype.")


def who_has(values: Sequence[Any], ranks: Sequence[int], verb: str = "has") -> str:
    """"rank 0 has [4]; ranks 1, 2, 3 have [5]": ranks grouped by value, so a message stays short on many ranks."""
    groups: dict[str, list[int]] = {}
    for g, v in zip(ranks, values):
        groups.setdefault(str(v), []).append(g)
    plural = {"has": "have", "called": "called"}.get(verb, verb)
    return "; ".join(f"rank {rs[0]} {verb} {v}" if len(rs) == 1 else f"ranks {', '.join(map(str, rs))} {plural} {v}"
                     for v, rs in groups.items())


def check_tensor_list(name: str, lst: Any, n: int, like: Tensor) -> None:
    """``lst`` must be a list of ``n`` tensors with ``like``'s shape and dtype (a collective's buffers)."""
    if not isinstance(lst, (list, tuple)) or len(lst) != n:
        got = len(lst) if isinstance(lst, (list, tuple)) else type(lst).__name__
        raise ValueError(f"{name} must be a list of world_size={n} tensors, got {got}")
    for i, t in enumerate(lst):
        check_tensor(f"{name}[{i}]", t)
        if t.shape != like.shape or t.dtype != like.dtype:
            raise ValueError(
                f"{name}[{i}] has shape {tuple(t.shape)} {t.dtype}; every entry must match "
                f"{tuple(like.shape)} {like.dtype}"
            )


def check_group_ranks(ranks: Any, world_size: int) -> tuple[int, ...]:
    """``ranks`` of a ``new_group`` call: a non-empty list of distinct ranks of this group; returns a tuple."""
    try:
        ranks = tuple(ranks)
    except TypeError:
        raise ValueError(f"ranks={ranks!r} must be a list of ints, e.g. [0, 1]") from None
    if not ranks or any(not is_int(r) or not 0 <= r < world_size for r in ranks):
        raise ValueError(f"ranks={list(ranks)} must be a non-empty list of ranks in 0..{world_size - 1}")
    if len(set(ranks)) != len(ranks):
        raise ValueError(f"ranks={list(ranks)} lists a rank twice; list each rank once")
    return ranks


# --------------------------------------------------------------------------- trace and memory


@dataclass(frozen=True)
class Event:
    """One interval on a rank's timeline: ``kind`` is 'compute', 'comm' or 'idle'.

    ``op`` names the operation (e.g. 'all_reduce', 'recv', or the compute label)
    and ``nbytes`` is the message size of a communication (NCCL-tests convention:
    the whole buffer, not the bytes one rank sends).
    """

    kind: str
    start: float
    end: float
    op: str = ""
    nbytes: int = 0
    group: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start


class MemoryLedger:
    """Bytes a device holds, by category, with a timeline and the peak.

    Categories are :data:`CATEGORIES`: 'parameters', 'gradients', 'optimizer'
    (optimizer state), 'activations' and 'comm' (communication buffers). Code that
    allocates calls :meth:`alloc`, and :meth:`free` when the memory is released;
    ``clock`` gives the time stamp of each change (the simulator's logical clock).
    ``capacity`` (bytes, optional) is the device memory, for :attr:`fits`.
    """

    def __init__(self, clock=lambda: 0.0, capacity: float | None = None) -> None:
        self._clock = clock
        self.capacity = capacity
        self.current: dict[str, int] = {c: 0 for c in CATEGORIES}
        self.peak_by_category: dict[str, int] = {c: 0 for c in CATEGORIES}
        self.peak = 0
        # (time, category, label, delta bytes, category total after, device total after)
        self.timeline: list[tuple[float, str, str, int, int, int]] = []

    def _check(self, category: str, nbytes: Any) -> int:
        if category not in CATEGORIES:
            raise ValueError(f"category={category!r} is unknown; use one of {CATEGORIES}")
        if not is_number(nbytes) or nbytes < 0:
            raise ValueError(f"nbytes={nbytes!r} must be a non-negative number of bytes")
        return int(nbytes)

    def alloc(self, category: str, nbytes: int, label: str = "") -> None:
        """Record that ``nbytes`` more bytes of ``category`` are now held."""
        n = self._check(category, nbytes)
        self.current[category] += n
        self._record(category, label, n)

    def free(self, category: str, nbytes: int, label: str = "") -> None:
        """Record that ``nbytes`` bytes of ``category`` were released."""
        n = self._check(category, nbytes)
        if n > self.current[category]:
            raise ValueError(
                f"free({category!r}, {n}) releases more than the {self.current[category]} bytes held; "
                f"free only what was allocated"
            )
        self.current[category] -= n
        self._record(category, label, -n)

    def _record(self, category: str, label: str, delta: int) -> None:
        total = self.total
        self.peak = max(self.peak, total)
        self.peak_by_category[category] = max(self.peak_by_category[category], self.current[category])
        self.timeline.append((float(self._clock()), category, label, delta, self.current[category], total))

    @property
    def total(self) -> int:
        return sum(self.current.values())

    @property
    def fits(self) -> bool:
        """True when the peak stayed within ``capacity`` (or no capacity is set)."""
        return self.capacity is None or self.peak <= self.capacity

    def __getstate__(self):  # the clock is a closure over a live rank; keep only the data
        d = dict(self.__dict__)
        d["_clock"] = None
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._clock = lambda: 0.0

    def __repr__(self) -> str:
        cur = ", ".join(f"{c}={v}" for c, v in self.current.items() if v)
        return f"MemoryLedger(total={self.total}, peak={self.peak}{', ' + cur if cur else ''})"


@dataclass
class RunResult:
    """What :func:`minillm.parallel.run` returns.

    ``results[r]`` is rank r's return value. From the simulator also: ``clocks[r]``
    (logical seconds when rank r finished), ``traces[r]`` (its :class:`Event` list)
    and ``memory[r]`` (its :class:`MemoryLedger`). Real backends leave ``clocks``
    and ``traces`` as None and return the ledgers the rank code kept.
    """

    results: list
    backend: str
    world_size: int
    clocks: list[float] | None = None
    traces: list[list[Event]] | None = None
    memory: list[MemoryLedger] | None = None
    wall_time: float = 0.0
    spec: Any = None

    @property
    def makespan(self) -> float:
        """Simulated time of the whole run: the latest rank clock (seconds)."""
        if self.clocks is None:
            raise ValueError(f"makespan needs logical clocks; backend={self.backend!r} has none, use backend='sim'")
        return max(self.clocks)

    def time_by_kind(self) -> list[dict[str, float]]:
        """Per rank: seconds spent in compute, comm and idle (from the traces)."""
        if self.traces is None:
            raise ValueError(f"time_by_kind needs traces; backend={self.backend!r} has none, use backend='sim'")
        out = []
        for trace in self.traces:
            d = {"compute": 0.0, "comm": 0.0, "idle": 0.0}
            for e in trace:
                d[e.kind] += e.duration
            out.append(d)
        return out


# --------------------------------------------------------------------------- the interface


class Work(abc.ABC):
    """A pending ``isend``/``irecv``, as ``torch.distributed.Work``: call :meth:`wait`."""

    @abc.abstractmethod
    def wait(self) -> None: ...


class Comm(abc.ABC):
    """A communicator: this rank's view of a group of ranks.

    Attributes: ``rank`` (in this group), ``world_size`` (of this group),
    ``ranks`` (the global ranks of the members, in group order), ``backend``,
    ``memory`` (a :class:`MemoryLedger` for this device) and ``device`` (where
    tensors must live: CPU for sim and gloo).
    """

    rank: int
    world_size: int
    ranks: tuple[int, ...]
    backend: str
    memory: MemoryLedger
    device: torch.device = torch.device("cpu")

    @property
    def global_rank(self) -> int:
        return self.ranks[self.rank]

    # ------------------------------------------------------------------ point-to-point

    @abc.abstractmethod
    def isend(self, tensor: Tensor, dst: int) -> Work:
        """Start sending ``tensor`` to rank ``dst`` of this group; do not modify it before ``wait()``."""

    @abc.abstractmethod
    def irecv(self, tensor: Tensor, src: int) -> Work:
        """Start receiving into ``tensor`` (same shape and dtype as the sender's) from rank ``src``."""

    def send(self, tensor: Tensor, dst: int) -> None:
        """Send and wait until the receiver has taken the message (a rendezvous, as gloo does)."""
        self.isend(tensor, dst).wait()

    def recv(self, tensor: Tensor, src: int) -> Tensor:
        """Receive into ``tensor`` in place from rank ``src``; returns ``tensor``."""
        self.irecv(tensor, src).wait()
        return tensor

    # ------------------------------------------------------------------ collectives

    @abc.abstractmethod
    def all_reduce(self, tensor: Tensor, op: str = "sum") -> Tensor:
        """Every rank's ``tensor`` becomes the reduction ('sum', 'avg', 'max', 'min') over ranks."""

    @abc.abstractmethod
    def all_gather(self, tensor_list: list[Tensor], tensor: Tensor) -> list[Tensor]:
        """``tensor_list[i]`` (world_size tensors shaped like ``tensor``) receives rank i's ``tensor``."""

    @abc.abstractmethod
    def reduce_scatter(self, output: Tensor, input_list: list[Tensor], op: str = "sum") -> Tensor:
        """``output`` on rank r becomes the reduction over ranks of their ``input_list[r]``."""

    @abc.abstractmethod
    def broadcast(self, tensor: Tensor, src: int = 0) -> Tensor:
        """Every rank's ``tensor`` becomes rank ``src``'s."""

    @abc.abstractmethod
    def barrier(self) -> None:
        """Wait until every rank of the group has arrived."""

    @abc.abstractmethod
    def new_group(self, ranks: Sequence[int]) -> "Comm | None":
        """A sub-communicator over ``ranks`` (ranks of *this* group, listed in their new order).

        Every rank of this group must call it with the same list, in the same
        order as other ``new_group`` calls (as ``torch.distributed.new_group``
        demands). Members get a :class:`Comm` whose ``rank`` counts from 0 within the
        sub-group; other ranks get None.
        """

    # Convenience forms over single tensors, as torch.distributed's *_tensor variants.

    def all_gather_into_tensor(self, output: Tensor, tensor: Tensor) -> Tensor:
        """``output`` [world_size * n, ...] receives every rank's ``tensor`` [n, ...], stacked in rank order."""
        check_tensor("output", output)
        check_tensor("tensor", tensor)
        if output.shape[0] != tensor.shape[0] * self.world_size or output.shape[1:] != tensor.shape[1:]:
            raise ValueError(
                f"all_gather_into_tensor: output shape {tuple(output.shape)} must be "
                f"[world_size * {tensor.shape[0]}, ...] = {(tensor.shape[0] * self.world_size, *tensor.shape[1:])}"
            )
        parts = list(output.chunk(self.world_size)) if output.numel() else [torch.empty_like(tensor) for _ in range(self.world_size)]
        tmp = [torch.empty_like(tensor) for _ in range(self.world_size)]
        self.all_gather(tmp, tensor)
        for dst, src in zip(parts, tmp):
            dst.copy_(src)
        return output

    def reduce_scatter_tensor(self, output: Tensor, input: Tensor, op: str = "sum") -> Tensor:
        """``output`` [n, ...] on rank r becomes the reduction of every rank's ``input`` [world_size * n, ...] chunk r."""
        check_tensor("output", output)
        check_tensor("input", input)
        if input.shape[0] != output.shape[0] * self.world_size or input.shape[1:] != output.shape[1:]:
            raise ValueError(
                f"reduce_scatter_tensor: input shape {tuple(input.shape)} must be "
                f"[world_size * {output.shape[0]}, ...] = {(output.shape[0] * self.world_size, *output.shape[1:])}"
            )
        chunks = [c.contiguous() for c in input.split(output.shape[0])] if input.numel() else [torch.empty_like(output) for _ in range(self.world_size)]
        return self.reduce_scatter(output, chunks, op)

    # ------------------------------------------------------------------ simulator hooks

    def compute(self, flops: float = 0.0, nbytes: float = 0.0, label: str = "compute", seconds: float | None = None) -> float:
        """Charge compute time to this rank's clock; returns the seconds charged.

        On the simulator the time is the roofline estimate
        ``max(flops / peak_flops, nbytes / memory_bandwidth)`` (or ``seconds`` if
        given). Real backends do the work for real, so this is a no-op there.
        """
        return 0.0

    @property
    def clock(self) -> float:
        """Seconds on this rank's clock: logical time on the simulator, wall time since start elsewhere."""
        return 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size}, ranks={list(self.ranks)})"
