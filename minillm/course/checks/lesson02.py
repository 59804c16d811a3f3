"""Checks of lesson 02, "Transfer learning and LoRA".

The LoRA formulas are compared with :mod:`minillm.compress.lora` in float64 on seeded
tensors whose B is not zero (at init B = 0 hides every mistake of the update), at a
relative 1e-9; the counts are exact integers; typical mistakes are named in the hint.
"""

from __future__ import annotations

import math

import torch

from minillm.course.checks import CheckFailure, case_rng, describe, expect_close, register

_LORA = "minillm.compress.lora"


def _case(n_in: int, n_out: int, r: int, seed: int, batch: tuple[int, ...] = (3,)):
    g = torch.Generator().manual_seed(seed)
    d = dict(dtype=torch.float64, generator=g)
    return (torch.randn(*batch, n_in, **d), torch.randn(n_out, n_in, **d), torch.randn(n_out, **d),
            torch.randn(r, n_in, **d), torch.randn(n_out, r, **d))


def _which(got, mistakes: dict[str, torch.Tensor], default: str) -> str:
    for hint, wrong in mistakes.items():
        if isinstance(got, torch.Tensor) and got.shape == wrong.shape and torch.allclose(got, wrong, rtol=1e-9, atol=1e-12):
            return hint
    return default


@register("02.lora_forward", points=3, references=(f"{_LORA}.LoRALinear", "torch.nn.functional.linear"))
def check_lora_forward(fn) -> None:
    """lora_forward(x, weight, bias, A, B, alpha) -> x Wᵀ + b + (alpha/r) x Aᵀ Bᵀ, r = A.shape[0]."""
    for seed, (n_in, n_out, r, alpha, batch) in enumerate(
        [(6, 4, 2, 2.0, (3,)), (8, 12, 3, 6.0, (2, 5)), (16, 8, 4, 1.0, (4,)), (5, 7, 1, 16.0, (2, 1, 3))]
    ):
        x, w, b, A, B = _case(n_in, n_out, r, seed, batch)
        want = x @ w.T + b + (alpha / r) * (x @ A.T @ B.T)
        what = f"lora_forward(x {list(x.shape)}, weight [{n_out}, {n_in}], A [{r}, {n_in}], B [{n_out}, {r}], alpha={alpha:g})"
        got = fn(x.clone(), w.clone(), b.clone(), A.clone(), B.clone(), alpha)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            raise CheckFailure(f"{what} returned", got=describe(got), expected=f"a tensor of shape {tuple(want.shape)}",
                               hint="x Aᵀ is [..., r], then (x Aᵀ) Bᵀ is [..., out], the base's shape")
        if torch.allclose(got.double(), want, rtol=1e-9, atol=1e-9):
            continue
        hint = _which(got.double(), {
            "the update is scaled by alpha / r; you left the scale out": x @ w.T + b + x @ A.T @ B.T,
            "the scale is alpha / r, not r / alpha": x @ w.T + b + (r / alpha) * (x @ A.T @ B.T),
            "the scale is alpha / r, not alpha": x @ w.T + b + alpha * (x @ A.T @ B.T),
            "the base layer's bias is part of the output: base(x) = x Wᵀ + b": x @ w.T + (alpha / r) * (x @ A.T @ B.T),
            "only the update is scaled, not the frozen base": (alpha / r) * (x @ w.T + b + x @ A.T @ B.T),
            "r is the rank, A.shape[0] (A is [r, in]); A.shape[1] is the input width":
                x @ w.T + b + (alpha / n_in) * (x @ A.T @ B.T),
            "you returned the frozen layer alone: add the update (alpha / r) · (x Aᵀ) Bᵀ": x @ w.T + b,
        }, "y = x Wᵀ + b + (alpha / r) · (x Aᵀ) Bᵀ with r = A.shape[0]")
        raise CheckFailure(f"{what} differs from base(x) + (alpha/r)·x Aᵀ Bᵀ by", hint=hint,
                           got=f"{(got.double() - want).abs().max().item():.3g}", expected="0")


