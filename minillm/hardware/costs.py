"""LLM cost models: parameters, FLOPs, training time, MFU, KV cache, serving time, memory, energy, dollars.

Every function is a pure function of small dataclasses (:class:`ModelShape`,
:class:`~minillm.hardware.devices.DeviceSpec`) and numbers, so a widget can sweep any
argument. Units: seconds, bytes (GB = 1e9 bytes), FLOPs, joules, US dollars.

The formulas, each cited where it is used:

- training compute C = 6ND (Kaplan et al. 2020, Sec. 2.1), 8ND with full activation
  recompute (Narayanan et al. 2021, Sec. 5.1);
- FLOPs per token 6N + 12·L·H·Q·T and MFU (Chowdhery et al. 2022, PaLM, Appendix B);
- KV cache 2·L·K·Q bytes-per-element per token (the scaling book, Part 7);
- decode step >= (weight bytes + KV bytes) / bandwidth, prefill compute-bound (Part 7);
- activation memory 34sbh + 5as²b bytes per layer (Korthikanti et al. 2022, Sec. 4.1);
- mixed-precision Adam model states 16 bytes per parameter (Rajbhandari et al. 2020, ZeRO, Sec. 3.1).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from minillm.validate import check_int, check_number
from .devices import DTYPE_BYTES, DeviceSpec, as_device, catalog
from .roofline import Op, gemm_op, op_time

__all__ = [
    "ModelShape",
    "from_config",
    "get_model",
    "list_models",
    "param_count",
    "matmul_params",
    "flops_per_token",
    "training_flops",
    "training_time",
    "megatron_training_time",
    "mfu",
    "kv_cache_bytes",
    "StepTime",
    "prefill_time",
    "decode_step_time",
    "MemoryPlan",
    "activation_bytes_per_layer",
    "inference_activation_bytes",
    "memory_plan",
    "min_devices",
    "energy_joules",
    "cost_dollars",
    "cost_per_million_tokens",
    "catalog_costs",
    "serving_summary",
    "layer_ops",
    "layer_params",
    "model_source",
    "SECONDS_PER_DAY",
]

SECONDS_PER_DAY = 86_400.0


# --------------------------------------------------------------------------- model shapes


@dataclass(frozen=True)
class ModelShape:
    """The shape of a decoder-only transformer, as far as cost is concerned.

    Attributes:
        n_layer: L, transformer blocks.
        d_model: D, residual width.
        n_head: H, query heads.
        vocab_size: V.
        n_kv_head: K, key/value heads (K < H is grouped-query attention; K = 1 is multi-query).
            None means K = H.
        d_ff: F, hidden width of the MLP. None means 4D.
        head_dim: Q, width of one head. None means D / H.
        gated_mlp: SwiGLU-style MLP with three matrices (gate, up, down) instead of two.
        tied_embeddings: the output layer reuses the token embedding.
        bias: linear layers and LayerNorms carry biases (GPT-2 does, LLaMA and PaLM do not).
        norm: "layernorm" (weight, plus bias if ``bias``) or "rmsnorm" (weight only).
        n_positions: rows of a *learned* position embedding (0 for rotary embeddings).
        name: a label.
    """

    n_layer: int
    d_model: int
    n_head: int
    vocab_size: int
    n_kv_head: int | None = None
    d_ff: int | None = None
    head_dim: int | None = None
    gated_mlp: bool = False
    tied_embeddings: bool = True
    bias: bool = True
    norm: str = "layernorm"
    n_positions: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        for f in ("n_layer", "d_model", "n_head", "vocab_size"):
            check_int(f"ModelShape.{f}", getattr(self, f))
        if self.n_kv_head is None:
            object.__setattr__(self, "n_kv_head", self.n_head)
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        if self.head_dim is None:
            if self.d_model % self.n_head:
                raise ValueError(
                    f"ModelShape: d_model={self.d_model} is not divisible by n_head={self.n_head}; "
                    f"pass head_dim explicitly or choose n_head dividing d_model"
                )
            object.__setattr__(self, "head_dim", self.d_model // self.n_head)
        for f in ("n_kv_head", "d_ff", "head_dim"):
            check_int(f"ModelShape.{f}", getattr(self, f))
        check_int("ModelShape.n_positions", self.n_positions, minimum=0)
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"ModelShape: n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head} "
                f"(each key/value head serves a whole group of query heads)"
            )
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"ModelShape.norm={self.norm!r} must be 'layernorm' or 'rmsnorm'")

    @property
    def q_dim(self) -> int:
        """Width of all query heads together, H·Q (equals d_model in most models, not in PaLM)."""
        return self.n_head * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of all key (or value) heads together, K·Q."""
        return self.n_kv_head * self.head_dim

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        """The shape of a minillm :class:`~minillm.model.GPT` built from ``config`` (a GPTConfig)."""
        return from_config(config)

    def to_dict(self) -> dict:
        return asdict(self)


def from_config(config) -> ModelShape:
    """ModelShape of a minillm GPT: GPT-2 layout, 4x MLP with GELU, LayerNorm, learned positions."""
    needed = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
    if not all(hasattr(config, n) for n in needed):
        raise ValueError(
            f"from_config expects a minillm GPTConfig (fields {needed}), got {type(config).__name__}"
        )
    return ModelShape(
        n_layer=config.n_layer,
        d_model=config.n_embd,
        n_head=config.n_head,
        vocab_size=config.vocab_size,
        d_ff=4 * config.n_embd,
        gated_mlp=False,
        tied_embeddings=bool(getattr(config, "tie_weights", True)),
        bias=bool(getattr(config, "bias", True)),
        norm="layernorm",
        n_positions=config.block_size,
        name="minillm GPT",
    )


