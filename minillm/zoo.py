"""Trained models that load in seconds, and safe checkpoints.

``load("teacher")`` returns ``(model, tokenizer)``. The weights ship inside the
package (``minillm/zoo_weights/``, float16 for storage, float32 in memory), so
every machine gets the same numbers and no lesson retrains the teacher. If a
file is missing, the model is trained once, deterministically, and cached in the
user's cache folder (``$MINILLM_CACHE`` or ``~/.cache/minillm``).

Reproduce the shipped files with::

    python -m minillm.zoo build teacher student

Checkpoints are written atomically (a temporary file, then a rename) and carry a
SHA-256 of their tensors, so a truncated, corrupted or mismatched file is caught
with an error that names it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minillm.model import GPT, GPTConfig
from minillm.presets import PRESETS

__all__ = ["ZooEntry", "MODELS", "load", "names", "save_checkpoint", "load_checkpoint", "build", "CheckpointError"]

FORMAT = "minillm-checkpoint"
VERSION = 1
WEIGHTS_DIR = Path(__file__).parent / "zoo_weights"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupted, or does not match what was asked."""


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
}


def names() -> list[str]:
    return sorted(MODELS)


def _entry(name: str) -> ZooEntry:
    if name not in MODELS:
        raise ValueError(f"unknown zoo model {name!r}; choose one of {names()}")
    return MODELS[name]


# --------------------------------------------------------------------------- checkpoints


def _digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: GPT, tokenizer=None, meta: dict | None = None, half: bool = True) -> Path:
    """Write ``model`` (and its tokenizer) to ``path`` atomically; returns the path.

    With ``half`` the tensors are stored in float16 (half the bytes). A tied
    output layer is stored once.
    """
    path = Path(path)
    state = {}
    for k, v in model.state_dict().items():
        if model.config.tie_weights and k == "lm_head.weight":
            continue
        v = v.detach().cpu()
        state[k] = v.half() if (half and v.is_floating_point()) else v.clone()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
        "state_dict": state,
        "sha256": _digest(state),
        "meta": meta or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, expect_config: GPTConfig | None = None):
    """Read a checkpoint; returns ``(model, tokenizer, meta)``. The model is float32 in eval mode.

    Raises :class:`CheckpointError` (a ``ValueError``) naming the file when it is
    missing, truncated, corrupted, not a minillm checkpoint, or does not match
    ``expect_config``.
    """
    from minillm.tokenizer import tokenizer_from_dict

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, ...
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}); it may be truncated or corrupted — "
            f"delete it and rebuild it (python -m minillm.zoo build)"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a minillm checkpoint (no '{FORMAT}' header)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')}, this minillm reads {VERSION}")
    state = payload["state_dict"]
    if _digest(state) != payload.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupted: its tensors do not match the stored SHA-256")
    try:
        config = GPTConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {e}") from None
    if expect_config is not None and config != expect_config:
        diff = {
            k: (v, getattr(config, k)) for k, v in expect_config.to_dict().items() if getattr(config, k) != v
        }
        raise CheckpointError(
            f"checkpoint {path} does not match the expected config: "
            + ", ".join(f"{k} expected {a}, file has {b}" for k, (a, b) in diff.items())
        )
    model = GPT(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if config.tie_weights:
        expected.pop("lm_head.weight")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k]))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            parts.append(f"{k} has shape {tuple(state[k].shape)}, the config needs {tuple(expected[k])}")
        raise CheckpointError(f"checkpoint {path} does not match its config: " + "; ".join(parts))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)
    model.eval()
    tok = tokenizer_from_dict(payload["tokenizer"]) if payload.get("tokenizer") else None
    return model, tok, payload.get("meta", {})


# --------------------------------------------------------------------------- the zoo


def cache_dir() -> Path:
    return Path(os.environ.get("MINILLM_CACHE", Path.home() / ".cache" / "minillm"))


def _find(name: str) -> Path | None:
    for folder in (WEIGHTS_DIR, cache_dir()):
        p = folder / f"{name}.pt"
        if p.is_file():
            return p
    return None


_LOADED: dict[str, tuple] = {}


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
    if True:
        corpus = load_corpus(n_stories=entry.n_stories, seed=entry.seed)
        tok = tokenizer(entry.tokenizer_vocab, entry.n_stories, entry.seed)
        train_ids, val_ids = encode_splits(corpus, tok)
        torch.manual_seed(entry.seed)
        model = GPT(entry.config)
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
