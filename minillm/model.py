"""The minillm GPT, built from tensor operations.

Everything a transformer needs is written here from primitives (matmul, exp, sum,
indexing): ``Linear``, ``Embedding``, ``LayerNorm``, ``gelu``, ``softmax``,
``causal_attention``, ``cross_entropy``, the pre-norm ``Block`` and the ``GPT``.
The tests compare each piece against its ``torch.nn`` counterpart.

The layout follows nanoGPT (Karpathy, 2022), so a reader who knows that code can
map every name: ``wte``, ``wpe``, ``h``, ``ln_f``, ``lm_head``, ``c_attn``,
``c_proj``, ``c_fc``.

Shapes use B = batch, T = sequence length, C = n_embd, H = n_head, D = C // H,
V = vocab_size.
"""

from __future__ import annotations

import math
import torch
from torch import Tensor, nn

from minillm import kernels
from minillm.config import GPTConfig
from minillm.validate import check_int, check_number

__all__ = [
    "GPTConfig",
    "Linear",
    "Embedding",
    "LayerNorm",
    "Dropout",
    "gelu",
    "softmax",
    "causal_attention",
    "cross_entropy",
    "CausalSelfAttention",
    "MLP",
    "Block",
    "GPT",
    "KVCache",
    "next_token_probs",
    "sample_next",
]


# --------------------------------------------------------------------------- layers


