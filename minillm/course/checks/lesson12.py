"""Checks of lesson 12, "Tensor parallelism".

Shards are compared exactly with :mod:`minillm.parallel.tensor_parallel`'s (slicing moves bits);
rank code runs on the simulated cluster (tp = 2 and 4) and is compared with the one-device
result, which the check draws and computes in its own process (the grader while grading, never the
learner's kernel), at 1e-5 relative (fp32 partial sums added in another order, ~1e-7); the byte count is
float64 arithmetic on integers, compared at 1e-9. Typical mistakes are named in the hint.
"""

from __future__ import annotations

import math

import torch

from minillm.course.checks import CheckFailure, case_rng, describe, expect_close, register
from minillm.course.checks.lesson10 import run_ranks

_TP = (
    "minillm.parallel.tensor_parallel.ColumnParallelLinear",
    "minillm.parallel.tensor_parallel.RowParallelLinear",
    "minillm.parallel.tensor_parallel.reduce_from_tp",
    "minillm.parallel.tp_comm.reduce_from_tp",
)


def _weights(seed: int, out: int, inp: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out, inp, generator=g), torch.randn(out, generator=g)


def _shard_hint(gw, w: torch.Tensor, r: int, tp: int) -> str | None:
    """Name the usual slip when ``gw`` is not rank ``r``'s rows of ``w`` [out, in]."""
    if not isinstance(gw, torch.Tensor) or gw.dim() != 2:
        return None
    inp, k = w.shape[1], w.shape[0] // tp
    mine = w[r * k : (r + 1) * k]

    def same(t: torch.Tensor) -> bool:
        return tuple(gw.shape) == tuple(t.shape) and torch.equal(gw, t)

    if same(mine):
        return None
    if inp % tp == 0 and same(w[:, r * (inp // tp) : (r + 1) * (inp // tp)]):
        return "a column-parallel layer splits the *output* features: rows of the [out, in] weight, not columns"
    if same(mine.t()):
        return "that is the transpose: keep the weight's [out, in] layout, so the shard is [out/tp, in]"
    if tp > 1 and same(w[r::tp]):
        return "rank r holds one contiguous block of rows, r·out/tp to (r+1)·out/tp - 1, not every tp-th row"
    if r + 1 < tp and same(w[(tp - 1 - r) * k : (tp - r) * k]):
        return "rank r holds rows r·out/tp to (r+1)·out/tp - 1, in rank order"
    if same(w[r * k : (r + 1) * k + 1]) or same(w[r * k : (r + 1) * k - 1]) or same(w[r * k + 1 : (r + 1) * k + 1]):
        return f"off by one: rank r's block is weight[r * k : (r + 1) * k] with k = out/tp = {k} rows (the slice end is excluded)"
    kc = inp // tp
    if kc != k and same(w[r * kc : (r + 1) * kc]):
        return "out/tp is weight.shape[0] // tp: the number of rows, not of columns"
    return None


@register("12.shard_column", points=2, references=_TP)
def check_shard_column(fn) -> None:
    """shard_column(weight, bias, rank, tp) -> (this rank's rows of weight, its slice of bias)."""
    for seed, (out, inp, tp) in enumerate([(8, 4, 2), (12, 6, 4), (9, 5, 3), (6, 6, 1)]):
        w, b = _weights(seed, out, inp)
        k = out // tp
        for r in range(tp):
            got = fn(w.clone(), b.clone(), r, tp)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise CheckFailure("shard_column returned", got=describe(got), expected="a pair (weight shard, bias shard)")
            gw, gb = got
            hint = _shard_hint(gw, w, r, tp)
            what = f"shard_column(weight [{out}, {inp}], bias, rank={r}, tp={tp})"
            expect_close(gw, w[r * k : (r + 1) * k], atol=0, rtol=0, what=f"{what}'s weight", hint=hint)
            expect_close(gb, b[r * k : (r + 1) * k], atol=0, rtol=0, what=f"{what}'s bias", hint="the bias is split like the rows")


def _row_case(seed: int, n: int, inp: int, out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Case ``seed``'s x [n, inp], W [out, inp] and bias [out]: the same draws in the kernel's rank code and in the check."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, inp, generator=g), torch.randn(out, inp, generator=g), torch.randn(out, generator=g)


def _row_rank(comm, fn, seed, n, inp, out):
    x, w, b = _row_case(seed, n, inp, out)
    k = inp // comm.world_size
    cols = slice(comm.rank * k, (comm.rank + 1) * k)
    return {"got": fn(comm, x[:, cols].clone(), w[:, cols].clone(), b.clone())}  # the learner's output only


def _partial_max(x: torch.Tensor, w: torch.Tensor, tp: int) -> torch.Tensor:
    """The element-wise maximum of the ranks' partial products x_r @ W_rᵀ: an all-reduce with op='max'."""
    k = x.shape[1] // tp
    return torch.stack([x[:, r * k : (r + 1) * k] @ w[:, r * k : (r + 1) * k].t() for r in range(tp)]).amax(0)


@register("12.row_parallel_linear", points=3, references=_TP)
def check_row_parallel_linear(fn) -> None:
    """row_parallel_linear(comm, x_local, w_local, bias) -> x @ Wᵀ + bias, the same on every rank."""
    for seed, (tp, n, inp, out) in enumerate([(2, 3, 8, 5), (4, 4, 16, 6), (3, 2, 9, 4)]):
        x, w, b = _row_case(seed, n, inp, out)  # drawn here: the expected output never comes from the kernel
        want = x @ w.t() + b
        res = run_ranks(_row_rank, tp, fn, seed, n, inp, out)
        for r, d in enumerate(res.results):
            got = d["got"]
            partial = x[:, r * (inp // tp) : (r + 1) * (inp // tp)] @ w[:, r * (inp // tp) : (r + 1) * (inp // tp)].t()
            expect_close(
                got, want, atol=1e-5, rtol=1e-5,  # fp32 partial products summed in another order: ~1e-7
                what=f"with tp={tp}, rank {r}'s output",
                hint="multiply your slices, all-reduce (sum) the partial products, then add the bias once",
                diagnose={
                    f"the bias was added before the all-reduce, so it counts {tp} times: add it after the sum": want + (tp - 1) * b,
                    "this is only this rank's partial product: all-reduce (sum) it over the ranks": partial + b,
                    "op='avg' divides the sum by tp: the partial products must be added, op='sum'": (want - b) / tp + b,
                    "op='max' keeps the largest partial product: the partial products must be added, op='sum'": _partial_max(x, w, tp) + b,
                },
            )


def _round_robin_rows(C: int, H: int, r: int, tp: int) -> list[int]:
    """The rows a rank would keep if heads were dealt round-robin (heads r, r + tp, ...)."""
    hd = C // H
    cols = [h * hd + i for h in range(r, H, tp) for i in range(hd)]
    return cols + [c + C for c in cols] + [c + 2 * C for c in cols]


@register("12.qkv_head_rows", points=3, references=("minillm.parallel.tensor_parallel._head_rows",))
def check_qkv_head_rows(fn) -> None:
    """qkv_head_rows(n_embd, n_head, rank, tp) -> the rows of c_attn (Q, K, V of whole heads) this rank keeps."""
    rng = case_rng(81)
    drawn = []
    for _ in range(2):  # tp divides n_head, head_dim from 1 to 16
        tp = rng.randint(1, 4)
        H = tp * rng.randint(1, 4)
        drawn.append((H * rng.randint(1, 16), H, tp))
    for C, H, tp in [(8, 2, 2), (12, 4, 2), (16, 4, 4), (24, 6, 3), (8, 4, 1), *drawn]:
        hd, per = C // H, H // tp
        for r in range(tp):
            got = fn(C, H, r, tp)
            try:
                got_list = [int(i) for i in (got.tolist() if isinstance(got, torch.Tensor) else got)]
            except (TypeError, ValueError):
                raise CheckFailure(f"qkv_head_rows({C}, {H}, {r}, {tp}) returned", got=describe(got),
                                   expected="a list (or 1-D tensor) of row indices") from None
            cols = list(range(r * per * hd, (r + 1) * per * hd))
            want = cols + [c + C for c in cols] + [c + 2 * C for c in cols]
            if got_list == want:
                continue
            k = 3 * C // tp
            if got_list == list(range(r * k, (r + 1) * k)):
                hint = "a contiguous chunk of the 3C rows cuts Q, K and V apart: take the same heads' rows from each of the three blocks"
            elif got_list == cols:
                hint = "those are only Q's rows: K's start at row C and V's at 2C"
            elif tp > 1 and got_list == _round_robin_rows(C, H, r, tp):
                hint = "rank r owns a contiguous block of heads, r·n_head/tp to (r+1)·n_head/tp - 1, not every tp-th head"
            elif sorted(got_list) == sorted(want):
                hint = "the right rows in the wrong order: Q's rows first, then K's, then V's, so the shard still splits into q, k, v"
            else:
                hint = f"head h owns columns h·{hd} to (h+1)·{hd} - 1 of Q (and of K, V); rank r owns heads r·n_head/tp to (r+1)·n_head/tp - 1"
            raise CheckFailure(f"qkv_head_rows(n_embd={C}, n_head={H}, rank={r}, tp={tp}) is", got=got_list[:12],
                               expected=want[:12], hint=hint)


def _vocab_case(seed: int, n: int, V: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Case ``seed``'s logits [n, V] and targets [n]: the same draws in the kernel's rank code and in the check."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, V, generator=g) * scale, torch.randint(0, V, (n,), generator=g)


def _vocab_rank(comm, fn, seed, n, V, scale):
    logits, targets = _vocab_case(seed, n, V, scale)
    k = V // comm.world_size
    local = logits[:, comm.rank * k : (comm.rank + 1) * k].clone()
    return {"got": fn(comm, local, targets.clone())}  # the learner's output only


def _vocab_mistakes(lg: torch.Tensor, t: torch.Tensor, tp: int, r: int) -> dict[str, float]:
    """Rank ``r``'s loss under each usual slip, from the full float64 logits ``lg`` [n, V]: hint -> value."""
    n, V = lg.shape
    k = V // tp
    parts = lg.split(k, dim=-1)
    lse = torch.logsumexp(lg, -1)
    z_t = lg.gather(-1, t[:, None]).squeeze(-1)
    local_max = [p.amax(-1) for p in parts]
    mixed = torch.log(sum(torch.exp(p - m[:, None]).sum(-1) for p, m in zip(parts, local_max)))
    unmasked = sum(p.gather(-1, (t - q * k).clamp(0, k - 1)[:, None]).squeeze(-1) for q, p in enumerate(parts))
    return {
        "that is the sum over the tokens: the loss is their mean": float((lse - z_t).sum()),
        "each rank subtracted its own local maximum: all-reduce the maxima with op='max' first, so every rank "
        "shifts by the same number": float((mixed + local_max[r] - z_t).mean()),
        "add the maximum back: log Σ exp(z - max) + max - z_target": float((lse - lg.amax(-1) - z_t).mean()),
        "every rank added a logit for the target: only the rank that holds id t (t - rank·V/tp between 0 and V/tp - 1) "
        "contributes it, the others add 0": float((lse - unmasked).mean()),
        "op='avg' divided the sum of exponentials by tp: add them with op='sum'": float((lse - math.log(tp) - z_t).mean()),
    }


@register("12.vocab_parallel_loss", points=4, references=(
    "minillm.parallel.tensor_parallel.vocab_parallel_cross_entropy", "torch.nn.functional.cross_entropy",
    "minillm.kernels.cross_entropy_loss", "minillm.model.cross_entropy",
))
def check_vocab_parallel_loss(fn) -> None:
    """vocab_parallel_loss(comm, local_logits, targets) -> mean cross-entropy over the full vocabulary."""
    from minillm.parallel import comm_summary

    # large vocabularies, so that gathering the logits costs > 5x the three all-reduces
    for seed, (tp, n, V, scale) in enumerate([(2, 6, 32, 1.0), (4, 8, 64, 3.0), (2, 5, 32, 200.0)]):
        logits, t = _vocab_case(seed, n, V, scale)  # drawn here: the expected loss never comes from the kernel
        lg = logits.double()
        want = float((torch.logsumexp(lg, -1) - lg.gather(-1, t[:, None]).squeeze(-1)).mean())
        res = run_ranks(_vocab_rank, tp, fn, seed, n, V, scale)
        for r, d in enumerate(res.results):
            got = d["got"]
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = float(got)
            if isinstance(got, bool) or not isinstance(got, (int, float)):
                raise CheckFailure(f"with tp={tp}, rank {r}'s loss is", got=describe(d["got"]), expected="a scalar")
            if math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6):  # fp32 logsumexp against float64
                continue
            k = V // tp
            named = next((h for h, v in _vocab_mistakes(lg, t, tp, r).items() if math.isclose(got, v, rel_tol=1e-5, abs_tol=1e-6)), None)
            if named:
                hint = named
            elif not math.isfinite(got):
                hint = "exp() of large logits overflows: subtract the *global* maximum (all-reduce the local maxima with op='max') first"
            else:
                hint = ("three all-reduces, one number per token each: the max (op='max'), the sum of exp(z - max), and the target's "
                        "logit, which only the rank holding id t (rank t // (V/tp), column t - rank·V/tp) contributes")
            raise CheckFailure(f"with tp={tp} (vocabulary {V}, rank {r} holds ids {r * k} to {(r + 1) * k - 1}), the loss is",
                               got=f"{got:.6g}", expected=f"{want:.6g}", hint=hint)
        # The traces are the simulator's record of the run, which only it can give: while grading they
        # come from the kernel (see the threat model in minillm/course/README.md); the loss did not.
        sent = max(comm_summary(tr, tp)["bytes_sent"] for tr in res.traces)
        gather = (tp - 1) / tp * n * V * 4  # what all-gathering the fp32 logits would send
        if sent >= 0.5 * gather:
            raise CheckFailure(f"with tp={tp} a rank sent {sent:.0f} bytes", expected=f"far fewer than the {gather:.0f} of gathering the logits",
                               hint="never gather [n, V]: all-reduce per-token numbers (max, sum of exp, target logit) instead")


def _ignores_bytes_per_elem(fn, b: int, s: int, h: int, tp: int, e: float, got: float) -> bool:
    """Whether the learner's answer stays ``got`` when bytes_per_elem doubles."""
    try:
        other = fn(b, s, h, tp, 2 * e)
    except Exception:  # a probe only: an error here must not replace the verdict on the first call
        return False
    return isinstance(other, (int, float)) and not isinstance(other, bool) and math.isclose(other, got, rel_tol=1e-9)


@register("12.tp_bytes_per_layer", points=2, references=("minillm.parallel.tp_costs.tp_comm_bytes",))
def check_tp_bytes_per_layer(fn) -> None:
    """tp_bytes_per_layer(batch, seq_len, hidden, tp, bytes_per_elem) -> bytes one rank sends per layer, forward + backward."""
    rng = case_rng(155)
    drawn = [(rng.randint(1, 16), rng.choice([128, 512, 1024, 2048, 4096]), 64 * rng.randint(1, 192), rng.randint(2, 8),
              rng.choice([1, 2, 4])) for _ in range(3)]
    for b, s, h, tp, e in [(1, 2048, 12288, 8, 2), (4, 1024, 4096, 2, 2), (2, 16, 32, 4, 4), (1, 128, 64, 1, 2), (8, 512, 2048, 3, 1),
                           *drawn]:
        got = fn(b, s, h, tp, e)
        n = b * s * h * e
        want = 4 * 2 * (tp - 1) / tp * n
        what = f"tp_bytes_per_layer(batch={b}, seq_len={s}, hidden={h}, tp={tp}, bytes_per_elem={e})"
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise CheckFailure(f"{what} is", got=describe(got), expected="a number of bytes")
        if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9):
            continue
        if tp > 1 and got == 0:
            hint = "(tp - 1) // tp is 0 in integer division: use (tp - 1) / tp"
        elif tp > 1 and _ignores_bytes_per_elem(fn, b, s, h, tp, e, got):
            hint = "the answer does not change with bytes_per_elem: the activation is batch·seq_len·hidden·bytes_per_elem bytes"
        elif tp > 1 and math.isclose(got, 8 * n, rel_tol=1e-9):
            hint = "a rank keeps its own 1/p share: a ring all-reduce sends 2(p-1)/p · n bytes per rank, not 2n"
        elif tp > 1 and math.isclose(got, 2 * want, rel_tol=1e-9):
            hint = "that is twice: 4 all-reduces per layer (2 forward, 2 backward), each 2(p-1)/p · n bytes per rank in all"
        elif tp > 1 and math.isclose(got, want / 2, rel_tol=1e-9):
            hint = ("that is half: count 2 all-reduces forward and 2 backward (the f of each sub-layer), each a "
                    "reduce-scatter plus an all-gather, 2(p-1)/p · n bytes per rank")
        elif tp > 1 and math.isclose(got, 4 * n, rel_tol=1e-9):
            hint = "a ring all-reduce of n bytes sends 2(p-1)/p · n per rank, not n"
        else:
            hint = "per layer: 2 all-reduces forward (after attention and after the MLP) and 2 backward, each of the [b, s, h] activation"
        raise CheckFailure(f"{what} is", got=f"{got:.6g}", expected=f"{want:.6g}", hint=hint)
