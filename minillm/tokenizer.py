"""Tokenizers: text -> token ids -> text.

Two tokenizers share one small interface (``vocab_size``, ``encode``, ``decode``,
``to_dict``), so the rest of minillm never cares which one it holds:

- :class:`ByteTokenizer` maps text to its UTF-8 bytes: 256 ids, no training, lossless.
- :class:`BPETokenizer` is byte-level byte-pair encoding trained from scratch
  (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword
  Units"; applied to bytes as in GPT-2, Radford et al. 2019). It starts from the
  256 byte ids and repeatedly fuses the most frequent adjacent pair into a new id.
  Because every byte is already a token, any string round-trips, Chinese and emoji
  included.

:func:`tokenizer_from_dict` rebuilds either kind from ``to_dict()``; checkpoints
store the tokenizer that way.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import torch

from minillm.validate import is_int

__all__ = ["ByteTokenizer", "BPETokenizer", "tokenizer_from_dict", "split_chunks", "SPLIT_PATTERN"]

# Pre-split text into chunks before BPE, as GPT-2 does, so a merge never crosses a
# word boundary ("dog." never becomes one token). The chunks are: a word with an
# optional leading space, a run of digits, a run of punctuation, whitespace (the
# last space before a word is left for the word). Python's ``re`` has no \p{L}, so
# "a letter" is written [^\W\d_]: a word character that is not a digit or "_".
# The final [\s\S] catches anything the other branches miss, so the chunks always
# concatenate back to the input: that is what makes the tokenizer lossless.
SPLIT_PATTERN = r" ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+|[\s\S]"
_SPLIT_RE = re.compile(SPLIT_PATTERN)


def split_chunks(text: str) -> list[str]:
    """Split text into the chunks BPE works within; ``"".join(chunks) == text``."""
    return _SPLIT_RE.findall(text)


def _ids_to_list(ids) -> list[int]:
    """Accept a list/tuple of ints or a 1-D integer tensor; return a list of ints."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(
                f"decode expects a 1-D tensor of ids, got shape {tuple(ids.shape)}; decode one row at a time, e.g. ids[0]"
            )
        if ids.is_floating_point() or ids.is_complex():
            raise ValueError(f"decode expects integer ids, got dtype {ids.dtype}; use ids.long()")
        return ids.tolist()
    return [int(i) for i in ids]


def _check_range(ids: list[int], vocab_size: int) -> None:
    if ids and (min(ids) < 0 or max(ids) >= vocab_size):
        bad = min(ids) if min(ids) < 0 else max(ids)
        raise ValueError(
            f"token id {bad} is outside the vocabulary [0, {vocab_size}); decode ids made by this tokenizer"
        )


def _check_text(text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"encode expects a str, got {type(text).__name__}; decode bytes first with .decode('utf-8')")


# --------------------------------------------------------------------------- bytes


class ByteTokenizer:
    """One token per UTF-8 byte: ``vocab_size == 256``, lossless for any text."""

    vocab_size: int = 256

    def encode(self, text: str) -> list[int]:
        """text -> list of byte values (0..255). Chinese characters take 3 bytes each."""
        _check_text(text)
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """ids (list or 1-D tensor) -> text. A cut in the middle of a character decodes to U+FFFD."""
        ids = _ids_to_list(ids)
        _check_range(ids, 256)
        return bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"type": "byte"}

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)


# --------------------------------------------------------------------------- BPE


def _merge_word(word: tuple[int, ...], pair: tuple[int, int], new_id: int) -> tuple[int, ...]:
    """Replace every non-overlapping occurrence of ``pair`` in ``word``, left to right."""
    out: list[int] = []
    i, n = 0, len(word)
    a, b = pair
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _pairs(word: tuple[int, ...]) -> Counter:
    return Counter(zip(word, word[1:]))


