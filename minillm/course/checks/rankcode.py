"""Running the learner's rank code in a check: the simulated cluster, a point-to-point-only
communicator that logs every message, and one-line verdicts for hangs, mismatches and
rings that run the wrong way.

Shared by the checks of the parallel lessons (10 and 11, and the lessons that build on
them). Graded checks never hang: a deadlock (every rank waiting for a message nobody
sends) is detected by the simulator at once, and a rank stuck in its own code makes
the others time out after :data:`RUN_TIMEOUT` seconds. :func:`run_ranks` turns both,
and any error of the learner's code inside a rank, into a one-line verdict.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import torch

from minillm.course.checks import CheckFailure
from minillm.parallel import CollectiveMismatchError, CommTimeoutError, RankError, run
from minillm.parallel.cluster import ClusterSpec
from minillm.threads import one_thread

__all__ = ["RUN_TIMEOUT", "CHECK_CLUSTER", "run_ranks", "P2POnly", "ring_run", "with_direction", "direction_mistake",
           "DIRECTION_HINT", "one_thread"]

#: Wall seconds a rank may wait in one communication call during a check.
RUN_TIMEOUT = 10.0

#: The cluster the checks time on: round numbers, with a latency large enough that
#: a wrong number of steps shows (1 GB/s links, 10 µs per message; GB = 1e9 bytes).
CHECK_CLUSTER = ClusterSpec(name="check cluster", peak_flops=1e12, mem_bw=1e11, mem_bytes=1e10, link_bw=1e9, latency=1e-5)

SLOW_HINT = (
    f"a rank stayed in its own code for more than {RUN_TIMEOUT:g} s while the others waited for it: "
    "look for a loop that never ends, or a rank that skips a send the others expect"
)
DEADLOCK_HINT = (
    "a blocking comm.send waits until its receiver posts the matching recv; start the send with "
    "req = comm.isend(...), then comm.recv(...), then req.wait()"
)


# --------------------------------------------------------------------------- running rank code in a check


def run_ranks(rank_fn: Callable, world_size: int, *args: Any, cluster: ClusterSpec | None = None):
    """Run ``rank_fn(comm, *args)`` on ``world_size`` simulated ranks for a check; returns the RunResult.

    One intra-op torch thread (:func:`one_thread`; every rank is a thread), and the
    process's stdout restored afterwards (a safety net: the runner silences the learner's
    prints per thread, so concurrent ranks do not clash). A learner
    error inside a rank is re-raised as the runner's own verdict ("not attempted",
    "your function raised ..."); a hang or a mismatch becomes a :class:`CheckFailure`.

    While grading, the whole run happens in the learner's kernel, so ``rank_fn`` must return only
    what the learner's code produced (outputs, buffers filled in place) and the simulator's record
    (message logs, traces, clock): compute every expected value in the check itself, from the
    seeds it passes (they are salted the same way on both sides), never in ``rank_fn``.
    """
    if args and getattr(type(args[0]), "_minillm_remote", False):  # graded: the run happens in the learner's kernel
        return args[0].remote_ranks(rank_fn, world_size, args[1:], cluster or CHECK_CLUSTER)
    stdout = sys.stdout
    try:
        with one_thread():
            return run(rank_fn, world_size, *args, cluster=cluster or CHECK_CLUSTER, timeout=RUN_TIMEOUT)
    except RankError as e:
        if e.__cause__ is not None:  # the learner's exception, already translated by the runner
            raise e.__cause__ from None
        raise CheckFailure(f"rank {e.rank} raised {e.exc_type}: {e.message}") from None
    except CommTimeoutError as e:
        first = str(e).splitlines()[0].rstrip(".")
        hint = DEADLOCK_HINT if first.startswith("the run would hang") else SLOW_HINT
        raise CheckFailure(f"with world_size={world_size} the ranks never finished: {first}", hint=hint) from None
    except CollectiveMismatchError as e:
        raise CheckFailure(f"with world_size={world_size}: {str(e).splitlines()[0]}") from None
    finally:
        sys.stdout = stdout


class P2POnly:
    """The communicator a ring task hands the learner: point-to-point only, every message logged.

    ``sent`` and ``received`` list (peer, number of elements) in call order.
    Collectives raise AttributeError: the task is to build them from messages.
    """

    _BLOCKED = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "barrier",
                "all_gather_into_tensor", "reduce_scatter_tensor", "new_group")

    def __init__(self, comm) -> None:
        self._comm = comm
        self.rank, self.world_size = comm.rank, comm.world_size
        self.sent: list[tuple[int, int]] = []
        self.received: list[tuple[int, int]] = []

    def _minillm_plain(self):
        """The log as plain data, for the trip from the kernel to the grader (see minillm.course.protocol)."""
        return "p2p_log", {"rank": self.rank, "world_size": self.world_size,
                           "sent": list(self.sent), "received": list(self.received)}

    def isend(self, tensor, dst):
        self.sent.append((dst, _numel(tensor)))
        return self._comm.isend(tensor, dst)

    def send(self, tensor, dst):
        self.sent.append((dst, _numel(tensor)))
        return self._comm.send(tensor, dst)

    def irecv(self, tensor, src):
        self.received.append((src, _numel(tensor)))
        return self._comm.irecv(tensor, src)

    def recv(self, tensor, src):
        self.received.append((src, _numel(tensor)))
        return self._comm.recv(tensor, src)

    def __getattr__(self, name: str):
        if name in P2POnly._BLOCKED:
            raise AttributeError(
                f"comm.{name} is off limits in this task: build the collective from comm.isend / comm.recv"
            )
        return getattr(self._comm, name)


def _numel(t) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else -1


DIRECTION_HINT = (
    "rank r must send to its right neighbour (r + 1) % p and receive from its left neighbour (r - 1) % p; "
    "the chunk indices of the task assume that direction"
)


def direction_mistake(logs: dict[int, "P2POnly"], p: int) -> str | None:
    """Name a ring that runs the wrong way (from the message logs), or None.

    With p = 2 both neighbours are the same rank, so direction cannot be told apart.
    """
    if p < 3:
        return None
    for r, log in sorted(logs.items()):
        right, left = (r + 1) % p, (r - 1) % p
        dsts = {d for d, _ in log.sent}
        srcs = {s for s, _ in log.received}
        if dsts and srcs and dsts <= {left} and srcs <= {right}:
            return (f"your ring runs backwards: rank {r} sends to rank {left} (r - 1) and receives from rank {right} "
                    "(r + 1)")
        if dsts and srcs and dsts == srcs and len(dsts) == 1:
            peer = next(iter(dsts))
            return (f"rank {r} sends to rank {peer} and also receives from rank {peer}: one of the two goes the wrong "
                    "way round the ring")
    return None


def ring_run(rank_fn: Callable, p: int, fn: Callable, *args: Any):
    """:func:`run_ranks` for a ring task, with a direction hint when a failure comes from a reversed ring.

    Returns the RunResult; the rank code stores its :class:`P2POnly` log in ``logs[rank]``.
    """
    logs: dict[int, P2POnly] = {}
    try:
        return run_ranks(rank_fn, p, fn, *args, logs), logs
    except Exception as e:  # a hang, a mismatch or an error of the learner's code (already a verdict)
        mistake = direction_mistake(logs, p)
        if mistake is None:
            raise
        what = e.what if isinstance(e, CheckFailure) else f"with world_size={p} your ring failed ({str(e).split(': ', 1)[0]})"
        raise CheckFailure(f"{what}: {mistake}", hint=DIRECTION_HINT) from None


def with_direction(logs: dict, p: int, check: Callable[[], None]) -> None:
    """Run the value checks; if they fail and the ring ran backwards, say so instead."""
    try:
        check()
    except CheckFailure as e:
        mistake = direction_mistake(logs, p)
        if mistake is None:
            raise
        raise CheckFailure(f"{e.what}: {mistake}", hint=DIRECTION_HINT) from None
