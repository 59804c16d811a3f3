"""The tour's 3D step: equality with one device, the planner's numbers, the saved timeline."""

import pytest

from minillm.parallel.tour import three_d_step

pytestmark = pytest.mark.lesson14


def test_three_d_step_writes_the_timeline_and_reports(tmp_path, capsys):
    md = three_d_step(tmp_path)
    assert (tmp_path / "three_d_timeline.png").stat().st_size > 10_000
    assert "## 3D parallelism and the planner" in md and "three_d_timeline.png" in md
    assert "Megatron 145.6B" in md and "BLOOM-176B" in md
    out = capsys.readouterr().out
    diff = float(out.split("3D max |Δparameter| = ")[1].split(";")[0])
    assert diff < 1e-5