_LLAMA = dict(gated_mlp=True, tied_embeddings=False, bias=False, norm="rmsnorm", n_positions=0)

#: name -> (shape, source). Parameter counts computed from these match the published ones
#: (tests/hardware/test_hw_costs.py).
_PRESETS: dict[str, tuple[ModelShape, str]] = {
    "gpt2-124m": (
        ModelShape(12, 768, 12, 50257, n_positions=1024, name="gpt2-124m"),
        "Radford et al. 2019 (GPT-2) and the Hugging Face gpt2 config: 12 layers, 768 wide, 12 heads, 1024 positions",
    ),
    "gpt3-175b": (
        ModelShape(96, 12288, 96, 50257, n_positions=2048, name="gpt3-175b"),
        "Brown et al. 2020 (GPT-3), Table 2.1: 96 layers, d_model 12288, 96 heads of 128, context 2048",
    ),
    "llama2-7b": (
        ModelShape(32, 4096, 32, 32000, d_ff=11008, name="llama2-7b", **_LLAMA),
        "Touvron et al. 2023 (Llama 2) and the Hugging Face config.json of meta-llama/Llama-2-7b-hf",
    ),
    "llama2-13b": (
        ModelShape(40, 5120, 40, 32000, d_ff=13824, name="llama2-13b", **_LLAMA),
        "Touvron et al. 2023 (Llama 2) and the Hugging Face config.json of meta-llama/Llama-2-13b-hf",
    ),
    "llama2-70b": (
        ModelShape(80, 8192, 64, 32000, n_kv_head=8, d_ff=28672, name="llama2-70b", **_LLAMA),
        "Touvron et al. 2023 (Llama 2), GQA with 8 KV heads; Hugging Face config.json of meta-llama/Llama-2-70b-hf",
    ),
    "llama3-8b": (
        ModelShape(32, 4096, 32, 128256, n_kv_head=8, d_ff=14336, name="llama3-8b", **_LLAMA),
        "Dubey et al. 2024 (The Llama 3 Herd of Models), Table 3; Hugging Face config.json (vocab 128256)",
    ),
    "llama3-70b": (
        ModelShape(80, 8192, 64, 128256, n_kv_head=8, d_ff=28672, name="llama3-70b", **_LLAMA),
        "Dubey et al. 2024 (Llama 3), Table 3; the scaling book Part 6 uses the same config",
    ),
    "palm-540b": (
        ModelShape(
            118, 18432, 48, 256000, n_kv_head=1, head_dim=256, d_ff=4 * 18432,
            gated_mlp=True, tied_embeddings=True, bias=False, norm="layernorm", name="palm-540b",
        ),
        "Chowdhery et al. 2022 (PaLM), Table 1 and Sec. 2: 118 layers, d_model 18432, 48 heads of 256, "
        "multi-query attention, SwiGLU with d_ff = 4 d_model, shared embeddings, no biases, 256k vocab",
    ),
}


def _model_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def list_models() -> list[str]:
    """Names of the preset model shapes."""
    return list(_PRESETS)


def get_model(name: str) -> ModelShape:
    """A preset shape by name, case-insensitively: "gpt3-175b", "llama2-7b", "Llama-2-70B", ..."""
    if isinstance(name, ModelShape):
        return name
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string such as 'llama2-7b', got {type(name).__name__}")
    by_key = {_model_key(k): k for k in _PRESETS}
    key = by_key.get(_model_key(name))
    if key is None:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(_PRESETS)}")
    return _PRESETS[key][0]


def model_source(name: str) -> str:
    """Where a preset's numbers come from."""
    return _PRESETS[get_model(name).name][1]


def _as_shape(shape) -> ModelShape:
    if isinstance(shape, ModelShape):
        return shape
    if isinstance(shape, str):
        return get_model(shape)
    if hasattr(shape, "n_embd"):  # a GPTConfig
        return from_config(shape)
    raise ValueError(f"expected a ModelShape, a preset name or a GPTConfig, got {type(shape).__name__}")


# --------------------------------------------------------------------------- counting


def _norm_params(shape: ModelShape) -> int:
    """Parameters of one normalisation layer: weight, plus bias for a biased LayerNorm."""
    return shape.d_model * (2 if shape.norm == "layernorm" and shape.bias else 1)


def layer_params(shape: ModelShape) -> int:
    """Parameters of one transformer block (attention, MLP, two norms)."""
    shape = _as_shape(shape)
    d, f = shape.d_model, shape.d_ff
    attn = 2 * d * shape.q_dim + 2 * d * shape.kv_dim  # W_q and W_o, then W_k and W_v
    mlp = (3 if shape.gated_mlp else 2) * d * f
    if shape.bias:
        attn += shape.q_dim + 2 * shape.kv_dim + d
        mlp += (2 if shape.gated_mlp else 1) * f + d
    return attn + mlp + 2 * _norm_params(shape)


