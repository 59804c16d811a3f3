"""Model shapes and what they count: parameters and FLOPs per token.

:class:`ModelShape` describes a decoder-only transformer as far as cost is concerned;
presets (:func:`get_model`) carry published models with their sources, and
:func:`from_config` reads a minillm GPTConfig. Counting: :func:`param_count` (exact),
:func:`matmul_params` (the N of 2N FLOPs per token) and :func:`flops_per_token`
(6N + 12·L·H·Q·T, PaLM Appendix B).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from minillm.validate import check_int

__all__ = [
    "ModelShape",
    "from_config",
    "get_model",
    "list_models",
    "model_source",
    "as_shape",
    "layer_params",
    "param_count",
    "matmul_params",
    "flops_per_token",
]


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


def from_config(config, name: str = "minillm GPT") -> ModelShape:
    """ModelShape of a minillm GPT: GPT-2 layout, 4x MLP with GELU, LayerNorm, learned positions.

    ``name`` labels the shape in tables (e.g. ``from_config(TEACHER, name="teacher")``).
    """
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
        name=name,
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


def as_shape(shape) -> ModelShape:
    """A ModelShape from a ModelShape, a preset name ("llama2-7b") or a minillm GPTConfig."""
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
    shape = as_shape(shape)
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
    shape = as_shape(shape)
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
    shape = as_shape(shape)
    untied_input = 0 if shape.tied_embeddings else shape.vocab_size * shape.d_model
    return param_count(shape, non_embedding=True) - untied_input


def flops_per_token(shape, seq_len: int) -> float:
    """Training FLOPs per token: ``6N + 12·L·H·Q·T`` (PaLM, Appendix B; nanoGPT's estimate_mfu).

    N = ``param_count(shape, non_embedding=True)``; 6N is the forward (2N) and backward
    (4N) of every weight matmul, and 12·L·H·Q·T the attention scores and weighted values
    over a context of T tokens. Forward only (inference) is a third of this.
    """
    shape = as_shape(shape)
    T = check_int("seq_len", seq_len)
    N = param_count(shape, non_embedding=True)
    return 6.0 * N + 12.0 * shape.n_layer * shape.n_head * shape.head_dim * T
