"""The embedded corpus, the fact-recall task, batching and baselines (scoring is in test_evaluate.py)."""

import math
import re

import pytest
import torch

from minillm import data
from minillm.data import (
    COLORS,
    LOCATIONS,
    N_CHOICES,
    Corpus,
    FactQuestion,
    chance_accuracy,
    encode_splits,
    fact_recall_task,
    generate_stories,
    get_batch,
    load_corpus,
    load_text,
    unigram_loss,
)
from minillm.model import GPT, GPTConfig
from minillm.tokenizer import BPETokenizer, ByteTokenizer

pytestmark = pytest.mark.lesson01


@pytest.fixture(scope="module")
def stories():
    return generate_stories(300, seed=3)


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train("".join(s.text for s in generate_stories(200, seed=11)), 320)


# --------------------------------------------------------------------------- the generator


def test_deterministic():
    a, b = generate_stories(30, seed=5), generate_stories(30, seed=5)
    assert [s.text for s in a] == [s.text for s in b]
    assert [q.choices for s in a for q in s.questions] == [q.choices for s in b for q in s.questions]
    assert [s.text for s in generate_stories(30, seed=6)] != [s.text for s in a]
    assert load_corpus(100, seed=1).train_text == load_corpus(100, seed=1).train_text


def test_story_format(stories):
    qa = re.compile(r"^Q: [A-Z][^?\n]*\? A: [^\n]+\.$")
    for s in stories:
        assert s.text.endswith("\n\n") and not s.text.endswith("\n\n\n")
        ctx = s.questions[0].context
        assert s.text.startswith(ctx) and ctx.endswith("\n") and "\n" not in ctx[:-1]
        lines = s.text[len(ctx) :].rstrip("\n").split("\n")
        assert 1 <= len(lines) <= 3 and len(lines) == len(s.questions)
        for line, q in zip(lines, s.questions):
            assert qa.match(line), line
            assert line == q.question + q.answer
            assert q.prompt == ctx + q.question and q.question.endswith("A:")
        n_sentences = len(re.findall(r'[.!?]"?(?= |\n)', ctx))
        assert 4 <= n_sentences <= 8, ctx
        assert 35 <= len(ctx.split()) <= 90, ctx


def test_facts_are_consistent(stories):
    """Every answer is stated in the story, and nothing in the story contradicts it."""
    for s in stories:
        f, ctx = s.facts, s.questions[0].context
        hero, obj, loc = f["hero"], f["object"], f["location"]
        assert re.search(rf"\b{hero} (carefully )?(put|hid) the {obj} {loc}\b", ctx), ctx
        for other in LOCATIONS:  # the object is never said to be anywhere else
            if other != loc:
                assert f"{obj} {other}" not in ctx, ctx
        assert f"{f['color']} {obj}" in ctx
        assert all(f"{c} {obj}" not in ctx for c in COLORS if c != f["color"])
        for q in s.questions:
            core = q.answer.strip().removesuffix(".")
            expect = {
                "put": f" {loc}.",
                "put2": f" {f.get('location2')}.",
                "place": f" to the {f['place']}.",
                "friend": f" {f['friend']}.",
                "color": f" {f['color']}.",
                "snack": f" {data._a(f.get('snack', 'x'))}.",
                "pet": f" {data._a(f.get('pet', 'x'))}.",
                "pet_name": f" {f.get('pet_name')}.",
                "weather": f" {f.get('weather')}.",
            }[q.kind]
            assert q.answer == expect, (q, f)
            # The answer's content word(s) occur in the context.
            assert core.removeprefix("to ").removeprefix("a ").removeprefix("an ") in ctx, (q, ctx)
            if q.kind == "put2":
                assert f"{f['friend']}" in ctx and f"{f['object2']} {f['location2']}" in ctx


def test_chance_accuracy_of_no_questions_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        chance_accuracy([])


