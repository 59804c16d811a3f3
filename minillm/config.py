"""The shape of a GPT: ``GPTConfig``, validated when it is built.

Every field is checked once, here, with a ``ValueError`` that names the field and the
fix; the model, the zoo, the checkpoints and the cost models read their shapes from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from minillm.validate import check_fraction, check_int

__all__ = ["GPTConfig"]


@dataclass
class GPTConfig:
    """The shape of a GPT.

    ``tie_weights`` shares the token embedding with the output layer, as GPT-2 does.
    Construction validates every field and raises a ``ValueError`` that names the
    field and the fix.
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    # Structured pruning leaves layers of different sizes: heads kept per layer (each of
    # head_dim = n_embd // n_head) and MLP hidden units per layer. None: n_head and 4·n_embd.
    layer_heads: tuple[int, ...] | None = None
    layer_mlp: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_int(f"GPTConfig.{name}", getattr(self, name))
        if self.n_embd % self.n_head != 0:
            lo = self.n_embd - self.n_embd % self.n_head
            raise ValueError(
                f"GPTConfig: n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                f"choose n_embd as a multiple of n_head (e.g. {lo or self.n_head} or {lo + self.n_head})"
            )
        check_fraction("GPTConfig.dropout", self.dropout)
        for name in ("bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPTConfig.{name}={getattr(self, name)!r} must be True or False")
        for name in ("layer_heads", "layer_mlp"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, (list, tuple)) or len(value) != self.n_layer:
                raise ValueError(f"GPTConfig.{name}={value!r} must list one count per layer (n_layer={self.n_layer})")
            limit = self.n_head if name == "layer_heads" else None
            for i, v in enumerate(value):
                check_int(f"GPTConfig.{name}[{i}]", v)
                if limit is not None and v > limit:
                    raise ValueError(f"GPTConfig.layer_heads[{i}]={v} exceeds n_head={limit}")
            object.__setattr__(self, name, tuple(int(v) for v in value))  # lists from a checkpoint become tuples

    def heads(self, layer: int) -> int:
        """Attention heads of ``layer``: ``layer_heads[layer]``, or ``n_head``."""
        return self.n_head if self.layer_heads is None else self.layer_heads[layer]

    def mlp_hidden(self, layer: int) -> int:
        """MLP hidden width of ``layer``: ``layer_mlp[layer]``, or ``4 · n_embd``."""
        return 4 * self.n_embd if self.layer_mlp is None else self.layer_mlp[layer]

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        """The fields as a dict; the per-layer fields only when set, so unpruned checkpoints keep their format."""
        d = asdict(self)
        for name in ("layer_heads", "layer_mlp"):
            if d[name] is None:
                del d[name]
            else:
                d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"GPTConfig: unknown field(s) {sorted(unknown)}; known fields are {sorted(names)}")
        return cls(**d)
