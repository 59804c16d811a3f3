"""Train the teacher-sized minillm GPT with tensor parallelism (TP=2), under torchrun.

    torchrun --nproc_per_node 2 examples/train_tp.py                   # 2 CPU processes (gloo)
    torchrun --nproc_per_node 2 examples/train_tp.py --sequence-parallel
    torchrun --nproc_per_node 4 examples/train_tp.py                   # 4 GPUs (NCCL): the same code

Every rank holds half of every weight matrix (whole attention heads, half of the MLP, half of the
vocabulary) and sees the same batches; the forward and backward passes all-reduce activations
(Megatron-LM's f and g). ``train(comm, ...)`` is ordinary minillm rank code, so the very same function
also runs on the simulated cluster: ``minillm.parallel.run(train, 2, steps=3)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from minillm import zoo
from minillm.data import encode_splits, get_batch, load_corpus
from minillm.model import GPT
from minillm.parallel import torchrun_main
from minillm.parallel.tensor_parallel import sync_sequence_parallel_grads, tensor_parallel_gpt
from minillm.presets import TEACHER
from minillm.train import AdamW


def train(comm, steps: int = 20, batch_size: int = 8, lr: float = 2e-3, block_size: int = 256, sequence_parallel: bool = False) -> float:
    """Every rank: build the same model, keep its shard, train it on the same batches."""
    config = dataclasses.replace(TEACHER, block_size=block_size)
    tok = zoo.tokenizer(config.vocab_size)
    train_ids, _ = encode_splits(load_corpus(n_stories=1000), tok)
    torch.manual_seed(0)  # every rank builds the same full model, then keeps its shard
    shard = tensor_parallel_gpt(GPT(config), comm, sequence_parallel=sequence_parallel).to(comm.device)
    opt = AdamW(shard.parameters(), lr=lr, weight_decay=0.1)
    gen = torch.Generator().manual_seed(1000)  # the same batches on every TP rank
    t0 = time.perf_counter()
    for step in range(steps):
        x, y = get_batch(train_ids, batch_size, config.block_size, generator=gen, device=comm.device)
        opt.zero_grad()
        _, loss = shard(x, y)
        loss.backward()
        sync_sequence_parallel_grads(shard, comm)
        opt.step()
        if comm.rank == 0 and (step % 5 == 0 or step == steps - 1):
            print(f"step {step:3d}  loss {loss.item():.3f}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    if comm.rank == 0:
        n = sum(p.numel() for p in shard.parameters())
        print(f"tensor parallel over {comm.world_size} ranks{' with sequence parallelism' if sequence_parallel else ''}: "
              f"rank 0 holds {n:,} parameters")
    return loss.item()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8, help="sequences per step, the same on every TP rank")
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--sequence-parallel", action="store_true")
    a = p.parse_args()
    torchrun_main(train, steps=a.steps, batch_size=a.batch_size, block_size=a.block_size, sequence_parallel=a.sequence_parallel)
