"""Cost models of communication, apart from the code that communicates: pure functions of sizes and links.

**Collectives** (the α-β or Hockney model; Thakur, Rabenseifner & Gropp 2005,
"Optimization of collective communication operations in MPICH"), with p ranks, a
buffer of n bytes, α the latency per message and B the bandwidth per link direction:

- reduce-scatter, all-gather (ring): ``(p-1)·α + (p-1)/p · n/B``
- all-reduce (ring: reduce-scatter, then all-gather): ``2(p-1)·α + 2(p-1)/p · n/B``
- binomial-tree broadcast: ``⌈log2 p⌉·(α + n/B)``

Every rank sends and receives at once (full-duplex links), and the reduction
arithmetic is not charged: it overlaps with the transfers on real hardware.
:func:`bus_bandwidth` converts a measured time into NCCL-tests' "busbw".

**ZeRO** (Rajbhandari, Rasley, Ruwase & He 2020, "ZeRO: Memory Optimizations Toward
Training Trillion Parameter Models"): model-state bytes per device for each stage
(Sec. 5), the bytes each stage communicates (Sec. 7), and a step-time estimate
that puts both next to the compute.

Units: bytes, seconds, bytes/s; GB = 1e9 bytes, as the ZeRO paper and every
bandwidth datasheet count.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from minillm.units import GB
from minillm.validate import check_choice, check_fraction, check_int, check_number

from .cluster import ClusterSpec
from .comm import Event

__all__ = [
    "COLLECTIVE_OPS",
    "collective_time",
    "bus_bandwidth",
    "bytes_sent_per_rank",
    "comm_summary",
    "busbw_sweep",
    "RING_OPS",
    "ring_steps",
    "one_root_all_reduce_time",
    "tree_all_reduce_time",
    "zero_fewest_devices",
    "STAGES",
    "ModelStateBytes",
    "zero_memory_bytes",
    "zero_comm_volume",
    "zero_step_estimate",
    "SHARDED_FROM_STAGE",
    "zero_ownership",
]

COLLECTIVE_OPS = ("all_reduce", "reduce_scatter", "all_gather", "broadcast", "send", "recv", "barrier")
#: The collectives whose α terms :func:`ring_steps` counts (ring, or binomial tree for broadcast).
RING_OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
STAGES = (0, 1, 2, 3)


# --------------------------------------------------------------------------- collectives


def _check_cost_args(op: str, nbytes, world_size, what: str = "collective_time") -> None:
    if op not in COLLECTIVE_OPS:
        raise ValueError(f"{what}: op={op!r} is unknown; use one of {COLLECTIVE_OPS}")
    check_number(f"{what}: nbytes", nbytes)
    check_int(f"{what}: world_size", world_size)


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
    check_int("comm_summary: world_size", world_size)
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
    check_number("collective_time: bandwidth", bandwidth, strict=True)
    check_number("collective_time: latency", latency)
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
    check_number("bus_bandwidth: seconds", seconds, strict=True)
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


def ring_steps(op: str, world_size: int) -> int:
    """Messages each rank sends one after another: the number of α terms (latency) in the cost.

    Ring all-reduce 2(p-1), ring reduce-scatter and all-gather p-1, binomial-tree
    broadcast ⌈log2 p⌉ (Thakur, Rabenseifner & Gropp 2005).
    """
    check_choice("op", op, RING_OPS)
    check_int("world_size", world_size)
    p = world_size
    if op == "all_reduce":
        return 2 * (p - 1)
    if op == "broadcast":
        return math.ceil(math.log2(p)) if p > 1 else 0
    return p - 1


def one_root_all_reduce_time(nbytes: float, world_size: int, bandwidth: float, latency: float = 0.0) -> float:
    """All-reduce through one root: p-1 ranks send n bytes to it in turn, it sends the sum back in turn.

    2(p-1)·(α + n/B) seconds: every byte crosses the root's one link twice per rank,
    so the time grows with p, while the ring's stays near 2·n/B.
    """
    check_int("world_size", world_size)
    return 2 * (world_size - 1) * collective_time("send", nbytes, 2, bandwidth, latency)


def tree_all_reduce_time(nbytes: float, world_size: int, bandwidth: float, latency: float = 0.0) -> float:
    """All-reduce as a binomial-tree reduce to rank 0, then a binomial-tree broadcast: 2⌈log2 p⌉·(α + n/B).

    Each round halves the ranks that still hold a partial sum (reduce), then doubles
    the ranks that hold the total (broadcast); every round moves the whole buffer.
    Fewer latency terms than the ring's 2(p-1), but the bandwidth term grows with
    log2 p instead of staying near 2n/B: the tree wins for small messages on many ranks.
    """
    check_number("nbytes", nbytes)
    check_int("world_size", world_size)
    return 2 * math.ceil(math.log2(world_size)) * (latency + nbytes / bandwidth) if world_size > 1 else 0.0


# --------------------------------------------------------------------------- ZeRO


@dataclass(frozen=True)
class ModelStateBytes:
    """Model-state bytes per device, by category (the ledger's category names)."""

    parameters: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.parameters + self.gradients + self.optimizer

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def gb(self) -> dict[str, float]:
        """The same in GB (1e9 bytes), with the total."""
        return {**{k: v / GB for k, v in asdict(self).items()}, "total": self.total / GB}


def _check_common(n_params, world_size, stage) -> None:
    check_number("n_params", n_params)
    check_int("world_size", world_size)
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r} is not a ZeRO stage; use 0 (plain DP), 1, 2 or 3")


