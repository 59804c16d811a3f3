"""minillm.timing: best-of-n, interleaved rounds and one training step, timed for real."""

import time

import pytest
import torch

from minillm.model import GPT, GPTConfig
from minillm.timing import best_time, interleaved_best, train_step_seconds
from minillm.train import AdamW

pytestmark = pytest.mark.foundation


def test_best_time_is_the_fastest_call():
    # Sleeps of known length: the best of 3 is at least the shortest sleep, and far
    # below the longest (sleep overshoots by scheduler slack, never undershoots).
    delays = iter([0.03, 0.005, 0.03, 0.03])  # one warm-up, then three timed calls
    t = best_time(lambda: time.sleep(next(delays)), repeats=3, warmup=1)
    assert 0.005 <= t < 0.025


def test_best_time_rejects_no_repeats():
    with pytest.raises(ValueError, match="repeats=0"):
        best_time(lambda: None, repeats=0)


def test_interleaved_best_warms_up_then_alternates():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    best = interleaved_best(fns, rounds=3, warmup=2)
    assert calls == ["a", "a", "b", "b", "c", "c"] + ["a", "b", "c"] * 3  # warm-ups, then one call each per round
    assert set(best) == set("abc") and all(0 <= t < 1 for t in best.values())
    with pytest.raises(ValueError, match="rounds=0"):
        interleaved_best(fns, rounds=0)


def test_interleaved_best_ranks_a_slow_function_slower():
    best = interleaved_best({"fast": lambda: None, "slow": lambda: time.sleep(0.005)}, rounds=2, warmup=0)
    assert best["slow"] >= 0.005 > best["fast"]


def test_train_step_seconds_times_a_real_step_and_cleans_up():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16))
    x = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    s = train_step_seconds(model, x, x, steps=2)  # no optimizer: weights stay, gradients are cleared
    assert 0 < s < 5  # a 1-layer, 16-wide model steps in milliseconds
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    opt = AdamW(model.parameters(), lr=1e-2)
    train_step_seconds(model, x, x, opt, steps=1, warmup=0)  # with one: a real update
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        train_step_seconds(model, x, x, steps=0)
