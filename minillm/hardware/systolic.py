"""A systolic array that really multiplies, one clock cycle at a time.

A systolic array (Kung & Leiserson 1979; the TPU's MXU, Jouppi et al. 2017) is a grid of
R x C processing elements (PEs). Each PE holds one operand still, takes one operand from
its left neighbour and one from the neighbour above, does one multiply-accumulate (MAC),
and passes values on to the right and down. Data enters only at the edges, so the array
needs no wide memory ports: every operand fetched from memory is reused R or C times.

Mapping ``Y[M,N] = A[M,K] @ B[K,N]`` onto the array (Y, not C: C is the array's column count) (SCALE-Sim, Samajdar et al. 2018,
Table II and Sec. III-B). Each dataflow keeps a different matrix still and gives two
*spatial* sizes (rows S_R, columns S_C) and one *temporal* size T:

    dataflow                 S_R (rows)  S_C (cols)  T    what stays in the PEs
    "ws" weight-stationary   K           N           M    B (the weights), shifted in from the top
    "os" output-stationary   M           N           K    Y (the accumulators), shifted out at the end
    "is" input-stationary    K           M           N    A (the inputs), shifted in from the top

A problem larger than the array is cut into ``folds = ceil(S_R/R) * ceil(S_C/C)`` tiles,
run one after another, and each fold takes

    2R + C + T - 2 cycles

*whatever part of the array the tile uses*: a ragged tile is padded with zeros, and the
skewed wavefront still has to cross every row and column. Where the terms come from:

- **ws / is**: R cycles to shift the stationary tile in from the top, one row per
  cycle; then the streamed operand enters row i skewed by i cycles, crosses C columns,
  and partial sums flow down R rows: the last of T inputs leaves after T + R + C - 2.
- **os**: operands of A enter from the left and of B from the top, both skewed; the last
  MAC happens in the far corner at cycle T + R + C - 3, so streaming takes T + R + C - 2
  cycles; then the finished outputs shift out of the bottom, one row per cycle: R more.

So a full pass costs the same in every dataflow; what changes is which dimension of the
problem becomes T, and therefore how many folds there are and how well each is used.

:class:`SystolicArray` steps the array cycle by cycle (a loop over cycles that moves
every register one PE on), and its count equals :func:`systolic_cycles` exactly. The
simulator assumes no overlap between folds (no double-buffered weight loading), as
SCALE-Sim's analytical model does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from minillm.validate import check_int

__all__ = [
    "DATAFLOWS",
    "MXU_SIDE",
    "SystolicArray",
    "SystolicStats",
    "Frame",
    "systolic_mapping",
    "systolic_folds",
    "systolic_cycles",
    "systolic_utilization",
    "systolic_demo",
]

DATAFLOWS = ("ws", "os", "is")

#: Side of one TPU matrix unit (MXU), a square weight-stationary systolic array. TPU v1 had one
#: 256 x 256 array (Jouppi et al. 2017); v2 to v5 have 128 x 128 MXUs (Jouppi et al. 2020 and
#: 2023; How to Scale Your Model, "TPUs"); v6e (Trillium) is back to 256 x 256 (Google Cloud's
#: TPU v6e page; How to Scale Your Model, "TPUs").
MXU_SIDE: dict[str, int] = {"tpu-v1": 256, "tpu-v2": 128, "tpu-v3": 128, "tpu-v4": 128, "tpu-v5e": 128, "tpu-v5p": 128, "tpu-v6e": 256}

# Which operand sits where, for labelling frames.
_ROLES = {
    "ws": {"stationary": "B (weights)", "horizontal": "A (inputs)", "vertical": "partial sums of Y"},
    "is": {"stationary": "A (inputs, transposed)", "horizontal": "B (weights, transposed)", "vertical": "partial sums of Y"},
    "os": {"stationary": "Y (accumulators)", "horizontal": "A (inputs)", "vertical": "B (weights)"},
}


def _check_dataflow(dataflow: str) -> str:
    if not isinstance(dataflow, str) or dataflow.lower() not in DATAFLOWS:
        raise ValueError(f"dataflow={dataflow!r} is not one of {DATAFLOWS}; use 'ws' (weight-stationary) for a TPU-like array")
    return dataflow.lower()


# --------------------------------------------------------------------------- closed forms


def systolic_mapping(M: int, K: int, N: int, dataflow: str = "ws") -> tuple[int, int, int]:
    """(S_R, S_C, T) for ``A[M,K] @ B[K,N]`` under a dataflow (SCALE-Sim, Table II)."""
    M, K, N = check_int("M", M), check_int("K", K), check_int("N", N)
    return {"ws": (K, N, M), "os": (M, N, K), "is": (K, M, N)}[_check_dataflow(dataflow)]


def systolic_folds(M: int, K: int, N: int, rows: int, cols: int, dataflow: str = "ws") -> int:
    """Number of tiles: ceil(S_R / rows) * ceil(S_C / cols)."""
    S_R, S_C, _ = systolic_mapping(M, K, N, dataflow)
    R, C = check_int("rows", rows), check_int("cols", cols)
    return math.ceil(S_R / R) * math.ceil(S_C / C)


def systolic_cycles(M: int, K: int, N: int, rows: int, cols: int, dataflow: str = "ws") -> int:
    """Cycles for ``A[M,K] @ B[K,N]`` on a rows x cols array: folds x (2R + C + T - 2).

    SCALE-Sim (Samajdar et al. 2018), Sec. III-B: each fold takes 2R + C + T - 2 cycles
    with (S_R, S_C, T) from :func:`systolic_mapping`.

    >>> systolic_cycles(M=4, K=4, N=4, rows=4, cols=4, dataflow="ws")   # one fold: 8 + 4 + 4 - 2
    14
    """
    _, _, T = systolic_mapping(M, K, N, dataflow)
    R, C = check_int("rows", rows), check_int("cols", cols)
    return systolic_folds(M, K, N, R, C, dataflow) * (2 * R + C + T - 2)


def systolic_utilization(M: int, K: int, N: int, rows: int, cols: int, dataflow: str = "ws") -> float:
    """Fraction of PE-cycles doing a useful MAC: M·K·N / (cycles · rows · cols)."""
    cycles = systolic_cycles(M, K, N, rows, cols, dataflow)
    return M * K * N / (cycles * rows * cols)


# --------------------------------------------------------------------------- the stepped array


@dataclass
class Frame:
    """A snapshot of the array at the end of one cycle (for animations).

    Each grid is [rows, cols]; NaN marks an empty register.
    ``stationary``: the value each PE holds still (weights in ws, inputs in is,
    accumulators in os). ``horizontal``: the operand moving right. ``vertical``: the
    value moving down (partial sums in ws/is, B in os). ``active``: PEs that did a useful
    MAC this cycle.
    """

    cycle: int
    fold: int
    phase: str  # "load", "stream" or "drain"
    stationary: np.ndarray
    horizontal: np.ndarray
    vertical: np.ndarray
    active: np.ndarray


@dataclass
class SystolicStats:
    """What a run cost. Readable as attributes or as a dict (``stats["cycles"]``)."""

    cycles: int
    macs: int
    utilization: float
    folds: int
    dataflow: str
    rows: int
    cols: int
    mapping: tuple[int, int, int]
    roles: dict = field(default_factory=dict)
    frames: list[Frame] | None = None

    def __getitem__(self, key: str):
        return getattr(self, key)

    def keys(self):
        return ["cycles", "macs", "utilization", "folds", "dataflow", "rows", "cols", "mapping"]


def _snapshot(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = values.astype(float)
    out[~valid] = np.nan
    return out


class SystolicArray:
    """An R x C grid of multiply-accumulate PEs, simulated cycle by cycle.

    >>> import numpy as np
    >>> A, B = np.arange(6).reshape(2, 3), np.arange(12).reshape(3, 4)
    >>> C, stats = SystolicArray(4, 4, "ws").matmul(A, B)
    >>> bool((C == A @ B).all()), stats.cycles == systolic_cycles(2, 3, 4, 4, 4, "ws")
    (True, True)
    """

    def __init__(self, rows: int, cols: int, dataflow: str = "ws") -> None:
        self.rows = check_int("rows", rows)
        self.cols = check_int("cols", cols)
        self.dataflow = _check_dataflow(dataflow)

    def __repr__(self) -> str:
        return f"SystolicArray(rows={self.rows}, cols={self.cols}, dataflow={self.dataflow!r})"

    # ------------------------------------------------------------------ public

    def matmul(self, A, B, record_frames: bool = False):
        """Multiply ``A[M,K] @ B[K,N]`` on the array. Returns ``(C, stats)``.

        Integer inputs accumulate in int64 and give exactly ``A @ B``; floating inputs
        accumulate in float64. C is a torch tensor if A is one, else a numpy array.
        With ``record_frames`` the stats carry one :class:`Frame` per cycle.
        """
        a, b, as_torch = _as_arrays(A, B)
        M, K = a.shape
        N = b.shape[1]
        frames: list[Frame] | None = [] if record_frames else None
        self._cycle, self._macs, self._frames = 0, 0, frames
        if self.dataflow == "ws":
            c = self._stationary_matmul(stream=a, still=b)  # stream A's rows past B
        elif self.dataflow == "is":
            c = self._stationary_matmul(stream=b.T, still=a.T).T  # C^T = B^T A^T
        else:
            c = self._output_stationary_matmul(a, b)
        mapping = systolic_mapping(M, K, N, self.dataflow)
        folds = systolic_folds(M, K, N, self.rows, self.cols, self.dataflow)
        stats = SystolicStats(
            cycles=self._cycle,
            macs=self._macs,
            utilization=self._macs / (self._cycle * self.rows * self.cols),
            folds=folds,
            dataflow=self.dataflow,
            rows=self.rows,
            cols=self.cols,
            mapping=mapping,
            roles=dict(_ROLES[self.dataflow]),
            frames=frames,
        )
        if as_torch:
            import torch

            c = torch.from_numpy(c)
        return c, stats

    # ------------------------------------------------------------------ ws and is

    def _stationary_matmul(self, stream: np.ndarray, still: np.ndarray) -> np.ndarray:
        """Y[T, S_C] = stream[T, S_R] @ still[S_R, S_C], tiling ``still`` into R x C folds."""
        R, C = self.rows, self.cols
        T, S_R = stream.shape
        S_C = still.shape[1]
        out = np.zeros((T, S_C), dtype=stream.dtype)
        fold = 0
        for c0 in range(0, S_C, C):
            for r0 in range(0, S_R, R):
                r_used, c_used = min(R, S_R - r0), min(C, S_C - c0)
                # Pad the tile to the full array: unused PEs hold zeros but still pass data on.
                tile = np.zeros((R, C), dtype=stream.dtype)
                tile[:r_used, :c_used] = still[r0 : r0 + r_used, c0 : c0 + c_used]
                tile_real = np.zeros((R, C), dtype=bool)
                tile_real[:r_used, :c_used] = True
                x = np.zeros((T, R), dtype=stream.dtype)
                x[:, :r_used] = stream[:, r0 : r0 + r_used]
                x_real = np.zeros((T, R), dtype=bool)
                x_real[:, :r_used] = True
                y = self._stationary_fold(x, x_real, tile, tile_real, fold)
                out[:, c0 : c0 + c_used] += y[:, :c_used]  # accumulate over K-folds outside the array
                fold += 1
        return out

    def _stationary_fold(self, x, x_real, tile, tile_real, fold: int) -> np.ndarray:
        """One fold of a weight/input-stationary pass: 2R + C + T - 2 cycles."""
        R, C = self.rows, self.cols
        T = x.shape[0]
        dtype = x.dtype
        # Phase 1, load: the tile enters from the top, one row per cycle, and shifts down.
        # Feeding the bottom row first leaves row i holding tile[i] after R cycles.
        w = np.zeros((R, C), dtype=dtype)
        w_valid = np.zeros((R, C), dtype=bool)
        w_real = np.zeros((R, C), dtype=bool)
        empty = np.zeros((R, C), dtype=bool)
        for step in range(R):
            w[1:], w_valid[1:], w_real[1:] = w[:-1].copy(), w_valid[:-1].copy(), w_real[:-1].copy()
            w[0], w_valid[0], w_real[0] = tile[R - 1 - step], True, tile_real[R - 1 - step]
            self._record(fold, "load", w, w_valid, w, empty, w, empty, empty)
            self._cycle += 1

        # Phase 2, stream: x[t, i] enters row i at local cycle t + i (the skew), moves one PE
        # right per cycle; partial sums enter each column's top as 0 and move one PE down per
        # cycle. Sum (t, j) meets x[t, i] at PE (i, j) on cycle t + i + j and leaves the
        # bottom of column j after cycle t + R - 1 + j.
        a = np.zeros((R, C), dtype=dtype)  # operand registers, moving right
        a_valid = np.zeros((R, C), dtype=bool)
        a_real = np.zeros((R, C), dtype=bool)
        p = np.zeros((R, C), dtype=dtype)  # partial-sum registers, moving down
        p_valid = np.zeros((R, C), dtype=bool)
        y = np.zeros((T, C), dtype=dtype)
        rows_idx, cols_idx = np.arange(R), np.arange(C)
        local = 0
        while True:
            # Every operand steps one PE to the right; the last column's fall off the edge.
            a[:, 1:], a_valid[:, 1:], a_real[:, 1:] = a[:, :-1].copy(), a_valid[:, :-1].copy(), a_real[:, :-1].copy()
            t_in = local - rows_idx  # which input row each array row takes this cycle
            feed = (t_in >= 0) & (t_in < T)
            a[:, 0], a_valid[:, 0], a_real[:, 0] = 0, feed, False
            a[feed, 0] = x[t_in[feed], rows_idx[feed]]
            a_real[feed, 0] = x_real[t_in[feed], rows_idx[feed]]
            # Every partial sum steps one PE down; fresh zeros enter at the top.
            p[1:], p_valid[1:] = p[:-1].copy(), p_valid[:-1].copy()
            t_top = local - cols_idx
            p[0], p_valid[0] = 0, (t_top >= 0) & (t_top < T)
            # Every PE with an operand and a partial sum does one MAC.
            fire = a_valid & p_valid
            p[fire] += a[fire] * w[fire]
            useful = fire & a_real & w_real
            self._macs += int(useful.sum())
            self._record(fold, "stream", w, w_valid, a, a_valid, p, p_valid, useful)
            # Sums in the bottom row are finished: they leave the array as outputs.
            done = p_valid[R - 1]
            y[local - (R - 1) - cols_idx[done], cols_idx[done]] = p[R - 1, done]
            p_valid[R - 1] = False
            a_valid[:, C - 1] = False  # and operands in the last column leave on the right
            self._cycle += 1
            local += 1
            if local >= T + R - 1 and not a_valid.any() and not p_valid.any():
                return y

    # ------------------------------------------------------------------ os

    def _output_stationary_matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """C[M, N], each PE owning one output; tiles of R x C outputs, full K streamed per fold."""
        R, C = self.rows, self.cols
        M, K = a.shape
        N = b.shape[1]
        out = np.zeros((M, N), dtype=a.dtype)
        fold = 0
        for r0 in range(0, M, R):
            for c0 in range(0, N, C):
                r_used, c_used = min(R, M - r0), min(C, N - c0)
                a_tile = np.zeros((R, K), dtype=a.dtype)
                a_tile[:r_used] = a[r0 : r0 + r_used]
                a_real = np.zeros((R, K), dtype=bool)
                a_real[:r_used] = True
                b_tile = np.zeros((K, C), dtype=a.dtype)
                b_tile[:, :c_used] = b[:, c0 : c0 + c_used]
                b_real = np.zeros((K, C), dtype=bool)
                b_real[:, :c_used] = True
                tile = self._output_stationary_fold(a_tile, a_real, b_tile, b_real, fold)
                out[r0 : r0 + r_used, c0 : c0 + c_used] = tile[:r_used, :c_used]
                fold += 1
        return out

    def _output_stationary_fold(self, a_tile, a_real_in, b_tile, b_real_in, fold: int) -> np.ndarray:
        """One output-stationary fold: T + R + C - 2 cycles streaming, then R draining."""
        R, C = self.rows, self.cols
        T = a_tile.shape[1]
        dtype = a_tile.dtype
        acc = np.zeros((R, C), dtype=dtype)
        acc_valid = np.ones((R, C), dtype=bool)
        h = np.zeros((R, C), dtype=dtype)  # A operands moving right
        h_valid = np.zeros((R, C), dtype=bool)
        h_real = np.zeros((R, C), dtype=bool)
        v = np.zeros((R, C), dtype=dtype)  # B operands moving down
        v_valid = np.zeros((R, C), dtype=bool)
        v_real = np.zeros((R, C), dtype=bool)
        rows_idx, cols_idx = np.arange(R), np.arange(C)
        local = 0
        # Stream: a[i, k] enters row i at cycle k + i, b[k, j] enters column j at cycle k + j;
        # they meet at PE (i, j) on cycle k + i + j.
        while True:
            h[:, 1:], h_valid[:, 1:], h_real[:, 1:] = h[:, :-1].copy(), h_valid[:, :-1].copy(), h_real[:, :-1].copy()
            k_row = local - rows_idx
            feed_r = (k_row >= 0) & (k_row < T)
            h[:, 0], h_valid[:, 0], h_real[:, 0] = 0, feed_r, False
            h[feed_r, 0] = a_tile[rows_idx[feed_r], k_row[feed_r]]
            h_real[feed_r, 0] = a_real_in[rows_idx[feed_r], k_row[feed_r]]
            v[1:], v_valid[1:], v_real[1:] = v[:-1].copy(), v_valid[:-1].copy(), v_real[:-1].copy()
            k_col = local - cols_idx
            feed_c = (k_col >= 0) & (k_col < T)
            v[0], v_valid[0], v_real[0] = 0, feed_c, False
            v[0, feed_c] = b_tile[k_col[feed_c], cols_idx[feed_c]]
            v_real[0, feed_c] = b_real_in[k_col[feed_c], cols_idx[feed_c]]
            fire = h_valid & v_valid
            acc[fire] += h[fire] * v[fire]
            useful = fire & h_real & v_real
            self._macs += int(useful.sum())
            self._record(fold, "stream", acc, acc_valid, h, h_valid, v, v_valid, useful)
            h_valid[:, C - 1] = False  # operands leave at the right and bottom edges
            v_valid[R - 1] = False
            self._cycle += 1
            local += 1
            if local >= T + max(R, C) - 1 and not h_valid.any() and not v_valid.any():
                break
        # Drain: the finished outputs shift down and out of the bottom, one row per cycle.
        out = np.zeros((R, C), dtype=dtype)
        none = np.zeros((R, C), dtype=bool)
        for step in range(R):
            out[R - 1 - step] = acc[R - 1]
            acc[1:], acc_valid[1:] = acc[:-1].copy(), acc_valid[:-1].copy()
            acc[0], acc_valid[0] = 0, False
            self._record(fold, "drain", acc, acc_valid, h, none, v, none, none)
            self._cycle += 1
        return out

    # ------------------------------------------------------------------ frames

    def _record(self, fold, phase, s, s_valid, h, h_valid, v, v_valid, active) -> None:
        if self._frames is None:
            return
        self._frames.append(
            Frame(
                cycle=self._cycle,
                fold=fold,
                phase=phase,
                stationary=_snapshot(s, s_valid),
                horizontal=_snapshot(h, h_valid),
                vertical=_snapshot(v, v_valid),
                active=active.copy(),
            )
        )


def _as_arrays(A, B) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate the operands and convert them to int64 or float64 numpy arrays."""
    as_torch = False
    arrays = []
    for name, x in (("A", A), ("B", B)):
        if type(x).__module__.startswith("torch"):
            as_torch = as_torch or name == "A"
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"{name} must be a 2-D matrix, got shape {x.shape}")
        if 0 in x.shape:
            raise ValueError(f"{name} has an empty dimension {x.shape}; sizes must be >= 1")
        if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"{name} must hold integers or floats, got dtype {x.dtype}")
        arrays.append(x)
    a, b = arrays
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"inner sizes differ: A is {a.shape} and B is {b.shape}; A[M,K] @ B[K,N] needs equal K")
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        dtype = np.int64
    else:
        dtype = np.float64
    return a.astype(dtype), b.astype(dtype), as_torch


