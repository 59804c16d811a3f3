"""Accuracy of the roofline cost model on this machine (issue 6).

Measure this machine's roofline (best fp32 GEMM rate, best STREAM bandwidth), then
*predict* the time of fp32 GEMMs from 128 to 2048 and of two memory-bound operations
(a matrix-vector product, the shape of batch-1 decoding, and an elementwise scale) with
``op_time``, and *measure* them. Target: the median of |predicted / measured - 1| over
all of them is at most 0.25.

The roofline is a lower bound, so small GEMMs (dominated by call overhead and poorly
blocked) are predicted too fast; large ones land close. Two effects the model leaves
out, on purpose: an op that *allocates* a large output pays page faults on first
touch (``h + h`` on 64 MB can take 10x the bandwidth bound), so the elementwise case
writes into a preallocated tensor; and the memory roof is a copy/triad rate on long
contiguous arrays, which a GEMV may beat (it writes almost nothing back) or miss (it
also reads ``x`` and writes ``y``, and walks the weight in a pattern the prefetcher
and TLB may serve less well than one long stream). The operations and the
predict-then-time loop are :func:`minillm.hardware.measure.predict_vs_measure`, the
same as lesson 07's. Everything runs on one torch thread timed by process CPU time,
so other jobs on a shared machine do not count against the measured times.
"""

from __future__ import annotations

import statistics

from minillm.hardware.measure import auto_clock, default_cases, predict_vs_measure, run_microbenchmarks, spec_from_measurements
from minillm.hardware.roofline import ridge_point

TARGET = 0.25
#: One torch thread for the roofline measurement and every timed op, timed in process CPU
#: time. On a machine shared with other jobs, multi-threaded GEMMs stall at OpenMP barriers
#: whenever a core is taken (100x swings seen on a busy 2-core box); one thread timed by
#: CPU time does not count the slices the scheduler gives to other processes.
THREADS = 1
CLOCK = auto_clock(THREADS)  # process CPU time (wall time where that clock is coarse)


def run(quick: bool = False) -> list[dict]:
    """Predict-versus-measure rows; the first is the headline median error."""
    m = run_microbenchmarks(quick=quick, progress=False, threads=THREADS, clock=CLOCK)
    me = spec_from_measurements(m)
    measured = predict_vs_measure(
        me, default_cases(quick=quick), threads=m.threads, clock=CLOCK, budget_s=0.2 if quick else 0.5
    )
    rows, errors = [], []
    for r in measured:
        ratio = r["predicted_s"] / r["measured_s"]
        errors.append(abs(ratio - 1))
        rows.append(
            {
                "name": f"hardware.predicted_over_measured.{r['name']}",
                "value": ratio,
                "target": "report",
                "passed": None,
                "note": f"{r['bound']}-bound; predicted {r['predicted_s'] * 1e3:.3g} ms, measured {r['measured_s'] * 1e3:.3g} ms",
            }
        )
    median = statistics.median(errors)
    machine = (
        f"fp32 GEMM {m.peak_fp32 / 1e9:.1f} GFLOP/s, memory {m.mem_bw / 1e9:.1f} GB/s, "
        f"{m.threads} torch thread(s) timed by CPU time, kernels: torch matmul (fp32), torch.mul(out=)"
    )
    head = {
        "name": "hardware.cost_model_median_abs_error",
        "value": median,
        # Quick runs are noisier: the target becomes a report, as for every benchmark.
        "target": "report" if quick else f"<= {TARGET}",
        "passed": None if quick else median <= TARGET,
        "note": f"median |predicted/measured - 1| over {len(errors)} ops; {machine}",
    }
    ridge = {
        "name": "hardware.this_machine_ridge_fp32",
        "value": ridge_point(me, "fp32"),
        "target": "report",
        "passed": None,
        "note": "FLOP/byte where this machine turns compute-bound (H100 dense bf16: 295)",
    }
    return [head, ridge, *rows]


if __name__ == "__main__":  # python benchmarks/bench_hardware.py [--quick]
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(f"{row['name']:<55} {row['value']:.3f}  target {row['target']:<8} {row['note']}")
