"""Checks of lesson 10, "Collective communication".

The learner's collectives are rank code, ``fn(comm, ...)``: every check runs them
through :func:`minillm.parallel.run` on the simulated cluster, for several world
sizes (1 to 8, odd ones included) and buffer lengths that do not divide evenly,
and compares each rank's result with the expected chunks or sums, which the check draws
and adds itself (in rank order, the bits of the simulator's native collective) in its own
process: while grading that is the grader, never the learner's kernel, so a kernel that
patches the simulator cannot forge them. Only the learner's outputs, the message logs and
the simulated clock come back from the rank code. Ring tasks
get a point-to-point-only communicator that logs every message, so the check can
say whether the learner really built a ring (neighbours only, one chunk per step,
p-1 steps), and it times the run against the α-β formula (Thakur, Rabenseifner &
Gropp 2005).

Running rank code in a check (the point-to-point-only communicator, verdicts for hangs,
mismatches and rings that run the wrong way) lives in
:mod:`minillm.course.checks.rankcode`. Task 3's check runs tasks 1 and 2's checks on
the learner's own functions first, so a bug there is never blamed on the all-reduce; while
grading, where the check cannot reach those functions, the grader does the same from their
verdicts (``depends_on``).
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Callable

import torch

from minillm.course.checks import CheckFailure, dependency_failure, describe, expect_close, register, run_check
# The rank-code helpers moved to .rankcode; importable from here as before.
from minillm.course.checks.rankcode import (  # noqa: F401 - re-exported
    CHECK_CLUSTER,
    DEADLOCK_HINT,
    RUN_TIMEOUT,
    SLOW_HINT,
    P2POnly,
    one_thread,
    ring_run,
    run_ranks,
    with_direction,
)
from minillm.parallel import (
    CollectiveMismatchError,
    CommTimeoutError,
    chunk_sizes,
    collective_time,
    one_root_all_reduce_time,
    tree_all_reduce_time,
)
from minillm.parallel.comm import reduce_tensors

# The native collectives a ring task must not call (the simulator's, torch.distributed's
# through DistComm, and the library's ring implementations).
_NATIVE = tuple(
    f"minillm.parallel.{cls}.{m}"
    for cls in ("sim.SimComm", "distcomm.DistComm")
    for m in ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
) + ("minillm.parallel.comm.Comm.all_gather_into_tensor", "minillm.parallel.comm.Comm.reduce_scatter_tensor")
_RINGS = tuple(f"minillm.parallel.collectives.{f}" for f in ("ring_all_gather", "ring_reduce_scatter", "ring_all_reduce", "tree_broadcast"))


def _rank_data(seed: int, rank: int, n: int, dtype=torch.float32) -> torch.Tensor:
    """Rank ``rank``'s data for case ``seed``: n values, O(1), different on every rank."""
    g = torch.Generator().manual_seed(1000 * seed + rank)
    return torch.randn(n, generator=g, dtype=dtype)


def _rank_sum(seed: int, n: int, p: int) -> torch.Tensor:
    """The sum over ``p`` ranks of their data for case ``seed``, added in rank order in float32.

    Computed in the check's own process (the grader while grading), never taken from the learner's
    kernel: :func:`~minillm.parallel.comm.reduce_tensors` is what the simulator's ``all_reduce`` adds
    with, so these are the bits the native collective gives (``tests/course/test_grader_ranks.py``).
    """
    return reduce_tensors([_rank_data(seed, q, n) for q in range(p)], "sum")


