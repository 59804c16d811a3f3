"""A 3D-parallelism planner: which dp × tp × pp layout trains a model fastest on a cluster, and why.

:func:`plan` enumerates every layout dp·tp·pp = n_devices, micro-batch size, ZeRO stage and
recompute policy; :func:`predict` prices one of them. Each :class:`Plan` carries every term
behind its two headline numbers, so a learner can see *why* one layout wins:

**Memory per device** (bytes; GB = 1e9), for the heaviest pipeline stage:

- model states: its parameters (each block's matrices split over tp; norms and the
  row-parallel biases replicated) × (weights + gradients + optimizer bytes). Mixed
  precision keeps 16-bit weights and gradients and fp32 master weights, momentum and
  variance: 2 + 2 + 12 bytes per parameter (Rajbhandari et al. 2020, ZeRO, Sec. 3.1);
  ZeRO-1 divides the 12 by dp. In fp32 there is no master copy: 4 + 4 + 8.
- activations: Korthikanti et al. 2022 (arXiv:2205.05198), Table 2, per layer and
  micro-batch of b sequences: sbh·(10 + 24/t) + 5·a·s²·b/t bytes (16-bit, with
  dropout masks); selective recompute drops the attention term, full recompute keeps
  only each layer's 2sbh input (plus one layer's full set while it recomputes). Under
  1F1B the first stage holds min(p, m) micro-batches of its L/p layers in flight
  (Narayanan et al. 2021, Sec. 2.2.1); under GPipe all m.

**Step time** (seconds), nothing overlapped (an upper bound, like the simulator):

- compute: FLOPs per token 6N + 12·L·h·s (PaLM, Appendix B), plus one more forward
  (2N + 4Lhs) under full recompute or the attention core's forward (4Lhs) under selective,
  split over tp and pp, at ``mfu`` × the device's peak (the GEMMs' efficiency, which the
  caller sets);
- tensor parallelism: per layer and micro-batch 2 all-reduces forward and 2 backward of
  the b·s·h activation (Shoeybi et al. 2019, Sec. 3), 2 more under full recompute, on the
  node's link while tp ≤ gpus_per_node;
- the pipeline: 1F1B or GPipe take (m − 1)·t_max + Σ_s t_s for stage times t_s (the bubble
  is (p − 1)/(m + p − 1) of the step when stages are equal, Narayanan et al. 2021, Sec.
  2.2), plus one activation transfer per boundary and micro-batch each way;
- data parallelism: one all-reduce of the stage's gradients over dp (ZeRO-1: a
  reduce-scatter and an all-gather, the same bytes), on the inter-node link once a DP
  group leaves the node; then the AdamW step, memory-bound (7 tensors read or written).

Collectives cost the α-β ring times of :func:`~minillm.parallel.costs.collective_time`.
Layouts put TP fastest, then DP, then PP (:class:`~minillm.parallel.grid.ProcessGrid`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from minillm.hardware.devices import DTYPE_BYTES, DeviceSpec, as_device
from minillm.hardware.shapes import ModelShape, as_shape, layer_params
from minillm.units import GB
from minillm.validate import check_choice, check_fraction, check_int, check_number

from .cluster import DEFAULT_LATENCY, ClusterSpec
from .costs import collective_time

__all__ = [
    "ActivationModel",
    "KORTHIKANTI_16BIT",
    "MINILLM_FP32",
    "INTER_NODE_BW",
    "Plan",
    "divisors",
    "predict",
    "plan",
    "plans_table",
]

RECOMPUTE = ("none", "selective", "full")


@dataclass(frozen=True)
class ActivationModel:
    """Bytes a transformer layer keeps for backward, per s·b·h (or a·s²·b for ``attention``).

    ``unsplit``: what tensor parallelism cannot split (LayerNorm inputs, residual,
    dropout masks); ``split``: what it divides by t; ``attention``: bytes per a·s²·b
    (scores, softmax, its dropout mask), also divided by t; ``layer_input``: bytes per
    sbh that full recompute keeps.
    """

    unsplit: float
    split: float
    attention: float
    layer_input: float

    def per_layer(self, s: int, b: int, h: int, a: int, t: int, recompute: str) -> float:
        """Bytes of one layer and one micro-batch of b sequences of s tokens, under t-way TP."""
        sbh = s * b * h
        if recompute == "full":
            return self.layer_input * sbh
        attn = 0.0 if recompute == "selective" else self.attention * a * s * s * b / t
        return sbh * (self.unsplit + self.split / t) + attn


#: Megatron's layer in 16-bit with dropout (Korthikanti et al. 2022, Table 2): sbh(10 + 24/t) + 5as²b/t.
KORTHIKANTI_16BIT = ActivationModel(unsplit=10, split=24, attention=5, layer_input=2)
#: minillm's GPT block in fp32 without dropout, as autograd saves it, measured with
#: :func:`~minillm.parallel.data_parallel.saved_activation_bytes` at t = 1, 2, 4
#: (tests/parallel/test_planner.py re-measures it).
MINILLM_FP32 = ActivationModel(unsplit=16, split=64, attention=4, layer_input=4)

#: Inter-node bandwidth per GPU and direction (bytes/s), for devices whose usual server is known.
#: a100: Selene's DGX A100 nodes, "eight NVIDIA Mellanox 200Gbps HDR Infiniband HCAs" for
#: eight GPUs (Narayanan et al. 2021, Sec. 5): 200 Gb/s = 25 GB/s per GPU.
#: h100 / h200: DGX H100 / H200, eight 400 Gb/s ConnectX-7 ports for eight GPUs: 50 GB/s per GPU.
INTER_NODE_BW = {"a100-80gb-sxm": 25 * GB, "h100-sxm": 50 * GB, "h200-sxm": 50 * GB}


@dataclass(frozen=True)
class Plan:
    """One layout and what it costs. Bytes per device; seconds per training step."""

    dp: int
    tp: int
    pp: int
    micro_batch: int
    zero_stage: int
    recompute: str
    memory_bytes: float
    step_time: float
    tokens_per_s: float
    fits: bool
    # --- the terms behind them
    n_micro: int = 0
    params_per_device: float = 0.0
    memory_terms: dict = field(default_factory=dict)  # parameters, gradients, optimizer, activations
    time_terms: dict = field(default_factory=dict)  # compute, bubble, tp_comm, pp_comm, dp_comm, optimizer
    bubble_fraction: float = 0.0
    in_flight: int = 0
    mfu: float = 0.0  # model FLOPs (6N + attention) per second / peak of all devices
    hardware_flops_per_device: float = 0.0  # FLOP/s, counting recomputation (Megatron's convention)
    capacity_bytes: float = 0.0
    links: dict = field(default_factory=dict)  # which link each axis uses

    def as_row(self) -> dict:
        """The headline fields plus the terms, flat, for a table (GB, ms)."""
        row = {k: getattr(self, k) for k in ("dp", "tp", "pp", "micro_batch", "zero_stage", "recompute", "n_micro")}
        row["memory_GB"] = self.memory_bytes / GB
        row.update({f"{k}_GB": v / GB for k, v in self.memory_terms.items()})
        row["step_ms"] = self.step_time * 1e3
        row.update({f"{k}_ms": v * 1e3 for k, v in self.time_terms.items()})
        row["tokens_per_s"] = self.tokens_per_s
        row["mfu"] = self.mfu
        row["fits"] = self.fits
        return row

    def to_dict(self) -> dict:
        return asdict(self)


def divisors(n: int) -> list[int]:
    """The divisors of n, ascending."""
    n = check_int("n", n)
    return [d for d in range(1, n + 1) if n % d == 0]


def _device(device, dtype: str) -> tuple[str, float, float, float, float | None]:
    """(name, peak FLOP/s at dtype, memory bytes, memory bandwidth, link bandwidth) of a device or ClusterSpec."""
    if isinstance(device, ClusterSpec):
        return device.name, device.peak_flops, device.mem_bytes, device.mem_bw, device.link_bw
    d: DeviceSpec = as_device(device)
    return d.name, d.peak(dtype), d.mem_bytes, d.mem_bw, d.link_bw


def _stage_params(shape: ModelShape, tp: int, pp: int) -> list[float]:
    """Parameters each pipeline stage keeps on one device of its TP group."""
    L, h, V = shape.n_layer, shape.d_model, shape.vocab_size
    norm = h * (2 if shape.norm == "layernorm" and shape.bias else 1)
    replicated = 2 * norm + (2 * h if shape.bias else 0)  # two norms; the row-parallel biases
    per_layer = (layer_params(shape) - replicated) / tp + replicated
    sizes = [L // pp + (1 if s >= pp - L % pp else 0) for s in range(pp)]  # later stages take the extras
    out = []
    for s, n in enumerate(sizes):
        p = n * per_layer
        if s == 0:
            p += V * h / tp + shape.n_positions * h
        if s == pp - 1:
            p += norm + (V * h / tp if (pp > 1 or not shape.tied_embeddings) else 0)
        out.append(p)
    return out


def _ring(op: str, nbytes: float, n: int, bw: float, latency: float) -> float:
    return collective_time(op, nbytes, n, bw, latency) if n > 1 else 0.0


def predict(
    model,
    device,
    *,
    dp: int,
    tp: int,
    pp: int,
    micro_batch: int,
    global_batch: int,
    seq_len: int,
    zero_stage: int = 0,
    recompute: str = "none",
    dtype: str = "bf16",
    mfu: float = 0.5,
    schedule: str = "1f1b",
    gpus_per_node: int = 8,
    intra_node_bw: float | None = None,
    inter_node_bw: float | None = None,
    latency: float = DEFAULT_LATENCY,
    activations: ActivationModel = KORTHIKANTI_16BIT,
    usable_fraction: float = 1.0,
) -> Plan:
    """Memory per device and step time of one layout (see the module docstring for every term).

    model: a ModelShape, a preset name or a GPTConfig. device: a catalog name, a
    DeviceSpec or a :class:`ClusterSpec` (the simulator's devices). ``intra_node_bw``
    defaults to the device's link, ``inter_node_bw`` to :data:`INTER_NODE_BW` (or the
    device's link if unknown). ``mfu``: the fraction of peak the GEMMs reach.
    """
    shape = as_shape(model)
    dp, tp, pp = (check_int(n, v) for n, v in (("dp", dp), ("tp", tp), ("pp", pp)))
    b, B, s = check_int("micro_batch", micro_batch), check_int("global_batch", global_batch), check_int("seq_len", seq_len)
    check_choice("recompute", recompute, RECOMPUTE)
    check_choice("schedule", schedule, ("1f1b", "gpipe"))
    check_choice("dtype", dtype, tuple(DTYPE_BYTES))
    if zero_stage not in (0, 1):
        raise ValueError(f"zero_stage={zero_stage!r} must be 0 or 1 (ZeRO-1 over the DP axis)")
    if check_fraction("mfu", mfu, closed=True) == 0:
        raise ValueError("mfu=0 means no compute at all; use a fraction in (0, 1], e.g. 0.5")
    gpn = check_int("gpus_per_node", gpus_per_node)
    if shape.n_head % tp or shape.d_ff % tp:
        raise ValueError(f"tp={tp} must divide n_head={shape.n_head} and d_ff={shape.d_ff} (each rank keeps whole heads)")
    if pp > shape.n_layer:
        raise ValueError(f"pp={pp} stages exceed n_layer={shape.n_layer}: every stage needs a block")
    if B % (dp * b):
        raise ValueError(f"global_batch={B} must split into dp={dp} replicas of micro-batches of {b}: "
                         f"choose a global batch that is a multiple of dp·micro_batch = {dp * b}")
    name, peak, mem, mem_bw, link = _device(device, dtype)
    intra = intra_node_bw or link
    inter = inter_node_bw or INTER_NODE_BW.get(name) or link
    if intra is None or inter is None:
        raise ValueError(f"device {name!r} has no published link bandwidth; pass intra_node_bw= and inter_node_bw=")
    m = B // (dp * b)
    L, h, a, V = shape.n_layer, shape.d_model, shape.n_head, shape.vocab_size
    wb = DTYPE_BYTES[dtype]
    act_b = 2 if wb < 4 else 4

    # ---- memory: the heaviest stage
    stage_p = _stage_params(shape, tp, pp)
    P = max(stage_p)
    opt_bytes = (4 if wb < 4 else 0) + 8  # fp32 master copy (mixed precision), momentum, variance
    mem_terms = {"parameters": P * wb, "gradients": P * wb, "optimizer": P * opt_bytes / (dp if zero_stage == 1 else 1)}
    layers_max = math.ceil(L / pp)
    in_flight = min(pp, m) if schedule == "1f1b" else m
    per_layer = activations.per_layer(s, b, h, a, tp, recompute)
    act = in_flight * layers_max * per_layer
    if recompute == "full":  # one layer's whole set while it recomputes
        act += activations.per_layer(s, b, h, a, tp, "none")
    mem_terms["activations"] = act
    memory = sum(mem_terms.values())
    capacity = mem * check_fraction("usable_fraction", usable_fraction, closed=True)

    # ---- time per micro-batch on each stage: compute and TP communication
    tp_bw = intra if tp <= gpn else inter
    pp_bw = intra if tp * dp * pp <= gpn else inter
    dp_bw = intra if tp * dp <= gpn else inter
    layer_mm = layer_params(shape) - 2 * h * (2 if shape.norm == "layernorm" and shape.bias else 1)  # no norms
    attn = 12.0 * h * s  # per token per layer (PaLM: 12·H·Q·T with H·Q = h)
    extra = {"none": 0.0, "selective": attn / 3, "full": 2.0 * layer_mm + attn / 3}[recompute]
    flops_layer = b * s * (6.0 * layer_mm + attn + extra) / tp  # per micro-batch
    flops_head = b * s * 6.0 * V * h / tp
    rate = peak * mfu
    x_bytes = b * s * h * act_b
    ar = _ring("all_reduce", x_bytes, tp, tp_bw, latency)
    n_ar = 4 + (2 if recompute == "full" else 0)
    sizes = [L // pp + (1 if st >= pp - L % pp else 0) for st in range(pp)]
    t_comp, t_tp = [], []
    for st, n in enumerate(sizes):
        c = n * flops_layer + (flops_head if st == pp - 1 else 0.0)
        comm = n * n_ar * ar
        if st == 0:
            comm += ar  # the vocabulary-parallel embedding's all-reduce
        if st == pp - 1:
            comm += ar + 3 * _ring("all_reduce", b * s * 4, tp, tp_bw, latency)  # head input (f), cross-entropy
        t_comp.append(c / rate)
        t_tp.append(comm)
    t_stage = [c + k for c, k in zip(t_comp, t_tp)]
    p2p = (latency + x_bytes / pp_bw) if pp > 1 else 0.0
    pipe = (m - 1) * max(t_stage) + sum(t_stage)
    ideal = m * max(t_stage)
    pp_comm = 2 * (m + pp - 2) * p2p if pp > 1 else 0.0
    # ---- after the pipeline: DP gradients and the optimizer
    grad_bytes = P * wb
    if zero_stage == 0:
        dp_comm = _ring("all_reduce", grad_bytes, dp, dp_bw, latency)
    else:
        dp_comm = _ring("reduce_scatter", grad_bytes, dp, dp_bw, latency) + _ring("all_gather", grad_bytes, dp, dp_bw, latency)
    opt_time = 7 * 4 * P / (dp if zero_stage == 1 else 1) / mem_bw
    step = pipe + pp_comm + dp_comm + opt_time
    i_max = t_stage.index(max(t_stage))
    terms = {
        "compute": m * t_comp[i_max],
        "tp_comm": m * t_tp[i_max],
        "bubble": pipe - ideal,
        "pp_comm": pp_comm,
        "dp_comm": dp_comm,
        "optimizer": opt_time,
    }
    tokens = B * s
    model_flops = tokens * (6.0 * (L * layer_mm + V * h) + L * attn)
    hw_flops = tokens * (6.0 * (L * layer_mm + V * h) + L * (attn + extra))
    n = dp * tp * pp
    return Plan(
        dp=dp, tp=tp, pp=pp, micro_batch=b, zero_stage=zero_stage, recompute=recompute,
        memory_bytes=memory, step_time=step, tokens_per_s=tokens / step, fits=memory <= capacity,
        n_micro=m, params_per_device=P, memory_terms=mem_terms, time_terms=terms,
        bubble_fraction=(pipe - ideal) / pipe, in_flight=in_flight,
        mfu=model_flops / step / (n * peak), hardware_flops_per_device=hw_flops / step / n,
        capacity_bytes=capacity,
        links={"tp": "intra" if tp_bw == intra and tp <= gpn else "inter",
               "pp": "intra" if pp_bw == intra and tp * dp * pp <= gpn else "inter",
               "dp": "intra" if dp_bw == intra and tp * dp <= gpn else "inter"},
    )


def plan(
    model,
    n_devices: int,
    device,
    *,
    global_batch: int,
    seq_len: int,
    dtype: str = "bf16",
    max_tp: int | None = None,
    zero_stages: tuple[int, ...] = (0, 1),
    recompute: tuple[str, ...] = ("none", "selective", "full"),
    micro_batches: tuple[int, ...] = (1, 2, 4, 8),
    include_unfit: bool = False,
    **kw,
) -> list[Plan]:
    """Every layout dp·tp·pp = n_devices that fits, fastest first (by tokens per second).

    Enumerates tp (dividing n_head and at most ``max_tp``, default one node's
    ``gpus_per_node``), pp (at most n_layer), the micro-batch sizes that divide the
    per-replica batch, ``zero_stages`` and ``recompute``. ``include_unfit=True`` keeps
    the layouts that do not fit too (after the ones that do). Other keywords go to
    :func:`predict` (``mfu``, ``schedule``, ``gpus_per_node``, links, ``activations``).
    """
    shape = as_shape(model)
    n = check_int("n_devices", n_devices)
    B = check_int("global_batch", global_batch)
    gpn = kw.get("gpus_per_node", 8)
    max_tp = gpn if max_tp is None else check_int("max_tp", max_tp)
    for r in recompute:
        check_choice("recompute", r, RECOMPUTE)
    out = []
    for tp in divisors(n):
        if tp > max_tp or shape.n_head % tp or shape.d_ff % tp:
            continue
        for pp in divisors(n // tp):
            if pp > shape.n_layer:
                continue
            dp = n // (tp * pp)
            if B % dp:
                continue
            for b in micro_batches:
                if (B // dp) % b:
                    continue
                for z in zero_stages:
                    if z == 1 and dp == 1:
                        continue  # nothing to shard
                    for r in recompute:
                        out.append(predict(shape, device, dp=dp, tp=tp, pp=pp, micro_batch=b, global_batch=B,
                                           seq_len=seq_len, zero_stage=z, recompute=r, dtype=dtype, **kw))
    out.sort(key=lambda p: (not p.fits, -p.tokens_per_s))
    return out if include_unfit else [p for p in out if p.fits]


def plans_table(plans: list[Plan], top: int = 10) -> list[dict]:
    """The first ``top`` plans as rows for a table: layout, memory (GB) and its terms, step (ms), tokens/s."""
    rows = []
    for rank, p in enumerate(plans[: check_int("top", top)], start=1):
        rows.append({"rank": rank, **p.as_row()})
    return rows
