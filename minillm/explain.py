"""Looking inside the GPT: which tokens the embedding puts close together, attention
patterns, where parameters and FLOPs go, what temperature and top-k do to the next
token, and what one layer receives.

Pure functions that return data (tensors, lists, dicts); lessons 01 and 04 plot
them. :func:`plot_next_token_view` draws the sampling view on a ``Figure`` (no
pyplot) and :func:`sampling_widget` wraps both in ``interactive`` controls whose
descriptions are wide enough to read in full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from minillm.model import GPT, Linear, causal_attention, next_token_probs
from minillm.validate import check_int

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "nearest_tokens",
    "attention_pattern",
    "component_costs",
    "next_token_view",
    "plot_next_token_view",
    "sampling_widget",
    "plot_attention",
    "plot_losses",
    "plot_costs",
    "layer_input",
]


def _is_word(text: str) -> bool:
    """A whole word of at least three letters (after stripping the leading space)."""
    t = text.strip()
    return t.isalpha() and len(t) > 2


@torch.no_grad()
def nearest_tokens(model: GPT, tokenizer, token: str, k: int = 5, words_only: bool = True) -> list[tuple[str, float]]:
    """The ``k`` tokens whose embedding rows are closest in cosine similarity to ``token``'s.

    ``token`` must encode to exactly one token id (e.g. ``" Mia"`` with its leading
    space); its row of ``model.wte.weight`` [V, C] is compared with every row. The
    token itself is left out, and with ``words_only`` so is every token that is not a
    whole word of three or more letters (pieces like ``"ia"``, punctuation).
    Returns [(decoded token, cosine similarity)], most similar first.
    """
    ids = tokenizer.encode(token)
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise ValueError(f"{token!r} is {len(ids)} tokens {pieces}, not one; pick a single token, e.g. with a leading space")
    check_int("k", k)
    i = ids[0]
    E = torch.nn.functional.normalize(model.wte.weight.detach().float(), dim=1)  # [V, C], unit rows
    sims = E @ E[i]  # [V]
    out = []
    for j in sims.argsort(descending=True).tolist():
        text = tokenizer.decode([j])
        if j == i or (words_only and not _is_word(text)):
            continue
        out.append((text, float(sims[j])))
        if len(out) == k:
            break
    return out


@torch.no_grad()
def attention_pattern(model: GPT, idx: Tensor, layer: int) -> Tensor:
    """Attention weights [H, T, T] of block ``layer`` for token ids idx [1, T].

    Runs the blocks before ``layer``, then redoes that block's attention with the
    readable :func:`minillm.model.causal_attention`, which can return its weights.
    Row i is where query i looks; every row sums to 1 and the upper triangle is 0.
    """
    if not 0 <= layer < model.config.n_layer:
        raise ValueError(f"layer={layer} is outside 0..{model.config.n_layer - 1}")
    if idx.dim() != 2 or idx.size(0) != 1:
        raise ValueError(f"idx must have shape [1, T], got {tuple(idx.shape)}; use idx[:1]")
    model._check_idx(idx)
    x = model.wte(idx) + model.wpe(torch.arange(idx.size(1), device=idx.device))
    for block in model.h[:layer]:
        x = block(x)
    blk = model.h[layer]
    B, T, C = x.shape
    H = blk.attn.n_head
    q, k, v = blk.attn.c_attn(blk.ln_1(x)).split(C, dim=2)
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))  # [B, H, T, D]
    _, weights = causal_attention(q, k, v, return_weights=True)
    return weights[0]


def component_costs(model: GPT, seq_len: int | None = None) -> list[dict]:
    """Parameters and training FLOPs per token of each component of a GPT.

    Rows: ``{"component", "params", "flops"}``. The parameters add up to
    ``model.num_params(non_embedding=False)`` (a tied head counts once) and the FLOPs
    to ``model.flops_per_token(seq_len)`` = 6·N + 12·L·H·D·T: 6 per parameter used in
    a matmul (the position table is a lookup, so 0), plus the attention scores.
    """
    c = model.config
    T = c.block_size if seq_len is None else seq_len

    def n(params) -> int:
        return sum(p.numel() for p in params)

    blocks = model.h
    rows = [
        ("token embedding / lm_head (tied)" if c.tie_weights else "token embedding", n([model.wte.weight]), True),
        ("position embedding", n([model.wpe.weight]), False),
        ("attention projections", n(p for b in blocks for p in b.attn.parameters()), True),
        ("MLP", n(p for b in blocks for p in b.mlp.parameters()), True),
        ("layer norms", n(p for b in blocks for m in (b.ln_1, b.ln_2) for p in m.parameters()) + n(model.ln_f.parameters()), True),
    ]
    if not c.tie_weights:
        rows.append(("lm_head", n([model.lm_head.weight]), True))
    out = [{"component": name, "params": p, "flops": 6 * p if in_matmuls else 0} for name, p, in_matmuls in rows]
    out.append({"component": "attention scores (QKᵀ, AV)", "params": 0, "flops": 12 * sum(c.heads(i) for i in range(c.n_layer)) * c.head_dim * T})
    return out


@torch.no_grad()
def next_token_view(
    model: GPT, tokenizer, prompt: str, temperature: float, top_k: int | None,
    n_show: int = 10, n_tokens: int = 30, seed: int = 0,
) -> dict:
    """The next-token distribution after ``prompt`` under temperature and top-k, and one sampled continuation.

    Returns ``tokens`` and ``probs`` (the ``n_show`` most likely), ``entropy_bits`` of
    the whole distribution, and ``text``, a continuation sampled with the same settings.
    """
    model.eval()
    idx = torch.tensor([tokenizer.encode(prompt)])
    probs = next_token_probs(model(idx)[0][0, -1], temperature, top_k)
    nz = probs[probs > 0]
    top = probs.topk(n_show)
    out = model.generate(idx, n_tokens, temperature=temperature, top_k=top_k, generator=torch.Generator().manual_seed(seed))
    return {
        "tokens": [tokenizer.decode([i]) for i in top.indices.tolist()],
        "probs": top.values.tolist(),
        "entropy_bits": float(-(nz * nz.log2()).sum()) + 0.0,  # + 0.0 turns -0.0 into 0.0
        "text": tokenizer.decode(out[0, idx.size(1):].tolist()),
    }


def plot_next_token_view(view: dict, prompt: str) -> "Figure":
    """Bar chart of :func:`next_token_view`'s most likely tokens; the title gives the entropy."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 2.8))
    ax = fig.add_subplot()
    ax.bar(range(len(view["probs"])), view["probs"])
    ax.set_xticks(range(len(view["tokens"])), [repr(t) for t in view["tokens"]], rotation=45, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(f"next token after {prompt!r}: entropy {view['entropy_bits']:.2f} bits")
    fig.tight_layout()
    return fig


def plot_attention(weights: Tensor, labels: list[str], title: str) -> "Figure":
    """One heat map per head of attention weights [H, T, T] (rows: queries, columns: keys)."""
    from matplotlib.figure import Figure

    H = weights.size(0)
    fig = Figure(figsize=(3.4 * H, 3.8))
    axes = fig.subplots(1, H, squeeze=False)[0]
    for h, ax in enumerate(axes):
        ax.imshow(weights[h].detach().numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"head {h}")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels if h == 0 else [], fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94))  # leave room for the title
    return fig


