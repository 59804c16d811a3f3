"""(a) The simulator's overhead; (b) a 2-process gloo DP step against one process.

(a) A 4-rank DP step on the simulator (four threads, a bucketed all-reduce, four
optimizer steps) against the same 4 micro-batches run one after another in one
process with gradient accumulation and one optimizer step. Target: <= 2x.
(b) A 2-rank DP step on real gloo processes against the same global batch in one
process: report only (it depends on the machine's cores).

Both measure with one intra-op thread per worker (``torch.set_num_threads(1)``,
restored afterwards): the simulator's threads and the gloo processes then do the
same arithmetic as the single process, so the ratio isolates the parallel
machinery, and an oversubscribed machine cannot distort one side's OpenMP.
"""

from __future__ import annotations

import copy
import os
import statistics
import time

import torch

from minillm.model import GPT, GPTConfig
from minillm.parallel import dp_train_step
from minillm.parallel import run as parallel_run
from minillm.threads import one_thread
from minillm.train import AdamW

# Smaller than the teacher in depth and context so the benchmark stays short, but
# large enough (about 0.9M parameters) that forward and backward dominate.
CONFIG = GPTConfig(vocab_size=512, block_size=128, n_layer=4, n_head=4, n_embd=128)
MICRO = 4  # sequences per micro-batch (per simulated rank)
BUCKET = 25_000_000  # DDP's default bucket size, in bytes


def _batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    V, T = CONFIG.vocab_size, CONFIG.block_size
    return [(torch.randint(0, V, (MICRO, T), generator=g), torch.randint(0, V, (MICRO, T), generator=g)) for _ in range(n)]


def _sim_rank(comm, models, opts, batches):
    x, y = batches[comm.rank]
    return dp_train_step(models[comm.rank], opts[comm.rank], comm, x, y, bucket_bytes=BUCKET)


def sim_overhead(quick: bool = False) -> dict:
    with one_thread():
        return _sim_overhead(quick)


def _sim_overhead(quick: bool) -> dict:
    torch.manual_seed(0)
    model = GPT(CONFIG)
    batches = _batches(4)
    seq_model = copy.deepcopy(model)
    seq_opt = AdamW(seq_model.parameters(), lr=1e-4)
    models = [copy.deepcopy(model) for _ in range(4)]  # copies made once, outside the timing
    opts = [AdamW(m.parameters(), lr=1e-4) for m in models]

    def sequential():
        for x, y in batches:
            _, loss = seq_model(x, y)
            (loss / 4).backward()
        seq_opt.step()
        seq_opt.zero_grad()

    def simulated():
        parallel_run(_sim_rank, 4, models, opts, batches)

    repeats = 3 if quick else 7
    sequential(), simulated()  # warm-up
    t_seq, t_sim = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        t = time.perf_counter()
        sequential()
        t_seq.append(time.perf_counter() - t)
        t = time.perf_counter()
        simulated()
        t_sim.append(time.perf_counter() - t)
    ratio = statistics.median(t_sim) / statistics.median(t_seq)
    return {
        "name": "sim overhead: 4-rank DP step / 4 micro-batches in one process",
        "value": ratio,
        "target": "<= 2",
        "passed": ratio <= 2.0,
        "note": f"{sum(p.numel() for p in model.parameters()):,} params, micro-batch {MICRO}x{CONFIG.block_size}, "
        f"bucketed all-reduce; sim runs 4 AdamW steps vs 1; 1 intra-op thread per worker; median of {repeats}",
    }


def _gloo_rank(comm, model, batch, steps):
    m = copy.deepcopy(model)
    opt = AdamW(m.parameters(), lr=1e-4)
    x, y = (t.chunk(comm.world_size)[comm.rank] for t in batch)
    dp_train_step(m, opt, comm, x, y, bucket_bytes=BUCKET)  # warm-up
    comm.barrier()
    t = time.perf_counter()
    for _ in range(steps):
        dp_train_step(m, opt, comm, x, y, bucket_bytes=BUCKET)
    return (time.perf_counter() - t) / steps


def gloo_vs_one_process(quick: bool = False) -> dict:
    with one_thread():
        return _gloo_vs_one_process(quick)


def _gloo_vs_one_process(quick: bool) -> dict:
    torch.manual_seed(0)
    model = GPT(CONFIG)
    batch = tuple(torch.cat(t) for t in zip(*_batches(2)))  # the global batch: 2 x MICRO sequences
    steps = 2 if quick else 5
    per_step = parallel_run(_gloo_rank, 2, model, batch, steps, backend="gloo", timeout=300).results
    t_gloo = max(per_step)
    m = copy.deepcopy(model)
    opt = AdamW(m.parameters(), lr=1e-4)

    def one():
        _, loss = m(*batch)
        loss.backward()
        opt.step()
        opt.zero_grad()

    one()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    t_one = (time.perf_counter() - t0) / steps
    return {
        "name": "gloo: 2-rank DP step / one process on the full batch",
        "value": t_gloo / t_one,
        "target": "report",
        "passed": None,
        "note": f"2 processes x 1 thread vs 1 process x 1 thread on {os.cpu_count()} cores; batch {2 * MICRO}x{CONFIG.block_size}; "
        f"includes the bucketed gloo all-reduce and the per-collective header check",
    }


def run(quick: bool = False) -> list[dict]:
    return [sim_overhead(quick), gloo_vs_one_process(quick)]
