"""A new user's first run, timed: a clean clone, ``make venv``, ``make demo`` (the README's
commands), with wall time, the peak memory of the demo and the time each job took (from the
demo's progress lines).

    .venv/bin/python benchmarks/first_run.py [--record]

``--record`` appends the result to benchmarks/results.md. The clone reuses pip's cache, so the
virtualenv time is that of a machine that installed the packages once before.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import append_results, machine_header  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path, log: Path) -> float:
    t = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "crm_platform"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        venv_s = timed(["make", "venv"], clone, Path(tmp) / "venv.log")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        demo_s = timed(["make", "demo"], clone, Path(tmp) / "demo.log")
        peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        log = (Path(tmp) / "demo.log").read_text()
    jobs = re.findall(r"^< (\w+): (finished|FAILED) in (.+?), (\d+)/(\d+) steps", log, re.M)
    lines = [*machine_header("First run: make venv, make demo (10,000 customers) on a clean clone",
                             "benchmarks/first_run.py --record"), "",
             "| step | wall | note |", "|---|---|---|",
             f"| make venv | {venv_s:.0f} s | pip cache warm |",
             f"| make demo | {demo_s:.0f} s | peak RSS {peak_mb:,.0f} MB |"]
    lines += [f"| job {name} | {took} | {status}, {done}/{total} steps |" for name, status, took, done, total in jobs]
    print("\n".join(lines))
    if args.record:
        append_results(lines)


if __name__ == "__main__":
    main()
