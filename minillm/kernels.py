"""Hand-written backward passes for the transformer's element-wise layers.

Autograd differentiates any tensor expression, but it keeps every intermediate
tensor alive and runs one kernel per operation, so a layer norm written as ten
small operations costs ten passes over memory forward and more backward. Each
``torch.autograd.Function`` below computes the same value with fewer passes and
derives its gradient by hand — the formulas are in the docstrings, and the tests
check every one against ``torch.autograd.gradcheck`` and against torch's own
layers. This is what "fusing" means, done in Python.

Two reductions use torch's vectorised kernels rather than a chain of small
operations: ``torch.softmax`` (the readable version is ``minillm.model.softmax``)
and ``torch.logsumexp``. On a CPU a plain ``exp`` is several times slower and hits
a denormal slow path when values are far below the maximum.

Outside autograd (generation, evaluation, serving) there is no backward to feed, and
the layer norm and GELU call torch's fused kernels: one pass over memory where Python
can only chain operations, each a pass of its own. That is fusion's real payoff, and
a small model like the teacher (128 wide) spends much of its forward in exactly these
memory-bound layers. The Functions below do the same arithmetic in tensor operations,
and the tests hold both paths to the definitions in :mod:`minillm.model`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["layer_norm", "gelu", "causal_attention_core", "cross_entropy_loss"]


class _LayerNorm(torch.autograd.Function):
    """y = x̂·w + b with x̂ = (x − μ)·r, r = 1/sqrt(σ² + eps), over the last dim of size C.

    Backward (with g = dy·w): dx = r·(g − mean(g) − x̂·mean(g·x̂)); dw = Σ dy·x̂; db = Σ dy.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, eps: float) -> Tensor:
        xhat = x - x.mean(dim=-1, keepdim=True)
        # σ² = ‖x − μ‖² / C: vector_norm reads x − μ once, with no squared copy
        var = torch.linalg.vector_norm(xhat, dim=-1, keepdim=True).mul_(1.0 / math.sqrt(x.size(-1))).square_()
        rstd = var.add_(eps).rsqrt_()
        xhat.mul_(rstd)
        y = xhat * weight if bias is None else torch.addcmul(bias, xhat, weight)  # b + x̂·w in one pass
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        xhat, rstd, weight = ctx.saved_tensors
        C = dy.size(-1)
        dy2, xhat2 = dy.reshape(-1, C), xhat.reshape(-1, C)  # [R, C], R = all positions
        # One product of two full tensors, P = dY ⊙ x̂, serves both sums that need it:
        # dw = Σ_rows P, and mean(g·x̂) = P·w / C (a matrix-vector product, since g = dY·w).
        # Likewise mean(g) = dY·w / C. Products of two big tensors are the expensive passes.
        prod = dy2 * xhat2
        mean_g = (dy2 @ weight).div_(C).view(*dy.shape[:-1], 1)
        mean_gx = (prod @ weight).div_(C).view(*dy.shape[:-1], 1)
        dx = (dy * weight).sub_(mean_g).addcmul_(xhat, mean_gx, value=-1.0).mul_(rstd)
        dw = prod.sum(0) if ctx.needs_input_grad[1] else None
        db = dy2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db, None


