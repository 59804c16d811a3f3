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


def magnitude_per_row(weight, sparsity):
    """Ranks |w| within each row instead of over the whole matrix."""
    k = round(weight.shape[1] * sparsity)
    mask = torch.ones_like(weight, dtype=torch.bool)
    if k:
        mask.scatter_(1, torch.topk(weight.abs(), k, dim=1, largest=False).indices, False)
    return mask


def magnitude_quantile(weight, sparsity):
    """Thresholds at torch.quantile, which interpolates between two counts."""
    return weight.abs() > torch.quantile(weight.abs().reshape(-1), sparsity)


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


def nm_signed(weight, n, m):
    """Keeps the n largest signed values of each group, not the largest |w|."""
    rows, cols = weight.shape
    g = weight.reshape(rows, cols // m, m)
    mask = torch.zeros_like(g, dtype=torch.bool)
    mask.scatter_(2, torch.topk(g, n, dim=2).indices, True)
    return mask.view(rows, cols)


def nm_drops_n(weight, n, m):
    """Drops the n smallest of each group (keeps m - n) instead of keeping n."""
    rows, cols = weight.shape
    g = weight.abs().reshape(rows, cols // m, m)
    mask = torch.ones_like(g, dtype=torch.bool)
    mask.scatter_(2, torch.topk(g, n, dim=2, largest=False).indices, False)
    return mask.view(rows, cols)


def nm_strided(weight, n, m):
    """Reshapes a row to [m, in/m]: groups inputs in/m apart instead of m consecutive ones."""
    rows, cols = weight.shape
    g = weight.abs().reshape(rows, m, cols // m).transpose(1, 2)
    mask = torch.zeros_like(g, dtype=torch.bool)
    mask.scatter_(2, torch.topk(g, n, dim=2).indices, True)
    return mask.transpose(1, 2).reshape(rows, cols)


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


def wanda_rounds(weight, act_norm, sparsity):
    """Drops round(in · sparsity) per row; Wanda's code (and the task) use int()."""
    s = weight.abs() * act_norm
    k = round(weight.shape[1] * sparsity)
    mask = torch.ones_like(weight, dtype=torch.bool)
    if k:
        mask.scatter_(1, torch.topk(s, k, dim=1, largest=False).indices, False)
    return mask


def wanda_per_column(weight, act_norm, sparsity):
    """Compares scores within each column (dim 0) instead of each output row."""
    s = weight.abs() * act_norm
    k = int(weight.shape[0] * sparsity)
    mask = torch.ones_like(weight, dtype=torch.bool)
    if k:
        mask.scatter_(0, torch.topk(s, k, dim=0, largest=False).indices, False)
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


def break_even_percent(value_bytes, index_bytes):
    """Returns a percentage."""
    return 100 * index_bytes / (value_bytes + index_bytes)


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


def cubic_without_s_init(step, s_init, s_final, n_steps):
    """Starts from 0 whatever s_init is."""
    p = min(step / n_steps, 1.0)
    return s_final * (1 - (1 - p) ** 3)


def cubic_integer_division(step, s_init, s_final, n_steps):
    """t // n: the progress stays 0 until the last step."""
    p = min(step // n_steps, 1)
    return s_final + (s_init - s_final) * (1 - p) ** 3


def cubic_off_by_one(step, s_init, s_final, n_steps):
    """Progress t / (n - 1)."""
    p = min(step / max(n_steps - 1, 1), 1.0)
    return s_final + (s_init - s_final) * (1 - p) ** 3


MUTANTS = {
    "03.magnitude_mask": [magnitude_inverted, magnitude_truncates, magnitude_signed, magnitude_drops_largest,
                          magnitude_per_row, magnitude_quantile],
    "03.nm_mask": [nm_keeps_smallest, nm_inverted, nm_by_columns, nm_signed, nm_drops_n, nm_strided],
    "03.wanda_mask": [wanda_per_layer, wanda_without_norms, wanda_divides, wanda_rounds, wanda_per_column],
    "03.csr_break_even": [break_even_density, break_even_half, break_even_ratio, break_even_percent],
    "03.cubic_sparsity": [cubic_linear, cubic_wrong_way, cubic_not_clamped, cubic_without_s_init,
                          cubic_integer_division, cubic_off_by_one],
}

#: The phrase each mutant's verdict must contain: the check names the mistake, not a generic fix.
HINTS = {
    "magnitude_inverted": "True must mean *kept*",
    "magnitude_truncates": "must go, as torch.nn.utils.prune does",
    "magnitude_signed": "compare |w|, not w",
    "magnitude_drops_largest": "that removes the largest |w|",
    "magnitude_per_row": "ranks |w| within each row",
    "magnitude_quantile": "a quantile threshold lands between counts",
    "nm_keeps_smallest": "keep the n *largest* |w|",
    "nm_inverted": "True must mean kept",
    "nm_signed": "compare |w|, not w",
    "nm_drops_n": "n is the number *kept*",
    "nm_strided": "groups are m *consecutive* inputs",
    "wanda_per_layer": "within each output row, not across the whole matrix",
    "wanda_without_norms": "multiply |W| by the activation norms",
    "wanda_rounds": "round() gives",
    "wanda_per_column": "not within each column",
    "break_even_density": "that is the density",
    "break_even_half": "0.5 holds only when",
    "break_even_percent": "not a percentage",
    "cubic_linear": "linear ramp",
    "cubic_wrong_way": "cubic the other way round",
    "cubic_not_clamped": "clamp the progress at 1",
    "cubic_without_s_init": "you left out s_init",
    "cubic_integer_division": "integer division",
    "cubic_off_by_one": "not t / (n - 1)",
}
