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
- :mod:`.tp_comm`        Megatron's conjugate f/g and the sequence-parallel all-gather/reduce-scatter
- :mod:`.tensor_parallel` column- and row-parallel layers, attention by heads, vocabulary-parallel
                         embedding and loss, ``tensor_parallel_gpt`` (lesson 12)
- :mod:`.tp_costs`       bytes a TP layer sends, activation memory (Korthikanti et al. 2022)
- :mod:`.tp_plots`       lesson 12's pictures and widget
- :mod:`.pp_schedule`    GPipe, 1F1B and interleaved schedules, the bubble, simulated timelines
- :mod:`.pipeline_parallel` stages and the pipeline training step (lesson 13)
- :mod:`.pp_plots`       lesson 13's pictures and widget
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
from .tp_comm import all_gather_from_sp, copy_to_tp, gather_from_tp, reduce_from_tp, reduce_scatter_to_sp, scatter_to_tp
from .tensor_parallel import (
    ColumnParallelLinear,
    ParallelAttention,
    ParallelMLP,
    RowParallelLinear,
    TensorParallelGPT,
    VocabParallelEmbedding,
    gather_tp_tensors,
    sync_sequence_parallel_grads,
    tensor_parallel_gpt,
    vocab_parallel_cross_entropy,
)
from .tp_costs import activation_memory_bytes, tp_comm_bytes
from .pp_schedule import SCHEDULES, Timeline, bubble_fraction, pipeline_schedule, schedule_timeline
from .pipeline_parallel import PipelineStage, interleaved_chunks, pipeline_train_step, split_into_stages

# The plotting helpers import matplotlib, so they load on first use.
_VIZ = ("plot_timeline", "plot_memory", "plot_memory_timeline", "plot_busbw", "plot_zero_shards")
_TP_PLOTS = ("plot_weight_ownership", "plot_activation_memory", "plot_fg_diagram", "tp_view", "tp_widget")
_PP_PLOTS = ("plot_schedules", "plot_in_flight", "pipeline_view", "pipeline_widget")


def __getattr__(name: str):
    for module, names in (("viz", _VIZ), ("tp_plots", _TP_PLOTS), ("pp_plots", _PP_PLOTS)):
        if name in names:
            import importlib

            return getattr(importlib.import_module(f"{__name__}.{module}"), name)
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
    # tensor parallelism (lesson 12)
    "copy_to_tp", "reduce_from_tp", "scatter_to_tp", "gather_from_tp", "reduce_scatter_to_sp", "all_gather_from_sp",
    "ColumnParallelLinear", "RowParallelLinear", "ParallelAttention", "ParallelMLP", "VocabParallelEmbedding",
    "vocab_parallel_cross_entropy", "tensor_parallel_gpt", "TensorParallelGPT", "sync_sequence_parallel_grads",
    "gather_tp_tensors", "tp_comm_bytes", "activation_memory_bytes",
    # pipeline parallelism (lesson 13)
    "split_into_stages", "interleaved_chunks", "PipelineStage", "pipeline_schedule", "pipeline_train_step",
    "bubble_fraction", "schedule_timeline", "Timeline", "SCHEDULES",
    # pictures
    *_VIZ, *_TP_PLOTS, *_PP_PLOTS,
]