def systolic_demo(
    M: int = 4,
    K: int = 4,
    N: int = 4,
    rows: int = 4,
    cols: int = 4,
    dataflow: str = "ws",
    seed: int = 0,
    cycle: int = 0,
) -> dict:
    """Multiply seeded small integers ``A[M,K] @ B[K,N]`` on a rows x cols array, recording every cycle.

    The data behind the lesson's frame-by-frame widget. Entries are integers 1..4, so
    every MAC is visible and the printed partial sums stay short. ``cycle`` picks the
    frame to look at (clamped to the last cycle, so one slider serves every dataflow).
    Returns ``A, B, C, stats, frames, frame, cycle, cycles, closed_form, exact, roles``.
    """
    M, K, N = check_int("M", M), check_int("K", K), check_int("N", N)
    cycle = check_int("cycle", cycle, minimum=0)
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    A = rng.integers(1, 5, size=(M, K))
    B = rng.integers(1, 5, size=(K, N))
    C, stats = SystolicArray(rows, cols, dataflow).matmul(A, B, record_frames=True)
    frames = stats.frames
    shown = min(cycle, len(frames) - 1)
    return {
        "A": A,
        "B": B,
        "C": C,
        "stats": stats,
        "frames": frames,
        "frame": frames[shown],
        "cycle": shown,
        "cycles": stats.cycles,
        "closed_form": systolic_cycles(M, K, N, rows, cols, dataflow),
        "exact": bool(np.array_equal(C, A @ B)),
        "roles": dict(stats.roles),
    }
