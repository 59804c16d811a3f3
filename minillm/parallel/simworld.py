"""The simulated cluster's shared state: per-rank clocks, traces and ledgers, pending messages, failures.

Every simulated rank is a thread; they meet in one :class:`_World`, guarded by one
condition variable. A rank that must wait (for a collective's last participant or a
message's partner) calls :meth:`_World.wait_for`, which also notices a run that can
never finish (every live rank waits, and nothing changed since they began) and
times out a rank that waits too long, with a diagnostic of who arrived where.
:mod:`minillm.parallel.sim` builds the communicator on top of it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Any, Callable

from torch import Tensor

from .cluster import ClusterSpec
from .comm import CommTimeoutError, Event, MemoryLedger


class _Aborted(BaseException):
    """Raised in a rank's thread when another rank failed; a BaseException so `except Exception` can't swallow it."""


class _RankState:
    def __init__(self, rank: int, spec: ClusterSpec) -> None:
        self.clock = 0.0
        self.trace: list[Event] = []
        self.memory = MemoryLedger(clock=lambda: self.clock, capacity=spec.mem_bytes)
        self.status = "starting"
        self.last_op = "none"
        self.finished = False
        self.waiting_epoch: int | None = None

    def advance(self, kind: str, start: float, end: float, op: str, nbytes: int = 0, group: str = "") -> None:
        if end > start:
            self.trace.append(Event(kind, start, end, op, nbytes, group))
        self.clock = max(self.clock, end)


class _Slot:
    """One collective call of one group, filled as ranks arrive."""

    def __init__(self, seq: int, n: int) -> None:
        self.seq = seq
        self.n = n
        self.arrivals: dict[int, tuple[str, dict, Any, float]] = {}
        self.done = False
        self.outputs: Any = None
        self.error: BaseException | None = None
        self.start = self.end = 0.0
        self.taken = 0


class _P2P:
    """One posted send or receive; a send and a receive are matched in posting order."""

    def __init__(self, tensor: Tensor, post: float) -> None:
        self.tensor = tensor
        self.post = post
        self.matched = False
        self.error: BaseException | None = None
        self.data: Tensor | None = None
        self.start = self.end = 0.0


class _World:
    def __init__(self, world_size: int, spec: ClusterSpec, timeout: float) -> None:
        self.world_size = world_size
        self.spec = spec
        self.timeout = timeout
        self.cond = threading.Condition()
        self.states = [_RankState(r, spec) for r in range(world_size)]
        self.slots: dict[tuple[str, int], _Slot] = {}
        self.group_names: dict[str, str] = {"w": "world"}
        self.group_ranks: dict[str, tuple[int, ...]] = {"w": tuple(range(world_size))}
        self.sends: dict[tuple, deque] = defaultdict(deque)
        self.recvs: dict[tuple, deque] = defaultdict(deque)
        self.failure: BaseException | None = None
        self.failure_rank = -1
        self.failure_tb = ""
        self.epoch = 0

    # Every change that could let a waiter proceed bumps the epoch and wakes everyone.
    def bump(self) -> None:
        self.epoch += 1
        self.cond.notify_all()

    def fail(self, rank: int, exc: BaseException, tb: str = "") -> None:
        if self.failure is None:
            self.failure, self.failure_rank, self.failure_tb = exc, rank, tb
        self.bump()

    def everyone_stuck(self) -> bool:
        # A waiter whose epoch is current has seen the latest state and still cannot
        # proceed; when that holds for every unfinished rank, nothing can ever change.
        return all(s.finished or s.waiting_epoch == self.epoch for s in self.states)

    def diagnose(self) -> str:
        lines = []
        for (gid, seq), slot in sorted(self.slots.items()):
            if slot.done:
                continue
            members = self.group_ranks[gid]
            arrived = sorted(members[r] for r in slot.arrivals)
            missing = [g for g in members if g not in arrived]
            kind = next(iter(slot.arrivals.values()))[0]
            lines.append(
                f"  {kind} #{seq} on {self.group_names[gid]}: ranks {arrived} arrived, ranks {missing} never arrived"
            )
        for r, s in enumerate(self.states):
            what = "finished (its function returned)" if s.finished else s.status
            lines.append(f"  rank {r}: {what}; last completed comm op: {s.last_op}")
        return "\n".join(lines)

    def wait_for(self, rank: int, ready: Callable[[], bool], what: str) -> None:
        """Block (holding ``cond``) until ``ready()``; abort, detect a hang, or time out."""
        st = self.states[rank]
        st.status = what
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                if self.failure is not None:
                    raise _Aborted()
                if ready():
                    return
                st.waiting_epoch = self.epoch
                if self.everyone_stuck():
                    err = CommTimeoutError(
                        f"the run would hang: rank {rank} is {what}, and no rank can make progress.\n{self.diagnose()}"
                    )
                    self.fail(rank, err)
                    raise err
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    err = CommTimeoutError(
                        f"timed out after {self.timeout:g} s: rank {rank} is {what}.\n{self.diagnose()}\n"
                        f"A rank that never arrives is either slow (raise timeout=) or skipped the call."
                    )
                    self.fail(rank, err)
                    raise err
                self.cond.wait(remaining)
        finally:
            st.waiting_epoch = None
            st.status = "running its own code"


def _fresh(err: BaseException) -> BaseException:
    """A copy of a shared error, so each rank's thread raises its own object."""
    try:
        return type(err)(*err.args)
    except Exception:
        return err
