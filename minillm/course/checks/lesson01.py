"""Checks of lesson 01, "The minillm transformer".

Every check compares the learner's function with minillm's reference on several
seeded random cases plus edge cases, and tests a property the reference has
(causality, a stable softmax, ...). Typical mistakes are recognised and named in
the hint. Tolerances are stated next to each comparison.
"""

from __future__ import annotations

import math

import torch

from minillm.course.checks import CheckFailure, case_rng, describe, expect_close, register


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale + shift


# --------------------------------------------------------------------------- causal attention


def _attention(q, k, v, scale: float, causal: bool = True, strict: bool = False, dim: int = -1, reversed_mask: bool = False):
    """Variants of attention that typical mistakes produce (used only to name the mistake)."""
    scores = (q.double() @ k.double().transpose(-2, -1)) * scale
    T = q.size(-2)
    if causal:
        mask = torch.ones(T, T, dtype=torch.bool)
        mask = mask.tril(-1) if reversed_mask else mask.triu(0 if strict else 1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=dim) @ v.double()


@register(
    "01.causal_attention",
    points=3,
    references=("minillm.model.causal_attention", "torch.nn.functional.scaled_dot_product_attention"),
)
def check_causal_attention(fn) -> None:
    """causal_attention(q, k, v) with q, k, v [B, H, T, D] -> [B, H, T, D]."""
    from minillm.model import causal_attention as reference

    gen = torch.Generator().manual_seed(1)
    # (B, H, T, D) cases: ordinary, a single token, T > D, one head, and scores in the
    # hundreds (q and k scaled by 10), where exp() without the max subtracted overflows.
    cases = [((2, 3, 5, 8), 1.0), ((1, 1, 1, 4), 1.0), ((3, 2, 9, 2), 1.0), ((1, 4, 6, 16), 1.0), ((2, 2, 7, 8), 10.0)]
    for (B, H, T, D), s in cases:
        q, k, v = (_randn(gen, B, H, T, D, scale=s if i < 2 else 1.0) for i in range(3))
        originals = [t.clone() for t in (q, k, v)]
        got = fn(q, k, v)
        expected = reference(*originals)
        what = f"output for q, k, v of shape {(B, H, T, D)}"
        # fp32 attention against fp32 attention: only the summation order differs,
        # so 1e-5 absolute (outputs are O(1)) with 1e-4 relative covers it.
        expect_close(
            got,
            expected,
            atol=1e-5,
            rtol=1e-4,
            what=what,
            hint="softmax(q·kᵀ/√D + causal mask) · v; use a numerically stable softmax",
            diagnose={
                "scale the scores by 1/√D (Vaswani et al. 2017, eq. 1)": _attention(*originals, 1.0),
                "the scale is 1/√D, not 1/D": _attention(*originals, 1.0 / D),
                "mask the future: query i may only see keys j <= i": _attention(*originals, 1 / math.sqrt(D), causal=False),
                "the diagonal must stay visible: mask j > i, not j >= i": _attention(*originals, 1 / math.sqrt(D), strict=True),
                "the softmax runs over the keys (the last dimension)": _attention(*originals, 1 / math.sqrt(D), dim=-2),
                "the mask is reversed: it hides the past (j < i) and shows the future. Hide j > i, "
                "the upper triangle: torch.ones(T, T).triu(1), not tril(-1)": _attention(
                    *originals, 1 / math.sqrt(D), reversed_mask=True
                ),
            },
        )
        for name, t, o in zip("qkv", (q, k, v), originals):
            if not torch.equal(t, o):
                raise CheckFailure(f"your function changed its input {name} in place", hint="work on new tensors")
    # Property: the output at position t must not depend on later tokens.
    q, k, v = (_randn(gen, 1, 2, 6, 4) for _ in range(3))
    base = fn(q, k, v)
    k2, v2 = k.clone(), v.clone()
    k2[..., -1, :] += 5.0
    v2[..., -1, :] -= 5.0
    changed = fn(q, k2, v2)
    if not torch.allclose(base[..., :-1, :], changed[..., :-1, :], atol=1e-6):
        raise CheckFailure(
            "changing the last token changed the outputs of earlier positions",
            hint="apply the causal mask before the softmax",
        )


# --------------------------------------------------------------------------- layer norm