def param_count(shape, non_embedding: bool = False) -> int:
    """Number of parameters, exactly (a tied embedding counts once).

    ``non_embedding=True`` leaves out the position embedding, the nanoGPT convention
    for the N in 6N: the token embedding stays, because when tied it *is* the output
    layer. For a minillm GPT this equals ``GPT.num_params(non_embedding)`` either way.
    (For an untied model this still counts the input embedding, which costs no FLOPs;
    :func:`matmul_params` leaves it out.)
    """
    shape = _as_shape(shape)
    d, v = shape.d_model, shape.vocab_size
    total = shape.n_layer * layer_params(shape) + _norm_params(shape)  # blocks and final norm
    total += v * d + shape.n_positions * d + (0 if shape.tied_embeddings else v * d)
    if non_embedding:
        total -= shape.n_positions * d
    return total


def matmul_params(shape) -> int:
    """Parameters multiplied for every token: all but the position embedding and an *untied* input embedding.

    A lookup table costs no FLOPs and reads only the rows it needs, so these are the
    weights a decode step must stream from memory and the N of its 2N forward FLOPs.
    Equals ``param_count(shape, non_embedding=True)`` for tied models.
    """
    shape = _as_shape(shape)
    untied_input = 0 if shape.tied_embeddings else shape.vocab_size * shape.d_model
    return param_count(shape, non_embedding=True) - untied_input


def flops_per_token(shape, seq_len: int) -> float:
    """Training FLOPs per token: ``6N + 12·L·H·Q·T`` (PaLM, Appendix B; nanoGPT's estimate_mfu).

    N = ``param_count(shape, non_embedding=True)``; 6N is the forward (2N) and backward
    (4N) of every weight matmul, and 12·L·H·Q·T the attention scores and weighted values
    over a context of T tokens. Forward only (inference) is a third of this.
    """
    shape = _as_shape(shape)
    T = check_int("seq_len", seq_len)
    N = param_count(shape, non_embedding=True)
    return 6.0 * N + 12.0 * shape.n_layer * shape.n_head * shape.head_dim * T


def _n_params(n_params) -> float:
    if isinstance(n_params, (ModelShape, str)):
        return float(param_count(n_params))
    return check_number("n_params", n_params, strict=True)


def training_flops(n_params, n_tokens: float) -> float:
    """Total training compute C = 6·N·D FLOPs (Kaplan et al. 2020, Sec. 2.1).

    ``n_params`` is N (a number, a preset name or a ModelShape); ``n_tokens`` is D.
    GPT-3 175B on 300B tokens: 6 x 175e9 x 300e9 = 3.15e23 (Brown et al. report 3.14e23).
    """
    return 6.0 * _n_params(n_params) * check_number("n_tokens", n_tokens, strict=True)


def training_time(n_params, n_tokens: float, n_devices: int, flops_per_device: float) -> float:
    """Seconds to train: 6ND / (n_devices x achieved FLOP/s per device).

    ``flops_per_device`` is the *achieved* rate (peak x MFU), not the datasheet peak.
    """
    n = check_int("n_devices", n_devices)
    x = check_number("flops_per_device", flops_per_device, strict=True)
    return training_flops(n_params, n_tokens) / (n * x)


def megatron_training_time(n_params, n_tokens: float, n_devices: int, flops_per_device: float) -> float:
    """Seconds to train with full activation recompute: 8TP / (nX) (Narayanan et al. 2021, Eq. 4).

    Recomputing the forward pass during the backward adds one more 2N per token: 8ND in
    all. GPT-3 175B, 300B tokens, 1024 A100 at 140 TFLOP/s each: about 34 days.
    """
    n = check_int("n_devices", n_devices)
    x = check_number("flops_per_device", flops_per_device, strict=True)
    return 8.0 * _n_params(n_params) * check_number("n_tokens", n_tokens, strict=True) / (n * x)


def mfu(
    tokens_per_s: float,
    n_params: float,
    n_layer: int,
    n_head: int,
    head_dim: int,
    seq_len: int,
    peak_flops_total: float,
) -> float:
    """Model FLOPs utilisation: (6N + 12·L·H·Q·T) x tokens/s / peak (PaLM, Appendix B).

    ``peak_flops_total`` is the peak of *all* devices together, at the dtype the model
    trains in. Say which peak you used: a hard-coded A100 peak silently inflates MFU on
    faster hardware. Returns a fraction (0.462 for PaLM 540B).
    """
    tps = check_number("tokens_per_s", tokens_per_s, strict=True)
    N = _n_params(n_params)
    L, H = check_int("n_layer", n_layer), check_int("n_head", n_head)
    Q, T = check_int("head_dim", head_dim), check_int("seq_len", seq_len)
    peak = check_number("peak_flops_total", peak_flops_total, strict=True)
    return (6.0 * N + 12.0 * L * H * Q * T) * tps / peak


# --------------------------------------------------------------------------- inference


def kv_cache_bytes(shape, seq_len: int, batch: int = 1, bytes_per_elem: float = 2) -> float:
    """Bytes of the key/value cache: 2 · L · K · Q · seq_len · batch · bytes_per_elem.

    K is the number of *key/value* heads, so grouped-query attention shrinks the cache by
    H/K. Llama-2-70B (80 layers, 8 KV heads of 128) in bf16: 2·80·8·128·2 = 327,680 bytes
    per token.
    """
    shape = _as_shape(shape)
    T = check_int("seq_len", seq_len, minimum=0)
    b = check_int("batch", batch)
    bpe = check_number("bytes_per_elem", bytes_per_elem, strict=True)
    return 2.0 * shape.n_layer * shape.n_kv_head * shape.head_dim * T * b * bpe


