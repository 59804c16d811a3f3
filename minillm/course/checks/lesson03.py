"""Checks of lesson 03, "Pruning".

Masks are compared exactly with :mod:`minillm.compress.prune` on seeded weights whose
magnitudes are all distinct (ties would let two correct answers differ); the formulas are
float64 arithmetic on a few terms, compared at a relative 1e-9. Typical mistakes are named.
"""

from __future__ import annotations

import math

import torch

from minillm.course.checks import CheckFailure, case_rng, describe, register

_PRUNE = "minillm.compress.prune"


def _tie_free(rows: int, cols: int, seed: int) -> torch.Tensor:
    """A weight whose |w| are all distinct: a permutation of 1..n, scaled, with random signs."""
    g = torch.Generator().manual_seed(seed)
    n = rows * cols
    vals = (torch.randperm(n, generator=g).float() + 1) / n
    signs = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    return (vals * signs).view(rows, cols)


def _as_mask(got, shape, what: str) -> torch.Tensor:
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(shape):
        raise CheckFailure(f"{what} returned", got=describe(got), expected=f"a bool tensor of shape {tuple(shape)}")
    if got.dtype != torch.bool:
        raise CheckFailure(f"{what} returned dtype", got=str(got.dtype).replace("torch.", ""), expected="bool",
                           hint="return a keep-mask: True where the weight stays (e.g. scores > threshold)")
    return got


