"""Evaluation: validation loss and fact-recall accuracy, one implementation each.

- :func:`evaluate_loss`: mean next-token cross-entropy over token ids, either over
  consecutive non-overlapping blocks (deterministic, every token counted once) or over
  seeded random windows (cheap, what training logs).
- :func:`answer_logprobs` and :func:`accuracy`: the fact-recall task of
  :mod:`minillm.data` scored as multiple choice by log-likelihood.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from minillm.data import FactQuestion, get_batch
from minillm.validate import check_int

__all__ = ["evaluate_loss", "answer_logprobs", "accuracy"]


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    ids: Tensor,
    batch_size: int = 8,
    *,
    block_size: int | None = None,
    n_batches: int | None = None,
    random_windows: bool = False,
    seed: int = 0,
) -> float:
    """Mean next-token cross-entropy (nats/token) of ``model`` on ``ids`` [N].

    ``model(x, y) -> (logits, loss)`` as minillm's GPT. ``block_size`` defaults to the
    model's. With ``random_windows=False`` the ids are cut into consecutive
    non-overlapping blocks of ``block_size`` inputs (each with its next token as
    target), ``batch_size`` blocks a batch, for ``n_batches`` batches (None: all full
    blocks); the mean is weighted by tokens. With ``random_windows=True`` each of
    ``n_batches`` (default 8) batches holds ``batch_size`` windows at seeded random
    offsets (:func:`minillm.data.get_batch`), as training logs its validation loss.
    The model runs in eval mode; its mode is restored afterwards.
    """
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.is_floating_point():
        raise ValueError(f"ids must be a 1-D tensor of token ids, got {getattr(ids, 'shape', type(ids).__name__)}")
    batch_size = check_int("batch_size", batch_size)
    T = check_int("block_size", block_size) if block_size is not None else model.config.block_size
    if n_batches is not None:
        n_batches = check_int("n_batches", n_batches)
    was_training = model.training
    model.eval()
    try:
        if random_windows:
            g = torch.Generator().manual_seed(seed)
            losses = [float(model(*get_batch(ids, batch_size, T, generator=g))[1]) for _ in range(n_batches or 8)]
            return sum(losses) / len(losses)
        n = (ids.numel() - 1) // T
        if n == 0:
            raise ValueError(f"ids has {ids.numel()} tokens; need at least block_size + 1 = {T + 1}")
        x = ids[: n * T].view(n, T).long()
        y = ids[1 : n * T + 1].view(n, T).long()
        total, count = 0.0, 0
        for i, start in enumerate(range(0, n, batch_size)):
            if n_batches is not None and i >= n_batches:
                break
            _, loss = model(x[start : start + batch_size], y[start : start + batch_size])
            k = x[start : start + batch_size].numel()
            total, count = total + float(loss) * k, count + k
        return total / count
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- fact recall


def _device_of(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _log_softmax(logits: Tensor) -> Tensor:
    """[..., V] -> [..., V] log-probabilities, ``x - logsumexp(x)`` (stable in float32)."""
    logits = logits.float()
    return logits - torch.logsumexp(logits, dim=-1, keepdim=True)


def _tokenize_questions(tokenizer, questions: Sequence[FactQuestion], block: int):
    """Per question: (prompt ids cropped from the left, [choice ids]).

    The prompt keeps its last ``block - (A - 1)`` tokens, A the longest choice, so
    every prompt + choice (minus its last token, which is only a target) fits in
    ``block_size``; the crop is the same for every choice, so they compete fairly.
    """
    out = []
    for q in questions:
        if not q.choices:
            raise ValueError(f"question {q.question!r} has no choices; give it at least two")
        chs = [tokenizer.encode(c) for c in q.choices]
        if min(len(c) for c in chs) == 0:
            raise ValueError(f"question {q.question!r} has an empty choice; every choice needs at least one token")
        A = max(len(c) for c in chs)
        keep = block - (A - 1)
        if keep < 1:
            raise ValueError(
                f"a choice of {q.question!r} is {A} tokens, too long for block_size={block}; use a longer block"
            )
        p = tokenizer.encode(q.prompt)[-keep:]
        if not p:
            raise ValueError(f"question {q.question!r} has an empty prompt; give it a context and a question")
        out.append((p, chs))
    return out


def _pad(rows: list[list[int]]) -> Tensor:
    """Right-pad lists of ids with 0 into [B, T_max]; causal attention keeps real positions exact."""
    idx = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    for i, r in enumerate(rows):
        idx[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return idx


def _scores_rows(model, toks, batch_size: int, device) -> list[list[float]]:
    """Reference path, any model: one row = prompt + choice, rows batched ``batch_size`` at a time."""
    rows = [(qi, ci, p + c, len(c)) for qi, (p, chs) in enumerate(toks) for ci, c in enumerate(chs)]
    out = [[0.0] * len(chs) for _, chs in toks]
    order = sorted(range(len(rows)), key=lambda r: len(rows[r][2]))  # similar lengths together: less padding
    for start in range(0, len(order), batch_size):
        batch = [rows[r] for r in order[start : start + batch_size]]
        idx = _pad([b[2] for b in batch]).to(device)
        logits, _ = model(idx[:, :-1])  # position t predicts token t+1
        logp = _log_softmax(logits).gather(-1, idx[:, 1:].unsqueeze(-1)).squeeze(-1)  # [B, T-1]
        mask = torch.zeros_like(logp)
        for i, (_, _, ids, n_a) in enumerate(batch):
            mask[i, len(ids) - n_a - 1 : len(ids) - 1] = 1.0  # only the choice tokens count
        for (qi, ci, _, _), sc in zip(batch, (logp * mask).sum(dim=1).tolist()):
            out[qi][ci] = sc
    return out


def _scores_cached(model, toks, batch_size: int, device) -> list[list[float]]:
    """Fast path for a minillm GPT: each prompt runs once, its choices reuse its KV cache.

    Prompts go ``batch_size`` at a time (right-padded; the keys and values of the
    real positions are exact because attention is causal). Then, per question, the
    cache rows of that prompt are sliced to its length, shared by all its choices,
    and only the choice tokens run. About n_choices times less compute than
    :func:`_scores_rows`, with the same result up to float rounding.
    """
    from minillm.model import KVCache

    n_layer = model.config.n_layer
    out = [[0.0] * len(chs) for _, chs in toks]
    order = sorted(range(len(toks)), key=lambda q: len(toks[q][0]))
    for start in range(0, len(order), batch_size):
        qs = order[start : start + batch_size]
        cache = KVCache(n_layer)
        logits, _ = model(_pad([toks[q][0] for q in qs]).to(device), cache=cache)
        for row, q in enumerate(qs):
            p, chs = toks[q]
            L = len(p)
            first = _log_softmax(logits[row, L - 1])  # [V]: the first choice token given the prompt
            scores = [float(first[c[0]]) for c in chs]
            A = max(len(c) for c in chs)
            if A > 1:
                sub = KVCache(n_layer)
                n = len(chs)
                sub.k = [k[row : row + 1, :, :L].expand(n, -1, -1, -1) for k in cache.k]
                sub.v = [v[row : row + 1, :, :L].expand(n, -1, -1, -1) for v in cache.v]
                inp = _pad([c[:-1] or [0] for c in chs])[:, : A - 1].to(device)  # [n, A-1]
                lg, _ = model(inp, cache=sub)
                logp = _log_softmax(lg)  # [n, A-1, V]: position t predicts choice token t+1
                for j, c in enumerate(chs):
                    for t in range(1, len(c)):
                        scores[j] += float(logp[j, t - 1, c[t]])
            out[q] = scores
    return out


@torch.no_grad()
def answer_logprobs(
    model, tokenizer, questions: Sequence[FactQuestion], batch_size: int = 32, use_cache: bool | None = None
) -> list[list[float]]:
    """Log-likelihood of every choice given its prompt.

    ``out[i][j] = sum_t log p(choice_j token t | prompt_i, earlier choice tokens)``:
    the choice's tokens are scored after ``encode(prompt)``, which is cropped from the
    left to fit ``model.config.block_size``. ``model(idx) -> (logits [B, T, V], loss)``
    runs under ``no_grad`` in eval mode (its mode is restored afterwards).

    ``use_cache=None`` takes the KV-cache fast path for a minillm GPT and the plain
    batched path for any other model; both give the same numbers up to float rounding.
    """
    check_int("batch_size", batch_size)
    if not hasattr(model, "config") or not hasattr(model.config, "block_size"):
        raise TypeError(f"model must have .config.block_size like minillm.model.GPT, got {type(model).__name__}")
    if use_cache is None:
        from minillm.model import GPT

        use_cache = isinstance(model, GPT)
    toks = _tokenize_questions(tokenizer, questions, model.config.block_size)
    was_training = model.training
    model.eval()
    try:
        fn = _scores_cached if use_cache else _scores_rows
        return fn(model, toks, batch_size, _device_of(model))
    finally:
        model.train(was_training)


def accuracy(
    model, tokenizer, questions: Sequence[FactQuestion], batch_size: int = 32, max_questions: int | None = None
) -> float:
    """Fraction of questions whose right answer gets the highest log-likelihood.

    Multiple choice by log-likelihood, as in lm-evaluation-harness (Gao et al. 2021):
    the sum of the choice's token log-probs given the prompt; ties go to the first
    choice. Chance level is :func:`chance_accuracy`.
    """
    if max_questions is not None:
        questions = list(questions)[:max_questions]
    if not questions:
        raise ValueError("questions is empty; pass fact_recall_task(...) or a list of FactQuestion")
    scores = answer_logprobs(model, tokenizer, questions, batch_size)
    correct = sum(int(max(range(len(s)), key=s.__getitem__) == q.label) for s, q in zip(scores, questions))
    return correct / len(questions)