@dataclass(frozen=True)
class StepTime:
    """A roofline estimate of one inference step (a prefill or one decode step).

    ``seconds`` = max(compute_s, memory_s): the lower bound when compute and memory
    traffic overlap perfectly. ``tokens`` is how many tokens the step produces or reads in.
    """

    seconds: float
    compute_s: float
    memory_s: float
    flops: float
    nbytes: float
    bound: str
    tokens: int
    n_devices: int
    dtype: str

    @property
    def intensity(self) -> float:
        """FLOP/byte of the whole step."""
        return self.flops / self.nbytes

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def _dtype_and_bytes(device: DeviceSpec, dtype: str | None, kv_bytes_per_elem: float | None):
    dtype = device.default_dtype() if dtype is None else dtype
    device.peak(dtype)  # raises a clear error for a dtype the device lacks
    wbytes = DTYPE_BYTES[dtype]
    # The KV cache usually stays in 16-bit even when weights are int8 or fp8.
    kvb = (4 if wbytes == 4 else 2) if kv_bytes_per_elem is None else kv_bytes_per_elem
    return dtype, wbytes, check_number("kv_bytes_per_elem", kvb, strict=True)


def _step(flops, nbytes, device, dtype, n_devices, tokens) -> StepTime:
    n = check_int("n_devices", n_devices)
    # n devices split the work evenly (ideal tensor parallelism; communication ignored).
    seconds, bound = op_time(flops / n, nbytes / n, device, dtype)
    return StepTime(
        seconds=seconds,
        compute_s=flops / n / device.peak(dtype),
        memory_s=nbytes / n / device.mem_bw,
        flops=flops,
        nbytes=nbytes,
        bound=bound,
        tokens=tokens,
        n_devices=n,
        dtype=dtype,
    )


def prefill_time(
    shape,
    device: DeviceSpec | str,
    prompt_len: int,
    batch: int = 1,
    dtype: str | None = None,
    n_devices: int = 1,
    kv_bytes_per_elem: float | None = None,
) -> StepTime:
    """Roofline bound on processing a prompt of ``prompt_len`` tokens for ``batch`` sequences.

    FLOPs = batch·T·(2N + 4·L·H·Q·T), N = :func:`matmul_params`: the forward third of PaLM's count, with every token
    attending over the whole prompt (a causal kernel can skip about half of the attention
    term). Bytes = the weights, read once, plus the KV cache written. Activations are
    assumed to stay on chip (fused kernels). Prefill is compute-bound for any real prompt.
    """
    shape, device = _as_shape(shape), as_device(device)
    T, b = check_int("prompt_len", prompt_len), check_int("batch", batch)
    dtype, wbytes, kvb = _dtype_and_bytes(device, dtype, kv_bytes_per_elem)
    N = matmul_params(shape)
    flops = b * T * (2.0 * N + 4.0 * shape.n_layer * shape.n_head * shape.head_dim * T)
    nbytes = N * wbytes + kv_cache_bytes(shape, T, b, kvb)
    return _step(flops, nbytes, device, dtype, n_devices, b * T)


def decode_step_time(
    shape,
    device: DeviceSpec | str,
    context: int,
    batch: int = 1,
    dtype: str | None = None,
    n_devices: int = 1,
    kv_bytes_per_elem: float | None = None,
) -> StepTime:
    """Roofline bound on one decode step: ``batch`` new tokens, each attending to ``context`` cached ones.

    FLOPs = batch·(2N + 4·L·H·Q·context), N = :func:`matmul_params`. Bytes = every such
    weight once (shared by the batch) plus every sequence's KV cache: the scaling book's
    step >= (param bytes + batch x KV bytes) / bandwidth. At batch 1 the intensity is
    about 2N FLOPs / (N x bytes_per_weight) = 1 FLOP/byte in bf16, far left of any ridge:
    decoding is memory-bound until the batch is in the hundreds.
    """
    shape, device = _as_shape(shape), as_device(device)
    ctx, b = check_int("context", context, minimum=0), check_int("batch", batch)
    dtype, wbytes, kvb = _dtype_and_bytes(device, dtype, kv_bytes_per_elem)
    N = matmul_params(shape)
    flops = b * (2.0 * N + 4.0 * shape.n_layer * shape.n_head * shape.head_dim * ctx)
    nbytes = N * wbytes + kv_cache_bytes(shape, ctx, b, kvb)
    return _step(flops, nbytes, device, dtype, n_devices, b)


# --------------------------------------------------------------------------- memory


def activation_bytes_per_layer(shape, batch: int, seq_len: int, bytes_per_elem: float = 2) -> float:
    """Activations one block keeps for its backward pass: s·b·h·(34 + 5·a·s/h) bytes.

    Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
    Models", Sec. 4.1, for 16-bit activations without recompute (scaled here by
    bytes_per_elem / 2). It assumes d_ff = 4h and multi-head attention, so it is an
    approximation for gated or GQA models. The 5as²b term is the attention matrix,
    which FlashAttention never stores.
    """
    shape = _as_shape(shape)
    b, s = check_int("batch", batch), check_int("seq_len", seq_len)
    h, a = shape.d_model, shape.n_head
    return s * b * h * (34 + 5 * a * s / h) * (bytes_per_elem / 2)


