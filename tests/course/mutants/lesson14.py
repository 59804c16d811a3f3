"""Wrong answers to lesson 14's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

import math

from minillm.parallel.planner import predict

# --------------------------------------------------------------------------- grid coordinates


def coords_dp_fastest(rank, tp, dp, pp):
    """Lets DP vary fastest instead of TP."""
    return rank // (tp * dp), rank % dp, (rank // dp) % tp


def coords_reversed(rank, tp, dp, pp):
    """Returns (tp_rank, dp_rank, pp_rank)."""
    return rank % tp, (rank // tp) % dp, rank // (tp * dp)


def coords_pp_by_tp(rank, tp, dp, pp):
    """Divides by tp alone to find the stage."""
    return rank // tp % pp, (rank // tp) % dp, rank % tp


def coords_pp_fastest(rank, tp, dp, pp):
    """Lets PP vary fastest and TP slowest (the order read backwards)."""
    return rank % pp, (rank // pp) % dp, rank // (pp * dp)


def coords_dp_no_wrap(rank, tp, dp, pp):
    """Forgets that dp_rank wraps around: dp_rank = rank // tp."""
    return rank // (tp * dp), rank // tp, rank % tp


def coords_tp_before_dp(rank, tp, dp, pp):
    """Computes the right coordinates but returns (pp_rank, tp_rank, dp_rank)."""
    return rank // (tp * dp), rank % tp, (rank // tp) % dp


# --------------------------------------------------------------------------- bubble


def bubble_forgets_dp(n_devices, tp, pp, global_batch, micro_batch):
    """Gives every pipeline the whole global batch."""
    m = global_batch // micro_batch
    return (pp - 1) / (m + pp - 1)


