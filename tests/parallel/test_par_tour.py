"""The `minillm tour` parallelism step."""

from __future__ import annotations

import pytest

from minillm.parallel.tour import dp_equivalence, tour_step

pytestmark = pytest.mark.lesson11


def test_tour_step_writes_pictures_and_markdown(tmp_path):
    md = tour_step(tmp_path)
    assert (tmp_path / "parallel_timeline.png").stat().st_size > 1000
    assert (tmp_path / "parallel_memory.png").stat().st_size > 1000
    assert md.startswith("## Parallelism") and "parallel_timeline.png" in md
    # the ledger column equals the formula column for every stage
    rows = [line.split("|")[2:4] for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 4 and all(a.strip() == b.strip() for a, b in rows)


def test_dp_on_four_simulated_devices_equals_one():
    diff, res = dp_equivalence(world_size=4, steps=2)
    assert diff < 1e-5  # float32 summation order only (eps=1e-6 in the tour's AdamW)
    assert res.world_size == 4 and res.makespan > 0