def _signed(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The mask of a learner who drops the smallest *signed* values (the most negative ones)."""
    keep = torch.ones(w.numel(), dtype=torch.bool)
    k = round(w.numel() * sparsity)
    if k:
        keep[torch.topk(w.reshape(-1), k, largest=False).indices] = False
    return keep.view_as(w)


def _signed_nm(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The N:M mask of a learner who keeps the n largest *signed* values of each group."""
    from minillm.compress.prune import nm_mask

    return nm_mask(w - w.min() + 1, n, m)  # a monotone shift makes every value positive: ranks by w


def _strided_nm(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The N:M mask of a learner who groups inputs j, j + in/m, j + 2·in/m, ... (a reshape to [m, in/m])."""
    from minillm.compress.prune import nm_mask

    r, c = w.shape
    perm = torch.arange(c).view(m, c // m).t().reshape(-1)  # strided order: group g holds inputs g, g + c/m, ...
    keep = torch.empty_like(w, dtype=torch.bool)
    keep[:, perm] = nm_mask(w[:, perm], n, m)
    return keep


def _compare(got: torch.Tensor, want: torch.Tensor, what: str, mistakes: dict[str, torch.Tensor], hint: str) -> None:
    if torch.equal(got, want):
        return
    for h, wrong in mistakes.items():
        if torch.equal(got, wrong) and not torch.equal(wrong, want):
            hint = h
            break
    n_diff = int((got != want).sum())
    raise CheckFailure(f"{what} differs from the expected mask in", got=f"{n_diff} of {want.numel()} entries",
                       expected="0", hint=hint)


@register("03.magnitude_mask", points=2, references=(f"{_PRUNE}.magnitude_mask", "torch.nn.utils.prune.l1_unstructured"))
def check_magnitude_mask(fn) -> None:
    """magnitude_mask(weight, sparsity) -> keep-mask removing the round(numel·sparsity) smallest |w|."""
    from minillm.compress.prune import magnitude_mask

    for seed, (r, c, s) in enumerate([(8, 8, 0.3), (4, 6, 0.5), (5, 7, 0.75), (16, 12, 0.9), (3, 3, 0.0), (6, 5, 0.33)]):
        w = _tie_free(r, c, seed)
        what = f"magnitude_mask(weight [{r}, {c}], sparsity={s})"
        got = _as_mask(fn(w.clone(), s), w.shape, what)
        want = magnitude_mask(w, s)
        k_int = int(w.numel() * s)
        floor = torch.ones_like(want)
        if k_int:
            floor.view(-1)[torch.topk(w.abs().view(-1), k_int, largest=False).indices] = False
        k = round(w.numel() * s)
        _compare(got, want, what, {
            "True must mean *kept*: you returned the mask of the pruned weights": ~want,
            "that removes the largest |w|: prune the smallest, they matter least": magnitude_mask(1 / w.abs(), s),
            (f"your mask removes {k_int} weights; round(numel · sparsity) = {k} must go, as torch.nn.utils.prune "
             "does (int() truncates, and a quantile threshold lands between counts)"): floor,
            "compare |w|, not w: a large negative weight matters as much as a large positive one": _signed(w, s),
            "that ranks |w| within each row; this task ranks over the whole matrix": magnitude_mask(w, s, scope="row"),
        }, hint="sort |w| over the whole matrix and drop the round(numel · sparsity) smallest")


@register("03.nm_mask", points=3, references=(f"{_PRUNE}.nm_mask",))
def check_nm_mask(fn) -> None:
    """nm_mask(weight, n, m) -> keep the n largest |w| in every group of m consecutive inputs of a row."""
    from minillm.compress.prune import nm_mask

    for seed, (r, c, n, m) in enumerate([(3, 12, 1, 4), (4, 8, 2, 4), (6, 16, 2, 4), (5, 16, 4, 8), (2, 6, 1, 2)]):
        w = _tie_free(r, c, 100 + seed)
        what = f"nm_mask(weight [{r}, {c}], n={n}, m={m})"
        got = _as_mask(fn(w.clone(), n, m), w.shape, what)
        want = nm_mask(w, n, m)
        mistakes = {
            "True must mean kept: you returned the pruned positions": ~want,
            "keep the n *largest* |w| of each group, not the smallest": ~nm_mask(w, m - n, m) if m > n else want,
            "compare |w|, not w: a large negative weight matters as much as a large positive one": _signed_nm(w, n, m),
            f"n is the number *kept* in each group of m: keep {n}, drop {m - n} (you dropped {n})": nm_mask(w, m - n, m),
            "groups are m *consecutive* inputs (0..m-1, m..2m-1, ...), not inputs in/m apart": _strided_nm(w, n, m),
        }
        if r % m == 0:
            mistakes["groups run along a row (m consecutive *inputs*), not down a column"] = nm_mask(w.t().contiguous(), n, m).t()
        _compare(got, want, what, mistakes, hint="view the row as [in/m, m] groups, topk(n) in each group, scatter True")


@register("03.wanda_mask", points=3, references=(f"{_PRUNE}.wanda_mask",))
def check_wanda_mask(fn) -> None:
    """wanda_mask(weight, act_norm, sparsity) -> per output row, drop the int(in·sparsity) smallest |W_ij|·act_norm[j]."""
    from minillm.compress.prune import magnitude_mask, wanda_mask

    # (3, 10, 0.37): 3.7 weights per row, so int() (3, as Wanda's code) and round() (4) differ
    for seed, (r, c, s) in enumerate([(4, 8, 0.5), (6, 10, 0.3), (3, 16, 0.75), (3, 10, 0.37)]):
        w = _tie_free(r, c, 200 + seed)
        g = torch.Generator().manual_seed(300 + seed)
        norms = torch.rand(c, generator=g) * 3 + 0.1
        what = f"wanda_mask(weight [{r}, {c}], act_norm [{c}], sparsity={s})"
        got = _as_mask(fn(w.clone(), norms.clone(), s), w.shape, what)
        want = wanda_mask(w, norms, s)
        scores = w.abs() * norms
        per_layer = magnitude_mask(scores, s)
        k_int, k_round = int(c * s), round(c * s)
        by_column = torch.ones_like(want)
        kc = int(r * s)
        if kc:
            by_column.scatter_(0, torch.topk(scores, kc, dim=0, largest=False).indices, False)
        by_round = torch.ones_like(want)
        by_round.scatter_(1, torch.topk(scores, k_round, dim=1, largest=False).indices, False)
        _compare(got, want, what, {
            "Wanda compares scores within each output row, not across the whole matrix": per_layer,
            "that is plain magnitude pruning per row: multiply |W| by the activation norms": magnitude_mask(w, s, scope="row"),
            "compare within each output row (along dim 1, the inputs), not within each column": by_column,
            (f"int(in · sparsity) = {k_int} per row go, as in Wanda's code; round() gives {k_round}"): by_round,
        }, hint="score = |W| * act_norm (broadcast over rows); in each row drop the int(in · sparsity) lowest scores")


@register("03.csr_break_even", points=2, references=())
def check_csr_break_even(fn) -> None:
    """csr_break_even(value_bytes, index_bytes) -> the sparsity above which CSR is smaller than dense."""
    rng = case_rng(119)
    drawn = [(rng.randint(1, 16) / 2, rng.randint(1, 8)) for _ in range(3)]  # half-byte values: int4 weights
    for vb, ib in [(4, 4), (2, 2), (2, 4), (4, 2), (1, 4), (8, 8), (4, 8), *drawn]:
        got = fn(vb, ib)
        want = ib / (vb + ib)
        what = f"csr_break_even(value_bytes={vb}, index_bytes={ib})"
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
            raise CheckFailure(f"{what} is", got=describe(got), expected="a number between 0 and 1")
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        if math.isclose(got, 100 * want, rel_tol=1e-9):
            hint = "return a fraction between 0 and 1, not a percentage"
        elif math.isclose(got, vb / (vb + ib), rel_tol=1e-9):
            hint = "that is the density where they break even, not the sparsity: subtract it from 1"
        elif math.isclose(got, 0.5, rel_tol=1e-9):
            hint = "0.5 holds only when an index is as wide as a value: derive it for any widths"
        else:
            hint = ("dense stores n values; CSR stores (1 - s)·n values and as many indices (ignore the row "
                    "offsets): solve (1 - s)(value + index) = value for s")
        raise CheckFailure(f"{what} is", got=f"{got:.6g}", expected=f"{want:.6g}", hint=hint)


@register("03.cubic_sparsity", points=2, references=(f"{_PRUNE}.cubic_sparsity", f"{_PRUNE}.GradualPruner"))
def check_cubic_sparsity(fn) -> None:
    """cubic_sparsity(step, s_init, s_final, n_steps) -> Zhu & Gupta's sparsity at ``step``."""
    rng = case_rng(140)
    drawn = []
    for _ in range(3):
        n = rng.randint(1, 1000)
        si = round(rng.uniform(0.0, 0.5), 3)
        drawn.append((rng.randint(0, 2 * n), si, round(rng.uniform(si + 0.05, 0.99), 3), n))
    for step, si, sf, n in [(0, 0.0, 0.8, 10), (5, 0.0, 0.8, 10), (10, 0.0, 0.8, 10), (15, 0.0, 0.8, 10),
                            (3, 0.1, 0.9, 7), (1, 0.0, 0.5, 100), (99, 0.2, 0.6, 100), *drawn]:
        got = fn(step, si, sf, n)
        p = min(step / n, 1.0)
        want = sf + (si - sf) * (1 - p) ** 3
        what = f"cubic_sparsity(step={step}, s_init={si}, s_final={sf}, n_steps={n})"
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
            raise CheckFailure(f"{what} is", got=describe(got), expected="a number")
        if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
            continue
        if step > n and math.isclose(got, sf + (si - sf) * (1 - step / n) ** 3, rel_tol=1e-9):
            hint = "after n_steps the schedule stays at s_final: clamp the progress at 1"
        elif math.isclose(got, si + (sf - si) * p ** 3, rel_tol=1e-9):
            hint = "cubic the other way round: most of the pruning happens early, s_f + (s_i - s_f)(1 - t/n)^3"
        elif math.isclose(got, si + (sf - si) * p, rel_tol=1e-9):
            hint = "that is a linear ramp; Zhu & Gupta's schedule is cubic"
        elif si and math.isclose(got, sf * (1 - (1 - p) ** 3), rel_tol=1e-9):
            hint = "you left out s_init: the schedule starts at s_i, not at 0"
        elif step < n and math.isclose(got, si, rel_tol=1e-9, abs_tol=1e-12):
            hint = "t / n is 0 until t = n: use true division (/), not integer division (//)"
        elif n > 1 and math.isclose(got, sf + (si - sf) * (1 - min(step / (n - 1), 1.0)) ** 3, rel_tol=1e-9):
            hint = "the progress is t / n (n steps reach s_f at t = n), not t / (n - 1)"
        else:
            hint = "s_t = s_f + (s_i - s_f)(1 - t/n)^3 for t <= n, then s_f"
        raise CheckFailure(f"{what} is", got=f"{got:.6g}", expected=f"{want:.6g}", hint=hint)
