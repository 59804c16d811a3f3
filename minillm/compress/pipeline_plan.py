"""A compression plan and its size in closed form (lesson 06); :mod:`minillm.compress.pipeline` runs plans.

:class:`Plan` names one configuration: heads, MLP neurons and blocks removed, distillation
steps, weight format and the order of recovery and rounding. :func:`predict_bytes` gives
the in-memory bytes of a plan applied to a config before anything is built.
"""

from __future__ import annotations

import dataclasses

from minillm.model import GPTConfig
from minillm.validate import check_choice, check_int, is_number

__all__ = ["Plan", "ORDERS", "WEIGHTS", "MLP_MULTIPLE", "kept_count", "predict_bytes"]

ORDERS = ("distill-then-quantize", "quantize-then-distill")
WEIGHTS = (None, "int8", "int4")
MLP_MULTIPLE = 32  # pruned MLP widths stay multiples of this (int4 groups, kernels)


@dataclasses.dataclass(frozen=True)
class Plan:
    """One compression configuration.

    heads, mlp: fraction of each layer's attention heads / MLP neurons kept, in (0, 1]
    (1.0 = no pruning). steps: distillation steps of recovery (0 = none). weights: None
    (float32), "int8" (W8A8) or "int4" (weight-only, group 32). order: with recovery
    and quantization, "distill-then-quantize" recovers in float and rounds last;
    "quantize-then-distill" rounds first and recovers through fake quantization
    (QAT, :mod:`minillm.compress.qat`), giving weight-only layers. drop: how many whole
    blocks to remove first (depth pruning, :func:`~minillm.compress.structured.drop_layers`):
    those whose removal alone raises the loss on a calibration batch least.
    """

    heads: float = 1.0
    mlp: float = 1.0
    steps: int = 0
    weights: str | None = None
    order: str = "distill-then-quantize"
    drop: int = 0

    def __post_init__(self) -> None:
        for name in ("heads", "mlp"):
            v = getattr(self, name)
            if not is_number(v) or not 0 < v <= 1:
                raise ValueError(f"Plan.{name}={v!r} must be the fraction kept, in (0, 1]; 1.0 keeps all")
        check_int("Plan.steps", self.steps, minimum=0)
        check_int("Plan.drop", self.drop, minimum=0)
        if self.weights not in WEIGHTS:
            raise ValueError(f"Plan.weights={self.weights!r} must be one of {WEIGHTS}")
        check_choice("Plan.order", self.order, ORDERS)

    @property
    def pruned(self) -> bool:
        return self.heads < 1 or self.mlp < 1 or self.drop > 0

    @property
    def name(self) -> str:
        """A short label, e.g. ``"heads 50% mlp 50% -> distill 40 -> int8"``; ``"float32"`` for the original."""
        cuts = []
        if self.drop:
            cuts.append(f"drop {self.drop} block{'s' if self.drop > 1 else ''}")
        if self.heads < 1 or self.mlp < 1:
            cuts.append(f"heads {self.heads:.0%} mlp {self.mlp:.0%}")
        parts = [", ".join(cuts)] if cuts else []
        recover = [f"distill {self.steps}"] if self.steps else []
        quant = [self.weights] if self.weights else []
        if recover and quant and self.order == "quantize-then-distill":
            parts += quant + [f"distill {self.steps} (QAT)"]
        else:
            parts += recover + quant
        return " -> ".join(parts) if parts else "float32"


def kept_count(n: int, fraction: float, multiple: int = 1) -> int:
    """How many of ``n`` units a plan keeps: ``round(fraction * n)``, at least 1, at most n.

    With ``multiple`` > 1 (MLP neurons use 32) and n a multiple of it, the count is rounded to
    a multiple too, so widths stay friendly to kernels and to int4's groups of 32 inputs.
    """
    if fraction >= 1:
        return n
    if multiple > 1 and n % multiple == 0:
        return min(n, max(multiple, multiple * round(fraction * n / multiple)))
    return min(n, max(1, round(fraction * n)))


def _widths(config: GPTConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per layer: (heads, MLP neurons) of a GPT of ``config``."""
    heads = config.layer_heads or (config.n_head,) * config.n_layer
    hidden = config.layer_mlp or (4 * config.n_embd,) * config.n_layer
    return tuple(heads), tuple(hidden)


def _keep(widths: tuple[int, ...], fraction: float, multiple: int):
    """The ``keep`` argument of prune_heads/prune_neurons: one count when every layer has the same width."""
    if len(set(widths)) == 1:
        return kept_count(widths[0], fraction, multiple)
    return fraction  # already pruned unevenly: each layer keeps round(fraction * its width)


def _kept_widths(widths: tuple[int, ...], fraction: float, multiple: int) -> list[int]:
    k = _keep(widths, fraction, multiple)
    return [k if isinstance(k, int) else max(1, round(k * w)) for w in widths]


def predict_bytes(config: GPTConfig, plan: Plan) -> int:
    """The in-memory bytes of ``plan`` applied to a GPT of ``config``, before building it.

    float32 tensors cost 4 bytes per value. Pruning keeps ``kept_count(n, f)`` of each
    layer's n heads (head_dim = n_embd / n_head each) and ``kept_count(n, f, 32)`` of its n MLP neurons. int8 (W8A8)
    stores each linear weight as 1 byte per value plus one float32 scale per output row;
    int4 packs two values per byte plus one float32 scale per 32 inputs of each row.
    (MLP widths rounded to multiples of 32 by :func:`kept_count`.) Biases, LayerNorms,
    embeddings and the tied output layer stay float32.
    Equals ``size_report(model)["total_bytes"]`` of the built model.
    """
    C, V, T = config.n_embd, config.vocab_size, config.block_size
    D = C // config.n_head
    heads, hidden = _widths(config)
    if plan.drop:  # exact when every block has the same widths (which blocks go does not matter then)
        heads, hidden = heads[plan.drop :], hidden[plan.drop :]
    heads = _kept_widths(heads, plan.heads, 1) if plan.heads < 1 else heads
    hidden = _kept_widths(hidden, plan.mlp, MLP_MULTIPLE) if plan.mlp < 1 else hidden
    b = 1 if config.bias else 0

    def linear(n_in: int, n_out: int, bias: int = b) -> int:
        if plan.weights == "int8":
            w = n_in * n_out + 4 * n_out
        elif plan.weights == "int4":
            w = n_in * n_out // 2 + 4 * n_out * (n_in // 32)
        else:
            w = 4 * n_in * n_out
        return w + 4 * bias * n_out

    total = 4 * (V * C + T * C) + 4 * (1 + b) * C  # wte, wpe, ln_f
    if not config.tie_weights:
        total += linear(C, V, bias=0)  # an untied output layer: quantized like the others, no bias
    for h, w in zip(heads, hidden):
        inner = h * D
        total += 2 * 4 * (1 + b) * C  # ln_1, ln_2
        total += linear(C, 3 * inner) + linear(inner, C) + linear(C, w) + linear(w, C)
    return total
