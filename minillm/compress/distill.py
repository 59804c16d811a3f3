"""Knowledge distillation: train a small student on a large teacher's output distribution.

- Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"
  (arXiv:1503.02531): soft targets ``softmax(z / T)``; the soft loss is multiplied by T²
  because its gradients scale as 1/T², so that hard and soft terms keep their balance
  when T changes.
- Gu et al. 2024, "MiniLLM: Knowledge Distillation of Large Language Models"
  (arXiv:2306.08543): *reverse* KL, KL(student ‖ teacher), is mode seeking: the student
  puts its mass where the teacher is confident instead of spreading it over every
  token the teacher finds possible (forward KL, mode covering).
- Romero et al. 2015, "FitNets" (arXiv:1412.6550): match hidden states through a learned
  projection when the widths differ.
- Kim & Rush 2016, "Sequence-Level Knowledge Distillation" (arXiv:1606.07947): train the
  student on text the teacher generates.

Shapes: logits are [..., V] (e.g. [B, T, V]); every position is one "token" of the mean.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor, nn

from minillm.kernels import cross_entropy_loss
from minillm.validate import check_choice, check_fraction, check_int, check_number

__all__ = ["soft_targets", "kd_loss", "distill_loss", "feature_loss", "distill", "KINDS"]

KINDS = ("forward", "reverse")


def _check_temperature(T) -> float:
    if isinstance(T, bool) or not isinstance(T, (int, float)) or not math.isfinite(T) or T <= 0:
        raise ValueError(f"temperature T={T!r} must be a finite number > 0 (T=1 is the plain softmax; 2-4 is usual)")
    return float(T)


def _log_softmax(z: Tensor) -> Tensor:
    """[..., V] -> [..., V]: ``z - logsumexp(z)``, stable for large logits."""
    return z - torch.logsumexp(z, dim=-1, keepdim=True)


def soft_targets(logits: Tensor, T: float = 1.0) -> Tensor:
    """``softmax(logits / T)`` over the last dimension: [..., V] -> [..., V] probabilities.

    T > 1 flattens the distribution and shows the teacher's "dark knowledge": how much
    more likely it finds one wrong answer than another.
    """
    T = _check_temperature(T)
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() < 1:
        raise ValueError(f"logits must be a float tensor [..., V], got {getattr(logits, 'shape', type(logits).__name__)}")
    return torch.exp(_log_softmax(logits.float() / T))


def _check_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    for name, t in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(t, Tensor) or not t.is_floating_point() or t.dim() < 1:
            raise ValueError(f"{name} must be a float tensor [..., V], got {getattr(t, 'shape', type(t).__name__)}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_logits {tuple(teacher_logits.shape)} must have "
            "the same shape: same batch, same positions, same vocabulary (same tokenizer)"
        )


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, T: float = 2.0, kind: str = "forward") -> Tensor:
    """``T² · KL`` between the temperature-softened distributions, averaged over tokens: a scalar.

    ``kind="forward"``: KL(p_teacher ‖ p_student) = Σ p_t (log p_t − log p_s), mode covering
    (Hinton et al. 2015). ``kind="reverse"``: KL(p_student ‖ p_teacher), mode seeking (MiniLLM).
    The teacher's logits are treated as constants (no gradient flows into the teacher).
    For the forward kind the gradient with respect to the student's logits is
    ``T · (p_student − p_teacher) / n_tokens``.
    """
    _check_pair(student_logits, teacher_logits)
    T = _check_temperature(T)
    check_choice("kind", kind, KINDS)
    V = student_logits.shape[-1]
    log_s = _log_softmax(student_logits.reshape(-1, V).float() / T)
    log_t = _log_softmax(teacher_logits.detach().reshape(-1, V).float() / T)
    if kind == "forward":
        kl = (torch.exp(log_t) * (log_t - log_s)).sum(-1)
    else:
        kl = (torch.exp(log_s) * (log_s - log_t)).sum(-1)
    return T * T * kl.mean()


def _cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of [..., V] logits against [...] ids: the model's own loss kernel."""
    return cross_entropy_loss(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).long())


def distill_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    T: float = 2.0,
    alpha: float = 0.5,
    kind: str = "forward",
) -> Tensor:
    """``alpha · kd_loss(…, T, kind) + (1 − alpha) · cross_entropy(student_logits, targets)``.

    targets: int64 [...] matching the logits' leading dimensions. ``alpha=0`` is plain
    training on hard labels; ``alpha=1`` is pure distillation.
    """
    _check_pair(student_logits, teacher_logits)
    alpha = check_fraction("alpha", alpha, closed=True)
    if not isinstance(targets, Tensor) or targets.is_floating_point() or targets.shape != student_logits.shape[:-1]:
        raise ValueError(
            f"targets must be integer token ids of shape {tuple(student_logits.shape[:-1])}, "
            f"got {getattr(targets, 'shape', type(targets).__name__)}"
        )
    hard = _cross_entropy(student_logits, targets)
    if alpha == 0.0:
        return hard
    return alpha * kd_loss(student_logits, teacher_logits, T, kind) + (1.0 - alpha) * hard


