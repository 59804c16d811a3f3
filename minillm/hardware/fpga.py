"""An FPGA as a pipelined dataflow machine: DSP slices, a clock, and an initiation interval.

An FPGA has no fixed instruction set. A designer (or an HLS compiler) lays out
``parallelism`` multiply-accumulate *lanes* built from DSP slices, wires them into a
pipeline, and clocks it at whatever frequency the routed design closes timing at
(usually 200-400 MHz, far below a GPU's ~1.8 GHz). Three numbers then fix the speed:

- **peak** = DSP slices x ops per DSP per cycle x clock: the datasheet number
  (Alveo U280: 9,024 DSPs, 24.5 TOPS int8).
- **design throughput** = 2 x lanes x clock / II ops/s, where the *initiation interval*
  II is how many cycles pass between new inputs to a lane (1 when fully pipelined).
- **latency** of a pipelined loop with ``n`` iterations = depth + (n - 1) x II cycles
  (the standard HLS formula: AMD Vitis HLS User Guide UG1399, "Pipelining Loops").

A transformer layer becomes a *dataflow* of stages (QKV, attention, projection, MLP),
each with its share of the lanes, all working at once on successive tokens: throughput
is set by the slowest stage, latency by the sum of the stages. That is the FPGA's
answer to the GPU: no instruction overhead and deterministic latency at batch 1, at a
much lower clock and peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from minillm.validate import check_int, check_number
from .shapes import as_shape, layer_params

__all__ = ["FPGADesign", "FPGAResult", "LayerResult", "gemm", "transformer_layer", "u280_peak", "u280_dpu", "pipeline_schedule"]


@dataclass(frozen=True)
class FPGADesign:
    """A pipelined MAC design on one FPGA.

    Attributes:
        name: a label.
        dsp: DSP slices on the device.
        clock_hz: the design's clock.
        ops_per_dsp_per_cycle: ops (1 MAC = 2 ops) one DSP slice delivers per design clock.
            2 for one MAC; 4 when two int8 MACs are packed into one DSP48E2; 8 when the DSPs
            are also double-pumped at twice the design clock.
        initiation_interval: II, cycles between successive inputs to a lane (1 = fully pipelined).
        parallelism: MAC lanes the design instantiates; None uses every DSP.
        pipeline_depth: cycles from a lane's input to its output.
        mem_bw: off-chip memory bandwidth, bytes/s (None: ignore memory).
        on_chip_bytes: block RAM + UltraRAM, bytes (weights that fit here are never re-read).
        sources: where the numbers come from.
    """

    name: str
    dsp: int
    clock_hz: float
    ops_per_dsp_per_cycle: float = 2.0
    initiation_interval: int = 1
    parallelism: int | None = None
    pipeline_depth: int = 8
    mem_bw: float | None = None
    on_chip_bytes: float = 0.0
    sources: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("dsp", self.dsp)
        check_number("clock_hz", self.clock_hz, strict=True)
        check_number("ops_per_dsp_per_cycle", self.ops_per_dsp_per_cycle, strict=True)
        check_int("initiation_interval", self.initiation_interval)
        check_int("pipeline_depth", self.pipeline_depth)
        check_number("on_chip_bytes", self.on_chip_bytes)
        if self.mem_bw is not None:
            check_number("mem_bw", self.mem_bw, strict=True)
        if self.parallelism is not None:
            check_int("parallelism", self.parallelism)
            most = int(self.dsp * self.macs_per_dsp)
            if self.parallelism > most:
                raise ValueError(
                    f"parallelism={self.parallelism} MAC lanes need more than the {self.dsp} DSPs "
                    f"(at most {most} lanes at {self.macs_per_dsp:g} MACs per DSP per cycle); lower parallelism"
                )

    @property
    def macs_per_dsp(self) -> float:
        return self.ops_per_dsp_per_cycle / 2

    @property
    def lanes(self) -> int:
        """MAC lanes in the design."""
        return self.parallelism if self.parallelism is not None else int(self.dsp * self.macs_per_dsp)

    @property
    def peak_ops(self) -> float:
        """Every DSP busy every cycle at this design's clock, ops/s.

        The datasheet peak only for :func:`u280_peak`, whose clock is derived from it;
        for a real design it is the ceiling its DSPs could reach at its own clock.
        """
        return self.dsp * self.ops_per_dsp_per_cycle * self.clock_hz

    @property
    def design_ops(self) -> float:
        """The design's own peak, ops/s: 2 x lanes x clock / II."""
        return 2.0 * self.lanes * self.clock_hz / self.initiation_interval


@dataclass(frozen=True)
class FPGAResult:
    """Time of one GEMM on a design: ``seconds`` = max(compute, memory)."""

    seconds: float
    compute_s: float
    memory_s: float
    cycles: int
    ops: float
    achieved_ops: float
    bound: str


