"""The embedded corpus: short stories from a tiny, consistent world (no download, ever).

The world
---------
Twenty children (Mia, Tom, Lily, Ben, ...), ten places (the park, the beach, the
farm, ...), twelve small objects (a key, a ball, a book, ...), ten spots to put
them (in the box, under the bed, on the table, ...), eight colours, six kinds of
pet with ten pet names, eight snacks and five kinds of weather. Each story draws
one hero, one friend, one place, an object with a colour and a spot, and
sometimes a pet, a snack, the weather and a second object that the friend puts
somewhere else. The story's sentences never contradict those facts: if Mia put
the key in the box, the last sentence finds it in the box.

Every story is 4-8 sentences (about 40-90 words) from varied templates, followed
by 1-3 question/answer lines about its facts and a blank line::

    Mia and Tom went to the park on a sunny morning. Mia had a red key. ...
    Q: Where did Mia put the key? A: in the box.
    Q: Who went to the park with Mia? A: Tom.

The question is always ``"Q: <question>? A:"`` and the answer starts with a space
and ends with a full stop. The same world gives the **fact-recall task**
(:func:`fact_recall_task`): the story without its QA lines, one question, and 5
candidate answers of the same kind. :func:`accuracy` scores a model by which
candidate it finds most likely (multiple choice by log-likelihood, the way
lm-evaluation-harness scores HellaSwag or ARC), so chance is 1/5.

Everything is deterministic: stories come from ``random.Random`` seeded from
``(split, seed)``, so the same call gives the same text on every machine.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from minillm.moved import moved_names
from minillm.validate import check_int, check_number

__all__ = [
    "Story",
    "FactQuestion",
    "Corpus",
    "generate_stories",
    "load_corpus",
    "fact_recall_task",
    "derive_seed",
    "held_out_stories",
    "train_contexts",
    "chance_accuracy",
    "load_text",
    "encode_splits",
    "get_batch",
    "unigram_loss",
]

# --------------------------------------------------------------------------- the world

# (name, subject pronoun, possessive)
NAMES: list[tuple[str, str, str]] = [
    (n, "she", "her") for n in ("Mia", "Lily", "Emma", "Anna", "Zoe", "Lucy", "Sara", "Ella", "Grace", "Nora")
] + [(n, "he", "his") for n in ("Tom", "Ben", "Sam", "Max", "Leo", "Jack", "Finn", "Noah", "Owen", "Dan")]
PLACES = ["park", "beach", "farm", "library", "garden", "school", "zoo", "lake", "forest", "market"]
OBJECTS = ["key", "ball", "book", "hat", "cup", "coin", "doll", "kite", "shoe", "map", "ring", "spoon"]
COLORS = ["red", "blue", "green", "yellow", "pink", "white", "black", "purple"]
LOCATIONS = [
    "in the box", "in the bag", "under the bed", "on the table", "in the basket",
    "behind the door", "on the shelf", "in the drawer", "under the chair", "next to the lamp",
]  # fmt: skip
# (kind, what it does)
PETS = [
    ("dog", "barked and wagged its tail"), ("cat", "purred on the rug"), ("bird", "sang a little song"),
    ("rabbit", "hopped around"), ("fish", "swam in its bowl"), ("turtle", "walked very slowly"),
]  # fmt: skip
PET_NAMES = ["Rex", "Bella", "Coco", "Spot", "Luna", "Pip", "Buddy", "Daisy", "Milo", "Sunny"]
SNACKS = ["apple", "cookie", "banana", "cake", "pear", "sandwich", "muffin", "egg"]
WEATHER = {
    "sunny": "It was a sunny day and the sky was blue.",
    "rainy": "It was a rainy day, so they wore boots.",
    "windy": "It was a windy day and the leaves flew around.",
    "snowy": "It was a snowy day and the ground was white.",
    "cloudy": "It was a cloudy day and the sun was hidden.",
}
TIMES = ["morning", "afternoon", "evening"]
N_CHOICES = 5  # candidate answers per question; chance accuracy = 1/5


def _a(word: str) -> str:
    """English indefinite article: 'an apple', 'a key'."""
    return ("an " if word[0] in "aeiou" else "a ") + word


# --------------------------------------------------------------------------- dataclasses


@dataclass
class FactQuestion:
    """One multiple-choice question about a story.

    ``question`` ends with ``"A:"``; ``answer`` and every entry of ``choices`` start with
    a space and end with ``"."``, so ``prompt + answer`` reads exactly as the training text.
    """

    context: str  # the story without its QA lines (ends with "\\n")
    question: str  # e.g. "Q: Where did Mia put the key? A:"
    answer: str  # e.g. " in the box."
    choices: list[str]  # N_CHOICES candidates, the answer among them, deterministic order
    kind: str = ""  # which fact is asked: put, put2, place, friend, color, snack, pet, pet_name, weather

    @property
    def prompt(self) -> str:
        return self.context + self.question

    @property
    def label(self) -> int:
        """Index of the right answer in ``choices``."""
        return self.choices.index(self.answer)


@dataclass
class Story:
    text: str  # context + QA lines, ends with "\\n\\n"
    facts: dict[str, str]
    questions: list[FactQuestion] = field(default_factory=list)

    @property
    def context(self) -> str:
        return self.questions[0].context if self.questions else self.text


@dataclass
class Corpus:
    train_stories: list[Story]
    val_stories: list[Story]

    @property
    def train_text(self) -> str:
        return "".join(s.text for s in self.train_stories)

    @property
    def val_text(self) -> str:
        return "".join(s.text for s in self.val_stories)


# --------------------------------------------------------------------------- one story


# Candidate answers per kind of question, already in answer format (" in the box.").
_POOLS: dict[str, list[str]] = {
    k: [f" {x}." for x in v]
    for k, v in {
        "location": LOCATIONS,
        "place": [f"to the {p}" for p in PLACES],
        "name": [n for n, _, _ in NAMES],
        "color": COLORS,
        "snack": [_a(x) for x in SNACKS],
        "pet": [_a(p) for p, _ in PETS],
        "pet_name": PET_NAMES,
        "weather": list(WEATHER),
    }.items()
}


def _choices(rng: random.Random, answer: str, pool: Sequence[str], prefer: Sequence[str] = ()) -> list[str]:
    """``answer`` plus N_CHOICES-1 distractors of the same kind; facts from the story
    itself (``prefer``) come first because they make the hardest distractors."""
    distract = [p for p in dict.fromkeys(prefer) if p != answer][: N_CHOICES - 1]
    rest = [p for p in pool if p != answer and p not in distract]
    out = [answer] + distract + rng.sample(rest, N_CHOICES - 1 - len(distract))
    rng.shuffle(out)
    return out


def _story(rng: random.Random) -> Story:
    (hero, he, his), (friend, _, fhis) = rng.sample(NAMES, 2)
    He = he.capitalize()
    place = rng.choice(PLACES)
    obj, obj2 = rng.sample(OBJECTS, 2)
    color = rng.choice(COLORS)
    loc, loc2 = rng.sample(LOCATIONS, 2)
    weather = rng.choice(list(WEATHER))
    time = rng.choice(TIMES)
    pet, pet_does = rng.choice(PETS)
    pet_name = rng.choice(PET_NAMES)
    snack = rng.choice(SNACKS)
    has_pet, has_snack, has_weather, has_obj2 = (rng.random() < p for p in (0.5, 0.5, 0.5, 0.4))

    facts = {"hero": hero, "friend": friend, "place": place, "object": obj, "color": color, "location": loc}
    s: list[str] = []  # sentences
    s.append(
        rng.choice(
            [
                f"One {time}, {hero} and {friend} went to the {place}.",
                f"{hero} and {friend} went to the {place} on a {weather} {time}." if has_weather else
                f"{hero} and {friend} went to the {place} in the {time}.",
                f"{hero} went to the {place} with {friend} one {time}.",
                f"{hero} loved the {place}, so {he} went there with {friend} one {time}.",
            ]
        )
    )  # fmt: skip
    if has_weather:
        facts["weather"] = weather
        s.append(WEATHER[weather])
    s.append(
        rng.choice(
            [
                f"{hero} had {_a(color)} {obj}.",
                f"{He} brought {his} {color} {obj}.",
                f"{hero} found {_a(color)} {obj} on the way.",
                f"{hero} carried {_a(color)} {obj} in {his} hand.",
            ]
        )
    )
    if has_pet:
        facts.update(pet=pet, pet_name=pet_name)
        s.append(rng.choice([f"{hero} had {_a(pet)} named {pet_name}.", f"{hero}'s {pet}, {pet_name}, came too."]))
        pet_at = len(s)
    s.append(
        rng.choice(
            [
                f"{hero} put the {obj} {loc}.",
                f"Before lunch, {hero} put the {obj} {loc}.",
                f"{hero} hid the {obj} {loc} so nobody would take it.",
                f"{hero} carefully put the {obj} {loc}.",
            ]
        )
    )
    if has_obj2:
        facts.update(object2=obj2, location2=loc2)
        s.append(rng.choice([f"{friend} put {fhis} {obj2} {loc2}.", f"Then {friend} put the {obj2} {loc2}."]))
    if has_snack:
        facts["snack"] = snack
        s.append(rng.choice([f"{friend} gave {hero} {_a(snack)}.", f"{friend} shared {_a(snack)} with {hero}."]))
    # At most 8 sentences: the fact sentences above (at most 7) and the closing one,
    # then the pet's action and 0-2 fillers only where there is room.
    room = 8 - 1 - len(s)
    if has_pet and room > 0:
        s.insert(pet_at, f"{pet_name} {pet_does}.")
        room -= 1
    filler = [
        "They played for a long time.",
        f'{friend} laughed and said, "Let\'s play a game!"',
        f"{hero} and {friend} talked and laughed.",
        f"{friend} told {hero} a funny story.",
        "They ran and jumped and played until it was time to eat.",
        f"{hero} smiled because {he} liked being with {friend}.",
    ]
    rng.shuffle(filler)
    n_fill = rng.randint(0, min(2, room))
    # Short stories get fillers until they reach about 40 words, room permitting.
    while n_fill < room and sum(len(x.split()) for x in s + filler[:n_fill]) < 32:
        n_fill += 1
    s.extend(filler[:n_fill])
    s.append(
        rng.choice(
            [
                f"At the end of the day, the {obj} was still {loc}.",
                f"Later, {hero} looked {loc} and found the {obj}.",
                f"{hero} was glad that the {obj} was safe {loc}.",
                "Then they went home, tired and happy.",
            ]
        )
    )
    context = " ".join(s) + "\n"

    candidates: list[tuple[str, str, str, list[str], list[str]]] = [
        # (kind, question, answer, pool, preferred distractors)
        ("put", f"Where did {hero} put the {obj}?", f" {loc}.", _POOLS["location"], [f" {loc2}."] if has_obj2 else []),
        ("place", f"Where did {hero} go?", f" to the {place}.", _POOLS["place"], []),
        ("friend", f"Who went to the {place} with {hero}?", f" {friend}.", _POOLS["name"], [f" {hero}."]),
        ("color", f"What color was {hero}'s {obj}?", f" {color}.", _POOLS["color"], []),
    ]
    if has_obj2:
        candidates.append(("put2", f"Where did {friend} put the {obj2}?", f" {loc2}.", _POOLS["location"], [f" {loc}."]))
    if has_snack:
        candidates.append(("snack", f"What did {friend} give {hero}?", f" {_a(snack)}.", _POOLS["snack"], []))
    if has_pet:
        candidates.append(("pet", f"What pet did {hero} have?", f" {_a(pet)}.", _POOLS["pet"], []))
        candidates.append(("pet_name", f"What was the name of {hero}'s {pet}?", f" {pet_name}.", _POOLS["pet_name"], []))
    if has_weather:
        candidates.append(("weather", "What was the weather like?", f" {weather}.", _POOLS["weather"], []))
    # The "put" question is always asked: it is the headline fact-recall question.
    others = candidates[1:]
    rng.shuffle(others)
    chosen = [candidates[0]] + others[: rng.randint(0, 2)]
    rng.shuffle(chosen)
    questions = []
    for kind, q, ans, pool, prefer in chosen:
        choices = _choices(rng, ans, pool, prefer)
        questions.append(FactQuestion(context, f"Q: {q} A:", ans, choices, kind))
    text = context + "".join(q.question + q.answer + "\n" for q in questions) + "\n"
    return Story(text=text, facts=facts, questions=questions)


def derive_seed(seed: int, stream: str) -> int:
    """A 64-bit seed for one named stream; sha256 keeps streams apart and is stable across runs."""
    return int.from_bytes(hashlib.sha256(f"minillm/{stream}/{seed}".encode()).digest()[:8], "little")


def _check_val_fraction(val_fraction) -> None:
    """``val_fraction`` must be a number strictly between 0 and 1 (an empty split would break training)."""
    if check_number("val_fraction", val_fraction, strict=True) >= 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must be in (0, 1), e.g. 0.1")


def generate_stories(n: int, seed: int = 0) -> list[Story]:
    """``n`` stories from one ``random.Random(seed)`` stream; the same arguments give the same stories."""
    check_int("n", n, minimum=0)
    check_int("seed", seed, minimum=0)
    rng = random.Random(seed)
    return [_story(rng) for _ in range(n)]


def load_corpus(n_stories: int = 6000, seed: int = 0, val_fraction: float = 0.1) -> Corpus:
    """The embedded corpus: ``n_stories`` stories split into train and validation.

    The two splits come from separate random streams, and a validation story whose
    text also occurs in train is replaced, so validation is truly held out.
    """
    check_int("n_stories", n_stories, minimum=2)
    check_int("seed", seed, minimum=0)
    _check_val_fraction(val_fraction)
    n_val = min(max(1, round(n_stories * val_fraction)), n_stories - 1)
    train = generate_stories(n_stories - n_val, derive_seed(seed, "train"))
    return Corpus(train, held_out_stories(n_val, derive_seed(seed, "val"), {s.text for s in train}))


def held_out_stories(n: int, seed: int, exclude: set[str]) -> list[Story]:
    """``n`` stories from stream ``seed`` whose text is not in ``exclude``."""
    rng = random.Random(seed)
    out: list[Story] = []
    while len(out) < n:
        s = _story(rng)
        if s.text not in exclude and s.context not in exclude:
            out.append(s)
    return out


@lru_cache(maxsize=1)
def _default_train_stories() -> tuple[Story, ...]:
    """The training stories of ``load_corpus()``, built once per process."""
    return tuple(load_corpus().train_stories)


@lru_cache(maxsize=1)
def train_contexts() -> frozenset[str]:
    """The contexts of the default training stories: a held-out task must avoid them."""
    return frozenset(s.context for s in _default_train_stories())


def fact_recall_task(n: int = 200, seed: int = 1234, split: str = "val") -> list[FactQuestion]:
    """``n`` fact-recall questions, one per story.

    ``split="val"``: stories from a held-out stream, none of which occurs in the
    training text of the default corpus (``load_corpus()``). ``split="train"``: the
    first ``n`` training stories of that corpus (to compare recall on seen stories).
    """
    check_int("n", n)
    if split == "train":
        stories = _default_train_stories()
        if n > len(stories):
            raise ValueError(f"n={n} is more than the {len(stories)} training stories; use n <= {len(stories)}")
        stories = stories[:n]
    elif split == "val":
        stories = held_out_stories(n, derive_seed(seed, "fact-recall"), train_contexts())
    else:
        raise ValueError(f"split={split!r} must be 'val' or 'train'")
    rng = random.Random(seed)
    return [rng.choice(s.questions) for s in stories]


def chance_accuracy(questions: Sequence[FactQuestion]) -> float:
    """Expected accuracy of random guessing: the mean of 1/len(choices)."""
    if not questions:
        raise ValueError("questions is empty; pass at least one FactQuestion")
    return sum(1.0 / len(q.choices) for q in questions) / len(questions)


# --------------------------------------------------------------------------- user text


def load_text(path: str | Path) -> str:
    """Read a UTF-8 text file to train on; clear errors for a missing, empty or non-UTF-8 file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"text file {str(p)!r} does not exist; check the path (it is relative to {Path.cwd()})")
    if not p.is_file():
        raise ValueError(f"{str(p)!r} is not a file; pass the path of a UTF-8 text file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{str(p)!r} is not UTF-8 text (bad byte 0x{raw[e.start]:02x} at offset {e.start}); "
            f"convert it first, e.g. `iconv -f latin1 -t utf-8 {p.name} > {p.stem}.utf8{p.suffix}`"
        ) from None
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not part of the text
    if not text.strip():
        raise ValueError(f"{str(p)!r} is empty (or only whitespace); give a file with some text to train on")
    return text