def _check_ring_pattern(logs: list[P2POnly], sizes: list[int], task: str) -> None:
    """Every rank sent p-1 messages of one chunk each to one neighbour, and received from the other."""
    p = len(logs)
    if p == 1:
        if logs[0].sent or logs[0].received:
            raise CheckFailure(f"with world_size=1 your {task} sent messages", hint="a single rank has nothing to exchange")
        return
    biggest = max(sizes)
    for r, log in enumerate(logs):
        dsts = {d for d, _ in log.sent}
        srcs = {s for s, _ in log.received}
        right, left = (r + 1) % p, (r - 1) % p
        if not (dsts <= {right} and srcs <= {left}) and not (dsts <= {left} and srcs <= {right}):
            raise CheckFailure(
                f"with world_size={p}, rank {r} sent to ranks {sorted(dsts)} and received from ranks {sorted(srcs)}",
                expected=f"send only to rank {right} (r+1) and receive only from rank {left} (r-1)",
                hint="in a ring every rank talks to its two neighbours only",
            )
        if len(log.sent) != p - 1 or len(log.received) != p - 1:
            raise CheckFailure(
                f"with world_size={p}, rank {r} sent {len(log.sent)} and received {len(log.received)} messages",
                expected=f"{p - 1} of each (p-1 steps, one chunk per step)",
                hint="loop for step in range(world_size - 1): one isend and one recv per step",
            )
        too_big = [n for _, n in log.sent + log.received if n > biggest]
        if too_big:
            raise CheckFailure(
                f"with world_size={p}, rank {r} sent a message of {too_big[0]} elements",
                expected=f"one chunk per message (at most {biggest} elements)",
                hint="send one chunk per step, never the whole buffer: that is what makes the ring bandwidth-optimal",
            )


def _check_time(measured: float, op: str, n: int, p: int, task: str) -> None:
    """The simulated time of the learner's collective against the α-β ring formula."""
    c = CHECK_CLUSTER
    nbytes = 4 * n  # float32
    want = collective_time(op, nbytes, p, c.link_bw, c.latency)
    # Logical clocks add exact α + n/B terms, so the only error is float rounding: 1e-9 relative.
    if not math.isclose(measured, want, rel_tol=1e-9, abs_tol=1e-15):
        steps = 2 * (p - 1) if op == "all_reduce" else p - 1
        raise CheckFailure(
            f"simulated time of your {task} with world_size={p} and {n} elements is {measured * 1e6:.4g} µs",
            expected=f"{want * 1e6:.4g} µs, the ring's {steps}·α + {steps}/{p}·n/B",
            hint="a ring moves one chunk per step between neighbours; post each step's isend before its recv, so that "
            "sending and receiving overlap (links are full duplex), and wait for both before the next step",
        )


# Cases: (world size, number of elements). Odd world sizes, lengths that do not
# divide (chunks differ by one), fewer elements than ranks (empty chunks), and 8 ranks.
RING_CASES = [(1, 6), (2, 8), (3, 10), (4, 12), (4, 10), (5, 23), (3, 2), (8, 40)]


# --------------------------------------------------------------------------- ring all-gather


def _all_gather_rank(comm, fn, seed: int, n: int, logs: dict):
    p, r = comm.world_size, comm.rank
    sizes = chunk_sizes(n, p)
    mine = _rank_data(seed, r, sizes[r])
    chunks = [mine.clone() if i == r else torch.full((s,), float("nan")) for i, s in enumerate(sizes)]
    log = logs[r] = P2POnly(comm)
    t0 = comm.clock
    out = fn(log, chunks)
    # Only what the learner's code produced goes back, with the simulator's record of the run (the
    # message log and the logical clock, which only the simulator can give: while grading they come
    # from the kernel, see the threat model in minillm/course/README.md); the check draws the
    # expected chunks itself.
    return {"out": out, "chunks": chunks, "log": log, "elapsed": comm.clock - t0}


