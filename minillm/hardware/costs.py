"""A façade over the cost models, for code written before they were split by concept.

Nothing inside minillm imports this module. New code imports from where each function
lives:

- :mod:`~minillm.hardware.shapes`     ModelShape, presets, parameter counts, FLOPs per token
- :mod:`~minillm.hardware.training`   training FLOPs, time, MFU, training_cost
- :mod:`~minillm.hardware.inference`  KV cache, prefill and decode step times, the decode knee
- :mod:`~minillm.hardware.memory`     memory plans: weights, optimizer, KV cache, activations
- :mod:`~minillm.hardware.economics`  energy, dollars, cost per million tokens
- :mod:`~minillm.hardware.serving`    workload_point (= serving_summary), batch sweeps, serving_view
- :mod:`~minillm.hardware.block_ops`  the operations of one transformer block (layer_ops)
"""

from __future__ import annotations

from .block_ops import layer_ops
from .economics import catalog_costs, cost_dollars, cost_per_million_tokens, energy_joules
from .inference import (
    DEFAULT_BATCHES,
    StepTime,
    decode_knee_batch,
    decode_knee_context,
    decode_step_time,
    kv_cache_bytes,
    prefill_time,
)
from .memory import MemoryPlan, activation_bytes_per_layer, inference_activation_bytes, memory_plan, min_devices
from .serving import decode_batch_sweep, serving_summary, serving_view, workload_point
from .shapes import (
    ModelShape,
    flops_per_token,
    from_config,
    get_model,
    layer_params,
    list_models,
    matmul_params,
    model_source,
    param_count,
)
from .training import SECONDS_PER_DAY, megatron_training_time, mfu, training_cost, training_flops, training_time

__all__ = [
    "ModelShape",
    "from_config",
    "get_model",
    "list_models",
    "param_count",
    "matmul_params",
    "flops_per_token",
    "training_flops",
    "training_time",
    "megatron_training_time",
    "mfu",
    "kv_cache_bytes",
    "StepTime",
    "prefill_time",
    "decode_step_time",
    "MemoryPlan",
    "activation_bytes_per_layer",
    "inference_activation_bytes",
    "memory_plan",
    "min_devices",
    "energy_joules",
    "cost_dollars",
    "cost_per_million_tokens",
    "catalog_costs",
    "serving_summary",
    "workload_point",
    "layer_ops",
    "layer_params",
    "model_source",
    "SECONDS_PER_DAY",
    "DEFAULT_BATCHES",
    "decode_knee_batch",
    "decode_knee_context",
    "decode_batch_sweep",
    "training_cost",
    "serving_view",
]