def _layer_norm_atol(x, w, y, eps: float) -> float:
    """Tolerance of an honest float32 layer norm against the float64 reference ``y``.

    float32 rounds to u = 2**-24. The mean of C values is summed in about log2(C) levels, so
    it is off by up to ~(log2 C + 2)·u·max|x|; that error, divided by the row's std
    sqrt(var + eps), scales by |w| into the output, and the last few operations add ~4u·|y|.
    Twice that bound, over the whole case. Measured on 3000 seeds of each case: an honest
    two-pass float32 layer norm reaches at most 0.62 of the bound (so 1/3 of this tolerance);
    the one-pass E[x²] - mean² variance misses it by at least 8.6x at mean 300.
    """
    u = 2.0**-24
    C = x.shape[-1]
    sigma = (x.var(-1, unbiased=False, keepdim=True) + eps).sqrt()
    bound = w.abs() * (math.log2(C) + 2) * u * x.abs().amax(-1, keepdim=True) / sigma + 4 * u * y.abs()
    return 2.0 * float(bound.max())


@register(
    "01.layer_norm",
    points=2,
    references=(
        "minillm.model.LayerNorm",
        "torch.nn.functional.layer_norm",
        "torch.layer_norm",
        "torch.nn.LayerNorm",
    ),
)
def check_layer_norm(fn) -> None:
    """layer_norm(x, weight, bias, eps=1e-5): normalise x [..., C] over C, then scale and shift."""
    gen = torch.Generator().manual_seed(2)
    # Shapes, plus edge cases: C = 1 (the variance is 0 and eps keeps it finite),
    # constant rows, a tiny variance (1e-6, where eps inside or outside the root
    # matters) and a large mean (300) that makes E[x²] - mean² lose precision.
    general = "y = (x - mean) / sqrt(var + eps) * weight + bias over the last dimension"
    cases = [
        ((4, 8), 0.0, 1.0, general),
        ((2, 3, 16), 0.0, 3.0, general),
        ((5, 1), 0.0, 1.0, "with C = 1 the variance is 0: eps keeps the division finite"),
        ((3, 32), 300.0, 1.0, "compute var as the mean of (x - mean)²; E[x²] - mean² cancels when the mean is large"),
        ((4, 8), 1.0, 1e-3, "eps goes inside the square root: sqrt(var + eps)"),
        ((2, 6), 2.0, 0.0, "a constant row normalises to 0, then becomes the bias"),
    ]
    for shape, shift, scale, case_hint in cases:
        C = shape[-1]
        x = _randn(gen, *shape, scale=scale, shift=shift)
        w, b = _randn(gen, C, scale=0.5, shift=1.0), _randn(gen, C, scale=0.5)
        eps = 1e-5
        xs = x.double()
        expected = torch.nn.functional.layer_norm(xs, (C,), w.double(), b.double(), eps)  # exact for fp32 inputs
        mu = xs.mean(-1, keepdim=True)
        got = fn(x.clone(), w.clone(), b.clone(), eps)
        expect_close(
            got,
            expected,
            atol=_layer_norm_atol(xs, w.double(), expected, eps),
            rtol=0.0,
            what=f"output for x of shape {shape}" + (f" with mean {shift:g} and std {scale:g}" if case_hint != general else ""),
            hint=case_hint,
            diagnose={
                "use the biased variance (divide by C, not C - 1), as nn.LayerNorm does": (xs - mu)
                / torch.sqrt(xs.var(-1, keepdim=True, unbiased=True) + eps)
                * w
                + b,
                "eps goes inside the square root: sqrt(var + eps)": (xs - mu) / (xs.var(-1, keepdim=True, unbiased=False).sqrt() + eps) * w
                + b,
                "finish with * weight + bias": (xs - mu) / torch.sqrt(xs.var(-1, keepdim=True, unbiased=False) + eps),
                "normalise over the last dimension (the features), not the first": torch.nn.functional.layer_norm(
                    x.transpose(0, -1), (x.size(0),), None, None, eps
                ).transpose(0, -1)
                * w
                + b
                if x.size(0) > 1
                else torch.zeros_like(x),
            },
        )
    # The learner's default eps must be 1e-5 (as nn.LayerNorm).
    x = _randn(gen, 2, 4)
    w, b = torch.ones(4), torch.zeros(4)
    got = fn(torch.full((1, 4), 2.0), w, b)
    expect_close(got, torch.zeros(1, 4), atol=1e-6, rtol=0, what="output for a constant row", hint="eps defaults to 1e-5")
    got = fn(x, w, b)
    expect_close(got, torch.nn.functional.layer_norm(x, (4,), w, b, 1e-5), atol=1e-4, rtol=1e-4, what="output with the default eps")


