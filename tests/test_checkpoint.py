"""minillm.checkpoint: round trips, atomic writes, and clear errors for bad files."""

import pytest
import torch

from minillm import checkpoint
from minillm.model import GPT, GPTConfig
from minillm.tokenizer import ByteTokenizer

pytestmark = pytest.mark.lesson01

CFG = GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_head=2, n_embd=8)


def _model(seed=0):
    torch.manual_seed(seed)
    return GPT(CFG).eval()


def test_roundtrip_is_float16_close(tmp_path):
    m = _model()
    path = checkpoint.save_checkpoint(tmp_path / "m.pt", m, ByteTokenizer(), meta={"note": "x"})
    m2, tok, meta = checkpoint.load_checkpoint(path, expect_config=CFG)
    assert meta == {"note": "x"} and tok.decode(tok.encode("héllo 你好")) == "héllo 你好"
    idx = torch.randint(0, 256, (2, 16))
    # weights stored in float16: relative rounding 2^-11 per weight, so logits agree to ~1e-3
    torch.testing.assert_close(m2(idx)[0], m(idx)[0], atol=2e-3, rtol=1e-2)
    assert m2.lm_head.weight is m2.wte.weight  # still tied after loading


def test_full_precision_roundtrip_is_exact(tmp_path):
    m = _model()
    m2, _, _ = checkpoint.load_checkpoint(checkpoint.save_checkpoint(tmp_path / "m.pt", m, half=False))
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k


def test_truncated_file_is_a_clear_error(tmp_path):
    path = checkpoint.save_checkpoint(tmp_path / "m.pt", _model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match=r"m\.pt is unreadable .*truncated or corrupted"):
        checkpoint.load_checkpoint(path)


def test_corrupted_tensor_bytes_are_caught(tmp_path):
    path = checkpoint.save_checkpoint(tmp_path / "m.pt", _model())
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["h.0.mlp.c_fc.weight"][0, 0] += 1  # flip a value, keep the old digest
    torch.save(payload, path)
    with pytest.raises(checkpoint.CheckpointError, match="corrupted: its tensors do not match"):
        checkpoint.load_checkpoint(path)


def test_mismatched_config_names_the_field(tmp_path):
    path = checkpoint.save_checkpoint(tmp_path / "m.pt", _model())
    other = GPTConfig(vocab_size=256, block_size=16, n_layer=2, n_head=2, n_embd=8)
    with pytest.raises(checkpoint.CheckpointError, match="n_layer expected 2, file has 1"):
        checkpoint.load_checkpoint(path, expect_config=other)


def test_not_a_checkpoint_and_missing_file(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"hello": torch.zeros(1)}, p)
    with pytest.raises(checkpoint.CheckpointError, match="not a minillm checkpoint"):
        checkpoint.load_checkpoint(p)
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load_checkpoint(tmp_path / "nope.pt")


def test_write_is_atomic(tmp_path, monkeypatch):
    path = checkpoint.save_checkpoint(tmp_path / "m.pt", _model(0))
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        checkpoint.save_checkpoint(path, _model(1))
    assert path.read_bytes() == before  # the old checkpoint survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind
