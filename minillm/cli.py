"""The ``minillm`` command: ``tour``, ``train``, ``generate``, ``compress``, and the course commands.

Every sub-command has ``--help``. A bad flag or value prints one line,
``minillm: error: ...``, and exits with code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minillm.validate import check_int, check_number

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage block) and exit with 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(s: str) -> int:
    """argparse type: a whole number >= 1 (the check is :func:`minillm.validate.check_int`)."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a whole number") from None
    try:
        return check_int("value", v, minimum=1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1") from None


def _nonneg_float(s: str) -> float:
    """argparse type: a finite number >= 0 (the check is :func:`minillm.validate.check_number`)."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    try:
        return check_number("value", v, minimum=0.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v} must be >= 0 (and finite)") from None


def _arg_type(convert, check, what: str, rule: str):
    """An argparse type: ``convert`` the text (else "is not a WHAT"), then ``check`` it (else "must be RULE")."""

    def parse(s: str):
        try:
            v = convert(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not a {what}") from None
        try:
            return check("value", v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{v} must be {rule}") from None

    return parse


_nonneg_int = _arg_type(int, lambda n, v: check_int(n, v, minimum=0), "whole number", ">= 0")
_positive_float = _arg_type(float, lambda n, v: check_number(n, v, minimum=0.0, strict=True), "number", "> 0 (and finite)")


def build_parser() -> argparse.ArgumentParser:
    from minillm.presets import PRESETS

    p = _Parser(
        prog="minillm",
        description="minillm: a course on making large language models cheap, fast and big.",
        epilog="Start with `minillm tour`, then `minillm start` to copy the exercises into my-work/.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("tour", help="the course in under a minute: model, speed, and what each part adds")
    t.add_argument("--out", default="tour-report", help="folder for the report and plots (default: tour-report/)")
    t.add_argument("--skip", action="append", default=[], metavar="STEP",
                   help="leave out a step (model, speed, lora, quantization, pruning, distillation, hardware, parallel, tp_pp, three_d); repeatable")

    tr = sub.add_parser("train", help="train a GPT on the embedded stories or on your own text")
    tr.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model size and schedule (default: tiny)")
    tr.add_argument("--text", type=Path, help="a UTF-8 text file to train on instead of the embedded stories")
    tr.add_argument("--steps", type=_positive_int, help="training steps (default: the preset's)")
    tr.add_argument("--batch-size", type=_positive_int, help="sequences per step (default: the preset's)")
    tr.add_argument("--lr", type=_nonneg_float, help="peak learning rate (default: the preset's)")
    tr.add_argument("--n-layer", type=_positive_int)
    tr.add_argument("--n-head", type=_positive_int)
    tr.add_argument("--n-embd", type=_positive_int)
    tr.add_argument("--block-size", type=_positive_int)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", type=Path, default=Path("runs/model.pt"), help="checkpoint path (default: runs/model.pt)")

    g = sub.add_parser("generate", help="sample text from a zoo model or a checkpoint")
    g.add_argument("--prompt", default="Lily went to the", help="the text to continue")
    g.add_argument("--model", default="teacher", help="a zoo name (teacher, student) or a checkpoint path")
    g.add_argument("--max-new-tokens", type=_positive_int, default=120)
    g.add_argument("--temperature", type=_nonneg_float, default=0.8, help="0 means greedy")
    g.add_argument("--top-k", type=_positive_int, default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-cache", action="store_true", help="recompute the whole sequence at each step")

    c = sub.add_parser("compress", help="prune, distill and quantize a model to a size and quality budget (lesson 06)")
    c.add_argument("model", nargs="?", default="teacher", help="a zoo name (teacher, student) or a checkpoint path (default: teacher)")
    c.add_argument("--target-mb", type=_positive_float, default=None, help="largest acceptable size in MB (1 MB = 1e6 bytes; default: no limit)")
    c.add_argument("--max-loss-increase", type=_nonneg_float, default=0.05,
                   help="largest acceptable relative validation-loss increase (default 0.05 = 5%%)")
    c.add_argument("--objective", choices=["size", "latency"], default="size", help="return the smallest or the fastest model within budget")
    c.add_argument("--steps", type=_nonneg_int, default=40, help="distillation steps to recover each pruned model (default 40)")
    c.add_argument("--int4", action="store_true", help="also try int4 weight-only quantization")
    c.add_argument("--questions", type=_nonneg_int, default=50, help="fact-recall questions per configuration (0 skips recall; default 50)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", type=Path, default=Path("compressed"), help="folder for model.pt, report.md and pareto.png (default: compressed/)")

    gl = sub.add_parser("glossary", help="the course's terms in English and Chinese (英中术语表), or those matching TERM")
    gl.add_argument("term", nargs="?", default=None, help="a word in either language, e.g. pruning or 剪枝")

    from minillm.course.commands import register  # course build, grade, start, progress

    register(sub)
    return p


def _train(a: argparse.Namespace) -> int:
    import torch

    from minillm.data import encode_splits, load_corpus, load_text
    from minillm.model import GPT, GPTConfig
    from minillm.tokenizer import BPETokenizer, ByteTokenizer
    from minillm.checkpoint import save_checkpoint
    from minillm.presets import PRESETS
    from minillm.train import train

    preset = PRESETS[a.preset]
    steps, batch, lr = preset.steps, preset.batch_size, preset.lr
    fields = {k: getattr(preset.config, k) for k in ("n_layer", "n_head", "n_embd", "block_size")}
    for k in ("n_layer", "n_head", "n_embd", "block_size"):
        if getattr(a, k) is not None:
            fields[k] = getattr(a, k)
    if a.text is not None:
        text = load_text(a.text)
        tok = ByteTokenizer()
        train_ids, val_ids = encode_splits(text, tok)
        print(f"training on {a.text} ({len(text):,} characters, byte tokens)")
    else:
        corpus = load_corpus()
        tok = BPETokenizer.train(corpus.train_text, 512)
        train_ids, val_ids = encode_splits(corpus, tok)
        print(f"training on the embedded stories ({len(train_ids):,} training tokens)")
    config = GPTConfig(vocab_size=tok.vocab_size, **fields)
    torch.manual_seed(a.seed)
    model = GPT(config)
    print(f"model: {model.num_params():,} parameters, {model.flops_per_token():,} FLOPs per token")
    train(model, train_ids, val_ids, steps=a.steps or steps, batch_size=a.batch_size or batch,
          lr=a.lr if a.lr is not None else lr, seed=a.seed, eval_every=max(1, (a.steps or steps) // 10))
    path = save_checkpoint(a.out, model, tok, meta={"preset": a.preset, "text": str(a.text) if a.text else None})
    print(f"saved {path}; try: minillm generate --model {path}")
    return 0


def _load_model(name: str, fix: str):
    """(model, tokenizer) of a zoo name or a checkpoint path; a checkpoint without a tokenizer is an error."""
    from minillm import zoo
    from minillm.checkpoint import load_checkpoint

    if name in zoo.MODELS:
        return zoo.load(name)
    model, tok, _ = load_checkpoint(name)
    if tok is None:
        raise ValueError(f"checkpoint {name} has no tokenizer; {fix}")
    return model, tok


def _generate(a: argparse.Namespace) -> int:
    import torch

    model, tok = _load_model(a.model, "save it with its tokenizer")
    ids = tok.encode(a.prompt)
    if not ids:
        raise ValueError("--prompt is empty; give some text to continue")
    idx = torch.tensor([ids[-model.config.block_size:]], dtype=torch.long)
    out = model.generate(idx, a.max_new_tokens, temperature=a.temperature, top_k=a.top_k,
                         use_cache=not a.no_cache, generator=torch.Generator().manual_seed(a.seed))
    print(tok.decode(out[0].tolist()))
    return 0


def _compress(a: argparse.Namespace) -> int:
    import torch

    from minillm.compress.pipeline import BudgetNotMet, compress, default_plans
    from minillm.compress.pipeline_checkpoint import save_compressed
    from minillm.compress.pipeline_study import plot_pareto
    from minillm.data import encode_splits, load_corpus
    from minillm.threads import one_thread

    torch.manual_seed(a.seed)
    model, tok = _load_model(a.model, "compress needs it to encode the validation text")
    train_ids, val_ids = encode_splits(load_corpus(), tok)
    target = None if a.target_mb is None else a.target_mb * 1e6
    print(f"compressing {a.model}: {model.num_params():,} parameters; budget: "
          f"{'any size' if target is None else f'<= {a.target_mb:g} MB'}, loss increase <= {a.max_loss_increase:.1%}")
    plans = default_plans(a.steps, ("int8", "int4") if a.int4 else ("int8",))
    a.out.mkdir(parents=True, exist_ok=True)
    try:  # one thread: these small matmuls gain little from two, and two fight on a busy laptop
        with one_thread():
            small, report = compress(model, target_bytes=target, max_loss_increase=a.max_loss_increase,
                                     calibration_ids=train_ids, val_ids=val_ids, tokenizer=tok, plans=plans,
                                     objective=a.objective, n_questions=a.questions, seed=a.seed, progress=True)
        code, message = 0, None
    except BudgetNotMet as e:
        small, report, code, message = None, e.report, 1, str(e)
    fig = plot_pareto(report.rows, report.chosen, a.max_loss_increase)
    fig.savefig(a.out / "pareto.png", dpi=100)
    verdict = message or f"chosen: **{report.best['name']}** (written to model.pt)"
    (a.out / "report.md").write_text(
        f"# minillm compress {a.model}\n\nBudget: {'any size' if target is None else f'<= {a.target_mb:g} MB'}, "
        f"validation-loss increase <= {a.max_loss_increase:.1%}; objective: {a.objective}. Sizes are in-memory bytes; "
        f"latency is one forward pass of {report.seq_len} tokens on one thread (best of interleaved rounds).\n\n"
        f"{report.to_markdown()}\n\n{verdict}\n\n![Pareto fronts](pareto.png)\n"
    )
    print(report.to_markdown())
    if small is None:
        print(f"minillm: {message}", file=sys.stderr)
        print(f"wrote {a.out / 'report.md'} and {a.out / 'pareto.png'} (no checkpoint)", file=sys.stderr)
        return code
    path = save_compressed(a.out / "model.pt", small, tok, meta={"compressed_from": str(a.model), "plan": report.best["name"]})
    b = report.best
    print(f"chosen: {b['name']}: {b['bytes'] / 1e6:.3f} MB ({report.rows[0]['bytes'] / b['bytes']:.2f}x smaller), "
          f"loss {b['val_loss']:.4f} ({b['loss_increase']:+.1%}); wrote {path}, {a.out / 'report.md'}, {a.out / 'pareto.png'}")
    return 0


def _glossary(a: argparse.Namespace) -> int:
    from minillm.glossary import format_terms, lookup

    terms = lookup(a.term)
    if not terms:
        print(f"minillm: no glossary term matches {a.term!r}; `minillm glossary` lists them all", file=sys.stderr)
        return 1
    print(format_terms(terms))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        return 0
    try:
        if a.command == "tour":
            from minillm.tour import run_tour

            return run_tour(Path(a.out), skip=set(a.skip))
        if a.command == "train":
            return _train(a)
        if a.command == "generate":
            return _generate(a)
        if a.command == "glossary":
            return _glossary(a)
        if a.command == "compress":
            return _compress(a)
        return a.handler(a)
    except (ValueError, FileNotFoundError) as e:
        print(f"minillm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minillm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