def zero_memory_bytes(
    n_params: float, world_size: int, stage: int, k: float = 12, bytes_param: float = 2, bytes_grad: float = 2
) -> ModelStateBytes:
    """Model-state bytes per device under ZeRO ``stage`` (0 = plain DP), Rajbhandari et al. 2020, Sec. 5.

    Ψ = n_params, N_d = world_size, K = ``k`` bytes of optimizer state per parameter
    (12 for mixed-precision Adam; 8 for fp32 Adam, which keeps only m and v):

    - stage 0: (bytes_param + bytes_grad + K)·Ψ
    - stage 1: (bytes_param + bytes_grad)·Ψ + K·Ψ/N_d
    - stage 2: bytes_param·Ψ + (bytes_grad + K)·Ψ/N_d
    - stage 3: (bytes_param + bytes_grad + K)·Ψ/N_d

    The paper's Figure 1 (Ψ = 7.5B, N_d = 64, K = 12, GB = 1e9 bytes): 120 GB,
    31.4 GB, 16.6 GB and 1.9 GB.
    """
    _check_common(n_params, world_size, stage)
    for name, v in (("k", k), ("bytes_param", bytes_param), ("bytes_grad", bytes_grad)):
        check_number(f"{name} (bytes per parameter)", v)
    psi, nd = float(n_params), world_size
    return ModelStateBytes(
        parameters=bytes_param * psi / (nd if stage >= 3 else 1),
        gradients=bytes_grad * psi / (nd if stage >= 2 else 1),
        optimizer=k * psi / (nd if stage >= 1 else 1),
    )


def zero_comm_volume(n_params: float, stage: int, world_size: int | None = None, bytes_per_element: float = 2) -> float:
    """Bytes each rank sends per step for the gradient/parameter traffic of ZeRO ``stage``.

    The paper's count (Sec. 7, ``world_size`` None): 2Ψ elements for stages 0-2
    (reduce-scatter + all-gather, or the all-reduce that equals them) and 3Ψ for
    stage 3 (one more all-gather, in backward). With ``world_size`` given, the exact
    ring volume: each reduce-scatter or all-gather sends (N_d - 1)/N_d · Ψ elements.
    """
    _check_common(n_params, world_size if world_size is not None else 1, stage)
    passes = 3 if stage == 3 else 2
    factor = 1.0 if world_size is None else (world_size - 1) / world_size
    return passes * factor * float(n_params) * bytes_per_element


