"""The transfer task of lesson 02 and the loops that fine-tune a model on it.

**The task: who had the object?** Every story says who had which thing ("Tom had a red
key."), and the teacher learnt to answer "Where did Tom put the key?" and "What color was
Tom's key?". It never saw a question that runs the other way, from the object to its
owner::

    Q: Who had the red key? A: Tom.

The five candidate answers are names: the owner, the friend of the story (the hardest
distractor, also a name in the story) and three names from elsewhere, so chance is 20%
and "any name from the story" gets 50%. The task is scored as multiple choice by
log-likelihood (:func:`minillm.evaluate.accuracy`), like fact recall.

The stories come from their own random streams, and none of them occurs in the
teacher's training text, so the test set is held out from pre-training too.

**Fine-tuning.** :func:`answer_batch` turns questions into ``(x, y)`` with the loss on
the answer tokens only (``y = -1`` elsewhere) and sequences as long as the longest
story (~150 tokens, not the model's 256); :func:`finetune` runs the course's AdamW
with a cosine schedule over whatever parameters are trainable, so the same loop trains
a full model, a LoRA model or a linear probe (:func:`prepare`).
"""

from __future__ import annotations

import copy
import random
import time
from typing import Sequence

import torch
from torch import Tensor, nn

from minillm.data import N_CHOICES, NAMES, FactQuestion, derive_seed, held_out_stories, train_contexts
from minillm.validate import check_int, check_number

__all__ = [
    "transfer_task",
    "answer_batch",
    "finetune",
    "prepare",
    "METHODS",
    "optimizer_state_bytes",
    "ADAM_STATE_BYTES_PER_PARAM",
]

SPLITS = ("train", "test")
KINDS = ("owner", "not_owner")
#: AdamW keeps two float32 moments (m and v) per trainable parameter.
ADAM_STATE_BYTES_PER_PARAM = 8
METHODS = ("full", "head", "lora", "scratch")

_NAME_POOL = [f" {n}." for n, _, _ in NAMES]


def _question(story, rng: random.Random, kind: str) -> FactQuestion:
    f = story.facts
    hero, friend = f" {f['hero']}.", f" {f['friend']}."
    rest = [p for p in _NAME_POOL if p not in (hero, friend)]
    choices = [hero, friend] + rng.sample(rest, N_CHOICES - 2)
    rng.shuffle(choices)
    thing = f"the {f['color']} {f['object']}"
    if kind == "owner":
        return FactQuestion(story.context, f"Q: Who had {thing}? A:", hero, choices, kind)
    return FactQuestion(story.context, f"Q: Who did not have {thing}? A:", friend, choices, kind)


def transfer_task(n: int = 200, split: str = "train", seed: int = 0, kind: str = "owner") -> list[FactQuestion]:
    """``n`` questions about who had the object, one per story, 5 name choices.

    ``kind="owner"``: "Q: Who had the <color> <object>? A: <hero>." (the task of the
    lesson). ``kind="not_owner"``: "Q: Who did not have the <color> <object>? A:
    <friend>." (a second task with the opposite answer, for switching adapters).
    ``split="train"`` and ``split="test"`` draw from separate seeded streams (the same
    arguments give the same questions); no story occurs in the teacher's training text.
    Chance is 20%; the hero and the friend are always among the choices.
    """
    n = check_int("n", n)
    check_int("seed", seed, minimum=0)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} must be one of {SPLITS}")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} must be one of {KINDS}")
    stream = derive_seed(seed, f"transfer-{split}")
    stories = held_out_stories(n, stream, set(train_contexts()))
    rng = random.Random(stream)
    return [_question(s, rng, kind) for s in stories]


