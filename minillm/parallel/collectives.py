"""Collectives from scratch: ring reduce-scatter, ring all-gather, ring all-reduce and a tree broadcast.

Everything here is built from ``comm.isend``/``comm.recv`` only, so it runs on any
backend and shows where the time goes. With p ranks and a buffer of n bytes:

- **ring reduce-scatter**: cut the buffer into p chunks; in each of p-1 steps every
  rank sends one chunk to its right neighbour and adds the chunk arriving from its
  left. Afterwards rank r holds the full sum of chunk r.
- **ring all-gather**: the same ring, but each step forwards the chunk that just
  arrived; after p-1 steps every rank has every chunk.
- **ring all-reduce** = reduce-scatter, then all-gather (Patarasuk & Yuan 2009,
  "Bandwidth optimal all-reduce algorithms"; the algorithm NCCL and Horovod use).
- **tree broadcast**: a binomial tree; the number of ranks holding the data doubles
  every round, so ⌈log2 p⌉ rounds.

Cost model (α-β, Thakur, Rabenseifner & Gropp 2005, "Optimization of collective
communication operations in MPICH"), α = latency per message, B = bandwidth:

- reduce-scatter, all-gather: ``(p-1)·α + (p-1)/p · n/B``
- all-reduce: ``2(p-1)·α + 2(p-1)/p · n/B``
- binomial-tree broadcast: ``⌈log2 p⌉·(α + n/B)``

Every rank sends and receives at once (full-duplex links), and the reduction
arithmetic is not charged: it overlaps with the transfers on real hardware.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor

from .comm import Comm, Event, chunk_sizes, check_peer, check_tensor, normalize_op

__all__ = [
    "ring_reduce_scatter",
    "ring_all_gather",
    "ring_all_reduce",
    "tree_broadcast",
    "collective_time",
    "bus_bandwidth",
    "bytes_sent_per_rank",
    "comm_summary",
    "busbw_sweep",
    "COLLECTIVE_OPS",
]

COLLECTIVE_OPS = ("all_reduce", "reduce_scatter", "all_gather", "broadcast", "send", "recv", "barrier")


# --------------------------------------------------------------------------- the ring algorithms


def _combine_(acc: Tensor, incoming: Tensor, op: str) -> None:
    """acc <- acc (op) incoming, in place. 'avg' sums here; the caller divides once at the end."""
    if op in ("sum", "avg"):
        acc += incoming
    elif op == "max":
        torch.maximum(acc, incoming, out=acc)
    else:
        torch.minimum(acc, incoming, out=acc)


def ring_reduce_scatter(comm: Comm, tensor: Tensor, op: str = "sum") -> Tensor:
    """Reduce ``tensor`` over ranks and return this rank's chunk of the result.

    tensor: any shape, the same on every rank; it is flattened and cut into
    ``world_size`` chunks of sizes :func:`chunk_sizes` (they may differ by one).
    Returns a new 1-D tensor of ``chunk_sizes(n, p)[rank]`` elements: chunk ``rank``
    of the reduction. ``tensor`` is not modified.

    Step s (0..p-2): send my partial sum of chunk (r-s-1) mod p to rank r+1, and
    receive rank r-1's partial sum of chunk (r-s-2) mod p, adding my own data to it.
    The last chunk received, (r-p) mod p = r, has then passed every rank.
    """
    check_tensor("tensor", tensor)
    op = normalize_op(op)
    p, r = comm.world_size, comm.rank
    flat = tensor.detach().reshape(-1)
    sizes = chunk_sizes(flat.numel(), p)
    chunks = [c.clone() for c in flat.split(sizes)]  # my own, partially reduced copies
    right, left = (r + 1) % p, (r - 1) % p
    for s in range(p - 1):
        send_idx, recv_idx = (r - s - 1) % p, (r - s - 2) % p
        incoming = torch.empty_like(chunks[recv_idx])
        req = comm.isend(chunks[send_idx], right)  # isend, then recv: no rank waits for a send first
        comm.recv(incoming, left)
        req.wait()
        _combine_(chunks[recv_idx], incoming, op)
    out = chunks[r]
    if op == "avg":
        out /= p
    return out


def ring_all_gather(comm: Comm, chunk: Tensor, sizes: Sequence[int] | None = None) -> list[Tensor]:
    """Gather every rank's ``chunk``; returns the p chunks in rank order.

    chunk: this rank's piece. With ``sizes`` None every rank's chunk has the
    same shape (as ``torch.distributed.all_gather``); otherwise chunks are 1-D and
    ``sizes[i]`` is rank i's length (they may differ, as after an uneven
    :func:`ring_reduce_scatter`).

    Step s (0..p-2): send chunk (r-s) mod p to rank r+1 and receive chunk
    (r-s-1) mod p from rank r-1: each chunk travels once around the ring.
    """
    check_tensor("chunk", chunk)
    p, r = comm.world_size, comm.rank
    if sizes is None:
        shapes = [tuple(chunk.shape)] * p
    else:
        sizes = list(sizes)
        if len(sizes) != p or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in sizes):
            raise ValueError(f"sizes={sizes} must list world_size={p} non-negative ints, one per rank")
        if chunk.dim() != 1 or chunk.numel() != sizes[r]:
            raise ValueError(f"chunk has shape {tuple(chunk.shape)} but sizes[{r}]={sizes[r]}; pass a 1-D chunk of that length")
        shapes = [(s,) for s in sizes]
    out = [torch.empty(shape, dtype=chunk.dtype, device=chunk.device) for shape in shapes]
    out[r] = chunk.detach().clone()
    right, left = (r + 1) % p, (r - 1) % p
    for s in range(p - 1):
        send_idx, recv_idx = (r - s) % p, (r - s - 1) % p
        req = comm.isend(out[send_idx], right)
        comm.recv(out[recv_idx], left)
        req.wait()
    return out


def ring_all_reduce(comm: Comm, tensor: Tensor, op: str = "sum") -> Tensor:
    """All-reduce ``tensor`` in place with a ring: reduce-scatter, then all-gather; returns ``tensor``.

    Works for any world size and any number of elements (chunks may differ by one).
    """
    check_tensor("tensor", tensor)
    sizes = chunk_sizes(tensor.numel(), comm.world_size)
    mine = ring_reduce_scatter(comm, tensor, op)
    chunks = ring_all_gather(comm, mine, sizes)
    with torch.no_grad():
        tensor.copy_(torch.cat(chunks).view(tensor.shape))
    return tensor


def tree_broadcast(comm: Comm, tensor: Tensor, src: int = 0) -> Tensor:
    """Broadcast ``tensor`` from rank ``src`` in place, down a binomial tree; returns ``tensor``.

    Number ranks relative to the root, v = (rank - src) mod p. In round k (mask = 2^k)
    every rank v < mask that has the data sends it to v + mask. After ⌈log2 p⌉ rounds
    everyone has it.
    """
    check_tensor("tensor", tensor)
    p = comm.world_size
    check_peer("src", src, comm.rank, p, allow_self=True)
    v = (comm.rank - src) % p
    mask = 1
    while mask < p:
        if v < mask and v + mask < p:
            comm.send(tensor, (v + mask + src) % p)
        elif mask <= v < 2 * mask:
            comm.recv(tensor, (v - mask + src) % p)
        mask *= 2
    return tensor


# --------------------------------------------------------------------------- cost model


def _check_cost_args(op: str, nbytes, world_size, what: str = "collective_time") -> None:
    if op not in COLLECTIVE_OPS:
        raise ValueError(f"{what}: op={op!r} is unknown; use one of {COLLECTIVE_OPS}")
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, float)) or nbytes < 0 or not math.isfinite(nbytes):
        raise ValueError(f"{what}: nbytes={nbytes!r} must be a non-negative number of bytes")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"{what}: world_size={world_size!r} must be a positive int")


def bytes_sent_per_rank(op: str, nbytes: float, world_size: int) -> float:
    """Bytes each rank sends in the ring algorithm for a buffer of ``nbytes`` (NCCL-tests sizes).

    all-reduce sends ``2(p-1)/p · n``; reduce-scatter and all-gather ``(p-1)/p · n``
    (n is the whole buffer: the input of a reduce-scatter, the output of an
    all-gather); a send or a tree broadcast's root sends n per message.
    """
    _check_cost_args(op, nbytes, world_size, "bytes_sent_per_rank")
    p = world_size
    if op == "all_reduce":
        return 2 * (p - 1) / p * nbytes
    if op in ("reduce_scatter", "all_gather"):
        return (p - 1) / p * nbytes
    if op in ("barrier", "recv"):  # a receive sends nothing
        return 0.0
    return float(nbytes) if p > 1 else 0.0


def comm_summary(events: Iterable[Event], world_size: int, min_bytes: int = 0) -> dict[str, float]:
    """What one rank's trace says about its communication: bytes sent, calls and seconds.

    events: a rank's trace (``RunResult.traces[r]`` from the simulator), all in one
    group of ``world_size`` ranks. Only 'comm' events with ``nbytes >= min_bytes``
    count (e.g. ``min_bytes=9`` leaves out the 8-byte loss that
    :func:`~minillm.parallel.data_parallel.dp_train_step` averages).
    Returns ``bytes_sent`` (the sum of :func:`bytes_sent_per_rank` over those
    events: what the ring algorithms send), ``calls`` (their number) and
    ``seconds`` (their total duration). Summaries subtract: the traffic of one
    training step is ``summary(2 steps) - summary(1 step)``, whatever the runs do
    before their first and after their last step.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"comm_summary: world_size={world_size!r} must be a positive int")
    out = {"bytes_sent": 0.0, "calls": 0, "seconds": 0.0}
    for e in events:
        if e.kind == "comm" and e.nbytes >= min_bytes:
            out["bytes_sent"] += bytes_sent_per_rank(e.op, e.nbytes, world_size)
            out["calls"] += 1
            out["seconds"] += e.duration
    return out


def collective_time(op: str, nbytes: float, world_size: int, bandwidth: float, latency: float = 0.0) -> float:
    """Seconds a collective takes under the α-β model (see the module docstring).

    op: 'all_reduce' | 'reduce_scatter' | 'all_gather' | 'broadcast' | 'send' | 'recv' | 'barrier'.
    nbytes: the buffer size (NCCL-tests convention: the full buffer on each rank).
    bandwidth: bytes/s per direction of one link (B); latency: seconds per message (α).

    Worked example: all-reduce of 1 GB (GB = 1e9 bytes) over 8 GPUs at 300 GB/s
    takes 2·7/8 · 1e9 / 300e9 = 5.83 ms, ignoring latency.
    """
    _check_cost_args(op, nbytes, world_size)
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not bandwidth > 0:
        raise ValueError(f"collective_time: bandwidth={bandwidth!r} must be positive (bytes/s)")
    if isinstance(latency, bool) or not isinstance(latency, (int, float)) or latency < 0:
        raise ValueError(f"collective_time: latency={latency!r} must be >= 0 (seconds)")
    p = world_size
    if p == 1:
        return 0.0
    if op == "all_reduce":  # reduce-scatter + all-gather: 2(p-1) steps
        return 2 * (p - 1) * latency + bytes_sent_per_rank(op, nbytes, p) / bandwidth
    if op in ("reduce_scatter", "all_gather"):  # p-1 steps of n/p bytes
        return (p - 1) * latency + bytes_sent_per_rank(op, nbytes, p) / bandwidth
    if op == "broadcast":  # binomial tree: ⌈log2 p⌉ rounds of one whole message
        return math.ceil(math.log2(p)) * (latency + nbytes / bandwidth)
    if op == "barrier":  # dissemination barrier: ⌈log2 p⌉ rounds of empty messages (Hensgen et al. 1988)
        return math.ceil(math.log2(p)) * latency
    return latency + nbytes / bandwidth  # send or recv: one message


