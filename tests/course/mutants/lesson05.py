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


def soft_global_max(logits, T):
    """Subtracts the maximum of the whole tensor, not each row's: rows far below it underflow to 0/0."""
    z = logits / T
    z = z - z.max()
    return z.exp() / z.exp().sum(-1, keepdim=True)


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


# --------------------------------------------------------------------------- found in the learner's review


def kd_batchmean(student_logits, teacher_logits, T=2.0, kind="forward"):
    """Divides the summed KL by the batch size only, as kl_div's 'batchmean' does on [B, T, V]."""
    return T * T * _kl(student_logits, teacher_logits, T, kind).sum() / student_logits.shape[0]


def kd_reverse_sign(student_logits, teacher_logits, T=2.0, kind="forward"):
    """Reverse KL with the logs subtracted the wrong way round: a negative 'KL'."""
    if kind == "forward":
        return T * T * _kl(student_logits, teacher_logits, T, "forward").mean()
    return -T * T * _kl(student_logits, teacher_logits, T, "reverse").mean()


def kd_log_of_softmax(student_logits, teacher_logits, T=2.0, kind="forward"):
    """log(softmax) instead of a log-softmax: -inf, then NaN, where a probability underflows."""
    def soft(z):
        z = z / T - (z / T).max(-1, keepdim=True).values
        return z.exp() / z.exp().sum(-1, keepdim=True)
    ps, pt = soft(student_logits), soft(teacher_logits)
    a, b = (pt, ps) if kind == "forward" else (ps, pt)
    return T * T * (a * (a.log() - b.log())).sum(-1).mean()


def kd_no_softening(student_logits, teacher_logits, T=2.0, kind="forward"):
    """Multiplies by T² but compares the plain softmaxes."""
    return T * T * _kl(student_logits, teacher_logits, 1.0, kind).mean()


def kd_cross_entropy(student_logits, teacher_logits, T=2.0, kind="forward"):
    """The soft cross-entropy Σ −p log q: the KL plus the teacher's entropy."""
    ls, lt = _log_soft(student_logits, T), _log_soft(teacher_logits, T)
    a, b = (lt, ls) if kind == "forward" else (ls, lt)
    return T * T * (-(a.exp() * b).sum(-1)).mean()


def distill_ce_sum(student_logits, teacher_logits, targets, T=2.0, alpha=0.5):
    """Sums the cross-entropy over positions."""
    kd = T * T * _kl(student_logits, teacher_logits, T, "forward").mean()
    return alpha * kd + (1 - alpha) * _ce(student_logits, targets) * targets.numel()


def distill_ce_of_teacher(student_logits, teacher_logits, targets, T=2.0, alpha=0.5):
    """Takes the cross-entropy of the teacher's logits."""
    kd = T * T * _kl(student_logits, teacher_logits, T, "forward").mean()
    return alpha * kd + (1 - alpha) * _ce(teacher_logits, targets)


def distill_ce_times_T2(student_logits, teacher_logits, targets, T=2.0, alpha=0.5):
    """Puts T² on the cross-entropy too."""
    kd = T * T * _kl(student_logits, teacher_logits, T, "forward").mean()
    return alpha * kd + (1 - alpha) * T * T * _ce(student_logits, targets)


def grad_n_logits(student_logits, teacher_logits, T=2.0):
    """Divides by every logit (numel), not by the number of positions."""
    return T * (_log_soft(student_logits, T).exp() - _log_soft(teacher_logits, T).exp()) / student_logits.numel()


def grad_n_batch(student_logits, teacher_logits, T=2.0):
    """Divides by the batch size only."""
    return T * (_log_soft(student_logits, T).exp() - _log_soft(teacher_logits, T).exp()) / student_logits.shape[0]


def grad_T_squared(student_logits, teacher_logits, T=2.0):
    """Keeps T² and forgets the chain rule's 1/T."""
    n = student_logits.numel() // student_logits.shape[-1]
    return T * T * (_log_soft(student_logits, T).exp() - _log_soft(teacher_logits, T).exp()) / n


def ratio_gap_reversed(z1, z2, ratio):
    """z2 − z1: a negative temperature."""
    return (z2 - z1) / math.log(ratio)


def ratio_log2(z1, z2, ratio):
    """Base-2 log."""
    return (z1 - z2) / math.log2(ratio)


MUTANTS = {
    "05.soft_targets": [soft_times_T, soft_no_temperature, soft_unstable, soft_first_dim, soft_global_max],
    "05.kd_loss": [kd_no_T2, kd_swapped, kd_sums_tokens, kd_times_T, kd_batchmean, kd_reverse_sign, kd_log_of_softmax,
                   kd_no_softening, kd_cross_entropy],
    "05.distill_loss": [distill_swapped_alpha, distill_soft_ce, distill_no_T2, distill_ce_sum, distill_ce_of_teacher,
                        distill_ce_times_T2],
    "05.kd_gradient": [grad_sign, grad_over_T, grad_no_mean, grad_plain_softmax, grad_n_logits, grad_n_batch, grad_T_squared],
    "05.temperature_for_ratio": [ratio_no_log, ratio_inverted, ratio_log10, ratio_gap_reversed, ratio_log2],
}

#: The phrase each mutant's verdict must contain: the check names the mistake, not a generic fix
#: (tests/course/test_course_hints.py).
HINTS = {
    "soft_times_T": "you multiplied",
    "soft_no_temperature": "without it every T gives the plain softmax",
    "soft_unstable": "exp(300) overflows",
    "soft_global_max": "one global maximum",
    "soft_first_dim": "not the first",
    "kd_no_T2": "multiply by T²",
    "kd_swapped": "that is the reverse KL",
    "kd_sums_tokens": "do not sum",
    "kd_times_T": "the factor is T², not T",
    "kd_batchmean": "not only by the batch size",
    "kd_reverse_sign": "a KL is never negative",
    "kd_log_of_softmax": "logsumexp",
    "kd_no_softening": "divide both logits by T before the softmax",
    "kd_cross_entropy": "that is the cross-entropy",
    "distill_swapped_alpha": "you swapped them",
    "distill_soft_ce": "the plain logits (T = 1)",
    "distill_no_T2": "keep the T² factor",
    "distill_ce_sum": "do not sum it",
    "distill_ce_of_teacher": "the cross-entropy is the student's",
    "distill_ce_times_T2": "T² multiplies the KL term only",
    "grad_sign": "the sign",
    "grad_over_T": "not (q − p)/T",
    "grad_no_mean": "divide by their number",
    "grad_plain_softmax": "soften both with T",
    "grad_n_logits": "not of logits",
    "grad_n_batch": "not only the batch size",
    "grad_T_squared": "leaves T, not T²",
    "ratio_no_log": "take the log of the ratio",
    "ratio_inverted": "that is 1/T",
    "ratio_log10": "not math.log10",
    "ratio_gap_reversed": "a temperature is positive",
    "ratio_log2": "not math.log2",
}