def test_choices(stories):
    for s in stories:
        for q in s.questions:
            assert len(q.choices) == N_CHOICES and len(set(q.choices)) == N_CHOICES
            assert q.choices[q.label] == q.answer
            assert all(c.startswith(" ") and c.endswith(".") for c in q.choices)
            if q.kind in ("put", "put2"):
                assert all(c[1:-1] in LOCATIONS for c in q.choices)  # same category
    assert chance_accuracy([q for s in stories for q in s.questions]) == pytest.approx(1 / N_CHOICES)


def test_train_val_disjoint():
    c = load_corpus(400, seed=2, val_fraction=0.25)
    assert len(c.val_stories) == 100 and len(c.train_stories) == 300
    train_ctx = {s.questions[0].context for s in c.train_stories}
    assert not train_ctx & {s.questions[0].context for s in c.val_stories}
    assert c.train_text.endswith("\n\n") and c.val_text not in c.train_text


def test_fact_recall_task_is_held_out():
    qs = fact_recall_task(40, seed=9)
    assert len(qs) == 40 and all(isinstance(q, FactQuestion) for q in qs)
    train = load_corpus()  # the corpus the teacher trains on
    assert not {q.context for q in qs} & {s.questions[0].context for s in train.train_stories}
    assert [q.prompt for q in fact_recall_task(40, seed=9)] == [q.prompt for q in qs]
    assert fact_recall_task(5, split="train")[0].context in train.train_text
    with pytest.raises(ValueError, match="split='test'"):
        fact_recall_task(5, split="test")


# --------------------------------------------------------------------------- tensors


def test_get_batch():
    data_ = torch.arange(100)
    g = torch.Generator().manual_seed(0)
    x, y = get_batch(data_, 8, 16, generator=g)
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y, x + 1)  # y is x shifted by one
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(8, 15, dtype=torch.long))  # contiguous windows
    x2, _ = get_batch(data_, 8, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    x, y = get_batch(torch.arange(17), 4, 16)  # exactly block_size + 1 tokens: one window
    assert torch.equal(x, torch.arange(16).expand(4, 16))
    with pytest.raises(ValueError, match="block_size \\+ 1 = 17"):
        get_batch(torch.arange(16), 4, 16)
    with pytest.raises(ValueError, match="1-D"):
        get_batch(torch.zeros(4, 4, dtype=torch.long), 2, 2)


def test_encode_splits():
    tok = ByteTokenizer()
    tr, va = encode_splits("abcdefghij", tok, val_fraction=0.2)
    assert tr.tolist() == list(b"abcdefgh") and va.tolist() == list(b"ij") and tr.dtype == torch.int64
    c = load_corpus(50)
    tr, va = encode_splits(c, tok)
    assert tok.decode(tr) == c.train_text and tok.decode(va) == c.val_text
    with pytest.raises(TypeError, match="Corpus or a str"):
        encode_splits(123, tok)
    assert isinstance(c, Corpus)


def test_unigram_loss_hand_computed():
    # Counts in train: 0 -> 2, 1 -> 1, 2 -> 0; N = 3, V = 3, add-one: p = (c + 1) / 6.
    # val = [0, 2]: loss = -(ln(3/6) + ln(1/6)) / 2.
    expect = -(math.log(3 / 6) + math.log(1 / 6)) / 2
    got = unigram_loss(torch.tensor([0, 0, 1]), torch.tensor([0, 2]), 3)
    assert got == pytest.approx(expect, rel=1e-12)  # float64 inside: exact to rounding
    with pytest.raises(ValueError, match="vocab_size"):
        unigram_loss(torch.tensor([0, 5]), torch.tensor([0]), 3)


# --------------------------------------------------------------------------- user text


def test_load_text(tmp_path):
    good = tmp_path / "story.txt"
    good.write_text("小明 went to the park.\n", encoding="utf-8")
    assert load_text(good) == "小明 went to the park.\n"
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfhello")
    assert load_text(bom) == "hello"
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_text(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(ValueError, match="empty.txt.*empty"):
        load_text(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="latin.txt.*not UTF-8.*iconv"):
        load_text(latin)
    with pytest.raises(ValueError, match="not a file"):
        load_text(tmp_path)
