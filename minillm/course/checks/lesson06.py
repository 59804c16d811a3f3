"""Checks of lesson 06, "The compression pipeline".

``pareto_front`` is compared with :func:`minillm.compress.pipeline.pareto_front` over seeded
random point sets with ties and duplicates (as sets of indices). ``model_bytes`` is compared
exactly (in bytes) with what :func:`~minillm.compress.model_quant.size_report` measures on
the model really built: a GPT of the config, pruned with ``prune_heads``/``prune_neurons``
and quantized with ``quantize_model``. ``choose_plan`` is compared with
:func:`~minillm.compress.pipeline.select`. Typical mistakes are named in the hints.
"""

from __future__ import annotations


import torch

from minillm.course.checks import CheckFailure, case_rng, describe, register
from minillm.validate import is_int

_PIPE = "minillm.compress.pipeline"


# --------------------------------------------------------------------------- Pareto front


def _strict_front(pts):
    return [i for i, (c, l) in enumerate(pts) if not any(c2 < c and l2 < l for c2, l2 in pts)]


def _dedup_front(pts, front):
    seen, out = set(), []
    for i in front:
        if tuple(pts[i]) not in seen:
            seen.add(tuple(pts[i]))
            out.append(i)
    return out


def _point_sets():
    yield [(5, 1.0), (1, 3.0), (2, 2.0), (3, 2.5), (2, 2.0), (6, 0.9), (1, 3.5)]
    yield [(1.0, 1.0)]
    yield [(3, 1), (2, 2), (1, 3), (2, 3), (3, 3)]
    yield [(1, 2), (1, 3), (2, 2)]  # weakly dominated points: same cost or same loss, worse in the other
    rng = case_rng(6)
    for _ in range(6):
        yield [(rng.randint(0, 6), rng.randint(0, 6) / 2) for _ in range(rng.randint(2, 14))]


@register("06.pareto_front", points=3, references=(f"{_PIPE}.pareto_front", f"{_PIPE}.select"))
def check_pareto_front(fn) -> None:
    """pareto_front(points) -> indices of the points no other point dominates (both coordinates minimised)."""
    from minillm.compress.pipeline import pareto_front

    for pts in _point_sets():
        what = f"pareto_front({pts})"
        got = fn([tuple(p) for p in pts])
        if not isinstance(got, (list, tuple)) or not all(is_int(i) for i in got):
            raise CheckFailure(f"{what} returned", got=describe(got), expected="a list of int indices")
        want = pareto_front(pts)
        if sorted(got) == want:
            continue
        if sorted(got) == sorted(_strict_front(pts)):
            hint = ("a point is also dominated by one that is equal in one coordinate and better in the other: "
                    "use <= in both and < in at least one")
        elif set(got) < set(want) and all(any(pts[j] == pts[i] for j in got) or sum(p == pts[i] for p in pts) > 1
                                          for i in set(want) - set(got)):
            hint = "equal points dominate neither each other (neither is strictly better): keep them all"
        elif len(got) and all(pts[i][0] == min(p[0] for p in pts) for i in got):
            hint = "that only minimises the cost; the front trades cost against loss"
        elif len(got) and all(pts[i][1] == min(p[1] for p in pts) for i in got):
            hint = "that only minimises the loss; the front trades cost against loss"
        else:
            hint = "i is on the front unless some j has cost_j <= cost_i and loss_j <= loss_i, one of them strictly"
        raise CheckFailure(f"{what} is", got=sorted(got), expected=want, hint=hint)


# --------------------------------------------------------------------------- model bytes


_CASES = [
    # (vocab, block, layers, heads, n_embd, bias, tie) and (heads kept, neurons kept, weights)
    ((50, 16, 2, 2, 64, True, True), (1, 128, "int8")),
    ((40, 8, 1, 4, 32, True, True), (3, 64, None)),
    ((64, 16, 2, 2, 64, True, True), (2, 96, "int4")),
    ((30, 8, 2, 2, 32, False, True), (1, 32, "int8")),
    ((32, 8, 1, 2, 64, True, False), (2, 256, "int8")),
    ((48, 12, 3, 4, 32, True, True), (4, 128, None)),
]