def _needs_grad(*ts: Tensor | None) -> bool:
    # Outside autograd (generation, evaluation) a Function's bookkeeping is pure
    # overhead, and at one token per step it is a large share of the time.
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Layer norm over the last dimension. x: [..., C], weight and bias: [C]."""
    if _needs_grad(x, weight, bias):
        return _LayerNorm.apply(x, weight, bias, eps)
    # Inference: torch's fused layer-norm kernel, which reads x once and writes y once.
    # The leanest chain of tensor operations (mean, x − μ, a norm for the variance, the
    # scale, then bias + x̂·w in one addcmul) makes five passes and nine dispatches; in
    # the teacher's forward that cost 1.4x the fused kernel, about 5% of the whole
    # forward. _LayerNorm.forward above is the same arithmetic spelled out, and the tests
    # hold the two paths to each other and to the definition.
    return torch.nn.functional.layer_norm(x, (x.size(-1),), weight, bias, eps)


_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class _Gelu(torch.autograd.Function):
    """GELU(x) = x·Φ(x); its derivative is Φ(x) + x·φ(x), with φ the standard normal density."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        # Φ(x) = erfc(−x/√2)/2, built in one new tensor updated in place (three passes),
        # and kept for the backward pass.
        cdf = torch.mul(x, -_SQRT_HALF).erfc_().mul_(0.5)
        ctx.save_for_backward(x, cdf)
        return x * cdf

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, cdf = ctx.saved_tensors
        t = torch.mul(x, x).mul_(-0.5).exp_()  # exp(−x²/2) = √(2π)·φ(x)
        # Φ + x·φ in one addcmul written over t, then times dY: five passes in all
        return torch.addcmul(cdf, t, x, value=_INV_SQRT_2PI, out=t).mul_(dy)


def gelu(x: Tensor) -> Tensor:
    """The exact GELU, x·Φ(x), with a hand-derived backward."""
    if _needs_grad(x):
        return _Gelu.apply(x)
    # Inference: torch's fused GELU kernel, one pass over x. Spelled with tensor
    # operations, x·Φ(x) = x·erfc(−x/√2)/2 takes four passes (a scaled copy, erfc and two
    # multiplies), each over a tensor too big for the L1 cache; at the teacher's 2 x 256
    # tokens that was 2.6x the fused kernel's time and a third of the gap between this
    # model's inference forward and the torch.nn copy's. The value is the same function
    # (the tests compare it with the formula), as with torch.softmax in the attention.
    return torch.nn.functional.gelu(x)


_MASKS: dict[tuple, Tensor] = {}


def _causal_bias(Tq: int, Tk: int, device, dtype) -> Tensor:
    """[Tq, Tk] additive mask: 0 where query i may see key j (j <= i + Tk − Tq), −inf elsewhere."""
    key = (Tq, Tk, str(device), dtype)
    if key not in _MASKS:
        i = torch.arange(Tq, device=device).unsqueeze(1) + (Tk - Tq)
        j = torch.arange(Tk, device=device).unsqueeze(0)
        _MASKS[key] = torch.zeros(Tq, Tk, device=device, dtype=dtype).masked_fill_(j > i, float("-inf"))
    return _MASKS[key]


# Causal attention wastes half its work on scores it then masks: query i sees only keys
# 0..i. Splitting the queries into blocks, each block multiplies only against the keys it
# can see: with n blocks the score matrices hold (n + 1) / 2n of the full T x T, and each
# block's P is small enough to stay in cache. FlashAttention skips masked tiles the same
# way (Dao et al. 2022, Sec. 3.1). On a CPU, blocks of 64 queries measured best for the
# teacher (T = 256: 4 blocks, forward and backward together about 2x faster than one block).
QUERY_BLOCK = 64


def _query_blocks(Tq: int, Tk: int) -> list[tuple[int, int, int]]:
    """(first query, end query, end key) of each block of at most QUERY_BLOCK queries;
    the queries are the last Tq of Tk positions (Tk > Tq with a KV cache)."""
    off = Tk - Tq
    return [(a, min(a + QUERY_BLOCK, Tq), min(a + QUERY_BLOCK, Tq) + off) for a in range(0, Tq, QUERY_BLOCK)]


def _flat(x: Tensor) -> Tensor:
    """[B, H, m, n] -> [B·H, m, n] for bmm; a view (no copy) when B and H merge, as they do for
    slices along the last two dims of a contiguous tensor."""
    return x.reshape(-1, x.size(-2), x.size(-1))