# --------------------------------------------------------------------------- cross-entropy


@register(
    "01.cross_entropy",
    points=2,
    references=(
        "minillm.model.cross_entropy",
        "torch.nn.functional.cross_entropy",
        "torch._C._nn.cross_entropy_loss",
    ),
)
def check_cross_entropy(fn) -> None:
    """cross_entropy(logits [N, V], targets [N]) -> the mean negative log-likelihood (a scalar)."""
    from minillm.model import cross_entropy as reference

    gen = torch.Generator().manual_seed(3)
    # (N, V, logit scale): ordinary, one row, a large vocabulary, and logits in the
    # thousands, where exp() overflows unless the max is subtracted first.
    cases = [(8, 10, 1.0), (1, 5, 1.0), (4, 300, 2.0), (6, 7, 1000.0), (3, 2, 0.0)]
    for N, V, scale in cases:
        logits = _randn(gen, N, V, scale=scale)
        targets = torch.randint(0, V, (N,), generator=gen)
        targets[0] = V - 1
        got = fn(logits.clone(), targets.clone())
        expected = reference(logits, targets)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        elif isinstance(got, torch.Tensor):
            raise CheckFailure(
                "the loss is", got=describe(got), expected="a scalar", hint="average the per-row losses with .mean()"
            )
        ls = logits.double()
        nll = torch.logsumexp(ls, -1) - ls.gather(-1, targets[:, None]).squeeze(-1)
        # Losses are O(1)..O(1000); the log-sum-exp in fp32 carries relative error ~1e-6.
        expect_close(
            got,
            expected,
            atol=1e-5,
            rtol=1e-5,
            what=f"loss for logits of shape {(N, V)}",
            hint="loss = mean over rows of logsumexp(logits) - logits[target]",
            diagnose={
                "average over the rows (mean), not the sum": nll.sum(),
                "the loss is the NEGATIVE log-likelihood": -nll.mean(),
                "pick each row's logit at its target: logits[arange(N), targets]": (
                    torch.logsumexp(ls, -1) - ls[targets.clamp(max=N - 1), torch.arange(N)]
                ).mean()
                if V >= N
                else torch.tensor(float("nan")),
            },
        )
        if scale == 1000.0 and isinstance(got, torch.Tensor) and not torch.isfinite(got):
            raise CheckFailure("loss for large logits is not finite", hint="subtract the row max before exp()")


# --------------------------------------------------------------------------- AdamW


def _adamw_variant(p, g, m, v, step, lr, betas, eps, wd, *, decay="before", l2=False, bias_correction=True, eps_inside=False):
    """The AdamW step with one mistake switched on (used only to name the mistake), in float64."""
    b1, b2 = betas
    p, g, m, v = (t.double() for t in (p, g, m, v))
    if l2:
        g = g + wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mh = m / (1 - b1**step) if bias_correction else m
    vh = v / (1 - b2**step) if bias_correction else v
    update = mh / (torch.sqrt(vh + eps) if eps_inside else torch.sqrt(vh) + eps)
    if l2:
        p = p - lr * update
    elif decay == "before":  # torch's order: p -= lr·wd·p, then the Adam step
        p = p * (1 - lr * wd) - lr * update
    else:  # decay applied to the parameter the Adam step already moved
        p = (p - lr * update) * (1 - lr * wd)
    return p, m, v


