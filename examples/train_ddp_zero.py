"""Train the teacher-sized minillm GPT with data parallelism and ZeRO, under torchrun.

    torchrun --nproc_per_node 2 examples/train_ddp_zero.py              # 2 CPU processes (gloo)
    torchrun --nproc_per_node 8 examples/train_ddp_zero.py --stage 3    # 8 GPUs (NCCL): same code
    python examples/train_ddp_zero.py                                   # one process

``train(comm, ...)`` is ordinary minillm rank code, so the very same function also
runs on the simulated cluster: ``minillm.parallel.run(train, 4, steps=3)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from minillm import zoo
from minillm.data import encode_splits, get_batch, load_corpus
from minillm.model import GPT
from minillm.parallel import ZeroOptimizer, broadcast_parameters, dp_train_step, torchrun_main


def train(comm, steps: int = 20, stage: int = 2, batch_size: int = 8, lr: float = 2e-3, block_size: int = 256) -> float:
    """Every rank: build the model, shard the optimizer (ZeRO ``stage``), train on its own batches."""
    config = dataclasses.replace(zoo.MODELS["teacher"].config, block_size=block_size)
    tok = zoo.tokenizer(config.vocab_size)
    train_ids, _ = encode_splits(load_corpus(n_stories=1000), tok)
    torch.manual_seed(0)
    model = GPT(config).to(comm.device)
    broadcast_parameters(model, comm)  # every replica starts from rank 0's weights
    opt = ZeroOptimizer(model if stage == 3 else model.parameters(), comm, stage=stage, lr=lr, weight_decay=0.1)
    gen = torch.Generator().manual_seed(1000 + comm.rank)  # each rank draws different sequences
    local = batch_size // comm.world_size  # the global batch is split over the ranks
    t0 = time.perf_counter()
    for step in range(steps):
        x, y = get_batch(train_ids, local, config.block_size, generator=gen, device=comm.device)
        loss = dp_train_step(model, opt, comm, x, y)  # the mean loss over all ranks
        if comm.rank == 0 and (step % 5 == 0 or step == steps - 1):
            print(f"step {step:3d}  loss {loss:.3f}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    if comm.rank == 0:
        mem = comm.memory.current
        print(f"world size {comm.world_size}, ZeRO stage {stage}: rank 0 keeps "
              f"{mem['parameters'] / 1e6:.2f} MB of parameters, {mem['gradients'] / 1e6:.2f} MB of gradients "
              f"and {mem['optimizer'] / 1e6:.2f} MB of AdamW state (1 MB = 1e6 bytes)")
    return loss


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--stage", type=int, default=2, choices=[0, 1, 2, 3], help="ZeRO stage (0 = plain DP)")
    p.add_argument("--batch-size", type=int, default=8, help="global batch, split over the ranks")
    p.add_argument("--block-size", type=int, default=256)
    a = p.parse_args()
    torchrun_main(train, steps=a.steps, stage=a.stage, batch_size=a.batch_size, block_size=a.block_size)
