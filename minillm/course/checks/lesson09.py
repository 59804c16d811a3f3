"""Checks of lesson 09, "LLM cost models".

Every task is a formula from a paper, so every check compares the learner's number with
minillm's implementation (the :mod:`minillm.hardware` cost modules, itself tested against the
papers' published figures) on published model shapes plus seeded random ones and edge
cases. A wrong answer that matches a typical mistake (the query heads instead of the
key/value heads, 2N instead of 6N, seconds instead of days, ...) is named in the hint.

Tolerances: the references are a handful of float64 products and quotients, so a
correct answer agrees to about 1e-15 relative; we accept 1e-9 relative (any order of
operations, ints or floats), far below the smallest mistake we diagnose (a few percent).
Integers (a batch size) must match exactly.
"""

from __future__ import annotations

import math

from minillm.course.checks import CheckFailure, case_rng, describe, register

#: Relative tolerance for every float comparison in this lesson (see the module docstring).
RTOL = 1e-9


def _as_number(got, what: str, hint: str | None = None) -> float:
    """``got`` as a float, or a CheckFailure saying what came back instead."""
    if hasattr(got, "item") and getattr(got, "ndim", 0) == 0 and not isinstance(got, (int, float)):
        got = got.item()  # a 0-d numpy or torch number is fine
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise CheckFailure(f"{what} is", got=describe(got), expected="a number", hint=hint)
    if not math.isfinite(got):
        raise CheckFailure(f"{what} is", got=got, expected="a finite number", hint=hint)
    return float(got)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=0.0)


def expect_number(got, expected: float, *, what: str, hint: str, diagnose: dict[str, float] | None = None) -> None:
    """Fail unless number ``got`` equals ``expected`` to RTOL; name the mistake ``got`` matches, if any."""
    value = _as_number(got, what, hint)
    if _close(value, expected):
        return
    for mistake, wrong in (diagnose or {}).items():
        if _close(value, wrong) and not _close(wrong, expected):
            hint = mistake
            break
    raise CheckFailure(f"{what} is", got=f"{value:.6g}", expected=f"{expected:.6g}", hint=hint)


def _shapes():
    """Published shapes (MHA, GQA, MQA with head_dim != d_model/heads), the teacher, and seeded random ones."""
    from minillm.hardware.shapes import ModelShape, from_config, get_model
    from minillm.presets import TEACHER

    shapes = [get_model(n) for n in ("llama2-70b", "llama2-7b", "palm-540b", "llama3-8b")]
    shapes.append(from_config(TEACHER))
    rng = case_rng(9)
    for _ in range(3):
        kv = rng.choice([1, 2, 4])
        heads = kv * rng.choice([1, 2, 4])
        hd = rng.choice([16, 32, 48])
        shapes.append(
            ModelShape(
                n_layer=rng.randint(1, 12),
                d_model=rng.choice([64, 96, 128]),
                n_head=heads,
                n_kv_head=kv,
                head_dim=hd,
                vocab_size=rng.randint(100, 1000),
                d_ff=rng.choice([128, 256, 344]),
                gated_mlp=rng.random() < 0.5,
                tied_embeddings=rng.random() < 0.5,
                name=f"random-{kv}kv",
            )
        )
    return shapes


# --------------------------------------------------------------------------- KV-cache bytes