@register(
    "01.adamw_step",
    points=3,
    references=(
        "minillm.train.adamw_update",
        "minillm.train.AdamW.step",
        "torch.optim.adamw.adamw",
        "torch.optim.adam.adam",
        "torch.optim.adam._single_tensor_adam",
        "torch.optim.adam._multi_tensor_adam",
    ),
)
def check_adamw_step(fn) -> None:
    """adamw_step(param, grad, m, v, step, lr, betas, eps, weight_decay) -> (param, m, v)."""
    # minillm's adamw_update is tested against torch.optim.AdamW in tests/test_train.py;
    # it is used here because it is pure and cheap (torch.optim's first step imports a lot).
    from minillm.train import adamw_update as reference

    gen = torch.Generator().manual_seed(4)
    # (shape, lr, betas, eps, weight decay, steps): torch's defaults; a large lr and
    # decay that make the decay visible; a large eps with small gradients, where
    # sqrt(v̂) + eps and sqrt(v̂ + eps) differ. Decaying before or after the Adam step
    # differs by lr²·wd·|update| ≈ lr²·wd: 1e-8 at torch's defaults, below any fp32
    # tolerance, so the last case takes lr·wd = 0.1 (lr = 0.5, wd = 0.2): 5e-2, far
    # above the 1e-6 tolerance. The exercise asks for torch's order.
    cases = [
        ((5,), 1e-3, (0.9, 0.999), 1e-8, 0.01, 4),
        ((3, 4), 0.1, (0.8, 0.99), 1e-8, 0.1, 5),
        ((6,), 0.05, (0.9, 0.999), 1e-3, 0.0, 3),
        ((4,), 0.5, (0.9, 0.999), 1e-8, 0.2, 3),
    ]
    for shape, lr, betas, eps, wd, n_steps in cases:
        p, m, v = _randn(gen, *shape), torch.zeros(shape), torch.zeros(shape)
        for step in range(1, n_steps + 1):
            g = _randn(gen, *shape, scale=1e-2 if eps > 1e-6 else 1.0)
            args = (p, g, m, v, step, lr, betas, eps, wd)
            exp_p, exp_m, exp_v = reference(*args)
            mistakes = {
                "the update divides by sqrt(v̂) + eps, with eps outside the root": _adamw_variant(*args, eps_inside=True),
                "AdamW decays the weights directly (p -= lr·wd·p), not through the gradient (that is Adam + L2)": _adamw_variant(*args, l2=True),
                "correct the bias: m̂ = m / (1 - β1^t) and v̂ = v / (1 - β2^t), with t counting from 1": _adamw_variant(*args, bias_correction=False),
                "decay first, as torch does: p -= lr·wd·p on the old p, then the Adam step "
                "(you decayed the parameter the Adam step had already moved)": _adamw_variant(*args, decay="after"),
            }
            out = fn(p.clone(), g.clone(), m.clone(), v.clone(), step, lr, betas, eps, wd)
            if not isinstance(out, (tuple, list)) or len(out) != 3:
                raise CheckFailure("adamw_step returned", got=describe(out), expected="a tuple (param, m, v)")
            new_p, new_m, new_v = out
            where = f" after step {step} (lr={lr}, weight_decay={wd}, eps={eps})"
            # Moments are O(1) averages of O(1) gradients: fp32 rounding only.
            expect_close(
                new_m,
                exp_m,
                atol=1e-6,
                rtol=1e-5,
                what="m" + where,
                hint="m = β1·m + (1 - β1)·grad",
                diagnose={h: w[1] for h, w in mistakes.items()},
            )
            expect_close(new_v, exp_v, atol=1e-6, rtol=1e-5, what="v" + where, hint="v = β2·v + (1 - β2)·grad²")
            # Parameters are O(1); the update is a ratio of fp32 values, so 1e-6 absolute
            # and 1e-5 relative is fp32 rounding. The paper's Algorithm 2 allows either
            # decay order; the exercise asks for torch's (decay first), so that the result
            # matches torch.optim.AdamW, and the last case tells the two apart.
            expect_close(
                new_p,
                exp_p,
                atol=1e-6,
                rtol=1e-5,
                what="param" + where,
                hint="p -= lr·wd·p; p -= lr·m̂ / (sqrt(v̂) + eps)",
                diagnose={h: w[0] for h, w in mistakes.items()},
            )
            # Continue from the reference state, so one step's error does not compound.
            p, m, v = exp_p, exp_m, exp_v


# --------------------------------------------------------------------------- parameter count


def _param_count_variants(V: int, T: int, L: int, C: int) -> dict[str, int]:
    """Counts that typical mistakes give (used only to name the mistake)."""
    ln = 2 * C
    block = ln + (3 * C * C + 3 * C) + (C * C + C) + ln + (4 * C * C + 4 * C) + (4 * C * C + C)
    right = V * C + T * C + L * block + ln
    return {
        "count the biases of every Linear (c_attn, c_proj, c_fc) too": right - L * (3 * C + C + 4 * C + C),
        "each block has two LayerNorms (weight and bias each), and there is a final ln_f": right - L * 2 * ln - ln,
        "the output layer shares its weight with the token embedding (tied): count it once": right + V * C,
        "the MLP widens to 4·C: c_fc is C×4C, c_proj is 4C×C": right - L * (6 * C * C + 3 * C),
        "include the position embedding wpe (block_size × n_embd)": right - T * C,
    }


