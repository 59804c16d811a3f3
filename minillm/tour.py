"""``minillm tour``: the course in under a minute, from the embedded defaults.

Each step prints a few lines and adds a section to ``OUT/report.md``; plots go
to ``OUT/*.png``. Later parts of the course add their own step through a
``tour_step(out_dir) -> markdown`` function in their package.
"""

from __future__ import annotations

import importlib
import re
import time
from pathlib import Path
from typing import Callable

import torch

from minillm.threads import num_threads


def _bar_chart(parts: dict[str, int], path: Path) -> None:
    """Save a horizontal bar chart of parameters per component to ``path`` (PNG)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot()
    ax.barh(list(parts), list(parts.values()), color="tab:blue")
    ax.set_xlabel("parameters")
    ax.set_title("Where the teacher's parameters are")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _whole_sentences(text: str) -> str:
    """``text`` cut after its last sentence end (. ! ?, or a closing quote after one); unchanged if it has none."""
    ends = [m.end() for m in re.finditer(r'[.!?]["\u201d\']?(?=\s|$)', text)]
    return text[: ends[-1]] if ends else text


def step_model(out: Path) -> str:
    from minillm import zoo
    from minillm.explain import component_costs
    from minillm.data import chance_accuracy, encode_splits, fact_recall_task, load_corpus, unigram_loss
    from minillm.evaluate import accuracy, evaluate_loss

    t0 = time.perf_counter()
    model, tok = zoo.load("teacher")
    corpus = load_corpus()
    train_ids, val_ids = encode_splits(corpus, tok)
    c = model.config
    val = evaluate_loss(model, val_ids, 16, block_size=c.block_size, n_batches=4, random_windows=True)
    uni = unigram_loss(train_ids, val_ids, tok.vocab_size)
    questions = fact_recall_task(100)
    acc = accuracy(model, tok, questions)
    chance = chance_accuracy(questions)
    prompt = "Lily went to the"
    idx = torch.tensor([tok.encode(prompt)])
    story = _whole_sentences(
        tok.decode(model.generate(idx, 90, temperature=0.7, top_k=20, generator=torch.Generator().manual_seed(0))[0].tolist())
    )
    parts = {r["component"]: r["params"] for r in component_costs(model) if r["params"]}
    _bar_chart(parts, out / "parameters.png")
    q = questions[0]
    answer_ids = model.generate(torch.tensor([tok.encode(q.prompt)[-c.block_size + 8:]]), 6, temperature=0)[0]
    lines = [
        f"teacher: {model.num_params():,} parameters without the position embedding wpe, "
        f"{model.num_params(non_embedding=False):,} with it ({c.n_layer} layers, {c.n_head} heads, width {c.n_embd}, vocab {c.vocab_size})",
        f"FLOPs per token (training, 6N + 12·L·H·D·T at T={c.block_size}, N without wpe): {model.flops_per_token():,}",
        f"validation loss {val:.3f} nats/token (unigram baseline {uni:.3f})",
        f"fact recall: {acc:.0%} of {len(questions)} questions (chance {chance:.0%})",
    ]
    for line in lines:
        print("  " + line)
    print("  sample: " + story.replace("\n", " "))
    md = ["## The model", "", *[f"- {x}" for x in lines], "", "A story it wrote (temperature 0.7, top-k 20):", "",
          "> " + story.replace("\n", "\n> "), "",
          f"Question from a held-out story: `{q.question.strip()}` — the model answers "
          f"`{tok.decode(answer_ids.tolist()[len(tok.encode(q.prompt)[-c.block_size + 8:]):]).strip()}` "
          f"(expected `{q.answer.strip()}`).", "", "![parameters](parameters.png)", "",
          f"_{time.perf_counter() - t0:.1f} s_", ""]
    return "\n".join(md)


def step_speed(out: Path) -> str:
    from minillm import zoo
    from minillm.data import encode_splits, get_batch, load_corpus
    from minillm.hardware import measure
    from minillm.timing import train_step_seconds
    from minillm.train import AdamW

    model, tok = zoo.load("teacher")
    model.train()
    ids, _ = encode_splits(load_corpus(n_stories=600), tok)
    spec = measure.this_machine(quick=True, threads=torch.get_num_threads())
    peak, source = spec.peak_flops["fp32"], f"fp32 GEMM peak measured just now on {torch.get_num_threads()} thread(s)"
    opt = AdamW(model.parameters(), lr=1e-4)
    B, T = 8, model.config.block_size
    x, y = get_batch(ids, B, T, generator=torch.Generator().manual_seed(0))
    tps = B * T / train_step_seconds(model, x, y, opt, steps=5, progress="  timing training steps")
    fpt = model.flops_per_token()
    mfu = fpt * tps / peak
    lines = [
        f"training: {tps:,.0f} tokens/s on {torch.get_num_threads()} CPU thread{'s' if torch.get_num_threads() != 1 else ''} (batch {B}×{T})",
        f"MFU = FLOPs/token × tokens/s ÷ peak = {fpt:,} × {tps:,.0f} ÷ {peak / 1e9:,.0f} GFLOP/s = {mfu:.1%}",
        f"peak used: {source}",
    ]
    for line in lines:
        print("  " + line)
    return "\n".join(["## Speed on this machine", "", *[f"- {x}" for x in lines], ""])


def _external(module: str) -> Callable[[Path], str]:
    """A tour step that imports ``module`` only when it runs (keeps ``minillm --help`` fast)."""

    def step(out: Path) -> str:
        return importlib.import_module(module).tour_step(out)

    return step


def _tp_pp(out: Path) -> str:
    return importlib.import_module("minillm.parallel.tour").tp_pp_step(out)


STEPS: list[tuple[str, str, Callable[[Path], str]]] = [
    ("model", "The teacher: size, loss, fact recall, a story", step_model),
    ("speed", "Training speed and MFU on this machine", step_speed),
    ("lora", "LoRA: 2% of the weights learn a new question as well as all of them", _external("minillm.compress.lora_study")),
    ("quantization", "int8: smaller, and faster only with int8 kernels", _external("minillm.compress.tour")),
    ("pruning", "Pruning: masks save nothing, removing heads and neurons does", _external("minillm.compress.prune_study")),
    ("distillation", "Distillation: the same student, taught by the teacher", _external("minillm.compress.distill_study")),
    ("hardware", "This machine on the roofline; cost per million tokens", _external("minillm.hardware.tour")),
    ("parallel", "Data parallelism on 4 simulated devices equals one device", _external("minillm.parallel.tour")),
    ("tp_pp", "Tensor and pipeline parallelism equal one device; the pipeline's bubble", _tp_pp),
    ("three_d", "3D parallelism equals one device; the planner against the simulator and published runs",
     lambda out: importlib.import_module("minillm.parallel.tour").three_d_step(out)),
]


def run_tour(out: Path = Path("tour-report"), skip: set[str] | None = None) -> int:
    """Run every tour step; write ``out/report.md``. Returns an exit code."""
    skip = skip or set()
    unknown = skip - {name for name, _, _ in STEPS}
    if unknown:
        raise ValueError(f"--skip {sorted(unknown)} is not a tour step; choose from {[n for n, _, _ in STEPS]}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    # One thread: the tour's matrices are small, and on a busy two-core machine a second
    # OpenMP thread mostly waits for the first (we measured steps many times slower).
    print("(running on one CPU thread, so the numbers are comparable from machine to machine)")
    sections = ["# minillm tour", ""]
    t0 = time.perf_counter()
    failed = []
    with num_threads(1):
        for i, (name, title, fn) in enumerate([s for s in STEPS if s[0] not in skip], 1):
            print(f"[{i}] {title}", flush=True)
            try:
                sections.append(fn(out))
            except Exception as e:  # one broken step must not hide the rest
                failed.append(name)
                print(f"  step {name!r} failed: {type(e).__name__}: {e}")
                sections.append(f"## {title}\n\nThis step failed: `{type(e).__name__}: {e}`\n")
    total = time.perf_counter() - t0
    sections.append(f"_Tour finished in {total:.0f} s._\n")
    (out / "report.md").write_text("\n".join(sections), encoding="utf-8")
    print(f"done in {total:.0f} s; report: {out / 'report.md'}")
    return 1 if failed else 0
