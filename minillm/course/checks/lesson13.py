"""Checks of lesson 13, "Pipeline parallelism".

The schedules are compared action by action with :mod:`minillm.parallel.pp_schedule` over
every stage of pipelines of 1-6 stages and 1-10 micro-batches; the counting tasks are
compared with what :func:`~minillm.parallel.pp_schedule.schedule_timeline` measures.
Schedules are lists of exact tuples, so those comparisons are exact; the times and
fractions are float64 sums of a few terms, compared at a relative 1e-9.
"""

from __future__ import annotations

import math

from minillm.course.checks import CheckFailure, case_rng, describe, register

RTOL = 1e-9  # float64 sums of a few terms: ~1e-15 relative; every formula slip is >= 1e-2
_SCHED = ("minillm.parallel.pp_schedule.pipeline_schedule", "minillm.parallel.pipeline_parallel.pipeline_schedule")
_TIMELINE = ("minillm.parallel.pp_schedule.schedule_timeline", "minillm.parallel.pipeline_parallel.schedule_timeline")


def _cases(seed: int) -> list[tuple[int, int]]:
    """(p, m): small by hand, m < p, m = p, and random ones."""
    rng = case_rng(seed)
    cases = [(1, 1), (1, 3), (2, 1), (2, 4), (3, 2), (4, 4), (4, 8), (5, 3), (6, 10)]
    cases += [(rng.randint(2, 6), rng.randint(1, 10)) for _ in range(4)]
    return cases


def _as_actions(got, what: str) -> list[tuple[str, int]]:
    if not isinstance(got, (list, tuple)):
        raise CheckFailure(f"{what} returned", got=describe(got), expected='a list of ("F", i) and ("B", i) tuples')
    out = []
    for a in got:
        if not (isinstance(a, (tuple, list)) and len(a) == 2 and a[0] in ("F", "B") and isinstance(a[1], int)):
            raise CheckFailure(
                f"{what} contains", got=repr(a), expected='("F", i) or ("B", i) with i an int',
                hint="each action is a pair: the letter, then the micro-batch index",
            )
        out.append((a[0], int(a[1])))
    return out


def _reference(kind: str, p: int, m: int, s: int) -> list[tuple[str, int]]:
    from minillm.parallel.pp_schedule import pipeline_schedule

    return pipeline_schedule(kind, p, m, s)


def _first_difference(got, want) -> str:
    for k, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return f"action {k} is {g}, expected {w}"
    return f"{len(got)} actions, expected {len(want)}"


@register("13.gpipe_schedule", points=2, references=_SCHED)
def check_gpipe_schedule(fn) -> None:
    """gpipe_schedule(n_stages, n_micro, stage) -> [("F", 0), …, ("F", m-1), ("B", 0), …, ("B", m-1)]."""
    for p, m in _cases(13):
        for s in range(p):
            what = f"gpipe_schedule({p}, {m}, {s})"
            got = _as_actions(fn(p, m, s), what)
            want = _reference("gpipe", p, m, s)
            if got == want:
                continue
            if got == [("F", i) for i in range(m)] + [("B", i) for i in reversed(range(m))]:
                hint = "the task asks for the backwards in the same order as the forwards, 0, 1, ..., m-1"
            elif len(got) != 2 * m:
                hint = f"every stage runs each of the {m} micro-batches forward once and backward once: {2 * m} actions"
            else:
                hint = "all forwards first (0 to m-1), then all backwards; the stage number does not change the order"
            raise CheckFailure(f"{what}: {_first_difference(got, want)}", hint=hint)


def _forwards(n: int) -> str:
    return f"{n} forward" + ("" if n == 1 else "s")


def _stages_reversed(fn, p: int, m: int) -> bool:
    """Whether the learner's stage q runs, for every q, what stage p - 1 - q should."""
    try:
        return all(_as_actions(fn(p, m, q), "") == _reference("1f1b", p, m, p - 1 - q) for q in range(p))
    except Exception:  # a probe only: the verdict stays the one on the first failing case
        return False


