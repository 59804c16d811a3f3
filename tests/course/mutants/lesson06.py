"""Wrong answers to lesson 06's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

# --------------------------------------------------------------------------- pareto_front


def front_strict(points):
    """Counts a point as dominated only when another is strictly better in both coordinates."""
    return [i for i, (c, l) in enumerate(points) if not any(c2 < c and l2 < l for c2, l2 in points)]


def front_drops_duplicates(points):
    """Keeps only the first of equal points."""
    out, seen = [], set()
    for i, (c, l) in enumerate(points):
        dominated = any(c2 <= c and l2 <= l and (c2 < c or l2 < l) for c2, l2 in points)
        if not dominated and (c, l) not in seen:
            seen.add((c, l))
            out.append(i)
    return out


def front_cheapest_only(points):
    """Returns the points of least cost."""
    lo = min(c for c, _ in points)
    return [i for i, (c, _) in enumerate(points) if c == lo]


def front_maximises_loss(points):
    """Treats a higher loss as better."""
    return [i for i, (c, l) in enumerate(points)
            if not any(c2 <= c and l2 >= l and (c2 < c or l2 > l) for c2, l2 in points)]


def front_loss_only(points):
    """Returns the points of least loss."""
    lo = min(l for _, l in points)
    return [i for i, (_, l) in enumerate(points) if l == lo]


def front_equal_points_dominate(points):
    """Lets an equal point dominate (<= in both, nothing strict): both copies of a tie drop out."""
    return [i for i, (c, l) in enumerate(points)
            if not any(c2 <= c and l2 <= l for j, (c2, l2) in enumerate(points) if j != i)]


# --------------------------------------------------------------------------- model_bytes


def _bytes(config, heads, mlp, weights, **mistake):
    """The closed form with one mistake switched on (the check's own helper, which its hints use)."""
    from minillm.course.checks.lesson06 import _formula

    return _formula(config, heads, mlp, weights, **mistake)


def bytes_without_scales(config, heads, mlp, weights):
    """Forgets the float32 scales of the quantized weights."""
    return _bytes(config, heads, mlp, weights, scales=False)


def bytes_head_twice(config, heads, mlp, weights):
    """Counts the tied output layer a second time."""
    return _bytes(config, heads, mlp, weights, head_twice=True)


def bytes_float32(config, heads, mlp, weights):
    """Ignores quantization (4 bytes per weight everywhere)."""
    return _bytes(config, heads, mlp, weights, quant=False)


def bytes_no_bias(config, heads, mlp, weights):
    """Leaves out the biases."""
    return _bytes(config, heads, mlp, weights, bias=False)


def bytes_without_wpe(config, heads, mlp, weights):
    """Forgets the position embedding (which can cost exactly what the biases cost: the check must not blame them)."""
    return _bytes(config, heads, mlp, weights, wpe=False)


def bytes_without_ln_f(config, heads, mlp, weights):
    """Forgets the final LayerNorm."""
    return _bytes(config, heads, mlp, weights, ln_f=False)


def bytes_int4_row_scales(config, heads, mlp, weights):
    """Gives int4 one scale per row, as int8, instead of one per group of 32."""
    return _bytes(config, heads, mlp, weights, group_scales=False)


def bytes_untied_head_float32(config, heads, mlp, weights):
    """Keeps an untied output layer in float32."""
    return _bytes(config, heads, mlp, weights, head_quant=False)


def bytes_heads_not_pruned(config, heads, mlp, weights):
    """Sizes the attention linears with all n_head heads."""
    return _bytes(config, heads, mlp, weights, heads_pruned=False)


# --------------------------------------------------------------------------- choose_plan


def _ok(r, target, budget, strict=False):
    if strict:
        return (target is None or r["bytes"] < target) and r["loss_increase"] < budget
    return (target is None or r["bytes"] <= target) and r["loss_increase"] <= budget


def choose_ignores_quality(rows, target_bytes, max_loss_increase):
    """Checks only the size budget."""
    ok = [i for i, r in enumerate(rows) if target_bytes is None or r["bytes"] <= target_bytes]
    return min(ok, key=lambda i: rows[i]["bytes"]) if ok else None


def choose_best_loss(rows, target_bytes, max_loss_increase):
    """Returns the lowest-loss row within budget instead of the smallest."""
    ok = [i for i, r in enumerate(rows) if _ok(r, target_bytes, max_loss_increase)]
    return min(ok, key=lambda i: rows[i]["val_loss"]) if ok else None


def choose_strict(rows, target_bytes, max_loss_increase):
    """Uses < for the budgets."""
    ok = [i for i, r in enumerate(rows) if _ok(r, target_bytes, max_loss_increase, strict=True)]
    return min(ok, key=lambda i: rows[i]["bytes"]) if ok else None


def choose_first(rows, target_bytes, max_loss_increase):
    """Returns the first row within budget."""
    ok = [i for i, r in enumerate(rows) if _ok(r, target_bytes, max_loss_increase)]
    return ok[0] if ok else None


def choose_none_means_zero(rows, target_bytes, max_loss_increase):
    """Treats target_bytes=None as a budget of 0 bytes."""
    ok = [i for i, r in enumerate(rows) if _ok(r, target_bytes or 0, max_loss_increase)]
    return min(ok, key=lambda i: rows[i]["bytes"]) if ok else None


def choose_returns_row(rows, target_bytes, max_loss_increase):
    """Returns the row itself instead of its index."""
    ok = [r for r in rows if _ok(r, target_bytes, max_loss_increase)]
    return min(ok, key=lambda r: r["bytes"]) if ok else None


# --------------------------------------------------------------------------- order_answer


def order_heads():
    """Thinks distillation needs equal head counts."""
    return "b"


def order_size():
    """Thinks quantizing first makes the model larger."""
    return "c"


def order_irrelevant():
    """Thinks the order does not matter."""
    return "d"


MUTANTS = {
    "06.pareto_front": [front_strict, front_drops_duplicates, front_cheapest_only, front_maximises_loss,
                        front_loss_only, front_equal_points_dominate],
    "06.model_bytes": [bytes_without_scales, bytes_head_twice, bytes_float32, bytes_no_bias, bytes_without_wpe,
                       bytes_without_ln_f, bytes_int4_row_scales, bytes_untied_head_float32, bytes_heads_not_pruned],
    "06.choose_plan": [choose_ignores_quality, choose_best_loss, choose_strict, choose_first, choose_none_means_zero,
                       choose_returns_row],
    "06.order_answer": [order_heads, order_size, order_irrelevant],
}

#: The phrase each mutant's verdict must contain: the check names the mistake, not a generic fix.
HINTS = {
    "front_strict": "use <= in both and < in at least one",
    "front_drops_duplicates": "equal points dominate neither",
    "front_equal_points_dominate": "equal points dominate neither",
    "front_cheapest_only": "only minimises the cost",
    "front_loss_only": "only minimises the loss",
    "bytes_without_scales": "also store float32 scales",
    "bytes_head_twice": "its matrix is stored once",
    "bytes_float32": "quantization changes the linear weights",
    "bytes_no_bias": "the biases (and LayerNorm biases) stay float32",
    "bytes_without_wpe": "the position embedding wpe",
    "bytes_without_ln_f": "the final LayerNorm ln_f",
    "bytes_int4_row_scales": "one scale per group of 32 inputs",
    "bytes_untied_head_float32": "it is quantized like the others",
    "bytes_heads_not_pruned": "pruned heads shrink the attention linears",
    "choose_ignores_quality": "breaks the quality budget",
    "choose_best_loss": "return the *smallest*",
    "choose_strict": "use <=, not <",
    "choose_none_means_zero": "target_bytes=None means no size limit",
    "choose_returns_row": "not the row itself",
    "order_heads": "same vocabulary",
    "order_size": "makes the model smaller, not larger",
    "order_irrelevant": "think about what a gradient step does",
}
