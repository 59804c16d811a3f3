"""Wrong answers to lesson 01's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

import math

import torch


def _softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    x = x - x.amax(dim=dim, keepdim=True)
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)


def _mask(T: int, diagonal: int = 1) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool).triu(diagonal)


# --------------------------------------------------------------------------- causal attention


def attention_unscaled(q, k, v):
    """Forgets the 1/sqrt(D) scale."""
    s = (q @ k.transpose(-2, -1)).masked_fill(_mask(q.size(-2)), float("-inf"))
    return _softmax(s) @ v


def attention_no_mask(q, k, v):
    """Lets every query see the future."""
    return _softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))) @ v


def attention_strict_mask(q, k, v):
    """Masks the diagonal too (j >= i), so the first row is all -inf."""
    s = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(_mask(q.size(-2), 0), float("-inf"))
    return _softmax(s) @ v


def attention_softmax_wrong_dim(q, k, v):
    """Normalises over the queries instead of the keys."""
    s = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(_mask(q.size(-2)), float("-inf"))
    return torch.nan_to_num(_softmax(s, dim=-2)) @ v


def attention_naive_exp(q, k, v):
    """exp() without subtracting the max: overflows on large scores."""
    s = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(_mask(q.size(-2)), float("-inf"))
    e = s.exp()
    return e / e.sum(-1, keepdim=True) @ v


def attention_mask_after_softmax(q, k, v):
    """Zeroes the future after the softmax, so the rows no longer sum to 1."""
    w = _softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)))
    return w.masked_fill(_mask(q.size(-2)), 0.0) @ v


# --------------------------------------------------------------------------- layer norm


def layer_norm_unbiased(x, weight, bias, eps=1e-5):
    """Uses the unbiased (C - 1) variance."""
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(-1, keepdim=True) + eps) * weight + bias


def layer_norm_eps_outside(x, weight, bias, eps=1e-5):
    """Adds eps after the square root."""
    mean = x.mean(-1, keepdim=True)
    std = ((x - mean) ** 2).mean(-1, keepdim=True).sqrt()
    return (x - mean) / (std + eps) * weight + bias


def layer_norm_no_affine(x, weight, bias, eps=1e-5):
    """Forgets the weight and bias."""
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + eps)


def layer_norm_wrong_dim(x, weight, bias, eps=1e-5):
    """Normalises over the first dimension."""
    mean = x.mean(0, keepdim=True)
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(0, keepdim=True) + eps) * weight + bias


def layer_norm_one_pass(x, weight, bias, eps=1e-5):
    """Variance as E[x²] - E[x]², which cancels catastrophically for a large mean."""
    mean = x.mean(-1, keepdim=True)
    var = (x * x).mean(-1, keepdim=True) - mean * mean
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


# --------------------------------------------------------------------------- cross-entropy


def cross_entropy_sum(logits, targets):
    """Sums over the rows instead of averaging."""
    lse = torch.logsumexp(logits, -1)
    return (lse - logits[torch.arange(len(targets)), targets]).sum()


def cross_entropy_naive(logits, targets):
    """log(softmax) with a plain exp(): inf/NaN for large logits."""
    p = logits.exp() / logits.exp().sum(-1, keepdim=True)
    return -p[torch.arange(len(targets)), targets].log().mean()


def cross_entropy_sign(logits, targets):
    """Returns the log-likelihood, not its negative."""
    lse = torch.logsumexp(logits, -1)
    return (logits[torch.arange(len(targets)), targets] - lse).mean()


def cross_entropy_no_normaliser(logits, targets):
    """Forgets the log-sum-exp: -logit[target] alone."""
    return -logits[torch.arange(len(targets)), targets].mean()


# --------------------------------------------------------------------------- AdamW


def adamw_l2(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Adam with L2 regularisation (decay through the gradient), not decoupled decay."""
    b1, b2 = betas
    grad = grad + weight_decay * param
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    mh, vh = m / (1 - b1**step), v / (1 - b2**step)
    return param - lr * mh / (vh.sqrt() + eps), m, v


