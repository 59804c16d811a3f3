"""Plot helpers: they take plain data and return matplotlib Figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from minillm.parallel import (  # noqa: E402
    busbw_sweep,
    plot_busbw,
    plot_memory,
    plot_memory_timeline,
    plot_timeline,
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
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["rank 0", "rank 1", "rank 2"]
    assert len(ax.collections) == 3 + 2 + 3  # one bar set per (rank, kind): compute x3, idle on ranks 0-1, comm x3
    plt.close(fig)
    with pytest.raises(ValueError, match="backend='sim'"):
        plot_timeline(run(_work, 1, backend="gloo"))


def test_memory_plots():
    data = {f"stage {s}": zero_memory_bytes(7.5e9, 64, s).as_dict() for s in range(4)}
    fig = plot_memory(data, capacity=80e9)
    assert isinstance(fig, Figure) and "GB" in fig.axes[0].get_ylabel()
    plt.close(fig)
    led = run(_work, 1).memory[0]
    fig = plot_memory_timeline(led)
    assert isinstance(fig, Figure)
    plt.close(fig)
    with pytest.raises(ValueError, match="data is empty"):
        plot_memory({})


def test_busbw_plot():
    rows = busbw_sweep("all_reduce", [2**k for k in range(10, 30, 2)], 8, 300e9, 5e-6)
    fig = plot_busbw({"8 ranks": rows}, link_bw=300e9)
    assert isinstance(fig, Figure) and len(fig.axes[0].lines) == 2
    plt.close(fig)