def _loop_cycles(iterations: int, depth: int, ii: int) -> int:
    """Latency of a pipelined loop: depth + (iterations - 1) x II (Vitis HLS, UG1399)."""
    return depth + (iterations - 1) * ii


def pipeline_schedule(iterations: int, depth: int, ii: int = 1) -> list[tuple[int, int]]:
    """When each iteration of a pipelined loop enters and leaves: [(start, end)] in cycles, one per iteration.

    Iteration k enters at cycle k x II and leaves ``depth`` cycles later; the last leaves at
    depth + (iterations - 1) x II, the loop latency of :func:`gemm` (AMD Vitis HLS, UG1399,
    "Pipelining Loops"). With II = 1 a new input enters every cycle and ``depth`` iterations are
    in flight at once; with II = 2 only every other cycle.
    """
    n, d, step = check_int("iterations", iterations), check_int("depth", depth), check_int("ii", ii)
    return [(k * step, k * step + d) for k in range(n)]


def gemm(design: FPGADesign, M: int, K: int, N: int, bytes_per_elem: float = 1.0) -> FPGAResult:
    """``A[M,K] @ B[K,N]`` on a design: M·K·N MACs spread over the lanes, one pipelined loop.

    Memory traffic is the least possible, (MK + KN + MN) elements, streamed while the
    pipeline computes (so time = max of the two).
    """
    M, K, N = check_int("M", M), check_int("K", K), check_int("N", N)
    b = check_number("bytes_per_elem", bytes_per_elem, strict=True)
    macs = M * K * N
    iterations = math.ceil(macs / design.lanes)
    cycles = _loop_cycles(iterations, design.pipeline_depth, design.initiation_interval)
    compute_s = cycles / design.clock_hz
    memory_s = 0.0 if design.mem_bw is None else b * (M * K + K * N + M * N) / design.mem_bw
    seconds = max(compute_s, memory_s)
    return FPGAResult(
        seconds=seconds,
        compute_s=compute_s,
        memory_s=memory_s,
        cycles=cycles,
        ops=2.0 * macs,
        achieved_ops=2.0 * macs / seconds,
        bound="compute" if compute_s >= memory_s else "memory",
    )


@dataclass(frozen=True)
class LayerResult:
    """A transformer layer as a dataflow pipeline over ``tokens`` tokens.

    Attributes:
        stages: one dict per stage: ``stage``, ``macs``, ``lanes``, ``cycles_per_token``.
        token_latency_s: seconds from the first token entering the layer to leaving it: the
            pipeline's depth plus every stage's cycles, and never less than the time to
            stream in from off-chip memory the bytes that token needs: its context's K and V,
            and the weights when they do not fit on chip (weights that fit are loaded once,
            before serving, and cost no latency). When the weights stream from off chip,
            one token's latency is the layer's whole time, ``seconds``.
        seconds: the whole stream of ``tokens``: max(compute_s, memory_s).
        tokens_per_s: tokens / seconds.
        bottleneck: the stage with the most cycles per token (it sets the pace only when
            the layer is compute-bound; lanes are shared in proportion to work, so the
            stages differ only by rounding).
        bound: "compute" or "memory", whichever of compute_s and memory_s is larger.
        compute_s: seconds of the pipeline for all tokens, memory ignored.
        memory_s: seconds of off-chip traffic for all tokens, compute ignored.
    """

    stages: list[dict]
    token_latency_s: float
    seconds: float
    tokens_per_s: float
    bottleneck: str
    bound: str
    compute_s: float = 0.0
    memory_s: float = 0.0