def feature_loss(student_h: Tensor, teacher_h: Tensor, proj: nn.Module | None = None) -> Tensor:
    """Mean squared error between ``proj(student_h)`` [..., D_t] and ``teacher_h`` [..., D_t] (FitNets).

    ``proj`` (e.g. a minillm ``Linear(D_s, D_t)``) maps the student's width to the
    teacher's and trains with the student; None means the widths already match.
    """
    s = proj(student_h) if proj is not None else student_h
    if s.shape != teacher_h.shape:
        raise ValueError(
            f"projected student states {tuple(s.shape)} and teacher states {tuple(teacher_h.shape)} differ; "
            f"pass proj=Linear({student_h.shape[-1]}, {teacher_h.shape[-1]})"
        )
    return ((s - teacher_h.detach()) ** 2).mean()


def distill(
    student: nn.Module,
    teacher: nn.Module,
    train_ids: Tensor,
    *,
    steps: int,
    T: float = 2.0,
    alpha: float = 0.5,
    kind: str = "forward",
    batch_size: int = 16,
    block_size: int | None = None,
    lr: float = 3e-3,
    warmup: int = 20,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train ``student`` on ``train_ids`` [N] with :func:`distill_loss` against a frozen ``teacher``.

    Both are minillm GPTs with the same vocabulary; the teacher runs in eval mode under
    ``no_grad``. The optimizer, schedule and clipping are the course's (minillm.train:
    AdamW with weight decay on matrices only, cosine with warm-up to lr/10, global-norm
    clipping), so a distilled and a hard-label student trained with the same arguments
    differ only in the loss. Batches come from a generator seeded with ``seed``. Returns a
    history dict with ``step``, ``loss`` (the mixed loss), ``kd`` (NaN when ``alpha=0``:
    the teacher is then not run) and ``ce`` per step, ``lr``, and ``seconds`` and
    ``tokens_per_s`` for the whole run (teacher forward included).
    """
    from tqdm.auto import tqdm

    from minillm.data import get_batch
    from minillm.train import AdamW, clip_grad_norm_, cosine_lr, param_groups

    steps = check_int("steps", steps)
    batch_size = check_int("batch_size", batch_size)
    lr = check_number("lr", lr, strict=True)
    T = _check_temperature(T)
    check_choice("kind", kind, KINDS)
    alpha = check_fraction("alpha", alpha, closed=True)
    if student.config.vocab_size != teacher.config.vocab_size:
        raise ValueError(
            f"student vocabulary {student.config.vocab_size} != teacher vocabulary {teacher.config.vocab_size}: "
            "logit distillation needs the same tokenizer"
        )
    block_size = block_size or min(student.config.block_size, teacher.config.block_size)
    g = torch.Generator().manual_seed(seed)
    opt = AdamW(param_groups(student, weight_decay), lr=lr)
    teacher.eval()
    student.train()
    hist: dict = {"step": [], "loss": [], "kd": [], "ce": [], "lr": []}
    t0 = time.perf_counter()
    for step in tqdm(range(steps), desc="distill", disable=not progress, leave=False):
        opt.lr = cosine_lr(step, lr, min(warmup, steps - 1), steps, lr / 10)
        x, y = get_batch(train_ids, batch_size, block_size, generator=g)
        if alpha == 0.0:  # hard labels only: the teacher is not run (kd is logged as NaN)
            s_logits = student(x)[0]
            kd = torch.tensor(float("nan"))
            loss = ce = _cross_entropy(s_logits, y)
        else:
            with torch.no_grad():
                t_logits = teacher(x)[0]
            s_logits = student(x)[0]
            kd = kd_loss(s_logits, t_logits, T, kind)
            ce = _cross_entropy(s_logits, y)
            loss = alpha * kd + (1 - alpha) * ce
        opt.zero_grad()
        loss.backward()
        if grad_clip:
            clip_grad_norm_(student.parameters(), grad_clip)
        opt.step()
        hist["step"].append(step)
        hist["loss"].append(loss.item())
        hist["kd"].append(kd.item())
        hist["ce"].append(ce.item())
        hist["lr"].append(opt.lr)
    hist["seconds"] = time.perf_counter() - t0
    hist["tokens_per_s"] = steps * batch_size * block_size / hist["seconds"]
    student.eval()
    return hist
