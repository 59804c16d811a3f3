"""Lesson 02's experiments on a tiny GPT: budgets against add_lora, spectra against closed forms."""

import pytest
import torch
from matplotlib.figure import Figure

from minillm.compress import lora_study as ls
from minillm.compress.lora import add_lora, trainable_parameters
from minillm.model import GPT, GPTConfig
from minillm.transfer import transfer_task
from minillm.units import format_bytes

pytestmark = pytest.mark.lesson02



@pytest.fixture(scope="module")
def tok():
    from minillm import zoo

    return zoo.load("teacher")[1]


@pytest.fixture
def tiny():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return GPT(GPTConfig(vocab_size=512, block_size=256, n_layer=2, n_head=2, n_embd=32))


@pytest.mark.parametrize("targets", [("c_attn",), ("c_attn", "c_proj", "c_fc")])
@pytest.mark.parametrize("r", [1, 4])
def test_budget_counts_what_add_lora_trains(tiny, r, targets):
    b = ls.lora_budget(tiny, r, 2 * r, targets)
    adapted = add_lora(__import__("copy").deepcopy(tiny), r, targets=targets)
    assert b["trainable"] == trainable_parameters(adapted)
    total = sum(p.numel() for p in tiny.parameters())
    assert b["share"] == pytest.approx(b["trainable"] / total)
    assert b["optimizer_bytes"] == 8 * b["trainable"] and b["full_optimizer_bytes"] == 8 * total
    assert b["adapter_bytes"] == 4 * b["trainable"] and b["scaling"] == 2.0


def test_energy_is_the_eckart_young_share():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])
    b = ls.lora_budget(GPT(GPTConfig(vocab_size=8, block_size=4, n_layer=1, n_head=1, n_embd=4)), 2, spectrum=s)
    assert b["energy"] == pytest.approx((9 + 4) / 14)


def test_the_update_of_a_rank_r_adapter_has_rank_r(tiny):
    adapted = add_lora(__import__("copy").deepcopy(tiny), 3, targets=("c_attn",))
    with torch.no_grad():
        for m in adapted.modules():
            if hasattr(m, "B") and hasattr(m, "A"):
                m.B.normal_()
    s = ls.update_spectrum(tiny, adapted, "h.0.attn.c_attn")
    assert s.shape == (32,)
    assert (s[:3] > 1e-3).all() and (s[3:] < 1e-4 * s[0]).all()  # rank 3: the rest are float noise


def test_adapter_file_is_the_adapter_not_the_model(tiny):
    adapted = add_lora(__import__("copy").deepcopy(tiny), 2, targets=("c_attn",))
    n = ls.adapter_file_bytes(adapted)
    raw = 4 * trainable_parameters(adapted)
    assert raw <= n < raw + 4096  # the tensors plus a small pickle header
    assert n < 0.05 * 4 * sum(p.numel() for p in tiny.parameters())


def test_qlora_keeps_an_int4_base_smaller_and_trains_the_same_adapter(tiny, tok):
    train, test = transfer_task(4, "train"), transfer_task(4, "test")
    out = ls.qlora(tiny, tok, train, test, r=2, steps=2)
    f, q = out["float"], out["int4"]
    assert f["trainable"] == q["trainable"] == 2 * 2 * (32 + 96)
    assert f["optimizer_bytes"] == q["optimizer_bytes"]
    # int4 with a float32 scale per 32 weights: 4.5... bits of 32 for the adapted Linears
    assert q["weight_bytes"] < 0.8 * f["weight_bytes"]
    assert 0.0 <= q["accuracy"] <= 1.0


def test_plots_draw_the_rows():
    rows = [{"n": 16, "pretrained": 0.9, "scratch": 0.2}, {"n": 64, "pretrained": 1.0, "scratch": 0.25}]
    fig = ls.plot_sample_efficiency(rows)
    assert isinstance(fig, Figure)
    assert list(fig.axes[0].lines[0].get_ydata()) == [0.9, 1.0]
    mrows = [{"method": "full", "accuracy": 1.0, "trainable": 100}, {"method": "LoRA r=1", "accuracy": 0.9, "trainable": 3}]
    fig = ls.plot_methods(mrows)
    assert [p.get_height() for p in fig.axes[0].patches] == [1.0, 0.9]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["chance (20%)"]  # the dotted line is named


def test_budget_plot_shows_both_optimizer_states_with_their_sizes(tiny):
    b = ls.lora_budget(tiny, 2)
    ax = ls.plot_budget(b).axes[1]
    assert [p.get_height() for p in ax.patches] == [b["optimizer_bytes"], b["full_optimizer_bytes"]]
    lo, hi = ax.get_ylim()
    assert lo <= b["optimizer_bytes"] / 10 and hi >= b["full_optimizer_bytes"]  # both bars visibly long on the log axis
    assert [t.get_text() for t in ax.texts] == [format_bytes(b["optimizer_bytes"]), format_bytes(b["full_optimizer_bytes"])]
    left = ls.plot_budget(b).axes[0]  # no spectrum given: the empty panel says why
    assert not left.axison and "no spectrum" in left.texts[0].get_text()


def test_widget_is_interactive_over_the_budget(tiny):
    w = ls.lora_widget(tiny)
    assert w.result["r"] == 8 and w.result["trainable"] == ls.lora_budget(tiny, 8)["trainable"]


def test_bad_input_is_a_clear_error(tiny, tok):
    with pytest.raises(ValueError, match="no Linear named"):
        ls.lora_budget(tiny, 2, targets=("q_proj",))
    with pytest.raises(ValueError, match="r=0"):
        ls.lora_budget(tiny, 0)
    with pytest.raises(ValueError, match="sizes go up to 8"):
        ls.sample_efficiency(tiny, tok, transfer_task(2), transfer_task(2), sizes=(8,), progress=False)


def test_tour_step_writes_markdown_and_plot(tmp_path, monkeypatch, capsys):
    import minillm.transfer

    real_table, real_task = ls.method_table, minillm.transfer.transfer_task
    monkeypatch.setattr(ls, "method_table", lambda *a, **kw: real_table(*a, **{**kw, "steps": 2}))  # fast: 2 steps
    monkeypatch.setattr(minillm.transfer, "transfer_task", lambda n, split="train", **kw: real_task(8, split, **kw))
    md = ls.tour_step(tmp_path)
    assert md.startswith("## Transfer learning and LoRA") and "LoRA r=8" in md and "(1.91%)" in md
    assert "zero-shot teacher" in capsys.readouterr().out
    assert (tmp_path / "lora.png").stat().st_size > 1000