def bubble_relative_to_ideal(n_devices, tp, pp, global_batch, micro_batch):
    """Returns (p-1)/m, the bubble over the ideal time."""
    dp = n_devices // (tp * pp)
    return (pp - 1) / (global_batch // (dp * micro_batch))


def bubble_dp_ignores_tp(n_devices, tp, pp, global_batch, micro_batch):
    """Takes dp = n / pp, as if the TP ranks ran pipelines of their own."""
    dp = n_devices // pp
    m = global_batch // (dp * micro_batch)
    return (pp - 1) / (m + pp - 1)


def bubble_forgets_micro_batch_size(n_devices, tp, pp, global_batch, micro_batch):
    """Counts sequences, not micro-batches: m = global_batch / dp."""
    m = global_batch // (n_devices // (tp * pp))
    return (pp - 1) / (m + pp - 1)


def bubble_off_by_one(n_devices, tp, pp, global_batch, micro_batch):
    """Takes the step as m + p slots."""
    m = global_batch // (n_devices // (tp * pp) * micro_batch)
    return (pp - 1) / (m + pp)


def bubble_percent(n_devices, tp, pp, global_batch, micro_batch):
    """Returns a percentage."""
    m = global_batch // (n_devices // (tp * pp) * micro_batch)
    return 100 * (pp - 1) / (m + pp - 1)


# --------------------------------------------------------------------------- activations


def _per_layer(s, b, h, a, t):
    return s * b * h * (10 + 24 / t + 5 * a * s / (h * t))


def act_gpipe(seq_len, micro_batch, hidden, n_heads, n_layers, tp, pp, n_micro):
    """Holds all n_micro micro-batches, as GPipe does."""
    return n_micro * math.ceil(n_layers / pp) * _per_layer(seq_len, micro_batch, hidden, n_heads, tp)


def act_all_layers(seq_len, micro_batch, hidden, n_heads, n_layers, tp, pp, n_micro):
    """Counts every layer of the model on stage 0."""
    return min(pp, n_micro) * n_layers * _per_layer(seq_len, micro_batch, hidden, n_heads, tp)


def act_one_micro_batch(seq_len, micro_batch, hidden, n_heads, n_layers, tp, pp, n_micro):
    """Forgets the warm-up: one micro-batch in flight."""
    return math.ceil(n_layers / pp) * _per_layer(seq_len, micro_batch, hidden, n_heads, tp)


def act_attention_not_split(seq_len, micro_batch, hidden, n_heads, n_layers, tp, pp, n_micro):
    """Does not divide the attention scores by t."""
    s, b, h, a, t = seq_len, micro_batch, hidden, n_heads, tp
    return min(pp, n_micro) * math.ceil(n_layers / pp) * s * b * h * (10 + 24 / t + 5 * a * s / h)


def act_floor_layers(seq_len, micro_batch, hidden, n_heads, n_layers, tp, pp, n_micro):
    """Rounds the layers per stage down: the lightest stage, not the busiest."""
    return min(pp, n_micro) * (n_layers // pp) * _per_layer(seq_len, micro_batch, hidden, n_heads, tp)


def act_always_pp_in_flight(seq_len, micro_batch, hidden, n_heads, n_layers, tp, pp, n_micro):
    """Holds pp micro-batches even when the step has fewer."""
    return pp * math.ceil(n_layers / pp) * _per_layer(seq_len, micro_batch, hidden, n_heads, tp)


def act_warmup_only(seq_len, micro_batch, hidden, n_heads, n_layers, tp, pp, n_micro):
    """Counts the pp - 1 warm-up forwards and forgets the one in flight."""
    return max(1, min(pp - 1, n_micro)) * math.ceil(n_layers / pp) * _per_layer(seq_len, micro_batch, hidden, n_heads, tp)


def act_forgets_micro_batch(seq_len, micro_batch, hidden, n_heads, n_layers, tp, pp, n_micro):
    """Leaves b out of sbh: one sequence per micro-batch."""
    return min(pp, n_micro) * math.ceil(n_layers / pp) * _per_layer(seq_len, 1, hidden, n_heads, tp)


def act_everything_split(seq_len, micro_batch, hidden, n_heads, n_layers, tp, pp, n_micro):
    """Divides the whole count by t, the 10 sbh that TP cannot split included."""
    return min(pp, n_micro) * math.ceil(n_layers / pp) * _per_layer(seq_len, micro_batch, hidden, n_heads, 1) / tp


# --------------------------------------------------------------------------- a layout that fits


def layout_pure_dp(model, n_devices, device, global_batch, seq_len):
    """Replicates the whole model on every device."""
    return dict(dp=n_devices, tp=1, pp=1, micro_batch=1, zero_stage=1, recompute="full")


def layout_tp_across_nodes(model, n_devices, device, global_batch, seq_len):
    """Puts 16-way TP across two nodes."""
    return dict(dp=n_devices // 16, tp=16, pp=1, micro_batch=1, zero_stage=1, recompute="full")


def layout_wrong_product(model, n_devices, device, global_batch, seq_len):
    """Forgets that dp·tp·pp must equal the device count."""
    return dict(dp=n_devices, tp=8, pp=2, micro_batch=1, zero_stage=1, recompute="full")


def layout_ignores_activations(model, n_devices, device, global_batch, seq_len):
    """Sizes the model states only: 8-way TP and just enough stages for 16 bytes per parameter, no recompute."""
    for pp in (1, 2, 4, 8, 16):
        dp = n_devices // (8 * pp)
        p = predict(model, device, dp=dp, tp=8, pp=pp, micro_batch=4, global_batch=global_batch, seq_len=seq_len)
        if p.memory_terms["parameters"] * 8 < p.capacity_bytes:
            return dict(dp=dp, tp=8, pp=pp, micro_batch=4, zero_stage=0, recompute="none")
    return dict(dp=1, tp=8, pp=n_devices // 8, micro_batch=4, zero_stage=0, recompute="none")


MUTANTS = {
    "14.grid_coords": [coords_dp_fastest, coords_reversed, coords_pp_by_tp, coords_pp_fastest, coords_dp_no_wrap,
                       coords_tp_before_dp],
    "14.predict_bubble": [bubble_forgets_dp, bubble_relative_to_ideal, bubble_dp_ignores_tp, bubble_forgets_micro_batch_size,
                          bubble_off_by_one, bubble_percent],
    "14.first_stage_activations": [act_gpipe, act_all_layers, act_one_micro_batch, act_attention_not_split, act_floor_layers,
                                   act_always_pp_in_flight, act_warmup_only, act_forgets_micro_batch, act_everything_split],
    "14.fitting_layout": [layout_pure_dp, layout_tp_across_nodes, layout_wrong_product, layout_ignores_activations],
}

#: mutant -> a phrase its verdict's hint must contain (tests/course/test_course_hints.py): one
#: failing case can look like several mistakes, so the checks name the one that explains every case.
HINTS = {
    "coords_dp_fastest": "TP varies fastest:",
    "coords_reversed": "in that order",
    "coords_pp_by_tp": "whole groups of tp · dp ranks",
    "coords_pp_fastest": "PP slowest",
    "coords_dp_no_wrap": "wraps around",
    "coords_tp_before_dp": "in that order",
    "bubble_forgets_dp": "each of the dp replicas runs its own pipeline",
    "bubble_relative_to_ideal": "relative to the ideal time",
    "bubble_dp_ignores_tp": "n_devices / (tp · pp)",
    "bubble_forgets_micro_batch_size": "micro-batches of micro_batch sequences",
    "bubble_off_by_one": "m + pp - 1 slots",
    "bubble_percent": "not a percentage",
    "act_gpipe": "that is GPipe",
    "act_all_layers": "only its own layers",
    "act_one_micro_batch": "warm-up forwards before its first backward",
    "act_attention_not_split": "split by heads too",
    "act_floor_layers": "rounding down",
    "act_always_pp_in_flight": "only n_micro micro-batches",
    "act_warmup_only": "plus the one",
    "act_forgets_micro_batch": "the b in sbh",
    "act_everything_split": "stays whole",
    "layout_pure_dp": "split the model further",
    "layout_tp_across_nodes": "a node has 8 GPUs",
    "layout_wrong_product": "one place in the grid",
    "layout_ignores_activations": "the largest term is activations",
}
