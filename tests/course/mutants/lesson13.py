"""Wrong answers to lesson 13's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

# --------------------------------------------------------------------------- GPipe


def gpipe_backward_reversed(n_stages, n_micro, stage):
    """Runs the backwards last-in first-out."""
    return [("F", i) for i in range(n_micro)] + [("B", i) for i in reversed(range(n_micro))]


def gpipe_interleaved(n_stages, n_micro, stage):
    """Runs each micro-batch's backward right after its forward."""
    return [a for i in range(n_micro) for a in (("F", i), ("B", i))]


def gpipe_skips_first_backward(n_stages, n_micro, stage):
    """Forgets one micro-batch on the way back."""
    return [("F", i) for i in range(n_micro)] + [("B", i) for i in range(1, n_micro)]


# --------------------------------------------------------------------------- 1F1B


def _one_f_one_b(p, m, s, warm):
    acts = [("F", i) for i in range(warm)]
    for i in range(m - warm):
        acts += [("F", warm + i), ("B", i)]
    return acts + [("B", i) for i in range(m - warm, m)]


def ofob_warmup_too_long(n_stages, n_micro, stage):
    """Warms up with p - stage forwards (one too many)."""
    return _one_f_one_b(n_stages, n_micro, stage, min(n_stages - stage, n_micro))


def ofob_warmup_not_capped(n_stages, n_micro, stage):
    """Forgets that there may be fewer micro-batches than warm-up slots."""
    warm = n_stages - stage - 1
    acts = [("F", i) for i in range(warm)]
    for i in range(max(n_micro - warm, 0)):
        acts += [("F", warm + i), ("B", i)]
    return acts + [("B", i) for i in range(max(n_micro - warm, 0), n_micro)]


def ofob_no_drain(n_stages, n_micro, stage):
    """Stops after the steady phase."""
    warm = min(n_stages - stage - 1, n_micro)
    acts = [("F", i) for i in range(warm)]
    for i in range(n_micro - warm):
        acts += [("F", warm + i), ("B", i)]
    return acts


def ofob_backward_first(n_stages, n_micro, stage):
    """Puts the backward before the forward in the steady phase."""
    warm = min(n_stages - stage - 1, n_micro)
    acts = [("F", i) for i in range(warm)]
    for i in range(n_micro - warm):
        acts += [("B", i), ("F", warm + i)]
    return acts + [("B", i) for i in range(n_micro - warm, n_micro)]


# --------------------------------------------------------------------------- bubble


def bubble_relative_to_ideal(p, m, v=1):
    """Returns the bubble over the ideal time, not over the total."""
    return (p - 1) / (v * m)


def bubble_ignores_v(p, m, v=1):
    """Forgets that interleaving divides the bubble."""
    return (p - 1) / (m + p - 1)


def bubble_over_m_plus_p(p, m, v=1):
    """Counts one slot too many."""
    return (p - 1) / (v * m + p)


# --------------------------------------------------------------------------- peak in flight


def peak_counts_all_forwards(schedule):
    """Counts every forward, not the live ones."""
    return sum(op == "F" for op, _ in schedule)


def peak_final_count(schedule):
    """Returns the count at the end (always 0), not the maximum."""
    live = 0
    for op, _ in schedule:
        live += 1 if op == "F" else -1
    return live


def peak_warmup_only(schedule):
    """Counts the forwards before the first backward (right for GPipe and 1F1B, not in general)."""
    n = 0
    for op, _ in schedule:
        if op == "B":
            break
        n += 1
    return n


# --------------------------------------------------------------------------- makespan


def makespan_ideal(p, m, t_forward, t_backward):
    """Forgets the bubble."""
    return m * (t_forward + t_backward)


def makespan_one_slot_too_many(p, m, t_forward, t_backward):
    """Counts p extra slots instead of p - 1."""
    return (m + p) * (t_forward + t_backward)


def makespan_forward_bubble_only(p, m, t_forward, t_backward):
    """Counts the fill but not the drain."""
    return (m + p - 1) * t_forward + m * t_backward