def zero_step_estimate(
    n_params: float,
    world_size: int,
    stage: int,
    tokens_per_step: float = 4e6,
    cluster: ClusterSpec | None = None,
    k: float = 12,
    bytes_param: float = 2,
    bytes_grad: float = 2,
    mfu: float = 0.5,
) -> dict:
    """Memory per device and step time for a DP/ZeRO job: the function behind the lesson's widget.

    Compute: 6·Ψ·tokens / N_d FLOPs per device (Kaplan et al. 2020) at ``mfu`` of the
    device's peak (model FLOPs utilization, Chowdhery et al. 2022, "PaLM"). Communication: the stage's collectives over Ψ elements with the
    ring α-β times of :func:`~minillm.parallel.collectives.collective_time`, not
    overlapped with compute (an upper bound). Memory: :func:`zero_memory_bytes`,
    compared with the device's capacity (activations not included). GB = 1e9 bytes.
    """
    _check_common(n_params, world_size, stage)
    if check_fraction("mfu", mfu, closed=True) == 0:
        raise ValueError("mfu=0 means no useful compute at all; use a fraction in (0, 1], e.g. 0.5")
    c = cluster or ClusterSpec()
    mem = zero_memory_bytes(n_params, world_size, stage, k, bytes_param, bytes_grad)
    compute_s = 6.0 * n_params * tokens_per_step / world_size / (c.peak_flops * mfu)
    t = lambda op, nbytes: collective_time(op, nbytes, world_size, c.link_bw, c.latency)  # noqa: E731
    grads, params = n_params * bytes_grad, n_params * bytes_param
    if stage == 0:
        comm_s = t("all_reduce", grads)
    elif stage in (1, 2):
        comm_s = t("reduce_scatter", grads) + t("all_gather", params)
    else:
        comm_s = 2 * t("all_gather", params) + t("reduce_scatter", grads)
    return {
        "memory": mem.as_dict(),
        "memory_total": mem.total,
        "memory_gb": mem.total / GB,
        "capacity_gb": c.mem_bytes / GB,
        "fits": mem.total <= c.mem_bytes,
        "compute_s": compute_s,
        "comm_s": comm_s,
        "step_s": compute_s + comm_s,
        "comm_bytes": zero_comm_volume(n_params, stage, world_size, bytes_param),
    }


#: The first ZeRO stage at which each model state is sharded (Rajbhandari et al. 2020, Sec. 5).
SHARDED_FROM_STAGE = {"parameters": 3, "gradients": 2, "optimizer": 1}


def zero_ownership(stage: int, world_size: int) -> dict[str, list[list[bool]]]:
    """Which slice of each model state every rank holds under ZeRO ``stage``: the data behind the shard diagram.

    The parameters are cut into ``world_size`` equal slices. Returns
    ``{category: held}`` for 'parameters', 'gradients' and 'optimizer', where
    ``held[r][j]`` is True when rank r keeps slice j of that state. A category is
    replicated (every rank holds every slice) before its stage in
    :data:`SHARDED_FROM_STAGE`, and sharded from it on (rank r holds slice r only).
    """
    _check_common(0, world_size, stage)
    p = world_size
    return {
        c: [[stage < first or j == r for j in range(p)] for r in range(p)]
        for c, first in SHARDED_FROM_STAGE.items()
    }


def zero_fewest_devices(n_params: float, capacity: float, stage: int, k: float = 12, bytes_param: float = 2,
                        bytes_grad: float = 2) -> int | None:
    """The fewest data-parallel ranks N_d whose per-device model states fit in ``capacity`` bytes; None if none do.

    Invert :func:`zero_memory_bytes`: the replicated part R and the sharded part S
    (bytes) must satisfy R + S / N_d <= capacity, so N_d = ⌈S / (capacity - R)⌉ when
    R < capacity (at least 1), and no N_d at all otherwise. Stage 0 shards nothing
    (fits on 1 rank or never); stage 3 replicates nothing (⌈16Ψ / capacity⌉ for K = 12).
    """
    _check_common(n_params, 1, stage)
    check_number("capacity", capacity, strict=True)
    per = {"parameters": bytes_param, "gradients": bytes_grad, "optimizer": k}
    replicated = sum(b * n_params for c, b in per.items() if stage < SHARDED_FROM_STAGE[c])
    sharded = sum(b * n_params for c, b in per.items() if stage >= SHARDED_FROM_STAGE[c])
    if replicated > capacity or (replicated == capacity and sharded > 0):
        return None
    if sharded == 0:
        return 1
    return max(1, math.ceil(sharded / (capacity - replicated)))
