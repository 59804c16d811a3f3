"""Pipeline schedules: the order in which each stage runs its forwards and backwards, and what it costs.

A pipeline of p stages trains on m micro-batches per step. Each stage's schedule is a list
of actions ("F", i) and ("B", i) for micro-batch i; under interleaving each rank also holds
v model chunks and the actions are ("F", i, chunk).

- **GPipe** (Huang et al. 2019, arXiv:1811.06965), "all forward, all backward": every
  stage runs m forwards, then m backwards, so it keeps m micro-batches of activations.
- **1F1B** (PipeDream-Flush; Narayanan et al. 2021, arXiv:2104.04473, Sec. 2.2): stage s
  runs p − s − 1 warm-up forwards, then alternates one forward and one backward, then
  drains; the same makespan, but at most min(p − s, m) micro-batches in flight.
- **Interleaved 1F1B** (same paper, Sec. 2.2.2): each rank holds v chunks of layers (rank
  r holds virtual stages r, r + p, …); the bubble shrinks by v at the price of v times
  more point-to-point messages.

The bubble, the idle share of a step: (p − 1) / (v·m + p − 1) when a backward costs the
same multiple of a forward on every stage. :func:`schedule_timeline` runs the schedules
on a little discrete-event simulation, so the makespan, the bubble and the micro-batches
in flight are measured, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

from minillm.validate import check_choice, check_int, check_number

__all__ = ["SCHEDULES", "pipeline_schedule", "bubble_fraction", "schedule_timeline", "Timeline", "StageEvent"]

SCHEDULES = ("gpipe", "1f1b", "interleaved-1f1b")


def _check_shape(kind: str, n_stages: int, n_micro: int, n_virtual: int) -> tuple[int, int, int]:
    check_choice("kind", kind, SCHEDULES)
    p, m, v = check_int("n_stages", n_stages), check_int("n_micro", n_micro), check_int("n_virtual", n_virtual)
    if kind != "interleaved-1f1b" and v != 1:
        raise ValueError(f"n_virtual={v} needs kind='interleaved-1f1b'; {kind} runs one chunk per stage")
    if kind == "interleaved-1f1b" and m % p:
        raise ValueError(
            f"interleaved 1F1B runs micro-batches in groups of n_stages: n_micro={m} must be a multiple of n_stages={p}"
        )
    return p, m, v


def pipeline_schedule(kind: str, n_stages: int, n_micro: int, stage: int, n_virtual: int = 1) -> list[tuple]:
    """The ordered actions of ``stage``: ("F", i) / ("B", i), or ("F", i, chunk) when interleaved."""
    p, m, v = _check_shape(kind, n_stages, n_micro, n_virtual)
    s = check_int("stage", stage, minimum=0)
    if s >= p:
        raise ValueError(f"stage={s} must be < n_stages={p}")
    if kind == "gpipe":
        return [("F", i) for i in range(m)] + [("B", i) for i in range(m)]
    if kind == "1f1b":
        warm = min(p - s - 1, m)
        acts = [("F", i) for i in range(warm)]
        for i in range(m - warm):
            acts += [("F", warm + i), ("B", i)]
        return acts + [("B", i) for i in range(m - warm, m)]
    # interleaved: the k-th forward of this rank is micro (k // (p v)) p + k % p of chunk (k // p) % v;
    # backwards walk the chunks in reverse (Megatron-LM's schedules.py).
    total = m * v

    def fwd(k):
        return ("F", (k // (p * v)) * p + k % p, (k // p) % v)

    def bwd(k):
        return ("B", (k // (p * v)) * p + k % p, v - 1 - (k // p) % v)

    warm = min((p - s - 1) * 2 + (v - 1) * p, total)
    acts = [fwd(k) for k in range(warm)]
    for k in range(total - warm):
        acts += [fwd(warm + k), bwd(k)]
    return acts + [bwd(k) for k in range(total - warm, total)]


def bubble_fraction(p: int, m: int, n_virtual: int = 1) -> float:
    """Idle share of a pipeline step: (p − 1) / (v·m + p − 1)."""
    p, m, v = check_int("p", p), check_int("m", m), check_int("n_virtual", n_virtual)
    return (p - 1) / (v * m + p - 1)


@dataclass(frozen=True)
class StageEvent:
    """One action on one rank's clock (seconds, or units of ``t_forward``)."""

    rank: int
    op: str  # "F" or "B"
    micro: int
    chunk: int
    start: float
    end: float


@dataclass
class Timeline:
    """A simulated pipeline step: ``events[r]`` per rank, and what they measure."""

    kind: str
    p: int
    m: int
    n_virtual: int
    events: list[list[StageEvent]]
    makespan: float
    bubble: float  # idle share: 1 − busy / (p · makespan)
    in_flight: list[int]  # per rank, the most micro-batch chunks forwarded but not yet backwarded


def schedule_timeline(
    kind: str, p: int, m: int, t_forward: float = 1.0, t_backward: float = 2.0, n_virtual: int = 1
) -> Timeline:
    """Run every stage's :func:`pipeline_schedule` on a discrete-event clock.

    A stage runs its actions in order, one at a time. A forward of virtual stage j needs
    the forward of j − 1 for the same micro-batch; a backward of j needs the backward of
    j + 1 (the last virtual stage needs its own forward). Each chunk costs ``t_forward / v``
    forward and ``t_backward / v`` backward; messages are free. Raises if the schedules
    deadlock (they do not).
    """
    p, m, v = _check_shape(kind, p, m, n_virtual)
    tf = check_number("t_forward", t_forward, strict=True) / v
    tb = check_number("t_backward", t_backward, strict=True) / v
    n_virtual_stages = p * v
    plans = [[a if len(a) == 3 else (a[0], a[1], 0) for a in pipeline_schedule(kind, p, m, r, v)] for r in range(p)]
    done: dict[tuple[str, int, int], float] = {}  # (op, micro, virtual stage) -> end time
    clock, pos = [0.0] * p, [0] * p
    events: list[list[StageEvent]] = [[] for _ in range(p)]
    remaining = sum(len(pl) for pl in plans)
    while remaining:
        progressed = False
        for r in range(p):
            while pos[r] < len(plans[r]):
                op, i, c = plans[r][pos[r]]
                j = c * p + r  # virtual stage
                if op == "F":
                    dep = ("F", i, j - 1) if j > 0 else None
                else:
                    dep = ("B", i, j + 1) if j < n_virtual_stages - 1 else ("F", i, j)
                if dep is not None and dep not in done:
                    break
                start = max(clock[r], done.get(dep, 0.0) if dep else 0.0)
                end = start + (tf if op == "F" else tb)
                done[(op, i, j)] = clock[r] = end
                events[r].append(StageEvent(r, op, i, c, start, end))
                pos[r] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise RuntimeError(f"the {kind} schedule deadlocked at positions {pos}")
    makespan = max(clock)
    busy = sum(e.end - e.start for evs in events for e in evs)
    in_flight = []
    for evs in events:
        live = peak = 0
        for e in evs:
            live += 1 if e.op == "F" else -1
            peak = max(peak, live)
        in_flight.append(peak)
    return Timeline(kind, p, m, v, events, makespan, 1.0 - busy / (p * makespan), in_flight)
