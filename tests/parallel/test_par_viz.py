"""Plot helpers: they take plain data and return matplotlib Figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from minillm.parallel import (  # noqa: E402
    busbw_sweep,
    plot_busbw,
    plot_memory,
    plot_memory_timeline,
    plot_timeline,
    plot_zero_shards,
    run,
    zero_memory_bytes,
)

pytestmark = pytest.mark.lesson10


def _work(comm):
    comm.compute(seconds=1e-3 * (comm.rank + 1))
    comm.memory.alloc("activations", 1000)
    comm.all_reduce(torch.ones(1000))
    comm.memory.free("activations", 1000)
    return comm.clock


def test_timeline_draws_every_rank_and_kind():
    res = run(_work, 3)
    fig = plot_timeline(res, title="demo")
    ax = fig.axes[0]
    assert ax.get_title() == "demo" and ax.get_xlabel().startswith("simulated time")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["rank 0", "rank 1", "rank 2"]
    assert len(ax.collections) == 3 + 2 + 3  # one bar set per (rank, kind): compute x3, idle on ranks 0-1, comm x3
    with pytest.raises(ValueError, match="backend='sim'"):
        plot_timeline(run(_work, 1, backend="gloo"))


def test_memory_plots():
    data = {f"stage {s}": zero_memory_bytes(7.5e9, 64, s).as_dict() for s in range(4)}
    fig = plot_memory(data, capacity=80e9)
    ax = fig.axes[0]
    assert "GB" in ax.get_ylabel() and [t.get_text() for t in ax.get_xticklabels()] == list(data)
    # Stacked bars: the top of each stack is the stage's total in GB (the paper's 120, 31.4, 16.6, 1.9).
    tops = [max(p.get_y() + p.get_height() for c in ax.containers for p in c.patches if p.get_x() < i < p.get_x() + p.get_width())
            for i in range(4)]
    assert tops == pytest.approx([120, 31.40625, 16.640625, 1.875], rel=1e-9)  # 16, 4 + 12/64, 2 + 14/64, 16/64 bytes × 7.5e9
    assert ax.lines[0].get_ydata()[0] == pytest.approx(80)  # the device's capacity, dashed
    assert ax.get_legend().get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1  # legend beside the bars
    led = run(_work, 1).memory[0]
    fig = plot_memory_timeline(led)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("simulated time") and ax.get_ylabel().startswith("memory")
    # The stacked area reaches the ledger's peak: 1000 bytes of activations, drawn as 1 kB.
    top = max(v.max() for c in ax.collections for v in [c.get_paths()[0].vertices[:, 1]])
    assert ax.get_ylabel() == "memory (kB)" and top * 1e3 == pytest.approx(led.peak) and led.peak == 1000
    with pytest.raises(ValueError, match="data is empty"):
        plot_memory({})


def test_busbw_plot():
    rows = busbw_sweep("all_reduce", [2**k for k in range(10, 30, 2)], 8, 300e9, 5e-6)
    fig = plot_busbw({"8 ranks": rows}, link_bw=300e9)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert list(ax.lines[0].get_ydata()) == pytest.approx([r["busbw"] / 1e9 for r in rows], rel=1e-12)
    assert list(ax.lines[1].get_ydata()) == pytest.approx([300, 300])  # the link, in GB/s
    assert ax.get_ylabel().startswith("bus bandwidth (GB/s")


@pytest.mark.lesson11
@pytest.mark.parametrize("p", [2, 4])
def test_zero_shards_draws_who_holds_what(p):
    fig = plot_zero_shards(p)
    assert len(fig.axes) == 4
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == [f"stage {s}" for s in range(4)]
    held = {c.get_gid(): c for ax in fig.axes for c in ax.collections if c.get_gid()}
    # One filled row per (stage, category, rank): p slices when replicated, only slice r when sharded.
    first = {"parameters": 3, "gradients": 2, "optimizer": 1}  # ZeRO Sec. 5
    for stage in range(4):
        for cat, s0 in first.items():
            for r in range(p):
                cells = held[f"stage {stage}|{cat}|rank {r}"].get_paths()
                xs = sorted(round(path.vertices[:, 0].min()) for path in cells)
                assert xs == ([r] if stage >= s0 else list(range(p))), (stage, cat, r)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [f"rank {r}" for r in range(p)]


@pytest.mark.lesson11
def test_memory_timeline_names_forward_and_backward():
    # A 2-rank DP step with activations: the ledger and the trace give the phases.
    from minillm.parallel import train_replica
    from minillm.parallel.viz import memory_phases
    from _parallel_helpers import HYPER, tiny_data, tiny_model

    res = run(train_replica, 2, tiny_model(), tiny_data(2), 3, **HYPER)
    led, trace = res.memory[0], res.traces[0]
    phases = memory_phases(led, trace)
    labels = [ph[0] for ph in phases]
    assert labels == ["forward", "backward", "forward+backward", "optimizer step"] * 2
    # Phases follow each other without overlap, from time 0.
    assert phases[0][1] == 0.0 and all(a[2] <= b[1] + 1e-15 for a, b in zip(phases, phases[1:]))
    fig = plot_memory_timeline(led, trace=trace)
    ax = fig.axes[0]
    spans = [p for p in ax.patches if (p.get_gid() or "").startswith("phase|")]
    assert [p.get_gid() for p in spans] == [f"phase|{lab}" for lab in labels]
    names = [t.get_text() for t in ax.texts]
    assert names.count("forward") == 2 and names.count("backward") == 2
