"""Hand-written backward passes for the transformer's element-wise layers.

Autograd differentiates any tensor expression, but it keeps every intermediate
tensor alive and runs one kernel per operation, so a layer norm written as ten
small operations costs ten passes over memory forward and more backward. Each
``torch.autograd.Function`` below computes the same value with fewer passes and
derives its gradient by hand — the formulas are in the docstrings, and the tests
check every one against ``torch.autograd.gradcheck`` and against torch's own
layers. This is what "fusing" means, done in Python.
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
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        rstd = torch.rsqrt(var + eps)
        xhat = (x - mean).mul_(rstd)
        y = xhat * weight
        if bias is not None:
            y.add_(bias)
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        xhat, rstd, weight = ctx.saved_tensors
        g = dy * weight
        mean_g = g.mean(dim=-1, keepdim=True)
        mean_gx = (g * xhat).mean(dim=-1, keepdim=True)
        dx = g.sub_(mean_g).sub_(xhat * mean_gx).mul_(rstd)
        flat_dy = dy.reshape(-1, dy.size(-1))
        dw = (flat_dy * xhat.reshape(-1, xhat.size(-1))).sum(0) if ctx.needs_input_grad[1] else None
        db = flat_dy.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db, None


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Layer norm over the last dimension. x: [..., C], weight and bias: [C]."""
    return _LayerNorm.apply(x, weight, bias, eps)


_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class _Gelu(torch.autograd.Function):
    """GELU(x) = x·Φ(x); its derivative is Φ(x) + x·φ(x), with φ the standard normal density."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x * torch.erf(x * _SQRT_HALF).add_(1.0).mul_(0.5)

    @staticmethod
    def backward(ctx, dy: Tensor):
        (x,) = ctx.saved_tensors
        cdf = torch.erf(x * _SQRT_HALF).add_(1.0).mul_(0.5)
        pdf = torch.exp(x * x * -0.5).mul_(_INV_SQRT_2PI)
        return dy * cdf.addcmul_(x, pdf)


def gelu(x: Tensor) -> Tensor:
    """The exact GELU, x·Φ(x), with a hand-derived backward."""
    return _Gelu.apply(x)


_MASKS: dict[tuple, Tensor] = {}


def _causal_bias(Tq: int, Tk: int, device, dtype) -> Tensor:
    """[Tq, Tk] additive mask: 0 where query i may see key j (j <= i + Tk − Tq), −inf elsewhere."""
    key = (Tq, Tk, str(device), dtype)
    if key not in _MASKS:
        i = torch.arange(Tq, device=device).unsqueeze(1) + (Tk - Tq)
        j = torch.arange(Tk, device=device).unsqueeze(0)
        _MASKS[key] = torch.zeros(Tq, Tk, device=device, dtype=dtype).masked_fill_(j > i, float("-inf"))
    return _MASKS[key]


class _CausalAttention(torch.autograd.Function):
    """Y = P·V with P = softmax(Q·Kᵀ/√D + causal mask).

    Backward: dV = Pᵀ·dY; dP = dY·Vᵀ; dS = P ⊙ (dP − rowsum(dP ⊙ P)); dQ = dS·K/√D; dK = dSᵀ·Q/√D.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        scale = 1.0 / math.sqrt(q.size(-1))
        s = torch.matmul(q, k.transpose(-2, -1)).mul_(scale)
        if q.size(-2) > 1:
            s.add_(_causal_bias(q.size(-2), k.size(-2), q.device, q.dtype))
        # softmax in place: subtract the row max (stability), exponentiate, normalise
        s.sub_(s.amax(dim=-1, keepdim=True)).exp_()
        p = s.div_(s.sum(dim=-1, keepdim=True))
        ctx.save_for_backward(q, k, v, p)
        ctx.scale = scale
        return torch.matmul(p, v)

    @staticmethod
    def backward(ctx, dy: Tensor):
        q, k, v, p = ctx.saved_tensors
        dv = torch.matmul(p.transpose(-2, -1), dy)
        dp = torch.matmul(dy, v.transpose(-2, -1))
        ds = dp.sub_((dp * p).sum(dim=-1, keepdim=True)).mul_(p).mul_(ctx.scale)
        dq = torch.matmul(ds, k)
        dk = torch.matmul(ds.transpose(-2, -1), q)
        return dq, dk, dv


def causal_attention_core(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal scaled dot-product attention with a hand-derived backward.

    q: [B, H, Tq, D], k and v: [B, H, Tk, D]; queries are the last Tq positions.
    """
    return _CausalAttention.apply(q, k, v)


class _CrossEntropy(torch.autograd.Function):
    """loss = mean over kept rows of (logsumexp(z) − z[target]).

    Backward: dz = (softmax(z) − onehot(target)) / n_kept, zero on ignored rows.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, ignore_index: int) -> Tensor:
        m = logits.amax(dim=-1, keepdim=True)
        e = (logits - m).exp_()
        sumexp = e.sum(dim=-1, keepdim=True)
        lse = m + sumexp.log()
        keep = targets != ignore_index
        safe = torch.where(keep, targets, torch.zeros_like(targets))
        picked = logits.gather(-1, safe.unsqueeze(-1))
        n = keep.sum().clamp(min=1)
        loss = ((lse - picked).squeeze(-1) * keep).sum() / n
        probs = e.div_(sumexp)
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
