"""Checks of lesson 04, "Quantization".

Every check runs the learner's function on several seeded random cases and edge
cases (all-zero rows, ties at .5, all-positive data, dead channels) and compares
with minillm's reference in :mod:`minillm.compress` (quant_core, int8_linear, ...). Rounding is the only
place where two correct implementations may legitimately differ: ``x / scale`` and
``x * (1 / scale)`` can disagree in the last bit, which flips a value sitting
within one float32 ulp of a .5 tie. The checks therefore accept either rounding
per element (quantize), or use inputs kept 0.2 steps away from every tie
(int8 linear), so that every correct implementation yields the same integers.
Tolerances are stated next to each comparison.
"""

from __future__ import annotations

import math

import torch

from minillm.course.checks import CheckFailure, describe, expect_close, expect_tensor, register

EPS = torch.finfo(torch.float32).eps


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _as_float(v, what: str) -> float:
    """A Python float from a float, an int or a one-element tensor; else a CheckFailure."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise CheckFailure(f"{what} is", got=describe(v), expected="a single number (per-tensor quantization)")
        return float(v.reshape(()))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise CheckFailure(f"{what} is", got=describe(v), expected="a number or a one-element tensor")


def _integer_tensor(q, shape, what: str = "q") -> torch.Tensor:
    if not isinstance(q, torch.Tensor):
        raise CheckFailure(f"{what} is", got=describe(q), expected="a torch.Tensor of integers")
    if tuple(q.shape) != tuple(shape):
        raise CheckFailure(f"{what} shape", got=tuple(q.shape), expected=tuple(shape), hint="one integer per element of x")
    if q.is_floating_point() or q.dtype == torch.bool:
        raise CheckFailure(
            f"{what} has dtype", got=str(q.dtype).replace("torch.", ""), expected="an integer dtype",
            hint="convert at the end: .to(torch.int8) for symmetric, .to(torch.uint8) for affine",
        )
    return q


# --------------------------------------------------------------------------- 04.quantize_tensor


def _codes(x: torch.Tensor, scale: float, zp: int, qmin: int, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The integers under both legitimate float32 roundings: x * (1/scale) and x / scale."""
    s = torch.tensor(scale, dtype=torch.float32)
    a = torch.clamp(torch.round(x * (1.0 / s)) + zp, qmin, qmax)
    b = torch.clamp(torch.round(x / s) + zp, qmin, qmax)
    return a, b


