"""The zoo: its registry, re-exported checkpoint names, and the shipped weights."""

import pytest

from minillm import checkpoint, zoo

pytestmark = pytest.mark.lesson01


def test_checkpoint_names_still_import_from_the_zoo():
    # The CLI, old notebooks and issue texts use minillm.zoo.save_checkpoint & co.
    assert zoo.save_checkpoint is checkpoint.save_checkpoint
    assert zoo.load_checkpoint is checkpoint.load_checkpoint
    assert zoo.CheckpointError is checkpoint.CheckpointError


def test_unknown_zoo_name():
    with pytest.raises(ValueError, match="unknown zoo model 'teachr'; choose one of"):
        zoo.load("teachr")


def test_shipped_weights_load_fast_and_are_small():
    total = sum(p.stat().st_size for p in zoo.WEIGHTS_DIR.glob("*.pt"))
    assert total <= 8 * 1024 * 1024, f"shipped weights are {total / 2**20:.1f} MiB; the budget is 8 MiB"
    model, tok = zoo.load("teacher", train_if_missing=False)
    n = model.num_params()
    assert 1_000_000 <= n <= 3_000_000
    student, _ = zoo.load("student", train_if_missing=False)
    assert 4 <= n / student.num_params() <= 8
    assert tok.decode(tok.encode("Mia put the key in the box.")) == "Mia put the key in the box."