def bus_bandwidth(op: str, nbytes: float, world_size: int, seconds: float) -> float:
    """The NCCL-tests "busbw" of a measured collective, bytes/s.

    algbw = nbytes / seconds; busbw = algbw × factor, with factor 2(p-1)/p for
    all-reduce, (p-1)/p for reduce-scatter and all-gather, and 1 for broadcast and
    send (NVIDIA nccl-tests, doc/PERFORMANCE.md). The factor makes busbw comparable
    to the link's bandwidth whatever p is: for the ring algorithms with α = 0,
    ``bus_bandwidth(op, n, p, collective_time(op, n, p, B)) == B``.
    """
    _check_cost_args(op, nbytes, world_size, "bus_bandwidth")
    if op == "barrier":
        raise ValueError("bus_bandwidth: a barrier moves no data; pick a data-moving op")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"bus_bandwidth: seconds={seconds!r} must be a positive duration")
    p = world_size
    algbw = nbytes / seconds
    factor = {"all_reduce": 2 * (p - 1) / p, "reduce_scatter": (p - 1) / p, "all_gather": (p - 1) / p}.get(op, 1.0)
    return algbw * factor


def busbw_sweep(
    op: str, sizes: Sequence[float], world_size: int, bandwidth: float, latency: float
) -> list[dict[str, float]]:
    """Predicted time, algbw and busbw for each message size (bytes): the data behind a busbw plot.

    Small messages are latency-bound (busbw far below the link); large ones approach
    the link bandwidth, which is why DP frameworks bucket their gradients.
    """
    rows = []
    for n in sizes:
        t = collective_time(op, n, world_size, bandwidth, latency)
        rows.append({"nbytes": float(n), "seconds": t, "algbw": n / t if t > 0 else float("nan"),
                     "busbw": bus_bandwidth(op, n, world_size, t) if t > 0 and n > 0 else float("nan")})
    return rows