@register(
    "04.quantize_tensor",
    points=3,
    references=(
        "minillm.compress.quant_core.quantize",
        "minillm.compress.quant_core.quantize_with",
        "minillm.compress.quant_core.round_clamp",
        "minillm.compress.quant_core.quant_error",
        "torch.quantize_per_tensor",
        "torch.fake_quantize_per_tensor_affine",
    ),
)
def check_quantize_tensor(fn) -> None:
    """quantize_tensor(x, bits, scheme) -> (q, scale, zero_point), one scale for the whole tensor."""
    from minillm.compress.quant_core import quantize as reference

    g = _gen(40)
    general = "symmetric: scale = absmax / (2^(b-1) - 1), zero point 0; affine: the range [min', max'] must contain 0"
    cases = [
        (torch.randn(6, 10, generator=g), 8, "symmetric", general),
        (torch.randn(50, generator=g) * 3.0 + 1.0, 4, "symmetric", general),
        (torch.randn(4, 8, generator=g), 2, "symmetric", "at 2 bits the symmetric grid is {-1, 0, 1}: qmax = 2^(b-1) - 1 = 1"),
        (torch.randn(5, 7, generator=g) * 2.0 + 0.5, 8, "affine", general),
        (torch.randn(40, generator=g), 4, "affine", general),
        (torch.rand(3, 9, generator=g) + 2.0, 8, "affine",
         "all values > 0: the range must still contain 0 (min' = min(min(x), 0)), so the zero point is 0"),
        (-torch.rand(12, generator=g) - 1.0, 4, "affine",
         "all values < 0: max' = max(max(x), 0) = 0, so the zero point is 2^b - 1"),
        (torch.tensor([127.0, 0.5, 1.5, 2.5, -0.5, -2.5, 3.5, -127.0]), 8, "symmetric",
         "scale is exactly 1 here, so x/scale lands on .5 ties: torch.round rounds half to even (2.5 -> 2)"),
        (torch.tensor([-1.5, 0.25, 1.5]), 2, "affine",
         "clamp the codes to [0, 2^b - 1]: the rounded zero point can push the largest value one past the top"),
        (torch.tensor([-1.5, 253.5, 7.0, 100.25]), 8, "affine",
         "clamp the codes to [0, 2^b - 1]: the rounded zero point can push the largest value one past the top"),
        (torch.zeros(2, 3), 8, "symmetric",
         "an all-zero tensor has absmax 0: clamp the scale at torch.finfo(torch.float32).eps instead of dividing by 0"),
        (torch.zeros(4), 8, "affine", "an all-zero tensor: clamp the scale at torch.finfo(torch.float32).eps"),
    ]
    for x, bits, scheme, case_hint in cases:
        ref = reference(x, bits=bits, scheme=scheme)
        ref_scale, ref_zp = float(ref.scale), int(ref.zero_point)
        qmin = -(2 ** (bits - 1) - 1) if scheme == "symmetric" else 0
        qmax = 2 ** (bits - 1) - 1 if scheme == "symmetric" else 2**bits - 1
        where = f" for bits={bits}, scheme={scheme!r}, x of shape {tuple(x.shape)}"
        out = fn(x.clone(), bits, scheme)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise CheckFailure("quantize_tensor returned", got=describe(out), expected="a tuple (q, scale, zero_point)")
        q, scale, zp = out
        scale = _as_float(scale, "scale" + where)
        zp_f = _as_float(zp, "zero_point" + where)
        if not math.isfinite(scale) or scale <= 0:
            raise CheckFailure("scale" + where + " is", got=scale, expected="a positive finite number", hint=case_hint)
        absmax = float(x.abs().max())
        diagnose = {
            "the course divides absmax by 2^(b-1) - 1 (127 for int8); torch's observers use 127.5": absmax / (2**bits - 1) * 2,
            "divide by 2^(b-1) - 1, the largest code, not by 2^b - 1 levels": absmax / (2**bits - 1),
            "affine scale = (max' - min') / (2^b - 1) with min' = min(min(x), 0), max' = max(max(x), 0)": (
                float(x.max()) - float(x.min())
            ) / (2**bits - 1),
        }
        hint = next((h for h, v in diagnose.items() if v > 0 and math.isclose(scale, v, rel_tol=1e-6)), case_hint)
        # scale: the same formula in float32 or float64 agrees to ~1e-7 relative
        if not math.isclose(scale, ref_scale, rel_tol=1e-6):
            raise CheckFailure("scale" + where + " is", got=f"{scale:.8g}", expected=f"{ref_scale:.8g}", hint=hint)
        if zp_f != ref_zp:
            raise CheckFailure(
                "zero_point" + where + " is", got=zp_f, expected=ref_zp,
                hint="symmetric: 0; affine: round(-min' / scale)" if scheme == "affine" else "symmetric quantization has zero point 0",
            )
        q = _integer_tensor(q, x.shape)
        # q: exact integers; either float32 rounding of x / scale is accepted, with the learner's scale
        a, b = _codes(x, scale, ref_zp, qmin, qmax)
        qd = q.double()
        bad = (qd != a.double()) & (qd != b.double())
        if bool(bad.any()):
            i = int(bad.flatten().nonzero()[0])
            naive = torch.clamp(torch.floor(x / scale + 0.5) + ref_zp, qmin, qmax).flatten()[i]
            h = "torch.round rounds half to even; floor(x/scale + 0.5) rounds halves up" if float(naive) == float(qd.flatten()[i]) else case_hint
            if float(qd.flatten()[i]) > qmax or float(qd.flatten()[i]) < qmin:
                h = f"clamp the codes to [{qmin}, {qmax}]"
            raise CheckFailure(
                f"q{where} at flat index {i} (x = {float(x.flatten()[i]):.6g}) is", got=int(qd.flatten()[i]),
                expected=int(a.flatten()[i]), hint=h,
            )


# --------------------------------------------------------------------------- 04.dequantize


