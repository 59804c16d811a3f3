"""Checks of lesson 05, "Knowledge distillation".

Every answer is compared with a float64 closed form on seeded logits [B, T, V] (softmax, KL, the
mixed loss and its gradient), at a relative 1e-4 with a small absolute floor: the learner may work
in float32, whose log-softmax is good to a few ulps. Large logits (±300) test numerical stability.
Typical mistakes are named in the hint.
"""

from __future__ import annotations

import math

import torch

from minillm.course.checks import CheckFailure, case_rng, describe, expect_close, expect_tensor, register

_DISTILL = "minillm.compress.distill"
_AUTOGRAD = ("torch.autograd.grad", "torch.autograd.backward", "torch.Tensor.backward")


def _logits(seed: int, shape=(2, 3, 7), scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def _p(z: torch.Tensor, T: float) -> torch.Tensor:
    return torch.softmax(z.double() / T, -1)


def _kl(s: torch.Tensor, t: torch.Tensor, T: float, kind: str) -> torch.Tensor:
    """T²·KL averaged over every position, float64."""
    ls, lt = torch.log_softmax(s.double() / T, -1), torch.log_softmax(t.double() / T, -1)
    a, b = (lt, ls) if kind == "forward" else (ls, lt)
    return T * T * (a.exp() * (a - b)).sum(-1).mean()


def _scalar(got, what: str) -> float:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = float(got)
    if isinstance(got, float) and not math.isfinite(got):
        raise CheckFailure(f"{what} returned", got=got, expected="a finite number",
                           hint="a probability that underflows to 0 makes log() −inf and 0·(−inf) NaN: take "
                                "log-probabilities as z/T − logsumexp(z/T), not log(soft_targets(z, T))")
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise CheckFailure(f"{what} returned", got=describe(got), expected="a scalar (a 0-d tensor or a float)",
                           hint="average over every position: .mean() of the per-token KL")
    return float(got)


def _first_match(got: float, want: float, what: str, mistakes: dict[str, float], hint: str) -> None:
    if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6):
        return
    for h, wrong in mistakes.items():
        if math.isclose(got, wrong, rel_tol=1e-4, abs_tol=1e-6) and not math.isclose(wrong, want, rel_tol=1e-3):
            hint = h
            break
    raise CheckFailure(f"{what} is", got=f"{got:.6g}", expected=f"{want:.6g}", hint=hint)


@register("05.soft_targets", points=2, references=(f"{_DISTILL}.soft_targets", "torch.softmax", "torch.nn.functional.softmax",
                                                   "torch.Tensor.softmax", "torch.nn.functional.log_softmax"))
def check_soft_targets(fn) -> None:
    """soft_targets(logits [..., V], T) -> softmax(logits / T) over the last dimension."""
    cases = [(_logits(0), 1.0), (_logits(1), 2.0), (_logits(2, (4, 5)), 0.5), (_logits(3, (9,)), 4.0),
             (_logits(4, (2, 6), scale=100.0), 1.0), (_logits(5, (3, 4), scale=300.0), 2.0)]
    for z, T in cases:
        what = f"soft_targets(logits {tuple(z.shape)}, T={T})"
        got = fn(z.clone(), T)
        big = z.abs().max() > 50
        expect_tensor(got, shape=z.shape, what=what,
                      hint="subtract each row's own maximum (over the last dimension) before exp(): exp(300) overflows "
                           "float32, and one global maximum leaves a row far below it at exp(−600) = 0, then 0/0" if big else None)
        want = _p(z, T)
        expect_close(got.double(), want, atol=1e-6, rtol=1e-4, what=what, diagnose={
            "divide the logits by T before the softmax (you multiplied)": _p(z, 1 / T),
            "the temperature divides the logits; without it every T gives the plain softmax": _p(z, 1.0),
            "normalise over the last dimension (the vocabulary), not the first": torch.softmax(z.double() / T, 0),
        }, hint="exp((z - max z) / T), divided by its sum over the last dimension")


@register("05.kd_loss", points=3, references=(f"{_DISTILL}.kd_loss", f"{_DISTILL}.distill_loss", "torch.nn.functional.kl_div",
                                              "torch.nn.KLDivLoss.forward"))