def _attention_blocks(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor, list[Tensor]]:
    """Y and each query block's P = softmax(Q·Kᵀ·scale + mask) over the keys it can see.

    Returns (Y [B, H, Tq, D] as a view of a [B, Tq, H, D] buffer, the scaled Q·scale, K
    and V as dense [B, H, T, D] tensors, the list of P blocks); the backward pass reuses
    all of them.
    """
    B, H, Tq, D = q.shape
    # q, k and v are views into c_attn's output (every head's slice has gaps between rows),
    # and a matmul copies such a view to a dense one on every call. Copy each once here,
    # the scale folded into q's copy: scaling q ([T, D]) rather than the scores ([T, T])
    # saves a pass over the big matrix.
    qs = torch.mul(q, scale, out=q.new_empty(q.shape))
    k, v = k.contiguous(), v.contiguous()
    # Y goes straight into the [B, Tq, H, D] layout the caller's head merge needs, so
    # neither a concatenation of the blocks nor the merge copies it again.
    y = q.new_empty(B, Tq, H, D).transpose(1, 2)
    ps = []
    for a, e, ke in _query_blocks(Tq, k.size(-2)):
        s = torch.bmm(_flat(qs[..., a:e, :]), _flat(k[..., :ke, :]).transpose(-2, -1)).view(B, H, e - a, ke)
        if e - a > 1:  # only the last e - a keys can be in the future of a query in this block
            s[..., ke - (e - a) :].add_(_causal_bias(e - a, e - a, q.device, q.dtype))
        # softmax over the keys. torch.softmax is one vectorised pass that subtracts the
        # row max, exponentiates and normalises (minillm.model.softmax spells the same
        # steps out); a plain exp_ here is several times slower on a CPU and falls into
        # a denormal slow path when scores are far below the row max.
        p = torch.softmax(s, dim=-1)
        ps.append(p)
        y[..., a:e, :] = torch.bmm(_flat(p), _flat(v[..., :ke, :])).view(B, H, e - a, D)
    return y, qs, k, v, ps