@register(
    "04.dequantize",
    points=1,
    references=(
        "minillm.compress.quant_core.dequantize",
        "minillm.compress.quant_core.QTensor.dequantize",
        "torch.dequantize",
    ),
)
def check_dequantize(fn) -> None:
    """dequantize(q, scale, zero_point) -> (q - zero_point) * scale as float32."""
    g = _gen(41)
    cases = [
        (torch.randint(-127, 128, (5, 6), generator=g, dtype=torch.int8), torch.tensor(0.02), 0, "int8, per tensor"),
        (torch.randint(0, 256, (4, 8), generator=g, dtype=torch.uint8), torch.tensor(0.05), 200, "uint8 with a zero point"),
        (torch.randint(0, 16, (3, 5), generator=g).to(torch.uint8), torch.tensor(1.5), 7, "4-bit affine codes"),
        (torch.randint(-127, 128, (3, 4), generator=g, dtype=torch.int8), torch.tensor([[0.1], [0.2], [0.3]]), 0,
         "per channel: scale [C, 1] broadcasts over each row"),
        (torch.randint(0, 256, (2, 6), generator=g, dtype=torch.uint8), torch.tensor([[0.01], [0.5]]),
         torch.tensor([[128], [3]], dtype=torch.int32), "per channel, with per-channel zero points"),
    ]
    for q, scale, zp, label in cases:
        expected = (q.double() - torch.as_tensor(zp).double()) * scale.double()
        got = fn(q.clone(), scale.clone(), zp.clone() if isinstance(zp, torch.Tensor) else zp)
        wrapped = (q - zp).double() * scale.double() if q.dtype == torch.uint8 else expected
        # float32 result of one subtraction and one product: ~1e-7 relative
        expect_close(
            got, expected, atol=1e-6, rtol=1e-6, what=f"output ({label})",
            hint="x = (q - zero_point) * scale, as float32",
            diagnose={
                "convert q to float (or int32) before subtracting the zero point: uint8 arithmetic wraps around": wrapped,
                "subtract the zero point before scaling: (q - zero_point) * scale": q.double() * scale.double()
                - torch.as_tensor(zp).double(),
            },
        )
        if got.dtype != torch.float32:
            raise CheckFailure("output dtype is", got=str(got.dtype).replace("torch.", ""), expected="float32")


# --------------------------------------------------------------------------- 04.per_channel_scales