@register("10.ring_all_gather", points=3, references=_NATIVE + _RINGS)
def check_ring_all_gather(fn) -> None:
    """ring_all_gather(comm, chunks): fill every rank's list of chunks in place from send/recv."""
    for seed, (p, n) in enumerate(RING_CASES):
        res, logs = ring_run(_all_gather_rank, p, fn, seed, n)
        sizes = chunk_sizes(n, p)
        want = [_rank_data(seed, i, s) for i, s in enumerate(sizes)]  # rank i's chunk, drawn here

        def values(res=res, p=p, n=n, want=want) -> None:
            for r, d in enumerate(res.results):
                out = d["out"]
                if out is not d["chunks"] and not (isinstance(out, (list, tuple)) and len(out) == p):
                    raise CheckFailure("ring_all_gather returned", got=describe(out), expected="the list chunks, filled in place")
                for i in range(p):
                    expect_close(
                        d["chunks"][i],
                        want[i],
                        atol=0,
                        rtol=0,  # copying moves bits: exact
                        what=f"with world_size={p} and {n} elements, rank {r}'s chunks[{i}]",
                        hint="fill the buffers in place (comm.recv(chunks[j], left)); after step s rank r holds chunk (r - s - 1) % p",
                    )

        with_direction(logs, p, values)
        _check_ring_pattern([d["log"] for d in res.results], sizes, "all-gather")
        if n % p == 0:
            _check_time(max(d["elapsed"] for d in res.results), "all_gather", n, p, "all-gather")


# --------------------------------------------------------------------------- ring reduce-scatter


def _reduce_scatter_rank(comm, fn, seed: int, n: int, logs: dict):
    p, r = comm.world_size, comm.rank
    sizes = chunk_sizes(n, p)
    data = _rank_data(seed, r, n)
    chunks = [c.clone() for c in data.split(sizes)]
    log = logs[r] = P2POnly(comm)
    t0 = comm.clock
    out = fn(log, chunks)
    return {"out": out, "mine": chunks[r], "log": log, "elapsed": comm.clock - t0}


def _partial_sums(seed: int, n: int, p: int, r: int) -> dict[str, torch.Tensor]:
    """What typical reduce-scatter mistakes leave in chunk r (used only to name the mistake)."""
    sizes = chunk_sizes(n, p)
    data = [_rank_data(seed, q, n).double().split(sizes) for q in range(p)]
    full = sum(d[r] for d in data)
    return {
        "average, not sum: the task is a sum (divide later if you need a mean)": full / p,
        "run p-1 steps: chunk r reaches rank r, complete, in the last step": data[r][r],
        "a chunk must keep its own rank's contribution: add the incoming chunk to yours (chunks[i] += incoming)": full
        - data[r][r],
    }


@register("10.ring_reduce_scatter", points=3, references=_NATIVE + _RINGS)
def check_ring_reduce_scatter(fn) -> None:
    """ring_reduce_scatter(comm, chunks) -> chunks[rank], now the sum over ranks of that chunk."""
    for seed, (p, n) in enumerate(RING_CASES):
        res, logs = ring_run(_reduce_scatter_rank, p, fn, seed, n)
        sizes = chunk_sizes(n, p)
        want = _rank_sum(seed, n, p).split(sizes)  # computed here, in rank order, as the simulator adds

        def values(res=res, p=p, n=n, seed=seed, want=want) -> None:
            for r, d in enumerate(res.results):
                what = f"with world_size={p} and {n} elements, rank {r}'s chunk {r}"
                # Sums of p <= 8 float32 values of size O(1) in another order than the
                # rank-order sum: a few ulps, so 1e-5 absolute and relative.
                tol = dict(atol=1e-5, rtol=1e-5)
                expect_close(
                    d["out"],
                    want[r],
                    **tol,
                    what=what + " (returned)",
                    hint="after p-1 steps of send (r - s - 1) % p / receive-and-add (r - s - 2) % p, chunk r is complete on rank r",
                    diagnose=_partial_sums(seed, n, p, r),
                )
                expect_close(
                    d["mine"],
                    want[r],
                    **tol,
                    what=what + " (chunks[rank], in place)",
                    hint="add into the chunks in place (chunks[i] += incoming) and return chunks[comm.rank]",
                )

        with_direction(logs, p, values)
        _check_ring_pattern([d["log"] for d in res.results], sizes, "reduce-scatter")
        if n % p == 0:
            _check_time(max(d["elapsed"] for d in res.results), "reduce_scatter", n, p, "reduce-scatter")


