"""The tensor-parallel example trains under `torchrun --nproc_per_node 2` on the CPU (gloo)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lesson12, pytest.mark.gloo, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_tp_example_trains_under_torchrun():
    # --standalone: torchrun's own rendezvous on a free localhost port (never a fixed one)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "examples" / "train_tp.py"), "--steps", "2", "--block-size", "32", "--sequence-parallel"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    losses = [float(x) for x in re.findall(r"loss (\d+\.\d+)", out.stdout)]
    assert len(losses) == 2 and all(0 < x < 10 for x in losses)  # ln(512) = 6.2 at the start
    assert "tensor parallel over 2 ranks with sequence parallelism" in out.stdout


def test_the_same_rank_code_runs_on_the_simulator():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from train_tp import train

        from minillm.parallel import run

        losses = run(train, 2, steps=1, block_size=16, batch_size=2).results
    finally:
        sys.path.remove(str(ROOT / "examples"))
    assert losses[0] == losses[1] and 0 < losses[0] < 10  # TP ranks agree on the loss