@dataclass(frozen=True)
class MemoryPlan:
    """What one job needs in device memory, in bytes (GB = 1e9), and whether it fits.

    ``max_batch`` is the largest batch that fits at this context (0 if even the fixed
    part, weights and optimizer states, does not fit).
    """

    weights: float
    optimizer: float
    kv_cache: float
    activations: float
    total: float
    capacity: float
    fits: bool
    max_batch: int
    per_sample: float
    n_devices: int

    def as_gb(self) -> dict:
        """The byte fields in GB (1e9 bytes), for a table."""
        keys = ("weights", "optimizer", "kv_cache", "activations", "total", "capacity", "per_sample")
        return {k: getattr(self, k) / 1e9 for k in keys}


def inference_activation_bytes(shape, batch: int, seq_len: int, bytes_per_elem: float = 2) -> float:
    """Live activations of one block while prefilling ``seq_len`` tokens, with a fused attention kernel.

    Only one block's activations are alive at a time during inference, and a fused
    (FlashAttention, Dao et al. 2022) kernel never writes the T x T attention matrix. What
    remains per token: the residual stream and its normalised copy (2D), the queries,
    keys and values (H·Q + 2K·Q) and the MLP hidden state (F, or 2F when gated).
    """
    shape = _as_shape(shape)
    b, s = check_int("batch", batch), check_int("seq_len", seq_len)
    up = (2 if shape.gated_mlp else 1) * shape.d_ff
    per_token = 2 * shape.d_model + shape.q_dim + 2 * shape.kv_dim + up
    return b * s * per_token * bytes_per_elem


_RECOMPUTE = ("none", "selective", "full")


def memory_plan(
    shape,
    device: DeviceSpec | str,
    batch: int,
    context: int,
    dtype: str | None = None,
    n_devices: int = 1,
    training: bool = False,
    recompute: str | bool = "none",
    kv_bytes_per_elem: float | None = None,
    usable_fraction: float = 1.0,
) -> MemoryPlan:
    """Weights, optimizer, KV cache and activations of a job; whether they fit on ``n_devices``.

    Inference (``training=False``): weights in ``dtype``, the KV cache for ``batch``
    sequences of ``context`` tokens, and one block's live activations while prefilling
    (:func:`inference_activation_bytes`).

    Training (``context`` is the sequence length): 16 bytes per parameter for
    mixed-precision Adam (2 weights + 2 gradients + 12 for fp32 master weights, momentum
    and variance; ZeRO, Sec. 3.1) and the activations every block keeps for its backward
    (Korthikanti et al. 2022): ``recompute="none"`` keeps 34sbh + 5as²b bytes per block,
    ``"selective"`` recomputes the attention matrix (34sbh), ``"full"`` keeps only each
    block's 2sbh-byte input (``True`` means "full"). No KV cache.

    Memory is pooled over the devices (perfect sharding); ``usable_fraction`` reserves
    room for the runtime, fragmentation and workspace.
    """
    shape, device = _as_shape(shape), as_device(device)
    b = check_int("batch", batch)
    ctx = check_int("context", context)
    n = check_int("n_devices", n_devices)
    frac = check_number("usable_fraction", usable_fraction, strict=True)
    if frac > 1:
        raise ValueError(f"usable_fraction={frac} must be in (0, 1]")
    if isinstance(recompute, bool):
        recompute = "full" if recompute else "none"
    if recompute not in _RECOMPUTE:
        raise ValueError(f"recompute={recompute!r} must be one of {_RECOMPUTE}")
    dtype, wbytes, kvb = _dtype_and_bytes(device, dtype, kv_bytes_per_elem)
    P = param_count(shape)
    act_bpe = 2 if wbytes < 4 else 4  # activations stay in 16-bit unless the model runs in fp32
    if training:
        weights, optimizer = 4.0 * P, 12.0 * P  # fp16 weights + grads, then fp32 Adam states
        per_sample_kv = 0.0
        sbh = ctx * shape.d_model * (act_bpe / 2)  # Korthikanti's sbh for b = 1
        if recompute == "full":
            per_sample_act = 2.0 * sbh * shape.n_layer
        elif recompute == "selective":
            per_sample_act = 34.0 * sbh * shape.n_layer
        else:
            per_sample_act = shape.n_layer * activation_bytes_per_layer(shape, 1, ctx, act_bpe)
    else:
        weights, optimizer = float(P * wbytes), 0.0
        per_sample_kv = kv_cache_bytes(shape, ctx, 1, kvb)
        per_sample_act = inference_activation_bytes(shape, 1, ctx, act_bpe)
    per_sample = per_sample_kv + per_sample_act
    capacity = device.mem_bytes * n * frac
    fixed = weights + optimizer
    total = fixed + b * per_sample
    max_batch = max(0, math.floor((capacity - fixed) / per_sample)) if capacity > fixed else 0
    return MemoryPlan(
        weights=weights,
        optimizer=optimizer,
        kv_cache=b * per_sample_kv,
        activations=b * per_sample_act,
        total=total,
        capacity=capacity,
        fits=total <= capacity,
        max_batch=max_batch,
        per_sample=per_sample,
        n_devices=n,
    )