# --------------------------------------------------------------------------- tensors


def encode_splits(corpus_or_text: Corpus | str, tokenizer, val_fraction: float = 0.1) -> tuple[Tensor, Tensor]:
    """Token ids for training and validation as 1-D int64 tensors.

    A :class:`Corpus` already has its split (``val_fraction`` is ignored). Plain text
    is split by characters: the last ``val_fraction`` of it is validation.
    """
    if isinstance(corpus_or_text, Corpus):
        train, val = corpus_or_text.train_text, corpus_or_text.val_text
    elif isinstance(corpus_or_text, str):
        _check_val_fraction(val_fraction)
        cut = int(len(corpus_or_text) * (1.0 - val_fraction))
        train, val = corpus_or_text[:cut], corpus_or_text[cut:]
    else:
        raise TypeError(
            f"corpus_or_text must be a Corpus or a str, got {type(corpus_or_text).__name__}; "
            f"use load_corpus() or load_text(path)"
        )
    as_tensor = lambda s: torch.tensor(tokenizer.encode(s), dtype=torch.long)  # noqa: E731
    return as_tensor(train), as_tensor(val)


def get_batch(
    data: Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, Tensor]:
    """``batch_size`` random windows of ``data`` [N] for next-token prediction.

    Returns x, y, both [B, T] int64 on ``device``: x is ``data[i : i + T]`` for a
    random start i, and y is the same window shifted by one, ``data[i + 1 : i + T + 1]``,
    so ``y[:, t]`` is the token that follows ``x[:, t]``. Pass a seeded ``generator``
    for reproducible batches.
    """
    if not isinstance(data, Tensor) or data.dim() != 1:
        shape = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
        raise ValueError(f"data must be a 1-D tensor of token ids, got {shape}; use encode_splits(...)")
    check_int("batch_size", batch_size)
    check_int("block_size", block_size)
    n = data.numel()
    if n < block_size + 1:
        raise ValueError(
            f"data has {n} tokens, fewer than block_size + 1 = {block_size + 1}; "
            f"use more text or a block_size below {max(n - 1, 1)}"
        )
    ix = torch.randint(n - block_size, (batch_size,), generator=generator)
    pos = ix.unsqueeze(1) + torch.arange(block_size)  # [B, T]
    x = data[pos].long()
    y = data[pos + 1].long()
    return x.to(device), y.to(device)


