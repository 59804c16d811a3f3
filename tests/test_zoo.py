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


@pytest.mark.lesson05
def test_student_distilled_has_the_students_recipe_and_beats_it():
    # Fair comparison: same shape, steps, batch, lr and seed as the hard-label student; only the loss differs.
    s, d = zoo.MODELS["student"], zoo.MODELS["student-distilled"]
    assert (d.config, d.steps, d.batch_size, d.lr, d.seed, d.n_stories) == (s.config, s.steps, s.batch_size, s.lr, s.seed, s.n_stories)
    assert d.extra["teacher"] == "teacher" and 0 < d.extra["alpha"] <= 1 and d.extra["T"] > 0
    from minillm.data import encode_splits, load_corpus
    from minillm.evaluate import evaluate_loss

    student, tok = zoo.load("student", train_if_missing=False)
    distilled, tok2 = zoo.load("student-distilled", train_if_missing=False)
    assert tok2.merges == tok.merges
    _, val_ids = encode_splits(load_corpus(), tok)
    # 8 batches of 8 consecutive 256-token blocks of held-out text (the same tokens for both)
    ls, ld = (evaluate_loss(m, val_ids, 8, n_batches=8) for m in (student, distilled))
    assert ld < ls, f"distilled {ld:.4f} is not below hard-label {ls:.4f}"