def check_kd_loss(fn) -> None:
    """kd_loss(student_logits, teacher_logits, T, kind) -> T²·KL averaged over positions (forward or reverse)."""
    # the last case has logit gaps of hundreds: a softmax underflows to exactly 0 in float32
    for seed, (shape, T, scale) in enumerate([((2, 3, 7), 1.0, 2.0), ((2, 3, 7), 2.0, 2.0), ((4, 11), 4.0, 2.0),
                                              ((1, 5, 6), 0.5, 2.0), ((2, 2, 5), 1.0, 100.0)]):
        s, t = _logits(10 + seed, shape, scale), _logits(20 + seed, shape, scale)
        n = s.numel() // s.shape[-1]
        for kind in ("forward", "reverse"):
            other = "reverse" if kind == "forward" else "forward"
            what = f"kd_loss(student [{', '.join(map(str, shape))}], teacher, T={T}, kind={kind!r})"
            got = _scalar(fn(s.clone(), t.clone(), T, kind), what)
            want = float(_kl(s, t, T, kind))
            ent = float(-(T * T) * (_p(t if kind == "forward" else s, T) * torch.log_softmax(
                (t if kind == "forward" else s).double() / T, -1)).sum(-1).mean())
            formula = ("Σ p_t (log p_t − log p_s), weighted by the teacher's p_t" if kind == "forward" else
                       "Σ p_s (log p_s − log p_t), weighted by the student's p_s")
            _first_match(got, want, what, {
                f"that is the {other} KL: {kind} is "
                + ("KL(teacher ‖ student) = Σ p_t (log p_t − log p_s)" if kind == "forward"
                   else "KL(student ‖ teacher) = Σ p_s (log p_s − log p_t)"): float(_kl(s, t, T, other)),
                f"a KL is never negative: you subtracted the wrong way round, {kind} KL = {formula}": -want,
                "multiply by T² (Hinton et al.): the soft gradients shrink as 1/T²": want / (T * T),
                "the factor is T², not T": want / T,
                "average over positions (tokens), do not sum": want * n,
                "average over positions, not over every logit": want / s.shape[-1],
                "divide by every position (B·T), not only by the batch size (kl_div's 'batchmean' on [B, T, V])":
                    want * n / s.shape[0],
                "divide both logits by T before the softmax; only then multiply the KL by T²": T * T * float(_kl(s, t, 1.0, kind)),
                "that is the cross-entropy Σ −p log q; the KL also subtracts the entropy: Σ p (log p − log q)": want + ent,
            }, hint=f"soften both with T; the {kind} KL of a position is {formula}; average it over positions, times T²")


@register("05.distill_loss", points=2, references=(f"{_DISTILL}.distill_loss", f"{_DISTILL}.kd_loss",
                                                   "torch.nn.functional.kl_div", "torch.nn.functional.cross_entropy"))
def check_distill_loss(fn) -> None:
    """distill_loss(student_logits, teacher_logits, targets, T, alpha) -> alpha·kd (forward) + (1 − alpha)·CE."""
    for seed, (shape, T, alpha) in enumerate([((2, 3, 7), 2.0, 0.5), ((2, 3, 7), 1.0, 0.0), ((4, 9), 3.0, 0.7),
                                               ((1, 6, 5), 2.0, 1.0), ((2, 2, 8), 4.0, 0.2)]):
        s, t = _logits(30 + seed, shape), _logits(40 + seed, shape)
        y = torch.randint(0, shape[-1], shape[:-1], generator=torch.Generator().manual_seed(50 + seed))
        what = f"distill_loss(student [{', '.join(map(str, shape))}], teacher, targets, T={T}, alpha={alpha})"
        got = _scalar(fn(s.clone(), t.clone(), y.clone(), T, alpha), what)
        V = shape[-1]
        ce = float(torch.nn.functional.cross_entropy(s.double().reshape(-1, V), y.reshape(-1)))
        ce_soft = float(torch.nn.functional.cross_entropy(s.double().reshape(-1, V) / T, y.reshape(-1)))
        kd = float(_kl(s, t, T, "forward"))
        want = alpha * kd + (1 - alpha) * ce
        ce_teacher = float(torch.nn.functional.cross_entropy(t.double().reshape(-1, V), y.reshape(-1)))
        ce_prob = float(-torch.softmax(s.double(), -1).gather(-1, y.unsqueeze(-1)).mean())
        n = s.numel() // V
        _first_match(got, want, what, {
            "alpha weighs the distillation term, 1 − alpha the cross-entropy: you swapped them": (1 - alpha) * kd + alpha * ce,
            "average the cross-entropy over positions, do not sum it": alpha * kd + (1 - alpha) * ce * n,
            "the cross-entropy is the student's: −log q_student[target], from student_logits": alpha * kd + (1 - alpha) * ce_teacher,
            "cross-entropy is −log of the target's probability, not −probability": alpha * kd + (1 - alpha) * ce_prob,
            "T² multiplies the KL term only, not the cross-entropy": alpha * kd + (1 - alpha) * ce * T * T,
            "the hard-label cross-entropy uses the plain logits (T = 1), not logits / T": alpha * kd + (1 - alpha) * ce_soft,
            "keep the T² factor on the KL term": alpha * kd / (T * T) + (1 - alpha) * ce,
            "the KL term is the forward one, KL(teacher ‖ student)": alpha * float(_kl(s, t, T, "reverse")) + (1 - alpha) * ce,
        }, hint="alpha · kd_loss(s, t, T) + (1 − alpha) · mean cross-entropy of s against the targets")


