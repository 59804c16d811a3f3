"""Distributed training from scratch: a simulated cluster, collectives, data parallelism and ZeRO.

Rank code is written once, as ``fn(comm, *args)``, and runs on a simulated cluster
(``run(fn, 4)``), on real processes (``run(fn, 2, backend="gloo")``) or under
``torchrun`` (``torchrun_main(fn)``). One concept per file:

- :mod:`.comm`           the ``Comm`` interface, errors, memory ledger, ``RunResult``
- :mod:`.sim`            the simulated cluster (logical clocks, traces, ledgers)
- :mod:`.launch`         ``run``, the gloo backend, the torchrun entry point
- :mod:`.collectives`    ring reduce-scatter/all-gather/all-reduce, tree broadcast, α-β costs, busbw
- :mod:`.grid`           ``ProcessGrid``: named DP/TP/PP sub-groups
- :mod:`.data_parallel`  the DP training step: naive and bucketed all-reduce, accumulation;
                         whole runs (``train_replica``, ``train_single``) for comparisons
- :mod:`.zero`           ``ZeroOptimizer`` (ZeRO stages 1-3) and the ZeRO memory/communication model
- :mod:`.viz`            timelines, memory by category, busbw plots
"""

from .collectives import (
    COLLECTIVE_OPS,
    bus_bandwidth,
    busbw_sweep,
    bytes_sent_per_rank,
    collective_time,
    comm_summary,
    ring_all_gather,
    ring_all_reduce,
    ring_reduce_scatter,
    tree_broadcast,
)
from .comm import (
    CATEGORIES,
    CollectiveMismatchError,
    Comm,
    CommTimeoutError,
    Event,
    MemoryLedger,
    RankError,
    RunResult,
    Work,
    chunk_sizes,
)
from .launch import BACKENDS, DistComm, init_torchrun, run, torchrun_main
from .sim import CPU_ETHERNET, ClusterSpec, SimComm
from .data_parallel import (
    allreduce_gradients,
    broadcast_parameters,
    bucket_parameters,
    dp_train_step,
    max_abs_diff,
    micro_batches,
    saved_activation_bytes,
    shard_batch,
    train_replica,
    train_single,
)
from .grid import ProcessGrid, grid_groups
from .zero import STAGES, ModelStateBytes, ZeroOptimizer, zero1_step, zero_comm_volume, zero_memory_bytes, zero_step_estimate

# The plotting helpers import matplotlib, so they load on first use.
_VIZ = ("plot_timeline", "plot_memory", "plot_memory_timeline", "plot_busbw")


def __getattr__(name: str):
    if name in _VIZ:
        from . import viz

        return getattr(viz, name)
    raise AttributeError(f"module 'minillm.parallel' has no attribute {name!r}")


__all__ = [
    # running rank code
    "run", "RunResult", "BACKENDS", "Comm", "Work", "SimComm", "DistComm", "ClusterSpec",
    "init_torchrun", "torchrun_main", "ProcessGrid", "grid_groups", "CPU_ETHERNET",
    # errors, traces, memory
    "RankError", "CollectiveMismatchError", "CommTimeoutError", "Event", "MemoryLedger", "CATEGORIES",
    # collectives and their cost
    "ring_reduce_scatter", "ring_all_gather", "ring_all_reduce", "tree_broadcast", "chunk_sizes",
    "collective_time", "bus_bandwidth", "bytes_sent_per_rank", "busbw_sweep", "COLLECTIVE_OPS",
    "comm_summary",
    # data parallelism and ZeRO
    "dp_train_step", "allreduce_gradients", "bucket_parameters", "broadcast_parameters", "shard_batch",
    "micro_batches", "saved_activation_bytes", "train_replica", "train_single", "max_abs_diff",
    "ZeroOptimizer", "zero_memory_bytes", "zero_comm_volume", "zero_step_estimate", "zero1_step", "ModelStateBytes", "STAGES",
    # pictures
    *_VIZ,
]
