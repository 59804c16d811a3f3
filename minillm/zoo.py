"""Trained models that load in seconds: the registry of named models and how each is built.

``load("teacher")`` returns ``(model, tokenizer)``. The weights ship inside the
package (``minillm/zoo_weights/``, float16 for storage, float32 in memory), so
every machine gets the same numbers and no lesson retrains the teacher. If a
file is missing, the model is trained once, deterministically, and cached in the
user's cache folder (``$MINILLM_CACHE`` or ``~/.cache/minillm``).

Reproduce the shipped files with::

    python -m minillm.zoo build teacher student student-distilled

The file format (atomic save, SHA-256, load with checks, :class:`CheckpointError`)
lives in :mod:`minillm.checkpoint`; its names are re-exported here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minillm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minillm.model import GPT, GPTConfig
from minillm.presets import PRESETS

__all__ = ["ZooEntry", "MODELS", "load", "names", "save_checkpoint", "load_checkpoint", "build", "CheckpointError"]

WEIGHTS_DIR = Path(__file__).parent / "zoo_weights"


@dataclass(frozen=True)
class ZooEntry:
    """A named model: its shape and the recipe that trains it."""

    name: str
    config: GPTConfig
    steps: int
    batch_size: int
    lr: float
    description: str
    seed: int = 0
    tokenizer_vocab: int = 512
    n_stories: int = 6000
    extra: dict = field(default_factory=dict)


# The teacher: ~1.3M parameters, trained on the embedded story corpus.
# The student: 4-8x smaller, trained from scratch on the same data (the baseline
# that distillation must beat).
MODELS: dict[str, ZooEntry] = {
    "teacher": ZooEntry(
        name="teacher",
        config=PRESETS["teacher"].config,
        steps=PRESETS["teacher"].steps,
        batch_size=PRESETS["teacher"].batch_size,
        lr=PRESETS["teacher"].lr,
        description="6 layers, 4 heads, 128 wide: the course's teacher",
    ),
    "student": ZooEntry(
        name="student",
        config=PRESETS["student"].config,
        steps=PRESETS["student"].steps,
        batch_size=PRESETS["student"].batch_size,
        lr=PRESETS["student"].lr,
        description="3 layers, 2 heads, 64 wide: a student trained from scratch",
    ),
    # The same student shape, seed, data, batches and schedule as "student"; only the loss
    # differs: alpha·T²·KL(teacher ‖ student) + (1 − alpha)·cross-entropy (lesson 05). The
    # shipped student.pt predates train()'s no-decay groups for biases and LayerNorm weights;
    # student-distilled was built with them (distill() and train() share them today).
    "student-distilled": ZooEntry(
        name="student-distilled",
        config=PRESETS["student"].config,
        steps=PRESETS["student"].steps,
        batch_size=PRESETS["student"].batch_size,
        lr=PRESETS["student"].lr,
        description="the student's shape and recipe, distilled from the teacher (T=2, alpha=0.5, forward KL)",
        extra={"teacher": "teacher", "T": 2.0, "alpha": 0.5, "kind": "forward"},
    ),
}


def names() -> list[str]:
    return sorted(MODELS)


def _entry(name: str) -> ZooEntry:
    if name not in MODELS:
        raise ValueError(f"unknown zoo model {name!r}; choose one of {names()}")
    return MODELS[name]


# --------------------------------------------------------------------------- the zoo


def cache_dir() -> Path:
    return Path(os.environ.get("MINILLM_CACHE", Path.home() / ".cache" / "minillm"))


def _find(name: str) -> Path | None:
    for folder in (WEIGHTS_DIR, cache_dir()):
        p = folder / f"{name}.pt"
        if p.is_file():
            return p
    return None


def load(name: str = "teacher", *, train_if_missing: bool = True):
    """Return ``(model, tokenizer)`` for a zoo model: a fresh float32 copy, in eval mode.

    The shipped weights are used when present; otherwise the model is trained
    once (deterministically, with a progress bar) and cached.
    """
    entry = _entry(name)
    path = _find(name)
    if path is None:
        if not train_if_missing:
            raise CheckpointError(f"no weights for zoo model {name!r}; build them with python -m minillm.zoo build {name}")
        print(f"minillm.zoo: no shipped weights for {name!r}; training it once and caching it in {cache_dir()}")
        path = build(name, out_dir=cache_dir())
    model, tok, _ = load_checkpoint(path, expect_config=entry.config)
    return model, tok


def tokenizer(vocab_size: int = 512, n_stories: int = 6000, seed: int = 0):
    """The course's BPE tokenizer, trained on the training split of the embedded corpus."""
    from minillm.data import load_corpus
    from minillm.tokenizer import BPETokenizer

    corpus = load_corpus(n_stories=n_stories, seed=seed)
    return BPETokenizer.train(corpus.train_text, vocab_size)