@register("05.kd_gradient", points=3, references=(f"{_DISTILL}.kd_loss",) + _AUTOGRAD)
def check_kd_gradient(fn) -> None:
    """kd_gradient(student_logits, teacher_logits, T) -> d kd_loss(forward) / d student_logits, in closed form."""
    for seed, (shape, T) in enumerate([((2, 3, 7), 1.0), ((2, 3, 7), 2.0), ((5, 6), 4.0), ((1, 4, 9), 0.5), ((3, 8), 10.0)]):
        s, t = _logits(60 + seed, shape), _logits(70 + seed, shape)
        n = s.numel() // shape[-1]
        what = f"kd_gradient(student [{', '.join(map(str, shape))}], teacher, T={T})"
        got = expect_tensor(fn(s.clone(), t.clone(), T), shape=s.shape, what=what)
        q, p = _p(s, T), _p(t, T)
        want = T * (q - p) / n
        # float32 softmaxes carry a relative error of a few u = 2**-24 each, and q - p cancels where
        # q ≈ p (a high T): an honest float32 answer is off by up to ~6 u·T/n·(q + p) (measured: the
        # largest over 3000 seeds of each case and three ways to write it was 5.8). Allow 16 of them.
        atol = 16 * 2.0**-24 * T / n * float((q + p).max())
        expect_close(got.double(), want, atol=atol, rtol=1e-4, what=what, diagnose={
            "the sign: the loss falls when the student's q moves toward the teacher's p, so the gradient is q − p": -want,
            "the chain rule through z / T gives 1/T and the loss carries T²: T² · 1/T = T, "
            "so the gradient is T·(q − p), not (q − p)/T": (q - p) / (T * n),
            "the T² of the loss and the 1/T of the chain rule leave one factor T; you dropped it": (q - p) / n,
            "the loss is a mean over positions: divide by their number": T * (q - p),
            "T² · (1/T) leaves T, not T²: the chain rule through z / T divides by T once": T * want,
            "n is the number of positions (tokens), not of logits: numel / V": want / shape[-1],
            "n counts every position, B·T, not only the batch size": T * (q - p) / shape[0],
            "soften both with T before the softmax: q = softmax(z_s / T), p = softmax(z_t / T)": T * (_p(s, 1.0) - _p(t, 1.0)) / n,
        }, hint="d/dz_s of T²·Σ p log(p/q) with q = softmax(z_s/T) is T²·(q − p)/T; the mean over n positions divides by n")


@register("05.temperature_for_ratio", points=2, references=())
def check_temperature_for_ratio(fn) -> None:
    """temperature_for_ratio(z1, z2, ratio) -> the T at which softmax(z / T) gives p1 / p2 = ratio."""
    rng = case_rng(141)
    drawn = []
    for _ in range(3):
        z2 = round(rng.uniform(-5.0, 5.0), 3)
        drawn.append((round(z2 + rng.uniform(0.1, 10.0), 3), z2, round(rng.uniform(1.05, 20.0), 3)))
    for z1, z2, r in [(5.0, 1.0, 2.0), (3.0, 2.0, 1.5), (10.0, 0.0, 10.0), (2.0, -2.0, 4.0), (7.5, 7.0, 1.1), (1.0, 0.0, math.e),
                      *drawn]:
        got = fn(z1, z2, r)
        what = f"temperature_for_ratio(z1={z1}, z2={z2}, ratio={r})"
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = float(got)
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
            raise CheckFailure(f"{what} is", got=describe(got), expected="a positive number")
        want = (z1 - z2) / math.log(r)
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        if math.isclose(got, (z1 - z2) / r, rel_tol=1e-9):
            hint = "p1 / p2 = exp((z1 − z2) / T): take the log of the ratio, not the ratio itself"
        elif math.isclose(got, math.log(r) / (z1 - z2), rel_tol=1e-9):
            hint = "that is 1/T: solve (z1 − z2) / T = ln(ratio) for T"
        elif math.isclose(got, (z1 - z2) / math.log10(r), rel_tol=1e-9):
            hint = "softmax uses exp, so the natural log: math.log, not math.log10"
        elif math.isclose(got, (z1 - z2) / math.log2(r), rel_tol=1e-9):
            hint = "softmax uses exp, so the natural log: math.log, not math.log2"
        elif math.isclose(got, -want, rel_tol=1e-9):
            hint = "a temperature is positive: z1 > z2, so the gap is z1 − z2, not z2 − z1"
        else:
            hint = "the normaliser cancels in p1 / p2 = exp(z1/T) / exp(z2/T); set it equal to ratio and solve for T"
        raise CheckFailure(f"{what} is", got=f"{got:.6g}", expected=f"{want:.6g}", hint=hint)
