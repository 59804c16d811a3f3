"""Distributed training from scratch: a simulated cluster, collectives, data parallelism and ZeRO.

Rank code is written once, as ``fn(comm, *args)``, and runs on a simulated cluster
(``run(fn, 4)``), on real processes (``run(fn, 2, backend="gloo")``) or under
``torchrun`` (``torchrun_main(fn)``). One concept per file:

- :mod:`.comm`           the ``Comm`` interface, errors, the reduce ops, memory ledger, ``RunResult``
- :mod:`.cluster`        ``ClusterSpec``: each device's speed and memory, and the links
- :mod:`.costs`          cost models: α-β collective times, busbw, ZeRO memory and communication
- :mod:`.sim`            the simulated cluster's communicator and ``run_sim``
- :mod:`.simworld`       its shared state: logical clocks, traces, ledgers, hang detection
- :mod:`.distcomm`       ``DistComm``: the ``Comm`` interface over real ``torch.distributed``
- :mod:`.launch`         ``run``, the gloo launcher, the torchrun entry point
- :mod:`.collectives`    ring reduce-scatter/all-gather/all-reduce, tree broadcast (from send/recv)
- :mod:`.grid`           ``ProcessGrid``: named DP/TP/PP sub-groups
- :mod:`.data_parallel`  the DP training step: naive and bucketed all-reduce, accumulation;
                         whole runs (``train_replica``, ``train_single``) for comparisons
- :mod:`.zero`           ZeRO: ``zero1_step`` and one optimizer class per stage (``ZeroOptimizer(stage=s)``)
- :mod:`.viz`            timelines, memory by category, ZeRO shard ownership, busbw plots
- :mod:`.widgets`        the data behind lessons 10 and 11's widgets, their plots and the widgets
"""

from .cluster import CPU_ETHERNET, DEFAULT_LATENCY, ClusterSpec
from .collectives import ring_all_gather, ring_all_reduce, ring_reduce_scatter, tree_all_reduce, tree_broadcast
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
from .costs import (
    COLLECTIVE_OPS,
    STAGES,
    ModelStateBytes,
    bus_bandwidth,
    busbw_sweep,
    bytes_sent_per_rank,
    collective_time,
    comm_summary,
    one_root_all_reduce_time,
    ring_steps,
    tree_all_reduce_time,
    zero_fewest_devices,
    zero_comm_volume,
    zero_memory_bytes,
    zero_step_estimate,
)
from .distcomm import DistComm
from .launch import BACKENDS, init_torchrun, run, torchrun_main
from .sim import SimComm
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
from .zero import ReplicatedAdamW, ZeroOptimizer, ZeroStage1, ZeroStage2, ZeroStage3, zero1_step

# The plotting helpers import matplotlib, so they load on first use.
_VIZ = ("plot_timeline", "plot_memory", "plot_memory_timeline", "plot_busbw", "plot_zero_shards")


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
    "ring_reduce_scatter", "ring_all_gather", "ring_all_reduce", "tree_broadcast", "tree_all_reduce", "chunk_sizes",
    "collective_time", "bus_bandwidth", "bytes_sent_per_rank", "busbw_sweep", "COLLECTIVE_OPS",
    "comm_summary", "ring_steps", "one_root_all_reduce_time", "tree_all_reduce_time", "zero_fewest_devices", "DEFAULT_LATENCY",
    # data parallelism and ZeRO
    "dp_train_step", "allreduce_gradients", "bucket_parameters", "broadcast_parameters", "shard_batch",
    "micro_batches", "saved_activation_bytes", "train_replica", "train_single", "max_abs_diff",
    "ZeroOptimizer", "ReplicatedAdamW", "ZeroStage1", "ZeroStage2", "ZeroStage3", "zero_memory_bytes", "zero_comm_volume", "zero_step_estimate", "zero1_step", "ModelStateBytes", "STAGES",
    # pictures
    *_VIZ,
]
