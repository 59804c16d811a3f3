"""Ring collectives built from send/recv, the tree broadcast, and the α-β cost model (on the simulator)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.parallel import (
    ClusterSpec,
    bus_bandwidth,
    busbw_sweep,
    bytes_sent_per_rank,
    chunk_sizes,
    collective_time,
    ring_all_gather,
    ring_all_reduce,
    ring_reduce_scatter,
    run,
    tree_all_reduce,
    tree_all_reduce_time,
    tree_broadcast,
)

pytestmark = pytest.mark.lesson10

SPEC = ClusterSpec(name="test", peak_flops=1e12, mem_bw=1e11, mem_bytes=1e9, link_bw=1e9, latency=1e-5)


def data(rank: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(1000 * seed + rank).standard_normal(n).astype(np.float32)


def _rings(comm, n, seed, op, src):
    x = torch.from_numpy(data(comm.rank, n, seed))
    sizes = chunk_sizes(n, comm.world_size)
    return {
        "ar": ring_all_reduce(comm, x.clone(), op),
        "native": comm.all_reduce(x.clone(), op),
        "rs": ring_reduce_scatter(comm, x, op),
        "ag": ring_all_gather(comm, x[sum(sizes[: comm.rank]) : sum(sizes[: comm.rank + 1])], sizes),
        "ag_equal": ring_all_gather(comm, x[:2]),
        "bcast": tree_broadcast(comm, x.clone(), src),
    }


@settings(deadline=None, max_examples=25)
@given(world_size=st.integers(1, 6), n=st.integers(0, 23), seed=st.integers(0, 99),
       op=st.sampled_from(["sum", "avg", "max", "min"]), src=st.integers(0, 5))
def test_ring_collectives_match_numpy_and_native(world_size, n, seed, op, src):
    n = max(n, 2)  # ag_equal gathers the first two elements; n < world_size still leaves empty chunks
    src = src % world_size
    res = run(_rings, world_size, n, seed, op, src).results
    xs = np.stack([data(r, n, seed) for r in range(world_size)])
    want = {"sum": xs.sum(0), "avg": xs.mean(0), "max": xs.max(0), "min": xs.min(0)}[op]
    sizes = chunk_sizes(n, world_size)
    bounds = np.cumsum([0] + sizes)
    for r, out in enumerate(res):
        # 1e-5: float32 sums of <= 6 standard normals, added in ring order versus numpy's order
        np.testing.assert_allclose(out["ar"].numpy(), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["ar"].numpy(), out["native"].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["rs"].numpy(), want[bounds[r] : bounds[r + 1]], rtol=1e-5, atol=1e-5)
        # gathers and broadcasts only copy: exact
        ag_want = np.concatenate([xs[q, bounds[q] : bounds[q + 1]] for q in range(world_size)])
        np.testing.assert_array_equal(torch.cat(out["ag"]).numpy(), ag_want)
        for q in range(world_size):
            np.testing.assert_array_equal(out["ag_equal"][q].numpy(), xs[q, :2])
        np.testing.assert_array_equal(out["bcast"].numpy(), xs[src])


def test_ring_all_gather_assembles_the_chunks_in_rank_order():
    def fn(comm):
        return ring_all_gather(comm, torch.full((comm.rank + 1,), float(comm.rank)), [1, 2, 3])

    out = run(fn, 3).results[1]
    assert [t.tolist() for t in out] == [[0.0], [1.0, 1.0], [2.0, 2.0, 2.0]]


def test_ring_all_reduce_keeps_shape_and_works_in_place():
    def fn(comm):
        t = torch.ones(3, 5) * (comm.rank + 1)
        out = ring_all_reduce(comm, t)
        return out is t, t

    same, t = run(fn, 4).results[2]
    assert same and t.shape == (3, 5) and torch.equal(t, torch.full((3, 5), 10.0))  # 1+2+3+4, exact in float32


# --------------------------------------------------------------------------- simulated time equals the formulas


def _timed(comm, op, numel):
    comm.barrier()  # every rank leaves the barrier at the same logical time
    start = comm.clock
    x = torch.ones(numel)
    if op == "all_reduce":
        ring_all_reduce(comm, x)
    elif op == "reduce_scatter":
        ring_reduce_scatter(comm, x)
    elif op == "all_gather":
        ring_all_gather(comm, x[: numel // comm.world_size])
    elif op == "broadcast":
        tree_broadcast(comm, x, 0)
    else:
        comm.all_reduce(x)
    return start


@pytest.mark.parametrize("world_size", [2, 3, 4, 8])
@pytest.mark.parametrize("op", ["all_reduce", "reduce_scatter", "all_gather", "broadcast", "native"])
def test_simulated_ring_time_equals_collective_time(op, world_size):
    numel = 1200 * world_size  # divisible: every ring step moves the same chunk size
    res = run(_timed, world_size, op, numel, cluster=SPEC)
    measured = max(res.clocks) - res.results[0]
    nbytes = 4 * numel  # the whole buffer (NCCL-tests): for all-gather, the gathered output
    formula = collective_time("all_reduce" if op == "native" else op, nbytes, world_size, SPEC.link_bw, SPEC.latency)
    # 1e-9 relative: the simulator adds the same α + n/B terms step by step, so only
    # float rounding over at most 2(p-1) additions separates the two.
    assert measured == pytest.approx(formula, rel=1e-9)


def test_collective_time_worked_examples():
    # 1 GB (1e9 bytes) all-reduce over 8 ranks at 300 GB/s: 2·7/8·1e9/300e9 = 5.8333 ms
    assert collective_time("all_reduce", 1e9, 8, 300e9) == pytest.approx(2 * 7 / 8 * 1e9 / 300e9, rel=1e-12)
    # latency terms: 2(p-1)α for all-reduce, (p-1)α for all-gather, ⌈log2 p⌉(α + n/B) for the tree
    assert collective_time("all_reduce", 0, 4, 1e9, 1e-5) == pytest.approx(6e-5)
    assert collective_time("all_gather", 0, 4, 1e9, 1e-5) == pytest.approx(3e-5)
    assert collective_time("broadcast", 1e6, 5, 1e9, 1e-5) == pytest.approx(3 * (1e-5 + 1e-3))
    assert collective_time("send", 1e6, 2, 1e9, 1e-5) == pytest.approx(1e-5 + 1e-3)
    assert collective_time("all_reduce", 1e9, 1, 1e9, 1.0) == 0.0  # one rank: nothing to do
    # all-reduce costs exactly a reduce-scatter plus an all-gather
    for p in (2, 3, 8):
        ar = collective_time("all_reduce", 1e8, p, 1e10, 2e-6)
        assert ar == pytest.approx(collective_time("reduce_scatter", 1e8, p, 1e10, 2e-6) + collective_time("all_gather", 1e8, p, 1e10, 2e-6))
    assert bytes_sent_per_rank("all_reduce", 800, 4) == 1200  # 2·3/4·800


@settings(deadline=None, max_examples=25)
@given(op=st.sampled_from(["all_reduce", "reduce_scatter", "all_gather"]), p=st.integers(2, 1024),
       nbytes=st.floats(1.0, 1e12), bw=st.floats(1e6, 1e13))
def test_busbw_of_the_ideal_ring_is_the_link_bandwidth(op, p, nbytes, bw):
    # NCCL-tests' factors are chosen so that busbw of a bandwidth-optimal ring equals B
    t = collective_time(op, nbytes, p, bw)
    assert bus_bandwidth(op, nbytes, p, t) == pytest.approx(bw, rel=1e-9)  # float rounding only


def test_bus_bandwidth_factors_follow_nccl_tests():
    # nccl-tests doc/PERFORMANCE.md: all_reduce 2(n-1)/n, all_gather and reduce_scatter (n-1)/n, broadcast 1
    assert bus_bandwidth("all_reduce", 8e9, 8, 1.0) == pytest.approx(8e9 * 2 * 7 / 8)
    assert bus_bandwidth("all_gather", 8e9, 8, 1.0) == pytest.approx(8e9 * 7 / 8)
    assert bus_bandwidth("reduce_scatter", 8e9, 8, 1.0) == pytest.approx(8e9 * 7 / 8)
    assert bus_bandwidth("broadcast", 8e9, 8, 1.0) == pytest.approx(8e9)


def test_busbw_sweep_rises_towards_the_link_bandwidth():
    rows = busbw_sweep("all_reduce", [2**k for k in range(10, 34, 4)], 8, 300e9, 5e-6)
    bws = [r["busbw"] for r in rows]
    assert all(a < b for a, b in zip(bws, bws[1:]))  # latency-bound small messages, bandwidth-bound large
    assert bws[-1] < 300e9 and bws[-1] > 0.9 * 300e9


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: collective_time("allreduce", 1, 2, 1.0), "op='allreduce' is unknown"),
        (lambda: collective_time("all_reduce", -1, 2, 1.0), "nbytes=-1"),
        (lambda: collective_time("all_reduce", 1, 0, 1.0), "world_size=0"),
        (lambda: collective_time("all_reduce", 1, 2, 0.0), "bandwidth=0 must be > 0"),
        (lambda: collective_time("all_reduce", 1, 2, 1.0, latency=-1), "latency=-1"),
        (lambda: bus_bandwidth("all_reduce", 1, 2, 0.0), "seconds=0 must be > 0"),
        (lambda: chunk_sizes(5, 0), "world_size=0"),
    ],
)
def test_cost_model_rejects_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_chunk_sizes_match_torch_tensor_split():
    for n in range(0, 13):
        for p in range(1, 6):
            assert chunk_sizes(n, p) == [len(c) for c in torch.arange(n).tensor_split(p)]
    assert math.fsum(chunk_sizes(10, 4)) == 10 and chunk_sizes(10, 4) == [3, 3, 2, 2]


@pytest.mark.parametrize("p", [1, 2, 3, 5, 8, 13])
def test_tree_all_reduce_sums_and_takes_two_log_p_rounds(p):
    # Values: small integers, so every summation order gives the exact sum (float32 holds them).
    spec = ClusterSpec(link_bw=1e9, latency=1e-5)

    def rank(comm):
        x = torch.arange(12, dtype=torch.float32) * (comm.rank + 1)
        tree_all_reduce(comm, x)
        return x

    res = run(rank, p, cluster=spec)
    want = torch.arange(12, dtype=torch.float32) * (p * (p + 1) / 2)
    assert all(torch.equal(x, want) for x in res.results)
    # Logical clocks add exact α + n/B terms: only float rounding differs (rel 1e-12).
    assert res.makespan == pytest.approx(tree_all_reduce_time(48, p, 1e9, 1e-5), rel=1e-12)
    assert tree_all_reduce_time(48, p, 1e9, 1e-5) == pytest.approx(2 * math.ceil(math.log2(p)) * (1e-5 + 48 / 1e9) if p > 1 else 0)
