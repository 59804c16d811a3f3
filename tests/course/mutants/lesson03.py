"""Wrong answers to lesson 03's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

import torch

# --------------------------------------------------------------------------- magnitude


def magnitude_inverted(weight, sparsity):
    """Returns the pruned positions as True."""
    k = round(weight.numel() * sparsity)
    mask = torch.zeros(weight.numel(), dtype=torch.bool)
    if k:
        mask[torch.topk(weight.abs().reshape(-1), k, largest=False).indices] = True
    return mask.view_as(weight)


def magnitude_truncates(weight, sparsity):
    """Uses int() for the count."""
    k = int(weight.numel() * sparsity)
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    if k:
        mask[torch.topk(weight.abs().reshape(-1), k, largest=False).indices] = False
    return mask.view_as(weight)


def magnitude_signed(weight, sparsity):
    """Ranks w, not |w|."""
    k = round(weight.numel() * sparsity)
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    if k:
        mask[torch.topk(weight.reshape(-1), k, largest=False).indices] = False
    return mask.view_as(weight)


def magnitude_drops_largest(weight, sparsity):
    """Prunes the largest weights."""
    k = round(weight.numel() * sparsity)
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    if k:
        mask[torch.topk(weight.abs().reshape(-1), k, largest=True).indices] = False
    return mask.view_as(weight)


# --------------------------------------------------------------------------- N:M


def nm_keeps_smallest(weight, n, m):
    """Keeps the n smallest of each group."""
    rows, cols = weight.shape
    g = weight.abs().reshape(rows, cols // m, m)
    mask = torch.zeros_like(g, dtype=torch.bool)
    mask.scatter_(2, torch.topk(g, n, dim=2, largest=False).indices, True)
    return mask.view(rows, cols)


def nm_inverted(weight, n, m):
    """Marks the pruned weights True."""
    rows, cols = weight.shape
    g = weight.abs().reshape(rows, cols // m, m)
    mask = torch.ones_like(g, dtype=torch.bool)
    mask.scatter_(2, torch.topk(g, n, dim=2).indices, False)
    return mask.view(rows, cols)


def nm_by_columns(weight, n, m):
    """Groups m consecutive rows of a column instead of m inputs of a row."""
    rows, cols = weight.shape
    if rows % m:
        return torch.ones_like(weight, dtype=torch.bool)
    g = weight.abs().t().reshape(cols, rows // m, m)
    mask = torch.zeros_like(g, dtype=torch.bool)
    mask.scatter_(2, torch.topk(g, n, dim=2).indices, True)
    return mask.view(cols, rows).t()


# --------------------------------------------------------------------------- Wanda


def wanda_per_layer(weight, act_norm, sparsity):
    """Compares scores across the whole matrix."""
    s = weight.abs() * act_norm
    k = round(s.numel() * sparsity)
    mask = torch.ones(s.numel(), dtype=torch.bool)
    if k:
        mask[torch.topk(s.reshape(-1), k, largest=False).indices] = False
    return mask.view_as(weight)


def wanda_without_norms(weight, act_norm, sparsity):
    """Forgets the activations: magnitude per row."""
    k = int(weight.shape[1] * sparsity)
    mask = torch.ones_like(weight, dtype=torch.bool)
    if k:
        mask.scatter_(1, torch.topk(weight.abs(), k, dim=1, largest=False).indices, False)
    return mask


def wanda_divides(weight, act_norm, sparsity):
    """Divides by the norms instead of multiplying."""
    s = weight.abs() / act_norm
    k = int(weight.shape[1] * sparsity)
    mask = torch.ones_like(weight, dtype=torch.bool)
    if k:
        mask.scatter_(1, torch.topk(s, k, dim=1, largest=False).indices, False)
    return mask


# --------------------------------------------------------------------------- CSR break-even


def break_even_density(value_bytes, index_bytes):
    """Returns the density, not the sparsity."""
    return value_bytes / (value_bytes + index_bytes)


def break_even_half(value_bytes, index_bytes):
    """Always one half."""
    return 0.5


def break_even_ratio(value_bytes, index_bytes):
    """Index over value."""
    return index_bytes / value_bytes


# --------------------------------------------------------------------------- cubic schedule


def cubic_linear(step, s_init, s_final, n_steps):
    """A linear ramp."""
    p = min(step / n_steps, 1.0)
    return s_init + (s_final - s_init) * p


def cubic_wrong_way(step, s_init, s_final, n_steps):
    """Slow early, fast late."""
    p = min(step / n_steps, 1.0)
    return s_init + (s_final - s_init) * p**3


def cubic_not_clamped(step, s_init, s_final, n_steps):
    """Keeps going past n_steps."""
    return s_final + (s_init - s_final) * (1 - step / n_steps) ** 3


MUTANTS = {
    "03.magnitude_mask": [magnitude_inverted, magnitude_truncates, magnitude_signed, magnitude_drops_largest],
    "03.nm_mask": [nm_keeps_smallest, nm_inverted, nm_by_columns],
    "03.wanda_mask": [wanda_per_layer, wanda_without_norms, wanda_divides],
    "03.csr_break_even": [break_even_density, break_even_half, break_even_ratio],
    "03.cubic_sparsity": [cubic_linear, cubic_wrong_way, cubic_not_clamped],
}
