"""A process grid: name every sub-group of a DP × TP × PP job.

A job on ``world_size = pp · dp · tp`` ranks arranges them as a 3-D grid. Tensor
parallelism (TP) varies fastest, so the ranks of one TP group are neighbours, which
on real machines share a node and its fast links; then data parallelism (DP); then
pipeline stages (PP). This is Megatron-LM's default order (Narayanan et al. 2021,
"Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM",
Sec. 3): global rank = (pp_rank · dp + dp_rank) · tp + tp_rank.

:func:`grid_groups` is the pure layout (lists of ranks); :class:`ProcessGrid` builds
the communicators from it, so rank code can say ``grid.dp`` or ``grid.tp``.
"""

from __future__ import annotations

from minillm.validate import check_int

from .comm import Comm

__all__ = ["grid_groups", "ProcessGrid"]


def _check_sizes(world_size: int, tp: int, dp: int | None, pp: int) -> int:
    for name, v in (("world_size", world_size), ("tp", tp), ("pp", pp)):
        check_int(name, v)
    if dp is None:
        if world_size % (tp * pp):
            raise ValueError(f"world_size={world_size} is not divisible by tp·pp = {tp}·{pp}; pick sizes that multiply to it")
        dp = world_size // (tp * pp)
    check_int("dp", dp)
    if tp * dp * pp != world_size:
        raise ValueError(f"tp·dp·pp = {tp}·{dp}·{pp} = {tp * dp * pp} must equal world_size={world_size}")
    return dp


def grid_groups(world_size: int, tp: int = 1, dp: int | None = None, pp: int = 1) -> dict[str, list[list[int]]]:
    """The rank lists of every TP, DP and PP group (dp defaults to world_size / (tp·pp)).

    >>> grid_groups(8, tp=2, pp=2)["dp"]
    [[0, 2], [1, 3], [4, 6], [5, 7]]
    """
    dp = _check_sizes(world_size, tp, dp, pp)
    rank = lambda p, d, t: (p * dp + d) * tp + t  # noqa: E731
    return {
        "tp": [[rank(p, d, t) for t in range(tp)] for p in range(pp) for d in range(dp)],
        "dp": [[rank(p, d, t) for d in range(dp)] for p in range(pp) for t in range(tp)],
        "pp": [[rank(p, d, t) for p in range(pp)] for d in range(dp) for t in range(tp)],
    }


class ProcessGrid:
    """This rank's place in a pp × dp × tp grid, with a communicator per axis.

    Attributes: ``tp``, ``dp``, ``pp`` (the :class:`Comm` of this rank's group on
    each axis), ``tp_rank``, ``dp_rank``, ``pp_rank`` and the sizes ``tp_size``,
    ``dp_size``, ``pp_size``. Every rank of ``comm`` must construct it (it calls
    ``new_group`` for every group, in the same order on every rank).
    """

    def __init__(self, comm: Comm, tp: int = 1, dp: int | None = None, pp: int = 1) -> None:
        dp = _check_sizes(comm.world_size, tp, dp, pp)
        self.world = comm
        self.tp_size, self.dp_size, self.pp_size = tp, dp, pp
        r = comm.rank
        self.tp_rank = r % tp
        self.dp_rank = (r // tp) % dp
        self.pp_rank = r // (tp * dp)
        self.groups = grid_groups(comm.world_size, tp, dp, pp)
        mine: dict[str, Comm] = {}
        for axis in ("tp", "dp", "pp"):
            for ranks in self.groups[axis]:
                sub = comm.new_group(ranks)
                if sub is not None:
                    mine[axis] = sub
        self.tp, self.dp, self.pp = mine["tp"], mine["dp"], mine["pp"]

    def __repr__(self) -> str:
        return (f"ProcessGrid(rank={self.world.rank}: tp {self.tp_rank}/{self.tp_size}, "
                f"dp {self.dp_rank}/{self.dp_size}, pp {self.pp_rank}/{self.pp_size})")