@register("01.count_params", points=2, references=("minillm.model.GPT.num_params",))
def check_count_params(fn) -> None:
    """count_params(vocab_size, block_size, n_layer, n_embd) -> parameters of GPT (bias=True, tied)."""
    from minillm.model import GPT, GPTConfig

    # Small configurations (each GPT is built to count its parameters), including
    # a one-layer model, a large vocabulary and a long block; then two drawn ones.
    rng = case_rng(338)
    configs = [(65, 16, 2, 32), (512, 64, 4, 64), (10, 8, 1, 8), (100, 256, 3, 48)]
    configs += [(rng.randint(2, 1000), rng.randint(1, 300), rng.randint(1, 4), 4 * rng.randint(1, 24)) for _ in range(2)]
    for V, T, L, C in configs:
        model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=4 if C % 4 == 0 else 1, n_embd=C))
        expected = model.num_params(non_embedding=False)
        got = fn(V, T, L, C)
        if hasattr(got, "item") and not isinstance(got, (int, float)) and getattr(got, "ndim", 0) == 0:
            got = got.item()  # a 0-d numpy or torch integer is fine
        if isinstance(got, bool) or not isinstance(got, int):
            raise CheckFailure("count_params returned", got=describe(got), expected="an int")
        if got != expected:
            hint = next(
                (h for h, n in _param_count_variants(V, T, L, C).items() if n == got),
                "add up wte, wpe, per block (ln_1, c_attn, c_proj, ln_2, c_fc, c_proj) and ln_f",
            )
            raise CheckFailure(
                f"count for vocab_size={V}, block_size={T}, n_layer={L}, n_embd={C} is",
                got=f"{got:,}",
                expected=f"{expected:,}",
                hint=hint,
            )


# --------------------------------------------------------------------------- stretch: decoding cost


def _measured_positions(prompt_len: int, n_new: int, use_cache: bool) -> int:
    """Token positions that reach ``lm_head`` while a tiny GPT generates, counted with a hook."""
    from minillm.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, block_size=64, n_layer=1, n_head=1, n_embd=8)).eval()
    seen = []
    hook = model.lm_head.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[-2]))
    try:
        model.generate(torch.zeros(1, prompt_len, dtype=torch.long), n_new, temperature=0, use_cache=use_cache)
    finally:
        hook.remove()
    return sum(seen)


def _decode_variants(p: int, n: int) -> dict[str, tuple[int, int]]:
    """(no cache, cache) counts that typical mistakes give (used only to name the mistake)."""
    right = (n * p + n * (n - 1) // 2, p + n - 1 if n else 0)
    return {
        "the last step runs p + n - 1 positions, not p + n: the newest token is sampled, never fed back": (
            n * p + n * (n + 1) // 2, right[1]),
        "with a cache the first step still runs the whole prompt (it fills the cache): p + (n - 1)": (right[0], n),
        "with a cache the steps feed p positions, then 1 per step: n steps, so p + (n - 1)": (right[0], p + n),
        "without a cache, step i re-runs the prompt and the i tokens generated so far: sum over i of (p + i)": (
            n * (p + n), right[1]),
    }


@register("01.decode_positions", points=2, references=("minillm.model.GPT.generate",))
def check_decode_positions(fn) -> None:
    """decode_positions(prompt_len, n_new) -> (positions without a cache, positions with one)."""
    # Counted, not computed: a forward pre-hook on a tiny GPT's lm_head records how many
    # positions each step feeds through the weights. Cases stay within block_size = 64,
    # where the window never slides; n_new = 0 and 1 are the edge cases.
    rng = case_rng(397)
    drawn = [(rng.randint(1, 30), rng.randint(0, 30)) for _ in range(2)]
    for p, n in [(5, 10), (1, 1), (12, 0), (3, 40), (20, 2), *drawn]:
        expected = (_measured_positions(p, n, False), _measured_positions(p, n, True))
        got = fn(p, n)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailure("decode_positions returned", got=describe(got), expected="a pair (without cache, with cache)")
        try:
            got = tuple(int(g) for g in got)
        except (TypeError, ValueError):
            raise CheckFailure("decode_positions returned", got=describe(got), expected="two whole numbers") from None
        if got != expected:
            hint = next(
                (h for h, w in _decode_variants(p, n).items() if w == got and w != expected),
                "step i feeds the model idx[:, -block_size:] without a cache (p + i positions), "
                "or only the newest token with one (after a first step over the prompt)",
            )
            raise CheckFailure(
                f"positions for prompt_len={p}, n_new={n} (without, with a cache) are",
                got=str(got),
                expected=str(expected),
                hint=hint,
            )
