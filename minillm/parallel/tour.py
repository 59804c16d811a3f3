"""The parallelism steps of ``minillm tour``: DP, TP, PP and all three on simulated devices equal one device.

Trains a small GPT for a few steps twice, on one simulated device and with data
parallelism on four, prints the largest parameter difference, and saves the
4-rank timeline and the memory per device under each ZeRO stage, measured by the
simulator's ledgers.
"""

from __future__ import annotations

import pathlib
import time

import torch
from tqdm import tqdm

from minillm.model import GPT, GPTConfig

from .comm import RunResult
from .data_parallel import max_abs_diff, train_replica
from .launch import run
from .cluster import CPU_ETHERNET
from .costs import zero_memory_bytes

__all__ = ["tour_step", "tp_pp_step", "three_d_step", "dp_equivalence"]

CONFIG = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
HYPER = dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1)


def dp_equivalence(
    world_size: int = 4, steps: int = 3, batch: int = 32, stage: int | None = None, seed: int = 0
) -> tuple[float, RunResult]:
    """Max |parameter difference| between ``world_size`` simulated ranks and one device, and the run.

    ``stage`` None is DP with one 25 MB gradient bucket (DDP's default size) and AdamW;
    0-3 use :class:`ZeroOptimizer`. The cluster is :data:`CPU_ETHERNET`.
    """
    torch.manual_seed(seed)
    model = GPT(CONFIG)
    g = torch.Generator().manual_seed(seed + 1)
    V, T = CONFIG.vocab_size, CONFIG.block_size
    data = [(torch.randint(0, V, (batch, T), generator=g), torch.randint(0, V, (batch, T), generator=g)) for _ in range(steps)]
    bucket = 25_000_000  # DDP's default; ZeroOptimizer does its own gradient communication
    _, one = run(train_replica, 1, model, data, stage, 1, bucket, cluster=CPU_ETHERNET, **HYPER).results[0]
    many = run(train_replica, world_size, model, data, stage, 1, bucket, cluster=CPU_ETHERNET, **HYPER)
    return max_abs_diff(many.results[0][1], one), many


def tour_step(out_dir: pathlib.Path) -> str:
    """Run the parallelism demo, save two PNGs into ``out_dir``, return a markdown section."""
    from .viz import plot_memory, plot_timeline

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print("parallel: data parallelism on 4 simulated CPUs on Ethernet against 1 device")
    diff, dp = dp_equivalence()
    print(f"parallel: max |Δparameter| after 3 steps = {diff:.2e}")
    fig = plot_timeline(dp, title="DP on 4 simulated CPUs on Ethernet: 3 training steps")
    fig.savefig(out_dir / "parallel_timeline.png", dpi=100)

    measured = {}
    n_params = sum(p.numel() for p in GPT(CONFIG).parameters())
    for stage in tqdm(range(4), desc="parallel: ZeRO stages", leave=False):
        _, res = dp_equivalence(stage=stage, steps=1)
        led = res.memory[0]
        measured[f"stage {stage}"] = {c: led.current[c] for c in ("parameters", "gradients", "optimizer")}
    fig = plot_memory(measured, title=f"Model states per device, 4 ranks, {n_params:,} fp32 parameters")
    fig.savefig(out_dir / "parallel_memory.png", dpi=100)
    expect = {s: zero_memory_bytes(n_params, 4, s, k=8, bytes_param=4, bytes_grad=4).total for s in range(4)}
    rows = "\n".join(
        f"| {s} | {sum(measured[f'stage {s}'].values()):,} | {expect[s]:,.0f} |" for s in range(4)
    )
    busy = dp.time_by_kind()[0]
    total = sum(busy.values())
    print(f"parallel: done in {time.perf_counter() - t0:.1f} s")
    return (
        "## Parallelism: a simulated cluster\n\n"
        f"Data parallelism on 4 simulated CPUs on Ethernet trains a {n_params:,}-parameter GPT to the same weights as one "
        f"device: the largest parameter difference after 3 AdamW steps is **{diff:.1e}** (float32 summation order).\n\n"
        f"Rank 0 spent {100 * busy['compute'] / total:.0f}% of its simulated time computing, "
        f"{100 * busy['comm'] / total:.0f}% communicating and {100 * busy['idle'] / total:.0f}% idle "
        "(a model this small has little compute to hide the per-message latency behind).\n\n"
        "![timeline](parallel_timeline.png)\n\n"
        "Model-state bytes per device, measured by the simulator's memory ledger, against the ZeRO paper's "
        "formula (fp32 AdamW: 4-byte parameters and gradients, K = 8):\n\n"
        "| ZeRO stage | ledger (bytes) | formula (bytes) |\n|---|---|---|\n"
        f"{rows}\n\n"
        "![memory](parallel_memory.png)\n"
    )


