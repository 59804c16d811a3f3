"""The torchrun entry point: the example script trains under `torchrun --nproc_per_node 2` on the CPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lesson11, pytest.mark.gloo, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_example_trains_under_torchrun():
    # --standalone: torchrun's own rendezvous on a free localhost port (never a fixed one)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "examples" / "train_ddp_zero.py"), "--steps", "2", "--block-size", "32", "--stage", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    losses = [float(x) for x in re.findall(r"loss (\d+\.\d+)", out.stdout)]
    assert len(losses) == 2 and all(0 < x < 10 for x in losses)  # ln(512) = 6.2 at the start
    assert "world size 2, ZeRO stage 3" in out.stdout
