"""The hardware step of `minillm tour`: a roofline PNG and a markdown section."""

import pytest

from minillm.hardware.tour import tour_step

pytestmark = pytest.mark.lesson07


def test_tour_step_writes_a_roofline_and_a_table(tmp_path):
    md = tour_step(tmp_path)
    png = tmp_path / "roofline.png"
    assert png.exists() and png.stat().st_size > 10_000
    assert md.startswith("## Hardware") and "roofline.png" in md
    for device in ("this machine", "h100-sxm", "tpu-v5e", "xeon-8480"):
        assert f"| {device} |" in md


def test_benchmark_module_exposes_run():
    bench = pytest.importorskip("benchmarks.bench_hardware")
    assert callable(bench.run) and bench.TARGET == 0.25


def test_tour_step_prints_its_numbers_in_the_terminal(tmp_path, capsys):
    # Issue 11: the hardware step printed only a progress bar; the terminal now gets the measured
    # rates and the cost table, the same figures as the markdown section.
    md = tour_step(tmp_path)
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and "GB/s" in out and "ridge point" in out
    for device in ("this machine", "h100-sxm", "tpu-v5e", "xeon-8480"):
        row = next(line for line in out.splitlines() if line.strip().startswith(device))
        assert f"| {row.split()[0]}" in md or device in md
        assert any(ch.isdigit() for ch in row)  # tokens/s, time, $ or kWh: numbers, not a bar
    measured = next(line for line in out.splitlines() if "measured in" in line)
    assert measured.split("measured in ", 1)[1] in md  # the terminal line is the markdown's own sentence