class Linear(nn.Module):
    """``y = x @ W.T + b``; W has shape [out_features, in_features], like ``nn.Linear``.

    x: [..., in_features] -> y: [..., out_features].
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        # Same default init as nn.Linear: U(-1/sqrt(in), 1/sqrt(in)). GPT.__init__ re-inits.
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x2 = x.reshape(-1, self.in_features)  # fold batch dims: one [N, in] @ [in, out] matmul
        if self.bias is not None:
            y = torch.addmm(self.bias, x2, self.weight.t())  # b + x·Wᵀ in one kernel
        else:
            y = x2 @ self.weight.t()
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(nn.Module):
    """A lookup table: idx [...] (int64) -> weight[idx] [..., dim]."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = nn.Parameter(torch.randn(num_embeddings, embedding_dim))

    def forward(self, idx: Tensor) -> Tensor:
        # index_select on the flattened ids: the same rows as weight[idx], 3x faster on a CPU
        return self.weight.index_select(0, idx.reshape(-1)).view(*idx.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(nn.Module):
    """Layer normalisation over the last dimension (Ba et al., 2016).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, with the biased variance,
    exactly as ``nn.LayerNorm``. x: [..., dim] -> y: [..., dim].
    """

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        # mean = x.mean(-1); var = ((x - mean)**2).mean(-1)
        # y = (x - mean) / sqrt(var + eps) * weight + bias   -- computed with a hand-written backward
        return kernels.layer_norm(x, self.weight, self.bias, self.eps)


class Dropout(nn.Module):
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = (torch.rand_like(x) >= self.p).to(x.dtype)
        return x * keep / (1.0 - self.p)


def gelu(x: Tensor) -> Tensor:
    """The exact GELU (Hendrycks & Gimpel, 2016): ``x * Phi(x)``, as ``nn.GELU()``.

    The MLP runs :func:`minillm.kernels.gelu`, the same formula with a hand-derived backward.
    """
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax: subtract the max before ``exp`` so nothing overflows."""
    x = x - x.amax(dim=dim, keepdim=True)
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def causal_attention(q: Tensor, k: Tensor, v: Tensor, return_weights: bool = False):
    """Scaled dot-product attention with a causal mask (Vaswani et al., 2017).

    q: [B, H, Tq, D], k and v: [B, H, Tk, D] with Tk >= Tq. The queries are the
    *last* Tq positions of the Tk keys (that is how a KV cache feeds them), so query
    i may attend to key j only when ``j <= i + (Tk - Tq)``.

    Returns y: [B, H, Tq, D] (and the weights [B, H, Tq, Tk] if asked).

    This is the readable definition. The model runs
    :func:`minillm.kernels.causal_attention_core`, which computes the same thing
    in place with a hand-derived backward; the tests check that they agree.
    """
    Tq, Tk = q.size(-2), k.size(-2)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
    if Tq > 1:
        i = torch.arange(Tq, device=q.device).unsqueeze(1) + (Tk - Tq)
        j = torch.arange(Tk, device=q.device).unsqueeze(0)
        scores = scores.masked_fill(j > i, float("-inf"))
    weights = softmax(scores, dim=-1)
    y = weights @ v
    return (y, weights) if return_weights else y


def cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = -1) -> Tensor:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits)``.

    logits: [N, V] float, targets: [N] int64. Positions whose target equals
    ``ignore_index`` are left out of the mean, as in ``F.cross_entropy``.
    Uses ``log_softmax = z - logsumexp(z)`` with the max subtracted for stability.
    The model's loss runs :func:`minillm.kernels.cross_entropy_loss`, the same
    value with a hand-derived backward.
    """
    m = logits.amax(dim=-1, keepdim=True)
    logsumexp = m.squeeze(-1) + torch.log(torch.exp(logits - m).sum(dim=-1))
    keep = targets != ignore_index
    safe_targets = torch.where(keep, targets, torch.zeros_like(targets))
    picked = logits.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    nll = (logsumexp - picked) * keep.to(logits.dtype)
    return nll.sum() / keep.sum().clamp(min=1).to(logits.dtype)


# --------------------------------------------------------------------------- blocks


class KVCache:
    """Keys and values of every layer for the tokens seen so far.

    ``k[l]`` and ``v[l]`` are [B, H, T_seen, D]; ``length`` is T_seen. With
    ``max_len`` the cache preallocates [B, H, max_len, D] per layer and writes new
    positions in place, so a decoding step costs no copy of the past (without it,
    each step concatenates, which copies the whole cache).
    """

    def __init__(self, n_layer: int, max_len: int | None = None) -> None:
        self.max_len = max_len
        self.k: list[Tensor | None] = [None] * n_layer
        self.v: list[Tensor | None] = [None] * n_layer
        self._kbuf: list[Tensor | None] = [None] * n_layer
        self._vbuf: list[Tensor | None] = [None] * n_layer

    @property
    def length(self) -> int:
        return 0 if self.k[0] is None else self.k[0].size(2)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append k, v [B, H, T_new, D] to ``layer``'s cache; return all keys and values so far."""
        past = 0 if self.k[layer] is None else self.k[layer].size(2)
        new = past + k.size(2)
        if self.max_len is None:
            if self.k[layer] is not None:
                k = torch.cat([self.k[layer], k], dim=2)
                v = torch.cat([self.v[layer], v], dim=2)
        else:
            if new > self.max_len:
                raise ValueError(f"KV cache holds at most max_len={self.max_len} positions, got {new}")
            if self._kbuf[layer] is None:
                B, H, _, D = k.shape
                self._kbuf[layer] = k.new_empty(B, H, self.max_len, D)
                self._vbuf[layer] = v.new_empty(B, H, self.max_len, D)
            self._kbuf[layer][:, :, past:new] = k
            self._vbuf[layer][:, :, past:new] = v
            k, v = self._kbuf[layer][:, :, :new], self._vbuf[layer][:, :, :new]
        self.k[layer], self.v[layer] = k, v
        return k, v

    def nbytes(self) -> int:
        """Bytes of the keys and values stored so far (not the preallocated room)."""
        return sum(t.numel() * t.element_size() for t in self.k + self.v if t is not None)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: one ``c_attn`` projection to Q, K, V, then ``c_proj``."""

    def __init__(self, config: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.n_head = config.heads(layer)  # fewer than config.n_head after head pruning
        self.head_dim = config.head_dim
        self.n_embd = config.n_embd
        inner = self.n_head * self.head_dim  # = n_embd unless heads were pruned
        self.c_attn = Linear(config.n_embd, 3 * inner, bias=config.bias)
        self.c_proj = Linear(inner, config.n_embd, bias=config.bias)
        self.attn_dropout = Dropout(config.dropout)
        self.resid_dropout = Dropout(config.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        """x: [B, T, C] -> [B, T, C]."""
        B, T, _ = x.shape
        H, D = self.n_head, self.head_dim
        q, k, v = self.c_attn(x).split(H * D, dim=2)
        # [B, T, H·D] -> [B, H, T, D]
        q = q.view(B, T, H, D).transpose(1, 2)
        k = k.view(B, T, H, D).transpose(1, 2)
        v = v.view(B, T, H, D).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        y = kernels.causal_attention_core(q, k, v)  # = causal_attention(q, k, v), fused
        y = y.transpose(1, 2).contiguous().view(B, T, H * D)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: C -> 4C -> GELU -> C."""

    def __init__(self, config: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        hidden = config.mlp_hidden(layer)  # 4·n_embd unless neurons were pruned
        self.c_fc = Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(kernels.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config, layer)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache=cache, layer=layer)
        x = x + self.mlp(self.ln_2(x))
        return x


# --------------------------------------------------------------------------- GPT


class GPT(nn.Module):
    """A decoder-only transformer language model (GPT-2 style)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT expects a GPTConfig, got {type(config).__name__}; build one with GPTConfig(...)")
        self.config = config
        self.wte = Embedding(config.vocab_size, config.n_embd)
        self.wpe = Embedding(config.block_size, config.n_embd)
        self.drop = Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, 0.02) everywhere, residual projections scaled by 1/sqrt(2L)."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02
                if name.endswith("c_proj.weight"):
                    std = 0.02 / math.sqrt(2 * self.config.n_layer)
                nn.init.normal_(p, mean=0.0, std=std)
            else:  # LayerNorm weights
                nn.init.ones_(p)

    # ------------------------------------------------------------------ forward

    def _check_idx(self, idx: Tensor, offset: int = 0) -> None:
        if not isinstance(idx, Tensor):
            raise ValueError(f"idx must be a LongTensor of token ids with shape [B, T], got {type(idx).__name__}")
        if idx.dim() != 2:
            raise ValueError(
                f"idx must have shape [B, T], got {tuple(idx.shape)}; add a batch dimension with idx.unsqueeze(0)"
            )
        if idx.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise ValueError(f"idx must hold integer token ids, got dtype {idx.dtype}; use idx.long()")
        T = idx.size(1)
        if offset + T > self.config.block_size:
            raise ValueError(
                f"sequence of length {offset + T} is longer than block_size={self.config.block_size}; "
                f"crop the input to its last {self.config.block_size} tokens"
            )
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            bad = int(idx.max()) if int(idx.max()) >= self.config.vocab_size else int(idx.min())
            raise ValueError(
                f"token id {bad} is outside the vocabulary [0, {self.config.vocab_size}); "
                f"encode the text with the model's own tokenizer"
            )

    def forward(
        self, idx: Tensor, targets: Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """idx: [B, T] token ids -> (logits [B, T, V], loss or None).

        ``targets`` [B, T] gives the mean cross-entropy (ids of -1 are ignored).
        With a ``cache``, idx holds only the *new* tokens; their positions continue
        from ``cache.length``.
        """
        self._check_idx(idx, cache.length if cache is not None else 0)
        return self._forward(idx, targets, cache)

    def _forward(
        self, idx: Tensor, targets: Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """:meth:`forward` without checking ``idx``: for callers that already checked it.

        ``generate`` checks the prompt once and then feeds back tokens the model
        itself sampled; checking them again would read ``idx.max()`` back to the
        host at every step, a device sync per token on a GPU.
        """
        offset = cache.length if cache is not None else 0
        T = idx.size(1)
        pos = torch.arange(offset, offset + T, device=idx.device)
        x = self.drop(self.wte(idx.long()) + self.wpe(pos))
        for i, block in enumerate(self.h):
            x = block(x, cache=cache, layer=i)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(f"targets shape {tuple(targets.shape)} must equal idx shape {tuple(idx.shape)}")
            loss = kernels.cross_entropy_loss(logits.reshape(-1, logits.size(-1)), targets.reshape(-1).long())
        return logits, loss

    # ------------------------------------------------------------------ generate

    @torch.inference_mode()  # like no_grad, minus autograd's view and version tracking
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Append ``max_new_tokens`` sampled tokens to idx [B, T] and return [B, T + max_new_tokens].

        ``temperature=0`` means greedy decoding. ``top_k`` keeps only the k most
        likely tokens. With ``use_cache`` the keys and values of past tokens are
        kept, so each new token costs one position of compute instead of the whole
        sequence; greedy decoding gives the same tokens either way. Once the
        sequence outgrows ``block_size`` the window slides, every position shifts,
        and the cache is rebuilt from the last ``block_size`` tokens at each step.
        """
        check_number("temperature", temperature)  # 0 means greedy
        if top_k is not None:
            check_int("top_k", top_k)
        check_int("max_new_tokens", max_new_tokens, minimum=0)
        self._check_idx(idx[:, -self.config.block_size :])  # once: later tokens are the model's own samples
        was_training = self.training
        self.eval()
        bs = self.config.block_size
        cache: KVCache | None = None
        for _ in range(max_new_tokens):
            if use_cache:
                if cache is not None and cache.length + 1 <= bs:
                    logits, _ = self._forward(idx[:, -1:], cache=cache)
                else:  # first step, or the window slid: (re)build the cache
                    cache = KVCache(self.config.n_layer, max_len=bs)
                    logits, _ = self._forward(idx[:, -bs:], cache=cache)
            else:
                logits, _ = self._forward(idx[:, -bs:])
            logits = logits[:, -1, :]
            idx_next = sample_next(logits, temperature, top_k, generator)
            idx = torch.cat([idx, idx_next], dim=1)
        self.train(was_training)
        return idx

    # ------------------------------------------------------------------ counting

    def num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters (a tied embedding counts once).

        With ``non_embedding`` the position embedding is left out, the nanoGPT
        convention; the token embedding stays because it is also the output layer.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token: ``6N + 12·L·H·D·T`` (PaLM appendix B, which writes Q for D; nanoGPT's estimate_mfu).

        N is :meth:`num_params` (non-embedding), L layers, H heads, D head dim and
        T the sequence length (``block_size`` by default). 6N covers the forward
        (2N) and backward (4N) matmuls with the weights; the second term is the
        attention scores and the weighted sum of values.
        """
        c = self.config
        T = c.block_size if seq_len is None else seq_len
        heads = sum(c.heads(i) for i in range(c.n_layer))  # L·H unless heads were pruned
        return 6 * self.num_params() + 12 * heads * c.head_dim * T


def next_token_probs(logits: Tensor, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
    """The sampling distribution over the next token: logits [..., V] -> probabilities [..., V].

    Dividing by ``temperature`` sharpens (< 1) or flattens (> 1) the distribution;
    ``temperature=0`` is greedy, all mass on the arg-max. ``top_k`` keeps the k most
    likely tokens and renormalises over them.
    """
    if temperature == 0:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return softmax(logits, dim=-1)


def sample_next(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Pick the next token from logits [B, V]; returns [B, 1]. temperature 0 is greedy."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = next_token_probs(logits, temperature, top_k)
    return torch.multinomial(probs, num_samples=1, generator=generator)
