"""The tour's tensor- and pipeline-parallel step: figures written, equalities reported."""

import re

import pytest

from minillm.parallel.tour import tp_pp_step

pytestmark = [pytest.mark.lesson12, pytest.mark.lesson13]


def test_tp_pp_step_writes_the_schedules_and_reports_equality(tmp_path, capsys):
    md = tp_pp_step(tmp_path)
    png = tmp_path / "pipeline_schedules.png"
    assert png.exists() and png.stat().st_size > 10_000
    assert "![pipeline schedules](pipeline_schedules.png)" in md
    diffs = [float(d) for d in re.findall(r"within (\S+?)\.", md)]
    assert len(diffs) == 2 and all(d < 1e-5 for d in diffs)  # TP and PP gradients equal one device
    assert "27% (gpipe), 27% (1f1b), 16% (interleaved-1f1b)" in md  # (p-1)/(vm+p-1) for p=4, m=8, v=1 and 2
    out = capsys.readouterr().out
    assert "parallel: TP loss" in out and "PP max" in out  # the terminal gets the numbers too