def tp_pp_step(out_dir: pathlib.Path) -> str:
    """Tensor parallelism (t=2, with sequence parallelism) and a 4-stage 1F1B pipeline against one device.

    Saves the GPipe / 1F1B / interleaved schedules figure into ``out_dir``; returns a markdown section.
    """
    from minillm.kernels import cross_entropy_loss

    from .pipeline_parallel import pipeline_train_step, split_into_stages
    from .pp_plots import plot_schedules
    from .pp_schedule import pipeline_schedule, schedule_timeline
    from .tensor_parallel import gather_tp_tensors, sync_sequence_parallel_grads, tensor_parallel_gpt

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = GPTConfig(vocab_size=64, block_size=16, n_layer=4, n_head=2, n_embd=32)
    torch.manual_seed(0)
    model = GPT(cfg)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 64, (8, 16), generator=g), torch.randint(0, 64, (8, 16), generator=g)
    loss = model(x, y)[1]
    loss.backward()
    ref = {n: p.grad for n, p in model.named_parameters()}

    def tp_rank(comm):
        shard = tensor_parallel_gpt(model, comm, sequence_parallel=True)
        _, l = shard(x, y)
        l.backward()
        sync_sequence_parallel_grads(shard, comm)
        grads = gather_tp_tensors(shard, comm, grads=True)
        return l.item(), max((grads[n] - r).abs().max().item() for n, r in ref.items())

    print("parallel: tensor parallelism (t=2, sequence parallel) against 1 device")
    tp_loss, tp_diff = run(tp_rank, 2).results[0]
    print(f"parallel: TP loss {tp_loss:.5f} vs {loss.item():.5f}, max |Δgradient| = {tp_diff:.1e}")

    micro = list(zip(x.chunk(8), y.chunk(8)))
    stages = split_into_stages(model, 4)

    def pp_rank(comm):
        stage = stages[comm.rank]
        stage.zero_grad()
        fn = lambda logits, t: cross_entropy_loss(logits.reshape(-1, logits.shape[-1]), t.reshape(-1))  # noqa: E731
        pipeline_train_step(stage, comm, micro, pipeline_schedule("1f1b", 4, 8, comm.rank), fn)
        return max(
            (p.grad - ref["wte.weight" if n == "lm_head.weight" else n]).abs().max().item() for n, p in stage.named_parameters()
        )

    print("parallel: a 4-stage 1F1B pipeline with 8 micro-batches against 1 device")
    pp_diff = max(run(pp_rank, 4).results)
    timelines = [schedule_timeline(k, 4, 8, n_virtual=v) for k, v in (("gpipe", 1), ("1f1b", 1), ("interleaved-1f1b", 2))]
    plot_schedules(timelines).savefig(out_dir / "pipeline_schedules.png", dpi=100)
    print(f"parallel: PP max |Δgradient| = {pp_diff:.1e}; bubbles " + ", ".join(f"{t.kind} {t.bubble:.0%}" for t in timelines))
    print(f"parallel: TP and PP done in {time.perf_counter() - t0:.1f} s")
    held = ", ".join(f"{t.kind} {max(t.in_flight) / t.n_virtual:g}" for t in timelines)
    return (
        "## Tensor and pipeline parallelism\n\n"
        f"The same GPT split by tensor parallelism over 2 simulated ranks (with sequence parallelism) gives loss "
        f"{tp_loss:.5f} against {loss.item():.5f} on one device, and every gradient within {tp_diff:.0e}. Cut into 4 "
        f"pipeline stages running 1F1B over 8 micro-batches, its gradients match within {pp_diff:.0e}.\n\n"
        "With 4 stages and 8 micro-batches a pipeline idles "
        + ", ".join(f"{t.bubble:.0%} ({t.kind})" for t in timelines)
        + f"; the busiest stage holds the activations of {held} micro-batches.\n\n"
        "![pipeline schedules](pipeline_schedules.png)\n"
    )


