"""Lesson 09's figures (minillm.hardware.plots): each returns a matplotlib Figure, drawn without a display."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from minillm.hardware.inference import decode_knee_batch
from minillm.hardware.memory import memory_plan
from minillm.hardware.serving import decode_batch_sweep, serving_view
from minillm.hardware.shapes import ModelShape, get_model
from minillm.hardware.plots import plot_decode_sweep, plot_max_batch, plot_memory, plot_serving  # noqa: E402

pytestmark = pytest.mark.lesson09

TEACHER = ModelShape(n_layer=6, d_model=128, n_head=4, vocab_size=512, n_positions=256, name="teacher")


def _drawn(fig) -> Figure:
    assert isinstance(fig, Figure) and fig.axes
    assert any(ax.lines or ax.patches or ax.collections for ax in fig.axes), "nothing plotted"
    fig.canvas.draw()  # render for real: a bad argument to a plotting call fails here, not in a notebook
    return fig


def test_plot_decode_sweep():
    llama70 = get_model("llama2-70b")
    sweeps = {f"context {c}": decode_batch_sweep(llama70, "h100", c, n_devices=2) for c in (0, 1024, 4096)}
    knees = {f"context {c}": decode_knee_batch(llama70, "h100", c) for c in (0, 1024, 4096)}
    assert knees["context 4096"] is None  # a label without a knee is drawn too
    fig = _drawn(plot_decode_sweep(sweeps, knees, "decode"))
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"


def test_plot_max_batch():
    llama70 = get_model("llama2-70b")
    ctxs = [2**k for k in range(7, 16)]
    max_b = {f"{n} x H100": [memory_plan(llama70, "h100", 1, c, n_devices=n).max_batch for c in ctxs] for n in (1, 2, 8)}
    assert 0 in max_b["1 x H100"]  # a context where nothing fits is drawn at 0.5, not dropped
    _drawn(plot_max_batch(ctxs, max_b, [decode_knee_batch(llama70, "h100", c) for c in ctxs], "max batch"))
    _drawn(plot_max_batch([1024], {"one": [4]}, [None]))  # no knee anywhere


def test_plot_memory():
    plans = {
        "7B serve": memory_plan("llama2-7b", "a100", 16, 4096),
        "7B train": memory_plan("llama2-7b", "a100", 1, 4096, training=True, recompute="full"),
        "teacher train": memory_plan(TEACHER, "a100", 8, 256, training=True),
    }
    fig = _drawn(plot_memory(plans, "memory"))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(plans)


@pytest.mark.parametrize(
    "model,device,batch,context",
    [("llama2-70b", "h100", 16, 1024), ("llama2-7b", "groq-lpu", 1024, 32768), (TEACHER, "xeon-8480", 1, 128)],
)
def test_plot_serving(model, device, batch, context):
    view = serving_view(model, device, batch, context, batches=[2**k for k in range(11)])
    fig = _drawn(plot_serving(view))
    assert len(fig.axes) == 2


@pytest.mark.parametrize("call", [lambda: plot_decode_sweep({}, {}), lambda: plot_memory({}), lambda: plot_max_batch([], {}, [])])
def test_empty_input_is_a_clear_error(call):
    with pytest.raises(ValueError, match="at least one"):
        call()


def _legends_clear_of_data(fig) -> int:
    """Every legend lies outside its axes' data area and inside the figure; returns how many there are."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    page = fig.bbox
    n = 0
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        n += 1
        box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert not box.overlaps(area), f"the legend of {ax.get_title() or ax.get_ylabel()!r} covers its data"
        assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y0 >= page.y0 - 1, "legend cut off by the figure edge"
    return n


def test_lesson_09_legends_do_not_cover_the_data():
    # Issue 11: in a real browser the legends of lesson 09 covered the curves.
    llama70 = get_model("llama2-70b")
    ctxs = [2**k for k in range(7, 16)]
    sweeps = {f"context {c}": decode_batch_sweep(llama70, "h100", c, n_devices=2) for c in (0, 1024, 4096)}
    knees = {f"context {c}": decode_knee_batch(llama70, "h100", c) for c in (0, 1024, 4096)}
    figs = [
        plot_decode_sweep(sweeps, knees, "decode"),
        plot_max_batch(ctxs, {"2 x H100": [memory_plan(llama70, "h100", 1, c, n_devices=2).max_batch for c in ctxs]},
                       [decode_knee_batch(llama70, "h100", c) for c in ctxs], "max batch"),
        plot_memory({"7B serve": memory_plan("llama2-7b", "a100", 16, 4096)}, "memory"),
        plot_serving(serving_view("llama2-70b", "h100", 16, 1024, batches=[2**k for k in range(11)])),
    ]
    assert [_legends_clear_of_data(f) for f in figs] == [1, 1, 1, 2]
