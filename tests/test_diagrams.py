"""minillm.diagrams: the block and KV-cache diagrams draw what the model does."""

import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from minillm.diagrams import block_boxes, block_figure, kv_cache_figure, kv_cache_steps
from minillm.model import GPT, GPTConfig
from minillm.presets import TEACHER

pytestmark = pytest.mark.lesson01


def test_block_boxes_follow_the_code_and_the_config():
    boxes = block_boxes(TEACHER)
    labels = [b.label for b in boxes]
    # Pre-norm order, as Block.forward: ln_1, attention, add, ln_2, MLP, add.
    order = [next(i for i, l in enumerate(labels) if l.startswith(p)) for p in ("ln_1", "c_attn", "x + attn", "ln_2", "c_fc", "x + mlp")]
    assert order == sorted(order)
    assert "4 heads of D = 32" in labels[2] and "128 → 512" in boxes[6].label
    assert [b.row for b in boxes] == list(range(len(boxes)))


def test_block_figure_draws_every_box_label_and_shape():
    fig = block_figure(TEACHER)
    ax = fig.axes[0]
    texts = {t.get_text() for t in ax.texts}
    for b in block_boxes(TEACHER):
        assert b.label in texts and b.shape in texts
    assert sum(isinstance(p, Rectangle) for p in ax.patches) == len(block_boxes(TEACHER))
    assert "C = 128, H = 4, D = 32" in ax.get_title()


@pytest.mark.parametrize("use_cache", [False, True])
def test_kv_cache_steps_match_what_generate_feeds_the_model(use_cache):
    # Reference: count the positions GPT.generate really feeds lm_head, with a hook.
    model = GPT(GPTConfig(vocab_size=16, block_size=32, n_layer=1, n_head=1, n_embd=8)).eval()
    seen = []
    model.lm_head.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[-2]))
    model.generate(torch.zeros(1, 4, dtype=torch.long), 6, temperature=0, use_cache=use_cache)
    steps = kv_cache_steps(4, 6, use_cache)
    assert [len(s["computed"]) for s in steps] == seen
    for s in steps:  # every position up to the step's length is either computed or read from the cache
        assert sorted(s["computed"] + s["cached"]) == list(range(s["length"]))


def test_kv_cache_figure_colours_computed_and_cached_cells():
    fig = kv_cache_figure(prompt_len=4, n_new=5)
    without, with_cache = fig.axes[:2]
    dark = "tab:blue"

    def count(ax, colour):
        return sum(isinstance(p, Rectangle) and p.get_facecolor() == to_rgba(colour) for p in ax.patches)

    # Without: 4 + 5 + 6 + 7 + 8 = 30 computed cells; with: 4 + 1·4 = 8 computed, 4 + 5 + 6 + 7 = 22 cached.
    assert count(without, dark) == 30 and count(with_cache, dark) == 8 and count(with_cache, "#c6dbef") == 22
    assert "30 positions" in without.get_title() and "8 positions" in with_cache.get_title()
    assert with_cache.get_xlabel().startswith("position")


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="prompt_len=0"):
        kv_cache_steps(0, 3, True)
    with pytest.raises(ValueError, match="n_new=-1"):
        kv_cache_steps(2, -1, True)