@register(
    "04.per_channel_scales",
    points=2,
    references=(
        "minillm.compress.quant_core.quantize",
        "minillm.compress.quant_core.quant_error",
        "minillm.compress.quant_core.per_channel_weight",
        "minillm.compress.qat.fake_quant_weight",
        "torch.ao.quantization.PerChannelMinMaxObserver.forward",
    ),
)
def check_per_channel_scales(fn) -> None:
    """per_channel_scales(w, bits, group_size=None): symmetric scales per output row [out] or per group [out, in/g]."""
    from minillm.compress.quant_core import quantize as reference

    g = _gen(42)
    w1 = torch.randn(6, 64, generator=g) * torch.logspace(-2, 0, 6)[:, None]  # rows of very different ranges
    w2 = torch.randn(5, 5, generator=g)  # square: a scale over the wrong axis has the right shape
    w2[1] = 0.0
    w3 = torch.randn(8, 96, generator=g) * 0.1
    w3[2, 40] = 4.0  # one outlier weight: it should only affect its own row (or group)
    w4 = torch.randn(3, 32, generator=g)
    w4[0] = -torch.rand(32, generator=g) - 0.5  # an all-negative row: absmax, not max
    cases = [
        (w1, 8, None, "one scale per output row: absmax over the input dimension (dim 1) / 127"),
        (w2, 8, None, "a row of zeros: clamp the scale at torch.finfo(torch.float32).eps"),
        (w3, 4, None, "4 bits: divide by 2^(4-1) - 1 = 7"),
        (w4, 8, None, "use the absolute maximum: an all-negative row has max < 0"),
        (w3, 4, 32, "groups are group_size consecutive inputs of one row: w.reshape(out, in // g, g)"),
        (w1, 8, 16, "groups are group_size consecutive inputs of one row: w.reshape(out, in // g, g)"),
        (w2.repeat(1, 4)[:, :16], 3, 8, "a zero row's groups: clamp at eps"),
    ]
    for w, bits, group, case_hint in cases:
        gran = "channel" if group is None else "group"
        expected = reference(w, bits, "symmetric", gran, axis=0, group_size=group).scale
        qmax = 2 ** (bits - 1) - 1
        got = fn(w.clone(), bits, group)
        where = f" for w {tuple(w.shape)}, bits={bits}, group_size={group}"
        out, inp = w.shape
        diagnose = {
            "absmax over each row (dim 1, the inputs), one scale per output channel": w.abs().amax(0).clamp(min=EPS) / qmax
            if group is None
            else torch.zeros(1),
            "use the absolute value: max(|w|), not max(w)": w.amax(1).clamp(min=EPS) / qmax if group is None else torch.zeros(1),
            f"divide by 2^(b-1) - 1 = {qmax}, the largest symmetric code": (w.abs().amax(1) / (2**bits - 1)).clamp(min=EPS)
            if group is None
            else (w.reshape(out, -1, group).abs().amax(-1) / (2**bits - 1)).clamp(min=EPS),
        }
        if group is not None:
            diagnose["a group is group_size CONSECUTIVE inputs: reshape(out, in // g, g), then reduce the last dim"] = (
                w.reshape(out, group, inp // group).abs().amax(1) / qmax
            ).clamp(min=EPS)
        # float32 absmax divided by a small integer: at most one rounding, 1e-6 relative
        expect_close(got, expected, atol=0.0, rtol=1e-6, what="scales" + where, hint=case_hint, diagnose=diagnose)


# --------------------------------------------------------------------------- 04.int8_linear


def _grid_inputs(g: torch.Generator, shape: tuple[int, ...], step_scale: torch.Tensor) -> torch.Tensor:
    """Activations whose per-token int8 codes are unambiguous: integer codes in [-127, 127] with each row's
    absmax exactly 127 steps, plus noise of at most 0.2 of a step, so x / scale never comes near a .5 tie."""
    K = shape[-1]
    rows = int(torch.tensor(shape[:-1]).prod()) if len(shape) > 1 else 1
    codes = torch.randint(-120, 121, (rows, K), generator=g).float()
    pick = torch.randint(0, K, (rows,), generator=g)
    codes[torch.arange(rows), pick] = 127.0 * torch.where(torch.rand(rows, generator=g) < 0.5, -1.0, 1.0)
    noise = (torch.rand(rows, K, generator=g) - 0.5) * 0.4
    noise[torch.arange(rows), pick] = 0.0
    return ((codes + noise) * step_scale.reshape(rows, 1)).reshape(shape)


def _reference_int8_linear(x, q_weight, w_scale, bias):
    from minillm.compress.int8_linear import Int8Linear

    m = Int8Linear(q_weight.shape[1], q_weight.shape[0], bias is not None)
    m.q_weight, m.w_scale = q_weight.clone(), w_scale.clone()
    if bias is not None:
        m.bias = bias.clone()
    with torch.no_grad():
        return m(x)


@register(
    "04.int8_linear",
    points=3,
    references=(
        "minillm.compress.int8_linear.Int8Linear.forward",
        "minillm.compress.int8_linear.vectorwise_int8_matmul",
        "minillm.compress.int8_linear.llm_int8_matmul",
        "minillm.compress.quant_core.quantize_per_token",
        "minillm.compress.quant_core.per_token_int8",
        "minillm.compress.quant_core.per_token_codes",
        "minillm.compress.quant_core.quantize",
        "torch.ao.nn.quantized.dynamic.Linear.forward",
    ),
)
def check_int8_linear(fn) -> None:
    """int8_linear(x, q_weight, w_scale, bias): per-token int8 activations, int32 accumulation, float out."""
    g = _gen(43)
    # (leading shape, K, N, bias?, step-size spread): a 2-D and a 3-D input, wide K (the int8 sums
    # of 127·127 products overflow int8 and int16), no bias, and tokens of very different scales.
    cases = [((8,), 32, 12, True, 1.0), ((2, 5), 64, 24, True, 1.0), ((6,), 512, 16, False, 1.0), ((10,), 48, 20, True, 100.0)]
    for lead, K, N, with_bias, spread in cases:
        q_weight = torch.randint(-127, 128, (N, K), generator=g, dtype=torch.int8)
        w_scale = torch.rand(N, generator=g) * 0.02 + 0.001
        bias = torch.randn(N, generator=g) if with_bias else None
        rows = int(torch.tensor(lead).prod())
        steps = torch.rand(rows, generator=g) * 0.05 * spread + 0.001
        x = _grid_inputs(g, (*lead, K), steps)
        if lead == (8,):
            x[3] = 0.0  # a token of zeros: its scale must not be 0
        expected = _reference_int8_linear(x, q_weight, w_scale, bias)
        got = fn(x.clone(), q_weight.clone(), w_scale.clone(), None if bias is None else bias.clone())
        x2 = x.reshape(-1, K).double()
        w_deq = q_weight.double() * w_scale.double()[:, None]
        b = 0.0 if bias is None else bias.double()
        s_tensor = x2.abs().max() / 127
        q_tensor = torch.round(x2 / s_tensor).clamp(-127, 127)
        wrapped = (torch.round(x2 / (x2.abs().amax(1, keepdim=True) / 127).clamp(min=EPS)).clamp(-127, 127).to(torch.int8)
                   @ q_weight.t()).double()  # torch's int8 @ int8 keeps int8 and wraps
        s_tok = (x2.abs().amax(1, keepdim=True) / 127).clamp(min=EPS)
        diagnose = {
            "multiply in int32 (or int64): torch's int8 @ int8 returns int8 and wraps around": (
                wrapped * s_tok * w_scale.double() + b
            ).reshape(expected.shape),
            "quantize the activations too: round x / s_x to int8 per token (W8A8, not float activations)": (
                x2 @ w_deq.t() + b
            ).reshape(expected.shape),
            "one activation scale per token (row), not one for the whole tensor": (
                (q_tensor * s_tensor) @ w_deq.t() + b
            ).reshape(expected.shape),
            "scale the int32 sums by s_x[m] · s_w[n] (the weight scale is per output channel)": (
                (torch.round(x2 / s_tok).clamp(-127, 127) @ q_weight.double().t()) * s_tok + b
            ).reshape(expected.shape),
        }
        # Exact integer sums in every correct implementation (the inputs sit 0.2 steps from
        # any tie); only the float32 epilogue s_x·s_w·acc + b rounds: ~1e-6 relative to |y|.
        scale = float(expected.abs().max())
        expect_close(
            got,
            expected,
            atol=1e-5 * scale,
            rtol=1e-5,
            what=f"output for x {tuple(x.shape)}, q_weight {tuple(q_weight.shape)}" + ("" if with_bias else ", bias None"),
            hint="s_x = max|x_row| / 127 (clamped at eps); q_x = round(x / s_x); y = (q_x @ q_weightᵀ in int32) · s_x · w_scale + bias",
            diagnose=diagnose,
        )


# --------------------------------------------------------------------------- 04.smoothquant_scales


@register(
    "04.smoothquant_scales",
    points=2,
    references=(
        "minillm.compress.smoothquant.smoothquant_scales",
        "minillm.compress.smoothquant.smooth_model",
    ),
)
def check_smoothquant_scales(fn) -> None:
    """smoothquant_scales(act_absmax [K], weight [N, K], alpha) -> s [K]."""
    from minillm.compress.smoothquant import smoothquant_scales as reference

    g = _gen(44)
    cases = []
    for K, N, alpha in [(16, 24, 0.5), (8, 8, 0.5), (32, 12, 0.75), (10, 6, 0.0), (10, 6, 1.0)]:
        act = torch.rand(K, generator=g) * 3 + 0.1
        act[K // 3] = 80.0  # an outlier channel
        w = torch.randn(N, K, generator=g) * 0.1
        cases.append((act, w, alpha, "s_j = max|X_j|^α / max_i |W_ij|^(1-α), over the output rows i of W [N, K]"))
    act = torch.rand(12, generator=g) + 0.5
    act[4] = 0.0  # a dead channel: never active in the calibration data
    w = torch.randn(9, 12, generator=g)
    w[:, 7] = 0.0  # and a weight column of zeros
    cases.append((act, w, 0.5, "clamp both statistics at 1e-5 before dividing (as minillm's smoothquant_scales does) so no s_j is 0 or inf"))
    for act, w, alpha, case_hint in cases:
        expected = reference(act, w.abs().amax(dim=0), alpha)
        got = fn(act.clone(), w.clone(), alpha)
        where = f" for act_absmax [{act.numel()}], weight {tuple(w.shape)}, alpha={alpha}"
        a, wm = act.double().clamp(min=1e-5), w.abs().double().clamp(min=1e-5)
        diagnose = {
            "weight_absmax is the max over the OUTPUT rows (dim 0): one value per input channel j": (
                a ** alpha / wm.amax(1) ** (1 - alpha) if w.shape[0] == w.shape[1] else torch.zeros(1)
            ),
            "the activation gets the exponent α and the weight 1 - α": a ** (1 - alpha) / wm.amax(0) ** alpha,
            "divide by the weight term: s = act^α / w^(1-α)": a**alpha * wm.amax(0) ** (1 - alpha),
        }
        got = expect_tensor(got, shape=tuple(expected.shape), what="s" + where, hint=case_hint)
        # pow and divide in float32: ~1e-6 relative (values range over ~1e-3..1e3)
        expect_close(got, expected, atol=0.0, rtol=2e-6, what="s" + where, hint=case_hint, diagnose=diagnose)
    # Property: the rescaling is exact algebra, (X / s)(W · s)ᵀ == X Wᵀ.
    x = torch.randn(5, 16, generator=g) * (torch.rand(16, generator=g) * 5)
    w = torch.randn(7, 16, generator=g)
    s = expect_tensor(fn(x.abs().amax(0), w, 0.5), shape=(16,), what="s for X [5, 16], W [7, 16]")
    # fp32 reassociation of a 16-term sum of O(10) products: 1e-4 relative, 1e-4 absolute
    if not torch.allclose((x / s) @ (w * s).t(), x @ w.t(), rtol=1e-4, atol=1e-4):
        raise CheckFailure("(X / s)(W · s)ᵀ differs from X Wᵀ", hint="s must be a positive factor per input channel j")


# --------------------------------------------------------------------------- 04.pack_int4


@register("04.pack_int4", points=2, references=("minillm.compress.int4.pack_int4",))
def check_pack_int4(fn) -> None:
    """pack_int4(q [..., 2n] in [-8, 7]) -> uint8 [..., n]: element 2i in the low nibble, 2i+1 in the high one."""
    from minillm.compress.int4 import pack_int4 as reference
    from minillm.compress.int4 import unpack_int4

    g = _gen(45)
    cases = [
        (torch.tensor([1, 2], dtype=torch.int8), "element 0 goes in the low nibble: [1, 2] packs to 0x21 = 33"),
        (torch.tensor([-1, 0, -8, 7], dtype=torch.int8), "negative values: keep their 4-bit two's complement, q & 0xF (-1 -> 0xF)"),
        (torch.randint(-8, 8, (4, 16), generator=g, dtype=torch.int8), "pack along the last dimension, pairs of neighbours"),
        (torch.randint(-8, 8, (2, 3, 8), generator=g).to(torch.int8), "any leading shape: pack the last dimension only"),
    ]
    for q, case_hint in cases:
        expected = reference(q)
        got = fn(q.clone())
        where = f" for q {tuple(q.shape)}" + (f" = {q.tolist()}" if q.numel() <= 4 else "")
        if not isinstance(got, torch.Tensor):
            raise CheckFailure("pack_int4 returned", got=describe(got), expected="a uint8 tensor")
        if tuple(got.shape) != tuple(expected.shape):
            raise CheckFailure("packed shape" + where, got=tuple(got.shape), expected=tuple(expected.shape),
                               hint="two 4-bit values per byte: the last dimension halves")
        if got.dtype != torch.uint8:
            raise CheckFailure("packed dtype" + where, got=str(got.dtype).replace("torch.", ""), expected="uint8",
                               hint="bytes are unsigned: .to(torch.uint8) at the end")
        if not torch.equal(got, expected):
            nib = q.to(torch.int16) & 0xF
            swapped = ((nib[..., 1::2]) | (nib[..., 0::2] << 4)).to(torch.uint8)
            offset = ((q.to(torch.int16)[..., 0::2] + 8) | ((q.to(torch.int16)[..., 1::2] + 8) << 4)).to(torch.uint8)
            hint = case_hint
            if torch.equal(got, swapped):
                hint = "element 2i goes in the LOW nibble (bits 0-3), element 2i+1 in the high nibble"
            elif torch.equal(got, offset):
                hint = "store two's complement (q & 0xF), not q + 8: unpack_int4 sign-extends the nibble"
            i = int((got != expected).flatten().nonzero()[0])
            raise CheckFailure(f"byte {i}{where} is", got=int(got.flatten()[i]), expected=int(expected.flatten()[i]), hint=hint)
        if not torch.equal(unpack_int4(got), q):  # exact round trip
            raise CheckFailure("unpack_int4(pack_int4(q)) does not give q back" + where, hint=case_hint)


# --------------------------------------------------------------------------- 04.fp32_exact_max_k (stretch)


def _exact_k_hint(got: int, a: int, b: int, symmetric: bool, p: int) -> str:
    """Name the usual derivation mistake whose result equals ``got``."""
    full = [2 ** (n - 1) for n in (a, b)]
    sym = [2 ** (n - 1) - 1 for n in (a, b)]
    right = sym if symmetric else full
    other = full if symmetric else sym
    if got == 2**p // (other[0] * other[1]):
        return ("the full int range reaches -2^(bits-1) (e.g. -128: 128 x 128 = 2^14); only the symmetric grid "
                "stops at 2^(bits-1) - 1" if not symmetric else
                "on the symmetric grid the largest code is 2^(bits-1) - 1 (127), not 2^(bits-1)")
    if got == 2 ** (p - 1) // (right[0] * right[1]):
        return "a p-bit significand (the implicit leading 1 included) holds every integer up to 2^p, not 2^(p-1)"
    if got == 2**p // (right[0] * right[1]) - 1 or got == (2**p - 1) // (right[0] * right[1]):
        return "2^p itself is representable: the bound is K * |a|max * |b|max <= 2^p, with <=, not <"
    if got == 2**p // (2 ** (a + b)) or got == 2**p // ((2**a - 1) * (2**b - 1)):
        return "the codes are signed: the largest magnitude is 2^(bits-1), not 2^bits or 2^bits - 1"
    if got == 2**p // (right[0] * right[1]) ** 2 or got == int(math.sqrt(2**p / (right[0] * right[1]))):
        return "every partial sum is at most K times the largest product: K * |a|max * |b|max <= 2^p"
    return "the bound is floor(2^p / (largest |a| x largest |b|)): every partial sum must stay a representable integer"


@register(
    "04.fp32_exact_max_k",
    points=2,
    references=("minillm.compress.int8_gemm.fp32_exact_max_k",),
)
def check_fp32_exact_max_k(fn) -> None:
    """fp32_exact_max_k(a_bits, b_bits, symmetric, significand_bits) -> the largest exact K (an int)."""
    from minillm.compress.int8_gemm import fp32_exact_max_k as reference

    g = _gen(46)
    cases = [(8, 8, False, 24), (8, 8, True, 24), (4, 8, False, 24), (4, 4, True, 24), (8, 8, False, 8),
             (16, 16, False, 53), (2, 8, True, 24), (8, 8, False, 11)]
    for _ in range(6):  # fresh combinations, so that no table of the cases above can pass
        a, b = (int(v) for v in torch.randint(2, 17, (2,), generator=g))
        cases.append((a, b, bool(torch.randint(0, 2, (), generator=g)), int((8, 11, 24, 53)[int(torch.randint(0, 4, (), generator=g))])))
    for a, b, symmetric, p in cases:
        expected = reference(a, b, symmetric, p)
        got = fn(a, b, symmetric, p)
        where = f"fp32_exact_max_k({a}, {b}, symmetric={symmetric}, significand_bits={p})"
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if isinstance(got, bool) or not isinstance(got, int):
            raise CheckFailure(f"{where} returned", got=describe(got), expected="a Python int",
                               hint="K counts terms: return a whole number, e.g. with // or int(...)")
        if got != expected:
            raise CheckFailure(where, got=got, expected=expected, hint=_exact_k_hint(got, a, b, symmetric, p))
