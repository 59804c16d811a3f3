"""``python -m benchmarks [--quick] [--only NAME] [--json OUT]``: run every bench_*.py and print a table.

Every figure is a ratio measured within one run (never an absolute time), so it
means the same on a laptop and on a server.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import traceback
from pathlib import Path

import torch


def discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="shorter runs (noisier); targets become reports")
    p.add_argument("--only", action="append", default=[], help="run only bench_NAME (repeatable), e.g. --only model")
    p.add_argument("--json", default="benchmarks/results.json", help="where to write the JSON results")
    a = p.parse_args(argv)
    modules = discover()
    if a.only:
        wanted = {f"bench_{n.removeprefix('bench_')}" for n in a.only}
        unknown = wanted - set(modules)
        if unknown:
            p.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {modules}")
        modules = [m for m in modules if m in wanted]
    rows = []
    for name in modules:
        print(f"running {name} ...", flush=True)
        try:
            rows.extend({"module": name, **r} for r in importlib.import_module(f"benchmarks.{name}").run(quick=a.quick))
        except Exception as e:  # one broken benchmark must not hide the others
            traceback.print_exc()
            rows.append({"module": name, "name": name, "value": float("nan"), "target": "-", "passed": False, "note": f"error: {e}"})
    width = max(len(r["name"]) for r in rows) if rows else 10
    print()
    print(f"{'benchmark':<{width}}  {'ratio':>8}  {'target':>8}  ok   note")
    for r in rows:
        ok = {True: "yes", False: "NO", None: "-"}[r["passed"]]
        print(f"{r['name']:<{width}}  {r['value']:8.3f}  {r['target']:>8}  {ok:<4} {r['note']}")
    meta = {"python": sys.version.split()[0], "torch": torch.__version__, "machine": platform.machine(),
            "processor": platform.processor(), "threads": torch.get_num_threads(), "quick": a.quick}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
