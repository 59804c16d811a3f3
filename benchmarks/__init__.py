"""Speed targets for minillm, measured as ratios against a peer in the same run.

Run ``python -m benchmarks`` (``--quick`` for a short pass). Each ``bench_*.py``
module exposes ``run(quick=False) -> list[dict]``; see ``__main__.py``.
"""
