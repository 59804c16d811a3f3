"""Checks of lesson 14, "3D parallelism and planning".

Grid coordinates are compared exactly with :class:`~minillm.parallel.grid.ProcessGrid`'s layout
(:func:`~minillm.parallel.grid.grid_groups`); the bubble and the activation bytes with closed forms
(Narayanan et al. 2021, Sec. 2.2; Korthikanti et al. 2022, Table 2, as
:data:`~minillm.parallel.planner.KORTHIKANTI_16BIT`) at a relative 1e-9 (float64 sums of a few
terms); a layout "fits" when :func:`~minillm.parallel.planner.predict` says so.

Hints: a wrong answer is compared with the usual mistakes (``_coords_wrongs``, ``_bubble_wrongs``,
``_activation_wrongs``) on *every* case, not only the failing one, because one case can match
several mistakes by coincidence; the hint names the mistake that explains them all, or says how
to compute the answer when none does. ``tests/course/mutants/lesson14.py`` lists each mistake with
the hint it must get.
"""

from __future__ import annotations

import math

from minillm.course.checks import CheckFailure, case_rng, describe, register

RTOL = 1e-9
_PLANNER = ("minillm.parallel.planner.plan", "minillm.parallel.planner_plots.planner_view")


def _number(got, what: str) -> float:
    if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
        raise CheckFailure(f"{what} is", got=describe(got), expected="a finite number")
    return float(got)


def _first_hint(fn, cases, wrongs, default: str, same) -> str:
    """The hint of the first mistake in ``wrongs`` that reproduces ``fn`` on *every* case, else ``default``.

    One failing case can match several mistakes by coincidence (a micro-batch of 2 and two
    micro-batches in flight give the same bytes); a mistake that explains all of the learner's
    answers is the one they made. ``wrongs`` is a list of (hint, function of a case's arguments);
    ``same(got, wrong)`` compares one answer with one wrong value.
    """
    got = []
    for args in cases:
        try:
            got.append(fn(*args))
        except Exception:  # only diagnosing here: the failing case has been found already
            got.append(None)
    for hint, wrong in wrongs:
        if all(g is not None and same(g, wrong(*args)) for g, args in zip(got, cases)):
            return hint
    return default


