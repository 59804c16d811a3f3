"""How many CPU threads torch uses: one helper for the whole course.

The course's tensors are small (a 128-wide model, simulated ranks that are Python
threads), and on a small shared machine torch's extra OpenMP threads mostly wait
for each other: we measured single token steps 10x slower on two threads than on
one on a busy two-core VM. So the tour, the benchmarks, the timing cells of the
lessons and the graded checks run their timed or multi-rank work inside
``num_threads(1)``; everything else keeps torch's default (one thread per core).

Both helpers are context managers and, like every ``contextlib.contextmanager``,
decorators too::

    with num_threads(1):
        ...

    @one_thread()
    def check(...): ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from minillm.validate import is_int

__all__ = ["num_threads", "one_thread"]


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, then restore the previous count.

    ``None`` leaves torch's setting alone. ``n`` must be a positive int.
    """
    if n is not None and not (is_int(n) and n >= 1):
        raise ValueError(f"threads must be a positive int or None, got {n!r}")
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def one_thread() -> contextlib.AbstractContextManager[None]:
    """``num_threads(1)``: one intra-op thread for small tensors and timed comparisons."""
    return num_threads(1)