def three_d_step(out_dir: pathlib.Path) -> str:
    """3D parallelism (dp=2 × tp=2 × pp=2) against one device, the planner against the simulator and
    against published runs. Saves the 8-rank timeline into ``out_dir``; returns a markdown section."""
    from .cluster import ClusterSpec
    from .data_parallel import train_single
    from .grid import ProcessGrid
    from .planner import plan
    from .planner_runs import published_comparison, simulator_comparison
    from .three_d import gather_3d_parameters, train_3d
    from .viz import plot_timeline

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = GPTConfig(vocab_size=32, block_size=32, n_layer=4, n_head=4, n_embd=64)
    torch.manual_seed(0)
    model = GPT(cfg)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randint(0, 32, (8, 32), generator=g), torch.randint(0, 32, (8, 32), generator=g)) for _ in range(3)]
    ref = {k: v for k, v in train_single(model, data, **HYPER)[1].items() if k != "lm_head.weight"}
    toy = ClusterSpec(name="toy", peak_flops=1e9, mem_bw=1e10, mem_bytes=1e9, link_bw=2e8, latency=0.0)

    def rank(comm):
        grid = ProcessGrid(comm, tp=2, pp=2)
        return gather_3d_parameters(train_3d(model, comm, grid, data, steps=3, zero_stage=1, **HYPER))

    print("parallel: 3D parallelism, dp=2 x tp=2 x pp=2 with ZeRO-1, against 1 device")
    res = run(rank, 8, cluster=toy)
    diff = max(max_abs_diff(r, ref) for r in res.results)
    plot_timeline(res, title="dp=2 × tp=2 × pp=2, 3 steps (simulated ranks)").savefig(out_dir / "three_d_timeline.png", dpi=100)
    sim = simulator_comparison(model, [(2, 2, 2, 2, 0), (1, 2, 4, 1, 0)], toy, global_batch=8)
    best = plan("llama2-70b", 64, "h100", global_batch=256, seq_len=4096)[0]
    pub = published_comparison()
    print(f"parallel: 3D max |Δparameter| = {diff:.1e}; planner vs simulator "
          + ", ".join(f"{r['step_ratio'] - 1:+.1%}" for r in sim) + f"; done in {time.perf_counter() - t0:.1f} s")
    rows = "\n".join(f"| {r['run']} | TP {r['tp']}, PP {r['pp']}, DP {r['dp']} | {r['published_TFLOPs']:.0f} | "
                     f"{r['predicted_TFLOPs']:.0f} | {r['error']:+.0%} |" for r in pub)
    return (
        "## 3D parallelism and the planner\n\n"
        f"Data, tensor and pipeline parallelism together (dp=2 × tp=2 × pp=2, 1F1B, ZeRO-1) on 8 simulated ranks "
        f"train to the one-device weights within {diff:.0e} after 3 AdamW steps.\n\n"
        "![3D timeline](three_d_timeline.png)\n\n"
        "The planner predicts the simulator's step time within "
        + " and ".join(f"{abs(r['step_ratio'] - 1):.1%}" for r in sim)
        + f" on two layouts. For Llama 2 70B on 64 H100s (256 × 4,096 tokens) it picks dp={best.dp}, tp={best.tp}, "
        f"pp={best.pp}, {best.recompute} recomputation: {best.tokens_per_s:,.0f} tokens/s, "
        f"{best.memory_bytes / 1e9:.0f} GB per GPU.\n\n"
        f"Against published A100 runs, with `mfu` fitted on Megatron's 1.7B row ({pub[0]['mfu']:.3f}):\n\n"
        "| run | layout | published TFLOP/s per GPU | planner | error |\n|---|---|---|---|---|\n"
        f"{rows}\n"
    )