def unigram_loss(train_ids: Tensor, val_ids: Tensor, vocab_size: int) -> float:
    """Validation cross-entropy (nats/token) of the add-one smoothed unigram model.

    ``p(v) = (count_train(v) + 1) / (N_train + V)`` (Laplace smoothing, Jurafsky &
    Martin, SLP3 ch. 3), loss = ``-mean_t log p(val_t)``. A model that has learned
    anything beyond token frequencies beats it.
    """
    check_int("vocab_size", vocab_size)
    for name, ids in (("train_ids", train_ids), ("val_ids", val_ids)):
        ids = torch.as_tensor(ids)
        if ids.numel() == 0:
            raise ValueError(f"{name} is empty; pass the token ids of some text")
        if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
            raise ValueError(f"{name} holds ids outside [0, {vocab_size}); pass the tokenizer's vocab_size")
    train_ids, val_ids = torch.as_tensor(train_ids).long().flatten(), torch.as_tensor(val_ids).long().flatten()
    counts = torch.bincount(train_ids, minlength=vocab_size).double()
    logp = torch.log(counts + 1.0) - math.log(train_ids.numel() + vocab_size)
    return float(-logp[val_ids].mean())


__getattr__ = moved_names(__name__, {"answer_logprobs": "minillm.evaluate", "accuracy": "minillm.evaluate"})