def _coords_wrongs(rank: int, tp: int, dp: int, pp: int) -> list:
    """(hint, wrong coordinates of ``rank``) of the usual mistakes, most specific first."""
    want = (rank // (tp * dp), (rank // tp) % dp, rank % tp)
    order = "return (pp_rank, dp_rank, tp_rank), in that order"
    return [
        ("TP varies fastest: neighbouring ranks share a node, and TP needs the fastest link",
         (rank // (tp * dp), rank % dp, (rank // dp) % tp)),
        ("TP varies fastest and PP slowest: tp_rank = rank % tp, pp_rank = rank // (tp · dp)",
         (rank % pp, (rank // pp) % dp, rank // (pp * dp))),
        ("dp_rank wraps around after dp replicas: dp_rank = (rank // tp) % dp",
         (rank // (tp * dp), rank // tp, rank % tp)),
        ("pp_rank counts whole groups of tp · dp ranks: pp_rank = rank // (tp · dp)",
         ((rank // tp) % pp, (rank // tp) % dp, rank % tp)),
        (order, tuple(reversed(want))),
        *[(order, perm) for perm in [(want[0], want[2], want[1]), (want[1], want[0], want[2]),
                                     (want[1], want[2], want[0]), (want[2], want[0], want[1])]],
    ]


@register("14.grid_coords", points=2, references=("minillm.parallel.grid.grid_groups",))
def check_grid_coords(fn) -> None:
    """grid_coords(rank, tp, dp, pp) -> (pp_rank, dp_rank, tp_rank), TP fastest, then DP, then PP."""
    shapes = [(1, 1, 1), (2, 1, 1), (1, 2, 1), (1, 1, 2), (2, 2, 2), (8, 4, 2), (4, 3, 2), (2, 3, 4)]
    rng = case_rng(26)
    drawn = [(rng.choice([1, 2, 4, 8]), rng.randint(1, 64), rng.randint(1, 16)) for _ in range(3)]
    cases = []  # every rank of the fixed grids, 16 drawn ranks of each drawn one
    for tp, dp, pp in shapes + drawn:
        n = tp * dp * pp
        cases += [(rank, tp, dp, pp) for rank in (range(n) if (tp, dp, pp) in shapes else rng.sample(range(n), min(n, 16)))]
    for rank, tp, dp, pp in cases:
        got = fn(rank, tp, dp, pp)
        want = (rank // (tp * dp), (rank // tp) % dp, rank % tp)
        if isinstance(got, list):
            got = tuple(got)
        if got == want:
            continue
        wrongs = [(h, lambda *c, i=i: _coords_wrongs(*c)[i][1])  # the mistakes that give this answer here
                  for i, (h, wrong) in enumerate(_coords_wrongs(rank, tp, dp, pp)) if wrong == got]
        hint = _first_hint(fn, cases, wrongs, "rank = (pp_rank · dp + dp_rank) · tp + tp_rank: peel off tp_rank with % tp first",
                           lambda g, w: isinstance(g, (tuple, list)) and tuple(g) == w)
        raise CheckFailure(f"grid_coords({rank}, tp={tp}, dp={dp}, pp={pp}) is", got=repr(got), expected=repr(want),
                           hint=hint)


def _bubble_cases(seed: int) -> list[tuple[int, int, int, int, int]]:
    """(n_devices, tp, pp, global_batch, micro_batch) with a whole number of micro-batches."""
    rng = case_rng(seed)
    cases = [(8, 2, 2, 16, 1), (64, 8, 4, 256, 2), (1536, 8, 8, 2304, 1), (16, 1, 16, 64, 4), (8, 8, 1, 8, 1)]
    while len(cases) < 12:
        tp, pp, dp = rng.choice([1, 2, 4, 8]), rng.choice([1, 2, 4, 8, 16]), rng.choice([1, 2, 3, 4, 8])
        b = rng.choice([1, 2, 4])
        cases.append((tp * pp * dp, tp, pp, dp * b * rng.randint(1, 12), b))
    return cases


def _bubble_wrongs() -> list:
    """(hint, wrong bubble of a case) of the usual mistakes, most specific first."""
    def m(n, tp, pp, B, b, dp=None):
        return B // ((n // (tp * pp) if dp is None else dp) * b)

    return [
        ("each of the dp replicas runs its own pipeline on global_batch / dp sequences: m = global_batch / (dp · micro_batch)",
         lambda n, tp, pp, B, b: (pp - 1) / (B // b + pp - 1)),
        ("m counts micro-batches of micro_batch sequences: m = global_batch / (dp · micro_batch)",
         lambda n, tp, pp, B, b: (pp - 1) / (m(n, tp, pp, B, 1) + pp - 1)),
        ("(p-1)/m is the bubble relative to the ideal time; the task asks for its share of the whole step",
         lambda n, tp, pp, B, b: (pp - 1) / m(n, tp, pp, B, b)),
        ("the data-parallel degree is n_devices / (tp · pp): the TP ranks share their micro-batches",
         lambda n, tp, pp, B, b: (pp - 1) / (m(n, tp, pp, B, b, dp=n // pp) + pp - 1)),
        ("a 1F1B step lasts m + pp - 1 slots, pp - 1 of them idle: (pp - 1) / (m + pp - 1)",
         lambda n, tp, pp, B, b: (pp - 1) / (m(n, tp, pp, B, b) + pp)),
        ("return a share between 0 and 1, not a percentage",
         lambda n, tp, pp, B, b: 100 * (pp - 1) / (m(n, tp, pp, B, b) + pp - 1)),
    ]


@register("14.predict_bubble", points=2,
          references=("minillm.parallel.pp_schedule.bubble_fraction", "minillm.parallel.planner.predict"))
def check_predict_bubble(fn) -> None:
    """predict_bubble(n_devices, tp, pp, global_batch, micro_batch) -> the bubble's share of a 1F1B step."""
    cases = _bubble_cases(14)
    for n, tp, pp, B, b in cases:
        what = f"predict_bubble(n_devices={n}, tp={tp}, pp={pp}, global_batch={B}, micro_batch={b})"
        got = _number(fn(n, tp, pp, B, b), what)
        dp = n // (tp * pp)
        m = B // (dp * b)
        want = (pp - 1) / (m + pp - 1)
        if math.isclose(got, want, rel_tol=RTOL, abs_tol=1e-15):
            continue
        hint = _first_hint(fn, cases, _bubble_wrongs(),
                           "first find dp, then the number of micro-batches m each pipeline runs, then lesson 13's bubble",
                           _close)
        raise CheckFailure(f"{what} is", got=f"{got:.6g}", expected=f"{want:.6g}", hint=hint)


def _close(got, want: float) -> bool:
    """``got`` is a number within RTOL of ``want`` (used to recognise a mistake)."""
    return isinstance(got, (int, float)) and not isinstance(got, bool) and math.isclose(got, want, rel_tol=RTOL, abs_tol=1e-15)


def _korthikanti(s: int, b: int, h: int, a: int, t: int) -> float:
    from minillm.parallel.planner import KORTHIKANTI_16BIT

    return KORTHIKANTI_16BIT.per_layer(s, b, h, a, t, "none")


@register("14.first_stage_activations", points=3, references=("minillm.parallel.planner.predict",))
def check_first_stage_activations(fn) -> None:
    """first_stage_activations(seq_len, micro_batch, hidden, n_heads, n_layers, tp, pp, n_micro) -> bytes."""
    rng = case_rng(41)
    cases = [(2048, 1, 12288, 96, 96, 8, 8, 16), (2048, 2, 4096, 32, 32, 4, 4, 2), (1024, 1, 1024, 16, 24, 1, 1, 8),
             (4096, 1, 8192, 64, 80, 8, 16, 64), (512, 4, 2048, 16, 30, 2, 4, 3)]
    for _ in range(6):
        a = rng.choice([8, 16, 32])
        pp = rng.choice([1, 2, 4, 8])
        cases.append((rng.choice([512, 1024, 2048]), rng.choice([1, 2, 4]), a * rng.choice([64, 128]), a,
                      pp * rng.randint(1, 6) + rng.randint(0, pp - 1), rng.choice([1, 2, 4, 8]), pp, rng.randint(1, 20)))
    for s, b, h, a, L, t, p, m in cases:
        what = (f"first_stage_activations(seq_len={s}, micro_batch={b}, hidden={h}, n_heads={a}, n_layers={L}, "
                f"tp={t}, pp={p}, n_micro={m})")
        got = _number(fn(s, b, h, a, L, t, p, m), what)
        want = min(p, m) * math.ceil(L / p) * _korthikanti(s, b, h, a, t)
        if math.isclose(got, want, rel_tol=RTOL):
            continue
        hint = _first_hint(fn, cases, _activation_wrongs(),
                           "per layer sbh(10 + 24/t + 5as/(ht)) bytes; count the layers on stage 0 and the micro-batches it holds",
                           _close)
        raise CheckFailure(f"{what} is", got=f"{got:.6g}", expected=f"{want:.6g}", hint=hint)


def _activation_wrongs() -> list:
    """(hint, wrong bytes of a case) of the usual mistakes, most specific first."""
    per = _korthikanti
    return [
        ("under 1F1B stage 0 holds min(pp, n_micro) micro-batches, not all of them (that is GPipe)",
         lambda s, b, h, a, L, t, p, m: m * math.ceil(L / p) * per(s, b, h, a, t)),
        ("stage 0 runs pp - 1 warm-up forwards before its first backward: several micro-batches are alive",
         lambda s, b, h, a, L, t, p, m: math.ceil(L / p) * per(s, b, h, a, t)),
        ("pp - 1 warm-up forwards plus the one whose backward comes first: min(pp, n_micro) micro-batches",
         lambda s, b, h, a, L, t, p, m: max(1, min(p - 1, m)) * math.ceil(L / p) * per(s, b, h, a, t)),
        ("a step has only n_micro micro-batches: stage 0 holds min(pp, n_micro) of them",
         lambda s, b, h, a, L, t, p, m: p * math.ceil(L / p) * per(s, b, h, a, t)),
        ("a stage holds only its own layers: ceil(n_layers / pp) of them",
         lambda s, b, h, a, L, t, p, m: min(p, m) * L * per(s, b, h, a, t)),
        ("layers come whole: the busiest stage has ceil(n_layers / pp) of them",
         lambda s, b, h, a, L, t, p, m: min(p, m) * (L / p) * per(s, b, h, a, t)),
        ("the busiest stage has ceil(n_layers / pp) layers: rounding down gives the lightest one",
         lambda s, b, h, a, L, t, p, m: min(p, m) * (L // p) * per(s, b, h, a, t)),
        ("the attention scores are split by heads too: 5as/(h·t)",
         lambda s, b, h, a, L, t, p, m: min(p, m) * math.ceil(L / p) * s * b * h * (10 + 24 / t + 5 * a * s / h)),
        ("a micro-batch has micro_batch sequences: the b in sbh",
         lambda s, b, h, a, L, t, p, m: min(p, m) * math.ceil(L / p) * per(s, 1, h, a, t)),
        ("only the 24 and the 5as/h terms split over t; the 10 (layer-norm and block inputs, dropout masks) stays whole",
         lambda s, b, h, a, L, t, p, m: min(p, m) * math.ceil(L / p) * per(s, b, h, a, 1) / t),
    ]


#: The jobs "find a configuration that fits" is checked on: (model, n_devices, device, global_batch, seq_len).
FIT_JOBS = [("llama2-70b", 64, "h100", 256, 4096), ("gpt3-175b", 256, "a100", 1536, 2048),
            ("llama2-13b", 16, "a100", 128, 4096), ("llama3-70b", 128, "h200", 512, 8192)]
_LAYOUT_KEYS = ("dp", "tp", "pp", "micro_batch", "zero_stage", "recompute")


def _drawn_jobs(seed: int, n: int) -> list[tuple[str, int, str, int, int]]:
    """``n`` random jobs like FIT_JOBS (model, devices, device, batch, context) for which the planner finds a fitting layout."""
    from minillm.parallel.planner import plan

    rng = case_rng(seed)
    jobs = []
    while len(jobs) < n:
        job = (rng.choice(["llama2-13b", "llama2-70b", "llama3-70b", "gpt3-175b"]), rng.choice([16, 32, 64, 128, 256]),
               rng.choice(["a100", "h100", "h200"]), rng.choice([128, 256, 512, 1024, 1536]), rng.choice([2048, 4096, 8192]))
        if plan(job[0], job[1], job[2], global_batch=job[3], seq_len=job[4]):
            jobs.append(job)
    return jobs


@register("14.fitting_layout", points=3, references=_PLANNER)
def check_fitting_layout(fn) -> None:
    """fitting_layout(model, n_devices, device, global_batch, seq_len) -> a dict of a layout that fits."""
    from minillm.parallel.planner import predict

    for model, n, device, B, s in FIT_JOBS + _drawn_jobs(129, 2):
        what = f"fitting_layout({model!r}, {n}, {device!r}, global_batch={B}, seq_len={s})"
        got = fn(model, n, device, B, s)
        if not isinstance(got, dict) or set(got) != set(_LAYOUT_KEYS):
            raise CheckFailure(f"{what} returned", got=describe(got), expected=f"a dict with the keys {list(_LAYOUT_KEYS)}")
        dp, tp, pp = got["dp"], got["tp"], got["pp"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (dp, tp, pp, got["micro_batch"])):
            raise CheckFailure(f"{what} returned", got=repr(got), expected="positive ints for dp, tp, pp and micro_batch")
        if dp * tp * pp != n:
            raise CheckFailure(f"{what}: dp·tp·pp =", got=dp * tp * pp, expected=n, hint="every device has one place in the grid")
        if tp > 8:
            raise CheckFailure(f"{what}: tp =", got=tp, expected="at most 8",
                               hint="a node has 8 GPUs: TP beyond it runs its all-reduces over the slow inter-node link")
        try:
            p = predict(model, device, dp=dp, tp=tp, pp=pp, micro_batch=got["micro_batch"], global_batch=B, seq_len=s,
                        zero_stage=got["zero_stage"], recompute=got["recompute"])
        except ValueError as e:
            raise CheckFailure(f"{what} returned {got}, which the planner refuses:", got=str(e)) from None
        if not p.fits:
            terms = ", ".join(f"{k} {v / 1e9:.0f}" for k, v in p.memory_terms.items())
            biggest = max(p.memory_terms, key=p.memory_terms.get)
            fix = {"activations": "recompute activations, or a smaller micro-batch",
                   "optimizer": "ZeRO-1 shards the optimizer states over dp"}.get(biggest, "split the model further with tp·pp")
            raise CheckFailure(f"{what}: {got} needs", got=f"{p.memory_bytes / 1e9:.0f} GB per device ({terms})",
                               expected=f"at most {p.capacity_bytes / 1e9:.0f} GB", hint=f"the largest term is {biggest}: {fix}")
