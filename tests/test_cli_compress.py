"""``minillm compress`` run as a learner runs it: a subprocess, on the teacher and on a ``minillm train`` checkpoint."""

import os
import subprocess
import sys

import pytest
import torch

from minillm.checkpoint import load_checkpoint
from minillm.compress.int8_linear import Int8Linear
from minillm.compress.pipeline_checkpoint import load_compressed

pytestmark = pytest.mark.lesson06

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "minillm.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    r = _run("train", "--preset", "tiny", "--steps", "30", "--out", str(d / "tiny.pt"), cwd=d)
    assert r.returncode == 0, r.stderr
    return d / "tiny.pt"


def test_compress_a_trained_checkpoint(tiny_ckpt, tmp_path):
    r = _run("compress", str(tiny_ckpt), "--target-mb", "100", "--max-loss-increase", "0.5", "--steps", "2",
             "--questions", "5", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= {"model.pt", "report.md", "pareto.png"}
    report = (out / "report.md").read_text()
    assert "| float32 |" in report and "heads 50% mlp 50%" in report and "![Pareto fronts](pareto.png)" in report
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "compress" in r.stderr  # the tqdm progress bar
    # loadable by the course's loader, and again as the compressed model
    model, tok, meta = load_checkpoint(out / "model.pt")
    assert tok is not None and meta["compressed_from"] == str(tiny_ckpt)
    q, _, _ = load_compressed(out / "model.pt")
    with torch.no_grad():
        assert q(torch.zeros(1, 8, dtype=torch.long))[0].shape[-1] == model.config.vocab_size
    # size budget 100 MB, objective size: the smallest row within +50% loss was chosen
    original, _, _ = load_checkpoint(tiny_ckpt)
    assert model.num_params() <= original.num_params()
    assert "**" in report


def test_compress_the_teacher(tmp_path):
    r = _run("compress", "teacher", "--target-mb", "2", "--max-loss-increase", "0.01", "--steps", "1",
             "--questions", "0", "--out", str(tmp_path / "t"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "chosen: int8" in r.stdout  # only unpruned int8 stays within 1% after one recovery step
    q, _, meta = load_compressed(tmp_path / "t" / "model.pt")
    assert isinstance(q.h[0].attn.c_attn, Int8Linear) and meta["quantization"]["weights"] == "int8"


def test_unmeetable_budget_exits_1_naming_the_best_point(tiny_ckpt, tmp_path):
    r = _run("compress", str(tiny_ckpt), "--target-mb", "0.01", "--steps", "1", "--questions", "0",
             "--out", str(tmp_path / "u"), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "no configuration met the budget" in r.stderr and "best point reached is" in r.stderr
    assert "MB" in r.stderr.split("best point reached is")[1]
    assert not (tmp_path / "u" / "model.pt").exists() and (tmp_path / "u" / "report.md").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--target-mb", "-1"], "must be > 0"),
        (["--target-mb", "abc"], "is not a number"),
        (["--max-loss-increase", "-0.1"], "must be >= 0"),
        (["--steps", "-3"], "must be >= 0"),
        (["--objective", "speed"], "invalid choice"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_bad_flags_exit_2(flags, message, capsys):
    """In-process for speed (the same main() the entry point calls); one subprocess run below."""
    from minillm.cli import main

    with pytest.raises(SystemExit) as e:
        main(["compress", *flags])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_bad_flag_exits_2_in_a_subprocess(tmp_path):
    r = _run("compress", "--target-mb", "-1", cwd=tmp_path)
    assert r.returncode == 2 and "must be > 0" in r.stderr and "Traceback" not in r.stderr


def test_missing_checkpoint_exits_2(tmp_path, capsys):
    from minillm.cli import main

    assert main(["compress", str(tmp_path / "nope.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