# --------------------------------------------------------------------------- ring all-reduce


def _all_reduce_rank(comm, fn, seed: int, shape: tuple[int, ...]):
    tensor = _rank_data(seed, comm.rank, math.prod(shape)).view(shape)
    t0 = comm.clock
    out = fn(P2POnly(comm), tensor)
    return {"out": out, "tensor": tensor, "elapsed": comm.clock - t0}


#: The tasks ring_all_reduce builds on: the learner's own functions, called by these names. The learner's
#: check() finds them through fn.__globals__ (below); while grading, the grader blames them from the
#: answer cell's source and the earlier verdicts (``depends_on``, see minillm.course.checks.blame_dependencies).
_DEPENDENCIES = {"ring_reduce_scatter": "10.ring_reduce_scatter", "ring_all_gather": "10.ring_all_gather"}


def _learner_dependencies(fn: Callable) -> dict[str, Callable]:
    """The learner's own earlier-task functions that ``fn`` calls by name (not minillm's)."""
    raw = getattr(fn, "fn", fn)  # the runner hands checks a wrapper around the learner's function
    names = getattr(getattr(raw, "__code__", None), "co_names", ())
    found = {}
    for name in _DEPENDENCIES:
        dep = getattr(raw, "__globals__", {}).get(name)
        if name in names and callable(dep) and not getattr(dep, "__module__", "").startswith("minillm"):
            found[name] = dep
    return found


def _check_dependencies(deps: dict[str, Callable]) -> None:
    """Run the earlier tasks' checks first: a bug there must not be blamed on the all-reduce."""
    for name, dep in deps.items():
        task = _DEPENDENCIES[name]
        res = run_check(task, dep)
        if not res.passed:
            raise dependency_failure("ring_all_reduce", name, task, res.status, res.message)


@contextlib.contextmanager
def _blaming(fn: Callable, deps: dict[str, Callable], blamed: list):
    """While the check runs, wrap the learner's earlier-task functions so an exception inside one names its task."""
    g = getattr(getattr(fn, "fn", fn), "__globals__", {})

    def wrap(name: str, dep: Callable) -> Callable:
        @functools.wraps(dep)
        def wrapper(*args, **kwargs):
            try:
                return dep(*args, **kwargs)
            except (CollectiveMismatchError, CommTimeoutError):
                raise
            except Exception as e:
                blamed.append((name, e))
                raise

        return wrapper

    try:
        for name, dep in deps.items():
            g[name] = wrap(name, dep)
        yield
    finally:
        for name, dep in deps.items():
            g[name] = dep


@register("10.ring_all_reduce", points=3, references=_NATIVE + _RINGS, depends_on=_DEPENDENCIES)
def check_ring_all_reduce(fn) -> None:
    """ring_all_reduce(comm, tensor) -> tensor, summed over ranks in place with a ring."""
    deps = _learner_dependencies(fn)
    _check_dependencies(deps)
    blamed: list = []
    with _blaming(fn, deps, blamed):
        _check_all_reduce_cases(fn, blamed)