def min_devices(shape, device: DeviceSpec | str, batch: int, context: int, dtype: str | None = None, **kw) -> int:
    """The fewest devices whose pooled memory holds the job of :func:`memory_plan`."""
    one = memory_plan(shape, device, batch, context, dtype=dtype, n_devices=1, **kw)
    return max(1, math.ceil(one.total / one.capacity))


# --------------------------------------------------------------------------- energy and money


def energy_joules(
    seconds: float,
    device: DeviceSpec | str,
    n_devices: int = 1,
    power_w: float | None = None,
    power_fraction: float = 1.0,
) -> float:
    """Energy of running ``n_devices`` for ``seconds``: seconds x watts x n_devices x power_fraction.

    Watts default to the device's TDP, an upper bound for the chip alone (no host,
    network or cooling; multiply by a PUE for the data centre). Llama 2 reports
    1,720,320 A100-hours for 70B at 400 W: 688 MWh (Touvron et al. 2023, Table 2).
    """
    s = check_number("seconds", seconds)
    device = as_device(device)
    n = check_int("n_devices", n_devices)
    frac = check_number("power_fraction", power_fraction)
    if power_w is None:
        if device.tdp_w is None:
            raise ValueError(f"{device.name} publishes no TDP; pass power_w=<watts> to energy_joules")
        power_w = device.tdp_w
    watts = check_number("power_w", power_w, strict=True)
    return s * watts * n * frac


def cost_dollars(
    seconds: float, device: DeviceSpec | str, n_devices: int = 1, usd_per_hour: float | None = None
) -> float:
    """Rental cost of ``n_devices`` for ``seconds``: hours x price per device-hour x n_devices.

    The default price is the device's *illustrative* ``usd_per_hour`` (see devices.py);
    pass your own quote for a real decision.
    """
    s = check_number("seconds", seconds)
    device = as_device(device)
    n = check_int("n_devices", n_devices)
    if usd_per_hour is None:
        if device.usd_per_hour is None:
            raise ValueError(f"{device.name} has no public hourly price; pass usd_per_hour=<price> to cost_dollars")
        usd_per_hour = device.usd_per_hour
    price = check_number("usd_per_hour", usd_per_hour)
    return s / 3600.0 * price * n


def cost_per_million_tokens(
    shape,
    device: DeviceSpec | str,
    batch: int = 1,
    context: int = 1024,
    dtype: str | None = None,
    n_devices: int | None = None,
    usd_per_hour: float | None = None,
    power_w: float | None = None,
) -> dict:
    """Time, energy and dollars to *generate* one million tokens by decoding (roofline lower bounds).

    Each decode step yields ``batch`` tokens at the cost of :func:`decode_step_time` with
    ``context`` cached tokens. ``n_devices`` defaults to the fewest that hold the model
    and cache (:func:`min_devices`). Energy and dollars are None where the device has no
    TDP or price and none is given. Returns a plain dict, ready for a table.
    """
    shape, device = _as_shape(shape), as_device(device)
    dtype = device.default_dtype() if dtype is None else dtype
    if n_devices is None:
        n_devices = min_devices(shape, device, batch, context, dtype=dtype)
    step = decode_step_time(shape, device, context, batch=batch, dtype=dtype, n_devices=n_devices)
    seconds = 1e6 / batch * step.seconds
    price = usd_per_hour if usd_per_hour is not None else device.usd_per_hour
    watts = power_w if power_w is not None else device.tdp_w
    joules = energy_joules(seconds, device, n_devices, power_w=watts) if watts is not None else None
    dollars = cost_dollars(seconds, device, n_devices, usd_per_hour=price) if price is not None else None
    return {
        "device": device.name,
        "kind": device.kind,
        "dtype": dtype,
        "n_devices": n_devices,
        "batch": batch,
        "context": context,
        "step_s": step.seconds,
        "bound": step.bound,
        "tokens_per_s": step.tokens_per_s,
        "seconds_per_million": seconds,
        "joules_per_million": joules,
        "kwh_per_million": None if joules is None else joules / 3.6e6,
        "usd_per_million": dollars,
        "usd_per_hour": price,
    }


def catalog_costs(shape, batch: int = 1, context: int = 1024, devices=None) -> list[dict]:
    """:func:`cost_per_million_tokens` for every device (default: the whole catalog), each at its usual dtype."""
    devices = catalog() if devices is None else [as_device(d) for d in devices]
    return [cost_per_million_tokens(shape, d, batch=batch, context=context) for d in devices]


def serving_summary(
    shape, device: DeviceSpec | str, batch: int = 1, context: int = 1024, dtype: str | None = None, n_devices: int | None = None
) -> dict:
    """Everything a serving widget shows for one (model, device, batch, context) point, as a flat dict.

    The decode step on the roofline (intensity, ridge, attainable FLOP/s, time, bound),
    the memory plan (GB = 1e9 bytes, whether it fits, the largest batch) and the cost per
    million generated tokens. ``n_devices`` defaults to the fewest that hold the job.
    """
    from .roofline import attainable_flops, ridge_point

    shape, device = _as_shape(shape), as_device(device)
    dtype = device.default_dtype() if dtype is None else dtype
    if n_devices is None:
        n_devices = min_devices(shape, device, batch, context, dtype=dtype)
    step = decode_step_time(shape, device, context, batch=batch, dtype=dtype, n_devices=n_devices)
    plan = memory_plan(shape, device, batch, context, dtype=dtype, n_devices=n_devices)
    money = cost_per_million_tokens(shape, device, batch, context, dtype=dtype, n_devices=n_devices)
    return {
        "model": shape.name,
        "device": device.name,
        "dtype": dtype,
        "n_devices": n_devices,
        "batch": batch,
        "context": context,
        "intensity": step.intensity,
        "ridge": ridge_point(device, dtype),
        "attainable_flops": attainable_flops(device, step.intensity, dtype),
        "step_s": step.seconds,
        "bound": step.bound,
        "tokens_per_s": step.tokens_per_s,
        "memory_gb": plan.total / 1e9,
        "capacity_gb": plan.capacity / 1e9,
        "fits": plan.fits,
        "max_batch": plan.max_batch,
        "usd_per_million": money["usd_per_million"],
        "kwh_per_million": money["kwh_per_million"],
    }


