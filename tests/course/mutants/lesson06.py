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


# --------------------------------------------------------------------------- model_bytes


def _bytes(config, heads, mlp, weights, scales=True, bias=True, head_twice=False, quant=True):
    C, V, T, D = config.n_embd, config.vocab_size, config.block_size, config.n_embd // config.n_head
    b = 1 if (config.bias and bias) else 0
    w = weights if quant else None

    def lin(i, o):
        if w == "int8":
            x = i * o + (4 * o if scales else 0)
        elif w == "int4":
            x = i * o // 2 + (4 * o * (i // 32) if scales else 0)
        else:
            x = 4 * i * o
        return x + 4 * b * o

    total = 4 * (V * C + T * C) + 4 * (1 + b) * C
    if not config.tie_weights or head_twice:
        total += lin(C, V) if not config.tie_weights else 4 * V * C
    inner = heads * D
    return total + config.n_layer * (8 * (1 + b) * C + lin(C, 3 * inner) + lin(inner, C) + lin(C, mlp) + lin(mlp, C))


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
    "06.pareto_front": [front_strict, front_drops_duplicates, front_cheapest_only, front_maximises_loss],
    "06.model_bytes": [bytes_without_scales, bytes_head_twice, bytes_float32, bytes_no_bias],
    "06.choose_plan": [choose_ignores_quality, choose_best_loss, choose_strict, choose_first],
    "06.order_answer": [order_heads, order_size, order_irrelevant],
}
