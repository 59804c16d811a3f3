"""Wrong answers to lesson 05's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

import math

import torch

# --------------------------------------------------------------------------- soft targets


def soft_times_T(logits, T):
    """Multiplies the logits by T."""
    z = logits * T
    z = z - z.max(-1, keepdim=True).values
    return z.exp() / z.exp().sum(-1, keepdim=True)


def soft_no_temperature(logits, T):
    """Ignores T."""
    z = logits - logits.max(-1, keepdim=True).values
    return z.exp() / z.exp().sum(-1, keepdim=True)


def soft_unstable(logits, T):
    """exp() without subtracting the maximum: overflows on large logits."""
    e = (logits / T).exp()
    return e / e.sum(-1, keepdim=True)


def soft_first_dim(logits, T):
    """Normalises over the first dimension."""
    z = logits / T
    z = z - z.max(0, keepdim=True).values
    return z.exp() / z.exp().sum(0, keepdim=True)


# --------------------------------------------------------------------------- kd loss


def _log_soft(z, T):
    z = z / T
    return z - torch.logsumexp(z, -1, keepdim=True)


def _kl(s, t, T, kind):
    ls, lt = _log_soft(s, T), _log_soft(t, T)
    a, b = (lt, ls) if kind == "forward" else (ls, lt)
    return (a.exp() * (a - b)).sum(-1)


def kd_no_T2(student_logits, teacher_logits, T=2.0, kind="forward"):
    """Forgets the T² factor."""
    return _kl(student_logits, teacher_logits, T, kind).mean()


def kd_swapped(student_logits, teacher_logits, T=2.0, kind="forward"):
    """Forward and reverse swapped."""
    return T * T * _kl(student_logits, teacher_logits, T, "reverse" if kind == "forward" else "forward").mean()


def kd_sums_tokens(student_logits, teacher_logits, T=2.0, kind="forward"):
    """Sums over positions instead of averaging."""
    return T * T * _kl(student_logits, teacher_logits, T, kind).sum()


def kd_times_T(student_logits, teacher_logits, T=2.0, kind="forward"):
    """Multiplies by T instead of T²."""
    return T * _kl(student_logits, teacher_logits, T, kind).mean()


# --------------------------------------------------------------------------- distill loss


def _ce(s, y):
    return -_log_soft(s, 1.0).gather(-1, y.unsqueeze(-1)).mean()


def distill_swapped_alpha(student_logits, teacher_logits, targets, T=2.0, alpha=0.5):
    """alpha on the cross-entropy, 1 - alpha on the KL."""
    kd = T * T * _kl(student_logits, teacher_logits, T, "forward").mean()
    return (1 - alpha) * kd + alpha * _ce(student_logits, targets)


def distill_soft_ce(student_logits, teacher_logits, targets, T=2.0, alpha=0.5):
    """Cross-entropy on the softened logits."""
    kd = T * T * _kl(student_logits, teacher_logits, T, "forward").mean()
    return alpha * kd + (1 - alpha) * _ce(student_logits / T, targets)


def distill_no_T2(student_logits, teacher_logits, targets, T=2.0, alpha=0.5):
    """KL term without T²."""
    kd = _kl(student_logits, teacher_logits, T, "forward").mean()
    return alpha * kd + (1 - alpha) * _ce(student_logits, targets)


# --------------------------------------------------------------------------- gradient


def grad_sign(student_logits, teacher_logits, T=2.0):
    """p - q instead of q - p."""
    n = student_logits.numel() // student_logits.shape[-1]
    return T * (_log_soft(teacher_logits, T).exp() - _log_soft(student_logits, T).exp()) / n


def grad_over_T(student_logits, teacher_logits, T=2.0):
    """(q - p) / T: the chain rule without the loss's T²."""
    n = student_logits.numel() // student_logits.shape[-1]
    return (_log_soft(student_logits, T).exp() - _log_soft(teacher_logits, T).exp()) / (T * n)


def grad_no_mean(student_logits, teacher_logits, T=2.0):
    """Forgets to divide by the number of positions."""
    return T * (_log_soft(student_logits, T).exp() - _log_soft(teacher_logits, T).exp())


def grad_plain_softmax(student_logits, teacher_logits, T=2.0):
    """Uses the T = 1 probabilities."""
    n = student_logits.numel() // student_logits.shape[-1]
    return T * (_log_soft(student_logits, 1.0).exp() - _log_soft(teacher_logits, 1.0).exp()) / n


# --------------------------------------------------------------------------- temperature for a ratio


def ratio_no_log(z1, z2, ratio):
    """Divides by the ratio, not its log."""
    return (z1 - z2) / ratio


def ratio_inverted(z1, z2, ratio):
    """Returns 1/T."""
    return math.log(ratio) / (z1 - z2)


def ratio_log10(z1, z2, ratio):
    """Base-10 log."""
    return (z1 - z2) / math.log10(ratio)


MUTANTS = {
    "05.soft_targets": [soft_times_T, soft_no_temperature, soft_unstable, soft_first_dim],
    "05.kd_loss": [kd_no_T2, kd_swapped, kd_sums_tokens, kd_times_T],
    "05.distill_loss": [distill_swapped_alpha, distill_soft_ce, distill_no_T2],
    "05.kd_gradient": [grad_sign, grad_over_T, grad_no_mean, grad_plain_softmax],
    "05.temperature_for_ratio": [ratio_no_log, ratio_inverted, ratio_log10],
}
