"""Quantization number formats against torch's quantized tensors and observers (lesson 04)."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.compress.quantize import (
    QTensor,
    dequantize,
    fake_quantize,
    pack_int4,
    quant_error,
    quantize,
    quantize_with,
    qrange,
    unpack_int4,
)

pytestmark = [
    pytest.mark.lesson04,
    # torch.ao.quantization and quantized-tensor creation are deprecated; they are our references.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*quantize_per_tensor.*:UserWarning"),
]


def _elementwise_scale(qt: QTensor) -> torch.Tensor:
    """The step size of every element: dequantize q=1 with zero point 0."""
    ones = QTensor(torch.ones_like(qt.q, dtype=torch.int32), qt.scale, torch.zeros_like(qt.zero_point),
                   qt.bits, qt.scheme, qt.granularity, qt.axis, qt.group_size)
    return ones.dequantize()


def test_import_gives_the_module():
    import minillm.compress.quantize as mod

    assert type(mod).__name__ == "module" and hasattr(mod, "Int8Linear")


def test_qrange_convention():
    assert qrange(8, "symmetric") == (-127, 127)
    assert qrange(4, "symmetric") == (-7, 7)
    assert qrange(8, "affine") == (0, 255)
    assert qrange(2, "affine") == (0, 3)


@pytest.mark.parametrize("dtype,qmin,qmax,zp", [(torch.qint8, -128, 127, 0), (torch.qint8, -128, 127, -3),
                                                 (torch.quint8, 0, 255, 128), (torch.quint8, 0, 255, 7)])
def test_quantize_with_equals_torch_per_tensor(dtype, qmin, qmax, zp):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, generator=g) * 3
    for scale in (0.0173, 0.05, 0.1, 0.003):  # arbitrary scales: torch multiplies by 1/scale, as we do
        ref = torch.quantize_per_tensor(x, scale, zp, dtype).int_repr()
        ours = quantize_with(x, scale, zp, qmin, qmax)
        assert torch.equal(ours.long(), ref.long())  # exact: same float32 ops, same rounding


@pytest.mark.parametrize("dtype,qmin,qmax,zp", [(torch.qint8, -128, 127, 0), (torch.quint8, 0, 255, 100)])
def test_quantize_with_rounds_exact_halves_to_even(dtype, qmin, qmax, zp):
    scale = 0.25  # a power of two, so x / scale = k + 0.5 exactly: a true tie
    k = torch.arange(-60, 60, dtype=torch.float32)
    x = (k + 0.5) * scale
    ours = quantize_with(x, scale, zp, qmin, qmax).long()
    ref = torch.quantize_per_tensor(x, scale, zp, dtype).int_repr().long()
    assert torch.equal(ours, ref)  # exact
    expected = np.clip(np.round((k + 0.5).numpy()) + zp, qmin, qmax)  # numpy rounds half to even too
    assert torch.equal(ours, torch.from_numpy(expected).long())
    assert ours[k == 0].item() == zp and ours[k == 1].item() == 2 + zp  # 0.5 -> 0 and 1.5 -> 2


@pytest.mark.parametrize("dtype,qmin,qmax", [(torch.qint8, -128, 127), (torch.quint8, 0, 255)])
def test_quantize_with_equals_torch_per_channel(dtype, qmin, qmax):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 50, generator=g) * torch.linspace(0.1, 5, 6)[:, None]
    scales = torch.rand(6, generator=g) * 0.05 + 0.01
    zps = torch.zeros(6, dtype=torch.long) if qmin < 0 else torch.randint(0, 256, (6,), generator=g)
    ref = torch.quantize_per_channel(x, scales.double(), zps, 0, dtype).int_repr()
    ours = quantize_with(x, scales[:, None], zps[:, None], qmin, qmax)
    assert torch.equal(ours.long(), ref.long())  # exact


def test_symmetric_quantize_matches_torch_given_our_scale():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(8, 32, generator=g)
    qt = quantize(w, 8, "symmetric", "channel", axis=0)
    assert torch.allclose(qt.scale, w.abs().amax(1) / 127)  # course convention, rtol 1e-5 (one division)
    ref = torch.quantize_per_channel(w, qt.scale.double(), torch.zeros(8, dtype=torch.long), 0, torch.qint8)
    assert torch.equal(qt.q.long(), ref.int_repr().long())  # exact
    assert int(qt.q.min()) >= -127  # -128 is never used by the symmetric grid
    qt = quantize(w, 8, "symmetric", "tensor")
    ref = torch.quantize_per_tensor(w, float(qt.scale), 0, torch.qint8).int_repr()
    assert torch.equal(qt.q.long(), ref.long())


@pytest.mark.parametrize("bits", [8, 4])
def test_affine_params_equal_minmax_observer(bits):
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

    g = torch.Generator().manual_seed(3)
    for x in (torch.randn(300, generator=g) * 2 + 0.7, torch.rand(300, generator=g) + 0.5, -torch.rand(300, generator=g)):
        obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=0, quant_max=2**bits - 1)
        obs(x)
        scale, zp = obs.calculate_qparams()
        qt = quantize(x, bits, "affine", "tensor")
        assert torch.equal(qt.scale.reshape(1), scale.reshape(1))  # exact: same float32 formula
        assert int(qt.zero_point) == int(zp)
        ref = torch.quantize_per_tensor(x, float(scale), int(zp), torch.quint8).int_repr()
        if bits == 8:
            assert torch.equal(qt.q.long(), ref.long())
    w = torch.randn(5, 40, generator=g) + torch.linspace(-2, 2, 5)[:, None]
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.quint8, qscheme=torch.per_channel_affine,
                                   quant_min=0, quant_max=2**bits - 1)
    obs(w)
    scale, zp = obs.calculate_qparams()
    qt = quantize(w, bits, "affine", "channel", axis=0)
    assert torch.equal(qt.scale, scale.float()) and torch.equal(qt.zero_point.long(), zp.long())  # exact


def test_affine_represents_zero_exactly():
    x = torch.tensor([0.3, 1.7, 0.0, 2.2])  # all >= 0: min' is forced to 0
    qt = quantize(x, 8, "affine")
    assert int(qt.zero_point) == 0
    assert qt.dequantize()[2].item() == 0.0  # exact: 0 maps to the zero point


def test_all_zero_tensor_does_not_divide_by_zero():
    qt = quantize(torch.zeros(3, 4), 8, "symmetric", "channel")
    assert torch.equal(qt.dequantize(), torch.zeros(3, 4))


def test_group_granularity_layout():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(3, 64, generator=g)
    qt = quantize(w, 4, "symmetric", "group", axis=0, group_size=16)
    assert qt.scale.shape == (3, 4)
    # group (r, j) covers columns 16j..16j+15 of row r
    assert torch.allclose(qt.scale, w.view(3, 4, 16).abs().amax(-1) / 7)  # rtol 1e-5: one division
    # axis=1 groups the rows of each column instead
    qt1 = quantize(w, 4, "symmetric", "group", axis=1, group_size=3)
    assert qt1.scale.shape == (64, 1)
    assert torch.allclose(qt1.scale[:, 0], w.abs().amax(0) / 7)


shapes = st.sampled_from([(7,), (4, 12), (3, 8, 6), (16, 32)])


@settings(deadline=None, max_examples=25)
@given(shape=shapes, bits=st.integers(2, 8), scheme=st.sampled_from(["symmetric", "affine"]),
       gran=st.sampled_from(["tensor", "channel", "group"]), seed=st.integers(0, 10_000),
       spread=st.floats(1e-3, 1e3))
def test_round_trip_within_half_a_step_and_idempotent(shape, bits, scheme, gran, seed, spread):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * spread
    group = None
    if gran == "group":
        per_channel = x.numel() // shape[0]
        group = 2 if per_channel % 2 == 0 else per_channel
    qt = quantize(x, bits, scheme, gran, axis=0, group_size=group)
    qmin, qmax = qrange(bits, scheme)
    assert qmin <= int(qt.q.min()) and int(qt.q.max()) <= qmax
    step = _elementwise_scale(qt)
    err = (qt.dequantize() - x).abs()
    # Rounding moves a value by at most half a step; float32 evaluation of x*(1/s)
    # and (q - z)*s adds a few ulps of |x| (we allow 1e-5 relative, ~80 ulps).
    assert bool((err <= step / 2 + 1e-5 * x.abs() + 1e-30).all())
    # quantize(dequantize(q)) == q with the same parameters: dequantized values sit on
    # the grid, far from any .5 tie, so rounding gives back q exactly.
    zp_el = -QTensor(torch.zeros_like(qt.q, dtype=torch.int32), torch.ones_like(qt.scale), qt.zero_point,
                     bits, scheme, gran, qt.axis, group).dequantize()
    assert torch.equal(quantize_with(qt.dequantize(), step, zp_el, qmin, qmax).long(), qt.q.long())
    if scheme == "symmetric":
        # ... and with freshly computed parameters: absmax lands exactly on ±qmax, so the
        # scale comes back (to an ulp). (Affine can lose its top level when -min/scale
        # ends in .5, which shrinks the recomputed range; so only symmetric is checked.)
        again = quantize(qt.dequantize(), bits, scheme, gran, axis=0, group_size=group)
        assert torch.equal(again.q, qt.q)


def test_quantize_with_of_dequantized_is_identity():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(10, 20, generator=g)
    qt = quantize(x, 8, "affine", "channel", axis=0)
    back = quantize_with(dequantize(qt), qt.scale[:, None], qt.zero_point[:, None], 0, 255)
    assert torch.equal(back, qt.q)  # exact


def test_nbytes_counts_packed_bits_and_scales():
    w = torch.randn(64, 256)
    assert quantize(w, 8, granularity="channel").nbytes == 64 * 256 + 64 * 4
    qt = quantize(w, 4, granularity="group", group_size=32)
    assert qt.nbytes == 64 * 256 // 2 + 64 * 8 * 4  # 4 + 32/32 = 5 bits per weight
    assert qt.nbytes / (w.numel() * 4) == pytest.approx(5 / 32)  # exact ratio
    assert quantize(w, 8, "affine").nbytes == 64 * 256 + 4 + 1


def test_quant_error_sqnr_grows_about_6db_per_bit():
    x = torch.randn(20000, generator=torch.Generator().manual_seed(6))
    s4, s8 = quant_error(x, 4)["sqnr_db"], quant_error(x, 8)["sqnr_db"]
    # Each bit halves the step: 20·log10(2) = 6.02 dB per bit under the uniform-noise
    # model (Bennett 1948). Absmax scaling on Gaussian data keeps the slope; allow +-10%.
    assert (s8 - s4) / 4 == pytest.approx(6.02, rel=0.1)
    e = quant_error(x, 8)
    assert e["error"].shape == (20000,) and e["max_abs"] <= e["max_scale"] / 2 * (1 + 1e-5)


def test_fake_quantize_matches_torch_forward_and_gradient():
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(1000, generator=g) * 2).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    for scale, zp, qmin, qmax in [(0.02, 0, -128, 127), (0.013, 120, 0, 255), (0.25, 3, 0, 15)]:
        y = fake_quantize(x, scale, zp, qmin, qmax)
        y_ref = torch.fake_quantize_per_tensor_affine(x_ref, scale, zp, qmin, qmax)
        assert torch.equal(y, y_ref)  # exact: same float32 formula
        w = torch.randn(1000, generator=g)
        (gx,) = torch.autograd.grad((y * w).sum(), x)
        (gref,) = torch.autograd.grad((y_ref * w).sum(), x_ref)
        assert torch.equal(gx, gref)  # exact: the STE mask times the upstream gradient
        assert set(torch.unique(gx / w).tolist()) <= {0.0, 1.0}


def test_fake_quantize_per_channel_broadcast_matches_torch():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(4, 30, generator=g).requires_grad_()
    scale = torch.tensor([0.01, 0.02, 0.05, 0.1])
    y = fake_quantize(x, scale[:, None], 0, -8, 7)
    ref = torch.fake_quantize_per_channel_affine(x, scale, torch.zeros(4, dtype=torch.int32), 0, -8, 7)
    assert torch.equal(y, ref)  # exact


@settings(deadline=None, max_examples=25)
@given(shape=st.sampled_from([(2,), (3, 8), (2, 2, 6)]), seed=st.integers(0, 1000))
def test_pack_unpack_int4_round_trip(shape, seed):
    q = torch.randint(-8, 8, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.int8)
    p = pack_int4(q)
    assert p.dtype == torch.uint8 and p.shape == (*shape[:-1], shape[-1] // 2)
    assert torch.equal(unpack_int4(p), q)  # exact


def test_pack_int4_layout():
    p = pack_int4(torch.tensor([1, -1, 7, -8], dtype=torch.int8))
    assert p.tolist() == [0xF1, 0x87]  # low nibble first, two's complement


@pytest.mark.parametrize(
    "call,word",
    [
        (lambda: quantize(torch.randn(4), bits=9), "bits=9"),
        (lambda: quantize(torch.randn(4), bits=1), "bits=1"),
        (lambda: quantize(torch.randn(4), bits=8.0), "bits"),
        (lambda: quantize(torch.randn(4, 48), 4, granularity="group", group_size=32), "group_size=32"),
        (lambda: quantize(torch.randn(4, 48), 4, granularity="group"), "group_size"),
        (lambda: quantize(torch.empty(0)), "empty"),
        (lambda: quantize(torch.tensor([1.0, float("nan")])), "NaN"),
        (lambda: quantize(torch.tensor([1.0, float("inf")])), "inf"),
        (lambda: quantize(torch.randn(4), scheme="asymmetric"), "scheme='asymmetric'"),
        (lambda: quantize(torch.randn(4), granularity="row"), "granularity='row'"),
        (lambda: quantize(torch.randn(4, 4), granularity="channel", axis=2), "axis=2"),
        (lambda: quantize(torch.arange(4)), "floating-point"),
        (lambda: quantize_with(torch.randn(4), 0.0, 0, -127, 127), "scale"),
        (lambda: quantize_with(torch.randn(4), 0.1, 0, 127, -127), "qmin"),
        (lambda: quantize_with(torch.randn(4, 3), torch.ones(4) * 0.1, 0, -127, 127), "broadcast"),
        (lambda: pack_int4(torch.tensor([9, 0], dtype=torch.int8)), "[-8, 7]"),
        (lambda: pack_int4(torch.tensor([1, 0, 2], dtype=torch.int8)), "even"),
        (lambda: unpack_int4(torch.tensor([1], dtype=torch.int8)), "uint8"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, word):
    with pytest.raises(ValueError) as info:
        call()
    assert word in str(info.value)


def test_no_warnings_from_our_own_code():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize(torch.randn(8, 8), 4, "affine", "group", group_size=4).dequantize()
    assert math.isfinite(quant_error(torch.randn(10))["sqnr_db"])


def _imports(path) -> set[str]:
    """Every module a source file imports, at the top or inside functions."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_core_imports_no_sibling_and_nothing_imports_the_facade():
    from pathlib import Path

    import minillm

    root = Path(minillm.__file__).parent
    core = _imports(root / "compress" / "quant_core.py")
    assert not {m for m in core if m.startswith("minillm.compress")}, core
    users = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "quantize.py" and "minillm.compress.quantize" in _imports(p)
    ]
    assert users == []  # the façade is for learners and lessons only: importing it inside would bring back the cycle
