"""Timing helpers for the whole course: best-of-n, interleaved rounds, one training step.

On a shared machine the *minimum* of a few repeats is the most reproducible estimate of
what the hardware can do, and timing two candidates in alternation (interleaved rounds)
spreads a slow spell of the machine over both instead of penalising one. Benchmarks,
lessons and the tour all time with these three functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from torch import Tensor, nn

from minillm.validate import check_int

__all__ = ["best_time", "interleaved_best", "train_step_seconds"]


def best_time(fn, repeats: int = 5, warmup: int = 1, clock=time.perf_counter) -> float:
    """Fastest of ``repeats`` timed calls of ``fn()`` after ``warmup`` untimed ones, in seconds.

    ``clock`` is wall time by default. With one torch thread, ``time.process_time`` (CPU
    time of this process) leaves out the time slices a busy machine gives to other
    processes; with several threads it would add their times up, so keep wall time.
    """
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(check_int("repeats", repeats)):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def interleaved_best(fns: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1) -> dict[str, float]:
    """Fastest wall-clock seconds of each zero-argument function, timed in interleaved rounds.

    Every function is first called ``warmup`` times untimed (caches, allocators, lazy
    weight packing); then each of ``rounds`` rounds calls every function once, in
    order. Returns {name: best seconds}. Interleaving spreads a slow spell of a busy
    machine over all candidates, and the minimum discards the calls it hit.
    """
    rounds = check_int("rounds", rounds)
    warmup = check_int("warmup", warmup, minimum=0)
    for f in fns.values():
        for _ in range(warmup):
            f()
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            t = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def train_step_seconds(
    model: nn.Module, x: Tensor, y: Tensor, opt=None, steps: int = 3, warmup: int = 1, progress: str | None = None
) -> float:
    """Median wall-clock seconds of one training step on the batch x, y [B, T].

    A step is forward with loss, backward and, if ``opt`` is given, ``opt.step()``;
    gradients are cleared before each step and after the last. The first ``warmup``
    steps (allocators, caches) are not timed. ``progress``: a tqdm label, or None.
    Note that with ``opt`` the model's weights change, as in training.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    from tqdm.auto import tqdm

    times = []
    for i in tqdm(range(warmup + steps), desc=progress, leave=False, disable=progress is None):
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        _, loss = model(x, y)
        loss.backward()
        if opt is not None:
            opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    model.zero_grad(set_to_none=True)
    return sorted(times)[len(times) // 2]