MUTANTS = {
    "13.gpipe_schedule": [gpipe_backward_reversed, gpipe_interleaved, gpipe_skips_first_backward],
    "13.one_f_one_b": [ofob_warmup_too_long, ofob_warmup_not_capped, ofob_no_drain, ofob_backward_first],
    "13.bubble_fraction": [bubble_relative_to_ideal, bubble_ignores_v, bubble_over_m_plus_p],
    "13.peak_in_flight": [peak_counts_all_forwards, peak_final_count, peak_warmup_only],
    "13.pipeline_makespan": [makespan_ideal, makespan_one_slot_too_many, makespan_forward_bubble_only],
}


# --------------------------------------------------------------------------- found by the learner's review (lessons 12-13)


def ofob_stages_reversed(n_stages, n_micro, stage):
    """Numbers the stages from the head: warms up with min(stage, m) forwards."""
    return _one_f_one_b(n_stages, n_micro, stage, min(stage, n_micro))


def ofob_warmup_p_minus_1(n_stages, n_micro, stage):
    """Gives every stage stage 0's warm-up, min(p - 1, m)."""
    return _one_f_one_b(n_stages, n_micro, stage, min(n_stages - 1, n_micro))


def ofob_newest_backward(n_stages, n_micro, stage):
    """Runs the newest waiting micro-batch backward in the steady phase (a stack, not a queue)."""
    warm = min(n_stages - stage - 1, n_micro)
    acts, waiting = [("F", i) for i in range(warm)], list(range(warm))
    for i in range(warm, n_micro):
        acts.append(("F", i))
        waiting.append(i)
        acts.append(("B", waiting.pop()))
    return acts + [("B", i) for i in waiting]


def ofob_drain_reversed(n_stages, n_micro, stage):
    """Drains the last backwards newest first."""
    warm = min(n_stages - stage - 1, n_micro)
    acts = [("F", i) for i in range(warm)]
    for i in range(n_micro - warm):
        acts += [("F", warm + i), ("B", i)]
    return acts + [("B", i) for i in reversed(range(n_micro - warm, n_micro))]


def peak_before_counting(schedule):
    """Updates the maximum before counting each action: misses a peak reached by the last action."""
    live = peak = 0
    for op, _ in schedule:
        peak = max(peak, live)
        live += 1 if op == "F" else -1
    return peak


def peak_as_float(schedule):
    """Returns the right count as a float."""
    live, peak = 0, 0.0
    for op, _ in schedule:
        live += 1 if op == "F" else -1
        peak = max(peak, float(live))
    return peak


def makespan_no_overlap(p, m, t_forward, t_backward):
    """Lets every stage work in turn, as if nothing overlapped."""
    return p * m * (t_forward + t_backward)


MUTANTS["13.one_f_one_b"] += [ofob_stages_reversed, ofob_warmup_p_minus_1, ofob_newest_backward, ofob_drain_reversed]
MUTANTS["13.peak_in_flight"] += [peak_before_counting, peak_as_float]
MUTANTS["13.pipeline_makespan"] += [makespan_no_overlap]

#: What the verdict of some mutants must say: the mistake named, not a generic hint.
HINTS = {
    "gpipe_backward_reversed": "the backwards in the same order as the forwards",
    "gpipe_interleaved": "all forwards first",
    "ofob_warmup_not_capped": "with only m=",
    "ofob_backward_first": "the steady phase runs the forward of the next micro-batch first",
    "ofob_stages_reversed": "stage 0 (next to the embeddings) warms up the most",
    "ofob_warmup_p_minus_1": "then the steady phase's forward; yours runs",
    "ofob_newest_backward": "the backward of the oldest one still waiting",
    "ofob_drain_reversed": "the drain runs the backwards still left oldest first",
    "bubble_relative_to_ideal": "relative to the ideal time",
    "bubble_ignores_v": "divides the bubble time by v",
    "peak_counts_all_forwards": "*at each moment*",
    "peak_final_count": "keep the largest count",
    "peak_warmup_only": "the peak can come after the first backward",
    "peak_before_counting": "off by one",
    "peak_as_float": "as an int",
    "makespan_ideal": "the ideal time with no bubble",
    "makespan_no_overlap": "the stages work at the same time",
}