def _one_f_one_b_hint(fn, got: list, want: list, p: int, m: int, s: int) -> str:
    """Name the slip in a wrong 1F1B schedule of stage ``s`` (``want`` is the right one)."""
    warm = min(p - s - 1, m)
    lead = next((k for k, a in enumerate(got) if a[0] == "B"), len(got))  # forwards before the first backward
    lead_want = next(k for k, a in enumerate(want) if a[0] == "B")  # warm-up + 1, or m when m <= warm-up
    if any(i >= m for _, i in got) or lead > m:
        return f"with only m={m} micro-batches the warm-up is min(p - stage - 1, m) = {_forwards(warm)}"
    if p > 1 and got == _reference("1f1b", p, m, p - 1 - s) and _stages_reversed(fn, p, m):
        return (f"your stage {s} runs stage {p - 1 - s}'s schedule: stage 0 (next to the embeddings) warms up the most, p - 1 forwards, "
                "and the last stage (the head) not at all")
    if warm < m and got[:warm] == want[:warm] and len(got) > warm and got[warm][0] == "B":
        return (f"after the warm-up of {_forwards(warm)}, the steady phase runs the forward of the next micro-batch first, "
                "then the backward of the oldest")
    if lead != lead_want:
        if lead_want > warm:  # a steady phase exists
            return (f"stage {s} of {p} runs {_forwards(lead_want)} before its first backward: a warm-up of "
                    f"min(p - stage - 1, m) = {warm}, then the steady phase's forward; yours runs {lead}")
        return f"stage {s} of {p} runs all {_forwards(m)} before its first backward (its warm-up, min(p - stage - 1, m), covers them); yours runs {lead}"
    if sorted(got) != sorted(want):
        return "every micro-batch runs once forward and once backward; check the drain after the steady phase"
    k = next(k for k, (g, w) in enumerate(zip(got, want)) if g != w)
    last_f = max(k for k, a in enumerate(want) if a[0] == "F")
    if k > last_f:
        return "the drain runs the backwards still left oldest first, in the order their gradients arrive"
    return "in the steady phase, run the forward of the next micro-batch, then the backward of the oldest one still waiting"


@register("13.one_f_one_b", points=3, references=_SCHED)
def check_one_f_one_b(fn) -> None:
    """one_f_one_b(n_stages, n_micro, stage) -> 1F1B actions of that stage."""
    for p, m in _cases(31):
        for s in range(p):
            what = f"one_f_one_b({p}, {m}, {s})"
            got = _as_actions(fn(p, m, s), what)
            want = _reference("1f1b", p, m, s)
            if got == want:
                continue
            hint = _one_f_one_b_hint(fn, got, want, p, m, s)
            raise CheckFailure(f"{what}: {_first_difference(got, want)}", hint=hint)


@register("13.bubble_fraction", points=2, references=("minillm.parallel.pp_schedule.bubble_fraction",) + _TIMELINE)
def check_bubble_fraction(fn) -> None:
    """bubble_fraction(p, m, v=1) -> the idle share of the pipeline's total time."""
    cases = [(p, m, 1) for p, m in _cases(7)] + [(4, 8, 2), (8, 32, 4), (2, 2, 3), (1, 5, 2)]
    for p, m, v in cases:
        got = fn(p, m, v)
        what = f"bubble_fraction({p}, {m}, {v})"
        if not isinstance(got, (int, float)) or isinstance(got, bool) or not math.isfinite(got):
            raise CheckFailure(f"{what} is", got=describe(got), expected="a number between 0 and 1")
        want = (p - 1) / (v * m + p - 1)
        if math.isclose(got, want, rel_tol=RTOL, abs_tol=1e-15):
            continue
        if p > 1 and math.isclose(got, (p - 1) / (v * m), rel_tol=RTOL):
            hint = "(p-1)/(v·m) is the bubble relative to the ideal time; the task asks for its share of the total"
        elif v > 1 and math.isclose(got, (p - 1) / (m + p - 1), rel_tol=RTOL):
            hint = "interleaving with v chunks per stage divides the bubble time by v"
        else:
            hint = "the bubble is (p-1) forward+backward slots (divided by v) out of m·v + p - 1 chunk-slots in all"
        raise CheckFailure(f"{what} is", got=f"{got:.6g}", expected=f"{want:.6g}", hint=hint)