def _check_all_reduce_cases(fn, blamed: list) -> None:
    cases = [(1, (5,)), (2, (8,)), (3, (4, 3)), (4, (16,)), (4, (2, 5)), (5, (23,)), (3, (2,)), (8, (4, 8))]
    for seed, (p, shape) in enumerate(cases):
        try:
            res = run_ranks(_all_reduce_rank, p, fn, seed, shape)
        except Exception:
            if not blamed:
                raise
            name, err = blamed[0]
            raise CheckFailure(
                f"with world_size={p}, your {name} (task {_DEPENDENCIES[name]}) raised {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''} when your ring_all_reduce called it",
                hint=f"{name} passes its own check, so look at what ring_all_reduce hands it: a list of "
                "comm.world_size chunks, views of tensor.view(-1) (tensor_split(comm.world_size))",
            ) from None
        n = math.prod(shape)
        want = _rank_sum(seed, n, p).view(shape)  # computed here, in rank order, as the simulator adds
        first = None
        for r, d in enumerate(res.results):
            what = f"with world_size={p} and a tensor of shape {shape}, rank {r}'s tensor"
            if not isinstance(d["out"], torch.Tensor):
                raise CheckFailure("ring_all_reduce returned", got=describe(d["out"]), expected="the tensor, reduced in place")
            # Same tolerance as the reduce-scatter: float32 sums in another order.
            expect_close(d["tensor"], want, atol=1e-5, rtol=1e-5, what=what,
                         hint="reduce in place: cut tensor.view(-1) into views with tensor_split, reduce-scatter them, all-gather them",
                         diagnose={"a sum, not an average": want / p} if p > 1 else None)
            expect_close(d["out"], want, atol=1e-5, rtol=1e-5, what=what + " (returned)", hint="return the tensor")
            if first is None:
                first = d["tensor"]
            elif not torch.equal(first, d["tensor"]):
                raise CheckFailure(
                    f"with world_size={p} the ranks end with different bits",
                    hint="each chunk is summed once, by its owner, and then copied: every rank must end bit-identical",
                )
        if n % p == 0:
            _check_time(max(d["elapsed"] for d in res.results), "all_reduce", n, p, "all-reduce")


# --------------------------------------------------------------------------- stretch: a tree all-reduce


def _tree_rank(comm, fn, seed: int, n: int):
    tensor = _rank_data(seed, comm.rank, n)
    log = P2POnly(comm)
    t0 = comm.clock
    out = fn(log, tensor)
    return {"out": out, "tensor": tensor, "elapsed": comm.clock - t0, "sent": len(log.sent)}


@register("10.tree_all_reduce", points=2, references=_NATIVE + _RINGS[:3] + ("minillm.parallel.collectives.tree_all_reduce",))
def check_tree_all_reduce(fn) -> None:
    """tree_all_reduce(comm, tensor) -> tensor, summed in place in 2⌈log2 p⌉ rounds of whole messages."""
    cases = [(1, 5), (2, 8), (3, 6), (4, 16), (5, 7), (8, 32), (16, 4), (13, 9)]
    for seed, (p, n) in enumerate(cases):
        res = run_ranks(_tree_rank, p, fn, seed, n)
        want = _rank_sum(seed, n, p)  # computed here, in rank order, as the simulator adds
        first = None
        for r, d in enumerate(res.results):
            if not isinstance(d["out"], torch.Tensor):
                raise CheckFailure("tree_all_reduce returned", got=describe(d["out"]), expected="the tensor, summed in place")
            # Sums of p <= 16 float32 values O(1) in tree order against rank order: a few ulps.
            expect_close(d["tensor"], want, atol=1e-5, rtol=1e-5, what=f"with world_size={p}, rank {r}'s tensor",
                         hint="reduce to rank 0 first (each round, half of the ranks that still hold a partial sum send it "
                         "to a partner and drop out), then send the total back out the same tree",
                         diagnose={"a sum, not an average": want / p} if p > 1 else None)
            if first is None:
                first = d["tensor"]
            elif not torch.equal(first, d["tensor"]):
                raise CheckFailure(f"with world_size={p} the ranks end with different bits",
                                   hint="sum once, at the root, then only copy: broadcast the root's total")
        measured = max(d["elapsed"] for d in res.results)
        c = CHECK_CLUSTER
        want = tree_all_reduce_time(4 * n, p, c.link_bw, c.latency)
        # Logical clocks add exact α + n/B terms: only float rounding differs, 1e-9 relative.
        if not math.isclose(measured, want, rel_tol=1e-9, abs_tol=1e-15):
            rounds = 2 * math.ceil(math.log2(p)) if p > 1 else 0
            through_root = one_root_all_reduce_time(4 * n, p, c.link_bw, c.latency)
            hint = ("that is the time of the all-reduce through one root (p-1 messages in turn, each way): pair the ranks "
                    "up so that the number holding a partial sum halves every round"
                    if math.isclose(measured, through_root, rel_tol=1e-9) else
                    "every round moves the whole tensor once between partners that both take part; a rank that has sent "
                    "its partial sum waits for the total")
            raise CheckFailure(f"with world_size={p}, your tree all-reduce of {4 * n} bytes took {measured * 1e6:.4g} µs",
                               expected=f"{want * 1e6:.4g} µs, {rounds} rounds of α + n/B", hint=hint)