@register("02.merge_weight", points=2, references=(f"{_LORA}.LoRALinear.merge", f"{_LORA}.LoRALinear.delta_weight"))
def check_merge_weight(fn) -> None:
    """merge_weight(weight, A, B, alpha) -> W + (alpha/r) B A, the [out, in] weight of the merged layer."""
    for seed, (n_in, n_out, r, alpha) in enumerate([(6, 4, 2, 2.0), (8, 12, 3, 6.0), (16, 16, 4, 1.0), (5, 9, 1, 8.0)]):
        x, w, _, A, B = _case(n_in, n_out, r, 10 + seed)
        want = w + (alpha / r) * (B @ A)
        what = f"merge_weight(weight [{n_out}, {n_in}], A [{r}, {n_in}], B [{n_out}, {r}], alpha={alpha:g})"
        got = fn(w.clone(), A.clone(), B.clone(), alpha)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (n_out, n_in):
            raise CheckFailure(f"{what} returned", got=describe(got), expected=f"a tensor of shape ({n_out}, {n_in})",
                               hint="B A is [out, r] @ [r, in] = [out, in], the weight's shape")
        if not torch.allclose(got.double(), want, rtol=1e-9, atol=1e-9):
            hint = _which(got.double(), {
                "scale the product by alpha / r": w + B @ A,
                "the scale is alpha / r, not r / alpha": w + (r / alpha) * (B @ A),
                "merge adds the update to W; you returned the update alone": (alpha / r) * (B @ A),
                "W + ΔW, not W − ΔW": w - (alpha / r) * (B @ A),
                "r is the rank, A.shape[0] (A is [r, in]); A.shape[1] is the input width": w + (alpha / n_in) * (B @ A),
            }, "W' = W + (alpha / r) · B @ A; then x W'ᵀ equals x Wᵀ + (alpha/r) x Aᵀ Bᵀ")
            raise CheckFailure(f"{what} differs from W + (alpha/r)·B A by", hint=hint,
                               got=f"{(got.double() - want).abs().max().item():.3g}", expected="0")
    # the merged layer must compute what the adapter computes
    x, w, b, A, B = _case(12, 10, 3, 99)
    got = fn(w.clone(), A.clone(), B.clone(), 5.0)
    expect_close(x @ got.double().T + b, x @ w.T + b + (5.0 / 3) * (x @ A.T @ B.T), rtol=1e-9, atol=1e-9,
                 what="x W'ᵀ + b against the unmerged adapter")


def _models():
    """(model, expected trainable count): frozen parts, LoRA adapters, a tied embedding."""
    from minillm.compress.lora import add_lora
    from minillm.model import GPT, GPTConfig

    out = []
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = GPTConfig(vocab_size=40, block_size=8, n_layer=2, n_head=2, n_embd=16)
        full = GPT(cfg)  # tied: lm_head.weight is wte.weight, counted once
        out.append((full, sum(p.numel() for p in full.parameters())))
        lora = add_lora(GPT(cfg), 2, targets=("c_attn",))
        out.append((lora, 2 * 2 * (16 + 48)))
        both = add_lora(GPT(cfg), 3)
        both.ln_f.weight.requires_grad_(True)
        out.append((both, 3 * 2 * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16)) + 16))
        untied = GPT(GPTConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=16, tie_weights=False))
        for p in untied.parameters():
            p.requires_grad_(False)
        untied.lm_head.weight.requires_grad_(True)
        out.append((untied, 40 * 16))
    return out


@register("02.count_trainable", points=2, references=(f"{_LORA}.trainable_parameters",))
def check_count_trainable(fn) -> None:
    """count_trainable(model) -> the number of parameters (elements) the optimizer will update."""
    for i, (model, want) in enumerate(_models()):
        got = fn(model)
        what = f"count_trainable(model {i + 1})"
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = int(got)
        if isinstance(got, bool) or not isinstance(got, int):
            raise CheckFailure(f"{what} returned", got=describe(got), expected="an int")
        if got == want:
            continue
        total = sum(p.numel() for p in model.parameters())
        tied = model.lm_head.weight is model.wte.weight and model.wte.weight.requires_grad
        if tied and got == want + model.wte.weight.numel():
            hint = ("a tied weight counted twice: lm_head.weight is wte.weight (state_dict() and a walk over every module's "
                    "own parameters list it twice); count it once, as model.parameters() does")
        elif got == model.num_params():
            hint = ("num_params() counts every parameter, frozen or not, and leaves out the position embedding; "
                    "count the elements of the parameters with requires_grad True")
        elif got == total:
            hint = "count only the parameters with requires_grad True: the frozen base does not train"
        elif got == sum(1 for p in model.parameters() if p.requires_grad):
            hint = "count elements (p.numel()), not tensors"
        elif got == sum(t.numel() for t in model.state_dict().values()):
            hint = "state_dict() lists a tied weight twice and holds frozen tensors; use model.parameters()"
        else:
            hint = "sum(p.numel() for p in model.parameters() if p.requires_grad)"
        raise CheckFailure(f"{what} is", got=f"{got:,}", expected=f"{want:,}", hint=hint)