def transformer_layer(design: FPGADesign, shape, tokens: int = 1, context: int = 1024, bytes_per_elem: float = 1.0) -> LayerResult:
    """One transformer block as a dataflow of six MAC stages, processing ``tokens`` in a stream.

    Stages and MACs per token: qkv (D x (H·Q + 2K·Q)), scores (H·Q·context),
    values (H·Q·context), proj (H·Q x D), mlp up (D x F, twice if gated), mlp down (F x D).
    Lanes are shared out in proportion to each stage's MACs (a balanced dataflow), so a
    token spends ceil(MACs / lanes) x II cycles in each stage. Weights and the layer's KV
    cache that fit in ``on_chip_bytes`` are loaded once and the layer streams at the
    slowest stage's rate; what does not fit is re-read from off-chip memory for every
    token (decode of a large model), and then memory sets the pace. A token's latency is
    at least the time to stream in the bytes it needs.
    """
    shape = as_shape(shape)
    n_tok = check_int("tokens", tokens)
    ctx = check_int("context", context)
    b = check_number("bytes_per_elem", bytes_per_elem, strict=True)
    d, f, hq, kvq = shape.d_model, shape.d_ff, shape.q_dim, shape.kv_dim
    macs = {
        "qkv": d * (hq + 2 * kvq),
        "scores": hq * ctx,
        "values": hq * ctx,
        "proj": hq * d,
        "mlp up": d * f * (2 if shape.gated_mlp else 1),
        "mlp down": f * d,
    }
    total = sum(macs.values())
    if design.lanes < len(macs):
        raise ValueError(f"the design has {design.lanes} lanes; a layer pipeline needs at least {len(macs)}")
    # Balanced split: each stage gets lanes in proportion to its work (at least one).
    lanes = {k: max(1, int(design.lanes * m / total)) for k, m in macs.items()}
    ii, depth = design.initiation_interval, design.pipeline_depth
    stage_cycles = {k: math.ceil(macs[k] / lanes[k]) * ii for k in macs}
    bottleneck = max(stage_cycles, key=stage_cycles.get)
    token_latency_cycles = sum(depth + c for c in stage_cycles.values())
    compute_cycles = token_latency_cycles + (n_tok - 1) * stage_cycles[bottleneck]
    compute_s = compute_cycles / design.clock_hz
    weight_bytes = layer_params(shape) * b
    kv_bytes = 2.0 * kvq * ctx * 2  # this layer's 16-bit K and V for the context
    memory_s = first_token_memory_s = 0.0
    if design.mem_bw is not None:
        # Whatever fits on chip is loaded once; whatever does not is re-read for every token.
        weights_on_chip = weight_bytes <= design.on_chip_bytes
        kv_on_chip = weight_bytes * weights_on_chip + kv_bytes <= design.on_chip_bytes
        reread = weight_bytes * (not weights_on_chip) + kv_bytes * (not kv_on_chip)  # bytes per token
        once = weight_bytes * weights_on_chip + kv_bytes * kv_on_chip
        memory_s = (once + reread * n_tok) / design.mem_bw
        # Weights that fit on chip are loaded once, before serving: no latency. The first token
        # still needs its context's K and V (loaded once per stream, or re-read per token).
        first_token_memory_s = (reread + kv_bytes * kv_on_chip) / design.mem_bw
    seconds = max(compute_s, memory_s)
    stages = [
        {"stage": k, "macs": macs[k], "lanes": lanes[k], "cycles_per_token": stage_cycles[k]} for k in macs
    ]
    return LayerResult(
        stages=stages,
        # A token cannot leave before the bytes it needs have streamed in from off chip.
        token_latency_s=max(token_latency_cycles / design.clock_hz, first_token_memory_s),
        seconds=seconds,
        tokens_per_s=n_tok / seconds,
        bottleneck=bottleneck,
        bound="compute" if compute_s >= memory_s else "memory",
        compute_s=compute_s,
        memory_s=memory_s,
    )


# --------------------------------------------------------------------------- presets

_DS963 = "AMD/Xilinx Alveo U280 data sheet (DS963)"


def u280_peak() -> FPGADesign:
    """The Alveo U280 at its datasheet peak: 9,024 DSPs x 4 int8 ops x clock = 24.5 TOPS.

    The clock (about 679 MHz) is *derived* so that the product equals the datasheet's
    24.5 TOPS; no real design closes timing there with every DSP busy.
    """
    return FPGADesign(
        name="U280 datasheet peak",
        dsp=9024,
        clock_hz=24.5e12 / (9024 * 4),
        ops_per_dsp_per_cycle=4.0,
        mem_bw=460e9,
        on_chip_bytes=41e6,
        sources={
            "dsp": f"{_DS963}: 9,024 DSP slices",
            "peak": f"{_DS963}: INT8 peak 24.5 TOPS",
            "ops_per_dsp_per_cycle": "two int8 MACs packed in one DSP48E2 (AMD WP486, 'Deep Learning with INT8 Optimization')",
            "mem_bw": f"{_DS963}: HBM2 460 GB/s",
            "on_chip_bytes": f"{_DS963}: 41 MB of internal SRAM (block RAM + UltraRAM)",
        },
    )


def u280_dpu() -> FPGADesign:
    """A real U280 design: the Vitis AI DPUCAHX8H, 3 cores / 14 engines at 300 MHz, 17,203 GOPS peak.

    AMD PG367 (DPUCAHX8H product guide), Performance table. 17.203e12 / (2 x 300e6) =
    28,672 MAC lanes (2,048 per engine), with DSPs double-pumped at 600 MHz and two
    int8 MACs packed per DSP: 8 ops per DSP per 300 MHz cycle.
    """
    return FPGADesign(
        name="U280 DPUCAHX8H (Vitis AI)",
        dsp=9024,
        clock_hz=300e6,
        ops_per_dsp_per_cycle=8.0,
        parallelism=14 * 2048,
        pipeline_depth=16,
        mem_bw=460e9,
        on_chip_bytes=41e6,
        sources={
            "design_ops": "AMD PG367 (DPUCAHX8H), Performance table: U280, 3 cores (4+5+5 engines), 300 MHz, 17,203 GOPS",
            "ops_per_dsp_per_cycle": "AMD PG338/PG367: DSPs run at twice the logic clock; two int8 MACs per DSP48E2",
            "pipeline_depth": "assumed (illustrative)",
        },
    )
