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

from typing import Sequence

import torch
from torch import Tensor

from minillm.validate import is_int

from .comm import Comm, chunk_sizes, check_peer, check_tensor, normalize_op, reduce_into_
# The α-β cost model moved to .costs; these names stay importable from here.
from .costs import COLLECTIVE_OPS, bus_bandwidth, busbw_sweep, bytes_sent_per_rank, collective_time, comm_summary

__all__ = [
    "ring_reduce_scatter",
    "ring_all_gather",
    "ring_all_reduce",
    "tree_broadcast",
    "tree_all_reduce",
    "collective_time",
    "bus_bandwidth",
    "bytes_sent_per_rank",
    "comm_summary",
    "busbw_sweep",
    "COLLECTIVE_OPS",
]

# --------------------------------------------------------------------------- the ring algorithms


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
        reduce_into_(chunks[recv_idx], incoming, op)
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
        if len(sizes) != p or any(not is_int(s) or s < 0 for s in sizes):
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


def tree_all_reduce(comm: Comm, tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over ranks in place with binomial trees: reduce to rank 0, then :func:`tree_broadcast`.

    Reduce, round k (mask = 2^k): a rank whose number has bit k as its lowest set bit
    sends its partial sum to rank - mask and drops out; rank + mask's partner (if it
    exists) receives it and adds. After ⌈log2 p⌉ rounds rank 0 holds the total, which
    the broadcast copies back out in ⌈log2 p⌉ more: 2⌈log2 p⌉·(α + n/B)
    (:func:`~minillm.parallel.costs.tree_all_reduce_time`). Returns ``tensor``.
    """
    check_tensor("tensor", tensor)
    p, r = comm.world_size, comm.rank
    incoming = torch.empty_like(tensor)
    mask = 1
    while mask < p:
        if r % (2 * mask) == mask:  # my lowest set bit is this round's: hand my partial sum down
            comm.send(tensor, r - mask)
            break
        if r % (2 * mask) == 0 and r + mask < p:
            comm.recv(incoming, r + mask)
            with torch.no_grad():
                tensor += incoming
        mask *= 2
    return tree_broadcast(comm, tensor, src=0)
