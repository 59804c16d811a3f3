"""minillm.explain: the data behind lesson 01's plots and its sampling widget."""

import math

import pytest
import torch

from minillm.explain import (
    attention_pattern,
    component_costs,
    layer_input,
    nearest_tokens,
    next_token_view,
    plot_attention,
    plot_costs,
    plot_losses,
    plot_next_token_view,
    sampling_widget,
)
from minillm.model import GPT, GPTConfig, next_token_probs
from minillm.tokenizer import ByteTokenizer

pytestmark = pytest.mark.lesson01


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=256, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()


def test_component_costs_add_up(model):
    rows = component_costs(model)
    assert sum(r["params"] for r in rows) == model.num_params(non_embedding=False)
    assert sum(r["flops"] for r in rows) == model.flops_per_token()  # exact integer identity


def test_attention_pattern_is_causal_and_normalised(model):
    idx = torch.randint(0, 256, (1, 9))
    w = attention_pattern(model, idx, layer=1)
    assert w.shape == (2, 9, 9)
    assert float(w.triu(1).abs().max()) == 0.0  # masked positions get exactly zero weight
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 9), atol=1e-6, rtol=0)  # fp32 softmax rows
    with pytest.raises(ValueError, match="layer=2 is outside"):
        attention_pattern(model, idx, layer=2)


def test_next_token_probs_closed_forms():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    torch.testing.assert_close(next_token_probs(logits, 0), torch.tensor([1.0, 0, 0, 0]))
    torch.testing.assert_close(next_token_probs(logits, 1.0), torch.softmax(logits, -1), atol=1e-7, rtol=0)
    p = next_token_probs(logits, 1.0, top_k=2)
    e = math.exp(1.0)
    torch.testing.assert_close(p, torch.tensor([e / (e + 1), 1 / (e + 1), 0, 0]), atol=1e-7, rtol=0)


def test_next_token_view_widget_sweep(model):
    """Drive lesson 01's controls over their range, as the widget would."""
    from ipywidgets import FloatSlider, IntSlider, Widget, interactive

    tok = ByteTokenizer()
    seen = {}

    def show(temperature=0.8, top_k=20):
        seen[(temperature, top_k)] = next_token_view(model, tok, "ab", temperature, top_k or None, n_tokens=3)

    w = interactive(show, temperature=FloatSlider(value=0.8, min=0.0, max=2.0, step=0.5),
                    top_k=IntSlider(value=20, min=0, max=50, step=25))
    for t in (0.0, 0.5, 1.0, 1.5, 2.0):
        for k in (0, 25, 50):
            w.children[0].value, w.children[1].value = t, k
            w.update()
    Widget.close_all()
    assert seen[(0.0, 0)]["entropy_bits"] == 0.0  # greedy: all mass on one token
    # the whole distribution flattens as the temperature rises (top-k off)
    ent = [seen[(t, 0)]["entropy_bits"] for t in (0.5, 1.0, 2.0)]
    assert ent == sorted(ent)
    assert all(len(v["text"]) > 0 for v in seen.values())


def test_layer_input_is_what_the_layer_sees(model):
    # Reference: recompute block 0's MLP input by hand, ln_2(x + attn(ln_1(x))) on the embeddings.
    idx = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    x_in = layer_input(model, "h.0.mlp.c_fc", idx)
    with torch.no_grad():
        b = model.h[0]
        pos = torch.arange(idx.shape[1])
        x = model.wte(idx) + model.wpe(pos)
        x = x + b.attn(b.ln_1(x))
        expected = b.ln_2(x)
    assert x_in.shape == (2, 12, model.config.n_embd)
    torch.testing.assert_close(x_in, expected, rtol=0, atol=1e-6)  # same ops, same order: float32 noise only
    assert not model.h[0].mlp.c_fc._forward_pre_hooks  # the hook is gone again


def test_layer_input_names_a_wrong_layer(model):
    idx = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"no submodule 'h.0.mlp.fc'"):
        layer_input(model, "h.0.mlp.fc", idx)


