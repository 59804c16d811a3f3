"""minillm.evaluate: evaluate_loss (both ways of cutting the ids, against a hand-written mean)
and fact-recall scoring (answer_logprobs, accuracy) against an oracle and a uniform model."""

import math

import pytest
import torch
from torch import nn

from minillm.data import chance_accuracy, fact_recall_task, generate_stories, get_batch
from minillm.evaluate import accuracy, answer_logprobs, evaluate_loss
from minillm.model import GPT, GPTConfig
from minillm.tokenizer import BPETokenizer

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


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train("".join(s.text for s in generate_stories(200, seed=11)), 320)


# --------------------------------------------------------------------------- accuracy


class Oracle(nn.Module):
    """Puts logit 20 on the right answer's next token after its prompt, 0 elsewhere."""

    def __init__(self, tokenizer, questions, block_size=512):
        super().__init__()
        self.config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=1, n_head=1, n_embd=1)
        self.next = {}
        for q in questions:
            p, a = tokenizer.encode(q.prompt), tokenizer.encode(q.answer)
            for k in range(len(a)):
                self.next[tuple(p + a[:k])] = a[k]

    def forward(self, idx):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.config.vocab_size)
        for b in range(B):
            row = idx[b].tolist()
            for t in range(T):
                nxt = self.next.get(tuple(row[: t + 1]))
                if nxt is not None:
                    logits[b, t, nxt] = 20.0
        return logits, None


class Uniform(nn.Module):
    def __init__(self, vocab_size, block_size=512):
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=1, n_embd=1)

    def forward(self, idx):
        return torch.zeros(*idx.shape, self.config.vocab_size), None


def test_oracle_scores_one(tok):
    qs = fact_recall_task(20, seed=3)
    assert accuracy(Oracle(tok, qs), tok, qs, batch_size=7) == 1.0


def test_uniform_model_is_near_chance(tok):
    qs = fact_recall_task(300, seed=4)
    acc = accuracy(Uniform(tok.vocab_size), tok, qs, batch_size=150)
    # Equal logits favour the choice with the fewest tokens; which choice that is
    # does not depend on which one is right, so accuracy ~ 1/5. The binomial standard
    # error with 300 questions is sqrt(0.2 * 0.8 / 300) = 0.023; 0.08 is ~3.5 sigma.
    assert abs(acc - chance_accuracy(qs)) < 0.08


def test_uniform_logprob_is_length_times_log_v(tok):
    qs = fact_recall_task(3, seed=5)
    scores = answer_logprobs(Uniform(tok.vocab_size), tok, qs)
    for q, s in zip(qs, scores):
        for c, sc in zip(q.choices, s):
            # Closed form: each token has probability 1/V. float32 log-softmax: 1e-4.
            assert sc == pytest.approx(-len(tok.encode(c)) * math.log(tok.vocab_size), abs=1e-4)


def test_gpt_cached_path_matches_plain_path(tok):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32))
    qs = fact_recall_task(6, seed=6)  # prompts are longer than 64 tokens: exercises the left crop
    model.train()
    cached = torch.tensor(answer_logprobs(model, tok, qs, batch_size=5, use_cache=True))
    plain = torch.tensor(answer_logprobs(model, tok, qs, batch_size=5, use_cache=False))
    assert model.training  # the mode is restored
    # Same float32 math in a different order (KV cache vs full sequence): 1e-4 absolute
    # on sums of a few log-probs of size ~ln(320) = 5.8.
    torch.testing.assert_close(cached, plain, rtol=0, atol=1e-4)
    acc = accuracy(model, tok, qs)
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0
    assert accuracy(model, tok, qs, max_questions=2) in (0.0, 0.5, 1.0)


def test_accuracy_errors(tok):
    with pytest.raises(ValueError, match="empty"):
        accuracy(Uniform(tok.vocab_size), tok, [])
    q = fact_recall_task(1)[0]
    with pytest.raises(ValueError, match="block_size=2"):
        accuracy(Uniform(tok.vocab_size, block_size=2), tok, [q])
