"""minillm.evaluate.evaluate_loss: both ways of cutting the ids, against a hand-written mean."""

import pytest
import torch

from minillm.data import get_batch
from minillm.evaluate import evaluate_loss
from minillm.model import GPT, GPTConfig

pytestmark = pytest.mark.lesson01


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32))


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 64, (200,), generator=torch.Generator().manual_seed(2))


@torch.no_grad()
def test_blocks_are_the_token_weighted_mean_over_every_block(gpt, ids):
    # 199 targets -> 12 full blocks of 16; batches of 5, 5 and 2 blocks weigh by tokens
    x, y = ids[:192].view(12, 16), ids[1:193].view(12, 16)
    expected = float(gpt(x, y)[1])  # one batch of all 12 blocks: the plain mean
    assert evaluate_loss(gpt, ids, batch_size=5) == pytest.approx(expected, rel=1e-5)  # fp32 sums in another order
    first = float(gpt(x[:5], y[:5])[1])
    assert evaluate_loss(gpt, ids, batch_size=5, n_batches=1) == pytest.approx(first, rel=1e-6)


@torch.no_grad()
def test_random_windows_are_the_seeded_batches_training_logs(gpt, ids):
    g = torch.Generator().manual_seed(3)
    expected = sum(float(gpt(*get_batch(ids, 4, 8, generator=g))[1]) for _ in range(3)) / 3
    got = evaluate_loss(gpt, ids, 4, block_size=8, n_batches=3, random_windows=True, seed=3)
    assert got == pytest.approx(expected, rel=1e-6)


def test_mode_is_restored_and_no_graph_is_kept(gpt, ids):
    gpt.train()
    evaluate_loss(gpt, ids, n_batches=1)
    assert gpt.training
    assert all(p.grad is None for p in gpt.parameters())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(ids=torch.randn(50)), "1-D tensor of token ids"),
        (dict(ids=torch.zeros(2, 50, dtype=torch.long)), "1-D tensor of token ids"),
        (dict(ids=torch.zeros(10, dtype=torch.long)), "need at least block_size"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(n_batches=True), "n_batches=True"),
    ],
)
def test_bad_input_is_a_clear_error(gpt, ids, kwargs, match):
    kwargs = {"ids": ids, **kwargs}
    with pytest.raises(ValueError, match=match):
        evaluate_loss(gpt, **kwargs)