@register("02.break_even_rank", points=2, references=())
def check_break_even_rank(fn) -> None:
    """break_even_rank(n_in, n_out) -> the rank r at which A and B hold as many numbers as W [out, in]."""
    rng = case_rng(134)
    drawn = [(rng.randint(8, 8192), rng.randint(8, 8192)) for _ in range(3)]
    for n_in, n_out in [(128, 384), (128, 128), (128, 512), (512, 128), (4096, 4096), (768, 2304), (10, 15), *drawn]:
        want = n_in * n_out / (n_in + n_out)
        what = f"break_even_rank(n_in={n_in}, n_out={n_out})"
        got = fn(n_in, n_out)
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
            raise CheckFailure(f"{what} is", got=describe(got), expected="a number")
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        if got in (math.floor(want), math.ceil(want), round(want)):
            hint = "do not round: return in·out / (in + out) exactly, a float (a rank below it saves, one above it does not)"
        elif math.isclose(got, min(n_in, n_out), rel_tol=1e-9):
            hint = "min(in, out) is the largest rank a matrix can have; count parameters instead"
        elif math.isclose(got, min(n_in, n_out) / 2, rel_tol=1e-9) or math.isclose(got, n_in / 2, rel_tol=1e-9):
            hint = "d/2 holds only for a square matrix: derive it for any [out, in]"
        elif math.isclose(got, (n_in + n_out) / (n_in * n_out), rel_tol=1e-9):
            hint = "upside down: r·(in + out) = in·out gives r = in·out / (in + out)"
        else:
            hint = "A is [r, in] and B is [out, r]: solve r·(in + out) = in·out for r"
        raise CheckFailure(f"{what} is", got=f"{got:.6g}", expected=f"{want:.6g}", hint=hint)


@register("02.answer_targets", points=2, references=("minillm.transfer.answer_batch",))
def check_answer_targets(fn) -> None:
    """answer_targets(prompt_ids, answer_ids) -> (x, y): x = (prompt + answer)[:-1]; y = -1 except the answer."""
    g = torch.Generator().manual_seed(3)
    for P, A in [(5, 2), (1, 1), (8, 3), (3, 4), (12, 1)]:
        p = torch.randint(1, 500, (P,), generator=g).tolist()
        a = torch.randint(1, 500, (A,), generator=g).tolist()
        seq = p + a
        want_x, want_y = seq[:-1], [-1] * (P - 1) + a
        what = f"answer_targets(prompt of {P}, answer of {A} tokens)"
        got = fn(list(p), list(a))
        if not isinstance(got, tuple) or len(got) != 2:
            raise CheckFailure(f"{what} returned", got=describe(got), expected="a pair (x, y)")
        x, y = (v.tolist() if isinstance(v, torch.Tensor) else list(v) for v in got)
        if x != want_x:
            hint = ("x is the input: every token except the last, which is only predicted"
                    if x == seq else "x = (prompt + answer) without its last token")
            raise CheckFailure(f"{what}: x", got=x, expected=want_x, hint=hint)
        if y != want_y:
            if y == seq[1:]:
                hint = "that trains on the story too: set y = -1 at every prompt position"
            elif y == [-1] * P + a[:-1] or y == [-1] * P + a[1:]:
                hint = "off by one: position t predicts token t+1, so the last prompt position predicts the first answer token"
            elif len(y) != len(x):
                hint = f"y needs one target per input position: {len(x)} long, like x; the last prompt position predicts the first answer token"
            elif y == [0] * (P - 1) + a:
                hint = "mark the prompt positions with -1 (no loss); 0 is a real token id and would be trained on"
            else:
                hint = "y[t] is the token after x[t] where that token is part of the answer, -1 elsewhere"
            raise CheckFailure(f"{what}: y", got=y, expected=want_y, hint=hint)