@register("13.peak_in_flight", points=3, references=_TIMELINE)
def check_peak_in_flight(fn) -> None:
    """peak_in_flight(schedule) -> most micro-batches forwarded but not yet backwarded, at any point."""
    from minillm.parallel.pp_schedule import pipeline_schedule

    cases = [
        [("F", 0), ("B", 0)],
        [],
        [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("B", 2)],
        [("F", 0), ("B", 0), ("F", 1), ("F", 2), ("B", 1), ("B", 2)],  # the peak comes after a backward
        [("F", 0), ("F", 1), ("F", 2)],  # forwards only (an inference pipeline): the peak is the last action
    ]
    for p, m in _cases(5):
        for s in range(p):
            cases.append(pipeline_schedule("gpipe" if (p + s) % 2 else "1f1b", p, m, s))
    for sched in cases:
        got = fn(list(sched))
        want = live = 0
        for op, _ in sched:
            live += 1 if op == "F" else -1
            want = max(want, live)
        if isinstance(got, bool) or not isinstance(got, int) or got != want:
            n_f = sum(op == "F" for op, _ in sched)
            first_b = next((k for k, (op, _) in enumerate(sched) if op == "B"), len(sched))
            if isinstance(got, float) and got == want:
                hint = "return the count as an int (a number of micro-batches), not a float"
            elif got == n_f and n_f != want:
                hint = "count the micro-batches still waiting for their backward *at each moment*, not all forwards"
            elif got == 0 and want > 0:
                hint = "keep the largest count seen along the way; at the end every micro-batch is back to 0"
            elif got == first_b and first_b != want:
                hint = "the peak can come after the first backward: keep counting through the whole schedule"
            elif got == want - 1:
                hint = "off by one: compare with the largest value *after* counting each action, so a forward at the peak counts"
            else:
                hint = "walk the schedule: +1 at each forward, -1 at each backward, and keep the largest value"
            raise CheckFailure(f"peak_in_flight({sched if len(sched) <= 6 else f'a schedule of {len(sched)} actions'}) is", got=repr(got), expected=want, hint=hint)


@register("13.pipeline_makespan", points=3, references=_TIMELINE)
def check_pipeline_makespan(fn) -> None:
    """pipeline_makespan(p, m, t_forward, t_backward) -> time of one GPipe or 1F1B step."""
    rng = case_rng(3)
    cases = [(p, m, 1.0, 2.0) for p, m in _cases(11)]
    cases += [(rng.randint(1, 8), rng.randint(1, 12), rng.uniform(0.1, 3), rng.uniform(0.1, 6)) for _ in range(6)]
    for p, m, tf, tb in cases:
        got = fn(p, m, tf, tb)
        what = f"pipeline_makespan(p={p}, m={m}, t_forward={tf:.3g}, t_backward={tb:.3g})"
        if not isinstance(got, (int, float)) or isinstance(got, bool) or not math.isfinite(got):
            raise CheckFailure(f"{what} is", got=describe(got), expected="a number of seconds")
        want = (m + p - 1) * (tf + tb)
        if math.isclose(got, want, rel_tol=RTOL):
            continue
        if p > 1 and math.isclose(got, p * m * (tf + tb), rel_tol=RTOL):
            hint = "that is every stage working in turn: the stages work at the same time on different micro-batches"
        elif math.isclose(got, m * (tf + tb), rel_tol=RTOL):
            hint = "that is the ideal time with no bubble: the first micro-batch needs p-1 stages before the last starts"
        elif math.isclose(got, (m + p) * (tf + tb), rel_tol=RTOL) or math.isclose(got, (m + p - 1) * tf + m * tb, rel_tol=RTOL):
            hint = "draw the timeline of stage 0: count the forward and backward slots it waits for"
        else:
            hint = "draw the timeline: the last stage starts after p-1 forwards, and stage 0 ends p-1 backwards after it"
        raise CheckFailure(f"{what} is", got=f"{got:.6g}", expected=f"{want:.6g}", hint=hint)
