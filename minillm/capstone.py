"""The capstone's glue (lesson 15): serve a load at the lowest cost, budget a training run, prove a layout.

Pure functions over the course's own models, so that lesson 15 and its graded checks
compute the same numbers:

- **serving** (:func:`replica`, :func:`fleet_option`, :func:`rank_serving`): a load of
  ``requests_per_s`` requests, each a prompt of ``prompt_len`` tokens and ``gen_len``
  generated ones, must be served with a time per output token (TPOT) of at most
  ``tpot_s``. A *replica* is the fewest devices that hold the weights and the KV cache of
  ``batch`` sequences of ``prompt_len + gen_len`` tokens
  (:func:`~minillm.hardware.memory.min_devices`). It serves the batch in cycles: it
  prefills the ``batch`` prompts one after another
  (:func:`~minillm.hardware.inference.prefill_time`, batch 1), then decodes ``gen_len``
  steps for the whole batch, each at the mean context ``prompt_len + gen_len // 2``
  (:func:`~minillm.hardware.inference.decode_step_time`). Roofline lower bounds, no
  communication, static batching: the lesson says what this leaves out.
- **training** (:func:`training_budget`): days and dollars from the planner's predicted
  tokens per second (:func:`~minillm.parallel.planner.plan`), beside the 6·N·D / MFU
  estimate of lesson 09.
- **the proof at small scale** (:func:`small_layout`, :func:`prove_layout`): the planned
  layout's axes, each capped, trained on the simulator with :func:`~minillm.parallel.three_d.train_3d`
  and compared with one device.
- **compression** (:func:`budget_verdict`): whether a model that
  :func:`~minillm.compress.pipeline.compress` measured (size, one-thread latency, loss, fact
  recall) meets each part of a budget.

Units: seconds, bytes, US dollars, tokens. Nothing in minillm imports this module but
:mod:`minillm.course.checks`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minillm.hardware.devices import DeviceSpec, as_device, catalog
from minillm.hardware.inference import decode_step_time, prefill_time
from minillm.hardware.memory import min_devices
from minillm.hardware.shapes import as_shape, param_count
from minillm.hardware.training import SECONDS_PER_DAY, training_time
from minillm.validate import check_int, check_number

__all__ = [
    "ServingLoad",
    "SERVING_BATCHES",
    "replica",
    "fleet_option",
    "best_batch",
    "rank_serving",
    "training_budget",
    "small_layout",
    "prove_layout",
    "budget_verdict",
    "serving_view",
    "serving_summary",
    "plot_serving",
    "serving_widget",
]

#: The batch sizes the serving search tries: powers of two from 1 to 512.
SERVING_BATCHES: tuple[int, ...] = tuple(2**k for k in range(10))


@dataclass(frozen=True)
class ServingLoad:
    """A serving load: ``requests_per_s`` requests of ``prompt_len`` prompt and ``gen_len`` generated tokens.

    ``tpot_s``: the largest acceptable time per output token (one decode step), seconds.
    """

    requests_per_s: float
    prompt_len: int
    gen_len: int
    tpot_s: float

    def __post_init__(self) -> None:
        check_number("requests_per_s", self.requests_per_s, strict=True)
        check_int("prompt_len", self.prompt_len)
        check_int("gen_len", self.gen_len)
        check_number("tpot_s", self.tpot_s, strict=True)

    @property
    def generated_tokens_per_s(self) -> float:
        """Output tokens per second the fleet must produce: requests_per_s · gen_len."""
        return self.requests_per_s * self.gen_len


# --------------------------------------------------------------------------- serving


def replica(shape, device: DeviceSpec | str, batch: int, prompt_len: int, gen_len: int, dtype: str | None = None) -> dict:
    """One replica serving ``batch`` sequences at a time: its devices, throughput and TPOT.

    Returns ``n_devices`` (fewest that hold weights + KV cache of ``batch`` x (prompt_len +
    gen_len) tokens), ``prefill_s`` (one prompt, batch 1), ``decode_s`` (one decode step of
    the batch at context prompt_len + gen_len // 2, the TPOT), ``cycle_s`` = batch ·
    prefill_s + gen_len · decode_s (the time to serve one batch, also a request's latency),
    ``requests_per_s`` = batch / cycle_s, and ``bound`` of the decode step.
    """
    shape, device = as_shape(shape), as_device(device)
    b, P, G = check_int("batch", batch), check_int("prompt_len", prompt_len), check_int("gen_len", gen_len)
    dtype = device.default_dtype() if dtype is None else dtype
    n = min_devices(shape, device, b, P + G, dtype=dtype)
    pre = prefill_time(shape, device, P, batch=1, dtype=dtype, n_devices=n)
    dec = decode_step_time(shape, device, P + G // 2, batch=b, dtype=dtype, n_devices=n)
    cycle = b * pre.seconds + G * dec.seconds
    return {
        "device": device.name,
        "batch": b,
        "n_devices": n,
        "prefill_s": pre.seconds,
        "decode_s": dec.seconds,
        "cycle_s": cycle,
        "requests_per_s": b / cycle,
        "bound": dec.bound,
    }


def fleet_option(shape, device: DeviceSpec | str, load: ServingLoad, batch: int, dtype: str | None = None) -> dict:
    """Enough replicas of :func:`replica` at ``batch`` to serve ``load``, and what it costs.

    Adds to the replica's dict: ``replicas`` = ceil(requests_per_s / replica's requests_per_s)
    (whole replicas: the last one is partly idle, and paid for), ``devices`` = replicas x
    n_devices, ``usd_per_hour`` of the fleet (None without a catalog price),
    ``usd_per_million`` generated tokens = fleet dollars per second / generated tokens per
    second x 1e6, and ``meets_tpot`` (decode_s <= load.tpot_s).
    """
    device = as_device(device)
    r = replica(shape, device, batch, load.prompt_len, load.gen_len, dtype)
    replicas = math.ceil(load.requests_per_s / r["requests_per_s"])
    devices = replicas * r["n_devices"]
    price = device.usd_per_hour
    usd_h = None if price is None else devices * price
    usd_m = None if usd_h is None else usd_h / 3600.0 / load.generated_tokens_per_s * 1e6
    return {**r, "replicas": replicas, "devices": devices, "usd_per_hour": usd_h, "usd_per_million": usd_m,
            "meets_tpot": r["decode_s"] <= load.tpot_s}


def best_batch(shape, device: DeviceSpec | str, load: ServingLoad, batches=SERVING_BATCHES, dtype: str | None = None) -> dict | None:
    """The cheapest :func:`fleet_option` on ``device`` over ``batches`` that meets the TPOT target (None if none does).

    Ties in cost go to the smaller batch. A device without a price has no cheapest option: None.
    """
    best = None
    for b in batches:
        opt = fleet_option(shape, device, load, b, dtype)
        if not opt["meets_tpot"] or opt["usd_per_million"] is None:
            continue
        if best is None or opt["usd_per_million"] < best["usd_per_million"]:
            best = opt
    return best


def rank_serving(shape, load: ServingLoad, devices=None, batches=SERVING_BATCHES) -> list[dict]:
    """:func:`best_batch` for every device (default: the priced ones in the catalog), cheapest first.

    Devices with no price, or with no batch that meets the TPOT target, are left out.
    """
    devices = [d for d in catalog() if d.usd_per_hour is not None] if devices is None else [as_device(d) for d in devices]
    rows = [best_batch(shape, d, load, batches) for d in devices]
    return sorted((r for r in rows if r is not None), key=lambda r: r["usd_per_million"])


# --------------------------------------------------------------------------- training


def training_budget(shape, n_tokens: float, device: DeviceSpec | str, n_devices: int, tokens_per_s: float,
                    mfu: float | None = None) -> dict:
    """Days and dollars to train on ``n_tokens`` at the planner's ``tokens_per_s`` on ``n_devices``.

    ``days`` = n_tokens / tokens_per_s / 86,400; ``usd`` = days x 24 x n_devices x the
    device's hourly price. With ``mfu`` (the plan's), also ``days_6nd`` = 6·N·D /
    (n_devices x mfu x bf16 peak) / 86,400 with N = all parameters: the lesson 09 estimate,
    which leaves out the attention FLOPs and so comes out a little shorter.
    """
    device = as_device(device)
    D = check_number("n_tokens", n_tokens, strict=True)
    n = check_int("n_devices", n_devices)
    tps = check_number("tokens_per_s", tokens_per_s, strict=True)
    seconds = D / tps
    out = {"days": seconds / SECONDS_PER_DAY, "gpu_hours": seconds / 3600.0 * n,
           "usd": None if device.usd_per_hour is None else seconds / 3600.0 * n * device.usd_per_hour}
    if mfu is not None:
        N = param_count(as_shape(shape))
        out["days_6nd"] = training_time(N, D, n, mfu * device.peak("bf16")) / SECONDS_PER_DAY
    return out


def small_layout(dp: int, tp: int, pp: int, cap: int = 2) -> tuple[int, int, int]:
    """The planned layout at simulator scale: each axis capped at ``cap``, an axis in use stays in use.

    (32, 2, 1) -> (2, 2, 1): the same kinds of parallelism, on at most cap³ ranks.
    """
    c = check_int("cap", cap)
    return tuple(min(check_int(k, v), c) for k, v in (("dp", dp), ("tp", tp), ("pp", pp)))  # type: ignore[return-value]


def prove_layout(dp: int, tp: int, pp: int, *, steps: int = 2, seed: int = 0, zero_stage: int = 0) -> dict:
    """Train a tiny GPT with :func:`~minillm.parallel.three_d.train_3d` on dp·tp·pp simulated ranks and on one device.

    The tiny GPT: 4 layers, 2 heads (or ``tp`` if more), width 16 per head-pair, vocabulary 32,
    8-token sequences, ``2·dp·pp`` sequences a step. Returns ``max_abs_diff`` (largest
    parameter difference after ``steps`` AdamW steps), ``losses`` (the 3D run's) and
    ``ref_losses``, ``ranks``, ``makespan_s`` (simulated seconds) and ``peak_bytes`` per rank.
    """
    import torch

    from minillm.model import GPT, GPTConfig
    from minillm.parallel import ProcessGrid, max_abs_diff, run, train_single
    from minillm.parallel.three_d import gather_3d_parameters, train_3d

    dp, tp, pp = (check_int(k, v) for k, v in (("dp", dp), ("tp", tp), ("pp", pp)))
    heads = max(2, tp)
    cfg = GPTConfig(vocab_size=32, block_size=8, n_layer=max(4, pp), n_head=heads, n_embd=8 * heads)
    torch.manual_seed(seed)
    model = GPT(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    B = 2 * dp * pp
    batches = [(torch.randint(0, 32, (B, 8), generator=g), torch.randint(0, 32, (B, 8), generator=g))
               for _ in range(check_int("steps", steps))]
    hyper = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1)

    def rank(comm):
        grid = ProcessGrid(comm, tp=tp, pp=pp)
        shard = train_3d(model, comm, grid, batches, steps=steps, zero_stage=zero_stage, **hyper)
        return shard.losses, gather_3d_parameters(shard)

    res = run(rank, dp * tp * pp)
    ref_losses, ref = train_single(model, batches, optimizer=torch.optim.AdamW, **hyper)
    ref = {k: v for k, v in ref.items() if k != "lm_head.weight"}  # tied to wte
    losses, params = res.results[0]
    return {
        "layout": (dp, tp, pp),
        "ranks": dp * tp * pp,
        "max_abs_diff": max(max_abs_diff(p, ref) for _, p in res.results),
        "losses": losses,
        "ref_losses": ref_losses,
        "makespan_s": res.makespan,
        "peak_bytes": [m.peak for m in res.memory],
    }


# --------------------------------------------------------------------------- compression


def budget_verdict(row: dict, reference: dict, *, max_bytes: float, max_latency_ms: float,
                   max_loss_increase: float) -> dict:
    """Which budgets a measured model meets, against the float32 ``reference``.

    ``row`` and ``reference`` are rows of :func:`~minillm.compress.pipeline.compress`'s report
    (``bytes``, ``latency_ms`` on one thread, ``val_loss``, ``recall``). Returns ``size``,
    ``latency``, ``quality`` (each True or False), ``all``, and ``smaller`` (reference bytes /
    bytes), ``faster`` (reference latency / latency), ``loss_increase`` (relative: 0.05 = 5%)
    and ``recall_change`` (percentage points as a fraction, None without recall).
    """
    increase = (row["val_loss"] - reference["val_loss"]) / reference["val_loss"]
    out = {
        "size": row["bytes"] <= check_number("max_bytes", max_bytes, strict=True),
        "latency": row["latency_ms"] <= check_number("max_latency_ms", max_latency_ms, strict=True),
        "quality": increase <= check_number("max_loss_increase", max_loss_increase),
        "smaller": reference["bytes"] / row["bytes"],
        "faster": reference["latency_ms"] / row["latency_ms"],
        "loss_increase": increase,
        "recall_change": None if row.get("recall") is None or reference.get("recall") is None
        else row["recall"] - reference["recall"],
    }
    out["all"] = out["size"] and out["latency"] and out["quality"]
    return out


# --------------------------------------------------------------------------- pictures and the widget


def serving_view(model: str = "llama2-7b", requests_per_s: float = 20.0, prompt_len: int = 1024, gen_len: int = 256,
                 tpot_ms: float = 50.0) -> dict:
    """The serving widget's data: the load and :func:`rank_serving` over the priced catalog."""
    load = ServingLoad(requests_per_s, prompt_len, gen_len, check_number("tpot_ms", tpot_ms, strict=True) / 1e3)
    return {"model": model, "load": load, "rows": rank_serving(model, load)}


def serving_summary(view: dict) -> str:
    """One line per device, cheapest first: $/M generated tokens, batch, replicas x devices, TPOT."""
    load = view["load"]
    head = (f"{view['model']}: {load.requests_per_s:g} req/s x ({load.prompt_len} prompt + {load.gen_len} generated), "
            f"TPOT <= {load.tpot_s * 1e3:g} ms")
    if not view["rows"]:
        return head + "\nno device meets the TPOT target: loosen it"
    lines = [head, f"{'device':<14} {'$/M tokens':>10} {'batch':>5} {'replicas x devices':>19} {'TPOT ms':>8} {'fleet $/h':>9}"]
    for r in view["rows"]:
        lines.append(f"{r['device']:<14} {r['usd_per_million']:>10.3f} {r['batch']:>5} "
                     f"{r['replicas']:>9} x {r['n_devices']:<7} {r['decode_s'] * 1e3:>8.2f} {r['usd_per_hour']:>9.2f}")
    return "\n".join(lines)


def plot_serving(view: dict):
    """Two panels: each device's cheapest $/M generated tokens (ranked), and its TPOT against the target."""
    from matplotlib.figure import Figure

    rows, load = view["rows"], view["load"]
    fig = Figure(figsize=(10, 3.6))
    ax_c, ax_t = fig.subplots(1, 2, sharey=True)
    names = [r["device"] for r in rows][::-1]
    y = range(len(rows))
    costs = [r["usd_per_million"] for r in rows][::-1]
    ax_c.barh(list(y), costs, color=["#dd8452" if i == len(rows) - 1 else "#4c72b0" for i in y])
    for i, r in zip(y, rows[::-1]):
        ax_c.text(r["usd_per_million"], i, f"  batch {r['batch']}, {r['replicas']}×{r['n_devices']}", va="center", fontsize=7)
    ax_c.set_yticks(list(y), names, fontsize=8)
    ax_c.set_xscale("log")
    ax_c.set_xlabel("$ per million generated tokens (log)")
    ax_c.set_title("Cheapest option per device (replicas × devices each)")
    ax_t.barh(list(y), [r["decode_s"] * 1e3 for r in rows][::-1], color="#55a868")
    ax_t.axvline(load.tpot_s * 1e3, color="black", linestyle="--", linewidth=1)
    ax_t.text(load.tpot_s * 1e3, len(rows) - 0.5, " TPOT target", fontsize=7, va="bottom")
    ax_t.set_xlabel("time per output token (ms)")
    ax_t.set_title("Its decode step")
    fig.suptitle(f"{view['model']}: {load.requests_per_s:g} req/s of {load.prompt_len} + {load.gen_len} tokens", fontsize=10)
    fig.tight_layout()
    return fig


def serving_widget(draw: bool = True):
    """Lesson 15's widget: ``interactive`` over :func:`serving_view`: the ranking and why the winner wins."""
    from ipywidgets import Dropdown, SelectionSlider

    from minillm.parallel.widgets import interactive_view

    return interactive_view(
        serving_view, plot_serving, serving_summary, draw,
        model=Dropdown(options=["llama2-7b", "llama3-8b", "llama2-13b", "llama2-70b"], value="llama2-7b", description="model"),
        requests_per_s=SelectionSlider(options=(0.5, 1, 2, 5, 10, 20, 50, 100, 200), value=20, description="requests/s"),
        prompt_len=SelectionSlider(options=(128, 256, 512, 1024, 2048, 4096), value=1024, description="prompt tokens"),
        gen_len=SelectionSlider(options=(32, 64, 128, 256, 512, 1024), value=256, description="generated tokens"),
        tpot_ms=SelectionSlider(options=(5, 7, 10, 15, 20, 30, 50, 100), value=50, description="TPOT target (ms)"),
    )