class BPETokenizer:
    """Byte-level BPE (Sennrich et al. 2016; GPT-2 byte-level variant).

    ``merges[i] = (a, b)`` means: the pair of ids (a, b) becomes id ``256 + i``.
    Encoding applies the merges in the order they were learned (lowest rank first),
    within each chunk of :func:`split_chunks`.
    """

    def __init__(self, merges: Iterable[Sequence[int]] = ()) -> None:
        merges = [tuple(int(x) for x in m) for m in merges]
        for i, m in enumerate(merges):
            # Each merge may only use ids that exist before it: the bytes and earlier merges.
            if len(m) != 2 or not all(0 <= x < 256 + i for x in m):
                raise ValueError(
                    f"merge {i} = {list(m)} is invalid: a merge is two ids below {256 + i} "
                    f"(the 256 bytes and the merges before it)"
                )
        self.merges: list[tuple[int, int]] = merges  # type: ignore[assignment]
        self.ranks: dict[tuple[int, int], int] = {m: i for i, m in enumerate(merges)}
        # The bytes each id stands for, so decode is one lookup per id.
        self.vocab: list[bytes] = [bytes([i]) for i in range(256)]
        for a, b in merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self._cache: dict[str, tuple[int, ...]] = {}

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges)

    # ---------------------------------------------------------------- training

    @classmethod
    def train(cls, text: str, vocab_size: int, verbose: bool = False) -> "BPETokenizer":
        """Learn ``vocab_size - 256`` merges from ``text``.

        Training works on the *word-count dictionary* (each distinct chunk once, with
        its count), as in Sennrich et al. 2016, Algorithm 1, so its cost grows with the
        number of distinct chunks, not the length of the text. Pair counts are kept
        up to date incrementally: a merge only touches the words that contain the
        merged pair. The most frequent pair is found with a lazy max-heap; ties go to
        the smallest pair of ids, so training is deterministic.

        Merging stops early when no pair occurs at least twice (a merge seen once
        only memorises); then ``vocab_size`` of the result is smaller than asked.
        """
        _check_text(text)
        if not is_int(vocab_size):
            raise ValueError(f"vocab_size={vocab_size!r} must be a whole number >= 256, e.g. vocab_size=512")
        if vocab_size < 256:
            raise ValueError(
                f"vocab_size={vocab_size} is below 256; byte-level BPE needs the 256 byte ids, use vocab_size >= 256"
            )
        counts = Counter(split_chunks(text))
        words: list[list[int]] = [list(w.encode("utf-8")) for w in counts]
        freq: list[int] = list(counts.values())

        pair_count: defaultdict[tuple[int, int], int] = defaultdict(int)
        where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> words containing it
        for wi, w in enumerate(words):
            for p in zip(w, w[1:]):
                pair_count[p] += freq[wi]
                where[p].add(wi)
        heap = [(-c, p) for p, c in pair_count.items()]
        heapq.heapify(heap)

        merges: list[tuple[int, int]] = []
        n_merges = vocab_size - 256
        while len(merges) < n_merges and heap:
            neg, pair = heapq.heappop(heap)
            if pair_count.get(pair, 0) != -neg:  # stale heap entry: the count changed since
                continue
            if -neg < 2:
                break
            new_id = 256 + len(merges)
            merges.append(pair)
            changed: set[tuple[int, int]] = set()
            for wi in list(where[pair]):
                old = words[wi]
                new = list(_merge_word(tuple(old), pair, new_id))
                f = freq[wi]
                for p, c in _pairs(tuple(old)).items():
                    pair_count[p] -= c * f
                    changed.add(p)
                    where[p].discard(wi)
                for p, c in _pairs(tuple(new)).items():
                    pair_count[p] += c * f
                    changed.add(p)
                    where[p].add(wi)
                words[wi] = new
            for p in changed:
                c = pair_count[p]
                if c > 0:
                    heapq.heappush(heap, (-c, p))
                else:
                    pair_count.pop(p, None)
                    where.pop(p, None)
            if verbose:
                tok = cls._bytes_of(merges)[-1]
                print(f"merge {len(merges):4d}/{n_merges}: {pair} -> {new_id} {tok!r} (count {-neg})")
        return cls(merges)

    @staticmethod
    def _bytes_of(merges: list[tuple[int, int]]) -> list[bytes]:
        vocab = [bytes([i]) for i in range(256)]
        for a, b in merges:
            vocab.append(vocab[a] + vocab[b])
        return vocab[256:]

    # ---------------------------------------------------------------- encode / decode

    def _encode_chunk(self, chunk: str) -> tuple[int, ...]:
        """Apply the merges to one chunk, lowest rank first (as GPT-2's ``bpe``)."""
        word = tuple(chunk.encode("utf-8"))
        ranks = self.ranks
        while len(word) > 1:
            best, best_rank = None, None
            for p in zip(word, word[1:]):
                r = ranks.get(p)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = p, r
            if best is None:
                break
            word = _merge_word(word, best, 256 + best_rank)
        return word

    def encode(self, text: str) -> list[int]:
        """text -> token ids. Chunks repeat a lot in natural text, so each is encoded once and cached."""
        _check_text(text)
        cache = self._cache
        out: list[int] = []
        for chunk in _SPLIT_RE.findall(text):
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk)
                if len(cache) < 200_000:  # bound the memory on huge, varied texts
                    cache[chunk] = ids
            out.extend(ids)
        return out

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """ids (list or 1-D tensor) -> text. Ids that end mid-character decode to U+FFFD."""
        ids = _ids_to_list(ids)
        _check_range(ids, self.vocab_size)
        vocab = self.vocab
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, i: int) -> bytes:
        """The bytes token ``i`` stands for (handy for printing a vocabulary)."""
        _check_range([i], self.vocab_size)
        return self.vocab[i]

    # ---------------------------------------------------------------- persistence

    def to_dict(self) -> dict:
        return {"type": "bpe", "version": 1, "pattern": SPLIT_PATTERN, "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_dict(cls, d: dict) -> "BPETokenizer":
        if not isinstance(d, dict) or d.get("type") != "bpe":
            raise ValueError(f"not a BPE tokenizer dict: expected type 'bpe', got {_type_of(d)!r}")
        if d.get("version") != 1:
            raise ValueError(f"BPE tokenizer version {d.get('version')!r} is not supported; this minillm reads version 1")
        if d.get("pattern", SPLIT_PATTERN) != SPLIT_PATTERN:
            raise ValueError("BPE tokenizer was trained with a different split pattern; retrain it with this minillm")
        merges = d.get("merges")
        if not isinstance(merges, list):
            raise ValueError("BPE tokenizer dict has no list 'merges'")
        return cls(merges)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically: a temporary file in the same folder, then ``os.replace``,
        so a crash never leaves a half-written tokenizer behind."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a file written by :meth:`save`; a corrupt, truncated or foreign file is a ValueError naming it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {str(path)!r} does not exist; save one with BPETokenizer.save(path)")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(d)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError) as e:
            raise ValueError(
                f"{str(path)!r} is not a valid minillm BPE tokenizer file ({e}); "
                f"it may be truncated or corrupted: retrain and save it again"
            ) from None

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPETokenizer) and self.merges == other.merges


def _type_of(d) -> object:
    return d.get("type") if isinstance(d, dict) else type(d).__name__


def tokenizer_from_dict(d: dict) -> ByteTokenizer | BPETokenizer:
    """Rebuild a tokenizer from its ``to_dict()`` (how checkpoints store it)."""
    kind = _type_of(d)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.from_dict(d)
    raise ValueError(f"unknown tokenizer type {kind!r}; expected a dict with type 'byte' or 'bpe' (from to_dict())")
