"""Tokenizers: lossless round trips (Hypothesis), BPE training by hand, persistence and errors."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.tokenizer import BPETokenizer, ByteTokenizer, split_chunks, tokenizer_from_dict

pytestmark = pytest.mark.lesson01

SAMPLE = (
    "Mia and Tom went to the park. Mia put the key in the box.\n"
    "Q: Where did Mia put the key? A: in the box.\n\n"
    "Ben had 12 red balls, 3 blue cups and a dog named Rex! "
    "小明去了公园。 emoji 🌍🙂 tabs\tand  double  spaces_under_scores\n"
) * 20

# Arbitrary text: any Unicode code point except lone surrogates (which UTF-8 cannot
# encode, so no str -> bytes tokenizer can take them), biased towards ASCII, CJK and emoji.
TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=200),
    st.text(st.sampled_from(list("abc xyz.,!?\n\t0123") + ["小", "明", "公", "园", "🌍", "é"]), max_size=200),
)


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(SAMPLE, 320)


@settings(deadline=None, max_examples=25)
@given(TEXT)
def test_split_chunks_cover_the_text(text):
    assert "".join(split_chunks(text)) == text


@settings(deadline=None, max_examples=25)
@given(TEXT)
def test_byte_round_trip(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))  # reference: Python's own UTF-8 encoder
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids, dtype=torch.long)) == text


@settings(deadline=None, max_examples=25)
@given(TEXT)
def test_bpe_round_trip(bpe, text):
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text
    assert bpe.decode(torch.tensor(ids, dtype=torch.long)) == text


def test_bpe_round_trip_chinese_and_emoji(bpe):
    text = "小明把钥匙放在盒子里。🙂 Mia put the key in the box."
    assert bpe.decode(bpe.encode(text)) == text


def test_hand_checked_merges():
    # "ab ab ab" splits into "ab", " ab", " ab". Pair counts: (a,b)=3, (' ',a)=2,
    # so the first merge is a+b -> 256. Then (' ',256)=2 is the only pair left -> 257.
    tok = BPETokenizer.train("ab ab ab", 258)
    assert tok.merges == [(ord("a"), ord("b")), (ord(" "), 256)]
    assert tok.encode("ab ab ab") == [256, 257, 257]
    assert tok.token_bytes(257) == b" ab"
    assert tok.vocab_size == 258
    # Merges never cross a chunk boundary: "b a" never becomes a token.
    assert tok.encode("ba") == [ord("b"), ord("a")]


def test_training_stops_when_no_pair_repeats():
    tok = BPETokenizer.train("ab ab ab", 1000)
    assert tok.vocab_size == 258  # only two merges occur at least twice


def test_bpe_compresses_and_is_deterministic(bpe):
    ids = bpe.encode(SAMPLE)
    assert len(ids) < 0.7 * len(SAMPLE.encode("utf-8"))
    assert BPETokenizer.train(SAMPLE, 320).merges == bpe.merges


def test_vocab_size_below_256_is_an_error():
    with pytest.raises(ValueError, match="vocab_size=100"):
        BPETokenizer.train("hello", 100)


def test_save_load_round_trip(bpe, tmp_path):
    path = tmp_path / "tok.json"
    bpe.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded == bpe
    assert loaded.encode(SAMPLE) == bpe.encode(SAMPLE)
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # the temporary file is gone


@pytest.mark.parametrize(
    "content",
    [
        "",  # empty
        '{"type": "bpe", "version": 1, "merges": [[97, 98], [32',  # truncated
        json.dumps({"model": "gpt2", "weights": []}),  # foreign JSON
        json.dumps({"type": "bpe", "version": 1, "merges": [[97, 9999]]}),  # id out of range
    ],
)
def test_load_corrupted_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="bad.json"):
        BPETokenizer.load(path)


def test_load_binary_garbage_and_missing_file(tmp_path):
    path = tmp_path / "garbage.json"
    path.write_bytes(b"\xff\xfe\x00\x01junk")
    with pytest.raises(ValueError, match="garbage.json"):
        BPETokenizer.load(path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        BPETokenizer.load(tmp_path / "nope.json")


def test_tokenizer_from_dict(bpe):
    assert tokenizer_from_dict(bpe.to_dict()) == bpe
    assert isinstance(tokenizer_from_dict(ByteTokenizer().to_dict()), ByteTokenizer)
    # A checkpoint stores the dict; it must survive JSON.
    assert tokenizer_from_dict(json.loads(json.dumps(bpe.to_dict()))) == bpe
    with pytest.raises(ValueError, match="unknown tokenizer type"):
        tokenizer_from_dict({"type": "sentencepiece"})


def test_bad_inputs(bpe):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bpe.decode([bpe.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ByteTokenizer().decode([256])
    with pytest.raises(ValueError, match="1-D"):
        bpe.decode(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="str"):
        bpe.encode(b"bytes")
