"""int8 GEMM, Int8Linear, LLM.int8() and weight-only int4 against references (lesson 04)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.compress.int8_gemm import ONEDNN
from minillm.compress.quantize import (
    Int8Linear,
    LLMInt8Linear,
    WeightOnlyLinear,
    int8_kernel,
    int8_matmul,
    llm_int8_matmul,
    quantize,
    quantize_per_token,
    vectorwise_int8_matmul,
)

pytestmark = [
    pytest.mark.lesson04,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

KERNEL_NAMES = {"torch._int_mm", "fp32-exact (K<=1024)", "fallback (int32 matmul)", "fallback (int32 sum)", ONEDNN}
KERNELS = ["auto", "fallback", "fp32-exact"] + (["torch._int_mm"] if hasattr(torch, "_int_mm") else [])
LAYER_KERNELS = KERNELS + (["onednn"] if hasattr(torch, "_int_mm") else [])  # Int8Linear's kernel_choice


def _rand_int8(shape, seed, lo=-128, hi=128):
    return torch.randint(lo, hi, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.int8)


@settings(deadline=None, max_examples=25)
@given(M=st.integers(1, 40), K=st.integers(1, 70), N=st.integers(1, 40), seed=st.integers(0, 1000))
def test_int8_matmul_is_exact_for_odd_shapes(M, K, N, seed):
    a, b = _rand_int8((M, K), seed), _rand_int8((K, N), seed + 1)
    ref = a.long() @ b.long()
    for kernel in KERNELS:
        out = int8_matmul(a, b, kernel=kernel)
        assert out.dtype == torch.int32 and torch.equal(out.long(), ref)  # exact, integers


def test_int8_matmul_exact_at_large_k_where_float32_is_not():
    K = 4096
    a = torch.full((20, K), 127, dtype=torch.int8)
    a[1::2] = -127
    b = _rand_int8((K, 24), 3, -127, 128)
    b[:, 0] = 127
    b[0, 0] = 1  # row sums of 4095·127² + 127: not a multiple of 4, so float32 (ulp 4 here) cannot hold it
    ref = a.long() @ b.long()
    assert int(ref.abs().max()) > 2**24  # beyond float32's exact integers
    for kernel in [k for k in KERNELS if k != "fp32-exact"]:  # fp32-exact refuses K > 1024
        assert torch.equal(int8_matmul(a, b, kernel=kernel).long(), ref)  # exact
    emulated = (a.float() @ b.float()).long()
    assert not torch.equal(emulated, ref)  # why we never emulate through float32


@settings(deadline=None, max_examples=25)
@given(M=st.integers(1, 24), K=st.integers(1, 1024), N=st.integers(1, 24), seed=st.integers(0, 1000),
       extreme=st.booleans())
def test_fp32_exact_kernel_equals_the_int64_product_up_to_k_1024(M, K, N, seed, extreme):
    a, b = _rand_int8((M, K), seed), _rand_int8((K, N), seed + 1)
    if extreme:  # the largest possible sums: every product (-128)·(-128) = 2^14, or -(2^14) in row 0
        a.fill_(-128)
        b.fill_(-128)
        a[0] = 127
    ref = a.long() @ b.long()
    out = int8_matmul(a, b, kernel="fp32-exact")
    # exact (no tolerance): |every partial sum| <= K·2^14 <= 2^24, which float32 holds exactly
    assert out.dtype == torch.int32 and torch.equal(out.long(), ref)


def test_fp32_exact_bound_is_tight_and_auto_falls_back_above_it():
    # K = 1025: 1024 products (-128)·(-128) = 2^24 plus 1·1 gives 2^24 + 1, which float32 cannot hold
    a = torch.full((1, 1025), -128, dtype=torch.int8)
    a[0, -1] = 1
    ref = a.long() @ a.long().t()
    assert int(ref) == 2**24 + 1 and int((a.float() @ a.float().t()).long()) != 2**24 + 1
    with pytest.raises(ValueError, match="K <= 1024"):
        int8_matmul(a, a.t(), kernel="fp32-exact")
    assert torch.equal(int8_matmul(a, a.t()).long(), ref)  # auto stays exact: integer path
    assert not int8_kernel(K=1025).startswith("fp32")
    b = a[:, 1:]  # K = 1024: the same construction is exact through float32
    assert torch.equal(int8_matmul(b, b.t(), kernel="fp32-exact").long(), b.long() @ b.long().t())


def test_fp32_exact_is_not_used_when_matmul_precision_is_lowered():
    from minillm.compress.int8_gemm import cpu_int8_features, fp32_matmul_is_ieee

    mk = torch.backends.mkldnn.matmul
    if not hasattr(mk, "fp32_precision"):
        pytest.skip("this torch has no torch.backends.mkldnn.matmul.fp32_precision")
    old = mk.fp32_precision
    try:
        mk.fp32_precision = "bf16"  # oneDNN may now round float32 inputs to bfloat16
        assert not fp32_matmul_is_ieee()
        assert not int8_kernel().startswith("fp32")
        a = _rand_int8((8, 64), 9)
        with pytest.raises(ValueError, match="IEEE"):
            int8_matmul(a, a.t(), kernel="fp32-exact")
    finally:
        mk.fp32_precision = old
    f = cpu_int8_features()
    if f["known"] and not (f["vnni"] or f["amx"]):
        assert int8_kernel() == "fp32-exact (K<=1024)"  # the auto choice on an AVX2-only CPU


def test_int8_matmul_transposed_view_and_kernel_name():
    a, w = _rand_int8((33, 64), 4), _rand_int8((48, 64), 5)
    assert torch.equal(int8_matmul(a, w.t()).long(), a.long() @ w.long().t())  # exact
    assert int8_kernel() in KERNEL_NAMES


@pytest.mark.parametrize(
    "call,word",
    [
        (lambda: int8_matmul(torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.int8)), "a must be"),
        (lambda: int8_matmul(torch.zeros(2, 3, dtype=torch.int8), torch.zeros(4, 2, dtype=torch.int8)), "inner"),
        (lambda: int8_matmul(torch.zeros(1, 131072, dtype=torch.int8), torch.zeros(131072, 1, dtype=torch.int8)), "K=131072"),
        (lambda: int8_matmul(torch.zeros(2, 2, dtype=torch.int8), torch.zeros(2, 2, dtype=torch.int8), "gpu"), "kernel"),
        (lambda: Int8Linear.from_float(torch.randn(4, 4), activations="static"), "calibration"),
        (lambda: Int8Linear.from_float(torch.randn(4, 4), activations="weekly"), "activations='weekly'"),
        (lambda: Int8Linear.from_float(torch.randn(4, 4), torch.randn(3)), "bias"),
        (lambda: llm_int8_matmul(torch.randn(2, 4), torch.randn(3, 4), threshold=float("nan")), "threshold"),
        (lambda: WeightOnlyLinear.from_float(torch.randn(4, 48), bits=4, group_size=32), "group_size=32"),
        (lambda: WeightOnlyLinear.from_float(torch.randn(4, 8), bits=12), "bits=12"),
        (lambda: quantize_per_token(torch.tensor([[1.0, float("inf")]])), "NaN or inf"),
        (lambda: Int8Linear.from_float(torch.randn(4, 8))(torch.randn(4, 6)), "[..., 8]"),
        (lambda: LLMInt8Linear.from_float(torch.randn(4, 8))(torch.randn(3, 4)), "[..., 8]"),
    ],
)
def test_bad_input_raises_value_error(call, word):
    with pytest.raises(ValueError) as info:
        call()
    assert word in str(info.value)


def test_int8_linear_close_to_torch_dynamic_quantization():
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 128)
    x = torch.randn(32, 256)
    with torch.no_grad():
        ref = lin(x)
        ao = quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)(x)
        ours = Int8Linear.from_float(lin.weight, lin.bias)(x)
    rel = lambda t: float((t - ref).norm() / ref.norm())  # noqa: E731
    # Both are int8 approximations of the same float layer. torch.ao uses one 7-bit
    # (reduce_range) activation scale per tensor, we use an 8-bit scale per token, so
    # each is off by ~1-2% of the output norm; the two must agree within the sum (4%).
    assert rel(ours) < 0.02 and rel(ao) < 0.03
    assert float((ours - ao).norm() / ref.norm()) < 0.04
    assert rel(ours) <= rel(ao)  # finer activation scales are at least as accurate


def test_int8_linear_matches_its_integer_formula_and_kernels_agree():
    torch.manual_seed(1)
    w, b, x = torch.randn(24, 40), torch.randn(24), torch.randn(2, 5, 40)
    layer = Int8Linear.from_float(w, b)
    y = layer(x)
    assert layer.kernel in KERNEL_NAMES and y.shape == (2, 5, 24)
    qw = quantize(w, 8, "symmetric", "channel", axis=0)
    qx = quantize(x.reshape(10, 40), 8, "symmetric", "channel", axis=0)  # one scale per token
    acc = (qx.q.long() @ qw.q.long().t()).double()
    expect = acc * qx.scale.double()[:, None] * qw.scale.double() + b.double()
    # float32 dequantization of exact int32 sums: rounding of s_x·s_w·acc, ~1e-6 relative
    torch.testing.assert_close(y.reshape(10, 24).double(), expect, rtol=1e-5, atol=1e-5)
    for choice in LAYER_KERNELS:
        layer.kernel_choice = choice
        try:
            out = layer(x)
        except ValueError as e:  # oneDNN's packed GEMM is not exact on CPUs without VNNI/AMX
            assert choice == "onednn" and "VNNI or AMX" in str(e)
            continue
        assert torch.equal(out, y)  # exact: same integers, same float epilogue
        assert layer.kernel == {"torch._int_mm": "torch._int_mm", "onednn": ONEDNN}.get(choice, layer.kernel)
        assert layer.kernel in KERNEL_NAMES


def test_int8_linear_static_uses_calibrated_scale_and_clips():
    torch.manual_seed(2)
    w, x = torch.randn(16, 32), torch.randn(64, 32)
    layer = Int8Linear.from_float(w, activations="static", calibration=x)
    assert float(layer.x_scale) == pytest.approx(float(x.abs().max()) / 127, rel=1e-6)
    ref = x @ w.t()
    # per-tensor int8 activations and per-channel int8 weights: ~1% of the output norm
    assert float((layer(x) - ref).norm() / ref.norm()) < 0.02
    # beyond the calibrated range the input is clipped at 127·x_scale
    clipped = Int8Linear.from_float(w, activations="static", calibration=torch.ones(1))(torch.full((1, 32), 5.0))
    torch.testing.assert_close(clipped, torch.ones(1, 32) @ layer.weight.t(), rtol=1e-5, atol=1e-5)


def test_llm_int8_threshold_inf_is_vectorwise_int8():
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(12, 48, generator=g) * 3, torch.randn(20, 48, generator=g)
    y = llm_int8_matmul(x, w, threshold=float("inf"))
    # independent reference: quantize rows of x and rows of w, multiply in int64
    qx = quantize(x, 8, "symmetric", "channel", axis=0)
    qw = quantize(w, 8, "symmetric", "channel", axis=0)
    ref = (qx.q.long() @ qw.q.long().t()).double() * qx.scale.double()[:, None] * qw.scale.double()
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-6)  # float32 epilogue rounding only
    assert torch.equal(y, vectorwise_int8_matmul(x, w))


def test_llm_int8_threshold_zero_is_the_float_product():
    g = torch.Generator().manual_seed(4)
    x, w = torch.randn(3, 7, 16, generator=g), torch.randn(5, 16, generator=g)
    y, outliers = llm_int8_matmul(x, w, threshold=0.0, return_outliers=True)
    assert outliers.numel() == 16
    # every column goes through the float path: same float32 matmul, reordering-free
    torch.testing.assert_close(y, x @ w.t(), rtol=1e-6, atol=1e-6)


def test_llm_int8_beats_plain_int8_with_an_outlier_column():
    g = torch.Generator().manual_seed(5)
    x, w = torch.randn(64, 128, generator=g), torch.randn(96, 128, generator=g) * 0.05
    x[:, 17] *= 60.0  # one outlier feature (hidden dimension), as in Dettmers et al. 2022
    ref = x @ w.t()
    err = lambda y: float((y - ref).norm() / ref.norm())  # noqa: E731
    dec, out = llm_int8_matmul(x, w, threshold=6.0, return_outliers=True)
    assert out.tolist() == [17]
    vec = llm_int8_matmul(x, w, threshold=float("inf"))
    qx = quantize(x, 8)  # one scale for the whole tensor
    qw = quantize(w, 8, granularity="channel")
    per_tensor = qx.dequantize() @ qw.dequantize().t()
    assert err(dec) < err(vec) and err(dec) < err(per_tensor)
    assert err(dec) < 0.5 * err(vec)  # the outlier wrecks the row scales; decomposition removes it


def test_llm_int8_linear_module_counts_outliers():
    g = torch.Generator().manual_seed(6)
    w, b, x = torch.randn(8, 32, generator=g), torch.randn(8, generator=g), torch.randn(10, 32, generator=g)
    x[:, 3] = 20.0
    m = LLMInt8Linear.from_float(w, b, threshold=6.0)
    y = m(x)
    assert m.n_outliers == 1
    ref = x @ w.t() + b
    # int8 weights everywhere (1% of norm), int8 activations outside the outlier column
    assert float((y - ref).norm() / ref.norm()) < 0.02


@pytest.mark.parametrize("bits,group", [(4, 32), (4, None), (8, 16), (3, 8)])
def test_weight_only_linear_dequantizes_like_quantize(bits, group):
    g = torch.Generator().manual_seed(7)
    w, b, x = torch.randn(16, 64, generator=g), torch.randn(16, generator=g), torch.randn(5, 64, generator=g)
    m = WeightOnlyLinear.from_float(w, b, bits=bits, group_size=group)
    gran = "channel" if group is None else "group"
    deq = quantize(w, bits, "symmetric", gran, axis=0, group_size=group).dequantize()
    assert torch.equal(m.weight, deq)  # exact: same integers times the same scales
    torch.testing.assert_close(m(x), x @ deq.t() + b, rtol=1e-6, atol=1e-6)  # same float ops
    if bits == 4:
        assert m.q_weight.dtype == torch.uint8 and m.q_weight.shape == (16, 32)  # two per byte


# --------------------------------------------------------------------------- the lean forward


def test_per_token_hot_path_equals_the_checked_quantizer():
    from minillm.compress.quant_core import per_token_int8

    g = torch.Generator().manual_seed(5)
    x = torch.randn(33, 70, generator=g) * torch.logspace(-6, 3, 33)[:, None]
    x[3] = 0.0  # an all-zero row: scale clamps at eps, codes 0
    x[4, :] = 0.0
    x[4, 7] = -2.5  # a row with one value: it maps to -127 exactly
    q_fast, s_fast = per_token_int8(x)
    q_ref, s_ref = quantize_per_token(x)
    assert torch.equal(q_fast, q_ref) and torch.equal(s_fast, s_ref)  # bit for bit, without the clamp
    assert int(q_fast[4, 7]) == -127 and int(q_fast.abs().max()) == 127


@pytest.mark.parametrize("choice", LAYER_KERNELS)
def test_int8_linear_fast_path_equals_the_checked_first_call(choice):
    torch.manual_seed(6)
    w, b = torch.randn(48, 64), torch.randn(48)
    layer = Int8Linear.from_float(w, b)
    layer.kernel_choice = choice
    x1, x2 = torch.randn(5, 64), torch.randn(3, 7, 64)
    try:
        first = layer(x1)  # checked dispatch through int8_matmul; records the kernel
    except (ValueError, RuntimeError):
        pytest.skip(f"kernel {choice} cannot run on this machine")
    kernel = layer.kernel
    assert torch.equal(layer(x1), first) and layer.kernel == kernel  # the direct call gives the same floats
    ref = Int8Linear.from_float(w, b)
    ref.kernel_choice = choice
    ref._plan = None
    expect = torch.stack([ref(t)[None] for t in x2.reshape(21, 1, 64)]).reshape(3, 7, 48)
    torch.testing.assert_close(layer(x2), expect, rtol=0, atol=0)  # row by row, through the checked path
    # changing the weight in place or replacing it must not leave a stale kernel plan or float copy
    layer.q_weight.zero_()
    torch.testing.assert_close(layer(x1), b.expand(5, 48), rtol=0, atol=0)
    layer.q_weight = torch.ones(48, 64, dtype=torch.int8)
    layer.w_scale = torch.ones(48)
    sx = x1.abs().amax(-1, keepdim=True) / 127
    expect = torch.round(x1 / sx).sum(-1, keepdim=True) * sx + b
    torch.testing.assert_close(layer(x1), expect, rtol=1e-5, atol=1e-5)  # float32 epilogue rounding


def test_onednn_pack_is_exact_or_refused():
    from minillm.compress.int8_gemm import onednn_pack, onednn_scaled_matmul

    assert onednn_pack(torch.ones(4, 8)) is None  # float, not int8 codes
    assert onednn_pack(torch.ones(0, 8, dtype=torch.int8)) is None
    w = _rand_int8((40, 300), 11, lo=-127)
    packed = onednn_pack(w, rows=16)
    if packed is None:
        pytest.skip("oneDNN's packed int8 GEMM is missing or not exact on this CPU")
    scale = torch.rand(40, generator=torch.Generator().manual_seed(12))
    for M in (1, 3, 16, 77):  # other row counts than the one it was packed for
        qx = _rand_int8((M, 300), 13 + M, lo=-127)
        ref = (qx.long() @ w.long().t()).float() * scale  # exact int64 sums (|sum| < 2^24), one rounding
        assert torch.equal(onednn_scaled_matmul(qx, packed, scale), ref)


def test_int8_linear_refuses_an_inexact_onednn_kernel(monkeypatch):
    import minillm.compress.int8_gemm as gemm

    halved = gemm.onednn_scaled_matmul
    # stands in for oneDNN's int8 code on CPUs without VNNI, which may halve the weights: sums that are off
    monkeypatch.setattr(gemm, "onednn_scaled_matmul", lambda qx, p, s: halved(qx, p, s / 2) * 2 + 1e-3)
    torch.manual_seed(14)
    w, x = torch.randn(16, 32), torch.randn(4, 32)
    layer = Int8Linear.from_float(w)
    y = layer(x)
    assert layer.kernel != ONEDNN
    layer.kernel_choice = "onednn"
    if hasattr(torch, "_int_mm"):
        with pytest.raises(ValueError, match="kernel_choice='auto'"):
            layer(x)
    layer.kernel_choice = "fallback"
    assert torch.equal(layer(x), y)


def test_int8_linear_copies_and_pickles_after_a_call():
    import copy
    import io

    torch.manual_seed(15)
    layer = Int8Linear.from_float(torch.randn(8, 16), torch.randn(8))
    x = torch.randn(3, 16)
    y = layer(x)  # plans the kernel (oneDNN's packed weight cannot be copied or saved)
    assert torch.equal(copy.deepcopy(layer)(x), y)
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(x), y)


def test_cpu_without_int8_instructions_takes_the_exact_float32_path(monkeypatch):
    import minillm.compress.int8_gemm as gemm

    torch.manual_seed(7)
    w, b, x = torch.randn(32, 1024), torch.randn(32), torch.randn(9, 1024)
    native = Int8Linear.from_float(w, b)
    y_native = native(x)
    monkeypatch.setattr(gemm, "cpu_int8_features", lambda: {"known": True, "vnni": False, "amx": False, "avx2": True})
    avx2 = Int8Linear.from_float(w, b)
    y1, y2 = avx2(x), avx2(x)
    assert avx2.kernel == gemm.FP32_EXACT and avx2._codes_f32 is not None
    assert torch.equal(y1, y2)
    # same exact integer sums, same epilogue: identical floats whichever kernel ran natively
    assert torch.equal(y1, y_native)
    wide = Int8Linear.from_float(torch.randn(8, 1040), None)  # K > 1024: float32 is not exact
    wide(torch.randn(2, 1040))
    assert wide.kernel.startswith("fallback")


def test_int8_layers_share_one_base():
    from minillm.compress.int8_linear import Int8WeightLinear

    torch.manual_seed(8)
    w, b = torch.randn(6, 10), torch.randn(6)
    layers = [Int8Linear.from_float(w, b), LLMInt8Linear.from_float(w, b, threshold=3.0)]
    for layer in layers:
        assert isinstance(layer, Int8WeightLinear)
        assert layer.weight_nbytes == 6 * 10 + 4 * 6 and layer.format_bits == 8 * 60 + 32 * 6
        assert torch.equal(layer.q_weight, layers[0].q_weight)
        assert "in_features=10, out_features=6, bias=True" in repr(layer)
        with pytest.raises(ValueError, match=r"\[\.\.\., 10\]"):
            layer(torch.randn(2, 11))
        with pytest.raises(ValueError, match="floating-point"):
            layer(torch.ones(2, 10, dtype=torch.long))
    assert "threshold=3.0" in repr(layers[1]) and "activations='dynamic'" in repr(layers[0])


def test_fp32_exact_max_k_derivation():
    from minillm.compress.int8_gemm import FP32_EXACT_MAX_K, fp32_exact_max_k

    assert fp32_exact_max_k() == FP32_EXACT_MAX_K == 1024  # 2^24 / 128^2
    assert fp32_exact_max_k(8, 8, symmetric=True) == 1040  # floor(2^24 / 127^2)
    assert fp32_exact_max_k(4, 8) == 2**24 // (8 * 128) == 16384
    assert fp32_exact_max_k(8, 8, significand_bits=8) == 0  # bfloat16: one product already does not fit
    assert fp32_exact_max_k(16, 16, significand_bits=53) == 2**23  # int16 in float64
    # the symmetric bound is tight: 1041 products of 127 x 127 sum to an odd number above 2^24
    K = fp32_exact_max_k(8, 8, symmetric=True) + 1
    a = torch.full((1, K), 127.0)
    assert int((a @ a.t()).item()) != K * 127 * 127
    with pytest.raises(ValueError, match="a_bits"):
        fp32_exact_max_k(1, 8)


def test_int8_layers_run_outside_no_grad():
    # a quantized model called as a learner would, without torch.no_grad(): inputs that require grad
    torch.manual_seed(9)
    x = torch.randn(3, 32, requires_grad=True)
    w = torch.randn(8, 32)
    for layer in (Int8Linear.from_float(w), LLMInt8Linear.from_float(w)):
        with torch.no_grad():
            expect = layer(x)
        assert torch.equal(layer(x), expect)