# --------------------------------------------------------------------------- the α-β cost


def _time_variants(op, nbytes, p, bw, lat) -> dict[str, float]:
    """Times that typical mistakes give (used only to name the mistake)."""
    k = 2 if op == "all_reduce" else 1
    return {
        "every step moves one chunk, n/p bytes: the bandwidth term is (p-1)/p · n/B per pass": k * (p - 1) * (lat + nbytes / bw),
        "count α once per step: (p-1) steps per pass, two passes for an all-reduce": k * (p - 1) / p * nbytes / bw + lat,
        "an all-reduce is two passes (reduce-scatter, then all-gather): twice the steps and the bytes": (p - 1) * lat
        + (p - 1) / p * nbytes / bw
        if k == 2
        else -1.0,
        "an all-gather or reduce-scatter is a single pass of p-1 steps": 2 * ((p - 1) * lat + (p - 1) / p * nbytes / bw)
        if k == 1
        else -1.0,
    }


@register("10.ring_time", points=2, references=("minillm.parallel.costs.collective_time",))
def check_ring_time(fn) -> None:
    """ring_time(op, nbytes, world_size, bandwidth, latency) -> seconds under the α-β model."""
    gen = torch.Generator().manual_seed(10)
    cases = [("all_reduce", 1e9, 8, 300e9, 5e-6), ("all_gather", 1e9, 8, 300e9, 5e-6), ("reduce_scatter", 4096, 2, 1.25e9, 50e-6),
             ("all_reduce", 1e6, 1, 1e9, 1e-5), ("all_reduce", 0, 16, 1e9, 1e-5)]
    for _ in range(6):
        op = ("all_reduce", "all_gather", "reduce_scatter")[int(torch.randint(0, 3, (1,), generator=gen))]
        p = int(torch.randint(2, 130, (1,), generator=gen))
        nbytes = float(2 ** int(torch.randint(8, 34, (1,), generator=gen)))
        bw = float(torch.empty(1).uniform_(1e9, 1e12, generator=gen))
        lat = float(torch.empty(1).uniform_(1e-6, 1e-4, generator=gen))
        cases.append((op, nbytes, p, bw, lat))
    for op, nbytes, p, bw, lat in cases:
        want = collective_time(op, nbytes, p, bw, lat)
        got = fn(op, nbytes, p, bw, lat)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise CheckFailure("ring_time returned", got=describe(got), expected="a float (seconds)")
        # A closed form in float64: only rounding differs, so 1e-9 relative.
        if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-18):
            hint = next((h for h, t in _time_variants(op, nbytes, p, bw, lat).items() if math.isclose(got, t, rel_tol=1e-9)),
                        "all-reduce 2(p-1)·α + 2(p-1)/p·n/B; all-gather and reduce-scatter (p-1)·α + (p-1)/p·n/B; 0 for one rank")
            raise CheckFailure(f"ring_time({op!r}, nbytes={nbytes:g}, world_size={p}, bandwidth={bw:.4g}, latency={lat:.3g}) is",
                               got=f"{got:.6g} s", expected=f"{want:.6g} s", hint=hint)