def build(name: str, out_dir: str | os.PathLike = WEIGHTS_DIR, progress: bool = True) -> Path:
    """Train a zoo model from its recipe and save it to ``out_dir/NAME.pt``; returns the path.

    Deterministic: fixed seeds, so the same machine with the same thread count
    gives the same bits.
    """
    from minillm.data import encode_splits, fact_recall_task, load_corpus, unigram_loss
    from minillm.evaluate import accuracy as fact_accuracy
    from minillm.evaluate import evaluate_loss
    from minillm.train import train

    entry = _entry(name)
    corpus = load_corpus(n_stories=entry.n_stories, seed=entry.seed)
    tok = tokenizer(entry.tokenizer_vocab, entry.n_stories, entry.seed)
    train_ids, val_ids = encode_splits(corpus, tok)
    torch.manual_seed(entry.seed)
    model = GPT(entry.config)
    if "teacher" in entry.extra:  # distilled: same seed, batches and schedule as plain training
        from minillm.compress.distill import distill

        teacher, _ = load(entry.extra["teacher"])
        hist = distill(
            model,
            teacher,
            train_ids,
            steps=entry.steps,
            T=entry.extra["T"],
            alpha=entry.extra["alpha"],
            kind=entry.extra["kind"],
            batch_size=entry.batch_size,
            lr=entry.lr,
            warmup=100,
            seed=entry.seed,
            progress=progress,
        )
    else:
        hist = train(
            model,
            train_ids,
            val_ids,
            steps=entry.steps,
            batch_size=entry.batch_size,
            lr=entry.lr,
            warmup=100,
            eval_every=max(1, entry.steps // 10),
            seed=entry.seed,
            progress=progress,
        )
    path = save_checkpoint(Path(out_dir) / f"{name}.pt", model, tok, meta={"recipe": entry.name})
    # Measure what was shipped (the float16-rounded weights), not the float32 in memory.
    model, tok, _ = load_checkpoint(path)
    val = evaluate_loss(model, val_ids, 16, block_size=entry.config.block_size, n_batches=16, random_windows=True)
    acc = fact_accuracy(model, tok, fact_recall_task(200))
    uni = unigram_loss(train_ids, val_ids, tok.vocab_size)
    print(
        f"{name}: {model.num_params():,} params; val loss {val:.3f} (unigram baseline {uni:.3f}); "
        f"fact recall {acc:.1%}; trained {hist['seconds']:.0f} s at {hist['tokens_per_s']:,.0f} tokens/s"
    )
    return path


def _main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m minillm.zoo", description="Rebuild the shipped zoo weights.")
    p.add_argument("command", choices=["build"])
    p.add_argument("names", nargs="+", choices=names())
    p.add_argument("--out", default=str(WEIGHTS_DIR), help="folder for NAME.pt (default: the package's zoo_weights)")
    a = p.parse_args(argv)
    for n in a.names:
        print("wrote", build(n, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