@register("09.kv_cache_bytes", points=2, references=("minillm.hardware.inference.kv_cache_bytes",))
def check_kv_cache_bytes(fn) -> None:
    """kv_cache_bytes(shape, seq_len, batch=1, bytes_per_elem=2) -> bytes of the K and V cache."""
    from minillm.hardware.inference import kv_cache_bytes as reference

    # (seq_len, batch, bytes per element): a first case with 4 bytes, so that forgetting
    # the bytes and forgetting the factor 2 give different numbers; then one token, long
    # contexts, int8/fp8 (1 byte), an empty cache.
    cases = [(17, 5, 4), (1, 1, 2), (4096, 1, 2), (2048, 8, 2), (1000, 3, 1), (0, 4, 2)]
    for shape in _shapes():
        for T, B, e in cases:
            L, H, K, Q, D = shape.n_layer, shape.n_head, shape.n_kv_head, shape.head_dim, shape.d_model
            expected = reference(shape, T, B, e)
            what = f"KV cache of {shape.name} (L={L}, H={H}, K={K} kv heads, Q={Q}) for seq_len={T}, batch={B}, {e} bytes/elem"
            expect_number(
                fn(shape, T, B, e),
                expected,
                what=what,
                hint="2 (K and V) x n_layer x n_kv_head x head_dim x seq_len x batch x bytes_per_elem",
                diagnose={
                    "cache one key and one value per *key/value* head: use shape.n_kv_head, not n_head (GQA)": 2 * L * H * Q * T * B * e,
                    "count both the keys and the values: the factor 2": L * K * Q * T * B * e,
                    "a head is shape.head_dim wide, not d_model / n_head (PaLM's heads are 256 wide)": 2 * L * K * (D // H) * T * B * e,
                    "each key/value head is head_dim wide: use n_kv_head x head_dim, not d_model": 2 * L * D * T * B * e,
                    "multiply by bytes_per_elem: the answer is in bytes": 2 * L * K * Q * T * B,
                    "multiply by the batch: every sequence has its own cache": 2 * L * K * Q * T * e,
                    "every layer keeps its own cache: multiply by n_layer": 2 * K * Q * T * B * e,
                },
            )
    # Defaults: batch=1 and 2 bytes per element (bf16).
    shape = _shapes()[0]
    expect_number(
        fn(shape, 1),
        reference(shape, 1),
        what="kv_cache_bytes(llama2-70b, 1) with the default batch and bytes_per_elem",
        hint="the defaults are batch=1 and bytes_per_elem=2 (bf16); Llama-2-70B caches 327,680 bytes per token",
    )


# --------------------------------------------------------------------------- MFU


@register("09.mfu", points=2, references=("minillm.hardware.training.mfu",))
def check_mfu(fn) -> None:
    """mfu(tokens_per_s, n_params, n_layer, n_head, head_dim, seq_len, peak_flops_total) -> a fraction."""
    from minillm.hardware.shapes import param_count
    from minillm.hardware.training import mfu as reference

    # PaLM 540B and MT-NLG 530B (PaLM, Table 3), a small model whose attention term is a
    # quarter of its FLOPs, and seeded random runs with long sequences.
    cases = [
        (238.3e3, float(param_count("palm-540b")), 118, 48, 256, 2048, 6144 * 275e12),
        (65.4e3, 530e9, 105, 128, 160, 2048, 2240 * 312e12),
        (2.0e4, 1.2e6, 6, 4, 32, 256, 1.0e12),
    ]
    rng = case_rng(99)
    for _ in range(4):
        cases.append(
            (
                rng.uniform(1e3, 1e6),
                rng.uniform(1e8, 1e11),
                rng.randint(4, 96),
                rng.choice([8, 16, 32, 64]),
                rng.choice([64, 128]),
                rng.choice([2048, 8192, 32768]),
                rng.uniform(1e15, 1e18),
            )
        )
    for tps, N, L, H, Q, T, peak in cases:
        expected = reference(tps, N, L, H, Q, T, peak)
        attn = 12.0 * L * H * Q * T
        expect_number(
            fn(tps, N, L, H, Q, T, peak),
            expected,
            what=f"MFU at {tps:.4g} tokens/s, N={N:.4g}, L={L}, H={H}, Q={Q}, T={T}, peak {peak:.4g} FLOP/s",
            hint="(6N + 12·L·H·Q·T) x tokens_per_s / peak_flops_total, as a fraction",
            diagnose={
                "include the attention term 12·L·H·Q·T (PaLM, Appendix B): it has no parameters but costs FLOPs": 6 * N * tps / peak,
                "training costs 6N per token (forward 2N + backward 4N), not 2N": (2 * N + attn) * tps / peak,
                "the attention term is 12·L·H·Q·T (6 for the forward and backward of Q·Kᵀ and of A·V)": (6 * N + attn / 2) * tps / peak,
                "return a fraction (0.462), not a percentage (46.2)": 100 * expected,
                "the denominator is the peak: MFU = achieved model FLOP/s / peak FLOP/s": peak / ((6 * N + attn) * tps),
            },
        )


# --------------------------------------------------------------------------- training days


@register(
    "09.training_days",
    points=2,
    references=(
        "minillm.hardware.training.training_time",
        "minillm.hardware.training.megatron_training_time",
        "minillm.hardware.training.training_cost",
    ),
)
def check_training_days(fn) -> None:
    """training_days(n_params, n_tokens, n_devices, flops_per_device, recompute=False) -> days."""
    from minillm.hardware.training import SECONDS_PER_DAY, megatron_training_time, training_time

    # Megatron's GPT-3 (about 34 days with recompute), the scaling book's Llama 3 70B on a
    # v5p pod (about 44 days), one device, and seeded random runs.
    cases = [(175e9, 300e9, 1024, 140e12, True), (70e9, 15e12, 8960, 0.4 * 459e12, False), (1.3e6, 3.1e6, 1, 2e11, False)]
    rng = case_rng(909)
    for _ in range(4):
        cases.append((rng.uniform(1e8, 1e12), rng.uniform(1e9, 1e13), rng.choice([1, 8, 64, 2048]), rng.uniform(1e13, 5e14), rng.random() < 0.5))
    for N, D, n, X, recompute in cases:
        six = training_time(N, D, n, X) / SECONDS_PER_DAY
        eight = megatron_training_time(N, D, n, X) / SECONDS_PER_DAY
        expected = eight if recompute else six
        expect_number(
            fn(N, D, n, X, recompute),
            expected,
            what=f"days for N={N:.4g}, D={D:.4g} tokens on {n} devices at {X:.4g} FLOP/s each, recompute={recompute}",
            hint="6·N·D FLOPs (8·N·D with recompute) / (n_devices x flops_per_device), then seconds -> days",
            diagnose={
                "return days: divide the seconds by 86,400": expected * SECONDS_PER_DAY,
                "return days, not hours: divide the seconds by 86,400": expected * 24,
                "full activation recompute runs the forward twice: 8·N·D FLOPs (Narayanan et al. 2021)": six,
                "without recompute training costs 6·N·D FLOPs": eight,
                "divide by all the devices: n_devices x flops_per_device": expected * n,
                "training costs 6·N·D FLOPs (forward and backward), not 2·N·D": expected / (4 if recompute else 3),
            },
        )
    # The default is no recompute.
    N, D, n, X, _ = cases[1]
    expect_number(
        fn(N, D, n, X),
        training_time(N, D, n, X) / SECONDS_PER_DAY,
        what="days with the default recompute=False",
        hint="recompute defaults to False: 6·N·D",
    )


# --------------------------------------------------------------------------- decode step


@register(
    "09.decode_time",
    points=3,
    references=(
        "minillm.hardware.inference.decode_step_time",
        "minillm.hardware.inference.prefill_time",
        "minillm.hardware.inference._step",
    ),
)
def check_decode_time(fn) -> None:
    """decode_time(shape, device, context, batch=1) -> (seconds, "compute" | "memory") in bf16 on one device."""
    from minillm.hardware import get_device
    from minillm.hardware.inference import decode_step_time, kv_cache_bytes
    from minillm.hardware.shapes import matmul_params, param_count

    # Memory-bound (batch 1, long contexts) and compute-bound points (large batches with
    # an empty or short cache, PaLM's multi-query model), on three devices.
    points = [
        ("llama2-7b", "h100", 1024, 1),
        ("llama2-7b", "h100", 0, 512),
        ("llama2-70b", "a100", 1024, 1024),
        ("llama2-70b", "h200", 4096, 16),
        ("palm-540b", "h100", 4096, 512),
        ("palm-540b", "tpu-v5p", 2048, 2),
    ]
    shapes = {s.name: s for s in _shapes()}
    rng = case_rng(90)
    for name in [n for n in shapes if n.startswith("random") or n == "minillm GPT"]:
        points.append((name, rng.choice(["h100", "a100", "b200"]), rng.randint(0, 4096), rng.choice([1, 8, 300, 4000])))
    seen = set()
    for name, dev, ctx, b in points:
        shape, device = shapes[name], get_device(dev)
        ref = decode_step_time(shape, device, ctx, batch=b, dtype="bf16")
        out = fn(shape, device, ctx, b)
        what = f"decode step of {shape.name} on {device.name}, context={ctx}, batch={b}"
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise CheckFailure(f"{what}: returned", got=describe(out), expected='a tuple (seconds, "compute" or "memory")')
        seconds, bound = out
        peak, bw = device.peak("bf16"), device.mem_bw
        N, P = matmul_params(shape), param_count(shape)
        kv = kv_cache_bytes(shape, ctx, b)
        attn = 4.0 * shape.n_layer * shape.n_head * shape.head_dim * ctx
        F = b * (2 * N + attn)
        expect_number(
            seconds,
            ref.seconds,
            what=f"{what}: seconds",
            hint="max(FLOPs / peak, bytes / bandwidth) with FLOPs = batch·(2N + 4·L·H·Q·context) and "
            "bytes = 2N (bf16 weights, read once) + the KV cache of the whole batch; N = matmul_params(shape)",
            diagnose={
                "compute and memory overlap: the step takes the max of the two times, not their sum": F / peak + (2 * N + kv) / bw,
                "the weights are read once per step and shared by the whole batch: 2N bytes, not batch x 2N": max(F / peak, (b * 2 * N + kv) / bw),
                "every step also reads each sequence's KV cache: add kv_cache_bytes(shape, context, batch)": max(F / peak, 2 * N / bw),
                "each new token attends to the cache: add 4·L·H·Q·context FLOPs per sequence": max(b * 2 * N / peak, (2 * N + kv) / bw),
                "use matmul_params(shape): the input embedding is a lookup, no FLOPs and only a few rows read": max(b * (2 * P + attn) / peak, (2 * P + kv) / bw),
                "bf16 weights take 2 bytes each, not 4": max(F / peak, (4 * N + kv) / bw),
                "a forward pass costs 2N FLOPs per token (a multiply and an add per weight)": max(b * (N + attn) / peak, (2 * N + kv) / bw),
            },
        )
        if bound != ref.bound:
            raise CheckFailure(
                f"{what}: the bound is",
                got=repr(bound),
                expected=repr(ref.bound),
                hint='"compute" when FLOPs / peak >= bytes / bandwidth, else "memory"',
            )
        seen.add(ref.bound)
    assert seen == {"compute", "memory"}, "the cases must cover both bounds"
    # The default batch is 1.
    shape = shapes["llama2-7b"]
    expect_number(fn(shape, get_device("h100"), 512)[0], decode_step_time(shape, "h100", 512).seconds,
            what="decode_time(llama2-7b, h100, 512) with the default batch", hint="batch defaults to 1")


# --------------------------------------------------------------------------- largest batch


@register(
    "09.max_batch",
    points=3,
    references=("minillm.hardware.memory.memory_plan", "minillm.hardware.memory.min_devices"),
)
def check_max_batch(fn) -> None:
    """max_batch(shape, device, context, n_devices=1) -> the largest batch whose bf16 job fits (an int)."""
    from minillm.hardware import get_device
    from minillm.hardware.inference import kv_cache_bytes
    from minillm.hardware.memory import inference_activation_bytes, memory_plan
    from minillm.hardware.shapes import matmul_params, param_count

    shapes = {s.name: s for s in _shapes()}
    # Ordinary cases, a model that does not fit one device (0) and fits two, long contexts
    # where the cache dominates, the small teacher (a huge batch), a TPU with GiB memory.
    points = [
        ("llama2-7b", "a100", 4096, 1),
        ("llama2-7b", "a100", 128, 1),
        ("llama2-70b", "h100", 4096, 1),
        ("llama2-70b", "h100", 4096, 2),
        ("llama2-70b", "h200", 32768, 4),
        ("llama3-8b", "tpu-v5e", 8192, 1),
        ("palm-540b", "h100", 2048, 16),
        ("minillm GPT", "a100", 256, 1),
        ("llama3-8b", "tpu-v4", 2048, 3),
    ]
    rng = case_rng(301)  # drawn cases: any shape (the random ones included) on a random device, context and count
    points += [(rng.choice(sorted(shapes)), rng.choice(["a100", "h100", "h200", "tpu-v5e", "tpu-v4"]),
                rng.choice([128, 512, 1024, 2048, 4096, 8192, 32768]), rng.randint(1, 8)) for _ in range(3)]
    results = []
    for name, dev, ctx, n in points:
        shape, device = shapes[name], get_device(dev)
        expected = memory_plan(shape, device, 1, ctx, dtype="bf16", n_devices=n).max_batch
        got = fn(shape, device, ctx, n)
        if hasattr(got, "item") and getattr(got, "ndim", 0) == 0 and not isinstance(got, (int, float)):
            got = got.item()
        what = f"largest batch of {shape.name} on {n} x {device.name} at context {ctx}"
        if isinstance(got, bool) or not isinstance(got, int):
            raise CheckFailure(f"{what} is", got=describe(got), expected="an int", hint="a batch is a whole number: use math.floor")
        results.append(expected)
        if got == expected:
            continue
        cap = n * device.mem_bytes
        W = 2.0 * param_count(shape)
        kv = kv_cache_bytes(shape, ctx)
        act = inference_activation_bytes(shape, 1, ctx)

        def fit(capacity, weights, per_seq):
            return max(0, math.floor((capacity - weights) / per_seq))

        mistakes = {
            "leave room for the activations of each sequence: inference_activation_bytes(shape, 1, context)": fit(cap, W, kv),
            "the memory of all n_devices pools together: capacity = n_devices x device.mem_bytes": fit(device.mem_bytes, W, kv + act),
            "weights in memory include the input embedding: use param_count(shape), not matmul_params": fit(cap, 2.0 * matmul_params(shape), kv + act),
            "round down: a batch that needs a little more memory than there is does not fit": max(0, round((cap - W) / (kv + act))),
            "if the weights alone do not fit, no batch fits: return 0, not a negative number": math.floor((cap - W) / (kv + act)),
            "a bf16 weight takes 2 bytes": fit(cap, 4.0 * param_count(shape), kv + act),
            "the KV cache keeps n_kv_head heads per layer, not n_head": fit(cap, W, kv * shape.n_head / shape.n_kv_head + act),
        }
        hint = next(
            (h for h, v in mistakes.items() if v == got and v != expected),
            "floor((n_devices x mem_bytes - 2 x param_count) / (KV cache + activations of one sequence)), and 0 if negative",
        )
        raise CheckFailure(f"{what} is", got=got, expected=expected, hint=hint)
    assert 0 in results and max(results) > 10_000, "the cases must cover a model that does not fit and a tiny one"


# --------------------------------------------------------------------------- stretch: where the knee disappears


def _low_ridge_device():
    """A made-up chip with a low bf16 ridge (5 FLOP/byte), where a multi-query model's cache is cheap enough."""
    from minillm.hardware import DeviceSpec

    return DeviceSpec("low-ridge chip", "cpu", {"bf16": 1e11}, 64e9, 2e10, None, None)


@register("09.knee_context", points=2, references=("minillm.hardware.inference.decode_knee_context",))
def check_knee_context(fn) -> None:
    """knee_context(shape, device) -> the longest context at which a bf16 decode step still has a knee, or None."""
    from minillm.hardware import get_device
    from minillm.hardware.inference import decode_knee_batch, decode_knee_context
    from minillm.hardware.shapes import matmul_params

    shapes = {s.name: s for s in _shapes()}
    points = [
        ("llama2-70b", get_device("h100")),  # GQA: a knee up to 1,459 tokens of context
        ("llama2-7b", get_device("h100")),  # no GQA: only up to 85
        ("llama3-8b", get_device("a100")),
        ("palm-540b", get_device("tpu-v5p")),  # multi-query: tens of thousands
        ("minillm GPT", get_device("b200")),  # the teacher
        ("palm-540b", _low_ridge_device()),  # H/K = 48 above the ridge of 5: every context has a knee
    ]
    rng = case_rng(92)
    for name in [n for n in shapes if n.startswith("random")]:
        points.append((name, get_device(rng.choice(["h100", "a100", "tpu-v5e"]))))
    for name, device in points:
        shape = shapes[name]
        expected = decode_knee_context(shape, device, dtype="bf16")
        got = fn(shape, device)
        if hasattr(got, "item") and getattr(got, "ndim", 0) == 0:
            got = got.item()
        what = f"knee_context({shape.name}, {device.name})"
        if got is not None and (isinstance(got, bool) or not isinstance(got, int)):
            raise CheckFailure(f"{what} returned", got=describe(got) + (f" ({got!r})" if isinstance(got, float) else ""),
                               expected="an int (a number of tokens) or None",
                               hint="a context is a whole number of tokens: take the largest whole one below the bound")
        if got == expected:
            continue
        L, H, K, Q = shape.n_layer, shape.n_head, shape.n_kv_head, shape.head_dim
        peak, bw, N = device.peak("bf16"), device.mem_bw, matmul_params(shape)
        if expected is None:
            hint = (f"each cached token brings 4·L·H·Q FLOPs and 4·L·K·Q bytes, an intensity of H/K = {H / K:g}, "
                    f"above this chip's ridge of {peak / bw:.3g}: the cache never outweighs the compute, so every "
                    "context has a knee; return None")
        elif got is None:
            hint = (f"here H/K = {H / K:g} is below the ridge {peak / bw:.3g}: each cached token costs more memory time "
                    "than compute time, so long enough contexts have no knee")
        elif got == expected + 1 and decode_knee_batch(shape, device, got, dtype="bf16") is None:
            hint = f"at context {got} no batch is compute-bound any more: return the LAST context that still has a knee"
        elif got == max(0, math.ceil(2 * N / peak / (4 * L * K * Q / bw)) - 1):
            hint = "the cached tokens cost FLOPs too (4·L·H·Q per token, attention over the cache): keep them on the compute side"
        elif got == max(0, math.ceil(2 * N / peak / (4 * L * H * Q / bw - 4 * L * H * Q / peak)) - 1):
            hint = "the cache stores only the K key/value heads: its bytes are 2·L·K·Q·2 per token, not 2·L·H·Q·2"
        elif got == max(0, math.ceil(2 * N / peak / (2 * L * K * Q / bw - 4 * L * H * Q / peak)) - 1):
            hint = "a bf16 cache element takes 2 bytes: 2·L·K·Q·2 bytes per cached token"
        else:
            hint = ("a knee exists while one sequence adds more compute time than memory time, F/peak > C/bw; write F and "
                    "C as functions of the context and solve for it")
        raise CheckFailure(f"{what} is", got=repr(got), expected=repr(expected), hint=hint)
