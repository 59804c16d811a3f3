"""The 3D planner against the simulator and against published runs (issue 16).

(a) Planner / simulator, step time and peak memory per device, on four dp × tp × pp layouts
of a small GPT that the simulator trains for one step
(:func:`~minillm.parallel.planner_runs.simulator_comparison`). Target: every ratio within 10% of 1.
(b) Planner / published TFLOP/s per GPU for Megatron-LM's 145.6B and 1T rows (Narayanan et
al. 2021, Table 1) and BLOOM-176B, with ``mfu`` fitted on the 1.7B row: reported, with the
gaps explained in ``minillm/parallel/planner_runs.py`` and lesson 14.

Simulated time and analytic predictions do not depend on this machine's speed.
"""

from __future__ import annotations

import torch

from minillm.model import GPT, GPTConfig
from minillm.parallel import ClusterSpec
from minillm.parallel.planner_runs import published_comparison, simulator_comparison
from minillm.threads import one_thread

TOY = ClusterSpec(name="toy", peak_flops=1e9, mem_bw=1e10, mem_bytes=1e9, link_bw=2e8, latency=0.0)
CONFIG = GPTConfig(vocab_size=32, block_size=32, n_layer=4, n_head=4, n_embd=64)
LAYOUTS = [(2, 2, 2, 2, 0), (1, 2, 4, 1, 0), (2, 1, 2, 2, 1), (2, 2, 1, 2, 1)]  # dp, tp, pp, micro-batch, ZeRO


@one_thread()
def _simulated() -> list[dict]:
    torch.manual_seed(0)
    return simulator_comparison(GPT(CONFIG), LAYOUTS, TOY, global_batch=8)


def run(quick: bool = False) -> list[dict]:
    rows = []
    for r in _simulated():
        for what, key in (("step time", "step_ratio"), ("peak memory", "memory_ratio")):
            v = r[key]
            rows.append({"name": f"planner / simulator {what}, {r['layout']}", "value": v, "target": "0.9-1.1",
                         "passed": 0.9 <= v <= 1.1, "note": "sim at the roofline; planner mfu=1"})
    for r in published_comparison():
        rows.append({"name": f"planner / published TFLOP/s, {r['run']}", "value": 1 + r["error"], "target": "report",
                     "passed": None, "note": f"mfu {r['mfu']:.3f} fitted on Megatron 1.7B; no overlap, no scatter/gather"})
    return rows