# --------------------------------------------------------------------------- operations of a block


def layer_ops(shape, batch: int, seq_len: int, context: int | None = None, bytes_per_elem: float = 2) -> list[Op]:
    """The operations of one transformer block's forward pass, to place on a roofline.

    ``batch`` sequences of ``seq_len`` new tokens attend to ``context`` positions
    (default ``seq_len``: a prefill; ``seq_len=1`` with a long context is a decode step).
    Each op reads its inputs from memory and writes its output (no fusion), so the
    byte counts are what an unfused implementation such as minillm's moves.
    Elementwise FLOP counts are rough: ~8 per element for a LayerNorm, ~5 for softmax,
    ~8 for GELU/SwiGLU.
    """
    shape = _as_shape(shape)
    b, s = check_int("batch", batch), check_int("seq_len", seq_len)
    ctx = s if context is None else check_int("context", context)
    e = check_number("bytes_per_elem", bytes_per_elem, strict=True)
    tok = b * s
    d, f, H, Q = shape.d_model, shape.d_ff, shape.n_head, shape.head_dim
    up = 2 * f if shape.gated_mlp else f
    scores = b * H * s * ctx
    return [
        Op("layernorm", 8.0 * tok * d, e * (2 * tok * d + 2 * d)),
        gemm_op("qkv", tok, d, shape.q_dim + 2 * shape.kv_dim, e),
        Op("attn scores", 2.0 * scores * Q, e * (tok * shape.q_dim + b * ctx * shape.kv_dim + scores)),
        Op("softmax", 5.0 * scores, e * 2 * scores),
        Op("attn x values", 2.0 * scores * Q, e * (scores + b * ctx * shape.kv_dim + tok * shape.q_dim)),
        gemm_op("attn proj", tok, shape.q_dim, d, e),
        gemm_op("mlp up", tok, d, up, e),
        Op("swiglu" if shape.gated_mlp else "gelu", 8.0 * tok * f, e * tok * (up + f)),
        gemm_op("mlp down", tok, f, d, e),
    ]


# --------------------------------------------------------------------------- lesson 09: knees, sweeps, summaries
#
# Small compositions of the functions above, for lesson 09 and its widget. Each returns
# plain data (ints, dicts of floats) so a notebook can tabulate or plot it.

__all__ += ["DEFAULT_BATCHES", "decode_knee_batch", "decode_batch_sweep", "training_cost", "serving_view"]

#: The batch sizes a decode sweep visits by default: powers of two up to 4096.
DEFAULT_BATCHES: tuple[int, ...] = tuple(2**k for k in range(13))


def decode_knee_batch(
    shape,
    device: DeviceSpec | str,
    context: int,
    dtype: str | None = None,
    kv_bytes_per_elem: float | None = None,
) -> int | None:
    """The smallest batch at which a decode step at ``context`` turns compute-bound; None if none does.

    A decode step of batch b does b·F FLOPs and moves W + b·C bytes, with F = 2N + 4·L·H·Q·context,
    W the weight bytes and C one sequence's KV cache (:func:`decode_step_time`). It is
    compute-bound once b·F/peak >= (W + b·C)/bw, that is b >= (W/bw) / (F/peak - C/bw).
    With an empty cache the knee is b = ridge x bytes_per_weight / 2, about the ridge point in
    bf16 (the scaling book, Part 7: "batch > ~240" on TPU v5e). When one sequence's KV bytes take
    longer to read than its FLOPs take to compute (C/bw >= F/peak: long contexts, little or no
    GQA) no batch is compute-bound, and the answer is None. The device count cancels out.
    """
    shape, device = _as_shape(shape), as_device(device)
    ctx = check_int("context", context, minimum=0)
    dtype, wbytes, kvb = _dtype_and_bytes(device, dtype, kv_bytes_per_elem)
    N = matmul_params(shape)
    flops_per_seq = 2.0 * N + 4.0 * shape.n_layer * shape.n_head * shape.head_dim * ctx
    kv_per_seq = kv_cache_bytes(shape, ctx, 1, kvb)
    slope = flops_per_seq / device.peak(dtype) - kv_per_seq / device.mem_bw  # seconds gained per extra sequence
    if slope <= 0:
        return None
    b = max(1, math.ceil(N * wbytes / device.mem_bw / slope))

    def bound(k: int) -> str:
        return decode_step_time(shape, device, ctx, batch=k, dtype=dtype, kv_bytes_per_elem=kvb).bound

    # The closed form can land one off through float rounding; settle it with the step's own verdict.
    while b > 1 and bound(b - 1) == "compute":
        b -= 1
    while bound(b) != "compute":
        b += 1
    return b


