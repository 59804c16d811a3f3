"""The compression pipeline (lesson 06): prune, recover by distillation, quantize, and search.

Each technique of Part I does one thing; chained they multiply:

1. **structured pruning** (lesson 03, :mod:`minillm.compress.structured`): keep a fraction
   of each layer's attention heads and MLP neurons, giving a smaller *dense* GPT;
2. **recovery by distillation** (lesson 05, :func:`minillm.compress.distill.distill`): a
   short run that trains the pruned model on the original model's output distribution;
   Minitron (Muralidharan et al. 2024, arXiv:2407.14679) prunes and then distills;
3. **quantization** (lesson 04, :func:`minillm.compress.model_quant.quantize_model`):
   int8 weights and activations (W8A8), or int4 weight-only (W4A32, group 32).

A :class:`Plan` names one point of that space. :func:`compress` runs a small grid of
plans, measures each (size in bytes, one-thread forward latency, validation loss, fact
recall), marks the Pareto front, and returns the smallest (or fastest) model within a
quality and size budget. Deep Compression (Han, Mao & Dally, ICLR 2016) is the classic
chain: prune, quantize (weight sharing), Huffman-code; 35x (AlexNet) to 49x (VGG-16)
smaller at no accuracy loss.

Sizes are the bytes the model holds in memory (:func:`~minillm.compress.model_quant.size_report`):
int8 codes plus float32 scales; embeddings, LayerNorms and biases stay float32.
Figures and the widget live in :mod:`minillm.compress.pipeline_study`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from minillm.evaluate import accuracy, evaluate_loss
from minillm.model import GPT, GPTConfig
from minillm.timing import interleaved_best
from minillm.validate import check_choice, check_int, check_number, is_number

from .distill import distill
from .model_quant import quantize_model, size_report
from .qat import qat_convert, qat_prepare
from .structured import prune_heads, prune_neurons

__all__ = [
    "Plan",
    "ORDERS",
    "WEIGHTS",
    "BudgetNotMet",
    "CompressionReport",
    "default_plans",
    "apply_plan",
    "predict_bytes",
    "kept_count",
    "pareto_front",
    "forward_latency",
    "evaluate_plans",
    "select",
    "compress",
]

ORDERS = ("distill-then-quantize", "quantize-then-distill")
WEIGHTS = (None, "int8", "int4")
MLP_MULTIPLE = 32  # pruned MLP widths stay multiples of this (int4 groups, kernels)
_QUANT = {None: None, "int8": {"weights": "int8", "activations": "int8"}, "int4": {"weights": "int4", "activations": None}}


@dataclasses.dataclass(frozen=True)
class Plan:
    """One compression configuration.

    heads, mlp: fraction of each layer's attention heads / MLP neurons kept, in (0, 1]
    (1.0 = no pruning). steps: distillation steps of recovery (0 = none). weights: None
    (float32), "int8" (W8A8) or "int4" (weight-only, group 32). order: with recovery
    and quantization, "distill-then-quantize" recovers in float and rounds last;
    "quantize-then-distill" rounds first and recovers through fake quantization
    (QAT, :mod:`minillm.compress.qat`), giving weight-only layers.
    """

    heads: float = 1.0
    mlp: float = 1.0
    steps: int = 0
    weights: str | None = None
    order: str = "distill-then-quantize"

    def __post_init__(self) -> None:
        for name in ("heads", "mlp"):
            v = getattr(self, name)
            if not is_number(v) or not 0 < v <= 1:
                raise ValueError(f"Plan.{name}={v!r} must be the fraction kept, in (0, 1]; 1.0 keeps all")
        check_int("Plan.steps", self.steps, minimum=0)
        if self.weights not in WEIGHTS:
            raise ValueError(f"Plan.weights={self.weights!r} must be one of {WEIGHTS}")
        check_choice("Plan.order", self.order, ORDERS)

    @property
    def pruned(self) -> bool:
        return self.heads < 1 or self.mlp < 1

    @property
    def name(self) -> str:
        """A short label, e.g. ``"heads 50% mlp 50% +distill 40 -> int8"``; ``"float32"`` for the original."""
        parts = []
        if self.pruned:
            parts.append(f"heads {self.heads:.0%} mlp {self.mlp:.0%}")
        if self.steps:
            parts.append(f"distill {self.steps}")
        if self.weights:
            parts.append(self.weights)
        if self.steps and self.weights and self.order == "quantize-then-distill":
            parts = parts[:-2] + [self.weights, f"distill {self.steps} (QAT)"]
        return " -> ".join(parts) if parts else "float32"


class BudgetNotMet(Exception):
    """No configuration met the budget; ``.report`` holds every measured row, ``.best`` the closest one."""

    def __init__(self, message: str, report: "CompressionReport", best: dict) -> None:
        super().__init__(message)
        self.report, self.best = report, best


@dataclasses.dataclass
class CompressionReport:
    """The measured rows (the first is the original float32 model) and the chosen one.

    Each row: name, heads, mlp, steps, weights, order, bytes, latency_ms (one thread,
    one sequence of ``seq_len`` tokens), val_loss, loss_increase (relative to row 0),
    recall (fact recall, or None), pareto_size, pareto_latency (on the front of bytes
    against val_loss, and of latency against val_loss), meets (within the budget).
    """

    rows: list[dict]
    chosen: int | None
    target_bytes: float | None = None
    max_loss_increase: float | None = None
    objective: str = "size"
    seq_len: int = 0

    @property
    def best(self) -> dict | None:
        return None if self.chosen is None else self.rows[self.chosen]

    def to_markdown(self) -> str:
        """The table as Markdown, the chosen row in bold, Pareto points starred."""
        base = self.rows[0]
        lines = [
            "| configuration | bytes | x smaller | latency (ms) | x faster | val loss | loss change | fact recall | Pareto (size / latency) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for i, r in enumerate(self.rows):
            recall = "-" if r["recall"] is None else f"{r['recall']:.0%}"
            par = ("*" if r["pareto_size"] else "") + " / " + ("*" if r["pareto_latency"] else "")
            name = f"**{r['name']}**" if i == self.chosen else r["name"]
            lines.append(
                f"| {name} | {r['bytes']:,} | {base['bytes'] / r['bytes']:.2f} | {r['latency_ms']:.2f} | "
                f"{base['latency_ms'] / r['latency_ms']:.2f} | {r['val_loss']:.4f} | {r['loss_increase']:+.1%} | {recall} | {par} |"
            )
        return "\n".join(lines)


def default_plans(steps: int = 40, weights: Sequence[str] = ("int8",)) -> list[Plan]:
    """The small grid :func:`compress` searches by default (the float32 original is always measured too).

    Quantization alone, then heads and neurons kept at (1.0, 0.5), (0.75, 0.5) and (0.5, 0.5),
    each recovered by ``steps`` distillation steps, in float and with each of ``weights``.
    """
    steps = check_int("steps", steps, minimum=0)
    for w in weights:
        if w not in ("int8", "int4"):
            raise ValueError(f"weights={tuple(weights)!r}: each must be 'int8' or 'int4'")
    plans = [Plan(weights=w) for w in weights]
    for heads, mlp in ((1.0, 0.5), (0.75, 0.5), (0.5, 0.5)):
        plans.append(Plan(heads, mlp, steps))
        plans += [Plan(heads, mlp, steps, w) for w in weights]
    return plans


# --------------------------------------------------------------------------- building


def _as_ids(ids: Tensor, name: str) -> Tensor:
    if not isinstance(ids, Tensor) or ids.is_floating_point() or ids.dim() not in (1, 2) or ids.numel() < 2:
        raise ValueError(f"{name} must be token ids, 1-D [N] or 2-D [B, T], got {getattr(ids, 'shape', type(ids).__name__)}")
    return ids.reshape(-1).long()


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


def _prune(model: GPT, plan: Plan) -> GPT:
    heads, hidden = _widths(model.config)
    out = model
    if plan.heads < 1:
        out = prune_heads(out, _keep(heads, plan.heads, 1))
    if plan.mlp < 1:
        out = prune_neurons(out, _keep(hidden, plan.mlp, MLP_MULTIPLE))
    return copy.deepcopy(out) if out is model else out


def _recover(student: nn.Module, teacher: GPT, train_ids: Tensor, plan: Plan, seed: int, block_size: int) -> None:
    if plan.steps:
        distill(
            student, teacher, train_ids, steps=plan.steps, batch_size=8, block_size=block_size,
            lr=1e-3, alpha=0.5, warmup=min(5, plan.steps - 1), seed=seed, progress=False,
        )


def _quantize(model: GPT, weights: str | None) -> nn.Module:
    return model if weights is None else quantize_model(model, **_QUANT[weights])


def apply_plan(
    model: GPT, plan: Plan, train_ids: Tensor, *, seed: int = 0, block_size: int | None = None, pruned: GPT | None = None
) -> nn.Module:
    """The compressed copy of ``model`` that ``plan`` describes (``model`` is untouched).

    train_ids: token ids [N] (or [B, T], flattened) that recovery distills on, with
    ``model`` as the teacher. ``pruned``: an already pruned-and-recovered float model for
    this plan's (heads, mlp, steps), to share the work between plans that only differ in
    their weights (used by :func:`evaluate_plans`). Recovery: ``plan.steps`` steps of
    :func:`~minillm.compress.distill.distill` (batches of 8 windows of ``block_size``,
    default min(128, the model's), lr 1e-3, alpha 0.5, T 2). The result is in eval mode.
    """
    train_ids = _as_ids(train_ids, "train_ids")
    block_size = block_size or min(128, model.config.block_size)
    torch.manual_seed(seed)
    if plan.steps and plan.weights and plan.order == "quantize-then-distill":
        bits = {"int8": 8, "int4": 4}[plan.weights]
        qat = qat_prepare(_prune(model, plan), bits=bits, group_size=None if bits == 8 else 32)
        _recover(qat, model, train_ids, plan, seed, block_size)
        return qat_convert(qat).eval()
    if pruned is None:
        pruned = _prune(model, plan)
        _recover(pruned, model, train_ids, plan, seed, block_size)
    return _quantize(pruned, plan.weights).eval()


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
    heads = _kept_widths(heads, plan.heads, 1) if plan.heads < 1 else heads
    hidden = _kept_widths(hidden, plan.mlp, MLP_MULTIPLE) if plan.mlp < 1 else hidden
    b = 1 if config.bias else 0

    def linear(n_in: int, n_out: int) -> int:
        if plan.weights == "int8":
            w = n_in * n_out + 4 * n_out
        elif plan.weights == "int4":
            w = n_in * n_out // 2 + 4 * n_out * (n_in // 32)
        else:
            w = 4 * n_in * n_out
        return w + 4 * b * n_out

    total = 4 * (V * C + T * C) + 4 * (1 + b) * C  # wte, wpe, ln_f
    if not config.tie_weights:
        total += linear(C, V)
    for h, w in zip(heads, hidden):
        inner = h * D
        total += 2 * 4 * (1 + b) * C  # ln_1, ln_2
        total += linear(C, 3 * inner) + linear(inner, C) + linear(C, w) + linear(w, C)
    return total


# --------------------------------------------------------------------------- measuring


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices (ascending) of the points no other point dominates; both coordinates are minimised.

    points: [(cost, loss), ...], e.g. (bytes, validation loss). Point i is dominated when
    some j has cost_j <= cost_i and loss_j <= loss_i with at least one strictly smaller.
    Equal points are all kept.
    """
    pts = []
    for i, p in enumerate(points):
        if len(p) != 2 or not all(is_number(v) and math.isfinite(v) for v in p):
            raise ValueError(f"points[{i}]={p!r} must be a pair of finite numbers (cost, loss)")
        pts.append((float(p[0]), float(p[1])))
    front = []
    for i, (c, l) in enumerate(pts):
        if not any(c2 <= c and l2 <= l and (c2 < c or l2 < l) for c2, l2 in pts):
            front.append(i)
    return front


@torch.no_grad()
def forward_latency(models: dict[str, nn.Module], ids: Tensor, rounds: int = 5) -> dict[str, float]:
    """One-thread forward seconds of each model on ``ids`` [B, T], the best of interleaved rounds."""
    from minillm.threads import one_thread

    with one_thread():
        return interleaved_best({k: (lambda m=m: m(ids)) for k, m in models.items()}, rounds=rounds)


def _row(plan: Plan, model: nn.Module, val_ids: Tensor, tokenizer, questions, eval_batches: int) -> dict:
    return {
        "name": plan.name,
        **dataclasses.asdict(plan),
        "bytes": size_report(model)["total_bytes"],
        "val_loss": evaluate_loss(model, val_ids, 8, n_batches=eval_batches),
        "recall": accuracy(model, tokenizer, questions) if tokenizer is not None and questions else None,
    }


def evaluate_plans(
    model: GPT,
    plans: Sequence[Plan],
    train_ids: Tensor,
    val_ids: Tensor,
    *,
    tokenizer=None,
    n_questions: int = 50,
    eval_batches: int = 4,
    seq_len: int | None = None,
    rounds: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> tuple[list[dict], list[nn.Module]]:
    """Build and measure ``model`` (row 0, "float32") and each plan; returns (rows, models).

    Pruning and recovery are shared between plans that differ only in ``weights``.
    Latency: one thread, one sequence of ``seq_len`` (default block_size) validation tokens,
    all models timed in the same interleaved rounds. Fact recall uses ``n_questions``
    questions of :func:`minillm.data.fact_recall_task` (skipped without ``tokenizer``).
    Rows as in :class:`CompressionReport`, Pareto flags included.
    """
    from tqdm.auto import tqdm

    from minillm.data import fact_recall_task

    val_ids = _as_ids(val_ids, "val_ids")
    n_questions = check_int("n_questions", n_questions, minimum=0)
    T = check_int("seq_len", seq_len) if seq_len is not None else model.config.block_size
    if val_ids.numel() < T:
        raise ValueError(f"val_ids has {val_ids.numel()} tokens; the latency needs seq_len={T}")
    questions = fact_recall_task(n_questions) if tokenizer is not None and n_questions else None
    model = model.eval()
    plans = [Plan()] + [p for p in plans if p != Plan()]
    shared: dict[tuple, GPT] = {}
    rows, built = [], []
    for plan in tqdm(plans, desc="compress", disable=not progress, leave=False):
        key = (plan.heads, plan.mlp, plan.steps)
        direct = plan.steps and plan.weights and plan.order == "quantize-then-distill"
        if not direct and key not in shared:
            base_plan = dataclasses.replace(plan, weights=None)
            shared[key] = model if base_plan == Plan() else apply_plan(model, base_plan, train_ids, seed=seed)
        m = apply_plan(model, plan, train_ids, seed=seed, pruned=None if direct else shared[key])
        built.append(m)
        rows.append(_row(plan, m, val_ids, tokenizer, questions, eval_batches))
    x = val_ids[:T].view(1, T)
    t = forward_latency({str(i): m for i, m in enumerate(built)}, x, rounds)
    base = rows[0]["val_loss"]
    for i, r in enumerate(rows):
        r["latency_ms"] = 1e3 * t[str(i)]
        r["loss_increase"] = (r["val_loss"] - base) / base
    for key, cost in (("pareto_size", "bytes"), ("pareto_latency", "latency_ms")):
        front = set(pareto_front([(r[cost], r["val_loss"]) for r in rows]))
        for i, r in enumerate(rows):
            r[key] = i in front
    return rows, built


def select(
    rows: list[dict], target_bytes: float | None = None, max_loss_increase: float | None = None,
    max_latency_ms: float | None = None, objective: str = "size",
) -> int | None:
    """Index of the smallest (``objective="size"``) or fastest ("latency") row within every given budget, or None.

    Budgets: bytes <= target_bytes, loss_increase <= max_loss_increase (a fraction: 0.05 = 5%),
    latency_ms <= max_latency_ms; None means no limit. Ties go to the lower loss.
    """
    check_choice("objective", objective, ("size", "latency"))
    key = "bytes" if objective == "size" else "latency_ms"
    ok = [
        i for i, r in enumerate(rows)
        if (target_bytes is None or r["bytes"] <= target_bytes)
        and (max_loss_increase is None or r["loss_increase"] <= max_loss_increase)
        and (max_latency_ms is None or r["latency_ms"] <= max_latency_ms)
    ]
    return min(ok, key=lambda i: (rows[i][key], rows[i]["val_loss"])) if ok else None


def _closest(rows: list[dict], target_bytes, max_loss_increase) -> dict:
    """The row nearest the budget: the smallest within the quality budget, else the best quality among compressed rows."""
    good = [r for r in rows if max_loss_increase is None or r["loss_increase"] <= max_loss_increase]
    if good and target_bytes is not None:
        return min(good, key=lambda r: r["bytes"])
    cands = [r for r in rows[1:] if target_bytes is None or r["bytes"] <= target_bytes] or rows[1:] or rows
    return min(cands, key=lambda r: r["loss_increase"])


def compress(
    model: GPT,
    *,
    target_bytes: float | None = None,
    max_loss_increase: float | None = None,
    calibration_ids: Tensor,
    val_ids: Tensor,
    tokenizer=None,
    plans: Sequence[Plan] | None = None,
    objective: str = "size",
    steps: int = 40,
    weights: Sequence[str] = ("int8",),
    n_questions: int = 50,
    seed: int = 0,
    progress: bool = False,
) -> tuple[nn.Module, CompressionReport]:
    """Search a small space of compression plans; return the best model within budget and the report.

    target_bytes: the largest acceptable in-memory size (None: no limit).
    max_loss_increase: the largest acceptable relative validation-loss increase over
    ``model`` (0.05 = 5%; None: no limit). calibration_ids: token ids [N] or [B, T] that
    recovery distills on (training text, not validation text). val_ids: token ids [N]
    for the validation loss and the latency input. tokenizer: for fact recall (optional).
    plans: the configurations to try (default :func:`default_plans` of ``steps`` and
    ``weights``). objective: "size" returns the smallest model within budget, "latency"
    the fastest. Raises :class:`BudgetNotMet` (with the report and the closest row) when
    no plan meets the budget. About a minute on a laptop core with the defaults.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a minillm GPT, got {type(model).__name__}")
    if target_bytes is not None:
        target_bytes = check_number("target_bytes", target_bytes, strict=True)
    if max_loss_increase is not None:
        max_loss_increase = check_number("max_loss_increase", max_loss_increase)
    check_choice("objective", objective, ("size", "latency"))
    plans = default_plans(steps, weights) if plans is None else list(plans)
    rows, built = evaluate_plans(
        model, plans, calibration_ids, val_ids, tokenizer=tokenizer, n_questions=n_questions, seed=seed, progress=progress
    )
    chosen = select(rows, target_bytes, max_loss_increase, objective=objective)
    for i, r in enumerate(rows):
        r["meets"] = select([r], target_bytes, max_loss_increase) == 0
    report = CompressionReport(rows, chosen, target_bytes, max_loss_increase, objective, model.config.block_size)
    if chosen is None:
        best = _closest(rows, target_bytes, max_loss_increase)
        want = []
        if target_bytes is not None:
            want.append(f"<= {target_bytes / 1e6:.3f} MB")
        if max_loss_increase is not None:
            want.append(f"loss increase <= {max_loss_increase:.1%}")
        raise BudgetNotMet(
            f"no configuration met the budget ({', '.join(want)}); the best point reached is '{best['name']}': "
            f"{best['bytes'] / 1e6:.3f} MB, loss increase {best['loss_increase']:+.1%}. "
            "Loosen the budget, or try more recovery steps or int4 weights.",
            report,
            best,
        )
    return built[chosen], report