def plot_losses(hist: dict, lines: dict[str, float]) -> "Figure":
    """Training and validation loss of a :func:`minillm.train.train` history, with reference lines."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot()
    ax.plot(hist["step"], hist["loss"], lw=1, label="training loss")
    ax.plot(hist["val_step"], hist["val_loss"], "o-", label="validation loss")
    for (name, y), style in zip(lines.items(), [":", "--", "-."]):
        ax.axhline(y, ls=style, color="gray", lw=1)
        ax.annotate(name, (hist["step"][-1], y), ha="right", va="bottom", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.legend(loc="upper center")
    fig.tight_layout()
    return fig


def plot_costs(costs: list[dict]) -> "Figure":
    """Two bar charts of :func:`component_costs`: parameters and training FLOPs per token."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    names = [r["component"] for r in costs]
    fig = Figure(figsize=(10, 3.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, ["params", "flops"], ["parameters", "training FLOPs per token"]):
        ax.barh(names, [r[key] for r in costs])
        ax.set_title(title)
        ax.xaxis.set_major_formatter(EngFormatter())  # 200k, 2M, ...
    axes[0].invert_yaxis()  # the axes share y: invert once, table order top to bottom
    fig.tight_layout()
    return fig


#: One layout for the course's sliders: the description gets the room it needs
#: (ipywidgets' default cuts "temperature" to "temperat…"), the slider a fixed width.
SLIDER_STYLE = {"description_width": "initial"}
SLIDER_WIDTH = "460px"


def sampling_widget(model: GPT, tokenizer, prompt: str, temperature: float = 0.8, top_k: int = 20):
    """``interactive`` temperature and top-k sliders over :func:`next_token_view` (top_k 0 = off).

    Each change redraws :func:`plot_next_token_view` and prints a sampled continuation.
    """
    from IPython.display import display
    from ipywidgets import FloatSlider, IntSlider, Layout, interactive

    def show(temperature: float = temperature, top_k: int = top_k) -> None:
        view = next_token_view(model, tokenizer, prompt, temperature, top_k or None)
        display(plot_next_token_view(view, prompt))
        print(prompt + view["text"])

    layout = Layout(width=SLIDER_WIDTH)
    return interactive(
        show,
        temperature=FloatSlider(value=temperature, min=0.0, max=2.0, step=0.1, description="temperature",
                                style=SLIDER_STYLE, layout=layout),
        top_k=IntSlider(value=top_k, min=0, max=50, description="top_k (0 = all)", style=SLIDER_STYLE, layout=layout),
    )


@torch.no_grad()
def layer_input(model: nn.Module, name: str, idx: Tensor) -> Tensor:
    """What the submodule ``name`` (e.g. ``"h.0.mlp.c_fc"``) receives when ``model(idx)`` runs.

    idx: token ids [B, T] -> that layer's first input, e.g. [B, T, in_features] for a
    Linear. Captured with a forward pre-hook, which is removed again afterwards.
    """
    try:
        layer = model.get_submodule(name)
    except AttributeError:
        names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, Linear))]
        raise ValueError(f"model has no submodule {name!r}; its linear layers are e.g. {names[:4]}") from None
    seen: list[Tensor] = []
    hook = layer.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        model(idx)
    finally:
        hook.remove()
    if not seen:
        raise ValueError(f"{name!r} was not called when the model ran on idx; pick a layer on the forward path")
    return seen[0]
