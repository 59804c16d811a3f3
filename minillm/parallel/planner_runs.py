"""The planner against published training runs: Megatron-LM's Table 1 and BLOOM-176B.

Every number below is quoted from its source (GB = 1e9 bytes; TFLOP/s per GPU):

- **Narayanan et al. 2021**, "Efficient Large-Scale Language Model Training on GPU Clusters
  Using Megatron-LM" (arXiv:2104.04473), Table 1: sequence 2048, vocabulary 51,200, A100
  80GB on Selene (8 per node, NVLink inside, eight 200 Gb/s HDR InfiniBand HCAs per node,
  Sec. 5). Rows (heads, hidden, layers, TP, PP, GPUs, batch, TFLOP/s per GPU):
  1.7B: 24, 2304, 24, 1, 1, 32, 512, 137 · 145.6B: 96, 12288, 80, 8, 8, 1536, 2304, 148 ·
  1T (1008B): 160, 25600, 128, 8, 64, 3072, 3072, 163 (52% of the 312 TFLOP/s peak).
  Layouts checked against Megatron-LM ``examples/academic_paper_scripts/sc21/run_table_1.sh``;
  per-row throughputs from copies of the table (the 1T row's 502 PFLOP/s / 3072 GPUs = 163
  is in the abstract). The paper counts FLOPs *with* activation recomputation (its Eq. 3,
  96·B·s·l·h²(1 + s/6h + V/16lh)), so these are hardware FLOP/s, and the runs recompute.
  The paper does not list micro-batch sizes in Table 1; we assume 1.
- **BLOOM-176B** (BigScience, ``train/tr11-176B-ml`` slurm file and README): 70 layers,
  h = 14,336, 112 heads, vocabulary 250,880, sequence 2048; TP 4, PP 12, DP 8 on 384 A100
  80GB; micro-batch 2, global batch 2048; activation checkpointing; a BF16 optimizer that
  shards its states like ZeRO-1. About 150 TFLOP/s per GPU, counting recomputation.

:func:`published_comparison` calibrates the one free parameter, ``mfu`` (the GEMMs' share
of peak), on the 1.7B row, which has no tensor or pipeline parallelism, and predicts the
others out of sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from minillm.hardware.shapes import ModelShape

from .planner import Plan, predict

__all__ = ["PublishedRun", "PUBLISHED_RUNS", "CALIBRATION_RUN", "calibrate_mfu", "published_comparison"]


@dataclass(frozen=True)
class PublishedRun:
    """A training run as published: model, layout, batch and measured TFLOP/s per GPU."""

    name: str
    shape: ModelShape
    dp: int
    tp: int
    pp: int
    micro_batch: int
    global_batch: int
    seq_len: int
    tflops_per_gpu: float
    zero_stage: int
    source: str

    @property
    def n_devices(self) -> int:
        return self.dp * self.tp * self.pp

    def predict(self, mfu: float, device: str = "a100", **kw) -> Plan:
        """The planner's prediction for this run's own layout (full recompute, as the runs did)."""
        return predict(self.shape, device, dp=self.dp, tp=self.tp, pp=self.pp, micro_batch=self.micro_batch,
                       global_batch=self.global_batch, seq_len=self.seq_len, zero_stage=self.zero_stage,
                       recompute="full", mfu=mfu, **kw)


def _gpt(name: str, L: int, h: int, a: int, V: int = 51200) -> ModelShape:
    return ModelShape(L, h, a, V, n_positions=2048, name=name)


_T1 = "Narayanan et al. 2021, Table 1"
CALIBRATION_RUN = PublishedRun("Megatron 1.7B", _gpt("megatron-1.7b", 24, 2304, 24), 32, 1, 1, 1, 512, 2048, 137, 0, _T1)
PUBLISHED_RUNS = (
    PublishedRun("Megatron 145.6B", _gpt("megatron-145.6b", 80, 12288, 96), 24, 8, 8, 1, 2304, 2048, 148, 0, _T1),
    PublishedRun("Megatron 1T", _gpt("megatron-1t", 128, 25600, 160), 6, 8, 64, 1, 3072, 2048, 163, 0, _T1),
    PublishedRun(
        "BLOOM-176B",
        ModelShape(70, 14336, 112, 250880, name="bloom-176b"),  # ALiBi: no position embedding
        8, 4, 12, 2, 2048, 2048, 150, 1,
        "bigscience-workshop/bigscience train/tr11-176B-ml (slurm file and README)",
    ),
)


def calibrate_mfu(run: PublishedRun = CALIBRATION_RUN, device: str = "a100") -> float:
    """The ``mfu`` at which the planner reproduces ``run``'s TFLOP/s exactly (bisection to 1e-6)."""
    lo, hi = 1e-3, 1.0
    target = run.tflops_per_gpu * 1e12
    if run.predict(hi, device).hardware_flops_per_device < target:
        raise ValueError(f"{run.name}: even mfu=1 falls short of {run.tflops_per_gpu} TFLOP/s")
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if run.predict(mid, device).hardware_flops_per_device < target else (lo, mid)
    return (lo + hi) / 2


def published_comparison(mfu: float | None = None, device: str = "a100") -> list[dict]:
    """One row per published run: the layout, the published and predicted TFLOP/s per GPU, the error.

    ``mfu`` None calibrates it on the 1.7B row (:func:`calibrate_mfu`). ``error`` is
    predicted / published − 1. Also: the predicted memory (GB) and whether it fits, and
    the bubble's share of the step.
    """
    u = calibrate_mfu(device=device) if mfu is None else mfu
    rows = []
    for run in PUBLISHED_RUNS:
        p = run.predict(u, device)
        pred = p.hardware_flops_per_device / 1e12
        rows.append({
            "run": run.name, "GPUs": run.n_devices, "dp": run.dp, "tp": run.tp, "pp": run.pp,
            "batch": run.global_batch, "published_TFLOPs": run.tflops_per_gpu, "predicted_TFLOPs": pred,
            "error": pred / run.tflops_per_gpu - 1, "memory_GB": p.memory_bytes / 1e9, "fits": p.fits,
            "bubble": p.bubble_fraction, "mfu": u, "plan": p,
        })
    return rows