def adamw_no_bias_correction(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Skips the bias correction of m and v."""
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    return param - lr * m / (v.sqrt() + eps), m, v


def adamw_eps_inside(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Puts eps inside the square root."""
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    mh, vh = m / (1 - b1**step), v / (1 - b2**step)
    return param - lr * mh / (vh + eps).sqrt(), m, v


def adamw_step_from_zero(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Counts steps from 0 in the bias correction (t = step - 1)."""
    b1, b2 = betas
    t = step - 1
    param = param * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    mh, vh = m / (1 - b1**t), v / (1 - b2**t)
    return param - lr * mh / (vh.sqrt() + eps), m, v


def adamw_grad_not_squared(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Tracks |grad| instead of grad² in v."""
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad.abs()
    mh, vh = m / (1 - b1**step), v / (1 - b2**step)
    return param - lr * mh / (vh.sqrt() + eps), m, v


MUTANTS = {
    "01.causal_attention": [
        attention_unscaled,
        attention_no_mask,
        attention_strict_mask,
        attention_softmax_wrong_dim,
        attention_naive_exp,
        attention_mask_after_softmax,
    ],
    "01.layer_norm": [
        layer_norm_unbiased,
        layer_norm_eps_outside,
        layer_norm_no_affine,
        layer_norm_wrong_dim,
        layer_norm_one_pass,
    ],
    "01.cross_entropy": [cross_entropy_sum, cross_entropy_naive, cross_entropy_sign, cross_entropy_no_normaliser],
    "01.adamw_step": [adamw_l2, adamw_no_bias_correction, adamw_eps_inside, adamw_step_from_zero, adamw_grad_not_squared],
}


# --------------------------------------------------------------------------- parameter count


def count_params_no_bias(vocab_size, block_size, n_layer, n_embd):
    """Forgets the Linear biases."""
    C = n_embd
    return vocab_size * C + block_size * C + n_layer * (4 * C + 12 * C * C) + 2 * C


def count_params_untied(vocab_size, block_size, n_layer, n_embd):
    """Counts lm_head separately although it is tied to wte."""
    C = n_embd
    block = 4 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C)
    return 2 * vocab_size * C + block_size * C + n_layer * block + 2 * C


def count_params_no_wpe(vocab_size, block_size, n_layer, n_embd):
    """Leaves out the position embedding."""
    C = n_embd
    block = 4 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C)
    return vocab_size * C + n_layer * block + 2 * C


def count_params_float(vocab_size, block_size, n_layer, n_embd):
    """Returns the right count as a float estimate 12·L·C² + (V + T)·C."""
    C = n_embd
    return float(12 * n_layer * C * C + (vocab_size + block_size) * C)


MUTANTS["01.count_params"] = [count_params_no_bias, count_params_untied, count_params_no_wpe, count_params_float]


# --------------------------------------------------------------------------- late additions (issue 11)


def attention_reversed_mask(q, k, v):
    """Masks the past (j < i) instead of the future."""
    s = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(
        torch.ones(q.size(-2), q.size(-2), dtype=torch.bool).tril(-1), float("-inf")
    )
    return _softmax(s) @ v


def adamw_decay_after(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Applies the weight decay after the Adam update, to the parameter it already moved."""
    b1, b2 = betas
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    mh, vh = m / (1 - b1**step), v / (1 - b2**step)
    param = param - lr * mh / (vh.sqrt() + eps)
    return param - lr * weight_decay * param, m, v


def decode_positions_off_by_one(prompt_len, n_new):
    """Counts the last sampled token as fed back: p + i + 1 positions at step i."""
    p, n = prompt_len, n_new
    return n * p + n * (n + 1) // 2, p + n - 1 if n else 0


def decode_positions_cache_forgets_prompt(prompt_len, n_new):
    """With a cache, counts one position per step, forgetting the first step runs the prompt."""
    p, n = prompt_len, n_new
    return n * p + n * (n - 1) // 2, n


def decode_positions_whole_sequence(prompt_len, n_new):
    """Without a cache, runs the final length p + n at every step."""
    p, n = prompt_len, n_new
    return n * (p + n), p + n - 1 if n else 0


MUTANTS["01.causal_attention"].append(attention_reversed_mask)
MUTANTS["01.adamw_step"].append(adamw_decay_after)
MUTANTS["01.decode_positions"] = [
    decode_positions_off_by_one,
    decode_positions_cache_forgets_prompt,
    decode_positions_whole_sequence,
]

#: The hint each mutant's verdict must contain: the check names the mistake, not a generic fix.
HINTS = {
    "attention_reversed_mask": "the mask is reversed",
    "attention_no_mask": "mask the future",
    "attention_strict_mask": "the diagonal must stay visible",
    "adamw_decay_after": "decay first, as torch does",
    "adamw_l2": "Adam + L2",
    "decode_positions_off_by_one": "the last step runs p + n - 1 positions",
    "decode_positions_cache_forgets_prompt": "the first step still runs the whole prompt",
    "decode_positions_whole_sequence": "step i re-runs the prompt and the i tokens",
}