def answer_batch(tokenizer, questions: Sequence[FactQuestion]) -> tuple[Tensor, Tensor]:
    """Inputs and targets for training on the answers: x, y both [N, T] int64.

    Row i is ``prompt + answer`` (minus its last token) right-padded with 0; ``y`` is the
    next token at answer positions and -1 (ignored by the loss) everywhere else, so the
    model is taught only to answer. T is the longest row, not the model's block size.
    """
    if not questions:
        raise ValueError("questions is empty; pass transfer_task(n) with n >= 1")
    rows, targets = [], []
    for q in questions:
        p, a = tokenizer.encode(q.prompt), tokenizer.encode(q.answer)
        if not p or not a:
            raise ValueError(f"question {q.question!r} has an empty prompt or answer")
        rows.append(p + a[:-1])
        targets.append([-1] * (len(p) - 1) + a)
    T = max(len(r) for r in rows)
    x = torch.zeros(len(rows), T, dtype=torch.long)
    y = torch.full((len(rows), T), -1, dtype=torch.long)
    for i, (r, t) in enumerate(zip(rows, targets)):
        x[i, : len(r)] = torch.tensor(r)
        y[i, : len(t)] = torch.tensor(t)
    return x, y


def prepare(model: nn.Module, method: str, r: int = 8, alpha: float | None = None, targets=("c_attn",)) -> nn.Module:
    """A copy of ``model`` set up for one way of fine-tuning; ``model`` is left untouched.

    - ``"full"``: every parameter trains.
    - ``"head"``: a linear probe: only the final LayerNorm and an untied copy of the output
      layer train (the body is a frozen feature extractor).
    - ``"lora"``: :func:`minillm.compress.lora.add_lora` with ``r``, ``alpha``, ``targets``.
    - ``"scratch"``: the same architecture, freshly initialised (seeded), every parameter trains.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {METHODS}")
    new = copy.deepcopy(model)
    if method == "scratch":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            new.reset_parameters()
    elif method == "head":
        for p in new.parameters():
            p.requires_grad_(False)
        new.lm_head.weight = nn.Parameter(new.lm_head.weight.detach().clone())  # untie from wte
        for p in list(new.ln_f.parameters()) + [new.lm_head.weight]:
            p.requires_grad_(True)
    elif method == "lora":
        from minillm.compress.lora import add_lora

        add_lora(new, r, alpha, targets)
    return new


def optimizer_state_bytes(model: nn.Module) -> int:
    """Bytes AdamW keeps for ``model``: 8 per trainable parameter (two float32 moments)."""
    return ADAM_STATE_BYTES_PER_PARAM * sum(p.numel() for p in model.parameters() if p.requires_grad)


def finetune(
    model: nn.Module,
    tokenizer,
    questions: Sequence[FactQuestion],
    *,
    steps: int = 30,
    batch_size: int = 8,
    lr: float = 1e-3,
    warmup: int = 3,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train ``model``'s trainable parameters, in place, to answer ``questions``.

    Each step draws ``batch_size`` questions (seeded, with replacement) and takes one AdamW
    step (no weight decay) on the answer-token cross-entropy, the learning rate following
    a cosine schedule with ``warmup`` steps. Returns ``{"loss": [per step], "step_seconds":
    [per step], "seconds": total, "seconds_per_step": median}``: the median, so that a slow spell
    of a busy machine during a few steps does not move it.
    """
    import statistics

    from tqdm.auto import tqdm

    from minillm.train import AdamW, cosine_lr

    steps, batch_size = check_int("steps", steps), check_int("batch_size", batch_size)
    lr = check_number("lr", lr, strict=True)
    check_int("warmup", warmup, minimum=0)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters; use prepare(model, method) first")
    x, y = answer_batch(tokenizer, questions)
    g = torch.Generator().manual_seed(seed)
    opt = AdamW(params, lr=lr, weight_decay=0.0)
    hist: dict = {"loss": [], "step_seconds": []}
    model.train()
    t0 = time.perf_counter()
    for step in tqdm(range(steps), desc="fine-tune", disable=not progress, leave=False):
        ts = time.perf_counter()
        opt.lr = cosine_lr(step, lr, warmup, steps, lr / 10)
        i = torch.randint(0, len(questions), (batch_size,), generator=g)
        used = int((y[i] >= 0).any(0).nonzero().max()) + 1  # drop all-padding columns at the end
        _, loss = model(x[i, :used], y[i, :used])
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist["loss"].append(float(loss.detach()))
        hist["step_seconds"].append(time.perf_counter() - ts)
    model.eval()
    hist["seconds"] = time.perf_counter() - t0
    hist["seconds_per_step"] = statistics.median(hist["step_seconds"])
    return hist