def test_nearest_tokens_matches_brute_force_cosine(model):
    tok = ByteTokenizer()
    query = ord("e")
    got = nearest_tokens(model, tok, "e", k=6, words_only=False)
    # Reference: cosine similarity of the query row with every row, one pair at a time.
    W = model.wte.weight.detach()
    sims = torch.nn.functional.cosine_similarity(W[query].expand_as(W), W, dim=1)
    order = [j for j in sims.argsort(descending=True).tolist() if j != query][:6]
    assert [t for t, _ in got] == [tok.decode([j]) for j in order]
    torch.testing.assert_close(torch.tensor([c for _, c in got]), sims[order], rtol=0, atol=1e-6)
    assert all(a >= b for (_, a), (_, b) in zip(got, got[1:]))  # most similar first


def test_nearest_tokens_keeps_whole_words_and_rejects_several_tokens(model):
    class Words:
        """A toy tokenizer: token i decodes to a word, a letter piece or punctuation."""

        vocab = ["the", "ab", ",", "cat", "dog", "x"] * 43  # >= 256 entries to cover wte

        def encode(self, text):
            return [self.vocab.index(w) for w in text.split()]

        def decode(self, ids):
            return " ".join(self.vocab[i] for i in ids)

    got = nearest_tokens(model, Words(), "cat", k=4)
    assert len(got) == 4 and all(t in ("the", "cat", "dog") for t, _ in got)  # no "ab", ",", "x"
    with pytest.raises(ValueError, match="2 tokens"):
        nearest_tokens(model, Words(), "the cat")
    with pytest.raises(ValueError, match="k=0"):
        nearest_tokens(model, Words(), "cat", k=0)


def test_plot_next_token_view_draws_the_probabilities(model):
    view = next_token_view(model, ByteTokenizer(), "ab", 1.0, None, n_tokens=2)
    fig = plot_next_token_view(view, "ab")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx(view["probs"])  # one bar per shown token, its probability
    assert ax.get_ylabel() == "probability" and ax.get_ylim() == (0, 1)
    assert f"{view['entropy_bits']:.2f} bits" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == [repr(t) for t in view["tokens"]]


def test_sampling_widget_descriptions_are_not_cut_off(model):
    from ipywidgets import Widget

    w = sampling_widget(model, ByteTokenizer(), "ab")
    sliders = w.children[:2]
    assert [s.description for s in sliders] == ["temperature", "top_k (0 = all)"]
    # ipywidgets' default description width cuts "temperature" to "temperat…" in a browser.
    assert all(s.style.description_width == "initial" for s in sliders)
    sliders[0].value = 0.0  # greedy: the widget re-runs without error
    w.update()
    Widget.close_all()


def test_plot_attention_shows_each_heads_weights(model):
    idx = torch.randint(0, 256, (1, 7), generator=torch.Generator().manual_seed(1))
    w = attention_pattern(model, idx, layer=0)
    labels = [chr(97 + i) for i in range(7)]
    fig = plot_attention(w, labels, "block 0")
    assert len(fig.axes) == 2 and fig._suptitle.get_text() == "block 0"
    for h, ax in enumerate(fig.axes):
        torch.testing.assert_close(torch.as_tensor(ax.images[0].get_array().data), w[h], atol=0, rtol=0)
        assert ax.get_title() == f"head {h}" and [t.get_text() for t in ax.get_xticklabels()] == labels
    assert not any(t.get_text() for t in fig.axes[1].get_yticklabels())  # labels on the first head only


def test_plot_losses_draws_the_history_and_the_reference_lines():
    hist = {"step": [0, 1, 2, 3], "loss": [5.0, 4.0, 3.5, 3.0], "val_step": [0, 3], "val_loss": [5.1, 3.2]}
    fig = plot_losses(hist, {"uniform": 6.2, "unigram": 4.8})
    ax = fig.axes[0]
    train_line, val_line, *refs = ax.get_lines()
    assert list(train_line.get_ydata()) == hist["loss"] and list(val_line.get_xdata()) == hist["val_step"]
    assert [r.get_ydata()[0] for r in refs] == [6.2, 4.8]
    assert {t.get_text() for t in ax.texts} == {"uniform", "unigram"}
    assert ax.get_xlabel() == "step" and "nats" in ax.get_ylabel()


def test_plot_costs_bars_are_the_table(model):
    costs = component_costs(model)
    fig = plot_costs(costs)
    params_ax, flops_ax = fig.axes
    assert [p.get_width() for p in params_ax.patches] == [r["params"] for r in costs]
    assert [p.get_width() for p in flops_ax.patches] == [r["flops"] for r in costs]
    assert params_ax.get_title() == "parameters" and flops_ax.get_title() == "training FLOPs per token"