def decode_batch_sweep(
    shape,
    device: DeviceSpec | str,
    context: int,
    batches=None,
    dtype: str | None = None,
    n_devices: int = 1,
) -> list[dict]:
    """A decode step at each batch size on ``n_devices``: roofline time, throughput and memory.

    One dict per batch (default :data:`DEFAULT_BATCHES`) with ``batch``, ``step_s``,
    ``compute_s``, ``memory_s``, ``bound``, ``intensity`` (FLOP/byte), ``tokens_per_s``
    (batch / step), ``memory_gb`` (weights + KV cache + activations, GB = 1e9 bytes, from
    :func:`memory_plan`) and ``fits``. Plot ``tokens_per_s`` against ``batch`` to see the
    knee where weight reads stop dominating.
    """
    shape, device = _as_shape(shape), as_device(device)
    batches = DEFAULT_BATCHES if batches is None else batches
    rows = []
    for b in batches:
        step = decode_step_time(shape, device, context, batch=b, dtype=dtype, n_devices=n_devices)
        plan = memory_plan(shape, device, b, max(context, 1), dtype=step.dtype, n_devices=n_devices)
        rows.append(
            {
                "batch": step.tokens,
                "step_s": step.seconds,
                "compute_s": step.compute_s,
                "memory_s": step.memory_s,
                "bound": step.bound,
                "intensity": step.intensity,
                "tokens_per_s": step.tokens_per_s,
                "memory_gb": plan.total / 1e9,
                "fits": plan.fits,
            }
        )
    return rows


def training_cost(
    n_params,
    n_tokens: float,
    device: DeviceSpec | str,
    n_devices: int,
    mfu: float = 0.4,
    dtype: str | None = None,
    usd_per_hour: float | None = None,
    power_w: float | None = None,
) -> dict:
    """A training run in one dict: 6ND FLOPs, days, device-hours, energy and dollars.

    Time = 6ND / (n_devices x mfu x peak), the peak at ``dtype`` (default: the device's usual
    LLM dtype). ``mfu`` counts *model* FLOPs only (6ND; PaLM, Appendix B): a run that
    recomputes activations does 8ND of hardware FLOPs in the same time, so its hardware
    utilisation is 8/6 of its MFU. Energy uses the TDP (or ``power_w``) of the chips alone
    and is None without one; dollars use the illustrative price (or ``usd_per_hour``) and
    are None without one. Returns plain floats: ``flops``, ``flops_per_device`` (achieved),
    ``seconds``, ``days``, ``device_hours``, ``mwh``, ``usd``, plus the inputs.
    """
    device = as_device(device)
    dtype = device.default_dtype() if dtype is None else dtype
    u = check_number("mfu", mfu, strict=True)
    if u > 1:
        raise ValueError(f"mfu={u} must be a fraction in (0, 1], e.g. 0.4 for 40%")
    achieved = u * device.peak(dtype)
    seconds = training_time(n_params, n_tokens, n_devices, achieved)
    watts = power_w if power_w is not None else device.tdp_w
    price = usd_per_hour if usd_per_hour is not None else device.usd_per_hour
    joules = energy_joules(seconds, device, n_devices, power_w=watts) if watts is not None else None
    return {
        "device": device.name,
        "dtype": dtype,
        "n_devices": n_devices,
        "mfu": u,
        "n_params": _n_params(n_params),
        "n_tokens": float(n_tokens),
        "flops": training_flops(n_params, n_tokens),
        "flops_per_device": achieved,
        "seconds": seconds,
        "days": seconds / SECONDS_PER_DAY,
        "device_hours": seconds / 3600.0 * n_devices,
        "mwh": None if joules is None else joules / 3.6e9,
        "usd": cost_dollars(seconds, device, n_devices, usd_per_hour=price) if price is not None else None,
    }


def serving_view(
    shape,
    device: DeviceSpec | str,
    batch: int = 1,
    context: int = 1024,
    dtype: str | None = None,
    n_devices: int | None = None,
    batches=None,
) -> dict:
    """The data behind lesson 09's serving widget, for one (model, device, batch, context) point.

    ``summary``: :func:`serving_summary` (step time, bound, memory, cost per million tokens);
    ``memory_gb``: the memory plan split into weights, KV cache and activations, and the
    capacity (GB = 1e9 bytes); ``sweep``: :func:`decode_batch_sweep` over ``batches`` on the
    same devices; ``knee``: :func:`decode_knee_batch` (None if decode never turns
    compute-bound at this context). ``n_devices`` defaults to the fewest that hold the job.
    """
    shape, device = _as_shape(shape), as_device(device)
    dtype = device.default_dtype() if dtype is None else dtype
    if n_devices is None:
        n_devices = min_devices(shape, device, batch, context, dtype=dtype)
    summary = serving_summary(shape, device, batch, context, dtype=dtype, n_devices=n_devices)
    plan = memory_plan(shape, device, batch, context, dtype=dtype, n_devices=n_devices)
    return {
        "summary": summary,
        "memory_gb": {k: v for k, v in plan.as_gb().items() if k in ("weights", "kv_cache", "activations", "capacity")},
        "sweep": decode_batch_sweep(shape, device, context, batches, dtype=dtype, n_devices=n_devices),
        "knee": decode_knee_batch(shape, device, context, dtype=dtype),
    }