def _drawn_cases(seed: int, n: int) -> list:
    """``n`` random cases in the same ranges as ``_CASES`` (int4 only where every linear's inputs are whole groups of 32)."""
    rng = case_rng(seed)
    out = []
    for _ in range(n):
        H, C = rng.choice([(2, 32), (2, 64), (4, 32), (4, 64)])
        heads, mlp = rng.randint(1, H), 32 * rng.randint(1, 4 * C // 32)
        weights = rng.choice([None, "int8", "int4"])
        if weights == "int4" and heads * (C // H) % 32:
            weights = "int8"
        out.append(((rng.randint(16, 80), rng.randint(4, 16), rng.randint(1, 3), H, C, rng.random() < 0.7, rng.random() < 0.7),
                    (heads, mlp, weights)))
    return out


def _measured(cfg, heads: int, mlp: int, weights) -> int:
    from minillm.compress.model_quant import quantize_model, size_report
    from minillm.compress.structured import prune_heads, prune_neurons
    from minillm.model import GPT

    torch.manual_seed(0)
    m = GPT(cfg)
    if heads < cfg.n_head:
        m = prune_heads(m, heads)
    if mlp < 4 * cfg.n_embd:
        m = prune_neurons(m, mlp)
    if weights is not None:
        m = quantize_model(m, weights, "int8" if weights == "int8" else None)
    return size_report(m)["total_bytes"]


def _formula(cfg, heads, mlp, weights, *, scales=True, bias=True, head_twice=False, quant=True, emb=True,
             head_bias=False, head_quant=True, group_scales=True, wpe=True, ln_f=True, heads_pruned=True) -> int:
    """The closed form with one mistake switched on or off (for the hints)."""
    C, V, T, D = cfg.n_embd, cfg.vocab_size, cfg.block_size, cfg.n_embd // cfg.n_head
    b = 1 if (cfg.bias and bias) else 0
    w = weights if quant else None

    def lin(i, o, with_bias=True, fmt=None):
        fmt = w if fmt is None else fmt
        if fmt == "int8":
            x = i * o + (4 * o if scales else 0)
        elif fmt == "int4":
            x = i * o // 2 + (4 * o * (i // 32 if group_scales else 1) if scales else 0)
        else:
            x = 4 * i * o
        return x + (4 * b * o if with_bias else 0)

    total = (4 * (V * C + (T * C if wpe else 0)) if emb else 0) + (4 * (1 + b) * C if ln_f else 0)
    if not cfg.tie_weights:
        total += lin(C, V, with_bias=head_bias, fmt=None if head_quant else "float32")
    elif head_twice:
        total += 4 * V * C
    inner = (heads if heads_pruned else cfg.n_head) * D
    total += cfg.n_layer * (8 * (1 + b) * C + lin(C, 3 * inner) + lin(inner, C) + lin(C, mlp) + lin(mlp, C))
    return total


_MISTAKES = [
    ("int8/int4 weights also store float32 scales: one per output row (int8), one per 32 inputs of a row (int4)", {"scales": False}),
    ("int4 stores one scale per group of 32 inputs of a row, not one per row", {"group_scales": False}),
    ("the biases (and LayerNorm biases) stay float32: 4 bytes each", {"bias": False}),
    ("the output layer is tied to the token embedding: its matrix is stored once", {"head_twice": True}),
    ("quantization changes the linear weights: int8 is 1 byte per weight, int4 half a byte", {"quant": False}),
    ("the token and position embeddings stay float32 and are part of the model", {"emb": False}),
    ("the position embedding wpe [block_size, n_embd] is stored too, in float32", {"wpe": False}),
    ("the final LayerNorm ln_f (weight, and bias when config.bias) is stored too", {"ln_f": False}),
    ("pruned heads shrink the attention linears: q, k, v and the output projection are heads × head_dim wide",
     {"heads_pruned": False}),
    ("an untied output layer (tie_weights=False) is quantized like the others but has no bias", {"head_bias": True}),
    ("an untied output layer (tie_weights=False) is a linear layer: it is quantized like the others", {"head_quant": False}),
]


def _diagnose(fn, cfg, heads: int, mlp: int, weights, got: int, want: int) -> str:
    """The hint of the one mistake that explains ``got``, here and on two probe configs, else a generic one.

    One case can match a mistake by coincidence (leaving out the position embedding can cost
    exactly as many bytes as the biases); the probes change the block size and the bias, so a
    named hint is given only when the mistake explains the learner's answers on all three.
    """
    from dataclasses import replace

    probes = [replace(cfg, block_size=cfg.block_size + 3), replace(cfg, bias=not cfg.bias)]
    answers = []  # (config, the learner's bytes) for the probes the learner's function answers
    for p in probes:
        try:
            answers.append((p, int(fn(p, heads, mlp, weights))))
        except Exception:  # the probe only sharpens the hint; a crash there leaves it to the failing case
            continue
    for hint, kw in _MISTAKES:
        if got == _formula(cfg, heads, mlp, weights, **kw) != want and all(
                a == _formula(p, heads, mlp, weights, **kw) for p, a in answers):
            return hint
    return "count every stored tensor: embeddings, LayerNorms, and each linear's weight (and bias) in its format"


@register("06.model_bytes", points=3, references=(f"{_PIPE}.predict_bytes", "minillm.compress.model_quant.size_report"))
def check_model_bytes(fn) -> None:
    """model_bytes(config, heads, mlp, weights) -> in-memory bytes of the pruned (and quantized) GPT, before building it."""
    from minillm.model import GPTConfig

    for (V, T, L, H, C, bias, tie), (heads, mlp, weights) in _CASES + _drawn_cases(129, 2):
        cfg = GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C, bias=bias, tie_weights=tie)
        what = f"model_bytes(GPTConfig(vocab={V}, block={T}, layers={L}, heads={H}, n_embd={C}, bias={bias}, tie={tie}), heads={heads}, mlp={mlp}, weights={weights!r})"
        got = fn(cfg, heads, mlp, weights)
        if not is_int(got) and not (isinstance(got, float) and got.is_integer()):
            raise CheckFailure(f"{what} returned", got=describe(got), expected="a whole number of bytes (int)")
        want = _measured(cfg, heads, mlp, weights)
        if int(got) == want:
            continue
        hint = _diagnose(fn, cfg, heads, mlp, weights, int(got), want)
        raise CheckFailure(f"{what} is", got=int(got), expected=f"{want} (measured by size_report)", hint=hint)


# --------------------------------------------------------------------------- choosing a plan


def _rows(seed: int, n: int):
    rng = case_rng(seed)
    sizes = rng.sample(range(100, 2000, 7), n)
    rows = []
    for s in sizes:
        inc = round(rng.uniform(0.0, 0.2), 3)
        rows.append({"name": f"plan {s}", "bytes": s, "val_loss": round(1.0 * (1 + inc), 6), "loss_increase": inc,
                     "latency_ms": rng.uniform(1, 10)})
    return rows


@register("06.choose_plan", points=2, references=(f"{_PIPE}.select", f"{_PIPE}.compress"))
def check_choose_plan(fn) -> None:
    """choose_plan(rows, target_bytes, max_loss_increase) -> index of the smallest row within both budgets, or None."""
    from minillm.compress.pipeline import select

    cases = []
    for seed in range(5):
        rows = _rows(seed, 8)
        cases.append((rows, sorted(r["bytes"] for r in rows)[5], 0.1))
        cases.append((rows, None, 0.05))
    rows = _rows(9, 6)
    cases.append((rows, min(r["bytes"] for r in rows) - 1, 0.2))  # nothing fits
    exact = _rows(10, 5)
    exact[2]["loss_increase"] = 0.05
    for r in exact:
        if r["bytes"] < exact[2]["bytes"]:
            r["loss_increase"] = 0.15  # so exact[2] is the answer, and only with <= on both budgets
    cases.append((exact, exact[2]["bytes"], 0.05))  # the budgets are inclusive
    for rows, target, budget in cases:
        what = f"choose_plan(<{len(rows)} rows>, target_bytes={target}, max_loss_increase={budget})"
        got = fn([dict(r) for r in rows], target, budget)
        want = select(rows, target, budget)
        if got == want and (got is None or is_int(got)):
            continue
        feasible = [i for i, r in enumerate(rows) if (target is None or r["bytes"] <= target) and r["loss_increase"] <= budget]
        if want is None:
            hint = "no row meets both budgets here: return None"
        elif is_int(got) and 0 <= got < len(rows) and rows[got]["loss_increase"] > budget:
            hint = "that row breaks the quality budget: filter on loss_increase <= max_loss_increase too"
        elif is_int(got) and 0 <= got < len(rows) and target is not None and rows[got]["bytes"] > target:
            hint = "that row is over the size budget: filter on bytes <= target_bytes (None means no limit)"
        elif got is None and target is None:
            hint = "target_bytes=None means no size limit: every row meets the size budget"
        elif got is None:
            hint = "a row exactly on a budget meets it: use <=, not <"
        elif isinstance(got, dict):
            hint = "return the row's index in rows, not the row itself"
        elif is_int(got) and got in feasible:
            hint = "among the rows within budget, return the *smallest* (fewest bytes), not the first or the best loss"
        else:
            hint = "keep the rows within both budgets and return the index of the one with the fewest bytes"
        raise CheckFailure(f"{what} is", got=describe(got) if not (got is None or is_int(got)) else got, expected=want, hint=hint)


# --------------------------------------------------------------------------- the order question


@register("06.order_answer", points=2, references=())
def check_order_answer(fn) -> None:
    """order_answer() -> the letter of the reason recovery training comes before int8 rounding."""
    got = fn()
    if not isinstance(got, str) or got.strip().lower() not in ("a", "b", "c", "d"):
        raise CheckFailure("order_answer() returned", got=describe(got) if not isinstance(got, str) else repr(got),
                           expected="one of 'a', 'b', 'c', 'd'")
    hints = {
        "b": "distillation only needs the same vocabulary (logits over the same tokens); heads may differ",
        "c": "quantizing first makes the model smaller, not larger; size is not why the order matters",
        "d": "the table shows the orders differ; think about what a gradient step does to an int8 code",
    }
    letter = got.strip().lower()
    if letter != "a":
        raise CheckFailure("order_answer() is", got=repr(got), expected="another letter", hint=hints[letter])