class _CausalAttention(torch.autograd.Function):
    """Y = P·V with P = softmax(Q·Kᵀ/√D + causal mask), computed per query block (above).

    Backward, per block: dV += Pᵀ·dY; dP = dY·Vᵀ; dS = P ⊙ (dP − Δ); dQ = dS·K/√D;
    dK += dSᵀ·Q/√D (over the keys the block sees). Δ = rowsum(dP ⊙ P) is the softmax's
    correction term; since dP = dY·Vᵀ and Y = P·V it equals rowsum(dY ⊙ Y), a sum over D
    rather than over the keys, computed once for all blocks (FlashAttention-2's D_i:
    Dao 2023, Sec. 3.1.2).
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        scale = 1.0 / math.sqrt(q.size(-1))
        y, qs, kc, vc, ps = _attention_blocks(q, k, v, scale)
        ctx.save_for_backward(qs, kc, vc, y, *ps)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        qs, k, v, y, *ps = ctx.saved_tensors
        dy = dy.contiguous()  # block slices of a dense dY feed bmm without a copy each
        delta = torch.linalg.vecdot(dy, y).unsqueeze(-1)  # Δ = rowsum(dY ⊙ Y) [B, H, Tq, 1]
        dq, dk, dv = torch.empty_like(qs), torch.zeros_like(k), torch.zeros_like(v)
        for (a, e, ke), p in zip(_query_blocks(qs.size(-2), k.size(-2)), ps):
            dyb, pf = _flat(dy[..., a:e, :]), _flat(p)
            dv[..., :ke, :] += torch.bmm(pf.transpose(-2, -1), dyb).view(dv.shape[:2] + (ke, -1))  # dV += Pᵀ·dY
            dp = torch.bmm(dyb, _flat(v[..., :ke, :]).transpose(-2, -1))
            ds = dp.sub_(_flat(delta[..., a:e, :])).mul_(pf)
            torch.bmm(ds, _flat(k[..., :ke, :]), out=_flat(dq[..., a:e, :]))
            dk[..., :ke, :] += torch.bmm(ds.transpose(-2, -1), _flat(qs[..., a:e, :])).view(dk.shape[:2] + (ke, -1))  # qs = Q/√D
        return dq.mul_(ctx.scale), dk, dv


def _attention_inference(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """Y as :func:`_attention_blocks` computes it, when no backward pass will need each P.

    Every block's scores go into one reused buffer, and the softmax overwrites them in
    place, so the working set stays one block's size (it fits in the L2 cache) instead
    of growing by two score matrices per block. Y is written straight into a
    [B, Tq, H, D] buffer and returned as a [B, H, Tq, D] view of it, so the caller's
    ``transpose(1, 2).contiguous()`` that merges the heads copies nothing.
    """
    B, H, Tq, D = q.shape
    Tk = k.size(-2)
    qs = q * scale
    blocks = _query_blocks(Tq, Tk)
    if len(blocks) > 1:  # see _attention_blocks: copy the strided k and v once, not per block
        k, v = k.contiguous(), v.contiguous()
    rows = blocks[0][1] - blocks[0][0]
    buf = q.new_empty(B * H * rows * Tk)
    y = q.new_empty(B, Tq, H, D).transpose(1, 2)
    for a, e, ke in blocks:
        s = buf[: B * H * (e - a) * ke].view(B, H, e - a, ke)
        torch.matmul(qs[..., a:e, :], k[..., :ke, :].transpose(-2, -1), out=s)
        if e - a > 1:
            s[..., ke - (e - a) :].add_(_causal_bias(e - a, e - a, q.device, q.dtype))
        # torch.softmax has no in-place form; its kernel reads each row before writing
        # it, so the out= overload may alias its input.
        torch._softmax(s, -1, False, out=s)
        y[..., a:e, :] = torch.matmul(s, v[..., :ke, :])
    return y


def causal_attention_core(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal scaled dot-product attention with a hand-derived backward.

    q: [B, H, Tq, D], k and v: [B, H, Tk, D]; queries are the last Tq positions.
    Returns [B, H, Tq, D] (at inference, a view of a [B, Tq, H, D] buffer).
    """
    if _needs_grad(q, k, v):
        return _CausalAttention.apply(q, k, v)
    return _attention_inference(q, k, v, 1.0 / math.sqrt(q.size(-1)))


class _CrossEntropy(torch.autograd.Function):
    """loss = mean over kept rows of (logsumexp(z) − z[target]).

    Backward: dz = (softmax(z) − onehot(target)) / n_kept, zero on ignored rows.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, ignore_index: int) -> Tensor:
        lse = torch.logsumexp(logits, dim=-1, keepdim=True)  # max-shifted log Σ exp, one kernel
        keep = targets != ignore_index
        safe = torch.where(keep, targets, torch.zeros_like(targets))
        picked = logits.gather(-1, safe.unsqueeze(-1))
        n = keep.sum().clamp(min=1)
        loss = ((lse - picked).squeeze(-1) * keep).sum() / n
        probs = torch.softmax(logits, dim=-1)
        ctx.save_for_backward(probs, safe, keep, n)
        return loss

    @staticmethod
    def backward(ctx, dloss: Tensor):
        probs, safe, keep, n = ctx.saved_tensors
        dz = probs.clone()
        dz.scatter_add_(-1, safe.unsqueeze(-1), -torch.ones_like(safe, dtype=dz.dtype).unsqueeze(-1))
        dz.mul_((keep.to(dz.dtype) * (dloss / n)).unsqueeze(-1))
        return dz, None, None


def cross_entropy_loss(logits: Tensor, targets: Tensor, ignore_index: int = -1) -> Tensor:
    """Mean cross-entropy of logits [N, V] against targets [N] with a hand-derived backward."""
    return _CrossEntropy.apply(logits, targets, ignore_index)
