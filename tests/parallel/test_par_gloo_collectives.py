"""The same rank code on real processes (torch.distributed, gloo): collectives, sub-groups, errors.

Each ``run(..., backend="gloo")`` forks fresh processes (about 0.2-0.5 s), so every
check that can share a launch does.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from minillm.parallel import (
    CollectiveMismatchError,
    CommTimeoutError,
    RankError,
    chunk_sizes,
    ring_all_gather,
    ring_all_reduce,
    ring_reduce_scatter,
    run,
    tree_broadcast,
)

pytestmark = [pytest.mark.lesson10, pytest.mark.gloo]

N = 11  # elements: uneven chunks over 2 and 3 ranks


def data(rank: int, n: int = N) -> np.ndarray:
    return np.random.default_rng(rank).standard_normal(n).astype(np.float32)


def kitchen_sink(comm):
    r, p = comm.rank, comm.world_size
    x = torch.from_numpy(data(r))
    sizes = chunk_sizes(N, p)
    lo = sum(sizes[:r])
    out = {
        "ring_ar": ring_all_reduce(comm, x.clone()),
        "native_ar": comm.all_reduce(x.clone()),
        "avg": comm.all_reduce(x.clone(), op="avg"),
        "max": comm.all_reduce(x.clone(), op="max"),
        "ring_rs": ring_reduce_scatter(comm, x),
        "ring_ag": torch.cat(ring_all_gather(comm, x[lo : lo + sizes[r]], sizes)),
        "native_ag": torch.cat(comm.all_gather([torch.empty(N) for _ in range(p)], x)),
        "native_rs": comm.reduce_scatter_tensor(torch.empty(2), torch.arange(2.0 * p) * (r + 1)),
        "tree": tree_broadcast(comm, x.clone(), src=p - 1),
        "native_bcast": comm.broadcast(x.clone(), src=p - 1),
    }
    sub = comm.new_group([0, p - 1])  # a sub-group of the first and last rank
    if sub is not None:
        t = torch.tensor([float(r)])
        sub.all_reduce(t)
        out["sub"] = (sub.rank, t.item())
    comm.barrier()
    return out


@pytest.fixture(scope="module", params=[2, 3])
def both_backends(request):
    p = request.param
    return p, run(kitchen_sink, p, backend="gloo", timeout=30).results, run(kitchen_sink, p).results


def test_collectives_on_gloo_match_numpy_and_the_simulator(both_backends):
    p, gloo, sim = both_backends
    xs = np.stack([data(r) for r in range(p)])
    total = xs.sum(0)
    sizes = chunk_sizes(N, p)
    bounds = np.cumsum([0] + sizes)
    for r in range(p):
        g = gloo[r]
        # 1e-5: float32 sums of <= 3 standard normals in different orders
        for key in ("ring_ar", "native_ar"):
            np.testing.assert_allclose(g[key].numpy(), total, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g["avg"].numpy(), total / p, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(g["max"].numpy(), xs.max(0))  # max picks a value: exact
        np.testing.assert_allclose(g["ring_rs"].numpy(), total[bounds[r] : bounds[r + 1]], rtol=1e-5, atol=1e-5)
        ag_want = np.concatenate([xs[q, bounds[q] : bounds[q + 1]] for q in range(p)])
        np.testing.assert_array_equal(g["ring_ag"].numpy(), ag_want)  # copies: exact
        np.testing.assert_array_equal(g["native_ag"].numpy(), xs.reshape(-1))
        rs_want = np.arange(2.0 * p).reshape(p, 2)[r] * sum(q + 1 for q in range(p))
        np.testing.assert_array_equal(g["native_rs"].numpy(), rs_want)  # small integers: exact
        np.testing.assert_array_equal(g["tree"].numpy(), xs[-1])
        np.testing.assert_array_equal(g["native_bcast"].numpy(), xs[-1])
        # the simulator computes the same thing (1e-5: summation order again)
        for key in g:
            if isinstance(g[key], torch.Tensor):
                np.testing.assert_allclose(g[key].numpy(), sim[r][key].numpy(), rtol=1e-5, atol=1e-5)
    assert gloo[0]["sub"] == (0, float(p - 1)) and gloo[p - 1]["sub"] == (1, float(p - 1))
    assert "sub" not in gloo[1] or p == 2


# --------------------------------------------------------------------------- errors on real processes


def raises_on_rank_1(comm):
    if comm.rank == 1:
        raise ValueError("boom on purpose")
    comm.barrier()


def mismatched_shapes(comm):
    comm.all_reduce(torch.zeros(4 + comm.rank))


def rank_0_is_late(comm):
    if comm.rank == 0:
        time.sleep(20)
    comm.barrier()


def rank_1_dies(comm):
    if comm.rank == 1:
        os._exit(3)
    comm.barrier()


def test_a_rank_that_raises_stops_the_gloo_run():
    t0 = time.perf_counter()
    with pytest.raises(RankError, match="rank 1 raised ValueError: boom on purpose") as info:
        run(raises_on_rank_1, 2, backend="gloo", timeout=30)
    assert time.perf_counter() - t0 < 10  # not the 30 s timeout
    assert "raises_on_rank_1" in info.value.rank_traceback


def test_mismatched_shapes_on_gloo_name_the_ranks():
    with pytest.raises(CollectiveMismatchError, match=r"shape differs across ranks: rank 0 has \[4\] \(4 elements\); rank 1 has \[5\]"):
        run(mismatched_shapes, 2, backend="gloo", timeout=30)


def test_a_rank_that_never_arrives_times_out_on_gloo():
    t0 = time.perf_counter()
    with pytest.raises(CommTimeoutError, match="timed out after 1 s") as info:
        run(rank_0_is_late, 2, backend="gloo", timeout=1.0)
    assert time.perf_counter() - t0 < 10  # the launcher killed the sleeping rank
    assert "barrier #0 on world: ranks [1] arrived, ranks [0] never arrived" in str(info.value)


def test_a_rank_that_dies_is_reported():
    with pytest.raises(RankError, match="rank 1 raised ProcessExit: exited with code 3"):
        run(rank_1_dies, 2, backend="gloo", timeout=30)
